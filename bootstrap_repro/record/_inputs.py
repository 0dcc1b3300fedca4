"""The inputs a run actually used, discovered while it runs (not declared).

While a run trains, :class:`InputRecorder` watches it through Python's audit
hooks (``open``, ``os.listdir``, ``os.scandir``, ``glob.glob``) and a wrapper
of ``os.environ`` reads; forked children (DataLoader workers) report through
an inherited append-only file.  When the run ends, :meth:`InputRecorder.finish`
turns what was seen into an :class:`Inputs` manifest:

* **modules**: the file of every imported module outside the standard library
  and bootstrap-repro itself (repo code, ignored modules, submodules,
  ``PYTHONPATH`` helpers, installed packages, editable plugins), by sha256;
* **files**: every regular file the run opened for reading (data), by size,
  mtime and sha256; **dirs**: every directory a loader listed, by its entries;
* **env**: every environment variable the run read (minus :data:`NOT_INPUT_ENV`),
  with the value it had when the run started (a secret-looking name: an HMAC,
  never the value), plus ``exp.env_keys``;
* **unfingerprintable**: what could not be fingerprinted (a FIFO, a socket, a
  device, a file over ``exp.max_input_gb``): such a run is not cached;
* **secrets**: files matching ``exp.secret_globs``, by HMAC only.

:func:`check_inputs` compares a manifest with the files and variables as they
are now (stat first; a file whose size, mtime and inode are unchanged is not
read again), and is what the result cache, ``run``'s "up to date" and
``rerun`` ask before trusting a result.  Hashes of large files are kept in a
stat cache (:class:`StatCache`, sqlite) so unchanged data is not re-read.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import hmac
import json
import os
import re
import secrets as _secrets
import sqlite3
import stat
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "INPUTS_FILE",
    "INPUTS_ARCHIVE",
    "NOT_INPUT_ENV",
    "DEFAULT_SECRET_GLOBS",
    "Inputs",
    "InputChange",
    "InputRecorder",
    "StatCache",
    "check_inputs",
    "is_secret_path",
    "secret_digest",
    "env_value_record",
    "env_matches",
    "inputs_digest",
    "write_archive",
]

INPUTS_FILE = "inputs.json"
INPUTS_ARCHIVE = "inputs.tar.gz"
_CHUNK = 1 << 20
#: A stat entry is trusted only for files last modified this long before they were hashed (git's "racy" rule).
_RACY_NS = 2_000_000_000

#: Environment variables that never change results (paths of the shell, terminal, launcher bookkeeping).
NOT_INPUT_ENV: tuple[str, ...] = (
    "HOME", "PATH", "PWD", "OLDPWD", "USER", "LOGNAME", "SHELL", "SHLVL", "HOSTNAME", "TERM", "COLUMNS",
    "LINES", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "DISPLAY", "MAIL", "EDITOR", "PAGER",
    "PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONWARNINGS", "PYTHONSTARTUP",
    "PYTHONBREAKPOINT", "VIRTUAL_ENV", "CI", "NO_COLOR", "FORCE_COLOR", "CLICOLOR", "TERM_PROGRAM",
    "LOCAL_RANK", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_NAME",
    "ROLE_RANK", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
    "LC_*", "XDG_*", "SSH_*", "GIT_*", "CONDA_*", "BOOTSTRAP_REPRO_*", "TORCHELASTIC_*",
    "PYTEST_*", "COV_*", "KUBERNETES_*", "TQDM_*", "JPY_*", "VSCODE_*", "USERNAME", "LNAME", "PS1", "PS2", "_",
)
#: Names whose values are recorded as an HMAC, never in clear.
_SECRET_ENV_RE = re.compile(r"TOKEN|SECRET|PASS|CREDENTIAL|PRIVATE|AUTH|COOKIE|SESSION|DSN|(^|_)KEY($|_)|"
                            r"(^|_)PAT($|_)|APIKEY|ACCESSKEY", re.IGNORECASE)
#: A value holding ``scheme://user:password@...`` is a secret whatever its name.
_URL_CREDENTIALS_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:[^/@\s]*@")
#: Files never archived and never hashed in clear (``exp.secret_globs`` replaces this list).
DEFAULT_SECRET_GLOBS: tuple[str, ...] = (
    ".env", ".env.*", "*.env", "*.pem", "*.key", "id_*", ".netrc", "credentials*", "*.p12", "*.pfx",
    ".pgpass", "*secret*", ".git-credentials", ".pypirc", "*token*", "*service_account*", "*service-account*",
)
#: Files in a dir of one of these names are secrets too.
_SECRET_DIRS = (".ssh", ".gnupg", ".aws", ".kube", ".docker", "secrets", "keys", "credentials")
#: Paths that are never data: the kernel's and the devices'.
_SYSTEM_PREFIXES = ("/proc/", "/sys/", "/dev/", "/run/", "/etc/")
#: Below a system prefix but data all the same (shared memory is where fast loaders keep it).
_DATA_UNDER_SYSTEM = ("/dev/shm/",)


def _stdlib_dirs() -> tuple[str, ...]:
    """The standard library's dirs (of the base Python, not a venv's); site-packages below them are not stdlib."""
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix, "installed_base": sys.base_prefix,
            "installed_platbase": sys.base_exec_prefix}
    paths = sysconfig.get_paths(vars=base)
    out = {os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib") if k in paths}
    return tuple(d.rstrip("/") + "/" for d in out)


def _installed_dirs() -> tuple[str, ...]:
    import site

    dirs = set(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    dirs.add(site.getusersitepackages())
    paths = sysconfig.get_paths()
    dirs.update(paths[k] for k in ("purelib", "platlib") if k in paths)
    return tuple(os.path.realpath(d).rstrip("/") + "/" for d in dirs if d)


def _framework_dir() -> str:
    import bootstrap_repro

    return os.path.realpath(os.path.dirname(bootstrap_repro.__file__)) + "/"


def _match_env(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


@functools.lru_cache(maxsize=16)
def _secret_re(globs: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs) or "(?!)")


def is_secret_path(path: str | os.PathLike[str], globs: Sequence[str] = DEFAULT_SECRET_GLOBS) -> bool:
    """Whether a file's name matches a secret glob (or it lies in a dir such as ``.ssh``, ``secrets``, ``keys``)."""
    text = os.fspath(path)
    head, name = os.path.split(text)
    if _secret_re(tuple(globs)).match(name):
        return True
    parts = head.split(os.sep)
    return any(d in parts for d in _SECRET_DIRS)


