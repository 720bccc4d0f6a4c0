"""What every suite gets: the running simulator, a memproxy it can (re)start on seeded data, sizes, logging."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import seed
from bench.pgbench import PgBench
from bench.procs import Proc, start_memproxy, start_sim

# Upstream profiles, applied per request through X-Sim-* headers so one simulator serves them all.
PROFILES: dict[str, dict[str, str]] = {
    "zero": {"X-Sim-Ttft-Ms": "0", "X-Sim-Token-Delay-Ms": "0", "X-Sim-Reply-Tokens": "12"},
    "realistic": {"X-Sim-Ttft-Ms": "300", "X-Sim-Token-Delay-Ms": "20", "X-Sim-Reply-Tokens": "40"},
    # Smoke runs keep the realistic profile's shape at a fraction of its duration.
    "realistic-smoke": {"X-Sim-Ttft-Ms": "5", "X-Sim-Token-Delay-Ms": "1", "X-Sim-Reply-Tokens": "5"},
}


@dataclass(frozen=True)
class Scale:
    """Request counts and sizes; FULL fits each suite in about two minutes on 2 cores, SMOKE in seconds."""

    latency_rounds: dict[str, int]  # "profile/concurrency" -> rounds per worker
    latency_concurrency: tuple[int, ...]
    realistic_profile: str
    turns_per_agent: int  # measured turns before a latency agent is retired (keeps ~50 in context)
    throughput_concurrency: tuple[int, ...]
    throughput_seconds: float
    scaling_history: tuple[int, ...]
    scaling_agents: tuple[int, ...]
    scaling_rounds: int
    scaling_loaded_agents: int  # agents loaded into memproxy's cache at each agent-count point (RSS)
    toolstep_turns: int
    soak_turns: int
    soak_agents: int
    soak_warmup: int  # turns before RSS must stay flat
    soak_sample_every: int  # turns between RSS samples
    smoke: bool = False


FULL = Scale(
    latency_rounds={"zero/1": 200, "zero/16": 25, "realistic/1": 15, "realistic/16": 3},
    latency_concurrency=(1, 16),
    realistic_profile="realistic",
    turns_per_agent=10,
    throughput_concurrency=(1, 8, 32, 128),
    throughput_seconds=4.0,
    scaling_history=(1_000, 10_000, 100_000),
    scaling_agents=(10, 1_000, 10_000),
    scaling_rounds=60,
    scaling_loaded_agents=2_000,  # loading costs ~10 ms per agent: 10k would take minutes
    toolstep_turns=150,
    soak_turns=20_000,
    soak_agents=200,
    soak_warmup=2_000,
    soak_sample_every=250,
)

SMOKE = Scale(
    latency_rounds={"zero/1": 6, "zero/16": 1, "realistic/1": 3, "realistic/16": 1},
    latency_concurrency=(1, 4),
    realistic_profile="realistic-smoke",
    turns_per_agent=5,
    throughput_concurrency=(1, 4),
    throughput_seconds=0.4,
    scaling_history=(100, 1_000),
    scaling_agents=(10, 50),
    scaling_rounds=5,
    scaling_loaded_agents=50,
    toolstep_turns=6,
    soak_turns=120,
    soak_agents=8,
    soak_warmup=40,
    soak_sample_every=20,
    smoke=True,
)


@dataclass
class Harness:
    work_dir: Path
    scale: Scale
    sim: Proc | None = None
    memproxy: Proc | None = None
    template_dir: Path | None = None
    template_id: str = ""
    started: float = field(default_factory=time.monotonic)
    pg: PgBench | None = None  # --backend postgres: each data dir is a schema there
    turncost_upstream: str = "fixed"  # turncost's memproxies answered by bench.fixed_upstream, or "sim"
    _data_dirs: int = 0

    @property
    def backend(self) -> str:
        return "embedded" if self.pg is None else "postgres"

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def upstream(self) -> str:
        assert self.sim is not None
        return self.sim.base + "/v1"

    def log(self, message: str) -> None:
        print(f"[bench {time.monotonic() - self.started:7.1f}s] {message}", file=sys.stderr, flush=True)

    def start(self) -> None:
        """Start the simulator and make the template data dir (one agent created through the API)."""
        self.sim = start_sim(self.log_dir)
        self.log(f"simulator pid {self.sim.pid} on :{self.sim.port}")
        if self.pg is not None:
            self.log(f"backend {self.pg.describe()}")
        self.template_dir = self.work_dir / "template"
        self.start_memproxy(self.template_dir)
        assert self.memproxy is not None
        self.template_id = seed.create_template(self.memproxy.base)
        self.stop_memproxy()
        self.log(f"template agent {self.template_id} ready")

    def close(self) -> None:
        self.stop_memproxy()
        if self.sim is not None:
            self.sim.stop()
            self.sim = None
        if self.pg is not None:
            self.pg.close()

    def new_data_dir(self, name: str) -> Path:
        """A copy of the template data dir (memproxy must not be running on either)."""
        assert self.template_dir is not None
        self._data_dirs += 1
        target = self.work_dir / f"data-{self._data_dirs}-{name}"
        if self.pg is not None:
            target.mkdir(parents=True)  # memproxy is given it, and writes nothing there
            self.pg.copy(self.template_dir, target)
        else:
            shutil.copytree(self.template_dir, target)
        return target

    def clone_agents(self, data_dir: Path, count: int, messages: int, tag: str, *, autoclear: bool = False,
                     in_context: int = seed.IN_CONTEXT, context_window: int | None = None) -> list[str]:
        """`count` copies of the template agent with `messages` stored messages each, in either backend."""
        if self.pg is not None:
            return self.pg.clone_agents(data_dir, self.template_id, count, messages, tag, autoclear=autoclear,
                                        in_context=in_context, context_window=context_window)
        return seed.clone_agents(data_dir, self.template_id, count, messages, tag, autoclear=autoclear,
                                 in_context=in_context, context_window=context_window)

    def start_memproxy(self, data_dir: Path) -> Proc:
        self.stop_memproxy()
        t0 = time.monotonic()
        extra = [] if self.pg is None else ["--database-url", self.pg.url_for(data_dir)]
        self.memproxy = start_memproxy(self.log_dir, data_dir, self.upstream, extra)
        self.log(f"memproxy pid {self.memproxy.pid} on :{self.memproxy.port} ready in "
                 f"{time.monotonic() - t0:.1f}s (data {data_dir.name})")
        return self.memproxy

    def stop_memproxy(self) -> None:
        if self.memproxy is not None:
            self.memproxy.stop()
            self.memproxy = None

    def profile(self, name: str) -> dict[str, str]:
        if name == "realistic":
            name = self.scale.realistic_profile
        return PROFILES[name]

    async def load_agents(self, agent_ids: list[str], concurrency: int = 32) -> float:
        """GET every agent once so memproxy holds it in its live cache; returns seconds taken."""
        assert self.memproxy is not None
        import asyncio

        t0 = time.monotonic()
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=self.memproxy.base, limits=limits, timeout=60.0) as client:
            queue = list(agent_ids)

            async def worker() -> None:
                while queue:
                    response = await client.get(f"/v1/agents/{queue.pop()}")
                    response.raise_for_status()

            await asyncio.gather(*(worker() for _ in range(min(concurrency, len(agent_ids)) or 1)))
        return time.monotonic() - t0

    async def runs(self, agent_id: str, limit: int = 10000) -> list[dict[str, Any]]:
        assert self.memproxy is not None
        async with httpx.AsyncClient(base_url=self.memproxy.base, timeout=60.0) as client:
            response = await client.get("/v1/runs/", params={"agent_id": agent_id, "limit": limit})
            response.raise_for_status()
            return list(response.json())
