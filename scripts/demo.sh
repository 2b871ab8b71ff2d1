#!/usr/bin/env bash
# The README's first command: the seed talk's split-brain experiment, end to end.
#
# With a Docker engine: builds the demo image (scripts/build-images.sh) and the recorder and
# analyzer (debug: the same build cache as the tests), records examples/split-brain/scenario.toml
# into traces/split-brain-<UTC time>/ (gitignored), judges it offline with specs/akka.spec and
# specs/split-brain.spec (experiment AutoDownSplitBrain) and prints the verdicts.
# Without one: says so and judges the committed sample trace traces/sample-split-brain instead.
#
# Exit code: the analyzer's (0 accept, 1 fail, 2 inconclusive; docs/exit-codes.md), or the
# recorder's when it could not leave a trace behind.
# The recording needs root (iptables/nsenter in the containers' namespaces for the partition,
# tcpdump for the packet capture); missing host tools are installed (scripts/setup.sh
# --host-tools) when run as root on a Debian-like machine.
#
# Usage: scripts/demo.sh [--sample]     (--sample: judge the committed sample even with Docker)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SAMPLE=traces/sample-split-brain
SPECS=(--spec specs/akka.spec --spec specs/split-brain.spec)
EXPERIMENT=AutoDownSplitBrain
USE_SAMPLE=0
case "${1:-}" in
  "") ;;
  --sample) USE_SAMPLE=1 ;;
  -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
  *) echo "demo.sh: unknown argument: $1 (usage: scripts/demo.sh [--sample])" >&2; exit 64 ;;
esac

if ! command -v cargo >/dev/null 2>&1; then
  echo "demo: cargo (a Rust toolchain) is needed to build the recorder and analyzer" >&2
  exit 5
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
RECORDER="$TARGET_DIR/debug/recorder"
ANALYZER="$TARGET_DIR/debug/analyzer"

if [ "$USE_SAMPLE" = 0 ] && ! docker version >/dev/null 2>&1; then
  echo "demo: no Docker engine answers (\`docker version\` failed): analyzing the committed sample trace $SAMPLE instead"
  USE_SAMPLE=1
fi

if [ "$USE_SAMPLE" = 1 ]; then
  echo "== building the analyzer"
  cargo build -q -p analyzer
  TRACE="$SAMPLE"
else
  missing=()
  for tool in iptables nsenter tcpdump; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing the host tools the recorder drives: ${missing[*]}"
    bash scripts/setup.sh --host-tools
    missing=()
    for tool in iptables nsenter tcpdump; do
      command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    echo "demo: missing host tools: ${missing[*]} (scripts/setup.sh --host-tools installs them, as root)" >&2
    exit 5
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "demo: warning: not root; the partition (iptables in the containers' namespaces) and the packet capture need root" >&2
  fi
  echo "== building the demo image (scripts/build-images.sh)"
  bash scripts/build-images.sh
  echo "== building the recorder and analyzer"
  cargo build -q -p recorder -p analyzer
  TRACE="traces/split-brain-$(date -u +%Y%m%dT%H%M%SZ)"
  echo "== recording examples/split-brain/scenario.toml into $TRACE (30 to 60 s)"
  rec=0
  "$RECORDER" run examples/split-brain/scenario.toml --output "$TRACE" || rec=$?
  if [ ! -f "$TRACE/manifest.json" ]; then
    echo "demo: the recorder left no trace (exit $rec)" >&2
    exit "$rec"
  fi
  [ "$rec" = 0 ] || echo "demo: the recorder exited $rec; judging what it recorded" >&2
fi

echo "== analyzer check $TRACE ${SPECS[*]} --experiment $EXPERIMENT"
code=0
"$ANALYZER" check "$TRACE" "${SPECS[@]}" --experiment "$EXPERIMENT" || code=$?
echo
echo "Inspect it:       $ANALYZER info $TRACE"
echo "                  $ANALYZER events $TRACE --source jmx --service left-a --limit 20"
echo "A wrong guess:    $ANALYZER check $TRACE ${SPECS[*]} --experiment ClusterSurvivesPartition"
exit "$code"
