"""kcat (librdkafka's command-line client, from Debian) against the broker."""

import json
import logging
import re

from harness import create_topic, kcat, unique_topic, wait_until

log = logging.getLogger("e2e")


def test_kcat_produce_consume_and_metadata(broker, topic):
    lines = [f"line {i}: the quick brown fox {i * 7}" for i in range(50)]

    log.info("phase: create topic %s with 1 partition", topic)
    create_topic(broker.bootstrap, topic, partitions=1)

    log.info("phase: kcat -P writes %d lines", len(lines))
    kcat("-P", "-b", broker.bootstrap, "-t", topic, input=("\n".join(lines) + "\n").encode())

    log.info("phase: kcat -C -o beginning -e reads the same lines back, in order")
    out = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e")
    assert out.stdout.decode().splitlines() == lines

    log.info("phase: the lines sit at offsets 0..%d of partition 0", len(lines) - 1)
    out = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e",
               "-f", "%p %o %s\\n")
    got = [ln.split(" ", 2) for ln in out.stdout.decode().splitlines()]
    assert [(int(p), int(o), s) for p, o, s in got] == [(0, i, ln) for i, ln in enumerate(lines)]

    log.info("phase: kcat -L -J lists the broker at its advertised address and the topic")
    md = json.loads(kcat("-L", "-b", broker.bootstrap, "-J").stdout)
    brokers = {b["id"]: b["name"] for b in md["brokers"]}
    assert brokers == {broker.node_id: broker.bootstrap}, md["brokers"]
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics, sorted(topics)
    t = topics[topic]
    assert "error" not in t, t
    assert [p["partition"] for p in t["partitions"]] == [0]
    assert t["partitions"][0]["leader"] == broker.node_id

    log.info("phase: plain kcat -L (one topic) names the broker and the topic")
    text = kcat("-L", "-b", broker.bootstrap, "-t", topic).stdout.decode()
    assert re.search(rf"broker {broker.node_id} at {re.escape(broker.bootstrap)}", text), text
    assert f'topic "{topic}" with 1 partitions' in text, text


def test_kcat_auto_creates_topic_with_num_partitions(broker_factory, request):
    b = broker_factory({"auto.create.topics.enable": "true", "num.partitions": 3})
    topic = unique_topic(request.node.name)

    log.info("phase: kcat -P to unknown topic %s with auto.create.topics.enable=true", topic)
    kcat("-P", "-b", b.bootstrap, "-t", topic, input=b"a\nb\nc\n")

    log.info("phase: metadata shows the topic with num.partitions=3 partitions, all led")
    def three_led_partitions():
        md = json.loads(kcat("-L", "-b", b.bootstrap, "-t", topic, "-J").stdout)
        t = [t for t in md["topics"] if t["topic"] == topic]
        return t and "error" not in t[0] and len(t[0]["partitions"]) == 3 and all(
            p["leader"] == b.node_id for p in t[0]["partitions"]) and t[0]
    wait_until(three_led_partitions, timeout=30, interval=0.5, what="auto-created topic metadata")

    log.info("phase: the three records are readable")
    out = kcat("-C", "-b", b.bootstrap, "-t", topic, "-o", "beginning", "-e")
    assert sorted(out.stdout.decode().splitlines()) == ["a", "b", "c"]


def test_kcat_no_auto_create_when_disabled(broker_factory, request):
    b = broker_factory({"auto.create.topics.enable": "false"})
    topic = unique_topic(request.node.name)

    log.info("phase: metadata for unknown topic %s reports it unknown and does not create it", topic)
    md = json.loads(kcat("-L", "-b", b.bootstrap, "-t", topic, "-J").stdout)
    t = [t for t in md["topics"] if t["topic"] == topic]
    assert t and "error" in t[0], md

    log.info("phase: a full metadata listing still does not include it")
    md = json.loads(kcat("-L", "-b", b.bootstrap, "-J").stdout)
    assert topic not in [t["topic"] for t in md["topics"]], md
