"""Replication: clusters of three (or four) brokers, every one a controller
voter, under kill -9, lost quorum, controlled shutdown and reassignment, with
real clients; every test that writes under faults keeps a history of every
acknowledged record and checks it against the log afterwards (cluster.py's
check_history). The network-partition test is in test_replication_partition.py.

Runs against Apache Kafka too (RUNNEL_BROKER_BIN=e2e/reference/kafka-as-runnel),
where checks of Runnel's own metrics are skipped.
"""

from __future__ import annotations

import json
import logging
import os
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from cluster import (ERROR_NAMES, REASSIGN_TOOL, REFERENCE, StreamProducer, assert_history,
                     deadline, fetch_once, kafka_tool, kafka_tools_missing, metric_sum,
                     produce_to, read_all, read_replica)
from harness import (WaitTimeout, confluent_producer, produce_confluent, unique_topic, wait_until,
                     watermarks)

log = logging.getLogger("e2e")

MIN_ISR = {"min.insync.replicas": 2}


# --------------------------------------------------------------------------
# a. kill -9 of the busiest leader, round after round, under an idempotent producer

KILL_ROUNDS = 3
PARTITIONS_A = 6


@pytest.mark.timeout(deadline(420))
def test_acked_records_survive_leader_kill9_rounds(cluster_factory, request):
    c = cluster_factory()
    topic = unique_topic(request.node.name)

    log.info("phase: create %s: %d partitions, replication factor 3, min.insync.replicas 2",
             topic, PARTITIONS_A)
    c.create_topic(topic, PARTITIONS_A, 3, config=MIN_ISR)

    log.info("phase: an idempotent acks=all producer streams uniquely numbered keyed records")
    prod = StreamProducer(c.bootstrap, topic, prefix="a", name="idempotent-producer").start()
    try:
        prod.wait_acks(2000, timeout=60)
        for rnd in range(1, KILL_ROUNDS + 1):
            victim, led = c.busiest_leader(topic)
            log.info("phase: round %d: kill -9 broker %d, the leader of partitions %s",
                     rnd, victim, led)
            c.kill9(victim)
            acked_at_kill = prod.n_acked()

            log.info("phase: round %d: the other two elect new leaders for its partitions, and "
                     "writes to them are acknowledged again", rnd)
            c.wait_leaders_off(topic, victim, timeout=60)
            prod.wait_acks(500, partitions=led, timeout=90,
                           what=f"500 more acknowledgements on partitions {led} after broker "
                                f"{victim} died")
            log.info("round %d: %d acknowledged at the kill, %d now", rnd, acked_at_kill,
                     prod.n_acked())

            log.info("phase: round %d: restart broker %d on its data dir; it catches up and the "
                     "ISR of every partition is 3 again", rnd, victim)
            c.start_broker(victim)
            c.wait_isr(topic, 3, partitions=PARTITIONS_A, timeout=120)
            prod.wait_acks(1000, timeout=60)
    finally:
        log.info("phase: stop the producer and collect every delivery report")
        history = prod.stop()

    log.info("phase: no delivery failed (one broker down at a time leaves 2 in sync replicas)")
    assert not history.failed, (f"{len(history.failed)} deliveries failed, e.g. {history.failed[:5]}")

    log.info("phase: read every partition back: every acknowledged record exactly once at its "
             "acknowledged offset, no value twice, each partition in production order")
    records, end = read_all(c, topic, PARTITIONS_A)
    assert_history(history, records, end, cluster=c, topic=topic, exactly_once=True, ordered=True)

    log.info("phase: the ISR of every partition is 3")
    c.wait_isr(topic, 3, partitions=PARTITIONS_A, timeout=30)


# --------------------------------------------------------------------------
# b. two of three brokers down: no acks=all write is acknowledged


@pytest.mark.timeout(deadline(300))
def test_no_acknowledgement_with_two_of_three_brokers_down(cluster_factory, request):
    c = cluster_factory()
    topic = unique_topic(request.node.name)

    log.info("phase: create %s: 1 partition, replication factor 3, min.insync.replicas 2", topic)
    c.create_topic(topic, 1, 3, config=MIN_ISR)
    leader = c.leader_of(topic, 0)
    followers = [i for i in c.ids if i != leader]

    log.info("phase: with all three up, an acks=all write is acknowledged at offset 0")
    [first] = produce_confluent(confluent_producer(c.bootstrap), topic,
                                [{"value": b"before", "partition": 0}])
    assert (first.error, first.offset) == (None, 0), first

    log.info("phase: kill -9 the followers %s; the leader %d is alone (and the controller quorum "
             "has lost its majority)", followers, leader)
    for i in followers:
        c.kill9(i)

    log.info("phase: an acks=all write with message.timeout.ms=5000 is not acknowledged")
    lone = confluent_producer(c.bootstrap, **{"message.timeout.ms": 5000,
                                              "enable.idempotence": False})
    [lost] = produce_confluent(lone, topic, [{"value": b"alone", "partition": 0}], timeout=60)
    log.info("the write with one broker up: error %s, offset %s", lost.error, lost.offset)
    assert lost.error is not None, (
        f"an acks=all write to a partition with min.insync.replicas=2 was acknowledged at offset "
        f"{lost.offset} while only its leader (broker {leader}) was up")

    log.info("phase: restart brokers %s; the cluster recovers and the ISR is 3 again", followers)
    c.start_brokers(followers)
    c.wait_formed()
    c.wait_isr(topic, 3, partitions=1, timeout=120)

    log.info("phase: a new acks=all write is acknowledged")
    producer = confluent_producer(c.bootstrap, **{"message.timeout.ms": int(deadline(60) * 1000)})
    [after] = produce_confluent(producer, topic, [{"value": b"after", "partition": 0}],
                                timeout=deadline(90))
    assert after.error is None, f"a write after the recovery failed: {after.error}"

    log.info("phase: the first record is still at offset 0, the new one at its offset")
    records, end = read_all(c, topic, 1)
    by_offset = {r.offset: r.value for r in records}
    assert by_offset.get(0) == b"before", f"offset 0 holds {by_offset.get(0)!r}"
    assert by_offset.get(after.offset) == b"after", (
        f"offset {after.offset} (acknowledged) holds {by_offset.get(after.offset)!r}; log {by_offset}")


