"""Cluster basics, before the fault tests of test_replication*.py: every
broker's Metadata lists all brokers with their racks, replica placement
spreads each partition over distinct racks and spreads leadership, and
committed offsets and a group's membership (the replicated
__consumer_offsets) survive the loss of the group coordinator.

Runs against Apache Kafka too (RUNNEL_BROKER_BIN=e2e/reference/kafka-as-runnel).
"""

from __future__ import annotations

import logging
import time
from collections import Counter

import pytest

from cluster import REFERENCE, deadline
from group_helpers import (Member, close_all, commit_standalone, committed, describe_group,
                           poll_members, unique_group)
from harness import admin, confluent_producer, produce_confluent, unique_topic, wait_until

log = logging.getLogger("e2e")

RACKS4 = ["zone-a", "zone-b", "zone-c", "zone-a"]


@pytest.mark.timeout(deadline(240))
def test_metadata_lists_racks_and_placement_spreads_replicas(cluster_factory, request):
    c = cluster_factory(n=4, racks=RACKS4)
    topic = unique_topic(request.node.name)

    log.info("phase: every broker's Metadata lists the 4 brokers with their addresses and racks")
    want = {b.node_id: (b.host, b.port, b.rack) for b in c.brokers}
    for i in c.ids:
        md = c.metadata(via=i, topics=[])
        got = {j: (b.host, b.port, b.rack) for j, b in md.brokers.items()}
        assert got == want, f"broker {i} lists {got}, want {want}"
        assert md.controller in c.ids, f"broker {i}: controller id {md.controller}"

    log.info("phase: DescribeCluster (AdminClient) gives the same brokers and racks")
    a = admin(c.bootstrap)  # alive until the future completes
    desc = a.describe_cluster(request_timeout=30).result(30)
    got = {n.id: (n.host, n.port, n.rack) for n in desc.nodes}
    assert got == want, f"DescribeCluster: {got}, want {want}"

    log.info("phase: create %s: 8 partitions, replication factor 3, placement left to the cluster",
             topic)
    c.create_topic(topic, 8, 3)
    parts = c.metadata(topics=[topic]).partitions(topic)
    racks = {b.node_id: b.rack for b in c.brokers}

    log.info("phase: each partition's 3 replicas are on 3 distinct racks, and the leader is the "
             "first replica")
    for p, m in sorted(parts.items()):
        assert len(set(m.replicas)) == 3, f"partition {p}: replicas {m.replicas}"
        assert len({racks[r] for r in m.replicas}) == 3, (
            f"partition {p}: replicas {m.replicas} on racks {[racks[r] for r in m.replicas]}")
        assert m.leader == m.replicas[0], f"partition {p}: leader {m.leader}, replicas {m.replicas}"

    log.info("phase: every broker holds replicas and leads at least one partition")
    held = Counter(r for m in parts.values() for r in m.replicas)
    led = Counter(m.leader for m in parts.values())
    log.info("replicas per broker %s, leaders per broker %s", dict(held), dict(led))
    assert set(held) == set(c.ids), f"replicas per broker: {dict(held)}"
    assert set(led) == set(c.ids), f"8 partitions led by brokers {dict(led)} only"


