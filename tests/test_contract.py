"""The contract and what is served agree, in both directions, without starting anything.

Every family the collectors serve is declared with the same type, help and labels; every
declared family is served by one of two fixed snapshots (the golden one and a fuller one
here); bounded labels take only their declared values; the rule files record exactly the
contract's rule names; the thresholds shared with the alerts hold the same figure.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from test_metrics_golden import CONFIG, T0, fixed_snapshot
from wan_exporter import contract
from wan_exporter.app import App
from wan_exporter.checkpoint.facts import CheckpointFacts
from wan_exporter.config import Thresholds, parse_config
from wan_exporter.contract import Family, rules, thresholds
from wan_exporter.state import BenchmarkResult, CheckResult, HealthIssue, frozen_map

ROOT = Path(__file__).resolve().parents[1]
EXPOSED = {f.exposed_name: f for f in contract.families()}


def full_snapshot():
    """Everything measured at least once: facts, every check, a healthy last run."""
    snap = fixed_snapshot()
    facts = CheckpointFacts(pipeline_class="WanPipeline", experts=1, boundary_ratio=0.9, expand_timesteps=True,
                            parameters_by_component=frozen_map({"transformer": 5_000_000_000}),
                            denoiser_parameters=5_000_000_000, dtypes=("bfloat16",), transformer_config=frozen_map(),
                            vae_z_dim=48, has_image_encoder=False, problems=())
    checks = {}
    for check, fact in (("layout", {"files_expected": 9, "files_present": 9, "size_bytes": 10 << 30,
                                    "form": "diffusers"}),
                        ("headers", {"catalog_mismatches": 1}),
                        ("hash", {"expected_bytes": 10 << 30, "verified_bytes": 10 << 30,
                                  "published_bytes": 10 << 30, "recorded_bytes": 0, "manifest_files": 0,
                                  "content_digest": "ab" * 32}),
                        ("load", {})):
        issues = (HealthIssue("catalog_mismatch", "experts"),) if check == "headers" else ()
        checks[("ti2v-5b", check)] = CheckResult("ti2v-5b", check, True, 0.01, T0, issues, frozen_map(fact))
    last = BenchmarkResult(model="t2v-a14b", profile="probe", success=True, started_at=T0, finished_at=T0 + 99,
                           duration_seconds=12.0, process_start_seconds=3.0, phases=frozen_map({"denoise": 10.0}),
                           steps=4, seconds_per_step=2.5, frames=17, width=832, height=480,
                           peak_memory_bytes=40 << 30, peak_memory_kind="cuda", device="cuda:0",
                           sanity=frozen_map({"finite": True}), gpu_uuid="GPU-aaaa", gpu_name="NVIDIA H200")
    agg = replace(snap.benchmarks[("t2v-a14b", "probe")], last=last, last_success=last, consecutive_failures=0)
    return replace(snap, checks=frozen_map(checks),
                   check_last_success=frozen_map({("ti2v-5b", c): T0 for c in ("layout", "headers", "hash")}),
                   checkpoint_facts=frozen_map({"t2v-a14b": {"present": False},
                                                "ti2v-5b": {"present": True, "dir": "/m", "facts": facts}}),
                   benchmarks=frozen_map({("t2v-a14b", "probe"): agg}))


def served(snapshot) -> str:
    app = App(parse_config(CONFIG))
    app.store.update(lambda s: snapshot)
    return generate_latest(app.registry).decode()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> tuple[dict[str, tuple[str, str]], list[tuple[str, dict[str, str]]]]:
    meta: dict[str, list[str]] = {}
    samples = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            meta.setdefault(name, ["", ""])[1] = doc.replace("\\\\", "\\").replace("\\n", "\n")
        elif line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            meta.setdefault(name, ["", ""])[0] = typ
        elif line and not line.startswith("#"):
            m = _SAMPLE.match(line)
            samples.append((m.group(1), dict(_LABEL.findall(m.group(2) or ""))))
    return {k: (v[0], v[1]) for k, v in meta.items()}, samples


def _family_of(sample: str, declared: dict[str, Family]) -> Family | None:
    for suffix in ("", "_total", "_info", "_bucket", "_sum", "_count", "_created"):
        base = sample[: -len(suffix)] if suffix and sample.endswith(suffix) else sample
        if suffix and not sample.endswith(suffix):
            continue
        if base in declared:
            return declared[base]
    return None


@pytest.fixture(scope="module")
def expositions() -> list[str]:
    return [served(fixed_snapshot()), served(full_snapshot())]


def test_every_served_family_is_declared_as_served(expositions):
    for text in expositions:
        meta, _ = parse(text)
        for name, (typ, doc) in meta.items():
            fam = EXPOSED.get(name)
            assert fam is not None, f"{name} is served but not declared in wan_exporter.contract"
            # The text format (0.0.4) writes info families as gauges.
            assert {"info": "gauge"}.get(fam.type, fam.type) == typ and fam.help == doc, name


def test_every_declared_family_is_served_with_its_labels(expositions):
    seen: set[str] = set()
    for text in expositions:
        for name, labels in parse(text)[1]:
            fam = _family_of(name, contract.BY_NAME)
            assert fam is not None, name
            seen.add(fam.name)
            expected = set(fam.labels) | ({"le"} if name.endswith("_bucket") else set())
            assert set(labels) == expected, (name, labels)
            for label, values in fam.bounded.items():
                assert labels[label] in values, f"{name}: {label}={labels[label]!r} is not declared"
    # Traffic families are served by the instrumented serving process (tests/test_instrument.py), not the exporter.
    exporter_served = {f.name for f in contract.families() if f.source != "traffic"}
    assert not exporter_served - seen, f"declared but served by no fixture: {exporter_served - seen}"


def test_rule_files_record_exactly_the_contract_rule_names():
    recorded = []
    for path in sorted((ROOT / "alerting" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            recorded += [r["record"] for r in group["rules"] if "record" in r]
    assert len(recorded) == len(set(recorded))
    assert set(recorded) == set(rules.ALL)


def test_thresholds_shared_with_the_alerts_hold_the_same_figure():
    alert = yaml.safe_load((ROOT / "alerting" / "thresholds.yml").read_text())["thresholds"]
    for t in thresholds.EXPORTER:
        assert getattr(Thresholds(), t.name) == t.default
        if t.alert_key:
            assert alert[t.alert_key] == t.default, t.name


def test_a_malformed_family_fails_when_it_is_declared():
    with pytest.raises(ValueError, match="without _total"):
        Family("wan_x_total", "counter", "x")
    with pytest.raises(ValueError, match="not a label"):
        Family("wan_x", "gauge", "x", labels=("model",), bounded={"reason": ("a",)})
    with pytest.raises(ValueError, match="base units|lower-case"):
        Family("wan_X", "gauge", "x")
