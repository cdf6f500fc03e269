"""Clusters of brokers for the replication tests (test_replication*.py,
test_cluster*.py), on top of harness.py.

- `Cluster`: N brokers (default 3, racks zone-a/b/c), every one a controller
  voter, either all on 127.0.0.1 with free ports, or each in a network
  namespace of its own (`netns=True`, see e2e/netns.sh) so that a test can cut
  one broker off from the others while it can still reach it. Start, stop
  (SIGTERM), kill -9 and restart a broker by node id; `metadata(via=id)` asks
  one broker for Metadata (leader, replicas, ISR per partition; brokers with
  racks); `wait_isr`, `leader_of`, `bootstrap`. A Cluster is a BrokerFactory,
  so conftest.py attaches its brokers' logs to a failing test's report and
  stops them at teardown.
- `StreamProducer`: a confluent-kafka producer in a thread writing uniquely
  numbered records, keeping a history of every delivery report;
  `check_history` checks a history against what the log holds afterwards.
- helpers: Prometheus metrics of a broker, reading a partition from one
  chosen replica (Fetch v11), Kafka's own command-line tools from the jars of
  e2e/reference/setup-kafka.sh.

Against the reference (RUNNEL_BROKER_BIN=e2e/reference/kafka-as-runnel, or
RUNNEL_E2E_REFERENCE=1) `REFERENCE` is true: the tests then skip checks of
Runnel's own metrics, and deadlines are longer (three JVMs on a small machine
are slow). RUNNEL_E2E_RDKAFKA_DEBUG=eos,msg (librdkafka `debug` contexts) makes
the StreamProducers log librdkafka's own account of retries and epoch bumps
to stderr. Like harness.py, nothing here sleeps for a fixed time.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import harness
from harness import (Broker, BrokerError, BrokerFactory, Rec, WaitTimeout, broker_bin,
                     consume_confluent, http_get, wait_until)

log = logging.getLogger("e2e")

E2E_DIR = Path(__file__).resolve().parents[1]
NETNS_SH = E2E_DIR / "netns.sh"


def _reference() -> bool:
    flag = os.environ.get("RUNNEL_E2E_REFERENCE")
    if flag is not None:
        return flag.strip().lower() not in ("", "0", "false", "no")
    return broker_bin().name == "kafka-as-runnel"


# True when the broker under test is Apache Kafka behind kafka-as-runnel.
REFERENCE = _reference()

RACKS = ("zone-a", "zone-b", "zone-c")


def deadline(seconds: float) -> float:
    """A deadline for waiting on the cluster: as given for Runnel, 3x for the
    reference (three or four JVMs on a 2-core machine start, elect and catch
    up slowly). A deadline is an upper bound; waits end when the condition
    holds."""
    return seconds * 3 if REFERENCE else seconds


# Settings every cluster of these tests gets (a test can override any):
CLUSTER_SETTINGS: dict[str, Any] = {
    # Runnel's defaults, spelt out so that the reference runs with the same.
    "broker.session.timeout.ms": 6000,
    "broker.heartbeat.interval.ms": 500,
    "controller.quorum.election.timeout.ms": 1000,
    "default.replication.factor": 3,
    "offsets.topic.replication.factor": 3,
    "unclean.leader.election.enable": "false",
    # A follower not caught up for 3 s leaves the ISR (production's 30 s would
    # make every test wait that long after a kill).
    "replica.lag.time.max.ms": 3000,
    # Leaders stay where the tests put them: no background rebalancing.
    "auto.leader.rebalance.enable": "false",
    # A small __consumer_offsets: librdkafka consumers look up a coordinator
    # even with assign(), which creates it; 50 partitions x 3 replicas is slow
    # on the reference.
    "offsets.topic.num.partitions": 3,
    "group.initial.rebalance.delay.ms": 0,
}

# Readiness of one broker process (/health and the Kafka port).
READY_TIMEOUT_S = 120.0
# How long brokers SIGTERMed together at teardown get to exit. The whole
# cluster going down at once can leave the last broker's controlled shutdown
# without a controller quorum: it then waits out its own bound (Runnel: 30 s)
# before it exits.
CLUSTER_STOP_TIMEOUT_S = 60.0


# --------------------------------------------------------------------------
# network namespaces


class NetnsUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class NetnsNode:
    index: int
    netns: str
    client_ip: str  # the Kafka listener and metrics; reachable from the test process
    rpc_ip: str     # the inter-broker network (gRPC / controller)


class NetnsRun:
    """One run of e2e/netns.sh: a namespace per broker, a point-to-point
    client link from the host to each, and an inter-broker bridge. `down()`
    removes all of it; it is also registered with atexit, and the next run's
    `gc` removes what a killed test process left behind."""

    def __init__(self, n: int):
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root (e2e/netns.sh uses `ip netns`)")
        if shutil.which("ip") is None:
            raise NetnsUnavailable("network namespaces need iproute2's `ip`")
        subprocess.run([str(NETNS_SH), "gc"], capture_output=True, timeout=60)
        last = ""
        for _ in range(5):
            self.run = secrets.token_hex(3)
            proc = subprocess.run([str(NETNS_SH), "up", self.run, str(n), str(os.getpid())],
                                  capture_output=True, text=True, timeout=120)
            if proc.returncode == 0:
                break
            last = proc.stderr.strip()
            log.warning("netns.sh up %s failed: %s", self.run, last)
        else:
            raise NetnsUnavailable(f"e2e/netns.sh up failed: {last}")
        self.nodes: dict[int, NetnsNode] = {}
        for line in proc.stdout.splitlines():
            i, ns, cip, rip = line.split()
            self.nodes[int(i)] = NetnsNode(int(i), ns, cip, rip)
        self._down = False
        atexit.register(self.down)
        log.info("network namespaces of run %s: %s", self.run,
                 ", ".join(f"{n.netns} (client {n.client_ip}, rpc {n.rpc_ip})"
                           for n in self.nodes.values()))

    def _sh(self, *args: str) -> None:
        proc = subprocess.run([str(NETNS_SH), *args], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"netns.sh {' '.join(args)}: {proc.stderr.strip()}")

    def cut(self, index: int) -> None:
        """Cut node `index` off from the inter-broker network."""
        self._sh("cut", self.run, str(index))

    def heal(self, index: int) -> None:
        self._sh("heal", self.run, str(index))

    def down(self) -> None:
        if not self._down:
            self._down = True
            proc = subprocess.run([str(NETNS_SH), "down", self.run], capture_output=True,
                                  text=True, timeout=120)
            if proc.returncode != 0:
                log.warning("netns.sh down %s: %s", self.run, proc.stderr.strip())


# --------------------------------------------------------------------------
# brokers of a cluster


class ClusterBroker(Broker):
    """A broker of a Cluster: harness.Broker with --rack and
    --controller-voters, optionally inside a network namespace (then every
    listener is on the namespace's own addresses, on fixed ports)."""

    def __init__(self, workdir: Path, node_id: int, rack: Optional[str],
                 settings: Optional[dict[str, Any]], node: Optional[NetnsNode] = None):
        super().__init__(workdir, node_id=node_id, settings=settings)
        self.rack = rack
        self.voters = ""  # set by the Cluster once every broker has its address
        self.netns = node.netns if node else None
        if node:
            # a namespace of its own: nothing else listens there
            self._host, self.rpc_host = node.client_ip, node.rpc_ip
            self.port, self.metrics_port, self.rpc_port = 9092, 9644, 9093
        else:
            self._host, self.rpc_host = "127.0.0.1", "127.0.0.1"

    @property
    def host(self) -> str:  # type: ignore[override]
        return self._host

    @property
    def rpc_addr(self) -> str:
        return f"{self.rpc_host}:{self.rpc_port}"

    def argv(self) -> list[str]:
        args = [
            str(self.binary),
            "--node-id", str(self.node_id),
            "--data-dir", str(self.data_dir),
            "--listen", self.bootstrap,
            "--advertise", self.bootstrap,
            "--metrics-listen", self.metrics_addr,
            "--rpc-listen", self.rpc_addr,
            "--controller-voters", self.voters,
        ]
        if self.rack:
            args += ["--rack", self.rack]
        for key, value in self.settings.items():
            args += ["--set", f"{key}={value}"]
        args += self.extra_args
        if self.netns:
            # `ip netns exec` execs the broker in place: the pid is the broker's
            return ["ip", "netns", "exec", self.netns] + args
        return args

    def __repr__(self) -> str:
        state = f"pid {self.proc.pid}" if self.alive() else "stopped"
        where = f" in {self.netns}" if self.netns else ""
        return f"<broker {self.node_id} ({self.rack}) at {self.bootstrap}{where} ({state})>"


# --------------------------------------------------------------------------
# metadata


@dataclass
class PartitionMeta:
    partition: int
    leader: int
    replicas: list[int]
    isr: list[int]
    offline: list[int]
    leader_epoch: int
    error: int


@dataclass
class BrokerMeta:
    node_id: int
    host: str
    port: int
    rack: Optional[str]


@dataclass
class Metadata:
    """One broker's answer to a Metadata request."""

    via: int
    brokers: dict[int, BrokerMeta]
    controller: int
    topics: dict[str, dict[int, PartitionMeta]]
    topic_errors: dict[str, int]

    def partitions(self, topic: str) -> dict[int, PartitionMeta]:
        return self.topics.get(topic, {})

    def leaders(self, topic: str) -> dict[int, int]:
        return {p: m.leader for p, m in self.partitions(topic).items()}

    def led_by(self, topic: str, node_id: int) -> list[int]:
        return sorted(p for p, m in self.partitions(topic).items() if m.leader == node_id)

    def describe(self, topic: Optional[str] = None) -> str:
        parts = [f"via broker {self.via}: brokers "
                 + ", ".join(f"{b.node_id}({b.rack})" for b in sorted(self.brokers.values(),
                                                                     key=lambda b: b.node_id))
                 + f"; controller {self.controller}"]
        for t, ps in self.topics.items():
            if topic is not None and t != topic:
                continue
            parts.append(f"{t}: " + "; ".join(
                f"p{p} leader {m.leader} epoch {m.leader_epoch} replicas {m.replicas} isr {m.isr}"
                + (f" offline {m.offline}" if m.offline else "")
                + (f" error {m.error}" if m.error else "")
                for p, m in sorted(ps.items())))
        return " | ".join(parts)


METADATA_VERSION = 7  # brokers' racks (v1+), offline replicas (v5+), leader epochs (v7+)


def fetch_metadata(host: str, port: int, topics: Optional[Iterable[str]] = None,
                   via: int = -1, timeout: float = 10.0) -> Metadata:
    """Metadata from the broker at host:port, and from it alone (a client
    library would ask whichever broker it likes)."""
    from kafka.protocol.metadata import MetadataRequest, MetadataResponse

    from group_helpers import Wire

    T = MetadataRequest.MetadataRequestTopic
    req = MetadataRequest(topics=None if topics is None else [T(name=t) for t in topics],
                          allow_auto_topic_creation=False)
    with Wire(host, port, client_id="e2e-cluster", timeout=timeout) as w:
        resp = w.call(req, MetadataResponse, METADATA_VERSION)
    brokers = {b.node_id: BrokerMeta(b.node_id, b.host, b.port, b.rack) for b in resp.brokers}
    out: dict[str, dict[int, PartitionMeta]] = {}
    errors: dict[str, int] = {}
    for t in resp.topics:
        errors[t.name] = t.error_code
        out[t.name] = {p.partition_index: PartitionMeta(
            p.partition_index, p.leader_id, list(p.replica_nodes), list(p.isr_nodes),
            list(p.offline_replicas or []), p.leader_epoch, p.error_code) for p in t.partitions}
    return Metadata(via, brokers, resp.controller_id, out, errors)


# --------------------------------------------------------------------------
# the cluster


class Cluster(BrokerFactory):
    """N brokers, each a controller voter, racks zone-a, zone-b, zone-c, ...
    Node ids are 1..N unless `ids` names them. Create with `Cluster.create(...)`, then `start()`."""

    def __init__(self, basedir: Path, n: int = 3, settings: Optional[dict[str, Any]] = None,
                 racks: Optional[Iterable[str]] = None, netns: bool = False,
                 ids: Optional[Iterable[int]] = None):
        super().__init__(Path(basedir))
        self.basedir.mkdir(parents=True, exist_ok=True)
        racks = list(racks) if racks is not None else [RACKS[i % len(RACKS)] for i in range(n)]
        assert len(racks) == n, f"{n} brokers but racks {racks}"
        # Node ids 1..n unless given (the operator's tests use its ids: 1000, 2000, ...).
        ids = list(ids) if ids is not None else list(range(1, n + 1))
        assert len(ids) == n, f"{n} brokers but ids {ids}"
        merged = dict(CLUSTER_SETTINGS)
        merged.update(settings or {})
        self.settings = merged
        self.net: Optional[NetnsRun] = NetnsRun(n) if netns else None
        for i, node_id in enumerate(ids, start=1):
            node = self.net.nodes[i] if self.net else None
            self.brokers.append(ClusterBroker(self.basedir / f"node{node_id}", node_id,
                                              racks[i - 1], merged, node))
        voters = ",".join(f"{b.node_id}@{b.rpc_addr}" for b in self.brokers)
        for b in self.brokers:
            b.voters = voters
        self.voters = voters
        self._closed = False
        self._warned_no_gauge = False

    # -- addresses

    def broker(self, node_id: int) -> ClusterBroker:
        for b in self.brokers:
            if b.node_id == node_id:
                return b  # type: ignore[return-value]
        raise KeyError(f"no broker {node_id} in {self.brokers}")

    @property
    def ids(self) -> list[int]:
        return [b.node_id for b in self.brokers]

    def live_ids(self) -> list[int]:
        return [b.node_id for b in self.brokers if b.alive()]

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def bootstrap_of(self, ids: Iterable[int]) -> str:
        return ",".join(self.broker(i).bootstrap for i in ids)

    def rack_of(self, node_id: int) -> Optional[str]:
        return self.broker(node_id).rack  # type: ignore[attr-defined]

    # -- lifecycle

    def start(self, timeout: float = READY_TIMEOUT_S) -> "Cluster":
        """Start every broker at once (a lone voter may not get ready without
        a quorum), then wait until each one's Metadata lists all of them."""
        log.info("starting %d brokers (%s), voters %s", len(self.brokers),
                 "network namespaces" if self.net else "loopback", self.voters)
        self._start_many(self.ids, timeout)
        self.wait_formed()
        return self

    def _start_many(self, ids: list[int], timeout: float) -> None:
        with ThreadPoolExecutor(max_workers=len(ids)) as pool:
            futures = {i: pool.submit(self.broker(i).start, deadline(timeout)) for i in ids}
        errors = []
        for i, f in futures.items():
            exc = f.exception()
            if exc is not None:
                errors.append(f"broker {i}: {exc}")
        if errors:
            raise BrokerError("\n".join(errors))

    def start_broker(self, node_id: int, timeout: float = READY_TIMEOUT_S) -> None:
        self.broker(node_id).start(deadline(timeout))

    def start_brokers(self, ids: Iterable[int], timeout: float = READY_TIMEOUT_S) -> None:
        self._start_many(list(ids), timeout)

    def stop(self, node_id: int, timeout: float = harness.STOP_TIMEOUT_S) -> int:
        """SIGTERM (a controlled shutdown); returns the exit code."""
        return self.broker(node_id).stop(deadline(timeout))

    def kill9(self, node_id: int) -> None:
        self.broker(node_id).kill9()

    def restart(self, node_id: int, timeout: float = READY_TIMEOUT_S) -> None:
        b = self.broker(node_id)
        if b.alive():
            b.stop(deadline(harness.STOP_TIMEOUT_S))
        b.start(deadline(timeout))

    def close(self) -> list[str]:
        """SIGTERM every live broker at once and wait for them; remove the
        namespaces. Returns complaints (a hang, a nonzero exit)."""
        if self._closed:
            return []
        self._closed = True
        problems: list[str] = []
        live = [b for b in self.brokers if b.alive()]
        for b in live:
            b.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        t_sent = time.monotonic()
        t_end = t_sent + deadline(CLUSTER_STOP_TIMEOUT_S)
        for b in live:
            # one SIGTERM each: a second one could reach a process that is
            # already exiting (and has given its handlers back)
            try:
                b.proc.wait(max(0.0, t_end - time.monotonic()))  # type: ignore[union-attr]
                log.info("teardown: broker %d had exited %.1fs after SIGTERM", b.node_id,
                         time.monotonic() - t_sent)
            except subprocess.TimeoutExpired:
                pass
        for b in live:
            try:
                still = b.alive()
                code = b.stop(deadline(harness.STOP_TIMEOUT_S))
                if still:
                    problems.append(f"broker {b.node_id} had not exited "
                                    f"{deadline(CLUSTER_STOP_TIMEOUT_S):.0f}s after SIGTERM at "
                                    f"teardown (exit code {code} after a second SIGTERM)")
                elif code != 0:
                    problems.append(f"{b!r} exited with code {code} on SIGTERM at teardown")
            except BrokerError as exc:
                problems.append(f"broker {b.node_id} at teardown: {exc}")
        if self.net is not None:
            self.net.down()
        return problems

    # -- netns faults

    def cut(self, node_id: int) -> None:
        assert self.net is not None, "cut() needs a cluster in network namespaces (netns=True)"
        log.info("cutting broker %d off from the other brokers (client link stays up)", node_id)
        self.net.cut(node_id)

    def heal(self, node_id: int) -> None:
        assert self.net is not None
        log.info("reconnecting broker %d to the other brokers", node_id)
        self.net.heal(node_id)

    # -- metadata

    def metadata(self, via: Optional[int] = None, topics: Optional[Iterable[str]] = None,
                 timeout: float = 10.0) -> Metadata:
        """Metadata from broker `via`, or from the first live broker that answers."""
        candidates = [via] if via is not None else self.live_ids()
        last: Optional[BaseException] = None
        for i in candidates:
            b = self.broker(i)
            try:
                return fetch_metadata(b.host, b.port, topics, via=i, timeout=timeout)
            except (OSError, EOFError) as exc:
                last = exc
        raise ConnectionError(f"no Metadata answer from brokers {candidates}: {last!r}")

    def wait_formed(self, ids: Optional[Iterable[int]] = None, timeout: float = 120.0) -> None:
        """Until every live broker's Metadata lists every broker of `ids`
        (default: the live ones) with its address and rack."""
        want = sorted(ids) if ids is not None else self.live_ids()
        last: dict[int, str] = {}

        def formed() -> bool:
            ok = True
            for i in self.live_ids():
                try:
                    md = self.metadata(via=i, topics=[], timeout=5)
                except (ConnectionError, OSError, EOFError) as exc:
                    last[i] = repr(exc)
                    ok = False
                    continue
                last[i] = md.describe()
                for j in want:
                    bm = md.brokers.get(j)
                    b = self.broker(j)
                    if bm is None or (bm.host, bm.port) != (b.host, b.port) or bm.rack != b.rack:  # type: ignore[attr-defined]
                        ok = False
            return ok

        t0 = time.monotonic()
        try:
            wait_until(formed, timeout=deadline(timeout), interval=0.25,
                       what=f"every live broker's Metadata to list brokers {want} with their racks")
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; last answers: {last}") from None
        log.info("cluster formed: brokers %s listed by %s after %.1fs", want, self.live_ids(),
                 time.monotonic() - t0)

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 3,
                     config: Optional[dict[str, Any]] = None,
                     assignment: Optional[list[list[int]]] = None,
                     timeout: float = 120.0) -> None:
        """CreateTopics (with an explicit replica assignment if given), then
        wait until every live broker's Metadata shows every partition led with
        a full ISR."""
        from confluent_kafka.admin import NewTopic

        kw: dict[str, Any] = {"config": {k: str(v) for k, v in (config or {}).items()}}
        if assignment is not None:
            # confluent-kafka wants the partition count with an assignment
            kw["num_partitions"] = len(assignment)
            kw["replica_assignment"] = assignment
        else:
            kw["num_partitions"] = partitions
            kw["replication_factor"] = replication_factor
        a = harness.admin(self.bootstrap)
        t = deadline(timeout)
        a.create_topics([NewTopic(name, **kw)], operation_timeout=t, request_timeout=t)[name].result(t)
        rf = len(assignment[0]) if assignment is not None else replication_factor
        n = len(assignment) if assignment is not None else partitions
        self.wait_isr(name, rf, partitions=n, timeout=timeout)

    def wait_isr(self, topic: str, size: int, partitions: Optional[int] = None,
                 via: Optional[Iterable[int]] = None, timeout: float = 120.0,
                 what: str = "") -> Metadata:
        """Until the Metadata of every broker in `via` (default: the live ones)
        shows each partition of `topic` (`partitions` of them, if given) with a
        live leader and an ISR of `size`. Returns the last Metadata seen."""
        last: dict[int, str] = {}
        result: list[Metadata] = []

        def ok() -> bool:
            ids = list(via) if via is not None else self.live_ids()
            live = set(self.live_ids())
            result.clear()
            for i in ids:
                try:
                    md = self.metadata(via=i, topics=[topic], timeout=5)
                except (ConnectionError, OSError, EOFError) as exc:
                    last[i] = repr(exc)
                    return False
                last[i] = md.describe(topic)
                ps = md.partitions(topic)
                if not ps or (partitions is not None and len(ps) != partitions):
                    return False
                for m in ps.values():
                    if m.error or m.leader not in live or len(m.isr) != size:
                        return False
                result.append(md)
            return True

        t0 = time.monotonic()
        try:
            wait_until(ok, timeout=deadline(timeout), interval=0.25,
                       what=what or f"ISR of {size} for every partition of {topic}")
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; last Metadata: {last}") from None
        log.info("%s: ISR %d everywhere after %.1fs (%s)", topic, size, time.monotonic() - t0,
                 result[0].describe(topic))
        return result[0]

    def wait_leaders_off(self, topic: str, node: int, via: Optional[Iterable[int]] = None,
                         timeout: float = 60.0, scale: bool = True, what: str = "") -> Metadata:
        """Until the Metadata of every broker in `via` (default: the live
        brokers but `node`) shows every partition of `topic` led by a live
        broker other than `node` (none led by `node`, none offline). The
        timeout is scaled for the reference unless `scale` is false."""
        last: dict[int, str] = {}
        result: list[Metadata] = []

        def moved() -> bool:
            live = set(self.live_ids())
            ids = sorted(via) if via is not None else sorted(live - {node})
            result.clear()
            for i in ids:
                md = self.metadata(via=i, topics=[topic], timeout=5)
                last[i] = md.describe(topic)
                ps = md.partitions(topic)
                if not ps or any(m.leader == node or m.leader not in live for m in ps.values()):
                    return False
                result.append(md)
            return True

        try:
            wait_until(moved, timeout=deadline(timeout) if scale else timeout, interval=0.2,
                       ignore=(OSError, EOFError, ConnectionError),
                       what=what or f"every partition of {topic} led by a live broker other than {node}")
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; last Metadata: {last}") from None
        return result[0]

    def active_controller(self, via: Optional[Iterable[int]] = None) -> Optional[int]:
        """The controller quorum's leader as brokers `via` (default: the live
        ones) see it, or None when they do not agree on one. Runnel: the
        broker whose `runnel_controller_is_leader` is 1 (a cut-off former
        leader may still say 1 of itself, so ask the side you mean). The
        reference: DescribeQuorum's leader id through Kafka's
        kafka-metadata-quorum tool (Metadata's controller id is any broker)."""
        ids = list(via) if via is not None else self.live_ids()
        if REFERENCE:
            out = kafka_tool(self.basedir, "org.apache.kafka.tools.MetadataQuorumCommand",
                             "--bootstrap-server", self.bootstrap_of(ids), "describe", "--status",
                             check=False, timeout=60)
            m = re.search(r"^LeaderId:\s+(-?\d+)", out.stdout, re.M)
            return int(m.group(1)) if m and int(m.group(1)) >= 0 else None
        gauges = {i: metric_sum(self.broker(i), "runnel_controller_is_leader") for i in ids}
        if any(v is not None for v in gauges.values()):
            leaders = [i for i, v in gauges.items() if (v or 0) >= 1]
            return leaders[0] if len(leaders) == 1 else None
        # No gauge: the broker that last logged that it leads, in the highest term.
        if not self._warned_no_gauge:
            self._warned_no_gauge = True
            log.warning("the brokers export no runnel_controller_is_leader; finding the controller "
                        "quorum's leader from their logs ('leading the controller quorum term=N')")
        best: Optional[tuple[int, int]] = None
        for b in self.brokers:
            try:
                text = b.log_path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            for m in re.finditer(r"leading the controller quorum term=(\d+)", text):
                if best is None or int(m.group(1)) > best[0]:
                    best = (int(m.group(1)), b.node_id)
        return best[1] if best is not None and best[1] in ids else None

    def leader_of(self, topic: str, partition: int, via: Optional[int] = None) -> int:
        return self.metadata(via=via, topics=[topic]).partitions(topic)[partition].leader

    def leaders(self, topic: str, via: Optional[int] = None) -> dict[int, int]:
        return self.metadata(via=via, topics=[topic]).leaders(topic)

    def busiest_leader(self, topic: str) -> tuple[int, list[int]]:
        """The broker leading the most partitions of `topic` (lowest id on a
        tie) and the partitions it leads."""
        leaders = self.leaders(topic)
        counts = Counter(leaders.values())
        node = sorted(counts, key=lambda i: (-counts[i], i))[0]
        return node, sorted(p for p, l in leaders.items() if l == node)

    def describe(self, topic: str) -> str:
        out = []
        for i in self.live_ids():
            try:
                out.append(self.metadata(via=i, topics=[topic], timeout=5).describe(topic))
            except Exception as exc:  # noqa: BLE001 - diagnostics only
                out.append(f"broker {i}: {exc!r}")
        return "\n".join(out)


