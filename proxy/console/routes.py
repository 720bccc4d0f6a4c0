"""Serve the console's files: a fixed whitelist read from the package, so no request can name another file."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.errors import APIError

# Only these names are ever read; the URL picks among them and never forms a path.
STATIC_FILES: dict[str, str] = {
    "app.css": "text/css; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "chat.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "insight.js": "text/javascript; charset=utf-8",
    "memory.js": "text/javascript; charset=utf-8",
}
STATIC_PREFIX = "/console/static/"
# Served without a key when keys are set: these hold code, never data; every data call needs the key.
OPEN_PATHS: frozenset[str] = frozenset({"/console", "/console/", *(STATIC_PREFIX + n for n in STATIC_FILES)})
# The page may talk to this server only: no CDN, no inline script, no framing.
_SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@lru_cache(maxsize=None)
def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_bytes()


async def console_page(request: Request) -> Response:
    return Response(_read("index.html"), media_type="text/html; charset=utf-8", headers=_SECURITY_HEADERS)


async def console_file(request: Request) -> Response:
    name: str = request.path_params["name"]
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise APIError(404, f"the console has no file named {name!r}", code="not_found")
    return Response(_read(name), media_type=media_type, headers=_SECURITY_HEADERS)


routes: list[Route] = [
    Route("/console", console_page, methods=["GET", "HEAD"]),
    Route("/console/", console_page, methods=["GET", "HEAD"]),
    Route(STATIC_PREFIX + "{name}", console_file, methods=["GET", "HEAD"]),
]
