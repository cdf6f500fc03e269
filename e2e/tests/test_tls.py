"""TLS on the Kafka listener: `listener.security.protocol` SSL and SASL_SSL,
with PEM keystores and truststores as Kafka's `PEM` store type has them.
librdkafka (confluent-kafka, kcat), kafka-python and the Java tools connect
over TLS; client certificates are checked when `ssl.client.auth` asks for
them; a client without TLS, one that does not trust the broker's CA and one
whose certificate no trusted CA signed get nothing; a rotated certificate is
used for new connections without a restart; bad settings stop the broker
at start-up with a message naming the setting. The certificates are made
here with the `openssl` command."""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import (StreamProducer, assert_history, kafka_tool, kafka_tools_missing, metric_sum,
                     read_all)
from tls_certs import Certs, keystore, openssl
from harness import (OP_TIMEOUT_S, Broker, confluent_producer, consume_confluent,
                     consume_kafka_python, kcat, kp_producer, produce_confluent, wait_until)

log = logging.getLogger("e2e")

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"


def ssl_conf(ca: Path, protocol: str = "SSL", **more: str) -> dict:
    """librdkafka settings for a TLS connection trusting `ca`."""
    return {"security.protocol": protocol, "ssl.ca.location": str(ca), **more}


def kcat_ssl(ca: Path) -> list[str]:
    return ["-X", "security.protocol=ssl", "-X", f"ssl.ca.location={ca}"]


def api_versions_over_plaintext(bootstrap: str) -> bytes:
    """Sends a plaintext ApiVersions v0 request and returns what comes back
    before the broker closes the connection."""
    host, port = bootstrap.rsplit(":", 1)
    body = struct.pack(">hhih", 18, 0, 7, 4) + b"test"
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        got = b""
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
    return got


@pytest.fixture
def certs(tmp_path) -> Certs:
    return Certs(tmp_path / "certs")