class ClusterFactory(BrokerFactory):
    """Clusters for one test; a BrokerFactory so that conftest.py attaches
    the logs of all their brokers to a failing test's report."""

    def __init__(self, basedir: Path):
        super().__init__(Path(basedir))
        self.clusters: list[Cluster] = []

    def __call__(self, n: int = 3, settings: Optional[dict[str, Any]] = None,  # type: ignore[override]
                 racks: Optional[Iterable[str]] = None, netns: bool = False,
                 start: bool = True) -> Cluster:
        c = Cluster(self.basedir / f"cluster-{len(self.clusters)}", n, settings, racks, netns)
        self.clusters.append(c)
        self.brokers.extend(c.brokers)
        if start:
            c.start()
        return c

    def close(self) -> list[str]:
        problems: list[str] = []
        for c in self.clusters:
            problems += c.close()
        return problems


# --------------------------------------------------------------------------
# a producer under faults, and its history


def value_of(prefix: str, i: int) -> bytes:
    return b"%s-%09d" % (prefix.encode(), i)


def seq_of(value: bytes) -> int:
    return int(value.rsplit(b"-", 1)[1])


@dataclass
class History:
    """Every delivery report of a StreamProducer."""

    acked: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (partition, offset) -> value
    failed: list[tuple[bytes, str]] = field(default_factory=list)
    # (partition, offset, first value, second value): two acknowledgements of one offset
    conflicts: list[tuple[int, int, bytes, bytes]] = field(default_factory=list)
    # value -> every (partition, offset) it was acknowledged at
    acked_at: dict[bytes, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    # (partition, value): delivery reports of success that carry no offset
    # (the Produce response's base offset was -1)
    acked_without_offset: list[tuple[int, bytes]] = field(default_factory=list)

    def n_acked(self, partitions: Optional[Iterable[int]] = None) -> int:
        if partitions is None:
            return len(self.acked) + len(self.acked_without_offset)
        ps = set(partitions)
        return (sum(1 for (p, _) in self.acked if p in ps)
                + sum(1 for (p, _) in self.acked_without_offset if p in ps))


class StreamProducer:
    """A confluent-kafka producer (acks=all; idempotent unless told not to)
    writing `prefix-000000001`, `-2`, ... in a thread, keyed (`partitions`
    None: librdkafka's partitioner spreads the keys) or round robin over
    `partitions`, at most `rate` records a second (so the history, and the
    log read back, stay a size a test can check quickly whatever the
    machine's speed). It keeps at most `max_queued` records unacknowledged, so
    an unavailable partition stalls it rather than piling up records, and
    records every delivery report in `history`."""

    def __init__(self, bootstrap: str, topic: str, prefix: str = "rec",
                 partitions: Optional[int] = None, idempotent: bool = True,
                 conf: Optional[dict[str, Any]] = None, max_queued: int = 500,
                 max_records: int = 2_000_000, rate: float = 2000.0,
                 name: str = "stream-producer"):
        from confluent_kafka import Producer

        self.topic, self.prefix, self.partitions = topic, prefix, partitions
        self.max_queued, self.max_records, self.name = max_queued, max_records, name
        self.rate = rate
        self.history = History()
        self.client_errors: list = []
        self.sent = 0
        self._lock = threading.Lock()
        c = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": idempotent,
            "linger.ms": 5,
            # outlive a leader election: records wait rather than fail
            "message.timeout.ms": int(deadline(120) * 1000),
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 1000,
            "retry.backoff.ms": 100,
            "topic.metadata.refresh.interval.ms": 2000,
            "error_cb": self._on_error,
        }
        if os.environ.get("RUNNEL_E2E_RDKAFKA_DEBUG"):
            # e.g. "eos,msg": librdkafka's own account of retries and epoch bumps, on stderr
            c["debug"] = os.environ["RUNNEL_E2E_RDKAFKA_DEBUG"]
        c.update(conf or {})
        # Made and dropped by the producing thread: the client's callbacks
        # refer back to this object, so a client kept here would live (and
        # keep reconnecting to a cluster long gone) until the garbage
        # collector found the cycle.
        self._make_producer = lambda: Producer(c)
        self.thread = harness.StoppableThread(self._run, name)
        self.flush_remaining: Optional[int] = None

    def _on_error(self, err) -> None:
        log.warning("%s: client error: %s", self.name, err)
        self.client_errors.append(err)

    def _on_delivery(self, err, msg) -> None:
        h = self.history
        with self._lock:
            if err is not None:
                h.failed.append((msg.value(), str(err)))
                return
            if msg.offset() is None or msg.offset() < 0:
                h.acked_without_offset.append((msg.partition(), msg.value()))
                return
            pos = (msg.partition(), msg.offset())
            prev = h.acked.get(pos)
            if prev is not None and prev != msg.value():
                h.conflicts.append((pos[0], pos[1], prev, msg.value()))
            h.acked[pos] = msg.value()
            h.acked_at[msg.value()].append(pos)

    def _run(self, stop: threading.Event) -> None:
        producer = self._make_producer()
        i = 0
        t0 = time.monotonic()
        while not stop.is_set() and i < self.max_records:
            if len(producer) >= self.max_queued:
                producer.poll(0.05)
                continue
            ahead = i / self.rate - (time.monotonic() - t0)
            if ahead > 0:  # faster than `rate`: serve callbacks meanwhile
                producer.poll(min(ahead, 0.05))
                continue
            i += 1
            kw: dict[str, Any] = {"value": value_of(self.prefix, i), "on_delivery": self._on_delivery}
            if self.partitions is None:
                kw["key"] = b"key-%d" % i
            else:
                kw["partition"] = i % self.partitions
            while True:
                try:
                    producer.produce(self.topic, **kw)
                    break
                except BufferError:
                    producer.poll(0.05)
            self.sent = i
            producer.poll(0)
        self.flush_remaining = producer.flush(deadline(150))

    def start(self) -> "StreamProducer":
        self.thread.start()
        return self

    def n_acked(self, partitions: Optional[Iterable[int]] = None) -> int:
        with self._lock:
            return self.history.n_acked(partitions)

    def n_failed(self) -> int:
        with self._lock:
            return len(self.history.failed)

    def wait_acks(self, more: int, timeout: float = 120.0, partitions: Optional[Iterable[int]] = None,
                  what: str = "") -> int:
        """Until `more` records more than now are acknowledged (on
        `partitions`, if given). Returns the new count."""
        ps = list(partitions) if partitions is not None else None
        start = self.n_acked(ps)
        target = start + more
        wait_until(lambda: self.n_acked(ps) >= target or self._dead(), timeout=deadline(timeout),
                   interval=0.05,
                   what=what or f"{more} more acknowledged records"
                   + (f" on partitions {ps}" if ps is not None else "")
                   + f" (had {start}; failed so far {self.n_failed()})")
        self._check_alive()
        return self.n_acked(ps)

    def _dead(self) -> bool:
        return not self.thread.is_alive() or any(e.fatal() for e in self.client_errors)

    def _check_alive(self) -> None:
        fatal = [e for e in self.client_errors if e.fatal()]
        assert not fatal, f"{self.name}: fatal client error {fatal[0]}"
        if not self.thread.is_alive() and self.thread.exc is not None:
            raise self.thread.exc

    def stop(self) -> History:
        """Stop producing, flush, and return the history."""
        self.thread.join_checked(timeout=deadline(200))
        fatal = [e for e in self.client_errors if e.fatal()]
        assert not fatal, f"{self.name}: fatal client error {fatal[0]}"
        assert self.flush_remaining == 0, (
            f"{self.name}: {self.flush_remaining} records neither delivered nor failed after flush")
        with self._lock:
            h = self.history
            log.info("%s: %d produced, %d acknowledged (%d of them without an offset), %d failed%s",
                     self.name, self.sent, len(h.acked) + len(h.acked_without_offset),
                     len(h.acked_without_offset), len(h.failed),
                     f" (e.g. {h.failed[:3]})" if h.failed else "")
            return h


