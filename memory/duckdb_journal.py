"""The turn journal: a DuckDB store's turn writes are durable once fsynced here, and reach its tables in batches.

A DuckDB transaction costs about 1.3 ms of CPU whatever it holds (each INSERT is ~0.3 ms of planning and
set-up, the COMMIT another 0.4), so a server answering one turn at a time paid that for every turn. An
append and an fdatasync of a small file cost ~0.05 ms. So a turn's rows (insert-only messages and run, and
its evictions) are written here first, acknowledged once the file is synced, and applied to the tables by
the group commit up to ten seconds later (duckdb_connection.APPLY_DELAY_S), up to hundreds of turns in one
transaction.

Records are `<length><crc32><payload>`, the payload JSON `[seq, message rows, run rows, evicted ids]`.
Every record applied to the tables moves `journal_state.applied` forward in the same transaction, so at
start the records above it (and only those) are applied again; a torn tail (a record whose write the crash
cut short, never acknowledged) ends the read of that file. A file is emptied or deleted once the tables hold it all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from memory import native_heap
from memory.duckdb_commit import resolve_on_loops
from memory.duckdb_rows import MESSAGES, RUNS, Row, Table
from memory.store import StoreUnavailable

log = logging.getLogger("memproxy")

_HEADER = struct.Struct("<II")  # payload length, crc32 of the payload
# A file this long is emptied if the tables hold all of it, else writing moves on to the other file.
TRUNCATE_AT = 4 * 2**20
# The file is grown by zeros this share of TRUNCATE_AT (256 KB) ahead of its records, in the write that crosses its
# end: a sync inside them leaves the file's size alone, and so writes the records' data but not the inode. On this
# machine's ext4 an append plus fdatasync that grew the file cost ~74 us of CPU and ~210 us of waiting; within the
# zeros ~56 and ~140, and the finish chunk of every turn waits for one.
ZERO_AHEAD_SHARE = 16


@dataclass
class JournalRecord:
    seq: int
    messages: list[Row]
    runs: list[Row]
    evict_ids: list[str]


def encode(record: JournalRecord) -> bytes:
    payload = orjson.dumps([record.seq, record.messages, record.runs, record.evict_ids])
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _timestamps(table: Table) -> tuple[int, ...]:
    return tuple(i for i, (_, sql_type) in enumerate(table.columns) if sql_type == "TIMESTAMPTZ")


_MESSAGE_TIMES, _RUN_TIMES = _timestamps(MESSAGES), _timestamps(RUNS)


def _row(values: list[Any], times: tuple[int, ...]) -> Row:
    for i in times:
        if isinstance(values[i], str):
            values[i] = datetime.fromisoformat(values[i])
    return tuple(values)


def read_records(path: str) -> list[JournalRecord]:
    """Every whole record in the file, in order, up to the first torn or corrupt one."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return []
    records: list[JournalRecord] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        if length == 0:
            break  # the zeros written ahead of the records (a record is never empty)
        payload = data[offset + _HEADER.size:offset + _HEADER.size + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            break
        try:
            seq, messages, runs, evict_ids = orjson.loads(payload)
        except (orjson.JSONDecodeError, ValueError):
            break
        records.append(JournalRecord(seq, [_row(m, _MESSAGE_TIMES) for m in messages],
                                     [_row(r, _RUN_TIMES) for r in runs], list(evict_ids)))
        offset += _HEADER.size + length
    if data[offset:].strip(b"\0"):
        log.warning("turn journal %s: %d bytes after the last whole record ignored (a write cut short)",
                    path, len(data) - offset)
    return records


class Journal:
    """The append-only file and the thread that writes and syncs it, a group of records per fdatasync.

    Under steady load some record is always waiting for the tables, so the file is never wholly applied:
    once it is `TRUNCATE_AT` long, writing moves to the other of two files (`<path>` and `<path>.1`), and
    the full one is deleted once the tables hold its last record.
    """

    def __init__(self, path: str, applied: Callable[[], int]) -> None:
        self.path = path
        self.durable = 0  # highest seq synced to the file
        self._applied = applied  # highest seq in the tables (the group commit's, moved by the database thread)
        self.broken: BaseException | None = None  # the write error that stopped the journal, if any
        self.syncs = 0  # fdatasyncs so far
        self._paths = (path, path + ".1")
        self._current = 0  # index of the file written now
        self._fd = -1
        self._size = 0  # where the next record goes
        self._allocated = 0  # the file's length: zeros from `_size` to here
        self._retired = 0  # last seq of the other file while it waits for the tables; 0 when it is gone
        self._pending: list[tuple[int, bytes, asyncio.Future[None], asyncio.AbstractEventLoop]] = []
        self._lock = threading.Lock()
        self._scheduled = False  # a flush is queued on the executor and has not taken the queue yet
        self._executor: ThreadPoolExecutor | None = None

    def read(self) -> list[JournalRecord]:
        """The records in both files, in seq order (call before `open`)."""
        return sorted((record for path in self._paths for record in read_records(path)), key=lambda r: r.seq)

    def open(self) -> None:
        """Start afresh, in `<path>` (0600): call once the records `read` returned are in the tables."""
        try:
            os.unlink(self._paths[1])
        except FileNotFoundError:
            pass
        self._current, self._retired, self._scheduled = 0, 0, False
        self._size = self._allocated = 0
        self._fd = self._open_empty(self._paths[0])
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal",
                                            initializer=native_heap.thread_namer("journal"))

    def close(self) -> None:
        """Write what is queued, then empty the file if every record reached the tables."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        if self._fd >= 0:
            if self.broken is None and self._applied() >= self.durable:
                os.ftruncate(self._fd, 0)
                self._drop_retired()
            os.close(self._fd)
            self._fd = -1

    def submit(self, record: JournalRecord) -> asyncio.Future[None]:
        """Queue the record (on the event loop, in seq order); the future resolves once it is synced."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        executor = self._executor
        if executor is None or self.broken is not None:
            done.set_exception(StoreUnavailable("the turn journal is not open"))
            return done
        with self._lock:
            self._pending.append((record.seq, encode(record), done, loop))
            # One flush at a time waits to take the queue: records arriving before it does go with it.
            scheduled, self._scheduled = self._scheduled, True
        if not scheduled:
            executor.submit(self._flush)
        return done

    @staticmethod
    def _open_empty(path: str) -> int:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)

    def _drop_retired(self) -> None:
        """Delete the other file if the tables hold its last record (a stale copy after a crash is skipped)."""
        if self._retired and self._applied() >= self._retired:
            try:
                os.unlink(self._paths[1 - self._current])
            except FileNotFoundError:
                pass
            self._retired = 0

    def _make_room(self) -> None:
        self._drop_retired()
        if self._size < TRUNCATE_AT:
            return
        if self._applied() >= self.durable:
            os.ftruncate(self._fd, 0)  # all of it is in the tables: reuse it
        elif not self._retired:
            os.close(self._fd)
            self._retired, self._current = self.durable, 1 - self._current
            self._fd = self._open_empty(self._paths[self._current])
        else:
            return  # the tables are behind by two files' worth: keep writing this one
        self._size = self._allocated = 0

    def _flush(self) -> None:
        with self._lock:
            group, self._pending = self._pending, []
            self._scheduled = False
        if not group:
            return
        outcome: BaseException | None = None
        try:
            if self.broken is not None:
                raise self.broken
            self._make_room()
            records = b"".join(item[1] for item in group)
            data, end = records, self._size + len(records)
            if end > self._allocated:
                self._allocated = end + TRUNCATE_AT // ZERO_AHEAD_SHARE
                data = records + bytes(self._allocated - end)
            written = 0
            while written < len(data):
                written += os.pwrite(self._fd, data[written:], self._size + written)
            os.fdatasync(self._fd)
            self.syncs += 1
            self._size = end
            self.durable = group[-1][0]
        except OSError as exc:
            # What was written past the last sync is unknown now: no record goes after it.
            self.broken = exc
            log.error("turn journal %s: %s; turns are now written straight to the tables", self.path, exc)
            outcome = StoreUnavailable(f"the turn journal could not be written: {exc.strerror or exc}")
        resolve_on_loops((loop, done, outcome) for _, _, done, loop in group)


RejectHandler = Callable[[str], None]
