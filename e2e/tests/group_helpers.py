"""Helpers for the consumer-group and idempotence tests (test_groups.py,
test_idempotence.py), on top of harness.py:

- `Member`: a confluent-kafka consumer in a group that keeps what it read;
  `poll_members` polls several of them in turn until a condition holds;
- committed offsets, group descriptions and listings through the clients;
- `Wire`: one raw TCP connection speaking Kafka with kafka-python's protocol
  classes (encoders/decoders only), for requests we need to control byte for
  byte, such as a retried idempotent Produce.

Like harness.py, nothing here sleeps for a fixed time: every wait polls a
condition with a deadline.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
import uuid
from typing import Any, Callable, Iterable, Optional

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from harness import OP_TIMEOUT_S, WaitTimeout, admin

log = logging.getLogger("e2e")

# Broker settings for group tests: no 3 s wait for more members before the
# first rebalance (Kafka's default, meant for production), and a small
# __consumer_offsets so that the broker creates it quickly.
GROUP_SETTINGS = {
    "group.initial.rebalance.delay.ms": 0,
    "offsets.topic.num.partitions": 5,
}

# librdkafka's "no committed offset" (RD_KAFKA_OFFSET_INVALID).
OFFSET_INVALID = -1001

# Session timeout for group members: above the broker's
# group.min.session.timeout.ms (6000), and long enough that a member polled
# in turn with others on a loaded machine is never timed out by the broker.
SESSION_TIMEOUT_MS = 30_000
# Members learn of a rebalance through their heartbeat: keep it short so that
# a leave or join is noticed quickly (it costs nothing on a loopback broker).
HEARTBEAT_MS = 500


def unique_group(hint: str) -> str:
    return f"{hint}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------
# confluent-kafka group members


class Member:
    """A confluent-kafka Consumer in `group`, subscribed to `topics`, that keeps
    every record it polls as (partition, offset, value) and every client-level
    error it is told of."""

    def __init__(self, bootstrap: str, group: str, topics: list[str], name: str,
                 conf: Optional[dict[str, Any]] = None):
        self.name = name
        self.group = group
        self.records: list[tuple[int, int, bytes]] = []
        self.errors: list[KafkaError] = []
        # Rebalance callbacks as they came: ("assign" | "revoke" | "lost", partitions).
        self.rebalances: list[tuple[str, list[int]]] = []
        self.closed = False
        c = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "partition.assignment.strategy": "range",
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": HEARTBEAT_MS,
            "error_cb": self._on_error,
        }
        c.update(conf or {})
        self.consumer = Consumer(c)
        self.consumer.subscribe(topics, on_assign=self._on("assign"), on_revoke=self._on("revoke"),
                                on_lost=self._on("lost"))

    def _on(self, what: str) -> Callable[[Any, list[TopicPartition]], None]:
        # The callback only records: confluent-kafka then assigns or unassigns by itself.
        def record(_consumer: Any, partitions: list[TopicPartition]) -> None:
            self.rebalances.append((what, sorted(tp.partition for tp in partitions)))
        return record

    def _on_error(self, err: KafkaError) -> None:
        log.warning("consumer %s: client error: %s", self.name, err)
        self.errors.append(err)

    def poll_once(self, timeout: float = 0.05) -> None:
        self._check_fatal()
        msg = self.consumer.poll(timeout)
        if msg is None:
            return
        if msg.error():
            if msg.error().fatal():
                raise KafkaException(msg.error())
            log.warning("consumer %s: error (continuing): %s", self.name, msg.error())
            return
        self.records.append((msg.partition(), msg.offset(), msg.value()))

    def _check_fatal(self) -> None:
        fatal = [e for e in self.errors if e.fatal()]
        assert not fatal, f"consumer {self.name} hit a fatal error: {fatal[0]}"

    def assigned(self) -> set[int]:
        """Partitions currently assigned (of any topic: the tests use one)."""
        return {tp.partition for tp in self.consumer.assignment()}

    def offsets_seen(self, partition: int) -> list[int]:
        return [o for (p, o, _) in self.records if p == partition]

    def first_offsets(self) -> dict[int, int]:
        first: dict[int, int] = {}
        for p, o, _ in self.records:
            first.setdefault(p, o)
        return first

    def commit_consumed(self) -> list[TopicPartition]:
        """Commit the positions after the records consumed (synchronously);
        returns the committed TopicPartitions, each checked for an error."""
        res = self.consumer.commit(asynchronous=False)
        bad = [tp for tp in res if tp.error is not None]
        assert not bad, f"consumer {self.name}: commit failed for {bad}"
        return res

    def commit_offsets(self, topic: str, offsets: dict[int, int],
                       metadata: Optional[dict[int, str]] = None) -> None:
        tps = []
        for p, o in offsets.items():
            if metadata and p in metadata:
                tps.append(TopicPartition(topic, p, o, metadata=metadata[p]))
            else:
                tps.append(TopicPartition(topic, p, o))
        res = self.consumer.commit(offsets=tps, asynchronous=False)
        bad = [tp for tp in res if tp.error is not None]
        assert not bad, f"consumer {self.name}: commit of {offsets} failed for {bad}"

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.consumer.close()

    def describe(self) -> str:
        return f"{self.name}: assigned {sorted(self.assigned())}, {len(self.records)} records"


def poll_members(members: Iterable[Member], until: Callable[[], Any], what: str,
                 timeout: float = OP_TIMEOUT_S) -> Any:
    """Poll each member in turn (a member that is not polled cannot take part
    in a rebalance) until `until()` is truthy; return its value."""
    members = list(members)
    deadline = time.monotonic() + timeout
    while True:
        for m in members:
            m.poll_once(0.05)
        value = until()
        if value:
            return value
        if time.monotonic() >= deadline:
            state = "; ".join(m.describe() for m in members)
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what} ({state})")


def close_all(members: Iterable[Member]) -> None:
    for m in members:
        try:
            m.close()
        except Exception as exc:  # noqa: BLE001 - cleanup must reach every member
            log.warning("closing consumer %s: %r", m.name, exc)


# --------------------------------------------------------------------------
# committed offsets, group state


def committed(bootstrap: str, group: str, topic: str, partitions: Iterable[int],
              timeout: float = 30.0) -> dict[int, int]:
    """Committed offsets of `group` through OffsetFetch, by a fresh consumer
    that never joins the group. A partition without a commit maps to
    OFFSET_INVALID."""
    return {p: o for p, (o, _) in committed_with_metadata(bootstrap, group, topic, partitions,
                                                           timeout).items()}


def committed_with_metadata(bootstrap: str, group: str, topic: str, partitions: Iterable[int],
                            timeout: float = 30.0) -> dict[int, tuple[int, Optional[str]]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        res = c.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout)
    finally:
        c.close()
    bad = [tp for tp in res if tp.error is not None]
    assert not bad, f"OffsetFetch for group {group}: errors {bad}"
    return {tp.partition: (tp.offset, tp.metadata) for tp in res}


def commit_standalone(bootstrap: str, group: str, topic: str, offsets: dict[int, int],
                      timeout: float = 30.0) -> None:
    """Commit offsets for `group` from a consumer that never joins it (no
    member id, generation -1), as offset tools do for a group without members."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        res = c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                       asynchronous=False)
    finally:
        c.close()
    bad = [tp for tp in res if tp.error is not None]
    assert not bad, f"standalone commit of {offsets} to group {group} failed for {bad}"


