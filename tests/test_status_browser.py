"""The status page in a real browser (headless Chromium) against the real exporter running the demo.

One exporter (``--demo`` over a copy of the tiny models, one of them corrupted, a hostile GPU name
from the NVML stand-in, a strict Content-Security-Policy from ``--web.config.file``) and one
Chromium per look. The page must render without a single console message (a blocked stylesheet,
a CSP violation, an executed payload all log one), show the figures /metrics shows, and name the
corrupted file on a critical card. The screenshot is kept as a test artefact in
``build/test-artifacts/`` (or ``$WAN_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.procs import REPO, ExporterProcess, exporter_env, http_get, parse_metrics, wait_for, write_nvml_state

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(420)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is missing: scripts/test.sh installs Debian's chromium for the browser tests",
                    pytrace=False)
    pytest.skip("needs chromium (Debian package chromium; scripts/test.sh installs it)", allow_module_level=True)

CORRUPT_MODEL = "tiny-wan2.1-t2v"
CORRUPT_FILE = "transformer/diffusion_pytorch_model.safetensors"
# The label-hygiene fixture (tests/test_security_labels.py) plus a payload that would log if it ran.
HOSTILE_GPU = 'NVIDIA "H200"} evil{x="1"\\ \nnext <img src=x onerror="console.error(\'XSS\')"><script>console.error(1)</script>'
STRICT_CSP = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'"
ARTIFACTS = Path(os.environ.get("WAN_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))


class Chromium:
    """Headless Chromium, one run per look, with the page's console on stderr."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile

    def run(self, url: str, *args: str) -> subprocess.CompletedProcess:
        argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", f"--user-data-dir={self.profile}", "--enable-logging=stderr", "--v=0",
                *args, url]
        return subprocess.run(argv, capture_output=True, text=True, timeout=90)

    def dom(self, url: str) -> tuple[str, list[str]]:
        """The rendered DOM, and every console message the page logged."""
        r = self.run(url, "--dump-dom")
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stdout, [line for line in r.stderr.splitlines() if ":CONSOLE" in line]

    def screenshot(self, url: str, path: Path, size: str = "1400,2600") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        r = self.run(url, f"--screenshot={path}", f"--window-size={size}")
        assert r.returncode == 0 and path.stat().st_size > 10_000, r.stderr[-3000:]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("status-browser")
    tiny = tmp / "tiny-models"
    subprocess.run([sys.executable, "-m", "wan_exporter", "tiny-models", str(tiny)], env=exporter_env(),
                   check=True, timeout=300, capture_output=True)
    weights = tiny / "tiny-wan2.1-t2v" / CORRUPT_FILE
    with open(weights, "r+b") as f:  # cut the tensor data short: the header promises more than the file has
        f.truncate(weights.stat().st_size - 64)
    web = tmp / "web.yml"
    web.write_text("http_server_config:\n  headers:\n    Content-Security-Policy: " + json.dumps(STRICT_CSP)
                   + "\n    X-Frame-Options: deny\n")
    nvml = write_nvml_state(tmp / "nvml.json", gpus=[{"name": HOSTILE_GPU, "util_gpu": 37, "temperature": 64,
                                                      "memory_used": 9 << 30}])
    env = {"WAN_EXPORTER_CACHE": str(tiny), "HF_HUB_CACHE": str(tmp / "hf"), "XDG_STATE_HOME": str(tmp / "state"),
           "WAN_EXPORTER_NVML_MODULE": "support.fake_pynvml", "FAKE_NVML_STATE": str(nvml), "OMP_NUM_THREADS": "1"}
    with ExporterProcess(["--demo", f"--web.config.file={web}"], env=env, log_path=tmp / "exporter.log") as exp:
        yield {"exporter": exp, "chromium": Chromium(tmp / "chromium-profile"), "tmp": tmp}


def status_json(exp) -> dict:
    code, body = http_get(exp.url + "/api/v1/status")
    assert code == 200
    return json.loads(body)


def cards(dom: str) -> dict[str, dict[str, str]]:
    """Per model card: its status and every exact figure (``<data data-field value>``)."""
    out = {}
    for m in re.finditer(r'<details class="card s-(\w+)" id="model-([^"]+)"[^>]*>(.*?)</details>', dom, re.S):
        fields = dict(re.findall(r'<data data-field="([^"]+)" value="([^"]*)"', m.group(3)))
        fields["status"] = re.search(r'data-field="status">([^<]+)<', m.group(3)).group(1)
        fields["_html"] = m.group(3)
        out[m.group(2)] = fields
    return out


