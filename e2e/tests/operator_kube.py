"""Helpers for the operator's end-to-end tests (test_operator.py):

- `KubeControlPlane`: etcd + kube-apiserver started by e2e/kube-up.sh into a
  directory, with `kubectl` and `helm` from that directory's bin/;
- `Operator`: a `runnel-operator` process against that API server, with
  `--broker-override` pointing at brokers on 127.0.0.1;
- Kafka-side views through confluent-kafka's AdminClient: topic partitions
  and replicas, broker racks, topic configs.

Like harness.py, nothing here sleeps for a fixed time: every wait polls a
condition with a deadline.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any, Iterable, Optional

from harness import REPO_ROOT, admin, free_ports, http_get, wait_until

log = logging.getLogger("e2e")

KUBE_UP = REPO_ROOT / "e2e" / "kube-up.sh"
KUBE_DOWN = REPO_ROOT / "e2e" / "kube-down.sh"
DEFAULT_OPERATOR_BIN = REPO_ROOT / "target" / "debug" / "runnel-operator"

# kube-up builds the Kubernetes binaries on its first run (minutes); a cached
# run starts etcd and the API server in seconds.
KUBE_UP_TIMEOUT_S = 3600
# How long the operator gets to act on a change (it is woken by a watch; the
# resync interval used here is 2 s).
RECONCILE_TIMEOUT_S = 60.0


def operator_bin() -> Path:
    return Path(os.environ.get("RUNNEL_OPERATOR_BIN", str(DEFAULT_OPERATOR_BIN)))


class KubeControlPlane:
    """An API server with no nodes: objects are stored, nothing runs them."""

    def __init__(self, workdir: Path):
        self.dir = Path(workdir)
        self.kubeconfig = self.dir / "kubeconfig"
        self.bin = self.dir / "bin"

    def up(self) -> "KubeControlPlane":
        log.info("starting etcd and kube-apiserver with %s %s", KUBE_UP, self.dir)
        proc = subprocess.run(["bash", str(KUBE_UP), str(self.dir)], capture_output=True,
                              text=True, timeout=KUBE_UP_TIMEOUT_S)
        if proc.returncode != 0:
            raise AssertionError(f"kube-up.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        log.info("control plane up: %s", self.kubeconfig)
        return self

    def down(self) -> None:
        subprocess.run(["bash", str(KUBE_DOWN), str(self.dir)], capture_output=True, text=True,
                       timeout=120)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNEL_")}
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin}:{env.get('PATH', '')}"
        return env

    def run(self, tool: str, *args: str, input: Optional[str] = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess:
        argv = [str(self.bin / tool), *args]
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, env=self.env(),
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}\n"
                                 f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        return self.run("kubectl", *args, **kw)

    def helm(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        return self.run("helm", *args, **kw)

    def apply(self, manifest: str, namespace: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.kubectl("apply", "-n", namespace, "-f", "-", input=manifest, check=check)

    def get(self, kind: str, name: str, namespace: Optional[str] = None) -> Optional[dict]:
        ns = ["-n", namespace] if namespace else []
        proc = self.kubectl("get", kind, name, *ns, "-o", "json", check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise AssertionError(f"kubectl get {kind} {name}: {proc.stderr}")
        return json.loads(proc.stdout)

    def condition(self, kind: str, name: str, namespace: str, type_: str = "Ready") -> Optional[dict]:
        obj = self.get(kind, name, namespace) or {}
        for c in (obj.get("status") or {}).get("conditions") or []:
            if c.get("type") == type_:
                return c
        return None

    def wait_condition(self, kind: str, name: str, namespace: str, status: str,
                       reason: Optional[str] = None, type_: str = "Ready",
                       min_generation: Optional[int] = None,
                       timeout: float = RECONCILE_TIMEOUT_S) -> dict:
        """Wait for condition `type_` to have `status` (and `reason`), written
        for at least generation `min_generation` (default: the object's)."""

        def ok():
            obj = self.get(kind, name, namespace) or {}
            gen = min_generation or (obj.get("metadata") or {}).get("generation")
            for c in (obj.get("status") or {}).get("conditions") or []:
                if (c.get("type") == type_ and c.get("status") == status
                        and (reason is None or c.get("reason") == reason)
                        and (c.get("observedGeneration") or 0) >= (gen or 0)):
                    return c
            return None

        return wait_until(ok, timeout=timeout, interval=0.3,
                          what=f"{kind} {namespace}/{name} {type_}={status} {reason or ''}".strip())


class Operator:
    """A `runnel-operator` process; its log goes to `workdir/operator.log`."""

    def __init__(self, kube: KubeControlPlane, workdir: Path, overrides: dict[str, list[str]],
                 extra_args: Iterable[str] = ()):
        self.kube = kube
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "operator.log"
        self.overrides = overrides
        self.extra_args = list(extra_args)
        (self.metrics_port,) = free_ports(1)
        self.proc: Optional[subprocess.Popen] = None

    def argv(self) -> list[str]:
        args = [str(operator_bin()), "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
                "--resync-seconds", "2", "--group-refresh-seconds", "2",
                "--admin-timeout-seconds", "5", "--lease-namespace", "default"]
        for key, addrs in self.overrides.items():
            args += ["--broker-override", f"{key}={','.join(addrs)}"]
        return args + self.extra_args

    def start(self) -> "Operator":
        binary = operator_bin()
        if not binary.is_file():
            raise AssertionError(f"operator binary not found at {binary} "
                                 "(build it with `cargo build -p runnel-operator`)")
        env = self.kube.env()
        env.setdefault("RUST_LOG", "info,kube=warn")
        env["NO_COLOR"] = "1"
        with open(self.log_path, "ab") as logf:
            logf.write(f"\n===== e2e: {' '.join(self.argv())}\n".encode())
            logf.flush()
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
                                         start_new_session=True)
        log.info("started runnel-operator pid %s (metrics 127.0.0.1:%s), log %s",
                 self.proc.pid, self.metrics_port, self.log_path)
        wait_until(self.healthy, timeout=30, what="operator /health")
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        if not self.alive():
            raise AssertionError(f"operator exited with {self.proc.returncode if self.proc else None}\n"
                                 f"{self.log_tail()}")
        try:
            status, _ = http_get(f"http://127.0.0.1:{self.metrics_port}/health")
        except OSError:
            return False
        return status == 200

    def metrics(self) -> str:
        status, body = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        assert status == 200, f"/metrics answered {status}"
        return body.decode()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> Optional[int]:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        log.info("runnel-operator pid %s stopped with %s", self.proc.pid, code)
        self.proc = None
        return code

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no operator log)"
        return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------
