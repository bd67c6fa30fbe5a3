#!/usr/bin/env bash
# Black-box tests for hoplite-run. Usage: test_launcher.sh PATH/TO/hoplite-run
# The rank commands are single-quoted on purpose: the ranks, not this script, expand them.
# shellcheck disable=SC2016
# No -e: a failing check must be counted and reported, not end the run.
set -uo pipefail

launcher=${1:?usage: $0 PATH/TO/hoplite-run}
passed=0
failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

pass() {
  passed=$((passed + 1))
  echo "PASS: $1"
}

fail() {
  failed=$((failed + 1))
  echo "FAIL: $1"
  echo "  exit status: $rc"
  # awk also prints a last line that lacks its newline.
  awk '{ print "  stdout: " $0 }' "$tmp/out"
  awk '{ print "  stderr: " $0 }' "$tmp/err"
}

# Runs the launcher and sets rc, out, err and elapsed (seconds). The outer timeout keeps a hung
# launcher from hanging the whole suite.
launch() {
  local start=$EPOCHREALTIME
  timeout 30 "$launcher" "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  elapsed=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  out=$(<"$tmp/out")
  err=$(<"$tmp/err")
}

strip_prefix() { sed 's/^\[rank [0-9]*\] //'; }

faster_than() { awk -v e="$elapsed" -v limit="$1" 'BEGIN { exit !(e < limit) }'; }

# (a) Every rank runs with its own RANK and output is prefixed per rank.
launch -n 3 -- sh -c 'echo hi $RANK $WORLD_SIZE'
expected=$'[rank 0] hi 0 3\n[rank 1] hi 1 3\n[rank 2] hi 2 3'
if [[ $rc == 0 && "$(sort <<<"$out")" == "$expected" ]]; then
  pass "three ranks print prefixed lines"
else
  fail "three ranks print prefixed lines"
fi

# stderr stays on stderr, and a last line without a newline is not lost.
launch -n 1 -- sh -c 'printf partial; echo oops >&2'
if [[ $rc == 0 && "$out" == "[rank 0] partial" && "$err" == "[rank 0] oops" ]]; then
  pass "stderr forwarded separately, partial line flushed"
else
  fail "stderr forwarded separately, partial line flushed"
fi

# (b) A failing rank fails the job and is named.
launch -n 3 -- sh -c 'if [ "$RANK" = 1 ]; then exit 3; fi'
if [[ $rc != 0 && "$err" == *"rank 1 exited with status 3"* ]]; then
  pass "failing rank reported"
else
  fail "failing rank reported"
fi

# By default the surviving ranks are terminated rather than left to hang the job.
launch -n 3 -- sh -c 'if [ "$RANK" = 1 ]; then exit 3; fi; sleep 30'
if [[ $rc == 1 && "$err" == *"rank 1 exited with status 3"* ]] && faster_than 5; then
  pass "failure terminates other ranks"
else
  fail "failure terminates other ranks (took ${elapsed}s)"
fi

# --keep-going lets the others finish, as fault-tolerance tests need.
launch -n 3 --keep-going -- sh -c 'if [ "$RANK" = 1 ]; then kill -9 $$; fi; sleep 1; echo done'
if [[ $rc == 1 && "$err" == *"rank 1 killed by signal 9 (SIGKILL)"* &&
  $(grep -c 'done$' <<<"$out") == 2 ]]; then
  pass "--keep-going lets other ranks finish"
else
  fail "--keep-going lets other ranks finish"
fi

# (c) The timeout stops a hung job with GNU timeout's status.
launch -n 2 --timeout 1 -- sleep 30
if [[ $rc == 124 ]] && faster_than 5; then
  pass "--timeout exits 124 promptly"
else
  fail "--timeout exits 124 promptly (took ${elapsed}s)"
fi

# (d) Rendezvous settings are set and agree across ranks; the token comes from the user's token
# file, which is created (0600) when missing (docs/security.md). HOME is a scratch directory, so
# the user's own token is never read or written here...
unset HOPLITE_TOKEN
real_home=$HOME
export HOME=$(mktemp -d)
launch -n 3 -- sh -c 'echo "$MASTER_ADDR $MASTER_PORT $HOPLITE_TOKEN"'
values=$(strip_prefix <<<"$out" | sort -u)
file_token=$(cat "$HOME/.hoplite/token" 2>/dev/null || true)
file_mode=$(stat -c %a "$HOME/.hoplite/token" 2>/dev/null || true)
if [[ $rc == 0 && $(wc -l <<<"$out") == 3 && $(wc -l <<<"$values") == 1 &&
  "$values" =~ ^127\.0\.0\.1\ [1-9][0-9]*\ [0-9a-f]{64}$ && "$values" == *" $file_token" &&
  $file_mode == 600 ]]; then
  pass "MASTER_PORT and HOPLITE_TOKEN identical across ranks, token file created 0600"
else
  fail "MASTER_PORT and HOPLITE_TOKEN identical across ranks, token file created 0600 (mode '$file_mode')"
fi
# ...a second job finds the same file; one others can read is refused, not replaced.
launch -n 1 -- sh -c 'echo "$HOPLITE_TOKEN"'
if [[ $rc == 0 && $(strip_prefix <<<"$out") == "$file_token" ]]; then
  pass "a second job reuses the token file"
else
  fail "a second job reuses the token file"
fi
chmod 644 "$HOME/.hoplite/token"
launch -n 1 -- true
if [[ $rc != 0 && $err == *"chmod 600"* ]]; then
  pass "a token file others can read is refused"
else
  fail "a token file others can read is refused (rc $rc)"
fi
rm -rf "$HOME"
export HOME=$real_home

# ...and passed through when the caller set it.
HOPLITE_TOKEN=0123abcd launch -n 2 -- sh -c 'echo "$HOPLITE_TOKEN"'
if [[ $rc == 0 && "$(strip_prefix <<<"$out" | sort -u)" == "0123abcd" ]]; then
  pass "inherited HOPLITE_TOKEN passed through"
else
  fail "inherited HOPLITE_TOKEN passed through"
fi

# (e) A missing program is a clear usage error, not N rank failures.
launch -n 2 -- /nonexistent/hoplite-test-program
if [[ $rc != 0 && -z "$out" && "$err" == *"/nonexistent/hoplite-test-program"* ]]; then
  pass "missing program reported"
else
  fail "missing program reported"
fi

launch -n 2 -- hoplite-test-program-not-on-path
if [[ $rc != 0 && "$err" == *"hoplite-test-program-not-on-path"*"not found"* ]]; then
  pass "program not on PATH reported"
else
  fail "program not on PATH reported"
fi

launch -n 0 -- true
if [[ $rc == 2 && -n "$err" ]]; then pass "-n 0 rejected"; else fail "-n 0 rejected"; fi

# The emulated-cluster options need --netns (which is tested as root in test_netns.sh).
launch -n 2 --rate 1gbit -- true
if [[ $rc == 2 && "$err" == *"--rate needs --netns"* ]]; then
  pass "--rate without --netns rejected"
else
  fail "--rate without --netns rejected"
fi

launch -n 2 --netns --netns-prefix hpl1 -- true
if [[ $rc == 2 && "$err" == *"bad --netns-prefix"* ]]; then
  pass "--netns-prefix ending in a digit rejected"
else
  fail "--netns-prefix ending in a digit rejected"
fi

echo "$passed passed, $failed failed"
((failed == 0))
