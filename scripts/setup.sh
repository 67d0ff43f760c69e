#!/usr/bin/env bash
# Create .venv and install lenet_bench with every backend (PyTorch, Keras on TensorFlow and on JAX) and the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# PyTorch first, the build this machine needs (CPU where there is no NVIDIA GPU; see install_torch.sh): the
# project's torch range would otherwise pull the multi-GB CUDA build everywhere.
bash scripts/install_torch.sh .venv/bin/python
.venv/bin/python -m pip install -q -e ".[keras,jax,test]"
