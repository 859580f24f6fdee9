"""``ktl.tuning.search``: a resumable, distributable transfer-learning search."""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import re
from collections.abc import Callable, Mapping, Sequence

import keras
import keras_tuner as kt

from kerastl import _compat
from kerastl.atomic import remove_stale_temp_files
from kerastl.config import DEFAULTS
from kerastl.errors import (
    KerastlError,
    SearchFailedError,
    SearchInputError,
    UserInputError,
)
from kerastl.paths import clear_owned_dir, make_owned_dir
from kerastl.tuning import results as results_mod
from kerastl.tuning.arguments import (  # noqa: F401  (TUNERS, DEFAULT_MAX_TRIALS: public here)
    DEFAULT_MAX_TRIALS,
    TUNERS,
    _check_arguments,
    _direction,
    _hypermodel_and_project,
    _oracle,
)
from kerastl.tuning.hypermodel import HYPERPARAMETERS, TransferHyperModel
from kerastl.tuning.tuner import (
    KerastlTuner,
    describe_error,
    error_line,
)

log = logging.getLogger(__name__)



@dataclasses.dataclass
class SearchResult:
    """What :func:`search` returns.

    Attributes:
        best_hyperparameters: ``{name: value}`` of the best trial (empty on a worker).
        trials: the trials table, one dict per trial (see ``results.trials_table``).
        files: paths of ``results_csv``, ``results_json``, ``best_json``,
            ``score_plot`` and ``hyperparameter_plot`` (none on a worker).
        project_dir: the project folder (``directory/project_name``).
        objective: the objective's name; ``best_score`` its best value.
        best_trial_id: id of the best trial.
        role: ``"local"``, ``"chief"`` or ``"worker"``.
        trials_run: ids of the trials this process ran.
    """

    best_hyperparameters: dict
    trials: list[dict]
    files: dict[str, pathlib.Path]
    project_dir: pathlib.Path
    objective: str
    best_score: float | None = None
    best_trial_id: str | None = None
    role: str = "local"
    trials_run: list[str] = dataclasses.field(default_factory=list)
    hypermodel: TransferHyperModel | None = dataclasses.field(default=None, repr=False)
    best_hp_config: dict | None = dataclasses.field(default=None, repr=False)

    def table(self) -> str:
        """The trials table as text."""
        return results_mod.format_table(self.trials, _tuned_names(self.trials), self.objective)

    def best_model(self) -> keras.Model:
        """Rebuild the best trial's model and load its best weights (compiled for evaluate).

        Raises:
            ValueError: no trial completed, or this process is a worker.
        """
        if self.best_hp_config is None or self.hypermodel is None:
            raise UserInputError("No completed trial to rebuild (or this is a worker: ask the "
                                 "chief's project folder).")
        hp = kt.HyperParameters.from_config(self.best_hp_config)
        model = self.hypermodel.build(hp)
        checkpoint = self.project_dir / f"trial_{self.best_trial_id}" / "checkpoint.weights.h5"
        if not checkpoint.exists():
            raise FileNotFoundError(f"The best trial's weights are missing: {checkpoint}")
        model.load_weights(checkpoint)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    def export(self, name: str | None = None, base_dir: str | os.PathLike = "SavedModels",
               **kwargs) -> pathlib.Path:
        """Export the best model with :func:`kerastl.export_saved_model`; returns its path."""
        from kerastl.export import export_saved_model

        return export_saved_model(self.best_model(), base_dir,
                                  name=name or self.project_dir.name, **kwargs)


def _tuned_names(rows: list[dict]) -> list[str]:
    known = list(HYPERPARAMETERS) + ["sequence_length"]  # text searches tune it too
    return [n for n in known if any(n in r for r in rows)]