# (field on the card, metric family, labels beyond model) for each figure both show
FIGURES = [("files_present", "wan_model_files_present", {}), ("files_expected", "wan_model_files_expected", {}),
           ("size_bytes", "wan_model_size_bytes", {})]
BENCH_FIGURES = [("duration_seconds", "wan_generation_last_duration_seconds"),
                 ("seconds_per_step", "wan_generation_seconds_per_step"),
                 ("peak_memory_bytes", "wan_generation_peak_memory_bytes"),
                 ("peak_memory_ratio", "wan_generation_peak_memory_ratio"),
                 ("sanity_ratio", "wan_benchmark_output_sanity_ratio"),
                 ("performance_ratio", "wan_benchmark_performance_ratio")]


def expected_from_metrics(samples: dict, models: list[dict]) -> dict[str, dict[str, object]]:
    def get(name, **labels):
        return samples.get((name, tuple(sorted(labels.items()))))

    out = {}
    for m in models:
        n = m["name"]
        exp: dict[str, object] = {}
        for field, fam, extra in FIGURES:
            exp[field] = get(fam, model=n, **extra)
        # The integrity figure carries what it was compared against: one of the two references.
        exp["integrity_ratio"] = next((v for ref in ("published", "recorded")
                                       if (v := get("wan_model_integrity_ratio", model=n, reference=ref)) is not None),
                                      None)
        for b in m["benchmarks"]:
            for field, fam in BENCH_FIGURES:
                exp[f"benchmark.{b['profile']}.{field}"] = get(fam, model=n, profile=b["profile"])
        statuses = [s for s in ("healthy", "degraded", "critical", "missing")
                    if get("wan_model_health_status", model=n, status=s) == 1]
        exp["status"] = statuses[0] if statuses else "unknown"
        out[n] = exp
    return out


def test_demo_page_renders_clean_and_shows_what_metrics_shows(demo):
    exp, chromium = demo["exporter"], demo["chromium"]
    # Until the corrupted model is critical and at least one model has a measured benchmark.
    wait_for(lambda: (lambda v: any(m["name"] == CORRUPT_MODEL and m["status"] == "critical" for m in v["models"])
                      and any(b["last_success"] for m in v["models"] for b in m["benchmarks"]))(status_json(exp)),
             240, 1.0, "a critical card for the corrupted model and a first benchmark")
    # Read /metrics on both sides of the browser's look; compare once nothing moved in between.
    for _attempt in range(6):
        models = status_json(exp)["models"]
        before = expected_from_metrics(parse_metrics(exp.metrics_text()), models)
        dom, console = chromium.dom(exp.url + "/")
        after = expected_from_metrics(parse_metrics(exp.metrics_text()), models)
        if before == after:
            break
    else:
        pytest.fail("the exporter's figures changed during every look")
    assert console == [], "the page logged to the console:\n" + "\n".join(console)
    assert any(v is not None for want in before.values() for f, v in want.items() if f.startswith("benchmark.")), \
        "no benchmark figure to compare"

    shown = cards(dom)
    assert sorted(shown) == sorted(m["name"] for m in models)
    for name, want in before.items():
        card = shown[name]
        assert card["status"] == want["status"], (name, card["status"], want["status"])
        for field, value in want.items():
            if field == "status":
                continue
            got = card.get(field)
            if value is None:  # absent from /metrics: not measured, and the card must not show a figure
                assert got in (None, "null"), (name, field, got)
            else:
                assert got is not None and float(got) == pytest.approx(value, rel=1e-12, abs=0), (name, field, got, value)

    bad = shown[CORRUPT_MODEL]
    assert bad["status"] == "critical"
    assert CORRUPT_FILE in bad["_html"] and "truncated" in bad["_html"]
    assert 'class="card s-critical"' in dom

    # The hostile GPU name is shown as text and nothing of it ran (no element, no console line above).
    assert "&lt;img src=x onerror=" in dom and "&lt;script&gt;console.error(1)&lt;/script&gt;" in dom
    assert "<script" not in dom and "<img" not in dom

    shot = ARTIFACTS / "status-page.png"
    chromium.screenshot(exp.url + "/", shot)


def test_page_and_json_twin_carry_the_web_config_headers(demo):
    exp = demo["exporter"]
    import urllib.request

    for path, ctype in (("/", "text/html"), ("/api/v1/status", "application/json"), ("/status.css", "text/css")):
        with urllib.request.urlopen(exp.url + path, timeout=5) as r:
            assert r.headers["Content-Security-Policy"] == STRICT_CSP and r.headers["X-Frame-Options"] == "deny"
            assert r.headers["Content-Type"].startswith(ctype)
