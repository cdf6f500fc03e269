"""Helpers for Runnel's end-to-end tests: start a real broker, wait on
conditions, and drive the real Kafka clients (confluent-kafka, kafka-python).

Nothing here sleeps for a fixed time to "let things settle": every wait is a
poll of a condition with a deadline (`wait_until`).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

log = logging.getLogger("e2e")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BROKER_BIN = REPO_ROOT / "target" / "debug" / "runnel-broker"

# How long a broker gets to become ready (health 200 and Kafka port open).
# Generous: a debug build on a loaded 2-core CI machine can be slow to start.
READY_TIMEOUT_S = 60.0
# How long a SIGTERM'd broker gets to exit before we call it a hang.
STOP_TIMEOUT_S = 30.0
# Default deadline for client operations and condition polls.
OP_TIMEOUT_S = 60.0


def broker_bin() -> Path:
    return Path(os.environ.get("RUNNEL_BROKER_BIN", str(DEFAULT_BROKER_BIN)))


# --------------------------------------------------------------------------
# waiting


class WaitTimeout(AssertionError):
    """A condition did not hold before its deadline."""


def wait_until(
    condition: Callable[[], Any],
    timeout: float = OP_TIMEOUT_S,
    interval: float = 0.1,
    what: str = "condition",
    ignore: tuple = (),
) -> Any:
    """Poll `condition` until it returns a truthy value, and return that value.

    Exceptions of the types in `ignore` count as "not yet" (the last one is
    reported on timeout); any other exception propagates at once.
    Raises WaitTimeout (an AssertionError) after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    last_exc: Optional[BaseException] = None
    while True:
        try:
            last = condition()
            last_exc = None
            if last:
                return last
        except ignore as exc:  # type: ignore[misc]
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f"last exception: {last_exc!r}" if last_exc else f"last value: {last!r}"
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what} ({detail})")
        time.sleep(interval)


# --------------------------------------------------------------------------
# ports


# Every port handed out in this test session. A port is handed out once:
# brokers pick their ports one after another and only bind them when they
# start, so without this a later pick could return a port an earlier broker
# was given but has not bound yet (seen: a five-broker cluster whose broker 2
# listened on the port broker 4 had been given for its rpc listener).
_GIVEN_PORTS: set[int] = set()


