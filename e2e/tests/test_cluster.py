"""Cluster basics, before the fault tests of test_replication*.py: every
broker's Metadata lists all brokers with their racks, replica placement
spreads each partition over distinct racks and spreads leadership, and
committed offsets (the replicated __consumer_offsets) survive the loss of
the group coordinator.

Runs against Apache Kafka too (RUNNEL_BROKER_BIN=e2e/reference/kafka-as-runnel).
"""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from cluster import deadline
from group_helpers import commit_standalone, committed, describe_group, unique_group
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
