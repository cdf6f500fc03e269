"""Segments roll at segment.bytes, and retention (by time and by size)
deletes whole old segments: the log start offset (low watermark) moves up and
segment files disappear from the data dir.

Data dir layout (the broker's contract): DATA/<topic>-<partition>/<20-digit
base offset>.log
"""

import logging

from harness import (confluent_producer, consume_confluent, create_topic, unique_topic,
                     wait_until, watermarks)

log = logging.getLogger("e2e")

SEGMENT_BYTES = 1024
VALUE_BYTES = 300  # about three batches of one record fit in a segment


def produce_one_batch_per_record(b, topic, n, on_each=None):
    """Produce n records of VALUE_BYTES each, one flush (so one batch) per
    record; call on_each() after each delivery."""
    producer = confluent_producer(b.bootstrap, **{"linger.ms": 0})
    errors = []

    def cb(err, msg):
        if err is not None:
            errors.append(err)

    for i in range(n):
        producer.produce(topic, value=(b"%06d:" % i).ljust(VALUE_BYTES, b"r"), partition=0, on_delivery=cb)
        assert producer.flush(30) == 0, "record not delivered within 30s"
        if on_each:
            on_each()
    assert not errors, errors[:5]


def base_offsets(b, topic):
    return [int(p.name[:20]) for p in b.segment_files(topic, 0)]


def test_time_retention_deletes_old_segments(broker_factory, request):
    b = broker_factory({"log.retention.check.interval.ms": 200})
    topic = unique_topic(request.node.name)
    n = 60

    log.info("phase: create topic %s with segment.bytes=%d, retention.ms=1000", topic, SEGMENT_BYTES)
    create_topic(b.bootstrap, topic, partitions=1,
                 config={"segment.bytes": SEGMENT_BYTES, "retention.ms": 1000})

    log.info("phase: %d records of %d bytes, one batch each, roll several segments", n, VALUE_BYTES)
    max_segments = [0]

    def sample():
        max_segments[0] = max(max_segments[0], len(b.segment_files(topic, 0)))

    produce_one_batch_per_record(b, topic, n, sample)
    log.info("segment files seen at most: %d; now: %s", max_segments[0], base_offsets(b, topic))
    assert max_segments[0] >= 3, (
        f"only {max_segments[0]} segment file(s) in {b.partition_dir(topic, 0)} "
        f"after {n} x {VALUE_BYTES}-byte batches with segment.bytes={SEGMENT_BYTES}")
    for p in b.segment_files(topic, 0):
        assert p.stat().st_size <= SEGMENT_BYTES, f"{p.name} is {p.stat().st_size} bytes, over segment.bytes"

    log.info("phase: retention moves the low watermark above 0 and deletes segment files")

    def retained():
        low, high = watermarks(b.bootstrap, topic, 0)
        segs = b.segment_files(topic, 0)
        return low > 0 and len(segs) < max_segments[0] and (low, high, segs)

    low, high, segs = wait_until(retained, timeout=60, interval=0.5, what="time-based retention")
    log.info("low %d high %d, segments %s", low, high, [p.name for p in segs])
    assert high == n, f"retention changed the high watermark: {high}, produced {n}"

    log.info("phase: the oldest remaining segment starts at the low watermark")
    wait_until(lambda: base_offsets(b, topic)[:1] == [watermarks(b.bootstrap, topic, 0)[0]],
               timeout=30, interval=0.5, what="oldest segment base offset == low watermark")


def test_size_retention_keeps_newest_segments(broker_factory, request):
    b = broker_factory({"log.retention.check.interval.ms": 200})
    topic = unique_topic(request.node.name)
    n = 60
    retention_bytes = 3 * SEGMENT_BYTES

    log.info("phase: create topic %s with segment.bytes=%d, retention.bytes=%d, retention.ms=-1",
             topic, SEGMENT_BYTES, retention_bytes)
    create_topic(b.bootstrap, topic, partitions=1,
                 config={"segment.bytes": SEGMENT_BYTES, "retention.bytes": retention_bytes,
                         "retention.ms": -1})

    log.info("phase: produce %d records of %d bytes, one batch each", n, VALUE_BYTES)
    produce_one_batch_per_record(b, topic, n)

    log.info("phase: size retention deletes oldest segments until the rest fit retention.bytes")

    def retained():
        low, high = watermarks(b.bootstrap, topic, 0)
        segs = b.segment_files(topic, 0)
        sizes = [p.stat().st_size for p in segs]
        # Kafka deletes the oldest segment while the log minus that segment
        # is still at least retention.bytes
        fits = bool(sizes) and sum(sizes) - sizes[0] < retention_bytes
        return low > 0 and fits and (low, high, segs, sizes)

    low, high, segs, sizes = wait_until(retained, timeout=60, interval=0.5, what="size-based retention")
    log.info("low %d high %d, segments %s, sizes %s", low, high, [p.name for p in segs], sizes)
    assert high == n
    assert int(segs[0].name[:20]) == low, f"oldest segment {segs[0].name} vs low watermark {low}"
    # ... and it stops there: deleting one more would have left less than retention.bytes
    assert sum(sizes) >= retention_bytes, f"retention deleted too much: {sizes}"

    log.info("phase: the retained records %d..%d are all readable", low, high - 1)
    got = consume_confluent(b.bootstrap, topic, {0: low}, {0: high})
    assert [r.offset for r in got] == list(range(low, high))
    assert all(r.value.startswith(b"%06d:" % r.offset) for r in got)


def test_broker_default_segment_bytes_applies(broker_factory, request):
    b = broker_factory({"log.segment.bytes": SEGMENT_BYTES})
    topic = unique_topic(request.node.name)

    log.info("phase: topic %s created without configs rolls at log.segment.bytes=%d", topic, SEGMENT_BYTES)
    create_topic(b.bootstrap, topic, partitions=1)
    produce_one_batch_per_record(b, topic, 20)
    segs = b.segment_files(topic, 0)
    assert len(segs) >= 3, f"{[p.name for p in segs]}"
    assert all(p.stat().st_size <= SEGMENT_BYTES for p in segs), [p.stat().st_size for p in segs]

    log.info("phase: segment names are 20-digit base offsets, increasing, starting at 0")
    bases = base_offsets(b, topic)
    assert bases[0] == 0 and bases == sorted(set(bases)), bases
