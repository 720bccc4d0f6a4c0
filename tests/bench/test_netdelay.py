"""bench.netdelay holds each direction's bytes for its delay, delivers them whole and in order, is cut and restored,
and stops."""

from __future__ import annotations

import gc
import secrets
import sys
import time
from urllib.parse import urlsplit

import pytest
import redis

from bench.netdelay import NetDelay, towards


def test_a_round_trip_through_the_relay_waits_both_ways_and_large_values_arrive_whole(redis_url: str) -> None:
    target = urlsplit(redis_url)
    relay = NetDelay(target.hostname or "127.0.0.1", target.port or 6379, one_way_ms=15).start()
    key = f"memproxy-test-netdelay-{secrets.token_hex(4)}"
    client = redis.Redis.from_url(relay.url(redis_url))
    try:
        assert urlsplit(relay.url(redis_url)).port == relay.port
        assert relay.url("postgresql://user:pw@db.example:5432/x?sslmode=disable") == (
            f"postgresql://user:pw@127.0.0.1:{relay.port}/x?sslmode=disable")
        assert relay.round_trip_ms(b"*1\r\n$4\r\nPING\r\n", samples=3) >= 30
        value = secrets.token_bytes(3_000_000)  # many reads' worth, each held and delivered in turn
        began = time.perf_counter()
        client.set(key, value)
        assert client.get(key) == value
        assert time.perf_counter() - began >= 0.06  # two round trips
    finally:
        client.delete(key)
        client.close()
        relay.stop()
    assert not relay._thread.is_alive()


def test_stopping_with_connections_open_cuts_them_and_leaves_nothing_pending(
        redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    target = urlsplit(redis_url)
    relay = NetDelay(target.hostname or "127.0.0.1", target.port or 6379, one_way_ms=1).start()
    client = redis.Redis.from_url(relay.url(redis_url), socket_timeout=5)
    unraisable: list[object] = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        assert client.ping()  # its connection stays open in the client's pool
        relay.stop()
        gc.collect()  # a coroutine left suspended on the stopped loop would complain here
        assert unraisable == []
        # Nor may asyncio's stream server log a handler it finds cancelled (3.11 raises reading its exception).
        assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
        with pytest.raises(redis.ConnectionError):
            client.ping()
    finally:
        sys.unraisablehook = hook
        client.close()


def test_a_cut_relay_resets_and_refuses_or_holds_connections_until_restored(redis_url: str) -> None:
    relay = towards(redis_url, 0)
    client = redis.Redis.from_url(relay.url(redis_url), socket_timeout=1, socket_connect_timeout=1)
    try:
        assert client.ping()
        relay.cut()  # gone: the open connection is reset and a new one refused
        with pytest.raises(redis.ConnectionError):
            client.ping()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        relay.restore()  # back on the same port: the same URL works again
        assert client.ping()
        relay.cut(silent=True)  # no longer answering: connections are taken and never answered
        with pytest.raises((redis.TimeoutError, redis.ConnectionError)):
            client.ping()
        began = time.perf_counter()
        with pytest.raises(redis.TimeoutError):
            redis.Redis.from_url(relay.url(redis_url), socket_timeout=0.3).ping()
        assert time.perf_counter() - began >= 0.25  # waited for an answer that never came
        relay.restore()
        assert client.ping()
    finally:
        client.close()
        relay.stop()