def search(train, val=None, *, backbones: Sequence[str] = ("efficientnet_lite0",),
           tuner: str = "hyperband", max_trials: int | None = None, max_epochs: int = 10,
           directory: str | os.PathLike = "tuning", project_name: str | None = None,
           overwrite: bool = False, hypermodel: TransferHyperModel | None = None,
           objective: str = "val_accuracy", seed: int | None = DEFAULTS.seed, image_size=None,
           num_classes: int | None = None, isolate_trials: bool = False,
           executions_per_trial: int = 1, weights="imagenet", fixed: Mapping | None = None,
           space: Mapping | None = None, hyperparameters: kt.HyperParameters | None = None,
           factor: int = 3, hyperband_iterations: int = 1, callbacks: list | None = None,
           on_trial_end: Callable[[dict], None] | None = None, plots: bool = True,
           verbose=0, strategy=None, keep_cache: bool = False) -> SearchResult:
    """Search backbones, head, learning rates and unfreeze depth with KerasTuner.

    Each trial builds a :class:`TransferHyperModel` model and runs the two-phase
    :func:`kerastl.fine_tune` (see ``hypermodel.py`` for how a trial's epochs
    split between phases). Results land in ``directory/project_name``; with
    ``overwrite=False`` an interrupted search resumes there: completed trials
    are kept and the trial that was running is run again under its own id.

    Distributed: with ``KERASTUNER_TUNER_ID`` / ``KERASTUNER_ORACLE_IP`` /
    ``KERASTUNER_ORACLE_PORT`` set (``kerastl tune --chief/--worker``), the chief
    serves the oracle and returns when the workers are done; workers run trials.

    Args:
        train: dataset of ``(float32 [0, 255] images, labels)`` batches, or a
            :class:`~kerastl.data.Splits` (then ``val`` defaults to its ``val``).
            Batches of ``(strings, labels)`` (or a :class:`~kerastl.data.TextSplits`)
            make a text search (:class:`~kerastl.tuning.text.TextHyperModel`:
            text backbones, ``sequence_length`` tuned, no augmentation).
        val: validation dataset (required: the objective is measured on it).
        backbones: registry names to choose from.
        tuner: ``"hyperband"``, ``"bayesian"``, ``"random"`` or ``"grid"``.
        max_trials: number of trials (``None``: Hyperband's brackets, 10 for
            random/Bayesian, the whole grid for grid search); a cap for Hyperband.
        max_epochs: epochs per trial (Hyperband: of the longest trials).
        directory: root of the search projects.
        project_name: project folder name (default ``<tuner>_<backbones>``), one
            folder-safe name (see :func:`kerastl.paths.check_name`).
        overwrite: start afresh instead of resuming: deletes the project folder,
            which must be one kerastl created (it holds a ``.kerastl-project`` file).
        hypermodel: a ready :class:`TransferHyperModel` (overrides the
            backbones/weights/space/fixed/image_size/num_classes arguments).
        objective: metric to maximise (``val_accuracy``) or minimise (``*loss``).
        seed: seed of the oracle and the augmentation layers (default: the training
            default, ``kerastl.config.DEFAULTS.seed``; ``None``: unseeded).
        image_size: ``(h, w)``; inferred from ``train`` when its shape is static.
        num_classes: inferred from the labels when absent.
        isolate_trials: run each trial in its own process (datasets are saved
            once under ``<project>/isolated_data/``, removed when the search
            ends; their pipeline randomness is frozen).
        executions_per_trial: trainings per trial, metrics averaged.
        weights: backbone weights (``"imagenet"``, ``None`` or a file).
        fixed: ``{hyperparameter: value}`` fixed for the whole search.
        space: narrowed ranges (see :class:`TransferHyperModel`).
        hyperparameters: a ``keras_tuner.HyperParameters`` declared beforehand
            (``hp.Fixed`` etc.), handed to the oracle.
        factor: Hyperband's reduction factor.
        hyperband_iterations: Hyperband iterations.
        callbacks: extra Keras callbacks for every trial (must be deep-copyable).
        on_trial_end: called after each trial run by this process with
            ``{"trial_id", "status", "trials_run"}``.
        plots: write the PNG plots.
        verbose: Keras and KerasTuner verbosity (0 silent).
        strategy: distribution strategy for every trial's ``fine_tune`` (a name
            for :func:`kerastl.distribute.get_strategy`, or a strategy; a name
            also works with ``isolate_trials``). Default: none.
        keep_cache: keep the copy of the datasets that ``isolate_trials`` saves
            (``<project>/isolated_data/<local or tuner id>/``) when the search
            ends, e.g. to run more trials on the same data later; by default it
            is deleted when the search returns or fails.

    Returns:
        A :class:`SearchResult`.

    Raises:
        ValueError: bad arguments or data (one message saying what to change),
            or ``overwrite=True`` on a folder kerastl did not create.
        SearchFailedError: no trial completed, or the search stopped after
            consecutive failed trials; the message names the first failed
            trial's error. It is a :class:`~kerastl.errors.SearchInputError`
            (also a ``ValueError``) when that error is the input's fault.
    """
    from kerastl.data.splits import Splits

    class_names = None
    if isinstance(train, Splits) or type(train).__name__ == "TextSplits":
        splits = train
        train, val = splits.train, val if val is not None else splits.val
        count = len(splits.class_names)
        if num_classes in (None, count):  # the models keep the class names
            class_names = list(splits.class_names)
        num_classes = num_classes or count
        image_size = image_size or getattr(splits, "image_size", None)
    key = _check_arguments(tuner, train, val, objective=objective, max_trials=max_trials,
                           max_epochs=max_epochs, executions_per_trial=executions_per_trial,
                           factor=factor, keep_cache=keep_cache)
    hypermodel, project_name = _hypermodel_and_project(
        hypermodel, project_name, key, train, val, backbones=backbones, image_size=image_size,
        num_classes=num_classes, weights=weights, space=space, fixed=fixed, seed=seed,
        verbose=verbose, strategy=strategy, class_names=class_names)
    directory = pathlib.Path(directory)
    oracle = _oracle(key, kt.Objective(objective, _direction(objective)),
                     max_trials=max_trials, max_epochs=max_epochs, seed=seed,
                     hyperparameters=hyperparameters, factor=factor,
                     hyperband_iterations=hyperband_iterations)
    role = _role()
    if role == "worker" and overwrite:
        log.warning("Ignoring overwrite=True on worker %s: only the chief may clear the "
                    "project.", os.environ.get("KERASTUNER_TUNER_ID"))
        overwrite = False
    # kerastl clears the project itself (only a folder it created and marked):
    # KerasTuner's own overwrite would delete whatever directory/project_name names.
    prepare = clear_owned_dir if overwrite else make_owned_dir
    project_dir = prepare(directory, project_name, kind="tuning project", what="project_name")
    remove_stale_temp_files(project_dir)
    data_dir = None
    if isolate_trials and role != "chief":
        from kerastl.tuning import isolate

        data_dir = pathlib.Path(isolate.data_dir_for(
            project_dir, os.environ.get("KERASTUNER_TUNER_ID") if role == "worker" else None))
    ktuner = KerastlTuner(oracle, hypermodel, isolate_trials=isolate_trials, data_dir=data_dir,
                          trial_callback=on_trial_end, directory=str(directory),
                          project_name=project_name, overwrite=False,
                          executions_per_trial=executions_per_trial)
    log.info("Search %s: %s tuner, results in %s", project_name, key, project_dir)
    stopped = None
    # A failed trial is logged in one line (the tuner does it), not a traceback on stderr.
    kt_debug = _compat.set_keras_tuner_debug(False)
    try:
        if data_dir is not None:
            isolate.save_datasets(train, val, str(data_dir))
        ktuner.search(train, validation_data=val, epochs=max_epochs,
                      callbacks=list(callbacks or []), verbose=verbose)
    except RuntimeError as err:  # KerasTuner's oracle gives up after consecutive failures
        if "consecutive failures" not in str(err):
            raise
        stopped = err
    finally:
        _compat.set_keras_tuner_debug(kt_debug)
        # The copy of the data serves this search's trials only (a killed search
        # leaves it for its resume, which removes it when it ends).
        if data_dir is not None and not keep_cache:
            isolate.remove_datasets(data_dir)
    if role == "worker":
        return SearchResult({}, [], {}, project_dir, objective, role=role,
                            trials_run=list(ktuner.trials_run))
    result = summarize(ktuner, hypermodel, objective, plots=plots, role=role)
    if result.best_trial_id is None or stopped is not None:
        error = _failure(ktuner, result, stopped)
        raise error from ktuner.trial_errors.get(error.trial_id)
    return result