def admin_committed(bootstrap: str, group: str, timeout: float = 30.0) -> dict[tuple[str, int], int]:
    """Every committed offset of `group`, through AdminClient
    list_consumer_group_offsets (OffsetFetch for all partitions)."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    a = admin(bootstrap)  # keep the client alive until the future completes
    fut = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=timeout)[group]
    res = fut.result(timeout)
    bad = [tp for tp in res.topic_partitions if tp.error is not None]
    assert not bad, f"list_consumer_group_offsets({group}): errors {bad}"
    return {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions}


def describe_group(bootstrap: str, group: str, timeout: float = 30.0):
    """confluent's ConsumerGroupDescription of `group` (DescribeGroups)."""
    a = admin(bootstrap)  # keep the client alive until the future completes
    fut = a.describe_consumer_groups([group], request_timeout=timeout)[group]
    return fut.result(timeout)


def group_listings(bootstrap: str, timeout: float = 30.0) -> dict[str, Any]:
    """group id -> ConsumerGroupListing, through ListGroups."""
    a = admin(bootstrap)  # keep the client alive until the future completes
    res = a.list_consumer_groups(request_timeout=timeout).result(timeout)
    assert not res.errors, f"list_consumer_groups: errors {res.errors}"
    return {g.group_id: g for g in res.valid}


