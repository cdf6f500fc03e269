"""Client quotas (KIP-13, KIP-546): `kafka-configs.sh` sets, describes and
removes byte-rate quotas per client id and user (AlterClientQuotas,
DescribeClientQuotas); a librdkafka producer or consumer over its quota is
told to back off (`throttle_time_ms`, its throttle callback) and held back
by the broker, while clients without a quota are not; quotas Runnel does not
enforce, and bad values, are refused with a message; with SASL a user's quota
applies to all of its clients. A controller mutation quota (KIP-599) refuses
a new client's CreateTopics while in debt (THROTTLING_QUOTA_EXCEEDED) and
only throttles an old one's. The replication throttle rates (KIP-73) are
dynamic broker configs kafka-configs.sh sets, describes and deletes.

The timing checks are lower bounds the broker imposes (a throttled client
cannot go faster than its quota allows), never upper bounds on the
machine's speed."""

from __future__ import annotations

import logging
import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import REFERENCE, kafka_tool, kafka_tools_missing, metric_sum
from harness import OP_TIMEOUT_S, produce_confluent, wait_until

log = logging.getLogger("e2e")

pytestmark = pytest.mark.skipif(bool(kafka_tools_missing()),
                                reason=f"kafka-configs.sh is Kafka's tool: {kafka_tools_missing()}")


def configs(tmp_path, bootstrap: str, *args: str, check: bool = True, props=None):
    extra = ("--command-config", str(props)) if props else ()
    proc = kafka_tool(tmp_path, "kafka.admin.ConfigCommand", "--bootstrap-server", bootstrap,
                      *extra, *args, check=check)
    return proc


def produce_throttled(bootstrap: str, topic: str, client_id: str, n: int, size: int,
                      **conf) -> tuple[float, list[float]]:
    """Produces n records of `size` bytes as `client_id`; the seconds it took
    and the throttle times librdkafka reported."""
    throttles: list[float] = []
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "client.id": client_id,
                  "linger.ms": 0, "batch.size": size * 4,
                  "throttle_cb": lambda e: throttles.append(e.throttle_time), **conf})
    started = time.monotonic()
    reports = produce_confluent(p, topic, [{"value": b"q" * size, "partition": 0}
                                           for _ in range(n)])
    p.poll(0)
    took = time.monotonic() - started
    assert all(r.error is None for r in reports), [r.error for r in reports if r.error][:3]
    return took, [t for t in throttles if t > 0]


def test_quotas_hold_back_clients_over_them(broker, topic, tmp_path):
    b = broker
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    a.create_topics([NewTopic(topic, 1, 1)])[topic].result(OP_TIMEOUT_S)

    log.info("phase: kafka-configs.sh gives client id 'slow' a produce quota of 10 kB/s")
    out = configs(tmp_path, b.bootstrap, "--alter", "--add-config", "producer_byte_rate=10240",
                  "--entity-type", "clients", "--entity-name", "slow").stdout
    assert "Completed updating config for client slow." in out, out
    out = configs(tmp_path, b.bootstrap, "--describe", "--entity-type", "clients",
                  "--entity-name", "slow").stdout
    log.info("describe: %s", out.strip())
    assert "producer_byte_rate=10240.0" in out, out

    log.info("phase: 'slow' produces 160 kB: told to back off and held back; the rate over the "
             "10 s minimum window allows it 10240 B/s")
    took, throttles = produce_throttled(b.bootstrap, topic, "slow", 40, 4000)
    log.info("slow: %.1f s, throttle times reported %s", took, throttles)
    assert throttles, "librdkafka was never told to back off"
    # 160 kB at 10240 B/s: the broker holds the client back for at least
    # 160000/10240 - 10 (the window the first burst is spread over) = 5.6 s.
    assert took >= 5.0, took
    assert metric_sum(b, "runnel_quota_throttled_requests_total") >= 1
    assert metric_sum(b, "runnel_quota_throttle_seconds_total") >= 5.0

    log.info("phase: another client id has no quota and is never told to back off")
    _, throttles = produce_throttled(b.bootstrap, topic, "fast", 40, 4000)
    assert not throttles, throttles

    log.info("phase: a default consumer quota (20 kB/s) holds back fetches over it")
    configs(tmp_path, b.bootstrap, "--alter", "--add-config", "consumer_byte_rate=20480",
            "--entity-type", "clients", "--entity-default")
    from confluent_kafka import Consumer, TopicPartition
    fetch_throttles: list[float] = []
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "quota-readers",
                  "client.id": "reader", "enable.auto.commit": False,
                  "throttle_cb": lambda e: fetch_throttles.append(e.throttle_time)})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        read = []

        def read_all() -> bool:
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                read.append(msg.offset())
            return len(read) >= 80
        wait_until(read_all, timeout=OP_TIMEOUT_S, interval=0, what="80 records read")
        wait_until(lambda: c.poll(0.2) is None and bool(fetch_throttles), timeout=60,
                   interval=0, what="the consumer told to back off")
    finally:
        c.close()
    log.info("consumer throttle times: %s", fetch_throttles[:5])
    assert metric_sum(b, "runnel_quota_throttled_requests_total") >= 2

    log.info("phase: --delete-config removes them; describe shows none")
    configs(tmp_path, b.bootstrap, "--alter", "--delete-config", "producer_byte_rate",
            "--entity-type", "clients", "--entity-name", "slow")
    configs(tmp_path, b.bootstrap, "--alter", "--delete-config", "consumer_byte_rate",
            "--entity-type", "clients", "--entity-default")
    out = configs(tmp_path, b.bootstrap, "--describe", "--entity-type", "clients").stdout
    assert "byte_rate" not in out, out

    log.info("phase: quotas Runnel does not enforce, and bad values, are refused")
    for bad, says in [("request_percentage=50", "does not enforce"),
                      ("producer_byte_rate=-5", "positive"),
                      ("producer_byte_rate=1.5", "whole number")]:
        proc = configs(tmp_path, b.bootstrap, "--alter", "--add-config", bad,
                       "--entity-type", "clients", "--entity-name", "slow", check=False)
        log.info("%s: exit %s: %s", bad, proc.returncode, (proc.stdout + proc.stderr)[-300:])
        assert proc.returncode != 0 and says in proc.stdout + proc.stderr, bad


