"""The pooled client for the OpenAI-compatible upstream: chat (streamed and not), embeddings, models."""

from __future__ import annotations

import logging
import os
import ssl
import urllib.request
from collections.abc import Sequence
from typing import Any, AsyncIterator

import httpx
import orjson

from proxy.http1 import ConnectFailed, ConnectTimeout, Http1Pool, ReadTimeout, StreamCut

log = logging.getLogger("memproxy.upstream")


# Upstream statuses a client can act on (fix the request, back off, retry later); other failures are 502.
CLIENT_STATUSES = frozenset({400, 401, 403, 404, 408, 409, 413, 422, 429, 503, 504})


class UpstreamError(Exception):
    """The upstream refused or failed; carries what the client should see."""

    def __init__(self, status: int, message: str, *, code: str | None = None, type: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.type = type
        self.param = param
        self.headers = headers or {}

    @property
    def client_status(self) -> int:
        """What the client hears: the upstream's own status when it means something to the client, else 502."""
        return self.status if self.status in CLIENT_STATUSES else 502

    @property
    def context_overflow(self) -> bool:
        text = f"{self.code} {self.message}".lower()
        return "context_length" in text or "maximum context length" in text

    @classmethod
    def from_response(cls, status: int, body: bytes, headers: Any = None) -> UpstreamError:
        message, code, type_, param = f"upstream returned HTTP {status}", None, None, None
        try:
            data = orjson.loads(body)
            err = data.get("error") if isinstance(data, dict) else None
            if isinstance(err, dict):
                message = str(err.get("message") or message)
                code, type_, param = err.get("code"), err.get("type"), err.get("param")
            elif isinstance(err, str):
                message = err
        except orjson.JSONDecodeError:
            if body:
                message = f"{message}: {body[:200].decode('utf-8', 'replace')}"
        keep = {}
        if headers is not None and "retry-after" in headers:
            keep["Retry-After"] = headers["retry-after"]
        return cls(status, message, code=code, type=type_, param=param, headers=keep)


class Upstream:
    """One pooled HTTP client, created once; `base_url` ends in /v1."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 120.0,
                 max_connections: int = 1024, ca_bundle: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        # One trust store for every upstream call: chat, embeddings, summaries and model lists alike.
        self.ssl_context = upstream_ssl_context(ca_bundle)
        self.api_key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._auth = headers
        self.timeout = timeout
        self.fast: Http1Pool | None = None
        self._make_fast()
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers=headers,
            verify=self.ssl_context,
        )

    def set_base_url(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._make_fast()

    def _make_fast(self) -> None:
        """The lean client serves the streamed chat call unless a proxy is configured (httpx honours those)."""
        self.fast = None
        if self.base_url and not any(urllib.request.getproxies().get(s) for s in ("http", "https", "all")):
            try:
                self.fast = Http1Pool(self.base_url, read_timeout=self.timeout, ssl_context=self.ssl_context)
            except ValueError:
                self.fast = None

    async def close(self) -> None:
        await self.client.aclose()
        if self.fast is not None:
            await self.fast.close()

    async def stream_chat(self, body: dict[str, Any] | bytes | Sequence[bytes | memoryview],
                          headers: dict[str, str] | None = None) -> AsyncIterator[dict[str, Any]]:
        """Yield each parsed chunk of a streamed chat completion; raise UpstreamError on failure.

        `body` is a request object, its JSON, or its JSON as pieces (memory.context.splice_messages).
        """
        content = orjson.dumps(body) if isinstance(body, dict) else body
        response = await self.open_chat_stream(content, _json_headers(headers))
        try:
            if response.status_code >= 400:
                raise UpstreamError.from_response(response.status_code, await response.aread(), response.headers)
            state = _StreamState()
            buffer = b""
            async for piece in response.aiter_bytes():
                # One split per piece (a read often holds several events), not a find and two copies per line.
                lines = (buffer + piece if buffer else piece).split(b"\n")
                buffer = lines.pop()
                for chunk in _chunks(lines, state):
                    yield chunk
                if state.error is not None:
                    raise state.error
            for chunk in _chunks([buffer], state):
                yield chunk
            if state.error is not None:
                raise state.error
            if not state.done and not state.finished:
                raise UpstreamError(502, "the upstream stream ended before its answer did", code="upstream_stream_cut")
        except (httpx.TimeoutException, ReadTimeout):
            raise UpstreamError(504, "the upstream model timed out mid-stream", code="upstream_timeout") from None
        except (httpx.HTTPError, StreamCut) as exc:
            raise UpstreamError(502, f"the upstream stream failed: {_reason(exc)}",
                                code="upstream_stream_cut") from None
        finally:
            await response.aclose()

    async def open_chat_stream(self, content: bytes | Sequence[bytes | memoryview], headers: dict[str, str]) -> Any:
        """Send a chat request and return the response with its body unread; UpstreamError if unreachable.

        The response has `status_code`, lower-case `headers`, `aiter_bytes()`, `aread()`, `aclose()`.
        """
        try:
            if self.fast is not None:
                return await self.fast.post("/chat/completions", content, {**self._auth, **headers})
            whole = content if isinstance(content, bytes) else b"".join(content)
            request = self.client.build_request("POST", self.base_url + "/chat/completions", content=whole,
                                                headers=headers)
            return await self.client.send(request, stream=True)
        except _UNREACHABLE as exc:
            raise _unreachable(exc) from None

    async def send(self, method: str, path: str, content: bytes | None, headers: dict[str, str]) -> httpx.Response:
        """Any other OpenAI endpoint (`path` after /v1), its body unread; UpstreamError if unreachable."""
        request = self.client.build_request(method, self.base_url + path, content=content, headers=headers)
        try:
            return await self.client.send(request, stream=True)
        except _UNREACHABLE as exc:
            raise _unreachable(exc) from None

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed chat completion."""
        data = await self._post_json("/chat/completions", body)
        return data

    async def models(self) -> list[dict[str, Any]]:
        try:
            response = await self.client.get(self.base_url + "/models", timeout=5.0)
        except httpx.HTTPError:
            return []
        if response.status_code != 200:
            return []
        data = orjson.loads(response.content)
        return list(data.get("data", [])) if isinstance(data, dict) else []

    async def _post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self.client.post(self.base_url + path, content=orjson.dumps(body),
                                              headers=_json_headers(None))
        except _UNREACHABLE as exc:
            raise _unreachable(exc) from None
        if response.status_code >= 400:
            raise UpstreamError.from_response(response.status_code, response.content, response.headers)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise UpstreamError(502, "the upstream returned a body that is not JSON", code="upstream_bad_body") from None


# What a failed upstream call raises before its response (a plain except: a context manager per call cost more).
_UNREACHABLE = (httpx.HTTPError, ReadTimeout, ConnectTimeout, ConnectFailed, StreamCut)


def _unreachable(exc: BaseException) -> UpstreamError:
    """The UpstreamError for one of `_UNREACHABLE`: a timeout is a 504, the rest a 502 naming the cause."""
    if isinstance(exc, (httpx.TimeoutException, ReadTimeout, ConnectTimeout)):
        return UpstreamError(504, f"the upstream model timed out: {_reason(exc)}", code="upstream_timeout")
    cause = _reason(exc)  # the certificate problem or refused port, not a class name
    log.warning("could not reach the upstream model: %s", cause)
    return UpstreamError(502, f"could not reach the upstream model: {cause}", code="upstream_unreachable")


def _stream_error(error: Any) -> UpstreamError:
    """An error object met inside a stream; its code is an HTTP status when the provider gives one."""
    err = error if isinstance(error, dict) else {"message": str(error)}
    code = err.get("code")
    status = code if isinstance(code, int) and 400 <= code <= 599 else 502
    return UpstreamError(status, str(err.get("message") or "upstream stream error"),
                         code=code if isinstance(code, str) else "upstream_error")


def upstream_ssl_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """Trust `ca_bundle` if given, else SSL_CERT_FILE / SSL_CERT_DIR, else the operating system's store."""
    if ca_bundle:
        return ssl.create_default_context(cafile=ca_bundle)
    cafile, capath = os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    return ssl.create_default_context()


def _reason(exc: BaseException) -> str:
    """The underlying cause in words (httpx's timeouts often carry no message: then the class name)."""
    return str(exc) or type(exc).__name__


def _json_headers(extra: dict[str, str] | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json"}
    if extra:
        headers.update(extra)
    return headers


class _StreamState:
    """How far a streamed answer has got: `[DONE]` seen, and whether a choice carried its finish_reason."""

    __slots__ = ("done", "finished", "error")

    def __init__(self) -> None:
        self.done = False
        self.finished = False  # a clean end of body now is a whole answer
        self.error: UpstreamError | None = None  # met in the stream: raised once the chunks before it are out


def _chunks(lines: list[bytes], state: _StreamState) -> list[dict[str, Any]]:
    """The chunks carried by these lines of an event stream (`data:` lines holding JSON objects), in order.

    Lines after `[DONE]` are read past (the body is read to its end so the connection goes back to the pool);
    an error object in the stream, or a choice that finished with "error", ends the list and is kept in
    `state.error`, for the caller to raise after the chunks that came before it.
    """
    out = []
    for line in lines:
        if state.done or not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            state.done = True
            continue
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(chunk, dict):
            continue
        if chunk.get("error"):
            state.error = _stream_error(chunk["error"])  # OpenRouter puts it beside `choices`, others alone
            break
        for choice in chunk.get("choices") or ():
            reason = choice.get("finish_reason") if isinstance(choice, dict) else None
            if reason == "error":
                state.error = _stream_error({"message": "the upstream model stopped with finish_reason \"error\""})
            state.finished = state.finished or bool(reason)
        if state.error is not None:
            break
        out.append(chunk)
    return out
