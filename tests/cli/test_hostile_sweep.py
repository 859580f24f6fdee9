"""A table of hostile and mistaken inputs sent through every ``kerastl`` command (issue 18).

Each case is an id, an argv builder, the expected exit status and a regex on the one
stderr line. Exit 0: the input is odd but fine (unicode names, a 1x1 image) and the
command does its job. Exit 2: exactly one line ``kerastl: error: ...``, no traceback.
No case may exit 1 (a kerastl bug). Cases already covered elsewhere are not repeated:
tests/cli/test_hostile_cli.py (.keras faults, --output rules, SavedModel trust),
tests/data/test_hostile_data.py (bombs, FIFOs, a link to the data root, class names,
image sizes), tests/tuning/test_hostile_tune.py (--overwrite, project_name, failing
trials), tests/cli/test_cli.py, test_export_cli.py, test_predict_cli.py and
tests/tuning/test_cli_tune.py (their own bad-input tables).

The environment cases mount two small tmpfs (one read-only, one full) where root may
mount; elsewhere they are skipped with the reason. The SIGKILL tests (slow) kill
``kerastl train``, ``export`` and ``tune`` at a seeded random point of their run
(``KERASTL_SWEEP_SEED``, default 0) and check that nothing written before changed
(sha256), that no incomplete version folder is visible, and that the next run
(in this process: the kill is the subprocess's) succeeds.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import yaml
from PIL import Image

import kerastl as ktl
from kerastl.cli.main import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
from export_helpers import tiny_classifier  # noqa: E402

CASE_TIMEOUT_S = 180  # a case that runs longer hangs: fail it, never block the suite


# --- the world the cases act on -------------------------------------------------------

def _images(root: Path, classes=("cat", "dog"), per_class: int = 4, size: int = 24) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            colour = np.array([200, 40, 40]) if c % 2 == 0 else np.array([40, 40, 200])
            pixels = np.clip(colour + rng.normal(0, 25, (size, size, 3)), 0, 255)
            Image.fromarray(pixels.astype("uint8")).save(root / name / f"{i}.png")
    return root


def _mount_tmpfs(path: Path, options: str) -> str | None:
    """Mount a tmpfs at ``path``; the reason it could not be mounted, or None."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        return "no mount command"
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    return None if proc.returncode == 0 else (
        f"mount -t tmpfs failed ({proc.stderr.strip() or proc.returncode}): needs root")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    data = _images(root / "data")
    model_dir = root / "m"
    model_dir.mkdir()
    model = tiny_classifier(num_classes=2)
    model.save(model_dir / "model.keras")
    saved = ktl.export_saved_model(model, root / "SM", name="pets", class_names=["cat", "dog"],
                                   warmup=False)
    keras.backend.clear_session()
    mounts = {}
    reasons = {}
    for name, options in (("ro", "ro,size=1m"), ("full", "size=64k")):
        reason = _mount_tmpfs(root / name, options)
        if reason is None:
            mounts[name] = root / name
        else:
            reasons[name] = reason
    try:
        if "full" in mounts:  # fill it: every later write fails with ENOSPC
            fd = os.open(mounts["full"] / "filler", os.O_WRONLY | os.O_CREAT)
            try:
                while os.write(fd, b"\0" * 4096):
                    pass
            except OSError:
                pass
            finally:
                os.close(fd)
        yield SimpleNamespace(root=root, data=data, model=model_dir / "model.keras",
                              saved=saved, mounts=mounts, reasons=reasons)
    finally:
        for path in mounts.values():
            subprocess.run(["umount", str(path)], check=False)


@dataclass
class W:
    """What a case's builder sees: the shared world and this case's own folder."""

    world: SimpleNamespace
    tmp: Path

    def __getattr__(self, name):
        return getattr(self.world, name)

    def file(self, name="file.txt", text="not a folder\n") -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    def under_file(self, name: str) -> Path:
        """A path whose parent is a regular file: creating it fails, even as root."""
        return self.file("blocker") / name

    def folder(self, name="empty") -> Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def mount(self, name: str) -> Path:
        if name not in self.mounts:
            pytest.skip(f"{name} tmpfs unavailable: {self.reasons[name]}")
        return self.mounts[name]

    def images(self, name="data", classes=("cat", "dog"), per_class=4, size=24) -> Path:
        return _images(self.tmp / name, classes, per_class, size)


