"""The console in a real browser against the real server: agents, memory, a streamed turn, runs, context, search."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from helpers import create_agent

# One turn the simulator scripts: a memory tool step (slow enough for keep-alives), then a streamed reply.
TOOL_TURN = "I like green tea [[sim:" + json.dumps({
    "script": [{"tool_calls": [{"name": "memory_insert", "arguments": {"label": "human", "new_str": "Likes green tea."}}]},
               {"reply": "Noted: you like green tea, Ada."}],
    "ttft_ms": 500, "token_delay_ms": 40,
}) + "]]"

MEMORY_URL = re.compile(r"/console/?#/agents/agent-[0-9a-f-]+/memory$")


def open_console(page: Any, base_url: str) -> None:
    page.goto(base_url + "/console/")
    page.wait_for_selector("#agent-list li")


def test_agent_memory_chat_runs_context_history_search(make_server, page, screenshot) -> None:
    srv = make_server(keepalive_interval=0.1)
    base = srv.base_url
    open_console(page, base)
    screenshot("01-empty")

    # Create an agent through the form; the console opens its memory.
    page.fill("#create-agent [name=name]", "console-e2e")
    page.fill("#create-agent [name=human]", "Name: Ada")
    page.click("#create-agent button[type=submit]")
    page.wait_for_url(MEMORY_URL)
    agent_id = page.url.split("#/agents/")[1].split("/")[0]
    page.locator("#agent-list a.active", has_text="console-e2e").wait_for()
    human = page.locator("form.block[data-label=human]")
    human.locator("[data-role=count]").wait_for()
    assert human.locator("[data-role=count]").inner_text() == "9 / 5000 chars"

    # Edit a block in place: saved through the API, and visible there.
    human.locator("textarea").fill("Name: Ada Lovelace")
    assert human.locator("[data-role=count]").inner_text() == "18 / 5000 chars"
    human.locator("button[type=submit]").click()
    human.locator(".note.ok", has_text="Saved").wait_for()
    stored = httpx.get(f"{base}/v1/agents/{agent_id}/core-memory/blocks/human", timeout=10).json()
    assert stored["value"] == "Name: Ada Lovelace"
    # Over the limit: the server's refusal is shown, and nothing is stored.
    human.locator("textarea").fill("x" * 5001)
    assert "over" in (human.locator("[data-role=count]").get_attribute("class") or "")
    human.locator("button[type=submit]").click()
    human.locator(".note.error").wait_for()
    assert "limit" in human.locator(".note.error").inner_text()
    stored = httpx.get(f"{base}/v1/agents/{agent_id}/core-memory/blocks/human", timeout=10).json()
    assert stored["value"] == "Name: Ada Lovelace"
    screenshot("02-memory")

    # Chat: the answer streams in (seen while still streaming), the tool step shows once the turn is stored.
    page.click(".tabs a:has-text('Chat')")
    page.fill(".chat-form textarea", TOOL_TURN)
    page.click(".chat-form button[type=submit]")
    # Keep-alives while the turn runs; the indicator names the running run's step, polled from /v1/runs.
    page.locator("#working.active", has_text="step").wait_for()
    screenshot("03a-chat-working")
    page.wait_for_function("() => { const t = document.querySelector('.assistant_message.streaming .msg-text');"
                           " return t && t.textContent.length > 0 && !t.textContent.includes('Ada.'); }")
    done = page.locator(".chat-log .assistant_message", has_text="Noted: you like green tea, Ada.").last
    done.locator(".run-line").wait_for()
    assert int(done.get_attribute("data-keepalives")) >= 1
    assert int(done.get_attribute("data-steps-seen")) >= 1
    run_line = done.locator(".run-line").inner_text()
    assert "completed" in run_line and "2 steps" in run_line
    assert "memproxy before upstream" in run_line  # from the response's Server-Timing header
    page.locator(".chat-log .tool_call_message", has_text="memory_insert").wait_for()
    page.locator(".chat-log .tool_return_message", has_text="updated").wait_for()
    screenshot("03-chat")
    blocks = httpx.get(f"{base}/v1/agents/{agent_id}/core-memory/blocks/human", timeout=10).json()
    assert "Likes green tea." in blocks["value"]
    page.fill(".chat-form textarea", 'And coffee? [[sim:{"reply": "Coffee too."}]]')
    page.click(".chat-form button[type=submit]")
    page.locator(".chat-log .assistant_message .run-line").nth(1).wait_for()

    # Runs: one chart row per turn; the tool turn has a tool segment.
    page.click(".tabs a:has-text('Runs')")
    page.wait_for_selector("#timings-chart")
    assert page.locator("table.runs tbody tr").count() == 2
    assert page.locator("#timings-chart rect.bar.upstream").count() == 2
    assert page.locator("#timings-chart rect.bar.tool").count() == 1
    assert page.locator("#timings-chart line.ttft").count() == 2
    screenshot("04-runs")

    # Context: both stacked bars show every part, in the API's numbers (no summary yet: see the next test).
    page.click(".tabs a:has-text('Context')")
    page.wait_for_selector("#context-parts")
    context = httpx.get(f"{base}/v1/agents/{agent_id}/context", timeout=10).json()
    assert page.locator("#context-bar .seg[data-segment=summary]").count() == 0
    for part in ("system", "blocks", "messages", "tools"):
        assert page.locator(f"#context-bar .seg[data-segment={part}]").count() == 1, part
    heading = page.locator("#panel-context h2").inner_text()
    assert f"{context['context_window_size_current']} of {context['context_window_size_max']} tokens" in heading
    whole = page.locator("#context-parts").bounding_box()["width"]
    shown = page.locator("#context-parts .seg[data-segment=tools]").bounding_box()["width"] / whole
    used = sum(context[k] for k in ("num_tokens_system", "num_tokens_external_memory_summary", "num_tokens_core_memory",
                                    "num_tokens_summary_memory", "num_tokens_messages",
                                    "num_tokens_functions_definitions"))
    assert abs(shown - context["num_tokens_functions_definitions"] / used) < 0.02
    screenshot("05-context")

    # History: six stored messages, five to a page, then the older one, then back.
    page.click(".tabs a:has-text('History')")
    page.wait_for_selector("#history .msg")
    page.select_option(".pager select", "5")
    page.wait_for_function("() => document.querySelector('.pager .muted').textContent.startsWith('messages 1–5')")
    first_page = page.locator("#history .msg").first.get_attribute("data-id")
    screenshot("06-history")
    page.click("[data-role=older]")
    page.wait_for_function("() => document.querySelector('.pager .muted').textContent.startsWith('messages 6–6')")
    assert page.locator("#history .user_message", has_text="I like green tea").count() == 1
    assert page.locator("[data-role=older]").is_disabled()
    page.click("[data-role=newer]")
    page.wait_for_function("() => document.querySelector('.pager .muted').textContent.startsWith('messages 1–5')")
    assert page.locator("#history .msg").first.get_attribute("data-id") == first_page

    # Search: recall finds the turn; archival finds a passage added from the same panel.
    page.click(".tabs a:has-text('Search')")
    page.fill("#recall-search [name=query]", "coffee")
    page.click("#recall-search button")
    page.locator("#recall-results .msg", has_text="coffee").first.wait_for()
    page.fill("#archival-insert [name=text]", "The office is in Lisbon.")
    page.click("#archival-insert button")
    page.locator("#archival-results", has_text="Added 1 passage").wait_for()
    page.fill("#archival-search [name=query]", "Lisbon")
    page.click("#archival-search button")
    page.locator("#archival-results .passage", has_text="Lisbon").wait_for()
    screenshot("07-search")
    httpx.delete(f"{base}/v1/agents/{agent_id}", timeout=10)


def test_with_api_keys_the_console_asks_for_a_key(make_server, page, screenshot) -> None:
    srv = make_server(api_keys=("console-secret",))
    base = srv.base_url
    assert httpx.get(f"{base}/v1/agents/", timeout=10).status_code == 401
    page.goto(base + "/console")
    dialog = page.locator("#key-dialog")
    dialog.wait_for(state="visible")
    screenshot("08-key-prompt")

    page.fill("#key-form [name=key]", "wrong")
    page.click("#key-form button")
    dialog.locator("[data-role=error]", has_text="invalid API key").wait_for()
    assert page.evaluate("sessionStorage.getItem('memproxy.apiKey')") == "wrong"

    page.fill("#key-form [name=key]", "console-secret")
    page.click("#key-form button")
    dialog.wait_for(state="hidden")
    page.locator("#agent-list li", has_text="No agents yet").wait_for()
    page.fill("#create-agent [name=name]", "keyed")
    page.click("#create-agent button[type=submit]")
    page.wait_for_url(MEMORY_URL)
    page.locator("form.block[data-label=persona]").wait_for()
    assert page.evaluate("sessionStorage.getItem('memproxy.apiKey')") == "console-secret"
    screenshot("09-keyed-memory")

    agent_id = page.url.split("#/agents/")[1].split("/")[0]
    # The stream is authorised too: a turn answers, and an upstream failure is shown in the pane.
    page.click(".tabs a:has-text('Chat')")
    page.fill(".chat-form textarea", 'hello [[sim:{"reply": "Hi with a key."}]]')
    page.click(".chat-form button[type=submit]")
    page.locator(".chat-log .assistant_message", has_text="Hi with a key.").locator(".run-line").wait_for()
    page.fill(".chat-form textarea", 'again [[sim:{"fail_status": 503}]]')
    page.click(".chat-form button[type=submit]")
    failed = page.locator(".chat-log .assistant_message.failed .error")
    failed.wait_for()
    assert "upstream model error" in failed.inner_text()
    assert page.locator(".chat-log .streaming").count() == 0
    screenshot("09b-keyed-chat-error")
    # The key never leaves the session: a data call without it is still refused.
    assert httpx.get(f"{base}/v1/agents/{agent_id}", timeout=10).status_code == 401
    headers = {"Authorization": "Bearer console-secret"}
    assert httpx.get(f"{base}/v1/agents/{agent_id}", headers=headers, timeout=10).json()["name"] == "keyed"
    # "Forget key" drops it and the console asks again.
    page.click("#forget-key")
    dialog.wait_for(state="visible")
    assert page.evaluate("sessionStorage.getItem('memproxy.apiKey')") is None
    httpx.delete(f"{base}/v1/agents/{agent_id}", headers=headers, timeout=10)


def test_context_shows_the_summary_after_a_compaction(make_server, page, screenshot) -> None:
    srv = make_server()
    base = srv.base_url
    agent_id = create_agent(base, name="compacted")
    with httpx.Client(base_url=base, timeout=30) as http:
        for n in range(4):
            turn = http.post("/v1/chat/completions",
                             json={"model": agent_id, "messages": [{"role": "user", "content": f"fact {n}: tea"}]})
            assert turn.status_code == 200, turn.text
        assert http.post(f"/v1/agents/{agent_id}/summarize").status_code == 204
        context = http.get(f"/v1/agents/{agent_id}/context").json()
    assert context["num_tokens_summary_memory"] > 0
    page.goto(f"{base}/console/#/agents/{agent_id}/context")
    page.wait_for_selector("#context-parts .seg[data-segment=summary]")
    legend = page.locator("#panel-context .legend").inner_text()
    assert f"summary: {context['num_tokens_summary_memory']}" in legend
    page.click("#panel-context details summary:has-text('Summary')")
    assert context["summary_memory"] in page.locator("#panel-context details[open] pre").inner_text()
    screenshot("10-context-summary")
    httpx.delete(f"{base}/v1/agents/{agent_id}", timeout=10)
