"""Every Python example in the README runs, as written, against a live server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import create_agent

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_example_runs(index: int, server, capsys) -> None:
    source = BLOCKS[index].replace("http://127.0.0.1:8283", server.base_url)
    scope = {"__name__": "readme_example", "AGENT_ID": create_agent(server.base_url)}
    exec(compile(source, f"README.md python block {index}", "exec"), scope)
    assert capsys.readouterr().out.strip()  # every example prints what it got back


SHELL_BLOCKS = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_curl_quick_start_runs_as_pasted(server) -> None:
    import subprocess

    [block] = [b for b in SHELL_BLOCKS if "AGENT=$(curl" in b]
    script = block.replace("localhost:8283", server.base_url.removeprefix("http://"))
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    agent, _, stream = out.stdout.partition("\n")
    assert agent.startswith("agent-")
    assert '"finish_reason":"stop"' in stream and stream.rstrip().endswith("data: [DONE]")
