"""Handles and specs of ``"hub:<handle>"`` backbones (TF Hub, Kaggle Models, local SavedModels).

A Hub module is not in the registry table: its spec is derived from the
handle and the SavedModel itself.

* Handles: a local SavedModel folder, or a URL (``https://tfhub.dev/...``,
  ``https://www.kaggle.com/models/...``, ``gs://...``) that ``tensorflow_hub``
  downloads into its cache (``$TFHUB_CACHE_DIR``). Offline, the error names
  the handle and how to use a local copy.

* Input convention: a small table of well-known handles gives the native
  image size and the value range the module expects. Anything else follows
  TF Hub's common signature for images: float32 RGB in ``[0, 1]``
  (``"unit"``) at 224 px.
* Layer groups: a Hub module has variables, not Keras layers. Variables that
  share a name up to the last ``/`` form one *unit* (``"block1/conv"``);
  consecutive units with the same top-level scope (the first name component
  after any prefix shared by all, e.g. ``"efficientnet-b0/"``) form a group.
  More than :data:`MAX_GROUPS` scopes are merged: the first and last stay on
  their own (stem, head) and the middle ones are split evenly. A scope named
  ``head`` becomes the group ``top`` (as in the Keras specs), since ``head``
  is the task head's row in :func:`kerastl.trainable_report`.
  ``group_cuts`` hold the regex of each group's first unit, so the
  registry's cut semantics still describe the split.
"""

from __future__ import annotations

import os
import pathlib
import re
from dataclasses import dataclass

import numpy as np

from kerastl.backbones.spec import BackboneSpec
from kerastl.errors import UserInputError, WeightsUnavailableError

#: Most groups a Hub backbone is split into.
MAX_GROUPS = 8
DEFAULT_IMAGE_SIZE = 224
DEFAULT_PREPROCESSING = "unit"  # TF Hub's image convention: [0, 1]

_BN_VARIABLES = ("moving_mean", "moving_variance")

_EFFNET_V2_SIZES = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "s": 384, "m": 480,
                    "l": 480, "xl": 512}
_EFFNET_SIZES = {f"b{i}": s for i, s in enumerate((224, 240, 260, 300, 380, 456, 528, 600))}


@dataclass(frozen=True)
class _KnownHandle:
    pattern: str          # searched in the lower-cased handle
    preprocessing: str
    image_size: int = 0   # 0: read from the handle (``size`` group or a size table)
    feature_dim: int = 0  # 0: unknown until the module is loaded


# Well-known TF Hub / Kaggle image modules (TF2 SavedModels). Order matters:
# the first match wins.
_KNOWN = (
    _KnownHandle(r"mobilenet[-_]v2[-_/](tensorflow2/)?\d+[-_](?P<size>\d{2,3})", "unit"),
    _KnownHandle(r"mobilenet[-_]v3[-_/](tensorflow2/)?(small|large)[-_]\d+[-_](?P<size>\d{2,3})",
                 "unit"),
    _KnownHandle(r"efficientnet[-_]v2[-_/].*?(?P<effv2>b[0-3]|xl|s|m|l)(/|-|_|$)", "unit"),
    _KnownHandle(r"efficientnet/(tensorflow2/)?(?P<eff>b[0-7])[-/]", "unit"),
    _KnownHandle(r"inception[-_]resnet[-_]v2", "unit", 299, 1536),
    _KnownHandle(r"inception[-_]v3", "unit", 299, 2048),
    _KnownHandle(r"resnet[-_]v[12][-_/](tensorflow2/)?(50|101|152)", "unit", 224, 2048),
    _KnownHandle(r"/bit/(tensorflow2/)?(m|s)-r50x1", "unit", 224, 2048),
    _KnownHandle(r"/bit/(tensorflow2/)?(m|s)-r101x1", "unit", 224, 2048),
    _KnownHandle(r"vit[-_]?[bsl]\d+", "tf", 224),
)


@dataclass(frozen=True)
class HubInputSpec:
    """What a Hub module expects: native size, value range, feature size."""

    image_size: int
    preprocessing: str
    feature_dim: int
    known: bool


def handle_of(name: str) -> str:
    """The handle part of ``"hub:<handle>"`` (a local path or a URL)."""
    if not isinstance(name, str) or not name.startswith("hub:") or not name[4:].strip():
        raise UserInputError(
            "A Hub backbone name looks like 'hub:<handle>', e.g. "
            "'hub:https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5' "
            f"or 'hub:/path/to/savedmodel'. Received: name={name!r}"
        )
    return name[4:].strip()


