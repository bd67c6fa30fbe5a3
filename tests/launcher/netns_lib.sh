# Shared by the tests that build an emulated cluster (sourced, not run).
# Before sourcing, set: cluster (path to scripts/netns-cluster) and prefix.
# Provides: skip, check, finish, a scratch directory $tmp, and a trap that
# tears the cluster down. Exits 77 (meson's skip) where network namespaces
# can't be made: not root, no iproute2, or 'ip netns add' refused.
passed=0
failed=0

skip() {
  echo "SKIP: $*"
  exit 77
}

((EUID == 0)) || skip "needs root"
if ! command -v ip >/dev/null || ! command -v tc >/dev/null; then skip "needs ip and tc (iproute2)"; fi
netns_probe=${prefix}probe$$
ip netns add "$netns_probe" 2>/dev/null || skip "'ip netns add' is not permitted here"
ip netns del "$netns_probe"

tmp=$(mktemp -d)
netns_cleanup() {
  "$cluster" down --kill --prefix "$prefix" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap netns_cleanup EXIT

# check NAME CMD...: runs CMD, counts it, shows its output when it fails.
check() {
  local name=$1
  shift
  if "$@" >"$tmp/log" 2>&1; then
    passed=$((passed + 1))
    echo "PASS: $name"
  else
    failed=$((failed + 1))
    echo "FAIL: $name"
    sed 's/^/  /' "$tmp/log"
  fi
}
