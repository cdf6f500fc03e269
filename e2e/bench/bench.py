#!/usr/bin/env python3
"""Runnel vs Apache Kafka on one machine: the orchestration behind e2e/bench/run.sh.

Starts a single-node KRaft Kafka and a single-node Runnel on loopback, one after
the other (never both at once), drives each with the same client binaries and
the same workloads, samples the broker process's CPU time and peak resident
memory from /proc, and prints a table of medians with the Runnel/Kafka ratio.

With --cluster, each side is three brokers instead (Kafka: three KRaft nodes in
combined mode; Runnel: three brokers, each a controller voter), racks
zone-a/b/c, topics with replication factor 3 and min.insync.replicas=2, only
acks=all produce rows; CPU and memory are summed over the three processes.

Standard library only. See e2e/bench/README.md and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import threading
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# Record counts and timings per mode. Produce rows write `n100` records of 100 B
# or `n1k` records of 1 KiB; consume rows read those topics back.
MODES = {
    "short": dict(reps=1, n100=500_000, n1k=300_000, e2e_n=5_000, lat_n=5_000, lat_rate=1_000,
                  pplat_n=25_000, pplat_rate=5_000, timeout=150),
    # a check of the harness itself, in about two minutes; its figures mean nothing
    "smoke": dict(reps=1, n100=20_000, n1k=5_000, e2e_n=300, lat_n=600, lat_rate=1_000,
                  pplat_n=1_000, pplat_rate=1_000, timeout=60),
    "full": dict(reps=3, n100=2_000_000, n1k=1_000_000, e2e_n=20_000, lat_n=30_000, lat_rate=1_000,
                 pplat_n=100_000, pplat_rate=5_000, timeout=600),
}
# --cluster changes these. Three brokers and a client on two cores saturate far below the single node:
# in the first cluster run both systems' rdkafka_performance -l latencies grew steadily through the run
# at 1,000/s (a queue, not a latency), so the fixed rates are lower; fewer records per produce row keep
# the slow Java-producer rows within the timeout; EndToEndLatency takes one round trip per record.
CLUSTER_MODES = {
    "short": dict(n100=300_000, n1k=100_000, e2e_n=2_000, lat_n=3_000, lat_rate=200,
                  pplat_n=10_000, pplat_rate=1_000, timeout=300),
    "smoke": dict(lat_rate=200, pplat_rate=500),
    "full": dict(n100=1_000_000, n1k=400_000, e2e_n=8_000, lat_n=12_000, lat_rate=200,
                 pplat_n=40_000, pplat_rate=1_000, timeout=900),
}
SIZES = (100, 1024)
ACKS = ("1", "all")
# rdkafka_performance sets linger.ms=1000 for its producer unless told otherwise, so each produce row
# ended with up to a second of lingering over its last batches (20,000 records took 1.0 s, on either
# broker). The produce rows give it librdkafka's own default instead.
RDKAFKA_PRODUCER = ["-X", "linger.ms=5"]
# kcat's librdkafka (2.0.2) stops fetching a partition once 100,000 records (queued.min.messages)
# wait in its queue, and before librdkafka 2.3 (fetch.queue.backoff.ms) looks again only after about a
# second: a 100 B row then measured how many of those one-second pauses it hit (75-187 MB/s between
# repetitions on one broker). The kcat rows raise the threshold to what rdkafka_performance sets for
# itself.
KCAT_CONSUMER = ["-X", "queued.min.messages=1000000"]
THROUGHPUT_PARTITIONS = 3
LAT_WARMUP = 100  # first rdkafka latency samples dropped (producer connection set-up)
SYSTEMS = ("kafka", "runnel")
NAMES = {"kafka": "Kafka", "runnel": "Runnel"}

# kafka-server-start.sh's defaults (KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS)
KAFKA_JVM_PERF = ["-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                  "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
                  "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true"]
KAFKA_BROKER_HEAP = ["-Xmx1G", "-Xms1G"]
# kafka-producer-perf-test.sh and kafka-consumer-perf-test.sh use -Xmx512M;
# kafka-e2e-latency.sh gets kafka-run-class.sh's -Xmx256M.
TOOL_HEAP = {"ProducerPerformance": "-Xmx512M", "ConsumerPerformance": "-Xmx512M",
             "EndToEndLatency": "-Xmx256M", "CreateTopics": "-Xmx256M"}

# --cluster: three brokers, each a controller voter, one per rack.
CLUSTER_RACKS = ("zone-a", "zone-b", "zone-c")
CLUSTER_RF = 3
CLUSTER_MIN_ISR = 2
# The cluster settings both systems get (as broker settings, and the topic config again at creation).
CLUSTER_SETTINGS = {"default.replication.factor": str(CLUSTER_RF), "min.insync.replicas": str(CLUSTER_MIN_ISR)}
# ConsumerPerformance --timeout (ms without a record) in the cluster variant, instead of its default 10 s.
CONSUMER_PERF_CLUSTER_TIMEOUT_MS = 60_000

# Other processes that make the machine too busy to measure (the shared machine's test suites and builds);
# --wait-quiet waits for them to go before each system's run. Our own process tree is never counted.
HEAVY = re.compile(r"pytest|cargo |rustc|kube-apiserver|runnel-broker")

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of the whole process (all threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # fields 14 and 15 of stat


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    return sum(cpu_split(pid))


def thread_cpu(pid: int, top: int = 6) -> list[tuple[str, float]]:
    """CPU seconds per thread name (digits folded to '#', so a pool counts as one), largest first."""
    by_name: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = re.sub(r"\d+", "#", stat[stat.index("(") + 1:stat.rindex(")")])
        fields = stat[stat.rindex(")") + 2:].split()
        by_name[name] = by_name.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return sorted(by_name.items(), key=lambda kv: -kv[1])[:top]


def other_heavy_processes() -> list[str]:
    """Processes matching HEAVY that are neither this process's ancestors nor its descendants
    (zombies, with no command line, are skipped)."""
    parent: dict[int, int] = {}
    cmdlines: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        parent[int(d.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
        cmdlines[int(d.name)] = cmd
    mine = {os.getpid()}
    changed = True
    while changed:  # descendants
        changed = False
        for pid, pp in parent.items():
            if pp in mine and pid not in mine:
                mine.add(pid)
                changed = True
    p = os.getpid()
    while p > 1:  # ancestors (the shell that started us may mention pytest or cargo)
        mine.add(p)
        p = parent.get(p, 0)
    return [f"{pid} {cmd[:110]}" for pid, cmd in sorted(cmdlines.items())
            if cmd and pid not in mine and HEAVY.search(cmd)]


def proc_status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def median(xs):
    return statistics.median(xs) if xs else None


def percentile(sorted_xs, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_xs:
        return None
    k = max(0, min(len(sorted_xs) - 1, int(round(p / 100.0 * len(sorted_xs) + 0.5)) - 1))
    return sorted_xs[k]


def sh(cmd) -> str:
    return " ".join(shlex.quote(str(c)) for c in cmd)


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --------------------------------------------------------------------------- brokers

class Broker:
    """One broker process. Brokers (several) and this class share the interface the workloads use:
    system, bootstrap, pids, alive(), death(), start(), stop(), commands, log_paths, nodes."""
    system = ""

    def __init__(self, root: Path, node_id: int | None = None, rack: str | None = None):
        self.root = root
        self.node_id = node_id
        self.rack = rack
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log_path = root / "broker.log"
        self.command: list[str] = []

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc
        return self.proc.pid

    @property
    def pids(self) -> list[int]:
        return [self.pid]

    @property
    def nodes(self) -> list["Broker"]:
        return [self]

    @property
    def commands(self) -> list[str]:
        return [sh(self.command)]

    @property
    def log_paths(self) -> list[Path]:
        return [self.log_path]

    @property
    def name(self) -> str:
        return f"{self.system} broker {self.node_id}" if self.node_id is not None else f"{self.system} broker"

    def _spawn(self, cmd, **kw):
        self.command = [str(c) for c in cmd]
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command, stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        logf.close()

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} during start-up:\n"
                                   + ANSI.sub("", tail(self.log_path)))
            if port_open(self.port) and self._ready_line():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n" + ANSI.sub("", tail(self.log_path)))

    def _ready_line(self) -> bool:
        return True

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def death(self) -> str:
        """Which broker died, with its exit code and its log's last lines."""
        dead = [n for n in self.nodes if not n.alive()]
        return "; ".join(f"{n.name} died (exit {n.proc.returncode if n.proc else '?'}); its log ends: "
                         + " | ".join(ANSI.sub("", tail(n.log_path, 4)).splitlines()) for n in dead)

    def terminate(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 60) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name} did not stop in {timeout:.0f}s after SIGTERM; SIGKILL")
            self.proc.kill()
            self.proc.wait()


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class KafkaBroker(Broker):
    system = "kafka"

    def __init__(self, root: Path, libs: Path, node_id: int | None = None, rack: str | None = None):
        super().__init__(root, node_id, rack)
        self.libs = libs
        self.cport = 0
        self.server_props = root / "server.properties"
        self.log4j = root / "log4j.properties"

    def java(self) -> list[str]:
        return ["java", f"-Dlog4j.configuration=file:{self.log4j}", "-cp", f"{self.libs}/*"]

    def configure(self, voters: str, settings: dict[str, str]) -> None:
        """Writes server.properties for a combined-mode node (self.port and self.cport chosen)."""
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id or 1),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.cport}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(data),
        }
        if self.rack:
            props["broker.rack"] = self.rack
        props.update(settings)
        self.server_props.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self.log4j.write_text(
            "log4j.rootLogger=INFO, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.request.logger=WARN\n"
        )

    def format(self, cluster_id: str) -> None:
        fmt = self.java()[:1] + ["-Xmx256M"] + self.java()[1:] + [
            "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", f"--config={self.server_props}"]
        with open(self.log_path, "ab") as f:
            subprocess.run(fmt, stdout=f, stderr=subprocess.STDOUT, check=True, timeout=120)

    def launch(self) -> None:
        java = self.java()
        self._spawn(java[:1] + KAFKA_BROKER_HEAP + KAFKA_JVM_PERF + java[1:] + ["kafka.Kafka", self.server_props])

    def start(self) -> None:
        """A single node that is its own quorum."""
        self.port, self.cport = free_port(), free_port()
        self.configure(f"{self.node_id or 1}@127.0.0.1:{self.cport}", {
            # a single node cannot hold the internal topics' default 3 replicas
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
        })
        self.format(new_cluster_id())
        self.launch()
        self.wait_ready()

    def _ready_line(self) -> bool:
        return "Kafka Server started" in self.log_path.read_text(errors="replace")


