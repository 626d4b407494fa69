"""A real Kubernetes control plane on loopback: Debian's etcd, and kube-apiserver and
kube-controller-manager built from k8s.io/kubernetes by scripts/peers.sh.

What is real: etcd, the API server (authentication with real service-account tokens from the
TokenRequest API, RBAC authorization, admission: Priority, ServiceAccount, validation and
defaulting of every object), and the controller manager's Job, TTL-after-finished and garbage
collector controllers, which create the Job's pods, mark Jobs complete, failed or past their
deadline, and delete finished Jobs.

What is not: no kube-scheduler, no kubelet and no container runtime. :class:`Kubelet` stands in for
the last two at the narrowest boundary, through the API as a kubelet does: it writes the pod
statuses a kubelet would (Running, Succeeded, a preemption's DisruptionTarget, the scheduler's
Unschedulable) and runs the pod's command itself, as a local process with the pod's args and env,
its ConfigMap and Secret volumes written to files.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from .procs import WorkdirServer, free_port, wait_for

ADMIN_TOKEN = "wan-exporter-test-admin-token"


def _ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the API server's self-signed serving certificate; loopback only
    return ctx


class Api:
    """Admin (system:masters) or a service account's REST calls; errors as (status, message)."""

    def __init__(self, server: str, token: str) -> None:
        self.server, self.token = server, token

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Accept": "application/json", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=10, context=_ctx()) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return e.code, json.loads(body)
            except ValueError:
                return e.code, body.decode(errors="replace")

    def ok(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        status, out = self.call(method, path, body, content_type)
        assert 200 <= status < 300, (method, path, status, out)
        return out

    def apply(self, obj: dict) -> dict:
        """Create one object of the kinds the chart renders (cluster-scoped or namespaced)."""
        kind, ns = obj["kind"], obj["metadata"].get("namespace")
        group = obj["apiVersion"]
        base = "/api/v1" if group == "v1" else f"/apis/{group}"
        plural = {"ServiceAccount": "serviceaccounts", "Role": "roles", "RoleBinding": "rolebindings",
                  "PriorityClass": "priorityclasses", "ConfigMap": "configmaps", "Secret": "secrets",
                  "Namespace": "namespaces", "Pod": "pods", "Node": "nodes"}[kind]
        path = f"{base}/namespaces/{ns}/{plural}" if ns and kind not in ("PriorityClass", "Namespace", "Node") \
            else f"{base}/{plural}"
        return self.ok("POST", path, obj)


class Etcd(WorkdirServer):
    name = "etcd"
    ready_path = "/health"

    def args(self) -> list[str]:
        self.peer = free_port()
        return ["etcd", "--name", "test", "--data-dir", str(self.workdir / "data"),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", f"http://127.0.0.1:{self.peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer}",
                "--initial-cluster", f"test=http://127.0.0.1:{self.peer}", "--log-level", "warn"]


class ApiServer(WorkdirServer):
    name = "kube-apiserver"
    scheme = "https"
    ready_path = "/readyz"

    def __init__(self, workdir: Path, binary: str, etcd_url: str) -> None:
        super().__init__(workdir)
        self.binary, self.etcd_url = binary, etcd_url

    def args(self) -> list[str]:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.workdir / "sa.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
        (self.workdir / "sa.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        (self.workdir / "tokens.csv").write_text(f'{ADMIN_TOKEN},admin,admin-uid,"system:masters"\n')
        return [self.binary, "--etcd-servers", self.etcd_url, "--bind-address", "127.0.0.1",
                "--advertise-address", "127.0.0.1", "--secure-port", str(self.port),
                "--cert-dir", str(self.workdir / "certs"), "--token-auth-file", str(self.workdir / "tokens.csv"),
                "--authorization-mode", "RBAC", "--service-cluster-ip-range", "10.0.0.0/24",
                "--service-account-issuer", "https://kubernetes.default.svc",
                "--service-account-key-file", str(self.workdir / "sa.pub"),
                "--service-account-signing-key-file", str(self.workdir / "sa.key"),
                "--allow-privileged=false", "--endpoint-reconciler-type=none", "--profiling=false", "--v=1"]

    def start(self, timeout: float = 30.0):
        """Started; a port taken meanwhile (free_port's race with other processes) is retried on another."""
        for attempt in range(3):
            try:
                return super().start(timeout)
            except AssertionError as e:
                if "address already in use" not in str(e) or attempt == 2:
                    raise
                self.port = free_port()

    def ready(self) -> bool:
        try:
            req = urllib.request.Request(self.url + "/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            with urllib.request.urlopen(req, timeout=2, context=_ctx()) as r:
                return r.status == 200
        except (OSError, urllib.error.HTTPError):
            return False


class ControllerManager(WorkdirServer):
    name = "kube-controller-manager"
    scheme = "https"

    def __init__(self, workdir: Path, binary: str, apiserver: str) -> None:
        super().__init__(workdir)
        self.binary, self.apiserver = binary, apiserver

    def args(self) -> list[str]:
        kubeconfig = {
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.apiserver, "insecure-skip-tls-verify": True}}],
            "users": [{"name": "admin", "user": {"token": ADMIN_TOKEN}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        }
        (self.workdir / "kubeconfig").write_text(json.dumps(kubeconfig))
        return [self.binary, "--kubeconfig", str(self.workdir / "kubeconfig"), "--leader-elect=false",
                "--controllers", "job-controller,ttl-after-finished-controller,garbage-collector-controller,serviceaccount-controller",
                "--bind-address", "127.0.0.1", "--secure-port", str(self.port),
                "--cert-dir", str(self.workdir / "certs"), "--concurrent-job-syncs", "2", "--v=1"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2, context=_ctx()) as r:
                return r.status == 200
        except urllib.error.HTTPError as e:
            return e.code in (401, 403)  # serving; its health endpoint wants auth without the flags for it
        except OSError:
            return False


class Kubelet:
    """Stands in for the kubelet (and the scheduler's one status write) of the probe pods in ``namespace``.

    ``decide(pod) -> "run" | "hang" | "preempt" | "unschedulable" | "ignore"`` picks what becomes of each new pod.
    "run" runs the pod's command here (``python -m wan_exporter`` + its args, its env, its volumes
    as files, ``env_override`` on top) and reports the exit status as the pod's phase.
    """

    def __init__(self, api: Api, namespace: str, workdir: Path, decide: Callable[[dict], str],
                 env_override: dict[str, str], base_env: dict[str, str]) -> None:
        self.api, self.namespace, self.workdir = api, namespace, workdir
        self.decide, self.env_override, self.base_env = decide, env_override, base_env
        self.seen: dict[str, dict] = {}  # pod name -> the pod as first seen
        self.ran: dict[str, subprocess.CompletedProcess] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kubelet", daemon=True)

    def __enter__(self) -> "Kubelet":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        sel = "app.kubernetes.io/component%3Dprobe"
        while not self._stop.wait(0.3):
            status, pods = self.api.call("GET", f"/api/v1/namespaces/{self.namespace}/pods?labelSelector={sel}")
            if status != 200:
                continue
            for pod in pods.get("items", []):
                name = pod["metadata"]["name"]
                if name in self.seen:
                    continue
                self.seen[name] = pod
                threading.Thread(target=self._handle, args=(pod,), daemon=True).start()

    def _status(self, pod: dict, status: dict) -> None:
        path = f"/api/v1/namespaces/{self.namespace}/pods/{pod['metadata']['name']}/status"
        code, out = self.api.call("PATCH", path, {"status": status}, "application/merge-patch+json")
        # A pod deleted meanwhile (the exporter deletes a Job once it has read its result) has no status to write.
        assert 200 <= code < 300 or code == 404, (path, code, out)

    def _handle(self, pod: dict) -> None:
        what = self.decide(pod)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if what == "unschedulable":
            self._status(pod, {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                               "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
                                               "lastTransitionTime": now}]})
            return
        if what == "ignore":
            return
        # Bound to the node its selector names, as the scheduler would (pods/binding).
        node = (pod["spec"].get("nodeSelector") or {}).get("kubernetes.io/hostname", "node")
        self.api.ok("POST", f"/api/v1/namespaces/{self.namespace}/pods/{pod['metadata']['name']}/binding",
                    {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod["metadata"]["name"]},
                     "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
        running = {"phase": "Running", "startTime": now, "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}]}
        self._status(pod, running)
        if what == "hang":  # started, never finishes: only its Job's deadline ends it
            return
        if what == "preempt":
            time.sleep(0.5)
            self._status(pod, {"phase": "Failed", "conditions": [
                {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                 "message": "Preempted by a serving pod", "lastTransitionTime": now}],
                "containerStatuses": [_terminated(137, "Error")]})
            return
        rc = self._run(pod)
        self._status(pod, {"phase": "Succeeded" if rc == 0 else "Failed",
                           "containerStatuses": [_terminated(rc, "Completed" if rc == 0 else "Error")]})

    def _run(self, pod: dict) -> int:
        spec = pod["spec"]
        [c] = spec["containers"]
        root = self.workdir / pod["metadata"]["name"]
        mounts: dict[str, Path] = {}
        for v in spec.get("volumes", []):
            d = root / v["name"]
            d.mkdir(parents=True, exist_ok=True)
            if "configMap" in v:
                cm = self.api.ok("GET", f"/api/v1/namespaces/{self.namespace}/configmaps/{v['configMap']['name']}")
                for k, text in cm.get("data", {}).items():
                    (d / k).write_text(text)
            elif "secret" in v:
                import base64

                sec = self.api.ok("GET", f"/api/v1/namespaces/{self.namespace}/secrets/{v['secret']['secretName']}")
                items = v["secret"].get("items") or [{"key": k, "path": k} for k in sec.get("data", {})]
                for it in items:
                    (d / it["path"]).write_bytes(base64.b64decode(sec["data"][it["key"]]))
            mounts[v["name"]] = d
        remap = {m["mountPath"]: str(mounts[m["name"]]) for m in c.get("volumeMounts", []) if m["name"] in mounts}

        def local(value: str) -> str:
            for mount, path in sorted(remap.items(), key=lambda kv: -len(kv[0])):
                if value == mount or value.startswith(mount + "/"):
                    return path + value[len(mount):]
            return value

        env = {**self.base_env, **{e["name"]: local(e.get("value", "")) for e in c.get("env", []) if "value" in e},
               **self.env_override}
        args = [local(a) for a in c.get("args", [])]
        r = subprocess.run([sys.executable, "-m", "wan_exporter", *args], env=env, capture_output=True, text=True,
                           timeout=600)
        self.ran[pod["metadata"]["name"]] = r
        return r.returncode


def _terminated(code: int, reason: str) -> dict:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"name": "bench", "ready": False, "restartCount": 0, "image": "wan-exporter", "imageID": "",
            "state": {"terminated": {"exitCode": code, "reason": reason, "startedAt": now, "finishedAt": now}}}


def service_account_token(admin: Api, namespace: str, name: str) -> str:
    """A real bound token for the service account, from the TokenRequest API."""
    out = admin.ok("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                   {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": {"expirationSeconds": 3600}})
    return out["status"]["token"]


def wait_gone(admin: Api, path: str, timeout: float) -> None:
    wait_for(lambda: admin.call("GET", path)[0] == 404, timeout, 0.5, what=f"{path} deleted")


__all__ = ["ADMIN_TOKEN", "Api", "ApiServer", "ControllerManager", "Etcd", "Kubelet", "service_account_token",
           "wait_gone", "os"]
