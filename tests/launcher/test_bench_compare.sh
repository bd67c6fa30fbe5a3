#!/usr/bin/env bash
# Tests scripts/bench-compare --smoke: a 2-node emulated cluster, 64K bcast and allreduce, for
# hoplite and, where they are built, OpenMPI and Gloo.
# Usage: test_bench_compare.sh REPO_ROOT BUILD_DIR
# Needs root; exits 77 (skip, for meson) where network namespaces can't be made.
# No -e: a failing check must be counted and reported, not end the run.
set -uo pipefail

repo=${1:?usage: $0 REPO_ROOT BUILD_DIR}
build=${2:?usage: $0 REPO_ROOT BUILD_DIR}
prefix=hplbtest # not bench-compare's default, so that a benchmark running by hand is left alone
cluster=$repo/scripts/netns-cluster
# shellcheck source-path=SCRIPTDIR source=netns_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/netns_lib.sh"
out=$tmp

smoke() {
  local t0=$SECONDS
  timeout 240 "$repo/scripts/bench-compare" --smoke --prefix "$prefix" --build-dir "$build" \
    --out "$out/results" >"$out/smoke.log" 2>&1
  local rc=$?
  cat "$out/smoke.log"
  echo "exit $rc after $((SECONDS - t0)) s"
  ((rc == 0))
}

# System/collective pairs that must have a result: hoplite always, MPI and Gloo when built.
expected=("hoplite bcast" "hoplite allreduce")
if command -v mpirun >/dev/null && [[ -x $build/perf/compare/mpi_coll_perf ]]; then
  expected+=("mpi-default bcast" "mpi-default allreduce")
else
  echo "note: OpenMPI or mpi_coll_perf is missing; not expecting mpi-default results"
fi
if [[ -x $build/perf/compare/gloo_coll_perf ]]; then
  expected+=("gloo bcast" "gloo allreduce" "gloo-ring-chunked allreduce" "gloo-hd allreduce")
else
  echo "note: gloo_coll_perf is not built; not expecting Gloo results"
fi

# A row for SYSTEM and COLLECTIVE at N=2 and 64K: status ok, no wrong elements, a positive time
# and ratio.
has_result() {
  local csv=$out/results/results.csv
  [[ -f $csv ]] || { echo "no $csv" && return 1; }
  awk -F, -v s="$1" -v c="$2" '
    { sub(/\r$/, "") }
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $col["system"] == s && $col["collective"] == c && $col["N"] == 2 && $col["size"] == 65536 {
      found = 1; print
      if ($col["status"] == "ok" && $col["wrong"] == "0" && $col["time_us_median"] > 0 &&
          $col["ratio"] > 0) good = 1
    }
    END { if (!found) print "no row for " s " " c; exit !good }' "$csv"
}

markdown_tables() {
  local md=$out/results/results.md
  grep -qx '## bcast, N=2' "$md" && grep -qx '## allreduce, N=2' "$md" && grep -q '^| 64K |' "$md"
}

torn_down() {
  ! ip netns list | grep "^$prefix" && [[ ! -e /run/hoplite-netns/$prefix.state ]]
}

check "bench-compare --smoke runs and exits 0" smoke
for pair in "${expected[@]}"; do
  # shellcheck disable=SC2086 # "system collective"
  check "results.csv: $pair at N=2, 64K: ok, 0 wrong, a ratio" has_result $pair
done
check "results.md has the bcast and allreduce tables" markdown_tables
check "runs.csv and the run logs are written" \
  test -s "$out/results/runs.csv" -a -d "$out/results/logs/N2"
check "the cluster is torn down" torn_down

echo "$passed passed, $failed failed"
((failed == 0))
