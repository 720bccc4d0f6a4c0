"""The data dir is private: every directory 0700 and every file 0600, whatever umask memproxy starts under.

These are the embedded backend's files (DuckDB, LanceDB), so its servers stay embedded under
MEMPROXY_TEST_BACKEND=postgres too (`database_url=None`).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import httpx

from helpers import create_agent
from memory.datadir import open_private_dir, release_private_dir, tighten


def _modes(root: Path) -> dict[str, int]:
    """Every entry under `root` (root included) by relative path -> permission bits."""
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(parent) / name
            out[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return out


def _loose(root: Path) -> dict[str, str]:
    bad = {}
    for rel, mode in _modes(root).items():
        want = 0o700 if (root / rel).is_dir() else 0o600
        if mode != want:
            bad[rel] = oct(mode)
    return bad


def test_fresh_data_dir_is_private_under_a_permissive_umask(make_server, tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "memproxy-data"
    before = os.umask(0o022)
    try:
        server = make_server(data_dir=str(data), database_url=None)
        agent = create_agent(server.base_url)
        reply = httpx.post(f"{server.base_url}/v1/chat/completions", timeout=30,
                           json={"model": agent, "messages": [{"role": "user", "content": "remember the kiwis"}]})
        assert reply.status_code == 200, reply.text
        passage = httpx.post(f"{server.base_url}/v1/agents/{agent}/archival-memory", timeout=30,
                             json={"text": "The kiwis are in the blue box", "tags": ["pantry"]})
        assert passage.status_code == 200, passage.text
        server.call(server.rt.longterm.flush())  # the turn's messages reach the recall table
        server.call(server.rt.longterm.optimize())  # compaction and index files, written by LanceDB's threads
        files = [rel for rel in _modes(data) if (data / rel).is_file()]
        assert "memproxy.duckdb" in files and any(rel.startswith("lance/recall") for rel in files)
        assert any(rel.startswith("lance/passages") for rel in files)
        assert _loose(data) == {}
        server.stop()
        assert _loose(data) == {}  # the checkpoint at shutdown too
        assert os.umask(0o022) == 0o022  # the caller's umask is back once the data dir is closed
    finally:
        os.umask(before)


def test_existing_loose_data_dir_is_tightened_once_and_said(make_server, tmp_path: Path, caplog) -> None:
    data = tmp_path / "old"
    first = make_server(data_dir=str(data), database_url=None)
    agent = create_agent(first.base_url)
    httpx.post(f"{first.base_url}/v1/agents/{agent}/archival-memory", json={"text": "an old passage"},
               timeout=30).raise_for_status()
    first.stop()
    (data / "notes.txt").write_text("left by an older release")
    entries = _modes(data)
    for rel in entries:  # as an older release under umask 022 (or a careless copy) left it
        (data / rel).chmod(0o755 if (data / rel).is_dir() else 0o644)
    with caplog.at_level(logging.WARNING, logger="memproxy"):
        second = make_server(data_dir=str(data), database_url=None)
    assert _loose(data) == {}
    said = [r.getMessage() for r in caplog.records if "readable by others" in r.getMessage()]
    assert len(said) == 1 and f"{len(entries)} entries" in said[0]
    second.stop()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="memproxy"):
        make_server(data_dir=str(data), database_url=None)
    assert not [r for r in caplog.records if "readable by others" in r.getMessage()]  # nothing left to say


def test_tighten_does_not_follow_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    outside.chmod(0o644)
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "link").symlink_to(outside)
    before = os.umask(0o022)
    try:
        assert open_private_dir(str(data)) == 1  # only the dir itself was open
        assert os.umask(0o077) == 0o077  # held while the dir is open
        release_private_dir()
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644
    assert tighten(str(data)) == 0
