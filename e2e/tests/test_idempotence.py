"""Idempotent producers: a retried Produce of a batch already in the log is
acknowledged at its first offset and stored once, a sequence gap is refused,
and an idempotent producer keeps its exactly-once, in-order writes across
kill -9 of the broker."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import pytest
from confluent_kafka import KafkaError, Producer

from group_helpers import Wire, api_version_ranges, stored_batches
from harness import (StoppableThread, confluent_producer, consume_confluent, create_topic,
                     produce_confluent, wait_until, watermarks)

log = logging.getLogger("e2e")

pytestmark = pytest.mark.idempotence

PRODUCE_V = 9          # first flexible Produce version; what kafka-python's producer sends at most
INIT_PRODUCER_ID_V = 4
OUT_OF_ORDER_SEQUENCE_NUMBER = 45


# Errors a client retries InitProducerId on: the broker is still loading
# (Kafka answers this way for a moment after it starts).
RETRIABLE_INIT_ERRORS = {14, 15, 16}  # COORDINATOR_LOAD_IN_PROGRESS, _NOT_AVAILABLE, NOT_COORDINATOR


def init_producer_id(w: Wire) -> tuple[int, int]:
    from kafka.protocol.producer import InitProducerIdRequest, InitProducerIdResponse

    def attempt():
        r = w.call(InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000),
                   InitProducerIdResponse, INIT_PRODUCER_ID_V)
        return None if r.error_code in RETRIABLE_INIT_ERRORS else r

    resp = wait_until(attempt, timeout=60, interval=0.2, what="InitProducerId without a retriable error")
    assert resp.error_code == 0, f"InitProducerId: error {resp.error_code}"
    assert resp.producer_id >= 0 and resp.producer_epoch >= 0, resp
    return resp.producer_id, resp.producer_epoch


def idempotent_batch(pid: int, epoch: int, base_sequence: int, values: list[bytes]) -> bytes:
    """One uncompressed v2 record batch carrying the producer id, epoch and
    base sequence, built by kafka-python."""
    from kafka.record.memory_records import MemoryRecordsBuilder

    b = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 20,
                             producer_id=pid, producer_epoch=epoch, base_sequence=base_sequence)
    for v in values:
        assert b.append(timestamp=None, key=None, value=v) is not None
    b.close()
    return bytes(b.buffer())


def produce_request(topic: str, partition: int, records: bytes):
    from kafka.protocol.producer import ProduceRequest

    T = ProduceRequest.TopicProduceData
    return ProduceRequest(transactional_id=None, acks=-1, timeout_ms=30_000,
                          topic_data=[T(name=topic, partition_data=[
                              T.PartitionProduceData(index=partition, records=records)])])


def send_produce(w: Wire, topic: str, partition: int, records: bytes) -> tuple[int, int]:
    """Produce `records` to one partition; returns (error code, base offset)."""
    from kafka.protocol.producer import ProduceResponse

    resp = w.call(produce_request(topic, partition, records), ProduceResponse, PRODUCE_V)
    [t] = resp.responses
    [p] = t.partition_responses
    assert (t.name, p.index) == (topic, partition), resp
    return p.error_code, p.base_offset


def test_retried_produce_is_stored_once_and_gaps_are_refused(broker, topic):
    b = broker
    log.info("phase: the broker serves Produce v%d and InitProducerId v%d", PRODUCE_V, INIT_PRODUCER_ID_V)
    ranges = api_version_ranges(b.host, b.port)
    assert ranges[0][0] <= PRODUCE_V <= ranges[0][1], f"Produce versions {ranges.get(0)}"
    assert ranges[22][0] <= INIT_PRODUCER_ID_V <= ranges[22][1], f"InitProducerId versions {ranges.get(22)}"

    log.info("phase: create topic %s; 3 plain records first, so the batch under test starts at 3", topic)
    create_topic(b.bootstrap, topic, partitions=1)
    plain = [b"plain-%d" % i for i in range(3)]
    reports = produce_confluent(confluent_producer(b.bootstrap), topic,
                                [{"value": v, "partition": 0} for v in plain])
    assert [(d.error, d.offset) for d in reports] == [(None, i) for i in range(3)]

    first = Wire(b.host, b.port, client_id="e2e-idempotent")
    retry = Wire(b.host, b.port, client_id="e2e-idempotent")
    try:
        log.info("phase: InitProducerId gives a producer id; a second call gives another one")
        pid, epoch = init_producer_id(first)
        other_pid, _ = init_producer_id(first)
        assert other_pid != pid, f"two InitProducerId calls both returned producer id {pid}"
        log.info("producer id %d epoch %d", pid, epoch)

        log.info("phase: a batch of 5 records (sequence 0) is sent, then sent again on a new "
                 "connection as a retry after a lost response would be")
        batch_a = [b"idem-a-%d" % i for i in range(5)]
        records_a = idempotent_batch(pid, epoch, 0, batch_a)
        assert send_produce(first, topic, 0, records_a) == (0, 3)
        assert send_produce(retry, topic, 0, records_a) == (0, 3), \
            "the retried batch must be acknowledged at its original base offset"
        assert watermarks(b.bootstrap, topic, 0) == (0, 8), "the retried batch was appended twice"

        log.info("phase: the next batch (sequence 5) is appended after it")
        batch_b = [b"idem-b-%d" % i for i in range(4)]
        assert send_produce(first, topic, 0, idempotent_batch(pid, epoch, 5, batch_b)) == (0, 8)
        assert watermarks(b.bootstrap, topic, 0) == (0, 12)

        log.info("phase: a late retry of the first batch is still recognised: offset 3, not appended")
        assert send_produce(retry, topic, 0, records_a) == (0, 3)
        assert watermarks(b.bootstrap, topic, 0) == (0, 12)

        log.info("phase: a batch with a sequence gap (20, where 9 is next) gets "
                 "OUT_OF_ORDER_SEQUENCE_NUMBER and is not appended")
        err, _ = send_produce(first, topic, 0, idempotent_batch(pid, epoch, 20, [b"gap-0", b"gap-1"]))
        assert err == OUT_OF_ORDER_SEQUENCE_NUMBER, f"error {err} for a sequence gap"
        assert watermarks(b.bootstrap, topic, 0) == (0, 12)

        log.info("phase: the right next batch (sequence 9) is still accepted after the refusal")
        assert send_produce(first, topic, 0, idempotent_batch(pid, epoch, 9, [b"idem-c-0"])) == (0, 12)
    finally:
        first.close()
        retry.close()

    log.info("phase: reading back, every record is there exactly once, in order")
    got = consume_confluent(b.bootstrap, topic, {0: 0}, {0: 13})
    assert [(r.offset, r.value) for r in got] == list(enumerate(plain + batch_a + batch_b + [b"idem-c-0"]))

    log.info("phase: the stored batches carry the producer id, epoch and sequences sent")
    batches = stored_batches(b.host, b.port, topic, 0, 13)
    idem = [(x.base_offset, x.producer_id, x.producer_epoch, x.base_sequence, x.last_offset)
            for x in batches if x.producer_id >= 0]
    assert idem == [(3, pid, epoch, 0, 7), (8, pid, epoch, 5, 11), (12, pid, epoch, 9, 12)], idem


def plain_batch(values: list[bytes]) -> bytes:
    """One uncompressed v2 record batch without producer id, built by kafka-python."""
    from kafka.record.memory_records import MemoryRecordsBuilder

    b = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 20)
    for v in values:
        assert b.append(timestamp=None, key=None, value=v) is not None
    b.close()
    return bytes(b.buffer())


def produce_pipelined(w: Wire, topic: str, batches: list[bytes]) -> list[tuple[int, int]]:
    """Send one Produce request per batch, all in one write on one connection
    (as a client with several requests in flight does); returns (error code,
    base offset) per request, in request order."""
    from kafka.protocol.producer import ProduceResponse

    ids = w.send_pipelined([produce_request(topic, 0, rb) for rb in batches], PRODUCE_V)
    out = []
    for cid in ids:
        [t] = w.receive(ProduceResponse, PRODUCE_V, cid).responses
        [p] = t.partition_responses
        out.append((p.error_code, p.base_offset))
    return out


# Bursts of pipelined requests per test; one burst usually shows a reordering
# broker, several make it near certain.
BURSTS = 10
BURST = 5  # requests per burst: librdkafka's and Java's in-flight limit with idempotence


def test_pipelined_produce_requests_are_appended_in_request_order(broker, topic):
    """Clients keep up to 5 Produce requests in flight on a connection and rely
    on the broker to handle them in order: Kafka appends them in request order."""
    b = broker
    log.info("phase: create topic %s with 1 partition", topic)
    create_topic(b.bootstrap, topic, partitions=1)

    log.info("phase: %d bursts of %d plain one-record batches, each burst %d requests in one "
             "write; each request is appended after the one before it", BURSTS, BURST, BURST)
    values = []
    with Wire(b.host, b.port, client_id="e2e-pipelined") as w:
        for burst in range(BURSTS):
            batch_values = [b"plain-%d-%d" % (burst, k) for k in range(BURST)]
            values += batch_values
            acks = produce_pipelined(w, topic, [plain_batch([v]) for v in batch_values])
            first = burst * BURST
            assert acks == [(0, first + k) for k in range(BURST)], (
                f"burst {burst}: (error, base offset) per request, in request order: {acks}")

    log.info("phase: reading back, the records are in the order they were sent")
    got = consume_confluent(b.bootstrap, topic, {0: 0}, {0: len(values)})
    assert [r.value for r in got] == values


def test_pipelined_idempotent_batches_are_all_accepted(broker, topic):
    """An idempotent producer sends sequences 0, 1, 2, ... in consecutive
    requests without waiting for each answer; the broker must check and append
    them in request order, or it sees gaps that are not there."""
    b = broker
    log.info("phase: create topic %s with 1 partition", topic)
    create_topic(b.bootstrap, topic, partitions=1)

    values = []
    with Wire(b.host, b.port, client_id="e2e-pipelined") as w:
        pid, epoch = init_producer_id(w)
        log.info("phase: %d bursts of %d idempotent one-record batches (sequences 0, 1, 2, ...), "
                 "each burst in one write: every batch is accepted, in order", BURSTS, BURST)
        for burst in range(BURSTS):
            first = burst * BURST
            batch_values = [b"seq-%d" % (first + k) for k in range(BURST)]
            values += batch_values
            acks = produce_pipelined(w, topic, [idempotent_batch(pid, epoch, first + k, [v])
                                                for k, v in enumerate(batch_values)])
            assert acks == [(0, first + k) for k in range(BURST)], (
                f"burst {burst} (sequences {first}..{first + BURST - 1}): (error, base offset) per "
                f"request, in request order: {acks} (error {OUT_OF_ORDER_SEQUENCE_NUMBER} is "
                f"OUT_OF_ORDER_SEQUENCE_NUMBER)")

    log.info("phase: reading back, the records are in sequence order")
    got = consume_confluent(b.bootstrap, topic, {0: 0}, {0: len(values)})
    assert [r.value for r in got] == values


# --------------------------------------------------------------------------

PARTITIONS = 2
KILLS = 2
ACKS_BETWEEN_KILLS = 1500
MAX_QUEUED = 1000
MAX_RUN_S = 150


def value_of(i: int) -> bytes:
    return b"idem-%09d" % i


def index_of(value: bytes) -> int:
    return int(value.split(b"-")[1])


@pytest.mark.timeout(600)
def test_idempotent_producer_across_kill9(broker_factory, topic):
    b = broker_factory()
    log.info("phase: create topic %s with %d partitions", topic, PARTITIONS)
    create_topic(b.bootstrap, topic, partitions=PARTITIONS)

    acked: dict[int, tuple[int, int]] = {}  # record index -> (partition, offset)
    failed: list[tuple[int, str]] = []
    client_errors: list[KafkaError] = []
    sent = [0]
    lock = threading.Lock()

    def on_delivery(err, msg):
        with lock:
            i = index_of(msg.value())
            if err is None:
                assert i not in acked, f"record {i} acknowledged twice"
                acked[i] = (msg.partition(), msg.offset())
            else:
                failed.append((i, str(err)))

    def on_error(err):
        log.warning("idempotent producer: client error: %s", err)
        with lock:
            client_errors.append(err)

    producer = Producer({
        "bootstrap.servers": b.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        # outlives the broker's restart: records wait for it rather than fail
        "message.timeout.ms": 180_000,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 1000,
        "error_cb": on_error,
    })

    def produce_stream(stop: threading.Event) -> None:
        i = 0
        t_end = time.monotonic() + MAX_RUN_S
        while not stop.is_set() and time.monotonic() < t_end:
            if len(producer) >= MAX_QUEUED:
                producer.poll(0.05)
                continue
            try:
                producer.produce(topic, value=value_of(i), partition=i % PARTITIONS, on_delivery=on_delivery)
            except BufferError:
                producer.poll(0.05)
                continue
            i += 1
            sent[0] = i
            producer.poll(0)
        remaining = producer.flush(200)
        assert remaining == 0, f"{remaining} records neither delivered nor failed after flush"

    def n_acked() -> int:
        """Acknowledged so far; fails at once on a fatal producer error (the
        producer would never acknowledge anything again)."""
        with lock:
            fatal = [e for e in client_errors if e.fatal()]
            assert not fatal, f"fatal producer error: {fatal[0]}"
            return len(acked)

    log.info("phase: an idempotent confluent-kafka producer (acks=all) streams numbered records")
    thread = StoppableThread(produce_stream, "idempotent-producer")
    thread.start()
    try:
        wait_until(lambda: n_acked() >= ACKS_BETWEEN_KILLS, timeout=60,
                   what=f"{ACKS_BETWEEN_KILLS} acknowledged records")
        for cycle in range(1, KILLS + 1):
            log.info("phase: kill -9 #%d of the broker with produce requests in flight", cycle)
            b.kill9()
            acked_at_kill, sent_at_kill = n_acked(), sent[0]
            log.info("at kill: %d produced, %d acknowledged", sent_at_kill, acked_at_kill)
            wait_until(lambda: sent[0] >= sent_at_kill + 100 or len(producer) >= MAX_QUEUED,
                       timeout=30, what="the producer to keep producing into the dead broker")

            log.info("phase: restart #%d; the same producer resumes", cycle)
            b.restart()
            wait_until(lambda: n_acked() >= acked_at_kill + ACKS_BETWEEN_KILLS, timeout=120,
                       what=f"{ACKS_BETWEEN_KILLS} more acknowledgements after the restart")
    finally:
        log.info("phase: stop the producer and collect every delivery report")
        thread.join_checked(timeout=240)

    with lock:
        acked_now, failed_now, errors_now = dict(acked), list(failed), list(client_errors)
    n = sent[0]
    log.info("%d produced, %d acknowledged, %d failed; client errors: %s",
             n, len(acked_now), len(failed_now), sorted({str(e) for e in errors_now}))

    log.info("phase: the producer saw no fatal or sequence errors and every record was acknowledged")
    fatal = [e for e in errors_now if e.fatal()]
    assert not fatal, f"fatal producer error: {fatal[0]}"
    seq_errors = [e for e in errors_now if e.code() in (KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
                                                         KafkaError.UNKNOWN_PRODUCER_ID,
                                                         KafkaError.DUPLICATE_SEQUENCE_NUMBER,
                                                         KafkaError.INVALID_PRODUCER_EPOCH)]
    assert not seq_errors, f"producer-state errors: {seq_errors[:5]}"
    # The broker was back within seconds and records may wait 180 s: nothing has a reason to fail.
    assert not failed_now, f"{len(failed_now)} deliveries failed, e.g. {failed_now[:5]}"
    assert sorted(acked_now) == list(range(n)), "a delivery report is missing"

    log.info("phase: the log holds every record exactly once, at its acknowledged offset, in order")
    high = {p: watermarks(b.bootstrap, topic, p)[1] for p in range(PARTITIONS)}
    got = consume_confluent(b.bootstrap, topic, {p: 0 for p in range(PARTITIONS)}, high, timeout=120)
    counts = Counter(r.value for r in got)
    dups = sorted(v for v, c in counts.items() if c > 1)
    assert not dups, f"{len(dups)} values stored more than once, e.g. {dups[:10]}"
    assert sum(high.values()) == n, f"log ends {high} hold {sum(high.values())} records; {n} were produced"
    where = {index_of(r.value): (r.partition, r.offset) for r in got}
    moved = [(i, acked_now[i], where.get(i)) for i in range(n) if where.get(i) != acked_now[i]]
    assert not moved, f"{len(moved)} records not at their acknowledged offset, e.g. {moved[:10]}"
    for p in range(PARTITIONS):
        idx = [index_of(r.value) for r in sorted(got, key=lambda r: r.offset) if r.partition == p]
        assert idx == sorted(idx), f"partition {p}: records out of produce order"

    log.info("phase: every stored batch has the producer's one id and epoch, and the sequences "
             "run 0, 1, 2, ... without a gap or a repeat on each partition")
    for p in range(PARTITIONS):
        batches = stored_batches(b.host, b.port, topic, p, high[p])
        ids = {(x.producer_id, x.producer_epoch) for x in batches}
        assert len(ids) == 1, f"partition {p}: batches from several producer ids/epochs {sorted(ids)}"
        seqs = [(x.base_sequence, x.last_sequence) for x in batches]
        expected_next = 0
        for base, last in seqs:
            assert base == expected_next, (
                f"partition {p}: a batch starts at sequence {base}, expected {expected_next} "
                f"(batches {seqs[:3]}...)")
            expected_next = last + 1
        assert expected_next == high[p], f"partition {p}: last sequence {expected_next - 1}, {high[p]} records"
