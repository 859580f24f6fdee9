"""Search results: the trials table, best hyperparameters as JSON, and plots.

Files written into the project folder (``tuning/<project>/``):

- ``results.csv`` and ``results.json``: one row per trial (trial id, status,
  hyperparameter values, metrics, score, seconds);
- ``best_hyperparameters.json``: the best trial's values, its id and score;
- ``score_by_trial.png``: the score of each completed trial, and the best so far;
- ``hyperparameters_vs_score.png``: one panel per tuned hyperparameter.
"""

from __future__ import annotations

import csv
import math
import pathlib

from kerastl.atomic import atomic_write
from kerastl.tuning.tuner import write_json_atomic

_METRIC_ORDER = ("val_accuracy", "val_loss", "accuracy", "loss")


def trials_table(oracle, objective_name: str) -> list[dict]:
    """One dict per trial of ``oracle``, ordered by trial id.

    Keys: ``trial_id``, ``status``, each hyperparameter value (``tuner/*``
    bookkeeping of Hyperband included), each reported metric, ``score`` (the
    objective, ``None`` unless completed) and ``seconds``.
    """
    rows = []
    for trial_id in sorted(oracle.trials, key=_trial_key):
        trial = oracle.trials[trial_id]
        row = {"trial_id": trial_id, "status": trial.status}
        row.update(trial.hyperparameters.values)
        for name in sorted(trial.metrics.metrics, key=_metric_key):
            value = trial.metrics.get_best_value(name)
            row[name] = None if value is None else float(value)
        score = trial.score if trial.status == "COMPLETED" else None
        row["score"] = None if score is None or not math.isfinite(score) else float(score)
        rows.append(row)
    return rows


def _trial_key(trial_id: str):
    return (len(trial_id), trial_id)


def _metric_key(name: str):
    return (_METRIC_ORDER.index(name) if name in _METRIC_ORDER else len(_METRIC_ORDER), name)


def best_row(rows: list[dict], direction: str) -> dict | None:
    """The completed row with the best score (``direction``: ``"max"`` or ``"min"``)."""
    scored = [r for r in rows if r.get("score") is not None]
    if not scored:
        return None
    pick = max if direction == "max" else min
    return pick(scored, key=lambda r: r["score"])


def write_table(rows: list[dict], folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """Write ``results.csv`` and ``results.json``; returns their paths."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)

    def write_csv(f) -> None:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    csv_path = atomic_write(folder / "results.csv", write_csv, text=True)
    json_path = folder / "results.json"
    write_json_atomic(json_path, rows)
    return {"results_csv": csv_path, "results_json": json_path}


def write_best(best: dict | None, names: list[str], objective: str,
               folder: pathlib.Path) -> pathlib.Path:
    """Write ``best_hyperparameters.json`` (values of ``names``, trial id, score)."""
    path = folder / "best_hyperparameters.json"
    data = {"objective": objective, "trial_id": None, "score": None, "hyperparameters": {}}
    if best is not None:
        data.update(trial_id=best["trial_id"], score=best["score"],
                    hyperparameters={n: best[n] for n in names if n in best})
    write_json_atomic(path, data)
    return path


def format_table(rows: list[dict], names: list[str], objective: str) -> str:
    """A text table: trial, hyperparameter values, objective, score, seconds."""
    header = ["trial", "status", *names, objective, "score", "seconds"]
    lines = []
    for r in rows:
        cells = [r["trial_id"], r["status"][:9]]
        cells += [_short(r.get(n)) for n in names]
        cells += [_short(r.get(objective)), _short(r.get("score")), _short(r.get("seconds"), 1)]
        lines.append(cells)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*map(str, row)) for row in [header, *lines])


def _short(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4):
            return f"{value:.{max(digits - 2, 1)}e}"
        return f"{value:.{digits}f}"
    return str(value)


def plot_results(rows: list[dict], names: list[str], objective: str,
                 folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """Write ``score_by_trial.png`` and ``hyperparameters_vs_score.png``."""
    from kerastl.reports.plots import _pyplot

    plt = _pyplot()
    done = [r for r in rows if r.get("score") is not None]
    files = {}
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if done:
        xs = list(range(1, len(done) + 1))
        scores = [r["score"] for r in done]
        ax.plot(xs, scores, "o", label=objective)
        best, best_so_far = None, []
        maximise = "acc" in objective or "auc" in objective
        for s in scores:
            best = s if best is None else (max(best, s) if maximise else min(best, s))
            best_so_far.append(best)
        ax.step(xs, best_so_far, where="post", label="best so far")
        ax.set_xticks(xs)
        ax.set_xticklabels([r["trial_id"] for r in done], rotation=90, fontsize=7)
        ax.legend()
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title("Score by trial")
    fig.tight_layout()
    files["score_plot"] = folder / "score_by_trial.png"
    fig.savefig(files["score_plot"], dpi=100)
    plt.close(fig)

    tuned = [n for n in names if len({_hashable(r.get(n)) for r in done}) > 1] or names
    cols = min(3, max(1, len(tuned)))
    nrows = max(1, math.ceil(len(tuned) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, tuned, strict=False):
        values = [r.get(name) for r in done]
        scores = [r["score"] for r in done]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and values:
            ax.plot(values, scores, "o")
            if name.endswith("learning_rate") and min(values) > 0:
                ax.set_xscale("log")
        else:
            labels = sorted({str(v) for v in values})
            ax.plot([labels.index(str(v)) for v in values], scores, "o")
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=30, fontsize=7)
        ax.set_xlabel(name)
        ax.set_ylabel(objective)
    for ax in list(axes.flat)[len(tuned):]:
        ax.axis("off")
    fig.tight_layout()
    files["hyperparameter_plot"] = folder / "hyperparameters_vs_score.png"
    fig.savefig(files["hyperparameter_plot"], dpi=100)
    plt.close(fig)
    return files


def _hashable(value):
    return str(value)
