"""Admin APIs through confluent_kafka.admin.AdminClient: CreateTopics
(validate_only, configs, bad names), DeleteTopics, CreatePartitions,
DescribeConfigs, IncrementalAlterConfigs, the legacy AlterConfigs,
DescribeCluster; DescribeLogDirs through kafka-python and kafka-log-dirs.sh."""

import logging

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewPartitions, NewTopic, ResourceType)

from harness import (admin, confluent_producer, consume_confluent, create_topic, produce_confluent,
                     wait_for_topic, wait_until)

log = logging.getLogger("e2e")

T = 60  # seconds for each admin call


def error_of(future) -> KafkaError:
    with pytest.raises(KafkaException) as info:
        future.result(T)
    return info.value.args[0]


def topic_names(a) -> set[str]:
    return set(a.list_topics(timeout=T).topics)


# ConfigEntry.source comes back as a plain int: compare with ConfigSource.X.value


def describe_topic_configs(a, topic) -> dict:
    res = ConfigResource(ResourceType.TOPIC, topic)
    return a.describe_configs([res], request_timeout=T)[res].result(T)


def test_create_topics_validate_only_and_configs(broker, topic):
    a = admin(broker.bootstrap)

    log.info("phase: validate_only create of %s succeeds but creates nothing", topic)
    fut = a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)],
                          validate_only=True, request_timeout=T)[topic]
    assert fut.result(T) is None
    assert topic not in topic_names(a)

    log.info("phase: create %s with 3 partitions and configs retention.ms, segment.bytes, "
             "max.message.bytes", topic)
    cfg = {"retention.ms": "123456789", "segment.bytes": "1048576", "max.message.bytes": "65536"}
    a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1, config=cfg)],
                    request_timeout=T)[topic].result(T)
    wait_for_topic(broker.bootstrap, topic, 3)

    log.info("phase: describe_configs shows each config as given at creation, as a topic override")
    entries = describe_topic_configs(a, topic)
    for name, value in cfg.items():
        assert name in entries, f"{name} not described; got {sorted(entries)}"
        e = entries[name]
        assert e.value == value, f"{name}={e.value}, created with {value}"
        assert e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, f"{name} source {e.source}"
        assert not e.is_default, name
    log.info("described %d configs, e.g. cleanup.policy=%s", len(entries),
             entries["cleanup.policy"].value if "cleanup.policy" in entries else "(absent)")

    log.info("phase: creating the same topic again fails with TOPIC_ALREADY_EXISTS")
    err = error_of(a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                                   request_timeout=T)[topic])
    assert err.code() == KafkaError.TOPIC_ALREADY_EXISTS, err

    log.info("phase: validate_only of an existing topic fails the same way")
    err = error_of(a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                                   validate_only=True, request_timeout=T)[topic])
    assert err.code() == KafkaError.TOPIC_ALREADY_EXISTS, err


@pytest.mark.parametrize("bad_name", ["bad/name", "a" * 300, "..", "spaces in name"],
                         ids=["slash", "300-chars", "dotdot", "spaces"])
def test_create_topic_with_invalid_name_fails(broker, bad_name):
    a = admin(broker.bootstrap)

    log.info("phase: create %r fails with INVALID_TOPIC_EXCEPTION (librdkafka: TOPIC_EXCEPTION)",
             bad_name[:40])
    err = error_of(a.create_topics([NewTopic(bad_name, num_partitions=1, replication_factor=1)],
                                   request_timeout=T)[bad_name])
    assert err.code() == KafkaError.TOPIC_EXCEPTION, err

    log.info("phase: validate_only gives the same error")
    err = error_of(a.create_topics([NewTopic(bad_name, num_partitions=1, replication_factor=1)],
                                   validate_only=True, request_timeout=T)[bad_name])
    assert err.code() == KafkaError.TOPIC_EXCEPTION, err

    log.info("phase: no such topic exists afterwards")
    assert bad_name not in topic_names(a)


