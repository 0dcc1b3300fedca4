"""The package set of the record and the cache key: read from the metadata's headers, as importlib reads it."""

from __future__ import annotations

import importlib.metadata

import pytest

from bootstrap_repro.record import _env


def _importlib_packages() -> list[tuple[str, str]]:
    """What ``installed_packages`` returned before it read headers only (``dist.metadata`` parses whole files)."""
    seen: dict[str, tuple[str, str]] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            seen.setdefault(_env._normalize(name), (name, dist.version or "unknown"))
    return [seen[k] for k in sorted(seen)]


def test_installed_packages_match_importlib():
    assert _env.installed_packages() == _importlib_packages()


class FakeDist(importlib.metadata.Distribution):
    def __init__(self, text: str | None, name: str = "METADATA") -> None:
        self.text, self.file = text, name

    def read_text(self, filename: str) -> str | None:
        return self.text if filename == self.file else None

    def locate_file(self, path):  # pragma: no cover - not used
        raise NotImplementedError


@pytest.mark.parametrize("text", [
    "Metadata-Version: 2.1\nName: my_pkg\nVersion: 1.0rc1\nSummary: x\n\nName: not-this\n",
    "Metadata-Version: 2.1\r\nName: Pkg.Two\r\nVersion: 2.0+local\r\n\r\nbody\r\n",
    "Name:   spaced \nversion:3\n",  # spaces after the colon dropped, trailing ones kept; names case-insensitive
    "Name: folded\n  continued\nVersion: 1\n",  # a folded Name: importlib's own parse
    "Name: a\nthis is not a header\nVersion: 1\n",  # a line that is no header ends the headers its own way
    "Version: 1\n\nName: body-only\n",  # no Name in the headers
    "Name: nover\n",
    "Name: cr\rVersion: 1\n",
    "",
])
def test_name_and_version_as_the_email_parser_reads_them(text):
    dist = FakeDist(text)
    want = (dist.metadata["Name"], dist.version) if text and dist.metadata["Name"] else None
    assert _env._name_version(dist) == want


def test_pkg_info_when_there_is_no_metadata_file():
    dist = FakeDist("Metadata-Version: 1.0\nName: old-egg\nVersion: 0.1\n", name="PKG-INFO")
    assert _env._name_version(dist) == ("old-egg", "0.1")