def free_ports(n: int) -> list[int]:
    """Pick `n` free loopback ports by binding port 0, never one this session
    has handed out before.

    The sockets are held open until every port is chosen; they are closed
    before returning, which leaves a small race with other processes that
    the kernel's port allocator makes unlikely.
    """
    socks = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            port = s.getsockname()[1]
            if port not in _GIVEN_PORTS:
                _GIVEN_PORTS.add(port)
                ports.append(port)
        return ports
    finally:
        for s in socks:
            s.close()


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# urllib honours http_proxy even for loopback; the broker is always local.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET `url`; return (status, body). HTTP error statuses are returned,
    connection errors raise OSError."""
    try:
        with _NO_PROXY_OPENER.open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


# --------------------------------------------------------------------------
# the broker process


class BrokerError(RuntimeError):
    pass


_LIVE_BROKERS: "set[Broker]" = set()


def _kill_leftovers() -> None:
    for b in list(_LIVE_BROKERS):
        b.kill9()


atexit.register(_kill_leftovers)


class Broker:
    """One `runnel-broker` process on free loopback ports.

    The data dir and the log file live in `workdir`; `restart()` reuses both,
    and the same ports, like a broker coming back on the same machine.
    """

    def __init__(
        self,
        workdir: Path,
        node_id: int = 1,
        settings: Optional[dict[str, Any]] = None,
        extra_args: Iterable[str] = (),
        binary: Optional[Path] = None,
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "broker.log"
        self.node_id = node_id
        self.settings = {k: str(v) for k, v in (settings or {}).items()}
        self.extra_args = list(extra_args)
        self.binary = Path(binary) if binary else broker_bin()
        self.port, self.metrics_port, self.rpc_port = free_ports(3)
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0
        self.last_exit_code: Optional[int] = None

    # -- addresses

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def metrics_addr(self) -> str:
        return f"{self.host}:{self.metrics_port}"

    def argv(self) -> list[str]:
        args = [
            str(self.binary),
            "--node-id", str(self.node_id),
            "--data-dir", str(self.data_dir),
            "--listen", self.bootstrap,
            "--advertise", self.bootstrap,
            "--metrics-listen", self.metrics_addr,
            # its own gRPC port too, so that brokers of one run never collide
            "--rpc-listen", f"{self.host}:{self.rpc_port}",
        ]
        for key, value in self.settings.items():
            args += ["--set", f"{key}={value}"]
        return args + self.extra_args

    def __repr__(self) -> str:
        state = f"pid {self.proc.pid}" if self.alive() else "stopped"
        return f"<Broker node {self.node_id} at {self.bootstrap} ({state}), dir {self.workdir}>"

    # -- lifecycle

    def start(self, timeout: float = READY_TIMEOUT_S) -> "Broker":
        if self.alive():
            raise BrokerError(f"{self!r} is already running")
        if not self.binary.is_file():
            raise BrokerError(
                f"broker binary not found at {self.binary} "
                f"(build it with `cargo build -p runnel-broker`, or set RUNNEL_BROKER_BIN)"
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNEL_")}
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")  # plain log files
        self.starts += 1
        argv = self.argv()
        with open(self.log_path, "ab") as logf:
            logf.write(f"\n===== e2e: start #{self.starts}: {' '.join(argv)}\n".encode())
            logf.flush()
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
                start_new_session=True,  # our signals only, never the terminal's
            )
        _LIVE_BROKERS.add(self)
        log.info("started broker node %s pid %s at %s (metrics %s), log %s",
                 self.node_id, self.proc.pid, self.bootstrap, self.metrics_addr, self.log_path)
        self.wait_ready(timeout)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        try:
            status, _ = http_get(f"http://{self.metrics_addr}/health", timeout=1.0)
        except OSError:
            return False
        return status == 200

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait for /health to answer 200 and the Kafka port to accept."""
        t0 = time.monotonic()

        def ready() -> bool:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                raise BrokerError(
                    f"broker exited with code {code} before becoming ready\n{self.log_tail()}"
                )
            return self.healthy() and port_open(self.host, self.port)

        try:
            wait_until(ready, timeout=timeout, interval=0.1, what=f"broker {self.bootstrap} ready")
        except WaitTimeout as exc:
            raise BrokerError(f"{exc}\n{self.log_tail()}") from None
        log.info("broker node %s ready after %.1fs", self.node_id, time.monotonic() - t0)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then wait for exit. Returns the exit code.

        Raises BrokerError if the broker does not exit in `timeout` seconds (it
        is then killed with SIGKILL so nothing is left running)."""
        if self.proc is None:
            return self.last_exit_code if self.last_exit_code is not None else 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._forget()
                raise BrokerError(
                    f"broker did not exit within {timeout:.0f}s of SIGTERM; killed\n{self.log_tail()}"
                )
        self._forget()
        log.info("broker node %s stopped, exit code %s", self.node_id, self.last_exit_code)
        return self.last_exit_code  # type: ignore[return-value]

    def kill9(self) -> None:
        """SIGKILL: the process gets no chance to flush or clean up."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._forget()
        log.info("broker node %s killed with SIGKILL", self.node_id)

    def restart(self, timeout: float = READY_TIMEOUT_S) -> "Broker":
        """Stop (SIGTERM) if running, then start on the same ports and data dir."""
        if self.alive():
            self.stop()
        return self.start(timeout)

    def _forget(self) -> None:
        assert self.proc is not None
        self.last_exit_code = self.proc.returncode
        self.proc = None
        _LIVE_BROKERS.discard(self)

    # -- inspection

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no broker log at {self.log_path})"
        tail = text.splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)

    def rss_bytes(self) -> Optional[int]:
        if not self.alive():
            return None
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return None
        m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        return int(m.group(1)) * 1024 if m else None

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.data_dir / f"{topic}-{partition}"

    def segment_files(self, topic: str, partition: int) -> list[Path]:
        """The partition's `<20-digit base offset>.log` files, oldest first."""
        d = self.partition_dir(topic, partition)
        if not d.is_dir():
            return []
        return sorted(p for p in d.iterdir() if re.fullmatch(r"\d{20}\.log", p.name))