@pytest.mark.timeout(deadline(300))
def test_committed_offsets_survive_the_coordinator_kill9(cluster_factory, request):
    c = cluster_factory()
    topic = unique_topic(request.node.name)
    group = unique_group("e2e-cluster")

    log.info("phase: create %s (2 partitions, replication factor 3) and write to it", topic)
    c.create_topic(topic, 2, 3, config={"min.insync.replicas": 2})
    reports = produce_confluent(confluent_producer(c.bootstrap), topic,
                                [{"value": b"v%d" % i, "partition": i % 2} for i in range(20)])
    assert all(d.error is None for d in reports), reports

    log.info("phase: commit offsets {0: 3, 1: 7} for group %s", group)
    commit_standalone(c.bootstrap, group, topic, {0: 3, 1: 7}, timeout=deadline(60))
    assert committed(c.bootstrap, group, topic, [0, 1]) == {0: 3, 1: 7}

    log.info("phase: __consumer_offsets is replicated three ways with a full ISR")
    c.wait_isr("__consumer_offsets", 3, timeout=60)
    coordinator = describe_group(c.bootstrap, group).coordinator.id
    log.info("group %s is coordinated by broker %d", group, coordinator)

    log.info("phase: kill -9 the coordinator, broker %d; another broker takes the group over "
             "with its committed offsets", coordinator)
    c.kill9(coordinator)
    others = c.bootstrap_of(i for i in c.ids if i != coordinator)
    seen = []

    def offsets_back():
        got = committed(others, group, topic, [0, 1], timeout=10)
        seen.append(got)
        return got == {0: 3, 1: 7}

    wait_until(offsets_back, timeout=deadline(90), interval=0.5, ignore=(Exception,),
               what=f"group {group}'s committed offsets from the other brokers "
                    f"(last seen {seen[-1:]})")
    new = describe_group(others, group).coordinator.id
    log.info("group %s is now coordinated by broker %d", group, new)
    assert new != coordinator, f"broker {coordinator} is dead but still named the coordinator"

    log.info("phase: a new commit goes to the new coordinator; after broker %d is back, the group "
             "has the new offsets", coordinator)
    commit_standalone(others, group, topic, {0: 5, 1: 9}, timeout=deadline(60))
    c.start_broker(coordinator)
    c.wait_isr("__consumer_offsets", 3, timeout=120)
    assert committed(c.bootstrap, group, topic, [0, 1], timeout=30) == {0: 5, 1: 9}


@pytest.mark.timeout(deadline(300))
def test_a_group_carries_on_without_a_rebalance_when_its_coordinator_dies(cluster_factory, request):
    c = cluster_factory()
    topic = unique_topic(request.node.name)
    group = unique_group("e2e-carry-on")

    log.info("phase: create %s (2 partitions, replication factor 3); two librdkafka members of "
             "group %s split it", topic, group)
    c.create_topic(topic, 2, 3, config={"min.insync.replicas": 2})
    members = [Member(c.bootstrap, group, [topic], f"carry-{i}") for i in range(2)]
    try:
        poll_members(members, lambda: all(len(m.assigned()) == 1 for m in members),
                     "each member to own one partition", timeout=deadline(60))
        # The members' FindCoordinator created __consumer_offsets.
        c.wait_isr("__consumer_offsets", 3, timeout=60)

        def stable_with_both():
            d = describe_group(c.bootstrap, group)
            return d.state.name == "STABLE" and len(d.members) == 2 and d

        before = poll_members(members, stable_with_both, "the group to be Stable with both members",
                              timeout=deadline(60))
        ids = sorted(m.member_id for m in before.members)
        coordinator = before.coordinator.id
        seen_rebalances = [list(m.rebalances) for m in members]
        log.info("group %s: Stable, members %s, coordinated by broker %d; rebalances so far %s",
                 group, ids, coordinator, seen_rebalances)
        reports = produce_confluent(confluent_producer(c.bootstrap), topic,
                                    [{"value": b"a%d" % i, "partition": i % 2} for i in range(10)])
        assert all(d.error is None for d in reports), reports
        poll_members(members, lambda: sum(len(m.records) for m in members) == 10,
                     "the first 10 records", timeout=deadline(60))
        for m in members:
            m.commit_consumed()

        log.info("phase: kill -9 the coordinator, broker %d", coordinator)
        c.kill9(coordinator)
        others = c.bootstrap_of(i for i in c.ids if i != coordinator)
        reports = produce_confluent(confluent_producer(others), topic,
                                    [{"value": b"b%d" % i, "partition": i % 2} for i in range(10)])
        assert all(d.error is None for d in reports), reports

        log.info("phase: another broker coordinates the group; it is Stable with the same members "
                 "and generation, and they read on")

        def taken_over():
            d = describe_group(others, group, timeout=10)
            return (d.coordinator.id != coordinator and d.state.name == "STABLE"
                    and sorted(m.member_id for m in d.members) == ids and d)

        after = poll_members(members, lambda: _quietly(taken_over),
                             "a new coordinator with the group Stable", timeout=deadline(120))
        log.info("group %s is now coordinated by broker %d", group, after.coordinator.id)
        poll_members(members, lambda: sum(len(m.records) for m in members) == 20,
                     "the 10 records written after the kill", timeout=deadline(120))
        log.info("phase: commits with the members' generation are accepted by the new coordinator")
        for m in members:
            m.commit_consumed()
        # One more round of heartbeats (librdkafka's is 0.5 s here) would show a rebalance.
        poll_members(members, lambda: _quietly(lambda: describe_group(others, group, timeout=10)
                                               .state.name == "STABLE"),
                     "the group still Stable", timeout=deadline(30))
        for m, seen in zip(members, seen_rebalances):
            assert m.rebalances == seen, (
                f"member {m.name} was rebalanced after the coordinator died: {m.rebalances} "
                f"(before: {seen})")
        assert committed(others, group, topic, [0, 1]) == {0: 10, 1: 10}
    finally:
        close_all(members)


