#!/usr/bin/env bash
# A fuzzing campaign outside CI (docs/FUZZING.md): every libFuzzer target in fuzz/ runs for a
# number of executions, as many at a time as there are cores, each from its committed seed
# corpus plus the corpus earlier campaigns left in the work directory. Nothing is written into
# the repository: the build, the corpora, crash artifacts and logs all live in the work
# directory. At the end a table gives, per target: executions, crashes (crash, leak, timeout
# and out-of-memory artifacts of this run), libFuzzer's final coverage (cov: edges reached, out
# of the instrumented edges; ft: features) and the corpus size.
#
#   fuzz/campaign.sh [-n RUNS] [-j JOBS] [-w WORKDIR] [-b BUILD_DIR] [TARGET...]
#     -n RUNS       executions per target (default 10000000, libFuzzer's -runs=)
#     -j JOBS       targets at a time (default: the number of cores)
#     -w WORKDIR    default /var/tmp/kite-fuzz-campaign (corpus/, artifacts/, logs/, build/)
#     -b BUILD_DIR  an existing fuzz build to use instead of building one in WORKDIR/build
#     TARGET...     default: every target fuzz/CMakeLists.txt lists in KITE_FUZZERS
# Exit status: 0 when no target crashed, 1 otherwise.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

runs=10000000
jobs=$(nproc)
work=/var/tmp/kite-fuzz-campaign
build=
while getopts "n:j:w:b:h" opt; do
  case $opt in
    n) runs=$OPTARG ;;
    j) jobs=$OPTARG ;;
    w) work=$OPTARG ;;
    b) build=$OPTARG ;;
    *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

work=$(mkdir -p "$work" && cd "$work" && pwd)
case $work/ in
  "$repo"/*) echo "campaign.sh: the work directory must be outside the repository" >&2; exit 2 ;;
esac
targets=("$@")
if ((${#targets[@]} == 0)); then
  read -r -a targets <<<"$(sed -n '/^set(KITE_FUZZERS/,/)/p' "$repo/fuzz/CMakeLists.txt" |
    sed 's/^set(KITE_FUZZERS//' | tr -d ')' | tr '\n' ' ')"
fi

if [[ -z $build ]]; then
  build=$work/build
  echo "== building ${#targets[@]} fuzzers in $build"
  CC=clang CXX=clang++ cmake -S "$repo" -B "$build" -G Ninja -DKITE_FUZZ=ON \
    -DKITE_BUILD_TESTS=OFF -DCMAKE_CXX_COMPILER_LAUNCHER="$(command -v ccache || true)" >/dev/null
  ninja -C "$build" "${targets[@]}"
fi

run_one() {  # run_one TARGET: one libFuzzer process, its output in logs/TARGET.log
  local t=$1
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t" "$work/logs"
  local seeds=()
  [[ -d $repo/fuzz/corpus/$t ]] && seeds=("$repo/fuzz/corpus/$t")
  local start=$SECONDS rc=0
  (cd "$work" && "$build/fuzz/$t" -runs="$runs" -rss_limit_mb=2048 -timeout=60 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/$t/" \
    "$work/corpus/$t" "${seeds[@]}") >"$work/logs/$t.log" 2>&1 || rc=$?
  echo "rc=$rc seconds=$((SECONDS - start))" >>"$work/logs/$t.log"
}

echo "== $runs executions per target, $jobs at a time; work directory $work"
# Each target in its own process group, so that an interrupted campaign stops its fuzzers too.
set -m
trap 'for job in $(jobs -p); do kill -- "-$job" 2>/dev/null; done; exit 130' INT TERM
date +%s >"$work/.started"
running=0
for t in "${targets[@]}"; do
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
  echo "   started $t"
  run_one "$t" &
  running=$((running + 1))
done
wait

status=0
printf '\n%-24s %12s %8s %14s %8s %8s %9s  %s\n' target executions crashes cov/edges ft corpus \
  seconds result
for t in "${targets[@]}"; do
  log=$work/logs/$t.log
  execs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$' || true)
  last=$(grep -E '(DONE|NEW|REDUCE|pulse|INITED|RELOAD).* cov: ' "$log" | tail -1 || true)
  cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
  ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
  edges=$(grep -oE '\([0-9]+ inline 8-bit counters\)' "$log" | head -1 |
    sed -E 's/\(([0-9]+) .*/\1/' || true)
  crashes=$(find "$work/artifacts/$t" -type f -newer "$work/.started" \
    \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  slow=$(find "$work/artifacts/$t" -type f -newer "$work/.started" -name 'slow-unit-*' | wc -l)
  corpus=$(find "$work/corpus/$t" -type f | wc -l)
  secs=$(grep -oE 'seconds=[0-9]+' "$log" | tail -1 | cut -d= -f2)
  rc=$(grep -oE '^rc=[0-9]+' "$log" | tail -1 | cut -d= -f2)
  result=ok
  ((slow == 0)) || result="ok ($slow slow-unit inputs kept)"
  if [[ $rc != 0 || $crashes != 0 ]]; then
    result="FAILED (exit $rc; see $log)"
    status=1
  fi
  printf '%-24s %12s %8s %14s %8s %8s %9s  %s\n' "$t" "${execs:-?}" "$crashes" \
    "${cov:-?}/${edges:-?}" "${ft:-?}" "$corpus" "${secs:-?}" "$result"
done
exit $status
