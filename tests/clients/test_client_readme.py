"""Every JavaScript example in the README runs, as written, under node against a live server."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from helpers import create_agent

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```js\n(.*?)```", README.read_text(), flags=re.S)
NODE_DIR = Path(__file__).resolve().parent / "node"


def test_readme_has_js_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_js_example_runs(index: int, server, node, tmp_path) -> None:
    script = NODE_DIR / f".readme-{index}.mjs"  # inside the package so its imports resolve
    script.write_text(BLOCKS[index].replace("http://127.0.0.1:8283", server.base_url))
    try:
        proc = subprocess.run([node.node, str(script)], cwd=NODE_DIR, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "AGENT_ID": create_agent(server.base_url), "NODE_NO_WARNINGS": "1"})
    finally:
        script.unlink()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip()
