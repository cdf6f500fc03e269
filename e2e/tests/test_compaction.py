"""Log compaction (`cleanup.policy=compact`): the cleaner keeps the latest
record of each key at the offset it was given, and librdkafka, kcat and the
Java console consumer read exactly that; a tombstone outlives its key's
older values and goes on a pass after its delete horizon
(`delete.retention.ms`); records without a key are refused with
INVALID_RECORD; every replica compacts its own log, and a follower that was
down while its leader compacted catches up over the gaps and serves the
compacted log to a consumer in its rack (KIP-392). `__consumer_offsets` is
compacted too, and a restarted broker loads its groups from what is left."""

from __future__ import annotations

import logging
from typing import Optional

import pytest
from confluent_kafka import KafkaError

from cluster import REFERENCE, deadline, kafka_tool, kafka_tools_missing, metric_sum
from harness import (admin, confluent_producer, consume_confluent, consume_kafka_python,
                     create_topic, kcat, produce_confluent, read_batch_headers, unique_topic,
                     wait_until, watermarks)
from test_replication import consume_with_stats

log = logging.getLogger("e2e")

# Small segments so the records roll into sealed (cleanable) segments (but
# larger than any batch the tests send: Kafka refuses a produce larger than
# segment.bytes); a cleaner that looks every 200 ms and cleans at any dirty
# share.
COMPACT = {"cleanup.policy": "compact", "segment.bytes": 2048,
           "min.cleanable.dirty.ratio": "0.01"}
FAST_CLEANER = {"log.cleaner.backoff.ms": 200}
KEYS = 40
ROUNDS = 5


def key_of(i: int) -> bytes:
    return b"key-%03d" % i


def produce_rounds(bootstrap: str, topic: str, rounds: int = ROUNDS,
                   partition: int = 0) -> dict[bytes, tuple[int, Optional[bytes]]]:
    """`rounds` values for each of KEYS keys, round by round (one flush per
    round, so several batches); in the last round every eighth key is
    deleted (a tombstone). Then a filler batch, so that all of it lies in
    sealed segments. Returns each key's latest (offset, value)."""
    latest: dict[bytes, tuple[int, Optional[bytes]]] = {}
    producer = confluent_producer(bootstrap)
    for r in range(rounds):
        records = []
        for i in range(KEYS):
            value = None if r == rounds - 1 and i % 8 == 0 else b"%s=round-%d" % (key_of(i), r)
            records.append({"key": key_of(i), "value": value, "partition": partition})
        reports = produce_confluent(producer, topic, records)
        assert all(d.error is None for d in reports), [d.error for d in reports if d.error][:3]
        for d in reports:
            latest[d.key] = (d.offset, d.value)
    latest.update(fill(producer, topic, "filler", partition))
    return latest


def fill(producer, topic: str, name: str, partition: int = 0) -> dict[bytes, tuple[int, bytes]]:
    """One batch of 8 unique keys, 200-byte values: rolls the segment before it."""
    records = [{"key": b"%s-%d" % (name.encode(), i), "value": b"f" * 200, "partition": partition}
               for i in range(8)]
    reports = produce_confluent(producer, topic, records)
    assert all(d.error is None for d in reports), [d.error for d in reports if d.error][:3]
    return {d.key: (d.offset, d.value) for d in reports}


def read_everything(bootstrap: str, topic: str, partition: int = 0) -> list[tuple[int, bytes, Optional[bytes]]]:
    """(offset, key, value) of every record from the log start to the end."""
    low, high = watermarks(bootstrap, topic, partition)
    records = consume_confluent(bootstrap, topic, {partition: low}, {partition: high},
                                **{"auto.offset.reset": "earliest"})
    return [(r.offset, r.key, r.value) for r in records]


def as_log(latest: dict[bytes, tuple[int, Optional[bytes]]]) -> list[tuple[int, bytes, Optional[bytes]]]:
    return sorted((offset, key, value) for key, (offset, value) in latest.items())


