"""The preprocessing layer that puts each backbone's input convention inside the model.

Raw float32 RGB in ``[0, 255]`` goes in at training, evaluation and serving
time; this layer turns it into what the pretrained weights expect.
"""

from __future__ import annotations

import keras
from keras import ops

from kerastl.backbones.registry import PREPROCESSING_MODES

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def _keras_steps(mode: str, dtype) -> list[keras.layers.Layer]:
    """Keras preprocessing layers computing ``mode`` (within 1e-6 of the plain formulas).

    tf: ``x / 127.5 - 1``; lite: ``(x - 127) / 128``; unit: ``x / 255``; torch:
    ``(x / 255 - mean) / std``; caffe (after RGB -> BGR): ``x - mean_bgr``.
    """
    rescale = keras.layers.Rescaling
    if mode == "tf":
        return [rescale(1.0 / 127.5, offset=-1.0, dtype=dtype)]
    if mode == "lite":
        return [rescale(1.0 / 128.0, offset=-127.0 / 128.0, dtype=dtype)]
    if mode == "unit":
        return [rescale(1.0 / 255.0, dtype=dtype)]
    if mode == "torch":  # one step on [0, 255]: closer to the formula than two
        mean = [255.0 * m for m in _TORCH_MEAN]
        variance = [(255.0 * s) ** 2 for s in _TORCH_STD]
    elif mode == "caffe":
        mean, variance = list(_CAFFE_MEAN_BGR), [1.0, 1.0, 1.0]
    else:
        return []
    normalize = keras.layers.Normalization(mean=mean, variance=variance, dtype=dtype)
    normalize.build((None, None, None, 3))  # its mean/variance become constants now
    return [normalize]


class _Steps:
    """The Keras layers of a :class:`Preprocess`, applied in order.

    A plain holder, not tracked by Keras: they have no weights, and keeping
    them out of the model's layers leaves layer counts (``unfreeze(fraction=)``,
    checkpoints' trainable flags) and saved files as they were.
    """

    def __init__(self, layers: list[keras.layers.Layer]):
        self.layers = tuple(layers)

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


@keras.saving.register_keras_serializable(package="kerastl")
class Preprocess(keras.layers.Layer):
    """Normalise raw ``[0, 255]`` RGB images for a backbone.

    Also marks where a kerastl backbone starts: ``backbone`` records the
    registry name, so freezing can find the spec of a saved-and-reloaded model.

    Args:
        mode: one of ``"tf"``, ``"caffe"``, ``"torch"``, ``"lite"``, ``"unit"``,
            ``"builtin"``/``"none"`` (identity: the backbone normalises itself).
        backbone: registry name of the backbone this layer belongs to.
    """

    def __init__(self, mode: str = "none", backbone: str | None = None, **kwargs):
        kwargs.setdefault("name", "preprocess")
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(
                f"Unknown preprocessing mode {mode!r}. Expected one of "
                f"{PREPROCESSING_MODES}. Received: mode={mode!r}"
            )
        self.mode = mode
        self.backbone = backbone
        # Built here (eagerly, from the fixed statistics); the config stays
        # {mode, backbone}, so models saved before still load.
        self._steps = _Steps(_keras_steps(mode, self.dtype_policy))

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)  # RGB -> BGR
        return self._steps(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "backbone": self.backbone})
        return config
