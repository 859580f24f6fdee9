"""Freeze and unfreeze backbones by layer group, fraction or layer name.

Two different things are easy to confuse in Keras: ``layer.trainable``
(whether the optimizer updates its weights) and ``training`` (whether
BatchNormalization uses batch statistics and updates its moving averages).
Keras 3's BatchNormalization runs in inference mode whenever
``trainable=False``, so kerastl keeps every BatchNorm layer non-trainable
unless ``train_bn=True``: unfreezing a block never destroys the pretrained
statistics by accident.

After changing trainable flags, a model must be compiled again before
training (``fine_tune`` does this for you).
"""

from __future__ import annotations

import dataclasses
import math
import re

import keras

from kerastl._compat import flatten_layers
from kerastl.backbones.preprocessing import Preprocess
from kerastl.backbones.registry import BackboneSpec, backbone_spec
from kerastl.errors import UserInputError, close_matches

HEAD_GROUP = "head"


@dataclasses.dataclass
class BackboneUnit:
    """One freezable unit of a backbone: a layer (or a variable set of a Hub model)."""

    name: str
    group: str
    layer: keras.layers.Layer
    is_bn: bool

    def variables(self) -> list:
        return list(self.layer.weights)

    def set_trainable(self, value: bool, train_bn: bool) -> None:
        _set_layer_trainable(self.layer, value, train_bn)


def _is_bn(layer) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization)


def _set_layer_trainable(layer, value: bool, train_bn: bool) -> None:
    layer.trainable = value
    if value and not train_bn:
        for sub in flatten_layers(layer, include_self=True):
            if _is_bn(sub):
                sub.trainable = False


def _preprocess_layer(model) -> Preprocess | None:
    for layer in getattr(model, "layers", []):
        if isinstance(layer, Preprocess) and layer.backbone:
            return layer
    return None


def find_backbone(model: keras.Model):
    """Return ``(backbone, spec)`` for a kerastl backbone or a model containing one.

    Raises:
        ValueError: no kerastl backbone is found in ``model``.
    """
    hub = _hub_layer(model)
    if hub is not None:
        return hub, hub.spec
    described = _self_described(model)
    if described is not None:
        return described, described.kerastl_spec
    if _preprocess_layer(model) is not None:
        return model, backbone_spec(_preprocess_layer(model).backbone)
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model):
            hub = _hub_layer(layer)  # before Preprocess: a Hub backbone has both
            if hub is not None:
                return hub, hub.spec
            if _preprocess_layer(layer) is not None:
                return layer, backbone_spec(_preprocess_layer(layer).backbone)
    raise UserInputError(
        f"Model '{getattr(model, 'name', model)}' contains no kerastl backbone. Build it with "
        "ktl.build_backbone / ktl.build_classifier so freezing knows its layer groups."
    )


def _self_described(model):
    """A backbone that carries its own spec (text backbones), in ``model`` or nested."""
    for candidate in (model, *getattr(model, "layers", [])):
        if getattr(type(candidate), "kerastl_spec", None) is not None:
            return candidate
    return None


def _hub_layer(model):
    if getattr(model, "is_kerastl_hub_backbone", False):
        return model
    for layer in getattr(model, "layers", []):
        if getattr(layer, "is_kerastl_hub_backbone", False):
            return layer
    return None


def backbone_units(backbone, spec: BackboneSpec) -> list[BackboneUnit]:
    """The backbone's weighted units in order (input side first), with their group."""
    if getattr(backbone, "is_kerastl_hub_backbone", False):
        return backbone.freezing_units()
    cuts = [(c[1:], True) if c.startswith(">") else (c, False) for c in spec.group_cuts]
    group_index, advance_after = 0, False
    units = []
    for layer in backbone.layers:
        if advance_after:
            group_index, advance_after = group_index + 1, False
        if group_index < len(cuts):
            pattern, after = cuts[group_index]
            if re.search(pattern, layer.name):
                if after:
                    advance_after = True
                else:
                    group_index += 1
        if layer.weights and not isinstance(layer, (Preprocess, keras.layers.InputLayer)):
            units.append(BackboneUnit(layer.name, spec.groups[group_index], layer, _is_bn(layer)))
    return units


