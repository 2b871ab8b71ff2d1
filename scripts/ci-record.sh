#!/usr/bin/env bash
# The one CI step behind action.yml and ci/gitlab-ci.yml (docs/ci.md): builds (or takes) the
# recorder and analyzer binaries, records a scenario, judges the trace offline with
# `analyzer check`, leaves the trace, the JUnit XML and the HTML report in an artifacts directory,
# prints a one-line summary and exits with the offline verdict's code (docs/exit-codes.md):
#   0 accept (and inconclusive unless FAIL_ON_INCONCLUSIVE=1), 1 fail, 2 inconclusive with
#   FAIL_ON_INCONCLUSIVE=1, the recorder's or analyzer's own code (3, 4, 5, 64, 130) on an error;
#   6 when a halt condition halted the run (judged and kept all the same).
#
# usage: scripts/ci-record.sh SCENARIO --spec FILE [--spec FILE]... [--experiment E]... [--monitor M]...
#          [--out DIR] [--project P] [--seed N] [--fail-on-inconclusive]
# environment: RECORDER, ANALYZER (binaries to use; default: built here with cargo, profile
#   CI_PROFILE, default release), OUT (artifacts directory, default ci-artifacts),
#   FAIL_ON_INCONCLUSIVE=1, SPECS / EXPERIMENTS / MONITORS (whitespace-separated lists, added to
#   the flags), PROJECT, SEED.
set -uo pipefail

usage() {
  sed -n '9,10p' "$0" | sed 's/^# //' >&2
  exit 64
}
die() {
  echo "ci-record: error: $1" >&2
  exit "${2:-64}"
}

root="$(cd "$(dirname "$0")/.." && pwd)"
scenario=""
out="${OUT:-ci-artifacts}"
project="${PROJECT:-}"
seed="${SEED:-}"
fail_inconclusive="${FAIL_ON_INCONCLUSIVE:-0}"
specs=()
experiments=()
monitors=()
for s in ${SPECS:-}; do specs+=("$s"); done
for e in ${EXPERIMENTS:-}; do experiments+=("$e"); done
for m in ${MONITORS:-}; do monitors+=("$m"); done

while [ $# -gt 0 ]; do
  case "$1" in
    --spec) [ $# -ge 2 ] || usage; specs+=("$2"); shift 2 ;;
    --experiment) [ $# -ge 2 ] || usage; experiments+=("$2"); shift 2 ;;
    --monitor) [ $# -ge 2 ] || usage; monitors+=("$2"); shift 2 ;;
    --out) [ $# -ge 2 ] || usage; out="$2"; shift 2 ;;
    --project) [ $# -ge 2 ] || usage; project="$2"; shift 2 ;;
    --seed) [ $# -ge 2 ] || usage; seed="$2"; shift 2 ;;
    --fail-on-inconclusive) fail_inconclusive=1; shift ;;
    -h | --help) usage ;;
    -*) die "unknown flag \`$1\`" ;;
    *) [ -z "$scenario" ] || die "a second scenario \`$1\` (one per run)"; scenario="$1"; shift ;;
  esac
done
[ -n "$scenario" ] || die "no scenario given (usage: ci-record.sh SCENARIO --spec FILE...)"
[ -f "$scenario" ] || die "$scenario: no such scenario file" 3
[ ${#specs[@]} -gt 0 ] || die "no spec given (--spec FILE or SPECS)"
case "$fail_inconclusive" in 1 | true | yes) fail_inconclusive=1 ;; *) fail_inconclusive=0 ;; esac

# The binaries: given, or built here.
recorder="${RECORDER:-}"
analyzer="${ANALYZER:-}"
if [ -z "$recorder" ] || [ -z "$analyzer" ]; then
  profile="${CI_PROFILE:-release}"
  flag=(--profile "$profile")
  echo "ci-record: building recorder and analyzer (cargo, profile $profile)" >&2
  (cd "$root" && cargo build -q "${flag[@]}" -p recorder -p analyzer) \
    || die "cargo build of recorder and analyzer failed" 5
  dir="${CARGO_TARGET_DIR:-$root/target}"
  case "$dir" in /*) ;; *) dir="$root/$dir" ;; esac
  [ "$profile" = dev ] && sub=debug || sub="$profile"
  recorder="${recorder:-$dir/$sub/recorder}"
  analyzer="${analyzer:-$dir/$sub/analyzer}"
fi
[ -x "$recorder" ] || die "$recorder: recorder binary missing or not executable" 5
[ -x "$analyzer" ] || die "$analyzer: analyzer binary missing or not executable" 5

mkdir -p "$out" || die "$out: cannot create the artifacts directory" 5
out="$(cd "$out" && pwd)"
trace="$out/trace"
junit="$out/junit.xml"
html="$out/report.html"
[ -e "$trace" ] && die "$trace exists: use a fresh artifacts directory (--out)" 5

# Record. The recorder's own code (its online verdict) is informative; 3, 4, 5, 64, 130 mean
# nothing usable was recorded and fail the job as an error; 6 (a halt condition halted the run)
# fails the job with 6 after the trace is judged.
rec_args=(run "$scenario" -o "$trace" --quiet)
[ -n "$project" ] && rec_args+=(-p "$project")
[ -n "$seed" ] && rec_args+=(--seed "$seed")
"$recorder" "${rec_args[@]}" | tee "$out/recorder.txt"
rec=${PIPESTATUS[0]}
case "$rec" in
  0 | 1 | 2 | 6) ;;
  *)
    echo "ci-record: error: recorder run exited $rec (docs/exit-codes.md); trace: $trace" >&2
    echo "ci-record: error (recorder exit $rec): $scenario not recorded; artifacts in $out"
    exit "$rec"
    ;;
esac

# Judge offline: the verdict of the job.
chk_args=(check "$trace" --junit "$junit" --html "$html")
for s in "${specs[@]}"; do chk_args+=(--spec "$s"); done
for e in "${experiments[@]}"; do chk_args+=(--experiment "$e"); done
for m in "${monitors[@]}"; do chk_args+=(--monitor "$m"); done
"$analyzer" "${chk_args[@]}" | tee "$out/check.txt"
chk=${PIPESTATUS[0]}

case "$chk" in
  0) verdict=accept; code=0 ;;
  1) verdict=fail; code=1 ;;
  2) verdict=inconclusive; [ "$fail_inconclusive" = 1 ] && code=2 || code=0 ;;
  *) verdict=error; code=$chk ;;
esac
# a halted run fails the job whatever the offline verdict (the scenario's own safety check fired)
if [ "$rec" = 6 ] && [ "$verdict" != error ]; then verdict=halted; code=6; fi
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  { echo "verdict=$verdict"; echo "artifacts=$out"; } >>"$GITHUB_OUTPUT"
fi
if [ "$verdict" = error ]; then
  echo "ci-record: error (analyzer check exit $chk): $scenario recorded but not judged; artifacts in $out"
else
  echo "ci-record: $verdict: $scenario (recorder exit $rec, analyzer check exit $chk, job exit $code); artifacts in $out"
fi
exit "$code"
