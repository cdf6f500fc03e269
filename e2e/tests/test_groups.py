"""Consumer groups and committed offsets, with the clients' own group
implementations: librdkafka (confluent-kafka), kafka-python and the Java
client. Checks how partitions are split and moved between members, that a
group reads every record exactly once, that commits land where a new member
resumes and survive kill -9, and what AdminClient shows of groups."""

from __future__ import annotations

import logging
import shutil
import subprocess

import pytest
from confluent_kafka import ConsumerGroupState, KafkaError, KafkaException

from group_helpers import (GROUP_SETTINGS, HEARTBEAT_MS, OFFSET_INVALID, SESSION_TIMEOUT_MS, Member,
                           admin_committed, close_all, commit_standalone, committed,
                           committed_with_metadata, describe_group, group_listings, member_summary,
                           poll_members, unique_group)
from harness import (REPO_ROOT, admin, confluent_producer, create_topic, produce_confluent,
                     wait_until, watermarks)

log = logging.getLogger("e2e")


@pytest.fixture(scope="module")
def _group_broker(module_broker_factory):
    return module_broker_factory(GROUP_SETTINGS)


@pytest.fixture
def gbroker(_group_broker):
    """One broker with GROUP_SETTINGS shared by this module's tests (each uses
    its own topic and group); restarted if an earlier test left it dead, and a
    test during which it dies fails."""
    b = _group_broker
    if not b.alive():
        log.error("shared broker %r was found dead; starting it again", b)
        b.start()
    yield b
    if not b.alive():
        pytest.fail(f"broker process died during the test\n{b.log_tail()}", pytrace=False)


def produce_values(bootstrap: str, topic: str, per_partition: dict[int, int], tag: str
                   ) -> dict[tuple[int, int], bytes]:
    """Produce `per_partition[p]` records to each partition p (acks=all);
    returns (partition, offset) -> value as acknowledged."""
    recs = [{"value": f"{tag}-p{p}-{i}".encode(), "partition": p}
            for p, n in per_partition.items() for i in range(n)]
    reports = produce_confluent(confluent_producer(bootstrap), topic, recs)
    failed = [d for d in reports if d.error is not None]
    assert not failed, f"{len(failed)} records not acknowledged, e.g. {failed[:3]}"
    return {(d.partition, d.offset): d.value for d in reports}


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    return {p: watermarks(bootstrap, topic, p)[1] for p in range(partitions)}


def seen_up_to(members: list[Member], high: dict[int, int]) -> bool:
    """Every partition has been read up to high[p] - 1 by some member."""
    last: dict[int, int] = {}
    for m in members:
        for p, o, _ in m.records:
            last[p] = max(last.get(p, -1), o)
    return all(last.get(p, -1) >= h - 1 for p, h in high.items())


def assert_split(members: list[Member], partitions: int, each: int) -> None:
    sets = [m.assigned() for m in members]
    union = set().union(*sets)
    assert union == set(range(partitions)), f"assignments {sets} do not cover {partitions} partitions"
    assert sum(len(s) for s in sets) == partitions, f"a partition is assigned twice: {sets}"
    assert all(len(s) == each for s in sets), f"assignments {sets}: expected {each} partitions each"


# --------------------------------------------------------------------------


