#!/usr/bin/env bash
# Runs one cargo-fuzz (libFuzzer) target for a set time, on one core, starting from its
# committed seed corpus (copied: the committed corpus is not grown). Needs nightly Rust; uses
# cargo-fuzz when installed (`cargo install cargo-fuzz`), else builds the target with the same
# sanitizer-coverage flags itself and runs the libFuzzer binary directly.
#
#   scripts/fuzz.sh [TARGET] [SECONDS]      default: spec_check 300
#
# Targets: spec_check (monitor/fuzz: spec parser + checker); event_log, parquet_trace (trace
# reader), pcap, jolokia, prometheus (sensor-protocols parsers), scenario (recorder scenario files), all in
# fuzz/; `all` runs every target for SECONDS each. A crash is written under
# <fuzz dir>/artifacts/TARGET/; minimise it, add it to <fuzz dir>/regressions/TARGET/ (replayed on
# stable by `cargo test -p monitor --test hardening`, or by the `fuzz_regressions` test of trace,
# sensor-protocols or recorder) and fix it.
set -euo pipefail
target="${1:-spec_check}"
secs="${2:-300}"
root="$(cd "$(dirname "$0")/.." && pwd)"
all=(spec_check event_log parquet_trace pcap jolokia prometheus scenario)
if [ "$target" = all ]; then
  for t in "${all[@]}"; do "$0" "$t" "$secs"; done
  exit 0
fi
case "$target" in
  spec_check) dir="$root/monitor/fuzz" ;;
  event_log|parquet_trace|pcap|jolokia|prometheus|scenario) dir="$root/fuzz" ;;
  *) echo "error: unknown fuzz target \`$target\` (known: ${all[*]} all)" >&2; exit 2 ;;
esac
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$dir/corpus/$target/"* "$work/"
cp "$dir/regressions/$target/"* "$work/" 2>/dev/null || true
cd "$dir"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/fuzz}"
# -rss_limit_mb and -timeout turn runaway memory and time into findings, not hangs
# one process on one core (no -jobs: with it libFuzzer writes to fuzz-N.log instead of stderr)
opts=(-max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
if cargo +nightly fuzz --version >/dev/null 2>&1; then
  exec cargo +nightly fuzz run "$target" "$work" -- "${opts[@]}"
fi
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
# --target keeps the coverage flags off build scripts, as cargo-fuzz does
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  cargo +nightly build --release --target "$triple" --bin "$target"
mkdir -p "artifacts/$target"
exec "$CARGO_TARGET_DIR/$triple/release/$target" -artifact_prefix="artifacts/$target/" \
  "${opts[@]}" "$work"
