"""The hive's downloader and catalog against a loopback stand-in of the Hugging Face hub."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest
from huggingface_hub import try_to_load_from_cache

from rbee.common.errors import ApiError
from rbee.common.tunables import DownloadSettings, HubSettings, TunableError
from rbee.hive.catalog import ModelCatalog
from rbee.hive.downloads import Downloader, parse_sha256
from rbee.hive.downloads.files import partial_of
from rbee.hive.model_sources import https_source
from rbee.testing.file_server import Fault
from rbee.testing.hub_standin import HubStandIn

FAST = {"retries": 2, "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "stall_timeout_s": 1.0}


@pytest.fixture
def server():
    with HubStandIn() as running:
        yield running


@pytest.fixture(autouse=True)
def hf_cache(tmp_path, monkeypatch) -> Path:
    """Each test's own Hugging Face cache."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return cache


def _blob(cache: Path, server: HubStandIn, filename: str) -> Path:
    """Where the hive keeps the bytes of `org/repo`'s file in the cache."""
    served = server.file(server.cdn_path("org", "repo", filename))
    return cache / "models--org--repo" / "blobs" / served.sha256


def _model(path: Path, size: int = 300_000) -> Path:
    path.write_bytes(b"GGUF" + os.urandom(size - 4))
    return path


def _catalog(tmp_path: Path, server: HubStandIn, **overrides) -> ModelCatalog:
    settings = DownloadSettings(**{**FAST, **overrides}, hub=HubSettings(server.url))
    return ModelCatalog(tmp_path / "hive", Downloader(tmp_path / "hive" / "models", settings))


async def _download(catalog: ModelCatalog, ref: str, sha256: str | None = None) -> Path:
    try:
        job = await catalog.download(ref, sha256)
        return await job.wait()
    finally:
        await catalog._downloads.close()


def test_backoff_doubles_up_to_its_cap_with_jitter():
    settings = DownloadSettings(backoff_initial_s=1.0, backoff_max_s=5.0)
    for failures, base in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)):
        assert 0.8 * base <= settings.delay(failures) <= 1.2 * base


@pytest.mark.parametrize("bad", ["abc", "g" * 64, 12345, "0" * 63, "0" * 65])
def test_a_digest_must_be_64_hex_characters(bad):
    with pytest.raises(ApiError) as caught:
        parse_sha256(bad)
    assert caught.value.code == "INVALID_REQUEST" and str(bad) not in caught.value.message


def test_an_https_source_sends_no_token_and_keeps_its_query_out_of_its_place_and_repr():
    source, place = https_source("https://cdn.example:8443/files/m.gguf?X-Amz-Signature=abc123", None)
    again, same = https_source("https://cdn.example:8443/files/m.gguf?X-Amz-Signature=zzz999", None)
    assert source.headers == {} and place.name == "m.gguf" and place == same
    assert source.url.endswith("abc123") and "abc123" not in repr(source) + str(place)
    assert "hf_secret_value_123" not in repr(HubSettings("https://hub.example", "hf_secret_value_123"))


@pytest.mark.parametrize("endpoint", ["ftp://x", "huggingface.co", "https://", "https://h/?q=1"])
def test_an_invalid_hub_endpoint_stops_the_hive(endpoint):
    with pytest.raises(TunableError):
        HubSettings.from_env({"RBEE_HF_ENDPOINT": endpoint})


def test_a_server_error_is_retried_and_the_download_completes(tmp_path, server):
    ref = server.add_hf("org", "repo", "m.gguf", _model(tmp_path / "m.gguf"))
    cdn = server.cdn_path("org", "repo", "m.gguf")
    server.inject(cdn, Fault("status", status=503))
    path = asyncio.run(_download(_catalog(tmp_path, server), ref))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == server.file(cdn).sha256
    assert len(server.hits(cdn)) == 2


def test_a_partial_file_of_a_changed_upstream_file_is_restarted_not_spliced(tmp_path, server, hf_cache):
    ref = server.add_hf("org", "repo", "m.gguf", _model(tmp_path / "m.gguf"))
    cdn = server.cdn_path("org", "repo", "m.gguf")
    target = _blob(hf_cache, server, "m.gguf")
    target.parent.mkdir(parents=True)
    partial_of(target).write_bytes(b"GGUF stale bytes of an older revision")
    validator = partial_of(target).with_name(partial_of(target).name + ".json")
    validator.write_text(json.dumps({"etag": '"old-revision"'}))
    path = asyncio.run(_download(_catalog(tmp_path, server), ref))
    assert path.read_bytes() == (tmp_path / "m.gguf").read_bytes()
    hit = server.hits(cdn)[0]
    assert (hit.range, hit.if_range) == ("bytes=37-", '"old-revision"')


def test_a_complete_partial_file_is_verified_without_fetching_it_again(tmp_path, server, hf_cache):
    source = _model(tmp_path / "m.gguf")
    ref = server.add_hf("org", "repo", "m.gguf", source)
    target = _blob(hf_cache, server, "m.gguf")
    target.parent.mkdir(parents=True)
    partial_of(target).write_bytes(source.read_bytes())
    path = asyncio.run(_download(_catalog(tmp_path, server), ref))
    assert path.read_bytes() == source.read_bytes()
    assert [h.range for h in server.hits(server.cdn_path("org", "repo", "m.gguf"))] == ["bytes=300000-"]


def test_hf_org_repo_picks_the_repositorys_only_gguf(tmp_path, server):
    server.add_hf("org", "repo", "only.gguf", _model(tmp_path / "only.gguf"))
    catalog = _catalog(tmp_path, server)
    path = asyncio.run(_download(catalog, "hf:org/repo"))
    assert path.name == "only.gguf"
    assert [m.name for m in asyncio.run(catalog.list())] == ["hf:org/repo"]


