#!/usr/bin/env bash
# meson install into a scratch prefix, then build the C example and a C++
# program outside the tree against the installed copy with
# `pkg-config --cflags --libs hoplite`, and run them with the installed
# launcher. Usage: test_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail

build=${1:?usage: $0 BUILD_DIR SOURCE_DIR}
src=${2:?usage: $0 BUILD_DIR SOURCE_DIR}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dest="$tmp/root"

meson install -C "$build" --no-rebuild --destdir "$dest" --quiet >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; exit 1; }

pc=$(find "$dest" -name hoplite.pc | head -1)
[[ -n $pc ]] || { echo "FAIL: no hoplite.pc installed"; exit 1; }
libdir=$(dirname "$(dirname "$pc")")
launcher=$(find "$dest" -path '*/bin/hoplite-run' | head -1)
[[ -x $launcher ]] || { echo "FAIL: no hoplite-run installed"; exit 1; }
for f in libhoplite.so libhoplite.so.0; do
  [[ -e $libdir/$f ]] || { echo "FAIL: $libdir/$f missing"; exit 1; }
done
soname=$(readelf -d "$libdir/libhoplite.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[[ $soname == libhoplite.so.0 ]] || { echo "FAIL: soname is '$soname'"; exit 1; }
echo "PASS: installed $(basename "$(readlink -f "$libdir/libhoplite.so")") (soname $soname), hoplite.pc, hoplite-run"

# The .pc names the prefix it was configured for; the sysroot points it at
# the scratch copy.
export PKG_CONFIG_PATH="$(dirname "$pc")"
export PKG_CONFIG_SYSROOT_DIR="$dest"
flags=$(pkg-config --cflags --libs hoplite)
[[ $flags == *"-I$dest"* ]] || { echo "FAIL: pkg-config gives '$flags'"; exit 1; }

# Built in the scratch directory, away from the source tree's headers.
cp "$src/examples/c/hello_hoplite.c" "$tmp/"
cc -std=c99 -Wall -Werror "$tmp/hello_hoplite.c" $flags -o "$tmp/hello_c"
cat >"$tmp/hello.cc" <<'EOF'
#include <cstdio>

#include "hoplite/collectives.h"
#include "hoplite/node.h"

int main() {
  auto opts = hoplite::NodeOptions::from_environment();
  if (!opts.is_ok()) return std::fprintf(stderr, "%s\n", opts.status().to_string().c_str()), 1;
  auto node = hoplite::Node::create(*opts);
  if (!node.is_ok()) return std::fprintf(stderr, "%s\n", node.status().to_string().c_str()), 1;
  hoplite::Collectives coll(**node);
  double x = (*node)->rank() + 1.0;
  hoplite::Status st = coll.allreduce(std::as_bytes(std::span(&x, 1)), std::as_writable_bytes(std::span(&x, 1)),
                                      hoplite::ReduceOp::kSum, hoplite::DataType::kFloat64);
  if (!st.is_ok()) return std::fprintf(stderr, "%s\n", st.to_string().c_str()), 1;
  std::printf("c++ rank %d: sum %g\n", (*node)->rank(), x);
  return 0;
}
EOF
c++ -std=c++20 -Wall -Werror "$tmp/hello.cc" $flags -o "$tmp/hello_cc"
echo "PASS: a C and a C++ program built with pkg-config --cflags --libs hoplite"

export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
out=$("$launcher" -n 3 --timeout 60 -- "$tmp/hello_c" 2>&1) || { echo "$out"; echo "FAIL: hello_c"; exit 1; }
echo "$out"
grep -q 'rank 2: allreduce gives {3, 3, 6, 9}; rank 0 says "hello, 3 ranks"' <<<"$out" ||
  { echo "FAIL: hello_c printed something else"; exit 1; }
out=$("$launcher" -n 3 --timeout 60 -- "$tmp/hello_cc" 2>&1) || { echo "$out"; echo "FAIL: hello_cc"; exit 1; }
echo "$out"
grep -q 'c++ rank 1: sum 6' <<<"$out" || { echo "FAIL: hello_cc printed something else"; exit 1; }
# They ran against the installed library, not the build tree's.
# (grep reads all of ldd's output: with -q it could exit first, and under
# pipefail ldd's SIGPIPE would fail the check.)
ldd "$tmp/hello_c" | grep "$libdir/libhoplite.so.0" >/dev/null ||
  { ldd "$tmp/hello_c"; echo "FAIL: not the installed copy"; exit 1; }
echo "PASS: both ran under the installed hoplite-run against the installed libhoplite"

# The Python module, when it was built: imported from the installed
# site-packages directory, not the build tree.
ext=$(find "$dest" -name '_hoplite*.so' | head -1)
if [[ -n $ext ]]; then
  site=$(dirname "$(dirname "$ext")")
  out=$(cd "$tmp" && PYTHONPATH="$site" PYTHONDONTWRITEBYTECODE=1 "$launcher" -n 2 --timeout 60 -- /usr/bin/python3 -c '
import numpy as np, hoplite
with hoplite.Node.from_env() as n:
    print("py rank", n.rank, "sum", n.allreduce(np.ones(3) * (n.rank + 1)).tolist(), hoplite.__file__)
' 2>&1) || { echo "$out"; echo "FAIL: the installed Python module"; exit 1; }
  echo "$out"
  grep -q "py rank 1 sum \[3.0, 3.0, 3.0\] $site/hoplite/__init__.py" <<<"$out" ||
    { echo "FAIL: the installed Python module printed something else"; exit 1; }
  echo "PASS: the installed Python module ($site/hoplite)"
fi
