"""The hive's SQLite model catalog."""

import asyncio

import pytest

from rbee.common.errors import ApiError
from rbee.hive.catalog import ModelCatalog


def test_a_file_ref_is_registered_on_first_use_and_survives_a_restart(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 60)
    first = asyncio.run(ModelCatalog(tmp_path / "hive").resolve(f"file://{model}"))
    assert first.path == str(model) and first.size_bytes == 64
    reopened = ModelCatalog(tmp_path / "hive")
    assert [e.name for e in asyncio.run(reopened.list())] == [f"file://{model}"]


@pytest.mark.parametrize(
    ("ref", "status", "code"),
    [
        ("file:///does/not/exist.gguf", 404, "MODEL_FILE_NOT_FOUND"),
        ("unknown-name", 404, "MODEL_NOT_FOUND"),
        ("hf:org/repo:x.gguf", 404, "MODEL_NOT_DOWNLOADED"),
        ("file:///x/../etc/passwd.gguf", 400, "INVALID_REQUEST"),
    ],
)
def test_unresolvable_refs_are_refused_with_their_own_code(tmp_path, ref, status, code):
    with pytest.raises(ApiError) as caught:
        asyncio.run(ModelCatalog(tmp_path).resolve(ref))
    assert (caught.value.status, caught.value.code) == (status, code)


def test_a_file_without_the_gguf_magic_is_refused(tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_text("hello")
    with pytest.raises(ApiError) as caught:
        asyncio.run(ModelCatalog(tmp_path).resolve(f"file://{fake}"))
    assert caught.value.code == "NOT_A_GGUF"