def is_remote(handle: str) -> bool:
    """True for URL handles (tfhub.dev, Kaggle, gs://), False for local paths."""
    return "://" in handle


def hub_cache_dir() -> str:
    """TF Hub's download cache: ``$TFHUB_CACHE_DIR`` or its default under the temp dir."""
    import tempfile

    return os.environ.get("TFHUB_CACHE_DIR") or os.path.join(tempfile.gettempdir(),
                                                             "tfhub_modules")


def resolve_handle(handle: str) -> str:
    """Local folder of a Hub handle: a local path as is, a URL through TF Hub's cache.

    Raises:
        WeightsUnavailableError: the folder does not exist, is not a
            SavedModel, or the download failed (offline); the message names the
            handle and how to use a local copy.
    """
    if is_remote(handle):
        import tensorflow as tf
        import tensorflow_hub as hub

        try:
            path = hub.resolve(handle)
        except (OSError, ValueError, tf.errors.OpError) as err:
            reason = " ".join(str(getattr(err, "reason", err)).split())
            raise WeightsUnavailableError(
                f"Could not download Hub module '{handle}' ({type(err).__name__}: {reason}). "
                "Without network access: download it on a machine that has it (e.g. "
                f"python -c \"import tensorflow_hub as hub; print(hub.resolve('{handle}'))\" "
                "or the model page's download button), copy the SavedModel folder here and "
                "use 'hub:/path/to/savedmodel'; or set TFHUB_CACHE_DIR to a cache that "
                f"already holds it (now: {hub_cache_dir()})."
            ) from err
    else:
        path = os.path.expanduser(handle)
        if not os.path.isdir(path):
            raise WeightsUnavailableError(
                f"Hub handle '{handle}' is neither a URL nor an existing folder. Give "
                "'hub:https://tfhub.dev/...', 'hub:https://www.kaggle.com/models/...' or "
                "'hub:/path/to/savedmodel' (an unpacked TF2 SavedModel folder)."
            )
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise WeightsUnavailableError(
            f"Hub handle '{handle}' ({path}) is not a TF2 SavedModel folder: no saved_model.pb. "
            "Point it at the folder that holds saved_model.pb and variables/."
        )
    return path


def normalize_handle(handle: str) -> str:
    """URLs as given; local paths absolute, so a saved model reloads from any folder."""
    if is_remote(handle):
        return handle
    return os.path.abspath(os.path.expanduser(handle))


def input_spec(handle: str) -> HubInputSpec:
    """Native image size, preprocessing mode and feature size of a handle.

    Uses the table of well-known modules; anything else gets TF Hub's image
    convention (``[0, 1]``, 224 px, feature size found when loaded).
    """
    text = handle.lower()
    for known in _KNOWN:
        match = re.search(known.pattern, text)
        if not match:
            continue
        groups = match.groupdict()
        size = known.image_size
        if groups.get("size"):
            size = int(groups["size"])
        elif groups.get("effv2"):
            size = _EFFNET_V2_SIZES[groups["effv2"]]
        elif groups.get("eff"):
            size = _EFFNET_SIZES[groups["eff"]]
        return HubInputSpec(size or DEFAULT_IMAGE_SIZE, known.preprocessing,
                            known.feature_dim, True)
    return HubInputSpec(DEFAULT_IMAGE_SIZE, DEFAULT_PREPROCESSING, 0, False)


def unit_name(variable_name: str) -> str:
    """``"block1/conv/kernel:0"`` -> ``"block1/conv"`` (the variable's layer)."""
    name = re.sub(r":\d+$", "", variable_name)
    return name.rsplit("/", 1)[0] if "/" in name else name


def is_bn_variable(variable_name: str) -> bool:
    """True for BatchNormalization moving statistics."""
    return re.sub(r":\d+$", "", variable_name).rsplit("/", 1)[-1] in _BN_VARIABLES


