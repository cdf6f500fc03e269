"""Transactions: transactional producers (librdkafka and the Java client)
commit and abort atomically across partitions, read_committed consumers
(librdkafka, kafka-python, the Java console consumer) see committed records
only and stop at the last stable offset while a transaction is open, a
second producer with the same transactional id fences the first, a
transaction open past its timeout is aborted, and a transaction survives
kill -9 of its coordinator. Kafka's own TransactionalMessageCopier copies
exactly once with random aborts; kafka-transactions lists and describes the
transactions, and Kafka's formatter reads `__transaction_state`."""

from __future__ import annotations

import logging
import uuid

import pytest
from confluent_kafka import KafkaException, TopicPartition

from cluster import deadline, kafka_tool, kafka_tools_missing
from harness import (OP_TIMEOUT_S, confluent_consumer, confluent_producer, create_topic,
                     kp_consumer, produce_confluent, unique_topic, wait_until)

log = logging.getLogger("e2e")

pytestmark = pytest.mark.transactions

SMALL_INTERNAL_TOPICS = {
    "transaction.state.log.num.partitions": 5,
    "offsets.topic.num.partitions": 5,
}


@pytest.fixture(scope="module")
def txn_broker(module_broker_factory):
    return module_broker_factory(settings=SMALL_INTERNAL_TOPICS)


def transactional_producer(bootstrap: str, transactional_id: str, **conf):
    p = confluent_producer(bootstrap, transactional_id=transactional_id, **conf)
    p.init_transactions(OP_TIMEOUT_S)
    return p


def produce_in_txn(p, topic: str, values: list[str], partitions: int) -> None:
    """Produce `values` round-robin over the partitions and wait for their acks."""
    records = [{"value": v.encode(), "partition": i % partitions} for i, v in enumerate(values)]
    reports = produce_confluent(p, topic, records)
    failed = [r for r in reports if r.error is not None]
    assert not failed, f"undelivered: {failed[:3]}"


def read_committed_until(bootstrap: str, topic: str, partitions: int, last: set[str],
                         isolation: str = "read_committed") -> list[str]:
    """Every value of `topic` from the start, in each partition's order, read
    until all of `last` were seen (records after them are not read)."""
    consumer = confluent_consumer(bootstrap, **{"isolation.level": isolation,
                                                "auto.offset.reset": "earliest"})
    seen: list[str] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        missing = set(last)

        def done() -> bool:
            msg = consumer.poll(0.5)
            if msg is not None:
                if msg.error():
                    if msg.error().fatal():
                        raise KafkaException(msg.error())
                    log.warning("consumer error (continuing): %s", msg.error())
                else:
                    v = msg.value().decode()
                    seen.append(v)
                    missing.discard(v)
            return not missing

        wait_until(done, timeout=OP_TIMEOUT_S, interval=0,
                   what=f"{isolation} read of {topic} up to {sorted(last)[:3]}...")
    finally:
        consumer.close()
    return seen


def offsets(bootstrap: str, topic: str, partitions: int, isolation: str) -> dict[int, int]:
    """The end offset per partition as ListOffsets says for the isolation level:
    the high watermark (read_uncommitted) or the last stable offset (read_committed)."""
    consumer = confluent_consumer(bootstrap, **{"isolation.level": isolation})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
    finally:
        consumer.close()