def read_all(cluster: Cluster, topic: str, partitions: int, timeout: float = 120.0,
             **conf: Any) -> tuple[list[Rec], dict[int, int]]:
    """Every record of every partition, from offset 0 to the high watermark;
    returns the records and the high watermarks."""
    end = {}
    for p in range(partitions):
        low, high = wait_until(lambda: harness.watermarks(cluster.bootstrap, topic, p),
                               timeout=deadline(60), what=f"watermarks of {topic}-{p}",
                               ignore=(Exception,))
        assert low == 0, f"partition {p}: log start {low}; nothing should have been deleted"
        end[p] = high
    log.info("%s: high watermarks %s", topic, end)
    recs = consume_confluent(cluster.bootstrap, topic, {p: 0 for p in range(partitions)}, end,
                             timeout=deadline(timeout), **conf)
    return recs, end


# librdkafka's idempotent producer can store a batch twice around a leader
# change: a batch the old leader appended (and the new one has) is answered
# NOT_LEADER_OR_FOLLOWER, and if an out-of-order answer for another batch
# meanwhile makes the client bump its producer epoch, it re-sends the batch
# under the new epoch with sequence 0, which no broker can recognise as a
# retry. Reported against Apache Kafka: confluentinc/librdkafka#4953.
LIBRDKAFKA_EPOCH_BUMP_DUPLICATES = "https://github.com/confluentinc/librdkafka/issues/4953"


