"""The code of a run: which repo, which commit, what was uncommitted, which plugin files.

The code repo is the git work tree holding the ``import:`` modules of the options
(found on ``sys.path`` without importing them) or, without plugins, the options
file; never the working directory.  ``$BOOTSTRAP_REPRO_CODE_ROOT`` names it
explicitly (``rerun`` sets it to the materialised tree).  Outside git, the code
is identified by the source of the plugin modules.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import os
import site
import stat
import sys
import sysconfig
import tarfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bootstrap_repro.fileio import atomic_write, atomic_write_bytes
from bootstrap_repro.options import flatten
from bootstrap_repro.record._errors import UntrackedTooLargeError
from bootstrap_repro.record._git import GitState, find_repo_root, read_git_state, submodule_paths
from bootstrap_repro.record._inputs import DEFAULT_SECRET_GLOBS, is_secret_path

__all__ = [
    "CodeSnapshot",
    "PluginModule",
    "UntrackedFile",
    "snapshot_code",
    "locate_module",
    "plugin_keys",
    "DIFF_FILE",
    "UNTRACKED_FILE",
    "CODE_ROOT_ENV",
    "HOOKS_ENV",
]

DIFF_FILE = "code.diff"
UNTRACKED_FILE = "untracked.tar.gz"
#: Per-submodule ``code.diff`` and ``untracked.tar.gz`` live under ``repro/submodules/<path>/``.
SUBMODULES_DIR = "submodules"
#: Names the code repo explicitly (a path inside it); ``rerun`` sets it for its run.
CODE_ROOT_ENV = "BOOTSTRAP_REPRO_CODE_ROOT"
#: Hook modules a driver attaches to a run (see ``bootstrap_repro.run``): code of the run too.
HOOKS_ENV = "BOOTSTRAP_REPRO_HOOKS"
_MB = 1024 * 1024


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class PluginModule:
    """One ``import:`` module of the options and where it would be imported from."""

    key: str  #: the option naming it, e.g. ``model.network.import``
    module: str  #: ``pkg.networks``
    file: Path | None  #: its source file (None: not found)
    root: Path | None  #: the ``sys.path`` entry it is found under
    sha256: str | None  #: hash of its file; outside git, of its whole top-level package (its helpers are code too)


@dataclass(frozen=True)
class UntrackedFile:
    """An untracked, non-ignored file of the code repo, read into memory (size-bounded)."""

    path: str  #: POSIX path relative to the repo root
    mode: int
    data: bytes = b""
    link: str | None = None  #: target, for a symlink

    @property
    def digest(self) -> str:
        kind = f"link:{self.link}" if self.link is not None else ("x" if self.mode & 0o111 else "-")
        return f"{self.path}\0{kind}\0{_sha256(self.data)}"


def _secret_globs(options: Any) -> tuple[str, ...]:
    globs = options.get("exp.secret_globs") if hasattr(options, "get") else None
    if globs is None:
        return DEFAULT_SECRET_GLOBS
    if isinstance(globs, str) or not all(isinstance(g, str) for g in globs):
        from bootstrap_repro.errors import OptionsError

        raise OptionsError(f"exp.secret_globs: expected a list of file-name globs like ['.env*', '*.pem'], got {globs!r}")
    return tuple(globs)


def plugin_keys(options: Any) -> list[tuple[str, str]]:
    """``[(key, module)]``: every ``*.import`` option, ``engine.hooks`` and ``$BOOTSTRAP_REPRO_HOOKS`` module."""
    tree = options.as_dict() if hasattr(options, "as_dict") else dict(options)
    flat = flatten(tree)
    out = [(k, v.strip()) for k, v in flat.items()
           if (k == "import" or k.endswith(".import")) and isinstance(v, str) and v.strip()]
    hooks = flat.get("engine.hooks") or []
    for i, name in enumerate([hooks] if isinstance(hooks, str) else hooks):
        if isinstance(name, str) and name.strip():
            out.append((f"engine.hooks[{i}]", name.strip()))
    for name in filter(None, (n.strip() for n in os.environ.get(HOOKS_ENV, "").split(","))):
        out.append((f"${HOOKS_ENV}", name))
    return out


def _path_entries() -> list[Path]:
    out = []
    for entry in sys.path:
        p = Path(entry or os.getcwd())
        if p.is_dir():
            out.append(p)
    return out


def locate_module(name: str) -> tuple[Path | None, Path | None]:
    """``(source file, sys.path root)`` of module ``name``, found without importing it when possible."""
    parts = name.split(".")
    loaded = getattr(sys.modules.get(name), "__file__", None)
    if loaded:
        return _with_root(Path(loaded), parts)
    for root in _path_entries():
        base = root.joinpath(*parts)
        for cand in (base.parent / (parts[-1] + ".py"), base / "__init__.py"):
            if cand.is_file():
                return cand.resolve(), root.resolve()
    try:  # editable installs and other meta-path finders (may import the parent packages)
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None, None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        return None, None
    return _with_root(Path(spec.origin), parts)


def _with_root(file: Path, parts: list[str]) -> tuple[Path, Path]:
    file = file.resolve()
    depth = len(parts) if file.name == "__init__.py" else len(parts) - 1
    return file, file.parents[depth]


def _hash_source(file: Path, root: Path, module: str) -> str:
    """Hash a module file, or every ``.py`` of its top-level package (a package's helpers are its code)."""
    top = root / module.split(".")[0]
    files = sorted(p for p in top.rglob("*.py") if "__pycache__" not in p.parts) if top.is_dir() else [file]
    h = hashlib.sha256()
    for p in files:
        try:
            h.update(f"{p.relative_to(root).as_posix()}\0{_sha256(p.read_bytes())}\n".encode())
        except OSError:
            h.update(f"{p}\0unreadable\n".encode())
    return h.hexdigest()


def _installed_dirs() -> list[Path]:
    dirs = set(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    dirs.add(site.getusersitepackages())
    paths = sysconfig.get_paths()
    dirs.update(paths[k] for k in ("purelib", "platlib", "stdlib", "platstdlib") if k in paths)
    return [Path(d).resolve() for d in dirs if d]


def _is_under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _rel(path: Path | None, root: Path | None) -> str | None:
    if path is None:
        return None
    if root is not None and _is_under(path, root):
        return path.relative_to(root).as_posix() or "."
    return str(path)


@dataclass
class CodeSnapshot:
    """The code of one run; :meth:`fingerprint` goes into the cache key, :meth:`write` into ``repro/``."""

    git: GitState | None
    options_file: Path | None
    cwd: Path
    plugins: list[PluginModule]
    framework_root: Path
    untracked: list[UntrackedFile] = field(default_factory=list)
    external: dict[str, str] = field(default_factory=dict)  #: plugin modules outside the repo: module -> sha256
    reason: str | None = None  #: why there is no git state
    submodules: list[SubmoduleSnapshot] = field(default_factory=list)
    excluded_secrets: list[str] = field(default_factory=list)  #: untracked files matching exp.secret_globs

    @property
    def root(self) -> Path | None:
        return self.git.root if self.git else None

    @property
    def dirty(self) -> bool:
        return bool(self.git and (self.git.diff or self.untracked))

    def untracked_sha256(self) -> str:
        return _sha256("\n".join(u.digest for u in sorted(self.untracked, key=lambda u: u.path)).encode())

    def fingerprint(self) -> str:
        """sha256 of the code: commit + diff + untracked content (+ plugins outside the repo), or the plugins' source."""
        if self.git is not None:
            payload: dict[str, Any] = {
                # the tree, not the commit: committing the same content again (or amending a message) is no change
                "git": True, "tree": self.git.tree or self.git.commit, "diff": _sha256(self.git.diff),
                "untracked": self.untracked_sha256(), "external": self.external,
                "submodules": {m.path: m.fingerprint() for m in self.submodules},
                "plugins": [[p.key, p.module] for p in self.plugins],  # which hook modules attach, too
            }
        else:
            payload = {"git": False, "modules": {p.module: p.sha256 or "missing" for p in self.plugins},
                       "plugins": [[p.key, p.module] for p in self.plugins]}
        return _sha256(json.dumps(payload, sort_keys=True).encode())

    def to_record(self) -> dict[str, Any]:
        """The ``code`` section of ``record.json``."""
        root = self.root
        plugins = [{
            "key": p.key, "module": p.module, "file": _rel(p.file, root), "root": _rel(p.root, root),
            "in_repo": bool(root and p.file and _is_under(p.file, root)), "sha256": p.sha256,
        } for p in self.plugins]
        common = {
            "options_file": _rel(self.options_file, root),
            "cwd": _rel(self.cwd, root),
            "cwd_in_repo": bool(root and _is_under(self.cwd, root)),
            "plugins": plugins,
            "framework_root": _rel(self.framework_root, root),
            "framework_in_repo": bool(root and _is_under(self.framework_root, root)),
            "fingerprint": self.fingerprint(),
        }
        if self.git is None:
            return {"git": False, "reason": self.reason, **common}
        return {
            "git": True,
            "root": str(self.git.root),
            "commit": self.git.commit,
            "branch": self.git.branch,
            "remote": self.git.remote,
            "dirty": self.dirty,
            **common,
            "diff": {"file": DIFF_FILE, "bytes": len(self.git.diff), "sha256": _sha256(self.git.diff)},
            "untracked": {
                "file": UNTRACKED_FILE, "count": len(self.untracked),
                "bytes": sum(len(u.data) for u in self.untracked), "sha256": self.untracked_sha256(),
            },
            "external": self.external,
            "submodules": [m.to_record() for m in self.submodules],
            "excluded_secrets": self.excluded_secrets,
        }

    def write(self, directory: Path) -> None:
        """Write ``code.diff`` and ``untracked.tar.gz`` (git only; per submodule under ``submodules/<path>/``)."""
        if self.git is None:
            return
        _write_code(directory, self.git.diff, self.untracked)
        for m in self.submodules:
            sub = directory / SUBMODULES_DIR / m.path
            sub.mkdir(parents=True, exist_ok=True)
            _write_code(sub, m.git.diff, m.untracked)


@dataclass
class SubmoduleSnapshot:
    """A checked-out git submodule of the code repo: its own commit, diff and untracked files."""

    path: str  #: relative to the superproject's root
    git: GitState
    untracked: list[UntrackedFile] = field(default_factory=list)

    def untracked_sha256(self) -> str:
        return _sha256("\n".join(u.digest for u in sorted(self.untracked, key=lambda u: u.path)).encode())

    def fingerprint(self) -> list[Any]:
        return [self.git.tree or self.git.commit, _sha256(self.git.diff), self.untracked_sha256()]

    def to_record(self) -> dict[str, Any]:
        return {
            "path": self.path, "commit": self.git.commit, "remote": self.git.remote,
            "dirty": bool(self.git.diff or self.untracked),
            "diff": {"file": f"{SUBMODULES_DIR}/{self.path}/{DIFF_FILE}", "bytes": len(self.git.diff),
                     "sha256": _sha256(self.git.diff)},
            "untracked": {"file": f"{SUBMODULES_DIR}/{self.path}/{UNTRACKED_FILE}", "count": len(self.untracked),
                          "sha256": self.untracked_sha256()},
        }


def _write_code(directory: Path, diff: bytes, untracked: list[UntrackedFile]) -> None:
    atomic_write_bytes(directory / DIFF_FILE, diff, fsync_dir=False)
    atomic_write(directory / UNTRACKED_FILE, lambda f: _write_tar(f, untracked), fsync_dir=False)


def _write_tar(f: Any, untracked: list[UntrackedFile]) -> None:
    """A deterministic tar.gz of ``untracked``: no timestamps, owners or names of this machine."""
    with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=6, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for u in sorted(untracked, key=lambda u: u.path):
            info = tarfile.TarInfo(u.path)
            info.mode = u.mode & 0o7777
            info.mtime = 0
            if u.link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, u.link
                tar.addfile(info)
            else:
                info.size = len(u.data)
                tar.addfile(info, io.BytesIO(u.data))


def _without_secrets(diff: bytes, globs: tuple[str, ...]) -> tuple[bytes, list[str]]:
    """``diff`` without the files whose names match the secret globs, and those files' paths."""
    if not diff:
        return diff, []
    chunks = diff.split(b"\ndiff --git ")
    chunks = [chunks[0], *(b"diff --git " + c for c in chunks[1:])]
    kept, dropped = [], []
    for chunk in chunks:
        header = chunk.split(b"\n", 1)[0]
        path = header[len(b"diff --git a/"):].split(b" b/", 1)[0].decode("utf-8", "surrogateescape")
        if header.startswith(b"diff --git a/") and is_secret_path(path, globs):
            dropped.append(path)
        else:
            kept.append(chunk)
    out = b"\n".join(kept)
    return (out + b"\n" if out and diff.endswith(b"\n") and not out.endswith(b"\n") else out), dropped


def _experiment_roots(paths: tuple[str, ...]) -> list[str]:
    """Dirs (relative) that are experiment dirs: they hold ``repro/record.json``."""
    roots = []
    for p in paths:
        if p == "repro/record.json":
            roots.append("")
        elif p.endswith("/repro/record.json"):
            roots.append(p[: -len("/repro/record.json")])
    return roots


def _read_untracked(root: Path, paths: list[str], max_mb: float | None) -> list[UntrackedFile]:
    sizes = []
    for p in paths:
        try:
            st = (root / p).lstat()
        except OSError:  # gone since git listed it
            continue
        if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            sizes.append((p, st, st.st_size if stat.S_ISREG(st.st_mode) else 0))
    total = sum(s for _, _, s in sizes)
    if max_mb is not None and total > max_mb * _MB:
        biggest = sorted(sizes, key=lambda t: -t[2])[:3]
        shown = ", ".join(f"{p} ({s / _MB:.1f} MB)" for p, _, s in biggest)
        raise UntrackedTooLargeError(
            f"untracked files of code repo {root} weigh {total / _MB:.1f} MB, over exp.max_untracked_mb={max_mb:g}: "
            f"{shown}; add them to .gitignore or raise the bound (--exp.max_untracked_mb {max(2 * max_mb, total / _MB + 1):.0f})"
        )
    out = []
    for p, st, _ in sizes:
        try:
            if stat.S_ISLNK(st.st_mode):
                out.append(UntrackedFile(p, st.st_mode, link=os.readlink(root / p)))
            else:
                out.append(UntrackedFile(p, st.st_mode, (root / p).read_bytes()))
        except OSError:
            continue
    return out


def _choose_root(plugins: list[PluginModule], options_file: Path | None) -> Path | None:
    hint = os.environ.get(CODE_ROOT_ENV)
    if hint:
        return find_repo_root(Path(hint))
    for p in plugins:
        if p.file is not None:
            root = find_repo_root(p.file)
            if root is not None:
                return root
    if options_file is not None:
        return find_repo_root(options_file)
    return None


def snapshot_code(
    options: Any,
    *,
    exp_dir: Path | None = None,
    max_untracked_mb: float | None = 50,
    cwd: Path | None = None,
) -> CodeSnapshot:
    """Record the code a run of ``options`` uses (nothing is written; see :meth:`CodeSnapshot.write`).

    Untracked files under ``exp_dir`` or under any experiment dir (a dir holding
    ``repro/record.json``) are not code and are left out.
    """
    import bootstrap_repro

    source = getattr(options, "source", None)
    options_file = Path(source).resolve() if source else None
    located = [(key, module, *locate_module(module)) for key, module in plugin_keys(options)]
    plugins = [PluginModule(key, module, file, root, None) for key, module, file, root in located]
    framework_root = Path(bootstrap_repro.__file__).resolve().parents[1]
    snap = CodeSnapshot(None, options_file, Path(cwd or os.getcwd()).resolve(), plugins, framework_root)
    root = _choose_root(plugins, options_file)
    if root is None:
        snap.reason = "the options file and the import: modules are in no git repository"
        snap.plugins = [replace(p, sha256=_hash_source(p.file, p.root, p.module)) if p.file and p.root else p
                        for p in plugins]
        return snap
    snap.git = state = read_git_state(root)
    globs = _secret_globs(options)
    diff, secret_edits = _without_secrets(state.diff, globs)
    if secret_edits:  # an edited tracked secret (configs/secrets.yaml): its content stays out of code.diff
        snap.git = state = replace(state, diff=diff)
    skip = _experiment_roots(state.untracked)
    if exp_dir is not None and _is_under(Path(exp_dir).resolve(), root):
        skip.append(Path(exp_dir).resolve().relative_to(root).as_posix())
    skip_prefixes = tuple("" if s in ("", ".") else s + "/" for s in skip)
    paths = [p for p in state.untracked if not (skip_prefixes and p.startswith(skip_prefixes))]
    snap.excluded_secrets = secret_edits + [p for p in paths if is_secret_path(p, globs)]  # never archived
    paths = [p for p in paths if p not in set(snap.excluded_secrets)]
    submodules = [m for m in submodule_paths(root) if (root / m / ".git").exists()]
    paths = [p for p in paths if not any(p == m or p.startswith(m + "/") for m in submodules)]
    snap.untracked = _read_untracked(root, paths, max_untracked_mb)
    budget = None if max_untracked_mb is None else max_untracked_mb - sum(len(u.data) for u in snap.untracked) / _MB
    for m in submodules:
        sub_state = read_git_state(root / m)
        sub_paths = [p for p in sub_state.untracked if not is_secret_path(p, globs)]
        snap.excluded_secrets += [f"{m}/{p}" for p in sub_state.untracked if is_secret_path(p, globs)]
        sub = SubmoduleSnapshot(m, sub_state, _read_untracked(root / m, sub_paths, budget))
        snap.submodules.append(sub)
    installed = _installed_dirs()
    hashed = []
    for p in plugins:
        file, path_root = p.file, p.root
        if file is None or path_root is None:
            hashed.append(p)
        elif not _is_under(file, root) and not any(_is_under(file, d) for d in installed):
            p = replace(p, sha256=_hash_source(file, path_root, p.module))  # outside the repo: its package is code
            snap.external[p.module] = p.sha256 or "missing"
            hashed.append(p)
        else:  # in the repo (the diff covers it) or installed (the package set covers it)
            hashed.append(replace(p, sha256=_sha256(file.read_bytes())))
    snap.plugins = hashed
    return snap
