"""``kerastl tune CONFIG.yaml``: search space, data and budget in one YAML file.

Top-level keys (all optional except ``data``)::

    project_name: flowers_lite        # folder under `directory` (default: the file's name)
    directory: tuning
    tuner: hyperband                  # hyperband | bayesian | random | grid
    max_epochs: 10
    max_trials: null                  # null: Hyperband's brackets / 10 / whole grid
    objective: val_accuracy
    seed: 0
    weights: imagenet                 # imagenet | none | a weights file
    isolate_trials: false
    executions_per_trial: 1
    factor: 3                         # Hyperband
    backbones: [efficientnet_lite0, mobilenet_v2]
    space:                            # narrow a hyperparameter
      learning_rate: {min: 1.0e-4, max: 1.0e-2, sampling: log}
      unfreeze_groups: [0, 1, 2]
    fixed:                            # fix a hyperparameter
      optimizer: adam
    data:
      source: folder                  # folder | tfds | fashion_mnist
      path: data/flowers              # folder: one subfolder per class
      image_size: 224
      batch_size: 32
      validation_split: 0.2
    export: {name: flowers, base_dir: SavedModels}   # export the best model

Text searches take ``source: text_folder`` (``path``: class subfolders of
``.txt`` files; ``max_per_class``) or ``source: bbc_news`` (the offline BBC News
corpus; ``train_per_class``, ``val_per_class``), no ``image_size``, and text
``backbones`` (default ``[minilm_l6]``); ``sequence_length`` is then a
hyperparameter (see ``tuning/text_bbc_random.yaml``).

Relative paths are relative to the current directory.
"""

from __future__ import annotations

import pathlib
import re

from kerastl.config import DEFAULT_SEED
from kerastl.errors import UserInputError, close_matches
from kerastl.paths import check_name

TOP_KEYS = ("project_name", "directory", "tuner", "max_epochs", "max_trials", "objective",
            "seed", "weights", "isolate_trials", "executions_per_trial", "factor",
            "hyperband_iterations", "backbones", "space", "fixed", "data", "export")
DATA_KEYS = {
    "folder": ("source", "path", "image_size", "batch_size", "validation_split", "seed",
               "augment"),
    "tfds": ("source", "name", "image_size", "batch_size", "data_dir"),
    "fashion_mnist": ("source", "image_size", "train_per_class", "val_per_class",
                      "batch_size", "seed"),
    # text: a folder of .txt class subfolders, or the offline BBC News corpus
    "text_folder": ("source", "path", "batch_size", "validation_split", "seed",
                    "max_per_class"),
    "bbc_news": ("source", "train_per_class", "val_per_class", "batch_size", "seed"),
}
TEXT_SOURCES = ("text_folder", "bbc_news")
EXPORT_KEYS = ("name", "base_dir")


def _unknown(keys, known, where: str) -> None:
    unknown = [k for k in keys if k not in known]
    if unknown:
        hints = [m for k in unknown for m in close_matches(str(k), known)]
        hint = f" Did you mean: {', '.join(hints)}?" if hints else ""
        raise UserInputError(f"Unknown key(s) {unknown} in {where}.{hint} "
                             f"Known: {', '.join(known)}.")


