"""A search killed mid-trial (SIGKILL) resumes with overwrite=False: no trial lost or run twice."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from tuning_helpers import TINY_BACKBONE, tiny_datasets

import kerastl as ktl

HERE = pathlib.Path(__file__).parent
BUDGET = 4
SEARCH = dict(backbones=(TINY_BACKBONE,), tuner="random", max_trials=BUDGET, max_epochs=1,
              project_name="resume", weights=None, seed=5, plots=False,
              fixed={"augmentation": "none"})

SCRIPT = textwrap.dedent(f"""
    import os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, {str(HERE)!r})
    from tuning_helpers import tiny_datasets
    import kerastl as ktl
    train, val = tiny_datasets()
    ktl.tuning.search(train, val, directory=sys.argv[1], overwrite=False, **{SEARCH!r})
""")


def _trial_states(project: pathlib.Path) -> dict[str, str]:
    states = {}
    for path in project.glob("trial_*/trial.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):  # being replaced right now
            continue
        states[data["trial_id"]] = data["status"]
    return states


@pytest.mark.slow
def test_killed_search_resumes_without_lost_or_duplicated_trials(tmp_path):
    project = tmp_path / "resume"
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    killed_running = None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            states = _trial_states(project)
            done = [t for t, s in states.items() if s == "COMPLETED"]
            running = [t for t, s in states.items() if s == "RUNNING"]
            if len(done) >= 2 and running:
                time.sleep(1.0)  # let the running trial get into training
                proc.send_signal(signal.SIGKILL)
                killed_running = running[0]
                break
            time.sleep(0.2)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert killed_running is not None, (
        "the search never reached a running third trial: "
        + (proc.stderr.read().decode()[-2000:] if proc.stderr else ""))
    proc.stderr.close()
    before = _trial_states(project)
    assert before[killed_running] == "RUNNING"
    assert sum(s == "COMPLETED" for s in before.values()) < BUDGET

    train, val = tiny_datasets()
    result = ktl.tuning.search(train, val, directory=tmp_path, overwrite=False, **SEARCH)

    ids = [row["trial_id"] for row in result.trials]
    assert ids == [str(i) for i in range(BUDGET)]
    assert all(row["status"] == "COMPLETED" for row in result.trials)
    assert killed_running in result.trials_run  # re-run under its own id
    assert set(result.trials_run) == {t for t, s in before.items() if s != "COMPLETED"} | (
        set(ids) - set(before))
    values = {json.dumps({k: row[k] for k in ktl.tuning.HYPERPARAMETERS}, sort_keys=True)
              for row in result.trials}
    assert len(values) == BUDGET  # no configuration ran twice
    oracle = json.loads((project / "oracle.json").read_text())
    assert sorted(oracle["end_order"]) == ids  # each trial ended exactly once
    assert oracle["ongoing_trials"] == {}
    assert len(list(project.glob("trial_*"))) == BUDGET
