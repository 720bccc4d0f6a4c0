"""Agents' tool variables are encrypted at rest on both backends, and read back after a restart."""

from __future__ import annotations

import os
import stat
from typing import Any

import httpx
import pytest

from helpers import ON_POSTGRES, create_agent
from memory.secretbox import KEY_FILE, PREFIX, SecretBox, SecretKeyError, fernet_key, unseal_text

SECRET = "sk-at-rest-0123456789abcdefghij"


def _stored_env(server: Any, agent: str, sql: str = "SELECT tool_env FROM agents WHERE id = ?") -> str:
    """A secret-bearing column as the database holds it (read after the server stopped)."""
    if ON_POSTGRES:
        import asyncpg

        import pg

        async def fetch() -> str:
            con = await asyncpg.connect(server.settings.database_url)
            try:
                return str(await con.fetchval(sql.replace("?", "$1"), agent))
            finally:
                await con.close()

        return str(pg.run_blocking(fetch()))
    import duckdb

    con = duckdb.connect(os.path.join(server.settings.data_dir, "memproxy.duckdb"), read_only=True)
    try:
        row = con.execute(sql, [agent]).fetchone()
    finally:
        con.close()
    assert row is not None
    return str(row[0])


# On PostgreSQL only a configured key encrypts (replicas must share it); the embedded backend makes its own.
KEYED = {"secret_key": "the operator's key, shared by every replica"} if ON_POSTGRES else {}


def test_tool_variables_are_encrypted_in_the_database_and_survive_a_restart(make_server, tmp_path) -> None:
    data_dir = str(tmp_path / "data")
    first = make_server(data_dir=data_dir, **KEYED)
    agent = create_agent(first.base_url, secrets={"WEATHER_API_KEY": SECRET})
    bare = create_agent(first.base_url)
    mcp = httpx.post(f"{first.base_url}/v1/mcp-servers/", timeout=10, json={
        "server_name": "at-rest", "type": "streamable_http", "server_url": "http://127.0.0.1:9/mcp",
        "auth_token": "Bearer " + SECRET, "custom_headers": {"X-Key": SECRET}})
    assert mcp.status_code in (200, 201), mcp.text
    shown = httpx.get(f"{first.base_url}/v1/agents/{agent}").json()["secrets"]
    assert [(s["key"], s["value"]) for s in shown] == [("WEATHER_API_KEY", "sk-...ghij")]
    first.stop()
    stored = _stored_env(first, agent)
    assert stored.startswith(PREFIX) and SECRET not in stored and "WEATHER_API_KEY" not in stored
    assert _stored_env(first, bare) == "{}"
    config = _stored_env(first, mcp.json()["id"], "SELECT config FROM mcp_servers WHERE id = ?")
    assert config.startswith(PREFIX) and SECRET not in config
    key_file = os.path.join(data_dir, KEY_FILE)
    if ON_POSTGRES:
        assert not os.path.exists(key_file)  # nothing is written to a data dir on PostgreSQL
    else:
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600

    second = make_server(data_dir=data_dir, **KEYED)
    live = second.call(second.rt.memory.get(agent))
    [server] = second.call(second.rt.store.list_mcp_servers())
    assert server.auth_token == "Bearer " + SECRET and server.custom_headers == {"X-Key": SECRET}
    assert live.agent.tool_env == {"WEATHER_API_KEY": SECRET}
    # Sending the masked value back keeps the stored secret, still encrypted.
    response = httpx.patch(f"{second.base_url}/v1/agents/{agent}",
                           json={"secrets": {"WEATHER_API_KEY": "sk-...ghij", "OTHER": "x"}})
    assert response.status_code == 200, response.text
    assert second.call(second.rt.memory.get(agent)).agent.tool_env == {"WEATHER_API_KEY": SECRET, "OTHER": "x"}


def test_a_configured_key_is_used_and_another_key_cannot_read(make_server, tmp_path) -> None:
    data_dir = str(tmp_path / "keyed")
    server = make_server(data_dir=data_dir, secret_key="a long random operator secret, not a fernet key")
    agent = create_agent(server.base_url, secrets={"K": SECRET})
    server.stop()
    assert not os.path.exists(os.path.join(data_dir, KEY_FILE))  # the configured key, no file
    stored = _stored_env(server, agent)
    right = SecretBox(fernet_key("a long random operator secret, not a fernet key"))
    assert unseal_text(stored, right) == '{"K":"' + SECRET + '"}'
    with pytest.raises(SecretKeyError):
        unseal_text(stored, SecretBox(fernet_key("another key")))
    with pytest.raises(SecretKeyError):
        unseal_text(stored, None)
    assert unseal_text('{"OLD":"plain"}', right) == '{"OLD":"plain"}'  # written before encryption: still read


@pytest.mark.skipif(not ON_POSTGRES, reason="the embedded backend always has a key (its data dir's key file)")
def test_on_postgres_without_a_key_values_are_stored_plain_and_no_key_file_is_made(make_server, tmp_path) -> None:
    data_dir = str(tmp_path / "plain")
    server = make_server(data_dir=data_dir)
    agent = create_agent(server.base_url, secrets={"K": SECRET})
    shown = httpx.get(f"{server.base_url}/v1/agents/{agent}").json()["secrets"]
    assert [(s["key"], s["value"]) for s in shown] == [("K", "sk-...ghij")]  # still masked by the API
    server.stop()
    assert _stored_env(server, agent) == '{"K":"' + SECRET + '"}'
    assert not os.path.exists(os.path.join(data_dir, KEY_FILE))