def load_config(path: str | pathlib.Path) -> dict:
    """Read and check a tuning YAML file; returns the config dict.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, not YAML, not a mapping, unknown/missing keys, or a
            project or export name that is not one folder-safe name.
    """
    import yaml

    path = pathlib.Path(path)
    if path.is_dir():
        raise UserInputError(f"Tuning config {path} is a folder; pass a YAML file "
                             "(examples in tuning/, e.g. tuning/random_quick.yaml).")
    if path.exists() and not path.is_file():
        raise UserInputError(f"Tuning config {path} is not a regular file; pass a YAML file.")
    if not path.is_file():
        raise FileNotFoundError(f"Tuning config {path} does not exist.")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserInputError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(config, dict):
        raise UserInputError(f"{path} must hold a mapping of settings (see docs/tuning.md).")
    _unknown(config, TOP_KEYS, str(path))
    data = config.get("data")
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: 'data:' is required, e.g. data: {{source: folder, "
                             "path: my_images, image_size: 224}.")
    source = data.get("source", "folder")
    if source not in DATA_KEYS:
        raise UserInputError(f"{path}: data.source must be one of {', '.join(DATA_KEYS)}. "
                             f"Received: {source!r}")
    _unknown(data, DATA_KEYS[source], f"{path} data ({source})")
    if "image_size" not in data and source not in TEXT_SOURCES:
        raise UserInputError(f"{path}: data.image_size is required (e.g. 224).")
    for key in ("space", "fixed", "export"):
        if key in config and config[key] is not None and not isinstance(config[key], dict):
            raise UserInputError(f"{path}: '{key}:' must be a mapping.")
    if config.get("export"):
        _unknown(config["export"], EXPORT_KEYS, f"{path} export")
        if config["export"].get("name") is not None:
            check_name(config["export"]["name"], what="export.name", kind="model name")
    backbones = config.get("backbones")
    if backbones is None:
        backbones = ["minilm_l6"] if source in TEXT_SOURCES else ["efficientnet_lite0"]
    if isinstance(backbones, str):
        backbones = [backbones]
    if not (isinstance(backbones, list) and backbones
            and all(isinstance(b, str) for b in backbones)):
        raise UserInputError(f"{path}: 'backbones:' must be a backbone name or a list of "
                             f"names, e.g. [efficientnet_lite0]. Received: {backbones!r}")
    config["backbones"] = list(backbones)
    if config.get("project_name") is None:  # the file's name, made folder-safe
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem).lstrip("._-")[:80]
        config["project_name"] = stem or "tuning_project"
    check_name(config["project_name"], what="project_name", kind="project name")
    return config


def _size(value) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise UserInputError(f"data.image_size must be an int or [height, width]. Received: {value!r}")


def load_data(data: dict):
    """The :class:`~kerastl.data.Splits` described by a config's ``data:`` section."""
    import kerastl as ktl

    source = data.get("source", "folder")
    if source in TEXT_SOURCES:
        return _load_text(source, data)
    size = _size(data["image_size"])
    if source == "folder":
        if "path" not in data:
            raise UserInputError("data.path is required for source: folder.")
        return ktl.data.image_folder(data["path"], image_size=size,
                                     batch_size=data.get("batch_size", 32),
                                     validation_split=data.get("validation_split", 0.2),
                                     seed=data.get("seed", DEFAULT_SEED), augment=data.get("augment"))
    if source == "tfds":
        if "name" not in data:
            raise UserInputError("data.name is required for source: tfds.")
        return ktl.data.from_tfds(data["name"], image_size=size,
                                  batch_size=data.get("batch_size", 32),
                                  data_dir=data.get("data_dir"))
    from kerastl.demo import DemoConfig, demo_splits

    demo = DemoConfig(image_size=size[0], train_per_class=data.get("train_per_class", 100),
                      val_per_class=data.get("val_per_class", 50), test_per_class=1,
                      batch_size=data.get("batch_size", 32), seed=data.get("seed", 0))
    return demo_splits(demo)


def _load_text(source: str, data: dict):
    """The :class:`~kerastl.data.TextSplits` of a text ``data:`` section."""
    import kerastl as ktl

    if source == "text_folder":
        if "path" not in data:
            raise UserInputError("data.path is required for source: text_folder.")
        return ktl.data.text_folder(data["path"], batch_size=data.get("batch_size", 32),
                                    validation_split=data.get("validation_split", 0.2),
                                    seed=data.get("seed", DEFAULT_SEED),
                                    max_per_class=data.get("max_per_class"))
    from kerastl.text.demo import TextDemoConfig, demo_text_splits

    demo = TextDemoConfig(train_per_class=data.get("train_per_class", 20),
                          val_per_class=data.get("val_per_class", 10), test_per_class=0,
                          batch_size=data.get("batch_size", 16), seed=data.get("seed", 0))
    return demo_text_splits(demo)


def search_kwargs(config: dict) -> dict:
    """Keyword arguments of :func:`kerastl.tuning.search` from a config."""
    weights = config.get("weights", "imagenet")
    if isinstance(weights, str) and weights.lower() == "none":
        weights = None
    kwargs = {"backbones": tuple(config["backbones"]), "weights": weights,
              "project_name": config["project_name"],
              "space": config.get("space") or None, "fixed": config.get("fixed") or None}
    for key in ("directory", "tuner", "max_epochs", "max_trials", "objective", "seed",
                "isolate_trials", "executions_per_trial", "factor", "hyperband_iterations"):
        if config.get(key) is not None:
            kwargs[key] = config[key]
    return kwargs
