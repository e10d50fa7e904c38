#!/usr/bin/env bash
# GPU check (a benchmark, not a test): issue 15's figures on one CUDA GPU, then one table
# (bench/gpu_check.py).
#
#   bench/gpu_check.sh [WORK_DIR]
#
# PART=125m (the 125m preset, bf16, the synthetic gpu_check data):
#   - bench/train_profile.py: eager and regionally compiled steps, padded and packed: steady
#     tokens/s, MFU, compile start-up, peak memory, and where the eager step's time goes;
#   - one `lfft train` run through the CLI (its metrics.parquet: tokens/s and MFU as logged);
#   - bench/generate_speed.py and `lfft evaluate --generate` on that checkpoint (tokens/s).
# PART=peers: SmolLM2-135M (its architecture and tokenizer), lfft sft/kto against TRL's
#   SFTTrainer/KTOTrainer with their recommended GPU settings, and LoRA (bench/train_throughput.py).
# PART=all (default): both. On a device lent for 15 minutes, run the parts as two calls.
#
# Environment (all optional):
#   PYTHON=python3          the interpreter (torch with CUDA)
#   GPU_CARRY=.gpu          what bench/gpu_carry.sh prepared: wheels installed into a temporary
#                           folder put first on PYTHONPATH, and the SmolLM2 tokenizer
#   SESSIONS=20000          synthetic sessions (lfft synth) for the 125m part
#   STEPS=60                optimizer steps of the `lfft train` run
#   BATCH_TOKENS=65536      token budget per micro-batch;  MAX_LENGTH=1024
#   VOCAB=32000             BPE vocabulary of the 125m preset
#   PEAK_TFLOPS=989         the GPU's dense bf16 peak for MFU (H100/H200 SXM datasheet)
#   PEER_STEPS=20           optimizer steps per peer run (5 untimed)
#   PRESET=125m DEVICE=cuda a dry run of the script itself on a CPU:
#                           PRESET=tiny DEVICE=cpu SESSIONS=300 STEPS=10 BATCH_TOKENS=2048 MAX_LENGTH=128
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
PYTHON=${PYTHON:-python3}
PART=${PART:-all}
SESSIONS=${SESSIONS:-20000}
STEPS=${STEPS:-60}
BATCH_TOKENS=${BATCH_TOKENS:-65536}
MAX_LENGTH=${MAX_LENGTH:-1024}
VOCAB=${VOCAB:-32000}
PEER_STEPS=${PEER_STEPS:-20}
PRESET=${PRESET:-125m}
DEVICE=${DEVICE:-cuda}
PRECISION=bf16
export PEAK_TFLOPS=${PEAK_TFLOPS:-989}

if [ -n "${GPU_CARRY:-}" ] && ls "$GPU_CARRY"/whl/*.whl >/dev/null 2>&1; then
    SITE=$(mktemp -d)
    $PYTHON -m pip install -q --no-index --no-deps --target "$SITE" "$GPU_CARRY"/whl/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" # this checkout's lfft
LFFT="$PYTHON -m lfft"

if [ "$DEVICE" = cuda ] && ! $PYTHON -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA GPU is visible to $PYTHON; nothing to measure" >&2
    exit 2
fi
WORK=${1:-$(mktemp -d)}
mkdir -p "$WORK"
echo "gpu_check: work folder $WORK, part $PART"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
$PYTHON -c "import torch, transformers; print('torch', torch.__version__, '/ transformers', transformers.__version__)"

part_125m() {
    cat >"$WORK/lfft.toml" <<EOF
[collect]
format = "events"

[split]
key = "session_id"
ratios = [0.98, 0.01, 0.01]
EOF
    local t0
    t0=$(date +%s)
    [ -d "$WORK/logs" ] || $LFFT synth --out "$WORK/logs" --sessions "$SESSIONS" --files 8 --seed 0 -q
    $LFFT pipeline "$WORK/logs" --work "$WORK" --until split --config "$WORK/lfft.toml" >/dev/null
    [ -f "$WORK/ckpt/init/lfft.json" ] || $LFFT init --out "$WORK/ckpt/init" --preset "$PRESET" \
        --data "$WORK/splits/train.parquet" --vocab-size "$VOCAB" --max-length "$MAX_LENGTH" -q
    echo "gpu_check: data stages and init took $(($(date +%s) - t0)) s"

    local prof=(--device "$DEVICE" --precision "$PRECISION" --model "$WORK/ckpt/init"
        --splits "$WORK/splits" --batch-tokens "$BATCH_TOKENS" --max-length "$MAX_LENGTH"
        --warmup 5 --steps 10 --compile off,layers --peak-tflops "$PEAK_TFLOPS")
    $PYTHON "$HERE/train_profile.py" "${prof[@]}" --packing off --json "$WORK/profile.json" 2>/dev/null
    $PYTHON "$HERE/train_profile.py" "${prof[@]}" --packing on --json "$WORK/profile-packed.json" 2>/dev/null

    t0=$(date +%s)
    $LFFT train --model "$WORK/ckpt/init" --data "$WORK/splits" --out "$WORK/ckpt/eager" \
        --objective sft --feedback-loss auto --precision "$PRECISION" --device "$DEVICE" \
        --max-steps "$STEPS" --warmup-steps 20 --lr 6e-4 --batch-size 4096 \
        --batch-tokens "$BATCH_TOKENS" --max-length "$MAX_LENGTH" --log-every 10 \
        --eval-every 100000 --save-every 100000 -q
    echo "gpu_check: lfft train took $(($(date +%s) - t0)) s in all"

    $PYTHON "$HERE/generate_speed.py" --model "$WORK/ckpt/eager" --data "$WORK/splits/test.parquet" \
        --device "$DEVICE" --precision "$PRECISION" --batch-sizes 1,16,64 --prompts 64 \
        --max-new-tokens 64 --json "$WORK/generate.json" 2>/dev/null
    $LFFT evaluate --model "$WORK/ckpt/eager" --data "$WORK/splits/test.parquet" --out "$WORK/eval" \
        --generate --max-rows 256 --batch-size 64 --max-new-tokens 64 --device "$DEVICE" -q
}

part_peers() {
    local tok=${GPU_CARRY:-.gpu}/smollm2-tokenizer
    local model=(--arch smollm2-135m --tokenizer "$tok")
    [ "$PRESET" = tiny ] && model=(--arch gpt2-tiny) # the dry run: the CPU benchmark's model
    if [ "$PRESET" != tiny ] && [ ! -f "$tok/tokenizer.json" ]; then
        echo "gpu_check: no $tok (run bench/gpu_carry.sh)" >&2
        exit 2
    fi
    $PYTHON "$HERE/train_throughput.py" --device "$DEVICE" --precision "$PRECISION" "${model[@]}" \
        --trl --lora --steps "$PEER_STEPS" --warmup 5 --repeat 1 --batch-size 32 \
        --max-length "$MAX_LENGTH" --json "$WORK/peers.json"
}

case $PART in
125m) part_125m ;;
peers) part_peers ;;
all) part_125m && part_peers ;;
*) echo "gpu_check: PART is 125m, peers or all, not $PART" >&2; exit 2 ;;
esac

$PYTHON "$HERE/gpu_check.py" "$WORK"