# --------------------------------------------------------------------------- secrets: HMAC with a local key
def _local_key() -> bytes:
    """This machine's HMAC key for secrets (``<cache dir>/secret.key``, mode 600, made once, read once)."""
    from bootstrap_repro.record._cache import cache_root

    return _key_at(cache_root().parent / "secret.key")


@functools.lru_cache(maxsize=4)
def _key_at(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = _secrets.token_bytes(32)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret.key.")  # mode 600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        os.link(tmp, path)  # whole, or not at all: a concurrent first run keeps the one that won
    except FileExistsError:
        return path.read_bytes()
    finally:
        os.unlink(tmp)
    return key


def secret_digest(data: bytes) -> str:
    """HMAC-SHA256 of a secret with this machine's key: comparable here, useless elsewhere."""
    return "hmac:" + hmac.new(_local_key(), data, hashlib.sha256).hexdigest()


def env_value_record(name: str, value: str | None) -> Any:
    """How a variable's value is recorded: clear, or an HMAC for a secret-looking name; None when unset."""
    if value is None:
        return None
    if _SECRET_ENV_RE.search(name) or _URL_CREDENTIALS_RE.search(value):
        return {"hmac": secret_digest(value.encode())}
    return value


def env_matches(recorded: Any, current: str | None) -> bool:
    """Whether a variable's current value is the recorded one (clear, or an HMAC for a secret)."""
    if isinstance(recorded, dict) and "hmac" in recorded:
        return current is not None and secret_digest(current.encode()) == recorded["hmac"]
    return recorded == current


# --------------------------------------------------------------------------- hashing with a stat cache
def _sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stat_tuple(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class StatCache:
    """``path -> sha256`` for files whose dev, inode, size, mtime and ctime are unchanged (sqlite, shared).

    Lives at ``<cache dir>/stat-cache.sqlite``; an unusable database degrades to no cache.
    """

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            from bootstrap_repro.record._cache import cache_root

            path = cache_root().parent / "stat-cache.sqlite"
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._pre: dict[str, tuple[str, str] | None] | None = None

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, st TEXT NOT NULL, "
                           "sha256 TEXT NOT NULL)")
                self._db = db
            except sqlite3.Error:
                return None
        return self._db

    def prefetch(self, paths: Sequence[str]) -> None:
        """Load the entries of ``paths`` in a few queries (then :meth:`get` asks no more of the database)."""
        db = self._conn()
        if db is None:
            return
        found: dict[str, tuple[str, str]] = {}
        with self._lock:
            try:
                for i in range(0, len(paths), 500):
                    chunk = list(paths[i:i + 500])
                    rows = db.execute(f"SELECT path, st, sha256 FROM files WHERE path IN ({','.join('?' * len(chunk))})",
                                      chunk).fetchall()
                    found.update((r[0], (r[1], r[2])) for r in rows)
            except sqlite3.Error:
                return
        self._pre = {p: found.get(p) for p in paths} or None

    def get(self, path: str, st: os.stat_result) -> str | None:
        pre = self._pre
        if pre is not None and path in pre:
            row = pre[path]
            return row[1] if row and row[0] == repr(_stat_tuple(st)) else None
        db = self._conn()
        if db is None:
            return None
        with self._lock:
            try:
                row = db.execute("SELECT st, sha256 FROM files WHERE path = ?", (path,)).fetchone()
            except sqlite3.Error:
                return None
        return row[1] if row and row[0] == repr(_stat_tuple(st)) else None

    def put(self, items: Sequence[tuple[str, os.stat_result, str]]) -> None:
        db = self._conn()
        if db is None or not items:
            return
        now = time.time_ns()
        rows = [(p, repr(_stat_tuple(st)), h) for p, st, h in items if now - st.st_mtime_ns > _RACY_NS]
        with self._lock:
            try:
                with db:
                    db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?)", rows)
            except sqlite3.Error:
                pass

    def hash(self, path: str, st: os.stat_result, pending: list[tuple[str, os.stat_result, str]]) -> str:
        """sha256 of ``path`` (from the cache when its stat is unchanged); new hashes go to ``pending``."""
        cached = self.get(path, st)
        if cached is not None:
            return cached
        digest = _sha256_file(path)
        pending.append((path, st, digest))
        return digest


