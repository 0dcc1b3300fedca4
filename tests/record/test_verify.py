"""``rerun --verify``'s comparison: every value, the earliest divergence, the environment fields that differ."""

from __future__ import annotations

from bootstrap_repro.record import compare_logs, environment_differences

LOGS = {
    "train_batch.loss": [2.0, 1.5, 1.2, 1.0],  # 2 batches per epoch
    "train_epoch.epoch": [0, 1],
    "train_epoch.loss": [1.75, 1.1],
    "eval_epoch.epoch": [0, 1],
    "eval_epoch.acctop1": [50.0, 75.0],
}


def changed(key: str, index: int, value):
    logs = {k: list(v) for k, v in LOGS.items()}
    logs[key][index] = value
    return logs


def test_identical_counts_every_value():
    cmp = compare_logs(LOGS, {k: list(v) for k, v in LOGS.items()})
    assert (cmp.identical, cmp.keys, cmp.divergence) == (12, 5, None)


def test_first_divergence_is_the_earliest_epoch():
    rerun = changed("eval_epoch.acctop1", 1, 80.0)
    rerun["train_batch.loss"][3] = 0.9  # epoch 1, batch 1: same epoch, batch values come first
    rerun["train_epoch.loss"][1] = 1.2
    d = compare_logs(LOGS, rerun).divergence
    assert (d.key, d.index, d.epoch, d.original, d.rerun) == ("train_batch.loss", 3, 1, 1.0, 0.9)
    assert d.describe() == "train_batch.loss[3] (epoch 1): 1.0 (original) vs 0.9 (rerun)"
    d = compare_logs(LOGS, changed("eval_epoch.acctop1", 0, 51.0)).divergence
    assert d.describe() == "eval_epoch.acctop1[0] (epoch 0): 50.0 (original) vs 51.0 (rerun)"


def test_missing_values_keys_and_types():
    short = {k: list(v) for k, v in LOGS.items()}
    short["train_epoch.loss"] = [1.75]
    assert compare_logs(LOGS, short).divergence.describe() == "train_epoch.loss[1] (epoch 1): 1.1 (original) vs missing (rerun)"
    extra = {**LOGS, "train_epoch.new": [1.0, 2.0]}
    assert compare_logs(LOGS, extra).divergence.describe() == "train_epoch.new[0] (epoch 0): missing (original) vs 1.0 (rerun)"
    assert compare_logs(LOGS, changed("train_epoch.epoch", 0, 0.0)).divergence.key == "train_epoch.epoch"  # int vs float
    nan = {"a": [float("nan")]}
    assert compare_logs(nan, {"a": [float("nan")]}).identical == 1


def test_ignore_patterns():
    rerun = changed("train_epoch.loss", 0, 9.9)
    cmp = compare_logs(LOGS, rerun, ignore=["train_epoch.*"])
    assert cmp.divergence is None and cmp.identical == 8


def test_environment_differences(tmp_path):
    def record(python, host, pkg, omp):
        return {"environment": {"python": {"version": python, "implementation": "CPython"}, "host": host,
                                "torch": {"version": "2.13.0", "cuda": None}, "packages": {"sha256": pkg},
                                "framework": {"version": "0.1.0", "sha256": "f"}, "env_vars": omp},
                "runtime": {"kind": "local"}}

    a, b = tmp_path / "a", tmp_path / "b"
    for d, text in ((a, "numpy==1.26.4\ntorch==2.13.0\n"), (b, "numpy==2.0.0\ntorch==2.13.0\nnew==1\n")):
        (d / "repro").mkdir(parents=True)
        (d / "repro" / "packages.txt").write_text(text)
    same = record("3.11.7", "h", "p1", {})
    assert environment_differences(same, same, a, a) == []
    diffs = environment_differences(record("3.11.7", "h", "p1", {"OMP_NUM_THREADS": "1"}),
                                    record("3.12.1", "h2", "p2", {}), a, b)
    assert diffs == ["python.version: 3.11.7 -> 3.12.1", "host: h -> h2", "$OMP_NUM_THREADS: 1 -> None",
                     "packages: new (none) -> 1, numpy 1.26.4 -> 2.0.0"]
