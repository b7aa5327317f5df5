# rbee: the two set-up commands are `make demo` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-gpu rc bench bench-gpu lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh
	touch $(STAMP)

demo: setup
	$(BIN)/python scripts/demo.py

test: setup
	bash scripts/test.sh

test-gpu:
	bash scripts/gpu/test.sh

rc: setup
	rm -rf reports/rc && mkdir -p reports/rc
	-$(BIN)/behave features --tags="not @gpu" -f json.pretty -o reports/rc/behave.json -f progress -o reports/rc/progress.txt
	$(BIN)/python scripts/rc_report.py features/rc_checklist.yaml reports/rc/behave.json

bench: setup
	$(BIN)/python bench/serving.py $(BENCH_ARGS)

bench-gpu:
	bash scripts/gpu/bench.sh $(BENCH_ARGS)

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) reports .pytest_cache .ruff_cache
