"""Command line: run the exporter (node_exporter-style flags) and one-shot operator commands."""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable

from . import DEFAULT_PORT, __version__
from .config import Config, ConfigError, ModelConfig, load_config
from .textsafe import terminal_safe

log = logging.getLogger("wan_exporter")

EPILOG = textwrap.dedent(f"""\
    commands:
      wan-exporter [flags]                 run the exporter (default)
      wan-exporter check-config PATH       validate a config file; exit 1 listing every error
                                           (a model not on disk yet is a warning, as at run time)
      wan-exporter check-model PATH        run every health check once on a model directory
      wan-exporter bench --model NAME      run one benchmark generation now and print its figures
      wan-exporter tiny-models DIR         build tiny random Wan pipelines of every kind into DIR
      wan-exporter stack [--demo]          exporter + Prometheus + Alertmanager on loopback (no Docker)
      wan-exporter assets [DIR]            print where the rules, Alertmanager config and dashboards
                                           are, or copy them into DIR

    Collectors: --no-collector.NAME switches one off (node_exporter style), e.g.
    --no-collector.gpu where dcgm-exporter already publishes the GPU figures.

    With no --config.file the exporter runs on its embedded default: the Wan2.2 models
    looked up in the local Hugging Face cache (never downloaded). --demo runs tiny
    models on the CPU instead. The default port is {DEFAULT_PORT}.
    """)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)r",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        stream=sys.stderr,
    )
    if level != "debug":
        logging.getLogger("apscheduler").setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wan-exporter",
        description="Prometheus exporter for Wan video-generation models run with diffusers on NVIDIA GPUs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"wan-exporter {__version__}")
    p.add_argument("--config.file", dest="config_file", metavar="PATH",
                   help="YAML config file (default: embedded default config)")
    p.add_argument("--web.listen-address", dest="listen_address", default=f":{DEFAULT_PORT}", metavar="HOST:PORT",
                   help=f"address to serve /metrics on (default :{DEFAULT_PORT})")
    p.add_argument("--web.config.file", dest="web_config_file", metavar="PATH",
                   help="exporter-toolkit web config: TLS, basic auth, headers")
    p.add_argument("--log.level", dest="log_level", default="info", choices=["debug", "info", "warn", "error"],
                   help="log level (default info)")
    p.add_argument("--demo", action="store_true",
                   help="run tiny random Wan models on the CPU (built on first use) so real figures appear at once")
    from .collectors import COLLECTORS

    for name, what in COLLECTORS.items():
        p.add_argument(f"--collector.{name}", dest=f"collector_{name}", action="store_const", const=True,
                       default=None, help=f"enable the {name} collector (default): {what}")
        p.add_argument(f"--no-collector.{name}", dest=f"collector_{name}", action="store_const", const=False,
                       help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    cc = sub.add_parser("check-config", help="validate a config file",
                        description="Validate a config file. Exit 0 when valid, else 1 with every error and its path. "
                                    "A model directory or hub snapshot not on disk yet (a volume not mounted) is a "
                                    "warning: the exporter runs and reports that model as missing until it appears.")
    cc.add_argument("path")

    cm = sub.add_parser("check-model", help="run every health check once on a model directory or file(s)",
                        description="Run the layout, header, hash and load checks once on a model and print a "
                                    "report. PATH is a diffusers or official Wan directory, a single-file "
                                    "checkpoint (.safetensors, .gguf), or several files (the high- and low-noise "
                                    "experts). Exit 0 when healthy, 1 when not, 2 on usage errors.")
    cm.add_argument("path", nargs="+", metavar="PATH")
    cm.add_argument("--format", default="auto", choices=("auto", "diffusers", "official", "single_file", "gguf"),
                    help="how the checkpoint lies on disk (default: recognised)")
    cm.add_argument("--manifest", metavar="FILE",
                    help="sha256sum-style manifest of the weight files: written when FILE does not exist, "
                         "verified when it does (check a copy against a known-good node)")
    cm.add_argument("--kind", help="catalog kind, to compare the checkpoint with its published facts")
    cm.add_argument("--no-hash", action="store_true", help="skip the full content hash (reads every byte)")
    cm.add_argument("--no-load", action="store_true", help="skip the load check (starts a child process)")
    cm.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cm.add_argument("--io-timeout", type=float, default=30.0, metavar="SECONDS",
                    help="give up on reads of the model's files that make no progress this long (a hung mount); "
                         "default 30")

    b = sub.add_parser("bench", help="run one benchmark generation now",
                       description="Run one benchmark generation of a configured model now, showing progress, "
                                   "and print the measured figures.")
    b.add_argument("--config.file", dest="config_file", metavar="PATH")
    b.add_argument("--demo", action="store_true", help="use the tiny demo models")
    b.add_argument("--model", required=True, help="model name from the config")
    b.add_argument("--profile", help="profile name (default: the model's first profile)")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.add_argument("--device", default=os.environ.get("WAN_BENCH_DEVICE") or None,
                   help="run on this device instead of the model's (default: $WAN_BENCH_DEVICE; a Job-mode "
                        "pod sees only the GPUs the scheduler gave it)")
    b.add_argument("--report-to", dest="report_to", default=os.environ.get("WAN_PROBE_REPORT_URL") or None,
                   metavar="URL", help="Job mode: post the --json result to this exporter's /-/probe-result "
                                       "(default: $WAN_PROBE_REPORT_URL)")

    from .stack import DESCRIPTION as STACK_DESCRIPTION, build_parser as stack_parser

    sub.add_parser("stack", parents=[stack_parser(add_help=False)],
                   help="run the exporter, Prometheus and Alertmanager on loopback (no Docker)",
                   description=STACK_DESCRIPTION + " See docs/deployment.md.")

    a = sub.add_parser("assets", help="print or copy the shipped rules, Alertmanager config and dashboards",
                       description="With no DIR, print the directory holding alerting/ (Prometheus config, recording "
                                   "and alerting rules, Alertmanager config, templates, runbooks) and grafana/ "
                                   "(dashboards, provisioning). With DIR, copy them there.")
    a.add_argument("dir", nargs="?")

    t = sub.add_parser("tiny-models", help="build tiny random Wan pipelines of every kind",
                       description="Build randomly initialised tiny Wan pipelines of every kind with the real "
                                   "diffusers classes and save them with save_pretrained. Fully offline.")
    t.add_argument("dir")
    t.add_argument("--forms", action="store_true",
                   help="also write tiny checkpoints in every other on-disk form into DIR/forms (official layout, "
                        "ComfyUI fp16 and fp8-scaled single files, GGUF, with --local-dir metadata)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _logging(args.log_level if args.command is None else "warn")
    if args.command == "check-config":
        return cmd_check_config(args.path)
    if args.command == "check-model":
        from .health.report import cmd_check_model

        return cmd_check_model(args)
    if args.command == "bench":
        from .bench.oneshot import cmd_bench

        return cmd_bench(args)
    if args.command == "stack":
        from .stack import run as run_stack

        return run_stack(args)
    if args.command == "tiny-models":
        return cmd_tiny_models(Path(args.dir), forms=args.forms)
    if args.command == "assets":
        return cmd_assets(args.dir)
    return cmd_run(args)


def cmd_check_config(path: str) -> int:
    try:
        cfg = load_config(path)
    except ConfigError as e:
        print(terminal_safe(f"{path}: invalid, {len(e.errors)} error(s):"), file=sys.stderr)
        for err in e.errors:
            print(terminal_safe(f"  {err}"), file=sys.stderr)
        _print_location_warnings(path)
        return 1
    from .scan.bounded import Lanes

    lanes = Lanes()  # one worker per model for the whole command: a blocked file is waited for once
    refused, unknown = memory_refusals(cfg, lanes)
    if refused:
        print(f"{path}: valid, but {len(refused)} benchmark profile(s) cannot fit their device "
              f"(refused by the memory guard, skipped with reason would_not_fit):", file=sys.stderr)
        for r in refused:
            print(terminal_safe(f"  refused: {r}"), file=sys.stderr)
    else:
        print(terminal_safe(f"{path}: valid ({len(cfg.models)} models, {len(cfg.profiles)} profiles)"))
    for u in unknown:
        print(terminal_safe(f"  warning: {u}"), file=sys.stderr)
    _print_location_warnings(path, lanes)
    return 1 if refused else 0


def memory_refusals(cfg, lanes=None) -> tuple[list[str], list[str]]:
    """(refusals, warnings) of the memory guard for every model and profile, as the exporter will judge
    them (:func:`wan_exporter.bench.memory.offline_estimate`). A device whose memory cannot be read here
    gets a warning with the estimate: the exporter checks it again at run time, with NVML's reading.
    The checkpoint facts are read on the model's worker under exporter.io_timeout (:mod:`.scan.bounded`),
    so a blocking file leaves that model's estimate without its weights rather than hanging the command."""
    from .bench import memory
    from .scan.bounded import IoTimeout, Lanes, Stopped

    lanes = lanes or Lanes()
    gpus = memory.read_gpus(cfg)
    refused, unknown = [], []
    for i, m in enumerate(cfg.models):
        try:
            facts = lanes.run(str(i), lambda m=m: memory.facts_on_disk(cfg, m), cfg.exporter.io_timeout,
                              "reading the checkpoint facts")
        except (IoTimeout, Stopped):
            facts = None
        for j, p in enumerate(m.profiles):
            e = memory.estimate(m, cfg.profiles[p], facts, memory.offline_device_memory(m.device, gpus))
            why = memory.refusal(m.name, p, e, m.device)
            if why:
                refused.append(f"models[{i}].profiles[{j}]: {why}")
            elif e.device_bytes is None:
                unknown.append(f"models[{i}].profiles[{j}]: model {m.name} profile {p}: estimated peak "
                               f"{'at least ' if not e.weights_known else ''}{e.bytes / 2**30:,.1f} GiB; "
                               f"the memory of {m.device} cannot be read here (NVML), so it is checked at run time")
    return refused, unknown


def _located(m: "ModelConfig", cfg: Config) -> tuple:
    """Where the model's files are, and which of its listed single files are missing ((index, path) pairs)."""
    from .checkpoint.locate import resolve_model_dir

    found = resolve_model_dir(m, cfg)
    missing = [(j, f) for j, f in enumerate(found) if not f.is_file()] if isinstance(found, tuple) else []
    return found, missing


def location_warnings(path: str, lanes=None) -> list[str]:
    """Models whose files are not on disk now: at run time a health state (missing), never a config error.

    Found by the exporter's own lookup (``checkpoint.locate.resolve_model_dir``) on the file as typed, even
    when other parts of it are invalid."""
    from .checkpoint import hfcache
    from .config import Config, load_typed, load_yaml_mapping
    from .scan.bounded import IoTimeout, Lanes

    try:
        cfg, _ = load_typed(Config, load_yaml_mapping(Path(path).read_text(encoding="utf-8"), path))
    except (ConfigError, OSError, UnicodeDecodeError):
        return []
    lanes = lanes or Lanes()
    io_timeout = getattr(getattr(cfg, "exporter", None), "io_timeout", None)
    deadline = io_timeout if isinstance(io_timeout, (int, float)) and io_timeout > 0 else 30.0
    out = []
    for i, m in enumerate(cfg.models if cfg is not None else ()):
        if m is None or (m.path is None) == (m.hub_id is None):
            continue
        try:  # a hung mount must not hang check-config (scan.bounded)
            found, missing = lanes.run(str(i), lambda m=m: _located(m, cfg), deadline, "locating")
        except IoTimeout:
            out.append(f"models[{i}]: its files did not answer within exporter.io_timeout ({deadline:g}s): "
                       "a hung mount?")
            continue
        if isinstance(found, tuple):  # a list of single files: each one may be missing
            out += [f"models[{i}].path[{j}]: no such file: {f}" for j, f in missing]
            continue
        if found is not None:
            continue
        if m.path is not None:
            out.append(f"models[{i}].path: no such directory or file: {m.path}")
        else:
            hubs = ", ".join(m.hub_id) if isinstance(m.hub_id, tuple) else m.hub_id
            out.append(f"models[{i}].hub_id: {hubs}@{m.revision} is not in the local Hugging Face cache "
                       f"({hfcache.cache_root(cfg.exporter.hf_cache_dir)}) nor ModelScope's")
    return out


def _print_location_warnings(path: str, lanes=None) -> None:
    warnings = location_warnings(path, lanes)
    for w in warnings:
        print(terminal_safe(f"  warning: {w}"), file=sys.stderr)
    if warnings:
        print("  (the exporter runs with these and reports each such model as missing until its files appear)",
              file=sys.stderr)


def cmd_assets(dest: str | None) -> int:
    from . import shipped

    try:
        src = shipped.root()
    except FileNotFoundError as e:
        print(f"wan-exporter assets: {e}", file=sys.stderr)
        return 1
    if dest is None:
        print(src)
        return 0
    written = shipped.copy_tree(src, Path(dest))
    print(f"{len(written)} files copied from {src} into {dest} (alerting/, grafana/)")
    return 0



def cmd_tiny_models(dest: Path, forms: bool = False) -> int:
    from .tiny import build_all

    def progress(kind: str, state: str) -> None:
        print(f"  {kind}: {state}", file=sys.stderr, flush=True)

    out = build_all(dest, progress=progress)
    print(f"{len(out)} tiny models in {dest}")
    if forms:
        from .tiny_forms import build_forms

        written = build_forms(dest / "forms", progress=progress)
        print(f"{len(written)} checkpoint forms in {dest / 'forms'}")
    return 0



def enabled_collectors(args: argparse.Namespace) -> list[str]:
    """Every collector unless switched off with --no-collector.NAME (the last flag given wins)."""
    from .collectors import COLLECTORS

    return [name for name in COLLECTORS if getattr(args, f"collector_{name}", None) is not False]


def cmd_run(args: argparse.Namespace) -> int:
    from .app import App

    try:
        from .defaults import resolve_config

        cfg, path = resolve_config(args.config_file, args.demo)
    except ConfigError as e:
        log.error("%s", e)
        return 1
    except (subprocess.SubprocessError, OSError) as e:
        log.error("could not build the demo models: %s", e)
        return 1
    wrapper = None
    if args.web_config_file:
        try:
            from .web.config import make_wrapper

            wrapper = make_wrapper(args.web_config_file)
        except Exception as e:  # noqa: BLE001 - reported and fatal at start: never serve unprotected
            log.error("invalid --web.config.file: %s", e)
            return 1
    # A scrape thread waits for the GIL while a background job (a render ahead of the next scrape,
    # a poll, a health check) runs Python code: up to one switch interval per hand-over, 5 ms by
    # default. 1 ms bounds those waits at a small cost to the background jobs' throughput
    # (benchmarks/analysis.md, items 1c and 7c).
    sys.setswitchinterval(0.001)
    app = App(cfg, config_path=path, collectors=enabled_collectors(args))
    try:
        app.start(args.listen_address, wsgi_wrapper=wrapper)
    except OSError as e:
        log.error("cannot listen on %s: %s", args.listen_address, e)
        return 1
    events: queue.Queue[str] = queue.Queue()
    signal.signal(signal.SIGHUP, lambda *_: events.put("reload"))
    signal.signal(signal.SIGTERM, lambda *_: events.put("stop"))
    signal.signal(signal.SIGINT, lambda *_: events.put("stop"))
    log.info("wan-exporter %s started with %d models (pid %d)", __version__, len(cfg.models), os.getpid())
    while True:
        try:
            ev = events.get(timeout=1.0)
        except queue.Empty:
            continue
        if ev == "reload":
            app.reload()
        elif ev == "stop":
            break
    log.info("shutting down")
    return stop_within(app.stop, SHUTDOWN_SECONDS)


SHUTDOWN_SECONDS = 8.0  # SIGTERM ends the process within 10 s, whatever a job is doing


def stop_within(stop: "Callable[[], None]", seconds: float) -> int:
    """Run ``stop`` and wait for the other threads, at most ``seconds`` in all; then exit regardless.

    A job thread blocked in the kernel (a read on a hung mount) cannot be interrupted, and the
    interpreter would wait for it at exit for ever; a supervisor's SIGKILL would then take the
    benchmark children's clean-up with it. So whatever is still running after ``seconds`` is
    named in the log and abandoned with ``os._exit``.
    """
    deadline = time.monotonic() + seconds
    t = threading.Thread(target=stop, name="shutdown", daemon=True)
    t.start()
    t.join(max(0.0, deadline - time.monotonic()))
    left = [th for th in threading.enumerate()
            if th is not threading.current_thread() and not th.daemon and th.is_alive()]
    for th in left:
        th.join(max(0.0, deadline - time.monotonic()))
    left = [th.name for th in left if th.is_alive()] + (["shutdown"] if t.is_alive() else [])
    if left:
        log.warning("shutdown did not finish within %.0fs (still running: %s); exiting anyway", seconds,
                    ", ".join(left))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
