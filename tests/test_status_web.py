"""The status page and its JSON twin behind ``--web.config.file``: TLS, basic auth and headers apply
to them exactly as to /metrics, on the real exporter process."""

from __future__ import annotations

import json

import bcrypt
import pytest

from support.web_certs import CA
from support.web_procs import SecureExporter, basic, client_context, https_get

pytestmark = pytest.mark.e2e

USER, PASSWORD = "reader", "st4tus-page"


def test_status_page_and_json_need_tls_and_auth_and_carry_the_headers(tmp_path):
    ca = CA(tmp_path / "pki")
    server = ca.server()
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.key}\n"
                   "http_server_config:\n  headers:\n    Content-Security-Policy: \"default-src 'self'\"\n"
                   f"basic_auth_users:\n  {USER}: {bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n")
    ctx = client_context(ca.cert_path)
    env = {"HF_HUB_CACHE": str(tmp_path / "hf"), "WAN_EXPORTER_NVML_MODULE": "no_such_nvml_module",
           "XDG_STATE_HOME": str(tmp_path / "state")}

    def probe(url: str) -> bool:
        return https_get(url + "/-/healthy", ctx=ctx, headers=basic(USER, PASSWORD), timeout=1)[0] == 200

    with SecureExporter([f"--web.config.file={web}"], probe, env=env, log_path=tmp_path / "exporter.log") as exp:
        for path in ("/", "/api/v1/status", "/status.css", "/metrics"):
            status, headers, _ = https_get(exp.url + path, ctx=ctx)
            assert status == 401 and "Basic" in headers.get("WWW-Authenticate", ""), (path, status)
            status, headers, _ = https_get(exp.url + path, ctx=ctx, headers=basic(USER, "wrong"))
            assert status == 401, path
            status, headers, body = https_get(exp.url + path, ctx=ctx, headers=basic(USER, PASSWORD))
            assert status == 200 and headers["Content-Security-Policy"] == "default-src 'self'", (path, headers)
        _, _, page = https_get(exp.url + "/", ctx=ctx, headers=basic(USER, PASSWORD))
        assert b"wan2.2-t2v-a14b" in page and b'href="status.css"' in page
        _, _, body = https_get(exp.url + "/api/v1/status", ctx=ctx, headers=basic(USER, PASSWORD))
        doc = json.loads(body)
        assert [m["name"] for m in doc["models"]] == ["wan2.2-t2v-a14b", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b"]
        assert doc["gpus"]["readable"] is False and doc["gpus"]["reason"] == "library_missing"
        assert doc["gpus"]["lost"] is False  # no NVML library: a host without a GPU, not a lost one
