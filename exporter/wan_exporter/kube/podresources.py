"""Which GPUs the kubelet has allocated, and to which pod: the kubelet pod-resources API v1 ``List``.

The exporter's DaemonSet requests no GPU and sees them all (``NVIDIA_VISIBLE_DEVICES=all``), so
before a probe it asks the kubelet which GPUs are a pod's: those are never probed. The device IDs
the NVIDIA device plugin reports are GPU UUIDs (``GPU-…``; with time-slicing ``GPU-…::N``, a
replica of that GPU; MIG devices ``MIG-…``), matched against NVML's UUIDs.

grpcio is imported here only, so an exporter outside Kubernetes never needs it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Mapping

from ..state import CollectorStatus, Snapshot, Store, frozen_map

log = logging.getLogger(__name__)

COLLECTOR = "pod_resources"


@dataclass(frozen=True)
class Allocation:
    namespace: str
    pod: str
    container: str


class PodResourcesUnavailable(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason  # bounded: contract.labels.COLLECTOR_ERROR_REASONS


def device_uuid(device_id: str) -> str:
    """A device plugin's device ID as the NVML UUID it names (a time-slicing replica ``::N`` dropped)."""
    return device_id.split("::", 1)[0]


def list_allocations(socket_path: str, resource: str = "nvidia.com/gpu",
                     timeout: float = 2.0) -> dict[str, tuple[Allocation, ...]]:
    """NVML UUID -> the containers the kubelet gave it to (several with time-slicing), from ``List``."""
    import grpc

    from . import podresources_v1_pb2 as pb
    from . import podresources_v1_pb2_grpc as pb_grpc

    target = "unix://" + socket_path if not socket_path.startswith("unix:") else socket_path
    try:
        with grpc.insecure_channel(target) as channel:
            resp = pb_grpc.PodResourcesListerStub(channel).List(pb.ListPodResourcesRequest(), timeout=timeout)
    except grpc.RpcError as e:
        code = e.code() if hasattr(e, "code") else None
        reason = "timeout" if code == grpc.StatusCode.DEADLINE_EXCEEDED else (
            "no_permission" if code == grpc.StatusCode.PERMISSION_DENIED else "error")
        raise PodResourcesUnavailable(reason, f"{socket_path}: {code.name if code else e}") from None
    out: dict[str, list[Allocation]] = {}
    for pod in resp.pod_resources:
        for c in pod.containers:
            for dev in c.devices:
                if dev.resource_name != resource:
                    continue
                for d in dev.device_ids:
                    a = Allocation(pod.namespace, pod.name, c.name)
                    lst = out.setdefault(device_uuid(d), [])
                    if a not in lst:
                        lst.append(a)
    return {k: tuple(v) for k, v in out.items()}


class PodResourcesPoller:
    """Keeps ``Snapshot.gpu_allocations`` current; unreadable: dropped (absent, not stale) and counted."""

    def __init__(self, store: Store, socket_path: str, resource: str, timeout: float) -> None:
        self.store = store
        self.socket_path, self.resource, self.timeout = socket_path, resource, timeout

    def poll(self) -> None:
        t0 = time.perf_counter()
        try:
            alloc = list_allocations(self.socket_path, self.resource, self.timeout)
        except PodResourcesUnavailable as e:
            log.warning("pod-resources collector: %s", e)
            st = CollectorStatus(COLLECTOR, False, time.perf_counter() - t0, e.reason)
            self.store.update(lambda s: replace(s, gpu_allocations=None, collectors=_with(s, st)))
            return
        st = CollectorStatus(COLLECTOR, True, time.perf_counter() - t0)
        self.store.update(lambda s: replace(s, gpu_allocations=frozen_map(alloc), collectors=_with(s, st)))


def _with(s: Snapshot, st: CollectorStatus) -> Mapping[str, CollectorStatus]:
    d = dict(s.collectors)
    d[st.collector] = st
    return frozen_map(d)
