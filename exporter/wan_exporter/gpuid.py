"""Which NVML GPU a benchmark device is: the one place ``cuda:N`` meets an NVML reading.

CUDA numbers devices fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; NVML numbers
them by PCI bus id. So the benchmark child runs with :data:`CHILD_ENV`, and before a run
``cuda:N`` is NVML's index N, or, when the exporter's environment sets
``CUDA_VISIBLE_DEVICES``, the N-th device that list leaves visible (an index in PCI order
or a UUID prefix). Once a run has reported the UUID of the device it used, that UUID
decides, whatever the order.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping

from .state import GpuReading, Snapshot

# Set in the benchmark child before CUDA starts, so its device numbers are NVML's.
CHILD_ENV: Mapping[str, str] = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def device_key(device: str) -> str:
    """``cuda`` means the current device, which is ``cuda:0`` in a fresh child."""
    return "cuda:0" if device == "cuda" else device


def cuda_ordinal(device: str) -> int | None:
    """N of ``cuda:N`` (0 for ``cuda``); None for a device that is not a CUDA device."""
    d = device_key(device)
    if not d.startswith("cuda:"):
        return None
    try:
        return int(d.split(":", 1)[1])
    except ValueError:
        return None


def _visible(env: Mapping[str, str]) -> list[str] | None:
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    out = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            break
        out.append(entry)
    return out


def find(gpus: Iterable[GpuReading], device: str, uuid: str = "",
         env: Mapping[str, str] | None = None) -> GpuReading | None:
    """The reading of the GPU ``device`` runs on: by ``uuid`` when a run reported one, else by order.

    None when it is not a CUDA device, NVML does not list it, or it is lost.
    """
    gpus = [g for g in gpus if not g.lost]
    if uuid:
        return next((g for g in gpus if g.uuid == uuid), None)
    ordinal = cuda_ordinal(device)
    if ordinal is None:
        return None
    visible = _visible(os.environ if env is None else env)
    index = ordinal
    if visible is not None:
        if ordinal >= len(visible):
            return None
        entry = visible[ordinal]
        if not entry.isdigit():  # a UUID (or a prefix of one), as CUDA accepts it
            return next((g for g in gpus if g.uuid.startswith(entry)), None)
        index = int(entry)
    return next((g for g in gpus if g.index == index), None)


def gpu_label(gpus: Iterable[GpuReading], device: str, uuid: str = "",
              env: Mapping[str, str] | None = None) -> str:
    """The ``gpu`` label (NVML index) of the GPU ``device`` runs on; "" when that is not known.

    A UUID NVML does not list now (the GPU is lost) falls back to the order, so the label
    of a configured model does not change with the GPU's health.
    """
    gpus = list(gpus)
    g = find(gpus, device, uuid, env) or (find(gpus, device, "", env) if uuid else None)
    if g is not None:
        return str(g.index)
    ordinal = cuda_ordinal(device)
    if ordinal is None:
        return ""
    visible = _visible(os.environ if env is None else env)
    if visible is None:
        return str(ordinal)
    entry = visible[ordinal] if ordinal < len(visible) else ""
    return entry if entry.isdigit() else ""


def reported_uuid(snap: Snapshot, model: str) -> str:
    """The GPU UUID the model's latest benchmark run reported ("" before any, or on CPU)."""
    runs = [a.last for (m, _p), a in snap.benchmarks.items() if m == model and a.last is not None and a.last.gpu_uuid]
    return max(runs, key=lambda r: r.finished_at).gpu_uuid if runs else ""
