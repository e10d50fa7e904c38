#!/usr/bin/env bash
# GPU check (a benchmark, not a test): issue 15's figures on one CUDA GPU, then one table
# (bench/gpu_check.py, also written to WORK_DIR/gpu_check.json).
#
#   bench/gpu_check.sh [WORK_DIR]
#
# PART=125m (the 125m preset, bf16, the synthetic gpu_check data):
#   - `lfft train` runs through the CLI, each writing its metrics.parquet (RUNS: eager, compile =
#     --compile, regional by default; packed = --packing on): tokens/s, MFU, compile start-up,
#     peak memory;
#   - bench/train_profile.py (eager and regionally compiled steps, each timed; where the eager
#     step's time goes), bench/generate_speed.py (tokens/s per batch size), when present;
#   - `lfft evaluate --generate` on the eager checkpoint (batched, bf16: tokens/s).
# PART=peers: SmolLM2-135M (its architecture and tokenizer; fresh weights), lfft sft/kto against
#   TRL's SFTTrainer/KTOTrainer with their recommended GPU settings, and LoRA, on a small
#   synthetic split (bench/train_throughput.py --trl --lora).
# PART=all (default): both. On a device lent for 15 minutes, run the parts as two calls of ~5
# minutes each (docs/benchmarks.md, "GPU check"); PRIOR merges the first call's results.
# A step that fails is reported (the tail of its log) and the others still run.
#
# Environment (all optional):
#   PYTHON=python3          the interpreter (torch with CUDA); lfft is this checkout's
#   GPU_CARRY=.gpu          what bench/gpu_carry.sh prepared: wheels installed into a temporary
#                           folder put first on PYTHONPATH, and the SmolLM2 tokenizer
#   SAVE=DIR                copy the results (gpu_check.json and the parts' JSON files) here
#   PRIOR=FILE              an earlier call's gpu_check.json: its figures fill the table's gaps
#   SESSIONS=20000          synthetic sessions (lfft synth) for the 125m part
#   STEPS=60                optimizer steps of each `lfft train` run (logged every 10)
#   RUNS="eager compile packed"
#   BATCH_TOKENS=65536      token budget per micro-batch;  MAX_LENGTH=1024
#   VOCAB=32000             BPE vocabulary of the 125m preset
#   PEAK_TFLOPS=989         the GPU's dense bf16 peak for MFU (H100/H200 SXM datasheet)
#   PEER_SESSIONS=2000      synthetic sessions of the peers' split
#   PEER_STEPS=20 PEER_BATCH=64 PEER_LENGTH=1024   per peer run (5 steps untimed)
#   PRESET=125m DEVICE=cuda a dry run of the script itself on a CPU (the peers: the CPU
#                           benchmark's GPT-2, fp32), e.g.
#                           PRESET=tiny DEVICE=cpu SESSIONS=300 STEPS=30 BATCH_TOKENS=2048
#                           MAX_LENGTH=128 PEER_SESSIONS=100 PEER_STEPS=10 PEER_BATCH=4
#                           PEER_LENGTH=128
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
PYTHON=${PYTHON:-python3}
PART=${PART:-all}
SESSIONS=${SESSIONS:-20000}
STEPS=${STEPS:-60}
RUNS=${RUNS:-"eager compile packed"}
BATCH_TOKENS=${BATCH_TOKENS:-65536}
MAX_LENGTH=${MAX_LENGTH:-1024}
VOCAB=${VOCAB:-32000}
PEER_SESSIONS=${PEER_SESSIONS:-2000}
PEER_STEPS=${PEER_STEPS:-20}
PEER_BATCH=${PEER_BATCH:-64}
PEER_LENGTH=${PEER_LENGTH:-1024}
PRESET=${PRESET:-125m}
DEVICE=${DEVICE:-cuda}
PRECISION=bf16
THREADS=4 # torch CPU threads of a peer run (data collation; the GPU does the rest)
if [ "$DEVICE" = cpu ]; then # the dry run: bf16 autocast on a CPU is only slower
    PRECISION=fp32
    THREADS=1
fi
export PEAK_TFLOPS=${PEAK_TFLOPS:-989}