class RunnelBroker(Broker):
    system = "runnel"

    def __init__(self, root: Path, binary: Path, node_id: int | None = None, rack: str | None = None):
        super().__init__(root, node_id, rack)
        self.binary = binary
        self.rpc_port = 0

    def launch(self, voters: str | None = None, settings: dict[str, str] | None = None) -> None:
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        cmd = [self.binary]
        if self.node_id is not None:
            cmd += ["--node-id", self.node_id]
        if self.rack:
            cmd += ["--rack", self.rack]
        cmd += ["--data-dir", data, "--listen", f"127.0.0.1:{self.port}",
                "--rpc-listen", f"127.0.0.1:{self.rpc_port}", "--metrics-listen", f"127.0.0.1:{free_port()}"]
        if voters:
            cmd += ["--controller-voters", voters]
        for k, v in (settings or {}).items():
            cmd += ["--set", f"{k}={v}"]
        self._spawn(cmd)

    def start(self) -> None:
        # Runnel's defaults throughout; only the addresses are chosen here.
        self.port, self.rpc_port = free_port(), free_port()
        self.launch()
        self.wait_ready()

    def _ready_line(self) -> bool:
        return "broker ready" in self.log_path.read_text(errors="replace")


def kcat_metadata(kcat: str, bootstrap: str, timeout: float = 15) -> dict:
    """Cluster metadata as kcat -L -J prints it (brokers; topics with partitions, leader, replicas, isrs)."""
    p = subprocess.run([kcat, "-L", "-J", "-b", bootstrap, "-m", "10"], capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"kcat -L: {p.stderr.strip()[:300]}")
    return json.loads(p.stdout)


class Brokers(Broker):
    """Three brokers of one system, each a controller voter, one per rack, started together; the
    Broker interface over all three (bootstrap lists all, alive() means all alive)."""

    def __init__(self, system: str, root: Path, make, kcat: str):
        super().__init__(root)
        self.system = system
        self.kcat = kcat
        self._nodes = [make(root / f"node{i}", i, rack) for i, rack in enumerate(CLUSTER_RACKS, start=1)]

    @property
    def nodes(self) -> list[Broker]:
        return self._nodes

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def pid(self) -> int:
        return self.nodes[0].pid

    @property
    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes]

    @property
    def commands(self) -> list[str]:
        return [sh(n.command) for n in self.nodes]

    @property
    def log_paths(self) -> list[Path]:
        return [n.log_path for n in self.nodes]

    @property
    def name(self) -> str:
        return f"{self.system} cluster"

    def alive(self) -> bool:
        return all(n.alive() for n in self.nodes)

    def start(self) -> None:
        for n in self.nodes:
            n.root.mkdir(parents=True, exist_ok=True)
        if self.system == "kafka":
            for n in self.nodes:
                n.port, n.cport = free_port(), free_port()
            voters = ",".join(f"{n.node_id}@127.0.0.1:{n.cport}" for n in self.nodes)
            cluster_id = new_cluster_id()  # one id, formatted into every node
            for n in self.nodes:
                n.configure(voters, CLUSTER_SETTINGS)
            threads = [threading.Thread(target=n.format, args=(cluster_id,)) for n in self.nodes]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for n in self.nodes:
                n.launch()
        else:
            for n in self.nodes:
                n.port, n.rpc_port = free_port(), free_port()
            voters = ",".join(f"{n.node_id}@127.0.0.1:{n.rpc_port}" for n in self.nodes)
            for n in self.nodes:
                n.launch(voters, CLUSTER_SETTINGS)
        for n in self.nodes:  # all three start together: a lone voter cannot get ready without a quorum
            n.wait_ready(timeout=180)
        self.wait_formed()

    def wait_formed(self, timeout: float = 60) -> None:
        """Until the metadata lists all three brokers."""
        deadline, last = time.time() + timeout, ""
        while time.time() < deadline:
            try:
                md = kcat_metadata(self.kcat, self.bootstrap)
                if len(md.get("brokers", [])) == len(self.nodes):
                    return
                last = f"brokers {md.get('brokers')}"
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                last = str(e)
            time.sleep(0.5)
        raise RuntimeError(f"the metadata did not list {len(self.nodes)} brokers within {timeout}s: {last}")

    def wait_isr(self, topics: list[str], timeout: float = 90) -> tuple[bool, dict]:
        """Until every partition of `topics` has a leader and all replicas in its ISR. Returns
        (reached, {topic: [(leader, isr) per partition]}) from the last look."""
        deadline = time.time() + timeout
        placement: dict = {}
        while True:
            try:
                md = kcat_metadata(self.kcat, self.bootstrap)
                placement = {t["topic"]: [(p["leader"], sorted(r["id"] for r in p.get("isrs", [])))
                                          for p in sorted(t["partitions"], key=lambda p: p["partition"])]
                             for t in md.get("topics", []) if t["topic"] in topics}
                if (len(placement) == len(topics) and all(
                        ps and all(leader >= 0 and len(isr) == CLUSTER_RF for leader, isr in ps)
                        for ps in placement.values())):
                    return True, placement
            except (RuntimeError, ValueError, KeyError, subprocess.TimeoutExpired):
                pass
            if time.time() > deadline:
                return False, placement
            time.sleep(0.5)

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM to all three at once; SIGKILL whatever is still running after `timeout` s."""
        t0 = time.monotonic()
        for n in self.nodes:
            n.terminate()
        for n in self.nodes:
            if n.proc is None:
                continue
            try:
                n.proc.wait(timeout=max(0.1, timeout - (time.monotonic() - t0)))
                log(f"  {n.name} exited {n.proc.returncode} after {time.monotonic() - t0:.1f}s")
            except subprocess.TimeoutExpired:
                log(f"  {n.name} did not stop in {timeout:.0f}s after SIGTERM; SIGKILL")
                n.proc.kill()
                n.proc.wait()


# --------------------------------------------------------------------------- clients

class Tools:
    def __init__(self, args, out: Path):
        self.libs = Path(args.kafka_libs)
        self.rdperf = args.rdkafka_perf
        self.kcat = args.kcat
        self.tools_log4j = out / "tools-log4j.properties"
        self.tools_log4j.write_text(
            "log4j.rootLogger=WARN, stderr\n"
            "log4j.appender.stderr=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stderr.Target=System.err\n"
            "log4j.appender.stderr.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        )

    def java(self, main: str, short: str) -> list[str]:
        return (["java", TOOL_HEAP[short]] + KAFKA_JVM_PERF
                + [f"-Dlog4j.configuration=file:{self.tools_log4j}", "-cp", f"{self.libs}/*", main])


class Result(dict):
    """One workload's outcome on one system in one repetition."""