def test_three_members_split_partitions_consume_once_and_rebalance(gbroker, topic):
    b = gbroker
    P, per_partition = 6, 50
    group = unique_group("three")
    log.info("phase: create topic %s with %d partitions", topic, P)
    create_topic(b.bootstrap, topic, partitions=P)

    log.info("phase: three librdkafka consumers join group %s (range); each gets two partitions", group)
    members = [Member(b.bootstrap, group, [topic], f"member-{i}") for i in range(3)]
    try:
        poll_members(members, lambda: all(len(m.assigned()) == 2 for m in members),
                     "three members with two partitions each")
        assert_split(members, P, 2)
        assignment = {m.name: m.assigned() for m in members}
        log.info("assignment: %s", assignment)

        log.info("phase: produce %d records to each partition; the group reads each exactly once",
                 per_partition)
        produced = produce_values(b.bootstrap, topic, {p: per_partition for p in range(P)}, "first")
        high = high_watermarks(b.bootstrap, topic, P)
        assert high == {p: per_partition for p in range(P)}, high
        poll_members(members, lambda: seen_up_to(members, high), "every record consumed")
        assert {m.name: m.assigned() for m in members} == assignment, "assignment changed while consuming"
        for m in members:
            foreign = {p for p, _, _ in m.records} - m.assigned()
            assert not foreign, f"{m.name} read partitions {foreign} it was not assigned"
        pairs = [(p, o) for m in members for p, o, _ in m.records]
        dups = sorted({x for x in pairs if pairs.count(x) > 1})
        assert not dups, f"records read more than once: {dups[:10]}"
        missing = sorted(set(produced) - set(pairs))
        assert not missing, f"records never read: {missing[:10]}"
        got = {(p, o): v for m in members for p, o, v in m.records}
        assert got == produced, "values read differ from the values acknowledged"

        log.info("phase: each member commits its position; committed offsets equal the log end offsets")
        for m in members:
            res = m.commit_consumed()
            assert {tp.partition: tp.offset for tp in res} == {p: high[p] for p in m.assigned()}, (
                m.name, res)
        assert committed(b.bootstrap, group, topic, range(P)) == high
        assert admin_committed(b.bootstrap, group) == {(topic, p): high[p] for p in range(P)}

        log.info("phase: %s leaves; the other two members take all six partitions, three each",
                 members[0].name)
        members[0].close()
        rest = members[1:]
        poll_members(rest, lambda: all(len(m.assigned()) == 3 for m in rest),
                     "the two remaining members with three partitions each")
        assert_split(rest, P, 3)
        log.info("assignment after the leave: %s", {m.name: m.assigned() for m in rest})

        log.info("phase: every partition, moved or not, continues at its committed offset")
        seen_before = {m.name: len(m.records) for m in rest}
        produce_values(b.bootstrap, topic, {p: 2 for p in range(P)}, "second")
        high2 = high_watermarks(b.bootstrap, topic, P)
        poll_members(rest, lambda: seen_up_to(rest, high2), "the new records consumed")
        new = sorted((p, o) for m in rest for p, o, _ in m.records[seen_before[m.name]:])
        assert new == sorted((p, o) for p in range(P) for o in range(high[p], high2[p])), (
            f"after the rebalance the group read {new}; expected exactly the offsets from the "
            f"commits {high} to the new ends {high2}")
    finally:
        close_all(members)


def test_committed_offsets_survive_kill9(broker_factory, topic):
    # default offsets.topic.num.partitions (50): the group lands wherever its hash says
    b = broker_factory({"group.initial.rebalance.delay.ms": 0})
    P = 3
    group, other_group = unique_group("kill9"), unique_group("kill9-other")
    log.info("phase: create topic %s (%d partitions) with 10 records in each", topic, P)
    create_topic(b.bootstrap, topic, partitions=P)
    produce_values(b.bootstrap, topic, {p: 10 for p in range(P)}, "v")

    log.info("phase: a member of %s reads everything and commits; then it commits again "
             "(the later commit, with metadata, must win on partitions 0 and 1)", group)
    m = Member(b.bootstrap, group, [topic], "kill9-member")
    try:
        poll_members([m], lambda: len(m.records) >= 3 * 10, "30 records read")
        m.commit_consumed()
        m.commit_offsets(topic, {0: 4, 1: 7}, metadata={0: "meta-p0", 1: "meta-p1"})
    finally:
        m.close()
    want = {0: (4, "meta-p0"), 1: (7, "meta-p1"), 2: (10, None)}
    before = committed_with_metadata(b.bootstrap, group, topic, range(P))
    assert {p: o for p, (o, _) in before.items()} == {p: o for p, (o, _) in want.items()}, before
    assert before[0][1] == "meta-p0" and before[1][1] == "meta-p1", f"commit metadata lost: {before}"

    log.info("phase: another group %s, which never has members, gets different offsets for the "
             "same topic from a standalone commit", other_group)
    commit_standalone(b.bootstrap, other_group, topic, {0: 1, 2: 9})
    other_before = committed(b.bootstrap, other_group, topic, range(P))
    assert other_before == {0: 1, 1: OFFSET_INVALID, 2: 9}, other_before

    log.info("phase: kill -9 the broker and restart it on the same data dir")
    b.kill9()
    b.restart()

    log.info("phase: both groups' committed offsets (and metadata) are as before the kill")
    after = wait_until(lambda: committed_with_metadata(b.bootstrap, group, topic, range(P)),
                       what="OffsetFetch answered after the restart", ignore=(Exception,))
    assert after == before, f"committed offsets before kill -9: {before}, after restart: {after}"
    assert committed(b.bootstrap, other_group, topic, range(P)) == other_before
    assert admin_committed(b.bootstrap, group) == {(topic, p): o for p, (o, _) in want.items()}

    log.info("phase: a new member of %s resumes at the reloaded commits", group)
    produce_values(b.bootstrap, topic, {2: 1}, "after")
    m2 = Member(b.bootstrap, group, [topic], "kill9-resume")
    try:
        poll_members([m2], lambda: len(m2.records) >= 6 + 3 + 1, "the records after the commits")
        assert m2.first_offsets() == {0: 4, 1: 7, 2: 10}, m2.first_offsets()
        assert sorted((p, o) for p, o, _ in m2.records) == (
            [(0, o) for o in range(4, 10)] + [(1, o) for o in range(7, 10)] + [(2, 10)])
    finally:
        m2.close()


