# distill: every target works from a fresh clone; `make setup` is idempotent and quick when done.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
ORT_VERSION := 1.31.1
CUDA ?= 0
ifeq ($(CUDA),1)
ORT_PACKAGE := onnxruntime-gpu[cuda,cudnn]==$(ORT_VERSION)
ORT_FLAVOUR := gpu
CARGO_FEATURES := --features distill-runtime/cuda
else
ORT_PACKAGE := onnxruntime==$(ORT_VERSION)
ORT_FLAVOUR := cpu
CARGO_FEATURES :=
endif
ORT_STAMP := $(VENV)/.onnxruntime-$(ORT_FLAVOUR)-$(ORT_VERSION)
CARGO_RELEASE := cargo build --release --workspace --bins $(CARGO_FEATURES)

.PHONY: help setup ort build test bench bench-compare bench-quantize pipeline results-specialists results-cnn reproduce reproduce-quick check-report check-cuda clean soak fuzz check-store-recipes test-slurm

help:
	@echo "make setup      ONNX Runtime $(ORT_VERSION) into $(VENV) (CUDA=1 for the GPU wheel) and release binaries"
	@echo "make test       fmt, clippy and the whole test suite"
	@echo "make bench      engine, teacher-inference, top-k store, training and specialist benchmarks"
	@echo "make pipeline   the default distillation pipeline on MNIST, ending with work/mnist/report.html"
	@echo "make results-specialists  pipelines/specialists-pairs.yaml for three generalist sizes with the compute-matched baseline, and the table in docs/results.md (~40 min on 2 cores)"
	@echo "make results-cnn  pipelines/mnist-cnn.yaml (three CNN teachers, a small CNN student distilled from them, the same CNN on hard labels, an MLP student) and its table in docs/results.md"
	@echo "make reproduce  the paper's MNIST experiments (pipelines/paper-*.yaml, ~2 h on 2 cores; resumable), ending with work/reproduce/RESULTS.md"
	@echo "make reproduce-quick  the same chain on a data slice with 1-2 epochs per net, in work/reproduce-quick/ (minutes)"
	@echo "make check-report  the report of a small pipeline in headless Chromium (installs Debian's chromium)"
	@echo "make bench-compare  distill-train against PyTorch side by side (installs torch into $(BENCH_VENV))"
	@echo "make bench-quantize  distill-quantize against ONNX Runtime's quantiser on the MNIST student: errors, size, batch-1 latency (installs onnx into $(QUANTIZE_VENV))"
	@echo "make check-cuda CUDA provider against CPU (needs an NVIDIA GPU)"
	@echo "make test-slurm a small pipeline through a one-node Slurm (installs Debian's slurm-wlm, munge; root) against the local executor"
	@echo "make soak       the kill test with 25 kills per stage"
	@echo "make fuzz       each fuzz target for 10 minutes (DISTILL_FUZZ_SECONDS)"
	@echo "make check-store-recipes  docs/store.md's pandas/Polars/DuckDB recipes against NumPy (makes $(RECIPES_VENV))"

setup: ort build

ort: $(ORT_STAMP)

# The ONNX Runtime shared library comes from the PyPI wheel (a registry package, no other download).
$(ORT_STAMP):
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip uninstall --quiet --yes onnxruntime onnxruntime-gpu >/dev/null 2>&1 || true
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check '$(ORT_PACKAGE)'
	@rm -f $(VENV)/.onnxruntime-*
	@ls $(VENV)/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.$(ORT_VERSION) >/dev/null
	@touch $@

build:
	$(CARGO_RELEASE)

test: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --release -- -D warnings
	cargo test --workspace --release $(CARGO_FEATURES)

bench: setup
	cargo bench -p distill-nn --bench engine
	cargo bench -p distill-train --bench train
	cargo bench -p distill-teach --bench teach
	cargo bench -p distill-teach --bench topk
	cargo bench -p distill-store --bench io
	cargo bench -p distill-specialists --bench specialists
	cargo bench -p distill-specialists --bench combine

# A throwaway venv for the PyTorch side (the PyPI torch wheel, several GB, installed once).
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed:
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check torch numpy pyarrow
	@touch $@

# Options for scripts/bench_compare.py, e.g. BENCH_COMPARE_ARGS='--repeats 3 --inits he'.
BENCH_COMPARE_ARGS ?=
bench-compare: setup $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python scripts/bench_compare.py $(BENCH_COMPARE_ARGS)

