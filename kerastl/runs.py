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

import numpy as np

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


# -- evaluate ----------------------------------------------------------------


def _same_folder(a, b) -> bool:
    try:
        return pathlib.Path(a).resolve() == pathlib.Path(b).resolve()
    except (OSError, RuntimeError):
        return False


def split_options(data_dir: pathlib.Path, requested: str, run_config: dict):
    """``(split, validation_split, seed)``: the run's own split on the run's own data.

    ``"auto"`` is ``test`` when the folder has ``test/``; else, on the folder the
    run was trained on, the run's validation split; else every image (``all``).
    """
    own_data = bool(run_config) and _same_folder(data_dir, run_config.get("data_dir") or "")
    fraction = float(run_config.get("validation_split", 0.2)) if own_data else 0.2
    seed = int(run_config.get("seed", 1337)) if own_data else 1337
    has_test = (data_dir / "test").is_dir()
    split = requested
    if split == "auto":
        split = "test" if has_test else ("val" if own_data and fraction > 0 else "all")
    if split not in ("test", "val", "all"):
        raise UserInputError(f"split must be auto, test, val or all. Received: {requested!r}")
    if split == "test" and not has_test:
        raise UserInputError(f"--split test: {data_dir} has no test/ subfolder")
    return split, (0.0 if split == "all" else fraction), seed


def evaluate(model_or_run, data=None, *, split: str = "auto", batch_size: int = 32,
             output=None, errors: int = 16, max_pixels: int | None = None,
             run_report: dict | None = None, extra: dict | None = None) -> dict:
    """Evaluate a classifier (or a :class:`Run`) on an image folder; write a report.

    Args:
        model_or_run: a :class:`Run`, a run folder, a ``.keras`` path or a model.
        data: the image folder; default: the folder the run was trained on.
        split: ``"auto"`` (``test/`` if present; on the run's own data its own
            validation split, cut with the run's ``validation_split`` and
            ``seed``; else every image), ``"test"``, ``"val"`` or ``"all"``.
        batch_size: images per prediction batch.
        output: report folder (``report.json``, ``confusion_matrix.png``,
            ``errors.png``); ``None`` writes nothing.
        errors: images in the errors grid.
        max_pixels: largest image a file may declare (default: the run's).

    Returns:
        The evaluation report (``split``, ``metrics``, ``files``...).
    """
    from kerastl.data.folders import image_folder
    from kerastl.export.signatures import model_image_size
    from kerastl.models import contract_of
    from kerastl.reports.evaluate import evaluate_classifier

    run = _as_run(model_or_run, run_report)
    run_config = run.config
    if data is None and not run_config.get("data_dir"):
        raise UserInputError("Give DATA_DIR: the model has no training report.json beside it "
                             "saying which data it was trained on.")
    data_dir = pathlib.Path(data if data is not None else run_config["data_dir"])
    if not data_dir.is_dir():
        raise UserInputError(f"DATA_DIR {data_dir} does not exist or is not a folder")
    model = run.model
    contract = contract_of(model)
    chosen, fraction, seed = split_options(data_dir, split, run_config)
    splits = image_folder(
        data_dir, image_size=model_image_size(model), batch_size=batch_size,
        validation_split=fraction, seed=seed, shuffle=False, augment=None,
        resize=contract["resize"] or run_config.get("resize") or "stretch",
        max_pixels=max_pixels if max_pixels is not None else run_config.get("max_pixels"))
    dataset = {"all": splits.train, "test": splits.test, "val": splits.val}[chosen]
    if dataset is None:
        raise UserInputError(f"--split {chosen}: {data_dir} has no such split")
    expected = contract["class_names"] or run.report.get("class_names")
    if expected is not None and list(expected) != list(splits.class_names):
        raise UserInputError(
            f"The model was trained on classes {list(expected)} but {data_dir} has "
            f"{splits.class_names}; evaluate on a folder with the same class subfolders.")
    return evaluate_classifier(
        model, dataset, splits.class_names, output=output, split=chosen, errors=errors,
        extra={"data_dir": str(data_dir), "skipped_files": [list(s) for s in splits.skipped],
               **(extra or {})})