def test_new_member_resumes_at_commits_and_reset_applies_only_without_commit(gbroker, topic):
    b = gbroker
    P = 3
    group = unique_group("resume")
    log.info("phase: create topic %s (%d partitions) with 10 records in each", topic, P)
    create_topic(b.bootstrap, topic, partitions=P)
    produce_values(b.bootstrap, topic, {p: 10 for p in range(P)}, "old")

    log.info("phase: a member of %s reads all 30 and commits partition 0 at 10 and partition 1 "
             "at 4; partition 2 is never committed", group)
    a = Member(b.bootstrap, group, [topic], "first-member")
    try:
        poll_members([a], lambda: len(a.records) >= 30, "30 records read")
        a.commit_offsets(topic, {0: 10, 1: 4})
    finally:
        a.close()
    assert committed(b.bootstrap, group, topic, range(P)) == {0: 10, 1: 4, 2: OFFSET_INVALID}

    log.info("phase: 5 more records to each partition (offsets 10..14)")
    produce_values(b.bootstrap, topic, {p: 5 for p in range(P)}, "new")

    log.info("phase: a fresh member with auto.offset.reset=latest starts at the commits on "
             "partitions 0 and 1, and at the log end on partition 2")
    late = Member(b.bootstrap, group, [topic], "latest-member", {"auto.offset.reset": "latest"})
    try:
        poll_members([late], lambda: len(late.offsets_seen(0)) >= 5 and len(late.offsets_seen(1)) >= 11,
                     "partitions 0 and 1 read from their commits to the end")
        assert late.offsets_seen(0) == list(range(10, 15)), late.offsets_seen(0)
        assert late.offsets_seen(1) == list(range(4, 15)), late.offsets_seen(1)
        # When the member's "latest" lookup happens is not ours to know: add
        # markers one by one until it reads one. It must never read an offset
        # below 15 (the end before it joined) on partition 2.
        markers: dict[int, bytes] = {}

        def reads_a_marker():
            if late.offsets_seen(2):
                return True
            markers.update(produce_values(b.bootstrap, topic, {2: 1}, f"marker{len(markers)}"))
            for _ in range(20):
                late.poll_once(0.05)
            return bool(late.offsets_seen(2))

        wait_until(reads_a_marker, timeout=60, interval=0, what="the latest-member to read a marker")
        seen2 = late.offsets_seen(2)
        assert min(seen2) >= 15, f"auto.offset.reset=latest read partition 2 from {min(seen2)}, before the end (15)"
        got2 = {(p, o): v for p, o, v in late.records if p == 2}
        assert all(got2[k] == markers[k] for k in got2), f"partition 2 read {got2}, markers {markers}"
        end2 = watermarks(b.bootstrap, topic, 2)[1]
        poll_members([late], lambda: late.offsets_seen(2) and late.offsets_seen(2)[-1] == end2 - 1,
                     "partition 2 read to its end")
        assert late.offsets_seen(2) == list(range(seen2[0], end2)), late.offsets_seen(2)
    finally:
        late.close()  # enable.auto.commit=False: it commits nothing
    assert committed(b.bootstrap, group, topic, range(P)) == {0: 10, 1: 4, 2: OFFSET_INVALID}

    log.info("phase: a fresh member with auto.offset.reset=earliest starts at the same commits "
             "on partitions 0 and 1, and at offset 0 on partition 2")
    early = Member(b.bootstrap, group, [topic], "earliest-member", {"auto.offset.reset": "earliest"})
    try:
        poll_members([early], lambda: len(early.records) >= 5 + 11 + end2,
                     "all three partitions read to the end")
        assert early.first_offsets() == {0: 10, 1: 4, 2: 0}, early.first_offsets()
        assert early.offsets_seen(0) == list(range(10, 15))
        assert early.offsets_seen(1) == list(range(4, 15))
        assert early.offsets_seen(2) == list(range(0, end2))
    finally:
        early.close()


