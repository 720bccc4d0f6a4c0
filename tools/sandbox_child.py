"""The sandbox child: run as `python -I sandbox_child.py <memory> <cpu> <output>`, never imported.

It waits for one JSON call ({source, name, arguments, env, read, write}) on stdin, limits itself, confines its
file access with Landlock to the `read` and `write` trees, runs the function and writes one JSON answer
on stdout. Stdlib only: it runs in an isolated interpreter, before any of the tool's code.
"""

import ctypes
import io
import json
import os
import resource
import sys
import traceback

TYPE_CHECKING = False  # the typing module is not imported here: the child starts before every tool call
if TYPE_CHECKING:
    from typing import Any


class CappedText(io.TextIOBase):
    """A text stream that keeps the first `limit` characters and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.kept = 0
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        room = self.limit - self.kept
        if room > 0:
            self.parts.append(text[:room])
            self.kept += min(room, len(text))
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def text(self) -> str:
        out = "".join(self.parts)
        return out + (f"\n[output truncated: {self.dropped} more characters]" if self.dropped else "")


def capped(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[output truncated: {len(text) - limit} more characters]"


def limit_self(memory: int, cpu: int, output: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    # A tool may write scratch files in its directory, but not fill the disk.
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * output, 16 * output))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


# Landlock (Linux >= 5.13): the syscalls, filesystem access bits and scopes from <linux/landlock.h>.
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1, 2, 4, 8
_ABI1_ALL = (1 << 13) - 1  # execute .. make_sym
_REFER, _TRUNCATE = 1 << 13, 1 << 14
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1, 2
_PR_SET_NO_NEW_PRIVS = 38


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def confine(read: list[str], write: list[str]) -> int:
    """Allow file access only beneath `read` (read, execute) and `write` (everything); the Landlock ABI, 0 if none."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return 0
    handled = _ABI1_ALL | (_REFER if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0)
    # Signals and abstract sockets only reach processes in the same sandbox: the server is out of reach.
    scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0
    attr = _RulesetAttr(handled, 0, scoped)
    size = ctypes.sizeof(attr) if abi >= 6 else 8
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    rules = [(path, _EXECUTE | _READ_FILE | _READ_DIR) for path in read]
    rules += [(path, handled) for path in write]
    for path, access in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue  # a tree this system does not have
        if not os.path.isdir(path):
            access &= _EXECUTE | _READ_FILE | _WRITE_FILE | (_TRUNCATE if abi >= 3 else 0)
        rule = _PathBeneath(access, fd)
        if libc.syscall(_ADD_RULE, ruleset, ctypes.c_int(1), ctypes.byref(rule), ctypes.c_uint32(0)) < 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
        os.close(fd)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.syscall(_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) < 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    os.close(ruleset)
    return abi


def as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def main() -> None:
    memory, cpu, output = (int(a) for a in sys.argv[1:4])
    answer_to = os.fdopen(os.dup(1), "w", encoding="utf-8")
    # Writes straight to fd 1 or 2 must not corrupt the answer: they go nowhere.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    call = json.loads(sys.stdin.read())
    limit_self(memory, cpu, output)
    # Exactly the call's variables: whatever the interpreter set itself (LC_CTYPE when it coerces a C
    # locale) goes, and the tool's own arrive only now, with the call this process serves.
    os.environ.clear()
    os.environ.update(call.get("env") or {})
    if call.get("confine"):
        try:
            confine(call["read"], call["write"])
        except OSError as exc:
            answer_to.write(json.dumps({"ok": False, "error": f"the sandbox could not be set up: {exc}"}))
            return
    printed = CappedText(output)
    sys.stdout = sys.stderr = printed
    try:
        namespace: dict[str, Any] = {"__name__": "memproxy_tool"}
        exec(compile(call["source"], "<tool>", "exec"), namespace)
        result = namespace[call["name"]](**call["arguments"])
        text = capped(as_text(result), output) if result is not None else printed.text()
        answer = {"ok": True, "result": text}
    except BaseException as exc:  # noqa: BLE001 - every failure of the tool is reported, SystemExit included
        answer = {"ok": False, "error": capped(f"{type(exc).__name__}: {exc}", 4096),
                  "traceback": capped(traceback.format_exc(), 16384)}
    answer_to.write(json.dumps(answer, ensure_ascii=False))
    answer_to.flush()


if __name__ == "__main__":
    main()
