"""Evaluating, calibrating and predicting with a trained model: ``ktl.evaluate``, ``ktl.predict``.

Both read the model's own contract (class names, image size, resize): images
are decoded and resized exactly as in training, and a run is evaluated on its
own validation split, cut again with the run's ``validation_split`` and ``seed``.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from kerastl.config import DEFAULT_SEED
from kerastl.errors import UserInputError
from kerastl.runs import as_run


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
    seed = int(run_config.get("seed", DEFAULT_SEED)) if own_data else DEFAULT_SEED
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
             run_report: dict | None = None, extra: dict | None = None, tta=False,
             calibrate: bool = False) -> dict:
    """Evaluate a classifier (or a :class:`Run`) on an image or text folder; write a report.

    Args:
        model_or_run: a :class:`Run`, a run folder, a ``.keras`` path or a model.
        data: the image folder; default: the folder the run was trained on.
        split: ``"auto"`` (``test/`` if present; on the run's own data its own
            validation split, cut with the run's ``validation_split`` and
            ``seed``; else every image), ``"test"``, ``"val"`` or ``"all"``.
        batch_size: images per prediction batch.
        output: report folder (``report.json``, ``confusion_matrix.png``,
            ``errors.png``, ``reliability.png``); ``None`` writes nothing.
        errors: images in the errors grid.
        max_pixels: largest image a file may declare (default: the run's).
        tta: test-time augmentation (images): ``True``/``"flip"`` or ``"crops"``
            (see :mod:`kerastl.tta`); the metrics are then TTA's and
            ``report["tta"]`` holds the accuracy without and with it.
        calibrate: fit a temperature on the run's validation split
            (:func:`kerastl.calibrate`), evaluate the calibrated model, write
            ``reliability.png`` into ``output`` and the calibrated model as
            ``<model>.calibrated.keras`` beside the run's model file;
            ``report["calibration"]`` holds ``T`` and the ECE/NLL before and after
            on the fitting split and on the evaluated one.

    Returns:
        The evaluation report (``split``, ``metrics``, ``files``...).
    """
    from kerastl.reports.evaluate import evaluate_classifier

    run = as_run(model_or_run, run_report)
    dataset, splits, chosen, data_dir = run_dataset(run, data, split, batch_size, max_pixels)
    model, extra = run.model, dict(extra or {})
    if calibrate:
        from kerastl.calibration import split_calibration

        source = model_or_run if isinstance(model_or_run, str | os.PathLike) else None
        found = calibrate_run(run, model_file=source if source and os.path.isfile(source)
                              else None, batch_size=batch_size, max_pixels=max_pixels,
                              plot_dir=output, plot=output is not None, update_report=False)
        extra["calibration"] = {**found["record"], "evaluated": {
            "split": chosen, **split_calibration(model, dataset, found["temperature"])}}
        model = found["model"]
    return evaluate_classifier(
        model, dataset, splits.class_names, output=output, split=chosen, errors=errors,
        tta=tta, extra={"data_dir": str(data_dir), "kind": run_kind(run),
                        "skipped_files": [list(s) for s in splits.skipped], **extra})


def run_kind(run) -> str:
    """``"image"`` or ``"text"``: what the run's model takes."""
    from kerastl.models import contract_of

    return contract_of(run.model)["kind"]


def run_dataset(run, data=None, split: str = "auto", batch_size: int = 32,
                max_pixels: int | None = None):
    """``(dataset, splits, split, data_dir)``: a split of ``data`` (default: the run's own
    folder), cut as :func:`evaluate` describes, in a fixed order."""
    from kerastl.data.folders import image_folder
    from kerastl.export.signatures import model_image_size
    from kerastl.models import contract_of

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
    if contract["kind"] == "text":
        from kerastl.data.text import text_folder

        splits = text_folder(data_dir, validation_split=fraction, seed=seed,
                             batch_size=batch_size, shuffle=False)
    else:
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
    return dataset, splits, chosen, data_dir


# -- calibrate ---------------------------------------------------------------


def calibrate_run(run, *, model_file=None, batch_size: int = 32,
                  max_pixels: int | None = None, plot_dir=None, plot: bool = True,
                  update_report: bool = True) -> dict:
    """Calibrate a training run on its own validation split (``kerastl train/evaluate
    --calibrate``) and write the calibrated model beside the run's model.

    Args:
        run: a :class:`kerastl.Run`, a run folder or a ``.keras`` path with its
            training ``report.json`` beside it (it says where the data is).
        model_file: the ``.keras`` file the calibrated one is written beside
            (``<name>.calibrated.keras``); default: the run's model file.
        batch_size: images (or texts) per batch.
        max_pixels: largest image a file may declare (default: the run's).
        plot_dir: folder for ``reliability.png``; default: the run's folder.
        plot: write ``reliability.png`` (before / after).
        update_report: add ``"calibration"`` to the run's ``report.json``.

    Returns:
        ``{"temperature", "model" (the calibrated model), "record"}``; ``record`` is what
        the report keeps: ``T``, the fitting split's figures, the test split's (when the
        data has ``test/``) and the files written.
    """
    from kerastl.calibration import RELIABILITY_FILE, calibrate, calibrated_model_path
    from kerastl.calibration import split_calibration as figures
    from kerastl.runs import REPORT_FILE
    from kerastl.training.run import MODEL_FILE, save_model_atomically

    if model_file is None and isinstance(run, str | os.PathLike) and os.path.isfile(run):
        model_file = run
    run = as_run(run)
    model_file = pathlib.Path(model_file) if model_file else _model_file(run, MODEL_FILE)
    val, splits, _, data_dir = run_dataset(run, None, "val", batch_size, max_pixels)
    folder = pathlib.Path(plot_dir) if plot_dir is not None else model_file.parent
    if plot:
        folder.mkdir(parents=True, exist_ok=True)
    result = calibrate(run.model, val, plot=folder / RELIABILITY_FILE if plot else None)
    saved = save_model_atomically(result.model, calibrated_model_path(model_file))
    record = {"method": "temperature scaling", "temperature": result.temperature,
              "fit_split": "val", "data_dir": str(data_dir), "bins": result.bins,
              "val": {k: v for k, v in result.to_dict().items()
                      if k not in ("temperature", "bins", "plot")},
              "files": {"reliability": result.plot, "calibrated_model": str(saved)}}
    if splits.test is not None:
        record["test"] = figures(run.model, splits.test, result.temperature)
    if update_report and (model_file.parent / REPORT_FILE).is_file() and run.report:
        from kerastl.reports.report import write_json

        report = dict(run.report, calibration=record)
        report.setdefault("files", {}).update(reliability=result.plot,
                                              calibrated_model=str(saved))
        write_json(report, model_file.parent / REPORT_FILE)
        run.report.clear()
        run.report.update(report)
    return {"temperature": result.temperature, "model": result.model, "record": record}


def _model_file(run, default_name: str):
    """The ``.keras`` file of a run (where the calibrated model goes beside it)."""
    named = run.report.get("files", {}).get("model")
    if named:
        return pathlib.Path(named)
    if run.path is not None and (pathlib.Path(run.path) / default_name).is_file():
        return pathlib.Path(run.path) / default_name
    raise UserInputError("Calibrating a run needs its model file (a run folder or a .keras "
                         "path); for a model in memory use ktl.calibrate(model, val_dataset).")


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
            class_names=None, max_pixels: int | None = None, tta=False) -> list[dict]:
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
        tta: test-time augmentation (images only): ``True``/``"flip"`` averages the
            image and its mirror, ``"crops"`` adds five resized crops (:mod:`kerastl.tta`).

    Returns:
        One row per image, as :func:`prediction_rows`: ``top_k`` classes with
        scores for a classifier, ``outputs`` for a regressor.
    """
    import tensorflow as tf

    from kerastl.export.signatures import decode_images, model_image_size
    from kerastl.models import contract_of
    from kerastl.tta import predict_tta, tta_mode

    views = tta_mode(tta)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise UserInputError(f"top_k must be a positive int. Received: top_k={top_k!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserInputError(f"batch_size must be a positive int. Received: {batch_size!r}")
    model = as_run(model).model
    contract = contract_of(model)
    if contract["kind"] == "text":
        if views is not None:
            raise UserInputError("Test-time augmentation flips and crops images; a text model "
                                 "has none. Leave tta out.")
        return _predict_texts(model, images, contract, top_k, batch_size, class_names)
    size = model_image_size(model)
    names, batches = _prediction_inputs(images, size, max_pixels)
    mode = resize or contract["resize"] or "stretch"
    decode = tf.function(lambda d: decode_images(d, size, mode), autograph=False)
    scores = []
    for batch in batches(batch_size):
        pixels = decode(tf.constant(batch)) if isinstance(batch, list) else batch
        scores.append(predict_tta(model, pixels, views) if views is not None
                      else np.asarray(model.predict(pixels, verbose=0), dtype=np.float32))
    merged = np.concatenate(scores) if scores else np.zeros((0, int(model.output_shape[-1])))
    key = "predictions" if contract["task"] == "regression" else "probabilities"
    return prediction_rows(names, {key: merged}, top_k, class_names or contract["class_names"])


def _predict_texts(model, texts, contract, top_k, batch_size, class_names) -> list[dict]:
    """:func:`predict` for a text model: ``texts`` are strings (or ``.txt`` paths)."""
    import tensorflow as tf

    if isinstance(texts, str | bytes | os.PathLike):
        texts = [texts]
    names, values = [], []
    for i, item in enumerate(texts):
        if isinstance(item, os.PathLike) or (isinstance(item, str) and item.endswith(".txt")
                                             and os.path.isfile(item)):
            names.append(os.fspath(item))
            values.append(open(item, "rb").read())
        elif isinstance(item, str | bytes):
            names.append(i)
            values.append(item.encode("utf-8") if isinstance(item, str) else item)
        else:
            raise UserInputError(f"A text model predicts strings or .txt paths. Received: "
                                 f"{type(item).__name__} at position {i}")
    scores = [np.asarray(model.predict(tf.constant(values[i:i + batch_size], tf.string),
                                       verbose=0), dtype=np.float32)
              for i in range(0, len(values), batch_size)]
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
