"""An agent-file import acknowledged, then the server SIGKILLed at once: after a restart the agent is whole."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx

from crash_harness import Launcher, Server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from test_api_agent_files import hand_written_af  # noqa: E402  (the hand-written Letta file of the API tests)


def test_an_acknowledged_import_survives_a_kill_right_after(launcher: Launcher, upstream: tuple[str, Any],
                                                            tmp_path: Path) -> None:
    base_url, _ = upstream
    server = Server(launcher, tmp_path / "data", base_url)
    server.start()
    try:
        document = json.dumps(hand_written_af("roll_dice_crash")).encode()
        done = httpx.post(server.base_url + "/v1/agents/import", timeout=30,
                          files={"file": ("agent.af", document, "application/json")})
        assert done.status_code == 200, done.text
        server.kill()  # the instant the answer is in: nothing acknowledged may be lost
        [agent_id] = done.json()["agent_ids"]
        server.start()
        state = httpx.get(f"{server.base_url}/v1/agents/{agent_id}", timeout=30).json()
        assert [b["value"] for b in state["blocks"]] == ["Name: Ada. Plays dice.", "I keep the dice."]
        assert {t["name"] for t in state["tools"]} == {"roll_dice_crash", "memory_insert"}
        exported = httpx.get(f"{server.base_url}/v1/agents/{agent_id}/export", timeout=30).json()
        roles = [m["role"] for m in exported["agents"][0]["messages"]]
        assert roles == ["system", "user", "assistant", "tool", "assistant"]
        tool = next(t for t in exported["tools"] if t["name"] == "roll_dice_crash")
        assert "def roll_dice_crash" in tool["source_code"]
    finally:
        server.close()