def test_a_users_quota_covers_all_its_clients(broker_factory, topic, tmp_path):
    b = broker_factory(settings={"listener.security.protocol": "SASL_PLAINTEXT",
                                 "sasl.enabled.mechanisms": "SCRAM-SHA-256"},
                       extra_args=["--add-scram",
                                   "SCRAM-SHA-256=[name=admin,password=admin-secret];"
                                   "SCRAM-SHA-256=[name=alice,password=alice-secret]"])
    props = tmp_path / "admin.properties"
    props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="admin" password="admin-secret";\n')
    sasl = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-256"}
    alice = {**sasl, "sasl.username": "alice", "sasl.password": "alice-secret"}
    admin = {**sasl, "sasl.username": "admin", "sasl.password": "admin-secret"}
    a = AdminClient({"bootstrap.servers": b.bootstrap, **admin})
    a.create_topics([NewTopic(topic, 1, 1)])[topic].result(OP_TIMEOUT_S)

    log.info("phase: user alice gets 10 kB/s; her two client ids share it, admin is free")
    configs(tmp_path, b.bootstrap, "--alter", "--add-config", "producer_byte_rate=10240",
            "--entity-type", "users", "--entity-name", "alice", props=props)
    out = configs(tmp_path, b.bootstrap, "--describe", "--entity-type", "users",
                  "--entity-name", "alice", props=props).stdout
    assert "producer_byte_rate=10240.0" in out, out
    took_a, throttles_a = produce_throttled(b.bootstrap, topic, "alice-a", 20, 4000, **alice)
    took_b, throttles_b = produce_throttled(b.bootstrap, topic, "alice-b", 20, 4000, **alice)
    log.info("alice-a %.1f s %s; alice-b %.1f s %s", took_a, throttles_a, took_b, throttles_b)
    # 160 kB over both clients at 10240 B/s: together held back >= 5 s.
    assert throttles_b and took_a + took_b >= 5.0, (took_a, took_b)
    _, throttles = produce_throttled(b.bootstrap, topic, "admin-tool", 40, 4000, **admin)
    assert not throttles, throttles


def create_topics_raw(w, version: int, name: str, partitions: int):
    """One CreateTopics request at `version` (kafka-python's classes); the
    topic's result and the response's throttle time."""
    from kafka.protocol.admin import CreateTopicsRequest, CreateTopicsResponse
    req = CreateTopicsRequest(topics=[CreateTopicsRequest.CreatableTopic(
        name=name, num_partitions=partitions, replication_factor=1, assignments=[],
        configs=[])], timeout_ms=30_000, validate_only=False)
    resp = w.call(req, CreateTopicsResponse, version)
    return resp.topics[0], resp.throttle_time_ms