# --------------------------------------------------------------------------- the manifest
@dataclass
class Inputs:
    """What a run read: see the module docstring.  Paths are absolute (realpath)."""

    modules: dict[str, dict[str, Any]] = field(default_factory=dict)  #: path -> {module, sha256, size, kind}
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  #: path -> {sha256, size, mtime_ns, ino, kind}
    dirs: dict[str, dict[str, Any]] = field(default_factory=dict)  #: path -> {entries: sha256, count, kind}
    env: dict[str, Any] = field(default_factory=dict)  #: name -> value | None | {"hmac"}
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)  #: path -> {hmac, kind}
    unfingerprintable: list[str] = field(default_factory=list)  #: one line each
    archived: list[str] = field(default_factory=list)  #: paths saved in inputs.tar.gz
    cost_s: float = 0.0  #: seconds spent fingerprinting at the end of the run
    links: dict[str, str] = field(default_factory=dict)  #: symlink read through -> its real path
    absent: list[str] = field(default_factory=list)  #: files looked for and not found (optional inputs)
    resolution: dict[str, str] = field(default_factory=dict)  #: top-level module -> the file sys.path gives

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, "modules": self.modules, "files": self.files, "dirs": self.dirs, "env": self.env,
                "secrets": self.secrets, "links": self.links, "absent": self.absent, "resolution": self.resolution,
                "unfingerprintable": self.unfingerprintable, "archived": self.archived,
                "cost_s": round(self.cost_s, 4)}

    def summary(self) -> dict[str, Any]:
        """The ``inputs`` section of ``record.json`` (the full manifest is ``repro/inputs.json``)."""
        kinds: dict[str, int] = {}
        for meta in [*self.modules.values(), *self.files.values()]:
            kinds[meta.get("kind", "?")] = kinds.get(meta.get("kind", "?"), 0) + 1
        return {"file": INPUTS_FILE, "modules": len(self.modules), "files": len(self.files), "dirs": len(self.dirs),
                "env": sorted(k for k, v in self.env.items() if v is not None),
                "env_unset_read": sum(1 for v in self.env.values() if v is None),
                "secrets_excluded": sorted(self.secrets), "by_kind": kinds,
                "archived": len(self.archived), "unfingerprintable": self.unfingerprintable,
                "digest": inputs_digest(self.to_json()), "cost_s": round(self.cost_s, 4)}


def inputs_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of what a manifest says about the inputs' contents (not their stats)."""
    payload = {
        "modules": {p: m.get("sha256") for p, m in (manifest.get("modules") or {}).items()},
        "files": {p: m.get("sha256") for p, m in (manifest.get("files") or {}).items()},
        "dirs": {p: m.get("entries") for p, m in (manifest.get("dirs") or {}).items()},
        "env": manifest.get("env") or {},
        "secrets": {p: m.get("hmac") for p, m in (manifest.get("secrets") or {}).items()},
        "links": manifest.get("links") or {}, "absent": sorted(manifest.get("absent") or []),
        "resolution": manifest.get("resolution") or {},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- discovery
class _State:
    """What the audit hook and the environ wrapper collect (one per recording)."""

    def __init__(self, log_fd: int) -> None:
        self.pid = os.getpid()
        self.log_fd = log_fd
        self.read: set[str] = set()
        self.written: set[str] = set()
        self.listed: set[str] = set()
        self.env_read: set[str] = set()
        self.env_set: set[str] = set()  #: variables the run itself set (library defaults): not inputs
        self.read_first: set[str] = set()  #: read before the run wrote them: inputs even if written later
        self.procs: set[str] = set()  #: commands run in subprocesses (their reads are not seen)
        self.appended: set[str] = set()  #: logs and journals the run appends to: outputs, even if read first
        self.env0 = dict(os.environ)
        self._targets = {"o": self.read, "w": self.written, "l": self.listed, "e": self.env_read,
                         "s": self.env_set, "r": self.read_first, "p": self.procs, "a": self.appended}

    def note(self, kind: str, value: str) -> None:
        target = self._targets[kind]
        if value in target:
            return
        target.add(value)
        if kind == "o" and value not in self.written and value not in self.appended:
            self.note("r", value)
        if os.getpid() != self.pid:  # a forked child (DataLoader worker): tell the parent through the file
            try:
                os.write(self.log_fd, f"{kind}\t{value}\n".encode("utf-8", "surrogateescape"))
            except OSError:
                pass


_STATE: _State | None = None
_INSTALLED = False
#: Files read by every recording of this process: a later run may use data an earlier one loaded and cached
#: in memory (an ``lru_cache`` around a loader) without reading it again, so they count for it too.
_PROCESS_READS: set[str] = set()
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _audit(event: str, args: tuple[Any, ...]) -> None:
    st = _STATE
    if st is None or event not in _WATCHED:  # one lookup for the frequent others (builtins.id: each optimizer step)
        return
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int) or path is None:
            return
        if isinstance(mode, str):
            reading = "r" in mode or "+" in mode and "w" not in mode  # r, r+, a+: the old content is read
            writing = any(c in mode for c in "wax+")
            appending = "a" in mode
        else:
            acc = (flags or 0) & os.O_ACCMODE
            reading = acc in (os.O_RDONLY, os.O_RDWR) and not (flags or 0) & os.O_TRUNC
            writing = bool((flags or 0) & _WRITE_FLAGS)
            appending = bool((flags or 0) & os.O_APPEND)
        p = os.path.abspath(os.fsdecode(path))
        if reading:
            st.note("o", p)
        if writing:
            st.note("a" if appending else "w", p)
    elif event in ("os.listdir", "os.scandir"):
        path = args[0] if args else "."
        if isinstance(path, int):
            return
        st.note("l", os.path.abspath(os.fsdecode(path if path is not None else ".")))
    elif event in ("os.putenv", "os.unsetenv"):
        key = args[0]
        st.note("s", os.fsdecode(key) if isinstance(key, (str, bytes)) else str(key))
    elif event == "glob.glob":
        pattern = args[0]
        if isinstance(pattern, (str, bytes)):
            st.note("l", os.path.abspath(os.path.dirname(os.fsdecode(pattern)) or "."))
    elif event in ("sqlite3.connect", "ctypes.dlopen"):  # a database, a shared library: read by C code
        name = args[0] if args else None
        if isinstance(name, (str, bytes, os.PathLike)):
            text = os.fsdecode(name)
            if text and text != ":memory:" and not text.startswith("file:") and (event == "sqlite3.connect" or "/" in text):
                st.note("o", os.path.abspath(text))
    elif event in _PROCESS_EVENTS:
        st.note("p", _command_text(event, args))