def check_history(history: History, records: list[Rec], end: dict[int, int],
                  exactly_once: bool = True, ordered: bool = True,
                  epochs: Optional[dict[tuple[int, int], int]] = None
                  ) -> tuple[list[str], list[str]]:
    """Jepsen-style checks of a producer's history against the log read back:

    - no offset was acknowledged twice with different values (two leaders
      accepting writes for one offset);
    - every acknowledged record is in the log, at the offset it was
      acknowledged at, below the high watermark (a record librdkafka reports
      delivered without an offset, because a later batch of the partition
      succeeded, must be in its partition's log);
    - with `exactly_once` (an idempotent producer): no value was acknowledged
      twice and no value is in the log twice. A value stored twice under two
      producer epochs (`epochs`: (partition, offset) -> producer epoch of its
      batch) is librdkafka's re-send after an epoch bump, not a broker
      failure: it is reported as a note. Twice under one epoch (or epochs not
      known) is a problem: the broker failed to recognise a retry;
    - with `ordered` (idempotent producer, records of a partition in
      production order): each partition's values are in increasing order
      (the re-sent copies aside);
    - each partition's log holds offsets 0..high-1 without holes.

    Returns (problems, notes), each a sentence with examples."""
    problems: list[str] = []
    notes: list[str] = []
    if history.conflicts:
        problems.append(f"{len(history.conflicts)} offsets acknowledged twice with different "
                        f"values, e.g. {history.conflicts[:5]}")
    by_pos = {(r.partition, r.offset): r.value for r in records}
    missing = [(pos, v, by_pos.get(pos)) for pos, v in sorted(history.acked.items())
               if by_pos.get(pos) != v]
    if missing:
        problems.append(f"{len(missing)} of {len(history.acked)} acknowledged records are not in the "
                        f"log at their acknowledged offset, e.g. (partition, offset) acknowledged "
                        f"value, value found: {missing[:8]}")
    beyond = [pos for pos in history.acked if pos[1] >= end.get(pos[0], 0)]
    if beyond:
        problems.append(f"{len(beyond)} acknowledged offsets at or past the high watermark "
                        f"{end}, e.g. {sorted(beyond)[:5]}")
    if history.acked_without_offset:
        in_log = {(r.partition, r.value) for r in records}
        lost = [pv for pv in history.acked_without_offset if pv not in in_log]
        if lost:
            problems.append(f"{len(lost)} records reported delivered without an offset are not in "
                            f"their partition's log, e.g. (partition, value) {lost[:5]}")
        notes.append(f"{len(history.acked_without_offset)} records were reported delivered without "
                     f"an offset (librdkafka infers it when a later batch of the partition "
                     f"succeeds); all are in the log")
    resent: set[tuple[int, int]] = set()  # later copies of librdkafka's epoch-bump re-sends
    if exactly_once:
        twice_acked = {v: ps for v, ps in history.acked_at.items() if len(ps) > 1}
        if twice_acked:
            problems.append(f"{len(twice_acked)} values acknowledged more than once, e.g. "
                            f"{list(twice_acked.items())[:5]}")
        positions: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
        for r in records:
            positions[r.value].append((r.partition, r.offset))
        dups = {v: sorted(ps) for v, ps in positions.items() if len(ps) > 1}
        bumped, same = {}, {}
        for v, ps in dups.items():
            eps = [epochs.get(pos) if epochs is not None else None for pos in ps]
            if None not in eps and len(set(eps)) == len(eps):
                bumped[v] = list(zip(ps, eps))
                resent.update(ps[1:])
            else:
                same[v] = list(zip(ps, eps))
        if same:
            examples = [(v, pe, history.acked_at.get(v, [])) for v, pe in list(same.items())[:5]]
            problems.append(f"{len(same)} values are in the log more than once under one producer "
                            f"epoch (or epochs unknown): the broker stored a retried batch twice; "
                            f"e.g. (value, [((partition, offset), producer epoch)], where "
                            f"acknowledged) {examples}")
        if bumped:
            examples = [(v, pe, history.acked_at.get(v, [])) for v, pe in list(bumped.items())[:3]]
            notes.append(f"{len(bumped)} values are in the log twice, under two producer epochs: "
                         f"librdkafka re-sent batches after bumping its epoch "
                         f"({LIBRDKAFKA_EPOCH_BUMP_DUPLICATES}), not a broker failure; e.g. "
                         f"(value, [((partition, offset), producer epoch)], where acknowledged) "
                         f"{examples}")
    per_part: dict[int, list[Rec]] = defaultdict(list)
    for r in records:
        per_part[r.partition].append(r)
    for p, rs in sorted(per_part.items()):
        rs.sort(key=lambda r: r.offset)
        offsets = [r.offset for r in rs]
        if offsets != list(range(end.get(p, 0))):
            hole = next((i for i, o in enumerate(offsets) if i != o), len(offsets))
            problems.append(f"partition {p}: {len(offsets)} records read for high watermark "
                            f"{end.get(p)}; first hole or repeat at offset {hole}")
        if ordered:
            kept = [r for r in rs if r.value and (p, r.offset) not in resent]
            seqs = [seq_of(r.value) for r in kept]
            bad = [(kept[k].offset, seqs[k - 1], seqs[k]) for k in range(1, len(seqs))
                   if seqs[k] <= seqs[k - 1]]
            if bad:
                problems.append(f"partition {p}: {len(bad)} records out of production order, e.g. "
                                f"(offset, previous seq, seq) {bad[:5]}")
    return problems, notes