def test_kafka_python_group_member_and_mixed_group(gbroker, topic):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KpTP
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.structs import OffsetAndMetadata

    b = gbroker
    P = 6
    group = unique_group("kafka-python")
    log.info("phase: create topic %s (%d partitions) with 5 records in each", topic, P)
    create_topic(b.bootstrap, topic, partitions=P)
    produced = produce_values(b.bootstrap, topic, {p: 5 for p in range(P)}, "kp")
    high = high_watermarks(b.bootstrap, topic, P)

    log.info("phase: a kafka-python KafkaConsumer joins %s alone, gets all partitions and reads "
             "every record once", group)
    kp = KafkaConsumer(bootstrap_servers=b.bootstrap, group_id=group, client_id="kp-member",
                       auto_offset_reset="earliest", enable_auto_commit=False,
                       partition_assignment_strategy=[RangePartitionAssignor],
                       session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=HEARTBEAT_MS,
                       request_timeout_ms=40_000)
    # Subscribe, then make kafka-python fetch metadata (topics() always asks
    # the broker) before its first poll joins the group. kafka-python 3.0.12
    # notes the subscribed topics' partitions only when a metadata response
    # arrives after subscribe(); if it joins before that, it (as leader)
    # rejoins as soon as one arrives: a rebalance of the client's own making
    # at an arbitrary later moment, which redelivers uncommitted records. And
    # if a poll() times out during such a rejoin it never completes it (no
    # assignment, no heartbeats). Client behaviour, not the broker's.
    kp.subscribe([topic])
    assert topic in kp.topics()
    assert kp.partitions_for_topic(topic) == set(range(P))
    kp_records: list[tuple[int, int, bytes]] = []

    def kp_poll():
        for _tp, recs in kp.poll(timeout_ms=200).items():
            kp_records.extend((r.partition, r.offset, r.value) for r in recs)

    cf = None
    try:
        def kp_done():
            kp_poll()
            return len(kp_records) >= len(produced)

        wait_until(kp_done, timeout=60, interval=0, what="kafka-python to read every record")
        assert {tp.partition for tp in kp.assignment()} == set(range(P)), kp.assignment()
        assert sorted((p, o) for p, o, _ in kp_records) == sorted(produced), "records read != produced"
        assert {(p, o): v for p, o, v in kp_records} == produced

        log.info("phase: kafka-python commits; confluent's committed() sees its offsets")
        kp.commit()
        assert committed(b.bootstrap, group, topic, range(P)) == high
        # an explicit commit of a single partition, with metadata, overrides that one only
        kp.commit({KpTP(topic, 5): OffsetAndMetadata(2, "kp-meta", -1)})
        got = committed_with_metadata(b.bootstrap, group, topic, range(P))
        assert {p: o for p, (o, _) in got.items()} == {**high, 5: 2}, got
        assert got[5][1] == "kp-meta", got

        log.info("phase: a librdkafka member joins the same group; the two split the partitions")
        kp_before = len(kp_records)
        cf = Member(b.bootstrap, group, [topic], "cf-member")

        def split():
            kp_poll()
            cf.poll_once(0.05)
            kp_parts = {tp.partition for tp in kp.assignment()}
            return len(kp_parts) == 3 and len(cf.assigned()) == 3 and kp_parts | cf.assigned() == set(range(P))

        wait_until(split, timeout=60, interval=0, what="kafka-python and librdkafka members with 3 partitions each")
        kp_parts = {tp.partition for tp in kp.assignment()}
        log.info("kafka-python has %s, librdkafka has %s", sorted(kp_parts), sorted(cf.assigned()))
        # Partition 5 was committed back to 2 while kafka-python had read it to 5. If the
        # librdkafka member got it, it starts at that commit; if kafka-python kept it, it keeps
        # its own position (it preserves the state of partitions it retains in a rebalance).
        rewound = 5 in cf.assigned()
        reread = {(5, o) for o in range(2, high[5])} if rewound else set()
        # nothing new was produced: since the join, only those records may have been read
        since_join = [(p, o) for p, o, _ in kp_records[kp_before:]] + [(p, o) for p, o, _ in cf.records]
        assert set(since_join) <= reread, since_join

        log.info("phase: new records are read once by the mixed group, from the commits on")
        produce_values(b.bootstrap, topic, {p: 3 for p in range(P)}, "mixed")
        high2 = high_watermarks(b.bootstrap, topic, P)
        want = {(p, o) for p in range(P) for o in range(high[p], high2[p])}
        want |= reread

        def all_read():
            kp_poll()
            cf.poll_once(0.05)
            got_now = [(p, o) for p, o, _ in kp_records[kp_before:]] + [(p, o) for p, o, _ in cf.records]
            return set(got_now) >= want

        try:
            wait_until(all_read, timeout=60, interval=0, what="the mixed group to read the new records")
        except AssertionError as exc:
            got_now = {(p, o) for p, o, _ in kp_records[kp_before:]} | {(p, o) for p, o, _ in cf.records}
            raise AssertionError(f"{exc}; never read: {sorted(want - got_now)}; kafka-python has "
                                 f"{sorted(tp.partition for tp in kp.assignment())}, librdkafka has "
                                 f"{sorted(cf.assigned())}") from None
        new_kp = [(p, o) for p, o, _ in kp_records[kp_before:]]
        new_cf = [(p, o) for p, o, _ in cf.records]
        assert {p for p, _ in new_kp} <= kp_parts, f"kafka-python read outside its partitions: {new_kp}"
        assert {p for p, _ in new_cf} <= cf.assigned(), f"librdkafka read outside its partitions: {new_cf}"
        both = new_kp + new_cf
        assert len(both) == len(set(both)), f"a record was read twice: {sorted(both)}"
        assert set(both) == want, f"read {sorted(set(both) ^ want)} unexpectedly (symmetric difference)"

        log.info("phase: both members commit; the group's offsets are the new log ends")
        kp.commit()
        cf.commit_consumed()
        assert committed(b.bootstrap, group, topic, range(P)) == high2
    finally:
        kp.close()
        if cf is not None:
            cf.close()


