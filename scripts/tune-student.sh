#!/usr/bin/env bash
# Tuning runs for the distilled 800-800 student of pipelines/paper-mnist.yaml (T = 20, soft term
# only, no regularisation besides the soft targets), scored on the validation slice only (the 5,000
# held-out training rows distill-train keeps by default; --test-split none, so the test split is
# never read). One thread each, one run at a time, so that a shared machine keeps a core.
# Usage: scripts/tune-student.sh EPOCHS [NAME ...]; prints NAME, the epochs, the best validation
# errors and their epoch, the last validation errors and the wall seconds, and appends them to
# work/tune/results.tsv. Needs the teacher's store (distill run pipelines/paper-teacher.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:?usage: scripts/tune-student.sh EPOCHS [NAME ...]}
shift
train=./target/release/distill-train
store=work/paper/teacher/soft-targets.parquet
out=work/tune
mkdir -p "$out"
[ -s "$out/results.tsv" ] || printf 'recipe\tepochs\tbest_val_errors\tbest_epoch\tlast_val_errors\twall_s\n' > "$out/results.tsv"
common=(--data data/mnist --soft-targets "$store" --temperature 20 --alpha 1 --hidden 800,800
    --threads 1 --test-split none --seed 1 --epochs "$epochs")
recipe() {
    case "$1" in
        # the recipe pipelines/paper-mnist.yaml had before tuning
        adam-exp93) echo --optimizer adam --lr 0.001 --schedule exp:0.93 ;;
        adam-cos) echo --optimizer adam --lr 0.001 --schedule "cosine:$epochs" ;;
        adam-cos-lr3) echo --optimizer adam --lr 0.0003 --schedule "cosine:$epochs" ;;
        # SGD with momentum 0.9 (the paper's optimiser), cosine decay to 0 over the run
        sgd-cos-lr005) echo --optimizer sgd --lr 0.005 --momentum 0.9 --schedule "cosine:$epochs" ;;
        sgd-cos-lr01) echo --optimizer sgd --lr 0.01 --momentum 0.9 --schedule "cosine:$epochs" ;;
        sgd-cos-lr02) echo --optimizer sgd --lr 0.02 --momentum 0.9 --schedule "cosine:$epochs" ;;
        sgd-cos-lr02-he) echo --optimizer sgd --lr 0.02 --momentum 0.9 --schedule "cosine:$epochs" --init he ;;
        sgd-cos-lr02-b64) echo --optimizer sgd --lr 0.02 --momentum 0.9 --schedule "cosine:$epochs" --batch 64 ;;
        sgd-step-lr02) echo --optimizer sgd --lr 0.02 --momentum 0.9 --schedule "step:$((epochs / 3)):0.1" ;;
        sgd-cos-lr03) echo --optimizer sgd --lr 0.03 --momentum 0.9 --schedule "cosine:$epochs" ;;
        sgd-cos-lr05) echo --optimizer sgd --lr 0.05 --momentum 0.9 --schedule "cosine:$epochs" ;;
        sgd-cos-lr1) echo --optimizer sgd --lr 0.1 --momentum 0.9 --schedule "cosine:$epochs" ;;
        sgd-cos-lr05-ramp) echo --optimizer sgd --lr 0.05 --momentum-start 0.5 --momentum 0.9 --momentum-ramp 3 --schedule "cosine:$epochs" ;;
        sgd-cos-lr05-b64) echo --optimizer sgd --lr 0.05 --momentum 0.9 --schedule "cosine:$epochs" --batch 64 ;;
        sgd-cos-lr05-b32) echo --optimizer sgd --lr 0.05 --momentum 0.9 --schedule "cosine:$epochs" --batch 32 ;;
        *) echo "unknown recipe $1" >&2; return 2 ;;
    esac
}
for n in "$@"; do
    args=$(recipe "$n")
    start=$(date +%s)
    # shellcheck disable=SC2086
    nice -n 10 "$train" "${common[@]}" $args --out "$out/$n-$epochs.onnx" > "$out/$n-$epochs.log" 2>&1
    wall=$(( $(date +%s) - start ))
    # epoch,learning_rate,soft_loss,hard_loss,loss,train_error,val_error,val_loss,seconds,samples_per_s
    line=$(awk -F, -v n="$n" -v e="$epochs" -v w="$wall" 'NR > 1 { v = $7 * 5000; if (best == "" || v < best) { best = v; at = $1 } last = v }
        END { printf "%s\t%d\t%.0f\t%d\t%.0f\t%d\n", n, e, best, at, last, w }' "$out/$n-$epochs.metrics.csv")
    echo "$line" | tee -a "$out/results.tsv"
done