_PROCESS_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn")
#: Every event :func:`_audit` notes.
_WATCHED = frozenset({"open", "os.listdir", "os.scandir", "os.putenv", "os.unsetenv", "glob.glob", "sqlite3.connect",
                      "ctypes.dlopen", *_PROCESS_EVENTS})


def _command_text(event: str, args: tuple[Any, ...]) -> str:
    try:
        if event == "os.system":
            cmd: Any = args[0]
        elif event == "os.spawn":
            cmd = args[2]
        else:
            cmd = args[1]
        if isinstance(cmd, (list, tuple)):
            cmd = " ".join(os.fsdecode(c) if isinstance(c, (str, bytes)) else str(c) for c in cmd)
        text = os.fsdecode(cmd) if isinstance(cmd, (str, bytes)) else str(cmd)
    except (IndexError, TypeError, ValueError):
        text = event
    return text[:120]


_environ_getitem = os._Environ.__getitem__  # type: ignore[attr-defined]


_BULK_FILES = ("_collections_abc.py", "<frozen _collections_abc>", "os.py", "<frozen os>")
_POINT_READS = ("get", "__contains__", "setdefault", "pop", "getenv")


_LIBRARY_PREFIXES: tuple[str, ...] = ()  #: installed packages and bootstrap-repro itself
_STDLIB_PREFIXES: tuple[str, ...] = ()


def _is_stdlib_file(filename: str) -> bool:
    """A standard-library frame (site-packages below the stdlib dir are libraries, not the stdlib)."""
    return filename.startswith(_STDLIB_PREFIXES) and not filename.startswith(_LIBRARY_PREFIXES)


def _tracked_getitem(self: Any, key: Any) -> Any:
    st = _STATE
    if st is not None and (self is os.environ or self is getattr(os, "environb", None)):
        frame = sys._getframe(1)
        code = frame.f_code
        # items()/values()/copy() walk every variable (tqdm looks for TQDM_* that way): not a read of each
        if not code.co_filename.endswith(_BULK_FILES) or code.co_name in _POINT_READS:
            while frame is not None and _is_stdlib_file(frame.f_code.co_filename):
                frame = frame.f_back  # up to the code that asked (os.getenv, os.path.expandvars, string.Template)
            where = frame.f_code.co_filename if frame is not None else ""
            # a library's own switches (torch's TORCHINDUCTOR_*) are not the run's inputs; the numerics
            # ones are recorded anyway (ENV_ALLOWLIST), and exp.env_keys adds more
            if not where.startswith(_LIBRARY_PREFIXES):
                st.note("e", os.fsdecode(key) if isinstance(key, bytes) else str(key))
    return _environ_getitem(self, key)


def _install() -> None:
    global _INSTALLED, _LIBRARY_PREFIXES, _STDLIB_PREFIXES
    if not _INSTALLED:
        _LIBRARY_PREFIXES = (*_installed_dirs(), _framework_dir())
        _STDLIB_PREFIXES = ("<frozen", *_stdlib_dirs())
        sys.addaudithook(_audit)  # permanent for the process; a no-op while nothing records
        os._Environ.__getitem__ = _tracked_getitem  # type: ignore[attr-defined]
        _INSTALLED = True


@dataclass
class _Config:
    exp_dir: Path
    env_keys: tuple[str, ...] = ()
    env_ignore: tuple[str, ...] = ()
    secret_globs: tuple[str, ...] = DEFAULT_SECRET_GLOBS
    max_input_bytes: float | None = 20 * 1024**3
    inputs_ignore: tuple[str, ...] = ()