# the brokers' side


def topic_replicas(bootstrap: str, topic: str, timeout: float = 10) -> Optional[dict[int, list[int]]]:
    """partition -> replica ids (leader first as assigned), or None when the
    topic does not exist."""
    md = admin(bootstrap).list_topics(topic=topic, timeout=timeout)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return {p.id: list(p.replicas) for p in t.partitions.values()}


def broker_racks(bootstrap: str, timeout: float = 10) -> dict[int, Optional[str]]:
    """broker id -> rack, through DescribeCluster."""
    a = admin(bootstrap)  # keep the client alive until the future completes
    desc = a.describe_cluster(request_timeout=timeout).result(timeout)
    return {n.id: n.rack for n in desc.nodes}


def topic_config(bootstrap: str, topic: str, timeout: float = 10) -> dict[str, str]:
    from confluent_kafka.admin import ConfigResource, ResourceType

    a = admin(bootstrap)  # keep the client alive until the future completes
    res = ConfigResource(ResourceType.TOPIC, topic)
    entries = a.describe_configs([res], request_timeout=timeout)[res].result(timeout)
    return {k: v.value for k, v in entries.items()}


def set_topic_config(bootstrap: str, topic: str, key: str, value: str, timeout: float = 10) -> None:
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                       ResourceType)

    a = admin(bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic,
                         incremental_configs=[ConfigEntry(key, value,
                                                          incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res], request_timeout=timeout)[res].result(timeout)


def have_go() -> bool:
    return shutil.which("go") is not None
