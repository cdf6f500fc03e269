"""The consumer rebalance protocol of KIP-848 (`group.protocol=consumer`):
the coordinator assigns partitions and each member reconciles through
ConsumerGroupHeartbeat. librdkafka (confluent-kafka) members share a topic,
hand partitions over when one joins, leaves or dies (session expiry), never
holding a partition twice; Kafka's Java console consumer and
kafka-consumer-groups.sh work on such groups; a classic member cannot join
one; the group is described (ConsumerGroupDescribe), listed by type and
deleted once empty."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import kafka_tool, kafka_tools_missing
from group_helpers import GROUP_SETTINGS
from harness import OP_TIMEOUT_S, confluent_producer, produce_confluent, wait_until

log = logging.getLogger("e2e")

PARTITIONS = 6

SETTINGS = {**GROUP_SETTINGS,
            # members notice a new target assignment within a second
            "group.consumer.heartbeat.interval.ms": 500,
            # a killed member is noticed in seconds, not 45
            "group.consumer.session.timeout.ms": 6000}


@pytest.fixture
def kip848_broker(broker_factory):
    return broker_factory(settings=SETTINGS)


def member(bootstrap: str, group: str, **conf) -> Consumer:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "group.protocol": "consumer", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, **conf})
    return c


def owned(c: Consumer) -> set[int]:
    return {tp.partition for tp in c.assignment()}


def poll_until(members: list[Consumer], done, what: str, timeout: float = 60.0,
               sink: dict | None = None) -> None:
    """Polls every member in turn (their rebalances happen inside poll)
    until `done()`; records go to `sink[(partition, offset)] = member index`."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: "
                                 f"{[sorted(owned(m)) for m in members]}")
        for i, m in enumerate(members):
            msg = m.poll(0.1)
            if msg is None:
                continue
            if msg.error():
                log.info("member %d: %s", i, msg.error())
                continue
            if sink is not None:
                key = (msg.partition(), msg.offset())
                assert key not in sink, f"{key} read twice (members {sink[key]} and {i})"
                sink[key] = i


def no_overlap(members: list[Consumer]) -> None:
    seen: set[int] = set()
    for m in members:
        mine = owned(m)
        assert not (mine & seen), f"partitions {sorted(mine & seen)} owned twice"
        seen |= mine


def describe(admin: AdminClient, group: str):
    return admin.describe_consumer_groups([group])[group].result(OP_TIMEOUT_S)


KILLABLE = textwrap.dedent("""
    import sys, time
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
                  "group.protocol": "consumer", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.subscribe([sys.argv[3]])
    while True:
        c.poll(0.2)
        print(sorted(tp.partition for tp in c.assignment()), flush=True)
""")