class InputRecorder:
    """Discovers the inputs of the run between :meth:`start` and :meth:`finish` (one at a time per process)."""

    def __init__(self, exp_dir: Path, *, env_keys: Sequence[str] = (), env_ignore: Sequence[str] = (),
                 secret_globs: Sequence[str] = DEFAULT_SECRET_GLOBS, max_input_gb: float | None = 20.0,
                 stat_cache: StatCache | None = None, inputs_ignore: Sequence[str] = ()) -> None:
        self.config = _Config(Path(exp_dir), tuple(env_keys), tuple(env_ignore), tuple(secret_globs),
                              None if max_input_gb is None else float(max_input_gb) * 1024**3,
                              tuple(os.path.abspath(g) for g in inputs_ignore))
        self.stat_cache = stat_cache or StatCache()
        self._state: _State | None = None
        self._log: Any = None

    @classmethod
    def from_options(cls, options: Any, exp_dir: Path) -> InputRecorder:
        return cls(exp_dir, env_keys=list(options.get("exp.env_keys") or []),
                   env_ignore=list(options.get("exp.env_ignore") or []),
                   secret_globs=list(options.get("exp.secret_globs") or DEFAULT_SECRET_GLOBS),
                   max_input_gb=options.get("exp.max_input_gb", 20.0),
                   inputs_ignore=[g for g in options.get("exp.inputs_ignore") or [] if isinstance(g, str)])

    def start(self) -> InputRecorder:
        global _STATE
        if _STATE is not None:  # nested (a run inside a run's hook): the outer one records
            return self
        _install()
        self._log = tempfile.TemporaryFile(prefix="bootstrap-repro-inputs-")
        os.set_inheritable(self._log.fileno(), True)
        flags = os.O_APPEND
        try:  # children append; the parent reads from 0 at the end
            import fcntl

            fcntl.fcntl(self._log.fileno(), fcntl.F_SETFL, fcntl.fcntl(self._log.fileno(), fcntl.F_GETFL) | flags)
        except (ImportError, OSError):
            pass
        self._state = _State(self._log.fileno())
        _STATE = self._state
        return self

    def stop(self) -> None:
        """Stop watching (idempotent); :meth:`finish` calls it."""
        global _STATE
        if self._state is not None and _STATE is self._state:
            _STATE = None

    def finish(self, git_root: Path | None = None) -> Inputs:
        """Stop watching and fingerprint what was used (``git_root``: the code repo, for the kinds)."""
        self.stop()
        st = self._state
        t0 = time.perf_counter()
        if st is None:
            return Inputs()
        self._merge_children(st)
        inputs = _fingerprint(st, self.config, self.stat_cache, git_root)
        inputs.cost_s = time.perf_counter() - t0
        return inputs

    def _merge_children(self, st: _State) -> None:
        if self._log is None:
            return
        try:
            self._log.seek(0)
            data = self._log.read().decode("utf-8", "surrogateescape")
        finally:
            self._log.close()
            self._log = None
        targets = st._targets
        for line in data.splitlines():
            kind, _, value = line.partition("\t")
            if kind in targets and value:
                targets[kind].add(value)


def _under(path: str, prefixes: Iterable[str]) -> bool:
    return path.startswith(prefixes if isinstance(prefixes, tuple) else tuple(prefixes))


class _Resolver:
    """``os.path.realpath`` with each directory resolved once (thousands of module files share a few dirs).

    The ``lstat`` of each file that is not a link is kept (:meth:`stat`): the fingerprint needs it next.
    """

    def __init__(self) -> None:
        self._dirs: dict[str, str] = {}
        self._stats: dict[str, os.stat_result] = {}

    def dir(self, d: str) -> str:
        real = self._dirs.get(d)
        if real is None:
            parent, name = os.path.split(d)
            if not name or parent == d:
                real = os.path.realpath(d)  # the root
            else:  # from the resolved parent: one lstat per new component
                joined = os.path.join(self.dir(parent), name)
                real = os.path.realpath(joined) if os.path.islink(joined) else joined
            self._dirs[d] = real
        return real

    def __call__(self, path: str) -> str:
        path = os.path.abspath(path)
        head, tail = os.path.split(path)
        joined = os.path.join(self.dir(head), tail)
        try:
            st = os.lstat(joined)
        except (OSError, ValueError):
            return joined
        if stat.S_ISLNK(st.st_mode):
            return os.path.realpath(joined)
        self._stats[joined] = st
        return joined

    def stat(self, path: str) -> os.stat_result:
        """``os.stat`` of a path this resolver returned (its ``lstat`` then, once), else asked now."""
        st = self._stats.pop(path, None)
        return st if st is not None else os.stat(path)


def _module_files(resolve: _Resolver) -> dict[str, str]:
    """``realpath -> module name`` of every loaded module with a source or extension file."""
    out: dict[str, str] = {}
    for name, mod in list(sys.modules.items()):
        file = getattr(mod, "__file__", None)
        if not isinstance(file, str) or not file:
            continue
        if file.endswith(".pyc") and getattr(getattr(mod, "__spec__", None), "origin", None):
            file = mod.__spec__.origin  # type: ignore[union-attr]
        out.setdefault(resolve(file), name)
    return out


