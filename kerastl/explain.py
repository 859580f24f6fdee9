"""Grad-CAM (Selvaraju et al., 2017): where in an image a convolutional classifier looks.

:func:`grad_cam` weights the last 4-D activation inside the backbone (the last
convolutional feature map, before pooling) by the gradient of the class's logit
averaged over space, keeps the positive part, resizes it to the image and
scales each map to ``[0, 1]``. The logit is exact: the ``"predictions"`` layer's
input times its kernel plus its bias (not the probability, which saturates).

kerastl's task models are a chain (input, optional augmentation, the backbone
nested as one layer, head, ``"predictions"``), so the graph from the input to
the feature map and the head's input is rebuilt by calling the same layers (no
weights are copied) and checked to answer like the model.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from kerastl.errors import UserInputError


def _output_of(layer):
    """The layer's output tensor, or ``None`` when it has none or several."""
    try:
        return layer.output
    except (AttributeError, ValueError):
        return None


def _last_feature_map(model):
    """``(container, tensor)``: the last 4-D output of the nested backbone (or of ``model``)."""
    import keras

    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    for container in (*reversed(nested), model):
        for layer in reversed(container.layers):
            if isinstance(layer, keras.layers.InputLayer) or isinstance(layer, keras.Model):
                continue
            out = _output_of(layer)
            if out is not None and not isinstance(out, list | tuple) and len(out.shape) == 4:
                return container, out
    raise UserInputError(
        f"Grad-CAM needs a convolutional backbone (a 4-D feature map); model "
        f"'{model.name}' has none (a TF Hub or text backbone does not expose one).")


def _head_layer(model):
    """The softmax/sigmoid/linear Dense ``"predictions"`` layer, or ``None``."""
    import keras

    try:
        layer = model.get_layer("predictions")
    except ValueError:
        return None
    return layer if isinstance(layer, keras.layers.Dense) else None


def grad_cam_model(model):
    """A model ``image -> (feature map, logits input)`` sharing ``model``'s layers.

    The second output is the input of the ``"predictions"`` Dense layer (or the
    model's output when there is none).

    Raises:
        UserInputError: no 4-D feature map, or a model that is not a chain of layers.
    """
    import keras

    container, feature_map = _last_feature_map(model)
    head = _head_layer(model)
    if container is model:  # a flat CNN: the graph already holds both tensors
        end = head.input if head is not None else model.outputs[0]
        return keras.Model(model.inputs, [feature_map, end])
    inner = keras.Model(container.inputs, [feature_map, container.outputs[0]])
    inputs = keras.Input(tuple(model.input_shape[1:]), name="image")
    x, fmap = inputs, None
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if layer is head:
            break
        if layer is container:
            fmap, x = inner(x)
        else:
            x = layer(x)
    return keras.Model(inputs, [fmap, x])


def _check_replay(model, head, batch, features) -> None:
    """The rebuilt chain answers like ``model`` (else ``model`` is not a chain of layers)."""
    import keras

    if head is None:
        return
    expected = keras.ops.convert_to_numpy(model(batch, training=False))
    got = keras.ops.convert_to_numpy(head(features))
    if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-4):
        raise UserInputError(f"Grad-CAM follows a chain of layers (input, backbone, head), as "
                             f"kerastl's task models are; model '{model.name}' is not one.")


