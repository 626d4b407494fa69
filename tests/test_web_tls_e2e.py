"""TLS, mutual TLS and basic auth on the real exporter process, checked with curl and a real Prometheus.

Certificates come from a throwaway CA made by the test; bcrypt hashes use a low cost so
the suite stays quick (the cost is whatever the hash says; the code is the same).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import bcrypt
import pytest

from support.peers import PEER_IDS, PEER_SETS
from support.procs import wait_for
from support.web_certs import CA
from support.web_procs import (
    PrometheusProcess,
    SecureExporter,
    basic,
    client_context,
    curl,
    https_get,
    peer_serial,
    settle,
    wait_targets,
    write_atomically,
)
from support.tools import require_tool

pytestmark = pytest.mark.e2e

USER, PASSWORD = "prometheus", "scrape-s3cret"
COST = 8  # ~30 ms here: enough for bcrypt to dominate a request, cheap enough for a test


def _hash(password: str, cost: int = COST) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


def _env(tmp: Path) -> dict:
    return {"HF_HUB_CACHE": str(tmp / "hf"), "WAN_EXPORTER_NVML_MODULE": "no_such_nvml_module",
            "XDG_STATE_HOME": str(tmp / "state")}


def _promtool_ok(path: Path) -> None:
    r = subprocess.run([require_tool("promtool"), "check", "web-config", str(path)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = CA(d)
    stranger_ca = CA(d / "other", name="stranger CA")
    return SimpleNamespace(ca=ca, server=ca.server(), client=ca.client(), stranger=stranger_ca.client("stranger"))


@pytest.fixture(scope="module")
def mtls(pki, tmp_path_factory):
    """Exporter with RequireAndVerifyClientCert, basic auth and security headers."""
    d = tmp_path_factory.mktemp("mtls")
    web = d / "web-config.yml"
    web.write_text(
        "tls_server_config:\n"
        f"  cert_file: {pki.server.cert}\n"
        f"  key_file: {pki.server.key}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca_file: {pki.ca.cert_path}\n"
        "http_server_config:\n"
        "  headers:\n"
        "    X-Content-Type-Options: nosniff\n"
        "    Strict-Transport-Security: max-age=31536000\n"
        "basic_auth_users:\n"
        f"  {USER}: {_hash(PASSWORD)}\n"
    )
    _promtool_ok(web)
    ctx = client_context(pki.ca.cert_path, pki.client.cert, pki.client.key)

    def probe(url: str) -> bool:
        return https_get(url + "/-/healthy", ctx=ctx, headers=basic(USER, PASSWORD), timeout=1)[0] == 200

    exp = SecureExporter([f"--web.config.file={web}"], probe, env=_env(d), log_path=d / "exporter.log")
    with exp:
        yield SimpleNamespace(exp=exp, ctx=ctx, web=web)


def test_mutual_tls_and_basic_auth_with_curl(mtls, pki):
    url = mtls.exp.url + "/metrics"
    ca = ["--cacert", str(pki.ca.cert_path)]
    cert = ["--cert", str(pki.client.cert), "--key", str(pki.client.key)]

    rc, code, out = curl(*ca, "-u", f"{USER}:{PASSWORD}", url)
    assert rc != 0 and code == "000", f"no client certificate must fail the TLS session: {out}"
    rc, code, out = curl(*ca, "--cert", str(pki.stranger.cert), "--key", str(pki.stranger.key),
                         "-u", f"{USER}:{PASSWORD}", url)
    assert rc != 0 and code == "000", f"a certificate from another CA must be refused: {out}"

    rc, code, out = curl(*ca, *cert, url)
    assert (rc, code) == (0, "401") and 'www-authenticate: basic realm="wan-exporter"' in out.lower(), out
    rc, code, out = curl(*ca, *cert, "-u", f"{USER}:wrong", url)
    assert (rc, code) == (0, "401") and "www-authenticate: basic" in out.lower(), out
    rc, code, out = curl(*ca, *cert, "-u", f"nobody:{PASSWORD}", url)
    assert (rc, code) == (0, "401"), out

    rc, code, out = curl(*ca, *cert, "-u", f"{USER}:{PASSWORD}", url)
    assert (rc, code) == (0, "200"), out
    assert "wan_exporter_" in out and "x-content-type-options: nosniff" in out.lower()
    assert "strict-transport-security: max-age=31536000" in out.lower()

    # Plain HTTP to the TLS port gets a readable refusal, as from Go's server.
    rc, code, out = curl(mtls.exp.url.replace("https://", "http://") + "/metrics")
    assert code == "400" and "HTTPS server" in out, out
    mtls.exp.alive()


@pytest.mark.parametrize("peers", PEER_SETS, ids=PEER_IDS)
def test_prometheus_scrapes_with_matching_scrape_config(mtls, pki, tmp_path, peers):
    # A second exporter: TLS without client certificates or users (examples/web-config-tls.yml).
    web = tmp_path / "web-tls.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.server.key}\n"
                   "  min_version: TLS12\n")
    _promtool_ok(web)
    tls_ctx = client_context(pki.ca.cert_path)
    tls_exp = SecureExporter([f"--web.config.file={web}"],
                             lambda url: https_get(url + "/-/healthy", ctx=tls_ctx, timeout=1)[0] == 200,
                             env=_env(tmp_path), log_path=tmp_path / "tls-exporter.log")
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)

    def job(name: str, exp: SecureExporter, tls: str, auth: str = "") -> str:
        return (f"  - job_name: {name}\n    scheme: https\n    tls_config:\n{tls}{auth}"
                f"    static_configs:\n      - targets: ['127.0.0.1:{exp.port}']\n")

    ca = f"      ca_file: {pki.ca.cert_path}\n      server_name: localhost\n"
    client = f"      cert_file: {pki.client.cert}\n      key_file: {pki.client.key}\n"
    good_auth = f"    basic_auth:\n      username: {USER}\n      password_file: {password_file}\n"
    bad_auth = f"    basic_auth:\n      username: {USER}\n      password: not-the-password\n"
    with tls_exp:
        config = ("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
                  + job("mtls-basic-auth", mtls.exp, ca + client, good_auth)
                  + job("mtls-wrong-password", mtls.exp, ca + client, bad_auth)
                  + job("mtls-no-client-cert", mtls.exp, ca, good_auth)
                  + job("tls", tls_exp, ca))
        (tmp_path / "prom-check.yml").write_text(config)
        r = subprocess.run([peers.need("promtool", "prometheus").promtool, "check", "config",
                            str(tmp_path / "prom-check.yml")], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        with PrometheusProcess(config, tmp_path / "prom", peers=peers) as prom:
            jobs = ["mtls-basic-auth", "mtls-wrong-password", "mtls-no-client-cert", "tls"]
            targets = wait_targets(prom, jobs)
            assert targets["mtls-basic-auth"]["health"] == "up", targets["mtls-basic-auth"]["lastError"]
            assert targets["tls"]["health"] == "up", targets["tls"]["lastError"]
            assert targets["mtls-wrong-password"]["health"] == "down"
            assert "401" in targets["mtls-wrong-password"]["lastError"]
            assert targets["mtls-no-client-cert"]["health"] == "down"
            assert targets["mtls-no-client-cert"]["lastError"], "refused without a client certificate"
            # The scrapes carried the exporter's own series into Prometheus.
            res = wait_for(lambda: prom.api("/api/v1/query", query='count({job="mtls-basic-auth"})')["result"],
                           10, 0.25, "samples from the mTLS job")
            assert float(res[0]["value"][1]) > 10
        # A client that does not trust the CA is refused by curl too; one that does gets in.
        rc, code, out = curl(tls_exp.url + "/-/healthy")
        assert rc != 0 and code == "000"
        rc, code, out = curl("--cacert", str(pki.ca.cert_path), tls_exp.url + "/-/healthy")
        assert (rc, code) == (0, "200"), out


def test_unknown_user_costs_the_same_as_a_wrong_password(mtls):
    url = mtls.exp.url + "/-/healthy"

    def timed(user: str, password: str) -> float:
        t0 = time.perf_counter()
        status, _, _ = https_get(url, ctx=mtls.ctx, headers=basic(user, password))
        elapsed = time.perf_counter() - t0
        assert status == 401
        return elapsed

    unknown, wrong = [], []
    for i in range(7):  # fresh passwords: nothing cached, every try pays bcrypt
        unknown.append(timed(f"nobody-{i}-{os.getpid()}", f"guess-{i}"))
        wrong.append(timed(USER, f"wrong-{i}-{time.monotonic_ns()}"))
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 0.5 < ratio < 2.0, (unknown, wrong)
    # bcrypt dominates those requests: a cached right password is clearly cheaper, so the
    # comparison above measured the verification, not the connection.
    assert https_get(url, ctx=mtls.ctx, headers=basic(USER, PASSWORD))[0] == 200  # now cached
    ok_times = []
    for _ in range(5):
        t0 = time.perf_counter()
        assert https_get(url, ctx=mtls.ctx, headers=basic(USER, PASSWORD))[0] == 200
        ok_times.append(time.perf_counter() - t0)
    assert statistics.median(ok_times) < statistics.median(wrong), (ok_times, wrong)


def test_certificate_and_users_rotate_without_restart(pki, tmp_path):
    d = tmp_path
    cert, key = d / "server.crt", d / "server.key"
    shutil.copy(pki.server.cert, cert)
    shutil.copy(pki.server.key, key)
    web = d / "web-config.yml"

    def write_web(users: dict[str, str]) -> None:
        lines = "".join(f"  {u}: {h}\n" for u, h in users.items())
        write_atomically(web, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                              f"basic_auth_users:\n{lines}")

    write_web({"alice": _hash("one")})
    ctx = client_context(pki.ca.cert_path)

    def status(user: str, password: str) -> int:
        return https_get(exp.url + "/-/healthy", ctx=ctx, headers=basic(user, password), timeout=2)[0]

    exp = SecureExporter([f"--web.config.file={web}"], lambda url: status("alice", "one") == 200,
                         env=_env(d), log_path=d / "exporter.log")
    with exp:
        pid = exp.proc.pid
        assert peer_serial("127.0.0.1", exp.port, ctx) == pki.server.serial

        # New certificate from the same CA, swapped in file by file (a moment of mismatch included).
        new = pki.ca.issue("rotated", "localhost", server=True, dns=("localhost",), ips=("127.0.0.1",))
        write_atomically(cert, new.cert.read_bytes())
        settle()
        write_atomically(key, new.key.read_bytes())
        wait_for(lambda: peer_serial("127.0.0.1", exp.port, ctx) == new.serial, 5, 0.2, "the rotated certificate")

        # New password for alice, and a new user.
        write_web({"alice": _hash("two"), "bob": _hash("three")})
        wait_for(lambda: status("alice", "two") == 200, 5, 0.2, "the rotated users")
        assert status("alice", "one") == 401
        assert status("bob", "three") == 200

        # A broken rotation keeps the last good config, and says so in the log.
        write_atomically(web, "basic_auth_users: [this is not a mapping\n")
        settle()
        assert status("alice", "two") == 200 and status("alice", "one") == 401
        wait_for(lambda: "keeping the last good one" in exp.log_tail(20000), 5, 0.2, "the reload error in the log")
        write_web({"alice": _hash("four")})
        wait_for(lambda: status("alice", "four") == 200, 5, 0.2, "recovery after the broken file")

        exp.alive()
        assert exp.proc.pid == pid
