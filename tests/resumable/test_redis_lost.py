"""Redis going away in the middle of a resumable run: the live client still hears it all; resuming is 503."""

from __future__ import annotations

from typing import Any

import httpx

from bench.netdelay import towards
from helpers import create_agent, sim_headers
from sse import ids, parse


def test_redis_lost_mid_run_the_live_stream_goes_on_and_resume_is_503(resumable_server: Any,
                                                                      redis_url: str) -> None:
    link = towards(redis_url, 0)  # a plain relay, cut below
    try:
        server = resumable_server(redis_url=link.url(redis_url))
        agent = create_agent(server.base_url)
        body = {"model": agent, "messages": [{"role": "user", "content": "go"}], "stream": True}
        headers = {"X-Memproxy-Resumable": "1", **sim_headers(reply_tokens=40, token_delay_ms=15)}
        with httpx.stream("POST", server.base_url + "/v1/chat/completions", json=body, headers=headers,
                          timeout=60) as response:
            run_id = response.headers["x-memproxy-run-id"]
            chunks = response.iter_text()
            text = ""
            while len(parse(text[:text.rfind("\n\n") + 1])) < 3:
                text += next(chunks)
            link.cut()  # three events in: Redis is gone for the rest of the run
            text += "".join(chunks)
        whole = parse(text)
        assert ids(whole) == list(range(1, len(whole) + 1))
        assert whole[-1][1] == "[DONE]"
        said = "".join(e["choices"][0]["delta"].get("content") or "" for _, e in whole
                       if isinstance(e, dict) and e.get("choices"))
        assert len(said.split()) >= 40  # every token reached the client that was listening
        resumed = httpx.get(f"{server.base_url}/v1/runs/{run_id}/stream", timeout=30)
        assert resumed.status_code == 503 and resumed.json()["error"]["code"] == "redis_unavailable"
    finally:
        link.stop()
