#!/usr/bin/env bash
# Every check that needs CUDA, in one go, with a summary (about 5 minutes on one GPU; each step has
# its own time limit, 8 minutes in all at most):
#
#   scripts/device_check.sh              # PYTHON=... to choose the interpreter (default: python)
#
#   1. the CUDA tests of the suite: tests/test_cli_runs.py::test_cuda_run (a run on trainer.device=cuda)
#      and tests/test_distributed.py's nccl tests (2+ GPUs: DDP over nccl equals one process; norm=batch
#      as SyncBatchNorm);
#   2. DDP with nccl on every GPU present (torchrun --nproc-per-node <GPUs>), its seconds per epoch
#      beside one GPU's (one GPU: the 1-process run only, nccl needs two devices);
#   3. bench.py's workloads W1 (60,000 x 784, [256, 256], batch 128) and W2 (25,000 x 20, [64, 64],
#      batch 32) as train.py runs on the GPU: seconds per epoch (bench.py itself times CPU peers).
#
# Without CUDA it says so in one line and exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

gpus=$("$PY" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)' 2>/dev/null || echo 0)
if [ "${gpus:-0}" -eq 0 ]; then
    echo "device_check: no CUDA device here (torch.cuda.is_available() is False): nothing to check, CUDA unmeasured"
    exit 0
fi
"$PY" -c 'import torch; print("device_check:", torch.cuda.device_count(), "x", torch.cuda.get_device_name(0), "torch", torch.__version__)'

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
summary=()
tails=()
failed=0

# step NAME LIMIT_S COMMAND...: run it with a time limit, its output in $work/NAME.log
step() {
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    if timeout "$limit" "$@" >"$work/$name.log" 2>&1; then
        summary+=("PASS  $name  ($((SECONDS - start)) s)")
    else
        summary+=("FAIL  $name  ($((SECONDS - start)) s; its output's tail follows the summary)")
        failed=$((failed + 1))
        tails+=("$name")
    fi
}

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# seconds per epoch of the run directory a train.py run left under $1
per_epoch() {
    "$PY" - "$1" <<'EOF'
import json, sys
from pathlib import Path
m = json.loads(next(Path(sys.argv[1]).rglob("metrics.json")).read_text())
epochs = m["history"]["epoch_seconds"][1:] or m["history"]["epoch_seconds"]  # the first one warms up
print(f"{m['status']}, {sorted(epochs)[len(epochs) // 2]:.3f} s per epoch (median), val loss {m['best_val_loss']:.4f}")
EOF
}

step "pytest CUDA tests" 240 "$PY" -m pytest -p no:cacheprovider -n 0 -q \
    tests/test_cli_runs.py::test_cuda_run tests/test_distributed.py -k "cuda or nccl"

W1=(data=classification data.n_samples=60000 data.n_features=784 data.n_classes=10 "model.hidden=[256,256]"
    trainer.batch_size=128)
W2=(data=classification data.n_samples=25000 data.n_features=20 data.n_classes=2 "model.hidden=[64,64]"
    trainer.batch_size=32)
COMMON=(trainer.device=cuda trainer.max_epochs=3 trainer.progress=false early_stopping=none optimizer=adam)
figures=()
for w in W1 W2; do
    declare -n args=$w
    step "$w on one GPU" 60 "$PY" train.py "${args[@]}" "${COMMON[@]}" "hydra.run.dir=$work/$w-1"
    figures+=("$w, 1 GPU: $(per_epoch "$work/$w-1" 2>/dev/null || echo 'no metrics')")
    if [ "$gpus" -ge 2 ]; then
        step "$w DDP nccl on $gpus GPUs" 90 "$PY" -m torch.distributed.run --nproc-per-node "$gpus" \
            --master-addr 127.0.0.1 --master-port "$(free_port)" train.py "${args[@]}" "${COMMON[@]}" \
            trainer.strategy=ddp "hydra.run.dir=$work/$w-ddp"
        figures+=("$w, DDP nccl x $gpus: $(per_epoch "$work/$w-ddp" 2>/dev/null || echo 'no metrics')")
    fi
done
[ "$gpus" -ge 2 ] || figures+=("DDP nccl: not run (one GPU; nccl needs a device per rank)")

echo
echo "device_check summary ($SECONDS s):"
printf '  %s\n' "${summary[@]}"
printf '  %s\n' "${figures[@]}"
for name in "${tails[@]}"; do
    echo "--- $name (tail) ---"
    tail -n 25 "$work/$name.log"
done
[ "$failed" -eq 0 ]
