"""Transactions: transactional producers (librdkafka and the Java client)
commit and abort atomically across partitions, read_committed consumers
(librdkafka, kafka-python, the Java console consumer) see committed records
only and stop at the last stable offset while a transaction is open, a
second producer with the same transactional id fences the first, a
transaction open past its timeout is aborted, and a transaction survives
kill -9 of its coordinator. Kafka's own TransactionalMessageCopier copies
exactly once with random aborts; kafka-transactions lists and describes the
transactions, and Kafka's formatter reads `__transaction_state`.

KIP-890 (part 1): a transactional batch (or TxnOffsetCommit) for a
partition its transaction does not include is refused, on the partition's
leader after asking the coordinator, so a late or stray batch cannot leave
a hanging transaction. The raw-protocol tests here also pass against Apache
Kafka (RUNNEL_BROKER_BIN=e2e/reference/kafka-as-runnel)."""

from __future__ import annotations

import logging
import uuid

import pytest
from confluent_kafka import KafkaException, TopicPartition

from cluster import deadline, kafka_tool, kafka_tools_missing
from group_helpers import Wire
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


# Kafka error codes.
NOT_ENOUGH_REPLICAS = 19
INVALID_TXN_STATE = 48
CONCURRENT_TRANSACTIONS = 51
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
TRANSACTION_ABORTABLE = 120
# What a client retries a coordinator request on: loading, not available,
# not the coordinator, and a transaction still completing.
RETRIABLE_COORDINATOR_ERRORS = {14, 15, 16, CONCURRENT_TRANSACTIONS}


def wire_retrying(w, make, response_cls, version: int, error_of, what: str):
    """Send the request `make()` builds until its error is not a retriable
    coordinator error; returns the response."""
    def attempt():
        r = w.call(make(), response_cls, version)
        return None if error_of(r) in RETRIABLE_COORDINATOR_ERRORS else r

    return wait_until(attempt, timeout=OP_TIMEOUT_S, interval=0.2, what=what)


def wire_find_coordinator(w, key: str, key_type: int) -> int:
    """FindCoordinator (0: group, 1: transactional id), as a client asks
    first (it creates the internal topic); the coordinator's node id."""
    from kafka.protocol.metadata import FindCoordinatorRequest, FindCoordinatorResponse
    r = wire_retrying(w, lambda: FindCoordinatorRequest(key=key, key_type=key_type),
                      FindCoordinatorResponse, 3, lambda r: r.error_code,
                      f"FindCoordinator({key}, type {key_type})")
    assert r.error_code == 0, r
    return r.node_id


def wire_init(w, tid: str) -> tuple[int, int]:
    """InitProducerId for transactional id `tid` on the broker behind `w`
    (its coordinator); returns (producer id, epoch)."""
    from kafka.protocol.producer import InitProducerIdRequest, InitProducerIdResponse
    wire_find_coordinator(w, tid, 1)
    r = wire_retrying(w, lambda: InitProducerIdRequest(transactional_id=tid,
                                                       transaction_timeout_ms=60_000),
                      InitProducerIdResponse, 4, lambda r: r.error_code, f"InitProducerId({tid})")
    assert r.error_code == 0, r
    return r.producer_id, r.producer_epoch


def wire_add_partitions(w, tid: str, pid: int, epoch: int, topic: str,
                        partitions: list[int]) -> dict[int, int]:
    """AddPartitionsToTxn v3; the error code per partition."""
    from kafka.protocol.producer import AddPartitionsToTxnRequest as Req
    from kafka.protocol.producer import AddPartitionsToTxnResponse as Resp

    def make():
        return Req(v3_and_below_transactional_id=tid, v3_and_below_producer_id=pid,
                   v3_and_below_producer_epoch=epoch,
                   v3_and_below_topics=[Req.AddPartitionsToTxnTopic(name=topic,
                                                                    partitions=partitions)])

    def codes(r) -> dict[int, int]:
        return {p.partition_index: p.partition_error_code
                for t in r.results_by_topic_v3_and_below for p in t.results_by_partition}

    r = wire_retrying(w, make, Resp, 3, lambda r: max(codes(r).values()),
                      f"AddPartitionsToTxn({tid}, {topic} {partitions})")
    return codes(r)


def wire_end(w, tid: str, pid: int, epoch: int, commit: bool) -> int:
    """EndTxn v3; its error code."""
    from kafka.protocol.producer import EndTxnRequest, EndTxnResponse
    r = wire_retrying(w, lambda: EndTxnRequest(transactional_id=tid, producer_id=pid,
                                               producer_epoch=epoch, committed=commit),
                      EndTxnResponse, 3, lambda r: r.error_code, f"EndTxn({tid})")
    return r.error_code


def txn_batch(pid: int, epoch: int, base_sequence: int, values: list[bytes]) -> bytes:
    """One transactional record batch, built by kafka-python."""
    from kafka.record.memory_records import MemoryRecordsBuilder
    b = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 20, transactional=True,
                             producer_id=pid, producer_epoch=epoch, base_sequence=base_sequence)
    for v in values:
        assert b.append(timestamp=None, key=None, value=v) is not None
    b.close()
    return bytes(b.buffer())