def producer_epochs(cluster: "Cluster", topic: str, partition: int, end: int
                    ) -> dict[tuple[int, int], int]:
    """(partition, offset) -> the producer epoch of the batch holding it, for
    offsets 0..end-1, read from the partition's leader."""
    leader = cluster.broker(cluster.leader_of(topic, partition))
    out: dict[tuple[int, int], int] = {}
    offset = 0
    t_end = time.monotonic() + deadline(60)
    while offset < end and time.monotonic() < t_end:
        err, _, batches = fetch_batches(leader, topic, partition, offset)
        if err != 0 or not batches:
            continue
        for base, last, epoch in batches:
            for o in range(base, last + 1):
                out[(partition, o)] = epoch
            offset = max(offset, last + 1)
    return out


def assert_history(history: History, records: list[Rec], end: dict[int, int],
                   cluster: Optional["Cluster"] = None, topic: Optional[str] = None,
                   **kw: Any) -> None:
    """check_history, with the producer epochs of duplicated records read
    from the leaders when `cluster` and `topic` are given; notes are logged
    as warnings, problems fail the test."""
    epochs: Optional[dict[tuple[int, int], int]] = None
    if cluster is not None and topic is not None:
        counts = Counter((r.partition, r.value) for r in records)
        dup_parts = sorted({p for (p, _), c in counts.items() if c > 1})
        if dup_parts:
            epochs = {}
            for p in dup_parts:
                epochs.update(producer_epochs(cluster, topic, p, end[p]))
    problems, notes = check_history(history, records, end, epochs=epochs, **kw)
    for note in notes:
        log.warning("history note: %s", note)
    log.info("history: %d acknowledged (%d without an offset), %d failed deliveries, %d records "
             "in the log; %s", len(history.acked) + len(history.acked_without_offset),
             len(history.acked_without_offset), len(history.failed), len(records),
             "no problems" if not problems else f"{len(problems)} problems")
    assert not problems, "history check failed:\n- " + "\n- ".join(problems)


