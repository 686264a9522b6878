#!/usr/bin/env bash
# The GPU checks in one go, for a machine with an NVIDIA GPU and an mxnet-cu*
# build in the venv (Dockerfile.gpu's image has mxnet-cu112):
#   tests/gpu_check.sh
# A 5-epoch run on gpu:0 (real data if installed, else synthetic), then
# tests/test_gpu.py: gpu:0 vs cpu parameters after a step and an epoch, gpu:0,1
# vs cpu:2 where there are two GPUs, and 5 epochs on gpu:0 vs cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
[ -x "$py" ] || py=python3
if command -v nvidia-smi >/dev/null; then nvidia-smi -L || true; fi
gpus=$("$py" -c 'import mxnet; print(mxnet.context.num_gpus())' 2>/dev/null || echo 0)
if [ "$gpus" -eq 0 ]; then
    echo "gpu_check.sh: mxnet sees no GPU: install a CUDA build (pip install mxnet-cu112==1.9.1)" \
         "or run in Dockerfile.gpu's image" >&2
    exit 2
fi
data=()
[ -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || data=(--synthetic)
"$py" -m distsoftmax --devices gpu:0 --epochs 5 "${data[@]}"
"$py" -m pytest -q -rs tests/test_gpu.py