def run_tool(cmd, out_file: Path, timeout: float, env=None) -> tuple[int | None, float, str]:
    """Runs cmd with stdout+stderr to out_file; returns (exit code or None on timeout, seconds, text)."""
    t0 = time.monotonic()
    with open(out_file, "wb") as f:
        f.write(f"$ {sh(cmd)}\n".encode())
        f.flush()
        p = subprocess.Popen([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        try:
            code = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            code = None
    return code, time.monotonic() - t0, out_file.read_text(errors="replace")


def error_summary(text: str) -> str:
    """Kafka error codes a Java tool logged while retrying, e.g. 'OUT_OF_ORDER_SEQUENCE_NUMBER x123'."""
    counts: dict[str, int] = {}
    for m in re.finditer(r"Error: ([A-Z_]{4,})", text):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def last_lines(text: str, n: int = 3) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("$ ")]
    return " | ".join(ln.strip()[:200] for ln in lines[-n:])


def broker_log_problems(broker: Broker, since: list[int], per_node: int = 4) -> list[str]:
    """WARN and ERROR lines each broker logged from byte offset `since` on: the first few per broker,
    with a count of the rest."""
    out = []
    for n, path, start in zip(broker.nodes, broker.log_paths, since):
        try:
            with open(path, "rb") as f:
                f.seek(start)
                text = ANSI.sub("", f.read().decode(errors="replace"))
        except OSError:
            continue
        bad = [ln.strip() for ln in text.splitlines() if re.search(r"\b(WARN|ERROR)\b", ln)]
        out += [f"{n.name}: {ln[:300]}" for ln in bad[:per_node]]
        if len(bad) > per_node:
            out.append(f"{n.name}: ... and {len(bad) - per_node} more WARN/ERROR lines in {path}")
    return out


class Bench:
    def __init__(self, args):
        self.args = args
        self.mode = dict(MODES[args.mode], **(CLUSTER_MODES[args.mode] if args.cluster else {}))
        self.reps = args.reps or self.mode["reps"]
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.tools = Tools(args, self.out)
        self.results: list[Result] = []
        self.commands: dict[str, str] = {}  # workload key -> example command (last system run)
        self.broker_commands: dict[str, list[str]] = {}
        self.broker_logs: dict[str, list[str]] = {}
        self.cluster = bool(args.cluster)
        self.acks = ("all",) if self.cluster else ACKS  # the cluster variant measures acks=all only
        self.placement: dict[str, dict] = {}   # system -> {topic: [(leader, isr) per partition]}
        self.threads: dict[str, list] = {}     # system -> per broker: (node, user s, sys s, top threads)
        self.quiet: dict[str, dict] = {}       # system -> the wait for a quiet machine before its run
        self.warmed: dict[str, float] = {}     # the memory touched before the first system (warm_memory)

    # ---- one workload ----
    def measure(self, broker: Broker, rep: int, key: str, cmd, out_file: Path, parse, bytes_moved=None,
                timeout=None):
        timeout = timeout or self.mode["timeout"]
        self.commands[key] = sh(cmd)
        others = other_heavy_processes()
        load0 = os.getloadavg()[0]
        log_sizes = [p.stat().st_size if p.exists() else 0 for p in broker.log_paths]
        split0 = [cpu_split(pid) for pid in broker.pids]
        # The client's CPU: it is this process's only child reaped during the row.
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        code, secs, text = run_tool(cmd, out_file, timeout)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        split1 = [cpu_split(pid) for pid in broker.pids] if broker.alive() else None
        r = Result(system=broker.system, rep=rep, key=key, wall_s=round(secs, 2), log=str(out_file),
                   command=sh(cmd), other_heavy=len(others), loadavg=round(load0, 2),
                   client_cpu_s=round(ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime, 2))
        if split1 is not None:
            # per broker: (user s, system s) this row; summed, the brokers' CPU time
            r["cpu_by_node"] = [(round(u1 - u0, 2), round(s1 - s0, 2))
                                for (u0, s0), (u1, s1) in zip(split0, split1)]
            cpu_s = sum(u + s for u, s in r["cpu_by_node"])
        try:
            if code is None:
                raise RuntimeError(f"timed out after {timeout:.0f}s; last output: {last_lines(text)}")
            if not broker.alive():
                raise RuntimeError(broker.death())
            r.update(parse(text, code))
            if bytes_moved and split1 is not None:
                r["broker_cpu_s"] = round(cpu_s, 3)
                r["bytes"] = bytes_moved
                r["cpu_s_per_gb"] = cpu_s / (bytes_moved / 1e9)
            errs = error_summary(text)
            if errs:
                r["warnings"] = errs
            r["ok"] = True
        except Exception as e:  # noqa: BLE001 - every failure becomes a table cell
            r["ok"] = False
            r["error"] = str(e)
            if code not in (0, None):
                r["error"] += f" (exit {code})"
            log(f"  {key}: FAILED: {r['error']}")
            errs = error_summary(text)
            if errs:
                r["warnings"] = errs
            blog = broker_log_problems(broker, log_sizes)
            if blog:
                r["broker_log"] = blog
                for line in blog:
                    log(f"    {line}")
        else:
            extra = f" [{r['warnings']}]" if r.get("warnings") else ""
            shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                     if k in ("mb_s", "records_s", "p50_ms", "p99_ms", "p999_ms", "cpu_s_per_gb", "avg_ms")}
            log(f"  {key}: {shown} in {secs:.1f}s{extra}")
        self.results.append(r)
        return r

    # ---- parsers ----
    @staticmethod
    def parse_producer_perf(size, n):
        def parse(text, code):
            m = None
            for m in re.finditer(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg "
                                 r"latency, ([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, "
                                 r"(\d+) ms 99.9th", text):
                pass
            if code != 0 or not m:
                raise RuntimeError(f"ProducerPerformance failed: {last_lines(text)}")
            if int(m.group(1)) != n:
                raise RuntimeError(f"sent {m.group(1)} of {n} records")
            rps = float(m.group(2))
            return dict(records_s=rps, mb_s=rps * size / 1e6, avg_ms=float(m.group(4)),
                        p50_ms=float(m.group(6)), p99_ms=float(m.group(8)), p999_ms=float(m.group(9)))
        return parse

    @staticmethod
    def parse_rdkafka_producer(size, n):
        def parse(text, code):
            m = None
            for m in re.finditer(r"% (\d+) messages produced \((\d+) bytes\), (\d+) delivered \(offset -?\d+, "
                                 r"(\d+) failed\) in (\d+)ms: (\d+) msgs/s", text):
                pass
            if code != 0 or not m:
                raise RuntimeError(f"rdkafka_performance failed: {last_lines(text)}")
            delivered, failed, ms = int(m.group(3)), int(m.group(4)), int(m.group(5))
            if delivered != n or failed:
                raise RuntimeError(f"{delivered} of {n} delivered, {failed} failed: {last_lines(text)}")
            rps = n / (ms / 1000.0)
            return dict(records_s=rps, mb_s=rps * size / 1e6)
        return parse

    @staticmethod
    def parse_rdkafka_consumer(size, n):
        def parse(text, code):
            m = None
            for m in re.finditer(r"% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms", text):
                pass
            if code != 0 or not m:
                raise RuntimeError(f"rdkafka_performance -C failed: {last_lines(text)}")
            got, ms = int(m.group(1)), max(1, int(m.group(3)))
            if got != n:
                raise RuntimeError(f"consumed {got} of {n}")
            rps = n / (ms / 1000.0)
            return dict(records_s=rps, mb_s=rps * size / 1e6)
        return parse

    @staticmethod
    def parse_consumer_perf(size, n):
        def parse(text, code):
            lines = [ln for ln in text.splitlines() if ln.startswith("start.time") or re.match(r"^\d{4}-", ln)]
            if code != 0 or len(lines) < 2:
                raise RuntimeError(f"ConsumerPerformance failed: {last_lines(text)}")
            header = [h.strip() for h in lines[0].split(",")]
            row = dict(zip(header, [v.strip() for v in lines[-1].split(",")]))
            got = int(row["data.consumed.in.nMsg"])
            if got != n:
                raise RuntimeError(f"consumed {got} of {n} (ConsumerPerformance gives up after its --timeout, "
                                   "10 s unless given, without data)")
            rps = float(row["fetch.nMsg.sec"])
            return dict(records_s=rps, mb_s=rps * size / 1e6, rebalance_ms=int(row["rebalance.time.ms"]),
                        fetch_ms=int(row["fetch.time.ms"]))
        return parse

    @staticmethod
    def parse_kcat(size, n, out_file: Path):
        def parse(text, code):
            if code != 0:
                raise RuntimeError(f"kcat failed: {last_lines(text)}")
            got = sum(1 for ln in text.splitlines() if ln.isdigit())
            if got != n:
                raise RuntimeError(f"kcat printed {got} of {n} offsets: {last_lines(text)}")
            return {}
        return parse

    @staticmethod
    def parse_e2e_latency(text, code):
        avg = re.search(r"Avg latency: ([\d.]+) ms", text)
        pct = re.search(r"Percentiles: 50th = ([\d.]+), 99th = ([\d.]+), 99.9th = ([\d.]+)", text)
        if code != 0 or not avg or not pct:
            raise RuntimeError(f"EndToEndLatency failed: {last_lines(text)}")
        return dict(avg_ms=float(avg.group(1)), p50_ms=float(pct.group(1)), p99_ms=float(pct.group(2)),
                    p999_ms=float(pct.group(3)))

    # ---- one system, one repetition ----
    def wait_quiet(self, system: str) -> None:
        """Waits up to --wait-quiet seconds for other heavy processes (HEAVY) to finish; records what it saw."""
        limit = self.args.wait_quiet
        t0 = time.monotonic()
        others = other_heavy_processes()
        first = list(others)
        if others and limit > 0:
            log(f"waiting up to {limit:.0f}s for {len(others)} other heavy processes to finish, e.g. {others[0]}")
            while others and time.monotonic() - t0 < limit:
                time.sleep(10)
                others = other_heavy_processes()
        waited = time.monotonic() - t0
        self.waited += waited
        self.quiet.setdefault(system, dict(waited_s=0, seen_first=first))
        self.quiet[system]["waited_s"] += round(waited)
        self.quiet[system]["left_at_start"] = others
        self.quiet[system]["loadavg_at_start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        if others:
            log(f"starting with {len(others)} other heavy processes still running (waited {waited:.0f}s): "
                + "; ".join(others[:3]))
        elif first:
            log(f"the machine is quiet after {waited:.0f}s")

    def run_system(self, system: str, rep: int) -> None:
        m = self.mode
        root = self.out / f"rep{rep}" / system
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        wl = root / "workloads"
        wl.mkdir()
        if self.cluster:
            if system == "kafka":
                broker: Broker = Brokers("kafka", root, lambda r, i, rack: KafkaBroker(
                    r, Path(self.args.kafka_libs), i, rack), self.args.kcat)
            else:
                broker = Brokers("runnel", root, lambda r, i, rack: RunnelBroker(
                    r, Path(self.args.runnel_bin), i, rack), self.args.kcat)
        else:
            broker = (KafkaBroker(root, Path(self.args.kafka_libs)) if system == "kafka"
                      else RunnelBroker(root, Path(self.args.runnel_bin)))
        self.wait_quiet(system)
        log(f"rep {rep + 1}/{self.reps}: starting {NAMES[system]}{' (3 brokers)' if self.cluster else ''} "
            f"(load average {os.getloadavg()[0]:.2f})")
        t_start = time.monotonic()
        try:
            broker.start()
        except Exception as e:  # noqa: BLE001
            log(f"{system}: could not start: {e}")
            self.results.append(Result(system=system, rep=rep, key="start", ok=False, error=str(e)))
            broker.stop()
            return
        self.broker_commands[system] = broker.commands
        log(f"{NAMES[system]} ready on {broker.bootstrap} (pids {broker.pids}) "
            f"in {time.monotonic() - t_start:.1f}s")
        try:
            self._workloads(broker, rep, wl, m)
        finally:
            if broker.alive():
                hwm = [proc_status_kib(pid, "VmHWM") / 1024 for pid in broker.pids]
                self.results.append(Result(system=system, rep=rep, key="mem/peak", ok=True, mib=sum(hwm),
                                           by_node=hwm))
                log(f"  peak RSS (VmHWM) {sum(hwm):.0f} MiB" + (f" ({', '.join(f'{x:.0f}' for x in hwm)})"
                                                               if len(hwm) > 1 else ""))
                self.threads[system] = [(n.node_id, *cpu_split(n.pid), thread_cpu(n.pid)) for n in broker.nodes]
            else:
                self.results.append(Result(system=system, rep=rep, key="mem/peak", ok=False,
                                           error=broker.death()))
            broker.stop()
            self.broker_logs[system] = [str(p) for p in broker.log_paths]
            for n in broker.nodes:
                shutil.rmtree(n.root / "data", ignore_errors=True)
            log(f"{NAMES[system]} stopped; {time.monotonic() - t_start:.0f}s for this system")

    def _workloads(self, broker: Broker, rep: int, wl: Path, m: dict) -> None:
        b = broker.bootstrap
        tools = self.tools
        idle = [proc_status_kib(pid, "VmRSS") / 1024 for pid in broker.pids]
        self.results.append(Result(system=broker.system, rep=rep, key="mem/idle", ok=True, mib=sum(idle),
                                   by_node=idle))
        nrec = {100: m["n100"], 1024: m["n1k"]}
        topics = [f"p{size}-acks{acks}-{tool}:{THROUGHPUT_PARTITIONS}"
                  for size in SIZES for acks in self.acks for tool in ("rdkafka", "java")]
        topics += ["lat-rdkafka:1", "lat-e2e:1", "lat-produce:1", f"warmup:{THROUGHPUT_PARTITIONS}"]
        replication = (["--replication-factor", CLUSTER_RF, "--config", f"min.insync.replicas={CLUSTER_MIN_ISR}"]
                       if self.cluster else [])
        cmd = (tools.java("CreateTopics", "CreateTopics")[:-1] + [HERE / "CreateTopics.java", b]
               + replication + topics)
        code, _, text = run_tool(cmd, wl / "create-topics.out", 120)
        if code != 0:
            self.results.append(Result(system=broker.system, rep=rep, key="create-topics", ok=False,
                                       error=last_lines(text), command=sh(cmd)))
            log(f"  creating topics FAILED: {last_lines(text)}")
            return
        self.commands["create-topics"] = sh(cmd)
        if isinstance(broker, Brokers):
            # every partition led, with all three replicas in sync, before anything is measured
            names = [t.rsplit(":", 1)[0] for t in topics]
            t0 = time.monotonic()
            full, placement = broker.wait_isr(names)
            self.placement[broker.system] = placement
            leaders = {t: [ldr for ldr, _ in ps] for t, ps in placement.items()}
            if full:
                log(f"  all {len(names)} topics fully in sync after {time.monotonic() - t0:.1f}s; leaders {leaders}")
            else:
                log(f"  not every partition had a leader and a full ISR after {time.monotonic() - t0:.0f}s: "
                    f"{placement}")
                self.results.append(Result(system=broker.system, rep=rep, key="isr", ok=False,
                                           error=f"not fully in sync 90 s after creation: {placement}"))

        # Warm-up, not measured: the same for both (it lets the JVM compile its hot paths).
        n = m["n100"] // 5
        parts = [a for p in range(THROUGHPUT_PARTITIONS) for a in ("-p", str(p))]
        for i, cmd in enumerate(([tools.rdperf, "-P", "-t", "warmup", "-b", b, "-s", "100", "-c", n, "-a", "-1", *RDKAFKA_PRODUCER, "-q"],
                                 [tools.rdperf, "-C", "-t", "warmup", *parts, "-b", b, "-o", "beginning", "-c", n,
                                  "-q"])):
            self.commands[f"warm-up/{i + 1}"] = sh(cmd)
            code, _, text = run_tool(cmd, wl / f"warmup-{i + 1}.out", m["timeout"])
            if code != 0:
                log(f"  warm-up step {i + 1} failed ({code}): {last_lines(text)}")

        # Produce throughput. librdkafka's tool first: it loads the broker, not itself.
        for size in SIZES:
            n = nrec[size]
            for acks in self.acks:
                topic = f"p{size}-acks{acks}-rdkafka"
                cmd = [tools.rdperf, "-P", "-t", topic, "-b", b, "-s", size, "-c", n,
                       "-a", "-1" if acks == "all" else acks, *RDKAFKA_PRODUCER, "-q"]
                self.measure(broker, rep, f"produce/{size}/{acks}/rdkafka", cmd,
                             wl / f"produce-{size}-{acks}-rdkafka.out",
                             self.parse_rdkafka_producer(size, n), bytes_moved=n * size)
                topic = f"p{size}-acks{acks}-java"
                cmd = tools.java("org.apache.kafka.tools.ProducerPerformance", "ProducerPerformance") + [
                    "--topic", topic, "--num-records", n, "--record-size", size, "--throughput", "-1",
                    "--producer-props", f"bootstrap.servers={b}", f"acks={acks}"]
                self.measure(broker, rep, f"produce/{size}/{acks}/java", cmd,
                             wl / f"produce-{size}-{acks}-java.out",
                             self.parse_producer_perf(size, n), bytes_moved=n * size)

        # Consume throughput: every consumer reads back the topic ProducerPerformance filled with acks=1
        # (acks=all in the cluster variant; the Java producer's 16 KiB batches), falling back to the
        # rdkafka_performance one.
        for size in SIZES:
            n = nrec[size]
            source = None
            for tool in ("java", "rdkafka"):
                if self.ok(broker.system, rep, f"produce/{size}/{self.acks[0]}/{tool}"):
                    source = f"p{size}-acks{self.acks[0]}-{tool}"
                    break
            for tool in ("rdkafka", "java", "kcat"):
                if source:
                    self.consume(broker, rep, wl, tool, size, n, source, f"consume/{size}/{tool}")
                else:
                    self.results.append(Result(system=broker.system, rep=rep, key=f"consume/{size}/{tool}",
                                               ok=False, error="no produce row filled a topic to read"))

        # End-to-end latency at a fixed rate: rdkafka_performance -l, a consumer and a producer.
        n, rate = m["lat_n"], m["lat_rate"]
        lat_file = wl / "latency-rdkafka.samples"
        ccmd = [tools.rdperf, "-C", "-l", "-A", lat_file, "-t", "lat-rdkafka", "-p", "0", "-b", b,
                "-o", "beginning", "-c", n, "-q"]
        pcmd = [tools.rdperf, "-P", "-l", "-t", "lat-rdkafka", "-p", "0", "-b", b, "-s", "100", "-c", n,
                "-r", rate, "-a", "-1", "-X", "linger.ms=0", "-q"]
        self.commands["latency/rdkafka/consumer"] = sh(ccmd)
        cons_out = wl / "latency-rdkafka-consumer.out"
        with open(cons_out, "wb") as f:
            f.write(f"$ {sh(ccmd)}\n".encode())
            f.flush()
            cons = subprocess.Popen([str(c) for c in ccmd], stdout=f, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        time.sleep(3)  # let the consumer connect and start fetching from the empty topic

        def parse_lat(text, code):
            try:
                ccode = cons.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(cons.pid, signal.SIGKILL)
                cons.wait()
                ccode = None
            ctext = cons_out.read_text(errors="replace")
            if code != 0:
                raise RuntimeError(f"producer failed: {last_lines(text)}")
            if ccode != 0:
                raise RuntimeError(f"consumer {'timed out' if ccode is None else f'exit {ccode}'}: "
                                   f"{last_lines(ctext)}")
            samples = [int(x) for x in lat_file.read_text().split()] if lat_file.exists() else []
            if len(samples) < n:
                raise RuntimeError(f"{len(samples)} latency samples of {n}")
            rate_m = re.search(r"in (\d+)ms: (\d+) msgs/s", text)
            kept = samples[LAT_WARMUP:]
            s = sorted(kept)
            # A latency that keeps growing through the run is a queue (the rate is above what the
            # system sustains), not a latency: the median of the last tenth over that of the first.
            tenth = max(1, len(kept) // 10)
            first, last = median(kept[:tenth]), median(kept[-tenth:])
            return dict(p50_ms=percentile(s, 50) / 1000, p99_ms=percentile(s, 99) / 1000,
                        p999_ms=percentile(s, 99.9) / 1000, avg_ms=sum(s) / len(s) / 1000,
                        achieved_rate=int(rate_m.group(2)) if rate_m else None,
                        growth=(last / first) if first else None)
        try:
            self.measure(broker, rep, "latency/rdkafka", pcmd, wl / "latency-rdkafka-producer.out", parse_lat)
        finally:
            if cons.poll() is None:
                os.killpg(cons.pid, signal.SIGKILL)
                cons.wait()

        # Kafka's EndToEndLatency: one record at a time, produce then poll until it arrives.
        cmd = tools.java("org.apache.kafka.tools.EndToEndLatency", "EndToEndLatency") + [
            b, "lat-e2e", m["e2e_n"], "all", "100"]
        self.measure(broker, rep, "latency/e2e", cmd, wl / "latency-e2e.out", self.parse_e2e_latency)

        # Produce (send to acknowledgement) latency at a fixed rate, ProducerPerformance --throughput.
        n, rate = m["pplat_n"], m["pplat_rate"]
        cmd = tools.java("org.apache.kafka.tools.ProducerPerformance", "ProducerPerformance") + [
            "--topic", "lat-produce", "--num-records", n, "--record-size", "100", "--throughput", rate,
            "--producer-props", f"bootstrap.servers={b}", "acks=all"]
        self.measure(broker, rep, "latency/produce", cmd, wl / "latency-produce.out",
                     self.parse_producer_perf(100, n))

    def ok(self, system: str, rep: int, key: str) -> bool:
        return any(r.get("ok") and r["key"] == key and r["rep"] == rep and r["system"] == system
                   for r in self.results)

    def consume(self, broker: Broker, rep: int, wl: Path, tool: str, size: int, n: int, topic: str, key: str):
        b, tools = broker.bootstrap, self.tools
        out_file = wl / f"{key.replace('/', '-')}.out"
        if tool == "rdkafka":
            parts = [a for p in range(THROUGHPUT_PARTITIONS) for a in ("-p", str(p))]
            cmd = [tools.rdperf, "-C", "-t", topic, *parts, "-b", b, "-o", "beginning", "-c", n, "-q"]
            return self.measure(broker, rep, key, cmd, out_file, self.parse_rdkafka_consumer(size, n),
                                bytes_moved=n * size)
        if tool == "java":
            cmd = tools.java("org.apache.kafka.tools.ConsumerPerformance", "ConsumerPerformance") + [
                "--bootstrap-server", b, "--topic", topic, "--messages", n]
            if self.cluster:
                # Its first group creates __consumer_offsets (50 partitions, 3 replicas each), which can take
                # longer than the tool's default 10 s without a record; the wait counts as join time, which
                # the fetch rate excludes.
                cmd += ["--timeout", CONSUMER_PERF_CLUSTER_TIMEOUT_MS]
            return self.measure(broker, rep, key, cmd, out_file, self.parse_consumer_perf(size, n),
                                bytes_moved=n * size)
        cmd = [tools.kcat, "-C", "-b", b, "-t", topic, "-o", "beginning", "-c", n, "-e", "-q", "-f", r"%o\n",
               *KCAT_CONSUMER]
        r = self.measure(broker, rep, key, cmd, out_file, self.parse_kcat(size, n, out_file), bytes_moved=n * size)
        if r.get("ok"):  # kcat reports nothing itself: wall clock of the whole process
            r["records_s"] = n / r["wall_s"]
            r["mb_s"] = r["records_s"] * size / 1e6
            log(f"  {key}: {r['mb_s']:.1f} MB/s (wall clock)")
        return r

    def warm_memory(self) -> None:
        """Writes to most of the free memory once, in a child that then exits.

        On a virtual machine the first write to a page of the guest's memory costs the host a fault: by hand,
        14 GiB took 29 s of system time the first time and 12 s the next. A broker whose page cache first grows
        into such memory pays it as system time in its write calls (one 1 GB produce row cost the same broker
        0.5 s and 3 s of CPU), so whichever system ran first paid for both. Touching it beforehand puts both
        on memory the host already backs."""
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        available = int(meminfo["MemAvailable"].split()[0]) * 1024
        size = max(0, min(available - (3 << 30), WARM_MEMORY_MAX))
        if size <= 0:
            return
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", WARM_MEMORY_SCRIPT, str(size)], check=True)
        self.warmed = dict(gib=round(size / (1 << 30), 1), seconds=round(time.monotonic() - t0, 1))
        log(f"touched {self.warmed['gib']} GiB of free memory in {self.warmed['seconds']} s")

    def run(self) -> None:
        self.warm_memory()
        t0 = time.monotonic()
        self.waited = 0.0  # seconds spent in wait_quiet, not counted as broker runs
        for rep in range(self.reps):
            order = SYSTEMS if rep % 2 == 0 else tuple(reversed(SYSTEMS))
            for system in order:
                if system in self.args.systems:
                    self.run_system(system, rep)
                    self.save()
        log(f"all runs done in {time.monotonic() - t0:.0f}s")
        self.elapsed = time.monotonic() - t0 - self.waited

    def save(self) -> None:
        (self.out / "results.json").write_text(json.dumps(
            dict(mode=self.args.mode, cluster=self.cluster, reps=self.reps, params=self.mode, results=self.results,
                 commands=self.commands, broker_commands=self.broker_commands, placement=self.placement,
                 threads=self.threads, quiet=self.quiet), indent=1, default=str))


# --------------------------------------------------------------------------- table

def table_rows(cluster: bool = False) -> list[tuple[str, str, str, str, str]]:
    """(key, metric, label, unit, kind) per table row; kind: higher|lower|info."""
    rows = []
    tool_names = {"rdkafka": "rdkafka_performance", "java": "ProducerPerformance"}
    for size in SIZES:
        for acks in (("all",) if cluster else ACKS):
            for tool in ("rdkafka", "java"):
                rows.append((f"produce/{size}/{acks}/{tool}", "mb_s",
                             f"produce {size} B, acks={acks}, {tool_names[tool]}", "MB/s", "higher"))
    cons_names = {"rdkafka": "rdkafka_performance -C", "java": "ConsumerPerformance", "kcat": "kcat -C"}
    for size in SIZES:
        for tool in ("rdkafka", "java", "kcat"):
            rows.append((f"consume/{size}/{tool}", "mb_s", f"consume {size} B, {cons_names[tool]}", "MB/s", "higher"))
    for pct, lab in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
        rows.append(("latency/rdkafka", pct, f"e2e latency {lab}, rdkafka_performance -l, fixed rate", "ms", "lower"))
    rows.append(("latency/rdkafka", "achieved_rate", "  (rate the rdkafka_performance producer achieved)", "msg/s",
                 "info"))
    if cluster:
        rows.append(("latency/rdkafka", "growth", "  (p50 of the last tenth of samples ÷ p50 of the first; "
                     "≫ 1: a queue, the rate is above saturation)", "×", "info"))
    for pct, lab in (("avg_ms", "avg"), ("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
        rows.append(("latency/e2e", pct, f"e2e latency {lab}, EndToEndLatency (1 in flight)", "ms", "lower"))
    for pct, lab in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
        rows.append(("latency/produce", pct, f"produce→ack latency {lab}, ProducerPerformance, fixed rate",
                     "ms", "lower"))
    if cluster:
        rows.append(("mem/idle", "mib", "RSS after start, idle, sum of the 3 brokers", "MiB", "lower"))
        rows.append(("mem/peak", "mib", "peak RSS (VmHWM), sum of the 3 brokers", "MiB", "lower"))
    else:
        rows.append(("mem/idle", "mib", "broker RSS after start, idle", "MiB", "lower"))
        rows.append(("mem/peak", "mib", "broker peak RSS (VmHWM)", "MiB", "lower"))
    return rows


def fmt(v, unit):
    if v is None:
        return "–"
    if unit == "ms":
        return f"{v:.2f}" if v < 10 else f"{v:.1f}"
    if unit == "msg/s":
        return f"{v:.0f}"
    if unit == "×":
        return f"{v:.1f}"
    if unit in ("MB/s", "MiB"):
        return f"{v:.1f}" if v < 100 else f"{v:.0f}"
    return f"{v:.2f}"


def cell(results, system, key, metric, unit):
    rs = [r for r in results if r["system"] == system and r["key"] == key]
    ok = [r[metric] for r in rs if r.get("ok") and r.get(metric) is not None]
    failed = [r for r in rs if not r.get("ok")]
    if not rs:
        return None, "not run"
    if not ok and not failed:
        return None, "–"
    if not ok:
        return None, "FAILED: " + failed[0].get("error", "?")[:160]
    text = fmt(median(ok), unit)
    if failed:
        text += f" ({len(failed)}/{len(rs)} runs failed)"
    return median(ok), text


def cpu_cell(results, system, key):
    ok = [r["cpu_s_per_gb"] for r in results if r["system"] == system and r["key"] == key and r.get("ok")
          and r.get("cpu_s_per_gb") is not None]
    return median(ok)


def ratio(k, r):
    if k is None or r is None or k == 0:
        return "–"
    return f"{r / k:.2f}"


def build_table(results, cluster: bool = False) -> tuple[str, list[dict]]:
    who = "3 brokers'" if cluster else "broker"
    lines = [f"| figure | unit | Kafka | Runnel | Runnel/Kafka | {who} CPU s/GB: Kafka | Runnel | Runnel/Kafka |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    failures = []
    rows = table_rows(cluster)
    for key, metric, label, unit, better in rows:
        kv, kt = cell(results, "kafka", key, metric, unit)
        rv, rt = cell(results, "runnel", key, metric, unit)
        if key.startswith(("produce", "consume")):
            kc, rc = cpu_cell(results, "kafka", key), cpu_cell(results, "runnel", key)
            cpu = f"{fmt(kc, '')} | {fmt(rc, '')} | {ratio(kc, rc)}"
        else:
            cpu = "| |"
        arrow = {"higher": "↑", "lower": "↓"}.get(better, "")
        lines.append(f"| {label} | {unit} {arrow} | {kt} | {rt} | {ratio(kv, rv) if arrow else ''} | {cpu} |")
    # CPU per GB over the rows both systems completed
    for kind in ("produce", "consume"):
        both = [key for key, metric, *_ in rows if key.startswith(kind)
                and cpu_cell(results, "kafka", key) is not None and cpu_cell(results, "runnel", key) is not None]
        agg = {}
        for system in SYSTEMS:
            cpu = sum(median([r["broker_cpu_s"] for r in results if r["system"] == system and r["key"] == k
                              and r.get("ok")]) for k in both)
            gb = sum(median([r["bytes"] for r in results if r["system"] == system and r["key"] == k
                             and r.get("ok")]) for k in both) / 1e9
            agg[system] = cpu / gb if gb else None
        lines.append(f"| {'brokers' if cluster else 'broker'} CPU seconds per GB"
                     f"{', sum of the 3' if cluster else ''}, all {kind} rows both completed ({len(both)}) | s/GB ↓ | "
                     f"{fmt(agg['kafka'], '')} | {fmt(agg['runnel'], '')} | {ratio(agg['kafka'], agg['runnel'])} "
                     f"| | | |")
    for r in results:
        if not r.get("ok"):
            failures.append(r)
    return "\n".join(lines), failures


def warnings_section(results) -> str:
    out = []
    for r in results:
        if r.get("warnings"):
            out.append(f"- {NAMES[r['system']]} rep {r['rep'] + 1}, `{r['key']}`: client logged {r['warnings']}")
    return "\n".join(out)


# --------------------------------------------------------------------------- machine and report

def capture(cmd) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (p.stdout.rstrip() or p.stderr.rstrip()).strip("\n")
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine_info(args) -> dict:
    cpu_model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    java_v = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.strip().splitlines()
    kcat_v = capture([args.kcat, "-V"])
    kcat_lib = re.search(r"librdkafka[^\n]*?([\d.]+)", kcat_v)
    return dict(
        nproc=capture(["nproc"]), cpu=cpu_model, free_g=capture(["free", "-g"]), kernel=platform.release(),
        os=capture(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        java=java_v[0] if java_v else "?", java_full=" / ".join(java_v),
        kafka=args.kafka_version, runnel_commit=args.runnel_commit,
        runnel_version=capture([args.runnel_bin, "--version"]), rustc=capture(["rustc", "--version"]),
        rdkafka=args.rdkafka_version, kcat=(kcat_v.splitlines()[0] if kcat_v else "?")
        + (f", librdkafka {kcat_lib.group(1)}" if kcat_lib else ""),
        loadavg_start=args.loadavg_start, loadavg_end=" ".join(f"{x:.2f}" for x in os.getloadavg()),
        date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def cpu_section(bench: Bench) -> list[str]:
    """Where the CPU went, per row: the broker(s) from /proc/<pid>/stat (per broker in cluster runs),
    the client from the rusage of the tool process."""
    cluster = bench.cluster
    brokers = "brokers'" if cluster else "broker"
    out = [f"**Where the CPU went** (first repetition; the {brokers} user + system seconds during the row "
           "from `/proc/<pid>/stat`"
           + (", summed over the three" if cluster else "")
           + "; the client's from the tool process's rusage; \"cores busy\" is CPU seconds over the row's "
           "wall-clock seconds, out of the 2 cores they share. A row whose client keeps a core or more busy "
           "while the broker does not is bound by the client)", "",
           f"| row | system | wall s | {brokers} CPU s | {brokers} cores busy | client CPU s | client cores busy |"
           + (" per broker 1 / 2 / 3, CPU s |" if cluster else "")
           + " broker system-time share | load average (1 min) at row start |",
           "|---|---|---:|---:|---:|---:|---:|" + ("---|" if cluster else "") + "---:|---:|"]
    for key in dict.fromkeys(k for k, *_ in table_rows(cluster)):
        if not key.startswith(("produce", "consume", "latency")):
            continue
        for system in SYSTEMS:
            rs = [r for r in bench.results if r["system"] == system and r["key"] == key and r["rep"] == 0
                  and r.get("cpu_by_node")]
            if not rs:
                continue
            r = rs[0]
            by = r["cpu_by_node"]
            tot = sum(u + s for u, s in by)
            sys_share = sum(s for _, s in by) / tot if tot else 0
            flag = "" if r.get("ok") else " (failed)"
            client = r.get("client_cpu_s")
            client_cells = (f"{client:.1f} | {client / r['wall_s']:.2f}" if client is not None and r["wall_s"]
                            else "– | –")
            per_broker = f" {' / '.join(f'{u + s:.1f}' for u, s in by)} |" if cluster else ""
            out.append(f"| `{key}`{flag} | {NAMES[system]} | {r['wall_s']:.1f} | {tot:.1f} | "
                       f"{tot / r['wall_s']:.2f} | {client_cells} |{per_broker} "
                       f"{sys_share:.0%} | {r.get('loadavg', '–')} |")
    out.append("")
    if bench.threads:
        out += ["Whole run, per broker (user / system CPU seconds; the busiest threads by name, "
                "digits folded to `#`):", ""]
        for system in SYSTEMS:
            for node, user, syst, threads in bench.threads.get(system, []):
                top = ", ".join(f"`{name}` {secs:.1f}" for name, secs in threads)
                label = f"{NAMES[system]} broker" + (f" {node}" if node is not None else "")
                out.append(f"- {label}: {user:.1f} / {syst:.1f} s; {top}")
        out.append("")
    return out


def report(bench: Bench, info: dict) -> str:
    table, failures = build_table(bench.results, bench.cluster)
    m = bench.mode
    flag = f"--cluster --{bench.args.mode}" if bench.cluster else f"--{bench.args.mode}"
    out = [
        f"Run of {info['date']}: `e2e/bench/run.sh {flag}`, {bench.reps} repetition(s) per system "
        f"(median shown), {bench.elapsed / 60:.1f} minutes of broker runs.",
        "",
    ]
    if bench.cluster:
        out += [
            f"Three brokers per system on loopback, each a controller voter, racks {', '.join(CLUSTER_RACKS)}; "
            f"topics with replication factor {CLUSTER_RF} and min.insync.replicas={CLUSTER_MIN_ISR}; every produce "
            "row at acks=all; consumers read the topic ProducerPerformance filled, from the partition leaders. "
            "CPU and memory are summed over the three broker processes.",
            "",
        ]
    out += [
        f"Records per produce row: {m['n100']:,} × 100 B, {m['n1k']:,} × 1 KiB; topics with "
        f"{THROUGHPUT_PARTITIONS} partitions. Latency: rdkafka_performance {m['lat_n']:,} records of 100 B at "
        f"{m['lat_rate']:,}/s requested (first {LAT_WARMUP} dropped), EndToEndLatency {m['e2e_n']:,} records, "
        f"ProducerPerformance {m['pplat_n']:,} records at {m['pplat_rate']:,}/s; all acks=all, 1 partition.",
        "",
        "↑ higher is better, ↓ lower is better; a Runnel/Kafka ratio above 1 means Runnel is faster for ↑ rows "
        "and costlier for ↓ rows. MB = 10^6 bytes of record payload.",
        "",
        table,
        "",
    ]
    if bench.cluster:
        for system in SYSTEMS:
            pl = bench.placement.get(system)
            if pl:
                out.append(f"- {NAMES[system]} partition leaders (by partition): "
                           + "; ".join(f"`{t}` {[ldr for ldr, _ in ps]}" for t, ps in sorted(pl.items())))
        out.append("")
    out += cpu_section(bench)
    busy = [r for r in bench.results if r.get("other_heavy")]
    measured = [r for r in bench.results if "other_heavy" in r]
    out += [
        "**Machine**",
        "",
        f"- CPU: {info['nproc']} cores ({info['cpu']}); kernel {info['kernel']}; {info['os']}",
        f"- load average (1, 5, 15 min) at start: {info['loadavg_start']}; at end: {info['loadavg_end']} "
        "(the machine is shared: other builds and tests ran alongside)",
    ]
    for system in SYSTEMS:
        q = bench.quiet.get(system)
        if q:
            left = q.get("left_at_start") or []
            out.append(f"- before {NAMES[system]}: waited {q['waited_s']} s for other test suites and builds "
                       f"(--wait-quiet {bench.args.wait_quiet:.0f}); "
                       + (f"{len(left)} still running at its start, e.g. `{left[0]}`" if left
                          else "none running at its start")
                       + f"; load average then {q.get('loadavg_at_start')}")
    if bench.warmed:
        out.append(f"- before the first system, {bench.warmed['gib']} GiB of free memory were written to once "
                   f"({bench.warmed['seconds']} s), so that neither broker's page cache pays the virtual machine's "
                   "first touch of a page (see docs/benchmarks.md, item 9)")
    if measured:
        out.append(f"- other heavy processes (`{HEAVY.pattern}`, outside this run) were running at the start of "
                   f"{len(busy)} of {len(measured)} measured rows")
    out += [
        "- `free -g`:",
        "",
        "```",
        info["free_g"],
        "```",
        "",
        "**Versions**",
        "",
        f"- Apache Kafka {info['kafka']} (jars from Maven Central via mvn), {info['java_full']}",
        f"- Runnel commit {info['runnel_commit']}, `{info['runnel_version']}`, {info['rustc']}, release build",
        f"- rdkafka_performance: librdkafka {info['rdkafka']} (from the rdkafka-sys crate's sources)",
        f"- kcat: {info['kcat']}",
        "",
    ]
    if failures:
        out += ["**Failures**", ""]
        for r in failures:
            out.append(f"- {NAMES[r['system']]} rep {r['rep'] + 1}, `{r['key']}`: {r.get('error', '?')}")
            if r.get("command"):
                out.append(f"  - command: `{r['command']}`")
            for line in r.get("broker_log", []):
                out.append(f"  - broker log: `{line.replace('`', chr(39))}`")
        out.append("")
    warns = warnings_section(bench.results)
    if warns:
        out += ["**Client-side errors logged during rows that completed** (retried by the client)", "", warns, ""]
    out += ["**Exact commands** (ports are chosen afresh each run; shown from the last system run)", "",
            "```sh"]
    for system in SYSTEMS:
        for i, cmd in enumerate(bench.broker_commands.get(system, []), start=1):
            out.append(f"# {NAMES[system]} broker" + (f" {i}" if bench.cluster else ""))
            out.append(cmd)
    for key, cmd in bench.commands.items():
        out.append(f"# {key}")
        out.append(cmd)
    out += ["```", ""]
    return "\n".join(out)


def markers(mode: str) -> tuple[str, str]:
    return f"<!-- bench-results:{mode}:begin -->", f"<!-- bench-results:{mode}:end -->"


def record_doc(doc: Path, text: str, mode: str) -> None:
    """Replaces the doc's section for this mode (between its markers), or appends one."""
    begin, end = markers(mode)
    body = doc.read_text() if doc.exists() else "# Benchmarks\n\n"
    block = f"{begin}\n{text}\n{end}"
    if begin in body and end in body:
        body = body[:body.index(begin)] + block + body[body.index(end) + len(end):]
    else:
        body = body.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(body)


# warm_memory: at most this much, and a child that writes one byte per page of an anonymous mapping.
WARM_MEMORY_MAX = 16 << 30
WARM_MEMORY_SCRIPT = (
    "import mmap, sys\n"
    "n = int(sys.argv[1])\n"
    "m = mmap.mmap(-1, n)\n"
    "for i in range(0, n, mmap.PAGESIZE):\n"
    "    m[i] = 1\n"
)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=MODES, default="short")
    ap.add_argument("--reps", type=int, default=0)
    ap.add_argument("--systems", default="kafka,runnel")
    ap.add_argument("--kafka-libs", required=True)
    ap.add_argument("--kafka-version", required=True)
    ap.add_argument("--runnel-bin", required=True)
    ap.add_argument("--runnel-commit", default="unknown", help="the commit the binary was built from")
    ap.add_argument("--rdkafka-perf", required=True)
    ap.add_argument("--rdkafka-version", default="?")
    ap.add_argument("--kcat", default=shutil.which("kcat") or "kcat")
    ap.add_argument("--out", required=True)
    ap.add_argument("--doc", help="docs/benchmarks.md to update between its result markers")
    ap.add_argument("--cluster", action="store_true",
                    help="three brokers per system, replication factor 3, min.insync.replicas=2, acks=all rows")
    ap.add_argument("--wait-quiet", type=float, default=0,
                    help="before each system, wait up to this many seconds for other test suites and builds")
    args = ap.parse_args()
    args.systems = args.systems.split(",")
    args.loadavg_start = " ".join(f"{x:.2f}" for x in os.getloadavg())

    bench = Bench(args)
    bench.run()
    bench.save()
    info = machine_info(args)
    text = report(bench, info)
    (bench.out / "report.md").write_text(text)
    (bench.out / "machine.json").write_text(json.dumps(info, indent=1))
    print(text)
    if args.doc:
        record_doc(Path(args.doc), text, f"cluster-{args.mode}" if args.cluster else args.mode)
        log(f"results recorded in {args.doc}")
    log(f"logs and raw results in {bench.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
