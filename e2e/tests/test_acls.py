"""Authorization by ACLs (`authorizer.class.name` set to Kafka's
StandardAuthorizer): Kafka's `kafka-acls.sh` (AclCommand, Java Admin) adds,
lists and removes ACLs; librdkafka clients authenticated with SASL/SCRAM are
allowed exactly what their ACLs say (topics, groups, transactional ids;
literal and prefixed patterns; DENY over ALLOW); super users may do
everything; the ACLs survive a restart. On an SSL listener the principal is
the client certificate's subject, mapped by `ssl.principal.mapping.rules`.
Bad settings stop the broker naming the setting, and a broker without an
authorizer says security is disabled."""

from __future__ import annotations

import logging
import subprocess

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import deadline, kafka_tool, kafka_tools_missing, metric_sum
from harness import (OP_TIMEOUT_S, Broker, confluent_producer,
                     produce_confluent, wait_until)
from tls_certs import Certs

log = logging.getLogger("e2e")

STANDARD = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
ALICE, ALICE_PASSWORD = "alice", "alice-secret"
BOB, BOB_PASSWORD = "bob", "bob-secret"


def sasl(user: str, password: str) -> dict:
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-256",
            "sasl.username": user, "sasl.password": password}


def scram(user: str, password: str) -> str:
    return f"SCRAM-SHA-256=[name={user},password={password}]"


@pytest.fixture
def acl_broker(broker_factory):
    if kafka_tools_missing():
        pytest.skip(f"kafka-acls.sh is Kafka's tool: {kafka_tools_missing()}")
    return broker_factory(
        settings={"listener.security.protocol": "SASL_PLAINTEXT",
                  "sasl.enabled.mechanisms": "SCRAM-SHA-256",
                  "authorizer.class.name": STANDARD,
                  "super.users": f"User:{ADMIN}"},
        extra_args=["--add-scram", ";".join([scram(ADMIN, ADMIN_PASSWORD),
                                             scram(ALICE, ALICE_PASSWORD),
                                             scram(BOB, BOB_PASSWORD)])])


class Acls:
    """kafka-acls.sh against one broker, as the super user."""

    def __init__(self, broker: Broker, workdir):
        self.workdir = workdir
        props = workdir / "admin.properties"
        workdir.mkdir(parents=True, exist_ok=True)
        props.write_text(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n"
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN}" password="{ADMIN_PASSWORD}";\n')
        self.base = ("kafka.admin.AclCommand", "--bootstrap-server", broker.bootstrap,
                     "--command-config", str(props))

    def __call__(self, *args: str, check: bool = True) -> str:
        proc = kafka_tool(self.workdir, *self.base, *args, check=check)
        return proc.stdout + proc.stderr


def delivery_errors(bootstrap: str, topic: str, n: int, **conf) -> list:
    producer = confluent_producer(bootstrap, **{"message.timeout.ms": 20000, **conf})
    reports = produce_confluent(producer, topic, [{"value": b"v%d" % i} for i in range(n)])
    return [r.error.code() if r.error else None for r in reports]


def consume_group(bootstrap: str, topic: str, group: str, want: int, **conf) -> tuple[list, list]:
    """Subscribes as a member of `group` until `want` records or an error;
    the values and the errors seen."""
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, **conf})
    values, errors = [], []
    try:
        c.subscribe([topic])

        def done() -> bool:
            msg = c.poll(0.5)
            if msg is not None:
                if msg.error():
                    errors.append(msg.error().code())
                else:
                    values.append(msg.value())
            return bool(errors) or len(values) >= want

        wait_until(done, timeout=OP_TIMEOUT_S, interval=0, what=f"{want} records or an error")
        if values and not errors:
            c.commit(asynchronous=False)
    finally:
        c.close()
    return values, errors


