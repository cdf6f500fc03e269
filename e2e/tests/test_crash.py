"""Faults: kill -9 of a broker under a producer with acks=all loses no
acknowledged record, and the log continues without reusing or skipping
offsets."""

import logging
import threading
import time

import pytest
from confluent_kafka import Producer

from harness import (StoppableThread, confluent_producer, consume_confluent, create_topic,
                     produce_confluent, unique_topic, wait_until, watermarks)

log = logging.getLogger("e2e")

PARTITIONS = 2
# Records the producer keeps queued (unacknowledged) at most; it waits for
# acks before producing more, so a dead broker stalls it instead of letting it
# pile up records.
MAX_QUEUED = 2000
# Bounds on the producer's run, whatever happens.
MAX_RECORDS = 200_000
MAX_RUN_S = 240
# kill -9 / restart cycles under the running producer
KILLS = 3


def value_of(i: int) -> bytes:
    return b"rec-%09d" % i


@pytest.mark.timeout(900)
def test_acked_records_survive_kill9(broker_factory, request):
    b = broker_factory()
    topic = unique_topic(request.node.name)

    log.info("phase: create topic %s with %d partitions", topic, PARTITIONS)
    create_topic(b.bootstrap, topic, partitions=PARTITIONS)

    acked: dict[tuple[int, int], bytes] = {}  # (partition, offset) -> value
    failed: list[tuple[bytes, str]] = []
    sent = [0]
    lock = threading.Lock()

    def on_delivery(err, msg):
        with lock:
            if err is None:
                pos = (msg.partition(), msg.offset())
                assert pos not in acked, f"two records acknowledged at {pos}"
                acked[pos] = msg.value()
            else:
                failed.append((msg.value(), str(err)))

    producer = Producer({
        "bootstrap.servers": b.bootstrap,
        "acks": "all",
        "linger.ms": 2,
        # long enough to outlive the broker's restart: records queued while it
        # is down get delivered afterwards rather than timing out
        "message.timeout.ms": 180_000,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 1000,
    })

    def produce_stream(stop: threading.Event) -> None:
        i = 0
        t_end = time.monotonic() + MAX_RUN_S
        while not stop.is_set() and i < MAX_RECORDS and time.monotonic() < t_end:
            if len(producer) >= MAX_QUEUED:
                producer.poll(0.05)
                continue
            try:
                producer.produce(topic, value=value_of(i), partition=i % PARTITIONS,
                                 on_delivery=on_delivery)
            except BufferError:
                producer.poll(0.05)
                continue
            i += 1
            sent[0] = i
            producer.poll(0)
        remaining = producer.flush(200)
        assert remaining == 0, f"{remaining} records neither delivered nor failed after flush"

    def n_acked() -> int:
        with lock:
            return len(acked)

    log.info("phase: a confluent-kafka producer (acks=all) streams numbered records")
    thread = StoppableThread(produce_stream, "crash-producer")
    thread.start()
    try:
        wait_until(lambda: n_acked() >= 3000, timeout=60, what="3000 acknowledged records")
        for cycle in range(1, KILLS + 1):
            log.info("phase: kill -9 #%d of the broker while the producer runs", cycle)
            b.kill9()
            acked_at_kill, sent_at_kill = n_acked(), sent[0]
            log.info("at kill: %d produced, %d acknowledged", sent_at_kill, acked_at_kill)
            wait_until(lambda: sent[0] >= sent_at_kill + 200 or len(producer) >= MAX_QUEUED,
                       timeout=30, what="producer to keep producing into the dead broker")
            log.info("producer went on: %d produced, %d queued", sent[0], len(producer))

            log.info("phase: restart #%d on the same data dir; the producer resumes", cycle)
            b.restart()
            wait_until(lambda: n_acked() >= acked_at_kill + 3000, timeout=120,
                       what="3000 more acknowledgements after the restart")
    finally:
        log.info("phase: stop the producer and collect every delivery report")
        thread.join_checked(timeout=240)

    with lock:
        acked_now, failed_now = dict(acked), list(failed)
    log.info("%d produced, %d acknowledged, %d failed (e.g. %s)",
             sent[0], len(acked_now), len(failed_now), failed_now[:3])

    log.info("phase: every acknowledged record is at its acknowledged offset with its value")
    end = {}
    for p in range(PARTITIONS):
        low, high = watermarks(b.bootstrap, topic, p)
        assert low == 0, f"partition {p}: low watermark {low}; nothing should have been deleted"
        acked_max = max((o for (pp, o) in acked_now if pp == p), default=-1)
        assert acked_max < high, f"partition {p}: offset {acked_max} was acknowledged, high watermark is {high}"
        end[p] = high
    got = consume_confluent(b.bootstrap, topic, {p: 0 for p in range(PARTITIONS)}, end, timeout=120)
    by_pos = {(r.partition, r.offset): r.value for r in got}
    missing = [(pos, v) for pos, v in acked_now.items() if by_pos.get(pos) != v]
    assert not missing, (f"{len(missing)} acknowledged records lost or changed, e.g. "
                         f"{[(pos, v, by_pos.get(pos)) for pos, v in sorted(missing)[:10]]}")

    log.info("phase: each partition's log is offsets 0..high-1 with no holes")
    for p in range(PARTITIONS):
        offsets = sorted(o for (pp, o) in by_pos if pp == p)
        assert offsets == list(range(end[p])), (
            f"partition {p}: {len(offsets)} records for high watermark {end[p]}; first hole at "
            f"{next((i for i, o in enumerate(offsets) if i != o), len(offsets))}")

    log.info("phase: new records continue at the previous end, neither reusing nor skipping offsets")
    reports = produce_confluent(confluent_producer(b.bootstrap), topic,
                                [{"value": b"after-%d" % i, "partition": i % PARTITIONS} for i in range(20)])
    for p in range(PARTITIONS):
        offsets = [d.offset for d in reports if d.partition == p]
        assert all(d.error is None for d in reports), reports
        assert offsets == list(range(end[p], end[p] + 10)), f"partition {p}: {offsets}, previous end {end[p]}"


def test_kill9_before_any_produce_and_empty_restart(broker_factory, request):
    b = broker_factory()
    topic = unique_topic(request.node.name)

    log.info("phase: create topic %s, then kill -9 and restart the broker", topic)
    create_topic(b.bootstrap, topic, partitions=3)
    b.kill9()
    b.restart()

    log.info("phase: the topic survived with its 3 partitions, each empty at (0, 0)")
    from harness import wait_for_topic
    wait_for_topic(b.bootstrap, topic, 3)
    for p in range(3):
        assert watermarks(b.bootstrap, topic, p) == (0, 0)

    log.info("phase: produce after the restart starts at offset 0")
    reports = produce_confluent(confluent_producer(b.bootstrap), topic,
                                [{"value": b"v", "partition": p} for p in range(3)])
    assert [(d.error, d.partition, d.offset) for d in reports] == [(None, p, 0) for p in range(3)]