@pytest.mark.timeout(deadline(300))
def test_min_insync_replicas_refuses_acks_all_when_the_isr_shrinks(cluster_factory, request):
    """Five brokers, so that two replicas of a partition can die while the
    controller quorum (3 of 5) stays up and shrinks the ISR to the leader:
    acks=all is then refused with NOT_ENOUGH_REPLICAS, acks=1 still works."""
    c = cluster_factory(n=5, racks=["zone-a", "zone-b", "zone-c", "zone-a", "zone-b"])
    topic = unique_topic(request.node.name)

    log.info("phase: create %s: 1 partition on brokers 1, 2, 3; min.insync.replicas 2", topic)
    c.create_topic(topic, config=MIN_ISR, assignment=[[1, 2, 3]])
    [first] = produce_confluent(confluent_producer(c.bootstrap), topic,
                                [{"value": b"before", "partition": 0}])
    assert (first.error, first.offset) == (None, 0), first

    log.info("phase: kill -9 brokers 2 and 3; the quorum (1, 4, 5) shrinks the ISR to [1]")
    c.kill9(2)
    c.kill9(3)
    last: list = []

    def shrunk() -> bool:
        m = c.metadata(via=1, topics=[topic]).partitions(topic)[0]
        last.append(m)
        return m.leader == 1 and m.isr == [1]

    try:
        wait_until(shrunk, timeout=deadline(60), interval=0.25, ignore=(OSError, EOFError),
                   what=f"ISR [1] for {topic}-0")
    except WaitTimeout as exc:
        raise WaitTimeout(f"{exc}; last: {last[-1:]}") from None

    log.info("phase: an acks=all Produce to the leader is refused with NOT_ENOUGH_REPLICAS")
    outcome, code = produce_to(c.broker(1), topic, 0, b"acks-all-refused", timeout_ms=5000)
    log.info("acks=all with ISR [1]: %s, error %s (%s)", outcome, code, ERROR_NAMES.get(code, "?"))
    assert (outcome, code) == ("answer", 19), (
        f"acks=all with an ISR of 1 < min.insync.replicas 2: {outcome}, error {code} "
        f"({ERROR_NAMES.get(code, '?')}), expected NOT_ENOUGH_REPLICAS (19)")

    log.info("phase: an acks=1 write is still acknowledged by the leader")
    one = confluent_producer(c.bootstrap, **{"acks": "1", "enable.idempotence": False,
                                             "message.timeout.ms": int(deadline(30) * 1000)})
    [acked1] = produce_confluent(one, topic, [{"value": b"acks-1", "partition": 0}],
                                 timeout=deadline(60))
    assert acked1.error is None, f"acks=1 with the leader up: {acked1.error}"

    log.info("phase: restart brokers 2 and 3; the ISR is 3 again and acks=all works")
    c.start_brokers([2, 3])
    c.wait_isr(topic, 3, partitions=1, timeout=120)
    [after] = produce_confluent(confluent_producer(c.bootstrap), topic,
                                [{"value": b"after", "partition": 0}], timeout=deadline(60))
    assert after.error is None, f"acks=all after the recovery: {after.error}"
    records, _ = read_all(c, topic, 1)
    by_offset = {r.offset: r.value for r in records}
    assert by_offset.get(0) == b"before" and by_offset.get(acked1.offset) == b"acks-1" \
        and by_offset.get(after.offset) == b"after", by_offset
    assert b"acks-all-refused" not in by_offset.values(), (
        f"the refused acks=all record was appended anyway: {by_offset}")


# --------------------------------------------------------------------------
# c. closest-replica reads (KIP-392)

RACK_B = "zone-b"
CLOSEST_PAYLOAD_BYTES = 12 << 20
CLOSEST_VALUE_BYTES = 16 << 10
FETCH_BYTES_METRIC = "runnel_fetch_consumer_bytes_total"


