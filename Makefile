# lfft: `make demo` and `make test` are all a fresh machine needs; both install into .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned once, in constraints.txt; GPU users override, e.g.
#   make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= $(shell grep -E '^torch==' constraints.txt)
STAMP := $(VENV)/.lfft-installed
WORK ?= work/demo
SAMPLES := data/samples

.PHONY: install browser demo loop-demo test lint format bench bench-train gpu-check clean-work collect clean normalize split init train evaluate smoke

install: $(STAMP)

# The browser of the page tests (tests/browser.py): Debian's chromium, installed only when missing.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser: $(CHROMIUM)
$(CHROMIUM):
	@echo "installing chromium (apt) for the browser tests"
	@$(SUDO) apt-get update -qq >/dev/null
	@DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	grep -v '^torch==' constraints.txt > $(VENV)/constraints-no-torch.txt
	$(BIN)/python -m pip install -q -e '.[test]' -c $(VENV)/constraints-no-torch.txt
	touch $@

demo: $(STAMP)
	$(BIN)/lfft pipeline $(SAMPLES)/events --work $(WORK) --config $(SAMPLES)/lfft.toml

# The whole loop live: lfft online -> lfft serve -> a simulated user -> online rounds -> reload
# (bench/loop_demo.py; the numbers and the plot of docs/online.md).
loop-demo: $(STAMP)
	$(BIN)/python bench/loop_demo.py --work work/loop --plot docs/loop-demo.png

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/data_stages.py

# Training throughput against TRL: TRL lives in its own environment (.venv-bench), never in .venv.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.lfft-installed: pyproject.toml constraints.txt
	test -x $(BENCH_VENV)/bin/python || $(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q $(TORCH_SPEC)
	grep -v '^torch==' constraints.txt > $(BENCH_VENV)/constraints-no-torch.txt
	$(BENCH_VENV)/bin/python -m pip install -q -e '.[bench]' -c $(BENCH_VENV)/constraints-no-torch.txt
	touch $@

bench-train: $(BENCH_VENV)/.lfft-installed
	$(BENCH_VENV)/bin/python bench/train_throughput.py --trl

# On a machine with a CUDA GPU: issue 15's GPU figures (125m preset MFU and compile start-up, lfft
# vs TRL on SmolLM2-135M, generation tokens/s) as one table; the benchmark environment, for TRL.
# Build it with a CUDA torch, e.g.
#   make gpu-check TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
# Liger's kernels are tried (TRL's settings that need them are skipped if absent). A device
# without network: docs/benchmarks.md, "GPU check" (bench/gpu_carry.sh, then two calls).
gpu-check: $(STAMP) $(BENCH_VENV)/.lfft-installed
	-$(BENCH_VENV)/bin/python -m pip install -q liger-kernel
	test -f .gpu/smollm2-tokenizer/tokenizer.json || PYTHON=$(BIN)/python bench/gpu_carry.sh
	PYTHON=$(BENCH_VENV)/bin/python bench/gpu_check.sh

clean-work:
	rm -rf work

# Per-stage targets (what `lfft pipeline` chains), used by the CI smoke test and for debugging.
collect: $(STAMP)
	$(BIN)/lfft collect $(SAMPLES)/events --out $(WORK)/interactions.parquet --config $(SAMPLES)/lfft.toml
clean: collect
	$(BIN)/lfft clean $(WORK)/interactions.parquet --out $(WORK)/clean.parquet --config $(SAMPLES)/lfft.toml
normalize: clean
	$(BIN)/lfft normalize $(WORK)/clean.parquet --out $(WORK)/feedback.parquet --config $(SAMPLES)/lfft.toml
split: normalize
	$(BIN)/lfft split $(WORK)/feedback.parquet --out $(WORK)/splits --config $(SAMPLES)/lfft.toml
init: split
	$(BIN)/lfft init --out $(WORK)/ckpt/init --data $(WORK)/splits/train.parquet --config $(SAMPLES)/lfft.toml
train: init
	$(BIN)/lfft train --model $(WORK)/ckpt/init --data $(WORK)/splits --out $(WORK)/ckpt/final --config $(SAMPLES)/lfft.toml
evaluate: train
	$(BIN)/lfft evaluate --model $(WORK)/ckpt/final --data $(WORK)/splits/test.parquet --out $(WORK)/eval --baseline $(WORK)/ckpt/init --config $(SAMPLES)/lfft.toml
smoke: evaluate
