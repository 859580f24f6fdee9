"""Read a PyTorch ``.pth`` state_dict into numpy arrays without torch, safely.

A ``.pth`` file is a pickle, and unpickling runs code. This reader uses a
restricted unpickler that resolves only the handful of globals needed to
rebuild tensors (the same allow-list idea as ``torch.load(weights_only=True)``)
and refuses everything else *before* anything is called, so a crafted file
that tries to run ``os.system`` fails with :class:`UnsafeWeightsError` and has
no side effect.

Both of PyTorch's on-disk formats are supported: the zip archive (PyTorch >=
1.6) and the legacy sequence of pickles followed by raw storages.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

from kerastl.errors import UnsafeWeightsError, WeightsUnavailableError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co: only carries a numpy dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A flat buffer of elements, filled in after the main pickle is read."""

    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype = dtype
        self.numel = int(numel)
        self.array: np.ndarray | None = None


class _LazyTensor:
    """A tensor whose storage bytes may arrive after the pickle (legacy format)."""

    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage = storage
        self.offset = int(offset)
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)

    def materialize(self) -> np.ndarray:
        flat = self.storage.array
        if flat is None:
            raise UnsafeWeightsError("A tensor refers to a storage that the file never provides")
        if not self.size:
            return np.array(flat[self.offset], dtype=flat.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if self.offset < 0 or last >= flat.size or min(self.stride) < 0:
            raise UnsafeWeightsError("A tensor's shape or strides point outside its storage")
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size, strides=tuple(s * item for s in self.stride)
        )
        return np.array(view, copy=True)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    if not isinstance(storage, _Storage):
        raise UnsafeWeightsError("_rebuild_tensor_v2 was called on something that is not a storage")
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _rebuild_tensor_v2(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _allowed_global(module: str, name: str):
    if (module, name) == ("collections", "OrderedDict"):
        return collections.OrderedDict
    if module == "torch._utils" and name == "_rebuild_tensor_v2":
        return _rebuild_tensor_v2
    if module == "torch._utils" and name == "_rebuild_tensor":
        return _rebuild_tensor
    if module == "torch._utils" and name == "_rebuild_parameter":
        return _rebuild_parameter
    if module == "torch" and name in _STORAGE_DTYPES:
        return _StorageType(name)
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: str, storages: dict, load_storage=None):
        super().__init__(file)
        self._path = path
        self._storages = storages
        self._load_storage = load_storage

    def find_class(self, module, name):
        allowed = _allowed_global(module, name)
        if allowed is None:
            raise UnsafeWeightsError(
                f"Refusing to load {self._path}: its pickle asks for '{module}.{name}', "
                "which is not a tensor-rebuild function. A weights file should only hold "
                "tensors; this one is either not a plain state_dict or malicious. Nothing "
                "from it was executed."
            )
        return allowed

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise UnsafeWeightsError(f"Refusing to load {self._path}: unexpected persistent id")
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], pid[4]
        if not isinstance(storage_type, _StorageType):
            raise UnsafeWeightsError(f"Refusing to load {self._path}: unknown storage type")
        if key not in self._storages:
            storage = _Storage(storage_type.dtype, numel)
            if self._load_storage is not None:
                storage.array = self._load_storage(key, storage.dtype, storage.numel)
            self._storages[key] = storage
        return self._storages[key]


def _materialize(obj, path):
    if not isinstance(obj, dict):
        raise UnsafeWeightsError(f"{path} does not hold a state_dict (a mapping of name -> tensor)")
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    out = {}
    for key, value in obj.items():
        if isinstance(value, _LazyTensor):
            out[str(key)] = value.materialize()
    return out


def _read_zip(path: str) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise UnsafeWeightsError(f"{path} is a zip file but not a PyTorch checkpoint")
        prefix = pkl[0][: -len("data.pkl")]

        def load_storage(key, dtype, numel):
            raw = archive.read(f"{prefix}data/{key}")
            if len(raw) < numel * dtype.itemsize:
                raise UnsafeWeightsError(f"{path}: storage {key} is shorter than declared")
            return np.frombuffer(raw, dtype=dtype, count=numel)

        storages: dict = {}
        with archive.open(pkl[0]) as fh:
            obj = _RestrictedUnpickler(io.BytesIO(fh.read()), path, storages, load_storage).load()
        return _materialize(obj, path)


def _read_legacy(path: str) -> dict[str, np.ndarray]:
    storages: dict = {}
    with open(path, "rb") as fh:
        magic = _RestrictedUnpickler(fh, path, storages).load()
        if magic != _LEGACY_MAGIC:
            raise UnsafeWeightsError(f"{path} is not a PyTorch checkpoint (bad magic number)")
        _RestrictedUnpickler(fh, path, storages).load()  # protocol version
        _RestrictedUnpickler(fh, path, storages).load()  # sys info
        obj = _RestrictedUnpickler(fh, path, storages).load()
        keys = _RestrictedUnpickler(fh, path, storages).load()
        if not isinstance(keys, list):
            raise UnsafeWeightsError(f"{path}: malformed storage key list")
        for key in keys:
            storage = storages.get(str(key))
            if storage is None:
                raise UnsafeWeightsError(f"{path}: storage {key!r} is not used by any tensor")
            header = fh.read(8)
            if len(header) != 8:
                raise UnsafeWeightsError(f"{path} is truncated (storage {key})")
            (numel,) = struct.unpack("<q", header)
            if numel != storage.numel:
                raise UnsafeWeightsError(f"{path}: storage {key} has {numel} elements, "
                                         f"{storage.numel} declared")
            nbytes = numel * storage.dtype.itemsize
            raw = fh.read(nbytes)
            if len(raw) != nbytes:
                raise UnsafeWeightsError(f"{path} is truncated (storage {key})")
            storage.array = np.frombuffer(raw, dtype=storage.dtype)
    return _materialize(obj, path)


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a PyTorch state_dict file into ``{name: numpy array}`` without torch.

    Args:
        path: a ``.pth`` / ``.pt`` file (zip or legacy format).

    Returns:
        A dict mapping parameter names to numpy arrays (PyTorch layouts).

    Raises:
        WeightsUnavailableError: the file does not exist.
        UnsafeWeightsError: the pickle asks for anything but tensor rebuilding,
            or the file is malformed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsUnavailableError(f"Weights file not found: {path}")
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        return _read_legacy(path)
    except UnsafeWeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, TypeError,
            IndexError, KeyError, AttributeError) as err:
        raise UnsafeWeightsError(f"{path} is not a readable PyTorch state_dict: {err}") from err