# --- argv builders ------------------------------------------------------------------------

def train(w: W, *flags, data=None) -> list[str]:
    """``kerastl train`` on tiny data: MobileNetV2 without weights, 32 px, one head epoch."""
    return ["train", str(w.data if data is None else data), "--backbone", "mobilenet_v2",
            "--weights", "none", "--image-size", "32", "--batch-size", "4",
            "--head-epochs", "1", "--epochs", "0", "--output", str(w.tmp / "run"), *flags]


def evaluate(w: W, *flags, model=None, data=None) -> list[str]:
    return ["evaluate", str(w.model if model is None else model),
            str(w.data if data is None else data), "--output", str(w.tmp / "eval"), *flags]


def predict(w: W, *flags, model=None, images=None) -> list[str]:
    return ["predict", str(w.model if model is None else model),
            str(w.data if images is None else images), *flags]


def export(w: W, *flags, model=None) -> list[str]:
    return ["export", str(w.model if model is None else model), "--name", "pets",
            "--base-dir", str(w.tmp / "SM"), "--no-warmup", *flags]


def tune_config(w: W, text: str | None = None, **settings) -> Path:
    """A tiny random search (1 trial, 1 epoch) with ``settings`` merged in, or raw ``text``."""
    path = w.tmp / "search.yaml"
    if text is not None:
        path.write_text(text)
        return path
    config = {"project_name": "sweep", "directory": str(w.tmp / "tuning"), "tuner": "random",
              "max_trials": 1, "max_epochs": 1, "seed": 0, "weights": "none",
              "backbones": ["mobilenet_v3_small"], "fixed": {"augmentation": "none"},
              "data": {"source": "folder", "path": str(w.data), "image_size": 32,
                       "batch_size": 4, "validation_split": 0.25}}
    for key, value in settings.items():
        if key.startswith("data_"):
            config["data"][key.removeprefix("data_")] = value
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def tune(w: W, *flags, **settings) -> list[str]:
    return ["tune", str(tune_config(w, **settings)), *flags]


def tune_text(w: W, text: str) -> list[str]:
    return ["tune", str(tune_config(w, text))]


def saved_without_variables(w: W) -> Path:
    version = w.tmp / "sm" / "1"
    shutil.copytree(w.saved, version)
    shutil.rmtree(version / "variables")
    return version


def saved_with_garbage_pb(w: W) -> Path:
    version = w.tmp / "sm" / "1"
    shutil.copytree(w.saved, version)
    (version / "saved_model.pb").write_bytes(b"\x08\x01garbage" * 10)
    return version


def symlink_loop(w: W, folder: Path) -> Path:
    """Two links naming each other (``ELOOP``) inside ``folder``; returns one of them."""
    (folder / "a.png").symlink_to(folder / "b.png")
    (folder / "b.png").symlink_to(folder / "a.png")
    return folder / "a.png"


def folder_with_ancestor_links(w: W) -> Path:
    """An image folder holding two links back to itself: a naive walk never ends."""
    root = w.images("photos", classes=("all",), per_class=2)
    (root / "all" / "up").symlink_to(root, target_is_directory=True)
    (root / "all" / "again").symlink_to(root, target_is_directory=True)
    return root


def one_pixel_images(w: W) -> Path:
    return w.images("tiny", size=1)


UNICODE = ("chat noir", "狗 dög")


def unicode_data(w: W) -> Path:
    return w.images("données d'été", classes=UNICODE)


# --- checks after a case ----------------------------------------------------------------

def no_version_folder(w: W) -> None:
    base = w.tmp / "SM"
    found = [p for p in base.rglob("*") if p.is_dir() and p.name.isdigit()] if base.exists() else []
    assert found == [], found


def unicode_labels(w: W) -> None:
    assert (w.tmp / "run" / "labels.txt").read_text(encoding="utf-8").splitlines() == list(UNICODE)


