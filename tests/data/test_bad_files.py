import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from data_corpus import make_corpus

import kerastl as ktl
from kerastl.data import validate

HERE = os.path.dirname(__file__)


def _loaded(splits):
    """Collect (first pixel RGB, label) of every loaded image in train + val."""
    out = []
    for ds in (splits.train, splits.val):
        for x, y in ds:
            for image, label in zip(x.numpy(), y.numpy(), strict=True):
                out.append((tuple(image[0, 0].round().astype(int)), int(label)))
    return out


@pytest.mark.slow
def test_dirty_folder_loses_no_good_image_and_reports_every_bad_one(tmp_path):
    root = str(tmp_path / "dirty")
    good, bad = make_corpus(root)
    assert len(good) >= 200
    splits = ktl.data.image_folder(root, image_size=16, batch_size=32, validation_split=0.2)
    reasons = dict(splits.skipped)
    assert set(reasons) == bad
    assert splits.counts["train"] + splits.counts["val"] == len(good)
    assert "truncated" in reasons[os.path.join(root, "a", "truncated.jpg")]
    assert "empty file" in reasons[os.path.join(root, "a", "zero.jpg")]
    assert "not an image" in reasons[os.path.join(root, "b", "text.jpg")]
    assert "header" in reasons[os.path.join(root, "b", "header_cut.jpg")]
    bomb = reasons[os.path.join(root, "b", "bomb.png")]
    assert "decompression bomb" in bomb and "30000x30000 = 900 M pixels" in bomb
    assert "unsupported file type '.txt'" in reasons[os.path.join(root, "c", "notes.txt")]
    # Every good file arrives with the right label and colour (solid images).
    expected = sorted((tuple(rgb), splits.class_names.index(cls)) for cls, rgb in good.values())
    got = sorted(_loaded(splits))
    assert len(got) == len(expected)
    for (rgb_e, label_e), (rgb_g, label_g) in zip(expected, got, strict=True):
        assert label_e == label_g
        assert np.abs(np.subtract(rgb_e, rgb_g)).max() <= 3, (rgb_e, rgb_g)


def test_check_file_reasons(tmp_path):
    from data_corpus import bomb_png

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(15000, 10000))
    ok, reason = validate.check_file(str(bomb))
    assert ok is None and "15000x10000" in reason and "max_pixels" in reason
    ok, reason = validate.check_file(str(bomb), max_pixels=10)
    assert ok is None
    missing = validate.check_file(str(tmp_path / "nope.jpg"))
    assert missing[0] is None and "cannot read" in missing[1]


@pytest.mark.slow
def test_dirty_folder_peak_memory_under_1gb(tmp_path):
    root = str(tmp_path / "dirty")
    make_corpus(root)
    # VmHWM is this process's own peak RSS. (ru_maxrss is not: Linux carries
    # the parent's high-water mark over fork + exec, so under a 3 GB pytest
    # process a child's ru_maxrss read 3 GB whatever the child did.)
    script = textwrap.dedent(f"""
        import json, re
        import kerastl as ktl
        def peak_kb():
            status = open("/proc/self/status").read()
            return int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
        base = peak_kb()
        s = ktl.data.image_folder({root!r}, image_size=64, batch_size=32)
        n = sum(int(y.shape[0]) for ds in (s.train, s.val) for _, y in ds)
        print(json.dumps({{"n": n, "skipped": len(s.skipped), "import_kb": base,
                           "peak_kb": peak_kb()}}))
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["skipped"] == 6
    assert result["n"] == 220  # every good image loaded
    # The whole process, TensorFlow's ~0.7 GB import included, stays under
    # 1 GB (the 30000x30000 PNG alone would need 2.7 GB if it were decoded).
    assert result["peak_kb"] < 1024 * 1024, result
    assert result["import_kb"] < result["peak_kb"]


def test_animated_gif_decodes_only_the_first_frame(tmp_path):
    from PIL import Image

    frames = [Image.fromarray(np.full((40, 50, 3), c, np.uint8)) for c in (10, 100, 200)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    ok, reason = validate.check_file(str(path))
    assert reason is None and ok.size == (40, 50)
    first = np.asarray(Image.open(io.BytesIO(ok.inline)))
    assert first.shape == (40, 50, 3) and abs(int(first.mean()) - 10) <= 2


def test_fuzzed_files_never_raise(tmp_path):
    """Valid images with random bytes overwritten or cut: each is kept or skipped, no crash."""
    from PIL import Image

    rng = np.random.default_rng(42)
    base = Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    paths = []
    for fmt, ext in (("JPEG", ".jpg"), ("PNG", ".png"), ("GIF", ".gif"), ("BMP", ".bmp"),
                     ("TIFF", ".tif"), ("WEBP", ".webp")):
        buf = io.BytesIO()
        base.save(buf, fmt)
        clean = bytearray(buf.getvalue())
        for i in range(10):
            data = bytearray(clean)
            if i % 2:
                data = data[: int(rng.integers(8, len(data)))]
            else:
                for pos in rng.integers(0, len(data), 6):
                    data[pos] = int(rng.integers(0, 256))
            path = tmp_path / f"{fmt}_{i}{ext}"
            path.write_bytes(bytes(data))
            paths.append(str(path))
    checked, skipped = validate.check_files(paths)
    assert len(checked) == len(paths)
    assert sum(c is not None for c in checked) + len(skipped) == len(paths)
    assert all(reason for _, reason in skipped)
    # Every file that passed really decodes in the pipeline.
    import tensorflow as tf

    from kerastl.data import decode

    for c in checked:
        if c is not None:
            image = decode.load_image(tf.constant(c.path), tf.constant(c.inline), (8, 8),
                                      "stretch")
            assert image.shape == (8, 8, 3)