def test_a_controller_mutation_quota_refuses_new_clients_and_throttles_old_ones(broker, tmp_path):
    from group_helpers import Wire

    b = broker
    log.info("phase: kafka-configs.sh gives client id 'mutator' 0.5 partition mutations a second "
             "(KIP-599): a burst of 5.5 over the 11 s window")
    configs(tmp_path, b.bootstrap, "--alter", "--add-config", "controller_mutation_rate=0.5",
            "--entity-type", "clients", "--entity-name", "mutator")
    out = configs(tmp_path, b.bootstrap, "--describe", "--entity-type", "clients",
                  "--entity-name", "mutator").stdout
    assert "controller_mutation_rate=0.5" in out, out

    # A throttled answer holds its connection back (KIP-219), so each request
    # after one goes on a connection of its own.
    with Wire(b.host, b.port, client_id="mutator") as first, \
            Wire(b.host, b.port, client_id="mutator") as second, \
            Wire(b.host, b.port, client_id="mutator") as third, \
            Wire(b.host, b.port, client_id="unlimited") as other:
        log.info("phase: 30 partitions at once go through (the quota was not in debt) and put it "
                 "about 49 s in debt: the answer says to back off")
        result, throttle = create_topics_raw(first, 7, "mutation-burst", 30)
        assert result.error_code == 0, result
        assert throttle > 30_000, throttle

        log.info("phase: while in debt, a new client (CreateTopics v7) is refused with "
                 "THROTTLING_QUOTA_EXCEEDED, on another connection too; the topic is not made")
        result, throttle = create_topics_raw(second, 7, "mutation-refused", 1)
        assert result.error_code == 89, result
        assert "controller_mutation_rate" in (result.error_message or ""), result
        assert throttle > 30_000, throttle
        assert "mutation-refused" not in AdminClient(
            {"bootstrap.servers": b.bootstrap}).list_topics(timeout=OP_TIMEOUT_S).topics

        log.info("phase: an old client (CreateTopics v5) is not refused, only told to back off")
        result, throttle = create_topics_raw(third, 5, "mutation-old-client", 1)
        assert result.error_code == 0, result
        assert throttle > 30_000, throttle

        log.info("phase: another client id has no quota")
        result, throttle = create_topics_raw(other, 7, "mutation-other", 30)
        assert result.error_code == 0 and throttle == 0, (result, throttle)
    assert metric_sum(b, "runnel_quota_throttled_requests_total") >= 2


def test_kafka_configs_sets_and_removes_replication_throttle_rates(broker, tmp_path):
    """The KIP-73 rates are dynamic broker configs, per broker or cluster-wide,
    as kafka-configs.sh --entity-type brokers sets, describes and deletes them;
    a static setting is refused with a message naming it."""
    b = broker
    me = str(b.node_id)
    leader, follower = "leader.replication.throttled.rate", "follower.replication.throttled.rate"

    def describe(*entity: str) -> str:
        return configs(tmp_path, b.bootstrap, "--describe", "--entity-type", "brokers",
                       *entity).stdout

    log.info("phase: a cluster-wide follower rate and this broker's own leader rate")
    configs(tmp_path, b.bootstrap, "--alter", "--entity-type", "brokers", "--entity-default",
            "--add-config", f"{follower}=5000")
    configs(tmp_path, b.bootstrap, "--alter", "--entity-type", "brokers", "--entity-name", me,
            "--add-config", f"{leader}=7000")
    # (a broker takes what the controller committed in its own time)
    wait_until(lambda: f"{follower}=5000" in describe("--entity-default"), timeout=30,
               what="the default follower rate in kafka-configs --describe")
    wait_until(lambda: f"{leader}=7000" in describe("--entity-name", me), timeout=30,
               what="the broker's leader rate in kafka-configs --describe")
    out = describe("--entity-name", me)
    log.info("kafka-configs --describe --entity-name %s: %s", me, out.strip())
    assert f"DYNAMIC_BROKER_CONFIG:{leader}=7000" in out, out
    # (kafka-configs lists a broker's own dynamic configs, not the defaults it takes)
    assert follower not in out, out

    if not REFERENCE:  # (Kafka has more dynamic broker configs than Runnel)
        log.info("phase: a static setting is refused, naming it")
        refused = configs(tmp_path, b.bootstrap, "--alter", "--entity-type", "brokers",
                          "--entity-name", me, "--add-config", "log.retention.ms=1000",
                          check=False)
        assert refused.returncode != 0
        assert "log.retention.ms" in refused.stdout + refused.stderr, \
            refused.stdout + refused.stderr

    log.info("phase: --delete-config removes both")
    configs(tmp_path, b.bootstrap, "--alter", "--entity-type", "brokers", "--entity-name", me,
            "--delete-config", leader)
    configs(tmp_path, b.bootstrap, "--alter", "--entity-type", "brokers", "--entity-default",
            "--delete-config", follower)
    wait_until(lambda: leader not in describe("--entity-name", me)
               and follower not in describe("--entity-default"), timeout=30,
               what="no throttle rates in kafka-configs --describe")