def test_acls_decide_what_each_user_may_do(acl_broker, topic, tmp_path):
    b = acl_broker
    acls = Acls(b, tmp_path / "acls")
    as_admin, as_alice, as_bob = (sasl(ADMIN, ADMIN_PASSWORD), sasl(ALICE, ALICE_PASSWORD),
                                  sasl(BOB, BOB_PASSWORD))

    log.info("phase: the super user creates the topic; with no ACLs alice sees and writes nothing")
    admin = AdminClient({"bootstrap.servers": b.bootstrap, **as_admin})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(OP_TIMEOUT_S)
    alice_admin = AdminClient({"bootstrap.servers": b.bootstrap, **as_alice})
    assert topic not in alice_admin.list_topics(timeout=OP_TIMEOUT_S).topics
    # A listing hides what alice may not see; that is not a denial (Kafka's logIfDenied).
    assert "is Denied" not in b.log_tail(400)
    assert not metric_sum(b, "runnel_authorization_denied_total")
    errors = delivery_errors(b.bootstrap, topic, 3, **as_alice)
    assert errors == [KafkaError.TOPIC_AUTHORIZATION_FAILED] * 3, errors
    log.info("phase: the refusal (librdkafka's Metadata request for the topic) is in the "
             "broker's log as Kafka's authorizer writes it, and counted in "
             "runnel_authorization_denied_total")
    wait_until(lambda: f"Principal = User:{ALICE} is Denied operation = Describe from host = "
               f"127.0.0.1 on resource = Topic:LITERAL:{topic} for request = Metadata"
               in b.log_tail(400), timeout=30, what="the denial in the broker log")
    assert (metric_sum(b, "runnel_authorization_denied_total") or 0) >= 1
    with pytest.raises(KafkaException) as refused:
        alice_admin.create_topics([NewTopic(topic + "-mine", 1, 1)])[topic + "-mine"].result(
            OP_TIMEOUT_S)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    log.info("phase: kafka-acls.sh gives alice the producer ACLs, and the consumer ones by "
             "prefix (the topic's name as a prefix, and alice-* groups)")
    out = acls("--add", "--allow-principal", f"User:{ALICE}", "--producer", "--topic", topic)
    log.info("kafka-acls --producer:\n%s", out)
    out = acls("--add", "--allow-principal", f"User:{ALICE}", "--consumer", "--topic", topic,
               "--group", "alice-", "--resource-pattern-type", "prefixed")
    log.info("kafka-acls --consumer:\n%s", out)
    listed = acls("--list", "--topic", topic, "--resource-pattern-type", "match")
    log.info("kafka-acls --list (every ACL that applies to the topic):\n%s", listed)
    assert "patternType=LITERAL" in listed and "patternType=PREFIXED" in listed, listed
    for operation in ("WRITE", "READ", "DESCRIBE", "CREATE"):
        assert f"principal=User:{ALICE}, host=*, operation={operation}, permissionType=ALLOW" \
            in listed, listed
    groups = acls("--list", "--group", "alice-", "--resource-pattern-type", "prefixed")
    assert "patternType=PREFIXED" in groups and "operation=READ" in groups, groups

    log.info("phase: alice now writes, and reads as a member of an alice-* group")
    assert delivery_errors(b.bootstrap, topic, 10, **as_alice) == [None] * 10
    values, errors = consume_group(b.bootstrap, topic, "alice-readers", 10, **as_alice)
    assert not errors and len(values) == 10, (errors, values)
    assert topic in alice_admin.list_topics(timeout=OP_TIMEOUT_S).topics

    log.info("phase: the Java producer (idempotent by default) as alice: Write on a topic is "
             "enough for its producer id (KIP-679)")
    alice_props = tmp_path / "alice.properties"
    alice_props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ALICE}" password="{ALICE_PASSWORD}";\n'
        f"enable.idempotence=true\nacks=all\nbootstrap.servers={b.bootstrap}\n")
    out = kafka_tool(tmp_path, "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
                     "--num-records", "50", "--record-size", "20", "--throughput", "-1",
                     "--producer.config", str(alice_props)).stdout
    log.info("ProducerPerformance as alice: %s", out.strip().splitlines()[-1:])
    assert "50 records sent" in out, out
    bob_java = tmp_path / "bob-java.properties"
    bob_java.write_text(alice_props.read_text().replace(ALICE, BOB))
    proc = kafka_tool(tmp_path, "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
                      "--num-records", "5", "--record-size", "20", "--throughput", "-1",
                      "--producer.config", str(bob_java), check=False, timeout=120)
    log.info("ProducerPerformance as bob: exit %s %s", proc.returncode,
             (proc.stdout + proc.stderr)[-400:])
    assert "AuthorizationException" in proc.stdout + proc.stderr

    log.info("phase: Write on a topic that does not exist yet does not create it: producing "
             "would, and that needs Create")
    acls("--add", "--allow-principal", f"User:{ALICE}", "--operation", "Write", "--topic",
         "alice-", "--resource-pattern-type", "prefixed")
    errors = delivery_errors(b.bootstrap, "alice-new", 1, **as_alice)
    assert errors == [KafkaError.TOPIC_AUTHORIZATION_FAILED], errors
    assert "alice-new" not in admin.list_topics(timeout=OP_TIMEOUT_S).topics

    log.info("phase: a group outside her prefix is refused (GROUP_AUTHORIZATION_FAILED); bob "
             "may not read the topic at all")
    _, errors = consume_group(b.bootstrap, topic, "other-group", 1, **as_alice)
    assert KafkaError.GROUP_AUTHORIZATION_FAILED in errors, errors
    _, errors = consume_group(b.bootstrap, topic, "alice-bob", 1, **as_bob)
    assert errors and set(errors) <= {KafkaError.GROUP_AUTHORIZATION_FAILED,
                                      KafkaError.TOPIC_AUTHORIZATION_FAILED}, errors
    read = subprocess.run(
        ["kcat", "-C", "-b", b.bootstrap, "-t", topic, "-p", "0", "-o", "beginning", "-e",
         "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=SCRAM-SHA-256",
         "-X", f"sasl.username={BOB}", "-X", f"sasl.password={BOB_PASSWORD}"],
        capture_output=True, text=True, timeout=deadline(60))
    log.info("kcat as bob: exit %s, %s", read.returncode, read.stderr.strip())
    assert read.returncode != 0 and "Topic authorization failed" in read.stderr, read.stderr
    assert not read.stdout.strip(), read.stdout

    log.info("phase: a DENY beats the ALLOW: alice may no longer read (but still write)")
    acls("--add", "--deny-principal", f"User:{ALICE}", "--operation", "Read", "--topic", topic)
    _, errors = consume_group(b.bootstrap, topic, "alice-denied", 1, **as_alice)
    assert KafkaError.TOPIC_AUTHORIZATION_FAILED in errors, errors
    assert delivery_errors(b.bootstrap, topic, 1, **as_alice) == [None]
    out = acls("--remove", "--force", "--deny-principal", f"User:{ALICE}", "--operation", "Read",
               "--topic", topic)
    log.info("kafka-acls --remove:\n%s", out)
    assert "DENY" not in acls("--list", "--topic", topic)
    values, errors = consume_group(b.bootstrap, topic, "alice-again", 11, **as_alice)
    assert not errors and len(values) == 11, errors

    log.info("phase: transactions need Write on the transactional id")
    txn_conf = {**as_alice, "transactional.id": "alice-tx-1"}
    p = confluent_producer(b.bootstrap, **txn_conf)
    with pytest.raises(KafkaException) as refused:
        p.init_transactions(OP_TIMEOUT_S)
    log.info("init_transactions without an ACL: %s", refused.value)
    assert refused.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    acls("--add", "--allow-principal", f"User:{ALICE}", "--producer", "--topic", topic,
         "--transactional-id", "alice-tx-", "--resource-pattern-type", "prefixed")
    p = confluent_producer(b.bootstrap, **{**txn_conf, "transactional.id": "alice-tx-2"})
    p.init_transactions(OP_TIMEOUT_S)
    p.begin_transaction()
    p.produce(topic, b"in-a-transaction", partition=0)
    p.commit_transaction(OP_TIMEOUT_S)

    log.info("phase: the ACLs survive a restart")
    b.restart()
    listed_again = acls("--list", "--topic", topic)
    assert f"principal=User:{ALICE}, host=*, operation=WRITE, permissionType=ALLOW" \
        in listed_again, listed_again
    assert delivery_errors(b.bootstrap, topic, 1, **as_alice) == [None]
    assert delivery_errors(b.bootstrap, topic, 1, **as_bob) == [
        KafkaError.TOPIC_AUTHORIZATION_FAILED]

    log.info("phase: bob may not manage ACLs (CLUSTER_AUTHORIZATION_FAILED)")
    bob_props = tmp_path / "bob.properties"
    bob_props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{BOB}" password="{BOB_PASSWORD}";\n')
    proc = kafka_tool(tmp_path, "kafka.admin.AclCommand", "--bootstrap-server", b.bootstrap,
                      "--command-config", str(bob_props), "--add", "--allow-principal",
                      f"User:{BOB}", "--operation", "All", "--topic", "*", check=False)
    log.info("bob's kafka-acls: %s", (proc.stdout + proc.stderr)[-800:])
    assert "ClusterAuthorizationException" in proc.stdout + proc.stderr