def consume_with_stats(bootstrap: str, topic: str, end: dict[int, int], rack: str,
                       timeout: float) -> tuple[dict[tuple[int, int], bytes], dict]:
    """Read `topic` from offset 0 to `end` with a consumer that sends
    client.rack; returns the records and librdkafka's last statistics (taken
    after the last record)."""
    stats: list[dict] = []
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"e2e-closest-{os.getpid()}-{time.monotonic_ns()}",
        "client.rack": rack,
        "enable.auto.commit": False,
        "auto.offset.reset": "error",
        "statistics.interval.ms": 500,
        "stats_cb": lambda s: stats.append(json.loads(s)),
        "fetch.max.bytes": 4 << 20,
    })
    got: dict[tuple[int, int], bytes] = {}
    try:
        c.assign([TopicPartition(topic, p, 0) for p in end])
        todo = {p for p, e in end.items() if e > 0}
        t_end = time.monotonic() + timeout
        while todo:
            assert time.monotonic() < t_end, (f"consumer with client.rack={rack} did not read "
                                              f"partitions {sorted(todo)} to {end} in {timeout:.0f}s")
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                assert not msg.error().fatal(), msg.error()
                log.warning("consumer error (continuing): %s", msg.error())
                continue
            got[(msg.partition(), msg.offset())] = msg.value()
            if msg.offset() >= end[msg.partition()] - 1:
                todo.discard(msg.partition())
        # statistics of a moment after the last record
        n = len(stats)
        wait_until(lambda: c.poll(0.2) is None and len(stats) >= n + 2, timeout=30,
                   what="two more statistics callbacks")
    finally:
        c.close()
    return got, stats[-1]


@pytest.mark.timeout(deadline(300))
def test_consumer_reads_from_the_replica_in_its_rack(cluster_factory, request):
    c = cluster_factory()
    topic = unique_topic(request.node.name)
    [near] = [b.node_id for b in c.brokers if b.rack == RACK_B]
    far = [i for i in c.ids if i != near]
    # leaders (first replica) are the two brokers outside zone-b; the zone-b
    # broker follows every partition
    assignment = [[far[0], near, far[1]], [far[1], near, far[0]],
                  [far[0], far[1], near], [far[1], far[0], near]]
    partitions = len(assignment)

    log.info("phase: create %s with replicas %s (zone-b is broker %d, which leads nothing)",
             topic, assignment, near)
    c.create_topic(topic, config=MIN_ISR, assignment=assignment)
    leaders = c.leaders(topic)
    assert near not in leaders.values(), f"broker {near} leads a partition: {leaders}"

    n = CLOSEST_PAYLOAD_BYTES // CLOSEST_VALUE_BYTES
    log.info("phase: produce %d MiB (acks=all, uncompressed) over %d partitions",
             CLOSEST_PAYLOAD_BYTES >> 20, partitions)
    values = [b"%08d-" % i + os.urandom(CLOSEST_VALUE_BYTES - 9) for i in range(n)]
    reports = produce_confluent(
        confluent_producer(c.bootstrap, **{"compression.type": "none", "linger.ms": 20}),
        topic, [{"value": v, "partition": i % partitions} for i, v in enumerate(values)],
        timeout=deadline(120))
    assert all(d.error is None for d in reports), [d.error for d in reports if d.error][:5]
    c.wait_isr(topic, 3, partitions=partitions, timeout=60)
    end = {p: watermarks(c.bootstrap, topic, p)[1] for p in range(partitions)}
    assert sum(end.values()) == n, f"high watermarks {end} for {n} records"

    before = {} if REFERENCE else {b.node_id: metric_sum(b, FETCH_BYTES_METRIC) for b in c.brokers}
    if not REFERENCE:
        missing = [i for i, v in before.items() if v is None]
        assert not missing, f"brokers {missing} do not export {FETCH_BYTES_METRIC}"

    log.info("phase: a consumer with client.rack=%s reads everything", RACK_B)
    got, stats = consume_with_stats(c.bootstrap, topic, end, RACK_B, timeout=deadline(120))
    want = {(d.partition, d.offset): d.value for d in reports}
    assert got == want, (f"read {len(got)} records, {len(want)} acknowledged; "
                         f"{sum(1 for k in want if got.get(k) != want[k])} differ or are missing")

    log.info("phase: the client fetched every partition from broker %d, and received >= 90%% of "
             "its bytes from it (librdkafka statistics)", near)
    toppars = stats["topics"][topic]["partitions"]
    fetched_from = {int(p): tp["broker"] for p, tp in toppars.items() if int(p) >= 0}
    log.info("fetching from, per partition: %s; leaders %s", fetched_from, leaders)
    assert fetched_from == {p: near for p in range(partitions)}, (
        f"the consumer fetches from {fetched_from} (partition -> broker), not from broker {near} "
        f"in its rack {RACK_B}")
    rx = {b["nodeid"]: b["rxbytes"] for b in stats["brokers"].values() if b["nodeid"] >= 0}
    log.info("bytes the client received per broker: %s", rx)
    assert rx.get(near, 0) >= 0.9 * sum(rx.values()), (
        f"the client received {rx.get(near, 0)} of {sum(rx.values())} bytes from broker {near}: {rx}")

    if REFERENCE:
        log.info("phase: (reference: no %s; the broker-side byte count is not checked)",
                 FETCH_BYTES_METRIC)
        return
    log.info("phase: %s: broker %d served >= 90%% of the consumer bytes", FETCH_BYTES_METRIC, near)
    after = {b.node_id: metric_sum(b, FETCH_BYTES_METRIC) for b in c.brokers}
    delta = {i: (after[i] or 0) - (before[i] or 0) for i in after}
    total = sum(delta.values())
    log.info("%s deltas per broker: %s (payload %d bytes)", FETCH_BYTES_METRIC, delta,
             CLOSEST_PAYLOAD_BYTES)
    assert total >= 0.9 * CLOSEST_PAYLOAD_BYTES, (
        f"brokers counted {total} consumer bytes in all for a {CLOSEST_PAYLOAD_BYTES}-byte "
        f"payload read once: {delta}")
    assert delta[near] >= 0.9 * total, (
        f"broker {near} ({RACK_B}) served {delta[near]} of {total} consumer bytes: {delta}")


