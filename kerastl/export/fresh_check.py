"""Run an exported model in a process that has only TensorFlow and NumPy, as a consumer would.

Started by :mod:`kerastl.export.consumers` as a *script*::

    python -I fresh_check.py INPUTS.npz OUTPUTS.npz REPORT.json KEY=MODEL [KEY=MODEL ...]

so kerastl is never imported here. Each ``KEY`` is a consumer, optionally with a
``@suffix`` (``litert@float``), run in the order given:

- ``saved_model_load``: ``tf.saved_model.load`` (object-based; what TF2 Python code uses);
- ``session``: ``tf.compat.v1.saved_model.loader.load`` in a ``tf.compat.v1.Session``
  (the session-based Python loader behind ``saved_model_cli run``);
- ``cpp``: TensorFlow's C++ ``LoadSavedModel``, the loader TF Serving links, reached
  through the C API of the wheel's ``libtensorflow_cc`` (``TF_LoadSessionFromSavedModel``,
  ``TF_SessionRun``), encoded images fed as ``TF_STRING`` tensors;
- ``litert``: a ``.tflite`` file (``MODEL``) in ``ai_edge_litert``'s Interpreter.

Lists of encoded images travel as one ``uint8`` buffer plus offsets (``<key>__data``,
``<key>__offsets``) so no pickle is needed. The report is rewritten after each stage,
so a crash (a C-level abort, say) is still attributed to the stage that caused it.
"""

import ctypes
import json
import os
import resource
import sys
import time

import numpy as np

tf = None  # TensorFlow, imported only when a SavedModel consumer runs (LiteRT needs none)
SERVE = "serve"


def _bytes_list(arrays, key):  # consumers.unpack_bytes; this script cannot import kerastl
    data, offsets = arrays[f"{key}__data"], arrays[f"{key}__offsets"]
    return [data[offsets[i]:offsets[i + 1]].tobytes() for i in range(len(offsets) - 1)]


def _keys(arrays):
    return sorted({k.split("__")[0] for k in arrays.files})


def _as_text(value):
    """tf.string outputs as unicode text, so the outputs file needs no pickle."""
    value = np.asarray(value)
    if value.dtype.kind in "OS":
        flat = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                for v in value.reshape(-1)]
        return np.array(flat, dtype=str).reshape(value.shape)
    return value


class ObjectRunner:
    """``tf.saved_model.load``: the object-based TF2 loader."""

    name = "tf.saved_model.load"

    def __init__(self, path):
        self._loaded = tf.saved_model.load(path)
        self.signatures = sorted(self._loaded.signatures.keys())

    def run(self, signature, feeds):
        fn = self._loaded.signatures[signature]
        result = fn(**{k: tf.constant(v) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in result.items()}


class SessionRunner:
    """``tf.compat.v1.saved_model.loader.load`` in a Session: what ``saved_model_cli run`` does."""

    name = "session loader (saved_model_cli run)"

    def __init__(self, path):
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph)
        with self._graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(self._session, [SERVE], path)
        self._defs = meta.signature_def
        self.signatures = sorted(k for k in self._defs if not k.startswith("__"))

    def run(self, signature, feeds):
        sig = self._defs[signature]
        fetches = {k: sig.outputs[k].name for k in sig.outputs}
        feed = {sig.inputs[k].name: v for k, v in feeds.items()}
        return self._session.run(fetches, feed_dict=feed)


class CApiError(RuntimeError):
    """A non-OK ``TF_Status`` from the C API: its code name and message."""


class _TFBuffer(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("length", ctypes.c_size_t),
                ("data_deallocator", ctypes.c_void_p)]


class _TFOutput(ctypes.Structure):
    _fields_ = [("oper", ctypes.c_void_p), ("index", ctypes.c_int)]


# TF_DataType values (tensorflow/c/tf_datatype.h) and the NumPy dtype of each.
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 6: np.int8, 9: np.int64,
           10: np.bool_, 19: np.float16}
