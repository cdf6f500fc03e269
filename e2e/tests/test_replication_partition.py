"""A network partition: the leader of a partition under a steady acks=all
write is cut off from the other brokers (its inter-broker link goes down)
while the test client can still reach it. It must stop acknowledging writes,
the majority side must elect a new leader that takes the writes, and when the
link comes back the cut-off broker must rejoin as a follower. The producer's
history is then checked like Jepsen's queue checker.

Each broker runs in a network namespace of its own (e2e/netns.sh): a
point-to-point link to the test process for its Kafka listener and metrics,
and a bridge shared with the other brokers for --rpc-listen (replication and
the controller quorum). Needs root and `ip netns`.
"""

from __future__ import annotations

import logging
import time

import pytest

from cluster import (ERROR_NAMES, Cluster, NetnsUnavailable, StreamProducer, assert_history,
                     deadline, fetch_once, produce_to, read_all, read_replica)
from harness import WaitTimeout, unique_topic, wait_until

log = logging.getLogger("e2e")

PARTITIONS = 3
MIN_ISR = {"min.insync.replicas": 2}
# librdkafka's produce timeout (also sent to the broker as the request's
# timeout): a request stuck at the cut-off leader is given up after this, and
# retried at the new leader.
REQUEST_TIMEOUT_MS = 10_000
# The timeout of the Produce requests sent straight to the cut-off broker.
PROBE_TIMEOUT_MS = 5_000
# Fetch errors a broker that is (or was) a replica may answer with meanwhile:
# NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH.
RETRIABLE_FETCH = {6, 74, 76}


def probe(c, node: int, topic: str, partitions: list[int], when: str) -> None:
    """Send one acks=all Produce per partition straight to broker `node`; none
    may be acknowledged."""
    acked = []
    for p in partitions:
        outcome, code = produce_to(c.broker(node), topic, p, b"probe-%d-%s" % (p, when.encode()),
                                   timeout_ms=PROBE_TIMEOUT_MS)
        log.info("Produce to partition %d at broker %d %s: %s, error %s (%s)", p, node, when,
                 outcome, code, ERROR_NAMES.get(code, "?"))
        if outcome == "answer" and code == 0:
            acked.append(p)
    assert not acked, (
        f"broker {node}, cut off from the other brokers, acknowledged acks=all writes to "
        f"partitions {acked} {when} (min.insync.replicas=2, replication factor 3)")


def netns_cluster_with_topic(cluster_factory, request) -> tuple[Cluster, str]:
    """A three-broker cluster in network namespaces (the test is skipped
    where they are unavailable) and a topic of PARTITIONS partitions,
    replication factor 3, min.insync.replicas 2."""
    try:
        c = cluster_factory(netns=True)
    except NetnsUnavailable as exc:
        pytest.skip(f"network namespaces unavailable here: {exc}")
    topic = unique_topic(request.node.name)
    log.info("phase: create %s: %d partitions, replication factor 3, min.insync.replicas 2",
             topic, PARTITIONS)
    c.create_topic(topic, PARTITIONS, 3, config=MIN_ISR)
    return c, topic


def start_producer(c: Cluster, topic: str, prefix: str) -> StreamProducer:
    """An idempotent acks=all producer writing numbered records round robin."""
    log.info("phase: an idempotent acks=all producer writes numbered records round robin")
    return StreamProducer(c.bootstrap, topic, prefix=prefix, partitions=PARTITIONS,
                          name="idempotent-producer",
                          conf={"request.timeout.ms": REQUEST_TIMEOUT_MS}).start()


