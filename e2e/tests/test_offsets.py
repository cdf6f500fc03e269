"""ListOffsets: by timestamp (offsets_for_times) and earliest/latest
(watermarks), through both clients."""

import logging
import time

from confluent_kafka import TopicPartition as CkTP
from kafka import TopicPartition as KpTP

from harness import (confluent_consumer, confluent_producer, create_topic, kp_consumer,
                     produce_confluent, watermarks)

log = logging.getLogger("e2e")


def test_offsets_for_times(broker, topic):
    n = 10
    step = 1000
    # an hour ago, on a whole second: well inside any retention, clearly in the past
    base = (int(time.time()) - 3600) * 1000
    stamps = [base + i * step for i in range(n)]

    log.info("phase: create topic %s", topic)
    create_topic(broker.bootstrap, topic, partitions=1)

    log.info("phase: produce %d records with timestamps base+%d*i (several per batch)", n, step)
    producer = confluent_producer(broker.bootstrap, **{"linger.ms": 100})
    reports = produce_confluent(producer, topic, [
        {"value": f"t{i}".encode(), "partition": 0, "timestamp": ts} for i, ts in enumerate(stamps)])
    assert [(d.error, d.offset) for d in reports] == [(None, i) for i in range(n)]

    # target timestamp -> the first offset whose timestamp is >= target (None: no such record)
    cases = {
        base - 60_000: 0,            # before every record
        base: 0,                     # exactly the first
        base + 1: 1,                 # just after the first
        base + 3 * step: 3,          # exactly a middle one
        base + 3 * step + 500: 4,    # between two records
        stamps[-1]: n - 1,           # exactly the last
        stamps[-1] + 1: None,        # after every record
    }

    log.info("phase: confluent-kafka offsets_for_times for targets before, at, between and after")
    consumer = confluent_consumer(broker.bootstrap)
    try:
        for target, want in cases.items():
            [res] = consumer.offsets_for_times([CkTP(topic, 0, target)], timeout=30)
            assert res.error is None, (target, res.error)
            # librdkafka reports "no such record" as offset -1 (OFFSET_END)
            got = None if res.offset == -1 else res.offset
            assert got == want, f"target {target - base:+d}ms from base: offset {res.offset}, want {want}"
    finally:
        consumer.close()

    log.info("phase: kafka-python offsets_for_times for the same targets, with record timestamps")
    consumer = kp_consumer(broker.bootstrap)
    try:
        tp = KpTP(topic, 0)
        for target, want in cases.items():
            res = consumer.offsets_for_times({tp: target}, timeout_ms=30000)[tp]
            if want is None:
                assert res is None, f"target after the last record: got {res}"
            else:
                assert res is not None, f"target {target - base:+d}ms from base: no offset"
                assert (res.offset, res.timestamp) == (want, stamps[want]), (
                    f"target {target - base:+d}ms: got {res}, want offset {want} ts {stamps[want]}")
    finally:
        consumer.close()


def test_earliest_latest_watermarks(broker, topic):
    log.info("phase: create topic %s with 2 partitions; both start empty at (0, 0)", topic)
    create_topic(broker.bootstrap, topic, partitions=2)
    assert watermarks(broker.bootstrap, topic, 0) == (0, 0)
    assert watermarks(broker.bootstrap, topic, 1) == (0, 0)

    log.info("phase: after 7 records to partition 0 and 3 to partition 1, high watermarks are 7 and 3")
    recs = [{"value": b"x%d" % i, "partition": 0} for i in range(7)]
    recs += [{"value": b"y%d" % i, "partition": 1} for i in range(3)]
    for d in produce_confluent(confluent_producer(broker.bootstrap), topic, recs):
        assert d.error is None, d
    assert watermarks(broker.bootstrap, topic, 0) == (0, 7)
    assert watermarks(broker.bootstrap, topic, 1) == (0, 3)

    log.info("phase: kafka-python beginning_offsets / end_offsets agree")
    consumer = kp_consumer(broker.bootstrap)
    try:
        tps = [KpTP(topic, 0), KpTP(topic, 1)]
        assert consumer.beginning_offsets(tps, timeout_ms=30000) == {tps[0]: 0, tps[1]: 0}
        assert consumer.end_offsets(tps, timeout_ms=30000) == {tps[0]: 7, tps[1]: 3}
    finally:
        consumer.close()

