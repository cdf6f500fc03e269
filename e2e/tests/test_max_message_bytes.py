"""A topic's max.message.bytes bounds the size of a record batch: a bigger
one is refused with MESSAGE_TOO_LARGE, smaller ones still go through; a
produce larger than a whole segment is RECORD_LIST_TOO_LARGE."""

import logging

from confluent_kafka import KafkaError
from kafka.errors import MessageSizeTooLargeError

from harness import (confluent_producer, consume_confluent, create_topic, kp_producer,
                     produce_confluent)

log = logging.getLogger("e2e")


def test_record_over_max_message_bytes_is_rejected(broker, topic):
    log.info("phase: create %s with max.message.bytes=1000", topic)
    create_topic(broker.bootstrap, topic, partitions=1, config={"max.message.bytes": 1000})
    producer = confluent_producer(broker.bootstrap, **{"compression.type": "none"})

    log.info("phase: a 500-byte record is accepted at offset 0")
    [d] = produce_confluent(producer, topic, [{"value": b"s" * 500, "partition": 0}])
    assert (d.error, d.offset) == (None, 0), d

    log.info("phase: a 5000-byte record (confluent-kafka, no compression) fails with MSG_SIZE_TOO_LARGE")
    [d] = produce_confluent(producer, topic, [{"value": b"L" * 5000, "partition": 0}])
    assert d.error is not None, f"5000-byte record accepted at offset {d.offset}"
    assert d.error.code() == KafkaError.MSG_SIZE_TOO_LARGE, d.error

    log.info("phase: the same through kafka-python fails with MessageSizeTooLargeError")
    kp = kp_producer(broker.bootstrap)
    try:
        fut = kp.send(topic, value=b"K" * 5000, partition=0)
        try:
            md = fut.get(timeout=60)
        except MessageSizeTooLargeError as exc:
            log.info("kafka-python: %r", exc)
        else:
            raise AssertionError(f"kafka-python's 5000-byte record accepted at {md}")
    finally:
        kp.close()

    log.info("phase: another small record goes to offset 1: nothing of the refused ones was written")
    [d] = produce_confluent(producer, topic, [{"value": b"t" * 500, "partition": 0}])
    assert (d.error, d.offset) == (None, 1), d
    got = consume_confluent(broker.bootstrap, topic, {0: 0}, {0: 2})
    assert [(r.offset, r.value) for r in got] == [(0, b"s" * 500), (1, b"t" * 500)]


def test_records_larger_than_a_segment_are_refused(broker, topic):
    """As in Kafka, a partition's records in one produce that are larger than
    the topic's segment.bytes are refused with RECORD_LIST_TOO_LARGE (they
    could not fit a segment); smaller ones still go through."""
    log.info("phase: create %s with segment.bytes=1024", topic)
    create_topic(broker.bootstrap, topic, partitions=1, config={"segment.bytes": 1024})
    producer = confluent_producer(broker.bootstrap, **{"compression.type": "none"})
    [d] = produce_confluent(producer, topic, [{"value": b"L" * 2000, "partition": 0}])
    assert d.error is not None, f"2000-byte record accepted at offset {d.offset}"
    assert d.error.code() == KafkaError.RECORD_LIST_TOO_LARGE, d.error
    [d] = produce_confluent(producer, topic, [{"value": b"s" * 500, "partition": 0}])
    assert (d.error, d.offset) == (None, 0), d
    read = consume_confluent(broker.bootstrap, topic, {0: 0}, {0: 1})
    assert [(r.offset, r.value) for r in read] == [(0, b"s" * 500)]
