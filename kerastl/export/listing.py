"""What a SavedModel declares: its SignatureDefs, as ``saved_model_cli show --all`` lists them."""

from __future__ import annotations

import os
from pathlib import Path

from kerastl.errors import UserInputError
from kerastl.export.saved_model import resolve_version_dir
from kerastl.export.signatures import IMAGES_SIGNATURE


def show_signatures(path: str | os.PathLike) -> str:
    """List the SignatureDefs of a SavedModel the way ``saved_model_cli show --all`` does."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    path = resolve_version_dir(path)
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    meta = proto.meta_graphs[0]
    lines = ["MetaGraphDef with tag-set: '" + ", ".join(meta.meta_info_def.tags)
             + "' contains the following SignatureDefs:", ""]

    def tensor(kind, key, info):
        dims = info.tensor_shape
        shape = ("unknown_rank" if dims.unknown_rank else
                 "(" + ", ".join(str(d.size) for d in dims.dim) + ("," if len(dims.dim) == 1
                                                                    else "") + ")")
        return [f"    {kind}['{key}'] tensor_info:",
                f"        dtype: {types_pb2.DataType.Name(info.dtype)}",
                f"        shape: {shape}", f"        name: {info.name}"]

    for key in sorted(meta.signature_def):
        if key == "__saved_model_init_op":
            continue
        sig = meta.signature_def[key]
        lines.append(f"signature_def['{key}']:")
        lines.append("  The given SavedModel SignatureDef contains the following input(s):")
        for name in sorted(sig.inputs):
            lines += tensor("inputs", name, sig.inputs[name])
        lines.append("  The given SavedModel SignatureDef contains the following output(s):")
        for name in sorted(sig.outputs):
            lines += tensor("outputs", name, sig.outputs[name])
        lines.append(f"  Method name is: {sig.method_name}")
        lines.append("")
    return "\n".join(lines)


def _size_from_signature(path: Path) -> tuple[int, int]:
    from tensorflow.core.protobuf import saved_model_pb2

    loaded_shape = None
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    sig = proto.meta_graphs[0].signature_def.get(IMAGES_SIGNATURE)
    if sig is not None and sig.inputs:
        loaded_shape = [d.size for d in next(iter(sig.inputs.values())).tensor_shape.dim]
    if not loaded_shape or len(loaded_shape) != 4 or min(loaded_shape[1:3]) < 1:
        raise UserInputError(f"{path} has no '{IMAGES_SIGNATURE}' signature with a fixed "
                             "image size; was it exported by kerastl?")
    return int(loaded_shape[1]), int(loaded_shape[2])
