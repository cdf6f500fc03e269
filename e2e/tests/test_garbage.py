"""Hostile or broken input on the Kafka port must not take the broker down:
random bytes, a truncated frame, a huge or negative declared size, an
unknown API key. Afterwards a normal client still works."""

import logging
import random
import socket
import struct

from harness import (confluent_producer, consume_kafka_python, create_topic, produce_confluent,
                     wait_until)

log = logging.getLogger("e2e")

API_VERSIONS = 18
UNSUPPORTED_VERSION = 35


def connect(b, timeout=10.0) -> socket.socket:
    s = socket.create_connection((b.host, b.port), timeout=timeout)
    s.settimeout(timeout)
    return s


def request_frame(api_key: int, api_version: int, correlation_id: int, body: bytes = b"",
                  client_id: bytes = b"e2e-raw", flexible_header: bool = False) -> bytes:
    """A length-prefixed request: header v1 (api key, version, correlation id,
    client id), or v2 (v1 plus empty tagged fields) when flexible_header."""
    header = struct.pack(">hhi", api_key, api_version, correlation_id)
    header += struct.pack(">h", len(client_id)) + client_id
    if flexible_header:
        header += b"\x00"
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def read_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def read_response(s: socket.socket) -> bytes:
    (size,) = struct.unpack(">i", read_exact(s, 4))
    assert 0 <= size < 64 * 1024 * 1024, f"response size {size}"
    return read_exact(s, size)


def drain_until_closed_or_quiet(s: socket.socket, timeout: float = 10.0) -> str:
    """Read whatever the broker sends until it closes the connection (returns
    "closed") or stays quiet for `timeout` seconds (returns "open")."""
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(65536):
                return "closed"
    except socket.timeout:
        return "open"
    except ConnectionResetError:
        return "closed"


def api_versions_v0(b, correlation_id: int) -> dict[int, tuple[int, int]]:
    """ApiVersions v0 over a raw socket; returns {api_key: (min, max)}."""
    with connect(b) as s:
        s.sendall(request_frame(API_VERSIONS, 0, correlation_id))
        resp = read_response(s)
    corr, err, n = struct.unpack(">ihi", resp[:10])
    assert corr == correlation_id, f"correlation id {corr}, sent {correlation_id}"
    assert err == 0, f"ApiVersions v0 error code {err}"
    apis = {}
    for i in range(n):
        k, lo, hi = struct.unpack(">hhh", resp[10 + 6 * i:16 + 6 * i])
        apis[k] = (lo, hi)
    return apis


def assert_still_serving(b, what: str) -> None:
    assert b.alive(), f"broker died after {what}\n{b.log_tail()}"
    wait_until(b.healthy, timeout=10, what=f"/health 200 after {what}")
    api_versions_v0(b, correlation_id=7)


def test_raw_api_versions(broker):
    log.info("phase: ApiVersions v0 on a raw socket answers with our correlation id and the APIs")
    apis = api_versions_v0(broker, correlation_id=12345)
    log.info("advertised APIs: %s", sorted(apis.items()))
    for key in (0, 1, 2, 3, API_VERSIONS):  # Produce, Fetch, ListOffsets, Metadata, ApiVersions
        assert key in apis, f"API key {key} not advertised"
    assert apis[API_VERSIONS][0] == 0

    log.info("phase: ApiVersions at a version newer than supported gets UNSUPPORTED_VERSION and "
             "the supported list (KIP-511, how clients find a common version)")
    newest = apis[API_VERSIONS][1]
    # v3+ bodies: client software name and version (compact strings), tagged fields
    body = b"\x04e2e" + b"\x041.0" + b"\x00"
    with connect(broker) as s:
        s.sendall(request_frame(API_VERSIONS, newest + 100, 777, body=body, flexible_header=True))
        resp = read_response(s)
    corr, err = struct.unpack(">ih", resp[:6])
    assert corr == 777
    assert err == UNSUPPORTED_VERSION, f"error code {err}"


