"""Export for TF Serving and TFLite, and verification that the export answers like Keras."""

from kerastl.export.saved_model import (
    export_saved_model,
    resolve_version_dir,
    versions,
    write_models_config,
)
from kerastl.export.signatures import IMAGES_SIGNATURE, SERVING_SIGNATURE
from kerastl.export.warmup import read_warmup_requests

__all__ = [
    "IMAGES_SIGNATURE",
    "SERVING_SIGNATURE",
    "export_saved_model",
    "read_warmup_requests",
    "resolve_version_dir",
    "versions",
    "write_models_config",
]