def test_members_share_partitions_and_hand_them_over(kip848_broker, topic, tmp_path):
    from confluent_kafka import ConsumerGroupType

    b = kip848_broker
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(OP_TIMEOUT_S)
    group = f"{topic}-group"

    log.info("phase: a lone member gets every partition")
    a = member(b.bootstrap, group)
    a.subscribe([topic])
    poll_until([a], lambda: len(owned(a)) == PARTITIONS, "the first member's assignment")
    d = describe(admin, group)
    assert d.type == ConsumerGroupType.CONSUMER, d.type
    assert len(d.members) == 1

    log.info("phase: a second member joins: three each, never one partition on both")
    m2 = member(b.bootstrap, group)
    m2.subscribe([topic])
    members = [a, m2]

    def split_evenly():
        no_overlap(members)
        return [len(owned(m)) for m in members] == [3, 3]

    poll_until(members, split_evenly, "three partitions each")
    wait_until(lambda: describe(admin, group).state.name == "STABLE", timeout=30,
               what="the group stable")
    d = describe(admin, group)
    assert sorted(len(m.assignment.topic_partitions) for m in d.members) == [3, 3], d.members

    log.info("phase: records go to each partition's one owner, once")
    producer = confluent_producer(b.bootstrap)
    records = [{"value": b"p%d-%d" % (p, i), "partition": p}
               for p in range(PARTITIONS) for i in range(50)]
    assert all(r.error is None for r in produce_confluent(producer, topic, records))
    read: dict = {}
    poll_until(members, lambda: len(read) == len(records), "every record read", sink=read)
    for p in range(PARTITIONS):
        readers = {i for (part, _), i in read.items() if part == p}
        assert len(readers) == 1 and p in owned(members[readers.pop()]), p
    for m in members:
        m.commit(asynchronous=False)
    committed = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)])[group].result(OP_TIMEOUT_S)
    assert {tp.partition: tp.offset for tp in committed.topic_partitions} == \
        {p: 50 for p in range(PARTITIONS)}

    log.info("phase: a member leaves: the other takes everything back")
    m2.close()
    members = [a]
    poll_until(members, lambda: len(owned(a)) == PARTITIONS, "all partitions back")

    log.info("phase: a member killed with SIGKILL is dropped after its session timeout")
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE)
    proc = subprocess.Popen([sys.executable, str(script), b.bootstrap, group, topic],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        poll_until(members, lambda: len(owned(a)) == 3, "the killable member taking three",
                   timeout=90)
        d = describe(admin, group)
        assert len(d.members) == 2
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    poll_until(members, lambda: len(owned(a)) == PARTITIONS,
               "the dead member's partitions back, after the session timeout", timeout=90)
    assert len(describe(admin, group).members) == 1
    assert "no heartbeat within its session timeout" in b.log_tail(400)

    log.info("phase: the group is listed as a consumer group, and deleted once empty")
    listed = admin.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(OP_TIMEOUT_S)
    assert group in {g.group_id for g in listed.valid}
    listed = admin.list_consumer_groups(types={ConsumerGroupType.CLASSIC}).result(OP_TIMEOUT_S)
    assert group not in {g.group_id for g in listed.valid}
    with pytest.raises(KafkaException):
        admin.delete_consumer_groups([group])[group].result(OP_TIMEOUT_S)  # not empty
    a.close()
    wait_until(lambda: describe(admin, group).state.name == "EMPTY", timeout=30,
               what="the group empty")
    admin.delete_consumer_groups([group])[group].result(OP_TIMEOUT_S)
    listed = admin.list_consumer_groups().result(OP_TIMEOUT_S)
    assert group not in {g.group_id for g in listed.valid}


def test_a_static_member_gets_its_partitions_back_after_a_restart(kip848_broker, topic):
    b = kip848_broker
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(OP_TIMEOUT_S)
    group = f"{topic}-static"
    first = member(b.bootstrap, group, **{"group.instance.id": "pod-0"})
    other = member(b.bootstrap, group, **{"group.instance.id": "pod-1"})
    for m in (first, other):
        m.subscribe([topic])
    poll_until([first, other], lambda: [len(owned(m)) for m in (first, other)] == [3, 3],
               "three partitions each")
    wait_until(lambda: describe(admin, group).state.name == "STABLE", timeout=30,
               what="the group stable")
    mine, theirs = owned(first), owned(other)

    log.info("phase: pod-0 restarts: it leaves as a static member, the other keeps its three")
    first.close()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        other.poll(0.2)
        assert owned(other) == theirs, "the other member's partitions moved"
    again = member(b.bootstrap, group, **{"group.instance.id": "pod-0"})
    again.subscribe([topic])
    poll_until([again, other], lambda: owned(again) == mine, "pod-0's partitions back")
    assert owned(other) == theirs
    again.close()
    other.close()


def test_java_clients_and_tools_on_a_consumer_group(kip848_broker, topic, tmp_path):
    why = kafka_tools_missing()
    if why is not None:
        pytest.fail(f"Kafka's tools are needed for this test: {why}")
    b = kip848_broker
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(OP_TIMEOUT_S)
    producer = confluent_producer(b.bootstrap)
    records = [{"value": b"j-%d" % i, "partition": i % 3} for i in range(90)]
    assert all(r.error is None for r in produce_confluent(producer, topic, records))
    group = f"{topic}-java"

    log.info("phase: the Java console consumer reads with group.protocol=consumer and commits")
    proc = kafka_tool(tmp_path, "org.apache.kafka.tools.consumer.ConsoleConsumer",
                      "--bootstrap-server", b.bootstrap, "--topic", topic, "--group", group,
                      "--from-beginning", "--max-messages", "90",
                      "--consumer-property", "group.protocol=consumer")
    assert sorted(proc.stdout.split()) == sorted(f"j-{i}" for i in range(90))

    log.info("phase: kafka-consumer-groups.sh shows its offsets, no lag")
    proc = kafka_tool(tmp_path, "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                      "--bootstrap-server", b.bootstrap, "--describe", "--group", group)
    lines = [l.split() for l in proc.stdout.splitlines() if l.startswith(group)]
    assert sorted((l[2], l[3], l[5]) for l in lines) == [
        ("0", "30", "0"), ("1", "30", "0"), ("2", "30", "0")], proc.stdout

    log.info("phase: a classic member cannot join a consumer group with members")
    modern = member(b.bootstrap, group)
    modern.subscribe([topic])
    poll_until([modern], lambda: len(owned(modern)) == 3, "the consumer-protocol member")
    classic = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                        "group.protocol": "classic", "auto.offset.reset": "earliest"})
    errors = []
    classic.subscribe([topic], on_assign=lambda c, ps: errors.append(("assigned", ps)))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not errors:
        msg = classic.poll(0.5)
        modern.poll(0.1)
        if msg is not None and msg.error():
            errors.append(msg.error())
    log.info("classic member: %s", errors)
    assert errors and "assigned" not in [e[0] for e in errors if isinstance(e, tuple)], errors
    assert "INCONSISTENT_GROUP_PROTOCOL" in str(errors[0]), errors
    classic.close()
    modern.close()