# --------------------------------------------------------------------------
# metrics


def metric_sum(broker: Broker, name: str) -> Optional[float]:
    """The sum over all label sets of metric `name` in the broker's
    /metrics, or None when the broker does not export it."""
    status, body = http_get(f"http://{broker.metrics_addr}/metrics", timeout=5)
    assert status == 200, f"/metrics of broker {broker.node_id}: HTTP {status}"
    total, found = 0.0, False
    pat = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})?\s+(\S+)")
    for line in body.decode(errors="replace").splitlines():
        m = pat.match(line)
        if m:
            found = True
            total += float(m.group(1))
    return total if found else None


# --------------------------------------------------------------------------
# reading one replica


FETCH_FROM_REPLICA_VERSION = 11  # the first Fetch version with which a consumer may read a follower (KIP-392)


def fetch_raw_batches(broker: Broker, topic: str, partition: int, offset: int,
                      max_wait_ms: int, client_id: str) -> tuple[int, int, list[Any]]:
    """One Fetch v11 of `topic`-`partition` at `offset` from this broker
    alone, be it the leader or a follower (as a consumer with follower
    fetching would). Returns (error code, high watermark, the whole record
    batches of the answer, as kafka-python decodes them)."""
    from kafka.protocol.consumer import FetchRequest, FetchResponse
    from kafka.record.memory_records import MemoryRecords

    from group_helpers import Wire

    Topic = FetchRequest.FetchTopic
    req = FetchRequest(replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=1, max_bytes=8 << 20,
                       isolation_level=0, session_id=0, session_epoch=-1, rack_id="",
                       forgotten_topics_data=[],
                       topics=[Topic(topic=topic, partitions=[Topic.FetchPartition(
                           partition=partition, current_leader_epoch=-1, fetch_offset=offset,
                           log_start_offset=-1, partition_max_bytes=4 << 20)])])
    with Wire(broker.host, broker.port, client_id=client_id, timeout=30) as w:
        resp = w.call(req, FetchResponse, FETCH_FROM_REPLICA_VERSION)
    [t] = resp.responses
    [p] = t.partitions
    batches: list[Any] = []
    if p.error_code == 0:
        records = MemoryRecords(bytes(p.records or b""))
        while (batch := records.next_batch()) is not None:
            batches.append(batch)
    return p.error_code, p.high_watermark, batches


