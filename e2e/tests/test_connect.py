"""Kafka Connect (distributed mode, Kafka's own worker) runs against Runnel:
it creates its internal topics compacted and checks that they are, joins
its group with the Connect protocol, runs Kafka's FileStreamSource
connector, and after a restart resumes from the source offsets it stored in
its compacted offsets topic, so no line is copied twice."""

from __future__ import annotations

import json
import logging
import subprocess
import urllib.request
from pathlib import Path
from typing import Any, Optional

import pytest

import harness
from cluster import deadline, kafka_libs, kafka_tools_missing
from harness import (admin, consume_confluent, free_ports, http_get, terminate, unique_topic,
                     wait_until, watermarks)

log = logging.getLogger("e2e")

CONNECTOR = "lines"


class ConnectWorker:
    """One Kafka Connect distributed worker process."""

    def __init__(self, workdir: Path, bootstrap: str, group: str):
        self.workdir = workdir
        self.port = free_ports(1)[0]
        self.config = workdir / "worker.properties"
        self.config.write_text("\n".join([
            f"bootstrap.servers={bootstrap}",
            f"group.id={group}",
            "key.converter=org.apache.kafka.connect.storage.StringConverter",
            "value.converter=org.apache.kafka.connect.storage.StringConverter",
            f"config.storage.topic={group}-configs",
            f"offset.storage.topic={group}-offsets",
            f"status.storage.topic={group}-status",
            "config.storage.replication.factor=1",
            "offset.storage.replication.factor=1",
            "status.storage.replication.factor=1",
            "offset.storage.partitions=1",
            "status.storage.partitions=1",
            "offset.flush.interval.ms=500",
            f"listeners=http://127.0.0.1:{self.port}",
            "",
        ]))
        self.log4j = workdir / "connect-log4j.properties"
        self.log4j.write_text("log4j.rootLogger=INFO, file\n"
                              "log4j.appender.file=org.apache.log4j.FileAppender\n"
                              f"log4j.appender.file.File={workdir / 'connect.log'}\n"
                              "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
                              "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n")
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ConnectWorker":
        argv = ["java", "-Xmx256m", f"-Dlog4j.configuration=file:{self.log4j}",
                "-cp", f"{kafka_libs()}/*", "org.apache.kafka.connect.cli.ConnectDistributed",
                str(self.config)]
        log.info("starting a Connect worker: %s", " ".join(argv))
        out = open(self.workdir / "connect.out", "ab")
        self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, \
                f"the Connect worker exited {self.proc and self.proc.returncode}:\n{self.log_tail()}"
            status, _ = http_get(f"{self.url}/connectors")
            return status == 200

        wait_until(ready, timeout=deadline(120), interval=0.5, ignore=(OSError,),
                   what="the Connect worker's REST API")
        return self

    def request(self, method: str, path: str, body: Optional[dict] = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with harness._NO_PROXY_OPENER.open(req, timeout=30) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
        self.proc = None

    def log_tail(self, lines: int = 60) -> str:
        path = self.workdir / "connect.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def lines_in(bootstrap: str, topic: str) -> list[str]:
    low, high = watermarks(bootstrap, topic, 0)
    if high == low:
        return []
    return [r.value.decode() for r in consume_confluent(bootstrap, topic, {0: low}, {0: high})]


@pytest.mark.timeout(deadline(400))
def test_kafka_connect_copies_a_file_and_resumes_from_its_compacted_offsets(broker_factory,
                                                                            tmp_path):
    why = kafka_tools_missing()
    if why:
        pytest.skip(why)
    if not list(kafka_libs().glob("connect-file-*.jar")):
        pytest.skip(f"needs Kafka's connect-file jar in {kafka_libs()}: run e2e/reference/setup-kafka.sh")
    b = broker_factory({"log.cleaner.backoff.ms": 500})
    bs = b.bootstrap
    group = unique_topic("connect")
    topic = unique_topic("lines")
    source = tmp_path / "source.txt"
    first = [f"line {i}" for i in range(50)]
    source.write_text("".join(f"{line}\n" for line in first))

    worker = ConnectWorker(tmp_path, bs, group)
    try:
        log.info("phase: a Connect worker starts on Runnel and creates its compacted topics")
        worker.start()
        a = admin(bs)
        from confluent_kafka.admin import ConfigResource
        for suffix in ("configs", "offsets", "status"):
            resource = ConfigResource(ConfigResource.Type.TOPIC, f"{group}-{suffix}")
            configs = a.describe_configs([resource])[resource].result(30)
            assert configs["cleanup.policy"].value == "compact", (suffix, configs["cleanup.policy"])

        log.info("phase: FileStreamSource copies %d lines into %s", len(first), topic)
        worker.request("POST", "/connectors", {"name": CONNECTOR, "config": {
            "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
            "tasks.max": "1", "file": str(source), "topic": topic}})

        def running() -> bool:
            status = worker.request("GET", f"/connectors/{CONNECTOR}/status")
            return status["connector"]["state"] == "RUNNING" and \
                [t["state"] for t in status["tasks"]] == ["RUNNING"]

        wait_until(running, timeout=deadline(60), interval=0.5, ignore=(OSError, KeyError),
                   what="the connector and its task RUNNING")
        wait_until(lambda: lines_in(bs, topic) == first, timeout=deadline(60), interval=1,
                   ignore=(Exception,), what=f"{len(first)} lines in {topic}")
        # The source offsets reach the offsets topic every offset.flush.interval.ms.
        wait_until(lambda: watermarks(bs, f"{group}-offsets", 0)[1] > 0,
                   timeout=deadline(60), interval=0.5, what="source offsets stored")

        log.info("phase: stop the worker, append lines, start it again: it resumes from the "
                 "stored source offset")
        worker.stop()
        second = [f"more {i}" for i in range(30)]
        with source.open("a") as f:
            f.write("".join(f"{line}\n" for line in second))
        worker.start()
        wait_until(lambda: len(lines_in(bs, topic)) >= len(first) + len(second),
                   timeout=deadline(90), interval=1, ignore=(Exception,),
                   what=f"{len(second)} more lines in {topic}")
        got = lines_in(bs, topic)
        assert got == first + second, (
            f"{len(got)} lines, want {len(first) + len(second)}: duplicates "
            f"{sorted({x for x in got if got.count(x) > 1})[:5]}")
        assert running()
    except Exception:
        log.error("Connect worker log:\n%s", worker.log_tail())
        raise
    finally:
        worker.stop()