def nothing_in(relative: str) -> Callable[[W], None]:
    def check(w: W) -> None:
        path = w.tmp / relative
        assert not path.exists() or not any(path.iterdir()), sorted(path.rglob("*"))
    return check


# --- the table ----------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    argv: Callable[[W], list[str]]
    code: int
    line: str | None = None  # regex the one stderr line must match (after "kerastl: error: ")
    check: Callable[[W], None] | None = None
    marks: tuple = field(default=())


E = 2  # input error: one line

CASES = [
    # train: paths
    Case("train-data-is-a-file", lambda w: train(w, data=w.file()), E,
         r"DATA_DIR .*file\.txt is not a folder"),
    Case("train-data-empty-folder", lambda w: train(w, data=w.folder()), E,
         r"No class subfolders in '.*empty'\. Expected .*empty/<class>/<image> or .*"),
    Case("train-data-class-folders-without-images",
         lambda w: train(w, data=(w.folder("d/cat"), w.folder("d/dog"))[0].parent), E,
         r"No readable training image in '.*d' \(0 file\(s\) skipped; see the log for "
         r"reasons\)\."),
    Case("train-unicode-and-space-names", lambda w: train(w, data=unicode_data(w)), 0,
         check=unicode_labels, marks=(pytest.mark.slow,)),
    Case("train-symlink-loop-in-a-class-folder",
         lambda w: train(w, data=(symlink_loop(w, w.images() / "cat"), w.tmp / "data")[1]), 0,
         marks=(pytest.mark.slow,)),
    Case("train-1x1-images", lambda w: train(w, data=one_pixel_images(w)), 0,
         marks=(pytest.mark.slow,)),
    Case("train-output-under-a-file", lambda w: train(w, "--output", str(w.under_file("run"))),
         E, r".*blocker.*"),
    Case("train-output-read-only", lambda w: train(w, "--output", str(w.mount("ro") / "run")),
         E, r"Read-only file system: .*ro/run"),
    # train: numbers
    Case("train-epochs-negative", lambda w: train(w, "--epochs", "-1"), E,
         r"epochs must be an int >= 0\. Received: epochs=-1"),
    Case("train-head-epochs-negative", lambda w: train(w, "--head-epochs", "-5"), E,
         r"head_epochs must be an int >= 0\. Received: head_epochs=-5"),
    Case("train-epochs-both-zero", lambda w: train(w, "--head-epochs", "0"), E,
         r"Nothing to do: head_epochs and epochs are both 0\."),
    Case("train-epochs-huge", lambda w: train(w, "--epochs", str(10**20)), 0,  # early stopping
         marks=(pytest.mark.slow,)),
    Case("train-epochs-not-a-number", lambda w: train(w, "--epochs", "ten"), E,
         r"argument --epochs: invalid int value: 'ten'"),
    Case("train-batch-size-zero", lambda w: train(w, "--batch-size", "0"), E,
         r"batch_size must be .*Received: .*0"),
    Case("train-batch-size-negative", lambda w: train(w, "--batch-size", "-4"), E,
         r"batch_size must be .*Received: .*-4"),
    Case("train-batch-size-huge", lambda w: train(w, "--batch-size", str(10**9)), 0,
         marks=(pytest.mark.slow,)),
    Case("train-lr-zero", lambda w: train(w, "--lr", "0"), E, r".*learning.rate.*> 0.*"),
    Case("train-lr-negative", lambda w: train(w, "--lr", "-1"), E, r".*learning.rate.*> 0.*"),
    Case("train-lr-nan", lambda w: train(w, "--lr", "nan"), E, r".*learning.rate.*nan.*"),
    Case("train-lr-inf", lambda w: train(w, "--lr", "inf"), E, r".*learning.rate.*inf.*"),
    Case("train-lr-not-a-number", lambda w: train(w, "--lr", "abc"), E,
         r"argument --lr: invalid float value: 'abc'"),
    Case("train-ft-lr-negative", lambda w: train(w, "--epochs", "1", "--ft-lr=-1e-4"), E,
         r"fine_tune_learning_rate must be a finite number > 0\. Received: "
         r"fine_tune_learning_rate=-0\.0001"),
    Case("train-lr-negative-constant-schedule",
         lambda w: train(w, "--schedule", "constant", "--lr=-1"), E,
         r"learning_rate must be a finite number > 0\. Received: learning_rate=-1\.0"),
    Case("train-validation-split-one", lambda w: train(w, "--validation-split", "1"), E,
         r"validation_split must be a number in \[0, 1\)\. Received: validation_split=1\.0"),
    Case("train-validation-split-1.5", lambda w: train(w, "--validation-split", "1.5"), E,
         r"validation_split must be a number in \[0, 1\)\. Received: validation_split=1\.5"),
    Case("train-validation-split-negative", lambda w: train(w, "--validation-split", "-0.2"),
         E, r"validation_split must be a number in \[0, 1\)\. Received: validation_split=-0\.2"),
    Case("train-validation-split-nan", lambda w: train(w, "--validation-split", "nan"), E,
         r"validation_split must be a number in \[0, 1\)\. Received: validation_split=nan"),
    Case("train-validation-split-zero", lambda w: train(w, "--validation-split", "0"), 0,
         marks=(pytest.mark.slow,)),
    Case("train-dropout-above-one", lambda w: train(w, "--dropout", "1.5"), E, r".*dropout.*"),
    Case("train-warmup-above-one", lambda w: train(w, "--schedule", "onecycle", "--warmup", "2"),
         E, r".*warmup.*"),
    Case("train-patience-negative", lambda w: train(w, "--patience", "-1"), E,
         r"patience must be an int >= 0 or None\. Received: patience=-1"),
    Case("train-max-pixels-zero", lambda w: train(w, "--max-pixels", "0"), E, r".*max.pixels.*"),
    Case("train-weights-file-missing", lambda w: train(w, "--weights", str(w.tmp / "no.h5")),
         E, r".*no\.h5.*"),
    Case("train-backup-dir-is-a-file", lambda w: train(w, "--backup-dir", str(w.file())), E,
         r".*file\.txt.*"),
    Case("train-features-cache-is-a-file",
         lambda w: train(w, "--mode", "feature-extraction", "--features-cache", str(w.file())),
         E, r".*file\.txt.*"),
    # evaluate
    Case("evaluate-model-missing", lambda w: evaluate(w, model=w.tmp / "none.keras"), E,
         r"Model file not found: .*none\.keras"),
    Case("evaluate-model-is-text", lambda w: evaluate(w, model=w.file("m.keras")), E,
         r".*m\.keras is not a \.keras archive.*"),
    Case("evaluate-data-missing", lambda w: evaluate(w, data=w.tmp / "nowhere"), E,
         r"DATA_DIR .*nowhere does not exist or is not a folder"),
    Case("evaluate-data-is-a-file", lambda w: evaluate(w, data=w.file()), E,
         r"DATA_DIR .*file\.txt does not exist or is not a folder"),
    Case("evaluate-data-empty-folder", lambda w: evaluate(w, data=w.folder()), E,
         r".*(no (image|class)|[Nn]o images|at least 2 classes|empty).*"),
    Case("evaluate-one-class", lambda w: evaluate(w, data=w.images(classes=("cat",))), E,
         r"The model predicts 2 classes but the data has 1 \(cat\)\. Evaluate on data with the "
         r"model's classes\."),
    Case("evaluate-unicode-and-space-names", lambda w: evaluate(w, data=unicode_data(w)), 0),
    Case("evaluate-1x1-images", lambda w: evaluate(w, data=one_pixel_images(w)), 0),
    Case("evaluate-batch-size-zero", lambda w: evaluate(w, "--batch-size", "0"), E,
         r"--batch-size must be >= 1\. Received: 0"),
    Case("evaluate-split-test-without-test-folder", lambda w: evaluate(w, "--split", "test"),
         E, r"--split test: .* has no test/ subfolder"),
    Case("evaluate-output-under-a-file",
         lambda w: evaluate(w, "--output", str(w.under_file("eval"))), E, r".*blocker.*"),
    Case("evaluate-output-read-only",
         lambda w: evaluate(w, "--output", str(w.mount("ro") / "eval")), E,
         r"Read-only file system: .*ro/eval"),
    # predict
    Case("predict-image-missing", lambda w: predict(w, images=w.tmp / "no.png"), E,
         r"No such image file or folder: .*no\.png"),
    Case("predict-empty-folder", lambda w: predict(w, images=w.folder()), E, r"No images .*"),
    Case("predict-symlink-loop", lambda w: predict(w, images=symlink_loop(w, w.folder())), E,
         r".*a\.png.*"),
    Case("predict-folder-linking-to-itself", lambda w: predict(w, images=folder_with_ancestor_links(w)),
         0),
    Case("predict-unicode-and-space-names", lambda w: predict(w, images=unicode_data(w)), 0),
    Case("predict-1x1-image", lambda w: predict(w, images=one_pixel_images(w)), 0),
    Case("predict-top-k-zero", lambda w: predict(w, "--top-k", "0"), E,
         r"--top-k and --batch-size must be positive\."),
    Case("predict-batch-size-negative", lambda w: predict(w, "--batch-size", "-1"), E,
         r"--top-k and --batch-size must be positive\."),
    Case("predict-max-pixels-negative", lambda w: predict(w, "--max-pixels", "-1"), E,
         r".*max.pixels.*"),
    Case("predict-saved-model-without-variables",
         lambda w: predict(w, model=saved_without_variables(w)), E, r".*variables.*"),
    Case("predict-saved-model-garbage-pb", lambda w: predict(w, model=saved_with_garbage_pb(w)),
         E, r".*saved_model\.pb.*"),
    Case("predict-output-under-a-file", lambda w: predict(w, "-o", str(w.under_file("p.csv"))),
         E, r".*blocker.*"),
    Case("predict-output-read-only", lambda w: predict(w, "-o", str(w.mount("ro") / "p.csv")),
         E, r"Read-only file system: .*/ro/p\.csv"),
    Case("predict-output-full-disk", lambda w: predict(w, "-o", str(w.mount("full") / "p.csv")),
         E, r"No space left on device: .*p\.csv"),
    # export
    Case("export-model-is-a-text-file", lambda w: export(w, model=w.file("m.keras")), E,
         r".*m\.keras is not a \.keras archive.*", check=no_version_folder),
    Case("export-version-zero", lambda w: export(w, "--version", "0"), E,
         r"version must be a positive int.*", check=no_version_folder),
    Case("export-version-negative", lambda w: export(w, "--version", "-3"), E,
         r"version must be a positive int.*", check=no_version_folder),
    Case("export-top-k-zero", lambda w: export(w, "--top-k", "0"), E,
         r"top_k must be a positive int.*", check=no_version_folder),
    Case("export-name-dot-dot", lambda w: export(w, "--name", ".."), E, r".*\.\..*",
         check=no_version_folder),
    Case("export-unicode-name-and-space-folder",
         lambda w: export(w, "--base-dir", str(w.tmp / "Saved Models é")), 0),
    Case("export-examples-missing", lambda w: export(w, "--examples", str(w.tmp / "nope")), E,
         r"No such image file or folder: .*nope", check=no_version_folder),
    Case("export-examples-empty-folder", lambda w: export(w, "--examples", str(w.folder())),
         E, r"No images .*", check=no_version_folder),
    Case("export-labels-empty-file", lambda w: export(w, "--labels", str(w.file(text=""))), E,
         r"The labels file .* is empty\.", check=no_version_folder),
    Case("export-base-dir-is-a-file", lambda w: export(w, "--base-dir", str(w.file())), E,
         r".*file\.txt.*"),
    Case("export-base-dir-under-a-file",
         lambda w: export(w, "--base-dir", str(w.under_file("SM"))), E, r".*blocker.*"),
    Case("export-base-dir-read-only",
         lambda w: export(w, "--base-dir", str(w.mount("ro") / "SM")), E,
         r"Read-only file system: .*ro/SM.*"),
    Case("export-base-dir-full-disk",
         lambda w: export(w, "--base-dir", str(w.mount("full") / "SM")), E,
         r".*No space left on device.*",
         check=lambda w: [] == [p for p in w.mount("full").rglob("*")
                                if p.is_dir() and p.name.isdigit()]),
    # tune
    Case("tune-config-malformed-yaml", lambda w: tune_text(w, "data: [unclosed\n  x: {"), E,
         r".*search\.yaml is not valid YAML: .*"),
    Case("tune-config-empty-file", lambda w: tune_text(w, ""), E, r".*must hold a mapping.*"),
    Case("tune-config-binary", lambda w: tune_text(w, "\x00\x01\x02\x03"), E,
         r".*search\.yaml.*"),
    Case("tune-config-alias-bomb", lambda w: tune_text(w, "\n".join(
        ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
        + ["data: {source: folder, path: x, image_size: 32}"]) + "\n"), E,
         r"Unknown key\(s\) \['a0', .*"),
    Case("tune-data-not-a-mapping", lambda w: tune(w, data="images/"), E,
         r".*'data:' is required.*"),
    Case("tune-max-trials-a-word", lambda w: tune(w, max_trials="three"), E,
         r".*max_trials.*"),
    Case("tune-max-epochs-negative", lambda w: tune(w, max_epochs=-1), E, r".*max_epochs.*"),
    Case("tune-max-trials-zero-flag", lambda w: tune(w, "--max-trials", "0"), E,
         r".*max.trials.*"),
    Case("tune-image-size-a-word", lambda w: tune(w, data_image_size="big"), E,
         r"data\.image_size must be an int or \[height, width\]\. Received: 'big'"),
    Case("tune-image-size-zero", lambda w: tune(w, data_image_size=0), E, r".*image_size.*"),
    Case("tune-batch-size-a-word", lambda w: tune(w, data_batch_size="x"), E,
         r".*batch_size.*"),
    Case("tune-validation-split-1.5", lambda w: tune(w, data_validation_split=1.5), E,
         r"validation_split must be a number in \[0, 1\)\. Received: validation_split=1\.5"),
    Case("tune-unknown-tuner", lambda w: tune(w, tuner="genetic"), E, r".*genetic.*"),
    Case("tune-unknown-backbone", lambda w: tune(w, backbones=["resnet5O"]), E,
         r"Unknown backbone 'resnet5O'.*"),
    Case("tune-backbones-a-number", lambda w: tune(w, backbones=5), E,
         r".*search\.yaml: 'backbones:' must be a backbone name or a list of names, e\.g\. "
         r"\[efficientnet_lite0\]\. Received: 5"),
    Case("tune-unknown-objective", lambda w: tune(w, objective="val_happiness"), E,
         r".*val_happiness.*"),
    Case("tune-space-bad-range", lambda w: tune(w, space={"learning_rate": {"min": "a"}}), E,
         r".*learning_rate.*"),
    Case("tune-space-unknown-hyperparameter", lambda w: tune(w, space={"colour": [1, 2]}), E,
         r".*colour.*"),
    Case("tune-data-path-is-a-file", lambda w: tune(w, data_path=str(w.file())), E,
         r".*file\.txt.*"),
    Case("tune-data-one-class", lambda w: tune(w, data_path=str(w.images(classes=("cat",)))),
         E, r".*class.*"),
    Case("tune-directory-under-a-file",
         lambda w: tune(w, directory=str(w.under_file("tuning"))), E, r".*blocker.*"),
    Case("tune-directory-read-only",
         lambda w: tune(w, directory=str(w.mount("ro") / "tuning")), E,
         r"Read-only file system: .*ro/tuning.*"),
    Case("tune-oracle-port-out-of-range", lambda w: tune(w, "--chief", "--oracle-port", "70000"),
         E, r"--oracle-port must be 1-65535\. Received: 70000"),
    Case("tune-unicode-and-space-names",
         lambda w: tune(w, directory=str(w.tmp / "mes réglages"), data_path=str(unicode_data(w))),
         0, marks=(pytest.mark.slow,)),
    Case("tune-project-name-unicode", lambda w: tune(w, project_name="été 1"), E,  # by design
         r"project_name must be a folder-safe project name \(letters, digits, .*\)\. "
         r"Received: project_name='été 1'"),
    # backbones, demo
    Case("backbones-unknown-family", lambda w: ["backbones", "--family", "resnet 50"], E,
         r"No backbone family 'resnet 50'\. Known: .*"),
    Case("backbones-unknown-flag", lambda w: ["backbones", "--colour"], E,
         r"unrecognized arguments: --colour"),
    Case("demo-output-is-a-file", lambda w: ["demo", "--quick", "--output", str(w.file())], E,
         r"--output .*file\.txt exists and is not a folder"),
    Case("demo-output-under-a-file",
         lambda w: ["demo", "--quick", "--output", str(w.under_file("demo"))], E,
         r".*blocker.*"),
    Case("demo-output-read-only",
         lambda w: ["demo", "--quick", "--output", str(w.mount("ro") / "demo")], E,
         r"Read-only file system: .*ro/demo"),
]