@pytest.mark.timeout(deadline(420))
def test_cut_off_leader_stops_acknowledging_and_rejoins_as_follower(cluster_factory, request):
    c, topic = netns_cluster_with_topic(cluster_factory, request)
    md = c.metadata(topics=[topic])
    cut = md.partitions(topic)[0].leader
    led = md.led_by(topic, cut)
    majority = [i for i in c.ids if i != cut]
    log.info("broker %d leads partitions %s; brokers %s are the majority side", cut, led, majority)

    prod = start_producer(c, topic, prefix="e")
    served: dict[int, list[tuple[int, bytes]]] = {}
    try:
        prod.wait_acks(1500, timeout=60)

        log.info("phase: cut broker %d off from the other brokers (the client still reaches it)", cut)
        c.cut(cut)
        t_cut = time.monotonic()
        at_cut = prod.n_acked(led)

        log.info("phase: right after the cut, broker %d does not acknowledge acks=all writes sent "
                 "to it (its followers cannot fetch them)", cut)
        probe(c, cut, topic, led, "right after the cut")

        log.info("phase: the majority %s elects new leaders for partitions %s and drops broker %d "
                 "from their ISR", majority, led, cut)
        c.wait_leaders_off(topic, cut, via=majority, timeout=60)
        log.info("new leaders elected %.1fs after the cut", time.monotonic() - t_cut)
        c.wait_isr(topic, 2, partitions=PARTITIONS, via=majority, timeout=60,
                   what=f"ISR of 2 (without broker {cut}) on the majority side")
        log.info("majority view: %s", c.metadata(via=majority[0], topics=[topic]).describe(topic))
        log.info("cut-off broker's view: %s", c.metadata(via=cut, topics=[topic]).describe(topic))

        log.info("phase: after the election, the cut-off broker still does not acknowledge "
                 "acks=all writes sent to it")
        probe(c, cut, topic, led, "after the election")

        log.info("phase: what the cut-off broker serves to consumers now (up to its high "
                 "watermark) is kept for a check against the final log: no dirty reads")
        for p in led:
            err, hw, _ = fetch_once(c.broker(cut), topic, p, 0, max_wait_ms=0)
            assert err == 0 or err in RETRIABLE_FETCH, f"Fetch from broker {cut}: error {err}"
            served[p] = read_replica(c.broker(cut), topic, p, hw, timeout=60) if err == 0 else []
            log.info("broker %d serves partition %d up to its high watermark %d (%d records)",
                     cut, p, hw, len(served[p]))

        log.info("phase: the new leaders accept the producer's writes to partitions %s", led)
        prod.wait_acks(500, partitions=led, timeout=90,
                       what=f"500 acknowledgements on partitions {led} from their new leaders "
                            f"(had {at_cut} at the cut)")

        log.info("phase: reconnect broker %d: it rejoins as a follower, the ISR is 3 again, and "
                 "every broker (it too) agrees on the leaders", cut)
        c.heal(cut)
        c.wait_isr(topic, 3, partitions=PARTITIONS, timeout=120)
        last = {}

        def agreed() -> bool:
            views = {}
            for i in c.ids:
                m = c.metadata(via=i, topics=[topic], timeout=5)
                views[i] = m.leaders(topic)
                last[i] = m.describe(topic)
            first = views[c.ids[0]]
            return all(v == first for v in views.values()) and cut not in first.values()

        try:
            wait_until(agreed, timeout=deadline(60), interval=0.25, ignore=(OSError, EOFError),
                       what=f"all brokers to agree on leaders, none of them broker {cut}")
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; last Metadata: {last}") from None
        prod.wait_acks(500, timeout=60)
    finally:
        log.info("phase: stop the producer and collect every delivery report")
        history = prod.stop()

    log.info("%d deliveries failed (allowed: a failure is not an acknowledgement)", len(history.failed))
    log.info("phase: the history: every acknowledged write exactly once at its acknowledged offset; "
             "no offset acknowledged with two values; each partition in production order")
    records, end = read_all(c, topic, PARTITIONS)
    assert_history(history, records, end, cluster=c, topic=topic, exactly_once=True, ordered=True)

    log.info("phase: every record the cut-off broker served during the cut is in the final log "
             "at the same offset (it served nothing that was later truncated)")
    final = {(r.partition, r.offset): r.value for r in records}
    dirty = [(p, o, v, final.get((p, o))) for p, recs in served.items() for o, v in recs
             if final.get((p, o)) != v]
    assert not dirty, (f"{len(dirty)} records served by broker {cut} while cut off are not in the "
                       f"final log, e.g. (partition, offset, served, final) {dirty[:5]}")


# --------------------------------------------------------------------------
# a nemesis: cut a different broker, round after round

# What each round cuts off: the leader of a partition (until the majority has
# elected another), a follower (until its leader has dropped it from the
# ISR, which happens before it is fenced), or the controller quorum's leader
# (until the others have elected another one and lead its partitions).
NEMESIS = ["leader", "follower", "controller", "leader", "follower", "leader"]


@pytest.mark.timeout(deadline(600))
def test_repeated_cuts_keep_every_acknowledged_write(cluster_factory, request):
    c, topic = netns_cluster_with_topic(cluster_factory, request)

    prod = start_producer(c, topic, prefix="n")
    try:
        prod.wait_acks(1000, timeout=60)
        for rnd, kind in enumerate(NEMESIS, 1):
            p = rnd % PARTITIONS
            md = c.metadata(topics=[topic])
            m = md.partitions(topic)[p]
            controller = c.active_controller()
            if kind == "follower":
                node = next(r for r in m.replicas if r != m.leader)
            elif kind == "controller" and controller is not None:
                node = controller
            else:
                node = m.leader
            rest = [i for i in c.ids if i != node]
            log.info("phase: round %d: cut off broker %d (%s of partition %d; the controller "
                     "quorum's leader is %s)", rnd, node, kind, p, controller)
            c.cut(node)
            t_cut = time.monotonic()
            try:
                if kind == "follower":
                    leader = m.leader
                    wait_until(lambda: node not in c.metadata(via=leader, topics=[topic])
                               .partitions(topic)[p].isr,
                               timeout=deadline(60), interval=0.2, ignore=(OSError, EOFError),
                               what=f"leader {leader} to drop broker {node} from the ISR of "
                                    f"partition {p}")
                else:
                    c.wait_leaders_off(topic, node, via=rest, timeout=60)
                    log.info("round %d: its partitions have new leaders %.1fs after the cut", rnd,
                             time.monotonic() - t_cut)
                    if kind == "controller":
                        wait_until(lambda: c.active_controller(via=rest) in rest,
                                   timeout=deadline(60), interval=0.5, ignore=(OSError, EOFError),
                                   what=f"brokers {rest} to elect a controller among them")
                log.info("round %d: done %.1fs after the cut: %s", rnd, time.monotonic() - t_cut,
                         c.metadata(via=rest[0], topics=[topic]).describe(topic))
            finally:
                c.heal(node)
            log.info("phase: round %d: broker %d is back; the ISR is 3 again and writes go on",
                     rnd, node)
            c.wait_isr(topic, 3, partitions=PARTITIONS, timeout=120)
            prod.wait_acks(300, timeout=90)
    finally:
        log.info("phase: stop the producer and collect every delivery report")
        history = prod.stop()

    log.info("%d deliveries failed (allowed: a failure is not an acknowledgement)", len(history.failed))
    log.info("phase: the history: every acknowledged write exactly once at its acknowledged offset; "
             "no offset acknowledged with two values; each partition in production order")
    records, end = read_all(c, topic, PARTITIONS)
    assert_history(history, records, end, cluster=c, topic=topic, exactly_once=True, ordered=True)
