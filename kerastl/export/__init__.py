"""Export for TF Serving and TFLite, and verification that the export answers like Keras."""

from kerastl.export.saved_model import (
    export_saved_model,
    resolve_version_dir,
    versions,
    write_models_config,
)
from kerastl.export.signatures import IMAGES_SIGNATURE, SERVING_SIGNATURE
from kerastl.export.tflite import TFLiteResult, export_tflite
from kerastl.export.verify import Check, VerifyReport, show_signatures, verify
from kerastl.export.warmup import read_warmup_requests

__all__ = [
    "IMAGES_SIGNATURE",
    "SERVING_SIGNATURE",
    "Check",
    "TFLiteResult",
    "VerifyReport",
    "export_saved_model",
    "export_tflite",
    "read_warmup_requests",
    "resolve_version_dir",
    "show_signatures",
    "verify",
    "versions",
    "write_models_config",
]
