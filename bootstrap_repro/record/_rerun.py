"""``bootstrap-repro rerun EXP_DIR``: run an experiment again from its record, with the recorded code.

The code is materialised in a throwaway git worktree at the recorded commit
(``git worktree add --detach``; hooks off), ``code.diff`` is applied with
``git apply --index --binary`` and ``untracked.tar.gz`` is extracted, so the
tree is the one the run saw.  The saved ``options.yaml`` then runs as a
subprocess (``python -m bootstrap_repro run``) whose working directory is the
recorded one inside that tree and whose ``PYTHONPATH`` starts with the
recorded ``sys.path`` roots of the ``import:`` modules inside it, so plugins
resolve to the recorded code whatever the repo's HEAD and work tree are now.
The run neither reads nor fills the result cache.  A run made in Docker re-runs
in the recorded image (``--runtime.docker.image <id>``).  The worktree is removed
afterwards, also on errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootstrap_repro.errors import ExperimentExistsError, OptionsError
from bootstrap_repro.options import load_yaml, override_argv
from bootstrap_repro.fileio import atomic_write_json
from bootstrap_repro.record._cache import NO_CACHE_ENV
from bootstrap_repro.record._errors import CommitNotFoundError, PatchError, RecordError, RecordNotFoundError
from bootstrap_repro.record._git import find_repo_root, git_command
from bootstrap_repro.record._lock import LOCK_NAME, exp_dir_lock
from bootstrap_repro.record._env import ENV_ALLOWLIST
from bootstrap_repro.record._inputs import INPUTS_ARCHIVE, check_inputs, env_matches
from bootstrap_repro.record._record import STOP_AFTER_EPOCH_ENV, REPRO_DIR, read_inputs, read_record, record_path
from bootstrap_repro.record._snapshot import (
    CODE_ROOT_ENV,
    DIFF_FILE,
    HOOKS_ENV,
    SUBMODULES_DIR,
    UNTRACKED_FILE,
    _hash_source,
)
from bootstrap_repro.record._verify import (
    OutputComparison,
    compare_outputs,
    environment_differences,
    read_logs_checked,
)

__all__ = ["RerunResult", "rerun", "default_rerun_dir", "materialise_code", "InputsChangedError", "Segment",
           "segments_of", "input_differences", "STOP_AFTER_EPOCH_ENV"]



class InputsChangedError(RecordError):
    """Recorded inputs that a re-run can neither restore nor find unchanged (``--allow-changed`` runs anyway)."""


@dataclass
class RerunResult:
    """What a re-run did; :attr:`exit_code` is the command's exit status."""

    exp_dir: Path  #: the new experiment dir
    returncode: int  #: exit status of the run
    outputs: OutputComparison | None = None  #: with --verify, when the run completed
    env_differences: list[str] = field(default_factory=list)
    input_differences: list[str] = field(default_factory=list)  #: inputs read with other contents
    warnings: list[str] = field(default_factory=list)
    segments: int = 1  #: training segments replayed
    segment: int | None = None  #: the segment of the first divergence (several segments only)

    @property
    def exit_code(self) -> int:
        if self.returncode != 0:
            return self.returncode
        return 1 if self.outputs is not None and self.outputs.divergence is not None else 0


def default_rerun_dir(exp_dir: Path) -> Path:
    """``<exp_dir>-rerun-<n>`` with the smallest ``n >= 1`` that does not exist."""
    base = Path(exp_dir).resolve()
    n = 1
    while base.with_name(f"{base.name}-rerun-{n}").exists():
        n += 1
    return base.with_name(f"{base.name}-rerun-{n}")


def _git_ok(root: Path, *args: str) -> tuple[int, str]:
    status, _, stderr = git_command(root, *args, with_extended_output=True, with_exceptions=False)
    return status, str(stderr or "").strip().splitlines()[0] if str(stderr or "").strip() else ""


