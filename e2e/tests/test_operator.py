"""The operator against a real kube-apiserver (etcd + kube-apiserver from
e2e/kube-up.sh; no kubelet, so StatefulSets are stored, not run) and real
brokers on 127.0.0.1 reached through `--broker-override`.

- `solo`: one broker in rack zone-a, Cluster `e2e/solo`;
- `racks`: three voter brokers in racks zone-a/b/c forming one cluster
  (e2e/tests/cluster.py), Cluster `e2e/racks`.

Each test applies resources with `kubectl` and checks what the operator made
of them: objects in the API server, topics and offsets in the brokers, and
the resources' status.
"""

from __future__ import annotations

import json
import re
from typing import Optional
import logging
import signal
import uuid
from collections import Counter

import pytest
from confluent_kafka import KafkaException

from group_helpers import GROUP_SETTINGS, Member, admin_committed, commit_standalone, poll_members
from cluster import Cluster as RackCluster
from cluster import read_all
from harness import REPO_ROOT, Broker, admin, confluent_producer, produce_confluent, wait_until
from prometheus import DASHBOARD, dashboard_queries
from operator_kube import (RECONCILE_TIMEOUT_S, KubeControlPlane, Operator, broker_racks,
                           have_go, set_topic_config, topic_config, topic_replicas)

log = logging.getLogger("e2e")

NS = "e2e"

pytestmark = pytest.mark.skipif(not have_go(), reason="`go` is not installed: e2e/kube-up.sh "
                                "builds kube-apiserver, etcd, kubectl and helm with it")

BROKER_SETTINGS = {**GROUP_SETTINGS, "auto.create.topics.enable": "false"}


def suffix() -> str:
    return uuid.uuid4().hex[:6]


# --------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    plane = KubeControlPlane(tmp_path_factory.mktemp("kube"))
    try:
        plane.up()
        log.info("phase: applying crds/ and waiting for the CRDs to be established")
        plane.kubectl("apply", "-f", str(REPO_ROOT / "crds"))
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                      "crd/clusters.runnel.dev", "crd/topics.runnel.dev",
                      "crd/consumergroups.runnel.dev", "crd/users.runnel.dev")
        plane.kubectl("create", "namespace", NS)
        yield plane
    finally:
        plane.down()


@pytest.fixture(scope="module")
def solo(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("solo"), node_id=1, settings=BROKER_SETTINGS,
               extra_args=["--rack", "zone-a"])
    b.start()
    yield b
    b.stop()


