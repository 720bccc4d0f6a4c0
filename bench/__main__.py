"""`python -m bench [SUITE|all] [--smoke] [--out DIR]` and `python -m bench compare A.json B.json`."""

from __future__ import annotations

import argparse
import dataclasses
import asyncio
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.harness import FULL, SMOKE, Harness, Scale
from bench.suite import SuiteResult
from bench.suites import SUITES

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
# The suites whose seeding and servers work on either backend (the others seed DuckDB / LanceDB files).
POSTGRES_SUITES = ("latency", "throughput")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(
        "Measure what memproxy adds to latency and what it can carry, beside the direct upstream. "
        "Starts its own simulator and memproxy processes. `compare A.json B.json` diffs two runs."))
    parser.add_argument("suite", nargs="?", default="all", choices=["all", "compare", *SUITES],
                        help="suite to run (default: all); "
                        + "; ".join(f"{s.name}: {s.help}" for s in SUITES.values()))
    parser.add_argument("files", nargs="*", type=Path, help="compare: the two result JSON files")
    parser.add_argument("--smoke", action="store_true", help="tiny counts: checks the harness, measures nothing")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT})")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (data dirs and server logs)")
    parser.add_argument("--soak-turns", type=int, default=None, help="soak: turns to run (default 20000; smoke 120)")
    parser.add_argument("--soak-agents", type=int, default=None, help="soak: agents to spread them over (default 200)")
    parser.add_argument("--backend", choices=["embedded", "postgres"], default="embedded",
                        help="memproxy's storage (default embedded: DuckDB + LanceDB in the data dir); postgres "
                        f"runs the {' and '.join(POSTGRES_SUITES)} suites on PostgreSQL")
    parser.add_argument("--database-url", default=None,
                        help="--backend postgres: the database to work in (a schema per data dir, dropped after); "
                        "default: a throwaway database on postgresql://postgres@127.0.0.1:5432, dropped after")
    parser.add_argument("--turncost-upstream", choices=["fixed", "sim"], default="fixed",
                        help="turncost: what answers the measured memproxies; fixed (default): one fixed reply, "
                        "whatever the request, at no cost that grows with it (bench/fixed_upstream.py); sim: the "
                        "simulator, which parses every request")
    parser.add_argument("--match", default="", help="compare: only figures whose key contains this")
    parser.add_argument("--all", dest="show_all", action="store_true", help="compare: include bookkeeping figures")
    return parser


async def _run_suites(h: Harness, names: list[str]) -> tuple[dict[str, SuiteResult], dict[str, float]]:
    results: dict[str, SuiteResult] = {}
    durations: dict[str, float] = {}
    for name in names:
        h.log(f"suite {name}: start")
        t0 = time.monotonic()
        results[name] = await SUITES[name].run(h)
        durations[name] = time.monotonic() - t0
        h.log(f"suite {name}: done in {durations[name]:.1f}s")
    return results, durations


def run(names: list[str], smoke: bool, out: Path, keep: bool, scale: Scale | None = None,
        backend: str = "embedded", database_url: str | None = None, turncost_upstream: str = "fixed") -> int:
    from bench.report import write_run

    work = Path(tempfile.mkdtemp(prefix="memproxy-bench-"))
    h = Harness(work_dir=work, scale=scale or (SMOKE if smoke else FULL), turncost_upstream=turncost_upstream)
    stem = time.strftime("%Y%m%d-%H%M%S") + ("-smoke" if smoke else "") + ("" if names == list(SUITES) else
                                                                          "-" + "-".join(names))
    if backend == "postgres":
        stem += "-postgres"
    try:
        if backend == "postgres":
            from bench.pgbench import PgBench

            h.pg = PgBench(database_url)
        h.start()
        try:
            import uvloop

            results, durations = uvloop.run(_run_suites(h, names))
        except ImportError:
            results, durations = asyncio.run(_run_suites(h, names))
    finally:
        h.close()
        if not keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
        else:
            h.log(f"work dir kept: {work}")
    json_path, md_path, text = write_run(out, stem, smoke, SUITES, results, durations, backend)
    print(text)
    h.log(f"wrote {json_path} and {md_path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    # SIGTERM unwinds like Ctrl-C, so the `finally` and atexit handlers stop the servers we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = build_parser().parse_args(argv)
    if args.suite == "compare":
        if len(args.files) != 2:
            print("usage: python -m bench compare A.json B.json", file=sys.stderr)
            return 2
        from bench.compare import compare

        print(compare(args.files[0], args.files[1], match=args.match, show_all=args.show_all))
        return 0
    if args.database_url and args.backend != "postgres":
        print("--database-url needs --backend postgres", file=sys.stderr)
        return 2
    if args.backend == "postgres":
        names = list(POSTGRES_SUITES) if args.suite == "all" else [args.suite]
        if not set(names) <= set(POSTGRES_SUITES):
            print(f"--backend postgres runs only the {', '.join(POSTGRES_SUITES)} suites, not {args.suite}",
                  file=sys.stderr)
            return 2
    else:
        names = list(SUITES) if args.suite == "all" else [args.suite]
    return run(names, args.smoke, args.out, args.keep, _scale(args), args.backend, args.database_url,
               args.turncost_upstream)


def _scale(args: argparse.Namespace) -> Scale:
    """The preset sizes, with the soak's turn and agent counts overridden when given (warm-up = 10% of turns)."""
    scale = SMOKE if args.smoke else FULL
    turns = args.soak_turns or scale.soak_turns
    agents = args.soak_agents or scale.soak_agents
    if (turns, agents) == (scale.soak_turns, scale.soak_agents):
        return scale
    return dataclasses.replace(scale, soak_turns=turns, soak_agents=agents, soak_warmup=max(1, turns // 10),
                               soak_sample_every=max(1, min(scale.soak_sample_every, turns // 40)))


if __name__ == "__main__":
    sys.exit(main())
