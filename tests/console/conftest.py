"""Fixtures of the console's browser tests: Debian's chromium (installed when missing), driven by Playwright."""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() == "true"
INSTALL_LOCK = Path(tempfile.gettempdir()) / "memproxy-chromium-install.lock"


def unavailable(reason: str) -> None:
    """A browser that cannot run here: a failure under CI=true, a skip on a developer's machine."""
    if IN_CI:
        pytest.fail(f"{reason} (required under CI=true)", pytrace=False)
    pytest.skip(reason)


def _install_chromium() -> str | None:
    """apt-get install chromium as root, once across parallel sessions; the reason it failed, or None."""
    if os.geteuid() != 0:
        return f"{CHROMIUM} is missing and installing it needs root (apt-get install chromium)"
    with open(INSTALL_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be installing it right now
        if CHROMIUM.exists():
            return None
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            try:
                proc = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"`{' '.join(command)}` failed: {exc}"
            if proc.returncode != 0:
                return f"`{' '.join(command)}` exited {proc.returncode}: {proc.stderr.strip()[-500:]}"
    return None if CHROMIUM.exists() else f"chromium installed but {CHROMIUM} is still missing"


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed once per session when missing (Playwright's own downloads are not used)."""
    if not CHROMIUM.exists():
        reason = _install_chromium()
        if reason:
            unavailable(reason)
    return CHROMIUM


# Module scope, not session: Playwright's sync API holds an event loop on the main thread while it
# runs, which would break every asyncio test collected after these.
@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Any]:
    """Headless chromium driven by Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the console tests need the `playwright` package (pip install -e '.[test]')")
    with sync_playwright() as pw:
        try:
            launched = pw.chromium.launch(executable_path=str(chromium), headless=True,
                                          args=["--headless", "--no-sandbox"])
        except Exception as exc:  # noqa: BLE001 - any launch failure means no browser here
            unavailable(f"chromium at {chromium} did not start: {exc}")
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab in its own context (own sessionStorage); an uncaught script error fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not errors, f"uncaught errors in the console: {errors}"


@pytest.fixture
def screenshot(page: Any, tmp_path: Path) -> Callable[[str], Path]:
    """Save a full-page screenshot under the test's temp dir and print its path."""

    def take(name: str) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path

    return take
