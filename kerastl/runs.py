"""The run-level API: ``ktl.train``, ``ktl.load_run``, ``ktl.evaluate``, ``ktl.predict``.

``kerastl train`` / ``evaluate`` only map their flags onto these functions, so
everything the command line does (seeding, determinism, distribution and
batch scaling, output naming, the choice between fine-tuning and feature
extraction) is available from Python too.

Example:
    >>> run = ktl.train("photos/", ktl.FineTuneConfig(epochs=5), output="runs/photos")
    >>> run.metrics("val")["accuracy"]
    >>> ktl.evaluate(run)["metrics"]["accuracy"] == run.metrics("val")["accuracy"]
    True
    >>> ktl.predict(run.model, ["cat.jpg"], top_k=3)[0]["top_k"][0]["class"]
    'cat'
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import pathlib
import re

from kerastl.config import FineTuneConfig
from kerastl.errors import UserInputError

REPORT_FILE = "report.json"

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Run:
    """A finished training run: its folder, model and report.

    Attributes:
        path: the run folder (``None`` for a worker of a cluster, which writes nothing).
        model: the trained task model (class names and resize inside).
        report: what ``report.json`` holds (config, history, metrics, files...).
    """

    path: pathlib.Path | None
    report: dict
    _model: object = None

    @property
    def model(self):
        """The trained model (read from the run's ``model.keras`` on first use)."""
        if self._model is None and self.report.get("files", {}).get("model"):
            from kerastl.loading import load_keras_model

            self._model = load_keras_model(self.report["files"]["model"])
        return self._model

    @property
    def config(self) -> dict:
        return dict(self.report.get("config", {}))

    @property
    def class_names(self) -> list[str]:
        return list(self.report.get("class_names", []))

    def metrics(self, split: str = "val") -> dict:
        """The run's metrics of ``split`` (``"val"`` or ``"test"``)."""
        key = f"{split}_metrics"
        if key not in self.report:
            raise UserInputError(f"This run has no {split} metrics (it has: "
                                 f"{', '.join(k[:-8] for k in self.report if k.endswith('_metrics')) or 'none'}).")
        return self.report[key]


def _run_config(config, options: dict) -> FineTuneConfig:
    if config is None:
        config = FineTuneConfig()
    elif isinstance(config, dict):
        config = FineTuneConfig.from_dict(config)
    elif not isinstance(config, FineTuneConfig):
        raise UserInputError(f"config must be a FineTuneConfig, a dict of its options or None. "
                             f"Received: {type(config).__name__}")
    return config.replace(**options) if options else config


def _safe_run_name(backbone: str) -> str:
    from kerastl.paths import is_safe_name

    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", backbone.removeprefix("hub:")).strip("_")
    return name if is_safe_name(name) else "hub"  # e.g. a hub handle "..": never out of runs/


def train(data, config: FineTuneConfig | dict | None = None, *, output=None,
          overwrite: bool = False, strategy=None, callbacks=None, backup_dir=None,
          features_cache=None, tensorboard=None, verbose="auto", **options) -> Run:
    """Train a classifier on ``data`` and write the run: model, report, plots.

    Args:
        data: an image folder (one subfolder per class, or ``train/`` ``val/``
            ``test/``) or a :class:`kerastl.data.Splits` (then the config's data
            options are not used: the splits are already made).
        config: a :class:`FineTuneConfig` (or a dict of its options); default
            ``FineTuneConfig()``.
        output: the run folder; default ``runs/<backbone>``, or the next free
            ``runs/<backbone>-N`` (claimed atomically).
        overwrite: replace a model already in ``output``.
        strategy: ``None``, a ``tf.distribute.Strategy`` or a name for
            :func:`kerastl.distribute.get_strategy`; ``batch_size`` is then per replica.
        callbacks: extra Keras callbacks (fine-tuning).
        backup_dir: checkpoint folder; running the same call again resumes there.
        features_cache: feature extraction's cache folder.
        tensorboard: folder for TensorBoard logs of both phases (written by
            the chief only; ``keras.callbacks.TensorBoard``).
        verbose: Keras verbosity (``"auto"``: bars on a terminal, lines otherwise).
        **options: :class:`FineTuneConfig` options overriding ``config``'s.

    Returns:
        A :class:`Run`. ``report.json["config"]`` holds the whole config, the data
        folder and the strategy, so ``ktl.evaluate(run)`` can cut the same split.
    """
    import keras
    import tensorflow as tf

    from kerastl import distribute
    from kerastl.backbones import backbone_spec
    from kerastl.data.decode import check_image_size
    from kerastl.data.header import resolve_max_pixels
    from kerastl.training.run import claim_free_dir

    config = _run_config(config, options)
    from kerastl.text.run import is_text_run

    if is_text_run(data, config):
        return _train_text(data, config, output=output, overwrite=overwrite,
                           strategy=strategy, callbacks=callbacks, backup_dir=backup_dir,
                           tensorboard=tensorboard, verbose=verbose)
    spec = backbone_spec(config.backbone)
    size = spec.default_image_size if config.image_size is None else config.image_size
    check_image_size(size, minimum=spec.min_image_size, backbone=spec.name, name="image_size")
    resolve_max_pixels(config.max_pixels)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    batch_size = config.batch_size
    strategy_name = strategy if isinstance(strategy, str) or strategy is None else (
        type(strategy).__name__)
    if strategy is not None:
        strategy = distribute.get_strategy(strategy)
        batch_size = distribute.global_batch_size(config.batch_size, strategy)
    splits, data_dir = _splits(data, config, (size, size), batch_size)
    record = {**config.to_dict(), "data_dir": data_dir,
              "strategy": strategy_name, "backup_dir": _path_or_none(backup_dir),
              "features_cache": _path_or_none(features_cache),
              "tensorboard": _path_or_none(tensorboard)}
    from kerastl.transfer.run import choose_mode

    mode = choose_mode(config.mode, train_examples=int(splits.counts.get("train", 0)),
                       num_classes=len(splits.class_names))
    callbacks = list(callbacks or [])
    if tensorboard is not None and distribute.is_chief(strategy):
        callbacks.append(keras.callbacks.TensorBoard(log_dir=os.fspath(tensorboard)))
    if callbacks and mode == "feature-extraction":
        log.warning("No callbacks%s: feature extraction trains no Keras epochs.",
                    " and no TensorBoard logs" if tensorboard is not None else "")
    claimed = None
    if output is None and (mode == "feature-extraction" or distribute.is_chief(strategy)):
        # Claimed now (exclusive mkdir): runs started together get distinct folders.
        # The other workers of a fine-tuning cluster write nothing and need no folder.
        output = claimed = claim_free_dir(f"runs/{_safe_run_name(spec.name)}")
    try:
        report = _run_mode(mode, splits, config, output, overwrite, record, strategy,
                           callbacks, backup_dir, features_cache, verbose)
    except BaseException:
        if claimed is not None:
            with contextlib.suppress(OSError):  # only while still empty
                claimed.rmdir()
        raise
    return Run(pathlib.Path(output) if output is not None else None, report)


def _train_text(data, config: FineTuneConfig, *, output, overwrite, strategy, callbacks,
                backup_dir, tensorboard, verbose) -> Run:
    """:func:`train` for text: a folder of ``.txt`` class subfolders or a ``TextSplits``."""
    import keras

    from kerastl import distribute
    from kerastl.data.text import TextSplits, text_folder
    from kerastl.text.run import text_backbone_name, train_text_and_report
    from kerastl.training.run import claim_free_dir

    name = text_backbone_name(config)
    keras.utils.set_random_seed(config.seed)
    strategy_name = strategy if isinstance(strategy, str) or strategy is None else (
        type(strategy).__name__)
    batch_size = config.batch_size
    if strategy is not None:
        strategy = distribute.get_strategy(strategy)
        batch_size = distribute.global_batch_size(config.batch_size, strategy)
    data_dir = None
    if isinstance(data, TextSplits):
        splits = data
    elif isinstance(data, (str, os.PathLike)):
        folder = pathlib.Path(data)
        if not folder.is_dir():
            raise UserInputError(f"DATA_DIR {folder} is not a folder" if folder.exists()
                                 else f"DATA_DIR {folder} does not exist")
        splits = text_folder(folder, validation_split=config.validation_split,
                             seed=config.seed, batch_size=batch_size)
        data_dir = os.fspath(folder.resolve())
    else:
        raise UserInputError("data must be a text folder or a kerastl.data.TextSplits. "
                             f"Received: {type(data).__name__}")
    callbacks = list(callbacks or [])
    if tensorboard is not None and distribute.is_chief(strategy):
        callbacks.append(keras.callbacks.TensorBoard(log_dir=os.fspath(tensorboard)))
    record = {**config.to_dict(), "task": "text", "backbone": name, "data_dir": data_dir,
              "strategy": strategy_name, "backup_dir": _path_or_none(backup_dir),
              "tensorboard": _path_or_none(tensorboard)}
    claimed = None
    if output is None and (config.mode == "feature-extraction" or distribute.is_chief(strategy)):
        output = claimed = claim_free_dir(f"runs/{_safe_run_name(name)}")
    try:
        report = train_text_and_report(splits, config, output=output, overwrite=overwrite,
                                       record=record, strategy=strategy, callbacks=callbacks,
                                       backup_dir=backup_dir, verbose=verbose)
    except BaseException:
        if claimed is not None:
            with contextlib.suppress(OSError):
                claimed.rmdir()
        raise
    return Run(pathlib.Path(output) if output is not None else None, report)


def _path_or_none(path):
    return None if path is None else os.fspath(path)


def _splits(data, config: FineTuneConfig, size, batch_size):
    from kerastl.data.splits import Splits

    if isinstance(data, Splits):
        return data, None
    if not isinstance(data, (str, os.PathLike)):
        raise UserInputError("data must be an image folder or a kerastl.data.Splits. "
                             f"Received: {type(data).__name__}")
    folder = pathlib.Path(data)
    if not folder.exists():
        raise UserInputError(f"DATA_DIR {folder} does not exist")
    if not folder.is_dir():
        raise UserInputError(f"DATA_DIR {folder} is not a folder")
    from kerastl.data.folders import image_folder

    splits = image_folder(folder, image_size=size, batch_size=batch_size,
                          validation_split=config.validation_split, seed=config.seed,
                          augment=config.augment, resize=config.resize,
                          deterministic=config.deterministic, max_pixels=config.max_pixels)
    return splits, os.fspath(folder.resolve())


def _run_mode(mode, splits, config, output, overwrite, record, strategy, callbacks,
              backup_dir, features_cache, verbose) -> dict:
    if mode == "feature-extraction":
        from kerastl.transfer.run import feature_extraction_and_report

        return feature_extraction_and_report(
            splits, backbone=config.backbone, output=output, weights=config.weights,
            kind=config.classifier, C=config.C, cache=features_cache, overwrite=overwrite,
            config=record, verbose=verbose)
    from kerastl.training.run import train_and_report

    return train_and_report(
        splits, backbone=config.backbone, output=output, weights=config.weights,
        dropout=config.dropout, hidden_units=config.hidden_units, overwrite=overwrite,
        verbose=verbose, config=record, strategy=strategy, lr_find=config.lr_find,
        callbacks=list(callbacks or []), backup_dir=backup_dir,
        **{**config.fine_tune_kwargs(), "unfreeze": config.unfreeze_options()})


def load_run(path) -> Run:
    """The run written by :func:`train` (or ``kerastl train``) in folder ``path``."""
    from kerastl.loading import load_keras_model
    from kerastl.training.run import MODEL_FILE

    folder = pathlib.Path(path)
    if not (folder / MODEL_FILE).is_file():
        raise UserInputError(f"{folder} holds no {MODEL_FILE}: not a kerastl run folder.")
    report = {}
    if (folder / REPORT_FILE).is_file():
        try:
            report = json.loads((folder / REPORT_FILE).read_text())
        except ValueError as err:
            raise UserInputError(f"{folder / REPORT_FILE} does not parse as JSON: {err}") from err
    return Run(folder, report, load_keras_model(folder / MODEL_FILE))


def as_run(model_or_run, run_report=None) -> Run:
    """A :class:`Run` of a run, a run folder, a ``.keras`` path (with the report.json
    beside it, if any) or a model (with ``run_report``)."""
    import keras

    if isinstance(model_or_run, Run):
        return model_or_run
    if isinstance(model_or_run, keras.Model):
        return Run(None, dict(run_report or {}), model_or_run)
    path = pathlib.Path(model_or_run)
    if path.is_dir():
        return load_run(path)
    from kerastl.loading import load_keras_model

    model = load_keras_model(path)
    report = run_report if run_report is not None else _training_report(path)
    return Run(path.parent, report, model)


def _training_report(model_path: pathlib.Path) -> dict:
    """The report.json of the run the model file belongs to, or ``{}``."""
    report = model_path.parent / REPORT_FILE
    if not report.is_file():
        return {}
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and isinstance(data.get("config"), dict) else {}