# --------------------------------------------------------------------------
# d. controlled shutdown

# So long that a broker that just vanished would still lead its partitions
# for half a minute: leadership that has moved when the broker exits was
# moved by its controlled shutdown.
SESSION_TIMEOUT_D_MS = 30_000
# How long the other brokers' Metadata may take to show the moved leadership
# after the exit: well below the session timeout.
MOVED_GRACE_S = 10
# Records must not wait this long for a leader during a controlled shutdown
# (it is below the session timeout, so waiting for a fencing would fail them).
MESSAGE_TIMEOUT_D_MS = 25_000


@pytest.mark.timeout(deadline(300))
def test_controlled_shutdown_moves_leadership_first(cluster_factory, request):
    c = cluster_factory(settings={"broker.session.timeout.ms": SESSION_TIMEOUT_D_MS})
    topic = unique_topic(request.node.name)

    log.info("phase: create %s: 6 partitions, replication factor 3, min.insync.replicas 2", topic)
    c.create_topic(topic, 6, 3, config=MIN_ISR)

    log.info("phase: an idempotent acks=all producer (message.timeout.ms %d) runs throughout",
             MESSAGE_TIMEOUT_D_MS)
    prod = StreamProducer(c.bootstrap, topic, prefix="d", name="producer",
                          conf={"message.timeout.ms": MESSAGE_TIMEOUT_D_MS}).start()
    try:
        prod.wait_acks(1500, timeout=60)
        victim, led = c.busiest_leader(topic)
        assert led, "no broker leads a partition"

        log.info("phase: SIGTERM broker %d, the leader of partitions %s; it exits 0", victim, led)
        t0 = time.monotonic()
        code = c.stop(victim)
        exited = time.monotonic()
        log.info("broker %d exited with code %s after %.1fs", victim, code, exited - t0)
        assert code == 0, f"broker {victim} exited with code {code} on SIGTERM"

        log.info("phase: leadership had moved: the others' Metadata shows no partition led by "
                 "broker %d and none offline, within %ds of its exit (session timeout %ds)",
                 victim, MOVED_GRACE_S, SESSION_TIMEOUT_D_MS // 1000)
        c.wait_leaders_off(topic, victim, timeout=MOVED_GRACE_S, scale=False,
                               what=f"no partition led by broker {victim} and none offline "
                                    f"after its controlled shutdown")
        log.info("moved %.1fs after the exit: %s", time.monotonic() - exited,
                 c.metadata(topics=[topic]).describe(topic))

        log.info("phase: writes to its former partitions go on")
        prod.wait_acks(500, partitions=led, timeout=60)

        log.info("phase: restart broker %d; the ISR is 3 again", victim)
        c.start_broker(victim)
        c.wait_isr(topic, 3, partitions=6, timeout=120)
        prod.wait_acks(500, timeout=60)
    finally:
        history = prod.stop()

    log.info("phase: no delivery failed")
    assert not history.failed, (f"{len(history.failed)} deliveries failed around the controlled "
                                f"shutdown, e.g. {history.failed[:5]}")
    log.info("phase: every acknowledged record is in the log once, at its offset")
    records, end = read_all(c, topic, 6)
    assert_history(history, records, end, cluster=c, topic=topic, exactly_once=True, ordered=True)


# --------------------------------------------------------------------------
# g. rolling restart with automatic preferred-leader rebalancing

REBALANCE = {"auto.leader.rebalance.enable": "true", "leader.imbalance.check.interval.seconds": 2}
PARTITIONS_G = 6


def preferred_leaders(c, topic: str, timeout: float = 60.0) -> None:
    """Until every live broker's Metadata shows each partition led by its
    preferred (first) replica, with a full ISR."""
    last: dict[int, str] = {}

    def ok() -> bool:
        for i in c.live_ids():
            md = c.metadata(via=i, topics=[topic], timeout=5)
            last[i] = md.describe(topic)
            ps = md.partitions(topic)
            if not ps or any(m.leader != m.replicas[0] or len(m.isr) != len(m.replicas)
                             for m in ps.values()):
                return False
        return True

    try:
        wait_until(ok, timeout=deadline(timeout), interval=0.25, ignore=(OSError, EOFError),
                   what=f"every partition of {topic} led by its preferred replica")
    except WaitTimeout as exc:
        raise WaitTimeout(f"{exc}; last Metadata: {last}") from None


@pytest.mark.timeout(deadline(360))
def test_rolling_restart_under_load_returns_leadership_to_preferred_replicas(cluster_factory,
                                                                            request):
    c = cluster_factory(settings=REBALANCE)
    topic = unique_topic(request.node.name)

    log.info("phase: create %s: %d partitions, replication factor 3, min.insync.replicas 2; "
             "automatic leader rebalancing every 2 s", topic, PARTITIONS_G)
    c.create_topic(topic, PARTITIONS_G, 3, config=MIN_ISR)
    preferred_leaders(c, topic)

    log.info("phase: an idempotent acks=all producer runs throughout")
    prod = StreamProducer(c.bootstrap, topic, prefix="g", name="producer").start()
    try:
        prod.wait_acks(1000, timeout=60)
        for node in c.ids:
            led = c.metadata(topics=[topic]).led_by(topic, node)
            log.info("phase: rolling restart: SIGTERM broker %d (leader of %s); it exits 0 and "
                     "writes to its partitions go on", node, led)
            code = c.stop(node)
            assert code == 0, f"broker {node} exited with code {code} on SIGTERM"
            c.wait_leaders_off(topic, node, timeout=30)
            prod.wait_acks(300, partitions=led or None, timeout=60)

            log.info("phase: restart broker %d; it catches up, and leadership of its preferred "
                     "partitions comes back to it", node)
            c.start_broker(node)
            preferred_leaders(c, topic, timeout=90)
            prod.wait_acks(300, timeout=60)
    finally:
        history = prod.stop()

    log.info("phase: no delivery failed")
    assert not history.failed, (f"{len(history.failed)} deliveries failed during the rolling "
                                f"restart, e.g. {history.failed[:5]}")
    log.info("phase: every acknowledged record is in the log once, at its offset, in order")
    records, end = read_all(c, topic, PARTITIONS_G)
    assert_history(history, records, end, cluster=c, topic=topic, exactly_once=True, ordered=True)


# --------------------------------------------------------------------------
# g2. preferred leader election on demand (ElectLeaders)

LEADER_ELECTION_TOOL = "org.apache.kafka.tools.LeaderElectionCommand"


@pytest.mark.timeout(deadline(300))
def test_leader_election_moves_leadership_back_to_the_preferred_replicas(cluster_factory,
                                                                         request, tmp_path):
    """Without automatic rebalancing a restarted broker leads nothing;
    `kafka-leader-election.sh --election-type PREFERRED` (ElectLeaders) gives
    each partition back to its preferred replica. A partition led by it
    already, or asked for an UNCLEAN election while it has a leader, answers
    ELECTION_NOT_NEEDED (confluent-kafka's elect_leaders)."""
    why = kafka_tools_missing()
    if why:
        pytest.skip(f"uses Kafka's kafka-leader-election tool: {why}")
    from confluent_kafka import ElectionType, KafkaError
    from confluent_kafka.admin import AdminClient

    c = cluster_factory()
    topic = unique_topic(request.node.name)
    c.create_topic(topic, 3, 3)
    preferred_leaders(c, topic)
    victim, led = c.busiest_leader(topic)
    log.info("phase: restart broker %d, the leader of %s; leadership moves off it and stays off",
             victim, led)
    assert c.stop(victim) == 0
    c.wait_leaders_off(topic, victim, timeout=30)
    c.start_broker(victim)
    c.wait_isr(topic, 3, partitions=3, timeout=120)
    moved = c.metadata(topics=[topic]).partitions(topic)
    assert all(moved[p].leader != victim for p in led), c.describe(topic)

    log.info("phase: kafka-leader-election --election-type PREFERRED --all-topic-partitions")
    out = kafka_tool(tmp_path, LEADER_ELECTION_TOOL, "--bootstrap-server", c.bootstrap,
                     "--election-type", "PREFERRED", "--all-topic-partitions").stdout
    log.info("kafka-leader-election:\n%s", out)
    assert "Successfully completed leader election (PREFERRED) for partitions" in out, out
    for p in led:
        assert f"{topic}-{p}" in out, out
    preferred_leaders(c, topic)

    log.info("phase: nothing left to elect: ELECTION_NOT_NEEDED for PREFERRED, and for UNCLEAN "
             "on a partition with a leader")
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    for election in (ElectionType.PREFERRED, ElectionType.UNCLEAN):
        results = admin.elect_leaders(election, [TopicPartition(topic, 0)]).result(timeout=60)
        [(tp, error)] = list(results.items())
        assert (tp.topic, tp.partition) == (topic, 0)
        assert error is not None, election
        assert error.code() == KafkaError.ELECTION_NOT_NEEDED, (election, error)
    out = kafka_tool(tmp_path, LEADER_ELECTION_TOOL, "--bootstrap-server", c.bootstrap,
                     "--election-type", "PREFERRED", "--topic", topic, "--partition", "1").stdout
    assert f"Valid replica already elected for partitions {topic}-1" in out, out


# --------------------------------------------------------------------------
# f. partition reassignment with Kafka's own tool

RACKS_F = ["zone-a", "zone-b", "zone-c", "zone-a"]
RECORDS_F = 3000


@pytest.mark.timeout(deadline(360))
def test_reassignment_moves_a_partition_with_its_data(cluster_factory, request, tmp_path):
    why = kafka_tools_missing()
    if why:
        pytest.skip(f"reassignment uses Kafka's kafka-reassign-partitions tool: {why}")
    c = cluster_factory(n=4, racks=RACKS_F)
    topic = unique_topic(request.node.name)
    before, target = [1, 2, 3], [4, 2, 3]  # broker 4 (zone-a) takes broker 1's (zone-a) place
    other = [2, 3, 4]

    log.info("phase: create %s: partition 0 on %s, partition 1 on %s", topic, before, other)
    c.create_topic(topic, config=MIN_ISR, assignment=[before, other])

    log.info("phase: write %d records to partition 0 and 100 to partition 1", RECORDS_F)
    producer = confluent_producer(c.bootstrap, **{"linger.ms": 20})
    reports = produce_confluent(producer, topic,
                                [{"value": b"f0-%06d" % i, "partition": 0} for i in range(RECORDS_F)]
                                + [{"value": b"f1-%06d" % i, "partition": 1} for i in range(100)],
                                timeout=deadline(120))
    assert all(d.error is None for d in reports), [d.error for d in reports if d.error][:5]
    acked0 = sorted((d.offset, d.value) for d in reports if d.partition == 0)
    acked1 = sorted((d.offset, d.value) for d in reports if d.partition == 1)

    log.info("phase: kafka-reassign-partitions --execute: partition 0 from %s to %s", before, target)
    plan = tmp_path / "reassign.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": 0, "replicas": target, "log_dirs": ["any"] * len(target)}]}))
    out = kafka_tool(tmp_path, REASSIGN_TOOL, "--bootstrap-server", c.bootstrap,
                     "--reassignment-json-file", str(plan), "--execute")
    log.info("tool: %s", out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "")

    log.info("phase: wait for the move: every broker's Metadata shows replicas %s with ISR %s and "
             "a leader among them; ListPartitionReassignments lists nothing", target, sorted(target))
    wait_for_replicas(c, topic, target)
    ongoing = list_reassignments(c.bootstrap, topic)
    assert not ongoing, f"ListPartitionReassignments still lists {ongoing}"
    verify = kafka_tool(tmp_path, REASSIGN_TOOL, "--bootstrap-server", c.bootstrap,
                        "--reassignment-json-file", str(plan), "--verify", check=False)
    log.info("tool --verify: %s", " / ".join(verify.stdout.strip().splitlines()))
    assert f"Reassignment of partition {topic}-0 is completed" in verify.stdout, (
        f"kafka-reassign-partitions --verify exited {verify.returncode}:\n{verify.stdout}\n{verify.stderr}")
    # (its exit code is checked last: after the move it clears replication
    # throttles through IncrementalAlterConfigs of broker and topic configs)

    log.info("phase: each replica of %s holds partition 0's %d records (read from it alone)",
             target, RECORDS_F)
    for node in target:
        got = read_replica(c.broker(node), topic, 0, RECORDS_F, timeout=60)
        assert got == acked0, (f"broker {node}: {len(got)} records, {len(acked0)} acknowledged; "
                               f"first difference at "
                               f"{next((k for k, (g, a) in enumerate(zip(got, acked0)) if g != a), min(len(got), len(acked0)))}")

    log.info("phase: broker 1, no longer a replica, does not serve partition 0")
    err = wait_refuses_fetch(c, 1, topic)
    log.info("broker 1 answers a Fetch of partition 0 with %s", ERROR_NAMES.get(err))

    log.info("phase: partition 1 was not touched")
    p1 = c.metadata(topics=[topic]).partitions(topic)[1]
    assert p1.replicas == other and sorted(p1.isr) == sorted(other), p1

    log.info("phase: writes to partition 0 continue after its last offset")
    [more] = produce_confluent(confluent_producer(c.bootstrap), topic,
                               [{"value": b"f0-after", "partition": 0}], timeout=deadline(60))
    assert (more.error, more.offset) == (None, RECORDS_F), more
    records, end = read_all(c, topic, 2)
    assert [(r.offset, r.value) for r in records if r.partition == 0] == acked0 + [(RECORDS_F, b"f0-after")]
    assert [(r.offset, r.value) for r in records if r.partition == 1] == acked1

    log.info("phase: kafka-reassign-partitions --verify exited 0 (it also cleared the "
             "replication throttles)")
    assert verify.returncode == 0, (
        f"kafka-reassign-partitions --verify reported the move complete but exited "
        f"{verify.returncode}:\n{verify.stdout}\n{verify.stderr}")


