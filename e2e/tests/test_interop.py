"""What one client writes, the other reads back, at the acknowledged offsets.

No consumer groups: group coordination is not in this milestone, so the
consumers use assign() at explicit offsets and never commit.
"""

import logging

import pytest

from harness import (confluent_producer, consume_confluent, consume_kafka_python, create_topic,
                     kp_producer, produce_confluent, watermarks)

log = logging.getLogger("e2e")

PARTITIONS = 3
N = 60


def test_confluent_writes_kafka_python_reads_and_back(broker, topic):
    log.info("phase: create topic %s with %d partitions", topic, PARTITIONS)
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)

    log.info("phase: confluent-kafka produces %d records with keys, headers and null values", N)
    ck_records = []
    for i in range(N):
        ck_records.append({
            "partition": i % PARTITIONS,
            "key": f"ck-key-{i}".encode() if i % 5 else None,
            "value": (f"ck-value-{i}-".encode() * (i + 1)) if i % 7 else None,
            "headers": [("source", b"confluent"), ("seq", str(i).encode())],
        })
    reports = produce_confluent(confluent_producer(broker.bootstrap), topic, ck_records)
    for rec, d in zip(ck_records, reports):
        assert d.error is None, d
        assert d.partition == rec["partition"], d
    ck_acked = {(d.partition, d.offset): (rec["key"], rec["value"], tuple(rec["headers"]))
                for rec, d in zip(ck_records, reports)}
    assert len(ck_acked) == N, "two deliveries acknowledged at the same offset"
    for p in range(PARTITIONS):
        offsets = sorted(o for (pp, o) in ck_acked if pp == p)
        assert offsets == list(range(len(offsets))), f"partition {p} offsets {offsets} not 0..n-1"

    log.info("phase: kafka-python reads every confluent record at its acknowledged offset")
    ck_end = {p: max(o for (pp, o) in ck_acked if pp == p) + 1 for p in range(PARTITIONS)}
    got = consume_kafka_python(broker.bootstrap, topic, {p: 0 for p in range(PARTITIONS)}, ck_end)
    by_pos = {(r.partition, r.offset): (r.key, r.value, r.headers) for r in got}
    for pos, want in ck_acked.items():
        assert by_pos.get(pos) == want, f"{pos}: kafka-python read {by_pos.get(pos)}, acked {want}"

    log.info("phase: kafka-python produces %d records; acks carry offsets after confluent's", N)
    kp = kp_producer(broker.bootstrap)
    kp_records = []
    try:
        futures = []
        for i in range(N):
            rec = {
                "partition": i % PARTITIONS,
                # kafka-python refuses a record with neither key nor value
                "key": f"kp-key-{i}".encode() if i % 5 else None,
                "value": (f"kp-value-{i}-".encode() * (i + 1)) if i % 7 or not i % 5 else None,
                "headers": [("source", b"kafka-python"), ("seq", str(i).encode())],
            }
            kp_records.append(rec)
            futures.append(kp.send(topic, **rec))
        kp.flush(timeout=60)
        metas = [f.get(timeout=60) for f in futures]
    finally:
        kp.close()
    kp_acked = {}
    for rec, md in zip(kp_records, metas):
        assert md.partition == rec["partition"], md
        assert md.offset >= ck_end[md.partition], f"kafka-python ack {md} reuses an offset"
        kp_acked[(md.partition, md.offset)] = (rec["key"], rec["value"], tuple(rec["headers"]))
    assert len(kp_acked) == N, "two deliveries acknowledged at the same offset"
    for p in range(PARTITIONS):
        offsets = sorted(o for (pp, o) in kp_acked if pp == p)
        assert offsets == list(range(ck_end[p], ck_end[p] + len(offsets))), (
            f"partition {p}: kafka-python offsets {offsets} do not continue from {ck_end[p]}")

    log.info("phase: confluent-kafka reads every kafka-python record, assigned at its first offset")
    kp_end = {p: max(o for (pp, o) in kp_acked if pp == p) + 1 for p in range(PARTITIONS)}
    got = consume_confluent(broker.bootstrap, topic, dict(ck_end), kp_end)
    by_pos = {(r.partition, r.offset): (r.key, r.value, r.headers) for r in got}
    for pos, want in kp_acked.items():
        assert by_pos.get(pos) == want, f"{pos}: confluent read {by_pos.get(pos)}, acked {want}"
    assert min(r.offset for r in got if r.partition == 0) == ck_end[0], "consumer did not start at the assigned offset"

    log.info("phase: high watermarks equal the number of records written per partition")
    for p in range(PARTITIONS):
        assert watermarks(broker.bootstrap, topic, p) == (0, kp_end[p])


@pytest.mark.idempotence
def test_kafka_python_default_idempotent_producer(broker, topic):
    """kafka-python enables idempotence by default (InitProducerId, producer id
    and sequence numbers in each batch); an unchanged client must work."""
    log.info("phase: create topic %s", topic)
    create_topic(broker.bootstrap, topic, partitions=1)

    log.info("phase: kafka-python with its default config (idempotent) produces 20 records")
    from kafka import KafkaProducer
    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        futures = [kp.send(topic, value=f"idem-{i}".encode(), partition=0) for i in range(20)]
        metas = [f.get(timeout=60) for f in futures]
    finally:
        kp.close()
    assert [m.offset for m in metas] == list(range(20))

    log.info("phase: confluent-kafka reads them back in order")
    got = consume_confluent(broker.bootstrap, topic, {0: 0}, {0: 20})
    assert [(r.offset, r.value) for r in got] == [(i, f"idem-{i}".encode()) for i in range(20)]


@pytest.mark.idempotence
def test_confluent_idempotent_producer(broker, topic):
    log.info("phase: create topic %s", topic)
    create_topic(broker.bootstrap, topic, partitions=1)

    log.info("phase: confluent-kafka with enable.idempotence=true produces 20 records")
    reports = produce_confluent(confluent_producer(broker.bootstrap, **{"enable.idempotence": True}),
                                topic, [{"value": f"idem-{i}".encode(), "partition": 0} for i in range(20)])
    assert [(d.error, d.offset) for d in reports] == [(None, i) for i in range(20)]

    log.info("phase: kafka-python reads them back in order")
    got = consume_kafka_python(broker.bootstrap, topic, {0: 0}, {0: 20})
    assert [(r.offset, r.value) for r in got] == [(i, f"idem-{i}".encode()) for i in range(20)]
