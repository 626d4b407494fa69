"""Read the generated Grafana dashboards the way Grafana would: panels, targets, variables, PromQL.

Shared by tests/test_dashboards.py (static checks) and tests/test_dashboards_live.py (every
expression against a real Prometheus).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qsl, urlsplit

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO / "grafana" / "dashboards"
PROVISIONING_DIR = REPO / "grafana" / "provisioning"
RULES_DIR = REPO / "alerting" / "rules"
README = REPO / "README.md"

# Series that come from Prometheus or the Alertmanager, not from the exporter.
EXTERNAL_METRICS = {
    "up": "Prometheus: scrape health of every target",
    "scrape_duration_seconds": "Prometheus: duration of the scrape",
    "ALERTS": "Prometheus: alerts pending or firing",
    "alertmanager_alerts": "Alertmanager: alerts it holds, by state",
}
# Grafana's own variables a query or link may use.
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms",
                    "__url_time_range", "__all_variables", "__from", "__to", "__dashboard", "__org", "__user",
                    "__value", "__data", "__field", "__series", "timeFilter", "__timeFilter"}


def generator():
    """The dashboards' generator package (grafana/dashboards_src), importable from the repository root."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from grafana.dashboards_src import main

    return main


def load_dashboards(directory: Path = DASHBOARD_DIR) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))}


def panels(d: dict) -> Iterator[dict]:
    """Every panel, rows' children included (collapsed rows keep theirs inside)."""
    for p in d.get("panels") or []:
        yield p
        yield from p.get("panels") or []


def targets(d: dict) -> Iterator[tuple[dict, dict]]:
    for p in panels(d):
        for t in p.get("targets") or []:
            yield p, t


def variables(d: dict) -> dict[str, dict]:
    return {v["name"]: v for v in d.get("templating", {}).get("list", [])}


# -- variable references --------------------------------------------------------------------------------

VAR_RE = re.compile(r"\$\{([A-Za-z_]\w*)(?:[.:][^}]*)?\}|\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)(?::\w+)?\]\]")


def referenced_variables(text: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in VAR_RE.finditer(text)}


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana variables with concrete values, as Grafana does before sending a query."""
    def repl(m: re.Match) -> str:
        name = next(g for g in m.groups() if g)
        if name not in values:
            raise KeyError(f"no value for variable {name!r} in {expr!r}")
        return values[name]

    return VAR_RE.sub(repl, expr)


# -- metric names in PromQL -----------------------------------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_TOKEN = re.compile(r"(?<![A-Za-z0-9_.:$])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
             "unless", "inf", "nan", "Inf", "NaN", "atan2"}


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (metrics and recording rules), not functions or labels."""
    s = _STRINGS.sub('""', expr)
    s = _MATCHERS.sub("", s)
    s = _RANGES.sub("", s)
    s = _GROUPING.sub("", s)
    out = set()
    for m in _TOKEN.finditer(s):
        if m.group(0) in _KEYWORDS:
            continue
        if s[m.end():].lstrip().startswith("("):
            continue  # a function call
        if m.start() > 0 and s[m.start() - 1] == "$":
            continue  # a Grafana variable
        out.add(m.group(0))
    return out


LABEL_VALUES_RE = re.compile(r"^\s*label_values\((?:(.*),\s*)?(\w+)\)\s*$", re.S)


def label_values_parts(query: str) -> tuple[str | None, str]:
    """``label_values(selector, label)`` -> (selector or None, label)."""
    m = LABEL_VALUES_RE.match(query)
    if not m:
        raise ValueError(f"not a label_values() query: {query!r}")
    return m.group(1), m.group(2)


RANGE_FN_RE = re.compile(r"\b(rate|irate|increase|delta|idelta|deriv)\s*\(")


def range_windows(expr: str) -> list[str]:
    """The range of every rate()/increase()-like call, e.g. ['$__rate_interval', '24h']."""
    out = []
    for m in RANGE_FN_RE.finditer(expr):
        depth, i = 1, m.end()
        while i < len(expr) and depth:
            depth += {"(": 1, ")": -1}.get(expr[i], 0)
            i += 1
        inner = expr[m.end():i - 1]
        ranges = re.findall(r"\[([^\[\]:]+)\]\s*$", inner)
        out.extend(ranges or ["<none>"])
    return out


