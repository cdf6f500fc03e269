"""The Java clients and command-line tools of a current Kafka release (4.4,
from e2e/kafka4) against Runnel, unchanged: kafka-topics, the producer
performance tool (idempotent, and transactional), the console consumer with
the classic and the consumer (KIP-848) group protocols and with
read_committed, kafka-consumer-groups and kafka-transactions. The rest of
the suite drives Kafka 3.9.1's tools; these are what users of a 4.x client
run today."""

from __future__ import annotations

import logging
import re

import pytest

from cluster import kafka4_libs, kafka_tool
from group_helpers import GROUP_SETTINGS

log = logging.getLogger("e2e")

TOOLS = "org.apache.kafka.tools"


@pytest.fixture
def tool(tmp_path):
    libs = kafka4_libs()
    if not list(libs.glob("kafka-tools-*.jar")):
        pytest.fail(f"needs Kafka 4.x's jars in {libs}: run e2e/kafka4/setup.sh")

    def run(main_class: str, *args: str, check: bool = True):
        return kafka_tool(tmp_path, f"{TOOLS}.{main_class}", *args, libs=libs, check=check)

    return run


def test_kafka4_tools_produce_consume_and_manage_groups(broker_factory, topic, tool):
    b = broker_factory(settings={**GROUP_SETTINGS, "group.consumer.heartbeat.interval.ms": 500})
    bs = ["--bootstrap-server", b.bootstrap]

    log.info("phase: kafka-topics 4.4 creates, widens and describes a topic")
    tool("TopicCommand", *bs, "--create", "--topic", topic, "--partitions", "2")
    tool("TopicCommand", *bs, "--alter", "--topic", topic, "--partitions", "3")
    out = tool("TopicCommand", *bs, "--describe", "--topic", topic).stdout
    assert "PartitionCount: 3" in out, out

    log.info("phase: the 4.4 producer (idempotent, acks=all) writes 3000 records")
    out = tool("ProducerPerformance", "--topic", topic, "--num-records", "3000",
               "--record-size", "100", "--throughput", "-1",
               "--command-property", f"bootstrap.servers={b.bootstrap}", "acks=all").stdout
    assert "3000 records sent" in out, out

    for protocol in ("classic", "consumer"):
        group = f"{topic}-{protocol}"
        log.info("phase: the 4.4 console consumer reads them all, group.protocol=%s", protocol)
        proc = tool("consumer.ConsoleConsumer", *bs, "--topic", topic, "--group", group,
                    "--from-beginning", "--max-messages", "3000",
                    "--command-property", f"group.protocol={protocol}")
        assert len(proc.stdout.splitlines()) == 3000
        out = tool("consumer.group.ConsumerGroupCommand", *bs, "--describe", "--group",
                   group).stdout
        rows = [l.split() for l in out.splitlines() if l.startswith(group)]
        assert len(rows) == 3 and all(r[5] == "0" for r in rows), out
        assert sum(int(r[3]) for r in rows) == 3000, out

    log.info("phase: kafka-consumer-groups 4.4 lists both, with their types")
    out = tool("consumer.group.ConsumerGroupCommand", *bs, "--list", "--type").stdout
    types = dict(l.split()[:2] for l in out.splitlines()[1:] if l.strip())
    assert types.get(f"{topic}-classic") == "Classic", out
    assert types.get(f"{topic}-consumer") == "Consumer", out


def test_kafka4_transactions(broker_factory, topic, tool):
    b = broker_factory(settings={**GROUP_SETTINGS, "transaction.state.log.num.partitions": 5})
    bs = ["--bootstrap-server", b.bootstrap]
    tool("TopicCommand", *bs, "--create", "--topic", topic, "--partitions", "2")

    log.info("phase: the 4.4 producer writes 2000 records in transactions of 100 ms")
    out = tool("ProducerPerformance", "--topic", topic, "--num-records", "2000",
               "--record-size", "50", "--throughput", "-1",
               "--transactional-id", f"{topic}-txn", "--transaction-duration-ms", "100",
               "--command-property", f"bootstrap.servers={b.bootstrap}").stdout
    assert "2000 records sent" in out, out

    log.info("phase: a read_committed console consumer reads every committed record")
    proc = tool("consumer.ConsoleConsumer", *bs, "--topic", topic, "--from-beginning",
                "--max-messages", "2000", "--isolation-level", "read_committed",
                "--timeout-ms", "60000")
    assert len(proc.stdout.splitlines()) == 2000

    log.info("phase: kafka-transactions 4.4 lists and describes the transactional id")
    out = tool("TransactionsCommand", *bs, "list").stdout
    assert f"{topic}-txn" in out, out
    out = tool("TransactionsCommand", *bs, "describe", "--transactional-id",
               f"{topic}-txn").stdout
    assert re.search(r"CompleteCommit|Empty", out), out
