"""`memproxy export FILE` and `memproxy import FILE`: move every record between backends (see memory.portable).

Both read the backend from the same MEMPROXY_* settings and flags as `serve`. On the embedded backend
they take the data dir's lock, so they refuse, in one sentence, a data dir a running server holds; on
PostgreSQL they may run beside servers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from memory.backends import describe_backend, select_backend
from memory.portable.records import KINDS, FormatError
from memory.store import StoreError
from proxy.config import OPTIONS, Settings
from proxy.preflight import Refused, claim_data_dir
from memory.secretbox import SecretKeyError
from proxy.runtime import backend_config, secret_box


def add_commands(commands: Any) -> None:
    """The two subcommands, with every setting flag `serve` has."""
    for name, what in (("export", "write every record of the configured backend to FILE (- = stdout)"),
                       ("import", "load an export FILE (- = stdin) into the configured backend")):
        parser = commands.add_parser(name, help=what)
        parser.add_argument("file", metavar="FILE")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")
        for opt in OPTIONS:
            parser.add_argument(opt.flag, dest=opt.name, type=opt.kind, default=None,
                                help=f"{opt.help} [{opt.env}]")


def run(args: argparse.Namespace) -> int:
    settings = Settings.load({opt.name: getattr(args, opt.name) for opt in OPTIONS})
    config = backend_config(settings)
    try:
        backend = select_backend(config)
    except ValueError as exc:
        return _fail(str(exc))
    held = None
    if backend.name == "embedded":
        if args.command == "export" and not os.path.isdir(settings.data_dir):
            return _fail(f"there is no data dir at {os.path.abspath(settings.data_dir)} to export")
        try:
            held = claim_data_dir(settings.data_dir)
        except Refused as exc:
            return _fail(str(exc))
    progress = not args.quiet and sys.stderr.isatty()
    print(f"memproxy {args.command}: {describe_backend(config)}", file=sys.stderr)
    try:
        work = _export if args.command == "export" else _import
        return asyncio.run(work(backend, settings, args.file, progress))
    except (FormatError, StoreError, OSError, SecretKeyError) as exc:
        return _fail(str(exc))
    finally:
        if held is not None:
            held.close()


async def _export(backend: Any, settings: Settings, path: str, progress: bool) -> int:
    from memory.portable.dump import dump
    from memory.portable.fileio import Writer
    from memory.portable.progress import Progress
    from memory.portable.records import header

    store, longterm = backend.store(), backend.longterm(None)
    store.secret_box = secret_box(settings, backend.name)  # the file holds the values in the clear
    await store.open()
    try:
        await longterm.open()
        writer = Writer(path)
        ok = False
        bar = Progress("exporting", enabled=progress)
        try:
            writer.write(header(backend.name, settings.embedding_model))
            counts = await dump(store, longterm, writer.write, bar.update)
            ok = True
        finally:
            writer.close(ok)
            await longterm.close()
        bar.finish(sum(counts.values()))
    finally:
        await store.close()
    where = "stdout" if path == "-" else path
    print(f"exported to {where}: " + ", ".join(f"{n} {kind}s" for kind, n in counts.items()), file=sys.stderr)
    return 0


async def _import(backend: Any, settings: Settings, path: str, progress: bool) -> int:
    from memory.longterm import HttpEmbedder
    from memory.portable.fileio import Reader
    from memory.portable.load import Loader, LoadError
    from memory.portable.progress import Progress
    from tools.registry import default_registry

    reader = Reader(path)  # a file that is not an export is refused before the backend is touched
    source_model = reader.header.get("embedding_model")
    keep_vectors = not (source_model and settings.embedding_model and source_model != settings.embedding_model)
    embedder = None
    if settings.embedding_model and settings.upstream_url:
        embedder = HttpEmbedder(settings.upstream_url, settings.upstream_api_key, settings.embedding_model)
    skip = frozenset(tool.name for tool in default_registry().tools() if tool.kind == "builtin")
    store, longterm = backend.store(), backend.longterm(embedder)
    store.secret_box = secret_box(settings, backend.name)  # sealed again as the server would
    bar = Progress("importing", total=reader.size, enabled=progress)
    await store.open()
    try:
        await longterm.open()
        longterm.start_background()
        loader = Loader(store, longterm, skip, keep_vectors=keep_vectors)
        try:
            report = await loader.load(reader, lambda n: bar.update(n, reader.position))
        except LoadError as exc:
            return _fail(f"import stopped: {exc} (what was imported before it is kept; fix and re-run)")
        except FormatError as exc:
            return _fail(f"import stopped: {exc} (what was imported before it is kept; re-run with a whole file)")
        finally:
            await longterm.close()
            reader.close()
        bar.finish(sum(c.read for c in report.counts.values()), reader.size)
    finally:
        await store.close()
    if not keep_vectors:
        print(f"note: the file's vectors were made by {source_model!r}, not {settings.embedding_model!r}: "
              "passages are re-embedded by the server", file=sys.stderr)
    print(f"{'kind':<10}{'in file':>10}{'added':>10}{'present':>10}{'verified':>10}", file=sys.stderr)
    for kind in KINDS:
        c = report.counts[kind]
        print(f"{kind:<10}{c.read:>10}{c.added:>10}{c.present:>10}{c.found:>10}", file=sys.stderr)
    problems = report.mismatches()
    for problem in problems:
        print(f"memproxy import: count mismatch: {problem}", file=sys.stderr)
    if (report.counts["tool"].added or report.counts["mcp_server"].added) and settings.redis_url:
        await _announce_tools(settings)
    return 1 if problems else 0


async def _announce_tools(settings: Settings) -> None:
    """Bump the fleet's tools version: servers running on this database load the imported tools and MCP servers now."""
    from proxy.coordination import agent_locks
    from proxy.tool_sync import TOOLS

    locks = agent_locks(settings.redis_url, prefix=settings.redis_prefix, ttl=settings.lock_ttl)
    try:
        bumped = await locks.changed([TOOLS])
    finally:
        await locks.close()
    if not bumped:
        print("memproxy import: Redis did not answer: running servers load the imported tools at their next "
              "start", file=sys.stderr)


def _fail(message: str) -> int:
    print(f"memproxy: {message}", file=sys.stderr)
    return 1