def _git_kinds(root: Path | None, paths: Sequence[str]) -> dict[str, str]:
    """``path -> repo | untracked | ignored | submodule`` for the paths under the code repo ``root``."""
    if root is None or not paths:
        return {}
    from bootstrap_repro.record._git import git_command, submodule_paths

    root_s = os.path.realpath(root).rstrip("/") + "/"
    inside = [p for p in paths if p.startswith(root_s) and "/.git/" not in p[len(root_s) - 1:]]
    if not inside:
        return {}
    subs = [root_s + s.rstrip("/") + "/" for s in submodule_paths(Path(root))]
    kinds: dict[str, str] = {}
    rest = []
    for p in inside:
        if _under(p, subs):
            kinds[p] = "submodule"
        else:
            rest.append(p)
    if rest:
        rels = [p[len(root_s):] for p in rest]
        status, out, _ = git_command(root, "check-ignore", "-z", "--stdin", istream=_stdin("\0".join(rels) + "\0"),
                                     stdout_as_string=False, strip_newline_in_stdout=False,
                                     with_extended_output=True, with_exceptions=False)
        ignored = {root_s + os.fsdecode(x) for x in bytes(out or b"").split(b"\0") if x}
        maybe = [r for r in rels if root_s + r not in ignored]
        tracked: set[str] = set()
        for i in range(0, len(maybe), 500):  # literal pathspecs as arguments, in bounded batches
            listed = git_command(root, "--literal-pathspecs", "ls-files", "-z", "--cached", "--", *maybe[i:i + 500],
                                 stdout_as_string=False, strip_newline_in_stdout=False, what="ls-files")
            tracked |= {root_s + os.fsdecode(x) for x in bytes(listed).split(b"\0") if x}
        for p in rest:
            kinds[p] = "ignored" if p in ignored else "repo" if p in tracked else "untracked"
    return kinds


def _stdin(text: str) -> Any:
    """A stdin for gitpython's ``istream`` (it needs a real file: a temporary one)."""
    f = tempfile.TemporaryFile()
    f.write(text.encode("utf-8", "surrogateescape"))
    f.seek(0)
    return f


def _stat_meta(s: os.stat_result, now_ns: int | None = None) -> dict[str, int]:
    """What :func:`check_inputs` compares before reading a file again."""
    return {"size": s.st_size, "mtime_ns": s.st_mtime_ns, "ctime_ns": s.st_ctime_ns, "ino": s.st_ino,
            "hashed_ns": time.time_ns() if now_ns is None else now_ns}


def _kind_outside(path: str, installed: tuple[str, ...]) -> str:
    return "installed" if _under(path, installed) else "external"


def _dir_entries(path: str) -> tuple[str, int]:
    names = sorted(os.listdir(path))
    return hashlib.sha256("\0".join(names).encode("utf-8", "surrogateescape")).hexdigest(), len(names)


