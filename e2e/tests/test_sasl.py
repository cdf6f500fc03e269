"""SASL authentication on a SASL_PLAINTEXT listener: SCRAM-SHA-256 and
SCRAM-SHA-512 (KIP-84) and PLAIN, with the credentials in the cluster
metadata. The first user comes from `--add-scram` (KIP-900's syntax), more
through Kafka's `kafka-configs.sh --entity-type users` (AlterUserScramCredentials,
KIP-554). librdkafka (confluent-kafka, kcat), kafka-python and the Java
tools authenticate; a wrong password, a deleted credential or a client that
does not authenticate gets nothing."""

from __future__ import annotations

import logging
import subprocess

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import deadline, kafka_tool, kafka_tools_missing, metric_sum
from group_helpers import Wire, api_version_ranges
from harness import (OP_TIMEOUT_S, confluent_producer, consume_confluent, produce_confluent,
                     wait_until)

log = logging.getLogger("e2e")

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
ALICE, ALICE_PASSWORD = "alice", "alice-secret"


def sasl(mechanism: str, user: str, password: str) -> dict:
    """librdkafka settings for a SASL_PLAINTEXT connection."""
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": mechanism,
            "sasl.username": user, "sasl.password": password}


def jaas_properties(path, mechanism: str, user: str, password: str):
    """A Java client properties file for SASL/SCRAM."""
    path.write_text(
        "security.protocol=SASL_PLAINTEXT\n"
        f"sasl.mechanism={mechanism}\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{user}" password="{password}";\n')
    return path


@pytest.fixture
def sasl_broker(broker_factory):
    return broker_factory(
        settings={"listener.security.protocol": "SASL_PLAINTEXT",
                  "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN"},
        extra_args=["--add-scram", f"SCRAM-SHA-256=[name={ADMIN},password={ADMIN_PASSWORD}]"])


def admin_of(bootstrap: str, **conf) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, **conf})


def test_clients_authenticate_with_scram_and_plain(sasl_broker, topic, tmp_path):
    b = sasl_broker
    as_admin = sasl("SCRAM-SHA-256", ADMIN, ADMIN_PASSWORD)

    log.info("phase: librdkafka as %s (SCRAM-SHA-256) creates a topic, produces and consumes",
             ADMIN)
    a = admin_of(b.bootstrap, **as_admin)
    a.create_topics([NewTopic(topic, 1, 1)])[topic].result(OP_TIMEOUT_S)
    producer = confluent_producer(b.bootstrap, **as_admin)
    reports = produce_confluent(producer, topic,
                                [{"value": b"admin-%d" % i, "partition": 0} for i in range(20)])
    assert [(r.error, r.offset) for r in reports] == [(None, i) for i in range(20)]
    read = consume_confluent(b.bootstrap, topic, {0: 0}, {0: 20}, **as_admin)
    assert [r.value for r in read] == [b"admin-%d" % i for i in range(20)]

    log.info("phase: a wrong password is refused (SASL_AUTHENTICATION_FAILED)")
    wrong = admin_of(b.bootstrap, **sasl("SCRAM-SHA-256", ADMIN, "not-the-password"))
    with pytest.raises(KafkaException) as info:
        wrong.list_topics(timeout=10)
    log.info("wrong password: %s", info.value)
    assert metric_sum(b, "runnel_sasl_failed_authentications_total") >= 1
    assert metric_sum(b, "runnel_sasl_authentications_total") >= 1

    log.info("phase: a client that does not authenticate gets ApiVersions only; "
             "any other request closes the connection")
    ranges = api_version_ranges(b.host, b.port)
    assert ranges[17] == (0, 1) and ranges[36][0] == 0, "SaslHandshake, SaslAuthenticate"
    from kafka.protocol.metadata import MetadataRequest, MetadataResponse
    w = Wire(b.host, b.port, client_id="e2e-no-sasl")
    try:
        # EOFError: closed before a response; ConnectionResetError (an
        # OSError) if the close raced the request.
        with pytest.raises((EOFError, OSError)):
            w.call(MetadataRequest(topics=None), MetadataResponse, 9)
    finally:
        w.close()

    why = kafka_tools_missing()
    if why:
        pytest.skip(f"the rest uses Kafka's kafka-configs tool: {why}")
    log.info("phase: kafka-configs.sh (as %s) gives %s a SCRAM-SHA-512 credential", ADMIN, ALICE)
    admin_props = jaas_properties(tmp_path / "admin.properties", "SCRAM-SHA-256", ADMIN,
                                  ADMIN_PASSWORD)
    configs = ("kafka.admin.ConfigCommand", "--bootstrap-server", b.bootstrap,
               "--command-config", str(admin_props))
    out = kafka_tool(tmp_path, *configs, "--alter", "--add-config",
                     f"SCRAM-SHA-512=[iterations=8192,password={ALICE_PASSWORD}]",
                     "--entity-type", "users", "--entity-name", ALICE).stdout
    assert f"Completed updating config for user {ALICE}." in out, out
    out = kafka_tool(tmp_path, *configs, "--describe", "--entity-type", "users",
                     "--entity-name", ALICE).stdout
    log.info("kafka-configs --describe:\n%s", out)
    assert "SCRAM-SHA-512=iterations=8192" in out, out

    log.info("phase: kafka-python as %s (SCRAM-SHA-512) produces; kcat as %s (PLAIN, checked "
             "against the SCRAM credential) reads", ALICE, ALICE)
    from kafka import KafkaProducer
    kp = KafkaProducer(bootstrap_servers=b.bootstrap, security_protocol="SASL_PLAINTEXT",
                       sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=ALICE,
                       sasl_plain_password=ALICE_PASSWORD, acks="all")
    try:
        for i in range(5):
            kp.send(topic, value=b"alice-%d" % i, partition=0).get(timeout=OP_TIMEOUT_S)
    finally:
        kp.close()
    kcat = subprocess.run(
        ["kcat", "-C", "-b", b.bootstrap, "-t", topic, "-p", "0", "-o", "20", "-c", "5", "-e",
         "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN",
         "-X", f"sasl.username={ALICE}", "-X", f"sasl.password={ALICE_PASSWORD}"],
        capture_output=True, text=True, timeout=deadline(60))
    assert kcat.stdout.split() == [f"alice-{i}" for i in range(5)], kcat.stderr

    log.info("phase: the Java console consumer as %s (SCRAM-SHA-256) reads all 25", ADMIN)
    out = kafka_tool(tmp_path, "org.apache.kafka.tools.consumer.ConsoleConsumer",
                     "--bootstrap-server", b.bootstrap, "--consumer.config", str(admin_props),
                     "--topic", topic, "--from-beginning", "--max-messages", "25",
                     "--timeout-ms", "60000").stdout
    assert out.split() == [f"admin-{i}" for i in range(20)] + [f"alice-{i}" for i in range(5)]

    log.info("phase: deleting %s's credential locks her out", ALICE)
    kafka_tool(tmp_path, *configs, "--alter", "--delete-config", "SCRAM-SHA-512",
               "--entity-type", "users", "--entity-name", ALICE)
    gone = admin_of(b.bootstrap, **sasl("SCRAM-SHA-512", ALICE, ALICE_PASSWORD))
    with pytest.raises(KafkaException):
        gone.list_topics(timeout=10)
    out = kafka_tool(tmp_path, *configs, "--describe", "--entity-type", "users",
                     "--entity-name", ALICE, check=False)
    assert "SCRAM-SHA-512" not in out.stdout, out.stdout


