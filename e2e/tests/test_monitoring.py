"""The monitoring the Helm chart ships, against a real Prometheus scraping real
brokers: every panel of the Grafana dashboard is a query Prometheus answers,
the alert rules load, and the ISR-health panels and alerts follow a broker
that dies and comes back. (Consumer lag, which the operator exports, is
checked the same way in test_operator.py.)
"""

from __future__ import annotations

import logging

import pytest

from cluster import REFERENCE, deadline
from harness import confluent_producer, produce_confluent, unique_topic, wait_until
from prometheus import ALERT_RULES, alert_names, check_rules, dashboard_queries, prometheus_missing

log = logging.getLogger("e2e")

pytestmark = pytest.mark.skipif(REFERENCE, reason="Runnel's own metrics; the reference has none")

UNDER_REPLICATED = "Under-replicated partitions"
OFFLINE = "Offline partitions"
BROKERS = "Brokers reporting"
QUORUM_LEADERS = "Controller quorum leaders"
BYTES_IN = "Bytes in by topic"


def test_the_alert_rules_pass_promtool():
    why = prometheus_missing()
    if why:
        pytest.skip(why)
    out = check_rules(ALERT_RULES)
    names = alert_names()
    assert f"SUCCESS: {len(names)} rules found" in out, out
    assert {"RunnelOfflinePartitions", "RunnelUnderReplicatedPartitions",
            "RunnelNoControllerLeader", "RunnelConsumerGroupLagGrowing",
            "RunnelLogCleanerFailing", "RunnelSaslAuthenticationFailures",
            "RunnelTlsCertificateReloadFailing"} <= set(names)


@pytest.mark.timeout(deadline(300))
def test_the_dashboard_and_alerts_follow_isr_health(cluster_factory, prometheus_factory, request):
    c = cluster_factory(n=3)
    topic = unique_topic(request.node.name)
    c.create_topic(topic, partitions=3, replication_factor=3, config={"min.insync.replicas": 2})
    prom = prometheus_factory({"runnel": [b.metrics_addr for b in c.brokers]})
    wait_until(lambda: prom.targets_up() == 3, timeout=60, what="three broker targets up")

    log.info("phase: the topic's byte counters start at 0 before any record, so rate() sees "
             "the first records")
    wait_until(lambda: prom.series(f'sum by (topic) (runnel_bytes_in_total{{topic="{topic}"}})',
                                   "topic").get(topic) == 0, timeout=60,
               what=f"the bytes-in counter of {topic} scraped at 0")

    log.info("phase: records flow; every dashboard query is answered, with the healthy values")
    producer = confluent_producer(c.bootstrap, acks="all")
    produce_confluent(producer, topic, [{"value": f"r{i}".encode() * 20} for i in range(300)])
    panels = dashboard_queries()
    for title, exprs in panels.items():
        for expr in exprs:
            prom.query(expr)  # raises on a query Prometheus refuses
    [under], [offline], [brokers], [leaders] = (panels[t] for t in
                                                 (UNDER_REPLICATED, OFFLINE, BROKERS, QUORUM_LEADERS))
    wait_until(lambda: prom.value(brokers) == 3, timeout=60, what="3 brokers reporting")
    wait_until(lambda: prom.value(leaders) == 1, timeout=60, what="one quorum leader")
    assert prom.value(under) == 0
    assert prom.value(offline) == 0
    [bytes_in] = panels[BYTES_IN]
    wait_until(lambda: prom.series(bytes_in, "topic").get(topic, 0) > 0, timeout=60,
               what=f"a bytes-in rate for {topic}")
    assert "RunnelUnderReplicatedPartitions" not in prom.alerts()

    log.info("phase: broker 3 dies: the panels show under-replicated partitions, the alert is raised")
    c.kill9(3)
    produce_confluent(producer, topic, [{"value": b"after"} for _ in range(30)])
    # Brokers 1 and 2 lead every partition once 3 is fenced; each has 3 as a replica.
    wait_until(lambda: prom.value(under) == 3, timeout=deadline(90),
               what="3 under-replicated partitions on the dashboard")
    wait_until(lambda: prom.value(brokers) == 2, timeout=60, what="2 brokers reporting")
    assert prom.value(offline) == 0
    state = wait_until(lambda: prom.alerts().get("RunnelUnderReplicatedPartitions"),
                       timeout=60, what="RunnelUnderReplicatedPartitions pending")
    assert state in ("pending", "firing")

    log.info("phase: broker 3 returns and catches up: back to none, the alert clears")
    c.restart(3)
    wait_until(lambda: prom.value(under) == 0 and prom.value(brokers) == 3,
               timeout=deadline(120), what="no under-replicated partitions, 3 brokers reporting")
    wait_until(lambda: "RunnelUnderReplicatedPartitions" not in prom.alerts(), timeout=60,
               what="the alert cleared")
    producer.flush(10)
