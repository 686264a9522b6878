#!/usr/bin/env bash
# Every measured file of bench/, in one command, on an otherwise idle machine:
#
#   bench/all.sh [TORCH_PYTHON]
#
# 1. bench/run.py (3 alternating rounds of every configuration, 5 epochs on the
#    real data, each round with the fp32 peak, the per-step profile and the growth
#    runs; the C floor built at the start): RESULTS.md, results.json, scaling.png;
#    the PyTorch peer too when TORCH_PYTHON (or $TORCH_PYTHON) names an
#    interpreter with torch.
# 2. bench/accuracy.py (seeds 0-9 and 10 textbook runs): ACCURACY.md, accuracy.json.
# Both run even if the first has a failed run; the exit status is non-zero then.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit
py=.venv/bin/python
torch=${1:-${TORCH_PYTHON:-}}
rc=0
# the numpy floor's BLAS kernel is read through threadpoolctl (bench/blas_probe.py
# falls back to asking libopenblas itself where it is missing)
if ! "$py" -c 'import threadpoolctl' 2>/dev/null; then
    echo "bench/all.sh: installing threadpoolctl into .venv" >&2
    "$py" -m pip install -q threadpoolctl || echo "bench/all.sh: no threadpoolctl: going on without" >&2
fi
if [ -n "$torch" ]; then
    "$py" bench/run.py --torch "$torch" || rc=$?
else
    echo "bench/all.sh: no TORCH_PYTHON given: the PyTorch peer is skipped" >&2
    "$py" bench/run.py || rc=$?
fi
"$py" bench/accuracy.py || rc=$?
exit "$rc"
