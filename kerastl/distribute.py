"""Distribution strategies: one device, several GPUs, a cluster of machines, a TPU.

``get_strategy("auto")`` picks the widest strategy the hardware offers and
logs its choice; explicit names fail with one clear error when the hardware
is missing. The helpers below keep the rest of kerastl strategy-agnostic:
variables are created in ``strategy.scope()``, the global batch is the
per-replica batch times the number of replicas, and datasets are sharded
across workers (by file when the pipeline reads files, else by element).

Example:
    >>> strategy = ktl.distribute.get_strategy()          # logs e.g. "2 GPUs"
    >>> result = ktl.fine_tune(model, splits.train, splits.val, strategy=strategy)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os

import keras
import tensorflow as tf

from kerastl._compat import flatten_layers
from kerastl.errors import UserInputError, close_matches

log = logging.getLogger(__name__)

STRATEGY_NAMES = ("auto", "cpu", "gpu", "mirrored", "multi_worker", "tpu")
PRECISION_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def get_strategy(name="auto", *, devices=None) -> tf.distribute.Strategy:
    """Return a ``tf.distribute.Strategy`` for ``name`` and log the choice.

    Args:
        name: ``"auto"`` (a TPU when one is configured; a multi-worker
            strategy when ``TF_CONFIG`` describes a cluster of several
            workers; ``MirroredStrategy`` over all GPUs when there are
            several; the one GPU; else the CPU), ``"cpu"``, ``"gpu"`` (one
            GPU), ``"mirrored"`` (all local GPUs, or all logical CPU devices
            when there is no GPU), ``"multi_worker"`` (the cluster in
            ``TF_CONFIG``) or ``"tpu"``. A ``tf.distribute.Strategy`` is
            returned unchanged.
        devices: for ``"mirrored"``, the device names to mirror over
            (e.g. ``["/cpu:0", "/cpu:1"]``).

    Returns:
        The strategy. Build models, optimizers and metrics in its ``scope()``.

    Raises:
        ValueError: the name is unknown, or the hardware or ``TF_CONFIG``
            that the name needs is missing.
    """
    if isinstance(name, tf.distribute.Strategy):
        return name
    key = str(name).lower().replace("-", "_")
    if key not in STRATEGY_NAMES:
        hint = close_matches(key, STRATEGY_NAMES)
        raise UserInputError(
            f"Unknown strategy '{name}'. Known: {', '.join(STRATEGY_NAMES)}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "") + f". Received: name={name!r}"
        )
    if key == "auto":
        strategy, why = _auto()
    elif key == "cpu":
        strategy, why = tf.distribute.OneDeviceStrategy("/cpu:0"), "the CPU"
    elif key == "gpu":
        _require_gpus(1, "gpu")
        strategy, why = tf.distribute.OneDeviceStrategy("/gpu:0"), "one GPU"
    elif key == "mirrored":
        strategy, why = _mirrored(devices)
    elif key == "multi_worker":
        cluster = _cluster_from_tf_config(required=True)
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        why = f"{len(cluster.get('worker', []))} workers from TF_CONFIG"
    else:
        strategy, why = _tpu(required=True), "a TPU"
    log.info("Distribution: %s on %s (%d replica%s in sync)", type(strategy).__name__, why,
             strategy.num_replicas_in_sync, "" if strategy.num_replicas_in_sync == 1 else "s")
    return strategy


def _auto():
    tpu = _tpu(required=False)
    if tpu is not None:
        return tpu, "a TPU"
    cluster = _cluster_from_tf_config(required=False)
    if cluster and len(cluster.get("worker", [])) + len(cluster.get("chief", [])) > 1:
        return (tf.distribute.MultiWorkerMirroredStrategy(),
                f"{len(cluster.get('worker', [])) + len(cluster.get('chief', []))} "
                "workers from TF_CONFIG")
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([g.name for g in gpus]), f"{len(gpus)} GPUs"
    if gpus:
        return tf.distribute.OneDeviceStrategy("/gpu:0"), "one GPU"
    return tf.distribute.OneDeviceStrategy("/cpu:0"), "the CPU (no GPU or TPU found)"


def _require_gpus(count: int, name: str):
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) < count:
        raise UserInputError(
            f"strategy={name!r} needs {'a GPU' if count == 1 else f'{count} GPUs'}, but "
            f"TensorFlow sees {len(gpus)} (check the NVIDIA driver and that the installed "
            "TensorFlow has CUDA support, e.g. pip install 'tensorflow[and-cuda]'), or use "
            "strategy='auto' / 'cpu'."
        )
    return gpus


def _mirrored(devices):
    if devices:
        return tf.distribute.MirroredStrategy(list(devices)), f"{len(devices)} devices"
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy([g.name for g in gpus]), f"{len(gpus)} GPUs"
    cpus = tf.config.list_logical_devices("CPU")
    return (tf.distribute.MirroredStrategy([c.name for c in cpus]),
            f"{len(cpus)} CPU device{'s' if len(cpus) > 1 else ''} (no GPU found)")


def _cluster_from_tf_config(required: bool) -> dict:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        if required:
            raise UserInputError(
                "strategy='multi_worker' needs the TF_CONFIG environment variable, e.g. "
                'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}\' on each machine.'
            )
        return {}
    try:
        config = json.loads(raw)
        cluster = config["cluster"]
        task = config["task"]
        if not isinstance(cluster, dict) or task["type"] not in cluster:
            raise KeyError("task type")
    except (ValueError, KeyError, TypeError) as err:
        raise UserInputError(
            "TF_CONFIG must be JSON with a 'cluster' dict of address lists and a 'task' "
            f"{{'type': ..., 'index': ...}} naming one of them. Received: {raw!r}"
        ) from err
    return cluster


def _tpu(required: bool):
    configured = any(os.environ.get(k) for k in ("TPU_NAME", "COLAB_TPU_ADDR", "TPU_ACCELERATOR_TYPE"))
    if not configured and not tf.config.list_physical_devices("TPU"):
        if required:
            raise UserInputError(
                "strategy='tpu' needs a TPU, but none is configured (no TPU device, no "
                "TPU_NAME / TPU_ACCELERATOR_TYPE in the environment). Use strategy='auto'."
            )
        return None
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=os.environ.get("TPU_NAME", "local" if not os.environ.get("COLAB_TPU_ADDR")
                               else ""))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as err:
        if required:
            raise UserInputError(f"strategy='tpu': could not connect to the TPU ({err}).") from err
        log.warning("A TPU seems configured but could not be used (%s); not using it", err)
        return None
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """True on the one worker that writes checkpoints and exports (always true locally)."""
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    cluster = resolver.cluster_spec().as_dict()
    if "chief" in cluster:
        return task_type == "chief"
    return task_type == "worker" and task_id == 0


def is_multi_worker(strategy: tf.distribute.Strategy | None) -> bool:
    """True for strategies whose replicas span several processes."""
    return strategy is not None and bool(getattr(strategy.extended, "_in_multi_worker_mode",
                                                 lambda: False)())


def global_batch_size(per_replica: int, strategy: tf.distribute.Strategy | None) -> int:
    """The global batch: ``per_replica`` examples on each of the strategy's replicas."""
    if isinstance(per_replica, bool) or not isinstance(per_replica, int) or per_replica < 1:
        raise UserInputError(f"batch size must be a positive int. Received: {per_replica!r}")
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    return per_replica * replicas


