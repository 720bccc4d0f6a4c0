"""The export file: gzip-compressed JSON lines — a header, records typed by `kind`, and an end record.

The end record carries the count of each kind, so a file cut short is told apart from a complete one
(gzip's own trailer catches most cuts too). Writing goes to a temporary file beside the target that
is renamed into place only when complete; `-` means stdin or stdout. The file may hold tool
environment variables (secrets), so it is created readable by its owner only.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import tempfile
import zlib
from collections.abc import Iterator
from typing import IO, Any

from memory.portable.records import FormatError, check_header

MAX_LINE_BYTES = 256 * 1024 * 1024  # one record; a longer line is a corrupt file, not a record to hold in memory


class Writer:
    """Writes records to a gzip JSON-lines file; `close(ok=True)` publishes it, `close(ok=False)` discards it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._tmp: str | None = None
        if path == "-":
            self._raw: IO[bytes] = sys.stdout.buffer
        else:
            directory = os.path.dirname(os.path.abspath(path))
            fd, self._tmp = tempfile.mkstemp(prefix=".memproxy-export-", dir=directory)  # mode 0600
            self._raw = os.fdopen(fd, "wb")
        self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6, mtime=0)

    def write(self, record: dict[str, Any]) -> None:
        self._gz.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")

    @property
    def bytes_written(self) -> int:
        return self._raw.tell() if self._tmp is not None else 0

    def close(self, ok: bool) -> None:
        self._gz.close()
        if self._tmp is None:
            self._raw.flush()
            return
        if ok:
            self._raw.flush()
            os.fsync(self._raw.fileno())
        self._raw.close()
        if ok:
            os.replace(self._tmp, self.path)
        else:
            os.unlink(self._tmp)


class Reader:
    """Reads a file's header, then yields (line number, JSON object) for each record after it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._raw: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
        self.size = None if path == "-" else os.fstat(self._raw.fileno()).st_size
        self._gz = gzip.GzipFile(fileobj=self._raw, mode="rb")
        self.line = 0
        first = self._next_line()
        if first is None:
            raise FormatError("the file is empty")
        self.header = check_header(first)

    @property
    def position(self) -> int:
        """Compressed bytes consumed so far (for progress against `size`)."""
        try:
            return self._raw.tell()
        except OSError:
            return 0

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        while True:
            value = self._next_line()
            if value is None:
                return
            yield self.line, value

    def _next_line(self) -> Any:
        try:
            raw = self._gz.readline(MAX_LINE_BYTES + 1)
        except (EOFError, zlib.error) as exc:
            raise FormatError(f"the file is truncated or corrupt after line {self.line} ({exc})") from None
        except gzip.BadGzipFile:
            if self.line == 0:
                raise FormatError("not a gzip file: a memproxy export is gzip-compressed JSON lines") from None
            raise FormatError(f"the file is corrupt after line {self.line} (bad gzip data)") from None
        if not raw:
            return None
        self.line += 1
        if len(raw) > MAX_LINE_BYTES or not raw.endswith(b"\n"):
            raise FormatError(f"line {self.line}: the record is cut off (truncated or corrupt file)")
        try:
            return json.loads(raw)
        except ValueError:
            raise FormatError(f"line {self.line}: not JSON (corrupt file)") from None

    def close(self) -> None:
        self._gz.close()
        if self.path != "-":
            self._raw.close()
