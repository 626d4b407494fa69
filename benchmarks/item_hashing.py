"""Item 4, integrity: the hash check's throughput against ``sha256sum``, and the cheap checks' cost.

Hashing: one 2 GiB file (64 MiB with --quick) of random bytes, laid out as the weights of a
one-component diffusers directory, hashed by the exporter's own check
(:func:`wan_exporter.health.hashing.check`, its default 8 MiB chunks, no rate limit, manifest
deleted before each run so every byte is read) and by ``sha256sum`` (and ``openssl dgst``
when installed), alternating. The file was just written, so it sits in the page cache; the
first run of each is discarded and the warm runs' median is reported: this compares the
hashing code, not the disk.

Cheap checks: a 60 GiB Wan2.1-14B-like directory whose transformer is 20 sparse 3.2 GB
shards, each with a valid safetensors header of 60 tensors (written at the start, then the
file extended with ``os.truncate``), plus a shard index and the tiny model's other
components. The layout check (stat calls) and the header check (one header read per file)
are timed against floors doing only their system calls: ``os.walk`` + ``stat`` of every
file, and open + read + ``json.loads`` of each header.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

from .common import Context, ItemResult, Row, Table, median, percentile

HASH_GOAL = 0.9
CHEAP_GOAL_MS = 100.0
GIB = 1 << 30


def _write_random(path: Path, size: int) -> None:
    block = os.urandom(16 << 20)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
        f.flush()
        os.fsync(f.fileno())


def _one_component_dir(root: Path, weight_size: int) -> Path:
    (root / "transformer").mkdir(parents=True, exist_ok=True)
    (root / "model_index.json").write_text(json.dumps(
        {"_class_name": "WanPipeline", "_diffusers_version": "0.35.0", "transformer": ["diffusers", "WanTransformer3DModel"]}))
    (root / "transformer" / "config.json").write_text(json.dumps({"_class_name": "WanTransformer3DModel"}))
    _write_random(root / "transformer" / "diffusion_pytorch_model.safetensors", weight_size)
    return root / "transformer" / "diffusion_pytorch_model.safetensors"


def _time_cmd(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def hashing(ctx: Context, res: ItemResult) -> None:
    from wan_exporter.health import hashing as hc

    work = ctx.scratch("hashing")
    size = (64 << 20) if ctx.quick else 2 * GIB
    free = shutil.disk_usage(work).free
    if free < size + GIB:
        res.notes.append(f"hash throughput skipped: {free / GIB:.1f} GiB free in {work}, need {(size + GIB) / GIB:.1f}")
        return
    model = work / "model"
    weight = _one_component_dir(model, size)
    state = work / "state"
    refs: dict[str, list[str]] = {"sha256sum": ["sha256sum", str(weight)]}
    if shutil.which("openssl"):
        refs["openssl dgst -sha256"] = ["openssl", "dgst", "-sha256", str(weight)]
    runs = ctx.n(4, 2)
    times: dict[str, list[float]] = {"exporter": [], **{k: [] for k in refs}}
    for _ in range(runs):
        for name, args in refs.items():
            times[name].append(_time_cmd(args))
        shutil.rmtree(state, ignore_errors=True)
        t0 = time.perf_counter()
        r = hc.check("bench", model, state)
        times["exporter"].append(time.perf_counter() - t0)
        if r is None or r.facts.get("bytes_read") != size:
            raise RuntimeError(f"hash check did not read the file: {r}")
    warm = {k: median(v[1:]) for k, v in times.items()}
    tput = {k: size / v / 1e6 for k, v in warm.items()}
    res.rows.append(Row(f"hash throughput (warm page cache, {size / GIB:g} GiB file)", tput["exporter"], "MB/s",
                        "sha256sum, same file", tput["sha256sum"], goal=f">= {HASH_GOAL:g}x sha256sum",
                        met=tput["exporter"] >= HASH_GOAL * tput["sha256sum"]))
    for name in refs:
        if name != "sha256sum":
            res.rows.append(Row(f"hash throughput vs {name}", tput["exporter"], "MB/s", name, tput[name]))
    res.tables.append(Table("Hash runs (seconds; the first of each is the cold-ish one and is not used)",
                            ["hasher", "runs", "warm median s", "MB/s"],
                            [[k, ", ".join(f"{x:.3f}" for x in v), warm[k], tput[k]] for k, v in times.items()]))
    res.notes.append("Python's hashlib is OpenSSL's SHA-256, which uses the CPU's SHA extensions when present; "
                     "coreutils' sha256sum uses its own implementation. Both read the same cached file; a cold read "
                     "from disk would bound both by the disk instead.")
    shutil.rmtree(model, ignore_errors=True)


def _header(tensors: dict[str, tuple[str, list[int], int, int]]) -> bytes:
    doc = {"__metadata__": {"format": "pt"}}
    for name, (dtype, shape, a, b) in tensors.items():
        doc[name] = {"dtype": dtype, "shape": shape, "data_offsets": [a, b]}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def sparse_model(root: Path, tiny: Path | None, shards: int = 20, per_shard: int = 60,
                 shard_bytes: int = 3 * GIB) -> int:
    """A diffusers Wan directory whose transformer weights are ``shards`` sparse files; returns total bytes."""
    if root.exists():
        shutil.rmtree(root)
    if tiny is not None and (tiny / "model_index.json").exists():
        shutil.copytree(tiny, root, ignore=shutil.ignore_patterns("transformer", ".wan-exporter-*"))
        index = json.loads((root / "model_index.json").read_text())
        (root / "transformer").mkdir()
        shutil.copy(tiny / "transformer" / "config.json", root / "transformer" / "config.json")
    else:
        root.mkdir(parents=True)
        index = {"_class_name": "WanPipeline", "_diffusers_version": "0.35.0",
                 "transformer": ["diffusers", "WanTransformer3DModel"]}
        (root / "transformer").mkdir()
        (root / "transformer" / "config.json").write_text(json.dumps({"_class_name": "WanTransformer3DModel"}))
    index["transformer"] = ["diffusers", "WanTransformer3DModel"]
    (root / "model_index.json").write_text(json.dumps(index, indent=2))
    elems = shard_bytes // per_shard // 2  # BF16
    weight_map = {}
    total = 0
    for s in range(shards):
        fname = f"diffusion_pytorch_model-{s + 1:05d}-of-{shards:05d}.safetensors"
        tensors = {}
        off = 0
        for t in range(per_shard):
            name = f"blocks.{s * per_shard + t}.weight"
            tensors[name] = ("BF16", [elems], off, off + elems * 2)
            off += elems * 2
            weight_map[name] = fname
        head = _header(tensors)
        path = root / "transformer" / fname
        with open(path, "wb") as f:
            f.write(head)
        os.truncate(path, len(head) + off)  # sparse: the data region is a hole
        total += len(head) + off
    (root / "transformer" / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return total


def _floor_stat(root: Path) -> int:
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for f in filenames:
            os.stat(os.path.join(dirpath, f))
            n += 1
    return n


def _floor_headers(root: Path) -> int:
    n = 0
    for p in sorted((root / "transformer").glob("*.safetensors")):
        with open(p, "rb") as f:
            (hl,) = struct.unpack("<Q", f.read(8))
            json.loads(f.read(hl))
        n += 1
    return n


def _timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def cheap_checks(ctx: Context, res: ItemResult) -> None:
    from wan_exporter import catalog
    from wan_exporter.health import headers, layout

    work = ctx.scratch("sparse")
    tiny = ctx.tiny_dir / "tiny-wan2.1-t2v" if ctx.tiny_dir is not None else None
    root = work / "wan2.1-t2v-14b"
    total = sparse_model(root, tiny)
    on_disk = int(subprocess.run(["du", "-sk", str(root)], capture_output=True, text=True).stdout.split()[0]) * 1024
    entry = catalog.CATALOG.get("wan2.1-t2v-14b")
    n = ctx.n(30, 3)
    first_layout = _timed(lambda: layout.check("bench", root), 1)[0]
    first_headers = _timed(lambda: headers.check("bench", root, entry), 1)[0]
    lay_r = layout.check("bench", root)
    hd_r = headers.check("bench", root, entry)
    t = {"layout": [], "headers": [], "floor_stat": [], "floor_headers": []}
    for _ in range(n):  # interleaved
        t["layout"] += _timed(lambda: layout.check("bench", root), 1)
        t["floor_stat"] += _timed(lambda: _floor_stat(root), 1)
        t["headers"] += _timed(lambda: headers.check("bench", root, entry), 1)
        t["floor_headers"] += _timed(lambda: _floor_headers(root), 1)
    med = {k: median(v) * 1e3 for k, v in t.items()}
    p90 = {k: percentile(v, 90) * 1e3 for k, v in t.items()}
    res.rows.append(Row(f"layout check of a {total / GIB:.0f} GiB, 20-shard sparse model (median)", med["layout"], "ms",
                        "os.walk + stat of every file", med["floor_stat"], goal=f"milliseconds (<= {CHEAP_GOAL_MS:g} ms)",
                        met=med["layout"] <= CHEAP_GOAL_MS))
    res.rows.append(Row("headers check of the same model (median)", med["headers"], "ms",
                        "open + read + json.loads of the 20 headers", med["floor_headers"],
                        goal=f"milliseconds (<= {CHEAP_GOAL_MS:g} ms)", met=med["headers"] <= CHEAP_GOAL_MS))
    res.tables.append(Table(f"Cheap checks, {n} interleaved runs each (ms)", ["check", "first run", "median", "p90"],
                            [["layout", first_layout * 1e3, med["layout"], p90["layout"]],
                             ["floor: walk + stat", None, med["floor_stat"], p90["floor_stat"]],
                             ["headers", first_headers * 1e3, med["headers"], p90["headers"]],
                             ["floor: read headers", None, med["floor_headers"], p90["floor_headers"]]]))
    kinds = sorted({i.kind for i in hd_r.issues} | {i.kind for i in lay_r.issues})
    res.notes.append(f"Sparse model: {total / GIB:.1f} GiB apparent, {on_disk / 1024:.0f} KiB on disk; "
                     f"layout found {lay_r.facts.get('files_present')}/{lay_r.facts.get('files_expected')} files, "
                     f"headers checked {hd_r.facts.get('files_checked')} files and {hd_r.facts.get('tensors')} tensors; "
                     f"findings: {', '.join(kinds) or 'none'} (catalog_mismatch is expected: the tiny configs and "
                     f"made-up tensors are not Wan2.1-14B's).")


def run(ctx: Context) -> ItemResult:
    res = ItemResult("4", "Integrity hashing and cheap checks")
    hashing(ctx, res)
    cheap_checks(ctx, res)
    return res


__all__ = ["run", "sparse_model"]
