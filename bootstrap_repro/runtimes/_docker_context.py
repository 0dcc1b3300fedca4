"""The build context of an experiment image: its files (``.dockerignore`` applied), their hash, its tar.

Pure file work, no Docker SDK: the Docker runtime tags and finds images by
:meth:`BuildContext.digest`, which covers exactly the files it sends to
``docker build`` plus the build args and the base images' ids.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["BuildContext", "base_images"]

_INPUTS_SCHEME = "bootstrap-repro image inputs v1"
_TAR_MTIME = 946684800  # 2000-01-01: deterministic, and after 1980 (zip/wheel timestamps)


def _ignore_patterns(root: Path) -> list[tuple[bool, str]]:
    """``.dockerignore`` lines as ``(is_exception, pattern)``."""
    path = root / ".dockerignore"
    if not path.is_file():
        return []
    patterns = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line[1:].strip() if negated else line).lstrip("/")
        if pattern not in (".", ""):
            patterns.append((negated, pattern))
    return patterns


def _matches(path: str, pattern: str) -> bool:
    if pattern.startswith("**/") and fnmatch.fnmatchcase(path, pattern[3:]):
        return True
    return fnmatch.fnmatchcase(path, pattern)


def _ignored(rel: str, patterns: Sequence[tuple[bool, str]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negated, pattern in patterns:
        if any(_matches(p, pattern) for p in prefixes):
            ignored = not negated
    return ignored


def _may_reinclude(rel_dir: str, patterns: Sequence[tuple[bool, str]]) -> bool:
    """Whether an exception pattern could re-include something under an ignored dir."""
    return any(neg and (p.startswith(rel_dir + "/") or p == rel_dir or _glob_magic(p)) for neg, p in patterns)


def _glob_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


@dataclass(frozen=True)
class BuildContext:
    """The files sent to ``docker build``: the Dockerfile's dir minus its ``.dockerignore``."""

    root: Path
    dockerfile: str  #: relative to root
    files: tuple[str, ...]  #: relative POSIX paths, sorted

    @classmethod
    def collect(cls, dockerfile: Path) -> BuildContext:
        root = dockerfile.parent
        patterns = _ignore_patterns(root)
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = Path(dirpath).relative_to(root).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            dirnames[:] = sorted(
                d for d in dirnames
                if not (_ignored(rel_dir + d, patterns) and not _may_reinclude(rel_dir + d, patterns))
            )
            files += [rel_dir + f for f in filenames if not _ignored(rel_dir + f, patterns)]
        always = {dockerfile.name, ".dockerignore"} & set(os.listdir(root))  # docker sends them regardless
        return cls(root, dockerfile.name, tuple(sorted(set(files) | always)))

    def digest(self, build_args: dict[str, str], base_ids: dict[str, str | None]) -> str:
        """sha256 of everything the image is made from."""
        h = hashlib.sha256(f"{_INPUTS_SCHEME}\0{self.dockerfile}\0".encode())
        for rel in self.files:
            path = self.root / rel
            if path.is_symlink():
                data = f"link:{os.readlink(path)}".encode()
            else:
                data = path.read_bytes()
            h.update(f"{rel}\0{_mode(path):o}\0{hashlib.sha256(data).hexdigest()}\n".encode())
        h.update(json.dumps([sorted(build_args.items()), sorted(base_ids.items())]).encode())
        return h.hexdigest()

    def write_tar(self, fileobj: IO[bytes]) -> None:
        """A deterministic tar of the context (fixed mtime and owner)."""
        with tarfile.open(fileobj=fileobj, mode="w") as tar:
            for rel in self.files:
                path = self.root / rel
                info = tar.gettarinfo(str(path), arcname=rel)
                info.mtime, info.uid, info.gid, info.uname, info.gname = _TAR_MTIME, 0, 0, "root", "root"
                info.mode = _mode(path)
                if info.isreg():
                    with path.open("rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        fileobj.seek(0)


def _mode(path: Path) -> int:
    return 0o755 if not path.is_symlink() and os.access(path, os.X_OK) else 0o644


def _logical_lines(text: str) -> Iterator[str]:
    """Dockerfile instructions with ``\\`` continuations joined and comments dropped."""
    buf = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        if buf.strip():
            yield buf.strip()
        buf = ""
    if buf.strip():
        yield buf.strip()


def base_images(dockerfile_text: str, build_args: dict[str, str]) -> list[str]:
    """The images a Dockerfile starts ``FROM`` (stage names and ``scratch`` left out), args resolved."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    bases: list[str] = []
    seen_from = False
    for line in _logical_lines(dockerfile_text):
        word, _, rest = line.partition(" ")
        if word.upper() == "ARG" and not seen_from:
            name, eq, default = rest.strip().partition("=")
            args[name.strip()] = build_args.get(name.strip(), default.strip().strip("\"'") if eq else "")
        elif word.upper() == "FROM":
            seen_from = True
            tokens = [t for t in rest.split() if not t.startswith("--")]
            if not tokens:
                continue
            image = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: args.get(m.group(1), ""), tokens[0])
            if image.lower() not in stages and image != "scratch" and image not in bases:
                bases.append(image)
            if len(tokens) >= 3 and tokens[1].lower() == "as":
                stages.add(tokens[2].lower())
    return bases
