"""The process contract: readiness, metrics, clean shutdown on SIGTERM, and
a restart that keeps the data."""

import logging

from harness import (confluent_producer, consume_kafka_python, create_topic, http_get,
                     produce_confluent, unique_topic, wait_for_topic, watermarks)

log = logging.getLogger("e2e")


def test_health_metrics_sigterm_and_restart(broker_factory, request):
    b = broker_factory()
    topic = unique_topic(request.node.name)

    log.info("phase: /health answers 200 and /metrics serves Prometheus text")
    assert http_get(f"http://{b.metrics_addr}/health")[0] == 200
    status, body = http_get(f"http://{b.metrics_addr}/metrics")
    assert status == 200
    text = body.decode()
    assert any(line and not line.startswith("#") for line in text.splitlines()), text[:2000]

    log.info("phase: write 30 records to topic %s", topic)
    create_topic(b.bootstrap, topic, partitions=2)
    reports = produce_confluent(confluent_producer(b.bootstrap), topic,
                                [{"value": b"v%d" % i, "partition": i % 2} for i in range(30)])
    assert all(d.error is None for d in reports)

    log.info("phase: SIGTERM stops the broker cleanly, with exit code 0")
    assert b.stop() == 0

    log.info("phase: restarted on the same data dir, the broker serves the same records")
    b.start()
    wait_for_topic(b.bootstrap, topic, 2)
    for p in range(2):
        assert watermarks(b.bootstrap, topic, p) == (0, 15)
    got = consume_kafka_python(b.bootstrap, topic, {0: 0, 1: 0}, {0: 15, 1: 15})
    assert sorted((r.partition, r.offset, r.value) for r in got) == sorted(
        (d.partition, d.offset, d.value) for d in reports)

    log.info("phase: a second SIGTERM also exits 0")
    assert b.stop() == 0
