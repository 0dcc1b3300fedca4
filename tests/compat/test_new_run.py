"""``bootstrap.new`` writes a seed-style project that ``python -m bootstrap.run`` trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from bootstrap.new import new_project


def test_new_project_refuses_bad_names_and_existing_folders(tmp_path):
    with pytest.raises(ValueError, match="must be a Python identifier like MyProject, got 'my-project'"):
        new_project("my-project", tmp_path)
    root = new_project("Demo", tmp_path)
    assert (root / "demo" / "options" / "demo.yaml").is_file()
    with pytest.raises(FileExistsError):
        new_project("Demo", tmp_path)


@pytest.mark.slow
def test_python_m_bootstrap_run_trains_a_new_project(tmp_path, _test_cache_dir):
    root = new_project("MyProject", tmp_path)
    env = {**os.environ, "PYTHONPATH": "", "BOOTSTRAP_REPRO_CACHE_DIR": str(_test_cache_dir)}
    r = subprocess.run([sys.executable, "-m", "bootstrap.run", "-o", "myproject/options/myproject.yaml",
                        "--engine.nb_epochs", "2", "--engine.progress_bar", "false"],
                       cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    exp = root / "logs" / "myproject" / "1_exp"
    for name in ("options.yaml", "logs.json", "logs.txt", "view.html", "ckpt_last_model.pth.tar",
                 "ckpt_best_loss_model.pth.tar", "ckpt_best_accuracy_engine.pth.tar"):
        assert (exp / name).is_file(), name
    logs = json.loads((exp / "logs.json").read_text())
    assert len(logs["eval_epoch.accuracy"]) == 2
