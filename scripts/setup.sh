#!/usr/bin/env bash
# Create .venv and install lenet_bench with every backend (PyTorch, Keras on TensorFlow and on JAX) and the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of PyTorch first: the project's torch range would otherwise pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[keras,jax,test]"
