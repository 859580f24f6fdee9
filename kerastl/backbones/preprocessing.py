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

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "lite":
            return (x - 127.0) / 128.0
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, dtype=x.dtype)
            std = ops.convert_to_tensor(_TORCH_STD, dtype=x.dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)  # RGB -> BGR
            return x - ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=x.dtype)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "backbone": self.backbone})
        return config