def _fingerprint(st: _State, cfg: _Config, cache: StatCache, git_root: Path | None) -> Inputs:
    exp_dir = os.path.realpath(cfg.exp_dir).rstrip("/") + "/"
    from bootstrap_repro.record._cache import cache_root

    installed = _installed_dirs()
    stdlib = _stdlib_dirs()
    skip = (exp_dir, os.path.realpath(cache_root().parent).rstrip("/") + "/", _framework_dir(), *_SYSTEM_PREFIXES)

    def is_stdlib(p: str) -> bool:
        return _under(p, stdlib) and not _under(p, installed)
    resolve = _Resolver()
    now_ns = time.time_ns()
    modules = _module_files(resolve)
    # written by the run before it read them (or never read): outputs, not inputs
    # (appended without being read first: a log; read, then appended to: an input)
    written = {resolve(p) for p in st.written | st.appended} - {resolve(p) for p in st.read_first}
    inputs = Inputs()
    pending: list[tuple[str, os.stat_result, str]] = []
    ignored_devices = {"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/tty", "/dev/full"}
    inputs.unfingerprintable += [f"a subprocess ran ({cmd}): what it reads is not seen" for cmd in sorted(st.procs)]

    # bytecode read in place of its source (a valid .pyc): the source is the input
    for raw in st.read:
        if raw.endswith(".pyc") and os.path.basename(os.path.dirname(raw)) == "__pycache__":
            src = os.path.join(os.path.dirname(os.path.dirname(raw)), os.path.basename(raw).split(".", 1)[0] + ".py")
            real = resolve(src)
            if real not in modules and os.path.isfile(real):
                modules[real] = "?"
    # modules
    launchers = tuple(os.path.realpath(os.path.join(d, "bin")) + "/" for d in {sys.prefix, sys.base_prefix})
    mod_paths = [p for p in modules if not _under(p, skip) and not is_stdlib(p)
                 and not (modules[p] == "__main__" and _under(p, launchers))]  # a console script: the framework
    # data files (read, not written by the run before, not a module, not bytecode)
    sys_path_dirs = {os.path.realpath(p or ".") for p in sys.path}
    data_paths = []
    for raw in sorted(st.read | _PROCESS_READS):  # earlier runs of this process: data they cached in memory
        if raw.endswith(".pyc"):  # bytecode read by imports (handled above): never data
            continue
        p = resolve(raw)
        if p in written or p in modules or p.endswith(".pyc") or "/.git/" in p or _under(p, skip[:2]) \
                or any(fnmatch.fnmatch(p, g) for g in cfg.inputs_ignore):
            continue
        if (_under(p, skip[2:]) or is_stdlib(p) or raw in ignored_devices) and not _under(p, _DATA_UNDER_SYSTEM):
            if raw.startswith("/dev/") and raw not in ignored_devices:
                inputs.unfingerprintable.append(f"{raw}: a device file")
            continue
        if p in sys_path_dirs:  # the import system probing python3X.zip
            continue
        if p != os.path.abspath(raw) or os.path.islink(raw):  # read through a symlink: where it points is an input
            inputs.links[os.path.abspath(raw)] = _link_target(os.path.abspath(raw)) or p
        if not os.path.lexists(p):  # looked for and not there (an optional file): its absence is an input
            inputs.absent.append(p)
            continue
        data_paths.append(p)
    dir_paths = sorted({resolve(p) for p in st.listed})
    # installed files are `installed` even inside the repo (a git-ignored .venv/): git is asked about the rest
    kinds = {p: "installed" for p in (*mod_paths, *data_paths, *dir_paths) if _under(p, installed)}
    kinds.update(_git_kinds(git_root, [p for p in (*mod_paths, *data_paths, *dir_paths) if p not in kinds]))
    cache.prefetch([*mod_paths, *data_paths])
    for p in mod_paths:
        try:
            s = resolve.stat(p)
            if not stat.S_ISREG(s.st_mode):
                continue
            digest = cache.hash(p, s, pending)
        except OSError:
            continue
        inputs.modules[p] = {"module": modules[p], "sha256": digest, **_stat_meta(s, now_ns),
                             "kind": kinds.get(p) or _kind_outside(p, installed)}
    for p in data_paths:
        kind = kinds.get(p) or _kind_outside(p, installed)
        try:
            s = os.stat(p)
        except OSError:
            continue  # gone since (a temporary file of a library)
        if stat.S_ISDIR(s.st_mode):  # opened, not listed (an fsync of a dir): no input
            continue
        if not stat.S_ISREG(s.st_mode):
            inputs.unfingerprintable.append(f"{p}: not a regular file ({stat.filemode(s.st_mode)[0]})")
            continue
        if is_secret_path(p, cfg.secret_globs):
            try:
                with open(p, "rb") as f:
                    inputs.secrets[p] = {"hmac": secret_digest(f.read()), "kind": kind}
            except OSError:
                pass
            continue
        # the bound is for data: a file of an installed package (plotly.min.js) is part of the environment
        if cfg.max_input_bytes is not None and s.st_size > cfg.max_input_bytes and kind != "installed":
            inputs.unfingerprintable.append(
                f"{p}: {s.st_size / 1024**3:.1f} GB, over exp.max_input_gb={cfg.max_input_bytes / 1024**3:g}")
            continue
        try:
            digest = cache.hash(p, s, pending)
        except OSError:
            continue
        inputs.files[p] = {"sha256": digest, **_stat_meta(s, now_ns), "kind": kind}
    for p in sorted(set(dir_paths)):
        if (_under(p + "/", skip) or is_stdlib(p + "/") or exp_dir.startswith(p + "/") or p in sys_path_dirs or "/.git" in p
                or os.path.isfile(os.path.join(p, "__init__.py")) or _under(p + "/", installed)):
            continue  # the exp dir, a parent of it (it gains the exp dir), import machinery's listings
        try:
            entries, count = _dir_entries(p)
        except OSError:
            if not os.path.lexists(p):  # a glob over a dir that is not there (yet): its absence is an input
                inputs.absent.append(p)
            continue
        inputs.dirs[p] = {"entries": entries, "count": count, "kind": kinds.get(p) or _kind_outside(p, installed)}
    # environment variables: read ones (not bookkeeping) and the declared ones
    names = {n for n in st.env_read - st.env_set if not _match_env(n, (*NOT_INPUT_ENV, *cfg.env_ignore))}
    names |= set(cfg.env_keys)
    for n in sorted(names):
        inputs.env[n] = env_value_record(n, st.env0.get(n))
    inputs.resolution = _resolution(modules, (*skip[2:], *stdlib), installed)
    cache.put(pending)
    cache.prefetch([])  # drop the prefetched rows
    _PROCESS_READS.update(p for p in st.read if not p.endswith(".pyc"))
    return inputs


def _link_target(path: str) -> str | None:
    """Where a path read through symlinks leads (None: nothing there); a loop says so."""
    try:
        if not os.path.lexists(path):
            return None
        real = os.path.realpath(path)
        return f"{real} (a symlink loop)" if os.path.islink(path) and real == path else real
    except (OSError, ValueError):
        return None


def _resolution(modules: Mapping[str, str], skip: tuple[str, ...], installed: tuple[str, ...]) -> dict[str, str]:
    """``top-level module -> file`` as ``sys.path`` resolves it now (a shadowing helper later resolves elsewhere)."""
    from importlib.machinery import PathFinder

    out = {}
    for path, name in modules.items():
        if "." in name or name in ("?", "__main__") or (_under(path, skip) and not _under(path, installed)):
            continue
        spec = PathFinder.find_spec(name)
        if spec is not None and spec.origin and os.path.realpath(spec.origin) == path:
            out[name] = path
    return out


def _resolves_to(name: str) -> str | None:
    from importlib.machinery import PathFinder

    try:
        spec = PathFinder.find_spec(name)
    except (ImportError, ValueError):
        return None
    return os.path.realpath(spec.origin) if spec is not None and spec.origin else None


# --------------------------------------------------------------------------- checking
@dataclass(frozen=True)
class InputChange:
    """One recorded input that is not as it was."""

    what: str  #: "module", "file", "dir", "env", "secret"
    name: str  #: path or variable name
    recorded: Any
    current: Any
    kind: str = ""  #: repo, ignored, submodule, external, installed, ...

    def describe(self) -> str:
        def show(v: Any) -> str:
            if v is None:
                return "missing" if self.what != "env" else "unset"
            if isinstance(v, dict):
                return "a secret value"
            s = str(v)
            return s[:12] if re.fullmatch(r"[0-9a-f]{64}", s) else repr(s) if self.what == "env" else s
        if self.what == "link":
            return f"symlink {self.name} points elsewhere (recorded {self.recorded}, now {self.current or 'missing'})"
        if self.what == "absent":
            return f"{self.name} exists now (the run looked for it and found none)"
        if self.what == "resolution":
            return f"import {self.name} resolves elsewhere (recorded {self.recorded}, now {self.current or 'not found'})"
        label = {"env": "$", "module": "module ", "file": "", "dir": "dir ", "secret": "secret file "}[self.what]
        return f"{label}{self.name} changed (recorded {show(self.recorded)}, now {show(self.current)})"