# The operator's own SASL user on the `secure` broker.
OPERATOR_USER, OPERATOR_PASSWORD = "runnel-operator", "operator-secret-0"


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    """A broker whose Kafka listener asks for SASL, with the operator's
    user made at start-up as the StatefulSet's brokers make it."""
    b = Broker(tmp_path_factory.mktemp("secure"), node_id=1,
               settings={**BROKER_SETTINGS, "listener.security.protocol": "SASL_PLAINTEXT"},
               extra_args=["--rack", "zone-a", "--add-scram",
                           f"SCRAM-SHA-512=[name={OPERATOR_USER},password={OPERATOR_PASSWORD}]"])
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def acled(tmp_path_factory):
    """A SASL broker that checks ACLs, with the operator's user made at
    start-up and a super user, as the StatefulSet of a Cluster with
    spec.authorization gives its brokers."""
    b = Broker(tmp_path_factory.mktemp("acled"), node_id=1,
               settings={**BROKER_SETTINGS, "listener.security.protocol": "SASL_PLAINTEXT",
                         "authorizer.class.name":
                             "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                         "super.users": f"User:{OPERATOR_USER};User:ops-human"},
               extra_args=["--rack", "zone-a", "--add-scram",
                           f"SCRAM-SHA-512=[name={OPERATOR_USER},password={OPERATOR_PASSWORD}]"])
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def tls_certs(tmp_path_factory):
    """A CA and the `tlssec` broker's certificate (naming 127.0.0.1, where
    the operator reaches it), as a cert-manager Secret would hold them."""
    from tls_certs import Certs
    certs = Certs(tmp_path_factory.mktemp("tls-certs"))
    key, crt = certs.server("tlssec")
    return certs, key, crt


@pytest.fixture(scope="module")
def tlssec(tmp_path_factory, tls_certs):
    """A broker whose Kafka listener is SASL_SSL, with the files and the
    operator's user the StatefulSet of Cluster `tlssec` gives its brokers."""
    certs, key, crt = tls_certs
    b = Broker(tmp_path_factory.mktemp("tlssec"), node_id=1,
               settings={**BROKER_SETTINGS, "listener.security.protocol": "SASL_SSL",
                         "ssl.keystore.location": str(crt),
                         "ssl.keystore.key.location": str(key),
                         "security.inter.broker.protocol": "SSL",
                         "ssl.truststore.location": str(certs.ca_crt),
                         # as spec.config asks: clients present certificates
                         "ssl.client.auth": "required"},
               extra_args=["--rack", "zone-a", "--add-scram",
                           f"SCRAM-SHA-512=[name={OPERATOR_USER},password={OPERATOR_PASSWORD}]"])
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def rack_cluster(tmp_path_factory):
    """Three voter brokers in racks zone-a/b/c (cluster.py), constructed so
    that their addresses are known when the operator starts; started by
    `racks`."""
    c = RackCluster(tmp_path_factory.mktemp("racks"), n=3,
                    settings={"auto.create.topics.enable": "false"})
    yield c
    problems = c.close()
    assert not problems, f"rack cluster teardown: {problems}"


@pytest.fixture(scope="module")
def racks(rack_cluster):
    return rack_cluster.start()


# The operator's node ids for four brokers over zone-a/b/c (slots 1000,
# 2000, 3000, 1001), so that what it reads in Metadata matches its layout.
SHRINK_IDS = [1000, 2000, 3000, 1001]


@pytest.fixture(scope="module")
def shrink_cluster(tmp_path_factory):
    """Four voter brokers with the operator's node ids, constructed so that
    their addresses are known when the operator starts; started by the
    scale-down test."""
    c = RackCluster(tmp_path_factory.mktemp("shrink"), n=4, ids=SHRINK_IDS,
                    racks=["zone-a", "zone-b", "zone-c", "zone-a"],
                    settings={"auto.create.topics.enable": "false"})
    yield c
    problems = c.close()
    assert not problems, f"shrink cluster teardown: {problems}"


# The operator's node ids for three brokers over zone-a/b/c.
ROLL_IDS = [1000, 2000, 3000]


@pytest.fixture(scope="module")
def roll_cluster(tmp_path_factory):
    """Three voter brokers with the operator's node ids, constructed so that
    their addresses are known when the operator starts; started by the
    rolling-restart test."""
    c = RackCluster(tmp_path_factory.mktemp("roll"), n=3, ids=ROLL_IDS,
                    racks=["zone-a", "zone-b", "zone-c"],
                    settings={"auto.create.topics.enable": "false"})
    yield c
    problems = c.close()
    assert not problems, f"roll cluster teardown: {problems}"


@pytest.fixture(scope="module")
def operator(kube, solo, secure, tlssec, acled, rack_cluster, shrink_cluster, roll_cluster,
             tmp_path_factory, request):
    op = Operator(kube, tmp_path_factory.mktemp("operator"), overrides={
        f"{NS}/solo": [solo.bootstrap],
        f"{NS}/secure": [secure.bootstrap],
        f"{NS}/tlssec": [tlssec.bootstrap],
        f"{NS}/acled": [acled.bootstrap],
        f"{NS}/racks": [b.bootstrap for b in rack_cluster.brokers],
        f"{NS}/shrink": [b.bootstrap for b in shrink_cluster.brokers],
        f"{NS}/roll": [b.bootstrap for b in roll_cluster.brokers],
    })
    failed_before = request.session.testsfailed
    op.start()
    yield op
    if request.session.testsfailed > failed_before:
        log.error("operator log tail (%s):\n%s", op.log_path, op.log_tail(200))
    code = op.stop()
    assert code == 0, f"operator exited {code} on SIGTERM\n{op.log_tail()}"


@pytest.fixture(scope="module")
def solo_cluster(kube, operator):
    kube.apply(CLUSTER.format(name="solo", brokers=1, zones="[zone-a]"), NS)
    kube.wait_condition("cluster", "solo", NS, "True", "BrokersReady")
    return "solo"


CLUSTER = """
apiVersion: runnel.dev/v1alpha1
kind: Cluster
metadata: {{name: {name}}}
spec:
  brokers: {brokers}
  zones: {zones}
  storage: {{size: 1Gi}}
"""

TOPIC = """
apiVersion: runnel.dev/v1alpha1
kind: Topic
metadata: {{name: {name}}}
spec:
  cluster: {cluster}
  partitions: {partitions}
  replicas: {replicas}
{extra}
"""


def topic_yaml(name: str, cluster: str, partitions: int, replicas: int, extra: str = "") -> str:
    return TOPIC.format(name=name, cluster=cluster, partitions=partitions, replicas=replicas,
                        extra=extra)


# --------------------------------------------------------------------------
# tests


def test_the_api_server_refuses_invalid_specs(kube):
    log.info("phase: invalid specs are refused by the API server, naming the field")
    cases = [
        (topic_yaml("bad-partitions", "solo", 0, 1), "spec.partitions"),
        (topic_yaml("bad-replicas", "solo", 1, 0), "spec.replicas"),
        (topic_yaml("bad-name", "solo", 1, 1, "  topicName: 'no spaces'"), "spec.topicName"),
        (CLUSTER.format(name="bad-zones", brokers=1, zones="[]"), "spec.zones"),
        (CLUSTER.format(name="bad-brokers", brokers=0, zones="[a]"), "spec.brokers"),
        (CLUSTER.format(name="dup-zones", brokers=2, zones="[a, a]"), "spec.zones"),
        # The operator cannot authenticate to SASL brokers yet.
        (CLUSTER.format(name="sasl", brokers=1, zones="[a]") +
         "  config: {listener.security.protocol: SASL_PLAINTEXT}\n", "spec.config"),
        # spec.tls sets the keystore and the truststore.
        (CLUSTER.format(name="keystore", brokers=1, zones="[a]") +
         "  config: {ssl.keystore.location: /tmp/k.pem}\n", "spec.config"),
        (CLUSTER.format(name="truststore", brokers=1, zones="[a]") +
         "  config: {ssl.truststore.location: /tmp/ca.pem}\n", "spec.config"),
        (CLUSTER.format(name="interbroker", brokers=1, zones="[a]") +
         "  config: {security.inter.broker.protocol: SSL}\n", "spec.config"),
        ("""
apiVersion: runnel.dev/v1alpha1
kind: ConsumerGroup
metadata: {name: bad-reset}
spec:
  cluster: solo
  resetOffsets: {to: datetime, topics: [t]}
""", "resetOffsets.datetime is required"),
        ("""
apiVersion: runnel.dev/v1alpha1
kind: ConsumerGroup
metadata: {name: bad-reset-to}
spec:
  cluster: solo
  resetOffsets: {to: yesterday, topics: [t]}
""", "spec.resetOffsets.to"),
    ]
    for manifest, field in cases:
        proc = kube.apply(manifest, NS, check=False)
        assert proc.returncode != 0, f"accepted:\n{manifest}"
        assert field in proc.stderr, f"the refusal does not name {field}: {proc.stderr}"

    log.info("phase: zones may be appended to, not removed or reordered (node ids follow them)")
    kube.apply(CLUSTER.format(name="zoned", brokers=2, zones="[a, b]"), NS)
    try:
        for zones, allowed in (('["b", "a"]', False), ('["a"]', False), ('["a", "c"]', False),
                               ('["a", "b", "c"]', True)):
            proc = kube.kubectl("patch", "cluster", "zoned", "-n", NS, "--type=merge", "-p",
                                f'{{"spec":{{"zones":{zones}}}}}', check=False)
            if allowed:
                assert proc.returncode == 0, f"zones {zones} refused: {proc.stderr}"
            else:
                assert proc.returncode != 0, f"zones {zones} accepted"
                assert "zones can only be appended to" in proc.stderr, proc.stderr
    finally:
        kube.kubectl("delete", "cluster", "zoned", "-n", NS, "--wait=false")

    log.info("phase: short names and printer columns")
    kube.kubectl("get", "rncluster,rntopic,rngroup", "-n", NS)
    crd = kube.get("crd", "topics.runnel.dev")
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert {"Partitions", "Replicas", "Ready"} <= set(columns), columns


def test_a_cluster_becomes_statefulsets_services_config_and_a_pdb(kube, operator):
    log.info("phase: a Cluster of 5 brokers over 3 zones")
    kube.apply("""
apiVersion: runnel.dev/v1alpha1
kind: Cluster
metadata: {name: layout}
spec:
  brokers: 5
  zones: [zone-a, zone-b, zone-c]
  storage: {size: 2Gi, storageClassName: standard}
  config: {min.insync.replicas: "2"}
  image: example/runnel-broker:test
""", NS)
    names = ["layout-zone-a", "layout-zone-b", "layout-zone-c"]
    sets = wait_until(lambda: [kube.get("statefulset", n, NS) for n in names]
                      if all(kube.get("statefulset", n, NS) for n in names) else None,
                      timeout=RECONCILE_TIMEOUT_S, what="three StatefulSets")
    assert [s["spec"]["replicas"] for s in sets] == [2, 2, 1]
    for s, zone, base in zip(sets, ["zone-a", "zone-b", "zone-c"], [1000, 2000, 3000]):
        spec = s["spec"]
        assert spec["updateStrategy"]["type"] == "OnDelete"
        assert spec["serviceName"] == "layout-brokers"
        owner = s["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("Cluster", "layout", True)
        pod = spec["template"]["spec"]
        term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        expr = term["nodeSelectorTerms"][0]["matchExpressions"][0]
        assert (expr["key"], expr["operator"], expr["values"]) == \
            ("topology.kubernetes.io/zone", "In", [zone])
        container = pod["containers"][0]
        assert container["image"] == "example/runnel-broker:test"
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["RUNNEL_RACK"] == zone
        assert env["RUNNEL_NODE_ID_BASE"] == str(base)
        assert env["RUNNEL_ADVERTISE"] == "$(POD_NAME).layout-brokers.e2e.svc:9092"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health"
        claim = spec["volumeClaimTemplates"][0]["spec"]
        assert claim["resources"]["requests"]["storage"] == "2Gi"
        assert claim["storageClassName"] == "standard"

    log.info("phase: Services, ConfigMap and PodDisruptionBudget")
    headless = kube.get("service", "layout-brokers", NS)
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert kube.get("service", "layout-bootstrap", NS)["spec"]["ports"][0]["port"] == 9092
    cm = kube.get("configmap", "layout-config", NS)["data"]
    assert cm["broker.settings"] == "min.insync.replicas=2\n"
    assert cm["controller.voters"].split(",") == [
        "1000@layout-zone-a-0.layout-brokers.e2e.svc:9093",
        "2000@layout-zone-b-0.layout-brokers.e2e.svc:9093",
        "3000@layout-zone-c-0.layout-brokers.e2e.svc:9093",
    ]
    pdb = kube.get("poddisruptionbudget", "layout", NS)
    assert pdb["spec"]["maxUnavailable"] == 1

    log.info("phase: no pods run here, so the Cluster reports its brokers starting")
    cond = kube.wait_condition("cluster", "layout", NS, "False", "BrokersStarting")
    assert "0 of 5" in cond["message"]
    events = json.loads(kube.kubectl("get", "events", "-n", NS, "-o", "json").stdout)["items"]
    assert any(e.get("reason") == "Applied" and e["involvedObject"]["name"] == "layout"
               for e in events), "no Applied event for the Cluster"

    log.info("phase: one more broker lands in the zone with fewest")
    kube.kubectl("patch", "cluster", "layout", "-n", NS, "--type=merge", "-p",
                 '{"spec":{"brokers":6}}')
    wait_until(lambda: kube.get("statefulset", "layout-zone-c", NS)["spec"]["replicas"] == 2,
               timeout=RECONCILE_TIMEOUT_S, what="zone-c scaled to 2")

    log.info("phase: the controller voters are fixed when a Cluster is created: a one-broker "
             "Cluster grown to three keeps its one voter, the new brokers join as non-voters")
    kube.apply(CLUSTER.format(name="tiny", brokers=1, zones="[zone-a, zone-b, zone-c]"), NS)
    only = "1000@tiny-zone-a-0.tiny-brokers.e2e.svc:9093"
    wait_until(lambda: (kube.get("configmap", "tiny-config", NS) or {}).get("data", {})
               .get("controller.voters") == only, timeout=RECONCILE_TIMEOUT_S,
               what="tiny's one voter")
    kube.kubectl("patch", "cluster", "tiny", "-n", NS, "--type=merge", "-p",
                 '{"spec":{"brokers":3}}')
    wait_until(lambda: all((kube.get("statefulset", f"tiny-{z}", NS) or {})
                           .get("spec", {}).get("replicas") == 1 for z in ("zone-b", "zone-c")),
               timeout=RECONCILE_TIMEOUT_S, what="tiny grown to three brokers")
    assert kube.get("configmap", "tiny-config", NS)["data"]["controller.voters"] == only


def test_a_topic_is_created_grown_kept_in_step_and_deleted(kube, operator, solo, solo_cluster):
    bootstrap = solo.bootstrap
    name = f"orders-{suffix()}"
    log.info("phase: Topic %s with 2 partitions becomes a topic in the broker", name)
    kube.apply(topic_yaml(name, "solo", 2, 1, "  config: {retention.ms: '3600000'}"), NS)
    cond = kube.wait_condition("topic", name, NS, "True")
    assert cond["reason"] in ("TopicCreated", "TopicReady")
    assert sorted(topic_replicas(bootstrap, name)) == [0, 1]
    assert topic_config(bootstrap, name)["retention.ms"] == "3600000"
    status = kube.get("topic", name, NS)["status"]
    assert (status["topicName"], status["partitions"], status["replicas"]) == (name, 2, 1)

    log.info("phase: raising spec.partitions adds partitions")
    kube.kubectl("patch", "topic", name, "-n", NS, "--type=merge", "-p", '{"spec":{"partitions":4}}')
    wait_until(lambda: len(topic_replicas(bootstrap, name) or {}) == 4,
               timeout=RECONCILE_TIMEOUT_S, what="4 partitions")
    kube.wait_condition("topic", name, NS, "True", min_generation=2)

    log.info("phase: a config changed behind the operator's back is put back")
    set_topic_config(bootstrap, name, "retention.ms", "1000")
    wait_until(lambda: topic_config(bootstrap, name)["retention.ms"] == "3600000",
               timeout=RECONCILE_TIMEOUT_S, what="retention.ms restored")

    log.info("phase: fewer partitions is refused in status, not done")
    kube.kubectl("patch", "topic", name, "-n", NS, "--type=merge", "-p", '{"spec":{"partitions":1}}')
    cond = kube.wait_condition("topic", name, NS, "False", "PartitionDecreaseNotAllowed")
    assert "cannot remove partitions" in cond["message"]
    assert len(topic_replicas(bootstrap, name)) == 4

    log.info("phase: more replicas than brokers is reported, not a crash")
    kube.kubectl("patch", "topic", name, "-n", NS, "--type=merge", "-p",
                 '{"spec":{"partitions":4,"replicas":3}}')
    cond = kube.wait_condition("topic", name, NS, "False", "NotEnoughBrokers")
    assert "3" in cond["message"] and "1 brokers" in cond["message"]
    wide = f"wide-{suffix()}"
    kube.apply(topic_yaml(wide, "solo", 1, 2), NS)
    kube.wait_condition("topic", wide, NS, "False", "NotEnoughBrokers")
    assert topic_replicas(bootstrap, wide) is None

    log.info("phase: deleting the Topic deletes the topic")
    kube.kubectl("delete", "topic", name, wide, "-n", NS, "--timeout=60s")
    wait_until(lambda: topic_replicas(bootstrap, name) is None, timeout=RECONCILE_TIMEOUT_S,
               what=f"topic {name} deleted")
    assert operator.alive()

    log.info("phase: the metrics endpoint counts reconciles")
    metrics = operator.metrics()
    assert 'runnel_operator_reconciles_total{controller="topic"}' in metrics
    assert "runnel_operator_reconcile_duration_seconds_bucket" in metrics
    assert re.search(r"^runnel_operator_leader 1$", metrics, re.M)


def test_a_cluster_with_authentication_is_managed_over_sasl(kube, operator, secure):
    """spec.authentication: the brokers' listener is SASL_PLAINTEXT, each
    broker makes the operator's user from its Secret at start-up, and the
    operator authenticates with SCRAM-SHA-512 to manage the Cluster's
    Topics."""
    from confluent_kafka.admin import AdminClient

    log.info("phase: a Secret with the operator's credentials, and a Cluster naming it")
    kube.kubectl("create", "secret", "generic", "secure-operator", "-n", NS,
                 f"--from-literal=username={OPERATOR_USER}",
                 f"--from-literal=password={OPERATOR_PASSWORD}")
    kube.apply(CLUSTER.format(name="secure", brokers=1, zones="[zone-a]") +
               "  authentication: {type: scram-sha-512, credentialsSecret: secure-operator}\n", NS)
    kube.wait_condition("cluster", "secure", NS, "True", "BrokersReady")
    settings = kube.get("configmap", "secure-config", NS)["data"]["broker.settings"]
    assert "listener.security.protocol=SASL_PLAINTEXT" in settings, settings
    env = {e["name"]: e for e in kube.get("statefulset", "secure-zone-a", NS)
           ["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RUNNEL_OPERATOR_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "secure-operator", "key": "password"}
    assert env["RUNNEL_ADD_SCRAM"]["value"] == (
        "SCRAM-SHA-512=[name=$(RUNNEL_OPERATOR_USERNAME),password=$(RUNNEL_OPERATOR_PASSWORD)]")

    proc = kube.kubectl("patch", "cluster", "secure", "-n", NS, "--type=json", "-p",
                        '[{"op":"remove","path":"/spec/authentication"}]', check=False)
    assert proc.returncode != 0 and "authentication cannot be turned on or off" in proc.stderr, \
        proc.stderr

    def revision() -> str:
        sts = kube.get("statefulset", "secure-zone-a", NS)
        return sts["spec"]["template"]["metadata"]["annotations"]["runnel.dev/revision"]
    before = revision()

    log.info("phase: without its Secret the Topic says why it is not created")
    kube.kubectl("delete", "secret", "secure-operator", "-n", NS)
    stuck = f"stuck-{suffix()}"
    kube.apply(topic_yaml(stuck, "secure", 1, 1), NS)
    cond = kube.wait_condition("topic", stuck, NS, "False")
    assert "no SASL credentials" in cond["message"] and "secure-operator" in cond["message"], cond
    kube.kubectl("create", "secret", "generic", "secure-operator", "-n", NS,
                 f"--from-literal=username={OPERATOR_USER}",
                 f"--from-literal=password={OPERATOR_PASSWORD}")
    kube.wait_condition("topic", stuck, NS, "True")
    kube.kubectl("delete", "topic", stuck, "-n", NS, "--timeout=60s")
    # The brokers make the operator's user when they start: a new Secret
    # (a new password) changes the pods' revision, which rolls them.
    wait_until(lambda: revision() != before, timeout=RECONCILE_TIMEOUT_S,
               what="the StatefulSet's revision following the new Secret")

    log.info("phase: a Topic of that Cluster is created through SASL")
    name = f"secured-{suffix()}"
    kube.apply(topic_yaml(name, "secure", 2, 1), NS)
    kube.wait_condition("topic", name, NS, "True")
    a = AdminClient({"bootstrap.servers": secure.bootstrap, "security.protocol": "SASL_PLAINTEXT",
                     "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": OPERATOR_USER,
                     "sasl.password": OPERATOR_PASSWORD})
    md = a.list_topics(timeout=30)
    assert len(md.topics[name].partitions) == 2, md.topics.get(name)
    assert metric_value(secure, "runnel_sasl_authentications_total") >= 1
    kube.kubectl("delete", "topic", name, "-n", NS, "--timeout=60s")
    wait_until(lambda: name not in a.list_topics(timeout=30).topics,
               timeout=RECONCILE_TIMEOUT_S, what=f"topic {name} deleted through SASL")


def ensure_secure_cluster(kube) -> None:
    """Cluster `secure` (SASL, no ACLs) on the `secure` broker, made by
    whichever test needs it first."""
    if kube.get("cluster", "secure", NS) is None:
        kube.kubectl("create", "secret", "generic", "secure-operator", "-n", NS,
                     f"--from-literal=username={OPERATOR_USER}",
                     f"--from-literal=password={OPERATOR_PASSWORD}")
        kube.apply(CLUSTER.format(name="secure", brokers=1, zones="[zone-a]") +
                   "  authentication: {type: scram-sha-512, credentialsSecret: secure-operator}\n",
                   NS)
    kube.wait_condition("cluster", "secure", NS, "True", "BrokersReady")


def test_user_acls_follow_spec_authorization(kube, operator, acled, secure, tmp_path):
    """A Cluster with spec.authorization: its brokers check ACLs with the
    operator's user a super user, and each User's ACLs are what its
    spec.authorization says: made, changed and removed with the resource."""
    import base64
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType,
                                       AdminClient, ResourcePatternType, ResourceType)

    def conf(user: str, password: str) -> dict:
        return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
                "sasl.username": user, "sasl.password": password}

    as_operator = conf(OPERATOR_USER, OPERATOR_PASSWORD)

    def acls_of(user: str) -> set:
        a = AdminClient({"bootstrap.servers": acled.bootstrap, **as_operator})
        f = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, f"User:{user}",
                             None, AclOperation.ANY, AclPermissionType.ANY)
        return {(b.restype.name, b.name, b.resource_pattern_type.name, b.operation.name,
                 b.permission_type.name) for b in a.describe_acls(f).result(30)}

    def password_of(user: str) -> str:
        return base64.b64decode(kube.get("secret", user, NS)["data"]["password"]).decode()

    def produce_error(user: str, topic: str):
        p = confluent_producer(acled.bootstrap, **conf(user, password_of(user)),
                               **{"message.timeout.ms": 20000})
        report = produce_confluent(p, topic, [{"value": b"x", "partition": 0}])[0]
        return report.error.code() if report.error else None

    def fetch_error(user: str, topic: str) -> Optional[str]:
        """kcat's error reading the topic's first record as `user`; None if it read one."""
        import subprocess
        read = subprocess.run(
            ["kcat", "-C", "-b", acled.bootstrap, "-t", topic, "-p", "0", "-o", "beginning",
             "-c", "1", "-e", "-X", "security.protocol=SASL_PLAINTEXT",
             "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", f"sasl.username={user}",
             "-X", f"sasl.password={password_of(user)}"],
            capture_output=True, text=True, timeout=60)
        log.info("kcat as %s: exit %s %s", user, read.returncode, read.stderr.strip()[-300:])
        return None if read.returncode == 0 and read.stdout.strip() else read.stderr

    log.info("phase: Cluster acled with spec.authorization: the brokers get the authorizer and "
             "the operator's user and ops-human as super users")
    kube.kubectl("create", "secret", "generic", "acled-operator", "-n", NS,
                 f"--from-literal=username={OPERATOR_USER}",
                 f"--from-literal=password={OPERATOR_PASSWORD}")
    kube.apply(CLUSTER.format(name="acled", brokers=1, zones="[zone-a]") +
               "  authentication: {type: scram-sha-512, credentialsSecret: acled-operator}\n"
               "  authorization: {superUsers: [ops-human]}\n", NS)
    kube.wait_condition("cluster", "acled", NS, "True", "BrokersReady")
    env = {e["name"]: e for e in kube.get("statefulset", "acled-zone-a", NS)
           ["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RUNNEL_SUPER_USERS"]["value"] == \
        "User:$(RUNNEL_OPERATOR_USERNAME);User:ops-human", env["RUNNEL_SUPER_USERS"]
    settings = kube.get("configmap", "acled-config", NS)["data"]["broker.settings"]
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" \
        in settings, settings

    log.info("phase: the operator (a super user) makes a Topic; Users get their ACLs")
    topic = f"acled-{suffix()}"
    kube.apply(topic_yaml(topic, "acled", 1, 1), NS)
    kube.wait_condition("topic", topic, NS, "True", "TopicReady")
    kube.apply(f"""
apiVersion: runnel.dev/v1alpha1
kind: User
metadata: {{name: reader}}
spec:
  cluster: acled
  authentication: {{type: scram-sha-512}}
  authorization:
    acls:
      - resource: {{type: topic, name: {topic}}}
        operations: [Read, Describe]
      - resource: {{type: group, name: reader-, patternType: prefix}}
        operations: [Read]
---
apiVersion: runnel.dev/v1alpha1
kind: User
metadata: {{name: writer}}
spec:
  cluster: acled
  authentication: {{type: scram-sha-512}}
  authorization:
    acls:
      - resource: {{type: topic, name: {topic}}}
        operations: [Write]
  quotas: {{producerByteRate: 1048576, controllerMutationRate: 2.5}}
""", NS)
    cond = kube.wait_condition("user", "reader", NS, "True", "UserReady")
    assert "3 ACLs" in cond["message"], cond
    kube.wait_condition("user", "writer", NS, "True", "UserReady")
    assert acls_of("reader") == {("TOPIC", topic, "LITERAL", "READ", "ALLOW"),
                                 ("TOPIC", topic, "LITERAL", "DESCRIBE", "ALLOW"),
                                 ("GROUP", "reader-", "PREFIXED", "READ", "ALLOW")}
    assert kube.get("user", "reader", NS)["status"]["acls"] == 3

    log.info("phase: writer's quota is in the brokers (kafka-configs.sh --describe)")
    from cluster import kafka_tool, kafka_tools_missing
    props = tmp_path / "operator.properties"
    props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{OPERATOR_USER}" password="{OPERATOR_PASSWORD}";\n')

    def quotas_of(user: str) -> str:
        return kafka_tool(tmp_path, "kafka.admin.ConfigCommand", "--bootstrap-server",
                          acled.bootstrap, "--command-config", str(props), "--describe",
                          "--entity-type", "users", "--entity-name", user).stdout

    if not kafka_tools_missing():
        out = quotas_of("writer")
        assert "producer_byte_rate=1048576.0" in out, out
        assert "controller_mutation_rate=2.5" in out, out
        assert kube.get("user", "writer", NS)["status"]["quotas"] == {
            "producerByteRate": 1048576, "controllerMutationRate": 2.5}

    log.info("phase: writer writes, reader reads; neither may do the other's part")
    assert produce_error("writer", topic) is None
    assert fetch_error("reader", topic) is None
    assert produce_error("reader", topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert "Topic authorization failed" in (fetch_error("writer", topic) or "")

    log.info("phase: reader's rules change: Read goes, so its fetch is refused; an ACL added "
             "by hand for reader is removed too (the User keeps them exact)")
    a = AdminClient({"bootstrap.servers": acled.bootstrap, **as_operator})
    from confluent_kafka.admin import AclBinding
    stray = AclBinding(ResourceType.TOPIC, "*", ResourcePatternType.LITERAL, "User:reader", "*",
                       AclOperation.ALL, AclPermissionType.ALLOW)
    for f in a.create_acls([stray]).values():
        f.result(30)
    kube.kubectl("patch", "user", "reader", "-n", NS, "--type=json", "-p", json.dumps([
        {"op": "replace", "path": "/spec/authorization/acls/0/operations", "value": ["Describe"]}]))
    wait_until(lambda: acls_of("reader") == {("TOPIC", topic, "LITERAL", "DESCRIBE", "ALLOW"),
                                             ("GROUP", "reader-", "PREFIXED", "READ", "ALLOW")},
               timeout=RECONCILE_TIMEOUT_S, what="reader's ACLs following the spec")
    assert "Topic authorization failed" in (fetch_error("reader", topic) or "")

    log.info("phase: without spec.authorization the operator removes what it made; deleting a "
             "User removes its ACLs")
    kube.kubectl("patch", "user", "writer", "-n", NS, "--type=json", "-p",
                 json.dumps([{"op": "remove", "path": "/spec/authorization"},
                             {"op": "remove", "path": "/spec/quotas"}]))
    wait_until(lambda: not acls_of("writer"), timeout=RECONCILE_TIMEOUT_S,
               what="writer's ACLs removed")
    wait_until(lambda: "acls" not in kube.get("user", "writer", NS)["status"],
               timeout=RECONCILE_TIMEOUT_S, what="writer's status without acls")
    assert produce_error("writer", topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    if not kafka_tools_missing():
        wait_until(lambda: "_rate" not in quotas_of("writer"),
                   timeout=RECONCILE_TIMEOUT_S, what="writer's quota removed")
    kube.kubectl("delete", "user", "reader", "-n", NS, "--timeout=60s")
    assert not acls_of("reader")

    log.info("phase: spec.authorization on a User of a Cluster without it is reported; CEL "
             "refuses authorization without authentication, and authorizer settings in "
             "spec.config")
    ensure_secure_cluster(kube)
    kube.apply("""
apiVersion: runnel.dev/v1alpha1
kind: User
metadata: {name: hopeful}
spec:
  cluster: secure
  authentication: {type: scram-sha-512}
  authorization:
    acls: [{resource: {type: cluster}, operations: [Describe]}]
""", NS)
    cond = kube.wait_condition("user", "hopeful", NS, "False", "AuthorizationDisabled")
    assert "spec.authorization" in cond["message"], cond
    proc = kube.kubectl("apply", "-n", NS, "-f", "-", check=False,
                        input=CLUSTER.format(name="open-acl", brokers=1, zones="[zone-a]") +
                        "  authorization: {}\n")
    assert proc.returncode != 0 and "authorization needs authentication" in proc.stderr, \
        proc.stderr
    proc = kube.kubectl("apply", "-n", NS, "-f", "-", check=False,
                        input=CLUSTER.format(name="self-acl", brokers=1, zones="[zone-a]") +
                        "  config: {super.users: 'User:me'}\n")
    assert proc.returncode != 0 and "set by spec.authorization" in proc.stderr, proc.stderr
    for name in ("writer", "hopeful"):
        kube.kubectl("delete", "user", name, "-n", NS, "--timeout=60s")


def test_a_cluster_with_tls_is_managed_over_tls(kube, operator, tlssec, tls_certs):
    """spec.tls: the brokers' listener gets TLS from a cert-manager style
    Secret (tls.crt, tls.key, ca.crt) mounted into their pods, and the
    operator connects over TLS trusting its ca.crt, presenting tls.crt where
    the brokers ask for client certificates (ssl.client.auth in spec.config);
    with spec.authentication too, the listener is SASL_SSL."""
    from confluent_kafka.admin import AdminClient

    certs, key, crt = tls_certs
    log.info("phase: the Secrets, and a Cluster with tls and authentication")
    kube.kubectl("create", "secret", "generic", "tlssec-operator", "-n", NS,
                 f"--from-literal=username={OPERATOR_USER}",
                 f"--from-literal=password={OPERATOR_PASSWORD}")

    def create_cert_secret():
        kube.kubectl("create", "secret", "generic", "tlssec-cert", "-n", NS,
                     f"--from-file=tls.crt={crt}", f"--from-file=tls.key={key}",
                     f"--from-file=ca.crt={certs.ca_crt}")

    create_cert_secret()
    kube.apply(CLUSTER.format(name="tlssec", brokers=1, zones="[zone-a]") +
               "  authentication: {type: scram-sha-512, credentialsSecret: tlssec-operator}\n"
               "  tls: {certificateSecret: tlssec-cert}\n"
               "  config: {ssl.client.auth: required}\n", NS)
    kube.wait_condition("cluster", "tlssec", NS, "True", "BrokersReady")
    settings = kube.get("configmap", "tlssec-config", NS)["data"]["broker.settings"]
    assert "listener.security.protocol=SASL_SSL" in settings, settings
    assert "ssl.keystore.location=/etc/runnel-tls/tls.crt" in settings, settings
    assert "ssl.keystore.key.location=/etc/runnel-tls/tls.key" in settings, settings
    assert "security.inter.broker.protocol=SSL" in settings, settings
    assert "ssl.truststore.location=/etc/runnel-tls/ca.crt" in settings, settings
    pod = kube.get("statefulset", "tlssec-zone-a", NS)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "tlssec-cert", volumes
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/etc/runnel-tls"]["name"] == "tls", mounts

    proc = kube.kubectl("patch", "cluster", "tlssec", "-n", NS, "--type=json", "-p",
                        '[{"op":"remove","path":"/spec/tls"}]', check=False)
    assert proc.returncode != 0 and "tls cannot be turned on or off" in proc.stderr, proc.stderr

    log.info("phase: a Topic of that Cluster is created over TLS and SASL")
    name = f"tls-{suffix()}"
    kube.apply(topic_yaml(name, "tlssec", 2, 1), NS)
    kube.wait_condition("topic", name, NS, "True")
    app_key, app_crt = certs.client("tls-app")
    a = AdminClient({"bootstrap.servers": tlssec.bootstrap, "security.protocol": "SASL_SSL",
                     "ssl.ca.location": str(certs.ca_crt), "sasl.mechanisms": "SCRAM-SHA-512",
                     "ssl.certificate.location": str(app_crt), "ssl.key.location": str(app_key),
                     "sasl.username": OPERATOR_USER, "sasl.password": OPERATOR_PASSWORD})
    md = a.list_topics(timeout=30)
    assert len(md.topics[name].partitions) == 2, md.topics.get(name)

    log.info("phase: without the certificate Secret the Topic says why it is not created")
    kube.kubectl("delete", "secret", "tlssec-cert", "-n", NS)
    stuck = f"stuck-tls-{suffix()}"
    kube.apply(topic_yaml(stuck, "tlssec", 1, 1), NS)
    cond = kube.wait_condition("topic", stuck, NS, "False")
    assert "no CA to trust" in cond["message"] and "tlssec-cert" in cond["message"], cond
    create_cert_secret()
    kube.wait_condition("topic", stuck, NS, "True")

    for topic in (name, stuck):
        kube.kubectl("delete", "topic", topic, "-n", NS, "--timeout=60s")
    wait_until(lambda: not {name, stuck} & set(a.list_topics(timeout=30).topics),
               timeout=RECONCILE_TIMEOUT_S, what="the topics deleted over TLS")


def test_users_get_scram_credentials_from_secrets(kube, operator, secure, solo_cluster):
    """User resources of a Cluster with spec.authentication: the operator
    makes each user's SCRAM credential in the brokers, from a password it
    generates into a Secret or from one the user gives, follows a changed
    password, and deletes the credential with the resource."""
    import base64
    from confluent_kafka.admin import AdminClient

    ensure_secure_cluster(kube)

    def logs_in(user: str, password: str, mechanism: str = "SCRAM-SHA-512") -> bool:
        a = AdminClient({"bootstrap.servers": secure.bootstrap,
                         "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": mechanism,
                         "sasl.username": user, "sasl.password": password})
        try:
            a.list_topics(timeout=5)
            return True
        except KafkaException:
            return False

    log.info("phase: a User without a password Secret: the operator makes one")
    kube.apply("""
apiVersion: runnel.dev/v1alpha1
kind: User
metadata: {name: orders-app}
spec:
  cluster: secure
  authentication: {type: scram-sha-512}
""", NS)
    cond = kube.wait_condition("user", "orders-app", NS, "True", "UserReady")
    assert "orders-app" in cond["message"], cond
    secret = kube.get("secret", "orders-app", NS)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["username"] == "orders-app" and len(data["password"]) == 32, data.keys()
    assert f'password="{data["password"]}"' in data["sasl.jaas.config"]
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "User"
    assert logs_in("orders-app", data["password"])
    assert not logs_in("orders-app", "not-the-password")

    log.info("phase: a second User naming the same user, or the operator's own, is refused")
    kube.apply("""
apiVersion: runnel.dev/v1alpha1
kind: User
metadata: {name: orders-app-copy}
spec:
  cluster: secure
  userName: orders-app
  authentication: {type: scram-sha-512}
""", NS)
    cond = kube.wait_condition("user", "orders-app-copy", NS, "False", "UserConflict")
    assert "older User" in cond["message"], cond
    kube.apply(f"""
apiVersion: runnel.dev/v1alpha1
kind: User
metadata: {{name: hijack}}
spec:
  cluster: secure
  userName: {OPERATOR_USER}
  authentication: {{type: scram-sha-512}}
""", NS)
    cond = kube.wait_condition("user", "hijack", NS, "False", "UserConflict")
    assert "operator's own" in cond["message"], cond
    for name in ("orders-app-copy", "hijack"):
        kube.kubectl("delete", "user", name, "-n", NS, "--timeout=60s")
    assert logs_in("orders-app", data["password"]), "deleting the copy took the credential"
    assert logs_in(OPERATOR_USER, OPERATOR_PASSWORD)
    proc = kube.kubectl("patch", "user", "orders-app", "-n", NS, "--type=merge", "-p",
                        '{"spec":{"cluster":"solo"}}', check=False)
    assert proc.returncode != 0 and "cluster cannot change" in proc.stderr, proc.stderr

    log.info("phase: a new userName: the old credential goes, the Secret names the new user")
    kube.kubectl("patch", "user", "orders-app", "-n", NS, "--type=merge", "-p",
                 '{"spec":{"userName":"orders-svc"}}')
    wait_until(lambda: logs_in("orders-svc", data["password"]), timeout=RECONCILE_TIMEOUT_S,
               what="the renamed user logging in")
    assert not logs_in("orders-app", data["password"])
    renamed = {k: base64.b64decode(v).decode()
               for k, v in kube.get("secret", "orders-app", NS)["data"].items()}
    assert renamed["username"] == "orders-svc" and renamed["password"] == data["password"]
    assert 'username="orders-svc"' in renamed["sasl.jaas.config"]

    log.info("phase: a User with its own password Secret, in SCRAM-SHA-256; a new password "
             "replaces the old one")
    kube.kubectl("create", "secret", "generic", "billing-password", "-n", NS,
                 "--from-literal=pw=first-password")
    kube.apply("""
apiVersion: runnel.dev/v1alpha1
kind: User
metadata: {name: billing}
spec:
  cluster: secure
  userName: billing-svc
  authentication: {type: scram-sha-256}
  passwordSecret: {name: billing-password, key: pw}
""", NS)
    kube.wait_condition("user", "billing", NS, "True", "UserReady")
    assert logs_in("billing-svc", "first-password", "SCRAM-SHA-256")
    kube.kubectl("patch", "secret", "billing-password", "-n", NS, "--type=merge", "-p",
                 json.dumps({"stringData": {"pw": "second-password"}}))
    wait_until(lambda: logs_in("billing-svc", "second-password", "SCRAM-SHA-256"),
               timeout=RECONCILE_TIMEOUT_S, what="the new password accepted")
    assert not logs_in("billing-svc", "first-password", "SCRAM-SHA-256")

    log.info("phase: a missing password Secret is reported; a Secret not the User's is left alone")
    kube.apply("""
apiVersion: runnel.dev/v1alpha1
kind: User
metadata: {name: ghost}
spec:
  cluster: secure
  authentication: {type: scram-sha-512}
  passwordSecret: {name: nowhere, key: pw}
""", NS)
    cond = kube.wait_condition("user", "ghost", NS, "False", "PasswordUnavailable")
    assert "nowhere" in cond["message"], cond
    kube.kubectl("create", "secret", "generic", "squatter", "-n", NS, "--from-literal=x=y")
    kube.apply("""
apiVersion: runnel.dev/v1alpha1
kind: User
metadata: {name: squatter}
spec:
  cluster: secure
  authentication: {type: scram-sha-512}
""", NS)
    cond = kube.wait_condition("user", "squatter", NS, "False", "PasswordUnavailable")
    assert "not this User's" in cond["message"], cond
    assert kube.get("secret", "squatter", NS)["data"].keys() == {"x"}

    log.info("phase: a User of a Cluster without authentication says so")
    kube.apply("""
apiVersion: runnel.dev/v1alpha1
kind: User
metadata: {name: open-door}
spec:
  cluster: solo
  authentication: {type: scram-sha-512}
""", NS)
    kube.wait_condition("user", "open-door", NS, "False", "AuthenticationDisabled")

    log.info("phase: deleting a User deletes its credential")
    for name in ("orders-app", "billing", "ghost", "squatter", "open-door"):
        kube.kubectl("delete", "user", name, "-n", NS, "--timeout=60s")
    assert not logs_in("orders-svc", data["password"])
    assert not logs_in("billing-svc", "second-password", "SCRAM-SHA-256")


def metric_value(broker, name: str) -> float:
    from cluster import metric_sum
    value = metric_sum(broker, name)
    assert value is not None, f"{name} is not exported"
    return value


def test_a_consumer_protocol_group_is_observed_and_reset_once_empty(kube, operator, solo,
                                                                    solo_cluster):
    """A group of the consumer protocol (KIP-848): its state and members come
    from ConsumerGroupDescribe, and a reset still waits for it to be empty."""
    from confluent_kafka import Consumer

    topic, group = f"modern-{suffix()}", f"modern-readers-{suffix()}"
    kube.apply(topic_yaml(topic, "solo", 2, 1), NS)
    kube.wait_condition("topic", topic, NS, "True")
    producer = confluent_producer(solo.bootstrap)
    produce_confluent(producer, topic, [{"value": b"m", "partition": i % 2} for i in range(10)])
    commit_standalone(solo.bootstrap, group, topic, {0: 5, 1: 5})

    log.info("phase: a consumer-protocol member; the resource sees it, and its reset waits")
    consumer = Consumer({"bootstrap.servers": solo.bootstrap, "group.id": group,
                         "group.protocol": "consumer", "enable.auto.commit": False})
    consumer.subscribe([topic])
    try:
        wait_until(lambda: consumer.poll(0.2) is None and len(consumer.assignment()) == 2,
                   timeout=60, what="the member assigned both partitions")
        kube.apply(f"""
apiVersion: runnel.dev/v1alpha1
kind: ConsumerGroup
metadata: {{name: modern}}
spec:
  cluster: solo
  groupId: {group}
  resetOffsets: {{to: earliest, topics: [{topic}]}}
""", NS)

        def status():
            consumer.poll(0.1)
            return (kube.get("consumergroup", "modern", NS) or {}).get("status") or {}

        s = wait_until(lambda: status() if status().get("members") == 1 else None,
                       timeout=RECONCILE_TIMEOUT_S, what="one member in the status")
        assert s["state"] == "Stable", s
        wait_until(lambda: (consumer.poll(0.1), (kube.condition(
            "consumergroup", "modern", NS, "OffsetsReset") or {}).get("reason"))[1]
            == "GroupNotEmpty", timeout=RECONCILE_TIMEOUT_S, what="the reset waiting")
        assert admin_committed(solo.bootstrap, group) == {(topic, 0): 5, (topic, 1): 5}
    finally:
        consumer.close()

    log.info("phase: the member left: the reset is applied")
    kube.wait_condition("consumergroup", "modern", NS, "True", "ResetApplied",
                        type_="OffsetsReset")
    assert admin_committed(solo.bootstrap, group) == {(topic, 0): 0, (topic, 1): 0}
    kube.kubectl("delete", "consumergroup", "modern", "-n", NS, "--timeout=60s")


def test_topic_ownership_conflicts_and_unmanaged(kube, operator, solo, solo_cluster):
    bootstrap = solo.bootstrap
    from harness import create_topic

    bystander = f"bystander-{suffix()}"
    log.info("phase: a topic no resource names (%s) is left alone", bystander)
    create_topic(bootstrap, bystander, partitions=3)

    shared = f"shared-{suffix()}"
    log.info("phase: two Topics name topic %s: the older wins", shared)
    kube.apply(topic_yaml("first", "solo", 1, 1, f"  topicName: {shared}"), NS)
    kube.wait_condition("topic", "first", NS, "True")
    kube.apply(topic_yaml("second", "solo", 2, 1, f"  topicName: {shared}"), NS)
    cond = kube.wait_condition("topic", "second", NS, "False", "Conflict")
    assert "first" in cond["message"]
    assert len(topic_replicas(bootstrap, shared)) == 1, "the younger resource changed the topic"

    log.info("phase: runnel.dev/managed=false stops management; deleting keeps the topic")
    kube.kubectl("annotate", "topic", "first", "-n", NS, "runnel.dev/managed=false")
    kube.wait_condition("topic", "first", NS, "False", "Unmanaged")
    wait_until(lambda: not (kube.get("topic", "first", NS)["metadata"].get("finalizers")),
               timeout=RECONCILE_TIMEOUT_S, what="finalizer removed")
    kube.kubectl("delete", "topic", "first", "-n", NS, "--timeout=60s")
    assert topic_replicas(bootstrap, shared) is not None

    log.info("phase: the remaining resource takes the topic over")
    kube.wait_condition("topic", "second", NS, "True")
    wait_until(lambda: len(topic_replicas(bootstrap, shared) or {}) == 2,
               timeout=RECONCILE_TIMEOUT_S, what="second's 2 partitions")
    kube.kubectl("delete", "topic", "second", "-n", NS, "--timeout=60s")
    wait_until(lambda: topic_replicas(bootstrap, shared) is None, timeout=RECONCILE_TIMEOUT_S,
               what=f"topic {shared} deleted")

    assert len(topic_replicas(bootstrap, bystander)) == 3, "the bystander topic was touched"


def test_a_consumer_group_reports_lag_and_resets_once_when_empty(kube, operator, solo,
                                                                  solo_cluster,
                                                                  prometheus_factory):
    bootstrap = solo.bootstrap
    topic = f"ledger-{suffix()}"
    group = f"readers-{suffix()}"
    kube.apply(topic_yaml(topic, "solo", 1, 1), NS)
    kube.wait_condition("topic", topic, NS, "True")
    log.info("phase: 10 records in %s, group %s committed 4", topic, group)
    producer = confluent_producer(bootstrap)
    produce_confluent(producer, topic, [{"value": f"v{i}".encode()} for i in range(10)])
    commit_standalone(bootstrap, group, topic, {0: 4})

    kube.apply(f"""
apiVersion: runnel.dev/v1alpha1
kind: ConsumerGroup
metadata: {{name: readers}}
spec:
  cluster: solo
  groupId: {group}
""", NS)

    def status():
        return (kube.get("consumergroup", "readers", NS) or {}).get("status") or {}

    s = wait_until(lambda: status() if status().get("lag") == 6 else None,
                   timeout=RECONCILE_TIMEOUT_S, what="lag 6")
    assert s["partitions"] == [{"topic": topic, "partition": 0, "committed": 4, "end": 10, "lag": 6}]
    assert (s["groupId"], s["members"]) == (group, 0)
    kube.wait_condition("consumergroup", "readers", NS, "True", "GroupObserved")

    log.info("phase: the lag reaches the Grafana dashboard's panels through a real Prometheus")
    prom = prometheus_factory({"runnel-operator": [f"127.0.0.1:{operator.metrics_port}"]})
    panels = dashboard_queries()
    [by_group], [by_partition] = panels["Lag by group"], panels["Lag by partition"]
    wait_until(lambda: prom.series(by_group, "group").get(group) == 6, timeout=60,
               what="lag 6 in the dashboard's lag-by-group panel")
    lags = {(r["metric"]["group"], r["metric"]["topic"], r["metric"]["partition"]):
            float(r["value"][1]) for r in prom.query(by_partition)}
    assert lags.get((group, topic, "0")) == 6, lags

    log.info("phase: a reset waits while the group has a member")
    member = Member(bootstrap, group, [topic], "m1")
    try:
        poll_members([member], lambda: member.assigned(), what="member assigned")
        kube.kubectl("patch", "consumergroup", "readers", "-n", NS, "--type=merge", "-p",
                     json.dumps({"spec": {"resetOffsets": {"to": "earliest", "topics": [topic]}}}))
        poll_members([member], lambda: (kube.condition("consumergroup", "readers", NS,
                                                       "OffsetsReset") or {}).get("reason")
                     == "GroupNotEmpty", what="OffsetsReset=False GroupNotEmpty",
                     timeout=RECONCILE_TIMEOUT_S)
        assert status()["members"] == 1
        assert admin_committed(bootstrap, group) == {(topic, 0): 4}
    finally:
        member.close()

    log.info("phase: once the group is empty the reset is applied, once")
    kube.wait_condition("consumergroup", "readers", NS, "True", "ResetApplied",
                        type_="OffsetsReset")
    generation = kube.get("consumergroup", "readers", NS)["metadata"]["generation"]
    assert status()["resetAppliedGeneration"] == generation
    assert admin_committed(bootstrap, group) == {(topic, 0): 0}
    wait_until(lambda: status().get("lag") == 10, timeout=RECONCILE_TIMEOUT_S, what="lag 10")

    log.info("phase: a later commit stands: the reset is not a standing state")
    commit_standalone(bootstrap, group, topic, {0: 7})
    wait_until(lambda: status().get("lag") == 3, timeout=RECONCILE_TIMEOUT_S, what="lag 3")
    wait_until(lambda: prom.series(by_group, "group").get(group) == 3, timeout=60,
               what="lag 3 on the dashboard")
    refreshes = set()

    def refreshed_twice_more() -> bool:
        refreshes.add(status().get("lastRefreshed"))
        return len(refreshes) >= 3

    wait_until(refreshed_twice_more, timeout=RECONCILE_TIMEOUT_S, what="two more refreshes")
    assert admin_committed(bootstrap, group) == {(topic, 0): 7}


def test_a_scale_down_moves_replicas_off_the_leaving_broker_first(kube, operator,
                                                                   shrink_cluster):
    c = shrink_cluster.start()
    topic, stuck = f"held-{suffix()}", f"stuck-{suffix()}"
    log.info("phase: Cluster shrink with 4 brokers; %s on brokers 1001 and 2000, %s on all four",
             topic, stuck)
    kube.apply(CLUSTER.format(name="shrink", brokers=4, zones="[zone-a, zone-b, zone-c]"), NS)
    kube.wait_condition("cluster", "shrink", NS, "True", "BrokersReady")

    def zone_a_size() -> int:
        return kube.get("statefulset", "shrink-zone-a", NS)["spec"]["replicas"]

    assert zone_a_size() == 2
    c.create_topic(topic, assignment=[[1001, 2000]])
    c.create_topic(stuck, assignment=[[1000, 2000, 3000, 1001]])
    reports = produce_confluent(confluent_producer(c.bootstrap), topic,
                                [{"value": b"v%03d" % i} for i in range(100)])
    acked = sorted((d.offset, d.value) for d in reports)

    log.info("phase: brokers 4 -> 3: broker 1001 stays: three brokers cannot hold %s's four "
             "replicas", stuck)
    kube.kubectl("patch", "cluster", "shrink", "-n", NS, "--type=merge", "-p",
                 '{"spec":{"brokers":3}}')
    held = kube.wait_condition("cluster", "shrink", NS, "False", "BrokersHoldReplicas",
                               type_="ScaleDown")
    assert f"{stuck}/0 (4 replicas)" in held["message"] and "1001" in held["message"], \
        held["message"]
    assert zone_a_size() == 2, "the StatefulSet shrank while its last broker held a replica"
    assert c.broker(1001).alive()
    assert (topic_replicas(c.bootstrap, topic) or {}).get(0) == [1001, 2000], \
        "nothing is moved while some replica cannot be"

    log.info("phase: %s is deleted: the operator moves %s's replica from 1001 to 1000 "
             "(same zone), then shrinks zone-a's StatefulSet", stuck, topic)
    deleter = admin(c.bootstrap)  # alive until the future completes
    deleter.delete_topics([stuck])[stuck].result(30)
    wait_until(lambda: (topic_replicas(c.bootstrap, topic) or {}).get(0) == [1000, 2000],
               timeout=RECONCILE_TIMEOUT_S, interval=0.5,
               what=f"partition 0 of {topic} moved to [1000, 2000]")
    wait_until(lambda: zone_a_size() == 1, timeout=RECONCILE_TIMEOUT_S,
               what="StatefulSet shrink-zone-a at 1 replica")
    wait_until(lambda: kube.condition("cluster", "shrink", NS, "ScaleDown") is None,
               timeout=RECONCILE_TIMEOUT_S, what="the ScaleDown condition cleared")
    records, _ = read_all(c, topic, 1)
    assert sorted((r.offset, r.value) for r in records) == acked


REVISION = "runnel.dev/revision"


class StatefulSetStandIn:
    """What the StatefulSet controller and the kubelet would do, as far as a
    rolling restart needs (neither runs here): a pod object per broker, made
    from its StatefulSet's current template and marked Ready while its broker
    answers; when the operator deletes a pod, the broker process restarts
    (a pod's restart) and the pod comes back from the current template. It
    records, at each deletion, which pods were missing and whether every
    ISR was full."""

    def __init__(self, kube: KubeControlPlane, c: RackCluster, cluster: str, topic: str):
        self.kube, self.c, self.cluster, self.topic = kube, c, cluster, topic
        self.zones = {1000: "zone-a", 2000: "zone-b", 3000: "zone-c"}
        self.deleted: list[tuple[str, int, list[int]]] = []  # (pod, missing pods, ISR sizes)

    def pod_name(self, node_id: int) -> str:
        return f"{self.cluster}-{self.zones[node_id]}-0"

    def create(self, node_id: int) -> str:
        sts = self.kube.get("statefulset", f"{self.cluster}-{self.zones[node_id]}", NS)
        template = sts["spec"]["template"]
        name = self.pod_name(node_id)
        spec = dict(template["spec"])
        spec["volumes"] = list(spec.get("volumes") or []) + [
            {"name": "data", "persistentVolumeClaim": {"claimName": f"data-{name}"}}]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": NS, "labels": template["metadata"]["labels"],
                            "annotations": template["metadata"]["annotations"]},
               "spec": spec}
        self.kube.kubectl("create", "-f", "-", input=json.dumps(pod))
        self.kube.kubectl("patch", "pod", name, "-n", NS, "--subresource=status", "--type=merge",
                          "-p", json.dumps({"status": {"conditions": [
                              {"type": "Ready", "status": "True"}]}}))
        return template["metadata"]["annotations"][REVISION]

    def revision(self, node_id: int) -> Optional[str]:
        pod = self.kube.get("pod", self.pod_name(node_id), NS)
        return pod["metadata"]["annotations"].get(REVISION) if pod else None

    def step(self) -> None:
        """Bring back any pod the operator deleted."""
        for node_id in ROLL_IDS:
            if self.kube.get("pod", self.pod_name(node_id), NS) is not None:
                continue
            missing = [i for i in ROLL_IDS
                       if self.kube.get("pod", self.pod_name(i), NS) is None]
            isr = [len(p.isr) for p in self.c.metadata(topics=[self.topic])
                   .partitions(self.topic).values()]
            log.info("the operator deleted pod %s (pods missing: %s, ISR sizes %s); "
                     "restarting broker %d", self.pod_name(node_id), missing, isr, node_id)
            self.deleted.append((self.pod_name(node_id), len(missing), isr))
            self.c.restart(node_id)
            self.create(node_id)


def test_a_config_change_rolls_the_brokers_one_at_a_time(kube, operator, roll_cluster):
    c = roll_cluster.start()
    topic = f"rolled-{suffix()}"
    c.create_topic(topic, partitions=3, replication_factor=3)
    reports = produce_confluent(confluent_producer(c.bootstrap), topic,
                                [{"value": b"r%03d" % i} for i in range(90)])
    acked = sorted((d.partition, d.offset, d.value) for d in reports)
    log.info("phase: Cluster roll with 3 brokers; pods made from its StatefulSets' templates")
    kube.apply(CLUSTER.format(name="roll", brokers=3, zones="[zone-a, zone-b, zone-c]"), NS)
    kube.wait_condition("cluster", "roll", NS, "True", "BrokersReady")
    standin = StatefulSetStandIn(kube, c, "roll", topic)
    first = {i: standin.create(i) for i in ROLL_IDS}
    assert len(set(first.values())) == 3, "each zone's template has its own revision"
    assert kube.condition("cluster", "roll", NS, "RollingRestart") is None
    assert not standin.deleted

    log.info("phase: spec.config changes: every broker is restarted, one at a time, each only "
             "while the others run and every ISR is full")
    kube.kubectl("patch", "cluster", "roll", "-n", NS, "--type=merge", "-p",
                 '{"spec":{"config":{"log.retention.ms":"7200000"}}}')
    wait_until(lambda: "log.retention.ms=7200000" in kube.get("configmap", "roll-config", NS)
               ["data"]["broker.settings"], timeout=RECONCILE_TIMEOUT_S,
               what="the ConfigMap with the new setting")
    rolling = kube.wait_condition("cluster", "roll", NS, "True", type_="RollingRestart")
    log.info("RollingRestart: %s: %s", rolling["reason"], rolling["message"])

    def rolled() -> bool:
        standin.step()
        now = {i: standin.revision(i) for i in ROLL_IDS}
        return all(now[i] not in (None, first[i]) for i in ROLL_IDS)

    wait_until(rolled, timeout=RECONCILE_TIMEOUT_S * 3, interval=0.5,
               what="every broker pod on its new revision")
    wait_until(lambda: kube.condition("cluster", "roll", NS, "RollingRestart") is None,
               timeout=RECONCILE_TIMEOUT_S, what="the RollingRestart condition cleared")
    assert sorted(p for p, _, _ in standin.deleted) == sorted(standin.pod_name(i) for i in ROLL_IDS), \
        f"each pod restarted exactly once: {standin.deleted}"
    for pod, missing, isr in standin.deleted:
        assert missing == 1 and all(n == 3 for n in isr), (
            f"pod {pod} was deleted with {missing} pods missing and ISR sizes {isr}")
    events = kube.kubectl("get", "events", "-n", NS, "-o", "json").stdout
    assert "RestartingBroker" in events

    log.info("phase: every acknowledged record is still there")
    records, _ = read_all(c, topic, 3)
    assert sorted((r.partition, r.offset, r.value) for r in records) == acked


def test_three_racks_each_partition_spans_three_zones(kube, operator, racks):
    bootstrap = racks.bootstrap
    log.info("phase: Cluster racks over three brokers in zone-a/b/c")
    kube.apply(CLUSTER.format(name="racks", brokers=3, zones="[zone-a, zone-b, zone-c]"), NS)
    kube.wait_condition("cluster", "racks", NS, "True", "BrokersReady")
    rack_of = broker_racks(bootstrap)
    assert sorted(rack_of.values()) == ["zone-a", "zone-b", "zone-c"]

    name = f"spread-{suffix()}"
    log.info("phase: Topic %s, 6 partitions x 3 replicas", name)
    kube.apply(topic_yaml(name, "racks", 6, 3), NS)
    kube.wait_condition("topic", name, NS, "True")

    def check(partitions: int) -> None:
        replicas = topic_replicas(bootstrap, name)
        assert len(replicas) == partitions
        for p, rs in replicas.items():
            assert len(rs) == 3 and {rack_of[r] for r in rs} == {"zone-a", "zone-b", "zone-c"}, \
                f"partition {p}: replicas {rs}"
        leaders = Counter(rs[0] for rs in replicas.values())
        assert set(leaders.values()) == {partitions // 3}, f"leaders unbalanced: {leaders}"

    wait_until(lambda: len(topic_replicas(bootstrap, name) or {}) == 6, timeout=30,
               what="6 partitions")
    check(6)
    log.info("phase: raising to 9 partitions keeps the spread")
    kube.kubectl("patch", "topic", name, "-n", NS, "--type=merge", "-p", '{"spec":{"partitions":9}}')
    wait_until(lambda: len(topic_replicas(bootstrap, name) or {}) == 9,
               timeout=RECONCILE_TIMEOUT_S, what="9 partitions")
    check(9)


def test_changing_a_topics_replicas_reassigns_its_partitions(kube, operator, racks):
    bootstrap = racks.bootstrap
    kube.apply(CLUSTER.format(name="racks", brokers=3, zones="[zone-a, zone-b, zone-c]"), NS)
    kube.wait_condition("cluster", "racks", NS, "True", "BrokersReady")
    rack_of = broker_racks(bootstrap)

    name = f"rf-{suffix()}"
    log.info("phase: Topic %s, 3 partitions x 1 replica, with records in each", name)
    kube.apply(topic_yaml(name, "racks", 3, 1), NS)
    kube.wait_condition("topic", name, NS, "True")
    wait_until(lambda: len(topic_replicas(bootstrap, name) or {}) == 3, timeout=30,
               what="3 partitions")
    before = topic_replicas(bootstrap, name)
    reports = produce_confluent(confluent_producer(bootstrap), name,
                                [{"value": b"rf-%04d" % i, "partition": i % 3} for i in range(300)],
                                timeout=60)
    assert all(d.error is None for d in reports), [d.error for d in reports if d.error][:5]
    acked = sorted((d.partition, d.offset, d.value) for d in reports)

    def in_sync(count: int):
        """partition -> (replicas, leader) once every partition has `count`
        replicas, all in sync, in one Metadata answer; else None."""
        md = admin(bootstrap).list_topics(topic=name, timeout=10)
        parts = md.topics[name].partitions.values()
        if all(len(p.replicas) == count and sorted(p.isrs) == sorted(p.replicas) for p in parts):
            return {p.id: (list(p.replicas), p.leader) for p in parts}
        return None

    for count in (3, 2):
        log.info("phase: spec.replicas -> %d: partitions reassigned, preferred leaders kept and "
                 "leading, one replica per zone", count)
        kube.kubectl("patch", "topic", name, "-n", NS, "--type=merge", "-p",
                     json.dumps({"spec": {"replicas": count}}))
        kube.wait_condition("topic", name, NS, "True")
        ongoing = ongoing_reassignments(bootstrap, name)
        assert not ongoing, f"Ready while the controller still moves replicas: {ongoing}"
        # (the brokers' Metadata follows the controller's within moments)
        after = wait_until(lambda: in_sync(count), timeout=30, ignore=(KeyError, KafkaException),
                           what=f"{count} in-sync replicas per partition")
        status = kube.get("topic", name, NS)["status"]
        assert status["replicas"] == count, status
        for p, (rs, leader) in after.items():
            assert rs[0] == before[p][0] and leader == rs[0], \
                f"partition {p}: was {before[p]}, now {rs} led by {leader}"
            assert len({rack_of[r] for r in rs}) == count, f"partition {p}: replicas {rs}"

    log.info("phase: every record is still there")
    records, _ = read_all(racks, name, 3)
    assert sorted((r.partition, r.offset, r.value) for r in records) == acked


def ongoing_reassignments(bootstrap: str, topic: str) -> dict:
    """The controller's reassignments in flight for `topic` (ListPartitionReassignments
    through kafka-python's admin client)."""
    from kafka import KafkaAdminClient

    a = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    try:
        res = a.list_partition_reassignments()
    finally:
        a.close()
    return {tp: r for tp, r in res.items() if tp.topic == topic}


def leads(op: Operator) -> bool:
    """Whether the operator's leader gauge says it holds its Lease."""
    return re.search(r"^runnel_operator_leader 1$", op.metrics(), re.M) is not None


def test_leader_election_hands_over(kube, tmp_path):
    log.info("phase: two operators campaign for one Lease; one leads")
    kube.kubectl("create", "namespace", "e2e-idle")
    common = ["--lease-name", "e2e-pair", "--namespace", "e2e-idle"]
    a = Operator(kube, tmp_path / "a", {}, [*common, "--identity", "op-a"]).start()
    b = None
    try:
        wait_until(lambda: leads(a), timeout=30, what="a leads")
        b = Operator(kube, tmp_path / "b", {}, [*common, "--identity", "op-b"]).start()
        lease = kube.get("lease", "e2e-pair", "default")
        assert lease["spec"]["holderIdentity"] == "op-a"
        assert not leads(b)

        log.info("phase: the leader stops and hands the Lease over")
        assert a.stop(signal.SIGTERM) == 0
        wait_until(lambda: leads(b), timeout=30, what="b leads")
        assert kube.get("lease", "e2e-pair", "default")["spec"]["holderIdentity"] == "op-b"
    finally:
        a.stop()
        if b is not None:
            b.stop()


def test_helm_chart_lints_renders_and_installs(kube):
    chart = str(REPO_ROOT / "charts" / "runnel-operator")
    log.info("phase: helm lint and helm template")
    kube.helm("lint", chart)
    rendered = kube.helm("template", "runnel-operator", chart, "-n", "runnel-system").stdout
    assert "kind: Deployment" in rendered and "replicas: 2" in rendered
    assert "kind: ClusterRole" in rendered
    assert not re.search(r"resources:.*\bnodes\b", rendered), "the operator must not need Nodes"
    assert "coordination.k8s.io" in rendered
    scoped = kube.helm("template", "runnel-operator", chart, "-n", "runnel-system",
                       "--set", "watchNamespace=apps").stdout
    assert "kind: ClusterRole" not in scoped and "namespace: apps" in scoped

    log.info("phase: the Grafana dashboard ships by default; alert rules and PodMonitor on request")
    assert "grafana_dashboard: \"1\"" in rendered and "runnel-overview.json" in rendered
    assert "kind: PrometheusRule" not in rendered and "kind: PodMonitor" not in rendered
    monitored = kube.helm("template", "runnel-operator", chart, "-n", "runnel-system",
                          "--set", "prometheusRule.enabled=true",
                          "--set", "podMonitor.enabled=true").stdout
    assert "kind: PrometheusRule" in monitored and "alert: RunnelUnderReplicatedPartitions" in monitored
    assert "kind: PodMonitor" in monitored

    log.info("phase: manifests/install.yaml is the rendered chart")
    install = (REPO_ROOT / "manifests" / "install.yaml").read_text()
    full = kube.helm("template", "runnel-operator", chart, "-n", "runnel-system",
                     "--include-crds").stdout
    assert full.strip() in install, "manifests/install.yaml is out of date: run manifests/render.sh"

    log.info("phase: helm install against the API server creates the Deployment")
    kube.helm("install", "runnel-operator", chart, "-n", "runnel-system", "--create-namespace")
    try:
        deploy = kube.get("deployment", "runnel-operator", "runnel-system")
        assert deploy["spec"]["replicas"] == 2
        assert kube.get("clusterrole", "runnel-operator") is not None
        sa = kube.get("serviceaccount", "runnel-operator", "runnel-system")
        assert sa is not None
        dashboards = kube.get("configmap", "runnel-operator-dashboards", "runnel-system")
        assert json.loads(dashboards["data"]["runnel-overview.json"]) == json.loads(
            DASHBOARD.read_text())
    finally:
        kube.helm("uninstall", "runnel-operator", "-n", "runnel-system")