def wait_for_log(bootstrap: str, topic: str, want: list, what: str, timeout: float) -> list:
    """Wait until reading the whole log gives `want`; what it read."""
    seen: list = []

    def ok() -> bool:
        seen[:] = read_everything(bootstrap, topic)
        return seen == want

    try:
        wait_until(ok, timeout=timeout, interval=0.5, what=what)
    except AssertionError as e:
        raise AssertionError(
            f"{e}: read {len(seen)} records, want {len(want)}; first read {seen[:4]}, first "
            f"wanted {want[:4]}; tombstones read {[r for r in seen if r[2] is None][:6]}") from None
    return seen


def log_bytes(broker, topic: str, partition: int = 0) -> int:
    return sum(p.stat().st_size for p in broker.segment_files(topic, partition))


@pytest.mark.timeout(deadline(300))
def test_a_compacted_topic_keeps_the_latest_record_of_each_key(broker_factory, tmp_path):
    b = broker_factory(FAST_CLEANER)
    bs = b.bootstrap
    topic = unique_topic("compacted")
    log.info("phase: create %s with %s, min.compaction.lag.ms of an hour", topic, COMPACT)
    # delete.retention.ms=0: a tombstone stays through the pass that removes
    # its key's older values, and goes on the next one.
    create_topic(bs, topic, partitions=1, config={**COMPACT, "delete.retention.ms": 0,
                                                  "min.compaction.lag.ms": 3600000})

    log.info("phase: %d rounds over %d keys (the last deletes every eighth key), then a filler",
             ROUNDS, KEYS)
    latest = produce_rounds(bs, topic)
    fillers = {k: v for k, v in latest.items() if k.startswith(b"filler")}
    produced = ROUNDS * KEYS + len(fillers)
    expected = as_log(latest)
    assert len(read_everything(bs, topic)) == produced, \
        "records younger than min.compaction.lag.ms were compacted"
    before = log_bytes(b, topic)
    log.info("produced %d records in %d bytes; %d keys remain to keep", produced, before,
             len(expected))
    a = admin(bs)
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    def alter(name: str, value: str) -> None:
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
            ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
        a.incremental_alter_configs([resource])[resource].result(30)

    alter("min.compaction.lag.ms", "0")

    log.info("phase: the cleaner leaves each key's latest record, at its own offset")
    seen = wait_for_log(bs, topic, expected, "the log to hold only each key's latest record",
                        deadline(60))
    low, high = watermarks(bs, topic, 0)
    assert (low, high) == (0, produced), f"watermarks moved: {(low, high)}"
    tombstones = [r for r in seen if r[2] is None]
    assert len(tombstones) == KEYS // 8, f"tombstones kept by the first pass: {tombstones}"
    after = log_bytes(b, topic)
    log.info("log %d bytes before, %d after", before, after)
    assert after < before / 2, f"the log shrank only from {before} to {after} bytes"
    if not REFERENCE:
        # The counters move when the cleaner's round ends, just after the swap.
        wait_until(lambda: (metric_sum(b, "runnel_log_cleaner_bytes_removed_total") or 0)
                   >= before - after, timeout=deadline(30), interval=0.2,
                   what=f"runnel_log_cleaner_bytes_removed_total to count the {before - after} "
                        "bytes the log lost")
        assert metric_sum(b, "runnel_log_cleaner_failures_total") == 0

    log.info("phase: kcat reads the same offsets, keys and values")
    out = kcat("-C", "-b", bs, "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q",
               "-f", "%o %k %S\n").stdout.decode().split("\n")
    by_kcat = [tuple(line.split(" ")) for line in out if line]
    want = [(str(o), k.decode(), str(len(v)) if v is not None else "-1") for o, k, v in expected]
    assert by_kcat == want, f"kcat read {by_kcat[:5]}..., want {want[:5]}..."

    why = kafka_tools_missing()
    if why:
        log.warning("skipping the Java console consumer: %s", why)
    else:
        log.info("phase: Kafka's console consumer (the Java client) reads the same")
        out = kafka_tool(tmp_path, "org.apache.kafka.tools.consumer.ConsoleConsumer",
                         "--bootstrap-server", bs, "--topic", topic, "--from-beginning",
                         "--max-messages", str(len(expected)), "--timeout-ms", "60000",
                         "--property", "print.key=true", "--property", "print.offset=true",
                         "--property", "print.value=false").stdout
        by_java = [line.split("\t") for line in out.splitlines() if line.startswith("Offset:")]
        assert [(int(o.split(":")[1]), k) for o, k in by_java] == \
            [(o, k.decode()) for o, k, _ in expected], out[:2000]

    log.info("phase: a record without a key is refused with INVALID_RECORD")
    reports = produce_confluent(confluent_producer(bs), topic, [{"value": b"no key", "partition": 0}])
    assert reports[0].error is not None and reports[0].error.code() == KafkaError.INVALID_RECORD, \
        reports[0].error
    assert watermarks(bs, topic, 0)[1] == produced, "the refused record was appended"

    log.info("phase: more records make the log dirty; the next pass drops the tombstones, past "
             "their delete horizon")
    more = fill(confluent_producer(bs), topic, "second-filler")
    without_tombstones = as_log({**{k: v for k, v in latest.items() if v[1] is not None}, **more})

    wait_for_log(bs, topic, without_tombstones, "the tombstones to be removed", deadline(60))

    log.info("phase: after a restart the log is the same, and appends go on")
    b.restart()
    assert read_everything(bs, topic) == without_tombstones
    last = fill(confluent_producer(bs), topic, "after-restart")
    assert min(o for o, _ in last.values()) == produced + len(more)