class _Hung(BaseException):
    """Raised by the alarm: not an Exception, so the CLI's handlers let it through."""


def _call(argv: list[str], timeout_s: int = CASE_TIMEOUT_S) -> int:
    def alarm(signum, frame):
        raise _Hung(f"kerastl {' '.join(argv)} ran over {timeout_s} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(timeout_s)
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        return exit_.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_hostile_input(case: Case, world, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written by default lands here
    w = W(world, tmp_path / "case")
    w.tmp.mkdir()
    argv = case.argv(w)
    capsys.readouterr()
    code = _call(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert code == case.code, err
    lines = err.strip().splitlines()
    if case.code == 0:
        assert not any(line.startswith("kerastl:") for line in lines), err
    else:
        assert len(lines) == 1, err
        assert lines[0].startswith("kerastl: error: "), err
        assert re.fullmatch(case.line, lines[0].removeprefix("kerastl: error: ")), lines[0]
    if case.check is not None:
        case.check(w)


def test_the_sweep_covers_every_command():
    commands = {c.id.split("-")[0] for c in CASES}
    assert commands == {"train", "evaluate", "predict", "export", "tune", "backbones", "demo"}
    assert len({c.id for c in CASES}) == len(CASES)


# --- SIGKILL at a random point ------------------------------------------------------------

def _sha_tree(root: Path) -> dict[str, str]:
    """sha256 of ``root`` (a file) or of every file under it (a folder)."""
    if root.is_file():
        return {root.name: hashlib.sha256(root.read_bytes()).hexdigest()}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _kerastl(cwd: Path, *argv) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, "-m", "kerastl", *map(str, argv)], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _timed(cwd: Path, *argv) -> float:
    """Run a kerastl command to its end (it must succeed); its duration in seconds."""
    start = time.perf_counter()
    code, err = _finish(_kerastl(cwd, *argv))
    assert code == 0, err
    return time.perf_counter() - start


def _kill_during(cwd: Path, duration: float, *argv, seed_offset: int = 0) -> str:
    """Start ``argv`` and SIGKILL it at a seeded random point of a run of ``duration``."""
    seed = int(os.environ.get("KERASTL_SWEEP_SEED", "0")) + seed_offset
    delay = random.Random(seed).uniform(0.15, 0.95) * duration
    proc = _kerastl(cwd, *argv)
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return f"seed {seed}: {'killed' if killed else 'had ended'} after {delay:.1f} of {duration:.1f} s"


def _rerun(cwd: Path, capsys, monkeypatch, *argv) -> tuple[int, str]:
    """Run ``kerastl argv`` from ``cwd`` in this process: the runs after a kill, whose
    point is what the killed process left on disk (the process boundary is the killed
    run's), without another TensorFlow start-up."""
    monkeypatch.chdir(cwd)
    capsys.readouterr()
    code = _call([str(a) for a in argv], timeout_s=600)  # as long as _finish waits
    return code, capsys.readouterr().err


def _loads(model_file: Path) -> None:
    with zipfile.ZipFile(model_file) as archive:
        assert archive.testzip() is None
        json.loads(archive.read("config.json"))


@pytest.mark.slow
def test_train_killed_at_a_random_point(tmp_path, capsys, monkeypatch):
    data = _images(tmp_path / "data")
    command = ["train", "data", "--backbone", "mobilenet_v2", "--weights", "none",
               "--image-size", "32", "--batch-size", "4", "--head-epochs", "1", "--epochs", "1"]
    duration = _timed(tmp_path, *command, "--output", "runs/previous")
    before = {"data": _sha_tree(data), "previous": _sha_tree(tmp_path / "runs" / "previous")}
    when = _kill_during(tmp_path, duration, *command, "--output", "runs/killed")
    assert {"data": _sha_tree(data),
            "previous": _sha_tree(tmp_path / "runs" / "previous")} == before, when
    killed = tmp_path / "runs" / "killed"
    finished = (killed / "model.keras").exists()
    if finished:  # saved before the kill: complete, never half a file
        _loads(killed / "model.keras")
    code, err = _rerun(tmp_path, capsys, monkeypatch, *command, "--output", "runs/killed")
    if finished:
        assert code == 2 and "already holds a trained model" in err, (when, err)
    else:
        assert code == 0, (when, err)
        _loads(killed / "model.keras")
        json.loads((killed / "report.json").read_text())
    assert not [p for p in killed.iterdir() if p.name.startswith(".kerastl-tmp")], when
    # and a run choosing its own folder in the same place
    assert _rerun(tmp_path, capsys, monkeypatch, *command)[0] == 0, when


@pytest.mark.slow
def test_export_killed_at_a_random_point(tmp_path, capsys, monkeypatch):
    from kerastl.export import saved_model

    tiny_classifier(num_classes=2).save(tmp_path / "pets.keras")
    command = ["export", "pets.keras", "--name", "pets", "--base-dir", "SM",
               "--class-names", "cat,dog"]
    duration = _timed(tmp_path, *command)
    before = _sha_tree(tmp_path / "SM" / "pets" / "1"), _sha_tree(tmp_path / "pets.keras")
    when = _kill_during(tmp_path, duration, *command, seed_offset=1)
    after = _sha_tree(tmp_path / "SM" / "pets" / "1"), _sha_tree(tmp_path / "pets.keras")
    assert after == before, when

    def complete_versions() -> list[int]:
        versions = saved_model.versions(tmp_path / "SM" / "pets")
        folders = sorted(int(p.name) for p in (tmp_path / "SM" / "pets").iterdir()
                         if p.name.isdigit())
        assert folders == versions, when  # every integer folder is a version TF Serving sees
        for v in versions:  # ... and complete
            version = tmp_path / "SM" / "pets" / str(v)
            assert (version / "saved_model.pb").is_file(), (when, v)
            assert (version / "variables" / "variables.index").is_file(), (when, v)
        return versions

    versions = complete_versions()
    assert versions in ([1], [1, 2]), (when, versions)
    _check_models_config(tmp_path / "SM")
    code, err = _rerun(tmp_path, capsys, monkeypatch, *command)
    assert code == 0, (when, err)
    assert complete_versions() == versions + [versions[-1] + 1], when
    _check_models_config(tmp_path / "SM")


def _check_models_config(base: Path) -> None:
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = base / "models.config"
    if config.exists():
        text_format.Parse(config.read_text(), model_server_config_pb2.ModelServerConfig())


@pytest.mark.slow
def test_tune_killed_at_a_random_point(tmp_path, capsys, monkeypatch):
    data = _images(tmp_path / "data")
    w = W(SimpleNamespace(data=data), tmp_path)
    config = tune_config(w, max_trials=2, directory="tuning", project_name="killed")
    earlier = tmp_path / "earlier.yaml"
    earlier.write_text(config.read_text().replace("project_name: killed",
                                                  "project_name: earlier"))
    duration = _timed(tmp_path, "tune", earlier)
    planted = [data, config, earlier, tmp_path / "tuning" / "earlier"]
    before = [_sha_tree(p) for p in planted]
    when = _kill_during(tmp_path, duration, "tune", config, seed_offset=2)
    assert [_sha_tree(p) for p in planted] == before, when
    code, err = _rerun(tmp_path, capsys, monkeypatch, "tune", config)  # resumes the killed search
    assert code == 0, (when, err)
    assert (tmp_path / "tuning" / "killed" / "results.csv").is_file(), when
    assert [_sha_tree(p) for p in planted] == before, when