def test_tls_principals_come_from_the_certificate_subject(broker_factory, topic, tmp_path):
    certs = Certs(tmp_path / "certs")
    key, crt = certs.server()
    b = broker_factory(settings={
        "listener.security.protocol": "SSL",
        "ssl.keystore.location": str(crt), "ssl.keystore.key.location": str(key),
        "ssl.truststore.location": str(certs.ca_crt), "ssl.client.auth": "required",
        "authorizer.class.name": STANDARD,
        # The CN of an "apps" certificate; any other subject whole.
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]*),OU=apps,O=Example$/$1/L,DEFAULT",
        "super.users": "User:CN=operator,O=Example"})
    tls = {"security.protocol": "SSL", "ssl.ca.location": str(certs.ca_crt)}

    def client(cn: str, subject: str) -> dict:
        k, c = certs.client(cn, subject)
        return {**tls, "ssl.key.location": str(k), "ssl.certificate.location": str(c)}

    operator = client("operator", "/O=Example/CN=operator")
    alice = client("alice", "/O=Example/OU=apps/CN=Alice")
    carol = client("carol", "/O=Example/OU=other/CN=carol")

    log.info("phase: the super user (its whole subject) creates the topic and grants "
             "User:alice (mapped from CN=Alice,OU=apps,O=Example) Write on it")
    admin = AdminClient({"bootstrap.servers": b.bootstrap, **operator})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(OP_TIMEOUT_S)
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType,
                                       ResourcePatternType, ResourceType)
    binding = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:alice",
                         "*", AclOperation.WRITE, AclPermissionType.ALLOW)
    for f in admin.create_acls([binding]).values():
        f.result(OP_TIMEOUT_S)
    from confluent_kafka.admin import AclBindingFilter
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    described = admin.describe_acls(everything).result(OP_TIMEOUT_S)
    assert [(a.name, a.principal, a.operation) for a in described] == [
        (topic, "User:alice", AclOperation.WRITE)], described

    log.info("phase: alice's certificate may write; carol's (not an apps certificate, so "
             "User:CN=carol,OU=other,O=Example) may not")
    assert delivery_errors(b.bootstrap, topic, 5, **alice) == [None] * 5
    assert delivery_errors(b.bootstrap, topic, 2, **carol) == [
        KafkaError.TOPIC_AUTHORIZATION_FAILED] * 2

    log.info("phase: DeleteAcls through the Admin API removes it; alice is refused again")
    deleted = admin.delete_acls([everything])[everything].result(OP_TIMEOUT_S)
    assert len(deleted) == 1, deleted
    assert delivery_errors(b.bootstrap, topic, 1, **alice) == [
        KafkaError.TOPIC_AUTHORIZATION_FAILED]


