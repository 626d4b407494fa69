"""GPU -> pod attribution from the kubelet pod-resources API, against a real gRPC server.

No kubelet runs here, so the server is grpcio serving the published v1 proto
(k8s.io/kubelet pkg/apis/podresources/v1/api.proto, committed unchanged) on a unix socket:
the exporter's client, the wire format and the service name are the real ones; what the
server answers is the test's. NVML is the usual fake (support.fake_pynvml).
"""

from __future__ import annotations

import subprocess
import sys
from concurrent import futures
from pathlib import Path

import pytest
from prometheus_client import generate_latest

grpc = pytest.importorskip("grpc")

from support.procs import parse_metrics, sample, samples_named, write_nvml_state  # noqa: E402
from wan_exporter.app import App  # noqa: E402
from wan_exporter.bench.subsystem import courtesy_skip  # noqa: E402
from wan_exporter.config import parse_config  # noqa: E402
from wan_exporter.kube import podresources  # noqa: E402
from wan_exporter.kube import podresources_v1_pb2 as pb  # noqa: E402
from wan_exporter.kube import podresources_v1_pb2_grpc as pb_grpc  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
UUID = "GPU-00000000-0000-0000-0000-{:012d}".format  # fake_pynvml's UUIDs


class Kubelet(pb_grpc.PodResourcesListerServicer):
    def __init__(self) -> None:
        self.pods: list = []

    def List(self, request, context):  # noqa: N802 - the proto's name
        return pb.ListPodResourcesResponse(pod_resources=self.pods)


def pod(ns: str, name: str, container: str, resource: str, *ids: str):
    return pb.PodResources(namespace=ns, name=name, containers=[pb.ContainerResources(
        name=container, devices=[pb.ContainerDevices(resource_name=resource, device_ids=list(ids))])])


@pytest.fixture
def kubelet(tmp_path):
    sock = tmp_path / "kubelet.sock"
    svc = Kubelet()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_PodResourcesListerServicer_to_server(svc, server)
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    yield svc, sock, server
    server.stop(0)


def test_stubs_match_the_committed_proto():
    pytest.importorskip("grpc_tools")
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_podresources.py"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_allocated_gpus_are_attributed_and_never_probed(kubelet, tmp_path, tiny_dir, monkeypatch):
    svc, sock, server = kubelet
    svc.pods = [
        pod("serving", "wan-api-7d9f", "server", "nvidia.com/gpu", UUID(1)),
        # time-slicing: two replicas of GPU 2 given to two pods
        pod("serving", "wan-batch-1", "worker", "nvidia.com/gpu", UUID(2) + "::0"),
        pod("research", "nb-0", "notebook", "nvidia.com/gpu", UUID(2) + "::3"),
        pod("other", "cpu-pinned", "app", "example.com/fpga", "fpga-0"),
    ]
    alloc = podresources.list_allocations(str(sock))
    assert alloc == {
        UUID(1): (podresources.Allocation("serving", "wan-api-7d9f", "server"),),
        UUID(2): (podresources.Allocation("serving", "wan-batch-1", "worker"),
                  podresources.Allocation("research", "nb-0", "notebook")),
    }

    state = write_nvml_state(tmp_path / "nvml.json", gpus=[{}, {}, {}])
    monkeypatch.setenv("WAN_EXPORTER_NVML_MODULE", "support.fake_pynvml")
    monkeypatch.setenv("FAKE_NVML_STATE", str(state))
    kind = "tiny-wan2.2-ti2v-5b"
    models = "\n".join(f"  - {{name: m{i}, kind: {kind}, path: '{tiny_dir}/{kind}', device: 'cuda:{i}', "
                       f"dtype: float32, profiles: [tiny]}}" for i in range(3))
    cfg = parse_config(f"models:\n{models}\nprofiles: {{tiny: {{width: 32, height: 32, frames: 9, steps: 2}}}}\n"
                       f"exporter: {{state_dir: '{tmp_path / 'state'}'}}\n"
                       f"kubernetes: {{pod_resources: {{enabled: true, socket: '{sock}', publish_pods: true}}}}\n")
    app = App(cfg)
    bench = next(s for s in app.subsystems if type(s).__name__ == "BenchmarkSubsystem")
    try:
        app._register_jobs()  # the pod-resources poll runs once at registration
        app.gpu_poller.poll()
        snap = app.store.snapshot
        # GPU 0 is nobody's: the allocation check lets it through (the busy checks still apply).
        assert courtesy_skip(snap, cfg, "cuda:0") is None
        for i in (1, 2):
            assert bench.run_one(cfg, cfg.model(f"m{i}"), "tiny") is None
        s = parse_metrics(generate_latest(app.registry).decode())
        assert sample(s, "wan_benchmark_skipped_total", model="m1", reason="gpu_allocated") == 1
        assert sample(s, "wan_benchmark_skipped_total", model="m2", reason="gpu_allocated") == 1
        assert sample(s, "wan_exporter_collector_success", collector="pod_resources") == 1
        info = samples_named(s, "wan_gpu_allocation_info")
        assert sorted(dict(k)["pod"] for k in info) == ["nb-0", "wan-api-7d9f", "wan-batch-1"]
        assert sample(s, "wan_gpu_allocation_info", gpu="1", uuid=UUID(1), namespace="serving",
                      pod="wan-api-7d9f", container="server") == 1

        # The kubelet gone: which GPUs are free is unknown, so none is probed, and the series go.
        server.stop(0)
        next(j for j in app.jobs._sched.get_jobs() if j.id == "collector.pod_resources")
        podresources.PodResourcesPoller(app.store, str(sock), "nvidia.com/gpu", 1.0).poll()
        assert courtesy_skip(app.store.snapshot, cfg, "cuda:0") == "gpu_allocation_unknown"
        s = parse_metrics(generate_latest(app.registry).decode())
        assert sample(s, "wan_exporter_collector_success", collector="pod_resources") == 0
        assert sample(s, "wan_exporter_collector_error_info", collector="pod_resources", reason="error") == 1
        assert not samples_named(s, "wan_gpu_allocation_info")
    finally:
        app.stop()


def test_attribution_is_opt_in(kubelet, tmp_path, monkeypatch):
    svc, sock, _ = kubelet
    svc.pods = [pod("serving", "wan-api", "server", "nvidia.com/gpu", UUID(0))]
    state = write_nvml_state(tmp_path / "nvml.json", gpus=[{}])
    monkeypatch.setenv("WAN_EXPORTER_NVML_MODULE", "support.fake_pynvml")
    monkeypatch.setenv("FAKE_NVML_STATE", str(state))
    cfg = parse_config(f"kubernetes: {{pod_resources: {{enabled: true, socket: '{sock}'}}}}\n")
    app = App(cfg)
    try:
        app._register_jobs()
        app.gpu_poller.poll()
        assert courtesy_skip(app.store.snapshot, cfg, "cuda:0") == "gpu_allocated"
        s = parse_metrics(generate_latest(app.registry).decode())
        assert not samples_named(s, "wan_gpu_allocation_info")
    finally:
        app.stop()
