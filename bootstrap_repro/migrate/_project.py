"""A project's migration: which files change and how (a unified diff), the notes, and writing it."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bootstrap_repro.errors import OptionsError
from bootstrap_repro.fileio import atomic_write
from bootstrap_repro.migrate._notes import Note
from bootstrap_repro.migrate._options import rewrite_options
from bootstrap_repro.migrate._python import rewrite_python

__all__ = ["Migration", "migrate_sources", "plan"]

#: Folders never walked: version control, caches, virtual environments and packages installed in them.
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".venv", "venv", "env", "node_modules", "site-packages",
                       ".tox", ".mypy_cache", ".pytest_cache", "build", "dist"})
SUFFIXES = (".py", ".yaml", ".yml")
#: Larger files are not source code or options.
MAX_BYTES = 2 * 1024 * 1024


@dataclass
class Migration:
    """The files of ``root`` that change (relative path -> ``(old, new)`` text) and the notes."""

    root: Path
    changes: dict[str, tuple[str, str]] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)

    def diff(self) -> str:
        """A unified diff (``a/REL``, ``b/REL``), appliable with ``git apply`` or ``patch -p1`` in ``root``."""
        out = []
        for rel, (old, new) in sorted(self.changes.items()):
            lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                         fromfile=f"a/{rel}", tofile=f"b/{rel}")
            out.extend(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
        return "".join(out)

    def write(self) -> list[Path]:
        """Replace each changed file atomically (its permissions kept); returns their paths."""
        done = []
        for rel, (old, new) in sorted(self.changes.items()):
            path = self.root / rel if self.root.is_dir() else self.root
            if path.read_bytes().decode("utf-8") != old:
                raise OptionsError(f"{path}: changed since the migration was planned; run migrate again")
            mode = path.stat().st_mode & 0o7777
            data = new.encode("utf-8")

            def writer(f, data=data, mode=mode):  # type: ignore[no-untyped-def]
                os.fchmod(f.fileno(), mode)
                f.write(data)

            atomic_write(path, writer)
            done.append(path)
        return done


def migrate_sources(sources: Mapping[str, str], root: Path = Path(".")) -> Migration:
    """The migration of ``sources`` (relative path -> text of a ``.py`` or ``.yaml`` file)."""
    result = Migration(root)
    python = {rel: text for rel, text in sources.items() if rel.endswith(".py")}
    for rel, text in sorted(python.items()):
        new, notes = rewrite_python(text, rel)
        result.notes += notes
        if new != text:
            result.changes[rel] = (text, new)
    yamls = {rel: text for rel, text in sources.items() if rel.endswith((".yaml", ".yml"))}
    rewritten, notes = rewrite_options(yamls, python)
    result.notes += notes
    for rel, new in rewritten.items():
        result.changes[rel] = (yamls[rel], new)
    return result


def _is_exp_dir(path: Path) -> bool:
    """An experiment dir (its saved options are a record of what ran: never rewritten)."""
    return (path / "options.yaml").is_file() and (
        (path / "logs.json").is_file() or (path / "logs.txt").is_file() or any(path.glob("ckpt_*.pth.tar")))


def _walk(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for current, dirs, names in os.walk(root):
        here = Path(current)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")
                         and not (here / d / "pyvenv.cfg").exists() and not _is_exp_dir(here / d))
        for name in sorted(names):
            path = here / name
            if name.endswith(SUFFIXES) and path.is_file() and not path.is_symlink():
                found[path.relative_to(root).as_posix()] = path
    return found


def plan(path: str | os.PathLike[str]) -> Migration:
    """The migration of the project at ``path`` (a dir, or one ``.py`` / ``.yaml`` file); nothing is written.

    A file that is not UTF-8 or larger than 2 MiB is left, with a note.
    """
    root = Path(path)
    if not root.exists():
        raise OptionsError(f"migrate: {root} does not exist; pass the project dir (or one .py/.yaml file)")
    if root.is_dir():
        files = _walk(root)
    elif root.name.endswith(SUFFIXES):
        files = {root.name: root}
    else:
        raise OptionsError(f"migrate: {root} is not a dir, a .py or a .yaml file; pass the project dir")
    sources: dict[str, str] = {}
    notes = []
    for rel, file in files.items():
        try:
            if file.stat().st_size > MAX_BYTES:
                notes.append(Note(rel, None, "left as it is: larger than 2 MiB"))
                continue
            sources[rel] = file.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            notes.append(Note(rel, None, "left as it is: not UTF-8 text"))
        except OSError as exc:
            raise OptionsError(f"{file}: cannot be read ({exc.strerror or exc}); check its permissions") from None
    result = migrate_sources(sources, root)
    result.notes = notes + result.notes
    return result