def fetch_once(broker: Broker, topic: str, partition: int, offset: int,
               max_wait_ms: int = 500) -> tuple[int, int, list[tuple[int, bytes]]]:
    """fetch_raw_batches, as (error code, high watermark, [(offset, value)]
    of the records at or after `offset`)."""
    err, hw, batches = fetch_raw_batches(broker, topic, partition, offset, max_wait_ms,
                                         "e2e-replica-reader")
    return err, hw, [(r.offset, r.value) for batch in batches for r in batch if r.offset >= offset]


def fetch_batches(broker: Broker, topic: str, partition: int, offset: int
                  ) -> tuple[int, int, list[tuple[int, int, int]]]:
    """fetch_raw_batches, as (error code, high watermark, [(base offset,
    last offset, producer epoch)])."""
    err, hw, batches = fetch_raw_batches(broker, topic, partition, offset, 100, "e2e-batch-reader")
    return err, hw, [(b.base_offset, b.next_offset - 1, b.producer_epoch) for b in batches]


def read_replica(broker: Broker, topic: str, partition: int, end: int,
                 timeout: float = 60.0) -> list[tuple[int, bytes]]:
    """(offset, value) of every record of `topic`-`partition` from 0 to `end`,
    fetched from this broker alone with Fetch v11. Waits while the replica's
    high watermark is below `end`."""
    out: list[tuple[int, bytes]] = []
    offset = 0
    t_end = time.monotonic() + deadline(timeout)
    last_err = 0
    while offset < end:
        if time.monotonic() > t_end:
            raise WaitTimeout(f"reading {topic}-{partition} from broker {broker.node_id}: stuck "
                              f"at offset {offset} of {end} (last error code {last_err})")
        err, _, recs = fetch_once(broker, topic, partition, offset)
        if err != 0:
            last_err = err
            assert err != 6, (  # NOT_LEADER_OR_FOLLOWER
                f"broker {broker.node_id} answered NOT_LEADER_OR_FOLLOWER to a Fetch v11 of "
                f"{topic}-{partition}: it is not a replica, or serves no follower fetches")
            time.sleep(0.1)  # a retriable error: poll again shortly
            continue
        out.extend(recs)
        if recs:
            offset = recs[-1][0] + 1
    return [(o, v) for o, v in out if o < end]