RECORDS_G = 2000


@pytest.mark.timeout(deadline(420))
def test_reassignment_raises_and_lowers_the_replication_factor(cluster_factory, request, tmp_path):
    """Kafka's documented way to change a topic's replication factor:
    kafka-reassign-partitions with a longer (or shorter) replica list."""
    why = kafka_tools_missing()
    if why:
        pytest.skip(f"reassignment uses Kafka's kafka-reassign-partitions tool: {why}")
    c = cluster_factory(n=3, racks=["zone-a", "zone-b", "zone-c"])
    topic = unique_topic(request.node.name)
    plan = tmp_path / "reassign.json"

    def reassign(replicas: list[int], *extra: str, libs=None, check: bool = True):
        plan.write_text(json.dumps({"version": 1, "partitions": [
            {"topic": topic, "partition": 0, "replicas": replicas,
             "log_dirs": ["any"] * len(replicas)}]}))
        return kafka_tool(tmp_path, REASSIGN_TOOL, "--bootstrap-server", c.bootstrap,
                          "--reassignment-json-file", str(plan), "--execute", *extra,
                          libs=libs, check=check)

    def settled(target: list[int]) -> None:
        wait_for_replicas(c, topic, target)
        assert not list_reassignments(c.bootstrap, topic)
        verify = kafka_tool(tmp_path, REASSIGN_TOOL, "--bootstrap-server", c.bootstrap,
                            "--reassignment-json-file", str(plan), "--verify", check=False)
        assert f"Reassignment of partition {topic}-0 is completed" in verify.stdout, (
            f"--verify exited {verify.returncode}:\n{verify.stdout}\n{verify.stderr}")

    log.info("phase: create %s with one replica, on broker 1, and write %d records", topic, RECORDS_G)
    c.create_topic(topic, assignment=[[1]])
    reports = produce_confluent(confluent_producer(c.bootstrap), topic,
                                [{"value": b"g-%06d" % i, "partition": 0} for i in range(RECORDS_G)],
                                timeout=deadline(120))
    assert all(d.error is None for d in reports), [d.error for d in reports if d.error][:5]
    acked = sorted((d.offset, d.value) for d in reports)

    if not REFERENCE:  # Kafka 3.9 has no AlterPartitionReassignments v1 (KIP-860)
        log.info("phase: Kafka 4's tool with --disallow-replication-factor-change is refused")
        from cluster import kafka4_libs
        if list(kafka4_libs().glob("kafka-tools-*.jar")):
            refused = reassign([1, 2, 3], "--disallow-replication-factor-change",
                               libs=kafka4_libs(), check=False)
            out = refused.stdout + refused.stderr
            # (the tool prints the broker's message; the code, INVALID_REPLICATION_FACTOR,
            # is checked by the handler's unit test)
            assert "Error reassigning partition(s)" in out and "allowReplicationFactorChange" in out, out
            assert c.metadata(topics=[topic]).partitions(topic)[0].replicas == [1]

    log.info("phase: kafka-reassign-partitions --execute: 1 replica -> [1, 2, 3]")
    reassign([1, 2, 3])
    settled([1, 2, 3])
    for node in (1, 2, 3):
        got = read_replica(c.broker(node), topic, 0, RECORDS_G, timeout=60)
        assert got == acked, f"broker {node}: {len(got)} of {len(acked)} records"

    log.info("phase: acks=all now waits for three replicas; a write succeeds")
    [more] = produce_confluent(confluent_producer(c.bootstrap), topic,
                               [{"value": b"g-after", "partition": 0}], timeout=deadline(60))
    assert (more.error, more.offset) == (None, RECORDS_G), more
    acked.append((RECORDS_G, b"g-after"))

    log.info("phase: kafka-reassign-partitions --execute: [1, 2, 3] -> [3], dropping the leader")
    reassign([3])
    settled([3])
    got = read_replica(c.broker(3), topic, 0, RECORDS_G + 1, timeout=60)
    assert got == acked, f"broker 3: {len(got)} of {len(acked)} records"
    wait_refuses_fetch(c, 1, topic)
    records, _ = read_all(c, topic, 1)
    assert [(r.offset, r.value) for r in records] == acked


