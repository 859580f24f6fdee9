"""Which ops a SavedModel signature runs, read from ``saved_model.pb`` without running it.

A SavedModel is code: its graph may write and read files, call back into Python
or talk to other machines, and TensorFlow runs whatever the graph holds when a
signature is called. :func:`check_trusted` looks at the ops a signature can
reach and refuses a model that holds any op of :data:`DENIED_OPS`.

What counts as reachable (an over-approximation, so nothing is missed):

- the nodes of the main graph the signature's outputs depend on (data and
  control inputs, recursively);
- every node of every library function such a node names: a call
  (``PartitionedCall``/``StatefulPartitionedCall`` ``f``), a branch or body
  (``If``, ``While``, ``Case``), a dataset function, a node whose op *is* a
  function, and so on, recursively; a function counts whole, since TensorFlow
  runs its stateful ops even when no output needs them;
- what runs when the model is loaded: the ``__saved_model_init_op`` signature,
  the legacy main/init op collections, and the functions that create and
  initialize the model's resources (lookup tables...).

This is a deny-list, not a sandbox: an op that is not on the list runs, and a
model can still answer garbage or spend memory. See ``docs/trust.md``.
"""

from __future__ import annotations

import os
import pathlib

from kerastl.errors import UserInputError

#: Ops refused in an untrusted SavedModel, with what each group can do.
DENIED_OPS: dict[str, str] = {}
for _why, _ops in {
    "writes files": (
        "WriteFile Save SaveV2 SaveSlices MergeV2Checkpoints DatasetToTFRecord "
        "ExperimentalDatasetToTFRecord SaveDataset SaveDatasetV2 DistributedSave "
        "SnapshotDataset SnapshotDatasetV2 CreateSummaryFileWriter CreateSummaryDbWriter "
        "SummaryWriter WriteSummary WriteScalarSummary WriteHistogramSummary "
        "WriteImageSummary WriteAudioSummary WriteGraphSummary WriteRawProtoSummary "
        "FlushSummaryWriter CloseSummaryWriter StatsAggregatorSetSummaryWriter PrintV2 "
        "Print DebugIdentity DebugIdentityV2 DebugIdentityV3 DebugNanCount "
        "DebugNumericSummary DebugNumericSummaryV2 Copy CopyHost FileSystemSetConfiguration"),
    "reads files": (
        "ReadFile MatchingFiles MatchingFilesDataset ExperimentalMatchingFilesDataset "
        "ImmutableConst Restore RestoreV2 RestoreSlice LoadAndRemapMatrix LoadDataset "
        "TFRecordDataset TFRecordDatasetV2 FixedLengthRecordDataset "
        "FixedLengthRecordDatasetV2 TextLineDataset LMDBDataset ExperimentalLMDBDataset "
        "SqlDataset ExperimentalSqlDataset SnapshotDatasetReader SnapshotChunkDataset "
        "SnapshotNestedDatasetReader ListSnapshotChunksDataset WholeFileReader "
        "WholeFileReaderV2 TextLineReader TextLineReaderV2 TFRecordReader TFRecordReaderV2 "
        "FixedLengthRecordReader FixedLengthRecordReaderV2 LMDBReader "
        "InitializeTableFromTextFile InitializeTableFromTextFileV2"),
    "runs Python code": "PyFunc PyFuncStateless EagerPyFunc",
    "talks to other processes or machines": (
        "DataServiceDataset DataServiceDatasetV2 DataServiceDatasetV3 DataServiceDatasetV4 "
        "RegisterDataset RegisterDatasetV2 Send Recv CollectiveBcastSend CollectiveBcastRecv "
        "CollectiveBcastSendV2 CollectiveBcastRecvV2 CollectiveGather CollectiveGatherV2 "
        "CollectiveReduce CollectiveReduceV2 CollectiveReduceV3 CollectiveAllToAllV2 "
        "CollectiveAllToAllV3 CollectiveReduceScatterV2 CollectivePermute "
        "CollectiveInitializeCommunicator CollectiveAssignGroupV2"),
}.items():
    DENIED_OPS.update(dict.fromkeys(_ops.split(), _why))
del _why, _ops

_INIT_SIGNATURE = "__saved_model_init_op"
_INIT_COLLECTIONS = ("saved_model_main_op", "legacy_init_op", "table_initializer")
_RESOURCE_FUNCTIONS = ("_create_resource", "_initialize", "_destroy_resource")


def _read_saved_model(path: pathlib.Path):
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    pb = path / "saved_model.pb"
    if not pb.is_file():
        raise UserInputError(f"{path} is not a SavedModel folder: it has no saved_model.pb.")
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(pb.read_bytes())
    except DecodeError as err:
        raise UserInputError(f"{pb} does not parse as a SavedModel ({err}); it may be "
                             "truncated or another file.") from err
    serving = [m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags]
    if not serving:
        raise UserInputError(f"{path} has no meta graph tagged 'serve'.")
    return serving[0]


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":", 1)[0]


def _functions_named(node_def) -> list[str]:
    names = []
    for value in node_def.attr.values():
        if value.HasField("func"):
            names.append(value.func.name)
        elif value.HasField("list"):
            names.extend(f.name for f in value.list.func)
    return names