@dataclass
class BrokerFactory:
    """Creates brokers for one test (or module) and tears them all down."""

    basedir: Path
    brokers: list[Broker] = field(default_factory=list)

    def __call__(self, settings: Optional[dict[str, Any]] = None, start: bool = True,
                 node_id: int = 1, **kwargs: Any) -> Broker:
        workdir = self.basedir / f"broker-{len(self.brokers)}-node{node_id}"
        b = Broker(workdir, node_id=node_id, settings=settings, **kwargs)
        self.brokers.append(b)
        if start:
            b.start()
        return b

    def close(self) -> list[str]:
        """Stop every broker; return complaints (e.g. a shutdown hang)."""
        problems = []
        for b in self.brokers:
            if b.alive():
                try:
                    code = b.stop()
                    if code != 0:
                        problems.append(f"{b!r} exited with code {code} on SIGTERM")
                except BrokerError as exc:
                    problems.append(str(exc))
        return problems


# --------------------------------------------------------------------------
# segment files


@dataclass(frozen=True)
class BatchHeader:
    """The fixed header of a Kafka v2 RecordBatch as stored in a .log file."""

    position: int
    base_offset: int
    length: int  # bytes after the length field
    magic: int
    attributes: int
    last_offset_delta: int
    record_count: int

    @property
    def compression(self) -> str:
        return {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}.get(self.attributes & 7, "?")


def read_batch_headers(path: Path) -> list[BatchHeader]:
    """Walk a segment file that holds Kafka v2 record batches back to back
    (as Kafka stores them, and as DESIGN.md says Runnel stores what it
    receives). A torn tail (a partial last batch) ends the walk."""
    import struct

    data = path.read_bytes()
    out = []
    pos = 0
    while pos + 61 <= len(data):
        base_offset, length = struct.unpack_from(">qi", data, pos)
        if length < 49 or pos + 12 + length > len(data):
            break
        magic = data[pos + 16]
        attributes, last_offset_delta = struct.unpack_from(">hi", data, pos + 21)
        (record_count,) = struct.unpack_from(">i", data, pos + 57)
        out.append(BatchHeader(pos, base_offset, length, magic, attributes, last_offset_delta,
                               record_count))
        pos += 12 + length
    return out


# --------------------------------------------------------------------------
# names


def unique_topic(hint: str) -> str:
    """A topic name unique to this run: the hint (e.g. the test name) made
    legal, plus a random suffix."""
    base = re.sub(r"[^A-Za-z0-9._-]", "-", hint).strip("-.")[:80] or "topic"
    return f"{base}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class Rec:
    """A record as a client saw it, normalised across clients."""

    topic: str
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: tuple = ()
    timestamp: Optional[int] = None


def _norm_headers(headers) -> tuple:
    if not headers:
        return ()
    return tuple((k, bytes(v) if v is not None else None) for k, v in headers)


# --------------------------------------------------------------------------
# confluent-kafka


def admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap: str, name: str, partitions: int = 1,
                 config: Optional[dict[str, Any]] = None, timeout: float = OP_TIMEOUT_S) -> None:
    """Create a topic through CreateTopics and wait until metadata shows every
    partition with a leader."""
    from confluent_kafka.admin import NewTopic

    a = admin(bootstrap)
    nt = NewTopic(name, num_partitions=partitions, replication_factor=1,
                  config={k: str(v) for k, v in (config or {}).items()})
    a.create_topics([nt], operation_timeout=timeout, request_timeout=timeout)[name].result(timeout)
    wait_for_topic(bootstrap, name, partitions, timeout)


def wait_for_topic(bootstrap: str, name: str, partitions: int, timeout: float = OP_TIMEOUT_S):
    a = admin(bootstrap)

    def ready():
        md = a.list_topics(topic=name, timeout=5)
        t = md.topics.get(name)
        if t is None or t.error is not None or len(t.partitions) != partitions:
            return None
        if any(p.leader < 0 or p.error is not None for p in t.partitions.values()):
            return None
        return t

    return wait_until(ready, timeout=timeout, what=f"topic {name} with {partitions} led partitions",
                      ignore=(Exception,))