def test_java_consumer_in_a_group(gbroker, topic, tmp_path):
    missing = [t for t in ("java", "javac", "mvn") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"the Java client test needs {', '.join(missing)} on PATH")
    b = gbroker
    P = 3
    group = unique_group("java")

    log.info("phase: e2e/setup-java.sh fetches kafka-clients and compiles GroupConsumer")
    setup = subprocess.run([str(REPO_ROOT / "e2e" / "setup-java.sh")], capture_output=True, text=True,
                           timeout=600)
    assert setup.returncode == 0, f"setup-java.sh failed:\n{setup.stdout}\n{setup.stderr}"
    classpath = setup.stdout.strip().splitlines()[-1].removeprefix("classpath: ")

    log.info("phase: create topic %s (%d partitions) with 10 records in each", topic, P)
    create_topic(b.bootstrap, topic, partitions=P)
    produced = produce_values(b.bootstrap, topic, {p: 10 for p in range(P)}, "java")

    log.info("phase: the Java consumer joins %s and waits for 40 records", group)
    out_path, err_path = tmp_path / "java.out", tmp_path / "java.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(
            ["java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", classpath, "GroupConsumer",
             b.bootstrap, group, topic, "40", "60"], stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        log.info("phase: while it runs, AdminClient shows the group Stable with the Java member "
                 "holding all %d partitions", P)

        def stable_with_java():
            if proc.poll() is not None:
                raise AssertionError(f"GroupConsumer exited early with {proc.returncode}:\n"
                                     f"{err_path.read_text()}")
            d = describe_group(b.bootstrap, group)
            return d if d.state == ConsumerGroupState.STABLE and d.members else None

        desc = wait_until(stable_with_java, timeout=60, what=f"group {group} Stable with a member",
                          ignore=(KafkaException,))
        assert member_summary(desc) == [(f"java-{group}", [(topic, p) for p in range(P)])], member_summary(desc)
        assert not desc.is_simple_consumer_group
        assert desc.partition_assignor == "range", desc.partition_assignor
        assert group in group_listings(b.bootstrap)

        log.info("phase: 10 more records; the Java consumer gets all 40, commits and exits 0")
        produced.update(produce_values(b.bootstrap, topic, {0: 4, 1: 3, 2: 3}, "java-more"))
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = err_path.read_text()
    assert rc == 0, f"GroupConsumer exited {rc}:\n{stderr}"
    lines = out_path.read_text().splitlines()
    got = {}
    for line in lines:
        p, o, v = line.split(" ", 2)
        assert (int(p), int(o)) not in got, f"Java read {p} {o} twice"
        got[(int(p), int(o))] = v.encode()
    assert got == produced, f"Java read {len(got)} records; expected the {len(produced)} produced"

    log.info("phase: its commits are the log ends; the group is listed and Empty now")
    high = high_watermarks(b.bootstrap, topic, P)
    assert committed(b.bootstrap, group, topic, range(P)) == high
    listing = group_listings(b.bootstrap)
    assert group in listing, sorted(listing)
    assert not listing[group].is_simple_consumer_group
    desc = wait_until(lambda: (lambda d: d if d.state == ConsumerGroupState.EMPTY else None)(
        describe_group(b.bootstrap, group)), timeout=30, what=f"group {group} Empty")
    assert desc.members == [], desc.members


