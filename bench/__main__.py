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


def run(names: list[str], smoke: bool, out: Path, keep: bool, scale: Scale | None = None) -> int:
    from bench.report import write_run

    work = Path(tempfile.mkdtemp(prefix="memproxy-bench-"))
    h = Harness(work_dir=work, scale=scale or (SMOKE if smoke else FULL))
    stem = time.strftime("%Y%m%d-%H%M%S") + ("-smoke" if smoke else "") + ("" if names == list(SUITES) else
                                                                          "-" + "-".join(names))
    try:
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
    json_path, md_path, text = write_run(out, stem, smoke, SUITES, results, durations)
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
    names = list(SUITES) if args.suite == "all" else [args.suite]
    return run(names, args.smoke, args.out, args.keep, _scale(args))


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