def test_clients_produce_and_consume_over_ssl(broker_factory, certs, topic, tmp_path):
    store = keystore(certs, certs.dir / "broker.pem")
    b = broker_factory(settings={"listener.security.protocol": "SSL",
                                 "ssl.keystore.location": str(store)})
    tls = ssl_conf(certs.ca_crt)

    log.info("phase: librdkafka creates a topic, produces and consumes over TLS")
    a = AdminClient({"bootstrap.servers": b.bootstrap, **tls})
    a.create_topics([NewTopic(topic, 2, 1)])[topic].result(OP_TIMEOUT_S)
    producer = confluent_producer(b.bootstrap, **tls)
    reports = produce_confluent(producer, topic,
                                [{"value": b"rd-%d" % i, "partition": 0} for i in range(50)])
    assert [(r.error, r.offset) for r in reports] == [(None, i) for i in range(50)]
    read = consume_confluent(b.bootstrap, topic, {0: 0}, {0: 50}, **tls)
    assert [r.value for r in read] == [b"rd-%d" % i for i in range(50)]

    log.info("phase: a fetch larger than the broker's copy piece (records of 3 MB in all) "
             "arrives whole")
    big = [os.urandom(100_000) for _ in range(30)]
    reports = produce_confluent(producer, topic, [{"value": v, "partition": 1} for v in big])
    assert [r.error for r in reports] == [None] * 30
    read = consume_confluent(b.bootstrap, topic, {1: 0}, {1: 30}, **tls,
                             **{"fetch.max.bytes": 50_000_000,
                                "max.partition.fetch.bytes": 10_000_000})
    assert [r.value for r in read] == big

    log.info("phase: kafka-python produces and consumes over TLS")
    kp_tls = {"security_protocol": "SSL", "ssl_cafile": str(certs.ca_crt)}
    kp = kp_producer(b.bootstrap, **kp_tls)
    for i in range(10):
        kp.send(topic, value=b"kp-%d" % i, partition=0)
    kp.flush(OP_TIMEOUT_S)
    kp.close()
    read = consume_kafka_python(b.bootstrap, topic, {0: 50}, {0: 60}, **kp_tls)
    assert [r.value for r in read] == [b"kp-%d" % i for i in range(10)]

    log.info("phase: kcat reads them")
    out = kcat("-C", "-b", b.bootstrap, *kcat_ssl(certs.ca_crt), "-t", topic, "-p", "0",
               "-o", "beginning", "-c", "60", "-e", "-q", "-f", "%s\n").stdout.decode()
    assert out.splitlines() == [f"rd-{i}" for i in range(50)] + [f"kp-{i}" for i in range(10)]

    why = kafka_tools_missing()
    if why is None:
        log.info("phase: the Java console consumer reads them with a PEM truststore")
        props = tmp_path / "ssl.properties"
        props.write_text("security.protocol=SSL\nssl.truststore.type=PEM\n"
                         f"ssl.truststore.location={certs.ca_crt}\n")
        proc = kafka_tool(tmp_path, "org.apache.kafka.tools.consumer.ConsoleConsumer",
                          "--bootstrap-server", b.bootstrap, "--topic", topic, "--partition", "0",
                          "--offset", "earliest", "--max-messages", "60",
                          "--consumer.config", str(props))
        assert proc.stdout.splitlines() == ([f"rd-{i}" for i in range(50)]
                                            + [f"kp-{i}" for i in range(10)])
    else:
        pytest.fail(f"Kafka's tools are needed for this test: {why}")

    log.info("phase: a client without TLS gets no Kafka answer, and is counted")
    before = metric_sum(b, "runnel_tls_handshake_failures_total")
    assert api_versions_over_plaintext(b.bootstrap) == b""
    wait_until(lambda: metric_sum(b, "runnel_tls_handshake_failures_total") > before,
               timeout=30, what="the plaintext client counted as a failed handshake")
    assert "does not speak TLS" in b.log_tail(200)

    log.info("phase: a client that does not trust the broker's CA gets nothing")
    other = Certs(tmp_path / "other", name="other-ca")
    stranger = AdminClient({"bootstrap.servers": b.bootstrap, **ssl_conf(other.ca_crt)})
    with pytest.raises(KafkaException):
        stranger.list_topics(timeout=10)


def test_client_certificates_are_checked(broker_factory, certs, topic):
    key, crt = certs.server()
    b = broker_factory(settings={"listener.security.protocol": "SSL",
                                 # the Kubernetes Secret layout: chain and key apart
                                 "ssl.keystore.location": str(crt),
                                 "ssl.keystore.key.location": str(key),
                                 "ssl.client.auth": "required",
                                 "ssl.truststore.location": str(certs.ca_crt)})
    client_key, client_crt = certs.client("app")
    with_cert = ssl_conf(certs.ca_crt, **{"ssl.certificate.location": str(client_crt),
                                          "ssl.key.location": str(client_key)})

    log.info("phase: a client with a certificate the truststore's CA signed is served")
    a = AdminClient({"bootstrap.servers": b.bootstrap, **with_cert})
    a.create_topics([NewTopic(topic, 1, 1)])[topic].result(OP_TIMEOUT_S)
    producer = confluent_producer(b.bootstrap, **with_cert)
    reports = produce_confluent(producer, topic, [{"value": b"m-%d" % i} for i in range(5)])
    assert [r.error for r in reports] == [None] * 5
    out = kcat("-C", "-b", b.bootstrap, *kcat_ssl(certs.ca_crt),
               "-X", f"ssl.certificate.location={client_crt}",
               "-X", f"ssl.key.location={client_key}", "-t", topic, "-o", "beginning",
               "-c", "5", "-e", "-q", "-f", "%s\n").stdout.decode()
    assert out.splitlines() == [f"m-{i}" for i in range(5)]

    log.info("phase: kafka-python with its certificate is served too")
    read = consume_kafka_python(b.bootstrap, topic, {0: 0}, {0: 5}, security_protocol="SSL",
                                ssl_cafile=str(certs.ca_crt), ssl_certfile=str(client_crt),
                                ssl_keyfile=str(client_key))
    assert [r.value for r in read] == [b"m-%d" % i for i in range(5)]

    before = metric_sum(b, "runnel_tls_handshake_failures_total")
    log.info("phase: a client without a certificate is refused")
    bare = AdminClient({"bootstrap.servers": b.bootstrap, **ssl_conf(certs.ca_crt)})
    with pytest.raises(KafkaException):
        bare.list_topics(timeout=10)

    log.info("phase: a certificate another CA signed is refused (kcat's librdkafka sends it; "
             "newer ones keep it back when the broker names the CAs it trusts)")
    other = Certs(certs.dir.parent / "other", name="other-ca")
    foreign_key, foreign_crt = other.client("intruder")
    proc = kcat("-L", "-b", b.bootstrap, *kcat_ssl(certs.ca_crt), "-m", "5",
                "-X", f"ssl.certificate.location={foreign_crt}",
                "-X", f"ssl.key.location={foreign_key}", check=False)
    assert proc.returncode != 0, proc.stdout
    assert metric_sum(b, "runnel_tls_handshake_failures_total") >= before + 2
    # the refused clients go on reconnecting: read the whole log
    text = b.log_path.read_text()
    assert "peer sent no certificates" in text
    assert "UnknownIssuer" in text


