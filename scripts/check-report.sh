#!/usr/bin/env bash
# make check-report: draws the report of pipelines/smoke.yaml (MNIST, a minute on 2 cores) and
# opens it in headless Chromium. Fails on any console message, on a figure missing from the page
# as Chromium built it, or on anything the page would fetch; leaves work/check-report/report.png
# (the whole page), report.pdf and the DOM for a person to look at. Installs Debian's chromium
# package when no chromium is on the PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    echo "chromium is not installed; installing Debian's chromium package"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium
fi

# --force report: the page is drawn by this build even when the other stages are up to date.
./target/release/distill run pipelines/smoke.yaml --force report
page="work/smoke/report.html"
out="work/check-report"
mkdir -p "$out"
rm -f "$out"/report.png "$out"/report.pdf "$out"/dom.html "$out"/console.log

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
browser=(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
    --disable-background-networking --disable-component-update --disable-sync
    --user-data-dir="$profile" --hide-scrollbars)
url="file://$PWD/$page"
fail() { echo "check-report: FAILED: $*" >&2; exit 1; }

# The page as Chromium built it, with every console message on stderr.
timeout 120 "${browser[@]}" --enable-logging=stderr --v=0 --dump-dom "$url" \
    > "$out/dom.html" 2> "$out/console.log" || fail "chromium could not load $page (see $out/console.log)"
if grep -E ":CONSOLE[:(]" "$out/console.log"; then
    fail "the page wrote to the browser console (a page without scripts should not)"
fi
grep -q "</html>" "$out/dom.html" || fail "chromium returned no DOM for $page"

# Every figure of a full pipeline, as an inline <svg>.
figures=(results provenance fig-learning-error fig-learning-loss fig-confusion-student
    fig-confusion-baseline fig-confusion-ensemble-arithmetic fig-per-class
    fig-reliability-student fig-reliability-baseline fig-reliability-teacher-1
    fig-reliability-ensemble-arithmetic fig-clusters fig-tradeoff-size fig-tradeoff-latency)
for id in "${figures[@]}"; do
    grep -q "id=\"$id\"" "$out/dom.html" || fail "figure $id is missing from the page"
done
for id in "${figures[@]}"; do
    case "$id" in fig-*)
        grep -q "<svg[^>]* id=\"$id\"" "$out/dom.html" || fail "figure $id is not an inline <svg>";;
    esac
done
if grep -q 'id="missing"' "$out/dom.html"; then
    fail "the page says stages are missing, after a complete pipeline"
fi
# Nothing fetched from anywhere: no scripts, links, images, frames or URLs.
if grep -Eio '(https?:|<script|<link|<img|<iframe|url\(|@import|src=)' "$out/dom.html" | head -3 | grep .; then
    fail "the page refers to something outside itself"
fi

# The screenshot of the whole page and the PDF.
timeout 120 "${browser[@]}" --window-size=1360,6600 --screenshot="$out/report.png" "$url" \
    > /dev/null 2>&1 || fail "chromium could not take the screenshot"
timeout 120 "${browser[@]}" --no-pdf-header-footer --print-to-pdf="$out/report.pdf" "$url" \
    > /dev/null 2>&1 || fail "chromium could not print the PDF"
[ "$(head -c 8 "$out/report.png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] \
    || fail "$out/report.png is not a PNG"
[ "$(head -c 5 "$out/report.pdf")" = "%PDF-" ] || fail "$out/report.pdf is not a PDF"
png_bytes=$(stat -c %s "$out/report.png")
[ "$png_bytes" -gt 200000 ] || fail "$out/report.png is only $png_bytes bytes: the page drew almost nothing"

echo "check-report: OK: ${#figures[@]} figures, no console message, nothing fetched"
echo "screenshot: $out/report.png"
echo "pdf: $out/report.pdf"