def layer_groups(model: keras.Model) -> dict[str, list[str]]:
    """``{group: [layer names]}`` of the backbone in ``model``, input side first."""
    backbone, spec = find_backbone(model)
    groups: dict[str, list[str]] = {g: [] for g in spec.groups}
    for unit in backbone_units(backbone, spec):
        groups[unit.group].append(unit.name)
    return groups


def freeze(model: keras.Model) -> keras.Model:
    """Freeze the backbone; the head (everything else) stays trainable.

    BatchNormalization layers of the backbone run in inference mode.

    Returns:
        ``model`` (changed in place). Compile it again before training.
    """
    backbone, _ = find_backbone(model)
    model.trainable = True
    backbone.trainable = False
    return model


def unfreeze(model: keras.Model, *, groups: int | None = None, fraction: float | None = None,
             from_layer: str | None = None, train_bn: bool = False,
             lora_rank: int | None = None) -> keras.Model:
    """Make the top of the backbone trainable (and the head).

    Give at most one of ``groups``, ``fraction`` and ``from_layer``; with none,
    the whole backbone is unfrozen.

    Args:
        model: a backbone or a model containing one.
        groups: unfreeze the top ``groups`` groups of ``backbone_spec(...).groups``.
        fraction: unfreeze the top ``fraction`` (0 < f <= 1) of the weighted layers.
        from_layer: unfreeze this layer and everything above it.
        train_bn: also train BatchNormalization (batch statistics, moving
            averages updated). Default ``False``: BatchNorm stays frozen and in
            inference mode.
        lora_rank: text (transformer) backbones: instead of training the
            unfrozen layers' weights, add rank-``lora_rank`` LoRA adapters
            (``keras.layers.Dense.enable_lora``) to their attention query and
            value projections and train only those (Hu et al., 2021). The
            adapters are saved in ``.keras`` files and exported SavedModels.

    Returns:
        ``model`` (changed in place). Compile it again before training.

    Raises:
        ValueError: more than one selector, or a selector out of range.
    """
    chosen = [k for k, v in (("groups", groups), ("fraction", fraction),
                             ("from_layer", from_layer)) if v is not None]
    if len(chosen) > 1:
        raise UserInputError(
            f"Give only one of groups=, fraction= or from_layer=. Received: {', '.join(chosen)}"
        )
    backbone, spec = find_backbone(model)
    units = backbone_units(backbone, spec)
    start = _start_index(units, spec, groups, fraction, from_layer)
    model.trainable = True
    backbone.trainable = True
    for i, unit in enumerate(units):
        unit.set_trainable(i >= start, train_bn)
    if not train_bn:
        for unit in units:
            if unit.is_bn:
                unit.set_trainable(False, False)
    if lora_rank is not None:
        _train_lora_only(units[start:], spec, lora_rank)
    return model


#: The projections of a transformer layer that get LoRA adapters (as in the LoRA paper).
LORA_TARGETS = ("query", "value")


