"""What a hostile client or file name can do to the exporter, tried on real processes.

- A flood of wrong passwords never starves authenticated scrapes: password checks (bcrypt) run
  on a thread of their own, outside the request slots; verified credentials are cached; failed
  checks are limited per source address (429 beyond).
- HEAD is served where GET is, and the 405 of any other method lists exactly what is served;
  the Server header names no Python version.
- Control characters in file names reach the terminal escaped (``check-model``).
- Deeply nested YAML and duplicate keys are config errors with their path, never a traceback
  or a silently dropped value.
"""

from __future__ import annotations

import base64
import platform
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import bcrypt
import pytest

from support.procs import ExporterProcess, exporter_env, http_get

pytestmark = pytest.mark.e2e

PASSWORD = "wonderland"


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class AuthExporter(ExporterProcess):
    def ready(self) -> bool:
        return http_get(self.ready_url, 1, headers=basic("alice", PASSWORD))[0] == 200


def request(url: str, method: str = "GET", headers: dict | None = None, timeout: float = 5.0):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    web = tmp / "web.yml"
    # Cost 10, as htpasswd -B makes by default: about 50-100 ms of CPU per check here.
    web.write_text(f"basic_auth_users:\n  alice: {bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()}\n")
    cfg = tmp / "wan.yaml"
    cfg.write_text(f"models: []\nexporter: {{state_dir: '{tmp / 'state'}'}}\n")
    with AuthExporter([f"--config.file={cfg}", f"--web.config.file={web}", "--no-collector.gpu"],
                      log_path=tmp / "exporter.log") as exp:
        yield exp


def test_wrong_password_flood_never_starves_authenticated_scrapes(secured):
    url = secured.url + "/metrics"
    assert request(url, headers=basic("alice", PASSWORD))[0] == 200  # verified once, as a scraper's first scrape
    stop = threading.Event()
    flood: Counter = Counter()
    lock = threading.Lock()

    def attacker() -> None:
        while not stop.is_set():
            try:
                status = request(url, headers=basic("alice", secrets.token_hex(8)), timeout=10)[0]
            except OSError as e:
                status = type(e).__name__
            with lock:
                flood[status] += 1

    threads = [threading.Thread(target=attacker, daemon=True) for _ in range(24)]
    for t in threads:
        t.start()
    scrapes: Counter = Counter()
    worst = 0.0
    try:
        time.sleep(0.5)  # the flood is on
        end = time.monotonic() + 10
        while time.monotonic() < end:
            t0 = time.monotonic()
            status, _, body = request(url, headers=basic("alice", PASSWORD), timeout=10)
            worst = max(worst, time.monotonic() - t0)
            scrapes[status] += 1
            assert status != 200 or b"wan_exporter_build_info" in body
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert set(scrapes) == {200} and scrapes[200] >= 30, (scrapes, flood)
    # The flood was refused: 401 for the guesses bcrypt checked, 429 once the source ran out of failures.
    assert flood[401] > 0 and flood[429] > 0, flood
    assert flood[503] == 0, f"request slots were held by password checks: {flood}"
    assert flood[429] > flood[401], flood  # most guesses never reached bcrypt
    secured.alive()


def test_head_options_and_unknown_methods_agree_with_allow_and_server_names_no_python(secured):
    auth = basic("alice", PASSWORD)
    status, h_get, body = request(secured.url + "/metrics", headers=auth)
    assert status == 200 and int(h_get["Content-Length"]) == len(body) > 0
    for path in ("/metrics", "/", "/-/healthy", "/-/ready", "/api/v1/status"):
        status, h, body = request(secured.url + path, method="HEAD", headers=auth)
        assert status == 200 and body == b"", (path, status)
        assert int(h["Content-Length"]) > 0, (path, h)
        status, h, _ = request(secured.url + path, method="DELETE", headers=auth)
        assert status == 405 and h["Allow"] == "GET, HEAD, OPTIONS", (path, status, h)
        status, h, _ = request(secured.url + path, method="OPTIONS", headers=auth)
        assert status == 200 and h["Allow"] == "GET, HEAD, OPTIONS", (path, status, h)
    for headers in (h_get, request(secured.url + "/metrics", method="PUT", headers=auth)[1],
                    request(secured.url + "/metrics")[1]):  # the app's answer, a 405, a 401
        server = headers.get("Server", "")
        assert "python" not in server.lower() and platform.python_version() not in server, server


def test_check_model_escapes_control_characters_of_file_names(tmp_path):
    import json

    model = tmp_path / "m"
    (model / "transformer").mkdir(parents=True)
    (model / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline", "_diffusers_version": "0.42.1",
                                                        "transformer": ["diffusers", "WanTransformer3DModel"]}))
    (model / "transformer" / "config.json").write_text('{"_class_name": "WanTransformer3DModel"}')
    crafted = "a\r\x1b[2K\x1b[1Averdict: healthy\x07\u202e.safetensors"  # would erase the critical line
    (model / "transformer" / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": {"w": crafted}}))
    r = subprocess.run([sys.executable, "-m", "wan_exporter", "check-model", "--no-hash", "--no-load", str(model)],
                       capture_output=True, text=True, env=exporter_env(), timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    for c in "\r\x1b\x07\u202e":
        assert c not in r.stdout and c not in r.stderr, repr(c)
    assert "a\\x0d\\x1b[2K\\x1b[1Averdict: healthy\\x07\\u202e.safetensors" in r.stdout, r.stdout
    assert r.stdout.rstrip().splitlines()[-1].startswith("verdict: critical"), r.stdout


@pytest.mark.parametrize("text, message", [
    ("profiles:\n  p: {width: 32}\n  p: {width: 64}\n", "profiles.p: duplicate key (line 3)"),
    ("models: []\nmodels: []\n", "models: duplicate key (line 2)"),
    ("profiles:\n  p: " + "[" * 20_000 + "]" * 20_000 + "\n", "profiles.p[0][0]"),
    ("profiles:\n  p:\n" + "".join("  " * (i + 2) + f"k{i}:\n" for i in range(60)) + "  " * 62 + "v\n",
     "profiles.p.k0.k1"),
], ids=["duplicate-nested-key", "duplicate-top-key", "deep-flow-sequence", "deep-block-mapping"])
def test_nested_and_duplicate_yaml_is_an_error_with_its_path(tmp_path, text, message):
    cfg = tmp_path / "wan.yaml"
    cfg.write_text(text)
    r = subprocess.run([sys.executable, "-m", "wan_exporter", "check-config", str(cfg)], capture_output=True,
                       text=True, env=exporter_env(), timeout=60)
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    if "[[[" in text:
        assert "nested deeper than 32 levels" in r.stderr
    # The exporter itself refuses to start on it, with the same message.
    r = subprocess.run([sys.executable, "-m", "wan_exporter", f"--config.file={cfg}", "--web.listen-address=127.0.0.1:0"],
                       capture_output=True, text=True, env=exporter_env(), timeout=60)
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
