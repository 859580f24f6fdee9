"""Hostile and mistaken inputs through the CLI (issue 20): exit 2 and one line on stderr
for every fault of the input, nothing of the user's overwritten, no SavedModel op run
that could write or read files or call Python, exit 1 only for kerastl's bugs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.cli.main import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
from export_helpers import CLASS_NAMES, tiny_classifier  # noqa: E402
from test_trust import calls_python, writes_file, writes_in_nested_branch  # noqa: E402


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _error_line(capsys) -> str:
    """The only stderr line, checked to be kerastl's one-line error."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("kerastl: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    model = tiny_classifier()
    (root / "m").mkdir()
    model.save(root / "m" / "model.keras")  # no labels file: no "Class names from" line
    rng = np.random.default_rng(0)
    photos = root / "photos"
    photos.mkdir()
    for i in range(2):
        pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        (photos / f"p{i}.jpg").write_bytes(tf.io.encode_jpeg(pixels).numpy())
    good = (photos / "p0.jpg").read_bytes()
    (root / "broken").mkdir()
    (root / "broken" / "a_ok.jpg").write_bytes(good)
    (root / "broken" / "b_truncated.jpg").write_bytes(good[:len(good) // 2])
    keras.backend.clear_session()
    return root


# --- finding 5: --output of evaluate and predict ----------------------------------

def test_evaluate_output_that_is_a_file(setup, tmp_path, capsys):
    existing = tmp_path / "notes.txt"
    existing.write_text("mine\n")
    before = _sha(existing)
    code = main(["evaluate", str(setup / "m" / "model.keras"), str(setup / "photos"),
                 "--output", str(existing)])
    assert code == 2
    assert _error_line(capsys) == (
        f"kerastl: error: --output {existing} is a file; evaluate writes a report folder "
        "(report.json, confusion_matrix.png, errors.png) there. Give a new or existing folder.")
    assert _sha(existing) == before


def test_evaluate_output_holding_a_training_report(setup, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text(json.dumps({"config": {}, "history": {}}))
    before = _tree(run)
    code = main(["evaluate", str(setup / "m" / "model.keras"), str(setup / "photos"),
                 "--output", str(run)])
    assert code == 2
    line = _error_line(capsys)
    assert line.startswith(f"kerastl: error: --output {run} already holds report.json, not "
                           "written by kerastl evaluate")
    assert _tree(run) == before


def test_evaluate_output_accepts_an_earlier_evaluation(tmp_path):
    from kerastl.cli.evaluate import _check_output

    _check_output(tmp_path / "new")  # a new folder
    (tmp_path / "report.json").write_text(json.dumps(
        {"split": "test", "metrics": {}, "data_dir": "d"}))
    (tmp_path / "errors.png").write_bytes(b"png")
    _check_output(tmp_path)


def test_predict_output_that_is_a_folder(setup, tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    code = main(["predict", str(setup / "m" / "model.keras"), str(setup / "photos"),
                 "--output", str(tmp_path)])
    assert code == 2
    assert _error_line(capsys) == (f"kerastl: error: --output {tmp_path} is a folder; give "
                                   "a file path for the predictions.")
    assert _tree(tmp_path) == {"keep.txt": hashlib.sha256(b"mine").hexdigest()}


def test_predict_output_never_overwrites_an_input(setup, capsys):
    model = setup / "m" / "model.keras"
    before = _sha(model), _sha(setup / "photos" / "p0.jpg")
    for output, what in ((model, "overwrite"), (setup / "photos" / "p0.jpg", "overwrite")):
        assert main(["predict", str(model), str(setup / "photos"), "-o", str(output)]) == 2
        assert f"would {what} the input {output}" in _error_line(capsys)
    assert (_sha(model), _sha(setup / "photos" / "p0.jpg")) == before


def test_predict_output_replaces_a_file_with_the_predictions(setup, tmp_path, capsys):
    out = tmp_path / "predictions.csv"
    out.write_text("old\n")
    assert main(["predict", str(setup / "m" / "model.keras"), str(setup / "photos"),
                 "--format", "csv", "-o", str(out)]) == 0
    assert out.read_text().startswith("file,rank,index,class,score\n")
    assert capsys.readouterr().err == ""


# --- finding 5: undecodable images ------------------------------------------------

def test_export_examples_with_a_truncated_jpeg(setup, tmp_path, capsys):
    code = main(["export", str(setup / "m" / "model.keras"), "--name", "pets",
                 "--class-names", ",".join(CLASS_NAMES), "--base-dir", str(tmp_path / "SM"),
                 "--examples", str(setup / "broken")])
    assert code == 2
    assert _error_line(capsys) == (
        f"kerastl: error: Could not decode the example image {setup / 'broken' / 'b_truncated.jpg'}"
        ": jpeg::Uncompress failed. Invalid JPEG data or crop window.")
    assert not (tmp_path / "SM").exists()  # refused before anything was written


def test_predict_truncated_jpeg_in_a_fresh_process_is_one_line(setup):
    """TensorFlow's C++ log lines ("Premature end of JPEG data", "Local rendezvous is
    aborting") are silenced: TF_CPP_MIN_LOG_LEVEL must be set before TF loads."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERASTL_SHOW_TF_LOG")}
    proc = subprocess.run([sys.executable, "-m", "kerastl", "predict",
                           str(setup / "m" / "model.keras"), str(setup / "broken")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"kerastl: error: Could not decode {setup / 'broken' / 'b_truncated.jpg'}: "
        "jpeg::Uncompress failed. Invalid JPEG data or crop window."]


# --- finding 5: .keras files that are not models ----------------------------------

@pytest.mark.parametrize("case, expected", [
    ("missing", "Model file not found: {p}"),
    ("folder", "{p} is a folder, not a model file."),
    ("fifo", "{p} is a FIFO (named pipe), not a model file."),
    ("text", "{p} is not a .keras archive (a zip file); it may be truncated or another "
             "format."),
    ("truncated", "{p} is not a .keras archive (a zip file); it may be truncated or another "
                  "format."),
    ("no_config", "{p} is a zip file without config.json, so not a .keras model (save models "
                  "with model.save('name.keras'))."),
    ("bad_json", "{p}: its config.json does not parse as JSON (Expecting ',' delimiter: line "
                 "1 column 9 (char 8)); the file is damaged."),
    ("unknown_layer", "{p} uses 'NoSuchLayer', which neither Keras nor kerastl 0.1.0 defines: "
                      "it was saved with other code (custom layers, another kerastl version)."),
    ("lambda", "{p} holds a Lambda layer, whose Python code Keras safe_mode refuses to run; "
               "kerastl never loads it. Rebuild the model without Lambda layers (a registered "
               "custom layer instead)."),
])
def test_keras_files_that_are_not_models(setup, tmp_path, capsys, case, expected):
    path = tmp_path / f"{case}.keras"
    good = (setup / "m" / "model.keras").read_bytes()
    if case == "folder":
        path.mkdir()
    elif case == "fifo":
        os.mkfifo(path)
    elif case == "text":
        path.write_text("hello\n")
    elif case == "truncated":
        path.write_bytes(good[:len(good) // 2])
    elif case == "no_config":
        _with_config(setup / "m" / "model.keras", path, None)
    elif case == "bad_json":
        _with_config(setup / "m" / "model.keras", path, b'{"a": 1 2}')
    elif case == "unknown_layer":
        with zipfile.ZipFile(setup / "m" / "model.keras") as archive:
            config = archive.read("config.json")
        config = config.replace(b'"Preprocess"', b'"NoSuchLayer"').replace(
            b'"kerastl>Preprocess"', b'"kerastl>NoSuchLayer"')
        _with_config(setup / "m" / "model.keras", path, config)
    elif case == "lambda":
        marker = str(tmp_path / "lambda-ran")
        inputs = keras.Input((4,))
        outputs = keras.layers.Lambda(
            lambda x: (open(marker, "w").close(), x)[1])(inputs)  # noqa: SIM115
        keras.Model(inputs, outputs).save(path)
        os.remove(marker)  # building called it once; loading must not
    for command in (["predict", str(path), str(setup / "photos")],
                    ["export", str(path), "--name", "x", "--base-dir", str(tmp_path / "SM")]):
        if case == "folder" and command[0] == "predict":
            continue  # predict reads a folder as a SavedModel
        want = expected
        if case == "missing" and command[0] == "predict":
            want = "No such model file or SavedModel folder: {p}"
        assert main(command) == 2
        assert _error_line(capsys) == "kerastl: error: " + want.format(p=path)
    assert not (tmp_path / "lambda-ran").exists()
    assert not (tmp_path / "SM").exists()


def _with_config(source: Path, target: Path, config: bytes | None) -> None:
    """A copy of the .keras ``source`` whose config.json is ``config`` (None: left out)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for item in src.namelist():
            if item != "config.json":
                dst.writestr(item, src.read(item))
            elif config is not None:
                dst.writestr(item, config)


def test_evaluate_on_a_saved_model_folder_says_what_it_takes(setup, capsys):
    saved = setup / "sm"  # a folder that is not a run (no model.keras): a SavedModel's
    (saved / "variables").mkdir(parents=True, exist_ok=True)
    (saved / "saved_model.pb").write_bytes(b"\x08\x01")
    assert main(["evaluate", str(saved), str(setup / "photos"),
                 "--output", str(setup / "eval")]) == 2
    assert _error_line(capsys) == (f"kerastl: error: {saved} is a folder without model.keras; "
                                   "kerastl evaluate takes a run folder written by kerastl "
                                   "train or a .keras model file (kerastl predict takes a "
                                   "SavedModel).")


# --- what to build 7: SavedModel trust -------------------------------------------

def test_predict_refuses_a_saved_model_that_writes_files(setup, tmp_path, capsys):
    target = tmp_path / "pwned"
    saved = writes_file(tmp_path / "sm", target)
    before = _tree(tmp_path / "sm")
    assert main(["predict", saved, str(setup / "photos")]) == 2
    assert _error_line(capsys) == (
        f"kerastl: error: Refusing to run the SavedModel {saved}: its serving_default "
        "signature holds ops that a model does not need (writes files: WriteFile). A "
        "SavedModel is code; if you trust its author, pass --trust-savedmodel.")
    assert not target.exists()
    assert _tree(tmp_path / "sm") == before
    # The model really is hostile: trusted, it writes the first request to ``target``.
    assert main(["predict", saved, str(setup / "photos"), "--trust-savedmodel"]) == 0
    assert target.read_bytes() == (setup / "photos" / "p0.jpg").read_bytes()


def test_predict_refuses_python_and_nested_writes(setup, tmp_path, capsys):
    target = tmp_path / "pwned"
    for saved, ops in ((calls_python(tmp_path / "py"), "runs Python code: EagerPyFunc"),
                       (writes_in_nested_branch(tmp_path / "cond", target),
                        "writes files: WriteFile")):
        assert main(["predict", saved, str(setup / "photos")]) == 2
        assert f"({ops})" in _error_line(capsys)
    assert not target.exists()


def test_predict_runs_a_kerastl_export(setup, tmp_path, capsys):
    model = keras.saving.load_model(setup / "m" / "model.keras")
    saved = ktl.export_saved_model(model, tmp_path, name="pets", class_names=CLASS_NAMES,
                                   warmup=False)
    assert main(["predict", str(saved.parent), str(setup / "photos"), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [Path(r["file"]).name for r in rows] == ["p0.jpg", "p1.jpg"]


# --- what to build 4: exit codes --------------------------------------------------

def test_a_bug_is_exit_1_and_one_line_unless_debug(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("internal state\nsecond line")

    monkeypatch.setattr("kerastl.cli.backbones.run", boom)
    assert main(["backbones"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "kerastl: unexpected failure (a bug in kerastl): RuntimeError: internal state second "
        "line; rerun with --debug for the traceback"]
    assert main(["--debug", "backbones"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.splitlines()[-1] == ("kerastl: unexpected failure (a bug in kerastl): "
                                    "RuntimeError: internal state second line")


def test_tensorflow_input_errors_are_exit_2_reduced_to_their_cause(monkeypatch, capsys):
    message = ("Graph execution error:\n\nDetected at node DecodeJpeg defined at (most recent "
               "call last):\n  File \"x.py\", line 1, in <module>\n\n{{function_node "
               "__wrapped__IteratorGetNext}} Error in user-defined function passed to "
               "MapDataset:1 transformation with iterator: Iterator::Root::ParallelMapV2: "
               "jpeg::Uncompress failed. Invalid JPEG data or crop window.\n\t [[{{node "
               "DecodeJpeg}}]] [Op:IteratorGetNext]")

    def corrupt(args):
        raise tf.errors.InvalidArgumentError(None, None, message)

    monkeypatch.setattr("kerastl.cli.backbones.run", corrupt)
    assert main(["backbones"]) == 2
    assert _error_line(capsys) == ("kerastl: error: jpeg::Uncompress failed. Invalid JPEG "
                                   "data or crop window.")
