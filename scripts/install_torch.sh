#!/usr/bin/env bash
# Install PyTorch 2.13.0 into the Python given as $1 (default: .venv/bin/python), the build this machine needs:
# - an NVIDIA GPU (nvidia-smi lists one): PyPI's torch, the CUDA build;
# - no NVIDIA GPU: the CPU build from PyTorch's CPU wheel index (PyPI's torch would pull a multi-GB CUDA build
#   and about 19 CUDA packages); where that index cannot be reached (offline, a local wheel folder or mirror),
#   the plain requirement, which pip then takes from whatever pip is configured with.
# Installed first, it satisfies the project's torch range, so `pip install -e .` adds no other build.
set -euo pipefail
python="${1:-.venv/bin/python}"
version="2.13.0"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then
    echo "install_torch: NVIDIA GPU found: torch ${version} with CUDA from PyPI"
    "$python" -m pip install -q "torch==${version}"
elif "$python" -m pip install -q --timeout 20 --retries 1 --index-url https://download.pytorch.org/whl/cpu \
        "torch==${version}" 2>/dev/null; then
    echo "install_torch: no NVIDIA GPU: torch ${version}, CPU build, asked of PyTorch's CPU index"
else
    echo "install_torch: no NVIDIA GPU, PyTorch's CPU index unreachable: torch==${version} as pip is configured"
    "$python" -m pip install -q "torch==${version}"
fi
"$python" -W ignore -c "import torch; print('install_torch: torch', torch.__version__, '(CUDA', torch.version.cuda, ')')"