if [ -n "${GPU_CARRY:-}" ] && ls "$GPU_CARRY"/whl/*.whl >/dev/null 2>&1; then
    SITE=$(mktemp -d)
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
        "$GPU_CARRY"/whl/*.whl || exit 2
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" # this checkout's lfft
LFFT="$PYTHON -m lfft"

if [ "$DEVICE" = cuda ] && ! $PYTHON -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA GPU is visible to $PYTHON; nothing to measure" >&2
    exit 2
fi
WORK=${1:-$(mktemp -d)}
mkdir -p "$WORK/logs-gpu_check"
echo "gpu_check: work folder $WORK, part $PART"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
$PYTHON -c "import torch, transformers; print('torch', torch.__version__, '/ transformers', transformers.__version__)"

# step NAME CMD...: run CMD with its output in WORK/logs-gpu_check/NAME.log; say how long it took,
# or that it failed (with the end of its log)
step() {
    local name=$1 t0 rc
    shift
    t0=$(date +%s)
    "$@" >"$WORK/logs-gpu_check/$name.log" 2>&1
    rc=$?
    if [ $rc = 0 ]; then
        echo "gpu_check: $name: $(($(date +%s) - t0)) s"
    else
        echo "gpu_check: $name: FAILED (exit $rc after $(($(date +%s) - t0)) s); its log ends:"
        tail -n 15 "$WORK/logs-gpu_check/$name.log"
    fi
    return $rc
}

# bench SCRIPT ARGS...: a benchmark script other work adds; its absence is a note, not an error
bench() {
    local script=$1
    shift
    if [ -f "$HERE/$script" ]; then
        step "${script%.py}" $PYTHON "$HERE/$script" "$@"
    else
        echo "gpu_check: $script: skipped: not present"
    fi
}

# data SESSIONS DIR: lfft synth logs through the data stages to DIR/splits
data() {
    cat >"$2/lfft.toml" <<EOF
[collect]
format = "events"

[split]
key = "session_id"
ratios = [0.98, 0.01, 0.01]
EOF
    [ -d "$2/logs" ] || $LFFT synth --out "$2/logs" --sessions "$1" --files 8 --seed 0 -q || return
    $LFFT pipeline "$2/logs" --work "$2" --until split --config "$2/lfft.toml"
}

part_125m() {
    step data data "$SESSIONS" "$WORK" || return
    [ -f "$WORK/ckpt/init/lfft.json" ] || step init $LFFT init --out "$WORK/ckpt/init" \
        --preset "$PRESET" --data "$WORK/splits/train.parquet" --vocab-size "$VOCAB" \
        --max-length "$MAX_LENGTH" -q || return
    local run extra
    for run in $RUNS; do
        case $run in
        eager) extra=(--packing off) ;;
        compile) extra=(--packing off --compile) ;;
        packed) extra=(--packing on) ;;
        *) echo "gpu_check: unknown run $run (eager, compile, packed)" >&2; continue ;;
        esac
        rm -rf "$WORK/ckpt/$run"
        step "train-$run" $LFFT train --model "$WORK/ckpt/init" --data "$WORK/splits" \
            --out "$WORK/ckpt/$run" --objective sft --feedback-loss auto \
            --precision "$PRECISION" --device "$DEVICE" --max-steps "$STEPS" --warmup-steps 20 \
            --lr 6e-4 --batch-size 4096 --batch-tokens "$BATCH_TOKENS" --max-length "$MAX_LENGTH" \
            --log-every 10 --eval-every 100000 --save-every 100000 -q "${extra[@]}"
    done
    bench train_profile.py --device "$DEVICE" --precision "$PRECISION" --model "$WORK/ckpt/init" \
        --splits "$WORK/splits" --steps 10 --warmup 5 --compile off,layers \
        --batch-tokens "$BATCH_TOKENS" --max-length "$MAX_LENGTH" --peak-tflops "$PEAK_TFLOPS" \
        --json "$WORK/profile.json"
    local ckpt="$WORK/ckpt/eager" test="$WORK/splits/test.parquet"
    [ -f "$ckpt/lfft.json" ] || ckpt="$WORK/ckpt/init"
    bench generate_speed.py --model "$ckpt" --data "$test" --device "$DEVICE" \
        --precision "$PRECISION" --batch-sizes 1,16,64 --prompts 64 --max-new-tokens 32 \
        --json "$WORK/generate.json"
    step evaluate $LFFT evaluate --model "$ckpt" --data "$test" --out "$WORK/eval" --generate \
        --max-rows 256 --batch-size 64 --max-new-tokens 64 --device "$DEVICE" -q
}

part_peers() {
    local tok=${GPU_CARRY:-.gpu}/smollm2-tokenizer model
    model=(--arch smollm2-135m --tokenizer "$tok" --precision "$PRECISION")
    [ "$PRESET" = tiny ] && model=(--arch gpt2-tiny) # the dry run: the CPU benchmark's model
    if [ "$PRESET" != tiny ] && [ ! -f "$tok/tokenizer.json" ]; then
        echo "gpu_check: peers: no $tok/tokenizer.json (run bench/gpu_carry.sh)" >&2
        return 2
    fi
    mkdir -p "$WORK/peers"
    step peers-data data "$PEER_SESSIONS" "$WORK/peers" || return
    step peers $PYTHON "$HERE/train_throughput.py" --device "$DEVICE" "${model[@]}" --trl --lora \
        --split "$WORK/peers/splits/train.parquet" --steps "$PEER_STEPS" --warmup 5 --repeat 1 \
        --threads "$THREADS" --batch-size "$PEER_BATCH" --max-length "$PEER_LENGTH" --lr 2e-5 \
        --json "$WORK/peers.json"
}

case $PART in
125m) part_125m ;;
peers) part_peers ;;
all) part_125m; part_peers ;;
*) echo "gpu_check: PART is 125m, peers or all, not $PART" >&2; exit 2 ;;
esac

$PYTHON "$HERE/gpu_check.py" "$WORK" ${PRIOR:+--prior "$PRIOR"}
if [ -n "${SAVE:-}" ]; then
    mkdir -p "$SAVE"
    for f in gpu_check.json profile.json generate.json peers.json; do
        [ -f "$WORK/$f" ] && cp "$WORK/$f" "$SAVE/"
    done
    [ -f "$WORK/eval/metrics.json" ] && cp "$WORK/eval/metrics.json" "$SAVE/eval-metrics.json"
    true
fi