def grad_cam(model, images, class_index=None, *, batch_size: int = 16) -> np.ndarray:
    """Grad-CAM heatmaps of ``images`` for a classifier with a convolutional backbone.

    Args:
        model: an image classifier (e.g. from :func:`kerastl.build_classifier`) whose
            backbone has a 4-D feature map.
        images: float ``(N, H, W, 3)`` in ``[0, 255]`` at the model's input size.
        class_index: the class to explain: ``None`` (each image's top-1 class), one
            int for all images, or one int per image.
        batch_size: images per gradient pass.

    Returns:
        ``(N, H, W)`` float32 heatmaps in ``[0, 1]`` (1 at each map's peak; all 0 where no
        location raises the class's logit).

    Raises:
        UserInputError: a model without a 4-D feature map, images of another shape,
            or a class index out of range.

    Example:
        >>> heatmaps = ktl.grad_cam(model, images)   # (N, H, W)
    """
    import tensorflow as tf

    cam_model = grad_cam_model(model)
    images = np.asarray(images, dtype=np.float32)
    expected = tuple(model.input_shape[1:])
    if images.ndim != 4 or any(e is not None and e != s for e, s in zip(expected,
                                                                        images.shape[1:])):
        raise UserInputError(f"images must have shape (N, {', '.join(map(str, expected))}). "
                             f"Received: {images.shape}")
    head = _head_layer(model)
    classes = _class_indices(class_index, len(images), int(model.output_shape[-1]))
    maps = []
    for start in range(0, len(images), batch_size):
        batch = tf.constant(images[start:start + batch_size])
        with tf.GradientTape() as tape:
            fmap, features = cam_model(batch, training=False)
            tape.watch(fmap)
            logits = (tf.matmul(tf.cast(features, head.kernel.dtype), head.kernel)
                      + (head.bias if head.use_bias else 0.0)) if head is not None else features
            chosen = None if classes is None else classes[start:start + batch_size]
            picked = tf.argmax(logits, axis=-1) if chosen is None else tf.constant(chosen)
            score = tf.gather(logits, picked, axis=1, batch_dims=1)
        grads = tape.gradient(score, fmap)
        if start == 0:
            _check_replay(model, head, batch, features)
        weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(fmap, tf.float32), axis=-1))
        cam = tf.image.resize(cam[..., None], images.shape[1:3], method="bilinear")[..., 0]
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        maps.append(tf.math.divide_no_nan(cam, peak).numpy())
    return np.clip(np.concatenate(maps), 0.0, 1.0).astype(np.float32)


def _class_indices(class_index, count: int, num_classes: int):
    """``None`` (top-1 of each image) or an int array of ``count`` indices, checked."""
    if class_index is None:
        return None
    values = np.asarray(class_index)
    if values.dtype.kind not in "iu" or values.ndim > 1:
        raise UserInputError(f"class_index must be None, an int or a list of ints. "
                             f"Received: {class_index!r}")
    values = np.broadcast_to(values, (count,)) if values.ndim == 0 else values
    if len(values) != count:
        raise UserInputError(f"class_index has {len(values)} entries for {count} images")
    if len(values) and (values.min() < 0 or values.max() >= num_classes):
        raise UserInputError(f"class_index must be in [0, {num_classes}). "
                             f"Received: {class_index!r}")
    return values.astype(np.int64)


def overlay(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """``image`` ``(H, W, 3)`` in ``[0, 255]`` blended with ``heatmap`` in the jet colour map:
    a uint8 RGB image."""
    from matplotlib import colormaps

    colours = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255.0
    base = np.clip(np.asarray(image, np.float32), 0, 255)
    return np.clip((1 - alpha) * base + alpha * colours, 0, 255).round().astype(np.uint8)


def save_overlays(images, heatmaps, names, output, *, captions=None) -> list[str]:
    """Write one PNG per image (``<name>.gradcam.png``: the image beside its overlay) into
    ``output``; returns the paths."""
    from kerastl.reports.plots import _pyplot, _save

    plt = _pyplot()
    folder = pathlib.Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    written, used = [], set()
    for i, (image, heatmap, name) in enumerate(zip(images, heatmaps, names, strict=True)):
        stem = pathlib.Path(os.fspath(name)).stem if not isinstance(name, int) else f"{name:04d}"
        stem = stem if stem not in used else f"{stem}-{i}"
        used.add(stem)
        fig, axes = plt.subplots(1, 2, figsize=(6, 3.3))
        axes[0].imshow(np.clip(image, 0, 255).astype(np.uint8))
        axes[1].imshow(overlay(image, heatmap))
        for ax in axes:
            ax.axis("off")
        if captions is not None:
            fig.suptitle(captions[i], fontsize=9)
        written.append(_save(fig, folder / f"{stem}.gradcam.png"))
    return written