@pytest.mark.timeout(deadline(400))
def test_a_follower_catches_up_on_a_compacted_leader_over_its_gaps(cluster_factory):
    c = cluster_factory(3, settings=FAST_CLEANER)
    topic = unique_topic("compacted-rf3")
    c.create_topic(topic, partitions=1, replication_factor=3, config=COMPACT)
    leader = c.leader_of(topic, 0)
    follower = next(i for i in c.ids if i != leader)
    log.info("phase: stop follower %d; produce while leader %d compacts", follower, leader)
    c.stop(follower)
    live = [i for i in c.ids if i != follower]
    latest = produce_rounds(c.bootstrap_of(live), topic)
    expected = as_log(latest)
    wait_for_log(c.bootstrap_of(live), topic, expected,
                 "the leader's log to hold only each key's latest record", deadline(90))

    log.info("phase: restart follower %d: it copies the compacted log, gaps and all, into the ISR",
             follower)
    c.restart(follower)
    c.wait_isr(topic, 3, timeout=deadline(120),
               what=f"follower {follower} back in the ISR over the leader's gaps")

    log.info("phase: a consumer in the follower's rack reads the compacted log from it")
    end = {0: watermarks(c.bootstrap, topic, 0)[1]}
    got, stats = consume_with_stats(c.bootstrap, topic, end, c.rack_of(follower),
                                    timeout=deadline(120))
    assert got == {(0, o): v for o, _, v in expected}, (
        f"read {len(got)} records from broker {follower}, want {len(expected)}")
    fetched_from = stats["topics"][topic]["partitions"]["0"]["broker"]
    assert fetched_from == follower, f"the consumer fetched from {fetched_from}, not {follower}"