def _as_run(model_or_run, run_report=None) -> Run:
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


# -- predict -------------------------------------------------------------------


def prediction_rows(names, outputs: dict, top_k: int, class_names) -> list[dict]:
    """One row per input: ``{"file", "top_k": [{"rank", "index", "class", "score"}]}``
    for a classifier, ``{"file", "outputs": [...]}`` for a regressor."""
    rows = []
    if "predictions" in outputs:
        for n, values in zip(names, outputs["predictions"], strict=True):
            rows.append({"file": str(n), "outputs": [float(v) for v in values]})
        return rows
    probs = outputs["probabilities"]
    k = min(top_k, probs.shape[-1])
    labels = list(class_names or (str(i) for i in range(probs.shape[-1])))
    for n, p in zip(names, probs, strict=True):
        order = np.argsort(-p, kind="stable")[:k]
        rows.append({"file": str(n), "top_k": [
            {"rank": r + 1, "index": int(i), "class": labels[i], "score": float(p[i])}
            for r, i in enumerate(order)]})
    return rows


def predict(model, images, *, top_k: int = 5, batch_size: int = 32, resize: str | None = None,
            class_names=None, max_pixels: int | None = None) -> list[dict]:
    """Predict images with a model, decoding and resizing them as in training.

    Args:
        model: a Keras model, a :class:`Run`, a run folder or a ``.keras`` path.
        images: image files or folders (searched recursively), encoded image
            bytes, or a float array ``(N, H, W, 3)`` in ``[0, 255]`` of the model's size.
        top_k: classes per image (classifiers).
        batch_size: images per batch.
        resize: default: the model's own (a task model keeps its training resize).
        class_names: default: the model's own.
        max_pixels: largest image a file may declare.

    Returns:
        One row per image, as :func:`prediction_rows`: ``top_k`` classes with
        scores for a classifier, ``outputs`` for a regressor.
    """
    import tensorflow as tf

    from kerastl.export.signatures import decode_images, model_image_size
    from kerastl.models import contract_of

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise UserInputError(f"top_k must be a positive int. Received: top_k={top_k!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserInputError(f"batch_size must be a positive int. Received: {batch_size!r}")
    model = _as_run(model).model
    contract = contract_of(model)
    size = model_image_size(model)
    names, batches = _prediction_inputs(images, size, max_pixels)
    mode = resize or contract["resize"] or "stretch"
    decode = tf.function(lambda d: decode_images(d, size, mode), autograph=False)
    scores = []
    for batch in batches(batch_size):
        pixels = decode(tf.constant(batch)) if isinstance(batch, list) else batch
        scores.append(np.asarray(model.predict(pixels, verbose=0), dtype=np.float32))
    merged = np.concatenate(scores) if scores else np.zeros((0, int(model.output_shape[-1])))
    key = "predictions" if contract["task"] == "regression" else "probabilities"
    return prediction_rows(names, {key: merged}, top_k, class_names or contract["class_names"])


def _prediction_inputs(images, size, max_pixels):
    """``(names, batches)``: a name per image and a generator of batches to predict."""
    if isinstance(images, np.ndarray) or hasattr(images, "numpy"):
        array = np.asarray(images, dtype=np.float32)
        if array.ndim != 4 or array.shape[1:] != (*size, 3):
            raise UserInputError(f"images must have shape (N, {size[0]}, {size[1]}, 3) or be "
                                 f"files or encoded bytes. Received: {array.shape}")
        return list(range(len(array))), lambda n: (array[i:i + n]
                                                   for i in range(0, len(array), n))
    if isinstance(images, (str, os.PathLike, bytes)):
        images = [images]
    items = list(images)
    if items and all(isinstance(i, bytes) for i in items):
        return list(range(len(items))), lambda n: (items[i:i + n]
                                                   for i in range(0, len(items), n))
    from kerastl.data.header import image_files, read_images

    files = image_files(items)
    if not files:
        raise UserInputError(f"No image files found in {[os.fspath(i) for i in items]}.")
    return files, lambda n: (read_images(files[i:i + n], max_pixels)
                             for i in range(0, len(files), n))
