#!/usr/bin/env bash
# `make reproduce`: every pipelines/paper-*.yaml in order (the shared teacher first), then the
# paper-vs-ours table (scripts/reproduce_results.py -> work/reproduce/RESULTS.md).
#
#   scripts/reproduce.sh            the full run (budget: 2 hours on 2 cores; README, "Reproducing
#                                   the paper"). Run it again after an interruption: finished stages
#                                   are skipped (the lock files) and an interrupted training stage
#                                   continues from its checkpoint.
#   scripts/reproduce.sh --quick    the same chain on 6,000 training and 2,000 test rows with one or
#                                   two epochs per net, in a copy under work/reproduce-quick/ (its
#                                   own pipelines, locks and outputs: the full run's are untouched).
#
# Extra arguments go to every `distill run` (e.g. `--dry-run`). REPRODUCE_JOBS=N sets how many
# stages run at once (default 2, one per core; 1 on a machine shared with other work). A failed
# pipeline does not stop the others that do not need it; the table is written either way, and the
# exit code is 1 if any failed (130 at once on an interrupt).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
distill="$repo/target/release/distill"
jobs=${REPRODUCE_JOBS:-2}
pipelines=(paper-teacher paper-mnist paper-temperature paper-omit3 paper-78 paper-3percent)

root=.
quick=()
if [ "${1:-}" = "--quick" ]; then
    shift
    root=work/reproduce-quick
    mkdir -p "$root/pipelines"
    cp pipelines/paper-*.yaml "$root/pipelines/"
    ln -sfn "$repo/data" "$root/data"
    # Each pipeline gets the variables it declares.
    quick=(limit=6000 test_limit=2000 teacher_epochs=2 epochs=1 distilled_epochs=1 epochs_small=2)
fi

failed=()
for p in "${pipelines[@]}"; do
    file="$root/pipelines/$p.yaml"
    sets=()
    for kv in "${quick[@]}"; do
        grep -q "^  ${kv%%=*}:" "$file" && sets+=(--set "$kv")
    done
    echo "== $(date -u '+%H:%M:%S') distill run $file ${sets[*]} --jobs $jobs $*"
    "$distill" run "$file" "${sets[@]}" --jobs "$jobs" "$@"
    rc=$?
    [ "$rc" = 130 ] && { echo "interrupted in $p; run again to resume"; exit 130; }
    [ "$rc" = 0 ] || failed+=("$p (exit $rc)")
done
echo "== $(date -u '+%H:%M:%S') results"
python3 scripts/reproduce_results.py --root "$root" || failed+=("reproduce_results.py")
if [ "${#failed[@]}" -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
