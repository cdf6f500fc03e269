"""DeleteRecords: librdkafka's admin client and Kafka's kafka-delete-records
move a partition's log start offset (the low watermark); reads below it are
out of range, consumers that reset start there, the new start survives a
restart, an offset past the high watermark is refused, and the answer
comes once the followers have moved their log start too."""

from __future__ import annotations

import json
import logging

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from cluster import REFERENCE, deadline, kafka_tool, kafka_tools_missing
from harness import (admin, confluent_producer, consume_confluent, create_topic,
                     produce_confluent, unique_topic, wait_until, watermarks)

log = logging.getLogger("e2e")

T = 60


def produce(bootstrap: str, topic: str, n: int, partitions: int = 1) -> None:
    reports = produce_confluent(confluent_producer(bootstrap), topic,
                                [{"value": b"%d" % i, "partition": i % partitions}
                                 for i in range(n)])
    assert all(d.error is None for d in reports), [d.error for d in reports if d.error][:3]


def delete_records(bootstrap: str, topic: str, offsets: dict[int, int]) -> dict[int, object]:
    """DeleteRecords through librdkafka; the low watermark, or the error, per partition."""
    a = admin(bootstrap)
    futures = a.delete_records([TopicPartition(topic, p, o) for p, o in offsets.items()],
                               request_timeout=T, operation_timeout=T)
    out = {}
    for tp, future in futures.items():
        try:
            out[tp.partition] = future.result(T).low_watermark
        except KafkaException as e:
            out[tp.partition] = e.args[0]
    return out


def test_delete_records_moves_the_low_watermark(broker_factory, tmp_path):
    b = broker_factory()
    bs = b.bootstrap
    topic = unique_topic("delete-records")
    create_topic(bs, topic, partitions=2)
    produce(bs, topic, 200, partitions=2)
    assert watermarks(bs, topic, 0) == (0, 100)

    log.info("phase: librdkafka deletes the records of partition 0 below 40")
    assert delete_records(bs, topic, {0: 40}) == {0: 40}
    assert watermarks(bs, topic, 0) == (40, 100)
    assert watermarks(bs, topic, 1) == (0, 100), "another partition is untouched"
    records = consume_confluent(bs, topic, {0: 40}, {0: 100})
    assert [r.offset for r in records] == list(range(40, 100))

    log.info("phase: a consumer asking for offset 10 is out of range and resets to 40")
    reset = consume_confluent(bs, topic, {0: 10}, {0: 100}, **{"auto.offset.reset": "earliest"})
    assert reset[0].offset == 40, reset[:3]

    log.info("phase: past the high watermark is OFFSET_OUT_OF_RANGE; below the start is a no-op")
    refused = delete_records(bs, topic, {0: 101})[0]
    assert isinstance(refused, KafkaError) and refused.code() == KafkaError.OFFSET_OUT_OF_RANGE, \
        refused
    assert delete_records(bs, topic, {0: 5}) == {0: 40}

    why = kafka_tools_missing()
    if why:
        log.warning("skipping kafka-delete-records: %s", why)
    else:
        log.info("phase: Kafka's kafka-delete-records deletes partition 1 up to its high "
                 "watermark (offset -1)")
        spec = tmp_path / "delete.json"
        spec.write_text(json.dumps({"version": 1, "partitions": [
            {"topic": topic, "partition": 1, "offset": -1}]}))
        out = kafka_tool(tmp_path, "org.apache.kafka.tools.DeleteRecordsCommand",
                         "--bootstrap-server", bs, "--offset-json-file", str(spec)).stdout
        assert f"partition: {topic}-1\tlow_watermark: 100" in out, out
        assert watermarks(bs, topic, 1) == (100, 100)

    log.info("phase: a compacted topic refuses with POLICY_VIOLATION, as Kafka does")
    compacted = unique_topic("delete-records-compacted")
    create_topic(bs, compacted, partitions=1, config={"cleanup.policy": "compact"})
    p = confluent_producer(bs)
    produce_confluent(p, compacted, [{"key": b"k", "value": b"v", "partition": 0}])
    refused = delete_records(bs, compacted, {0: 1})[0]
    assert isinstance(refused, KafkaError) and refused.code() == KafkaError.POLICY_VIOLATION, \
        refused

    log.info("phase: the new log start offsets survive a restart")
    b.restart()
    assert watermarks(bs, topic, 0) == (40, 100)
    assert watermarks(bs, topic, 1) == (100, 100)
    produce(bs, topic, 2, partitions=2)
    assert watermarks(bs, topic, 1) == (100, 101)


@pytest.mark.timeout(deadline(300))
def test_followers_move_their_log_start_after_the_leader(cluster_factory):
    c = cluster_factory(3)
    topic = unique_topic("delete-records-rf3")
    c.create_topic(topic, partitions=1, replication_factor=3)
    produce(c.bootstrap, topic, 100)
    c.wait_isr(topic, 3)
    leader = c.leader_of(topic, 0)
    assert delete_records(c.bootstrap, topic, {0: 60}) == {0: 60}

    def starts() -> dict[int, int]:
        out = {}
        for broker in c.brokers:
            path = broker.partition_dir(topic, 0) / "log-start-offset"
            lines = path.read_text().split() if path.exists() else []
            out[broker.node_id] = int(lines[-1]) if len(lines) == 3 else 0
        return out

    if not REFERENCE:  # Runnel's checkpoint file; Kafka keeps one per log directory
        # The answer waited for every live replica, as Kafka's does.
        assert starts() == {i: 60 for i in c.ids}, starts()
    log.info("phase: leader %d stops; the new leader's low watermark is 60 too", leader)
    c.stop(leader)
    live = [i for i in c.ids if i != leader]
    wait_until(lambda: c.leader_of(topic, 0, via=live[0]) in live, timeout=deadline(60),
               ignore=(Exception,), what="a new leader")
    assert watermarks(c.bootstrap_of(live), topic, 0) == (60, 100)
    c.restart(leader)