#: Errors of a trial that are the input's fault (as in the CLI: exit 2).
_INPUT_ERRORS = (KerastlError, FileNotFoundError, NotADirectoryError, ValueError)
_INPUT_ERROR_NAMES = re.compile(
    r"^(kerastl\.errors\.\w+|(\w+\.)*(ValueError|FileNotFoundError|NotADirectoryError))\b")


def _failure(ktuner, result: SearchResult, stopped) -> SearchFailedError:
    """The error for a search with no completed trial (or stopped on failures)."""
    trials = ktuner.oracle.trials
    failed = [t for t in sorted(trials, key=results_mod._trial_key)
              if trials[t].status in ("FAILED", "INVALID")]
    first = failed[0] if failed else None
    err = ktuner.trial_errors.get(first) if first else None
    if err is not None:
        line = describe_error(err)
    else:  # a remote or earlier trial: only its traceback text is left
        line = " ".join(error_line(trials[first].message if first else "").split())[:400]
    if err is not None and not isinstance(err, kt.errors.FailedTrialError):
        is_input = isinstance(err, _INPUT_ERRORS)
    else:  # an isolated, remote or earlier trial: judge by the error's name
        is_input = bool(_INPUT_ERROR_NAMES.match(line))
    if first is None:
        what = "No trial completed: the search ran none."
    elif result.best_trial_id is None:
        what = (f"No trial completed ({len(failed)} failed); trial {first} failed with "
                f"{line}")
    else:
        what = (f"The search stopped after {ktuner.oracle.max_consecutive_failed_trials} "
                f"consecutive failed trials ({len(failed)} failed); trial {first} failed "
                f"with {line}")
    message = f"{what} (results in {result.project_dir})"
    cls = SearchInputError if is_input else SearchFailedError
    return cls(message, trial_id=first, result=result)


