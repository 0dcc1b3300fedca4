"""``<exp.dir>/repro/``: the record of an experiment, written when a run starts and updated when it ends.

Files: ``record.json`` (this module), ``code.diff`` and ``untracked.tar.gz``
(:mod:`._snapshot`), ``packages.txt`` (:mod:`._env`).  Every file is written
atomically; ``record.json`` last, so a record never names a file that is not there.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import sys

import yaml
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootstrap_repro.errors import OptionsError
from bootstrap_repro.fileio import atomic_write_json, atomic_write_text
from bootstrap_repro.record._env import (
    PACKAGES_FILE,
    cuda_devices,
    current_runtime,
    environment,
    installed_packages,
    packages_text,
    torch_facts,
)
from bootstrap_repro.record._errors import RecordError, RecordNotFoundError
from bootstrap_repro.record._git import sanitize_url
from bootstrap_repro.record._inputs import INPUTS_ARCHIVE, INPUTS_FILE, Inputs, env_value_record, write_archive
from bootstrap_repro.record._key import cache_key
from bootstrap_repro.record._snapshot import CodeSnapshot, snapshot_code

__all__ = [
    "SCHEMA_VERSION",
    "REPRO_DIR",
    "RECORD_FILE",
    "STATUSES",
    "Snapshot",
    "take_snapshot",
    "RunRecord",
    "read_record",
    "record_path",
    "read_inputs",
    "merged_inputs",
    "inputs_problem",
    "check_record",
    "SEGMENTS_DIR",
]

#: Version of the ``record.json`` layout; readers refuse newer ones.
SCHEMA_VERSION = 1
REPRO_DIR = "repro"
RECORD_FILE = "record.json"
#: ``repro/segments/<n>/``: the options and the inputs of the n-th training segment (a start, then each resume).
SEGMENTS_DIR = "segments"
#: Set on a replayed segment that stopped early (killed or interrupted): stop once this epoch is saved.
STOP_AFTER_EPOCH_ENV = "BOOTSTRAP_REPRO_STOP_AFTER_EPOCH"
STATUSES = ("RUNNING", "COMPLETED", "FAILED", "INTERRUPTED", "STOPPED")
DEFAULT_MAX_UNTRACKED_MB = 50


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def record_path(exp_dir: str | os.PathLike[str]) -> Path:
    """``<exp_dir>/repro/record.json``."""
    return Path(exp_dir) / REPRO_DIR / RECORD_FILE


@dataclass
class Snapshot:
    """Code, environment and cache key of a run, taken before anything is built or written."""

    code: CodeSnapshot
    packages: list[tuple[str, str]]
    environment: dict[str, Any]
    runtime: dict[str, Any]
    key: str
    options_tree: dict[str, Any] = field(default_factory=dict)

    def write(self, directory: Path) -> None:
        """Write ``code.diff``, ``untracked.tar.gz`` and ``packages.txt`` into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        self.code.write(directory)
        atomic_write_text(directory / PACKAGES_FILE, packages_text(self.packages), fsync_dir=False)

    def refresh_torch(self) -> None:
        """Add the facts only a loaded torch knows (cuDNN, CUDA device names) to the environment."""
        facts = torch_facts()
        if facts:
            self.environment["torch"] = facts
        self.environment["cuda_devices"] = cuda_devices()


def _max_untracked_mb(options: Any) -> float | None:
    value = options.get("exp.max_untracked_mb", DEFAULT_MAX_UNTRACKED_MB)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise OptionsError(f"exp.max_untracked_mb: expected a number of MB >= 0 (or null: no bound), got {value!r}")
    return float(value)


