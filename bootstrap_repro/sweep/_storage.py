"""Where a study lives, and the lock every process of the study shares.

* :class:`FileStudyStorage` (``sweep.storage: null``): Optuna's journal storage in
  ``<sweep.dir>/study.journal``. It is one append-only file with its own file lock, so the
  driver and its trial processes (and other drivers on the same file system) share it safely;
  SQLite would need the same locking and is slower to write from many processes.
  ``optuna-dashboard <sweep.dir>/study.journal`` reads it.
* :class:`PostgresStudyStorage` (``postgresql://...``): Optuna's RDB storage with heartbeats,
  for workers on several machines.

The lock (a ``flock`` beside the journal, or a PostgreSQL advisory lock) is held while a
driver counts the study's trials and asks for a new one, so that all the processes of a
study together start exactly ``n_trials``.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import hashlib
import json
import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootstrap_repro.errors import PluginError
from bootstrap_repro.sweep._errors import StorageError

if TYPE_CHECKING:
    import optuna

__all__ = [
    "StudyStorage", "FileStudyStorage", "PostgresStudyStorage", "storage_for", "open_trial_storage",
    "JOURNAL_NAME", "check_journal", "HEARTBEAT_INTERVAL_S", "GRACE_PERIOD_S", "quiet_optuna", "url_without_password",
]

JOURNAL_NAME = "study.journal"
LOCK_NAME = ".sweep.lock"
#: A driver records a heartbeat for each of its running trials this often (RDB storage) ...
HEARTBEAT_INTERVAL_S = 10
#: ... and a running trial without one for this long is failed and retried by another driver.
GRACE_PERIOD_S = 60


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's experimental-feature warnings (heartbeats) for the block."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield


class StudyStorage(abc.ABC):
    """A study's storage: opened by the driver, reopened by each trial process from :meth:`trial_info`."""

    #: Whether running trials are kept alive by heartbeats (and stale ones detected by them).
    heartbeat = False

    @abc.abstractmethod
    def check(self) -> None:
        """Raise :class:`StorageError` when the storage cannot be used; creates nothing."""

    @abc.abstractmethod
    def open(self) -> optuna.storages.BaseStorage:
        """The Optuna storage (created on first use)."""

    @abc.abstractmethod
    def lock(self) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock shared by every process of the study."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the study is, without secrets (for messages and ``sweep.json``)."""

    @abc.abstractmethod
    def trial_info(self) -> dict[str, str]:
        """What a trial process needs to open the storage (see :func:`open_trial_storage`)."""

    def exists(self) -> bool:
        """Whether the storage may hold studies already (False: nothing to resume)."""
        return True

    def close(self) -> None:
        """Release connections."""


