"""Keyed records land on the partition the Java client would pick:
murmur2(key) & 0x7fffffff % partitions, as in Kafka's `Utils.murmur2`."""

import logging
import random

from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from harness import (confluent_producer, consume_confluent, create_topic, kp_producer,
                     produce_confluent)

log = logging.getLogger("e2e")

PARTITIONS = 6
M32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's `org.apache.kafka.common.utils.Utils.murmur2`, written from the
    Java source: MurmurHash2, seed 0x9747b28c, little-endian 4-byte blocks,
    returning a signed 32-bit int like Java's."""
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    length = len(data)
    h = (seed ^ length) & M32
    for i in range(length // 4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & M32
        k ^= k >> r  # Java's k >>> r on the unsigned bits
        k = (k * m) & M32
        h = (h * m) & M32
        h ^= k
    tail = length & ~3
    rest = length % 4
    # the Java switch falls through: case 3, case 2, case 1
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & M32
    h ^= h >> 13
    h = (h * m) & M32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: bytes, partitions: int) -> int:
    """`Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def keys() -> list[bytes]:
    rng = random.Random(20240601)
    ks = [f"user-{i}".encode() for i in range(120)]
    # every tail length (0..3 extra bytes past a 4-byte block), binary bytes
    ks += [bytes(rng.randrange(256) for _ in range(n)) for n in range(1, 41)]
    ks += ["ключ-ü-🙂".encode(), b"\xff\xfe\xfd\xfc\xfb", b"\x00\x00\x00\x00"]
    return list(dict.fromkeys(ks))  # unique, in order


def test_own_murmur2_matches_java_vectors():
    log.info("phase: our murmur2 reproduces partitions computed by the Java client (1000 partitions)")
    # Vectors from Kafka's Java partitioner, as recorded in kafka-python's tests.
    for key, partition in [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107),
                           (b"123456789", 566), (b"\x00 ", 742)]:
        assert java_partition(key, 1000) == partition, key

    log.info("phase: our murmur2 agrees with kafka-python's DefaultPartitioner hash on every test key")
    for key in keys():
        assert murmur2(key) & M32 == kafka_python_murmur2(key) & M32, key


def test_keyed_records_land_on_murmur2_partition(broker, topic):
    ks = keys()
    expected = {k: java_partition(k, PARTITIONS) for k in ks}
    log.info("%d keys spread over partitions %s", len(ks),
             {p: sum(1 for v in expected.values() if v == p) for p in range(PARTITIONS)})

    log.info("phase: create topic %s with %d partitions", topic, PARTITIONS)
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)

    log.info("phase: confluent-kafka (partitioner murmur2_random) delivers each key to murmur2 % 6")
    producer = confluent_producer(broker.bootstrap, partitioner="murmur2_random")
    reports = produce_confluent(producer, topic,
                                [{"key": k, "value": b"ck:" + k} for k in ks])
    for d in reports:
        assert d.error is None, d
        assert d.partition == expected[d.key], (d.key, d.partition, expected[d.key])

    log.info("phase: kafka-python (DefaultPartitioner) sends each key to the same partition")
    kp = kp_producer(broker.bootstrap)
    try:
        futures = [(k, kp.send(topic, key=k, value=b"kp:" + k)) for k in ks]
        kp_meta = [(k, f.get(timeout=60)) for k, f in futures]
    finally:
        kp.close()
    for k, md in kp_meta:
        assert md.partition == expected[k], (k, md.partition, expected[k])

    log.info("phase: consuming every partition finds each record where it was acknowledged")
    acked = {(d.partition, d.offset): (d.key, d.value) for d in reports}
    acked.update({(md.partition, md.offset): (k, b"kp:" + k) for k, md in kp_meta})
    end = {p: max([o + 1 for (pp, o) in acked if pp == p], default=0) for p in range(PARTITIONS)}
    got = consume_confluent(broker.bootstrap, topic, {p: 0 for p in range(PARTITIONS)}, end)
    by_pos = {(r.partition, r.offset): (r.key, r.value) for r in got}
    for pos, kv in acked.items():
        assert by_pos.get(pos) == kv, f"at partition/offset {pos}: got {by_pos.get(pos)}, acked {kv}"
    for r in got:
        assert r.partition == expected[r.key], r
