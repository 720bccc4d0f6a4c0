"""Pipecat's OpenAILLMService (`pipecat-ai`) pointed at a memproxy agent, run in a real pipeline."""

from __future__ import annotations

import asyncio
import json
import warnings
from typing import Any

import pytest

from client_support import ANSWER, PARIS, ROUND_TRIP_SCRIPT, history, require, runs, weather
from helpers import create_agent

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pipecat warns from inside its pipeline

with warnings.catch_warnings():  # pipecat's imports warn (audioop, its own renamed modules)
    warnings.simplefilter("ignore", DeprecationWarning)
    require("pipecat.services.openai.llm", "pipecat-ai")
    from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
    from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
    from pipecat.frames.frames import (EndFrame, ErrorFrame, Frame, LLMContextFrame, LLMFullResponseEndFrame,
                                       LLMTextFrame, MetricsFrame)
    from pipecat.metrics.metrics import LLMUsageMetricsData
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.services.openai.llm import OpenAILLMService
    from pipecat.workers.runner import WorkerRunner


class Recorder(FrameProcessor):
    """Sits between the LLM and the assistant aggregator and remembers what flowed downstream."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []
        self.responses: asyncio.Queue[None] = asyncio.Queue()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            self.frames.append(frame)
            if isinstance(frame, LLMFullResponseEndFrame):
                self.responses.put_nowait(None)
        await self.push_frame(frame, direction)

    def texts(self) -> str:
        return "".join(f.text for f in self.frames if isinstance(f, LLMTextFrame))

    def usage(self) -> list[Any]:
        return [d.value for f in self.frames if isinstance(f, MetricsFrame) for d in f.data
                if isinstance(d, LLMUsageMetricsData)]


def sim(options: dict[str, Any]) -> str:
    # A voice pipeline cannot add headers per turn: the simulator is scripted from the user's text.
    return f"[[sim:{json.dumps(options)}]]"


async def test_pipecat_conversation_with_a_function_call(server) -> None:
    agent = create_agent(server.base_url)
    llm = OpenAILLMService(base_url=server.base_url + "/v1", api_key="unused",
                           settings=OpenAILLMService.Settings(model=agent, system_instruction="Keep answers short."))
    called: list[dict[str, Any]] = []

    async def get_weather(params: Any) -> None:
        called.append(dict(params.arguments))
        await params.result_callback(weather(params.arguments["city"]))

    llm.register_function("get_weather", get_weather)
    tools = ToolsSchema(standard_tools=[FunctionSchema(name="get_weather", description="Current weather for a city",
                                                       properties={"city": {"type": "string"}}, required=["city"])])
    context = LLMContext(tools=tools)
    recorder = Recorder()
    worker = PipelineWorker(Pipeline([llm, recorder, LLMContextAggregatorPair(context).assistant()]),
                            cancel_on_idle_timeout=False,
                            params=PipelineParams(enable_metrics=True, enable_usage_metrics=True))
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(_worker: Any, _frame: Any) -> None:
        started.set()

    runner = WorkerRunner()
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())

    async def turn(text: str, responses: int) -> str:
        before = len(recorder.frames)
        context.add_message({"role": "user", "content": text})
        await worker.queue_frame(LLMContextFrame(context))
        for _ in range(responses):  # a function call answers with a second inference
            await asyncio.wait_for(recorder.responses.get(), timeout=15)
        return "".join(f.text for f in recorder.frames[before:] if isinstance(f, LLMTextFrame))

    try:
        await asyncio.wait_for(started.wait(), timeout=10)
        first = await turn("Hello there " + sim({"reply": "Hello, I am your agent."}), 1)
        second = await turn("What is the weather in Paris? " + sim({"script": ROUND_TRIP_SCRIPT}), 2)
        third = await turn("Thanks! " + sim({"reply": "You are welcome."}), 1)
    finally:
        await worker.queue_frame(EndFrame())
        await asyncio.wait_for(running, timeout=15)

    assert not [f for f in recorder.frames if isinstance(f, ErrorFrame)]
    assert (first, second, third) == ("Hello, I am your agent.", ANSWER, "You are welcome.")
    assert called == [PARIS]
    # The context Pipecat kept grew turn by turn and was resent whole each time.
    roles = [m["role"] for m in context.get_messages()]
    assert roles == ["user", "assistant", "user", "assistant", "tool", "assistant", "user", "assistant"]
    stored = history(server.base_url, agent)
    assert [m["message_type"] for m in stored] == [
        "user_message", "assistant_message",
        "user_message", "tool_call_message", "tool_return_message", "assistant_message",
        "user_message", "assistant_message"]
    assert json.loads(stored[4]["tool_return"]) == weather("Paris")
    # One usage report per inference, one memproxy run per request (the function call turn took two).
    usages = recorder.usage()
    agent_runs = runs(server.base_url, agent)
    assert len(agent_runs) == 4
    assert [u.total_tokens for u in usages] == [r["usage"]["total_tokens"] for r in agent_runs]
