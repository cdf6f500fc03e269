#!/usr/bin/env python3
"""Runnel vs Apache Kafka on one machine: the orchestration behind e2e/bench/run.sh.

Starts a single-node KRaft Kafka and a single-node Runnel on loopback, one after
the other (never both at once), drives each with the same client binaries and
the same workloads, samples the broker process's CPU time and peak resident
memory from /proc, and prints a table of medians with the Runnel/Kafka ratio.
Standard library only. See e2e/bench/README.md and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import platform
import re
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
SIZES = (100, 1024)
ACKS = ("1", "all")
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


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat


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
    system = ""

    def __init__(self, root: Path):
        self.root = root
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
                raise RuntimeError(f"{self.system} exited with {self.proc.returncode} during start-up:\n"
                                   + ANSI.sub("", tail(self.log_path)))
            if port_open(self.port) and self._ready_line():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.system} not ready after {timeout}s:\n" + ANSI.sub("", tail(self.log_path)))

    def _ready_line(self) -> bool:
        return True

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            log(f"{self.system} did not stop in 60s after SIGTERM; SIGKILL")
            self.proc.kill()
            self.proc.wait()


class KafkaBroker(Broker):
    system = "kafka"

    def __init__(self, root: Path, libs: Path):
        super().__init__(root)
        self.libs = libs

    def start(self) -> None:
        self.port, cport = free_port(), free_port()
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{cport}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{cport}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(data),
            # a single node cannot hold the internal topics' default 3 replicas
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
        }
        server_props = self.root / "server.properties"
        server_props.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        log4j = self.root / "log4j.properties"
        log4j.write_text(
            "log4j.rootLogger=INFO, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.request.logger=WARN\n"
        )
        java = ["java", f"-Dlog4j.configuration=file:{log4j}", "-cp", f"{self.libs}/*"]
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt = java + ["-Xmx256M", "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                      f"--config={server_props}"]
        with open(self.log_path, "ab") as f:
            subprocess.run(fmt, stdout=f, stderr=subprocess.STDOUT, check=True, timeout=120)
        self._spawn(java[:1] + KAFKA_BROKER_HEAP + KAFKA_JVM_PERF + java[1:]
                    + ["kafka.Kafka", str(server_props)])
        self.wait_ready()

    def _ready_line(self) -> bool:
        return "Kafka Server started" in self.log_path.read_text(errors="replace")


class RunnelBroker(Broker):
    system = "runnel"

    def __init__(self, root: Path, binary: Path):
        super().__init__(root)
        self.binary = binary

    def start(self) -> None:
        self.port = free_port()
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        # Runnel's defaults throughout; only the addresses are chosen here.
        self._spawn([self.binary, "--data-dir", data, "--listen", f"127.0.0.1:{self.port}",
                     "--metrics-listen", f"127.0.0.1:{free_port()}",
                     "--rpc-listen", f"127.0.0.1:{free_port()}"])
        self.wait_ready()

    def _ready_line(self) -> bool:
        return "broker ready" in self.log_path.read_text(errors="replace")


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


class Bench:
    def __init__(self, args):
        self.args = args
        self.mode = MODES[args.mode]
        self.reps = args.reps or self.mode["reps"]
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.tools = Tools(args, self.out)
        self.results: list[Result] = []
        self.commands: dict[str, str] = {}  # workload key -> example command (last system run)
        self.broker_commands: dict[str, str] = {}
        self.broker_logs: dict[str, str] = {}

    # ---- one workload ----
    def measure(self, broker: Broker, rep: int, key: str, cmd, out_file: Path, parse, bytes_moved=None,
                timeout=None):
        timeout = timeout or self.mode["timeout"]
        self.commands[key] = sh(cmd)
        cpu0 = cpu_seconds(broker.pid)
        code, secs, text = run_tool(cmd, out_file, timeout)
        cpu1 = cpu_seconds(broker.pid) if broker.alive() else None
        r = Result(system=broker.system, rep=rep, key=key, wall_s=round(secs, 2), log=str(out_file),
                   command=sh(cmd))
        try:
            if code is None:
                raise RuntimeError(f"timed out after {timeout:.0f}s; last output: {last_lines(text)}")
            if not broker.alive():
                raise RuntimeError(f"broker died (exit {broker.proc.returncode})")
            r.update(parse(text, code))
            if bytes_moved and cpu1 is not None:
                r["broker_cpu_s"] = round(cpu1 - cpu0, 3)
                r["bytes"] = bytes_moved
                r["cpu_s_per_gb"] = (cpu1 - cpu0) / (bytes_moved / 1e9)
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
                raise RuntimeError(f"consumed {got} of {n} (ConsumerPerformance gives up after 10 s without data)")
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
    def run_system(self, system: str, rep: int) -> None:
        m = self.mode
        root = self.out / f"rep{rep}" / system
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        wl = root / "workloads"
        wl.mkdir()
        broker = (KafkaBroker(root, Path(self.args.kafka_libs)) if system == "kafka"
                  else RunnelBroker(root, Path(self.args.runnel_bin)))
        log(f"rep {rep + 1}/{self.reps}: starting {NAMES[system]} (load average {os.getloadavg()[0]:.2f})")
        t_start = time.monotonic()
        try:
            broker.start()
        except Exception as e:  # noqa: BLE001
            log(f"{system}: could not start: {e}")
            self.results.append(Result(system=system, rep=rep, key="start", ok=False, error=str(e)))
            broker.stop()
            return
        self.broker_commands[system] = sh(broker.command)
        log(f"{NAMES[system]} ready on {broker.bootstrap} (pid {broker.pid}) in {time.monotonic() - t_start:.1f}s")
        try:
            self._workloads(broker, rep, wl, m)
        finally:
            if broker.alive():
                hwm = proc_status_kib(broker.pid, "VmHWM")
                self.results.append(Result(system=system, rep=rep, key="mem/peak", ok=True, mib=hwm / 1024))
                log(f"  peak RSS (VmHWM) {hwm / 1024:.0f} MiB")
            else:
                self.results.append(Result(system=system, rep=rep, key="mem/peak", ok=False,
                                           error=f"broker died (exit {broker.proc.returncode})"))
            broker.stop()
            self.broker_logs[system] = str(broker.log_path)
            shutil.rmtree(root / "data", ignore_errors=True)
            log(f"{NAMES[system]} stopped; {time.monotonic() - t_start:.0f}s for this system")

    def _workloads(self, broker: Broker, rep: int, wl: Path, m: dict) -> None:
        b = broker.bootstrap
        tools = self.tools
        self.results.append(Result(system=broker.system, rep=rep, key="mem/idle", ok=True,
                                   mib=proc_status_kib(broker.pid, "VmRSS") / 1024))
        nrec = {100: m["n100"], 1024: m["n1k"]}
        topics = [f"p{size}-acks{acks}-{tool}:{THROUGHPUT_PARTITIONS}"
                  for size in SIZES for acks in ACKS for tool in ("rdkafka", "java")]
        topics += ["lat-rdkafka:1", "lat-e2e:1", "lat-produce:1", f"warmup:{THROUGHPUT_PARTITIONS}"]
        cmd = tools.java("CreateTopics", "CreateTopics")[:-1] + [HERE / "CreateTopics.java", b] + topics
        code, _, text = run_tool(cmd, wl / "create-topics.out", 120)
        if code != 0:
            self.results.append(Result(system=broker.system, rep=rep, key="create-topics", ok=False,
                                       error=last_lines(text), command=sh(cmd)))
            log(f"  creating topics FAILED: {last_lines(text)}")
            return
        self.commands["create-topics"] = sh(cmd)

        # Warm-up, not measured: the same for both (it lets the JVM compile its hot paths).
        n = m["n100"] // 5
        parts = [a for p in range(THROUGHPUT_PARTITIONS) for a in ("-p", str(p))]
        for i, cmd in enumerate(([tools.rdperf, "-P", "-t", "warmup", "-b", b, "-s", "100", "-c", n, "-a", "-1", "-q"],
                                 [tools.rdperf, "-C", "-t", "warmup", *parts, "-b", b, "-o", "beginning", "-c", n,
                                  "-q"])):
            self.commands[f"warm-up/{i + 1}"] = sh(cmd)
            code, _, text = run_tool(cmd, wl / f"warmup-{i + 1}.out", m["timeout"])
            if code != 0:
                log(f"  warm-up step {i + 1} failed ({code}): {last_lines(text)}")

        # Produce throughput. librdkafka's tool first: it loads the broker, not itself.
        for size in SIZES:
            n = nrec[size]
            for acks in ACKS:
                topic = f"p{size}-acks{acks}-rdkafka"
                cmd = [tools.rdperf, "-P", "-t", topic, "-b", b, "-s", size, "-c", n,
                       "-a", "-1" if acks == "all" else acks, "-q"]
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
        # (the Java producer's 16 KiB batches), falling back to the rdkafka_performance one.
        for size in SIZES:
            n = nrec[size]
            source = None
            for tool in ("java", "rdkafka"):
                if self.ok(broker.system, rep, f"produce/{size}/1/{tool}"):
                    source = f"p{size}-acks1-{tool}"
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
            s = sorted(samples[LAT_WARMUP:])
            return dict(p50_ms=percentile(s, 50) / 1000, p99_ms=percentile(s, 99) / 1000,
                        p999_ms=percentile(s, 99.9) / 1000, avg_ms=sum(s) / len(s) / 1000,
                        achieved_rate=int(rate_m.group(2)) if rate_m else None)
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
            return self.measure(broker, rep, key, cmd, out_file, self.parse_consumer_perf(size, n),
                                bytes_moved=n * size)
        cmd = [tools.kcat, "-C", "-b", b, "-t", topic, "-o", "beginning", "-c", n, "-e", "-q", "-f", r"%o\n"]
        r = self.measure(broker, rep, key, cmd, out_file, self.parse_kcat(size, n, out_file), bytes_moved=n * size)
        if r.get("ok"):  # kcat reports nothing itself: wall clock of the whole process
            r["records_s"] = n / r["wall_s"]
            r["mb_s"] = r["records_s"] * size / 1e6
            log(f"  {key}: {r['mb_s']:.1f} MB/s (wall clock)")
        return r

    def run(self) -> None:
        t0 = time.monotonic()
        for rep in range(self.reps):
            order = SYSTEMS if rep % 2 == 0 else tuple(reversed(SYSTEMS))
            for system in order:
                if system in self.args.systems:
                    self.run_system(system, rep)
                    self.save()
        log(f"all runs done in {time.monotonic() - t0:.0f}s")
        self.elapsed = time.monotonic() - t0

    def save(self) -> None:
        (self.out / "results.json").write_text(json.dumps(
            dict(mode=self.args.mode, reps=self.reps, params=self.mode, results=self.results,
                 commands=self.commands, broker_commands=self.broker_commands), indent=1, default=str))


# --------------------------------------------------------------------------- table

ROWS = []  # (key, metric, label, unit, kind) kind: higher|lower


def _rows():
    tool_names = {"rdkafka": "rdkafka_performance", "java": "ProducerPerformance"}
    for size in SIZES:
        for acks in ACKS:
            for tool in ("rdkafka", "java"):
                ROWS.append((f"produce/{size}/{acks}/{tool}", "mb_s",
                             f"produce {size} B, acks={acks}, {tool_names[tool]}", "MB/s", "higher"))
    cons_names = {"rdkafka": "rdkafka_performance -C", "java": "ConsumerPerformance", "kcat": "kcat -C"}
    for size in SIZES:
        for tool in ("rdkafka", "java", "kcat"):
            ROWS.append((f"consume/{size}/{tool}", "mb_s", f"consume {size} B, {cons_names[tool]}", "MB/s", "higher"))
    for pct, lab in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
        ROWS.append(("latency/rdkafka", pct, f"e2e latency {lab}, rdkafka_performance -l, fixed rate", "ms", "lower"))
    ROWS.append(("latency/rdkafka", "achieved_rate", "  (rate the rdkafka_performance producer achieved)", "msg/s",
                 "info"))
    for pct, lab in (("avg_ms", "avg"), ("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
        ROWS.append(("latency/e2e", pct, f"e2e latency {lab}, EndToEndLatency (1 in flight)", "ms", "lower"))
    for pct, lab in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
        ROWS.append(("latency/produce", pct, f"produce→ack latency {lab}, ProducerPerformance, fixed rate",
                     "ms", "lower"))
    ROWS.append(("mem/idle", "mib", "broker RSS after start, idle", "MiB", "lower"))
    ROWS.append(("mem/peak", "mib", "broker peak RSS (VmHWM)", "MiB", "lower"))


_rows()


def fmt(v, unit):
    if v is None:
        return "–"
    if unit == "ms":
        return f"{v:.2f}" if v < 10 else f"{v:.1f}"
    if unit == "msg/s":
        return f"{v:.0f}"
    if unit in ("MB/s", "MiB"):
        return f"{v:.1f}" if v < 100 else f"{v:.0f}"
    return f"{v:.2f}"


def cell(results, system, key, metric, unit):
    rs = [r for r in results if r["system"] == system and r["key"] == key]
    ok = [r[metric] for r in rs if r.get("ok") and r.get(metric) is not None]
    failed = [r for r in rs if not r.get("ok")]
    if not rs:
        return None, "not run"
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


def build_table(results) -> tuple[str, list[dict]]:
    lines = ["| figure | unit | Kafka | Runnel | Runnel/Kafka | broker CPU s/GB: Kafka | Runnel | Runnel/Kafka |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    failures = []
    for key, metric, label, unit, better in ROWS:
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
        both = [key for key, metric, *_ in ROWS if key.startswith(kind)
                and cpu_cell(results, "kafka", key) is not None and cpu_cell(results, "runnel", key) is not None]
        agg = {}
        for system in SYSTEMS:
            cpu = sum(median([r["broker_cpu_s"] for r in results if r["system"] == system and r["key"] == k
                              and r.get("ok")]) for k in both)
            gb = sum(median([r["bytes"] for r in results if r["system"] == system and r["key"] == k
                             and r.get("ok")]) for k in both) / 1e9
            agg[system] = cpu / gb if gb else None
        lines.append(f"| broker CPU seconds per GB, all {kind} rows both completed ({len(both)}) | s/GB ↓ | "
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


def report(bench: Bench, info: dict) -> str:
    table, failures = build_table(bench.results)
    m = bench.mode
    out = [
        f"Run of {info['date']}: `e2e/bench/run.sh --{bench.args.mode}`, {bench.reps} repetition(s) per system "
        f"(median shown), {bench.elapsed / 60:.1f} minutes of broker runs.",
        "",
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
        "**Machine**",
        "",
        f"- CPU: {info['nproc']} cores ({info['cpu']}); kernel {info['kernel']}; {info['os']}",
        f"- load average (1, 5, 15 min) at start: {info['loadavg_start']}; at end: {info['loadavg_end']} "
        "(the machine is shared: other builds and tests ran alongside)",
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
        out.append("")
    warns = warnings_section(bench.results)
    if warns:
        out += ["**Client-side errors logged during rows that completed** (retried by the client)", "", warns, ""]
    out += ["**Exact commands** (ports are chosen afresh each run; shown from the last system run)", "",
            "```sh"]
    for system in SYSTEMS:
        if system in bench.broker_commands:
            out.append(f"# {NAMES[system]} broker")
            out.append(bench.broker_commands[system])
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
        record_doc(Path(args.doc), text, args.mode)
        log(f"results recorded in {args.doc}")
    log(f"logs and raw results in {bench.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
