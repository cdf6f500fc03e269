"""Fetch edge cases clients rely on: out-of-range offsets and the reset
policies, batches larger than the fetch size limits (KIP-74), and a consumer
waiting at the end of the log."""

import logging
import time

from confluent_kafka import KafkaError
from confluent_kafka import TopicPartition as CkTP
from kafka import TopicPartition as KpTP

from harness import (WaitTimeout, confluent_consumer, confluent_producer, consume_confluent,
                     consume_kafka_python, create_topic, kp_consumer, produce_confluent)

log = logging.getLogger("e2e")


def first_event(consumer, timeout=30.0):
    """The first message or error the consumer returns within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None:
            return msg
    raise WaitTimeout(f"consumer returned nothing in {timeout}s")


def test_out_of_range_offsets_and_reset_policies(broker, topic):
    log.info("phase: create %s and write offsets 0..9", topic)
    create_topic(broker.bootstrap, topic, partitions=1)
    reports = produce_confluent(confluent_producer(broker.bootstrap), topic,
                                [{"value": b"r%d" % i, "partition": 0} for i in range(10)])
    assert [d.offset for d in reports] == list(range(10))

    log.info("phase: fetching at offset 1000 with auto.offset.reset=error reports OFFSET_OUT_OF_RANGE")
    c = confluent_consumer(broker.bootstrap, **{"auto.offset.reset": "error"})
    try:
        c.assign([CkTP(topic, 0, 1000)])
        msg = first_event(c)
        assert msg.error() is not None, f"got a record at offset {msg.offset()} for offset 1000"
        assert msg.error().code() == KafkaError._AUTO_OFFSET_RESET, msg.error()
        log.info("consumer error: %s", msg.error())
    finally:
        c.close()

    log.info("phase: with auto.offset.reset=earliest the consumer restarts from offset 0")
    c = confluent_consumer(broker.bootstrap, **{"auto.offset.reset": "earliest"})
    try:
        c.assign([CkTP(topic, 0, 1000)])
        msg = first_event(c)
        assert msg.error() is None, msg.error()
        assert (msg.offset(), msg.value()) == (0, b"r0")
    finally:
        c.close()

    log.info("phase: with auto.offset.reset=latest it moves to the end: the first record it "
             "gets is a new one (offset >= 10), never an old one")
    c = confluent_consumer(broker.bootstrap, **{"auto.offset.reset": "latest"})
    producer = confluent_producer(broker.bootstrap)
    try:
        c.assign([CkTP(topic, 0, 1000)])
        # The reset happens at some point after assign(); keep adding one record
        # at a time until the consumer, now at the end, picks one up.
        produced = {}
        deadline = time.monotonic() + 30
        msg = None
        while msg is None and time.monotonic() < deadline:
            [d] = produce_confluent(producer, topic, [{"value": b"new%d" % len(produced), "partition": 0}])
            produced[d.offset] = d.value
            t_poll = time.monotonic() + 1.0
            while msg is None and time.monotonic() < t_poll:
                m = c.poll(0.2)
                if m is not None and m.error() is None:
                    msg = m
                elif m is not None:
                    log.info("consumer event: %s", m.error())
        assert msg is not None, "the consumer reset to latest never received a new record"
        assert msg.offset() >= 10, f"reset to latest, yet got old record at offset {msg.offset()}"
        assert produced.get(msg.offset()) == msg.value(), (msg.offset(), msg.value(), produced)
    finally:
        c.close()

    log.info("phase: kafka-python seeking to 1000 with auto_offset_reset=earliest reads from 0")
    kc = kp_consumer(broker.bootstrap, auto_offset_reset="earliest")
    try:
        tp = KpTP(topic, 0)
        kc.assign([tp])
        kc.seek(tp, 1000)
        deadline = time.monotonic() + 30
        records = []
        while not records and time.monotonic() < deadline:
            records = kc.poll(timeout_ms=500).get(tp, [])
        assert records, "kafka-python read nothing after an out-of-range seek"
        assert (records[0].offset, records[0].value) == (0, b"r0")
    finally:
        kc.close()


def test_batches_larger_than_fetch_limits_are_returned(broker, topic):
    big = 5000
    log.info("phase: create %s and write 3 records of %d bytes, one batch each", topic, big)
    create_topic(broker.bootstrap, topic, partitions=1)
    producer = confluent_producer(broker.bootstrap, **{"linger.ms": 0})
    values = [bytes([65 + i]) * big for i in range(3)]
    for v in values:
        [d] = produce_confluent(producer, topic, [{"value": v, "partition": 0}])
        assert d.error is None, d

    log.info("phase: confluent-kafka with fetch.max.bytes=max.partition.fetch.bytes=1024 still "
             "gets every record (the first batch is returned whole, KIP-74)")
    got = consume_confluent(broker.bootstrap, topic, {0: 0}, {0: 3}, timeout=60,
                            **{"fetch.max.bytes": 1024, "max.partition.fetch.bytes": 1024,
                               # librdkafka insists fetch.max.bytes >= message.max.bytes
                               "message.max.bytes": 1000})
    assert [(r.offset, r.value) for r in got] == list(enumerate(values))

    log.info("phase: kafka-python with the same limits also gets every record")
    got = consume_kafka_python(broker.bootstrap, topic, {0: 0}, {0: 3}, timeout=60,
                               fetch_max_bytes=1024, max_partition_fetch_bytes=1024)
    assert [(r.offset, r.value) for r in got] == list(enumerate(values))


def test_consumer_at_log_end_gets_new_records(broker, topic):
    log.info("phase: a consumer assigned at offset 0 of empty topic %s gets no record and no error",
             topic)
    create_topic(broker.bootstrap, topic, partitions=1)
    c = confluent_consumer(broker.bootstrap)
    try:
        c.assign([CkTP(topic, 0, 0)])
        for _ in range(3):
            msg = c.poll(0.5)
            assert msg is None, msg.error() or f"record at offset {msg.offset()}"

        log.info("phase: a record produced now reaches the waiting consumer within 10s")
        [d] = produce_confluent(confluent_producer(broker.bootstrap), topic,
                                [{"value": b"late", "partition": 0}])
        t0 = time.monotonic()
        msg = first_event(c, timeout=10)
        log.info("delivered to the consumer %.2fs after the ack", time.monotonic() - t0)
        assert msg.error() is None and (msg.offset(), msg.value()) == (0, b"late"), msg
    finally:
        c.close()
