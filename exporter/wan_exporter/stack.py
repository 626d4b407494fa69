"""The native stack: the exporter, Prometheus and Alertmanager on loopback, without Docker.

    wan-exporter stack --demo        # or: python3 -m wan_exporter.stack --demo, bash scripts/stack.sh --demo

It runs the same configuration docker-compose runs (``alerting/prometheus.yml``, the rule
files it loads, ``alerting/alertmanager.yml`` and its templates), as shipped with the package
(:mod:`wan_exporter.shipped`: a wheel's own copy, or a checkout's directories). The only
changes, made in copies under the data directory, are the ones loopback needs: the stack's
targets (the compose service names ``wan-exporter``, ``alertmanager``, ``prometheus``, or a
local address on the default ports 9834, 9093, 9090) become the ports chosen here, in static
configs and in file-SD target files alike, and relative rule, template and target-file paths
become absolute. Ctrl-C (SIGINT) or SIGTERM stops every child and exits 0. A missing binary
is reported with the command that installs it.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import DEFAULT_PORT, shipped
from .childproc import die_with_parent

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_MISSING = 3

# Default ports: the exporter's own, and Prometheus' and Alertmanager's usual ones.
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
SERVE_PORT = 9836  # the demo's example Wan service (examples/serve/), scraped as job wan-serve
# Which compose address maps to which loopback service: by service name, else by port.
SERVICE_HOSTS = {"wan-exporter": "exporter", "wan-exporter-demo": "exporter", "prometheus": "prometheus",
                 "alertmanager": "alertmanager", "wan-serve": "serve"}
SERVICE_PORTS = {DEFAULT_PORT: "exporter", PROMETHEUS_PORT: "prometheus", ALERTMANAGER_PORT: "alertmanager",
                 SERVE_PORT: "serve"}

INSTALL_HINT = """\
  Debian/Ubuntu: sudo apt-get install --no-install-recommends prometheus prometheus-alertmanager
  Other systems: download prometheus and alertmanager from https://prometheus.io/download/ and put
                 them on PATH, or name them with --prometheus.binary / --alertmanager.binary.
  With Docker:   docker compose --profile demo up -d --build   (see docs/deployment.md)"""


# --------------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class Binaries:
    prometheus: str | None
    alertmanager: str | None

    def missing(self) -> list[str]:
        out = []
        if not self.prometheus:
            out.append("prometheus (Debian package 'prometheus')")
        if not self.alertmanager:
            out.append("prometheus-alertmanager (Debian package 'prometheus-alertmanager')")
        return out


def find_binaries(prometheus: str | None = None, alertmanager: str | None = None) -> Binaries:
    """Binaries given explicitly, else on PATH (Debian names Alertmanager ``prometheus-alertmanager``)."""

    def which(explicit: str | None, names: tuple[str, ...]) -> str | None:
        if explicit:
            return explicit if (os.path.isfile(explicit) and os.access(explicit, os.X_OK)) else shutil.which(explicit)
        for n in names:
            found = shutil.which(n)
            if found:
                return found
        return None

    return Binaries(prometheus=which(prometheus, ("prometheus",)),
                    alertmanager=which(alertmanager, ("prometheus-alertmanager", "alertmanager")))


# --------------------------------------------------------------------------- configs


@dataclass
class Ports:
    host: str = "127.0.0.1"
    exporter: int = DEFAULT_PORT
    prometheus: int = PROMETHEUS_PORT
    alertmanager: int = ALERTMANAGER_PORT
    serve: int = SERVE_PORT

    def address(self, service: str) -> str:
        return f"{self.host}:{getattr(self, service)}"


def _service_of(target: str) -> str | None:
    host, _, port = target.rpartition(":")
    if host not in SERVICE_HOSTS and host not in ("127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0"):
        return None  # a remote machine: not part of the stack
    if host in SERVICE_HOSTS:
        return SERVICE_HOSTS[host]
    try:
        return SERVICE_PORTS.get(int(port))
    except ValueError:
        return None


def _absolute(patterns: list[str], base: Path) -> list[str]:
    return [p if os.path.isabs(p) else str(base / p) for p in patterns]


def _rewrite_targets(targets: list[Any], ports: Ports, where: str, warnings: list[str]) -> list[str]:
    out = []
    for t in targets or []:
        svc = _service_of(str(t))
        if svc is None:
            warnings.append(f"{where}: target {t} left as is (not a stack service)")
            out.append(str(t))
        else:
            out.append(ports.address(svc))
    return list(dict.fromkeys(out))


def _rewrite_file_sd(sd: dict[str, Any], base: Path, sd_dir: Path, ports: Ports, where: str,
                     warnings: list[str]) -> None:
    """Copy the target files ``sd`` names into ``sd_dir`` with loopback targets, and point ``sd`` there."""
    sd_dir.mkdir(parents=True, exist_ok=True)
    for old in sd_dir.glob("*.yml"):
        old.unlink()
    for pattern in sd.get("files") or []:
        for src in sorted(Path(p) for p in _glob(pattern, base)):
            groups = yaml.safe_load(src.read_text(encoding="utf-8")) or []
            for g in groups:
                g["targets"] = _rewrite_targets(g.get("targets") or [], ports, f"{where} ({src.name})", warnings)
            (sd_dir / (src.stem + ".yml")).write_text(yaml.safe_dump(groups, sort_keys=False), encoding="utf-8")
    sd["files"] = [str(sd_dir / "*.yml")]


def _glob(pattern: str, base: Path) -> list[str]:
    import glob

    return glob.glob(pattern if os.path.isabs(pattern) else str(base / pattern))


def rewrite_prometheus_config(cfg: dict[str, Any], base: Path, ports: Ports,
                              sd_root: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """A copy of a compose Prometheus config for loopback; returns it and warnings for what stays as is.

    Static targets are rewritten in place; file-SD target files are copied, rewritten, into
    ``sd_root`` (the originals are never touched)."""
    out = copy.deepcopy(cfg)
    warnings: list[str] = []
    if out.get("rule_files"):
        out["rule_files"] = _absolute(out["rule_files"], base)
    for i, am in enumerate((out.get("alerting") or {}).get("alertmanagers") or []):
        for sc in am.get("static_configs") or []:
            sc["targets"] = [ports.address("alertmanager")]
        for j, sd in enumerate(am.get("file_sd_configs") or []):
            if sd_root is None:
                sd["files"] = _absolute(sd.get("files") or [], base)
            else:
                _rewrite_file_sd(sd, base, sd_root / f"alertmanagers-{i}-{j}", ports, "alertmanagers", warnings)
    for job in out.get("scrape_configs") or []:
        name = str(job.get("job_name"))
        for sc in job.get("static_configs") or []:
            sc["targets"] = _rewrite_targets(sc.get("targets") or [], ports, f"scrape job {name!r}", warnings)
        for j, sd in enumerate(job.get("file_sd_configs") or []):
            if sd_root is None:
                sd["files"] = _absolute(sd.get("files") or [], base)
            else:
                _rewrite_file_sd(sd, base, sd_root / f"{name}-{j}", ports, f"scrape job {name!r}", warnings)
    return out, warnings


def rewrite_alertmanager_config(cfg: dict[str, Any], base: Path) -> dict[str, Any]:
    out = copy.deepcopy(cfg)
    if out.get("templates"):
        out["templates"] = _absolute(out["templates"], base)
    return out


def write_configs(alerting_dir: Path, config_dir: Path, ports: Ports) -> tuple[Path, Path, list[str]]:
    alerting_dir = alerting_dir.resolve()
    config_dir.mkdir(parents=True, exist_ok=True)
    prom_src = alerting_dir / "prometheus.yml"
    am_src = alerting_dir / "alertmanager.yml"
    prom, warnings = rewrite_prometheus_config(yaml.safe_load(prom_src.read_text(encoding="utf-8")), alerting_dir, ports,
                                               sd_root=config_dir / "targets")
    am = rewrite_alertmanager_config(yaml.safe_load(am_src.read_text(encoding="utf-8")), alerting_dir)
    head = "# Generated by wan_exporter.stack from {} for loopback; edit the original, not this copy.\n"
    prom_out = config_dir / "prometheus.yml"
    am_out = config_dir / "alertmanager.yml"
    prom_out.write_text(head.format(prom_src) + yaml.safe_dump(prom, sort_keys=False), encoding="utf-8")
    am_out.write_text(head.format(am_src) + yaml.safe_dump(am, sort_keys=False), encoding="utf-8")
    return prom_out, am_out, warnings


# --------------------------------------------------------------------------- processes


def _die_with_parent() -> None:  # runs in the child between fork and exec: no orphans if the stack is killed
    die_with_parent(signal.SIGTERM)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= r.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class Child:
    name: str
    argv: list[str]
    ready_url: str
    log_path: Path
    env: dict[str, str] | None = None
    done_ok: bool = False  # may exit 0 by itself (the bounded load generator) without stopping the stack
    proc: subprocess.Popen | None = None
    _log: Any = field(default=None, repr=False)

    def start(self) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env, start_new_session=True, preexec_fn=_die_with_parent)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def terminate(self) -> None:
        if self.running():
            self.proc.send_signal(signal.SIGTERM)

    def reap(self, timeout: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        try:  # whatever it left behind in its own session (benchmark children)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self._log is not None:
            self._log.close()
            self._log = None


class Stack:
    def __init__(self, children: list[Child], out=sys.stdout) -> None:
        self.children = children
        self.out = out
        self.stop_requested = threading.Event()

    def say(self, msg: str) -> None:
        print(msg, file=self.out, flush=True)

    def request_stop(self, signum: int, _frame: Any = None) -> None:
        if not self.stop_requested.is_set():
            self.say(f"\n{signal.Signals(signum).name}: stopping ...")
        self.stop_requested.set()

    def start(self, ready_timeout: dict[str, float]) -> bool:
        """Start every child in order and wait for each to be ready. False when one fails (or a stop came)."""
        for c in self.children:
            c.start()
            self.say(f"started {c.name} (pid {c.proc.pid}), waiting for {c.ready_url} ...")
            deadline = time.monotonic() + ready_timeout.get(c.name, 60.0)
            while not http_ok(c.ready_url):
                if self.stop_requested.is_set():
                    return False
                if not c.running():
                    self.say(f"error: {c.name} exited with status {c.proc.returncode}; the end of {c.log_path}:\n"
                             f"{c.log_tail()}")
                    return False
                if time.monotonic() > deadline:
                    self.say(f"error: {c.name} not ready after {ready_timeout.get(c.name, 60.0):.0f}s; "
                             f"the end of {c.log_path}:\n{c.log_tail()}")
                    return False
                self.stop_requested.wait(0.25)
        return True

    def supervise(self) -> int:
        """Wait for a stop signal; a child dying on its own stops the stack with an error."""
        while not self.stop_requested.wait(0.5):
            for c in self.children:
                if not c.running() and not (c.done_ok and c.proc.returncode == 0):
                    self.say(f"error: {c.name} exited with status {c.proc.returncode}; the end of {c.log_path}:\n"
                             f"{c.log_tail()}")
                    return EXIT_FAILED
        return EXIT_OK

    def stop(self, timeout: float = 20.0) -> None:
        # Prometheus first (stops scraping and alerting), then Alertmanager, then the exporter.
        for c in reversed(self.children):
            c.terminate()
        for c in reversed(self.children):
            c.reap(timeout)
            if c.proc is not None:
                self.say(f"stopped {c.name} (status {c.proc.returncode})")


# --------------------------------------------------------------------------- command line


DESCRIPTION = ("Run wan-exporter, Prometheus and Alertmanager on loopback with the alerting configuration "
               "docker-compose runs (shipped with the package), without Docker. Ctrl-C stops all.")


def build_parser(prog: str = "wan-exporter stack", add_help: bool = True) -> argparse.ArgumentParser:
    """The stack's flags; ``wan-exporter stack`` takes them as its subcommand's parent parser."""
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, add_help=add_help)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--demo", action="store_true", help="run the exporter's tiny-model demo on the CPU")
    mode.add_argument("--config.file", dest="config_file", metavar="PATH",
                      help="exporter config file (default: the embedded default config)")
    p.add_argument("--host", default="127.0.0.1", help="address every service listens on (default 127.0.0.1)")
    p.add_argument("--exporter-port", type=int, default=DEFAULT_PORT)
    p.add_argument("--prometheus-port", type=int, default=PROMETHEUS_PORT)
    p.add_argument("--alertmanager-port", type=int, default=ALERTMANAGER_PORT)
    p.add_argument("--serve-port", type=int, default=SERVE_PORT,
                   help=f"the demo's example Wan service (default {SERVE_PORT})")
    p.add_argument("--data-dir", metavar="DIR",
                   help="TSDB, Alertmanager state, generated configs and logs "
                        "(default: $XDG_STATE_HOME/wan-exporter/stack)")
    p.add_argument("--alerting-dir", metavar="DIR",
                   help="directory with prometheus.yml, alertmanager.yml, rules/ (default: the alerting/ "
                        "shipped with the package; `wan-exporter assets DIR` writes it out)")
    p.add_argument("--prometheus.binary", dest="prometheus_binary", metavar="PATH")
    p.add_argument("--alertmanager.binary", dest="alertmanager_binary", metavar="PATH")
    p.add_argument("--retention", default="15d", help="Prometheus TSDB retention (default 15d)")
    p.add_argument("--ready-timeout", type=float, default=300.0,
                   help="seconds to wait for the exporter to serve (first demo run builds tiny models)")
    return p


def demo_traffic(ports: Ports, logs: Path, env: dict[str, str]) -> list[Child]:
    """The example service serving a tiny pipeline through instrument, and a bounded load on it (an hour at most)."""
    checkout = shipped.checkout_root()
    serve = checkout / "examples" / "serve" if checkout is not None else None
    if serve is None or not (serve / "server.py").is_file():
        return []  # an installed package: the example lives in the checkout's examples/
    url = f"http://{ports.address('serve')}"
    return [
        Child("wan-serve", [sys.executable, str(serve / "server.py"), f"--web.listen-address={ports.address('serve')}"],
              f"{url}/healthz", logs / "wan-serve.log", env=env),
        Child("wan-serve-load", [sys.executable, str(serve / "load.py"), f"--url={url}", "--count=2000",
                                 "--duration=3600", "--interval=2"], f"{url}/healthz", logs / "wan-serve-load.log",
              env=env, done_ok=True),
    ]


def default_data_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "wan-exporter" / "stack"


def main(argv: list[str] | None = None, out=None) -> int:
    return run(build_parser("python3 -m wan_exporter.stack").parse_args(argv), out)


def run(args: argparse.Namespace, out=None) -> int:
    out = out or sys.stdout

    def say(msg: str) -> None:
        print(msg, file=out, flush=True)

    bins = find_binaries(args.prometheus_binary, args.alertmanager_binary)
    missing = bins.missing()
    if missing:
        say("wan-exporter stack: cannot start, missing " + " and ".join(missing) + ".\n" + INSTALL_HINT)
        return EXIT_MISSING

    dashboards = "the dashboards shipped with wan-exporter (`wan-exporter assets DIR`)"
    if args.alerting_dir:
        alerting = Path(args.alerting_dir)
    else:
        try:
            assets = shipped.root()
        except FileNotFoundError as e:
            say(f"wan-exporter stack: cannot start, {e}; or pass --alerting-dir DIR.")
            return EXIT_MISSING
        alerting, dashboards = assets / "alerting", f"{assets / 'grafana' / 'dashboards'}/*.json"
    needed = [alerting / "prometheus.yml", alerting / "alertmanager.yml"]
    absent = [str(p) for p in needed if not p.is_file()]
    if absent:
        say(f"wan-exporter stack: cannot start, not found: {', '.join(absent)}.\n"
            "  Pass --alerting-dir DIR, a directory holding prometheus.yml, alertmanager.yml and rules/.")
        return EXIT_MISSING

    ports = Ports(args.host, args.exporter_port, args.prometheus_port, args.alertmanager_port, args.serve_port)
    services = ("exporter", "prometheus", "alertmanager") + (("serve",) if args.demo else ())
    busy = [f"{name} port {getattr(ports, name)}" for name in services if not port_free(ports.host, getattr(ports, name))]
    if busy:
        say(f"wan-exporter stack: cannot start, in use on {ports.host}: {', '.join(busy)}.\n"
            "  Stop what holds them, or choose others with --exporter-port, --prometheus-port, --alertmanager-port.")
        return EXIT_FAILED

    data = Path(args.data_dir) if args.data_dir else default_data_dir()
    logs = data / "logs"
    for d in (data / "prometheus", data / "alertmanager", logs):
        d.mkdir(parents=True, exist_ok=True)
    prom_cfg, am_cfg, warnings = write_configs(alerting, data / "config", ports)
    for w in warnings:
        say(f"note: {w}")

    exporter_args = [sys.executable, "-m", "wan_exporter", f"--web.listen-address={ports.address('exporter')}"]
    if args.demo:
        exporter_args.append("--demo")
    elif args.config_file:
        exporter_args.append(f"--config.file={os.path.abspath(args.config_file)}")
    env = dict(os.environ)
    pkg_parent = str(Path(__file__).resolve().parents[1])  # a checkout run without pip install
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"

    base = f"http://{ports.host}"
    children = [
        Child("wan-exporter", exporter_args, f"{base}:{ports.exporter}/-/healthy", logs / "wan-exporter.log", env=env),
        Child("alertmanager",
              [bins.alertmanager, f"--config.file={am_cfg}", f"--storage.path={data / 'alertmanager'}",
               f"--web.listen-address={ports.address('alertmanager')}",
               f"--web.external-url={base}:{ports.alertmanager}", "--cluster.listen-address="],
              f"{base}:{ports.alertmanager}/-/ready", logs / "alertmanager.log"),
        Child("prometheus",
              [bins.prometheus, f"--config.file={prom_cfg}", f"--storage.tsdb.path={data / 'prometheus'}",
               f"--storage.tsdb.retention.time={args.retention}", f"--web.listen-address={ports.address('prometheus')}",
               f"--web.external-url={base}:{ports.prometheus}", "--web.enable-lifecycle"],
              f"{base}:{ports.prometheus}/-/ready", logs / "prometheus.log"),
    ]
    traffic = demo_traffic(ports, logs, env) if args.demo else []
    if args.demo and not traffic:
        say("note: no examples/serve/ next to this package (run from a checkout): the demo runs without traffic.")
    children[1:1] = traffic
    stack = Stack(children, out=out)
    signal.signal(signal.SIGINT, stack.request_stop)
    signal.signal(signal.SIGTERM, stack.request_stop)
    rc = EXIT_OK
    try:
        if stack.start({"wan-exporter": args.ready_timeout, "wan-serve": args.ready_timeout, "alertmanager": 60.0,
                        "prometheus": 120.0}):
            say("\nwan-exporter stack is up ({}):\n"
                "  exporter      {b}:{e}/metrics\n"
                "  Prometheus    {b}:{p}  (targets {b}:{p}/targets, alerts {b}:{p}/alerts)\n"
                "  Alertmanager  {b}:{a}\n"
                "  Grafana       not in the native stack: import {d} into yours,\n"
                "                or run the containers (docs/deployment.md)\n"
                "configs in {c}, logs in {l}; Ctrl-C stops everything."
                .format("demo" if args.demo else (args.config_file or "embedded default config"), b=base,
                        e=ports.exporter, p=ports.prometheus, a=ports.alertmanager, c=data / "config", l=logs,
                        d=dashboards))
            if traffic:
                say(f"  Wan service   {base}:{ports.serve}/metrics  (examples/serve/, job wan-serve; load for up to 1h)")
            rc = stack.supervise()
        elif not stack.stop_requested.is_set():
            rc = EXIT_FAILED
    finally:
        stack.stop()
    say("stack stopped." if rc == EXIT_OK else "stack stopped after an error.")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
