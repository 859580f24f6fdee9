"""L2 penalty on the kernels of an already built model (``l2=`` for fine-tuning).

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
