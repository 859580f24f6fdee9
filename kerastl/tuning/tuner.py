"""The KerasTuner ``Tuner`` behind :func:`kerastl.tuning.search`.

What it adds to ``keras_tuner.Tuner``:

- every oracle (Hyperband, Bayesian, random, grid) writes its JSON state
  atomically (temporary file + rename), so a process killed at any moment
  leaves a project that reloads; with ``overwrite=False`` the trial that was
  running is re-run under the same id (KerasTuner's retry queue);
- Hyperband brackets continue from the previous bracket's best checkpoint;
- after each trial the models are released (``clear_session``, the trial's
  traced graphs that TensorFlow's gradient registry would keep forever
  (:mod:`kerastl.memory`), ``gc``, and the C heap trimmed where glibc
  allows), or each trial runs in its own process (``isolate_trials=True``);
- the chief of a distributed search polls for the end every half second
  instead of KerasTuner's 20 s.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import re
import subprocess
import sys
import time

import keras_tuner as kt

from kerastl import _compat
from kerastl.atomic import atomic_write_json
from kerastl.memory import GraphRelease

log = logging.getLogger(__name__)


def write_json_atomic(path: str | os.PathLike, data) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename."""
    atomic_write_json(path, data)


def error_line(text: str) -> str:
    """The line of a traceback (or of a trial's stderr tail) that states the error."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Exit)\b", line):
            return line
    return lines[-1] if lines else "no error message"


def describe_error(err: BaseException, limit: int = 400) -> str:
    """``err`` in one line: ``Type: message`` (an isolated trial: the child's error line)."""
    if isinstance(err, kt.errors.FailedTrialError) and "\n" in str(err):
        line = error_line(str(err))
    else:
        line = f"{type(err).__name__}: {err}"
    line = " ".join(line.split())
    return line if len(line) <= limit else line[:limit] + "..."


class _AtomicSaves:
    """Oracle mixin: the oracle's and each trial's JSON are replaced atomically."""

    def save(self):
        write_json_atomic(_compat.oracle_state_file(self), self.get_state())

    def _save_trial(self, trial):  # private KerasTuner hooks: see kerastl._compat
        trial_dir = _compat.oracle_trial_dir(self, trial.trial_id)
        write_json_atomic(os.path.join(trial_dir, "trial.json"), trial.get_state())


class HyperbandOracle(_AtomicSaves, kt.oracles.HyperbandOracle):
    """KerasTuner's Hyperband oracle with atomic saves."""


class RandomSearchOracle(_AtomicSaves, kt.oracles.RandomSearchOracle):
    """KerasTuner's random-search oracle with atomic saves."""


class BayesianOptimizationOracle(_AtomicSaves, kt.oracles.BayesianOptimizationOracle):
    """KerasTuner's Bayesian-optimisation oracle with atomic saves."""


class GridSearchOracle(_AtomicSaves, kt.oracles.GridSearchOracle):
    """KerasTuner's grid-search oracle with atomic saves."""


class KerastlTuner(kt.Tuner):
    """A ``keras_tuner.Tuner`` for :class:`~kerastl.tuning.TransferHyperModel` searches.

    Args:
        oracle: a KerasTuner oracle (the ones in this module save atomically).
        hypermodel: the hypermodel; must be picklable when ``isolate_trials``.
        isolate_trials: run each trial in a fresh Python process.
        data_dir: where the isolated trials read the saved datasets.
        trial_callback: called in this process after each trial with
            ``{"trial_id", "status", "trials_run"}``.
        **kwargs: ``keras_tuner.Tuner`` arguments (directory, project_name...).
    """

    def __init__(self, oracle, hypermodel, *, isolate_trials: bool = False,
                 data_dir: str | os.PathLike | None = None, trial_callback=None,
                 chief_poll_seconds: float = 0.5, **kwargs):
        self.isolate_trials = bool(isolate_trials)
        self.data_dir = pathlib.Path(data_dir) if data_dir else None
        self.trial_callback = trial_callback
        self.chief_poll_seconds = chief_poll_seconds
        self.trials_run: list[str] = []
        self.trial_errors: dict[str, Exception] = {}  # first error of each failed trial
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)

    # -- search space: declaring needs no model build ---------------------------
    # (_populate_initial_space, _build_hypermodel and _run_and_update_trial are
    # private KerasTuner hooks, listed and tested in kerastl._compat)

    def _populate_initial_space(self):
        declare = getattr(self.hypermodel, "values", None)
        if declare is None:
            return super()._populate_initial_space()
        hp = self.oracle.get_space()
        declare(hp)
        self.oracle.update_space(hp)

    # -- state ------------------------------------------------------------------

    def save(self):
        if not _compat.tuner_is_worker(self):
            self.oracle.save()
        write_json_atomic(_compat.tuner_state_file(self), self.get_state())

    def on_search_begin(self):
        super().on_search_begin()
        self.save()  # from now on a restart reloads this project

    def search(self, *fit_args, **fit_kwargs):
        if _compat.kt_distribute_utils().is_chief_oracle():
            self.oracle.verbose = fit_kwargs.get("verbose", self.oracle.verbose)
            self.save()
            serve_chief(self.oracle, poll_seconds=self.chief_poll_seconds)
            self.save()
            return
        super().search(*fit_args, **fit_kwargs)

    # -- trials -----------------------------------------------------------------

    def _build_hypermodel(self, hp):
        model = super()._build_hypermodel(hp)
        if "tuner/trial_id" in hp.values:  # Hyperband: continue the previous bracket's model
            previous = hp.values["tuner/trial_id"]
            model.load_weights(_compat.tuner_checkpoint_file(self, previous))
        return model

    def _run_and_update_trial(self, trial, *fit_args, **fit_kwargs):
        try:
            return super()._run_and_update_trial(trial, *fit_args, **fit_kwargs)
        except Exception as err:  # KerasTuner keeps only the text; keep the error itself
            self.trial_errors.setdefault(trial.trial_id, err)
            log.warning("Trial %s failed: %s", trial.trial_id, describe_error(err))
            log.debug("Trial %s traceback:", trial.trial_id, exc_info=True)
            raise

    def run_trial(self, trial, *fit_args, **fit_kwargs):
        hp = trial.hyperparameters
        if "tuner/epochs" in hp.values:
            fit_kwargs["epochs"] = hp.values["tuner/epochs"]
            fit_kwargs["initial_epoch"] = hp.values["tuner/initial_epoch"]
        if self.isolate_trials:
            return self._run_isolated(trial, fit_kwargs)
        return super().run_trial(trial, *fit_args, **fit_kwargs)

    def on_trial_begin(self, trial):
        self._graphs = GraphRelease()
        super().on_trial_begin(trial)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        self.trials_run.append(trial.trial_id)
        # The trial's models are gone: clear_session, their traced graphs, gc.
        (getattr(self, "_graphs", None) or GraphRelease()).release()
        self._graphs = None
        if self.trial_callback is not None:
            self.trial_callback({"trial_id": trial.trial_id, "status": trial.status,
                                 "trials_run": len(self.trials_run)})

    def _run_isolated(self, trial, fit_kwargs) -> list[dict]:
        import pickle

        if self.data_dir is None:
            raise RuntimeError("isolate_trials needs data_dir (set by kerastl.tuning.search).")
        hp = trial.hyperparameters
        trial_dir = pathlib.Path(self.get_trial_dir(trial.trial_id))
        checkpoint = _compat.tuner_checkpoint_file(self, trial.trial_id)
        previous = (_compat.tuner_checkpoint_file(self, hp.values["tuner/trial_id"])
                    if "tuner/trial_id" in hp.values else None)
        objective = self.oracle.objective
        best = None
        results = []
        for execution in range(self.executions_per_trial):
            weights = trial_dir / f"execution_{execution}.weights.h5"
            result_file = trial_dir / f"execution_{execution}.json"
            payload = trial_dir / f"execution_{execution}.pkl"
            with open(payload, "wb") as f:
                pickle.dump({
                    "hypermodel": self.hypermodel, "hp_config": hp.get_config(),
                    "data_dir": str(self.data_dir), "epochs": fit_kwargs.get("epochs"),
                    "initial_epoch": fit_kwargs.get("initial_epoch", 0),
                    "verbose": fit_kwargs.get("verbose", 0), "load_weights": previous,
                    "save_weights": str(weights), "result_file": str(result_file),
                }, f)
            proc = subprocess.run([sys.executable, "-m", "kerastl.tuning.isolate", str(payload)],
                                  capture_output=True, text=True, check=False)
            payload.unlink(missing_ok=True)
            if proc.returncode != 0 or not result_file.exists():
                tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
                raise kt.errors.FailedTrialError(
                    f"Isolated trial {trial.trial_id} exited with status {proc.returncode}:\n{tail}"
                )
            metrics = json.loads(result_file.read_text())
            result_file.unlink()
            if best is None or objective.better_than(objective.get_value(metrics), best):
                best = objective.get_value(metrics)
                os.replace(weights, checkpoint)
            else:
                weights.unlink(missing_ok=True)
            results.append(metrics)
        return results


def serve_chief(oracle, *, poll_seconds: float = 0.5, ip: str | None = None,
                port: str | int | None = None) -> None:
    """Serve ``oracle`` over gRPC to the workers until the search is over.

    Uses ``KERASTUNER_ORACLE_IP`` / ``KERASTUNER_ORACLE_PORT`` unless given.
    Returns when a worker has been told to stop, every worker has asked for a
    trial after that and no trial is running (KerasTuner's rule).

    Raises:
        OSError: the address cannot be bound.
    """
    from concurrent import futures

    import grpc

    protos, oracle_chief = _compat.kt_protos(), _compat.kt_oracle_chief()
    ip = ip or os.environ["KERASTUNER_ORACLE_IP"]
    port = port or os.environ["KERASTUNER_ORACLE_PORT"]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(f"{ip}:{port}")
    except RuntimeError as err:
        bound, reason = 0, str(err)
    else:
        reason = "address in use or not local"
    if not bound:
        raise OSError(f"The chief could not listen on {ip}:{port} ({reason}). "
                      "Choose a free --oracle-port.")
    server.start()
    log.info("Chief oracle listening on %s:%s", ip, port)
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll_seconds)
    finally:
        server.stop(grace=1)
