"""One trial in its own process (``isolate_trials=True``).

``python -m kerastl.tuning.isolate PAYLOAD.pkl``: the parent tuner writes the
payload (the hypermodel, the trial's hyperparameters, epochs, file names);
this process reads the datasets the search saved with ``tf.data.Dataset.save``,
builds and fits the model, saves its weights and writes the metrics as JSON.
Whatever the trial leaks dies with the process.

The payload is a pickle written by the parent process of the same user, and
is read only from the trial folder the parent created.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shutil
import sys

from kerastl.config import DEFAULT_SEED

#: The folder of a project that holds the isolated trials' copies of the data.
DATA_FOLDER = "isolated_data"


def load_datasets(data_dir: str):
    """The ``(train, val)`` datasets saved by :func:`save_datasets`, batches reshuffled."""
    import tensorflow as tf

    train = tf.data.Dataset.load(os.path.join(data_dir, "train"))
    val = tf.data.Dataset.load(os.path.join(data_dir, "val"))
    batches = int(train.cardinality())
    if batches > 1:  # the saved copy has one order; shuffle batches each epoch
        train = train.shuffle(batches, seed=DEFAULT_SEED, reshuffle_each_iteration=True)
    return train.prefetch(tf.data.AUTOTUNE), val.prefetch(tf.data.AUTOTUNE)


def save_datasets(train, val, data_dir: str) -> None:
    """Save ``train`` and ``val`` once under ``data_dir``.

    A complete copy (a search killed and resumed) is reused; a partial one
    (killed while saving) is removed and saved again.
    """
    marker = os.path.join(data_dir, "complete")
    if os.path.exists(marker):
        return
    if os.path.isdir(data_dir):
        shutil.rmtree(data_dir)
    train.save(os.path.join(data_dir, "train"))
    val.save(os.path.join(data_dir, "val"))
    with open(marker, "w") as f:
        f.write("ok\n")


def remove_datasets(data_dir: str | os.PathLike) -> None:
    """Delete the copy :func:`save_datasets` wrote, and its parent folder once empty.

    Called when a search ends (unless ``keep_cache=True``): the copy is as
    large as the datasets and only serves the trials of that search. The
    parent ``isolated_data`` folder goes too once no other tuner's copy is in it.
    """
    shutil.rmtree(data_dir, ignore_errors=True)
    parent = os.path.dirname(os.path.abspath(data_dir))
    if os.path.basename(parent) == DATA_FOLDER:
        with contextlib.suppress(OSError):  # other workers' copies may still be there
            os.rmdir(parent)


def data_dir_for(project_dir: str | os.PathLike, tuner_id: str | None = None) -> str:
    """Where one tuner of a project saves its copy: ``isolated_data/<tuner id or local>``.

    Each worker of a distributed search has its own copy, so workers sharing
    the project folder neither write into nor delete one another's.
    """
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", tuner_id or "local").strip("._") or "local"
    return os.path.join(os.fspath(project_dir), DATA_FOLDER, name)


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras_tuner as kt

    from kerastl.loading import register_keras_objects
    from kerastl.tuning.tuner import write_json_atomic

    register_keras_objects()  # quiet TF import, custom layers registered
    with open(argv[0], "rb") as f:
        payload = pickle.load(f)  # written by the parent tuner for this trial
    hp = kt.HyperParameters.from_config(payload["hp_config"])
    hypermodel = payload["hypermodel"]
    train, val = load_datasets(payload["data_dir"])
    model = hypermodel.build(hp)
    if payload["load_weights"]:
        model.load_weights(payload["load_weights"])
    metrics = hypermodel.fit(hp, model, train, validation_data=val, epochs=payload["epochs"],
                             initial_epoch=payload["initial_epoch"], callbacks=[],
                             verbose=payload["verbose"])
    model.save_weights(payload["save_weights"])
    write_json_atomic(payload["result_file"], metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