def test_read_committed_sees_committed_transactions_only_and_stops_at_open_ones(txn_broker, topic):
    bs = txn_broker.bootstrap
    create_topic(bs, topic, partitions=3)
    p = transactional_producer(bs, f"{topic}-tx")

    p.begin_transaction()
    committed = [f"commit-{i}" for i in range(30)]
    produce_in_txn(p, topic, committed, 3)
    p.commit_transaction(OP_TIMEOUT_S)

    p.begin_transaction()
    aborted = [f"abort-{i}" for i in range(30)]
    produce_in_txn(p, topic, aborted, 3)
    p.abort_transaction(OP_TIMEOUT_S)

    # A transaction left open holds read_committed readers at its first
    # record: records after it (here from a plain producer) wait too.
    p.begin_transaction()
    pending = [f"open-{i}" for i in range(6)]
    produce_in_txn(p, topic, pending, 3)
    plain = confluent_producer(bs)
    later = [f"later-{i}" for i in range(6)]
    produce_in_txn(plain, topic, later, 3)

    hw = offsets(bs, topic, 3, "read_uncommitted")
    lso = offsets(bs, topic, 3, "read_committed")
    log.info("high watermarks %s, last stable offsets %s", hw, lso)
    assert all(lso[i] < hw[i] for i in range(3)), (lso, hw)
    everything = read_committed_until(bs, topic, 3, set(later), isolation="read_uncommitted")
    assert set(everything) == set(committed + aborted + pending + later)
    before_commit = read_committed_until(bs, topic, 3, set(committed))
    assert sorted(before_commit) == sorted(committed), "read_committed went past the open transaction"

    p.commit_transaction(OP_TIMEOUT_S)
    wait_until(lambda: offsets(bs, topic, 3, "read_committed") == offsets(bs, topic, 3, "read_uncommitted"),
               timeout=OP_TIMEOUT_S, what="the last stable offset to reach the high watermark")
    seen = read_committed_until(bs, topic, 3, set(later))
    assert sorted(seen) == sorted(committed + pending + later), (
        f"read_committed saw {len(seen)} records: {sorted(set(seen) - set(committed + pending + later))[:5]} extra")
    assert len(seen) == len(set(seen)), "a record was delivered twice"

    # kafka-python's read_committed consumer agrees.
    consumer = kp_consumer(bs, isolation_level="read_committed")
    try:
        from kafka import TopicPartition as KTP
        parts = [KTP(topic, i) for i in range(3)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        got: list[str] = []

        def kp_done() -> bool:
            for recs in consumer.poll(timeout_ms=500).values():
                got.extend(r.value.decode() for r in recs)
            return set(later) <= set(got)

        wait_until(kp_done, timeout=OP_TIMEOUT_S, interval=0, what="kafka-python read_committed read")
        assert sorted(got) == sorted(committed + pending + later)
    finally:
        consumer.close()


def test_a_second_producer_with_the_same_transactional_id_fences_the_first(txn_broker, topic):
    bs = txn_broker.bootstrap
    create_topic(bs, topic, partitions=2)
    tid = f"{topic}-tx"
    first = transactional_producer(bs, tid)
    first.begin_transaction()
    produce_in_txn(first, topic, [f"zombie-{i}" for i in range(4)], 2)

    # The new instance's InitProducerId aborts the open transaction and
    # bumps the epoch.
    second = transactional_producer(bs, tid)
    second.begin_transaction()
    produce_in_txn(second, topic, [f"live-{i}" for i in range(4)], 2)
    second.commit_transaction(OP_TIMEOUT_S)

    with pytest.raises(KafkaException) as fenced:
        first.commit_transaction(OP_TIMEOUT_S)
    log.info("the fenced producer was told: %s", fenced.value.args[0])
    assert fenced.value.args[0].fatal() or "fenc" in str(fenced.value).lower(), fenced.value

    seen = read_committed_until(bs, topic, 2, {f"live-{i}" for i in range(4)})
    assert sorted(seen) == sorted(f"live-{i}" for i in range(4)), seen


def test_a_transaction_open_past_its_timeout_is_aborted(txn_broker, topic):
    bs = txn_broker.bootstrap
    create_topic(bs, topic, partitions=1)
    stuck = transactional_producer(bs, f"{topic}-tx", **{"transaction.timeout.ms": 2000})
    stuck.begin_transaction()
    produce_in_txn(stuck, topic, ["never-committed"], 1)
    plain = confluent_producer(bs)
    produce_in_txn(plain, topic, ["after"], 1)

    # The coordinator aborts it: the last stable offset catches up with the
    # high watermark (the abort marker is the last record).
    wait_until(lambda: offsets(bs, topic, 1, "read_committed") == offsets(bs, topic, 1, "read_uncommitted"),
               timeout=OP_TIMEOUT_S, what="the timed-out transaction to be aborted")
    seen = read_committed_until(bs, topic, 1, {"after"})
    assert seen == ["after"], seen
    with pytest.raises(KafkaException):
        stuck.commit_transaction(OP_TIMEOUT_S)


@pytest.mark.timeout(deadline(300))
def test_kafkas_transactional_copier_copies_exactly_once_with_random_aborts(txn_broker, tmp_path):
    why = kafka_tools_missing()
    if why:
        pytest.skip(why)
    bs = txn_broker.bootstrap
    source, sink = unique_topic("copy-in"), unique_topic("copy-out")
    create_topic(bs, source, partitions=1)
    create_topic(bs, sink, partitions=1)
    plain = confluent_producer(bs)
    values = [f"m{i}" for i in range(1500)]
    produce_in_txn(plain, source, values, 1)

    tid = f"copier-{uuid.uuid4().hex[:6]}"
    kafka_tool(tmp_path, "org.apache.kafka.tools.TransactionalMessageCopier",
               "--broker-list", bs, "--transactional-id", tid,
               "--input-topic", source, "--input-partition", "0", "--output-topic", sink,
               "--consumer-group", f"{tid}-group", "--max-messages", str(len(values)),
               "--transaction-size", "50", "--enable-random-aborts", "--use-group-metadata")

    def console(isolation: str) -> list[str]:
        out = kafka_tool(tmp_path, "org.apache.kafka.tools.consumer.ConsoleConsumer",
                         "--bootstrap-server", bs, "--topic", sink, "--from-beginning",
                         "--isolation-level", isolation, "--max-messages", str(len(values)),
                         "--timeout-ms", "60000")
        return out.stdout.split()

    committed = console("read_committed")
    assert committed == values, f"read_committed got {len(committed)} records, first {committed[:5]}"
    # The copier aborted some transactions: their copies are in the log, and
    # only a read_uncommitted consumer sees them.
    everything = read_committed_until(bs, sink, 1, {values[-1]}, isolation="read_uncommitted")
    log.info("the sink holds %d records, %d of them aborted copies", len(everything),
             len(everything) - len(values))
    assert len(everything) > len(values), "no transaction was aborted; the test proves less"

    listed = kafka_tool(tmp_path, "org.apache.kafka.tools.TransactionsCommand",
                        "--bootstrap-server", bs, "list").stdout
    row = next((line.split() for line in listed.splitlines() if line.startswith(tid)), None)
    assert row is not None and row[-1] == "CompleteCommit", listed
    described = kafka_tool(tmp_path, "org.apache.kafka.tools.TransactionsCommand",
                           "--bootstrap-server", bs, "describe", "--transactional-id", tid).stdout
    assert tid in described and "CompleteCommit" in described, described

    # Kafka's own formatter reads the coordinator's records.
    state = kafka_tool(tmp_path, "org.apache.kafka.tools.consumer.ConsoleConsumer",
                       "--bootstrap-server", bs, "--topic", "__transaction_state",
                       "--from-beginning", "--timeout-ms", "5000", "--formatter",
                       "org.apache.kafka.tools.consumer.TransactionLogMessageFormatter",
                       check=False).stdout
    assert f'"transactionalId":"{tid}"' in state and '"transactionStatus":4' in state, state[:2000]


def java_string_hash(s: str) -> int:
    h = 0
    for unit in s.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


@pytest.mark.timeout(deadline(300))
def test_an_open_transaction_commits_after_its_coordinator_is_killed(cluster_factory):
    c = cluster_factory(3, settings={"transaction.state.log.num.partitions": 3})
    topic = unique_topic("txn-failover")
    c.create_topic(topic, partitions=3, replication_factor=3)
    c.wait_isr(topic, 3)
    tid = f"{topic}-tx"
    p = transactional_producer(c.bootstrap, tid)
    p.begin_transaction()
    first = [f"first-{i}" for i in range(30)]
    produce_in_txn(p, topic, first, 3)
    p.commit_transaction(OP_TIMEOUT_S)

    p.begin_transaction()
    second = [f"second-{i}" for i in range(30)]
    produce_in_txn(p, topic, second, 3)
    h = java_string_hash(tid)
    state_partition = (0 if h == -(1 << 31) else abs(h)) % 3
    c.wait_isr("__transaction_state", 3)
    coordinator = c.leader_of("__transaction_state", state_partition)
    log.info("transaction coordinator of %s is broker %d; killing it", tid, coordinator)
    c.kill9(coordinator)
    # The new coordinator has the open transaction from the replicated log.
    p.commit_transaction(OP_TIMEOUT_S * 2)
    survivors = [i for i in c.ids if i != coordinator]
    seen = read_committed_until(c.bootstrap_of(survivors), topic, 3, set(second))
    assert sorted(seen) == sorted(first + second), f"{len(seen)} records: {sorted(seen)[:5]}"
    c.restart(coordinator)
    c.wait_isr(topic, 3)


@pytest.mark.timeout(deadline(300))
def test_kafka_transactions_finds_and_aborts_a_hanging_transaction(txn_broker, topic, tmp_path):
    """A transactional batch whose transaction no coordinator knows (as a
    produce that arrives after its transaction was aborted would leave)
    holds read_committed readers back; `kafka-transactions.sh find-hanging`
    finds it through DescribeProducers and the coordinators, and `abort`
    ends it with WriteTxnMarkers."""
    why = kafka_tools_missing()
    if why:
        pytest.skip(why)
    from kafka.record.memory_records import MemoryRecordsBuilder

    from group_helpers import Wire
    from test_idempotence import init_producer_id, send_produce

    b = txn_broker
    create_topic(b.bootstrap, topic, partitions=1)
    w = Wire(b.host, b.port, client_id="e2e-hanging")
    try:
        pid, epoch = init_producer_id(w)
        builder = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 20,
                                       transactional=True, producer_id=pid,
                                       producer_epoch=epoch, base_sequence=0)
        assert builder.append(timestamp=None, key=None, value=b"hanging") is not None
        builder.close()
        assert send_produce(w, topic, 0, bytes(builder.buffer())) == (0, 0)
    finally:
        w.close()
    produce_in_txn(confluent_producer(b.bootstrap), topic, ["after"], 1)
    assert offsets(b.bootstrap, topic, 1, "read_committed") == {0: 0}
    assert offsets(b.bootstrap, topic, 1, "read_uncommitted") == {0: 2}

    described = kafka_tool(tmp_path, "org.apache.kafka.tools.TransactionsCommand",
                           "--bootstrap-server", b.bootstrap, "describe-producers",
                           "--topic", topic, "--partition", "0").stdout
    log.info("describe-producers:\n%s", described)
    rows = [line.split() for line in described.splitlines()[1:] if line.strip()]
    # ProducerId, ProducerEpoch, ..., CurrentTransactionStartOffset
    assert [(r[0], r[1], r[-1]) for r in rows] == [(str(pid), str(epoch), "0")], described
    hanging = kafka_tool(tmp_path, "org.apache.kafka.tools.TransactionsCommand",
                         "--bootstrap-server", b.bootstrap, "find-hanging",
                         "--broker-id", "1", "--max-transaction-timeout", "0").stdout
    log.info("find-hanging:\n%s", hanging)
    rows = [line.split() for line in hanging.splitlines()[1:] if line.strip()]
    # Topic, Partition, ProducerId, ProducerEpoch, CoordinatorEpoch, StartOffset, ...
    assert [(r[0], r[1], r[2], r[5]) for r in rows] == [(topic, "0", str(pid), "0")], hanging

    kafka_tool(tmp_path, "org.apache.kafka.tools.TransactionsCommand",
               "--bootstrap-server", b.bootstrap, "abort", "--topic", topic,
               "--partition", "0", "--start-offset", "0")
    wait_until(lambda: offsets(b.bootstrap, topic, 1, "read_committed") == {0: 3},
               timeout=OP_TIMEOUT_S, what="the last stable offset past the abort marker")
    assert read_committed_until(b.bootstrap, topic, 1, {"after"}) == ["after"]
