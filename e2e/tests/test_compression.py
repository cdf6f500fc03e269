"""Compressed record batches (gzip, snappy, lz4, zstd) written by both
clients come back identical, through both clients."""

import logging

import kafka.codec
import pytest

from harness import (confluent_producer, consume_confluent, consume_kafka_python, create_topic,
                     kp_producer, produce_confluent, read_batch_headers)

log = logging.getLogger("e2e")

N = 100

KAFKA_PYTHON_HAS = {
    "gzip": kafka.codec.has_gzip(),
    "snappy": kafka.codec.has_snappy(),
    "lz4": kafka.codec.has_lz4(),
    "zstd": kafka.codec.has_zstd(),
}


def values(prefix: str) -> list[tuple[bytes, bytes]]:
    # compressible but distinct: repeated text with a counter
    return [(f"{prefix}-key-{i}".encode(),
             (f"{prefix} record {i} " + "lorem ipsum dolor sit amet " * (i % 20 + 1)).encode())
            for i in range(N)]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_round_trip(broker, topic, codec):
    log.info("phase: create topic %s", topic)
    create_topic(broker.bootstrap, topic, partitions=1)

    log.info("phase: confluent-kafka produces %d records with compression.type=%s", N, codec)
    ck_kv = values(f"ck-{codec}")
    # linger so that many records share one (compressed) batch
    producer = confluent_producer(broker.bootstrap, **{"compression.type": codec, "linger.ms": 50})
    # Fetch the topic's metadata first: a record queued while it is still on its way waits out its
    # linger alone and then leaves as a batch of one, which librdkafka sends uncompressed when
    # compressing would not shrink it (seen once with lz4: batch record counts [1, 99, ...]).
    producer.list_topics(topic, timeout=30)
    reports = produce_confluent(producer, topic, [{"key": k, "value": v, "partition": 0} for k, v in ck_kv])
    for d in reports:
        assert d.error is None, d
    acked = {d.offset: (k, v) for d, (k, v) in zip(reports, ck_kv)}
    assert sorted(acked) == list(range(N))

    if KAFKA_PYTHON_HAS[codec]:
        log.info("phase: kafka-python produces %d records with compression_type=%s", N, codec)
        kp_kv = values(f"kp-{codec}")
        kp = kp_producer(broker.bootstrap, compression_type=codec, linger_ms=50)
        try:
            futures = [kp.send(topic, key=k, value=v, partition=0) for k, v in kp_kv]
            kp.flush(timeout=60)
            metas = [f.get(timeout=60) for f in futures]
        finally:
            kp.close()
        acked.update({md.offset: kv for md, kv in zip(metas, kp_kv)})
        assert sorted(acked) == list(range(2 * N)), "kafka-python acks are not the next offsets"
    else:
        log.warning("kafka-python has no %s codec installed; confluent-kafka only", codec)

    end = {0: max(acked) + 1}
    log.info("phase: the segment files hold the batches as the clients sent them: %s-compressed", codec)
    batches = [h for seg in broker.segment_files(topic, 0) for h in read_batch_headers(seg)]
    log.info("%d batches on disk, record counts %s", len(batches), [h.record_count for h in batches])
    assert batches, f"no record batches found in {broker.partition_dir(topic, 0)}"
    assert all(h.magic == 2 for h in batches), batches
    assert {h.compression for h in batches} == {codec}, [h.compression for h in batches]
    assert sum(h.record_count for h in batches) == end[0]
    assert max(h.record_count for h in batches) > 1, "no batch holds more than one record"
    covered = [o for h in batches for o in range(h.base_offset, h.base_offset + h.last_offset_delta + 1)]
    assert covered == list(range(end[0])), "batch offsets do not tile 0..end-1"

    log.info("phase: confluent-kafka reads back identical keys and values at offsets 0..%d", end[0] - 1)
    got = consume_confluent(broker.bootstrap, topic, {0: 0}, end)
    assert {r.offset: (r.key, r.value) for r in got} == acked

    log.info("phase: kafka-python reads back identical keys and values at offsets 0..%d", end[0] - 1)
    got = consume_kafka_python(broker.bootstrap, topic, {0: 0}, end)
    assert {r.offset: (r.key, r.value) for r in got} == acked

    log.info("phase: a fetch from the middle of a compressed batch starts at the asked offset")
    mid = N // 2 + 3
    got = consume_confluent(broker.bootstrap, topic, {0: mid}, end)
    assert min(r.offset for r in got) == mid
    assert {r.offset: (r.key, r.value) for r in got} == {o: kv for o, kv in acked.items() if o >= mid}
    got = consume_kafka_python(broker.bootstrap, topic, {0: mid}, end)
    assert min(r.offset for r in got) == mid
    assert {r.offset: (r.key, r.value) for r in got} == {o: kv for o, kv in acked.items() if o >= mid}