# A throwaway venv for ONNX Runtime's Python quantiser (it needs the `onnx` package, kept out of $(VENV)).
QUANTIZE_VENV := .venv-quantize
$(QUANTIZE_VENV)/.installed:
	@test -x $(QUANTIZE_VENV)/bin/python || $(PYTHON) -m venv $(QUANTIZE_VENV)
	$(QUANTIZE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check onnx 'onnxruntime==$(ORT_VERSION)' numpy
	@touch $@

# Options for scripts/quantize_compare.py, e.g. QUANTIZE_COMPARE_ARGS='--rounds 9 --no-write'.
QUANTIZE_COMPARE_ARGS ?=
bench-quantize: setup $(QUANTIZE_VENV)/.installed
	$(QUANTIZE_VENV)/bin/python scripts/quantize_compare.py $(QUANTIZE_COMPARE_ARGS)

pipeline: setup
	./target/release/distill run pipelines/mnist.yaml

# Specialists against a converged generalist and a compute-matched one, for three generalist sizes;
# writes the table into docs/results.md. Finished stages are skipped when run again.
results-specialists: setup
	$(PYTHON) scripts/specialists_results.py

# pipelines/mnist-cnn.yaml, then its table (with commit, CPU and date) into docs/results.md.
results-cnn: setup
	$(PYTHON) scripts/cnn_results.py

# The paper's MNIST experiments (README, "Reproducing the paper"): every pipelines/paper-*.yaml in
# order, then the paper-vs-ours table in work/reproduce/RESULTS.md. Run it again to resume.
reproduce: setup
	bash scripts/reproduce.sh

reproduce-quick: setup
	bash scripts/reproduce.sh --quick

# Longer versions of the kill and fuzz tests in `make test` (not part of it).
soak: setup
	DISTILL_KILLS=25 cargo test --release -p distill --test kill -- --nocapture

fuzz: setup
	DISTILL_FUZZ_SECONDS=$${DISTILL_FUZZ_SECONDS:-600} cargo test --release -p distill --test fuzz -- --nocapture --test-threads 1

check-report: setup
	bash scripts/check-report.sh

check-cuda:
	bash scripts/check-cuda.sh

# `distill run --executor slurm` on a real one-node Slurm (scripts/slurm-local.sh up: Debian's
# slurm-wlm and munge, daemons on 127.0.0.1); outputs must equal the local executor's. Not part
# of `make test`. `scripts/slurm-local.sh down` stops the daemons afterwards.
test-slurm: setup
	bash scripts/test-slurm.sh

# docs/store.md's recipes, run as written on stores made by distill-teach (a CNN's logits and a
# scikit-learn model's probabilities, 2,000 MNIST rows; one file and two parts), compared with
# NumPy within 1e-6, and the top-k recipe on a top-3 store. The packages go into a throwaway venv outside the build.
RECIPES_VENV := .venv-recipes
RECIPES_OUT := work/store-recipes
RECIPES_TEACH := ./target/release/distill-teach --data data/mnist --limit 2000 \
	--model tests/fixtures/teachers/torchscript_cnn.onnx --mean 0.1307 --std 0.3081 \
	--model tests/fixtures/teachers/skl_logreg.onnx

$(RECIPES_VENV)/.packages:
	@test -x $(RECIPES_VENV)/bin/python || $(PYTHON) -m venv $(RECIPES_VENV)
	$(RECIPES_VENV)/bin/python -m pip install --quiet --disable-pip-version-check numpy pyarrow pandas polars duckdb
	@touch $@

check-store-recipes: setup $(RECIPES_VENV)/.packages
	@mkdir -p $(RECIPES_OUT)
	$(RECIPES_TEACH) --out $(RECIPES_OUT)/store.parquet
	$(RECIPES_TEACH) --shard 1/2 --out $(RECIPES_OUT)/parts
	$(RECIPES_TEACH) --shard 2/2 --out $(RECIPES_OUT)/parts
	$(RECIPES_TEACH) --top-k 3 --out $(RECIPES_OUT)/top3.parquet
	$(RECIPES_VENV)/bin/python scripts/check_store_recipes.py $(RECIPES_OUT)/store.parquet
	$(RECIPES_VENV)/bin/python scripts/check_store_recipes.py $(RECIPES_OUT)/parts
	$(RECIPES_VENV)/bin/python scripts/check_store_recipes.py $(RECIPES_OUT)/top3.parquet
	DISTILL_RECIPES_PYTHON=$(CURDIR)/$(RECIPES_VENV)/bin/python cargo test --release -p distill-teach --test store_recipes -- --nocapture

clean:
	cargo clean
	rm -rf $(VENV) $(RECIPES_VENV) $(BENCH_VENV) $(QUANTIZE_VENV)
