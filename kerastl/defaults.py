"""Defaults and limits the command line needs before TensorFlow loads.

Plain data, importable without TensorFlow: ``kerastl --help`` builds its flags
(defaults, choices, help text) from these without loading TensorFlow, and the
library modules that apply them import them from here, so each is defined once.
"""

from __future__ import annotations

#: Default pixel budget of an image read: Pillow's ``Image.MAX_IMAGE_PIXELS``
#: (see :mod:`kerastl.data.header`).
DEFAULT_MAX_PIXELS = 89_478_485
#: Environment variable that replaces :data:`DEFAULT_MAX_PIXELS`.
MAX_PIXELS_ENV = "KERASTL_MAX_PIXELS"
#: Largest input side in px; above, one batch of activations exhausts memory.
MAX_IMAGE_SIZE = 4096

#: How images are brought to the model's size (:func:`kerastl.data.decode.resize_image`):
#: stretch, central crop, letterbox pad, or a random window in training (central otherwise).
RESIZE_MODES = ("stretch", "crop", "pad", "random_crop")

#: Learning-rate schedules (:func:`kerastl.training.schedules.make_schedule`).
SCHEDULES = ("constant", "onecycle", "cosine")
#: ``fine_tune``'s and ``kerastl train``'s default: measured best of the three
#: on the demo data (benchmarks/schedules.py, docs/modes.md).
DEFAULT_SCHEDULE = "cosine"

#: Augmentation policies (``augment=`` of every data source; :mod:`kerastl.data.augment`).
AUGMENT_POLICIES: dict[str, dict] = {
    "none": {},
    "light": {"flip": "horizontal", "rotation": 0.05, "zoom": 0.1},
    "default": {"flip": "horizontal", "rotation": 0.1, "zoom": 0.15, "translation": 0.1,
                "contrast": 0.2, "brightness": 0.2},
    "strong": {"flip": "horizontal", "random_resized_crop": (0.35, 1.0), "rand_augment": 2},
}