RECORDS_T = 1000  # of 1,000 bytes, in batches of at most 8 KiB
# Fetches of about 10 kB: under a 1 KiB/s throttle each counts for about ten
# seconds, so the move would take a quarter of an hour until the throttle is
# raised (whatever the machine's speed), and a few seconds after.
REPLICA_FETCH_BYTES = 10_000


def describe_configs(bootstrap: str, kind: str, name: str) -> dict:
    """name -> (value, source name) of a topic's or broker's configs, through
    confluent-kafka's AdminClient (DescribeConfigs)."""
    from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, ResourceType

    a = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ResourceType[kind], name)
    entries = a.describe_configs([res], request_timeout=30)[res].result(60)
    return {k: (v.value, ConfigSource(v.source).name) for k, v in entries.items()}


@pytest.mark.timeout(deadline(420))
def test_reassignment_throttle_holds_back_the_moving_replica(cluster_factory, prometheus_factory,
                                                             request, tmp_path):
    """kafka-reassign-partitions --throttle (KIP-73): the tool's rates and
    throttled replicas are stored as dynamic configs, a new replica out of the
    ISR is held back while the rate is exceeded, raising the throttle with
    --additional lets the move finish, and --verify removes the throttles."""
    why = kafka_tools_missing()
    if why:
        pytest.skip(f"reassignment uses Kafka's kafka-reassign-partitions tool: {why}")
    c = cluster_factory(n=3, racks=["zone-a", "zone-b", "zone-c"],
                        settings={"replica.fetch.max.bytes": REPLICA_FETCH_BYTES})
    topic = unique_topic(request.node.name)
    plan = tmp_path / "reassign.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": 0, "replicas": [1, 2], "log_dirs": ["any", "any"]}]}))

    def reassign(*extra: str):
        return kafka_tool(tmp_path, REASSIGN_TOOL, "--bootstrap-server", c.bootstrap,
                          "--reassignment-json-file", str(plan), "--execute", *extra)

    log.info("phase: create %s on broker 1 alone and write %d records of 1,000 bytes", topic, RECORDS_T)
    c.create_topic(topic, assignment=[[1]])
    reports = produce_confluent(confluent_producer(c.bootstrap, **{"linger.ms": 20,
                                                                  "batch.size": 8192}), topic,
                                [{"value": b"%06d" % i + b"t" * 994, "partition": 0}
                                 for i in range(RECORDS_T)], timeout=deadline(120))
    assert all(d.error is None for d in reports), [d.error for d in reports if d.error][:5]
    acked = sorted((d.offset, d.value) for d in reports)
    total = sum(len(v) for _, v in acked)

    log.info("phase: kafka-reassign-partitions --execute --throttle 1024: [1] -> [1, 2]")
    out = reassign("--throttle", "1024")
    assert "The inter-broker throttle limit was set to 1024" in out.stdout, out.stdout

    def wait_config(kind: str, name: str, key: str, want) -> None:
        """Wait until DescribeConfigs of `name` shows `key` as `want`
        ((value, source), or None for not listed or empty): each broker
        applies the metadata in its own time."""
        seen: list = []

        def shown() -> bool:
            got = describe_configs(c.bootstrap, kind, name).get(key)
            if want is None and got is not None and got[0] in ("", None):
                got = None
            seen.append(got)
            return got == want

        try:
            wait_until(shown, timeout=deadline(60), interval=0.5,
                       what=f"{key} of {kind} {name} as {want}")
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; last seen: {seen[-1:]}") from None

    log.info("phase: the tool's throttles are dynamic configs")
    for node in (1, 2):
        for key in ("leader.replication.throttled.rate", "follower.replication.throttled.rate"):
            wait_config("BROKER", str(node), key, ("1024", "DYNAMIC_BROKER_CONFIG"))
    wait_config("TOPIC", topic, "leader.replication.throttled.replicas", ("0:1", "DYNAMIC_TOPIC_CONFIG"))
    wait_config("TOPIC", topic, "follower.replication.throttled.replicas", ("0:2", "DYNAMIC_TOPIC_CONFIG"))

    if not REFERENCE:
        log.info("phase: broker 2 holds the partition back from its fetches (Runnel's metric); "
                 "the move is still under way")
        held = "runnel_replication_throttled_partition_fetches_total"
        wait_until(lambda: (metric_sum(c.broker(2), held) or 0) > 0, timeout=deadline(120),
                   interval=0.2, what=f"{held} on broker 2")
        fetched = metric_sum(c.broker(2), "runnel_replication_throttled_bytes_total") or 0
        assert 0 < fetched < total, f"broker 2 counted {fetched} throttled bytes of {total}"
        assert list_reassignments(c.bootstrap, topic), "the move finished under a 1 KiB/s throttle"
        assert (metric_sum(c.broker(1), "runnel_replication_throttled_bytes_total") or 0) > 0

        from prometheus import dashboard_queries, prometheus_missing
        if not prometheus_missing():
            log.info("phase: the Grafana dashboard's throttle panel shows broker 2's follower "
                     "side through a real Prometheus")
            prom = prometheus_factory({"runnel": [c.broker(i).metrics_addr for i in (1, 2, 3)]})
            [expr] = dashboard_queries()["Throttled replication by broker"]

            def follower_rate() -> float:
                return sum(float(r["value"][1]) for r in prom.query(expr)
                           if r["metric"].get("side") == "follower"
                           and r["metric"].get("instance") == c.broker(2).metrics_addr)

            wait_until(lambda: follower_rate() > 0, timeout=deadline(90), interval=1,
                       what="a follower throttled-bytes rate for broker 2 on the dashboard")
            assert list_reassignments(c.bootstrap, topic), "the move finished under 1 KiB/s"

    log.info("phase: --execute --additional --throttle 100000000 raises the throttle; the move finishes")
    reassign("--additional", "--throttle", "100000000")
    wait_config("BROKER", "2", "follower.replication.throttled.rate",
                ("100000000", "DYNAMIC_BROKER_CONFIG"))
    wait_for_replicas(c, topic, [1, 2])
    got = read_replica(c.broker(2), topic, 0, RECORDS_T, timeout=60)
    assert got == acked, f"broker 2: {len(got)} of {len(acked)} records"

    log.info("phase: --verify reports the move complete and removes the throttles")
    verify = kafka_tool(tmp_path, REASSIGN_TOOL, "--bootstrap-server", c.bootstrap,
                        "--reassignment-json-file", str(plan), "--verify")
    assert f"Reassignment of partition {topic}-0 is completed" in verify.stdout, verify.stdout
    assert "Clearing broker-level throttles" in verify.stdout, verify.stdout
    for node in (1, 2, 3):
        for key in ("leader.replication.throttled.rate", "follower.replication.throttled.rate"):
            wait_config("BROKER", str(node), key, None)
    for key in ("leader.replication.throttled.replicas", "follower.replication.throttled.replicas"):
        wait_config("TOPIC", topic, key, None)