def _train_lora_only(units, spec, rank) -> None:
    """Enable LoRA on the attention projections of ``units``; only the adapters train."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise UserInputError(f"lora_rank must be a positive int. Received: lora_rank={rank!r}")
    adapted = 0
    for unit in units:
        targets = [getattr(unit.layer, name, None) for name in LORA_TARGETS]
        targets = [t for t in targets if isinstance(t, keras.layers.Dense)]
        for dense in targets:
            if not getattr(dense, "lora_enabled", False):
                dense.enable_lora(rank)
            elif dense.lora_rank != rank:
                raise UserInputError(
                    f"Layer '{unit.name}' already has LoRA rank {dense.lora_rank}; "
                    f"received lora_rank={rank}.")
        adapted += len(targets)
        # Layer.trainable resets every variable's flag, so this comes last.
        for variable in unit.variables():
            variable.trainable = "lora_kernel" in variable.path
    if not adapted and units:
        raise UserInputError(
            f"lora_rank needs a transformer backbone (attention query/value projections); "
            f"backbone '{spec.name}' has none. Received: lora_rank={rank}")


def _start_index(units, spec, groups, fraction, from_layer) -> int:
    if groups is not None:
        n = len(spec.groups)
        if isinstance(groups, bool) or not isinstance(groups, int) or not 0 <= groups <= n:
            raise UserInputError(
                f"groups must be an int from 0 to {n} (the backbone '{spec.name}' has groups "
                f"{', '.join(spec.groups)}). Received: groups={groups!r}"
            )
        keep = set(spec.groups[n - groups:]) if groups else set()
        for i, unit in enumerate(units):
            if unit.group in keep:
                return i
        return len(units)
    if fraction is not None:
        if not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise UserInputError(
                f"fraction must be a number in (0, 1]. Received: fraction={fraction!r}"
            )
        return len(units) - math.ceil(fraction * len(units))
    if from_layer is not None:
        names = [u.name for u in units]
        if from_layer in names:
            return names.index(from_layer)
        for i, name in enumerate(names):  # Hub units match by variable-name prefix
            if name.startswith(from_layer):
                return i
        matches = close_matches(from_layer, names)
        hint = f" Close matches: {', '.join(matches)}." if matches else ""
        raise UserInputError(
            f"No weighted layer named '{from_layer}' in backbone '{spec.name}'.{hint} "
            f"Received: from_layer={from_layer!r}"
        )
    return 0


def trainable_report(model: keras.Model) -> list[dict]:
    """One row per layer group (backbone groups, then ``"head"``).

    Each row: ``group``, ``trainable_params``, ``total_params``, ``frozen_bn``
    (True when every BatchNorm in the group is frozen, i.e. in inference
    mode), ``bn_layers``.
    """
    backbone, spec = find_backbone(model)
    trainable_ids = {id(v) for v in model.trainable_weights}
    rows = {g: {"group": g, "trainable_params": 0, "total_params": 0, "frozen_bn": True,
                "bn_layers": 0} for g in spec.groups}
    seen: set[int] = set()
    for unit in backbone_units(backbone, spec):
        row = rows[unit.group]
        for v in unit.variables():
            seen.add(id(v))
            size = int(math.prod(v.shape))
            row["total_params"] += size
            if id(v) in trainable_ids:
                row["trainable_params"] += size
        if hasattr(unit, "bn_frozen"):  # a Hub unit: a variable set, not a Keras layer
            if unit.is_bn:
                row["bn_layers"] += 1
                row["frozen_bn"] = row["frozen_bn"] and unit.bn_frozen()
            continue
        for sub in flatten_layers(unit.layer, include_self=True):
            if _is_bn(sub):
                row["bn_layers"] += 1
                if sub.trainable and _effectively_trainable(sub, trainable_ids):
                    row["frozen_bn"] = False
    head = {"group": HEAD_GROUP, "trainable_params": 0, "total_params": 0, "frozen_bn": True,
            "bn_layers": 0}
    if model is not backbone:
        for v in model.weights:
            if id(v) in seen:
                continue
            size = int(math.prod(v.shape))
            head["total_params"] += size
            if id(v) in trainable_ids:
                head["trainable_params"] += size
    return list(rows.values()) + ([head] if model is not backbone else [])


def _effectively_trainable(layer, trainable_ids) -> bool:
    return any(id(v) in trainable_ids for v in layer.weights) or not layer.weights


def format_report(rows: list[dict]) -> str:
    """Render :func:`trainable_report` rows as a text table."""
    lines = [f"{'group':<16}{'trainable':>12}{'total':>12}  frozen_bn"]
    for r in rows:
        lines.append(f"{r['group']:<16}{r['trainable_params']:>12,}{r['total_params']:>12,}  "
                     f"{r['frozen_bn']}")
    return "\n".join(lines)
