"""The console's files over plain HTTP: a fixed whitelist, shipped in the package, open without a key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import httpx

from proxy.console.routes import STATIC_FILES

PACKAGE = Path(__file__).resolve().parents[2] / "proxy" / "console"


def test_every_file_the_page_loads_is_whitelisted_and_packaged() -> None:
    referenced = set(re.findall(r'/console/static/([\w.-]+)', (PACKAGE / "index.html").read_text()))
    for name in STATIC_FILES:
        if name.endswith(".js"):
            referenced |= set(re.findall(r'from "\./([\w.-]+)"', (PACKAGE / name).read_text()))
    assert referenced == set(STATIC_FILES), "index.html and the JS imports must name exactly the whitelist"
    pyproject = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["proxy.console"]
    for name in [*STATIC_FILES, "index.html"]:
        assert (PACKAGE / name).is_file()
        assert any(Path(name).match(p) for p in patterns), f"{name} would be left out of the wheel"


def test_console_is_served_with_a_strict_policy(make_server) -> None:
    srv = make_server()
    with httpx.Client(base_url=srv.base_url, timeout=10) as http:
        for path in ("/console", "/console/"):
            page = http.get(path)
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert "default-src 'self'" in page.headers["content-security-policy"]
            assert '<script type="module" src="/console/static/app.js">' in page.text
        script = http.get("/console/static/app.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert http.get("/console/static/app.css").headers["content-type"].startswith("text/css")


def test_only_whitelisted_names_are_served(make_server) -> None:
    srv = make_server()
    with httpx.Client(base_url=srv.base_url, timeout=10) as http:
        missing = http.get("/console/static/routes.py")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        for path in ("/console/static/__init__.py", "/console/static/..%2Froutes.py",
                     "/console/static/%2e%2e/%2e%2e/pyproject.toml", "/console/index.html"):
            response = http.get(path)
            assert response.status_code == 404, path
            assert "console" not in response.headers.get("content-type", "") and "import" not in response.text


def test_with_keys_the_files_are_open_and_every_data_call_is_not(make_server) -> None:
    srv = make_server(api_keys=("console-key",))
    with httpx.Client(base_url=srv.base_url, timeout=10) as http:
        assert http.get("/console").status_code == 200
        for name in STATIC_FILES:
            assert http.get(f"/console/static/{name}").status_code == 200, name
        # Near-misses of the open paths are not open: unknown files and traversal attempts need the key.
        for path in ("/console/static/nope.js", "/console/static/..%2F..%2Fv1%2Fagents", "/console/x",
                     "/console/static/app.js/../../v1/agents", "/v1/agents/", "/v1/runs/"):
            response = http.get(path)
            assert response.status_code == 401, path
            assert response.json()["error"]["code"] == "invalid_api_key"
        authed = http.get("/v1/agents/", headers={"Authorization": "Bearer console-key"})
        assert authed.status_code == 200
