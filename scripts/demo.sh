#!/usr/bin/env bash
# Install everything, then run the demo (offline): EfficientNet-Lite0 with real
# ImageNet weights fine-tuned on few-shot Fashion-MNIST.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/kerastl demo "$@"