@pytest.mark.timeout(deadline(300))
def test_a_consumer_protocol_group_carries_on_when_its_coordinator_dies(cluster_factory, request):
    """KIP-848 members keep their member epochs and partitions: the new
    coordinator has the group from __consumer_offsets and fences no one."""
    from confluent_kafka import Consumer

    if REFERENCE:
        pytest.skip("the reference Kafka 3.9 runs the consumer protocol only when enabled")
    c = cluster_factory(settings={"group.consumer.heartbeat.interval.ms": 500})
    topic = unique_topic(request.node.name)
    group = unique_group("e2e-carry-on-848")
    c.create_topic(topic, 4, 3, config={"min.insync.replicas": 2})

    events: list[list[tuple[str, list[int]]]] = [[], []]
    records: list[list[bytes]] = [[], []]

    def make(i: int) -> Consumer:
        consumer = Consumer({"bootstrap.servers": c.bootstrap, "group.id": group,
                             "group.protocol": "consumer", "client.id": f"kip848-{i}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})

        def on(what):
            return lambda _c, parts: events[i].append((what, sorted(tp.partition for tp in parts)))

        consumer.subscribe([topic], on_assign=on("assign"), on_revoke=on("revoke"),
                           on_lost=on("lost"))
        return consumer

    log.info("phase: two KIP-848 members of group %s split %s's 4 partitions", group, topic)
    members = [make(0), make(1)]

    def poll_all(until, what, timeout):
        end = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < end, f"timed out waiting for {what}: {events}"
            for i, m in enumerate(members):
                msg = m.poll(0.05)
                if msg is not None and not msg.error():
                    records[i].append(msg.value())

    def owned(i):
        return {tp.partition for tp in members[i].assignment()}

    try:
        poll_all(lambda: len(owned(0)) == 2 and len(owned(1)) == 2, "two partitions each",
                 deadline(90))
        c.wait_isr("__consumer_offsets", 3, timeout=60)
        coordinator = describe_group(c.bootstrap, group).coordinator.id
        seen = [list(e) for e in events]
        split = [owned(0), owned(1)]
        log.info("group %s coordinated by broker %d; assignments %s; callbacks so far %s",
                 group, coordinator, split, seen)

        log.info("phase: kill -9 the coordinator, broker %d, and write to every partition",
                 coordinator)
        c.kill9(coordinator)
        others = c.bootstrap_of(i for i in c.ids if i != coordinator)
        reports = produce_confluent(confluent_producer(others), topic,
                                    [{"value": b"r%d" % i, "partition": i % 4} for i in range(40)])
        assert all(d.error is None for d in reports), reports

        log.info("phase: the members read every record with the partitions they had")
        poll_all(lambda: len(records[0]) + len(records[1]) == 40, "the 40 records", deadline(120))

        def taken_over():
            d = describe_group(others, group, timeout=10)
            return d.coordinator.id != coordinator and len(d.members) == 2

        poll_all(lambda: _quietly(taken_over), "another coordinator with both members",
                 deadline(60))
        for i, m in enumerate(members):
            m.commit(asynchronous=False)
        assert [owned(0), owned(1)] == split
        assert [list(e) for e in events] == seen, (
            f"rebalance callbacks after the coordinator died: {events} (before: {seen})")
        assert committed(others, group, topic, [0, 1, 2, 3]) == {p: 10 for p in range(4)}
    finally:
        for m in members:
            m.close()


def _quietly(check):
    """`check()`, or False while it raises (a coordinator not elected yet)."""
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - retried until the deadline
        log.debug("not yet: %r", exc)
        return False