def test_create_topic_with_invalid_config_fails(broker, topic):
    a = admin(broker.bootstrap)

    log.info("phase: a non-numeric retention.ms is rejected with INVALID_CONFIG")
    err = error_of(a.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1, config={"retention.ms": "soon"})],
        request_timeout=T)[topic])
    assert err.code() == KafkaError.INVALID_CONFIG, err

    log.info("phase: zero partitions is rejected with INVALID_PARTITIONS")
    err = error_of(a.create_topics([NewTopic(topic, num_partitions=0, replication_factor=1)],
                                   request_timeout=T)[topic])
    assert err.code() == KafkaError.INVALID_PARTITIONS, err
    assert topic not in topic_names(a)


def test_delete_topics(broker, topic):
    a = admin(broker.bootstrap)

    log.info("phase: create %s and write to it", topic)
    create_topic(broker.bootstrap, topic, partitions=2)
    reports = produce_confluent(confluent_producer(broker.bootstrap), topic,
                                [{"value": b"doomed", "partition": 0}])
    assert reports[0].error is None

    log.info("phase: delete_topics succeeds and metadata stops listing the topic")
    assert a.delete_topics([topic], request_timeout=T, operation_timeout=T)[topic].result(T) is None
    wait_until(lambda: topic not in topic_names(a), timeout=T, what=f"{topic} gone from metadata")

    log.info("phase: its partition directories leave the data dir")
    wait_until(lambda: not broker.partition_dir(topic, 0).exists() and not broker.partition_dir(topic, 1).exists(),
               timeout=T, interval=0.5, what="partition dirs of the deleted topic removed")

    log.info("phase: deleting it again fails with UNKNOWN_TOPIC_OR_PART")
    err = error_of(a.delete_topics([topic], request_timeout=T, operation_timeout=T)[topic])
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err

    log.info("phase: a topic of the same name can be created again, empty")
    create_topic(broker.bootstrap, topic, partitions=1)
    from harness import watermarks
    assert watermarks(broker.bootstrap, topic, 0) == (0, 0)


def test_create_partitions(broker, topic):
    a = admin(broker.bootstrap)

    log.info("phase: create %s with 3 partitions", topic)
    create_topic(broker.bootstrap, topic, partitions=3)

    log.info("phase: create_partitions to 5 total; metadata shows 5 led partitions")
    assert a.create_partitions([NewPartitions(topic, 5)], request_timeout=T)[topic].result(T) is None
    wait_for_topic(broker.bootstrap, topic, 5)

    log.info("phase: the new partitions 3 and 4 take records")
    reports = produce_confluent(confluent_producer(broker.bootstrap), topic,
                                [{"value": b"p%d" % p, "partition": p} for p in range(5)])
    assert [(d.error, d.partition, d.offset) for d in reports] == [(None, p, 0) for p in range(5)]
    got = consume_confluent(broker.bootstrap, topic, {3: 0, 4: 0}, {3: 1, 4: 1})
    assert sorted((r.partition, r.value) for r in got) == [(3, b"p3"), (4, b"p4")]

    log.info("phase: shrinking to 2 partitions fails with INVALID_PARTITIONS")
    err = error_of(a.create_partitions([NewPartitions(topic, 2)], request_timeout=T)[topic])
    assert err.code() == KafkaError.INVALID_PARTITIONS, err

    log.info("phase: validate_only growth to 8 succeeds but changes nothing")
    assert a.create_partitions([NewPartitions(topic, 8)], validate_only=True,
                               request_timeout=T)[topic].result(T) is None
    assert len(a.list_topics(topic=topic, timeout=T).topics[topic].partitions) == 5

    log.info("phase: create_partitions on an unknown topic fails with UNKNOWN_TOPIC_OR_PART")
    err = error_of(a.create_partitions([NewPartitions(topic + "-nope", 4)], request_timeout=T)[topic + "-nope"])
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err


