"""Kafka Streams with exactly-once processing (`exactly_once_v2`) on Runnel:
a word count (e2e/java/src/WordCount.java: a repartition topic, an
in-memory store backed by a compacted changelog topic, one transaction per
commit) is killed with kill -9 mid-stream and restarted, and a read_committed
consumer of its output sees every word's counts go 1, 2, 3, ... with none
repeated or skipped, ending at the exact totals."""

from __future__ import annotations

import logging
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from cluster import deadline
from harness import (REPO_ROOT, admin, confluent_producer, create_topic, produce_confluent,
                     terminate, unique_topic, wait_until)

log = logging.getLogger("e2e")

pytestmark = pytest.mark.transactions

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
         "india", "juliet", "kilo", "lima"]
LINES = 1500


def java_classpath() -> str:
    setup = subprocess.run([str(REPO_ROOT / "e2e" / "setup-java.sh")], capture_output=True,
                           text=True, timeout=deadline(600))
    if setup.returncode != 0:
        raise AssertionError(f"setup-java.sh failed:\n{setup.stdout}\n{setup.stderr}")
    return setup.stdout.strip().splitlines()[-1].removeprefix("classpath: ")


def committed_counts(bootstrap: str, topic: str, timeout: float = 60.0) -> dict[str, list[int]]:
    """Every count a read_committed consumer sees in `topic` (one
    partition), per word in offset order, up to the last stable offset."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"e2e-read-{uuid.uuid4().hex[:8]}",
                  "isolation.level": "read_committed", "enable.partition.eof": True,
                  "enable.auto.commit": False})
    counts: dict[str, list[int]] = {}
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        end = time.monotonic() + timeout
        while True:
            assert time.monotonic() < end, f"no end of {topic} within {timeout}s"
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    return counts
                assert not msg.error().fatal(), msg.error()
                continue
            counts.setdefault(msg.key().decode(), []).append(int(msg.value()))
    finally:
        c.close()


class WordCount:
    def __init__(self, classpath: str, bootstrap: str, app: str, source: str, sink: str,
                 workdir: Path):
        self.argv = ["java", "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                     "-cp", classpath, "WordCount", bootstrap, app, source, sink,
                     str(workdir / "state")]
        self.out = workdir / "wordcount.out"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log.info("starting %s", " ".join(self.argv))
        with open(self.out, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)

    def wait_running(self) -> None:
        start = self.out.read_text().count("STATE RUNNING")

        def running() -> bool:
            assert self.proc is not None and self.proc.poll() is None, \
                f"WordCount exited {self.proc and self.proc.returncode}:\n{self.tail()}"
            return self.out.read_text().count("STATE RUNNING") > start

        wait_until(running, timeout=deadline(120), interval=0.5, what="WordCount RUNNING")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)

    def tail(self) -> str:
        return "\n".join(self.out.read_text(errors="replace").splitlines()[-40:])


@pytest.mark.timeout(deadline(600))
def test_kafka_streams_counts_exactly_once_across_a_kill(broker_factory, tmp_path):
    classpath = java_classpath()
    b = broker_factory({"transaction.state.log.num.partitions": 5,
                        "offsets.topic.num.partitions": 5,
                        "log.cleaner.backoff.ms": 500})
    bs = b.bootstrap
    app = unique_topic("wordcount")
    source, sink = f"{app}-lines", f"{app}-counts"
    create_topic(bs, source, partitions=2)
    create_topic(bs, sink, partitions=1)
    rng = random.Random(7)
    lines = [" ".join(rng.choice(WORDS) for _ in range(5)) for _ in range(LINES)]
    expected = Counter(word for line in lines for word in line.split())
    producer = confluent_producer(bs)

    def produce(part: list[str]) -> None:
        reports = produce_confluent(producer, source, [{"value": line.encode()} for line in part])
        assert all(d.error is None for d in reports), [d.error for d in reports if d.error][:3]

    streams = WordCount(classpath, bs, app, source, sink, tmp_path)
    try:
        log.info("phase: %d lines in, WordCount (exactly_once_v2) starts", LINES // 2)
        produce(lines[:LINES // 2])
        streams.start()
        streams.wait_running()
        wait_until(lambda: sum(len(v) for v in committed_counts(bs, sink).values()) > 500,
                   timeout=deadline(120), interval=0.5, what="some committed counts")

        log.info("phase: kill -9 WordCount mid-stream, more lines, start it again")
        streams.kill9()
        produce(lines[LINES // 2:])
        streams.start()
        streams.wait_running()

        log.info("phase: the committed counts reach the exact totals, each step once")
        got: dict[str, list[int]] = {}

        def totals_reached() -> bool:
            got.clear()
            got.update(committed_counts(bs, sink))
            return {w: c[-1] for w, c in got.items()} == dict(expected)

        try:
            wait_until(totals_reached, timeout=deadline(180), interval=1,
                       what="the committed counts to reach the totals")
        except AssertionError as e:
            last = {w: c[-1] for w, c in got.items()}
            raise AssertionError(f"{e}: last counts {last}, want {dict(expected)}\n"
                                 f"{streams.tail()}") from None
        for word, seen in got.items():
            assert seen == list(range(1, expected[word] + 1)), (
                f"{word}: counts {seen[:10]}... are not 1..{expected[word]} (a repeat is a "
                "record processed twice)")

        log.info("phase: the store's changelog is compacted")
        from confluent_kafka.admin import ConfigResource
        changelog = ConfigResource(ConfigResource.Type.TOPIC, f"{app}-counts-changelog")
        a = admin(bs)
        configs = a.describe_configs([changelog])[changelog].result(30)
        assert configs["cleanup.policy"].value == "compact", configs["cleanup.policy"]
    finally:
        streams.stop()