def wire_produce(w, topic: str, partition: int, records: bytes, tid, version: int = 9) -> int:
    """Produce `records` to one partition with transactional id `tid`
    (None: none); its error code."""
    from kafka.protocol.producer import ProduceRequest, ProduceResponse
    T = ProduceRequest.TopicProduceData
    request = ProduceRequest(transactional_id=tid, acks=-1, timeout_ms=30_000,
                             topic_data=[T(name=topic, partition_data=[
                                 T.PartitionProduceData(index=partition, records=records)])])
    resp = w.call(request, ProduceResponse, version)
    [t] = resp.responses
    [p] = t.partition_responses
    log.info("produce v%d to %s-%d (transactional id %s): error %d %s", version, topic, partition,
             tid, p.error_code, getattr(p, "error_message", None))
    return p.error_code


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


def txn_state_partition(tid: str, partitions: int) -> int:
    """The __transaction_state partition of a transactional id, as Kafka picks it."""
    h = java_string_hash(tid)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def check_verification_across_brokers(c, topic: str) -> None:
    """KIP-890 when a partition's leader is not the transaction's
    coordinator: the leader asks the coordinator on the other broker, and
    refuses the batch until the partition is added."""
    tid = f"{topic}-stray"
    c.wait_isr("__transaction_state", 3)
    coordinator = c.leader_of("__transaction_state", txn_state_partition(tid, 3))
    partition, leader = next((p, l) for p, l in sorted(c.leaders(topic).items())
                             if l != coordinator)
    log.info("coordinator of %s is broker %d; %s-%d is led by broker %d", tid, coordinator,
             topic, partition, leader)
    at_coordinator = Wire(c.broker(coordinator).host, c.broker(coordinator).port)
    at_leader = Wire(c.broker(leader).host, c.broker(leader).port)
    try:
        pid, epoch = wire_init(at_coordinator, tid)
        stray = txn_batch(pid, epoch, 0, [b"stray"])
        assert wire_produce(at_leader, topic, partition, stray, tid) == INVALID_TXN_STATE
        assert wire_add_partitions(at_coordinator, tid, pid, epoch, topic,
                                   [partition]) == {partition: 0}
        assert wire_produce(at_leader, topic, partition, stray, tid) == 0
        assert wire_end(at_coordinator, tid, pid, epoch, commit=False) == 0
    finally:
        at_coordinator.close()
        at_leader.close()


@pytest.mark.timeout(deadline(300))
def test_an_open_transaction_commits_after_its_coordinator_is_killed(cluster_factory):
    c = cluster_factory(3, settings={"transaction.state.log.num.partitions": 3})
    topic = unique_topic("txn-failover")
    c.create_topic(topic, partitions=3, replication_factor=3)
    c.wait_isr(topic, 3)
    tid = f"{topic}-tx"
    p = transactional_producer(c.bootstrap, tid)
    check_verification_across_brokers(c, topic)
    p.begin_transaction()
    first = [f"first-{i}" for i in range(30)]
    produce_in_txn(p, topic, first, 3)
    p.commit_transaction(OP_TIMEOUT_S)

    p.begin_transaction()
    second = [f"second-{i}" for i in range(30)]
    produce_in_txn(p, topic, second, 3)
    state_partition = txn_state_partition(tid, 3)
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


def test_a_transactional_batch_outside_its_transaction_is_refused_and_hangs_nothing(txn_broker,
                                                                                   topic):
    """KIP-890: the leader asks the coordinator before a transaction's first
    batch goes onto a partition. A partition never added is refused
    (INVALID_TXN_STATE, TRANSACTION_ABORTABLE from Produce v11), and so is a
    batch that arrives after its transaction ended, which would otherwise
    open a transaction no coordinator ends; read_committed readers are held
    back by neither. Transactional records need the transactional id."""
    b = txn_broker
    create_topic(b.bootstrap, topic, partitions=2)
    tid = f"{topic}-tx"
    w = Wire(b.host, b.port, client_id="e2e-kip890")
    try:
        pid, epoch = wire_init(w, tid)
        assert wire_add_partitions(w, tid, pid, epoch, topic, [0]) == {0: 0}
        stray = txn_batch(pid, epoch, 0, [b"stray"])
        assert wire_produce(w, topic, 1, stray, tid, 9) == INVALID_TXN_STATE
        assert wire_produce(w, topic, 1, stray, tid, 11) == TRANSACTION_ABORTABLE
        assert wire_produce(w, topic, 1, stray, None, 9) == TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        assert wire_produce(w, topic, 0, txn_batch(pid, epoch, 0, [b"inside"]), tid, 9) == 0
        assert wire_produce(w, topic, 0, txn_batch(pid, epoch, 1, [b"inside-2"]), tid, 9) == 0
        assert wire_end(w, tid, pid, epoch, commit=True) == 0

        # A late batch of the transaction, once its commit marker is in
        # (before that it would still join the transaction, as in Kafka).
        # While the coordinator completes the commit the leader cannot
        # verify (NOT_ENOUGH_REPLICAS, which clients retry); then the batch
        # is refused.
        wait_until(lambda: offsets(b.bootstrap, topic, 2, "read_committed") == {0: 3, 1: 0},
                   timeout=OP_TIMEOUT_S, what="the commit marker")
        late = txn_batch(pid, epoch, 2, [b"late"])

        def answered():
            code = wire_produce(w, topic, 0, late, tid, 9)
            return None if code == NOT_ENOUGH_REPLICAS else (code,)

        (code,) = wait_until(answered, timeout=OP_TIMEOUT_S, interval=0.2,
                             what="the late batch answered with more than NOT_ENOUGH_REPLICAS")
        assert code == INVALID_TXN_STATE
    finally:
        w.close()
    # Two records and the commit marker on 0; nothing on 1; nothing open.
    assert offsets(b.bootstrap, topic, 2, "read_uncommitted") == {0: 3, 1: 0}
    assert offsets(b.bootstrap, topic, 2, "read_committed") == {0: 3, 1: 0}
    assert read_committed_until(b.bootstrap, topic, 2, {"inside-2"}) == ["inside", "inside-2"]