def confluent_producer(bootstrap: str, **conf: Any):
    """A confluent-kafka Producer (acks=all) whose client-level errors are
    logged and kept in `.errors`, so that a fatal one (e.g. a feature the
    broker lacks) fails a test with its own message."""
    from confluent_kafka import Producer

    class RecordingProducer(Producer):
        errors: list

    errors: list = []

    def on_error(err):
        log.warning("confluent producer error: %s", err)
        errors.append(err)

    c = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "error_cb": on_error}
    c.update({k.replace("_", "."): v for k, v in conf.items()})
    p = RecordingProducer(c)
    p.errors = errors
    return p


@dataclass
class Delivery:
    """One delivery report."""

    topic: str
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]
    error: Any  # confluent_kafka.KafkaError or None
    timestamp: Optional[int] = None


def produce_confluent(producer, topic: str, records: Iterable[dict], timeout: float = OP_TIMEOUT_S
                      ) -> list[Delivery]:
    """Produce `records` (dicts of produce() kwargs: value, key, partition,
    timestamp, headers) and flush; return one Delivery per record, in
    produce order. Failed deliveries are returned too (error set)."""
    reports: list[Optional[Delivery]] = []

    def on_delivery(idx):
        def cb(err, msg):
            ts = msg.timestamp()[1] if msg.timestamp() else None
            reports[idx] = Delivery(msg.topic(), msg.partition(), msg.offset(), msg.key(),
                                    msg.value(), err, ts)
        return cb

    try:
        for rec in records:
            reports.append(None)
            cb = on_delivery(len(reports) - 1)
            while True:
                try:
                    producer.produce(topic, on_delivery=cb, **rec)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        remaining = producer.flush(timeout)
    except SystemError as exc:
        # confluent-kafka raises a fatal client error (KafkaException) while
        # running our delivery callback, which then surfaces as this
        cause = exc.__cause__ or exc.__context__
        raise AssertionError(f"producer failed: {cause!r}") from exc
    fatal = [e for e in getattr(producer, "errors", []) if e.fatal()]
    assert not fatal, f"producer hit a fatal error: {fatal[0]}"
    assert remaining == 0, f"{remaining} records still undelivered after {timeout}s flush"
    assert all(r is not None for r in reports), "a delivery report is missing"
    return reports  # type: ignore[return-value]


def confluent_consumer(bootstrap: str, **conf: Any):
    """A consumer for assign()-based reads. librdkafka insists on a group.id
    even then; we set a unique one and never commit (group coordination is not
    part of what these tests exercise)."""
    from confluent_kafka import Consumer

    c = {
        "bootstrap.servers": bootstrap,
        "group.id": f"e2e-unused-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
        "enable.partition.eof": False,
    }
    c.update(conf)
    return Consumer(c)


