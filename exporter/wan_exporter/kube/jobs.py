"""Job mode: a due benchmark becomes a Kubernetes Job, so the scheduler gives it its GPUs.

The exporter's DaemonSet holds no GPU. When a probe falls due, it creates a Job pinned to its own
node that requests ``nvidia.com/gpu: N`` at a low, preemptible priority; the Job's pod runs
``wan-exporter bench`` with the same config and posts its result back to this exporter
(``POST /-/probe-result``, a bearer token from a Secret both sides mount). The exporter then
folds the result in exactly as it does a local run. What the scheduler did instead of running it
(unschedulable, preempted, evicted) is a bounded skip reason; a Job past its deadline is the
``timeout`` failure.

The Kubernetes REST API is spoken directly with urllib and the pod's service-account token: the
exporter needs five calls (create/get/delete a Job, list its Pods), and the ``kubernetes``
client would add a large dependency (and its own thread pools) for them.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable

from ..config import Config, ModelConfig
from ..state import BenchmarkResult, Efficiency, MemoryEstimate, frozen_map

log = logging.getLogger(__name__)

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
PROBE_PATH = "/-/probe-result"
MAX_RESULT_BYTES = 1 << 20
LABEL_PROBE = "wan-exporter.io/probe-id"
COMPONENT = "probe"


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class KubeApi:
    """The few REST calls Job mode needs, authenticated with a bearer token."""

    def __init__(self, server: str, token: str | Callable[[], str], ca_file: str | None = None,
                 timeout: float = 10.0) -> None:
        self.server = server.rstrip("/")
        self._token = token
        self.timeout = timeout
        self._ctx = ssl.create_default_context(cafile=ca_file) if server.startswith("https") else None

    @classmethod
    def in_cluster(cls, server: str | None = None, token_file: str = str(SA_DIR / "token"),
                   ca_file: str = str(SA_DIR / "ca.crt")) -> "KubeApi":
        if server is None:
            host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        # Re-read each call: the kubelet rotates projected service-account tokens.
        return cls(server, lambda: Path(token_file).read_text().strip(), ca_file)

    def token(self) -> str:
        return self._token() if callable(self._token) else self._token

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token()}", "Accept": "application/json",
            **({"Content-Type": content_type} if data is not None else {})})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._ctx) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                msg = json.loads(e.read()).get("message", "")
            except Exception:  # noqa: BLE001
                msg = e.reason
            raise KubeError(e.code, str(msg)) from None

    def create_job(self, namespace: str, job: dict) -> dict:
        return self.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", job)

    def get_job(self, namespace: str, name: str) -> dict:
        return self.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")

    def delete_job(self, namespace: str, name: str) -> None:
        try:
            self.request("DELETE", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
                         {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
        except KubeError as e:
            if e.status != 404:
                raise

    def job_pods(self, namespace: str, job_name: str) -> list[dict]:
        return self.request("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=job-name%3D{job_name}"
                            ).get("items", [])


@dataclass(frozen=True)
class Identity:
    """The exporter pod, from the downward API: where Jobs go and who owns them."""

    namespace: str
    pod_name: str
    pod_uid: str
    node_name: str
    image: str
    pod_ip: str = ""

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Identity":
        env = os.environ if env is None else env
        missing = [k for k in ("POD_NAMESPACE", "POD_NAME", "POD_UID", "NODE_NAME") if not env.get(k)]
        if missing:
            raise RuntimeError("Job mode needs the downward API variables " + ", ".join(missing))
        return cls(env["POD_NAMESPACE"], env["POD_NAME"], env["POD_UID"], env["NODE_NAME"],
                   env.get("WAN_EXPORTER_IMAGE", ""), env.get("POD_IP", ""))


def _dns_label(*parts: str, limit: int = 52) -> str:
    s = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    return s[:limit].rstrip("-")


def job_manifest(cfg: Config, m: ModelConfig, profile: str, probe_id: str, me: Identity, report_url: str,
                 gpus: int = 1) -> dict:
    """The Job for one probe. Its pod runs ``wan-exporter bench`` with the exporter's config."""
    kj = cfg.kubernetes.jobs
    name = _dns_label("wan-probe", m.name, profile) + "-" + probe_id[:8]
    labels = {"app.kubernetes.io/name": "wan-exporter", "app.kubernetes.io/component": COMPONENT,
              LABEL_PROBE: probe_id}
    env = [
        {"name": "WAN_PROBE_ID", "value": probe_id},
        {"name": "WAN_PROBE_REPORT_URL", "value": report_url},
        {"name": "WAN_PROBE_TOKEN_FILE", "value": "/var/run/secrets/wan-exporter/probe/token"},
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "HF_HUB_CACHE", "value": "/models"},
        # The device plugin exposes the allocated GPUs only: the model's device becomes the first.
        {"name": "WAN_BENCH_DEVICE", "value": "cuda:0" if m.device != "cpu" else "cpu"},
    ] + [{"name": k, "value": v} for k, v in sorted(kj.extra_env.items())]
    mounts = [{"name": "probe-token", "mountPath": "/var/run/secrets/wan-exporter/probe", "readOnly": True},
              {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict] = [{"name": "probe-token", "secret": {"secretName": kj.token_secret}},
                           {"name": "tmp", "emptyDir": {}}]
    args = ["bench", "--model", m.name, "--profile", profile, "--json"]
    if kj.config_map:
        mounts.append({"name": "config", "mountPath": "/etc/wan-exporter", "readOnly": True})
        volumes.append({"name": "config", "configMap": {"name": kj.config_map}})
        args[1:1] = ["--config.file", "/etc/wan-exporter/config.yml"]
    if kj.report_ca_secret:
        mounts.append({"name": "report-ca", "mountPath": "/var/run/secrets/wan-exporter/report-ca", "readOnly": True})
        volumes.append({"name": "report-ca", "secret": {"secretName": kj.report_ca_secret,
                                                        "items": [{"key": "ca.crt", "path": "ca.crt"}]}})
        env.append({"name": "WAN_PROBE_REPORT_CA", "value": "/var/run/secrets/wan-exporter/report-ca/ca.crt"})
    if kj.models_volume:
        mounts.append({"name": "models", "mountPath": "/models", "readOnly": True})
        volumes.append({"name": "models", **kj.models_volume})
    gpu_res = {cfg.kubernetes.pod_resources.resource: str(gpus)} if m.device != "cpu" else {}
    resources = {k: dict(v or {}) for k, v in kj.resources.items() if k in ("requests", "limits")}
    if gpu_res:  # extended resources: requests equal limits
        for k in ("requests", "limits"):
            resources.setdefault(k, {}).update(gpu_res)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": me.namespace,
            "labels": labels,
            # Deleted with the exporter pod that asked for it (garbage collector).
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": me.pod_name, "uid": me.pod_uid,
                                 "controller": True, "blockOwnerDeletion": False}],
        },
        "spec": {
            "backoffLimit": 0,  # a probe is not retried: the next one falls due on schedule
            "activeDeadlineSeconds": max(1, int(cfg.profiles[profile].timeout)),
            "ttlSecondsAfterFinished": kj.ttl_seconds_after_finished,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "priorityClassName": kj.priority_class,
                    "automountServiceAccountToken": False,
                    # Pinned to the exporter's node: the probe measures this node's GPUs.
                    "nodeSelector": {"kubernetes.io/hostname": me.node_name},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001},
                    "containers": [{
                        "name": "bench",
                        "image": kj.image or me.image,
                        "args": args,
                        "env": env,
                        "resources": resources,
                        "volumeMounts": mounts,
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                    }],
                    "volumes": volumes,
                },
            },
        },
    }