def take_snapshot(options: Any, *, exp_dir: Path | None = None, runtime: dict[str, Any] | None = None) -> Snapshot:
    """Snapshot the code and the environment of a run of ``options`` and compute its cache key.

    Imports no torch and writes nothing; raises a :class:`~bootstrap_repro.errors.ReproError`
    for bad input (untracked files over ``exp.max_untracked_mb``, a broken repo).
    """
    code = snapshot_code(options, exp_dir=exp_dir, max_untracked_mb=_max_untracked_mb(options))
    packages = installed_packages()
    runtime = dict(runtime or current_runtime())
    env = environment(packages, runtime)
    env_keys = _env_keys(options)
    env["env_keys"] = sorted(env_keys)
    key = cache_key(options, code.fingerprint(), env["fingerprint"],
                    {k: env_value_record(k, os.environ.get(k)) for k in env_keys})
    tree = options.as_dict() if hasattr(options, "as_dict") else dict(options)
    return Snapshot(code, packages, env, runtime, key, tree)


def _env_keys(options: Any) -> list[str]:
    value = options.get("exp.env_keys") or []
    if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
        raise OptionsError(f"exp.env_keys: expected a list of environment variable names like [MY_SCALE], got {value!r}")
    return list(value)


def read_record(exp_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``<exp_dir>/repro/record.json``."""
    exp_dir = Path(exp_dir)
    path = record_path(exp_dir)
    if not exp_dir.is_dir():
        raise RecordNotFoundError(f"{exp_dir}: no such experiment dir; pass the exp.dir of a run")
    if not path.is_file():
        raise RecordNotFoundError(
            f"{exp_dir}: no {REPRO_DIR}/{RECORD_FILE}; only a dir made by `bootstrap-repro run` has a record"
        )
    data = _load_json(path)
    if not isinstance(data, dict):
        raise RecordError(f"{path}: not a JSON object; the record is damaged (was it edited?)")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise RecordError(f"{path}: no integer schema_version; the record is damaged")
    if version > SCHEMA_VERSION:
        raise RecordError(
            f"{path}: schema_version {version} is newer than this bootstrap-repro reads ({SCHEMA_VERSION}); "
            f"upgrade bootstrap-repro"
        )
    check_record(data, path)
    return data


def _load_json(path: Path) -> Any:
    """A record file's JSON; unreadable, invalid UTF-8, invalid JSON or absurdly nested: a RecordError."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecordError(f"{path}: unreadable ({_one_line(exc)}); the record is damaged") from None
    except RecursionError:
        raise RecordError(f"{path}: unreadable (nested too deeply); the record is damaged") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if "integer string conversion" in text:  # Python's guard against numbers of thousands of digits
        return "a number of more than 4300 digits"
    return text if len(text) <= 200 else text[:197] + "..."


# --------------------------------------------------------------------------- the shape of record.json
#: Largest integer a record holds (epochs, indexes): beyond it a number is garbage, not a count.
_MAX_COUNT = 2**53


class _Damaged(Exception):
    def __init__(self, field: str, expected: str) -> None:
        super().__init__(field, expected)
        self.field, self.expected = field, expected


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _MAX_COUNT


def _is_path(v: Any) -> bool:
    return isinstance(v, str) and bool(v) and "\0" not in v


def _is_rel(v: Any) -> bool:
    return _is_path(v) and not os.path.isabs(v) and ".." not in Path(v).parts


_KINDS: dict[str, tuple[Any, str]] = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "path": (_is_path, "a non-empty path without NUL bytes"),
    "rel": (_is_rel, "a relative path inside the dir (no '..')"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "count": (_is_count, "an integer >= 0"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "status": (lambda v: v in STATUSES, f"one of {', '.join(STATUSES)}"),
    "mode": (lambda v: v in ("train", "eval"), "'train' or 'eval'"),
    "commit": (lambda v: isinstance(v, str) and bool(re.fullmatch(r"[0-9a-f]{7,64}", v)),
               "a hexadecimal commit id"),
}


def _field(node: dict[str, Any], key: str, where: str, kind: str, *, required: bool = False,
           nullable: bool = False) -> Any:
    """``node[key]`` checked against ``kind`` (see :data:`_KINDS`); raise :class:`_Damaged` naming the field."""
    name = f"{where}.{key}" if where else key
    if key not in node:
        if required:
            raise _Damaged(name, f"present ({_KINDS[kind][1]})")
        return None
    value = node[key]
    test, expected = _KINDS[kind]
    if value is None and nullable:
        return None
    if not test(value):
        raise _Damaged(name, expected + (" or null" if nullable else ""))
    return value


def _check_code(code: dict[str, Any], where: str) -> None:
    git = _field(code, "git", where, "bool", required=True)
    if git:
        _field(code, "root", where, "path", required=True)
        _field(code, "commit", where, "commit", required=True, nullable=True)
        _field(code, "remote", where, "str", nullable=True)
        diff = _field(code, "diff", where, "dict", required=True)
        _field(diff, "sha256", f"{where}.diff", "str", nullable=True)
        for i, sub in enumerate(_field(code, "submodules", where, "list") or []):
            if not isinstance(sub, dict):
                raise _Damaged(f"{where}.submodules[{i}]", "an object")
            _field(sub, "path", f"{where}.submodules[{i}]", "rel", required=True)
            _field(sub, "commit", f"{where}.submodules[{i}]", "commit", required=True)  # checked out: a commit
            _field(sub, "remote", f"{where}.submodules[{i}]", "str", nullable=True)
    for i, plug in enumerate(_field(code, "plugins", where, "list") or []):
        at = f"{where}.plugins[{i}]"
        if not isinstance(plug, dict):
            raise _Damaged(at, "an object")
        _field(plug, "key", at, "str", required=True)
        _field(plug, "module", at, "str", required=True)
        _field(plug, "in_repo", at, "bool")
        for key in ("file", "root"):  # a plugin's sys.path root may be above the repo: absolute even in_repo
            _field(plug, key, at, "path", nullable=True)
        _field(plug, "sha256", at, "str", nullable=True)
    cwd_in_repo = _field(code, "cwd_in_repo", where, "bool")
    _field(code, "cwd", where, "rel" if git and cwd_in_repo else "path", nullable=True)
    fw_in_repo = _field(code, "framework_in_repo", where, "bool")
    _field(code, "framework_root", where, "rel" if git and fw_in_repo else "path", nullable=True)
    _field(code, "fingerprint", where, "str", required=True)


def _check_record_fields(data: dict[str, Any]) -> None:
    _field(data, "schema_version", "", "count", required=True)
    if data["schema_version"] < 1:
        raise _Damaged("schema_version", "an integer >= 1")
    _field(data, "status", "", "status", required=True)
    _field(data, "mode", "", "mode")
    _field(data, "cache_key", "", "str", required=True)
    _field(data, "cache_hit_of", "", "dict", nullable=True)
    _field(data, "started_from_checkpoint", "", "str", nullable=True)
    for key in ("started", "ended", "error", "exp_dir"):
        _field(data, key, "", "str", nullable=True)
    _field(data, "command", "", "dict", nullable=True)
    _check_code(_field(data, "code", "", "dict", required=True), "code")
    env = _field(data, "environment", "", "dict", required=True)
    _field(env, "fingerprint", "environment", "str")
    for name, value in (_field(env, "env_vars", "environment", "dict", nullable=True) or {}).items():
        if not isinstance(value, str):
            raise _Damaged(f"environment.env_vars.{name}", "a string")
    runtime = _field(data, "runtime", "", "dict")
    if runtime is not None:
        _field(runtime, "kind", "runtime", "str", required=True)
        image = _field(runtime, "image", "runtime", "dict", nullable=True)
        if image is not None:
            _field(image, "id", "runtime.image", "str", nullable=True)
    for i, session in enumerate(_field(data, "resumes", "", "list") or []):
        at = f"resumes[{i}]"
        if not isinstance(session, dict):
            raise _Damaged(at, "an object")
        _field(session, "mode", at, "mode")
        _field(session, "status", at, "status")
        _field(session, "cache_key", at, "str", nullable=True)
        _field(session, "files", at, "rel", nullable=True)
        code = _field(session, "code", at, "dict", nullable=True)
        if code is not None:
            _check_code(code, f"{at}.code")
    for i, seg in enumerate(_field(data, "segments", "", "list") or []):
        at = f"segments[{i}]"
        if not isinstance(seg, dict):
            raise _Damaged(at, "an object")
        if _field(seg, "index", at, "count", required=True) != i:
            raise _Damaged(f"{at}.index", f"{i} (its place in the list)")
        _field(seg, "code_dir", at, "rel", required=True)
        _field(seg, "options", at, "rel", required=True)
        _field(seg, "resumed_from", at, "str", nullable=True)
        _field(seg, "overrides", at, "dict", nullable=True)
        _field(seg, "cache_key", at, "str", nullable=True)
        _field(seg, "start_epoch", at, "count", nullable=True)
        _field(seg, "end_epoch", at, "count", nullable=True)
        _field(seg, "status", at, "status")
        inputs = _field(seg, "inputs", at, "dict", nullable=True)
        if inputs is not None:
            _field(inputs, "file", f"{at}.inputs", "rel", nullable=True)
            for j, item in enumerate(_field(inputs, "unfingerprintable", f"{at}.inputs", "list") or []):
                if not isinstance(item, str):
                    raise _Damaged(f"{at}.inputs.unfingerprintable[{j}]", "a string")


def check_record(data: Any, path: str | os.PathLike[str]) -> None:
    """Check the fields of a ``record.json`` that its readers use (types, paths inside the dir, counts).

    Raises a one-line :class:`RecordError` naming the file and the first bad field.  Unknown
    fields are allowed (a newer writer may add some); informational ones (``seed``, ``pid``,
    most of ``environment``) are not checked.
    """
    if not isinstance(data, dict):
        raise RecordError(f"{path}: not a JSON object; the record is damaged (was it edited?)")
    try:
        _check_record_fields(data)
    except _Damaged as exc:
        raise RecordError(f"{path}: field {exc.field!r} must be {exc.expected}; "
                          f"the record is damaged (was it edited?)") from None


def _error_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    lines = str(error).strip().splitlines()
    # a URL with credentials in an error (a storage URL, a download) must not reach the record
    return sanitize_url(f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": "))


class RunRecord:
    """The record of one experiment dir; :meth:`begin` writes it, :meth:`end` closes the session."""

    def __init__(self, exp_dir: Path, data: dict[str, Any], session: dict[str, Any] | None = None) -> None:
        self.exp_dir = Path(exp_dir)
        self.data = data
        #: The resume entry this process appended (None for the first session).
        self.session = session
        #: The training segment this process records (None: an eval session or a cache hit).
        self.segment: dict[str, Any] | None = None
        #: ``{file: manifest}`` of the inputs this process wrote (not read back from disk).
        self._written_inputs: dict[str, dict[str, Any]] = {}

    @property
    def path(self) -> Path:
        return record_path(self.exp_dir)

    def save(self) -> None:
        """Write ``record.json`` atomically."""
        atomic_write_json(self.path, self.data, indent=1)

    @classmethod
    def begin(
        cls,
        exp_dir: Path,
        snapshot: Snapshot,
        *,
        resume: str | None = None,
        mode: str = "train",
        cache_hit_of: dict[str, Any] | None = None,
        overrides: dict[str, Any] | None = None,
        engine: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Write the record of a run that starts now (status RUNNING).

        A resumed run keeps the original record and appends an entry to
        ``resumes``; its code and packages are saved under ``repro/resume-<n>/``
        only when they differ from the original's.  ``engine`` (how the engine runs: device,
        precision...) goes to ``runtime.engine``, ``scheduler`` (a Slurm job's facts) to
        ``scheduler``: in the one write of ``record.json`` that starts the run.
        """
        repro = Path(exp_dir) / REPRO_DIR
        snapshot.refresh_torch()
        command = {"argv": [sanitize_url(a) for a in sys.argv], "cwd": os.getcwd(), "executable": sys.executable}
        code = snapshot.code.to_record()
        if resume is not None and record_path(exp_dir).is_file():
            try:
                data = read_record(exp_dir)
            except RecordError:
                data = None
            if data is not None:
                return cls._resume(Path(exp_dir), data, snapshot, code, command, resume, mode, overrides or {},
                                   engine, scheduler)
        repro.mkdir(parents=True, exist_ok=True)
        snapshot.write(repro)
        data = {
            "schema_version": SCHEMA_VERSION,
            "status": "RUNNING",
            "mode": mode,
            "started": _now(),
            "ended": None,
            "error": None,
            "exp_dir": str(Path(exp_dir).resolve()),
            "command": command,
            "pid": os.getpid(),
            "seed": snapshot.options_tree.get("misc", {}).get("seed"),
            "cache_key": snapshot.key,
            "cache_hit_of": cache_hit_of,
            "started_from_checkpoint": resume,
            "code": code,
            "environment": snapshot.environment,
            "runtime": snapshot.runtime,
            "resumes": [],
            "segments": [],
        }
        rec = cls(Path(exp_dir), data)
        if mode == "train" and cache_hit_of is None:
            rec._add_segment(snapshot, REPRO_DIR, None, overrides or {})
        rec._set_facts(engine, scheduler)
        rec.save()
        return rec

    def _set_facts(self, engine: dict[str, Any] | None, scheduler: dict[str, Any] | None) -> None:
        if engine is not None:
            self.data.setdefault("runtime", {})["engine"] = engine
        if scheduler is not None:  # a Slurm job: where and as which job (the latest one after a requeue)
            self.data["scheduler"] = scheduler

    def _add_segment(self, snapshot: Snapshot, code_dir: str, resume: str | None, overrides: dict[str, Any]) -> None:
        """Start the record of a training segment: its code dir, options, checkpoint and explicit overrides."""
        segments = self.data.setdefault("segments", [])
        n = len(segments)
        rel = f"{SEGMENTS_DIR}/{n}"
        tree = dict(snapshot.options_tree)
        tree["exp"] = {**(tree.get("exp") or {}), "resume": None}
        (self.exp_dir / REPRO_DIR / rel).mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.exp_dir / REPRO_DIR / rel / "options.yaml",
                          yaml.safe_dump(tree, sort_keys=False, default_flow_style=None), fsync_dir=False)
        self.segment = {"index": n, "code_dir": code_dir, "options": f"{rel}/options.yaml", "resumed_from": resume,
                        "overrides": overrides, "cache_key": snapshot.key, "start_epoch": None, "end_epoch": None,
                        "status": "RUNNING", "inputs": None}
        segments.append(self.segment)

    def set_epochs(self, start: int | None = None, end: int | None = None) -> None:
        """Note where the current training segment started and ended (epochs to start from)."""
        if self.segment is not None:
            if start is not None:
                self.segment["start_epoch"] = int(start)
            if end is not None:
                self.segment["end_epoch"] = int(end)

    def set_inputs(self, inputs: Inputs, git_root: Path | None, max_archive_mb: float | None) -> None:
        """Write the segment's ``inputs.json`` (and ``inputs.tar.gz`` of the ignored ones that fit)."""
        if self.segment is None:
            return
        directory = self.exp_dir / REPRO_DIR / SEGMENTS_DIR / str(self.segment["index"])
        directory.mkdir(parents=True, exist_ok=True)
        write_archive(directory / INPUTS_ARCHIVE, inputs, git_root, max_archive_mb)
        manifest = inputs.to_json()
        atomic_write_json(directory / INPUTS_FILE, manifest)  # one line: thousands of entries
        rel = f"{SEGMENTS_DIR}/{self.segment['index']}/{INPUTS_FILE}"
        self.segment["inputs"] = {**inputs.summary(), "file": rel}
        self._written_inputs = {rel: manifest}

    def inputs_manifest(self) -> dict[str, Any] | None:
        """The inputs of every training segment, merged (None if one segment has none recorded).

        The segment this process recorded is taken from memory; earlier ones (before a resume) are read.
        """
        return merged_inputs(self.exp_dir, self.data, known=self._written_inputs)

    @classmethod
    def _resume(cls, exp_dir: Path, data: dict[str, Any], snapshot: Snapshot, code: dict[str, Any],
                command: dict[str, Any], resume: str, mode: str, overrides: dict[str, Any],
                engine: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None) -> RunRecord:
        resumes = data.setdefault("resumes", [])
        session: dict[str, Any] = {
            "mode": mode, "resumed_from": resume, "previous_status": data.get("status"),
            "started": _now(), "ended": None, "status": "RUNNING", "error": None,
            "command": command, "pid": os.getpid(), "cache_key": snapshot.key,
            "code_fingerprint": code["fingerprint"],
            "environment_fingerprint": snapshot.environment["fingerprint"],
            "files": None,
        }
        same_code = code["fingerprint"] == data.get("code", {}).get("fingerprint")
        same_env = snapshot.environment["fingerprint"] == data.get("environment", {}).get("fingerprint")
        if not (same_code and same_env):
            sub = f"{REPRO_DIR}/resume-{len(resumes) + 1}"
            snapshot.write(exp_dir / sub)
            session.update(files=sub, code=code, environment=snapshot.environment)
        resumes.append(session)
        if mode == data.get("mode", "train"):
            data.update(status="RUNNING", ended=None, error=None)
        rec = cls(exp_dir, data, session)
        if mode == "train":
            rec._add_segment(snapshot, session["files"] or REPRO_DIR, resume, overrides)
            session["segment"] = rec.segment["index"] if rec.segment else None
        rec._set_facts(engine, scheduler)
        rec.save()
        return rec

    def end(self, status: str, error: BaseException | None = None) -> None:
        """Close this process's session with ``status`` (one of :data:`STATUSES`)."""
        if status not in STATUSES:
            raise ValueError(f"status: expected one of {', '.join(STATUSES)}, got {status!r}")
        now, text = _now(), _error_text(error)
        if isinstance(self.data.get("scheduler"), dict):
            self.data["scheduler"]["ended"] = now
        if self.segment is not None:
            self.segment["status"] = status
        if self.session is not None:
            self.session.update(status=status, ended=now, error=text)
            if self.session["mode"] != self.data.get("mode", "train"):
                self.save()
                return
        self.data.update(status=status, ended=now, error=text)
        self.save()

    @property
    def cacheable(self) -> bool:
        """Whether the experiment may enter the result cache: COMPLETED, trained here, every session with the same key."""
        d = self.data
        if d.get("status") != "COMPLETED" or d.get("cache_hit_of") or d.get("started_from_checkpoint"):
            return False
        if self.session is not None and self.session["mode"] != d.get("mode", "train"):
            return False
        keys = [d.get("cache_key")] + [s.get("cache_key") for s in d.get("resumes", [])
                                       if s.get("mode") == d.get("mode", "train")]
        if not all(k == keys[0] for k in keys):
            return False
        segments = d.get("segments") or []
        return all(seg.get("inputs") and not seg["inputs"].get("unfingerprintable") for seg in segments)

    @property
    def not_cacheable_reason(self) -> str | None:
        """Why a COMPLETED training run is not stored: its first input that cannot be fingerprinted."""
        for seg in self.data.get("segments") or []:
            bad = (seg.get("inputs") or {}).get("unfingerprintable") or []
            if bad:
                return f"{bad[0]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
        return None

    @property
    def key(self) -> str:
        """The cache key of the session that wrote last."""
        return (self.session or self.data)["cache_key"]


def read_inputs(exp_dir: Path, rel: str) -> dict[str, Any]:
    """One segment's ``inputs.json`` (``rel`` relative to ``repro/``); a missing or damaged one is a RecordError."""
    path = Path(exp_dir) / REPRO_DIR / rel
    if ".." in Path(rel).parts or Path(rel).is_absolute():
        raise RecordError(f"{record_path(exp_dir)}: inputs file {rel!r} is outside {REPRO_DIR}/; the record is damaged")
    data = _load_json(path)
    problem = inputs_problem(data)
    if problem:
        raise RecordError(f"{path}: {problem}; the record is damaged")
    return data


def inputs_problem(data: Any) -> str | None:
    """What is wrong with the shape of an ``inputs.json`` (None: nothing)."""
    if not isinstance(data, dict):
        return "not a JSON object"
    for section in ("modules", "files", "dirs", "secrets"):
        value = data.get(section, {})
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in value.items()):
            return f"{section!r} is not an object of objects"
        if not all(k.startswith("/") and "\0" not in k for k in value):
            return f"{section!r} holds a path that is not absolute or has a NUL byte"
        for path, meta in value.items():
            for key, v in meta.items():
                if key in _INPUT_INTS and (not isinstance(v, int) or isinstance(v, bool)):
                    return f"{section!r}: {path}: {key!r} is not an integer"
                if key in _INPUT_STRS and not isinstance(v, str) and v is not None:
                    return f"{section!r}: {path}: {key!r} is not a string"
    for section in ("env", "links", "resolution"):
        value = data.get(section, {})
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return f"{section!r} is not an object"
    for section in ("absent", "archived", "unfingerprintable"):
        value = data.get(section, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"{section!r} is not a list of strings"
    for name in ("links", "absent"):
        value = data.get(name) or {}
        paths = [*value, *(value.values() if isinstance(value, dict) else [])]
        if not all(isinstance(p, str) and "\0" not in p for p in paths):
            return f"{name!r} holds a path with a NUL byte"
    for name, value in data.get("env", {}).items():
        if not (value is None or isinstance(value, str)
                or isinstance(value, dict) and isinstance(value.get("hmac"), str)):
            return f"'env': {name!r} is not a string, null or a {{\"hmac\": ...}} object"
    if not all(isinstance(v, str) for v in data.get("resolution", {}).values()):
        return "'resolution' is not an object of paths"
    return None


#: Fields of an input's entry that are integers (stat facts, counts) or strings (digests, kinds).
_INPUT_INTS = ("size", "mtime_ns", "ctime_ns", "ino", "hashed_ns", "count")
_INPUT_STRS = ("sha256", "hmac", "entries", "kind", "module")


def merged_inputs(exp_dir: Path, data: dict[str, Any],
                  known: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The inputs of all training segments of a record, later segments over earlier ones; None if any is missing.

    ``known``: ``{file: manifest}`` of segments already in memory (not read again).
    """
    segments = data.get("segments") or []
    if not segments:
        return None
    merged: dict[str, Any] = {"modules": {}, "files": {}, "dirs": {}, "env": {}, "secrets": {}, "links": {},
                              "resolution": {}, "absent": [], "unfingerprintable": []}
    for seg in segments:
        info = seg.get("inputs")
        if not info or not info.get("file"):
            return None
        one = (known or {}).get(info["file"]) or read_inputs(exp_dir, info["file"])
        for section in ("modules", "files", "dirs", "env", "secrets", "links", "resolution"):
            merged[section].update(one.get(section) or {})
        for section in ("absent", "unfingerprintable"):
            merged[section] += [v for v in one.get(section) or [] if v not in merged[section]]
    return merged
