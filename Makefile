# rbee: the two set-up commands are `make demo` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh
	touch $(STAMP)

demo: setup
	$(BIN)/python scripts/demo.py

test: setup
	bash scripts/test.sh

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) reports .pytest_cache .ruff_cache
