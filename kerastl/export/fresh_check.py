"""Run an exported SavedModel in a process that has only TensorFlow and NumPy.

Started by :func:`kerastl.export.verify.verify` as a *script* (``python -I
fresh_check.py SAVED_MODEL INPUTS.npz OUTPUTS.npz REPORT.json``), so kerastl
is never imported here: the export must answer with ``tf.saved_model.load``
alone, the way TF Serving loads it. Lists of encoded images travel as one
``uint8`` buffer plus offsets (``<key>__data``, ``<key>__offsets``) so no
pickle is needed.
"""

import json
import sys
import time

import numpy as np
import tensorflow as tf


def _bytes_list(arrays, key):
    data, offsets = arrays[f"{key}__data"], arrays[f"{key}__offsets"]
    return [data[offsets[i]:offsets[i + 1]].tobytes() for i in range(len(offsets) - 1)]


def _keys(arrays):
    return sorted({k.split("__")[0] for k in arrays.files})


def main(path, inputs_file, outputs_file, report_file):
    report = {"kerastl_imported_at_start": "kerastl" in sys.modules}
    arrays = np.load(inputs_file, allow_pickle=False)
    start = time.perf_counter()
    loaded = tf.saved_model.load(path)
    report["load_seconds"] = time.perf_counter() - start
    signatures = loaded.signatures
    report["signatures"] = sorted(signatures.keys())
    outputs = {}

    def call(signature, prefix, **inputs):
        result = signatures[signature](**inputs)
        for name, value in result.items():
            value = value.numpy()
            if value.dtype == object:  # tf.string: unicode text, so no pickle is needed
                value = np.array([v.decode("utf-8", "replace") for v in value.reshape(-1)],
                                 dtype=str).reshape(value.shape)
            outputs[f"{prefix}/{name}"] = value

    images = arrays["images"]
    call("predict_images", "images", images=tf.constant(images))
    for key in ("png", "jpeg", "large_png"):
        if f"{key}__data" in arrays.files:
            call("serving_default", key, image_bytes=tf.constant(_bytes_list(arrays, key)))
    call("serving_default", "empty", image_bytes=tf.zeros([0], tf.string))

    garbage = [_bytes_list(arrays, "png")[0], b"this is not an image"]
    try:
        signatures["serving_default"](image_bytes=tf.constant(garbage))
        report["garbage_error"] = None
    except tf.errors.InvalidArgumentError as err:
        report["garbage_error"] = {"type": type(err).__name__, "message": err.message}

    warmup = []
    for key in _keys(arrays):
        if not key.startswith("warmup:"):
            continue
        _, index, signature, input_name = key.split(":")
        value = (tf.constant(_bytes_list(arrays, key)) if f"{key}__data" in arrays.files
                 else tf.constant(arrays[key]))
        try:
            result = signatures[signature](**{input_name: value})
            warmup.append({"index": int(index), "signature": signature, "ok": True,
                           "batch": int(next(iter(result.values())).shape[0])})
        except (KeyError, TypeError, ValueError, tf.errors.OpError) as err:
            warmup.append({"index": int(index), "signature": signature, "ok": False,
                           "error": f"{type(err).__name__}: {err}"[:500]})
    report["warmup_replay"] = sorted(warmup, key=lambda w: w["index"])
    report["kerastl_imported"] = "kerastl" in sys.modules
    np.savez(outputs_file, **outputs)
    with open(report_file, "w") as handle:
        json.dump(report, handle)


if __name__ == "__main__":
    main(*sys.argv[1:5])
