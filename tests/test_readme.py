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