def test_sasl_over_ssl(broker_factory, certs, topic, tmp_path):
    store = keystore(certs, certs.dir / "broker.pem")
    b = broker_factory(
        settings={"listener.security.protocol": "SASL_SSL",
                  "sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
                  "ssl.keystore.location": str(store)},
        extra_args=["--add-scram", f"SCRAM-SHA-512=[name={ADMIN},password={ADMIN_PASSWORD}]"])
    auth = ssl_conf(certs.ca_crt, "SASL_SSL", **{"sasl.mechanisms": "SCRAM-SHA-512",
                                                 "sasl.username": ADMIN,
                                                 "sasl.password": ADMIN_PASSWORD})

    log.info("phase: SCRAM-SHA-512 over TLS: create, produce, consume")
    a = AdminClient({"bootstrap.servers": b.bootstrap, **auth})
    a.create_topics([NewTopic(topic, 1, 1)])[topic].result(OP_TIMEOUT_S)
    producer = confluent_producer(b.bootstrap, **auth)
    reports = produce_confluent(producer, topic, [{"value": b"s-%d" % i} for i in range(10)])
    assert [r.error for r in reports] == [None] * 10
    read = consume_confluent(b.bootstrap, topic, {0: 0}, {0: 10}, **auth)
    assert [r.value for r in read] == [b"s-%d" % i for i in range(10)]

    log.info("phase: kafka-python with PLAIN over TLS")
    read = consume_kafka_python(b.bootstrap, topic, {0: 0}, {0: 10}, security_protocol="SASL_SSL",
                                ssl_cafile=str(certs.ca_crt), sasl_mechanism="PLAIN",
                                sasl_plain_username=ADMIN, sasl_plain_password=ADMIN_PASSWORD)
    assert [r.value for r in read] == [b"s-%d" % i for i in range(10)]

    why = kafka_tools_missing()
    if why is not None:
        pytest.fail(f"Kafka's tools are needed for this test: {why}")
    log.info("phase: the Java console consumer with SCRAM-SHA-512 over TLS")
    props = tmp_path / "sasl-ssl.properties"
    props.write_text(
        "security.protocol=SASL_SSL\nssl.truststore.type=PEM\n"
        f"ssl.truststore.location={certs.ca_crt}\nsasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN}" password="{ADMIN_PASSWORD}";\n')
    proc = kafka_tool(tmp_path, "org.apache.kafka.tools.consumer.ConsoleConsumer",
                      "--bootstrap-server", b.bootstrap, "--topic", topic, "--partition", "0",
                      "--offset", "earliest", "--max-messages", "10",
                      "--consumer.config", str(props))
    assert proc.stdout.splitlines() == [f"s-{i}" for i in range(10)]

    log.info("phase: a wrong password over TLS is refused")
    wrong = AdminClient({"bootstrap.servers": b.bootstrap,
                         **{**auth, "sasl.password": "not-the-password"}})
    with pytest.raises(KafkaException):
        wrong.list_topics(timeout=10)
    assert metric_sum(b, "runnel_sasl_failed_authentications_total") >= 1


def test_a_rotated_certificate_is_used_for_new_connections(broker_factory, certs, tmp_path, topic):
    store = keystore(certs, certs.dir / "broker.pem")
    b = broker_factory(settings={"listener.security.protocol": "SSL",
                                 "ssl.keystore.location": str(store)})
    first = AdminClient({"bootstrap.servers": b.bootstrap, **ssl_conf(certs.ca_crt)})
    first.create_topics([NewTopic(topic, 1, 1)])[topic].result(OP_TIMEOUT_S)

    log.info("phase: the keystore is replaced by one a new CA signed")
    new_ca = Certs(tmp_path / "new", name="new-ca")
    staged = keystore(new_ca, new_ca.dir / "broker.pem")
    os.replace(staged, store)

    def served_by(ca: Path) -> bool:
        a = AdminClient({"bootstrap.servers": b.bootstrap, **ssl_conf(ca)})
        try:
            return topic in a.list_topics(timeout=10).topics
        except KafkaException:
            return False

    wait_until(lambda: served_by(new_ca.ca_crt), timeout=60,
               what="a client trusting only the new CA served")
    assert not served_by(certs.ca_crt), "the old certificate is still presented"

    log.info("phase: a keystore that does not load keeps the certificate in use")
    reload_failures = metric_sum(b, "runnel_tls_reload_failures_total")
    broken = certs.dir / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    os.replace(broken, store)
    assert served_by(new_ca.ca_crt)
    assert metric_sum(b, "runnel_tls_reload_failures_total") == reload_failures + 1
    assert "do not load" in b.log_tail(200)


def rpc_handshake_without_a_certificate(host: str, port: int, ca: Path,
                                        cert: tuple[Path, Path] | None = None) -> str:
    """A TLS client without a certificate (or with `cert`, key and
    certificate) on a broker's gRPC listener: what failed (the handshake,
    or the first read after it under TLS 1.3)."""
    import ssl
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols(["h2"])
    if cert is not None:
        key, crt = cert
        ctx.load_cert_chain(str(crt), str(key))
    try:
        with socket.create_connection((host, port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                got = tls.recv(1024)
                return f"read {got!r}"
    except (ssl.SSLError, ConnectionError, OSError) as e:
        return f"refused: {e}"


def test_brokers_replicate_over_mutual_tls(cluster_factory, certs, request):
    """security.inter.broker.protocol=SSL: replication, the controller quorum
    and its metadata go over TLS with certificates both ways; a peer without
    a certificate the truststore's CA signed is refused."""
    key, crt = certs.server()
    c = cluster_factory(n=3, settings={"security.inter.broker.protocol": "SSL",
                                       "ssl.keystore.location": str(crt),
                                       "ssl.keystore.key.location": str(key),
                                       "ssl.truststore.location": str(certs.ca_crt)})
    topic = request.node.name[:40] + "-" + os.urandom(3).hex()
    log.info("phase: a replicated topic forms its ISR over TLS")
    c.create_topic(topic, 3, 3, config={"min.insync.replicas": 2})
    c.wait_isr(topic, 3, partitions=3, timeout=120)

    log.info("phase: acks=all writes, then the leader of partition 0 is killed and another "
             "takes over")
    prod = StreamProducer(c.bootstrap, topic, prefix="tls", name="tls-producer").start()
    try:
        prod.wait_acks(500, timeout=60)
        victim = c.leader_of(topic, 0)
        c.kill9(victim)
        c.wait_leaders_off(topic, victim, timeout=60)
        prod.wait_acks(300, timeout=90, what="acknowledgements after the leader died")
        c.start_broker(victim)
        c.wait_isr(topic, 3, partitions=3, timeout=120)
    finally:
        history = prod.stop()
    assert not history.failed, history.failed[:5]
    records, end = read_all(c, topic, 3)
    assert_history(history, records, end, cluster=c, topic=topic, exactly_once=True, ordered=True)

    log.info("phase: a client without a certificate gets nothing from the gRPC listener")
    b = c.brokers[0]
    before = metric_sum(b, "runnel_tls_handshake_failures_total")
    outcome = rpc_handshake_without_a_certificate(b.rpc_host, b.rpc_port, certs.ca_crt)
    log.info("certificate-less peer: %s", outcome)
    assert outcome.startswith("refused") or outcome == "read b''", outcome
    wait_until(lambda: metric_sum(b, "runnel_tls_handshake_failures_total") > before,
               timeout=30, what="the refused handshake counted")

    log.info("phase: an application's certificate from the same CA (as for ssl.client.auth) "
             "names no broker: refused too")
    app = certs.client("some-app")
    outcome = rpc_handshake_without_a_certificate(b.rpc_host, b.rpc_port, certs.ca_crt, app)
    log.info("application certificate: %s", outcome)
    assert outcome.startswith("refused") or outcome == "read b''", outcome
    wait_until(lambda: "names none of the cluster's brokers" in b.log_path.read_text(),
               timeout=30, what="the refusal logged")


@pytest.mark.parametrize("case", ["no-keystore", "missing-file", "encrypted-key", "mismatched-key",
                                  "client-auth-without-truststore", "jks",
                                  "inter-broker-without-truststore"])
def test_bad_tls_settings_stop_the_broker_with_the_setting_named(tmp_path, case):
    certs = Certs(tmp_path / "certs")
    key, crt = certs.server()
    settings = {"listener.security.protocol": "SSL"}
    expected = "ssl.keystore.location"
    if case == "missing-file":
        settings["ssl.keystore.location"] = str(tmp_path / "nowhere.pem")
    elif case == "encrypted-key":
        enc = tmp_path / "encrypted.key"
        openssl("pkcs8", "-topk8", "-in", str(key), "-out", str(enc), "-passout", "pass:secret")
        settings.update({"ssl.keystore.location": str(crt),
                         "ssl.keystore.key.location": str(enc)})
        expected = "ssl.keystore.key.location"
    elif case == "mismatched-key":
        other_key, _ = certs.client("someone-else")
        settings.update({"ssl.keystore.location": str(crt),
                         "ssl.keystore.key.location": str(other_key)})
    elif case == "client-auth-without-truststore":
        settings.update({"ssl.keystore.location": str(keystore(certs, tmp_path / "k.pem")),
                         "ssl.client.auth": "required"})
        expected = "ssl.truststore.location"
    elif case == "inter-broker-without-truststore":
        settings = {"security.inter.broker.protocol": "SSL",
                    "ssl.keystore.location": str(keystore(certs, tmp_path / "k.pem"))}
        expected = "ssl.truststore.location"
    elif case == "jks":
        settings.update({"ssl.keystore.location": str(crt), "ssl.keystore.type": "JKS"})
        expected = "ssl.keystore.type"
    b = Broker(tmp_path / "broker", settings=settings)
    proc = subprocess.run(b.argv(), capture_output=True, text=True, timeout=60)
    log.info("%s: exit %s, stderr: %s", case, proc.returncode, proc.stderr[-600:])
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr
