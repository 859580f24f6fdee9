"""What the server side sees: ``saved_model_cli run`` answers, and every file is readable by
a server running as another user (modes follow the umask)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from export_helpers import CLASS_NAMES, tiny_classifier

import kerastl as ktl
from kerastl.export.samples import sample_images
from kerastl.export.tflite import export_tflite


def test_saved_model_cli_run_prints_the_outputs(tmp_path):
    model = tiny_classifier(seed=3)
    path = ktl.export_saved_model(model, tmp_path, name="pets", class_names=CLASS_NAMES,
                                  warmup=False)
    images = sample_images(3, (32, 32), seed=4)
    data = np.array([tf.io.encode_png(i.astype(np.uint8)).numpy() for i in images], object)
    np.save(tmp_path / "photos.npy", data, allow_pickle=True)
    cli = Path(sys.executable).with_name("saved_model_cli")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([str(cli), "run", "--dir", str(path), "--tag_set", "serve",
                           "--signature_def", "serving_default",
                           "--inputs", f"image_bytes={tmp_path / 'photos.npy'}"],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for key in ("class_names", "classes", "probabilities", "top_k_indices", "top_k_scores"):
        assert f"Result for output key {key}:" in proc.stdout
    expected = model(images, training=False).numpy()
    names = re.search(r"output key class_names:\n\[(.*)\]", proc.stdout).group(1)
    assert names.split() == [f"b'{CLASS_NAMES[i]}'" for i in expected.argmax(-1)]
    block = proc.stdout.split("output key probabilities:\n", 1)[1].split("Result for", 1)[0]
    printed = np.array([float(x) for x in re.findall(r"[0-9.]+(?:e-?\d+)?", block)])
    np.testing.assert_allclose(printed.reshape(expected.shape), expected, atol=1e-6)


def _modes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): oct(stat.S_IMODE(p.stat().st_mode))
            for p in [root, *root.rglob("*")]}


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, "0o644", "0o755"),
                                                        (0o027, "0o640", "0o750")])
def test_export_files_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    model = tiny_classifier(seed=5)
    previous = os.umask(umask)
    try:
        path = ktl.export_saved_model(model, tmp_path / "SavedModels", name="pets",
                                      class_names=CLASS_NAMES)
        images = sample_images(4, (32, 32), seed=6)
        export_tflite(model, path.parent / "tflite" / path.name, images=images, name="pets")
    finally:
        os.umask(previous)
    modes = _modes(tmp_path / "SavedModels")
    files = {k: v for k, v in modes.items() if (tmp_path / "SavedModels" / k).is_file()}
    folders = {k: v for k, v in modes.items() if k not in files}
    assert {"models.config", "pets/1/saved_model.pb", "pets/1/assets.extra/kerastl.json",
            "pets/1/variables/variables.index", "pets/tflite/1/pets_float.tflite",
            "pets/1/assets.extra/tf_serving_warmup_requests"} <= set(files)
    assert set(files.values()) == {file_mode}, files
    assert set(folders.values()) == {dir_mode}, folders


def test_webp_with_alpha_is_served_like_its_rgb_pixels(tmp_path):
    """tf.io.decode_image(channels=3) refuses a WebP with alpha; kerastl drops the alpha,
    as Pillow's convert("RGB") does in the data pipeline."""
    import io

    from PIL import Image

    model = tiny_classifier(seed=7)
    path = ktl.export_saved_model(model, tmp_path, name="pets", warmup=False)
    rgba = np.random.default_rng(0).integers(0, 256, (32, 32, 4), dtype=np.uint8)
    rgba[..., 3] = 100
    webp, png = io.BytesIO(), io.BytesIO()
    Image.fromarray(rgba).save(webp, "WEBP", lossless=True)
    Image.fromarray(rgba[..., :3]).save(png, "PNG")
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    out = serve(image_bytes=tf.constant([webp.getvalue(), png.getvalue()]))["probabilities"]
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)
    np.testing.assert_allclose(out[1], model(rgba[None, ..., :3].astype("float32"))[0],
                               atol=1e-5)
