#!/usr/bin/env bash
# The GPU checks in one go, for a machine with an NVIDIA GPU and an mxnet-cu*
# build in the venv:
#   tests/gpu_check.sh
# or inside Dockerfile.gpu's image (mxnet-cu112 and pytest in /opt/venv), the
# checkout mounted read-only:
#   docker run --rm --gpus all -v "$PWD:/src:ro" -w /src --entrypoint tests/gpu_check.sh distsoftmax:gpu
# A 5-epoch run on gpu:0 (real data if installed, else synthetic), then
# tests/test_gpu.py: gpu:0 vs cpu parameters after a step and an epoch, gpu:0,1
# vs cpu:2 where there are two GPUs, and 5 epochs on gpu:0 vs cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
# $PYTHON, else the active venv's (the image's /opt/venv), else the checkout's .venv
py=${PYTHON:-${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/python}}
[ -n "$py" ] && [ -x "$py" ] || py=.venv/bin/python
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
"$py" -m pytest -q -rs -p no:cacheprovider tests/test_gpu.py