def _reachable(meta_graph, roots: set[str], functions: set[str]) -> set[str]:
    """Op types of the main-graph nodes ``roots`` depend on, of the library
    ``functions`` and of every function these use, recursively."""
    nodes = {n.name: n for n in meta_graph.graph_def.node}
    library = {f.signature.name: f for f in meta_graph.graph_def.library.function}
    ops: set[str] = set()
    seen_nodes: set[str] = set()
    seen_functions: set[str] = set()
    pending_nodes = list(roots)
    pending_functions = list(functions)

    def visit(node_def) -> None:
        ops.add(node_def.op)
        if node_def.op in library:  # a node whose op is a library function
            pending_functions.append(node_def.op)
        pending_functions.extend(_functions_named(node_def))

    while pending_nodes or pending_functions:
        if pending_nodes:
            name = pending_nodes.pop()
            if name in seen_nodes or name not in nodes:
                continue
            seen_nodes.add(name)
            visit(nodes[name])
            pending_nodes.extend(_node_name(i) for i in nodes[name].input)
            continue
        name = pending_functions.pop()
        if name in seen_functions or name not in library:
            continue
        seen_functions.add(name)
        for node_def in library[name].node_def:  # a whole function runs
            visit(node_def)
    return ops


def _signature_roots(meta_graph, signature: str) -> set[str]:
    return {_node_name(t.name) for t in meta_graph.signature_def[signature].outputs.values()}


def _load_time_roots(meta_graph) -> set[str]:
    roots: set[str] = set()
    if _INIT_SIGNATURE in meta_graph.signature_def:
        roots |= _signature_roots(meta_graph, _INIT_SIGNATURE)
    for key in _INIT_COLLECTIONS:
        if key in meta_graph.collection_def:
            roots |= {_node_name(n) for n in meta_graph.collection_def[key].node_list.value}
    return roots


def _object_graph_functions(meta_graph, signature: str) -> set[str]:
    """Concrete functions ``tf.saved_model.load`` calls: the signature and resource setup."""
    graph = meta_graph.object_graph_def
    if not graph.nodes:
        return set()

    def concrete(node_id: int) -> set[str]:
        node = graph.nodes[node_id]
        kind = node.WhichOneof("kind")
        if kind == "function":
            return set(node.function.concrete_functions)
        if kind == "bare_concrete_function":
            return {node.bare_concrete_function.concrete_function_name}
        return set()

    names: set[str] = set()
    for node in graph.nodes:
        for child in node.children:
            if child.local_name in _RESOURCE_FUNCTIONS:
                names |= concrete(child.node_id)
    root = graph.nodes[0]
    for child in root.children:
        if child.local_name == "signatures":
            for sig in graph.nodes[child.node_id].children:
                if sig.local_name == signature:
                    names |= concrete(sig.node_id)
    return names


def reachable_ops(path: str | os.PathLike, signature: str = "serving_default") -> set[str]:
    """The op types that calling ``signature`` of the SavedModel at ``path`` may run.

    Reads ``saved_model.pb`` only: nothing is loaded or executed. Includes the
    ops that run when the model is loaded (init op, resource initializers).

    Args:
        path: a SavedModel folder (holding ``saved_model.pb``).
        signature: the signature that will be called.

    Returns:
        The set of op type names (``"Conv2D"``, ``"WriteFile"``...).

    Raises:
        UserInputError: not a SavedModel, no such signature, or a damaged file.
    """
    path = pathlib.Path(path)
    meta_graph = _read_saved_model(path)
    if signature not in meta_graph.signature_def:
        found = sorted(k for k in meta_graph.signature_def if not k.startswith("__"))
        raise UserInputError(f"{path} has no signature {signature!r}. Found: {found}")
    roots = _signature_roots(meta_graph, signature) | _load_time_roots(meta_graph)
    return _reachable(meta_graph, roots, _object_graph_functions(meta_graph, signature))


def denied_ops(path: str | os.PathLike, signature: str = "serving_default") -> dict[str, str]:
    """The ops of :data:`DENIED_OPS` reachable from ``signature``, with what they can do."""
    return {op: DENIED_OPS[op] for op in sorted(reachable_ops(path, signature))
            if op in DENIED_OPS}


def check_trusted(path: str | os.PathLike, signature: str = "serving_default",
                  trust: bool = False) -> None:
    """Refuse a SavedModel whose ``signature`` may write or read files, run Python or
    use the network, unless ``trust`` is true.

    Args:
        path: a SavedModel folder.
        signature: the signature that will be called.
        trust: the user vouches for the model (``--trust-savedmodel``): no check.

    Raises:
        UserInputError: one line naming the refused ops and what they can do.
    """
    if trust:
        return
    found = denied_ops(path, signature)
    if not found:
        return
    groups: dict[str, list[str]] = {}
    for op, why in found.items():
        groups.setdefault(why, []).append(op)
    what = "; ".join(f"{why}: {', '.join(ops)}" for why, ops in groups.items())
    raise UserInputError(
        f"Refusing to run the SavedModel {path}: its {signature} signature holds ops that "
        f"a model does not need ({what}). A SavedModel is code; if you trust its author, "
        "pass --trust-savedmodel.")