def test_admin_describe_list_and_delete_groups(gbroker, topic):
    b = gbroker
    P = 4
    group = unique_group("admin")
    log.info("phase: create topic %s (%d partitions); two members join %s", topic, P, group)
    create_topic(b.bootstrap, topic, partitions=P)
    members = [Member(b.bootstrap, group, [topic], f"admin-member-{i}") for i in range(2)]
    try:
        poll_members(members, lambda: all(len(m.assigned()) == 2 for m in members),
                     "two members with two partitions each")
        assert_split(members, P, 2)
        # produced once the split is settled, so that each record is read by its final owner
        produced = produce_values(b.bootstrap, topic, {p: 3 for p in range(P)}, "a")
        poll_members(members, lambda: seen_up_to(members, {p: 3 for p in range(P)}), "all records read")

        log.info("phase: describe_consumer_groups shows Stable, both members, their client ids "
                 "and their assignments")
        desc = describe_group(b.bootstrap, group)
        assert desc.group_id == group
        assert desc.state == ConsumerGroupState.STABLE, desc.state
        assert not desc.is_simple_consumer_group
        assert desc.partition_assignor == "range", desc.partition_assignor
        assert len(desc.members) == 2, desc.members
        assert member_summary(desc) == sorted(
            (m.name, sorted((topic, p) for p in m.assigned())) for m in members), member_summary(desc)
        assert len({m.member_id for m in desc.members}) == 2 and all(m.member_id for m in desc.members)
        assert desc.coordinator is not None and desc.coordinator.id == b.node_id, desc.coordinator

        log.info("phase: list_consumer_groups includes the group, Stable")
        listing = group_listings(b.bootstrap)
        assert group in listing, sorted(listing)
        assert listing[group].state == ConsumerGroupState.STABLE, listing[group].state

        log.info("phase: delete_consumer_groups on the active group fails with NON_EMPTY_GROUP")
        a = admin(b.bootstrap)
        fut = a.delete_consumer_groups([group], request_timeout=30)[group]
        with pytest.raises(KafkaException) as exc_info:
            fut.result(30)
        assert exc_info.value.args[0].code() == KafkaError.NON_EMPTY_GROUP, exc_info.value

        log.info("phase: both members commit and close; the group becomes Empty, its offsets stay")
        for m in members:
            m.commit_consumed()
    finally:
        close_all(members)
    desc = wait_until(lambda: (lambda d: d if d.state == ConsumerGroupState.EMPTY else None)(
        describe_group(b.bootstrap, group)), timeout=30, what=f"group {group} Empty")
    assert desc.members == [], desc.members
    assert committed(b.bootstrap, group, topic, range(P)) == {p: 3 for p in range(P)}
    assert group_listings(b.bootstrap)[group].state == ConsumerGroupState.EMPTY

    log.info("phase: delete_consumer_groups on the empty group works; its offsets are gone")
    a = admin(b.bootstrap)
    a.delete_consumer_groups([group], request_timeout=30)[group].result(30)
    assert group not in group_listings(b.bootstrap)
    assert committed(b.bootstrap, group, topic, range(P)) == {p: OFFSET_INVALID for p in range(P)}
    assert admin_committed(b.bootstrap, group) == {}

    log.info("phase: a new member of the deleted group starts over from auto.offset.reset")
    m = Member(b.bootstrap, group, [topic], "admin-after-delete")
    try:
        poll_members([m], lambda: len(m.records) >= len(produced), "every record read again")
        assert m.first_offsets() == {p: 0 for p in range(P)}, m.first_offsets()
    finally:
        m.close()