def test_garbage_does_not_crash_broker(broker_factory, topic):
    b = broker_factory()
    rng = random.Random(0xBAD)
    rss_start = b.rss_bytes()

    log.info("phase: 64 KiB of random bytes on a connection")
    with connect(b) as s:
        try:
            s.sendall(bytes(rng.randrange(256) for _ in range(64 * 1024)))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the broker hung up on us, which is fine
        log.info("connection after random bytes: %s", drain_until_closed_or_quiet(s, 5))
    assert_still_serving(b, "random bytes")

    log.info("phase: a truncated frame (declares 100 bytes, sends 10, then half-closes)")
    with connect(b) as s:
        s.sendall(struct.pack(">i", 100) + b"\x00\x12\x00\x00\x00\x00\x00\x01\x00\x00")
        s.shutdown(socket.SHUT_WR)
        log.info("connection after truncated frame: %s", drain_until_closed_or_quiet(s, 10))
    assert_still_serving(b, "a truncated frame")

    log.info("phase: a truncated frame, then the connection is reset")
    s = connect(b)
    s.sendall(struct.pack(">i", 1000) + b"\x00\x03\x00\x05")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # RST
    assert_still_serving(b, "a reset mid-frame")

    for size in (0x7FFFFFFF, -1, 0):
        log.info("phase: a frame declaring size %d", size)
        with connect(b) as s:
            try:
                s.sendall(struct.pack(">i", size) + bytes(1024))
            except (BrokenPipeError, ConnectionResetError):
                pass
            log.info("connection after size %d: %s", size, drain_until_closed_or_quiet(s, 5))
        assert_still_serving(b, f"a frame declaring size {size}")
        rss = b.rss_bytes()
        log.info("broker RSS %s MiB (at start %s MiB)", rss and rss >> 20, rss_start and rss_start >> 20)
        assert rss is None or rss < 1 << 30, f"broker RSS {rss} bytes after a size-{size} frame"

    log.info("phase: a valid header with unknown API key 9999: an error response or a close")
    with connect(b) as s:
        s.sendall(request_frame(9999, 0, 4242, body=b"\x00" * 16))
        try:
            resp = read_response(s)
        except (ConnectionError, socket.timeout) as exc:
            log.info("unknown API key: no response (%s)", exc)
        else:
            (corr,) = struct.unpack(">i", resp[:4])
            log.info("unknown API key: %d-byte response", len(resp))
            assert corr == 4242, f"response to API key 9999 carries correlation id {corr}"
    assert_still_serving(b, "an unknown API key")

    log.info("phase: a known API key at a version far beyond its range (Metadata v999)")
    with connect(b) as s:
        s.sendall(request_frame(3, 999, 4343, body=b"\x00" * 16))
        log.info("connection after Metadata v999: %s", drain_until_closed_or_quiet(s, 5))
    assert_still_serving(b, "an unsupported Metadata version")

    log.info("phase: a valid Produce header followed by a garbage body")
    with connect(b) as s:
        s.sendall(request_frame(0, 3, 4444, body=bytes(rng.randrange(256) for _ in range(300))))
        log.info("connection after garbage Produce body: %s", drain_until_closed_or_quiet(s, 5))
    assert_still_serving(b, "a garbage Produce body")

    log.info("phase: 50 connections opened and dropped mid-frame at once")
    socks = [connect(b) for _ in range(50)]
    for i, s in enumerate(socks):
        s.sendall(struct.pack(">i", 64) + bytes(i % 64))
    for s in socks:
        s.close()
    assert_still_serving(b, "50 dropped connections")

    log.info("phase: a normal client still produces and consumes")
    create_topic(b.bootstrap, topic, partitions=1)
    reports = produce_confluent(confluent_producer(b.bootstrap), topic,
                                [{"value": b"ok-%d" % i} for i in range(10)])
    assert [(d.error, d.offset) for d in reports] == [(None, i) for i in range(10)]
    got = consume_kafka_python(b.bootstrap, topic, {0: 0}, {0: 10})
    assert [r.value for r in got] == [b"ok-%d" % i for i in range(10)]
    assert b.alive()
