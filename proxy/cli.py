"""`memproxy serve | sim | export | import | --version`."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from memory.backends import BackendConfig, describe_backend, redact_url
from proxy import __version__, portable_cli
from proxy.config import OPTIONS, Settings
from proxy.logs import configure_logging
from proxy.preflight import Refused, claim_data_dir, claim_port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memproxy",
        description="OpenAI-compatible chat-completions gateway with stateful, Letta-compatible agent memory.",
    )
    parser.add_argument("--version", action="version", version=f"memproxy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway (flags override MEMPROXY_* variables)")
    for opt in OPTIONS:
        serve.add_argument(opt.flag, dest=opt.name, type=opt.kind, default=None,
                           help=f"{opt.help} [{opt.env}, default: {opt.default}]")
    serve.add_argument("--insecure", action="store_true",
                       help="allow a non-loopback bind address without MEMPROXY_API_KEYS")

    portable_cli.add_commands(commands)

    sim = commands.add_parser("sim", help="run only the built-in upstream simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8300)
    sim.add_argument("--ttft-ms", type=float, default=0.0, help="delay before the first token")
    sim.add_argument("--token-delay-ms", type=float, default=0.0, help="delay between tokens")
    sim.add_argument("--reply-tokens", type=int, default=12, help="words in a default reply")
    sim.add_argument("--embedding-dim", type=int, default=64)
    sim.add_argument("--max-context-tokens", type=int, default=None,
                     help="reject requests whose prompt is estimated above this")
    return parser


def banner(settings: Settings) -> str:
    upstream = settings.upstream_url or "BUILT-IN SIMULATOR (no MEMPROXY_UPSTREAM_URL set: replies are synthetic)"
    lines = [
        f"memproxy {__version__}",
        f"  listening   http://{settings.host}:{settings.port}/v1",
        f"  backend     {describe_backend(BackendConfig(settings.data_dir, settings.database_url))}",
        f"  upstream    {upstream}",
        f"  model       {settings.default_model} (default for new agents)",
        f"  embeddings  {settings.embedding_model or 'none: recall/archival search is full-text only'}",
        f"  auth        {'on (' + str(len(settings.api_keys)) + ' key(s))' if settings.auth_enabled else 'off'}",
        f"  redis       {redact_url(settings.redis_url) if settings.redis_url else 'none (in-process coordination)'}",
    ]
    if settings.workers > 1:
        lines.append(f"  workers     {settings.workers} processes on one socket")
    if settings.uses_simulator:
        lines.append("  WARNING: no real model is connected. Set MEMPROXY_UPSTREAM_URL to use one.")
    return "\n".join(lines)


def serve(args: argparse.Namespace) -> int:
    from memory.bounds import memory_setting_errors

    overrides = {opt.name: getattr(args, opt.name) for opt in OPTIONS}
    overrides["insecure"] = args.insecure
    try:
        settings = Settings.load(overrides)
    except ValueError as exc:
        print(f"memproxy: {exc}", file=sys.stderr)
        return 2
    bad = memory_setting_errors(settings)
    if bad:
        print("\n".join(f"memproxy: {error}" for error in bad), file=sys.stderr)
        return 2
    if not settings.is_loopback and not settings.auth_enabled and not settings.insecure:
        print(f"memproxy: refusing to bind {settings.host} without MEMPROXY_API_KEYS "
              "(anyone on the network could read every agent's memory); set keys or pass --insecure",
              file=sys.stderr)
        return 2
    if settings.log_format not in ("text", "json"):
        print(f"memproxy: MEMPROXY_LOG_FORMAT must be text or json, not {settings.log_format!r}", file=sys.stderr)
        return 2
    problem = settings.scale_problem()
    if problem is not None:
        print(f"memproxy: {problem}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        # One server per embedded data dir; on PostgreSQL there are no files to guard.
        held = None if settings.database_url else claim_data_dir(settings.data_dir)
        sock = claim_port(settings.host, settings.port)
    except Refused as exc:
        print(f"memproxy: {exc}", file=sys.stderr)
        return 1
    print(banner(settings), flush=True)

    import uvicorn

    from memory.native_heap import keep_large_blocks, limit_arenas
    from proxy.app import build_app
    from proxy.quiet_server import QuietServer

    limit_arenas()  # before DuckDB's and LanceDB's threads exist: they would each get an arena
    keep_large_blocks()

    def run_one(_index: int = 0) -> int:
        # log_config=None: uvicorn's loggers keep no handlers of their own and go through ours (text or JSON).
        config = uvicorn.Config(build_app(settings), log_level="warning", log_config=None, access_log=False,
                                loop=_loop(), http=http_protocol(), timeout_graceful_shutdown=5)
        server = QuietServer(config)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass  # uvicorn re-raises the SIGINT it shut down for; the shutdown itself is done
        # A lifespan that failed (database or Redis unreachable) leaves uvicorn without having started.
        return 0 if server.started else 1

    try:
        if settings.workers > 1:
            from proxy import metrics_mp
            from proxy.workers import serve_workers

            def run_worker(index: int) -> int:
                metrics_mp.enter_worker()
                return run_one(index)

            # Every worker's /metrics answers for all of them, from files in one private directory.
            with metrics_mp.shared_directory():
                return serve_workers(settings.workers, sock, run_worker)
        return run_one()
    finally:
        if held is not None:
            held.close()


def sim(args: argparse.Namespace) -> int:
    from proxy.sim import SimConfig, run_sim

    config = SimConfig(ttft_ms=args.ttft_ms, token_delay_ms=args.token_delay_ms, reply_tokens=args.reply_tokens,
                       embedding_dim=args.embedding_dim, max_context_tokens=args.max_context_tokens)
    print(f"memproxy simulator on http://{args.host}:{args.port}/v1", flush=True)
    run_sim(args.host, args.port, config)
    return 0


def _loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def http_protocol() -> Any:
    """What uvicorn serves HTTP/1.1 with: memproxy's `HttpProtocol`, or h11 where httptools is not installed."""
    try:
        from proxy.http_server import HttpProtocol
    except ImportError:  # uvicorn[standard] leaves httptools out on some platforms
        return "h11"
    return HttpProtocol


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "sim":
        return sim(args)
    if args.command in ("export", "import"):
        return portable_cli.run(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
