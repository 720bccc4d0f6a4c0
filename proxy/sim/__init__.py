"""The built-in upstream simulator: a deterministic, scriptable OpenAI-compatible server."""

from __future__ import annotations

from proxy.sim.app import SimApp, build_sim_app
from proxy.sim.config import SimConfig
from proxy.sim.server import run_sim, run_sim_in_thread

__all__ = ["SimApp", "SimConfig", "build_sim_app", "run_sim", "run_sim_in_thread"]