def _file_now(path: str, meta: Mapping[str, Any], cache: StatCache | None,
              pending: list[tuple[str, os.stat_result, str]]) -> str | None:
    """Current sha256 of a recorded file; its stat against the recorded one first (no read when unchanged)."""
    try:
        s = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(s.st_mode):
        return None
    if (s.st_size == meta.get("size") and s.st_mtime_ns == meta.get("mtime_ns") and s.st_ino == meta.get("ino")
            and s.st_ctime_ns == meta.get("ctime_ns") and meta.get("hashed_ns", 0) - s.st_mtime_ns > _RACY_NS):
        return str(meta.get("sha256"))
    if s.st_size != meta.get("size"):
        return f"size {s.st_size}"
    if cache is not None:
        return cache.hash(path, s, pending)
    return _sha256_file(path)


def check_inputs(manifest: Mapping[str, Any], *, kinds: Sequence[str] | None = None,
                 environ: Mapping[str, str] | None = None, cache: StatCache | None = None,
                 first_only: bool = False) -> list[InputChange]:
    """The recorded inputs (of ``kinds``; None: all) that differ now.  Cheap when stats are unchanged."""
    environ = os.environ if environ is None else environ
    out: list[InputChange] = []
    pending: list[tuple[str, os.stat_result, str]] = []
    cache = cache if cache is not None else StatCache()

    def want(meta: Mapping[str, Any]) -> bool:
        return kinds is None or meta.get("kind") in kinds

    for what, section in (("module", "modules"), ("file", "files")):
        for path, meta in (manifest.get(section) or {}).items():
            if not want(meta):
                continue
            now = _file_now(path, meta, cache, pending)
            if now != meta.get("sha256"):
                out.append(InputChange(what, path, meta.get("sha256"), now, meta.get("kind", "")))
                if first_only:
                    return out
    for path, meta in (manifest.get("dirs") or {}).items():
        if not want(meta):
            continue
        try:
            now_entries: str | None = _dir_entries(path)[0]
        except OSError:
            now_entries = None
        if now_entries != meta.get("entries"):
            out.append(InputChange("dir", path, f"{meta.get('count')} entries",
                                   None if now_entries is None else f"{len(os.listdir(path))} entries",
                                   meta.get("kind", "")))
    if kinds is None or "env" in kinds:
        for name, recorded in (manifest.get("env") or {}).items():
            current = environ.get(name)
            if not env_matches(recorded, current):
                out.append(InputChange("env", name, recorded, env_value_record(name, current)))
    if kinds is None:  # where things are found (a rerun builds its own paths)
        for link, target in (manifest.get("links") or {}).items():
            now_target = _link_target(link)
            if now_target != target:
                out.append(InputChange("link", link, target, now_target))
        for path in manifest.get("absent") or []:
            if os.path.lexists(path):
                out.append(InputChange("absent", path, "absent", "present"))
        for name, path in (manifest.get("resolution") or {}).items():
            now_path = _resolves_to(name)
            if now_path != path:
                out.append(InputChange("resolution", name, path, now_path))
    if kinds is None or "secret" in kinds:
        for path, meta in (manifest.get("secrets") or {}).items():
            try:
                with open(path, "rb") as f:
                    now_h: str | None = secret_digest(f.read())
            except OSError:
                now_h = None
            if now_h != meta.get("hmac"):
                out.append(InputChange("secret", path, {"hmac": 1}, None if now_h is None else {"hmac": 1},
                                       meta.get("kind", "")))
    cache.put(pending)
    return out


# --------------------------------------------------------------------------- the archive of ignored inputs
def write_archive(path: Path, inputs: Inputs, root: Path | None, max_mb: float | None) -> None:
    """Archive the code repo's git-ignored inputs (modules first, then data, smallest first) up to ``max_mb``.

    Members are named relative to ``root``; secrets never enter (they are in ``inputs.secrets``, not
    ``files``).  What was archived is listed in ``inputs.archived``; nothing to archive writes no file.
    """
    import gzip
    import tarfile

    from bootstrap_repro.fileio import atomic_write

    if root is None:
        return
    root_s = os.path.realpath(root).rstrip("/") + "/"
    budget = None if max_mb is None else float(max_mb) * 1024 * 1024
    chosen: list[str] = []
    total = 0
    for section in (inputs.modules, inputs.files):
        for p, meta in sorted(section.items(), key=lambda kv: kv[1].get("size", 0)):
            if meta.get("kind") != "ignored" or not p.startswith(root_s):
                continue
            if budget is not None and total + meta.get("size", 0) > budget:
                continue
            chosen.append(p)
            total += meta.get("size", 0)
    if not chosen:
        return

    def write(f: Any) -> None:
        with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=6, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for p in chosen:
                info = tar.gettarinfo(p, arcname=p[len(root_s):])
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                with open(p, "rb") as src:
                    tar.addfile(info, src)

    atomic_write(path, write, fsync_dir=False)
    inputs.archived = chosen
