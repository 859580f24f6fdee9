"""L2 penalty on the kernels of an already built model (``l2=`` for fine-tuning),
and L2-SP: a penalty on the distance from the pretrained weights (``l2_sp=``).

``ktl.build_classifier`` builds its head without regularisers; this adds an
L2 penalty afterwards, to the head only (the default) or to the backbone's
kernels too, in a way that ``model.fit`` counts (``model.losses``) and that
survives ``model.save`` / ``load_model`` (the layer's config records it).
"""

from __future__ import annotations

import keras

from kerastl._compat import flatten_layers
from kerastl.errors import UserInputError

_KERNEL_LAYERS = (keras.layers.Dense, keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


def _kernel_layers(model, scope: str) -> list:
    from kerastl.freezing import find_backbone

    layers = [layer for layer in flatten_layers(model, include_self=False)
              if isinstance(layer, _KERNEL_LAYERS)]
    if scope == "all":
        return layers
    backbone, _spec = find_backbone(model)
    inside = {id(layer) for layer in flatten_layers(backbone, include_self=True)}
    return [layer for layer in layers if id(layer) not in inside]


def add_l2(model: keras.Model, l2: float, *, scope: str = "head") -> keras.Model:
    """Add an L2 penalty ``l2 * sum(kernel ** 2)`` to the kernels of ``model``.

    Args:
        model: a built model containing a kerastl backbone (e.g. from
            ``build_classifier``); changed in place. Compile it afterwards.
        l2: penalty factor (> 0); typical values 1e-5 .. 1e-3.
        scope: ``"head"`` (layers outside the backbone) or ``"all"``
            (also the backbone's convolution and dense kernels; their penalty
            counts only while they are trainable).

    Returns:
        ``model``.

    Raises:
        ValueError: bad ``l2`` or ``scope``, or no kernel to regularise.

    Example:
        >>> model = add_l2(ktl.build_classifier("efficientnet_lite0", 10), 1e-4)
    """
    if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not l2 > 0:
        raise UserInputError(f"l2 must be a positive number. Received: l2={l2!r}")
    if scope not in ("head", "all"):
        raise UserInputError(f"scope must be 'head' or 'all'. Received: scope={scope!r}")
    layers = _kernel_layers(model, scope)
    if not layers:
        raise UserInputError(f"Model '{model.name}' has no {scope} kernel to regularise.")
    for layer in layers:
        regularizer = keras.regularizers.L2(float(l2))
        attribute = ("depthwise_regularizer" if isinstance(layer, keras.layers.DepthwiseConv2D)
                     else "kernel_regularizer")
        setattr(layer, attribute, regularizer)  # recorded by get_config: survives saving
        layer.kernel.regularizer = regularizer  # counted in model.losses now
    return model


class L2SP(keras.regularizers.Regularizer):
    """``alpha * sum((w - w0) ** 2)``: the L2-SP penalty of one variable.

    ``w0`` (``anchor``) is a non-trainable variable holding the starting point
    (the pretrained value), so it can be reassigned when a run resumes.
    """

    def __init__(self, alpha: float, anchor, previous=None):
        self.alpha = float(alpha)
        self.anchor = anchor
        self.previous = previous  # a regulariser already on the variable (add_l2): kept

    def __call__(self, x):
        penalty = self.alpha * keras.ops.sum(keras.ops.square(x - self.anchor))
        return penalty if self.previous is None else penalty + self.previous(x)

    def get_config(self):  # the anchor is state, not config
        return {"alpha": self.alpha}


class L2SPPenalty:
    """The L2-SP penalty attached to a model's variables by :func:`add_l2_sp`.

    Attributes:
        variables: the penalised variables (trainable when attached).
        anchors: their starting values ``w0``, non-trainable variables.
    """

    def __init__(self, model, variables: list, anchors: list, alpha: float):
        self.model, self.variables, self.anchors, self.alpha = model, variables, anchors, alpha

    def value(self) -> float:
        """The current penalty ``alpha * sum ||w - w0||^2`` over every anchored variable."""
        total = sum(float(keras.ops.sum(keras.ops.square(v - a)))
                    for v, a in zip(self.variables, self.anchors, strict=True))
        return self.alpha * total

    def anchor_arrays(self) -> list:
        """``w0`` as numpy arrays (what a checkpoint stores)."""
        return [keras.ops.convert_to_numpy(a) for a in self.anchors]

    def remove(self) -> None:
        """Detach the penalty: each variable gets back the regulariser it had before."""
        for variable in self.variables:
            if isinstance(variable.regularizer, L2SP):
                variable.regularizer = variable.regularizer.previous
        # A traced train/test step holds the penalty: the next fit traces anew.
        self.model.train_function = self.model.test_function = None


def add_l2_sp(model: keras.Model, alpha: float, *, anchors: list | None = None) -> L2SPPenalty:
    """Penalise the backbone's trainable weights for moving from where they start (L2-SP).

    Adds ``alpha * sum ||w - w0||^2`` over the backbone variables that are
    trainable now (call it after unfreezing) to ``model.losses``, with ``w0``
    their current values (the pretrained ones at the start of fine-tuning)
    held in non-trainable variables. Frozen variables never count. The
    layers' configs are not changed: a saved model does not carry the penalty
    (:meth:`L2SPPenalty.remove` detaches it; ``fine_tune`` does at its end).

    Args:
        model: a model containing a kerastl backbone, some of it unfrozen.
        alpha: penalty factor (> 0), e.g. 1e-3.
        anchors: ``w0`` from a checkpoint (:meth:`L2SPPenalty.anchor_arrays`),
            one array per trainable backbone variable; default their current values.

    Returns:
        An :class:`L2SPPenalty` (its ``value()``, ``anchor_arrays()``, ``remove()``).

    Raises:
        ValueError: bad ``alpha``, no trainable backbone weight, or ``anchors``
            that do not match the trainable backbone variables.

    Example:
        >>> ktl.unfreeze(model)
        >>> penalty = add_l2_sp(model, 1e-3)  # 0 now; grows as training moves the weights
    """
    from kerastl.freezing import find_backbone

    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise UserInputError(f"l2_sp must be a positive number. Received: l2_sp={alpha!r}")
    backbone, _spec = find_backbone(model)
    variables = list(backbone.trainable_weights)
    if not variables:
        raise UserInputError(f"L2-SP: the backbone of '{model.name}' has no trainable weight; "
                             "unfreeze some of it first.")
    if anchors is not None and [tuple(a.shape) for a in anchors] != [
            tuple(v.shape) for v in variables]:
        raise UserInputError("L2-SP: the saved starting weights do not match the backbone's "
                             f"trainable weights ({len(anchors)} vs {len(variables)} arrays).")
    values = anchors if anchors is not None else [keras.ops.convert_to_numpy(v)
                                                  for v in variables]
    anchor_vars = []
    for variable, value in zip(variables, values, strict=True):
        anchor = keras.Variable(value, dtype=variable.dtype, trainable=False,
                                name=f"{variable.name}_w0")
        previous = variable.regularizer
        if isinstance(previous, L2SP):  # attached twice: replace, do not stack
            previous = previous.previous
        variable.regularizer = L2SP(alpha, anchor, previous)
        anchor_vars.append(anchor)
    return L2SPPenalty(model, variables, anchor_vars, float(alpha))
