"""Shared pieces of the suite: the run context, result rows, statistics, the machine description."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
# The exporter tree measured: this checkout's, or another one (``run --exporter-src``, e.g. a patched copy).
EXPORTER_SRC = Path(os.environ.get("WAN_BENCH_EXPORTER_SRC") or REPO / "exporter").resolve()
TESTS_DIR = REPO / "tests"

for _p in (EXPORTER_SRC, TESTS_DIR):  # wan_exporter and support.fake_pynvml, without an install
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


@dataclass
class Row:
    """One figure next to its reference: ``ratio`` = value / ref_value (lower is better unless noted)."""

    figure: str
    value: float | None
    unit: str
    reference: str = ""
    ref_value: float | None = None
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None  # None: no goal, or not measurable here
    note: str = ""

    def __post_init__(self) -> None:
        if self.ratio is None and self.value is not None and self.ref_value:
            self.ratio = self.value / self.ref_value


@dataclass
class Table:
    """A free-form table (breakdowns, scale grids) rendered under an item."""

    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class ItemResult:
    item: str  # "1", "2", ...
    title: str
    rows: list[Row] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str = ""  # why the item did not run
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "ItemResult":
        return cls(item=d["item"], title=d["title"], rows=[Row(**r) for r in d.get("rows", [])],
                   tables=[Table(**t) for t in d.get("tables", [])], notes=list(d.get("notes", [])),
                   skipped=d.get("skipped", ""), seconds=d.get("seconds", 0.0))


@dataclass
class Context:
    out: Path
    work: Path  # scratch space (temp dir), removed at the end
    quick: bool = False
    tiny_dir: Path | None = None  # built tiny models (one folder per kind)
    log: Callable[[str], None] = print
    keep: bool = False
    profile: bool = True  # py-spy the exporter in item P
    devices: list[str] = field(default_factory=lambda: ["cpu"])  # item 3
    pairs: int | None = None  # item 3, overrides the default pair count

    def scratch(self, name: str) -> Path:
        p = self.work / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def n(self, full: int, quick: int) -> int:
        return quick if self.quick else full


# --------------------------------------------------------------------------- statistics


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        return float("nan")
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


# --------------------------------------------------------------------------- machine


def _cmd(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _pkg_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    """What the figures were measured on (read without importing torch here)."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    virt = _cmd(["systemd-detect-virt"]) or ("KVM guest" if "hypervisor" in Path("/proc/cpuinfo").read_text() else "")
    ne = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    gpu = ""
    if shutil.which("nvidia-smi"):
        gpu = ", ".join(_cmd(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"])
                        .splitlines())
    return {
        **({"gpu": gpu} if gpu else {}),
        "cpu": cpu or platform.processor(),
        "cores": str(os.cpu_count()),
        "memory": mem,
        "kernel": f"{platform.system()} {platform.release()}",
        "virtualisation": virt or "none detected",
        "os": _cmd(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "torch": _pkg_version("torch"),
        "diffusers": _pkg_version("diffusers"),
        "transformers": _pkg_version("transformers"),
        "prometheus_client": _pkg_version("prometheus-client"),
        "psutil": _pkg_version("psutil"),
        "node_exporter": (_cmd([ne, "--version"]).splitlines() or ["?"])[0] if ne else "not installed",
        "prometheus": (_cmd(["prometheus", "--version"]).splitlines() or ["not installed"])[0],
        "alertmanager": (_cmd(["prometheus-alertmanager", "--version"]).splitlines() or ["not installed"])[0],
        "sha256sum": (_cmd(["sha256sum", "--version"]).splitlines() or ["?"])[0],
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def tiny_models(ctx: "Context", given: Path | None) -> Path | None:
    """Built tiny pipelines: ``given``, else the exporter's cache when complete, else built now.

    The full suite builds every kind into the cache (``python3 -m wan_exporter tiny-models``,
    about a minute, once); ``--quick`` builds only ``tiny-wan2.1-t2v`` into the scratch folder.
    """
    from wan_exporter.tiny import TINY_KINDS, default_cache_dir, is_built

    if given is not None:
        return given.resolve()
    cache = default_cache_dir()
    if all(is_built(cache / k) for k in TINY_KINDS):
        return cache
    if ctx.quick:
        dest = ctx.scratch("tiny")
        code = ("import sys; from wan_exporter import tiny; "
                "tiny.build_all(sys.argv[1], ['tiny-wan2.1-t2v'])")
        target = dest
    else:
        dest = cache
        code = "import sys; from wan_exporter import tiny; tiny.build_all(sys.argv[1])"
        target = cache
    ctx.log(f"building tiny models into {target} ...")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(EXPORTER_SRC), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", code, str(target)], env=env, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        ctx.log(f"could not build tiny models: {r.stderr[-2000:]}")
        return None
    return dest


def built_kinds(tiny_dir: Path | None) -> list[str]:
    if tiny_dir is None:
        return []
    from wan_exporter.tiny import TINY_KINDS, is_built

    return [k for k in TINY_KINDS if is_built(tiny_dir / k)]


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0