class FileStudyStorage(StudyStorage):
    """Optuna's journal file ``<sweep_dir>/study.journal``."""

    def __init__(self, sweep_dir: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self.dir = Path(sweep_dir)
        self.path = self.dir / JOURNAL_NAME
        self.read_only = read_only  #: a reader (the report) leaves a cut-short last line alone
        self._storage: optuna.storages.BaseStorage | None = None

    def check(self) -> None:
        if self.dir.exists() and not self.dir.is_dir():
            raise StorageError(f"sweep.dir: {self.dir} exists and is not a directory; choose another sweep.dir")

    def exists(self) -> bool:
        return self.path.is_file()

    def open(self) -> optuna.storages.BaseStorage:
        if self._storage is None:
            if self.path.is_file() and check_journal(self.path) and not self.read_only:  # damaged: raised
                self._cut_incomplete_tail()
            self.dir.mkdir(parents=True, exist_ok=True)
            self._storage = _journal(str(self.path))
        return self._storage

    def _cut_incomplete_tail(self) -> None:
        """Drop a last line cut short by a killed writer, under Optuna's own append lock.

        Optuna skips such a line when it reads, but its next append would land on it and make the
        journal unreadable; the journal is append-only, so the cut loses nothing that was written.
        """
        from optuna.storages.journal import JournalFileSymlinkLock

        lock = JournalFileSymlinkLock(str(self.path))
        lock.acquire()
        try:
            with open(self.path, "rb+") as f:
                raw = f.read()
                keep = raw.rfind(b"\n") + 1
                if keep < len(raw):
                    f.truncate(keep)
                    os.fsync(f.fileno())
                    print(f"warning: {self.path}: its last line was incomplete (a write cut short, "
                          f"{len(raw) - keep} bytes); removed before the study goes on", file=sys.stderr)
        finally:
            lock.release()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # one open file description each: threads exclude each other too
            yield
        finally:
            os.close(fd)

    def describe(self) -> str:
        return os.path.abspath(self.path)

    def trial_info(self) -> dict[str, str]:
        return {"journal": str(self.path.resolve())}


def _cut_hint(path: Path, line: int) -> str:
    if line <= 1:
        return "restore it from a backup"
    return (f"restore it from a backup, or keep the study as it was before that line: "
            f"head -n {line - 1} {path} > {path}.fixed && mv {path}.fixed {path}")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _trial_problem(t: Any) -> str | None:
    """What is wrong with a replayed trial (values, intermediate values, params), None if nothing."""
    if t.values is not None and (not isinstance(t.values, list) or not all(_number(v) for v in t.values)):
        return f"its values {t.values!r} are not numbers"
    for step, v in t.intermediate_values.items():
        if not isinstance(step, int) or isinstance(step, bool) or not _number(v):
            return f"its intermediate value {step!r}: {v!r} is not an epoch and a number"
    for name, dist in t.distributions.items():
        try:
            ok = dist._contains(dist.to_internal_repr(t.params.get(name)))
        except Exception:  # noqa: BLE001 - any failure: a value the distribution cannot hold
            ok = False
        if not ok:
            return f"its param {name}={t.params.get(name)!r} is outside its distribution"
    return None


def check_journal(path: str | os.PathLike[str]) -> str | None:
    """Check that Optuna can replay the journal ``path``; raise a one-line :class:`StorageError` naming the line.

    Every complete line must be a JSON journal entry that Optuna replays, and leave its trial
    with numeric values and params inside their distributions.  A last line without its newline
    (a write cut short) is what Optuna skips: it is returned as a warning, the study is the one
    of the lines before it.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise StorageError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions") from None
    try:
        from optuna.storages.journal._storage import (
            JournalOperation,
            JournalStorageReplayResult,
        )
    except ImportError:  # another Optuna layout: Optuna's own errors, then
        return None
    *lines, tail = raw.split(b"\n")
    replay = JournalStorageReplayResult("bootstrap-repro-check-")  # a worker id no entry has
    ops = {int(op) for op in JournalOperation}
    with quiet_optuna():
        for n, line in enumerate(lines, 1):
            if not line.strip():
                problem = "an empty line"
            else:
                try:
                    log = json.loads(line.decode("utf-8"))
                    problem = None if isinstance(log, dict) and log.get("op_code") in ops and \
                        not isinstance(log.get("op_code"), bool) else "not an object with a known op_code"
                except UnicodeDecodeError:
                    problem = "not UTF-8 text"
                except RecursionError:
                    problem = "nested too deeply"
                except ValueError as exc:
                    problem = f"not JSON: {_first_line(exc)}"
            if problem is None:
                try:
                    replay.apply_logs([log])
                except Exception as exc:  # noqa: BLE001 - Optuna asserts, KeyErrors, TypeErrors on a bad entry
                    detail = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
                    problem = f"Optuna cannot replay it: {type(exc).__name__}" + (f": {detail}" if detail else "")
            trials = getattr(replay, "_trials", None)  # (Optuna's own; another layout: values unchecked)
            if problem is None and isinstance(trials, dict):
                trial_id = log.get("trial_id")
                if log["op_code"] == JournalOperation.CREATE_TRIAL:
                    trial_id = len(trials) - 1
                trial = trials.get(trial_id) if isinstance(trial_id, int) else None
                problem = _trial_problem(trial) if trial is not None else None
                if problem is not None:
                    problem = f"trial {trial.number}: {problem}"
            if problem is not None:
                raise StorageError(f"{path}: line {n} is damaged ({problem}); {_cut_hint(path, n)}")
    if tail and lines:  # (no complete line: no study, which the caller says)
        return (f"{path}: its last line is incomplete (a write was cut short); the report shows the study "
                f"as of the {len(lines)} complete lines")
    return None


def _journal(path: str) -> optuna.storages.BaseStorage:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(path))


def _masked(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url.split("@")[-1]


def url_without_password(url: str) -> str:
    """``postgresql://user:pw@host/db`` → ``postgresql://user@host/db`` (libpq then reads PGPASSWORD or ~/.pgpass)."""
    from sqlalchemy.engine import URL, make_url

    u = make_url(url)
    return URL.create(u.drivername, u.username, None, u.host, u.port, u.database, u.query).render_as_string(
        hide_password=False)


def _with_driver(url: str) -> str:
    """``postgresql://`` with the installed driver spelled out (SQLAlchemy 2.1 defaults to psycopg 3)."""
    import importlib.util

    if not url.startswith("postgresql://"):
        return url
    for module, dialect in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{dialect}://" + url[len("postgresql://"):]
    return url


class PostgresStudyStorage(StudyStorage):
    """Optuna's RDB storage on PostgreSQL, with heartbeats and an advisory lock per study."""

    heartbeat = True

    def __init__(self, url: str, study_name: str) -> None:
        self.given_url = url
        self.url = _with_driver(url)
        self.study_name = study_name
        self._engine: Any = None
        self._storage: optuna.storages.BaseStorage | None = None
        digest = hashlib.sha256(f"bootstrap-repro-sweep:{study_name}".encode()).digest()
        self._lock_key = int.from_bytes(digest[:8], "big", signed=True)

    def _lock_engine(self) -> Any:
        if self._engine is None:
            import sqlalchemy
            from sqlalchemy.pool import NullPool

            try:
                self._engine = sqlalchemy.create_engine(self.url, poolclass=NullPool,
                                                        connect_args={"connect_timeout": 10})
            except ModuleNotFoundError as exc:
                raise PluginError(f"sweep.storage: {self.describe()} needs {exc.name}; "
                                  f"pip install 'bootstrap-repro[postgres]'") from None
            except (sqlalchemy.exc.ArgumentError, ValueError) as exc:
                raise StorageError(f"sweep.storage: bad URL {self.describe()} ({_first_line(exc)})") from None
        return self._engine

    def check(self) -> None:
        import sqlalchemy

        try:
            with self._lock_engine().connect() as conn:
                conn.execute(sqlalchemy.text("SELECT 1"))
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise StorageError(f"sweep.storage: cannot connect to {self.describe()} "
                               f"({_first_line(getattr(exc, 'orig', None) or exc)}); "
                               f"check the URL and that the server is running") from None

    def open(self) -> optuna.storages.BaseStorage:
        if self._storage is None:
            from optuna.storages import RDBStorage

            with self.lock(), quiet_optuna():  # two drivers creating the tables at once would collide
                self._storage = RDBStorage(self.url, engine_kwargs={"pool_pre_ping": True},
                                           heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=GRACE_PERIOD_S)
        return self._storage

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        import sqlalchemy

        conn = self._lock_engine().connect()
        try:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self._lock_key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self._lock_key})
        finally:
            conn.close()

    def describe(self) -> str:
        return _masked(self.given_url)

    def trial_info(self) -> dict[str, str]:
        return {"url": self.url}

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        if self._storage is not None:
            self._storage.remove_session()  # type: ignore[attr-defined]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def storage_for(url: str | None, sweep_dir: str | os.PathLike[str], study_name: str, *,
                read_only: bool = False) -> StudyStorage:
    """The storage of ``sweep.storage`` (``None``: the journal file in ``sweep_dir``)."""
    if url is None:
        return FileStudyStorage(sweep_dir, read_only=read_only)
    return PostgresStudyStorage(url, study_name)


def open_trial_storage(info: Mapping[str, str]) -> optuna.storages.BaseStorage:
    """The storage from a trial process (no heartbeat: the driver keeps its trials alive)."""
    if "journal" in info:
        return _journal(info["journal"])
    from optuna.storages import RDBStorage

    return RDBStorage(info["url"], skip_compatibility_check=True, skip_table_creation=True)
