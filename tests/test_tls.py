"""The listener's TLS files: both or neither, reloads that keep the old certificate on failure."""

from __future__ import annotations

import logging

import pytest
import trustme

from rbee.common.tls import ListenerTls, TlsError, TlsFiles, fingerprint


def _write(cert: trustme.LeafCert, folder) -> TlsFiles:
    files = TlsFiles(folder / "c.pem", folder / "k.pem")
    cert.cert_chain_pems[0].write_to_path(str(files.cert))
    cert.private_key_pem.write_to_path(str(files.key))
    return files


def test_cert_and_key_go_together(tmp_path):
    assert TlsFiles.of(None, None) is None
    with pytest.raises(TlsError, match="go together"):
        TlsFiles.of(tmp_path / "c.pem", None)


def test_a_key_that_does_not_match_is_refused_naming_the_files(tmp_path):
    ca = trustme.CA()
    files = _write(ca.issue_cert("127.0.0.1"), tmp_path)
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(files.key))
    with pytest.raises(TlsError, match="not a usable certificate and key"):
        ListenerTls(files, "queen")


def test_a_missing_file_is_refused_by_name(tmp_path):
    with pytest.raises(TlsError, match="does not exist"):
        ListenerTls(TlsFiles(tmp_path / "none.pem", tmp_path / "none.key"), "queen")


def test_a_failed_reload_logs_why_and_a_good_one_logs_the_new_fingerprint(tmp_path, caplog):
    ca = trustme.CA()
    files = _write(ca.issue_cert("127.0.0.1"), tmp_path)
    tls = ListenerTls(files, "queen")
    files.key.write_text("not a key\n")
    with caplog.at_level(logging.INFO):
        tls.reload()
        _write(ca.issue_cert("127.0.0.1"), tmp_path)
        tls.reload()
    assert "TLS reload failed, the old certificate stays" in caplog.text
    assert "not a key" not in caplog.text
    assert f"sha256 {fingerprint(files.cert)}" in caplog.text