@pytest.mark.parametrize("case", ["authorizer", "super-users", "mapping-rules"])
def test_bad_authorization_settings_stop_the_broker_with_the_setting_named(tmp_path, case):
    settings, expected = {
        "authorizer": ({"authorizer.class.name": "kafka.security.authorizer.AclAuthorizer"},
                       "authorizer.class.name"),
        "super-users": ({"authorizer.class.name": STANDARD, "super.users": "admin"},
                        "super.users"),
        "mapping-rules": ({"ssl.principal.mapping.rules": "RULE:^CN=(.*"},
                          "ssl.principal.mapping.rules"),
    }[case]
    b = Broker(tmp_path / "broker", settings=settings)
    proc = subprocess.run(b.argv(), capture_output=True, text=True, timeout=60)
    log.info("%s: exit %s, stderr: %s", case, proc.returncode, proc.stderr[-600:])
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr


def test_acl_apis_without_an_authorizer_say_security_is_disabled(broker, tmp_path):
    if kafka_tools_missing():
        pytest.skip(f"kafka-acls.sh is Kafka's tool: {kafka_tools_missing()}")
    proc = kafka_tool(tmp_path, "kafka.admin.AclCommand", "--bootstrap-server", broker.bootstrap,
                      "--list", check=False)
    log.info("kafka-acls --list without an authorizer: %s", (proc.stdout + proc.stderr)[-600:])
    assert "SecurityDisabledException" in proc.stdout + proc.stderr


