"""Headless Chromium for tests: render a local HTML page and inspect the DOM after its scripts ran.

>>> dom = render_dom(exp_dir / "view.html")
>>> drawn_subplots(dom), error_banner(dom)

Tests call :func:`require_chromium`: it skips when Chromium is missing, except in
CI (``CI=true``), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["chromium_path", "require_chromium", "render_dom", "drawn_subplots", "error_banner"]

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--virtual-time-budget=5000",
)


def chromium_path() -> str | None:
    """The Chromium executable (``$CHROMIUM`` first), or None."""
    env = os.environ.get("CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env)
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The Chromium path; skips the test when missing (fails when ``CI=true``)."""
    import pytest

    path = chromium_path()
    if path is None:
        msg = "headless Chromium not found (apt-get install -y chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + "; CI=true requires it")
        pytest.skip(msg)
    return path


def render_dom(path: str | os.PathLike[str], *, timeout: float = 60.0) -> str:
    """The DOM of the local page ``path`` after its scripts ran (``chromium --dump-dom``)."""
    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError("headless Chromium not found (apt-get install -y chromium)")
    url = Path(path).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc = subprocess.run(
            [exe, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True, text=True, timeout=timeout,
        )
    if proc.returncode != 0 or "<html" not in proc.stdout:
        raise RuntimeError(f"chromium --dump-dom {url} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


class _DomScan(HTMLParser):
    """Collects, per ``view-subplot`` element, whether it holds a plotly ``main-svg``; and the banner text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, str | None]] = []  # (tag, role) role: 'subplot:<i>' | 'banner' | None
        self.subplots: list[bool] = []
        self.banner: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        role = None
        if "view-subplot" in classes:
            self.subplots.append(False)
            role = f"subplot:{len(self.subplots) - 1}"
        elif a.get("id") == "view-errors":
            role = "banner"
        if tag == "svg" and "main-svg" in classes:
            for _, r in self.stack:
                if r and r.startswith("subplot:"):
                    self.subplots[int(r.split(":")[1])] = True
        if tag not in ("br", "img", "input", "meta", "link", "hr", "path", "rect", "line", "circle", "use", "image"):
            self.stack.append((tag, role))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if self.stack and self.stack[-1][0] == tag:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data: str) -> None:
        if any(r == "banner" for _, r in self.stack):
            self.banner.append(data)


def _scan(dom: str) -> _DomScan:
    scan = _DomScan()
    scan.feed(dom)
    scan.close()
    return scan


def drawn_subplots(dom: str) -> tuple[int, int]:
    """``(drawn, total)``: ``view-subplot`` elements holding a plotly ``<svg class="main-svg">``."""
    flags = _scan(dom).subplots
    return sum(flags), len(flags)


def error_banner(dom: str) -> str:
    """The text of the page's ``#view-errors`` banner ('' when no script failed)."""
    return " ".join(" ".join(_scan(dom).banner).split())