def test_incremental_alter_configs(broker, topic):
    a = admin(broker.bootstrap)

    log.info("phase: create %s with retention.ms=3600000", topic)
    create_topic(broker.bootstrap, topic, partitions=1, config={"retention.ms": 3600000})
    assert describe_topic_configs(a, topic)["retention.ms"].value == "3600000"

    def alter(*entries):
        res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=list(entries))
        return a.incremental_alter_configs([res], request_timeout=T)[res]

    log.info("phase: SET retention.ms=7200000 and max.message.bytes=2000; describe shows both")
    assert alter(ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
                 ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET)
                 ).result(T) is None
    # An alter is applied through the cluster metadata, which brokers (Kafka's
    # included) apply a moment later: poll for it to show.
    entries = wait_until(
        lambda: (lambda e: e["retention.ms"].value == "7200000" and e["max.message.bytes"].value == "2000"
                 and e)(describe_topic_configs(a, topic)),
        timeout=T, what="describe_configs to show the altered values")
    assert entries["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    log.info("phase: the altered max.message.bytes is enforced on produce")
    reports = produce_confluent(confluent_producer(broker.bootstrap, **{"compression.type": "none"}),
                                topic, [{"value": b"x" * 5000, "partition": 0}])
    assert reports[0].error is not None and reports[0].error.code() == KafkaError.MSG_SIZE_TOO_LARGE, reports

    log.info("phase: DELETE retention.ms reverts it to the broker default")
    assert alter(ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)
                 ).result(T) is None
    e = wait_until(lambda: (lambda e: e.source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value and e)(
        describe_topic_configs(a, topic)["retention.ms"]), timeout=T,
        what="retention.ms to stop being a topic override")
    assert e.value != "7200000", e
    log.info("retention.ms after DELETE: %s (source %s)", e.value, e.source)

    log.info("phase: SET of an unknown config name fails with INVALID_CONFIG")
    err = error_of(alter(ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET)))
    assert err.code() == KafkaError.INVALID_CONFIG, err

    log.info("phase: describe_configs of an unknown topic fails with UNKNOWN_TOPIC_OR_PART")
    res = ConfigResource(ResourceType.TOPIC, topic + "-nope")
    err = error_of(a.describe_configs([res], request_timeout=T)[res])
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err


def test_describe_cluster(broker):
    a = admin(broker.bootstrap)

    log.info("phase: describe_cluster lists this broker at its advertised address")
    desc = a.describe_cluster(request_timeout=T).result(T)
    log.info("cluster id %r, controller %s, nodes %s", desc.cluster_id, desc.controller and desc.controller.id,
             [f"{n.id}@{n.host}:{n.port}" for n in desc.nodes])
    nodes = {n.id: (n.host, n.port) for n in desc.nodes}
    assert nodes == {broker.node_id: (broker.host, broker.port)}, nodes
    assert desc.cluster_id, "empty cluster id"

    log.info("phase: metadata agrees (brokers, cluster id)")
    md = a.list_topics(timeout=T)
    assert {b.id: (b.host, b.port) for b in md.brokers.values()} == nodes
    assert md.cluster_id == desc.cluster_id


def test_describe_log_dirs_reports_each_partition_size(broker, topic, tmp_path):
    """DescribeLogDirs: the data directory and each partition's log size as
    on disk, through kafka-python's describe_log_dirs and Kafka's
    kafka-log-dirs.sh (what UIs show topic sizes from)."""
    import json
    from pathlib import Path

    from kafka.admin import KafkaAdminClient

    from cluster import kafka_tool, kafka_tools_missing

    b = broker
    create_topic(b.bootstrap, topic, partitions=2)
    reports = produce_confluent(confluent_producer(b.bootstrap), topic,
                                [{"value": b"x" * 500, "partition": 0} for _ in range(200)])
    assert all(r.error is None for r in reports)

    a = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        [entry] = a.describe_log_dirs({topic: [0, 1]})
    finally:
        a.close()
    log.info("describe_log_dirs: %s", entry)
    [d] = entry["log_dirs"]
    assert d["error_code"] == 0, d
    sizes = {p["partition_index"]: p["partition_size"]
             for t in d["topics"] if t["name"] == topic for p in t["partitions"]}
    on_disk = {p: sum(f.stat().st_size for f in Path(d["log_dir"], f"{topic}-{p}").glob("*.log"))
               for p in (0, 1)}
    assert sizes == on_disk, (sizes, on_disk)
    assert sizes[0] > 200 * 500 and sizes[1] == 0, sizes
    assert d["total_bytes"] >= d["usable_bytes"] > 0, d

    if kafka_tools_missing():
        return
    out = kafka_tool(tmp_path, "org.apache.kafka.tools.LogDirsCommand", "--bootstrap-server",
                     b.bootstrap, "--describe", "--topic-list", topic).stdout
    log.info("kafka-log-dirs:\n%s", out)
    [line] = [line for line in out.splitlines() if line.startswith("{")]
    [described] = json.loads(line)["brokers"]
    [logdir] = described["logDirs"]
    assert logdir["logDir"] == d["log_dir"] and logdir["error"] is None, logdir
    assert sorted((p["partition"], p["size"], p["offsetLag"], p["isFuture"])
                  for p in logdir["partitions"]) == [
        (f"{topic}-0", sizes[0], 0, False), (f"{topic}-1", 0, 0, False)], logdir