def _strip_none(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _strip_none(v) for k, v in d.items() if v is not None}
    if isinstance(d, list):
        return [_strip_none(v) for v in d]
    return d


# -- the result handed back -------------------------------------------------------------------------


class ProbeInbox:
    """Results posted by Job pods, accepted only for probes this exporter is waiting on."""

    def __init__(self, token_file: str) -> None:
        self.token_file = token_file
        self._lock = threading.Lock()
        self._waiting: dict[str, threading.Event] = {}
        self._results: dict[str, dict] = {}

    def expect(self, probe_id: str) -> threading.Event:
        with self._lock:
            ev = self._waiting[probe_id] = threading.Event()
            return ev

    def take(self, probe_id: str) -> dict | None:
        with self._lock:
            self._waiting.pop(probe_id, None)
            return self._results.pop(probe_id, None)

    def _authorised(self, header: str) -> bool:
        try:
            token = Path(self.token_file).read_text().strip()
        except OSError:
            return False
        given = header[7:].strip() if header.startswith("Bearer ") else ""
        return bool(token) and hmac.compare_digest(given.encode(), token.encode())

    def wsgi(self, inner: Callable) -> Callable:
        """Route ``POST /-/probe-result`` here, ahead of basic auth (it has its own token)."""

        def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
            if environ.get("PATH_INFO") != PROBE_PATH:
                return inner(environ, start_response)
            return self._handle(environ, start_response)

        app.web_security = getattr(inner, "web_security", None)  # type: ignore[attr-defined]  # TLS stays on
        # The probe path checks its own token, so the server asks no basic auth of it (web.connections).
        app.own_auth_paths = frozenset(getattr(inner, "own_auth_paths", ())) | {PROBE_PATH}  # type: ignore[attr-defined]
        return app

    def _handle(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        def answer(status: str, text: str) -> list[bytes]:
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [text.encode() + b"\n"]

        if environ.get("REQUEST_METHOD") != "POST":
            return answer("405 Method Not Allowed", "POST a probe result")
        if not self._authorised(environ.get("HTTP_AUTHORIZATION", "")):
            return answer("401 Unauthorized", "a valid probe token is needed")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= MAX_RESULT_BYTES:
            return answer("413 Payload Too Large" if length > 0 else "411 Length Required", "bad length")
        try:
            body = json.loads(environ["wsgi.input"].read(length))
            probe_id = str(body["probe_id"])
            result = body["result"]
            if not isinstance(result, dict):
                raise TypeError("result is not an object")
        except (ValueError, KeyError, TypeError) as e:
            return answer("400 Bad Request", f"not a probe result: {e}")
        with self._lock:
            ev = self._waiting.get(probe_id)
            if ev is None or probe_id in self._results:
                return answer("404 Not Found", "no probe waiting under that id")
            self._results[probe_id] = result
        ev.set()
        return answer("202 Accepted", "accepted")


def result_from_report(d: dict, model: str, profile: str) -> tuple[BenchmarkResult, dict]:
    """The posted ``bench --json`` document as the result a local run gives, and the versions."""
    known = {f.name for f in fields(BenchmarkResult)}
    kw = {k: v for k, v in d.items() if k in known}
    kw["model"], kw["profile"] = model, profile  # the exporter's, never the pod's word for them
    kw["phases"] = frozen_map({str(k): float(v) for k, v in (d.get("phases") or {}).items()})
    kw["sanity"] = frozen_map({str(k): bool(v) for k, v in (d.get("sanity") or {}).items()})
    for key in ("rank_seconds_per_step", "rank_peak_memory_bytes"):  # per-rank figures of a parallel profile
        if isinstance(d.get(key), dict):
            kw[key] = frozen_map({str(k): v for k, v in d[key].items()})
    # The run's own figures (computed in the pod when it ended, from what it loaded) and the memory
    # guard's estimate, typed as a local run's; anything else in their place is dropped, never guessed.
    for key, cls in (("efficiency", Efficiency), ("memory_estimate", MemoryEstimate)):
        value = d.get(key)
        names = {f.name for f in fields(cls)}
        try:
            kw[key] = cls(**{k: v for k, v in value.items() if k in names}) if isinstance(value, dict) else None
        except TypeError:  # a document missing a required figure
            kw[key] = None
    from ..contract.labels import FAILURE_REASONS

    if kw.get("reason") and kw["reason"] not in FAILURE_REASONS:
        kw["reason"] = "unknown"
    return BenchmarkResult(**kw), dict(d.get("versions") or {})


def post_result(url: str, token_file: str, probe_id: str, document: dict, ca_file: str | None = None,
                timeout: float = 30.0) -> int:
    """The Job pod's side: hand ``bench --json``'s document to the exporter that asked for it."""
    data = json.dumps({"probe_id": probe_id, "result": document}).encode()
    token = Path(token_file).read_text().strip()
    req = urllib.request.Request(url.rstrip("/") + PROBE_PATH, data=data, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    ctx = ssl.create_default_context(cafile=ca_file) if url.startswith("https") else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


# -- what became of a Job -------------------------------------------------------------------------

# Pod condition DisruptionTarget reasons (k8s.io/api/core/v1) -> the bounded skip reason.
_DISRUPTION = {"PreemptionByScheduler": "preempted", "PreemptionByKubeScheduler": "preempted",
               "EvictionByEvictionAPI": "evicted", "TerminationByKubelet": "evicted",
               "DeletionByTaintManager": "evicted", "DeletionByPodGC": "evicted"}


def _cond(obj: dict, kind: str) -> dict | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return c
    return None


def pod_outcome(pods: list[dict]) -> str | None:
    """A skip reason when the scheduler or kubelet took the probe's pod away, else None."""
    for p in pods:
        st = p.get("status") or {}
        c = _cond(p, "DisruptionTarget")
        if c is not None:
            return _DISRUPTION.get(c.get("reason", ""), "evicted")
        if st.get("reason") in ("Evicted", "Preempting", "Terminated"):
            return "preempted" if st.get("reason") == "Preempting" else "evicted"
    return None


def unschedulable(pods: list[dict]) -> bool:
    for p in pods:
        for c in (p.get("status") or {}).get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
                return True
    return False


@dataclass
class Outcome:
    result: BenchmarkResult | None = None
    versions: dict | None = None
    skip: str | None = None  # bounded skip reason


class JobProbes:
    """Runs one probe as a Job and waits for its result or its fate."""

    def __init__(self, api: KubeApi, me: Identity, inbox: ProbeInbox, report_url: str,
                 stopping: threading.Event | None = None) -> None:
        self.api, self.me, self.inbox, self.report_url = api, me, inbox, report_url
        self.stopping = stopping or threading.Event()

    def run(self, cfg: Config, m: ModelConfig, profile: str, gpus: int = 1) -> Outcome:
        probe_id = uuid.uuid4().hex
        job = _strip_none(job_manifest(cfg, m, profile, probe_id, self.me, self.report_url, gpus))
        name = job["metadata"]["name"]
        arrived = self.inbox.expect(probe_id)
        started = time.time()
        try:
            self.api.create_job(self.me.namespace, job)
        except BaseException:
            self.inbox.take(probe_id)
            raise
        log.info("probe %s/%s: created Job %s/%s", m.name, profile, self.me.namespace, name)
        try:
            return self._await(cfg, m, profile, probe_id, name, arrived, started)
        finally:
            self.inbox.take(probe_id)
            # Read, so done with: the Job (and its pod) go now. ttlSecondsAfterFinished is the backstop
            # for an exporter that restarted before it got here.
            try:
                self.api.delete_job(self.me.namespace, name)
            except (KubeError, OSError) as e:
                log.warning("probe %s/%s: could not delete Job %s (its TTL will): %s", m.name, profile, name, e)

    def _await(self, cfg: Config, m: ModelConfig, profile: str, probe_id: str, name: str,
               arrived: threading.Event, started: float) -> Outcome:
        kj = cfg.kubernetes.jobs
        deadline = started + kj.pending_timeout + cfg.profiles[profile].timeout + 60
        while not self.stopping.is_set():
            if arrived.wait(kj.poll_interval):
                doc = self.inbox.take(probe_id)
                if doc is not None:
                    r, versions = result_from_report(doc, m.name, profile)
                    return Outcome(result=r, versions=versions)
            o = self._fate(cfg, m, profile, name, started)
            if o is not None:
                doc = self.inbox.take(probe_id)  # a result that came in meanwhile is the better word
                if doc is not None:
                    r, versions = result_from_report(doc, m.name, profile)
                    return Outcome(result=r, versions=versions)
                return o
            if time.time() > deadline:
                return Outcome(result=_failure(m, profile, started, "timeout", "no result from the Job"))
        return Outcome(skip=None)

    def _fate(self, cfg: Config, m: ModelConfig, profile: str, name: str, started: float) -> Outcome | None:
        try:
            job = self.api.get_job(self.me.namespace, name)
        except KubeError as e:
            if e.status == 404:  # deleted under us (the exporter pod's owner chain, an operator)
                return Outcome(skip="evicted")
            raise
        pods = self.api.job_pods(self.me.namespace, name)
        failed = _cond(job, "Failed")
        if failed is not None or _cond(job, "FailureTarget") is not None:
            c = failed or _cond(job, "FailureTarget") or {}
            taken = pod_outcome(pods)
            if taken is not None:
                return Outcome(skip=taken)
            never_ran = not pods or all(not (p.get("status") or {}).get("startTime") for p in pods)
            if never_ran:  # the deadline ran out while it waited for a GPU: the probe never started
                return Outcome(skip="unschedulable")
            if c.get("reason") == "DeadlineExceeded":
                return Outcome(result=_failure(m, profile, started, "timeout",
                                               "the Job passed its activeDeadlineSeconds"))
            return Outcome(result=_failure(m, profile, started, "crash", f"Job failed: {c.get('reason', '')}"))
        if _cond(job, "Complete") is not None:
            # The pod finished; its result may still be in flight for a few seconds.
            return None if time.time() - _completed_at(job) < 10 else Outcome(
                result=_failure(m, profile, started, "unknown", "the Job completed without handing back a result"))
        taken = pod_outcome(pods)
        if taken is not None:
            return Outcome(skip=taken)
        if unschedulable(pods) and time.time() - started > cfg.kubernetes.jobs.pending_timeout:
            return Outcome(skip="unschedulable")
        return None


def _completed_at(job: dict) -> float:
    from datetime import datetime

    ts = (job.get("status") or {}).get("completionTime")
    if not ts:
        return time.time()
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _failure(m: ModelConfig, profile: str, started: float, reason: str, detail: str) -> BenchmarkResult:
    return BenchmarkResult(model=m.name, profile=profile, success=False, started_at=started,
                           finished_at=time.time(), reason=reason, detail=detail)