_TF_STRING = 7
_TSTRING_SIZE = 24  # sizeof(TF_TString)
_CODES = {1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
          5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
          9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
          13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED"}


def _c_api():
    """The C API of the wheel's ``libtensorflow_cc``, with argument and result types declared.

    TensorFlow is imported first (by :func:`main`): loading these libraries into a process
    before TensorFlow's own initialisation crashes it.
    """
    lib = ctypes.CDLL(os.path.join(os.path.dirname(tf.__file__), "libtensorflow_cc.so.2"))
    p, i, size, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t, ctypes.c_int64
    buf = ctypes.POINTER(_TFBuffer)
    out = ctypes.POINTER(_TFOutput)
    signatures = {
        "TF_NewStatus": ([], p), "TF_DeleteStatus": ([p], None), "TF_GetCode": ([p], i),
        "TF_Message": ([p], ctypes.c_char_p), "TF_NewGraph": ([], p),
        "TF_NewSessionOptions": ([], p), "TF_NewBuffer": ([], buf),
        "TF_LoadSessionFromSavedModel": ([p, buf, ctypes.c_char_p,
                                          ctypes.POINTER(ctypes.c_char_p), i, p, buf, p], p),
        "TF_GraphOperationByName": ([p, ctypes.c_char_p], p),
        "TF_AllocateTensor": ([i, ctypes.POINTER(i64), i, size], p),
        "TF_TensorData": ([p], p), "TF_TensorByteSize": ([p], size), "TF_TensorType": ([p], i),
        "TF_NumDims": ([p], i), "TF_Dim": ([p, i], i64), "TF_DeleteTensor": ([p], None),
        "TF_StringInit": ([p], None), "TF_StringCopy": ([p, ctypes.c_char_p, size], None),
        "TF_StringGetDataPointer": ([p], p), "TF_StringGetSize": ([p], size),
        "TF_SessionRun": ([p, buf, out, ctypes.POINTER(p), i, out, ctypes.POINTER(p), i,
                           ctypes.POINTER(p), i, buf, p], None),
    }
    for name, (args, result) in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, result
    return lib


class CppRunner:
    """TensorFlow's C++ ``LoadSavedModel`` (TF Serving's loader) through the C API."""

    name = "C++ loader (TF C API, as TF Serving)"

    def __init__(self, path):
        from tensorflow.core.protobuf import meta_graph_pb2

        self._lib = lib = _c_api()
        self._status = lib.TF_NewStatus()
        self._graph = lib.TF_NewGraph()
        meta_buffer = lib.TF_NewBuffer()
        tags = (ctypes.c_char_p * 1)(SERVE.encode())
        self._session = lib.TF_LoadSessionFromSavedModel(
            lib.TF_NewSessionOptions(), None, os.fsencode(path), tags, 1, self._graph,
            meta_buffer, self._status)
        self._check()
        meta = meta_graph_pb2.MetaGraphDef()
        meta.ParseFromString(ctypes.string_at(meta_buffer.contents.data,
                                              meta_buffer.contents.length))
        self._defs = meta.signature_def
        self.signatures = sorted(k for k in self._defs if not k.startswith("__"))

    def _check(self):
        code = self._lib.TF_GetCode(self._status)
        if code != 0:
            message = self._lib.TF_Message(self._status).decode("utf-8", "replace")
            raise CApiError(f"{_CODES.get(code, code)}: {message}")

    def _endpoint(self, tensor_name):
        op_name, _, index = tensor_name.partition(":")
        oper = self._lib.TF_GraphOperationByName(self._graph, op_name.encode())
        if not oper:
            raise CApiError(f"NOT_FOUND: no operation {op_name!r} in the loaded graph")
        return _TFOutput(oper, int(index or 0))

    def _tensor(self, value):
        lib = self._lib
        if isinstance(value, list | tuple) or np.asarray(value).dtype.kind in "OS":
            items = [bytes(v) for v in value]
            dims = (ctypes.c_int64 * 1)(len(items))
            tensor = lib.TF_AllocateTensor(_TF_STRING, dims, 1, _TSTRING_SIZE * len(items))
            base = lib.TF_TensorData(tensor)
            for n, item in enumerate(items):
                lib.TF_StringInit(base + n * _TSTRING_SIZE)
                lib.TF_StringCopy(base + n * _TSTRING_SIZE, item, len(item))
            return tensor
        array = np.ascontiguousarray(value)
        code = next(c for c, t in _DTYPES.items() if np.dtype(t) == array.dtype)
        dims = (ctypes.c_int64 * array.ndim)(*array.shape)
        tensor = lib.TF_AllocateTensor(code, dims, array.ndim, array.nbytes)
        ctypes.memmove(lib.TF_TensorData(tensor), array.ctypes.data, array.nbytes)
        return tensor

    def _array(self, tensor):
        lib = self._lib
        shape = tuple(lib.TF_Dim(tensor, d) for d in range(lib.TF_NumDims(tensor)))
        kind, data = lib.TF_TensorType(tensor), lib.TF_TensorData(tensor)
        if kind == _TF_STRING:
            count = int(np.prod(shape, dtype=np.int64))
            items = [ctypes.string_at(lib.TF_StringGetDataPointer(data + n * _TSTRING_SIZE),
                                      lib.TF_StringGetSize(data + n * _TSTRING_SIZE))
                     for n in range(count)]
            return np.array(items, dtype=object).reshape(shape)
        dtype = np.dtype(_DTYPES[kind])
        raw = ctypes.string_at(data, lib.TF_TensorByteSize(tensor))
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()

    def run(self, signature, feeds):
        sig = self._defs[signature]
        names = sorted(sig.outputs)
        inputs = (_TFOutput * len(feeds))(*[self._endpoint(sig.inputs[k].name) for k in feeds])
        values = (ctypes.c_void_p * len(feeds))(*[self._tensor(v) for v in feeds.values()])
        outputs = (_TFOutput * len(names))(*[self._endpoint(sig.outputs[k].name)
                                               for k in names])
        results = (ctypes.c_void_p * len(names))()
        try:
            self._lib.TF_SessionRun(self._session, None, inputs, values, len(feeds), outputs,
                                    results, len(names), None, 0, None, self._status)
            self._check()
            return {k: self._array(results[n]) for n, k in enumerate(names)}
        finally:
            for tensor in list(values) + list(results):
                if tensor:
                    self._lib.TF_DeleteTensor(tensor)


RUNNERS = {"saved_model_load": ObjectRunner, "session": SessionRunner, "cpp": CppRunner}


def _save_report(report, report_file):
    with open(report_file + ".tmp", "w") as handle:
        json.dump(report, handle)
    os.replace(report_file + ".tmp", report_file)


def _error_text(err):
    message = getattr(err, "message", None) or str(err)
    return f"{type(err).__name__}: {message}"


def check_saved_model(consumer, path, arrays, report, save):
    """Load ``path`` with ``consumer`` and answer every request in ``arrays``."""
    outputs = {}
    report["stage"] = "loading"
    save()
    start = time.perf_counter()
    runner = RUNNERS[consumer](path)
    report["loader"] = runner.name
    report["load_seconds"] = time.perf_counter() - start
    report["signatures"] = runner.signatures

    def call(stage, signature, prefix, **feeds):
        report["stage"] = stage
        save()
        for name, value in runner.run(signature, feeds).items():
            outputs[f"{prefix}/{name}"] = _as_text(value)

    if "texts__data" in arrays.files:  # a text model: raw strings in
        call("serving_default on texts", "serving_default", "texts",
             text=_bytes_list(arrays, "texts"))
        call("serving_default on an empty batch", "serving_default", "empty",
             text=np.array([], dtype=object))
        _replay_warmup(runner, arrays, report, save)
        return outputs
    call("predict_images on float images", "predict_images", "images", images=arrays["images"])
    for key in ("png", "jpeg", "large_png"):
        if f"{key}__data" in arrays.files:
            call(f"serving_default on {key} bytes", "serving_default", key,
                 image_bytes=_bytes_list(arrays, key))
    call("serving_default on an empty batch", "serving_default", "empty",
         image_bytes=np.array([], dtype=object))

    report["stage"] = "serving_default on garbage bytes"
    save()
    garbage = [_bytes_list(arrays, "png")[0], b"this is not an image"]
    try:
        runner.run("serving_default", {"image_bytes": garbage})
        report["garbage_error"] = None
    except Exception as err:  # noqa: BLE001 - the error itself is what is checked
        report["garbage_error"] = {"type": type(err).__name__, "message": _error_text(err)}

    _replay_warmup(runner, arrays, report, save)
    for key in _keys(arrays):  # extra requests (e.g. hostile bytes) answered or refused
        if key.startswith("extra:"):
            report["stage"] = f"request {key}"
            save()
            try:
                call(report["stage"], "serving_default", key, image_bytes=_bytes_list(arrays, key))
                report.setdefault("extra", {})[key] = None
            except Exception as err:  # noqa: BLE001 - the error is what is checked
                report.setdefault("extra", {})[key] = _error_text(err)[:500]
    return outputs


def _replay_warmup(runner, arrays, report, save):
    """Answer each warmup record (``warmup:<index>:<signature>:<input>`` arrays)."""
    report["warmup_replay"] = []
    for key in _keys(arrays):
        if not key.startswith("warmup:"):
            continue
        _, index, signature, input_name = key.split(":")
        value = (_bytes_list(arrays, key) if f"{key}__data" in arrays.files else arrays[key])
        report["stage"] = f"warmup record {index}"
        save()
        try:
            result = runner.run(signature, {input_name: value})
            report["warmup_replay"].append({"index": int(index), "signature": signature,
                                            "ok": True,
                                            "batch": int(len(next(iter(result.values()))))})
        except Exception as err:  # noqa: BLE001 - a failed record is the finding
            report["warmup_replay"].append({"index": int(index), "signature": signature,
                                            "ok": False, "error": _error_text(err)[:500]})
    report["warmup_replay"].sort(key=lambda w: w["index"])


def check_tflite(path, arrays, report, save):
    """Run a ``.tflite`` file image by image in LiteRT's Interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    report["stage"] = "loading"
    report["loader"] = "LiteRT (ai_edge_litert)"
    save()
    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    report["stage"] = "invoke on float images"
    save()
    scores = []
    for image in np.asarray(arrays["images"], dtype=np.float32):
        interpreter.set_tensor(input_index, image[None])
        interpreter.invoke()
        scores.append(interpreter.get_tensor(output_index)[0].copy())
    return {"images/scores": np.stack(scores)}


def main(inputs_file, outputs_file, report_file, *targets):
    global tf
    report = {"kerastl_imported_at_start": "kerastl" in sys.modules, "consumers": {}}
    arrays = np.load(inputs_file, allow_pickle=False)
    outputs = {}
    for target in targets:
        key, _, path = target.partition("=")
        consumer = key.split("@")[0]
        mine = report["consumers"][key] = {"ok": False}

        def save(mine=mine):  # with the process's peak RSS (kB) when each stage began
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            mine.setdefault("peak_rss_kb", {})[mine.get("stage", "starting")] = peak
            _save_report(report, report_file)

        try:
            if consumer == "litert":
                answers = check_tflite(path, arrays, mine, save)
            else:
                if tf is None:
                    mine["stage"] = "importing TensorFlow"
                    save()
                    import tensorflow
                    tf = tensorflow
                answers = check_saved_model(consumer, path, arrays, mine, save)
        except Exception as err:  # noqa: BLE001 - reported to the parent, naming the consumer
            mine["error"] = _error_text(err)
            save()
            continue
        mine["ok"] = True
        mine["stage"] = "done"
        outputs.update({f"{key}|{name}": value for name, value in answers.items()})
        save()
    report["kerastl_imported"] = "kerastl" in sys.modules
    report["tensorflow_text_imported"] = "tensorflow_text" in sys.modules
    np.savez(outputs_file, **outputs)
    _save_report(report, report_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
