"""Fixtures: one simulator per test module, reached through the real openai SDK and httpx."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from proxy.sim import SimConfig, run_sim_in_thread


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    base_url, stop = run_sim_in_thread(SimConfig())
    yield base_url
    stop()


@pytest.fixture(scope="module")
def client(sim_url: str) -> Iterator[openai.OpenAI]:
    # No SDK retries: failure tests want to see the first error.
    with openai.OpenAI(base_url=sim_url, api_key="x", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def aclient(sim_url: str) -> openai.AsyncOpenAI:
    async with openai.AsyncOpenAI(base_url=sim_url, api_key="x", max_retries=0) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def http(sim_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim_url.removesuffix("/v1"), timeout=10) as raw:
        yield raw