def test_acls_reach_every_broker_of_a_cluster(cluster_factory, request):
    """ACLs are cluster metadata: one made through one broker is enforced by
    the others (here a DENY, with `allow.everyone.if.no.acl.found` letting
    the anonymous clients manage ACLs), and its removal too."""
    import os
    from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                       AclPermissionType, ResourcePatternType, ResourceType)
    c = cluster_factory(n=3, settings={"authorizer.class.name": STANDARD,
                                       "allow.everyone.if.no.acl.found": "true"})
    topic = request.node.name[:40] + "-" + os.urandom(3).hex()
    c.create_topic(topic, 3, 3)
    c.wait_isr(topic, 3, partitions=3, timeout=120)
    first, *others = c.brokers
    log.info("phase: a DENY of Write made through broker %s", first.node_id)
    deny = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:ANONYMOUS",
                      "*", AclOperation.WRITE, AclPermissionType.DENY)
    a = AdminClient({"bootstrap.servers": first.bootstrap})
    for f in a.create_acls([deny]).values():
        f.result(OP_TIMEOUT_S)
    for b in others:
        log.info("phase: broker %s (a leader of some partitions) refuses writes", b.node_id)
        wait_until(lambda: delivery_errors(b.bootstrap, topic, 3) ==
                   [KafkaError.TOPIC_AUTHORIZATION_FAILED] * 3,
                   timeout=60, what=f"broker {b.node_id} enforcing the DENY")
        via = AdminClient({"bootstrap.servers": b.bootstrap})
        described = via.describe_acls(
            AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)).result(OP_TIMEOUT_S)
        assert [(x.name, x.permission_type) for x in described] == [
            (topic, AclPermissionType.DENY)], described
    log.info("phase: deleted through broker %s, writes work everywhere again",
             others[-1].node_id)
    last = AdminClient({"bootstrap.servers": others[-1].bootstrap})
    everything = AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, None,
                                  None, AclOperation.ANY, AclPermissionType.ANY)
    assert len(last.delete_acls([everything])[everything].result(OP_TIMEOUT_S)) == 1
    wait_until(lambda: delivery_errors(first.bootstrap, topic, 3) == [None] * 3, timeout=60,
               what="writes allowed again")
