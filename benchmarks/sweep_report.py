"""Time to build a sweep's ``view.html`` at 1,000 trials, and to draw it in headless Chromium.

A synthetic study: 1,000 trials over three params (log float, int, categorical), each with 20
epochs of intermediate values; 70% COMPLETE, 20% PRUNED (fewer epochs), 10% FAIL.  Measured:

* ``build_report`` from trials in memory (what the driver does after each trial, minus the read);
* ``rebuild_report`` from a journal file (what ``bootstrap-repro view DIR`` does: replay + build);
* Chromium ``--dump-dom`` of the page (plotly draws the four subplots), when Chromium is installed.

    /tmp/venv/bin/python benchmarks/sweep_report.py [--trials 1000]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402
from optuna.trial import TrialState, create_trial  # noqa: E402

from bootstrap_repro.sweep import JOURNAL_NAME, MARKER, build_report, rebuild_report  # noqa: E402

EPOCHS = 20
PARAMS = {"optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True),
          "model.network.hidden": IntDistribution(16, 256),
          "optimizer.name": CategoricalDistribution(["sgd", "adam"])}
META = {"study": "bench", "objective": "eval_epoch.acctop1", "direction": "maximize", "n_trials": 0,
        "storage": JOURNAL_NAME, "storage_url": None, "params": list(PARAMS)}


def fake_trials(n: int, rng: random.Random) -> list[optuna.trial.FrozenTrial]:
    out = []
    for i in range(n):
        p = {"optimizer.lr": 10 ** rng.uniform(-4, -1), "model.network.hidden": rng.randint(16, 256),
             "optimizer.name": rng.choice(["sgd", "adam"])}
        quality = 1 - abs(math.log10(p["optimizer.lr"]) + 2.5) / 2 + p["model.network.hidden"] / 1000
        roll = rng.random()
        state = TrialState.COMPLETE if roll < 0.7 else TrialState.PRUNED if roll < 0.9 else TrialState.FAIL
        epochs = EPOCHS if state == TrialState.COMPLETE else rng.randint(1, EPOCHS // 2)
        curve = {e: 100 * quality * (1 - math.exp(-(e + 1) / 5)) + rng.random() for e in range(epochs)}
        out.append(create_trial(params=p, distributions=PARAMS, state=state, intermediate_values=curve,
                                value=max(curve.values()) if state == TrialState.COMPLETE else None,
                                user_attrs={"returncode": 0 if state != TrialState.FAIL else 1}))
    return out


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore")
    trials = fake_trials(args.trials, random.Random(0))
    META["n_trials"] = args.trials
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "sweep"
        d.mkdir()
        (d / MARKER).write_text(json.dumps(META))
        study = optuna.create_study(study_name="bench", direction="maximize",
                                    storage=optuna.storages.JournalStorage(
                                        optuna.storages.journal.JournalFileBackend(str(d / JOURNAL_NAME))))
        t0 = time.perf_counter()
        study.add_trials(trials)
        fill = time.perf_counter() - t0
        frozen = study.get_trials(deepcopy=False)
        page = build_report(d, frozen, META, params=list(PARAMS))
        build = median_ms(lambda: build_report(d, frozen, META, params=list(PARAMS)), args.repeat)
        rebuild = median_ms(lambda: rebuild_report(d), args.repeat)
        print(f"{args.trials} trials ({EPOCHS} epochs max), journal filled in {fill:.1f} s")
        print(f"view.html: {page.stat().st_size / 1000:.0f} KB")
        print(f"build_report (trials in memory): median {build:.0f} ms over {args.repeat}")
        print(f"rebuild_report (journal replay + build, as `bootstrap-repro view`): median {rebuild:.0f} ms")
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if exe is None:
            print("chromium: not installed, browser render not measured")
            return
        small = Path(tmp) / "small"
        small.mkdir()
        build_report(small, frozen[:10], META, params=list(PARAMS))
        for label, where in (("10 trials", small), (f"{args.trials} trials", d)):
            ms, total, drawn = chromium_draw(exe, where / "view.html")
            print(f"chromium, {label}: page parsed and {drawn} plotly svg layers drawn {ms:.0f} ms after navigation "
                  f"(median over 3; whole `chromium --dump-dom` with browser start-up {total:.1f} s)")


def chromium_draw(exe: str, page: Path) -> tuple[float, float, int]:
    """(ms from navigation to the end of the page's plotting script, whole command s, svg layers): medians of 3."""
    timed = page.with_name("timed.html")  # stamps the time once every Plotly.newPlot call has run
    stamp = '<script>document.body.setAttribute("data-drawn-ms", performance.now().toFixed(0));</script>'
    timed.write_text(page.read_text().replace("</body>", stamp + "</body>"))
    times, drawn_ms, dom = [], [], ""
    for _ in range(3):
        with tempfile.TemporaryDirectory() as profile:
            t0 = time.perf_counter()
            dom = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                  "--disable-background-networking", f"--user-data-dir={profile}",
                                  "--dump-dom", timed.as_uri()],  # no virtual time: the real clock
                                 capture_output=True, text=True, timeout=120).stdout
            times.append(time.perf_counter() - t0)
        drawn_ms.append(float(dom.split('data-drawn-ms="', 1)[1].split('"', 1)[0]))
    return statistics.median(drawn_ms), statistics.median(times), dom.count('class="main-svg"')


if __name__ == "__main__":
    main()