@pytest.mark.timeout(deadline(300))
def test_committed_offsets_are_compacted_and_survive_a_restart(broker_factory):
    """`__consumer_offsets` is compacted as in Kafka: after many commits only
    the latest of each group and partition stays, and a restarted broker
    loads the groups from the compacted log."""
    from confluent_kafka import Consumer, TopicPartition

    b = broker_factory({**FAST_CLEANER, "offsets.topic.num.partitions": 1,
                        "offsets.topic.segment.bytes": 4096})
    bs = b.bootstrap
    topic = unique_topic("commits")
    create_topic(bs, topic, partitions=2)
    producer = confluent_producer(bs)
    reports = produce_confluent(producer, topic, [{"value": b"%d" % i, "partition": i % 2}
                                                  for i in range(400)])
    assert all(d.error is None for d in reports)
    group = f"{topic}-group"
    commits = 200

    def consumer() -> Consumer:
        return Consumer({"bootstrap.servers": bs, "group.id": group,
                         "enable.auto.commit": False})

    log.info("phase: %d commits of each of 2 partitions by group %s", commits, group)
    c = consumer()
    try:
        for i in range(1, commits + 1):
            c.commit(offsets=[TopicPartition(topic, 0, i), TopicPartition(topic, 1, i)],
                     asynchronous=False)
    finally:
        c.close()

    def records_in_offsets_log() -> int:
        return sum(h.record_count for p in b.segment_files("__consumer_offsets", 0)
                   for h in read_batch_headers(p))

    log.info("phase: the cleaner drops the superseded commits")
    # Every commit is a batch of two records; a 4 KiB segment holds about 30
    # of them, so the active segment alone can hold some 60 records.
    wait_until(lambda: records_in_offsets_log() < 100, timeout=deadline(60), interval=0.5,
               what=f"__consumer_offsets to shrink from {2 * commits} commit records")
    log.info("__consumer_offsets holds %d records after %d commits", records_in_offsets_log(),
             2 * commits)

    def committed() -> list[int]:
        c = consumer()
        try:
            tps = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=30)
            return [tp.offset for tp in tps]
        finally:
            c.close()

    assert committed() == [commits, commits]
    log.info("phase: a restarted broker loads the group from the compacted log")
    b.restart()
    assert wait_until(committed, timeout=deadline(60), ignore=(Exception,),
                      what="the committed offsets after a restart") == [commits, commits]


@pytest.mark.timeout(deadline(300))
def test_clients_read_past_a_producers_emptied_last_batch(broker_factory, tmp_path):
    """An idempotent producer's last batch whose records are all superseded
    stays as an empty batch (so its producer state survives); librdkafka,
    kafka-python and the Java client read past it."""
    b = broker_factory(FAST_CLEANER)
    bs = b.bootstrap
    topic = unique_topic("emptied")
    create_topic(bs, topic, partitions=1, config={**COMPACT, "min.compaction.lag.ms": 3600000})
    idempotent = confluent_producer(bs, **{"enable.idempotence": True})
    first = produce_confluent(idempotent, topic, [{"key": b"k-%d" % i, "value": b"old",
                                                   "partition": 0} for i in range(10)])
    assert all(d.error is None for d in first)
    idempotent.flush(10)
    del idempotent
    others = confluent_producer(bs)
    newer = produce_confluent(others, topic, [{"key": b"k-%d" % i, "value": b"new",
                                               "partition": 0} for i in range(10)])
    assert all(d.error is None for d in newer)
    fillers = fill(others, topic, "filler")
    expected = as_log({**{d.key: (d.offset, d.value) for d in newer}, **fillers})
    a = admin(bs)
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("min.compaction.lag.ms", "0", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([resource])[resource].result(30)
    wait_for_log(bs, topic, expected, "the old values to be compacted away", deadline(60))

    log.info("phase: the idempotent producer's batch is still in the log, empty")
    headers = [h for p in b.segment_files(topic, 0) for h in read_batch_headers(p)]
    assert headers[0].base_offset == 0 and headers[0].record_count == 0, headers[:3]

    log.info("phase: kafka-python and the Java console consumer read past it")
    low, high = watermarks(bs, topic, 0)
    by_kp = consume_kafka_python(bs, topic, {0: low}, {0: high})
    assert [(r.offset, r.key, r.value) for r in by_kp] == expected
    why = kafka_tools_missing()
    if not why:
        out = kafka_tool(tmp_path, "org.apache.kafka.tools.consumer.ConsoleConsumer",
                         "--bootstrap-server", bs, "--topic", topic, "--from-beginning",
                         "--max-messages", str(len(expected)), "--timeout-ms", "60000",
                         "--property", "print.offset=true", "--property", "print.value=false").stdout
        offsets = [int(line.split(":")[1]) for line in out.splitlines() if line.startswith("Offset:")]
        assert offsets == [o for o, _, _ in expected], out[:2000]
