"""Before serving: take the port and the data dir, or say in one sentence who holds them."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from typing import IO

LOCK_FILE = "memproxy.lock"


class Refused(Exception):
    """The server cannot start; the message is the sentence to print."""


def claim_port(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, bound here so a clash is one clear sentence, not a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            holder = port_holder(port)
            by = f" by {holder}" if holder else ""
            raise Refused(f"port {port} on {host} is already in use{by}; stop it or choose another with --port") from None
        raise Refused(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def claim_data_dir(path: str) -> IO[str]:
    """Hold the data dir's lock for the life of the process; one server per embedded data dir."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    handle = os.fdopen(fd, "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = handle.read().strip()
        handle.close()
        by = f" by memproxy process {other}" if other.isdigit() else " by another memproxy"
        raise Refused(f"the data dir {os.path.abspath(path)} is already in use{by}; "
                      "stop it or choose another with --data-dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def port_holder(port: int) -> str | None:
    """`name (pid N)` of the process listening on a TCP port, when /proc lets us see it."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows, None)
                for row in rows:
                    fields = row.split()
                    if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except OSError:
            continue
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    with open(f"/proc/{pid}/comm") as comm:
                        return f"{comm.read().strip()} (pid {pid})"
        except OSError:
            continue
    return None