def shard_options(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Ask tf.data to shard ``dataset`` across workers by file, falling back to by element.

    ``AutoShardPolicy.AUTO`` shards by file when the pipeline reads files
    (TFRecord, text) and by element otherwise, which is always correct.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.AUTO
    return dataset.with_options(options)


# Names of get_strategy that a strategy inferred from a model's variables answers to.
_NAME_FITS = {"auto": (tf.distribute.Strategy,),
              "mirrored": (tf.distribute.MirroredStrategy,),
              "multi_worker": (tf.distribute.MultiWorkerMirroredStrategy,),
              "tpu": (tf.distribute.TPUStrategy,)}


def _variable_strategy(variable) -> tf.distribute.Strategy | None:
    """The strategy that created ``variable``, or None for a plain (one-device) variable.

    Under a multi-replica strategy, the TensorFlow variable behind a Keras
    variable (``variable.value``) is a ``tf.distribute.DistributedValues``
    (``MirroredVariable``, ``SyncOnReadVariable``, TPU variables) whose
    ``distribute_strategy`` property names its strategy. That property is not
    in TensorFlow's documented API, so it is read here only, and a
    distributed variable without it is an error rather than a silent
    fallback to Keras ``fit`` (which fails under multi-worker strategies).
    """
    value = getattr(variable, "value", variable)
    if not isinstance(value, tf.distribute.DistributedValues):
        return None
    strategy = getattr(value, "distribute_strategy", None)
    if not isinstance(strategy, tf.distribute.Strategy):
        raise RuntimeError(
            f"Cannot tell which strategy created the distributed variable {variable.name!r} "
            f"({type(value).__name__}) with TensorFlow {tf.__version__}: its "
            "distribute_strategy property is gone. Pass strategy= to fine_tune explicitly.")
    return strategy


def strategy_of(model: keras.Model) -> tf.distribute.Strategy | None:
    """The strategy in whose ``scope()`` the variables of ``model`` were created.

    Returns:
        The ``tf.distribute.Strategy`` (``MirroredStrategy``,
        ``MultiWorkerMirroredStrategy``, ``TPUStrategy``...), or None when the
        variables are plain one-device variables (built outside any
        multi-replica strategy).

    Raises:
        UserInputError: some variables belong to one strategy and others to
            another, or to none.
    """
    owners: dict[int, tf.distribute.Strategy | None] = {}
    for weight in model.weights:
        owner = _variable_strategy(weight)
        owners.setdefault(id(owner), owner)
    if len(owners) > 1:
        names = sorted(_describe(s) for s in owners.values())
        raise UserInputError(
            f"The variables of model '{model.name}' were created under different strategies "
            f"({', '.join(names)}). Build the whole model (backbone and head) inside one "
            "strategy.scope().")
    return next(iter(owners.values()), None)


def _describe(strategy) -> str:
    """``"MultiWorkerMirroredStrategy (2 replicas)"``: the public name, not the class's."""
    if strategy is None:
        return "no strategy"
    public = (("MultiWorkerMirroredStrategy", tf.distribute.MultiWorkerMirroredStrategy),
              ("MirroredStrategy", tf.distribute.MirroredStrategy),
              ("TPUStrategy", tf.distribute.TPUStrategy),
              ("OneDeviceStrategy", tf.distribute.OneDeviceStrategy))
    name = next((label for label, cls in public if isinstance(strategy, cls)),
                type(strategy).__name__)
    n = strategy.num_replicas_in_sync
    return f"{name} ({n} replica{'' if n == 1 else 's'})"


def strategy_for(model: keras.Model, strategy=None) -> tf.distribute.Strategy | None:
    """The strategy to train ``model`` under: the one that created its variables, or ``strategy``.

    A model built in ``strategy.scope()``, as TensorFlow's guides do, trains
    under that strategy without being told; passing the same strategy (or
    ``"auto"``, or the name of its kind, e.g. ``"multi_worker"``) is accepted.
    A model built outside any multi-replica strategy trains under
    ``strategy`` (see :func:`get_strategy`), or under none.

    Raises:
        UserInputError: ``strategy`` is another strategy than the one that
            created the model's variables, or the variables belong to
            several strategies.
    """
    owner = strategy_of(model)
    if owner is None:
        return get_strategy(strategy) if strategy is not None else None
    if strategy is None or strategy is owner:
        if strategy is None:
            log.info("Distribution: %s, inferred from the model's variables", _describe(owner))
        return owner
    if isinstance(strategy, str):
        key = strategy.lower().replace("-", "_")
        if isinstance(owner, _NAME_FITS.get(key, ())):
            return owner
        received = f"strategy={strategy!r}"
    else:
        received = f"strategy={_describe(strategy)}, another object"
    raise UserInputError(
        f"The variables of model '{model.name}' were created in the scope of "
        f"{_describe(owner)}, but {received} was passed. Variables live on the devices and "
        "workers of the strategy that created them: leave strategy= out to train under that "
        "one, or build the model inside the scope of the strategy you pass. "
        f"Received: {received}")


def variables_in_scope(model: keras.Model, strategy: tf.distribute.Strategy) -> bool:
    """True when every variable of ``model`` was created under ``strategy.scope()``."""
    extended = strategy.extended
    return all(extended.variable_created_in_scope(getattr(v, "value", v))
               for v in model.weights)


def check_precision(policy) -> str | None:
    """Validate a mixed-precision option (``None``, ``"mixed_float16"``, ...)."""
    if policy in (None, False, "", "none"):
        return None
    if policy not in PRECISION_POLICIES:
        raise UserInputError(
            f"Unknown mixed precision policy {policy!r}. Known: {', '.join(PRECISION_POLICIES)}"
        )
    return None if policy == "float32" else policy


@contextlib.contextmanager
def precision(policy: str | None):
    """Set Keras's global dtype policy inside the block; the previous one is restored.

    Args:
        policy: ``"mixed_float16"`` (GPUs), ``"mixed_bfloat16"`` (TPUs, recent
            CPUs/GPUs), ``"float32"`` or ``None`` (leave the policy alone).
    """
    policy = check_precision(policy)
    if policy is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def rebuild(model: keras.Model, *, strategy: tf.distribute.Strategy | None = None,
            policy: str | None = None) -> keras.Model:
    """A copy of ``model`` built in ``strategy.scope()`` and/or under a dtype ``policy``.

    Variables live on the devices of the strategy that created them, and the
    compute dtype is fixed when a layer is built, so a model built elsewhere
    is rebuilt from its config and its weights and trainable flags copied
    over. The output layer ``predictions`` keeps float32 outputs.
    """
    config = model.get_config()
    if policy is not None:
        _set_policy(config, policy)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        clone = model.__class__.from_config(config)
        clone.set_weights(model.get_weights())
    for source, target in zip(flatten_layers(model, include_self=False),
                              flatten_layers(clone, include_self=False),
                              strict=True):
        target.trainable = source.trainable
    return clone


def _set_policy(config, policy: str) -> None:
    """Replace float32 layer policies by ``policy`` in a model config, in place."""
    if isinstance(config, list):
        for item in config:
            _set_policy(item, policy)
        return
    if not isinstance(config, dict):
        return
    keep = config.get("name") == "predictions" or config.get("class_name") == "InputLayer"
    dtype = config.get("dtype")
    if not keep and isinstance(dtype, dict) and dtype.get("class_name") == "DTypePolicy":
        if dtype.get("config", {}).get("name") == "float32":
            config["dtype"] = {**dtype, "config": {**dtype["config"], "name": policy}}
    for key, value in config.items():
        if key != "dtype":
            _set_policy(value, policy)
