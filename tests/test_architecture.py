"""The package's shape: its stages import only downward, no module imports itself back, no
module is too long to read in one sitting (docs/architecture.md says what each stage holds)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 600


def test_stages_import_only_downward() -> None:
    """import-linter's contracts in pyproject.toml: the layers, and a contract that imports nothing heavy."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "exporter"))
    lint = Path(sys.executable).with_name("lint-imports")
    cmd = [str(lint)] if lint.exists() else [sys.executable, "-m", "importlinter.cli"]
    out = subprocess.run([*cmd, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.find_modules_directly_imported_by(w)))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                group = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    group.append(x)
                    if x == v:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_no_import_circle() -> None:
    sys.path.insert(0, str(ROOT / "exporter"))
    try:
        graph = grimp.build_graph("wan_exporter", cache_dir=None)
    finally:
        sys.path.remove(str(ROOT / "exporter"))
    assert _cycles(graph) == []


@pytest.mark.parametrize("tree", ["exporter", "alerting", "grafana", "benchmarks", "scripts", "deploy", "tests"])
def test_no_module_over_the_limit(tree: str) -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
                           cwd=ROOT / tree, capture_output=True, text=True, check=True).stdout.split()
    long = {f"{tree}/{f}": n for f in files
            if (ROOT / tree / f).is_file() and (n := len((ROOT / tree / f).read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: split them by concern"
