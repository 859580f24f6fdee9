"""TFLite variants agree with the Keras model."""

from __future__ import annotations

import json

import pytest
from export_helpers import CLASS_NAMES

from kerastl.errors import UserInputError
from kerastl.export.tflite import check_variants, export_tflite


def test_all_variants_written_and_compared(tmp_path, classifier, photos):
    results = export_tflite(classifier, tmp_path, variants="float,dynamic,float16,int8",
                            images=photos[:32], class_names=CLASS_NAMES, name="pets")
    by_variant = {r.variant: r for r in results}
    assert list(by_variant) == ["float", "dynamic", "float16", "int8"]
    assert by_variant["float"].top1_agreement >= 0.99
    assert by_variant["float"].max_abs_diff < 1e-4
    for r in results:
        assert r.path == tmp_path / f"pets_{r.variant}.tflite"
        assert r.path.read_bytes()[4:8] == b"TFL3"  # flatbuffer identifier
        assert r.num_images == 32 and 0.0 <= r.top1_agreement <= 1.0
    assert by_variant["float16"].top1_agreement >= 0.9
    assert (tmp_path / "labels.txt").read_text().splitlines() == CLASS_NAMES
    report = json.loads((tmp_path / "tflite_report.json").read_text())
    assert [r["variant"] for r in report] == ["float", "dynamic", "float16", "int8"]
    assert report[0]["top1_agreement"] == by_variant["float"].top1_agreement


@pytest.mark.parametrize("variants", ["float,int4", "", ["fp8"]])
def test_unknown_variant(variants):
    with pytest.raises(UserInputError, match="float, dynamic, float16, int8"):
        check_variants(variants)


def test_int8_needs_images(classifier):
    from kerastl.export.tflite import convert

    with pytest.raises(UserInputError, match="representative images"):
        convert(classifier, "int8", representative_images=None)
