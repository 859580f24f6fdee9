"""The serving signatures: raw image bytes or float images in, named outputs out.

Everything a client would otherwise have to re-implement (decoding, resizing,
the backbone's preprocessing, top-k, label lookup) runs in the graph, so the
exported SavedModel needs only TensorFlow to answer and gives the same numbers
as the Keras model.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from kerastl.data import decode, header
from kerastl.errors import UserInputError

BYTES_INPUT = "image_bytes"
IMAGES_INPUT = "images"
SERVING_SIGNATURE = "serving_default"
IMAGES_SIGNATURE = "predict_images"
RESIZE_MODES = decode.RESIZE_MODES  # "stretch", "crop", "pad", "random_crop" (central at eval)
CLASSIFIER_OUTPUTS = ("probabilities", "classes", "class_names", "top_k_indices",
                      "top_k_scores")
REGRESSOR_OUTPUTS = ("predictions",)

# Magic numbers of the formats tf.io.decode_image reads (WebP is RIFF....WEBP).
_MAGIC = tuple((offset, magic) for _, offset, magic in header.MAGIC)


def model_image_size(model: keras.Model, image_size=None) -> tuple[int, int]:
    """``(height, width)`` of the model's input, or ``image_size`` when the model has none.

    Raises:
        UserInputError: the model does not take ``(batch, H, W, 3)`` images, or its
            size is dynamic and no ``image_size`` was given.
    """
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else ()
    if len(shape) != 4 or shape[-1] != 3:
        raise UserInputError(
            "Only models taking one batch of RGB images (batch, height, width, 3) can be "
            f"exported for serving. Received: model.input_shape={model.input_shape!r}"
        )
    if image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or any(s is not None and int(s) < 1 for s in size):
            raise UserInputError(f"image_size must be an int or (height, width). "
                                 f"Received: image_size={image_size!r}")
        if any(m is not None and m != s for m, s in zip(shape[1:3], size, strict=True)):
            raise UserInputError(f"image_size={image_size!r} does not match the model's input "
                                 f"shape {shape!r}")
        return int(size[0]), int(size[1])
    if shape[1] is None or shape[2] is None:
        raise UserInputError(
            "The model accepts any image size, so the serving signature cannot know what to "
            f"resize to. Pass image_size=(height, width). Received: input_shape={shape!r}"
        )
    return int(shape[1]), int(shape[2])


check_resize = decode.check_resize_mode


def _decode_like_training(data: tf.Tensor, size: tuple[int, int], resize: str) -> tf.Tensor:
    """Decode one image file to the ``uint8`` image the training pipeline caches.

    Uses kerastl's data layer itself (``kerastl.data.decode``), traced into the
    graph, so serving cannot drift from training: large JPEGs are decoded at a
    libjpeg DCT scale (1/2, 1/4, 1/8) that keeps both sides >= the cached size,
    then everything is resized (bilinear, no antialias) and rounded to 8 bits.
    """
    need_h, need_w = decode.cache_size(size, resize)

    def jpeg():
        shape = tf.image.extract_jpeg_shape(data)
        scale = tf.constant(1, tf.int32)
        for s in decode.JPEG_SCALES:  # the largest scale that keeps both sides big enough
            fits = tf.logical_and(shape[0] // s >= need_h, shape[1] // s >= need_w)
            scale = tf.where(fits, tf.constant(s, tf.int32), scale)
        branches = [lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r)
                    for r in decode.JPEG_SCALES]
        index = tf.argmax(tf.cast(tf.equal(tf.constant(decode.JPEG_SCALES), scale), tf.int32))
        image = tf.switch_case(tf.cast(index, tf.int32), branches)
        image.set_shape([None, None, 3])
        return image

    image = tf.cond(tf.io.is_jpeg(data), jpeg, lambda: decode.decode_bytes(data))
    return decode.resize_image(image, size, resize)


def _looks_like_image(data: tf.Tensor) -> tf.Tensor:
    padded = tf.strings.join([data, b"\0" * 12])  # substr fails past the end of a string
    checks = [tf.equal(tf.strings.substr(padded, offset, len(magic)), magic)
              for offset, magic in _MAGIC]
    return tf.reduce_any(tf.stack(checks))


def decode_images(image_bytes: tf.Tensor, size: tuple[int, int], resize: str = "stretch",
                  input_name: str = BYTES_INPUT, max_pixels: int | None = None) -> tf.Tensor:
    """Decode a ``[batch]`` string tensor of JPEG/PNG/GIF/BMP/WebP files to float32 images.

    Each image goes through the same decoding and resizing as in training (see
    :func:`_decode_like_training`); ``resize`` is the data layer's option. Before
    anything is decoded, each item is checked: a string that is not an encoded image,
    or one whose header declares more than ``max_pixels`` pixels (a decompression
    bomb: a few KB that would decode to gigabytes), fails with ``InvalidArgumentError``
    naming the input and the index of the bad item. The header is read with core TF
    ops only (:func:`kerastl.data.decode.header_pixels`), so a server that links no
    kerastl code refuses the bomb without allocating its pixels.
    ``max_pixels=None``: ``$KERASTL_MAX_PIXELS`` or the default (89,478,485, Pillow's
    limit), fixed into the graph when it is built.
    """

    def one(args):
        index, data = args
        message = tf.strings.format(
            f"Input {input_name} item {{}} is not an encoded JPEG, PNG, GIF, BMP or WebP "
            "image ({} bytes, starting {}). Send the raw bytes of the image file (base64 "
            "in JSON), not decoded pixels or a file name.",
            [index, tf.strings.length(data), tf.strings.substr(data, 0, 8)])
        check = tf.debugging.Assert(_looks_like_image(data), [message])
        with tf.control_dependencies([check]):  # the size check reads a valid header only
            budget = decode.assert_pixels(data, limit, name=tf.strings.format(
                f"Input {input_name} item {{}}", [index]))
        with tf.control_dependencies([check, budget]):
            return _decode_like_training(data, size, resize)

    limit = header.resolve_max_pixels(max_pixels)

    cached = decode.cache_size(size, resize)
    count = tf.shape(image_bytes, out_type=tf.int64)[0]
    images = tf.map_fn(one, (tf.range(count), image_bytes), parallel_iterations=8,
                       fn_output_signature=tf.TensorSpec([*cached, 3], tf.uint8))
    if resize == "random_crop":  # evaluation takes the central window, as the pipeline does
        images = decode.central_crop_batch(images, size)
    return tf.ensure_shape(tf.cast(images, tf.float32), [None, size[0], size[1], 3])


class ServingModule(tf.Module):
    """A ``tf.Module`` holding the model's variables and the two serving functions.

    Args:
        model: a built ``keras.Model`` from float32 ``[0, 255]`` RGB images.
        task: ``"multiclass"``, ``"multilabel"`` or ``"regression"``.
        class_names: one name per output (classifiers only).
        top_k: how many classes ``top_k_indices``/``top_k_scores`` hold
            (capped at the number of classes).
        image_size: ``(height, width)`` the bytes signature resizes to.
        resize: the data layer's ``resize`` option used in training: ``"stretch"``,
            ``"crop"``, ``"pad"`` or ``"random_crop"`` (central crop at serving time).
        max_pixels: most pixels an image sent to ``serving_default`` may declare
            (see :func:`decode_images`).
    """

    def __init__(self, model: keras.Model, *, task: str, class_names: Sequence[str] | None,
                 top_k: int, image_size: tuple[int, int], resize: str = "stretch",
                 max_pixels: int | None = None):
        super().__init__(name="kerastl_serving")
        # The Keras model itself is not tracked (the SavedModel must not need Keras to
        # load); its variables are, so they are saved and restored.
        self._setattr_tracking = False
        self._model = model
        self._setattr_tracking = True
        self.model_variables = tf_variables(model)
        self._task = task
        self._size = tuple(image_size)
        self._resize = check_resize(resize)
        self.max_pixels = header.resolve_max_pixels(max_pixels)
        self._num_outputs = int(model.output_shape[-1])
        self._top_k = min(int(top_k), self._num_outputs)
        if task != "regression":
            self.class_name_table = tf.Variable(list(class_names), trainable=False,
                                                dtype=tf.string, name="class_names")
        height, width = self._size
        self.predict_images = tf.function(
            self._predict_images, autograph=False,
            input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32,
                                           name=IMAGES_INPUT)])
        self.serving_default = tf.function(
            self._serving_default, autograph=False,
            input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)])

    def _outputs(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        # Keras layers fail on an empty batch (BatchNorm broadcast), so answer it directly.
        scores = tf.cond(
            tf.shape(images)[0] > 0,
            lambda: tf.cast(self._model(images, training=False), tf.float32),
            lambda: tf.zeros([0, self._num_outputs], tf.float32))
        scores = tf.ensure_shape(scores, [None, self._num_outputs])
        if self._task == "regression":
            return {"predictions": scores}
        return classify_outputs(scores, self._top_k, self.class_name_table)

    def _predict_images(self, images):
        return self._outputs(images)

    def _serving_default(self, image_bytes):
        return self._outputs(decode_images(image_bytes, self._size, self._resize,
                                           max_pixels=self.max_pixels))

    def signatures(self) -> dict:
        """The concrete functions to save, keyed by signature name."""
        return {
            SERVING_SIGNATURE: self.serving_default.get_concrete_function(),
            IMAGES_SIGNATURE: self.predict_images.get_concrete_function(),
        }


def classify_outputs(scores: tf.Tensor, top_k: int, class_name_table) -> dict[str, tf.Tensor]:
    """A classifier's named outputs from its ``(batch, classes)`` probabilities."""
    top_scores, top_indices = tf.math.top_k(scores, k=top_k)
    classes = tf.cast(top_indices[:, 0], tf.int64)
    return {
        "probabilities": scores,
        "classes": classes,
        "class_names": tf.gather(class_name_table, classes),
        "top_k_indices": top_indices,
        "top_k_scores": top_scores,
    }


def tf_variables(model: keras.Model) -> list[tf.Variable]:
    """The ``tf.Variable`` behind each of the model's variables, for a SavedModel to track.

    Keras 3 wraps each ``tf.Variable`` in a ``keras.Variable``. A SavedModel that tracks
    the wrappers restores fine through ``tf.saved_model.load`` (object-based), but its
    MetaGraph's saver does not name the ``tf.Variable``s the graph reads, so the
    session-based loaders (TensorFlow's C++ ``LoadSavedModel``, which TF Serving links,
    and ``saved_model_cli run``) restore nothing and every call fails with "Could not find
    variable ...". Tracking the ``tf.Variable`` itself makes both loaders restore it.
    """
    found, seen = [], set()
    for variable in model.variables:
        value = variable.value if isinstance(variable, keras.Variable) else variable
        if not isinstance(value, tf.Variable):
            raise UserInputError(
                f"Variable {variable.path!r} of the model is not backed by a tf.Variable "
                f"({type(value).__name__}); only TensorFlow-backend models can be exported.")
        if id(value) not in seen:
            seen.add(id(value))
            found.append(value)
    return found
