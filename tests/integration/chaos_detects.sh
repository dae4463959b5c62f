#!/usr/bin/env bash
# The fault harness's checker must be able to fail (docs/reliability.md). lsc-chaos
# --broken no-fenced runs a deployment that is unsafe on purpose: the qemu agent has no
# lsc-fenced, and each fault freezes it (SIGSTOP) past lease + grace, so its TCG VMs keep
# running in their own qemu processes while lscd, rightly, places their identities on
# another host. The checker's ground truth for that host is its own libvirt connection,
# not anything the agents say: it must report two live instances and exit with 1.
# Needs qemu:///system as qemu_vm.sh does (as root lsc-chaos starts the private libvirtd).
set -euo pipefail
: "${LSC_BIN:?LSC_BIN must point at the bin directory of the build}"
out=$(mktemp)
trap 'rm -f "$out"' EXIT

set +e
"$LSC_BIN/lsc-chaos" --broken no-fenced --seed 3 --faults 2 --max-seconds 240 --servers 4 \
        --fake 1 --test 1 --partition 0 --wire-faults 0 --heartbeat-ms 500 >"$out" 2>&1
rc=$?
set -e
cat "$out"
fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$rc" -eq 1 ] || fail "lsc-chaos --broken no-fenced exited with $rc, not 1 (violations found)"
grep -q "^faults injected: 2 " "$out" || fail "the run did not inject its 2 faults (a set-up failure is no detection)"
grep -q "VIOLATION: two live instances of " "$out" || fail "the checker missed the double life of a frozen host's VMs"
n=$(sed -n 's/^violations: \([0-9]*\)$/\1/p' "$out")
[ "${n:-0}" -ge 1 ] || fail "the summary counts no violation"
# what it must not blame: no identity lost or changed, no host over capacity
if grep -E "VIOLATION: (identity|host .* over)" "$out"; then
        fail "violations of another kind than the double life"
fi
echo "PASS: the checker saw $n violation(s) in a deployment without lsc-fenced"