# --------------------------------------------------------------------------
# one Produce to one broker

PRODUCE_VERSION = 9
ERROR_NAMES = {0: "NONE", 3: "UNKNOWN_TOPIC_OR_PARTITION", 6: "NOT_LEADER_OR_FOLLOWER",
               7: "REQUEST_TIMED_OUT", 19: "NOT_ENOUGH_REPLICAS",
               20: "NOT_ENOUGH_REPLICAS_AFTER_APPEND", 74: "FENCED_LEADER_EPOCH"}


def produce_to(broker: Broker, topic: str, partition: int, value: bytes,
               timeout_ms: int = 5000) -> tuple[str, int]:
    """One acks=all Produce of a one-record batch, sent to this broker alone
    (no client library retries or redirects). Returns ("answer", error code)
    or ("no answer", -1) when the broker has not answered `timeout_ms` + 20 s
    later."""
    import socket

    from kafka.protocol.producer import ProduceRequest, ProduceResponse
    from kafka.record.memory_records import MemoryRecordsBuilder

    from group_helpers import Wire

    builder = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 20)
    assert builder.append(timestamp=None, key=None, value=value) is not None
    builder.close()
    T = ProduceRequest.TopicProduceData
    req = ProduceRequest(transactional_id=None, acks=-1, timeout_ms=timeout_ms,
                         topic_data=[T(name=topic, partition_data=[
                             T.PartitionProduceData(index=partition, records=bytes(builder.buffer()))])])
    try:
        with Wire(broker.host, broker.port, client_id="e2e-produce-to",
                  timeout=timeout_ms / 1000 + 20) as w:
            resp = w.call(req, ProduceResponse, PRODUCE_VERSION)
    except (socket.timeout, TimeoutError):
        return "no answer", -1
    [t] = resp.responses
    [p] = t.partition_responses
    return "answer", p.error_code


# --------------------------------------------------------------------------
# Kafka's own tools


def kafka_libs() -> Path:
    """Where e2e/reference/setup-kafka.sh puts Kafka's jars."""
    if os.environ.get("KAFKA_LIBS"):
        return Path(os.environ["KAFKA_LIBS"])
    cache = Path(os.environ.get("RUNNEL_CACHE", Path.home() / ".cache" / "runnel"))
    return cache / "kafka-3.9.1" / "libs"


def kafka4_libs() -> Path:
    """Where e2e/kafka4/setup.sh puts Kafka 4.x's clients and tools."""
    cache = Path(os.environ.get("RUNNEL_CACHE", Path.home() / ".cache" / "runnel"))
    return cache / "kafka4-4.4.0" / "libs"


def kafka_tools_missing() -> Optional[str]:
    """Why Kafka's tools cannot run here, or None."""
    if shutil.which("java") is None:
        return "needs java (apt-get install -y default-jdk-headless)"
    if not list(kafka_libs().glob("kafka-tools-*.jar")):
        return f"needs Kafka's jars in {kafka_libs()}: run e2e/reference/setup-kafka.sh"
    return None


# Kafka's kafka-reassign-partitions, for kafka_tool.
REASSIGN_TOOL = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"


def kafka_tool(workdir: Path, main_class: str, *args: str, timeout: float = 180.0,
               check: bool = True, libs: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Run one of Kafka's command-line tools (e.g.
    org.apache.kafka.tools.reassign.ReassignPartitionsCommand) from its jars
    (Kafka 3.9.1's, or those in `libs`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log4j = workdir / "tools-log4j.properties"
    log4j.write_text("log4j.rootLogger=WARN, stderr\n"
                     "log4j.appender.stderr=org.apache.log4j.ConsoleAppender\n"
                     "log4j.appender.stderr.Target=System.err\n"
                     "log4j.appender.stderr.layout=org.apache.log4j.PatternLayout\n"
                     "log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n\n")
    argv = ["java", "-Xmx256m", f"-Dlog4j.configuration=file:{log4j}",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-Dorg.slf4j.simpleLogger.logFile=System.err",
            "-cp", f"{libs or kafka_libs()}/*", main_class, *args]
    log.info("running %s %s", main_class.rsplit(".", 1)[-1], " ".join(args))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=deadline(timeout))
    if check and proc.returncode != 0:
        raise AssertionError(f"{main_class} {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc
