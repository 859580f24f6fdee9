"""Specs for ``"hub:<handle>"`` backbones (TF Hub / Kaggle / local SavedModels)."""

from __future__ import annotations

from kerastl.errors import UserInputError


def hub_spec(name: str):
    """Return a :class:`BackboneSpec` for a ``"hub:<handle>"`` name."""
    raise UserInputError(
        f"TF Hub backbones are not available in this build of kerastl. Received: name={name!r}"
    )
