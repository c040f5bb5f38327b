#!/usr/bin/env bash
# Runs distill-teach on the CUDA provider and on the CPU over the same data with the same teachers,
# checks that the stored logits agree (max abs difference <= 1e-4) and prints both timings.
#
# Needs an NVIDIA GPU with a driver for CUDA 13 (the onnxruntime-gpu 1.31.1 wheel brings the CUDA
# and cuDNN runtime libraries). Sets itself up with `make setup CUDA=1` (which replaces the CPU-only
# onnxruntime wheel in .venv; `make setup` puts it back). Exit status: 0 when the stores agree.
#
# Teachers: the exporter fixtures in tests/fixtures/teachers (TorchScript and dynamo CNNs with
# mean/std, the external-data MLP, the skl2onnx classifier in both forms; fixed_batch1 is left out
# because it runs one row at a time) and three 784-1200-1200-10 MLPs exported by the engine, over
# the 60,000 MNIST training images.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "check-cuda: no NVIDIA GPU is visible (nvidia-smi missing or failing); nothing to check" >&2
    exit 1
fi
nvidia-smi -L

make setup CUDA=1
cargo build --release -p distill-teach --features cuda --bin distill-teach \
    --example compare_stores --example export_mlps

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
./target/release/examples/export_mlps "$work" 3 >/dev/null

fixtures=tests/fixtures/teachers
teachers=(
    --model "$fixtures/torchscript_cnn.onnx" --mean 0.1307 --std 0.3081
    --model "$fixtures/dynamo_cnn.onnx" --mean 0.1307 --std 0.3081
    --model "$fixtures/external_data/model.onnx" --name external_data
    --model "$fixtures/skl_logreg.onnx"
    --model "$fixtures/skl_logreg_zipmap.onnx"
    --model "$work/teacher-1.onnx" --model "$work/teacher-2.onnx" --model "$work/teacher-3.onnx"
)

run() {
    local provider=$1
    local start end
    start=$(date +%s%N)
    ./target/release/distill-teach "${teachers[@]}" --data data/mnist --split train \
        --provider "$provider" --out "$work/$provider.parquet" | tee "$work/$provider.txt"
    end=$(date +%s%N)
    awk -v p="$provider" -v a="$start" -v b="$end" \
        'BEGIN { printf "%-5s %8.2f s wall for the whole command\n", p ":", (b - a) / 1e9 }' \
        > "$work/$provider.time"
}

run cuda
if ! grep -q ' cuda ' "$work/cuda.txt"; then
    echo "check-cuda: the report shows no teacher on the cuda provider" >&2
    exit 1
fi
run cpu

echo
./target/release/examples/compare_stores "$work/cuda.parquet" "$work/cpu.parquet" --tolerance 1e-4
echo
echo "timings (60,000 rows, 8 teachers):"
cat "$work/cuda.time" "$work/cpu.time"
tail -n 1 "$work/cuda.txt"
tail -n 1 "$work/cpu.txt"
