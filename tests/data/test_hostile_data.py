"""Hostile data: decompression bombs of every format, FIFOs, link loops, bad class names, sizes.

Issue 20: a 48 KB PNG declaring 20000x20000 got through predict; a FIFO named
x.png in a class folder made ``kerastl train`` block forever; a link from a
class folder to the data root became a class; a class folder name holding a
newline gave a labels.txt with more lines than classes; ``--image-size 0``
trained at 224 and ``--image-size 100000`` ended in an allocator dump.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from data_corpus import bomb_png
from PIL import Image

import kerastl as ktl
from kerastl.cli.main import main
from kerastl.data import decode, header
from kerastl.errors import DataError, UserInputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
from export_helpers import tiny_classifier  # noqa: E402

BIG = 20000  # 400 M pixels: over the default limit of 89 M


def _save(image: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kw)
    return out.getvalue()


def _small(mode="RGB") -> Image.Image:
    """A 16x24 noise image; ``"RGBA"`` has a half-transparent alpha (WebP then uses VP8X)."""
    pixels = np.random.default_rng(0).integers(0, 256, (16, 24, 4), dtype=np.uint8)
    pixels[..., 3] = 128
    return Image.fromarray(pixels if mode == "RGBA" else pixels[..., :3])


def _patch(data: bytes, pos: int, fmt: str, *values) -> bytes:
    packed = struct.pack(fmt, *values)
    return data[:pos] + packed + data[pos + len(packed):]


def bomb_jpeg(progressive=False) -> bytes:
    """A real 16x24 JPEG whose frame header (SOF0 / SOF2) is changed to say 20000x20000."""
    data = _save(_small(), "JPEG", progressive=progressive)
    pos = data.index(b"\xff\xc2" if progressive else b"\xff\xc0")
    return _patch(data, pos + 5, ">HH", BIG, BIG)


def bomb_gif(frames=1, screen=BIG, frame=1) -> bytes:
    """A GIF with a ``screen`` x ``screen`` canvas and ``frames`` frames of ``frame`` x ``frame``."""
    out = b"GIF89a" + struct.pack("<HHBBB", screen, screen, 0, 0, 0)
    for _ in range(frames):
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, frame, frame, 0) + b"\x02\x02\x4c\x01\x00"
    return out + b"\x3b"


def bomb_bmp() -> bytes:
    data = _save(_small(), "BMP")
    return _patch(data, 18, "<ii", BIG, -BIG)  # negative height: a top-down bitmap


def bomb_bmp_core() -> bytes:
    """An OS/2 BITMAPCOREHEADER (16-bit sizes) declaring 20000x20000."""
    return (b"BM" + struct.pack("<IHHI", 40, 0, 0, 26) + struct.pack("<IHHHH", 12, BIG, BIG, 1, 24)
            + b"\0" * 12)


def bomb_webp(kind: str) -> bytes:
    if kind == "VP8":  # lossy: 14-bit sizes, so 16000x16000 (256 M)
        return _patch(_save(_small(), "WEBP"), 26, "<HH", 16000, 16000)
    if kind == "VP8L":  # lossless: 14-bit width-1 and height-1 packed in 4 bytes
        data = _save(_small(), "WEBP", lossless=True)
        bits = (16000 - 1) | (16000 - 1) << 14 | (data[24] >> 4) << 28
        return _patch(data, 21, "<I", bits)
    data = _save(_small("RGBA"), "WEBP")  # alpha: the VP8X extended header
    assert data[12:16] == b"VP8X"
    return data[:24] + (BIG - 1).to_bytes(3, "little") * 2 + data[30:]


BOMBS = {
    "png": (bomb_png(BIG, BIG), BIG * BIG),
    "jpeg": (bomb_jpeg(), BIG * BIG),
    "jpeg_progressive": (bomb_jpeg(progressive=True), BIG * BIG),
    "gif_canvas": (bomb_gif(), BIG * BIG),
    "gif_frames": (bomb_gif(frames=100, screen=1000, frame=1000), 100 * 1000 * 1000),
    "bmp": (bomb_bmp(), BIG * BIG),
    "bmp_core": (bomb_bmp_core(), BIG * BIG),
    "webp_vp8": (bomb_webp("VP8"), 16000 * 16000),
    "webp_vp8l": (bomb_webp("VP8L"), 16000 * 16000),
    "webp_vp8x": (bomb_webp("VP8X"), BIG * BIG),
}
SUFFIX = {"png": ".png", "jpe": ".jpg", "gif": ".gif", "bmp": ".bmp", "web": ".webp"}


def _normal_images():
    small = _small()
    return {
        "png": _save(small, "PNG"), "jpeg": _save(small, "JPEG"),
        "jpeg_progressive": _save(small, "JPEG", progressive=True),
        "gif": _save(small, "GIF"),
        "gif_animated": _save(small, "GIF", save_all=True,
                              append_images=[small.rotate(90), small.transpose(0)]),
        "bmp": _save(small, "BMP"), "webp": _save(small, "WEBP"),
        "webp_lossless": _save(small, "WEBP", lossless=True),
        "webp_alpha": _save(_small("RGBA"), "WEBP"),
    }


@pytest.fixture(scope="module")
def graph_pixels():
    return tf.function(decode.header_pixels)


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_header_of_each_bomb_read_alike_in_python_and_in_the_graph(name, graph_pixels):
    data, pixels = BOMBS[name]
    parsed = header.read_header(data)
    assert parsed is not None and parsed.pixels == pixels
    assert int(graph_pixels(tf.constant(data))) == pixels
    with pytest.raises(UserInputError) as info:
        header.check_pixels(data, name=f"bomb.{name}")
    message = str(info.value)
    assert message.startswith(f"bomb.{name}: image is ") and "\n" not in message
    assert "over the limit of 89 M pixels (max_pixels=89478485)" in message


def test_normal_images_pass_with_the_same_count_in_python_and_in_the_graph(graph_pixels):
    for name, data in _normal_images().items():
        parsed = header.check_pixels(data)
        assert parsed.format == name.split("_")[0].upper()
        assert (parsed.height, parsed.width) == (16, 24), name
        assert int(graph_pixels(tf.constant(data))) == parsed.pixels, name
        decoded = tf.io.decode_image(data, expand_animations=False)
        assert decoded.shape[:2] == (16, 24)


def test_unreadable_headers_give_none_and_minus_one(graph_pixels):
    png = _normal_images()["png"]
    for data in (b"", b"hello, not an image at all", png[:20], b"BM" + b"\0" * 10,
                 b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 20):
        assert header.read_header(data) is None
        assert int(graph_pixels(tf.constant(data))) == -1


def test_bomb_message_and_the_limit_from_argument_and_environment(monkeypatch, tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(bomb_png(BIG, BIG))
    with pytest.raises(UserInputError, match=r"big\.png: image is 20000x20000 = 400 M pixels, "
                                             r"over the limit of 89 M pixels"):
        header.check_pixels(path)
    assert header.check_pixels(path, max_pixels=BIG * BIG).pixels == BIG * BIG
    monkeypatch.setenv("KERASTL_MAX_PIXELS", str(BIG * BIG))
    assert header.check_pixels(path).pixels == BIG * BIG
    with pytest.raises(UserInputError, match=r"limit of 10 pixels \(max_pixels=10\)"):
        header.check_pixels(path, max_pixels=10)
    monkeypatch.setenv("KERASTL_MAX_PIXELS", "lots")
    with pytest.raises(UserInputError, match="KERASTL_MAX_PIXELS='lots'"):
        header.check_pixels(path)
    with pytest.raises(UserInputError, match="max_pixels=0"):
        header.resolve_max_pixels(0)


def test_assert_pixels_stops_the_graph_before_decoding():
    @tf.function
    def guarded_decode(data):
        with tf.control_dependencies([decode.assert_pixels(data, name="item 0")]):
            return tf.shape(decode.decode_bytes(data))

    assert guarded_decode(tf.constant(_normal_images()["png"])).numpy().tolist() == [16, 24, 3]
    with pytest.raises(tf.errors.InvalidArgumentError, match="item 0: image declares 900000000 "
                                                             "pixels, over the limit"):
        guarded_decode(tf.constant(bomb_png(30000, 30000)))


# --- the data folders ---------------------------------------------------------------------


def _class_folder(root: Path, classes=("cat", "dog"), per_class=3) -> Path:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((16, 16, 3), 60 + 120 * c, np.uint8)).save(
                root / name / f"{i}.png")
    return root


def test_folder_source_skips_bombs_of_every_format(tmp_path):
    root = _class_folder(tmp_path / "data")
    for name, (data, _) in BOMBS.items():
        (root / "cat" / f"bomb_{name}{SUFFIX[name[:3]]}").write_bytes(data)
    splits = ktl.data.image_folder(root, image_size=16, validation_split=0.0)
    reasons = dict(splits.skipped)
    assert splits.counts["train"] == 6
    assert len(reasons) == len(BOMBS)
    for path, reason in reasons.items():
        assert "pixels, over the limit of 89 M pixels" in reason, (path, reason)


class _FifoWatchdog:
    """Unblocks any reader of ``fifo`` (a regression would block in open) so a test fails, not hangs."""

    def __init__(self, fifo: Path):
        self.fifo, self.stop = fifo, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.wait(0.5):
            try:  # succeeds only while someone has the FIFO open for reading
                os.close(os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_in_a_class_folder_is_skipped_never_opened(tmp_path, caplog):
    root = _class_folder(tmp_path / "data")
    fifo = root / "cat" / "x.png"
    os.mkfifo(fifo)
    with _FifoWatchdog(fifo):
        splits = ktl.data.image_folder(root, image_size=16, validation_split=0.0)
    assert splits.counts["train"] == 6
    assert dict(splits.skipped) == {str(fifo): "not a regular file (FIFO (named pipe)); "
                                               "never opened"}
    assert f"Skipping {fifo}: not a regular file" in caplog.text


def test_tfds_image_folder_refuses_a_bomb_and_a_fifo_up_front(tmp_path):
    root = tmp_path / "tfds"
    _class_folder(root / "train")
    (root / "train" / "dog" / "big.png").write_bytes(bomb_png(BIG, BIG))
    with pytest.raises(UserInputError, match=r"big\.png: image is 20000x20000 = 400 M pixels"):
        ktl.data.from_tfds(str(root), image_size=16)
    splits = ktl.data.from_tfds(str(root), image_size=16, validation_split=0.0,
                                max_pixels=BIG * BIG)
    assert splits.counts["train"] == 7
    (root / "train" / "dog" / "big.png").unlink()
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "train" / "cat" / "x.png")
        with _FifoWatchdog(root / "train" / "cat" / "x.png"), pytest.raises(
                UserInputError, match=r"x\.png: not a regular file \(FIFO"):
            ktl.data.from_tfds(str(root), image_size=16)


def test_link_to_the_data_root_is_not_a_class(tmp_path, caplog):
    root = _class_folder(tmp_path / "data")
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "cat" / "up").symlink_to(root, target_is_directory=True)  # inside a class too
    for follow in (False, True):
        splits = ktl.data.image_folder(root, image_size=16, validation_split=0.0,
                                       follow_links=follow)
        assert splits.class_names == ["cat", "dog"]
        assert splits.counts["train"] == 6 and splits.skipped == []
    assert f"Skipping {root / 'loop'}: a symbolic link to {root}" in caplog.text


def test_class_folder_name_must_be_one_printable_line(tmp_path):
    root = _class_folder(tmp_path / "data", classes=("cat", "dog\nbird"))
    with pytest.raises(DataError, match=r"class folder .* 'dog\\nbird' holds '\\n'; a class "
                                        r"name must be one printable line"):
        ktl.data.image_folder(root, image_size=16)


def test_labels_csv_class_name_must_be_one_printable_line(tmp_path):
    root = _class_folder(tmp_path / "data", classes=("all",))
    (root / "labels.csv").write_text('filename,labels\nall/0.png,cat\nall/1.png,"dog\tcat"\n'
                                     'all/2.png,ok\n')
    assert ktl.data.image_folder(root, image_size=16, labels_csv="labels.csv",
                                 validation_split=0.0).class_names == ["cat", "dog", "ok"]
    (root / "labels.csv").write_text('filename,cat,"new\nline"\nall/0.png,1,0\n')
    with pytest.raises(DataError, match=r"'new\\nline' holds '\\n'"):
        ktl.data.image_folder(root, image_size=16, labels_csv="labels.csv")


@pytest.mark.parametrize("size", [0, -3, 4097, 100000, (16, 0), (64, 5000)])
def test_image_size_bounds_in_the_library(tmp_path, size):
    root = _class_folder(tmp_path / "data")
    with pytest.raises(UserInputError, match=r"image_size must be at least 1 px and at most "
                                             r"4096 px"):
        ktl.data.image_folder(root, image_size=size)


def test_image_size_bounds_of_a_backbone():
    with pytest.raises(UserInputError, match=r"at least 32 px \(the smallest input of backbone "
                                             r"'mobilenet_v2'\) and at most 4096 px"):
        ktl.build_backbone("mobilenet_v2", weights=None, image_size=16)


# --- the command line ---------------------------------------------------------------------


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("kerastl: error: ")
    return err[0]


@pytest.mark.parametrize("size", ["0", "100000", "8"])
def test_train_image_size_out_of_bounds_is_one_line_exit_2(tmp_path, capsys, size):
    root = _class_folder(tmp_path / "data")
    assert main(["train", str(root), "--backbone", "mobilenet_v2", "--weights", "none",
                 "--image-size", size, "--output", str(tmp_path / "run")]) == 2
    line = _one_error_line(capsys)
    assert (f"--image-size must be at least 32 px (the smallest input of backbone "
            f"'mobilenet_v2') and at most 4096 px. Received: --image-size={size}") in line
    assert not (tmp_path / "run").exists()


def test_train_on_a_folder_of_bombs_is_one_line_exit_2(tmp_path, capsys):
    root = tmp_path / "data"
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        (root / c / "big.png").write_bytes(bomb_png(30000, 30000))
    assert main(["train", str(root), "--backbone", "mobilenet_v2", "--weights", "none",
                 "--image-size", "32", "--output", str(tmp_path / "run")]) == 2
    assert "No readable training image" in _one_error_line(capsys)
    assert main(["train", str(root), "--max-pixels", "-1"]) == 2
    assert "max_pixels must be a positive int" in _one_error_line(capsys)


def test_train_newline_class_name_is_one_line_exit_2(tmp_path, capsys):
    root = _class_folder(tmp_path / "data", classes=("cat", "dog\n"))
    assert main(["train", str(root), "--backbone", "mobilenet_v2", "--weights", "none",
                 "--image-size", "32", "--output", str(tmp_path / "run")]) == 2
    assert "must be one printable line" in _one_error_line(capsys)


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    tiny_classifier().save(path)
    return path


@pytest.mark.parametrize("name", ["png", "jpeg_progressive", "gif_frames", "bmp", "webp_vp8x"])
def test_predict_refuses_a_bomb_with_one_line_exit_2(tmp_path, capsys, keras_model, name):
    data, pixels = BOMBS[name]
    bomb = tmp_path / f"bomb{SUFFIX[name[:3]]}"
    bomb.write_bytes(data)
    assert main(["predict", str(keras_model), str(bomb)]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"kerastl: error: {bomb}: image is ")
    assert "over the limit of 89 M pixels (max_pixels=89478485)" in line


def test_predict_max_pixels_flag_and_30000_png(tmp_path, capsys, keras_model):
    good = tmp_path / "good.png"
    good.write_bytes(_save(_small(), "PNG"))
    assert main(["predict", str(keras_model), str(good), "--max-pixels", "100"]) == 2
    assert "image is 24x16 = 384 pixels, over the limit of 100 pixels" in _one_error_line(capsys)
    assert main(["predict", str(keras_model), str(good), "--max-pixels", "384",
                 "--format", "csv"]) == 0
    assert capsys.readouterr().out.count(str(good)) == 3
    bomb = tmp_path / "huge.png"
    bomb.write_bytes(bomb_png(30000, 30000))
    assert main(["predict", str(keras_model), str(good), str(bomb)]) == 2
    assert "huge.png: image is 30000x30000 = 900 M pixels" in _one_error_line(capsys)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_predict_fifo_is_never_opened(tmp_path, capsys, keras_model):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "good.png").write_bytes(_save(_small(), "PNG"))
    os.mkfifo(folder / "x.png")
    with _FifoWatchdog(folder / "x.png"):
        assert main(["predict", str(keras_model), str(folder), "--format", "csv"]) == 0
        assert "x.png" not in capsys.readouterr().out
        assert main(["predict", str(keras_model), str(folder / "x.png")]) == 2
    assert "x.png is not a regular file or a folder (FIFO" in _one_error_line(capsys)