def test_hf_org_repo_with_several_ggufs_asks_for_the_file(tmp_path, server):
    server.add_hf("org", "repo", "a.gguf", _model(tmp_path / "a.gguf"))
    server.add_hf("org", "repo", "b.gguf", _model(tmp_path / "b.gguf"))
    with pytest.raises(ApiError) as caught:
        asyncio.run(_download(_catalog(tmp_path, server), "hf:org/repo"))
    assert caught.value.code == "MODEL_FILE_AMBIGUOUS"
    assert caught.value.details["files"] == ["a.gguf", "b.gguf"]


def test_a_file_that_is_not_a_gguf_is_refused_and_deleted(tmp_path, server):
    (tmp_path / "page.gguf").write_bytes(b"<html>login</html>" * 100)
    ref = server.add_hf("org", "repo", "page.gguf", tmp_path / "page.gguf")
    with pytest.raises(ApiError) as caught:
        asyncio.run(_download(_catalog(tmp_path, server), ref))
    assert caught.value.code == "NOT_A_GGUF"
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.parent.name == "blobs"]


def test_requests_for_one_model_share_one_job_and_a_conflicting_digest_is_refused(tmp_path, server):
    ref = server.add_hf("org", "repo", "m.gguf", _model(tmp_path / "m.gguf"))
    cdn = server.cdn_path("org", "repo", "m.gguf")
    server.throttle(cdn, 2_000_000)
    catalog = _catalog(tmp_path, server)

    async def scenario() -> None:
        try:
            jobs = await asyncio.gather(*(catalog.download(ref, server.file(cdn).sha256) for _ in range(4)))
            assert len({job.id for job in jobs}) == 1
            with pytest.raises(ApiError) as caught:
                await catalog.download(ref, "a" * 64)
            assert (caught.value.status, caught.value.code) == (409, "DOWNLOAD_CONFLICT")
            await jobs[0].wait()
            again = await catalog.download(ref)
            assert again.finished and again.sha256 == server.file(cdn).sha256
        finally:
            await catalog._downloads.close()

    asyncio.run(scenario())
    assert len(server.hits(cdn)) == 1


def test_a_corrupt_catalog_is_moved_aside_and_rebuilt_from_the_models_folder(tmp_path, server):
    ref = server.add_hf("org", "repo", "m.gguf", _model(tmp_path / "m.gguf"))
    asyncio.run(_download(_catalog(tmp_path, server), ref))
    database = tmp_path / "hive" / "catalog.sqlite3"
    database.write_bytes(b"garbage" * 1000)
    rebuilt = ModelCatalog(tmp_path / "hive")
    assert [m.name for m in asyncio.run(rebuilt.list())] == [ref]
    assert [p.read_bytes() for p in database.parent.glob("catalog.sqlite3.corrupt-*")] == [b"garbage" * 1000]
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA quick_check").fetchone() == ("ok",)


def test_rm_deletes_a_downloaded_file_but_keeps_a_file_ref_outside_the_models_folder(tmp_path, server):
    ref = server.add_hf("org", "repo", "m.gguf", _model(tmp_path / "m.gguf"))
    catalog = _catalog(tmp_path, server)
    path = asyncio.run(_download(catalog, ref))
    outside = _model(tmp_path / "mine.gguf", 100)
    asyncio.run(catalog.resolve(f"file://{outside}"))
    assert asyncio.run(catalog.remove(ref))[1] is True
    assert asyncio.run(catalog.remove(f"file://{outside}"))[1] is False
    assert not path.exists() and outside.exists()
    with pytest.raises(ApiError) as caught:
        asyncio.run(catalog.remove(ref))
    assert caught.value.code == "MODEL_NOT_FOUND"


def test_a_complete_recorded_file_is_not_fetched_again_when_its_catalog_row_is_gone(tmp_path, server):
    ref = server.add_hf("org", "repo", "m.gguf", _model(tmp_path / "m.gguf"))
    asyncio.run(_download(_catalog(tmp_path, server), ref))
    with sqlite3.connect(tmp_path / "hive" / "catalog.sqlite3") as db:
        db.execute("DELETE FROM models")
    catalog = _catalog(tmp_path, server)
    path = asyncio.run(_download(catalog, ref))
    assert path.is_file() and [m.name for m in asyncio.run(catalog.list())] == [ref]
    assert len(server.hits(server.cdn_path("org", "repo", "m.gguf"))) == 1


def test_a_downloaded_hf_model_is_where_huggingface_hub_looks_for_it(tmp_path, server, hf_cache):
    ref = server.add_hf("org", "repo", "m-Q4_K_M.gguf", _model(tmp_path / "m.gguf"))
    path = asyncio.run(_download(_catalog(tmp_path, server), "hf:org/repo:Q4_K_M"))
    found = try_to_load_from_cache("org/repo", "m-Q4_K_M.gguf", cache_dir=str(hf_cache))
    assert found is not None and Path(found) == path and ref.endswith(path.name)
    assert path.read_bytes() == (tmp_path / "m.gguf").read_bytes()


def test_every_part_of_a_split_model_lands_in_one_snapshot_and_counts_in_its_size(tmp_path, server):
    names = [f"m-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    for name in names:
        server.add_hf("org", "repo", name, _model(tmp_path / name, 100_000))
    catalog = _catalog(tmp_path, server)
    path = asyncio.run(_download(catalog, "hf:org/repo"))
    assert path.name == names[0] and sorted(p.name for p in path.parent.iterdir()) == names
    assert [m.size_bytes for m in asyncio.run(catalog.list())] == [300_000]