def test_transactional_offsets_need_add_offsets_to_txn_first(txn_broker, topic):
    """KIP-890 for TxnOffsetCommit: the group coordinator writes the
    offsets into the transaction only once the transaction coordinator
    confirms AddOffsetsToTxn put the group's __consumer_offsets partition in
    it; before that the commit is INVALID_TXN_STATE and nothing is written."""
    from kafka.protocol.producer import (AddOffsetsToTxnRequest, AddOffsetsToTxnResponse,
                                         TxnOffsetCommitRequest, TxnOffsetCommitResponse)

    b = txn_broker
    create_topic(b.bootstrap, topic, partitions=1)
    tid, group = f"{topic}-tx", f"{topic}-group"
    w = Wire(b.host, b.port, client_id="e2e-kip890-offsets")
    try:
        wire_find_coordinator(w, group, 0)
        pid, epoch = wire_init(w, tid)
        T = TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic

        def commit() -> int:
            r = wire_retrying(
                w, lambda: TxnOffsetCommitRequest(
                    transactional_id=tid, group_id=group, producer_id=pid, producer_epoch=epoch,
                    generation_id=-1, member_id="", group_instance_id=None,
                    topics=[T(name=topic, partitions=[T.TxnOffsetCommitRequestPartition(
                        partition_index=0, committed_offset=5, committed_leader_epoch=-1,
                        committed_metadata="")])]),
                TxnOffsetCommitResponse, 3, lambda r: r.topics[0].partitions[0].error_code,
                f"TxnOffsetCommit({group})")
            return r.topics[0].partitions[0].error_code

        assert commit() == INVALID_TXN_STATE
        added = wire_retrying(w, lambda: AddOffsetsToTxnRequest(
            transactional_id=tid, producer_id=pid, producer_epoch=epoch, group_id=group),
            AddOffsetsToTxnResponse, 3, lambda r: r.error_code, f"AddOffsetsToTxn({group})")
        assert added.error_code == 0, added
        assert commit() == 0
        assert wire_end(w, tid, pid, epoch, commit=True) == 0
    finally:
        w.close()
    consumer = confluent_consumer(b.bootstrap, **{"group.id": group})
    try:
        wait_until(lambda: consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 5,
                   timeout=OP_TIMEOUT_S, what="the committed transaction's offset")
    finally:
        consumer.close()


@pytest.mark.timeout(deadline(300))
def test_kafka_transactions_finds_and_aborts_a_hanging_transaction(module_broker_factory, topic,
                                                                   tmp_path):
    """A transactional batch whose transaction no coordinator knows holds
    read_committed readers back; `kafka-transactions.sh find-hanging` finds
    it through DescribeProducers and the coordinators, and `abort` ends it
    with WriteTxnMarkers. Such a batch is what a produce that arrives after
    its transaction was aborted leaves when the partition is not verified
    (KIP-890); this broker runs with the verification off, as a Kafka
    broker before 3.6 did, to make one."""
    why = kafka_tools_missing()
    if why:
        pytest.skip(why)
    b = module_broker_factory(settings={**SMALL_INTERNAL_TOPICS,
                                        "transaction.partition.verification.enable": "false"})
    create_topic(b.bootstrap, topic, partitions=1)
    tid = f"{topic}-tx"
    w = Wire(b.host, b.port, client_id="e2e-hanging")
    try:
        pid, epoch = wire_init(w, tid)
        # Never added to the transaction.
        assert wire_produce(w, topic, 0, txn_batch(pid, epoch, 0, [b"hanging"]), tid) == 0
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
