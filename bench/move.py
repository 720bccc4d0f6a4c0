"""Moving a data dir to PostgreSQL, timed: `python -m bench.move [--messages N] [--passages N] [--database-url URL]`.

Fills a fresh embedded data dir (the export tests' generator, `tests/portable/portable_data.py`), then runs
the real CLI: `memproxy export`, `memproxy import` into a fresh PostgreSQL database (created and dropped
here; default: the local server), and the import again (which must add nothing). Prints wall times, the
file size and the per-kind table the import verified. Not part of any suite: a one-off measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "portable"))
sys.path.insert(0, str(ROOT / "tests"))


def run(*args: str) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMPROXY_")} | {"PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "proxy", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"memproxy {' '.join(args[:1])} failed:\n{done.stderr}")
    return elapsed, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--passages", type=int, default=1_000)
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="an admin URL: a fresh database is created beside it and dropped after")
    args = parser.parse_args()

    import pg
    from portable_data import populate

    work = Path(tempfile.mkdtemp(prefix="memproxy-move-"))
    data_dir, exported = str(work / "data"), work / "export.jsonl.gz"
    started = time.perf_counter()
    counts = asyncio.run(populate(data_dir, agents=args.agents, messages=args.messages, passages=args.passages))
    print(f"filled {data_dir} in {time.perf_counter() - started:.1f} s: {counts}", file=sys.stderr)
    export_s, _ = run("export", str(exported), "--data-dir", data_dir, "--quiet")
    name = f"memproxy_move_{secrets.token_hex(4)}"
    pg.run_blocking(pg.admin(args.database_url, f'CREATE DATABASE "{name}"'))
    target = pg.with_database(args.database_url, name)
    try:
        import_s, table = run("import", str(exported), "--database-url", target, "--quiet")
        again_s, again = run("import", str(exported), "--database-url", target, "--quiet")
    finally:
        pg.drop_database(args.database_url, name)
        shutil.rmtree(work, ignore_errors=True)
    records = sum(counts.values())
    print(f"records     {records:,} ({counts})")
    print(f"export      {export_s:6.1f} s   file {exported.stat().st_size / 1e6:.2f} MB")
    print(f"import      {import_s:6.1f} s   ({records / import_s:,.0f} records/s, recall index rebuilt)")
    print(f"import x2   {again_s:6.1f} s   (nothing added)")
    print(table.strip())
    print(again.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