def group_units(variable_names: list[str]) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    """Split a module's variables into ordered units and groups.

    Args:
        variable_names: the module's variable names, input side first.

    Returns:
        ``(groups, units)``: ordered group names, and ``(unit, group)`` pairs in
        variable order (one per distinct unit).
    """
    units: list[str] = []
    for name in variable_names:
        unit = unit_name(name)
        if unit not in units:
            units.append(unit)
    if not units:
        return ("backbone",), []
    parts = [u.split("/") for u in units]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    if all(len(p) == common + 1 for p in parts):  # flat Keras names: "block1_conv"
        scopes = [re.split(r"[_.]", p[common])[0] or p[common] for p in parts]
    else:
        scopes = [p[common] for p in parts]
    runs: list[tuple[str, list[str]]] = []  # consecutive units of one scope
    for unit, scope in zip(units, scopes, strict=True):
        if runs and runs[-1][0] == scope:
            runs[-1][1].append(unit)
        else:
            runs.append((scope, [unit]))
    if len(runs) > MAX_GROUPS:
        middle = np.array_split(np.arange(1, len(runs) - 1), MAX_GROUPS - 2)
        merged = [runs[0]]
        for idx in middle:
            first, last = runs[idx[0]][0], runs[idx[-1]][0]
            label = first if first == last else f"{first}-{last}"
            merged.append((label, [u for i in idx for u in runs[i][1]]))
        runs = merged + [runs[-1]]
    names: list[str] = []
    pairs: list[tuple[str, str]] = []
    for scope, run_units in runs:
        if scope == "head":  # trainable_report's row for the task head is "head"
            scope = "top"
        label, k = scope, 2
        while label in names:  # a scope that comes back later gets a suffix
            label, k = f"{scope}_{k}", k + 1
        names.append(label)
        pairs.extend((u, label) for u in run_units)
    return tuple(names), pairs


def spec_from_variables(name: str, variable_names: list[str], *, image_size: int,
                        preprocessing: str, feature_dim: int) -> BackboneSpec:
    """A :class:`BackboneSpec` for a Hub module with these variables."""
    groups, pairs = group_units(variable_names)
    firsts: dict[str, str] = {}
    for unit, group in pairs:
        firsts.setdefault(group, unit)
    cuts = tuple("^" + re.escape(firsts[g]) + "$" for g in groups[1:])
    return BackboneSpec(
        name=name, family="hub", default_image_size=image_size, preprocessing=preprocessing,
        feature_dim=feature_dim, groups=groups, weights=("imagenet",), group_cuts=cuts,
        builder=f"hub:{handle_of(name)}",
        # A module does not say what it accepts; one that cannot take a size fails itself.
        min_image_size=1,
    )


def saved_model_variables(path: str | os.PathLike) -> tuple[list[str], int]:
    """Float variable names (in the module's own order) and output size, read
    from ``saved_model.pb`` without loading the graph.

    The output size is the last dimension of ``__call__``'s output, or 0 when
    the module has no ``__call__`` or returns several outputs.
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    pb = pathlib.Path(path) / "saved_model.pb"
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(pb.read_bytes())
    except OSError as err:
        raise WeightsUnavailableError(
            f"{path} is not a SavedModel directory (no readable saved_model.pb): {err}"
        ) from err
    graph = proto.meta_graphs[0].object_graph_def
    nodes = graph.nodes
    children = {c.local_name: c.node_id for c in nodes[0].children}
    if "variables" in children:
        items = sorted(nodes[children["variables"]].children, key=lambda c: int(c.local_name))
        variables = [nodes[c.node_id].variable for c in items]
    else:
        variables = [n.variable for n in nodes if n.WhichOneof("kind") == "variable"]
    names = [v.name for v in variables if tf.dtypes.as_dtype(v.dtype).is_floating]
    dim = 0
    if "__call__" in children:
        functions = nodes[children["__call__"]].function.concrete_functions
        if functions:
            out = graph.concrete_functions[functions[0]].output_signature
            if out.WhichOneof("kind") == "tensor_spec_value":
                dims = out.tensor_spec_value.shape.dim
                dim = max(int(dims[-1].size), 0) if dims else 0
    return names, dim


def hub_spec(name: str, *, image_size: int | None = None,
             preprocessing: str | None = None) -> BackboneSpec:
    """Return a :class:`BackboneSpec` for a ``"hub:<handle>"`` name.

    Remote handles are resolved (downloaded into TF Hub's cache,
    ``$TFHUB_CACHE_DIR``) because the groups come from the module's
    variables; only ``saved_model.pb`` is read, the graph is not loaded.

    Args:
        name: ``"hub:<local path or URL>"``.
        image_size: override of the native size from the table of known handles.
        preprocessing: override of the expected value range (a
            :class:`kerastl.backbones.Preprocess` mode).

    Raises:
        ValueError: malformed name.
        FileNotFoundError: the handle cannot be found or downloaded.
    """
    handle = handle_of(name)
    known = input_spec(handle)
    names, dim = saved_model_variables(resolve_handle(handle))
    return spec_from_variables(
        name, names, image_size=image_size or known.image_size,
        preprocessing=preprocessing or known.preprocessing, feature_dim=known.feature_dim or dim,
    )
