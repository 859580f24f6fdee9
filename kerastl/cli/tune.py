"""``kerastl tune CONFIG.yaml``: hyperparameter search, alone or as chief/worker of a cluster."""

from __future__ import annotations

import contextlib
import ipaddress
import os

from kerastl.errors import UserInputError

_ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "tune", help="search backbones and fine-tuning hyperparameters (KerasTuner)",
        description="Run the search described by CONFIG.yaml (search space, data, budget; "
                    "examples in tuning/). Results go to <directory>/<project_name>/: "
                    "results.csv, best_hyperparameters.json and plots. Rerun the same "
                    "command to resume an interrupted search.")
    p.add_argument("config", metavar="CONFIG.yaml", help="tuning config (see docs/tuning.md)")
    role = p.add_mutually_exclusive_group()
    role.add_argument("--chief", action="store_true",
                      help="serve the oracle to workers (runs no trials)")
    role.add_argument("--worker", action="store_true",
                      help="run trials for the chief at --oracle-ip:--oracle-port")
    p.add_argument("--tuner-id", default=None,
                   help="unique worker name (default: tuner<pid>); the chief is 'chief'")
    p.add_argument("--oracle-ip", default=None,
                   help="chief address (default: $KERASTUNER_ORACLE_IP or 127.0.0.1)")
    p.add_argument("--oracle-port", type=int, default=None,
                   help="chief port (default: $KERASTUNER_ORACLE_PORT or 8000)")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh instead of resuming the project")
    p.add_argument("--max-trials", type=int, default=None, help="override max_trials")
    p.add_argument("--max-epochs", type=int, default=None, help="override max_epochs")
    p.add_argument("--isolate-trials", action="store_true",
                   help="run each trial in its own process")
    p.add_argument("--keep-cache", action="store_true",
                   help="keep the copy of the data --isolate-trials saves in the project "
                        "(default: deleted when the search ends)")
    p.add_argument("--export", default=None, metavar="NAME",
                   help="export the best model to SavedModels/NAME (or the config's export:)")
    p.set_defaults(func=run)


@contextlib.contextmanager
def _distributed_env(args):
    """Set KerasTuner's chief/worker variables for this command, then restore them."""
    saved = {k: os.environ.get(k) for k in _ENV}
    try:
        if args.chief or args.worker:
            ip = args.oracle_ip or os.environ.get("KERASTUNER_ORACLE_IP") or "127.0.0.1"
            port = args.oracle_port or os.environ.get("KERASTUNER_ORACLE_PORT") or 8000
            try:
                ipaddress.ip_address(ip.strip("[]"))
            except ValueError:
                if not ip.replace("-", "").replace(".", "").isalnum():
                    raise UserInputError(f"--oracle-ip {ip!r} is not an address.") from None
            if not 0 < int(port) < 65536:
                raise UserInputError(f"--oracle-port must be 1-65535. Received: {port}")
            tuner_id = "chief" if args.chief else (args.tuner_id or f"tuner{os.getpid()}")
            if args.worker and "chief" in tuner_id:
                raise UserInputError("A worker's --tuner-id must not contain 'chief'.")
            os.environ.update(KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP=ip,
                              KERASTUNER_ORACLE_PORT=str(port))
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run(args) -> int:
    from kerastl.paths import check_name
    from kerastl.tuning.config import load_config, load_data, search_kwargs

    config = load_config(args.config)
    if args.export is not None:  # checked now, not after an hour of search
        check_name(args.export, what="--export", kind="model name")
    kwargs = search_kwargs(config)
    if args.max_trials is not None:
        kwargs["max_trials"] = args.max_trials
    if args.max_epochs is not None:
        kwargs["max_epochs"] = args.max_epochs
    if args.isolate_trials:
        kwargs["isolate_trials"] = True
    if args.keep_cache:
        kwargs["keep_cache"] = True
    with _distributed_env(args):
        from kerastl.tuning import search

        splits = load_data(config["data"])
        result = search(splits, overwrite=args.overwrite, verbose=1 if not args.chief else 0,
                        **kwargs)
    if result.role == "worker":
        print(f"worker done: ran {len(result.trials_run)} trials "
              f"({', '.join(result.trials_run) or 'none'}) for the chief")
        return 0
    print(result.table())
    print(f"best {result.objective}: "
          + ("-" if result.best_score is None else f"{result.best_score:.4f}")
          + f" (trial {result.best_trial_id})")
    for key, path in result.files.items():
        print(f"  {key:<21}{path}")
    export = dict(config.get("export") or {})
    if args.export:
        export["name"] = args.export
    if export.get("name") and result.best_trial_id is not None:
        path = result.export(export["name"], export.get("base_dir", "SavedModels"),
                             class_names=splits.class_names)
        print(f"  {'exported':<21}{path}")
    return 0