def test_credentials_survive_a_restart_and_bad_input_is_refused(sasl_broker, topic):
    b = sasl_broker
    as_admin = sasl("SCRAM-SHA-256", ADMIN, ADMIN_PASSWORD)
    log.info("phase: AlterUserScramCredentials refuses bad input, per user")
    from confluent_kafka.admin import (ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialDeletion, UserScramCredentialUpsertion)
    a = admin_of(b.bootstrap, **as_admin)
    too_few = UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 10),
                                           b"bob-secret")
    missing = UserScramCredentialDeletion("nobody", ScramMechanism.SCRAM_SHA_512)
    good = UserScramCredentialUpsertion("carol",
                                        ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                        b"carol-secret")
    futures = a.alter_user_scram_credentials([too_few, missing, good])
    errors = {}
    for user, future in futures.items():
        try:
            future.result(OP_TIMEOUT_S)
            errors[user] = None
        except KafkaException as e:
            errors[user] = e.args[0].code()
    assert errors == {"bob": KafkaError.UNACCEPTABLE_CREDENTIAL,
                      "nobody": KafkaError.RESOURCE_NOT_FOUND, "carol": None}, errors
    described = a.describe_user_scram_credentials(["carol"])["carol"].result(OP_TIMEOUT_S)
    assert [(i.mechanism, i.iterations) for i in described.scram_credential_infos] == [
        (ScramMechanism.SCRAM_SHA_512, 4096)]

    log.info("phase: after a restart the credentials are still there; --add-scram with a new "
             "password replaces the old one")
    b.stop()
    b.extra_args = ["--add-scram", f"SCRAM-SHA-256=[name={ADMIN},password=rotated-secret]"]
    b.start()
    old = admin_of(b.bootstrap, **as_admin)
    with pytest.raises(KafkaException):
        old.list_topics(timeout=10)
    as_admin = sasl("SCRAM-SHA-256", ADMIN, "rotated-secret")
    as_carol = sasl("SCRAM-SHA-512", "carol", "carol-secret")
    carol = admin_of(b.bootstrap, **as_carol)
    wait_until(lambda: carol.list_topics(timeout=10).brokers, timeout=OP_TIMEOUT_S,
               ignore=(KafkaException,), what="carol authenticated after the restart")
    admin_of(b.bootstrap, **as_admin).list_topics(timeout=10)


def test_sasl_handshake_v0_takes_bare_tokens(sasl_broker, topic):
    """SaslHandshake v0 (older clients): the SASL tokens follow as bare
    size-prefixed frames, without Kafka request headers; then the
    connection is an ordinary authenticated one."""
    import struct

    from kafka.protocol.metadata import MetadataRequest, MetadataResponse
    from kafka.protocol.sasl import SaslHandshakeRequest, SaslHandshakeResponse

    b = sasl_broker
    w = Wire(b.host, b.port, client_id="e2e-sasl-v0")
    try:
        r = w.call(SaslHandshakeRequest(mechanism="PLAIN"), SaslHandshakeResponse, 0)
        assert r.error_code == 0 and "PLAIN" in r.mechanisms, r
        token = f"\0{ADMIN}\0{ADMIN_PASSWORD}".encode()
        w.sock.sendall(struct.pack(">i", len(token)) + token)
        (size,) = struct.unpack(">i", w._recv_exactly(4))
        assert size == 0, "PLAIN's answer is empty"
        md = w.call(MetadataRequest(topics=None), MetadataResponse, 9)
        assert [broker.node_id for broker in md.brokers] == [1], md
    finally:
        w.close()
    w = Wire(b.host, b.port, client_id="e2e-sasl-v0-wrong")
    try:
        w.call(SaslHandshakeRequest(mechanism="PLAIN"), SaslHandshakeResponse, 0)
        token = f"\0{ADMIN}\0wrong".encode()
        w.sock.sendall(struct.pack(">i", len(token)) + token)
        with pytest.raises((EOFError, OSError)):
            w._recv_exactly(4)
    finally:
        w.close()