def consume_confluent(bootstrap: str, topic: str, start: dict[int, int], end: dict[int, int],
                      timeout: float = OP_TIMEOUT_S, **conf: Any) -> list[Rec]:
    """Read `topic` partitions from `start[p]` (inclusive) until an offset
    >= `end[p] - 1` has been seen on each, with assign() at explicit offsets."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    consumer = confluent_consumer(bootstrap, **conf)
    out: list[Rec] = []
    try:
        consumer.assign([TopicPartition(topic, p, o) for p, o in start.items()])
        todo = {p for p in start if end.get(p, 0) > start[p]}
        last_seen: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise WaitTimeout(
                    f"confluent consumer timed out on {topic}: partitions {sorted(todo)} not read "
                    f"to their end; wanted end {end}, last offsets seen {last_seen}")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                # An out-of-range start offset (auto.offset.reset=error) or a
                # fatal error will not get better by polling again.
                if msg.error().fatal() or msg.error().code() == KafkaError._AUTO_OFFSET_RESET:
                    raise KafkaException(msg.error())
                log.warning("consumer error (continuing): %s", msg.error())
                continue
            ts = msg.timestamp()[1]
            r = Rec(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                    _norm_headers(msg.headers()), ts)
            out.append(r)
            last_seen[r.partition] = r.offset
            if r.offset >= end.get(r.partition, 0) - 1:
                todo.discard(r.partition)
    finally:
        consumer.close()
    return out


def watermarks(bootstrap: str, topic: str, partition: int, timeout: float = 10.0) -> tuple[int, int]:
    """(low, high) through ListOffsets earliest/latest."""
    from confluent_kafka import TopicPartition

    consumer = confluent_consumer(bootstrap)
    try:
        wm = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
    finally:
        consumer.close()
    assert wm is not None, f"get_watermark_offsets({topic}-{partition}) timed out"
    return wm


# --------------------------------------------------------------------------
# kafka-python


def kp_producer(bootstrap: str, **conf: Any):
    """A kafka-python producer. Idempotence is off unless asked for: these
    producers test produce/fetch paths, and the idempotent producer (which
    kafka-python turns on by default) has its own test."""
    from kafka import KafkaProducer

    c = {"bootstrap_servers": bootstrap, "acks": "all", "enable_idempotence": False,
         "request_timeout_ms": 30000}
    c.update(conf)
    return KafkaProducer(**c)


def kp_consumer(bootstrap: str, **conf: Any):
    from kafka import KafkaConsumer

    c = {"bootstrap_servers": bootstrap, "group_id": None, "enable_auto_commit": False,
         "auto_offset_reset": "none", "request_timeout_ms": 30000}
    c.update(conf)
    return KafkaConsumer(**c)


def consume_kafka_python(bootstrap: str, topic: str, start: dict[int, int], end: dict[int, int],
                         timeout: float = OP_TIMEOUT_S, **conf: Any) -> list[Rec]:
    """kafka-python twin of consume_confluent: assign + seek, no group."""
    from kafka import TopicPartition

    consumer = kp_consumer(bootstrap, **conf)
    out: list[Rec] = []
    try:
        tps = {p: TopicPartition(topic, p) for p in start}
        consumer.assign(list(tps.values()))
        for p, o in start.items():
            consumer.seek(tps[p], o)
        todo = {p for p in start if end.get(p, 0) > start[p]}
        last_seen: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise WaitTimeout(
                    f"kafka-python consumer timed out on {topic}: partitions {sorted(todo)} not "
                    f"read to their end; wanted end {end}, last offsets seen {last_seen}")
            batches = consumer.poll(timeout_ms=500)
            for tp, records in batches.items():
                for m in records:
                    r = Rec(m.topic, m.partition, m.offset, m.key, m.value,
                            _norm_headers(m.headers), m.timestamp)
                    out.append(r)
                    last_seen[r.partition] = r.offset
                    if r.offset >= end.get(r.partition, 0) - 1:
                        todo.discard(r.partition)
    finally:
        consumer.close()
    return out


# --------------------------------------------------------------------------
# kcat


def kcat(*args: str, input: Optional[bytes] = None, timeout: float = OP_TIMEOUT_S,
         check: bool = True) -> subprocess.CompletedProcess:
    argv = ["kcat", *args]
    log.info("running %s", " ".join(argv))
    proc = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {proc.returncode}\nstdout:\n{proc.stdout.decode(errors='replace')}"
            f"\nstderr:\n{proc.stderr.decode(errors='replace')}")
    return proc


def terminate(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """SIGTERM a helper process (a Connect worker, a Streams app) if it still
    runs and wait for it; SIGKILL it if it outlives `timeout`."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------
# threads


class StoppableThread(threading.Thread):
    """A daemon thread whose target takes a stop Event; re-raises the target's
    exception in join_checked()."""

    def __init__(self, target: Callable[[threading.Event], None], name: str):
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.stop_event = threading.Event()
        self.exc: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self._target_fn(self.stop_event)
        except BaseException as exc:  # noqa: BLE001 - handed to join_checked
            self.exc = exc

    def join_checked(self, timeout: float = OP_TIMEOUT_S) -> None:
        self.stop_event.set()
        self.join(timeout)
        assert not self.is_alive(), f"thread {self.name} did not stop within {timeout}s"
        if self.exc is not None:
            raise self.exc
