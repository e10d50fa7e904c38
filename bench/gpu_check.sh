#!/usr/bin/env bash
# GPU check (a benchmark, not a test): train the ~125M-parameter `125m` preset in bf16 on a CUDA
# GPU for a fixed number of steps and print useful tokens/s and model-FLOPs utilisation (MFU).
#
#   bench/gpu_check.sh [WORK_DIR]
#
# Environment (all optional):
#   LFFT="lfft"             how to call lfft (e.g. "python3 -m lfft" from a checkout)
#   PYTHON="python3"        the interpreter that has lfft, for the report
#   SESSIONS=50000          synthetic sessions (lfft synth) to train on
#   STEPS=200               optimizer steps per run
#   BATCH_TOKENS=65536      token budget per micro-batch
#   MAX_LENGTH=1024         context length of the model and of training
#   VOCAB=32000             BPE vocabulary (the preset is ~125M parameters with 32k)
#   RUNS="eager compile"    variants: eager, compile (torch.compile), packed (--packing on),
#                           packed-compile; each is one `lfft train` run
#   PEAK_TFLOPS=989         the GPU's dense bf16 peak for MFU (H100/H200 SXM datasheet)
#   PRESET=125m DEVICE=cuda a dry run of the script itself: PRESET=tiny DEVICE=cpu SESSIONS=300 STEPS=30
#
# The data stages and init run first (synth -> collect -> clean -> normalize -> split -> init);
# every train run then starts from the same initial checkpoint. The report (bench/gpu_check.py)
# leaves out the first logging windows (start-up, compilation, allocator warm-up).
set -euo pipefail

LFFT=${LFFT:-lfft}
PYTHON=${PYTHON:-python3}
SESSIONS=${SESSIONS:-50000}
STEPS=${STEPS:-200}
BATCH_TOKENS=${BATCH_TOKENS:-65536}
MAX_LENGTH=${MAX_LENGTH:-1024}
VOCAB=${VOCAB:-32000}
RUNS=${RUNS:-"eager compile"}
PRESET=${PRESET:-125m}
DEVICE=${DEVICE:-cuda}
HERE=$(cd "$(dirname "$0")" && pwd)

if [ "$DEVICE" = cuda ] && ! $PYTHON -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA GPU is visible to $PYTHON; nothing to measure" >&2
    exit 2
fi
WORK=${1:-$(mktemp -d)}
mkdir -p "$WORK"
echo "gpu_check: work folder $WORK"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

cat >"$WORK/lfft.toml" <<EOF
[collect]
format = "events"

[split]
key = "session_id"
ratios = [0.98, 0.01, 0.01]
EOF

t0=$(date +%s)
[ -d "$WORK/logs" ] || $LFFT synth --out "$WORK/logs" --sessions "$SESSIONS" --files 8 --seed 0 -q
$LFFT pipeline "$WORK/logs" --work "$WORK" --until split --config "$WORK/lfft.toml"
[ -f "$WORK/ckpt/init/lfft.json" ] || $LFFT init --out "$WORK/ckpt/init" --preset "$PRESET" \
    --data "$WORK/splits/train.parquet" --vocab-size "$VOCAB" --max-length "$MAX_LENGTH" -q
echo "gpu_check: data stages and init took $(($(date +%s) - t0)) s"

for run in $RUNS; do
    extra=()
    case $run in
    eager) ;;
    compile) extra=(--compile) ;;
    packed) extra=(--packing on) ;;
    packed-compile) extra=(--packing on --compile) ;;
    *) echo "gpu_check: unknown run $run" >&2; exit 2 ;;
    esac
    t0=$(date +%s)
    $LFFT train --model "$WORK/ckpt/init" --data "$WORK/splits" --out "$WORK/ckpt/$run" \
        --objective sft --feedback-loss auto --precision bf16 --device "$DEVICE" \
        --max-steps "$STEPS" --warmup-steps 20 --lr 6e-4 --batch-size 4096 \
        --batch-tokens "$BATCH_TOKENS" --max-length "$MAX_LENGTH" --log-every 10 \
        --eval-every 100000 --save-every 100000 -q "${extra[@]}"
    echo "gpu_check: $run took $(($(date +%s) - t0)) s in all"
done

$PYTHON "$HERE/gpu_check.py" "$WORK" $RUNS
