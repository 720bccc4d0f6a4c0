"""One trust store for every upstream call: chat, embeddings and summaries over TLS with a private CA."""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import trustme
import uvicorn

from helpers import create_agent, free_port, sdk
from proxy.sim import SimConfig
from proxy.sim.app import build_sim_app


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "private-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


@pytest.fixture(scope="module")
def tls_sim(private_ca: tuple[trustme.CA, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The simulator served over HTTPS with a certificate of the private CA."""
    ca, _ = private_ca
    folder = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "server.pem"))
    port = free_port()
    config = uvicorn.Config(build_sim_app(SimConfig(embedding_dim=32)), host="127.0.0.1", port=port,
                            log_level="warning", ssl_certfile=str(folder / "server.pem"), lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the TLS simulator did not start"
        time.sleep(0.01)
    yield f"https://localhost:{port}/v1"
    server.should_exit = True
    thread.join(timeout=10)


# vector_database_url (pgvector under MEMPROXY_TEST_BACKEND=postgres) comes first: its schema outlives the server.
def test_chat_embeddings_and_summaries_trust_the_configured_ca(vector_database_url, make_server, tls_sim,
                                                               private_ca) -> None:
    _, ca_path = private_ca
    overrides = {"database_url": vector_database_url} if vector_database_url else {}
    srv = make_server(upstream_url=tls_sim, upstream_ca_bundle=str(ca_path), embedding_model="sim-embedding",
                      **overrides)
    agent = create_agent(srv.base_url)
    client = sdk(srv.base_url)
    for turn in range(4):  # the streamed chat call (memproxy's own HTTP/1.1 client)
        reply = client.chat.completions.create(model=agent, messages=[{"role": "user", "content": f"turn {turn}"}])
        assert reply.choices[0].message.content
    # Embeddings (httpx): an archival passage is embedded, so hybrid search ranks it by vector too.
    added = httpx.post(f"{srv.base_url}/v1/agents/{agent}/archival-memory", json={"text": "The tide is at six."},
                       timeout=20)
    assert added.status_code == 200, added.text
    hits = httpx.get(f"{srv.base_url}/v1/agents/{agent}/archival-memory/search",
                     params={"query": "when is the tide"}, timeout=20).json()
    assert hits["results"][0]["relevance"]["vector_rank"] == 1
    # Summaries (httpx): a forced compaction writes a summary made by the model, not the fallback.
    root = tls_sim.rsplit("/v1", 1)[0]
    trusting = ssl.create_default_context(cafile=str(ca_path))
    httpx.delete(root + "/sim/requests", verify=trusting)
    assert httpx.post(f"{srv.base_url}/v1/agents/{agent}/summarize", timeout=30).status_code == 200
    received = httpx.get(root + "/sim/requests", verify=trusting).json()
    assert any("summar" in str(r.get("messages", "")).lower() for r in received)


def test_an_untrusted_certificate_is_a_502_that_names_the_problem(make_server, tls_sim) -> None:
    srv = make_server(upstream_url=tls_sim)  # the private CA is in no trust store memproxy reads
    agent = create_agent(srv.base_url)
    response = httpx.post(f"{srv.base_url}/v1/chat/completions", timeout=20,
                          json={"model": agent, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert "certificate" in message and "ConnectFailed" not in message
    # The same cause through httpx (passthrough of a non-agent model).
    passthrough = httpx.post(f"{srv.base_url}/v1/chat/completions", timeout=20,
                             json={"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]})
    assert passthrough.status_code == 502
    assert "certificate" in passthrough.json()["error"]["message"].lower()
