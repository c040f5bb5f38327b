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

.PHONY: help setup ort build test bench bench-compare pipeline check-cuda clean

help:
	@echo "make setup      ONNX Runtime $(ORT_VERSION) into $(VENV) (CUDA=1 for the GPU wheel) and release binaries"
	@echo "make test       fmt, clippy and the whole test suite"
	@echo "make bench      engine, teacher-inference and training benchmarks"
	@echo "make bench-compare  distill-train against PyTorch side by side (installs torch into $(BENCH_VENV))"
	@echo "make pipeline   the default distillation pipeline on MNIST"
	@echo "make check-cuda CUDA provider against CPU (needs an NVIDIA GPU)"

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

pipeline: setup
	./target/release/distill run pipelines/mnist.yaml

check-cuda:
	bash scripts/check-cuda.sh

clean:
	cargo clean
	rm -rf $(VENV) $(BENCH_VENV)
