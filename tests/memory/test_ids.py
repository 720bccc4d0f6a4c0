"""Record ids: Letta's `<kind>-<uuid4>` format, unique, ordered by the time they were made, fresh in a forked child."""

from __future__ import annotations

import os
import re
import time
import uuid

from memory.models import new_id

UUID4 = re.compile(r"^message-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def millis(record_id: str) -> int:
    """The time an id carries in its first 48 bits."""
    return int(record_id.split("-", 1)[1].replace("-", "")[:12], 16)


def test_ids_have_the_uuid4_format_and_carry_the_time_they_were_made() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id("message") for _ in range(1000)]
    after = time.time_ns() // 1_000_000
    for record_id in ids:
        assert UUID4.match(record_id), record_id
        assert uuid.UUID(record_id.removeprefix("message-")).version == 4
        assert before <= millis(record_id) <= after


def test_ids_made_later_sort_later_and_a_burst_is_unique() -> None:
    first = new_id("message")
    time.sleep(0.002)
    second = new_id("message")
    assert first < second  # the id index takes new rows at its end
    burst = [new_id("message") for _ in range(200_000)]  # thousands within one millisecond
    assert len(set(burst)) == len(burst)
    assert [millis(i) for i in burst] == sorted(millis(i) for i in burst)


def test_a_forked_child_does_not_replay_the_parents_random_bits() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids, then out
        try:
            os.write(write, "\n".join(new_id("message") for _ in range(100)).encode())
        finally:
            os._exit(0)
    os.close(write)
    mine = [new_id("message") for _ in range(100)]
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    theirs = b"".join(chunks).decode().split("\n")
    assert len(theirs) == 100
    # The random part (the last 12 hex digits, 48 of the 74 random bits) never repeats across the fork.
    assert not {i[-12:] for i in mine} & {i[-12:] for i in theirs}