def _extract(archive: Path, tree: Path) -> None:
    """Extract the untracked files; no member may land outside ``tree`` (symlinks keep their targets)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                if m.name.startswith("/") or ".." in Path(m.name).parts or not (m.isfile() or m.issym()):
                    raise RecordError(f"{archive}: unexpected member {m.name!r}; the record is damaged")
            if hasattr(tarfile, "tar_filter"):
                tar.extractall(tree, members=members, filter="tar")
            else:  # Python without extraction filters: the names were checked above
                tar.extractall(tree, members=members)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise RecordError(f"{archive}: cannot be extracted ({exc}); the record is damaged") from None


@contextlib.contextmanager
def materialise_code(exp_dir: Path, record: dict[str, Any], repo: Path | None = None,
                     code: dict[str, Any] | None = None, files: Path | None = None) -> Iterator[tuple[Path, list[str]]]:
    """Yield ``(tree, warnings)``: recorded code checked out in a temporary worktree (git records only).

    ``code`` is a ``code`` section (default: the record's) and ``files`` the dir holding its
    ``code.diff``, ``untracked.tar.gz`` and ``submodules/`` (default: ``<exp_dir>/repro``).
    Submodules are checked out at their recorded commits (worktrees of the local submodule
    repos), with their own diffs and untracked files.
    """
    code = record["code"] if code is None else code
    files = Path(exp_dir) / REPRO_DIR if files is None else files
    rpath = record_path(exp_dir)
    root = Path(repo) if repo is not None else Path(code["root"])
    remote = code.get("remote")
    if not root.is_dir() or find_repo_root(root) is None:
        where = f"clone it there (git clone {remote} {root}) or " if remote else ""
        raise CommitNotFoundError(
            f"code repo {root} (recorded in {rpath}) is not a git repository here; {where}pass --repo PATH"
        )
    root = find_repo_root(root) or root
    commit = code.get("commit")
    _need_commit(root, commit, rpath, bool(remote))
    diff, untracked = files / DIFF_FILE, files / UNTRACKED_FILE
    for f in (diff, untracked):
        if not f.is_file():
            raise RecordNotFoundError(f"{f}: missing, the record names it; the experiment dir is incomplete")
    warnings = []
    if hashlib.sha256(diff.read_bytes()).hexdigest() != code.get("diff", {}).get("sha256"):
        warnings.append(f"{diff} differs from the checksum in its record; the re-run uses the file as it is")
    tmp = Path(tempfile.mkdtemp(prefix="bootstrap-repro-rerun-"))
    tree = tmp / "tree"
    added: list[tuple[Path, Path]] = []  # (repo, worktree) to remove
    try:
        if commit:
            git_command(root, "-c", "core.hooksPath=/dev/null", "worktree", "add", "--detach", "-q", str(tree), commit,
                        what="worktree add")
            added.append((root, tree))
        else:  # the run was made before the first commit: the diff holds every tracked file
            tree.mkdir()
            git_command(tree, "init", "-q", what="init")
        _apply(tree, diff, commit)
        _extract(untracked, tree)
        for sub in code.get("submodules") or []:
            _materialise_submodule(root, tree, files, sub, rpath, added)
        yield tree, warnings
    finally:
        for repo_dir, wt in reversed(added):
            _git_ok(repo_dir, "worktree", "remove", "--force", "--force", str(wt))
            _git_ok(repo_dir, "worktree", "prune")
        shutil.rmtree(tmp, ignore_errors=True)


def _need_commit(root: Path, commit: str | None, rpath: Path, has_remote: bool, what: str = "repository") -> None:
    if commit:
        status, _ = _git_ok(root, "cat-file", "-e", f"{commit}^{{commit}}")
        if status != 0:
            raise CommitNotFoundError(
                f"commit {commit} (recorded in {rpath}) is not in the {what} {root}; fetch it "
                f"(git -C {root} fetch {'origin ' + commit if has_remote else '--all'}) and run again"
            )


def _apply(tree: Path, diff: Path, commit: str | None) -> None:
    if diff.stat().st_size:
        status, detail = _git_ok(tree, "apply", "--index", "--binary", "--whitespace=nowarn", str(diff.resolve()))
        if status != 0:
            raise PatchError(
                f"{diff} does not apply to commit {(commit or 'none')[:12]} ({detail or 'git apply failed'}); "
                f"the diff was edited or damaged, so this experiment cannot be re-run exactly"
            )


def _safe_rel(rel: Any, rpath: Path) -> str:
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise RecordError(f"{rpath}: submodule path {rel!r} is not a relative path inside the repo; the record is damaged")
    return rel


def _materialise_submodule(root: Path, tree: Path, files: Path, sub: dict[str, Any], rpath: Path,
                           added: list[tuple[Path, Path]]) -> None:
    """Check a submodule out at its recorded commit inside ``tree`` (from the local submodule repo)."""
    rel = _safe_rel(sub.get("path"), rpath)
    src = root / rel
    if find_repo_root(src) != src.resolve():
        raise CommitNotFoundError(
            f"submodule {rel} (recorded in {rpath}) is not checked out in {root}; "
            f"run `git -C {root} submodule update --init {rel}` and run again"
        )
    _need_commit(src, sub.get("commit"), rpath, bool(sub.get("remote")), what=f"submodule {rel} at")
    target = tree / rel
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    git_command(src, "-c", "core.hooksPath=/dev/null", "worktree", "add", "--detach", "-q", str(target),
                sub["commit"], what="worktree add")
    added.append((src, target))
    sub_files = files / SUBMODULES_DIR / rel
    _apply(target, sub_files / DIFF_FILE, sub.get("commit"))
    _extract(sub_files / UNTRACKED_FILE, target)


def _check_unchanged_plugins(exp_dir: Path, code: dict[str, Any]) -> None:
    for p in code.get("plugins", []):
        if not p.get("file") or not p.get("root"):
            continue
        now = _hash_source(Path(p["file"]), Path(p["root"]), p["module"]) if Path(p["file"]).is_file() else None
        if now != p.get("sha256"):
            raise RecordError(
                f"{record_path(exp_dir)}: recorded outside git, and {p['key']} module {p['module']} "
                f"({p['file']}) changed since; its code cannot be restored, so the run cannot be repeated exactly"
            )


def _child_paths(code: dict[str, Any], tree: Path | None) -> tuple[Path, list[str]]:
    """Working directory and PYTHONPATH head of the re-run."""
    import bootstrap_repro

    roots: list[str] = []
    if tree is not None:
        for p in code.get("plugins", []):
            if p.get("in_repo") and p.get("root"):
                roots.append(str(tree / p["root"]))
        if code.get("framework_in_repo") and code.get("framework_root"):
            roots.append(str(tree / code["framework_root"]))
    else:
        roots += [p["root"] for p in code.get("plugins", []) if p.get("root")]
    if tree is not None and code.get("cwd_in_repo"):
        cwd = tree / code["cwd"]
        cwd.mkdir(parents=True, exist_ok=True)  # a dir holding only ignored files is not in the tree
    elif code.get("cwd") and Path(code["cwd"]).is_dir():
        cwd = Path(code["cwd"])
    else:
        cwd = tree if tree is not None else Path.cwd()
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if tree is not None and code.get("root"):  # entries inside the code repo point into the recorded tree
        prefix = _root_prefix(code)
        rest = [str(tree / os.path.realpath(p)[len(prefix):]) if os.path.realpath(p).startswith(prefix)
                or os.path.realpath(p) + "/" == prefix else p for p in rest]
    fallback = str(Path(bootstrap_repro.__file__).resolve().parents[1])  # this bootstrap-repro, if not installed
    return cwd, list(dict.fromkeys([*roots, *rest, fallback]))


# --------------------------------------------------------------------------- segments
@dataclass
class Segment:
    """One training segment to replay: a start, or a resume (see ``record.json`` ``segments``)."""

    index: int
    options: Path  #: its resolved options file
    code: dict[str, Any]  #: its ``code`` section
    files: Path  #: the dir of its code.diff / untracked.tar.gz
    resumed_from: str | None
    start_epoch: int | None
    stop_after: int | None  #: stop once this epoch's checkpoint is saved (None: run to its end)
    inputs: dict[str, Any] | None  #: its inputs manifest (None: recorded before inputs were discovered)
    inputs_dir: Path | None
    overrides: dict[str, Any] = field(default_factory=dict)  #: the explicit ``--key value`` of a resume


def segments_of(exp_dir: Path, record: dict[str, Any]) -> list[Segment]:
    """The training segments of a record in order (one for a record without ``segments``)."""
    exp_dir = Path(exp_dir)
    rpath = record_path(exp_dir)
    raw = record.get("segments") or []
    if not raw:
        return [Segment(0, exp_dir / "options.yaml", record.get("code") or {}, exp_dir / REPRO_DIR, None, None, None,
                        None, None)]
    sessions = {s.get("files"): s for s in record.get("resumes") or [] if s.get("files")}
    out = []
    for i, seg in enumerate(raw):
        code_dir = seg.get("code_dir") or REPRO_DIR
        if code_dir == REPRO_DIR:
            code = record.get("code") or {}
        elif code_dir in sessions and isinstance(sessions[code_dir].get("code"), dict):
            code = sessions[code_dir]["code"]
        else:
            raise RecordError(f"{rpath}: segment {i} names code in {code_dir!r}, which the record does not hold; "
                              f"the record is damaged")
        for rel in (code_dir, seg.get("options") or ""):
            if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise RecordError(f"{rpath}: segment {i} names {rel!r}, not a path inside the dir; the record is damaged")
        inputs, inputs_dir = None, None
        if seg.get("inputs") and seg["inputs"].get("file"):
            inputs = read_inputs(exp_dir, seg["inputs"]["file"])
            inputs_dir = (exp_dir / REPRO_DIR / seg["inputs"]["file"]).parent
        nxt = raw[i + 1] if i + 1 < len(raw) else None
        stop = seg.get("end_epoch") if seg.get("status") != "COMPLETED" or nxt is not None else None
        if nxt is not None and stop is None:
            if nxt.get("resumed_from") == "last" and nxt.get("start_epoch") is not None:
                stop = nxt["start_epoch"]  # killed: the next segment resumed from its last checkpoint
            else:
                raise RecordError(
                    f"{rpath}: segment {i} ended without a record (killed) and segment {i + 1} resumed from "
                    f"{nxt.get('resumed_from')!r}; where segment {i} stopped is unknown, so it cannot be replayed")
        overrides = seg.get("overrides") if isinstance(seg.get("overrides"), dict) else {}
        out.append(Segment(i, exp_dir / REPRO_DIR / seg["options"], code, exp_dir / code_dir, seg.get("resumed_from"),
                           seg.get("start_epoch"), stop, inputs, inputs_dir, overrides))
    return out


# --------------------------------------------------------------------------- inputs: restore or refuse
_RESTORED_BY_TREE = ("repo", "untracked", "submodule")


def _root_prefix(code: dict[str, Any]) -> str:
    return os.path.realpath(str(code.get("root") or "/nonexistent")).rstrip("/") + "/"


def input_problems(seg: Segment, environ: dict[str, str], in_image: bool = False) -> list[str]:
    """Each recorded input of ``seg`` that the re-run can neither restore nor find as it was (one line each).

    ``in_image``: the run was made in a Docker image that the re-run uses again; its installed
    files are the image's (pinned by its id), not this host's.
    """
    if seg.inputs is None:
        return []
    archived = set(seg.inputs.get("archived") or [])
    out = []
    outside = {k: v for k, v in seg.inputs.items() if k in ("modules", "files", "dirs", "secrets")}
    kinds = ("external", "ignored", "secret") if in_image else ("external", "installed", "ignored", "secret")
    for change in check_inputs(outside, kinds=kinds, environ=environ):
        if change.what in ("module", "file") and change.name in archived:
            continue  # restored from the record's archive
        hint = "never archived (a secret)" if change.what == "secret" else (
            "ignored by git, not archived" if change.kind == "ignored" else f"{change.kind} code or data")
        out.append(f"{change.describe()} [{hint}]")
    for name, recorded in (seg.inputs.get("env") or {}).items():
        if isinstance(recorded, dict) and not env_matches(recorded, environ.get(name)):  # a secret value
            out.append(f"${name} is not the recorded (secret) value; set it as it was for the run")
    prefix = _root_prefix(seg.code)
    for link, target in (seg.inputs.get("links") or {}).items():  # outside the repo: must point where it did
        now = os.path.realpath(link) if os.path.lexists(link) else None
        if not link.startswith(prefix) and now != target:
            out.append(f"symlink {link} points elsewhere (recorded {target}, now {now or 'missing'}) [external]")
    return out


def _in_tree(tree: Path, rel: str, rpath: Path) -> Path:
    """``tree / rel`` for a relative path that stays inside the tree (a crafted record must not write outside)."""
    norm = os.path.normpath(rel)
    if not rel or os.path.isabs(rel) or norm == ".." or norm.startswith("../") or "\0" in rel:
        raise RecordError(f"{rpath}: an input path {rel!r} leads outside the code repo; the record is damaged")
    return tree / norm


def _restore_inputs(seg: Segment, tree: Path, rpath: Path) -> None:
    """Put the ignored inputs of the code repo into ``tree``: from the archive, else links to unchanged originals."""
    if seg.inputs is None or seg.inputs_dir is None:
        return
    archive = seg.inputs_dir / INPUTS_ARCHIVE
    if seg.inputs.get("archived"):
        if not archive.is_file():
            raise RecordNotFoundError(f"{archive}: missing, the record names it; the experiment dir is incomplete")
        _extract(archive, tree)
    prefix = _root_prefix(seg.code)
    archived = set(seg.inputs.get("archived") or [])
    for section in ("modules", "files", "secrets"):
        for p, meta in (seg.inputs.get(section) or {}).items():
            if p in archived or not p.startswith(prefix):
                continue
            if meta.get("kind") != "ignored" and section != "secrets":  # restored by the worktree
                continue
            target = _in_tree(tree, p[len(prefix):], rpath)
            if Path(p).is_file() and (not target.exists() or section == "secrets"):  # unchanged (input_problems)
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists() or target.is_symlink():  # a tracked secret: its content as the run saw it
                    target.unlink()
                target.symlink_to(p)
    for link, target in (seg.inputs.get("links") or {}).items():  # ignored symlinks of the repo, as they were
        if link.startswith(prefix) and not os.path.lexists(_in_tree(tree, link[len(prefix):], rpath)):
            where = _in_tree(tree, link[len(prefix):], rpath)
            where.parent.mkdir(parents=True, exist_ok=True)
            where.symlink_to(_in_tree(tree, target[len(prefix):], rpath) if target.startswith(prefix) else target)
    for p, meta in (seg.inputs.get("dirs") or {}).items():  # a listed dir: its other entries, as links
        if meta.get("kind") != "ignored" or not p.startswith(prefix) or not Path(p).is_dir():
            continue
        target = _in_tree(tree, p[len(prefix):], rpath)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(p)
        elif target.is_dir() and not target.is_symlink():
            for name in os.listdir(p):
                if not (target / name).exists():
                    (target / name).symlink_to(os.path.join(p, name))


def _replay_env(env: dict[str, str], record: dict[str, Any], seg: Segment) -> None:
    """The recorded variables as they were: allowlisted ones, ``exp.env_keys`` and the ones the run read."""
    recorded_vars = ((record.get("environment") or {}).get("env_vars") or {})
    for name in ENV_ALLOWLIST:
        if name in recorded_vars:
            env[name] = str(recorded_vars[name])
        else:
            env.pop(name, None)
    for name, value in ((seg.inputs or {}).get("env") or {}).items():
        if value is None:
            env.pop(name, None)
        elif isinstance(value, str):
            env[name] = value
        # a secret: left as it is (input_problems checked it is the recorded one)


def input_differences(original: Path, new: Path, orig_rec: dict[str, Any], new_rec: dict[str, Any]) -> list[str]:
    """Inputs the re-run read with other contents than the original run (paths in the code repo compared by place)."""
    out = []
    try:
        a_segs, b_segs = segments_of(original, orig_rec), segments_of(new, new_rec)
    except RecordError:
        return out
    for a, b in zip(a_segs, b_segs):
        if a.inputs is None or b.inputs is None:
            continue
        pa, pb = _root_prefix(a.code), _root_prefix(b.code)

        def norm(p: str) -> str:
            for prefix in (pa, pb):
                if p.startswith(prefix):
                    return "<code>/" + p[len(prefix):]
            return p

        for section in ("modules", "files"):
            mb = {norm(p): m for p, m in (b.inputs.get(section) or {}).items()}
            for p, m in (a.inputs.get(section) or {}).items():
                other = mb.get(norm(p))
                if other is not None and other.get("sha256") != m.get("sha256"):
                    out.append(f"segment {a.index}: {p} (sha256 {str(m.get('sha256'))[:12]} then, "
                               f"{str(other.get('sha256'))[:12]} in the re-run)")
        ea, eb = a.inputs.get("env") or {}, b.inputs.get("env") or {}
        for k in sorted(set(ea) & set(eb)):
            if ea[k] != eb[k]:
                out.append(f"segment {a.index}: ${k} ({ea[k]!r} then, {eb[k]!r} in the re-run)")
    return out


def rerun(
    exp_dir: str | os.PathLike[str],
    new_dir: str | os.PathLike[str] | None = None,
    *,
    verify: bool = False,
    ignore: Sequence[str] = (),
    repo: str | os.PathLike[str] | None = None,
    python: str = sys.executable,
    allow_changed: bool = False,
) -> RerunResult:
    """Re-run ``exp_dir`` into ``new_dir`` (default :func:`default_rerun_dir`), segment by segment.

    Every recorded input is restored (code at its commits, submodules, archived ignored
    files, variables) or found unchanged; otherwise an :class:`InputsChangedError` names each
    one, before anything is created (``allow_changed``: run anyway, the differences become
    warnings).  With ``verify``, every logs value and checkpoint tensor is compared.
    The run's output goes to this process's stdout/stderr.
    """
    exp_dir = Path(exp_dir)
    record = read_record(exp_dir)
    if not (exp_dir / "options.yaml").is_file():
        raise RecordNotFoundError(f"{exp_dir}: no options.yaml; the experiment dir is incomplete")
    if verify and not (exp_dir / "logs.json").is_file():
        raise RecordNotFoundError(f"{exp_dir}: no logs.json to verify against; rerun without --verify")
    if verify:  # a damaged logs file is refused now, not after the re-run
        for logs in sorted(exp_dir.glob("logs*.json")):
            read_logs_checked(logs)
    new = Path(new_dir).resolve() if new_dir is not None else default_rerun_dir(exp_dir)
    if new.exists() and (not new.is_dir() or any(p.name != LOCK_NAME for p in new.iterdir())):
        raise ExperimentExistsError(f"--exp.dir: {new} already exists; choose a new --exp.dir")
    segments = segments_of(exp_dir, record)
    for seg in segments:
        if not seg.options.is_file():
            raise RecordNotFoundError(f"{seg.options}: missing, the record names it; the experiment dir is incomplete")
        try:  # a damaged file is refused here, before any run starts (the run checks the options themselves)
            tree = load_yaml(seg.options)
        except OptionsError as exc:
            raise RecordError(f"{exc}; the record is damaged (was it edited?)") from None
        except ValueError as exc:  # what YAML's reader lets through: an int of more than 4300 digits
            raise RecordError(f"{seg.options}: unreadable ({' '.join(str(exc).split())[:80]}); "
                              f"the record is damaged (was it edited?)") from None
        if not tree:
            raise RecordError(f"{seg.options}: holds no options; the record is damaged (was it edited?)")
    warnings: list[str] = []
    in_image = (record.get("runtime") or {}).get("kind") == "docker"
    problems = [f"segment {seg.index}: {line}" if len(segments) > 1 else line
                for seg in segments for line in input_problems(seg, dict(os.environ), in_image)]
    if problems and not allow_changed:
        raise InputsChangedError(
            f"rerun: {len(problems)} input(s) of {exp_dir} are not as recorded: {'; '.join(problems)}; "
            f"restore them, or pass --allow-changed to run anyway and report the differences"
        )
    warnings += [f"input not as recorded, running anyway (--allow-changed): {p}" for p in problems]
    returncode = 0
    for seg in segments:
        returncode = _run_segment(exp_dir, record, seg, new, repo, python, warnings, last=seg is segments[-1])
        if returncode != 0:
            break
    result = RerunResult(new, returncode, warnings=warnings, segments=len(segments))
    if record_path(new).is_file():
        _mark_rerun(new, exp_dir, record)
    if verify and returncode == 0:
        result.outputs = compare_outputs(exp_dir, new, ignore)
        if result.outputs.divergence is not None:
            new_rec = read_record(new)
            result.input_differences = input_differences(exp_dir, new, record, new_rec)
            result.env_differences = environment_differences(record, new_rec, exp_dir, new)
            result.segment = _segment_of(record, result.outputs.divergence)
    return result


def _segment_of(record: dict[str, Any], divergence: str) -> int | None:
    """The training segment whose epochs hold the divergence's epoch (None if not known)."""
    m = re.search(r"\(epoch (\d+)\)", divergence)
    segs = record.get("segments") or []
    if not m or len(segs) < 2:
        return None
    epoch = int(m.group(1))
    for seg in reversed(segs):
        if (seg.get("start_epoch") or 0) <= epoch:
            return int(seg.get("index", 0))
    return 0


def _run_segment(exp_dir: Path, record: dict[str, Any], seg: Segment, new: Path, repo: Any, python: str,
                 warnings: list[str], last: bool) -> int:
    env = dict(os.environ)
    env[NO_CACHE_ENV] = "1"
    env.pop(STOP_AFTER_EPOCH_ENV, None)
    code = seg.code
    with contextlib.ExitStack() as stack:
        tree: Path | None = None
        if code.get("git"):
            tree, notes = stack.enter_context(materialise_code(exp_dir, record, Path(repo) if repo else None,
                                                               code=code, files=seg.files))
            warnings += notes
            _restore_inputs(seg, tree, record_path(exp_dir))
            env[CODE_ROOT_ENV] = str(tree)
        else:
            _check_unchanged_plugins(exp_dir, code)
            env.pop(CODE_ROOT_ENV, None)
            warnings.append(f"{exp_dir} was recorded outside git; re-running with the current (unchanged) plugin files")
        cwd, pythonpath = _child_paths(code, tree)
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
        hooks = [p["module"] for p in code.get("plugins", []) if p.get("key") == f"${HOOKS_ENV}"]
        if hooks:
            env[HOOKS_ENV] = ",".join(hooks)
        else:
            env.pop(HOOKS_ENV, None)
        _replay_env(env, record, seg)
        if seg.stop_after is not None:
            env[STOP_AFTER_EPOCH_ENV] = str(seg.stop_after)
        if seg.index == 0:
            cmd = [python, "-m", "bootstrap_repro", "run", "-o", str(seg.options.resolve()), "--exp.dir", str(new)]
        else:  # as the user resumed: the experiment's options and the recorded explicit overrides
            cmd = [python, "-m", "bootstrap_repro", "run", "-o", str(new / "options.yaml"), "--exp.dir", str(new),
                   "--exp.resume", seg.resumed_from or "last", *override_argv(seg.overrides)]
        image_id = ((record.get("runtime") or {}).get("image") or {}).get("id")
        if (record.get("runtime") or {}).get("kind") == "docker" and image_id:
            cmd += ["--runtime.docker.image", image_id]  # the very same image; refused when it is gone
        return subprocess.run(cmd, cwd=cwd, env=env, check=False).returncode


def _mark_rerun(new: Path, original: Path, record: dict[str, Any]) -> None:
    with exp_dir_lock(new):
        data = read_record(new)
        data["rerun_of"] = {"exp_dir": str(original.resolve()), "cache_key": record.get("cache_key"),
                            "code_fingerprint": (record.get("code") or {}).get("fingerprint")}
        atomic_write_json(record_path(new), data, indent=1)