def wait_for_replicas(c, topic: str, target: list[int]) -> None:
    """Wait until every live broker's Metadata shows partition 0 of `topic`
    on `target`, all of it in the ISR, led by one of them."""
    last: dict[int, str] = {}

    def done() -> bool:
        for i in c.live_ids():
            md = c.metadata(via=i, topics=[topic], timeout=5)
            last[i] = md.describe(topic)
            p0 = md.partitions(topic).get(0)
            if p0 is None or p0.replicas != target or sorted(p0.isr) != sorted(target) \
                    or p0.leader not in target:
                return False
        return True

    try:
        wait_until(done, timeout=deadline(120), interval=0.5, ignore=(OSError, EOFError),
                   what=f"partition 0 of {topic} on {target}")
    except WaitTimeout as exc:
        raise WaitTimeout(f"{exc}; last Metadata: {last}") from None


def wait_refuses_fetch(c, node: int, topic: str) -> int:
    """Wait until broker `node`, no longer a replica, refuses a Fetch of
    partition 0 of `topic`; returns its error code."""
    seen = []

    def gone() -> bool:
        err, _, recs = fetch_once(c.broker(node), topic, 0, 0)
        seen.append((err, len(recs)))
        return err in (3, 6)  # UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER

    wait_until(gone, timeout=deadline(60), interval=0.5,
               what=f"broker {node} to refuse Fetch of partition 0 (error, records) seen: {seen[-3:]}")
    return seen[-1][0]


def list_reassignments(bootstrap: str, topic: str) -> dict:
    """Ongoing reassignments of `topic` through ListPartitionReassignments
    (kafka-python's admin client): TopicPartition -> replicas, adding, removing."""
    from kafka import KafkaAdminClient

    a = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    try:
        res = a.list_partition_reassignments({topic: [0, 1]})
    finally:
        a.close()
    return {tp: r for tp, r in res.items() if tp.topic == topic}