def _role() -> str:
    dist_utils = _compat.kt_distribute_utils()
    if not dist_utils.has_chief_oracle():
        return "local"
    return "chief" if dist_utils.is_chief_oracle() else "worker"


def summarize(ktuner, hypermodel, objective: str, *, plots: bool = True,
              role: str = "local") -> SearchResult:
    """Write the results table, best hyperparameters and plots of a tuner's oracle."""
    oracle = ktuner.oracle
    project_dir = pathlib.Path(ktuner.project_dir)
    rows = results_mod.trials_table(oracle, objective)
    names = _tuned_names(rows)
    best = results_mod.best_row(rows, oracle.objective.direction)
    files = results_mod.write_table(rows, project_dir)
    files["best_json"] = results_mod.write_best(best, names, objective, project_dir)
    if plots:
        files.update(results_mod.plot_results(rows, names, objective, project_dir))
    best_hp, best_cfg = {}, None
    if best is not None:
        best_hp = {n: best[n] for n in names if n in best}
        best_cfg = oracle.trials[best["trial_id"]].hyperparameters.get_config()
    return SearchResult(best_hp, rows, files, project_dir, objective,
                        best_score=None if best is None else best["score"],
                        best_trial_id=None if best is None else best["trial_id"], role=role,
                        trials_run=list(ktuner.trials_run), hypermodel=hypermodel,
                        best_hp_config=best_cfg)