# -- what the exporter exposes, what the README documents, what the rules record ----------------------------

def exposed_metric_names() -> set[str]:
    """Sample names of every metric family the exporter's registry describes (an App that never starts)."""
    if str(REPO / "exporter") not in sys.path:
        sys.path.insert(0, str(REPO / "exporter"))
    from wan_exporter.app import App
    from wan_exporter.config import parse_config

    cfg = parse_config(
        "models:\n  - {name: m, kind: wan2.2-ti2v-5b, hub_id: a/b, profiles: [p]}\n"
        "profiles:\n  p: {width: 32, height: 32, frames: 9, steps: 2}\n"
        "exporter:\n  hf_cache_dir: /nonexistent/hf-cache\n", "<dashboard tests>")
    names = set()
    for fam in App(cfg).registry.collect():
        suffixes = {"counter": ["_total"], "info": ["_info"], "histogram": ["_bucket", "_sum", "_count"],
                    "summary": ["_sum", "_count"], "stateset": [""], "gauge": [""], "untyped": [""]}[fam.type]
        names.update(fam.name + s for s in suffixes)
    # Traffic families are exposed by a service instrumented with wan_exporter.instrument, not by the exporter.
    from wan_exporter.contract import traffic

    for f in traffic.FAMILIES:
        suffixes = {"histogram": ["_bucket", "_sum", "_count"]}.get(f.type, [""])
        names.update(f.exposed_name + s for s in suffixes)
    return names


README_ROW_NAME = re.compile(r"`([a-zA-Z_:][a-zA-Z0-9_:]*)`")


def readme_metric_names(readme: Path = README) -> set[str]:
    """Metric names in backticks in the README's markdown table rows (its metrics reference)."""
    if not readme.exists():
        return set()
    text = readme.read_text(encoding="utf-8")
    m = re.search(r"<!-- metrics-reference:(?:begin|start)\b.*?-->(.*?)<!-- metrics-reference:end", text, re.S)
    if m:
        text = m.group(1)  # only the reference section, when the README marks it
    names = set()
    for line in text.splitlines():
        if line.lstrip().startswith("|"):
            names.update(n for n in README_ROW_NAME.findall(line) if n.startswith("wan_"))
    return names


def documented(name: str, documented_names: set[str]) -> bool:
    """A series name is documented under its own name or its family's (histogram/counter/info suffixes)."""
    if name in documented_names:
        return True
    for suffix in ("_bucket", "_sum", "_count", "_total", "_info"):
        if name.endswith(suffix) and name[: -len(suffix)] in documented_names:
            return True
    return any(n + s == name for n in documented_names for s in ("_total", "_info"))


def recording_rule_names(rules_dir: Path = RULES_DIR) -> set[str]:
    import yaml

    names = set()
    for path in sorted(rules_dir.glob("*.yml")):
        for group in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("groups", []):
            names.update(r["record"] for r in group.get("rules", []) if "record" in r)
    return names


def alert_dashboard_urls(rules_dir: Path = RULES_DIR) -> list[tuple[str, str]]:
    import yaml

    out = []
    for path in sorted(rules_dir.glob("*.yml")):
        for group in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("groups", []):
            for r in group.get("rules", []):
                url = (r.get("annotations") or {}).get("dashboard_url")
                if url:
                    out.append((r["alert"], url))
    return out


def dashboard_link_target(url: str) -> tuple[str | None, set[str]]:
    """For a Grafana URL: the dashboard uid it opens (or None) and the ``var-*`` variables it sets."""
    parts = urlsplit(url)
    m = re.match(r"^/d/([^/?]+)", parts.path)
    uid = m.group(1) if m else None
    names = {k[4:] for k, _ in parse_qsl(parts.query, keep_blank_values=True) if k.startswith("var-")}
    # ${name:queryparam} expands to var-name=value (and var-name=... per value).
    names |= set(re.findall(r"\$\{(\w+):queryparam\}", parts.query))
    return uid, names
