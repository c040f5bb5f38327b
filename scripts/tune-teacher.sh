#!/usr/bin/env bash
# Tuning runs for the paper teacher (pipelines/paper-teacher.yaml), scored on the validation slice
# only (the 5,000 held-out training rows distill-train keeps by default; --test-split none, so the
# test split is never read). One thread each, one run at a time, so that a shared machine keeps a
# core. Usage: scripts/tune-teacher.sh EPOCHS [NAME ...]; prints NAME, the best and the last
# validation error and the seconds per epoch, and appends them to work/tune/results.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:?usage: scripts/tune-teacher.sh EPOCHS [NAME ...]}
shift
train=./target/release/distill-train
out=work/tune
mkdir -p "$out"
common=(--hidden 1200,1200 --jitter 2 --threads 1 --test-split none --seed 1 --epochs "$epochs")
recipe() {
    case "$1" in
        # the recipe of the README's longer runs, scaled down: exponential decay 0.95 per epoch
        exp95) echo --lr 0.1 --momentum-start 0.5 --momentum 0.9 --momentum-ramp 3 --schedule exp:0.95 --max-norm 3.5 --input-dropout 0.2 --hidden-dropout 0.5 ;;
        # cosine decay to 0 over the run, momentum 0.5 -> 0.95
        cos) echo --lr 0.1 --momentum-start 0.5 --momentum 0.95 --momentum-ramp 5 --schedule "cosine:$epochs" --max-norm 3.5 --input-dropout 0.2 --hidden-dropout 0.5 ;;
        cos-lr05) echo --lr 0.05 --momentum-start 0.5 --momentum 0.95 --momentum-ramp 5 --schedule "cosine:$epochs" --max-norm 3.5 --input-dropout 0.2 --hidden-dropout 0.5 ;;
        cos-lr025) echo --lr 0.025 --momentum-start 0.5 --momentum 0.95 --momentum-ramp 5 --schedule "cosine:$epochs" --max-norm 3.5 --input-dropout 0.2 --hidden-dropout 0.5 ;;
        cos-lr05-mn2) echo --lr 0.05 --momentum-start 0.5 --momentum 0.95 --momentum-ramp 5 --schedule "cosine:$epochs" --max-norm 2 --input-dropout 0.2 --hidden-dropout 0.5 ;;
        cos-lr2) echo --lr 0.2 --momentum-start 0.5 --momentum 0.95 --momentum-ramp 5 --schedule "cosine:$epochs" --max-norm 3.5 --input-dropout 0.2 --hidden-dropout 0.5 ;;
        cos-mn2) echo --lr 0.1 --momentum-start 0.5 --momentum 0.95 --momentum-ramp 5 --schedule "cosine:$epochs" --max-norm 2 --input-dropout 0.2 --hidden-dropout 0.5 ;;
        cos-d13) echo --lr 0.1 --momentum-start 0.5 --momentum 0.95 --momentum-ramp 5 --schedule "cosine:$epochs" --max-norm 3.5 --input-dropout 0.1 --hidden-dropout 0.3 ;;
        *) echo "unknown recipe $1" >&2; return 2 ;;
    esac
}
for name in "${@:-exp95 cos cos-lr05 cos-mn2 cos-d13}"; do
    for n in $name; do
        args=$(recipe "$n")
        # shellcheck disable=SC2086
        nice -n 10 "$train" "${common[@]}" $args --out "$out/$n-$epochs.onnx" > "$out/$n-$epochs.log" 2>&1
        # epoch,learning_rate,soft_loss,hard_loss,loss,train_error,val_error,val_loss,seconds,samples_per_s
        line=$(awk -F, -v n="$n" -v e="$epochs" 'NR > 1 { v = $7 * 5000; s += $9; if (best == "" || v < best) best = v; last = v; k++ }
            END { printf "%s\t%d\t%.0f\t%.0f\t%.1f\n", n, e, best, last, s / k }' "$out/$n-$epochs.metrics.csv")
        echo "$line" | tee -a "$out/results.tsv"
    done
done