def member_summary(desc) -> list[tuple[str, list[tuple[str, int]]]]:
    """(client id, sorted assigned partitions) per member, sorted."""
    return sorted((m.client_id, sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions))
                  for m in desc.members)


# --------------------------------------------------------------------------
# raw Kafka requests with kafka-python's protocol classes


class Wire:
    """One TCP connection to a broker. Requests are kafka-python ApiMessage
    objects, encoded by kafka-python (framing and request header included);
    responses are decoded by kafka-python. Nothing here encodes Kafka by hand
    beyond reading the 4-byte length of a response frame."""

    def __init__(self, host: str, port: int, client_id: str = "e2e-wire", timeout: float = 30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.client_id = client_id
        self.correlation_id = 0

    def send(self, request, version: int) -> int:
        """Send `request` at `version`; returns its correlation id."""
        self.correlation_id += 1
        request.API_VERSION = version
        request.with_header(correlation_id=self.correlation_id, client_id=self.client_id)
        self.sock.sendall(request.encode(header=True, framed=True))
        return self.correlation_id

    def send_pipelined(self, requests: list, version: int) -> list[int]:
        """Send several requests in one write, as a client with several
        requests in flight does when they queue up; returns their correlation
        ids in order. Read the responses with receive(), in the same order."""
        frames, ids = [], []
        for request in requests:
            self.correlation_id += 1
            request.API_VERSION = version
            request.with_header(correlation_id=self.correlation_id, client_id=self.client_id)
            frames.append(request.encode(header=True, framed=True))
            ids.append(self.correlation_id)
        self.sock.sendall(b"".join(frames))
        return ids

    def receive(self, response_cls, version: int, correlation_id: int):
        (size,) = struct.unpack(">i", self._recv_exactly(4))
        resp = response_cls.decode(self._recv_exactly(size), version=version, header=True)
        assert resp.header.correlation_id == correlation_id, (
            f"response correlation id {resp.header.correlation_id}, expected {correlation_id}")
        return resp

    def call(self, request, response_cls, version: int):
        return self.receive(response_cls, version, self.send(request, version))

    def _recv_exactly(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError(f"broker closed the connection ({len(buf)} of {n} bytes read)")
            buf += chunk
        return bytes(buf)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Wire":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def api_version_ranges(host: str, port: int) -> dict[int, tuple[int, int]]:
    """api key -> (min, max) version advertised by ApiVersions v0."""
    from kafka.protocol.metadata.api_versions import ApiVersionsRequest, ApiVersionsResponse

    with Wire(host, port) as w:
        resp = w.call(ApiVersionsRequest(), ApiVersionsResponse, 0)
    assert resp.error_code == 0, f"ApiVersions error {resp.error_code}"
    return {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}


def stored_batches(host: str, port: int, topic: str, partition: int, end: int,
                   timeout: float = OP_TIMEOUT_S) -> list:
    """The record batches of `topic`-`partition` from offset 0 up to `end`,
    as kafka-python DefaultRecordBatch objects (producer id, epoch, base
    sequence, records), read with Fetch v4 requests."""
    from kafka.protocol.consumer import FetchRequest, FetchResponse
    from kafka.record.memory_records import MemoryRecords

    Topic = FetchRequest.FetchTopic
    batches: list = []
    offset = 0
    deadline = time.monotonic() + timeout
    with Wire(host, port) as w:
        while offset < end:
            if time.monotonic() > deadline:
                raise WaitTimeout(f"fetching {topic}-{partition}: stuck at offset {offset} of {end}")
            req = FetchRequest(replica_id=-1, max_wait_ms=500, min_bytes=1, max_bytes=8 << 20,
                               isolation_level=0,
                               topics=[Topic(topic=topic, partitions=[Topic.FetchPartition(
                                   partition=partition, fetch_offset=offset,
                                   partition_max_bytes=4 << 20)])])
            resp = w.call(req, FetchResponse, 4)
            [t] = resp.responses
            [p] = t.partitions
            assert p.error_code == 0, f"Fetch {topic}-{partition} at {offset}: error {p.error_code}"
            records = MemoryRecords(bytes(p.records or b""))
            while True:
                batch = records.next_batch()
                if batch is None:
                    break
                if batch.next_offset <= offset:
                    continue  # a batch before the fetch offset, returned whole
                batches.append(batch)
                offset = batch.next_offset
    return batches