def test_kafka_features_describes_the_consumer_protocol(broker, tmp_path):
    """kafka-features.sh describe (ApiVersions v3's features, KIP-584):
    group.version 1, the consumer rebalance protocol of KIP-848."""
    from cluster import kafka_tool, kafka_tools_missing
    if kafka_tools_missing():
        pytest.skip(f"kafka-features.sh is Kafka's tool: {kafka_tools_missing()}")
    out = kafka_tool(tmp_path, "org.apache.kafka.tools.FeatureCommand", "--bootstrap-server",
                     broker.bootstrap, "describe").stdout
    log.info("kafka-features describe:\n%s", out)
    line = next((l for l in out.splitlines() if "Feature: group.version" in l), "")
    assert "SupportedMinVersion: 0" in line and "SupportedMaxVersion: 1" in line, out
    assert "FinalizedVersionLevel: 1" in line, out


def test_legacy_alter_configs_replaces_a_topics_overrides(broker, topic):
    """AlterConfigs (the legacy form before IncrementalAlterConfigs, which
    confluent-kafka's alter_configs and kafka-python with incremental=False
    send): the configs given replace all of the topic's overrides, the ones
    left out go back to the defaults; a bad value is INVALID_CONFIG and
    changes nothing; broker settings are refused."""
    import warnings

    from kafka.admin import ConfigResource as KpResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    from cluster import REFERENCE

    b = broker
    create_topic(b.bootstrap, topic, partitions=1)
    a = admin(b.bootstrap)
    set_to = lambda configs: ConfigResource(ResourceType.TOPIC, topic, set_config=configs)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        res = set_to({"retention.ms": "3600000", "cleanup.policy": "compact"})
        a.alter_configs([res])[res].result(T)
        described = describe_topic_configs(a, topic)
        assert described["retention.ms"].value == "3600000"
        assert described["cleanup.policy"].value == "compact"
        assert described["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value

        res = set_to({"segment.ms": "7200000"})
        a.alter_configs([res])[res].result(T)
        described = describe_topic_configs(a, topic)
        assert described["segment.ms"].value == "7200000"
        assert described["retention.ms"].value == "604800000", "back to the default"
        assert described["cleanup.policy"].value == "delete", "back to the default"

        res = set_to({"retention.ms": "not-a-number"})
        assert error_of(a.alter_configs([res])[res]).code() == KafkaError.INVALID_CONFIG
        assert describe_topic_configs(a, topic)["segment.ms"].value == "7200000", "unchanged"

        if not REFERENCE:
            # Runnel's broker settings are static (Kafka has dynamic ones).
            res = ConfigResource(ResourceType.BROKER, "1",
                                 set_config={"log.retention.ms": "1000"})
            assert error_of(a.alter_configs([res])[res]).code() == KafkaError.INVALID_REQUEST

    kp = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        result = kp.alter_configs([KpResource(ConfigResourceType.TOPIC, topic,
                                              configs={"retention.ms": "1800000"})],
                                  incremental=False, raise_on_unknown=False)
        log.info("kafka-python alter_configs: %s", result)
    finally:
        kp.close()
    described = describe_topic_configs(a, topic)
    assert described["retention.ms"].value == "1800000"
    # kafka-python resends the other overrides it finds, as the legacy API needs.
    assert described["segment.ms"].value == "7200000"
