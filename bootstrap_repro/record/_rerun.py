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
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootstrap_repro.errors import ExperimentExistsError
from bootstrap_repro.fileio import atomic_write_json
from bootstrap_repro.logger import read_logs
from bootstrap_repro.record._cache import NO_CACHE_ENV
from bootstrap_repro.record._errors import CommitNotFoundError, PatchError, RecordError, RecordNotFoundError
from bootstrap_repro.record._git import find_repo_root, git_command
from bootstrap_repro.record._lock import LOCK_NAME, exp_dir_lock
from bootstrap_repro.record._record import REPRO_DIR, read_record, record_path
from bootstrap_repro.record._snapshot import CODE_ROOT_ENV, DIFF_FILE, HOOKS_ENV, UNTRACKED_FILE, _hash_source
from bootstrap_repro.record._verify import Comparison, compare_logs, environment_differences

__all__ = ["RerunResult", "rerun", "default_rerun_dir", "materialise_code"]


@dataclass
class RerunResult:
    """What a re-run did; :attr:`exit_code` is the command's exit status."""

    exp_dir: Path  #: the new experiment dir
    returncode: int  #: exit status of the run
    comparison: Comparison | None = None  #: with --verify, when the run completed
    env_differences: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.returncode != 0:
            return self.returncode
        return 1 if self.comparison is not None and self.comparison.divergence is not None else 0


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
def materialise_code(exp_dir: Path, record: dict[str, Any], repo: Path | None = None) -> Iterator[tuple[Path, list[str]]]:
    """Yield ``(tree, warnings)``: the recorded code checked out in a temporary worktree (git records only)."""
    code = record["code"]
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
    if commit:
        status, _ = _git_ok(root, "cat-file", "-e", f"{commit}^{{commit}}")
        if status != 0:
            raise CommitNotFoundError(
                f"commit {commit} (recorded in {rpath}) is not in the repository {root}; fetch it "
                f"(git -C {root} fetch {'origin ' + commit if remote else '--all'}) and run again"
            )
    diff = Path(exp_dir) / REPRO_DIR / DIFF_FILE
    untracked = Path(exp_dir) / REPRO_DIR / UNTRACKED_FILE
    for f in (diff, untracked):
        if not f.is_file():
            raise RecordNotFoundError(f"{f}: missing, the record names it; the experiment dir is incomplete")
    warnings = []
    if hashlib.sha256(diff.read_bytes()).hexdigest() != code.get("diff", {}).get("sha256"):
        warnings.append(f"{diff} differs from the checksum in its record; the re-run uses the file as it is")
    tmp = Path(tempfile.mkdtemp(prefix="bootstrap-repro-rerun-"))
    tree = tmp / "tree"
    added = False
    try:
        if commit:
            git_command(root, "-c", "core.hooksPath=/dev/null", "worktree", "add", "--detach", "-q", str(tree), commit,
                        what="worktree add")
            added = True
        else:  # the run was made before the first commit: the diff holds every tracked file
            tree.mkdir()
            git_command(tree, "init", "-q", what="init")
        if diff.stat().st_size:
            status, detail = _git_ok(tree, "apply", "--index", "--binary", "--whitespace=nowarn", str(diff.resolve()))
            if status != 0:
                raise PatchError(
                    f"{diff} does not apply to commit {(commit or 'none')[:12]} ({detail or 'git apply failed'}); "
                    f"the diff was edited or damaged, so this experiment cannot be re-run exactly"
                )
        _extract(untracked, tree)
        yield tree, warnings
    finally:
        if added:
            _git_ok(root, "worktree", "remove", "--force", "--force", str(tree))
            _git_ok(root, "worktree", "prune")
        shutil.rmtree(tmp, ignore_errors=True)


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
    fallback = str(Path(bootstrap_repro.__file__).resolve().parents[1])  # this bootstrap-repro, if not installed
    return cwd, list(dict.fromkeys([*roots, *rest, fallback]))


def rerun(
    exp_dir: str | os.PathLike[str],
    new_dir: str | os.PathLike[str] | None = None,
    *,
    verify: bool = False,
    ignore: Sequence[str] = (),
    repo: str | os.PathLike[str] | None = None,
    python: str = sys.executable,
) -> RerunResult:
    """Re-run ``exp_dir`` into ``new_dir`` (default :func:`default_rerun_dir`); compare logs when ``verify``.

    Bad input raises a :class:`~bootstrap_repro.errors.ReproError` before anything is created.
    The run's output goes to this process's stdout/stderr.
    """
    exp_dir = Path(exp_dir)
    record = read_record(exp_dir)
    options_file = exp_dir / "options.yaml"
    if not options_file.is_file():
        raise RecordNotFoundError(f"{exp_dir}: no options.yaml; the experiment dir is incomplete")
    if verify and not (exp_dir / "logs.json").is_file():
        raise RecordNotFoundError(f"{exp_dir}: no logs.json to verify against; rerun without --verify")
    new = Path(new_dir).resolve() if new_dir is not None else default_rerun_dir(exp_dir)
    if new.exists() and (not new.is_dir() or any(p.name != LOCK_NAME for p in new.iterdir())):
        raise ExperimentExistsError(f"--exp.dir: {new} already exists; choose a new --exp.dir")
    code = record.get("code") or {}
    warnings: list[str] = []
    env = dict(os.environ)
    env[NO_CACHE_ENV] = "1"
    with contextlib.ExitStack() as stack:
        tree: Path | None = None
        if code.get("git"):
            tree, notes = stack.enter_context(materialise_code(exp_dir, record, Path(repo) if repo else None))
            warnings += notes
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
        cmd = [python, "-m", "bootstrap_repro", "run", "-o", str(options_file.resolve()), "--exp.dir", str(new)]
        image_id = ((record.get("runtime") or {}).get("image") or {}).get("id")
        if (record.get("runtime") or {}).get("kind") == "docker" and image_id:
            cmd += ["--runtime.docker.image", image_id]  # the very same image; refused when it is gone
        returncode = subprocess.run(cmd, cwd=cwd, env=env, check=False).returncode
    result = RerunResult(new, returncode, warnings=warnings)
    if record_path(new).is_file():
        _mark_rerun(new, exp_dir, record)
    if verify and returncode == 0:
        result.comparison = compare_logs(read_logs(exp_dir / "logs.json"), read_logs(new / "logs.json"), ignore)
        if result.comparison.divergence is not None:
            result.env_differences = environment_differences(record, read_record(new), exp_dir, new)
    return result


def _mark_rerun(new: Path, original: Path, record: dict[str, Any]) -> None:
    with exp_dir_lock(new):
        data = read_record(new)
        data["rerun_of"] = {"exp_dir": str(original.resolve()), "cache_key": record.get("cache_key"),
                            "code_fingerprint": (record.get("code") or {}).get("fingerprint")}
        atomic_write_json(record_path(new), data, indent=1)
