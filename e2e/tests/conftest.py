"""Fixtures for Runnel's end-to-end tests.

- `broker`: one broker with default settings, shared by the tests of a module
  (use it only where sharing state is harmless: every test makes its own
  uniquely named topics);
- `broker_factory`: brokers with their own settings for one test, e.g.
  `broker_factory({"log.retention.check.interval.ms": 200})`;
- `topic`: a topic name unique to the test.

When a test fails, the tail of every broker log it used is attached to the
report. Brokers are stopped with SIGTERM at teardown; a broker that does not
exit cleanly turns the teardown into an error.
"""

from __future__ import annotations

import logging

import pytest

import harness
from harness import Broker, BrokerFactory

log = logging.getLogger("e2e")

# kafka-python logs every connection and metadata refresh at INFO; keep the
# live log to our phases and to real warnings.
logging.getLogger("kafka").setLevel(logging.WARNING)


def _brokers_of(item) -> list[Broker]:
    found: list[Broker] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, Broker):
            found.append(value)
        elif isinstance(value, BrokerFactory):
            found.extend(value.brokers)
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for b in _brokers_of(item):
            report.sections.append((f"broker node {b.node_id} log ({b.bootstrap})", b.log_tail(120)))
    return report


def _teardown(factory: BrokerFactory) -> None:
    problems = factory.close()
    if problems:
        pytest.fail("broker teardown: " + "\n".join(problems), pytrace=False)


@pytest.fixture
def broker_factory(tmp_path):
    factory = BrokerFactory(tmp_path)
    yield factory
    _teardown(factory)


@pytest.fixture(scope="module")
def module_broker_factory(tmp_path_factory, request):
    factory = BrokerFactory(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]))
    yield factory
    _teardown(factory)


@pytest.fixture(scope="module")
def _module_broker(module_broker_factory) -> Broker:
    return module_broker_factory()


@pytest.fixture
def broker(_module_broker: Broker) -> Broker:
    """A default broker shared by one module's tests.

    If an earlier test left it dead, it is started again (on the same data
    dir) so that this test still means something; a broker that dies during
    a test fails that test at teardown.
    """
    b = _module_broker
    if not b.alive():
        log.error("shared broker %r was found dead; starting it again", b)
        b.start()
    yield b
    if not b.alive():
        pytest.fail(f"broker process died during the test (exit code {b.proc.returncode if b.proc else b.last_exit_code})\n"
                    f"{b.log_tail()}", pytrace=False)


@pytest.fixture
def topic(request) -> str:
    return harness.unique_topic(request.node.name)


# --------------------------------------------------------------------------
# Clusters (test_replication*.py, test_cluster*.py; see cluster.py).
# `cluster_factory(n=3, settings=..., netns=False)` starts a cluster of n
# voter brokers for one test. It is a BrokerFactory, so the hook above
# attaches every broker's log to a failing test's report, and teardown
# SIGTERMs them all (and removes the test's network namespaces).


@pytest.fixture
def cluster_factory(tmp_path):
    from cluster import ClusterFactory

    factory = ClusterFactory(tmp_path)
    yield factory
    _teardown(factory)


# `prometheus_factory({"job": ["HOST:PORT", ...]})` starts a real Prometheus
# scraping those targets every second, with the chart's alert rules loaded;
# stopped at teardown. Skips the test when Prometheus is not installed.


@pytest.fixture
def prometheus_factory(tmp_path):
    from prometheus import ALERT_RULES, Prometheus, prometheus_missing

    started: list[Prometheus] = []

    def start(jobs: dict[str, list[str]]) -> Prometheus:
        why = prometheus_missing()
        if why:
            pytest.skip(why)
        prom = Prometheus.start(tmp_path / f"prometheus{len(started)}", jobs, rules=[ALERT_RULES])
        started.append(prom)
        return prom

    yield start
    for prom in started:
        prom.stop()
