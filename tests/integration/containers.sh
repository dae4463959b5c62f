#!/usr/bin/env bash
# Containers end to end: lscd (lease 4 s, grace 2 s), two agents with driver container
# (each its own state dir and runtime root), the first on runc, the second on crun
# (runc again when crun is not installed), and an lsc-fenced per host. A server of
# kind container on a busybox-static image:
#  1. start: running, its MAC and IP on eth0 of its network namespace, its hostname
#     inside; the hosts' health lines say what each lacks; the agent killed and
#     restarted within the lease adopts the running container (same process);
#  2. stop (container, layer and namespace gone), start again;
#  3. migrate: the same identity on the other host, nothing left on the first;
#  4. the agent holding it killed (-9): its lsc-fenced destroys the container at the
#     lease deadline, and the identity runs on the other host.
# The agents run in the machine's network namespace; the host ends of the veths
# (lsc + 12 hex digits) are the only interfaces they add there, and no address or
# route is touched (docs/drivers.md). Needs root, runc, busybox-static, iproute2.
set -euo pipefail
. "$LSC_TEST_LIB/pg.sh"
. "$LSC_TEST_LIB/lscd.sh"

LEASE_MS=4000
GRACE_MS=2000
BUDGET_MS=1500
BUSYBOX=/bin/busybox
[ "$(id -u)" -eq 0 ] || { echo "FAIL: containers need root" >&2; exit 1; }
command -v runc >/dev/null || { echo "FAIL: runc is not installed (tests/run installs it)" >&2; exit 1; }
[ -x "$BUSYBOX" ] || { echo "FAIL: busybox-static is not installed (tests/run installs it)" >&2; exit 1; }
command -v ip >/dev/null || { echo "FAIL: iproute2 is not installed" >&2; exit 1; }
lsc_test_setup --agents
LSCD_ARGS+=(--lease-ttl-ms "$LEASE_MS" --grace-ms "$GRACE_MS")
lscd_restart

# --- bad settings: refused at start, naming the key and the value
bad_conf() {
	printf '[agent]\n%s\n' "$1" >"$LSC_SCRATCH/bad.conf"
	expect_exit 2 "$LSC_BIN/lsc-agent" --name lscct-bad --state-dir "$LSC_SCRATCH/bad" \
		--manager tcp://127.0.0.1:1 --manager-key "$LSC_SCRATCH/lscd.pub" --config "$LSC_SCRATCH/bad.conf"
	expect_contains "$ERR" "$2" "error for '$1'"
}
bad_conf "runtime = relative/runc" 'invalid runtime "relative/runc"'
bad_conf "runtime_root = rel" 'invalid runtime_root "rel"'
bad_conf "$(printf 'driver = libvirt\nruntime = crun')" "runtime and runtime_root are for driver container"
bad_conf "driver = containr" 'invalid driver "containr": use libvirt, container, fake or metal'
# the runtime is run when the driver opens: the agent keeps trying, unhealthy
printf '[agent]\ndriver = container\nruntime = /nonexistent/crun\n' >"$LSC_SCRATCH/bad.conf"
agent_start lscct-bad --config "$LSC_SCRATCH/bad.conf"
wait_until 10 grep -q 'cannot open driver container: invalid runtime "/nonexistent/crun": it does not run' \
	"$LSC_SCRATCH/agent-lscct-bad.log"
agent_stop lscct-bad

# host names unique to this run: they name the containers' network namespaces
SUFFIX=$(printf '%s' "${LSC_SCRATCH##*.}" | tr -dc 'a-z0-9' | tail -c 6)
H1=lscct-$SUFFIX-1
H2=lscct-$SUFFIX-2
declare -A FENCED_PIDS=()
ct_cleanup() {
	local rc=$? h
	set +e
	for h in "${!AGENT_PIDS[@]}"; do agent_stop "$h"; done
	# what a failed run left: destroyed by lsc-fenced's own driver code path
	for h in "$H1" "$H2"; do
		[ -d "$LSC_SCRATCH/agents/$h/containers" ] || continue
		for b in "$LSC_SCRATCH/agents/$h/containers"/*.*; do
			[ -d "$b" ] || continue
			u=${b##*/}
			runc --root "$LSC_SCRATCH/agents/$h/runtime" delete --force "lsc-${u%%.*}" >/dev/null 2>&1
			umount -l "$b/rootfs" 2>/dev/null
			ip netns del "lscc-$h-${u%%.*}" 2>/dev/null
		done
	done
	for h in "${!FENCED_PIDS[@]}"; do
		kill -TERM "${FENCED_PIDS[$h]}" 2>/dev/null
		wait "${FENCED_PIDS[$h]}" 2>/dev/null
	done
	if grep -lE 'AddressSanitizer|LeakSanitizer|runtime error:' "$LSC_SCRATCH"/fenced-*.log 2>/dev/null; then
		echo "FAIL: sanitizer report in an lsc-fenced log" >&2
		[ "$rc" -eq 0 ] && rc=1
	fi
	if [ "$rc" -ne 0 ]; then
		for h in "$LSC_SCRATCH"/fenced-*.log; do
			[ -f "$h" ] || continue
			echo "--- last 15 lines of ${h##*/}:" >&2
			tail -n 15 "$h" >&2
		done
	fi
	return "$rc"
}
trap 'ct_cleanup; lsc_test_cleanup' EXIT

# --- the image: a busybox root filesystem whose init ends on SIGTERM
IMG=$LSC_SCRATCH/images
mkdir -p "$IMG/bb/bin" "$IMG/bb/etc" "$IMG/bb/proc" "$IMG/bb/sys" "$IMG/bb/dev" "$IMG/bb/tmp"
cp "$BUSYBOX" "$IMG/bb/bin/busybox"
for c in sh sleep hostname ip cat; do ln -sf busybox "$IMG/bb/bin/$c"; done
printf '%s\n' /bin/sh -c 'trap "exit 0" TERM; while :; do sleep 0.2; done' >"$IMG/bb.cmd"

declare -A RUNTIME=([$H1]=runc [$H2]=runc)
command -v crun >/dev/null && RUNTIME[$H2]=crun
for h in "$H1" "$H2"; do
	sock=$LSC_SCRATCH/fenced-$h.sock
	"$LSC_BIN/lsc-fenced" --socket "$sock" --driver container --host "$h" --runtime "${RUNTIME[$h]}" \
		--state-dir "$LSC_SCRATCH/agents/$h" --log-level debug </dev/null >>"$LSC_SCRATCH/fenced-$h.log" 2>&1 &
	FENCED_PIDS[$h]=$!
	wait_until 10 test -S "$sock"
	cat >"$LSC_SCRATCH/$h.conf" <<CONF
[agent]
driver = container
runtime = ${RUNTIME[$h]}
image_dir = $IMG
vcpus = 4
memory_mib = 2048
disk_gib = 20
fenced_socket = $sock
destroy_budget_ms = $BUDGET_MS
CONF
	agent_start "$h" --config "$LSC_SCRATCH/$h.conf"
done
hosts_up() { [ "$(lsc --json host list | jq '[.[] | select(.liveness == "up" and .kind == "container")] | length')" -eq 2 ]; }
wait_until 30 hosts_up
# CAP_SYS_RESOURCE (bit 24) missing here, crun on hybrid cgroups: the health lines say so
if [ $((0x$(grep CapEff /proc/self/status | cut -f2) >> 24 & 1)) -eq 0 ]; then
	expect_contains "$(lsc --json host show "$H1" | jq -r '.health // ""')" "no CAP_SYS_RESOURCE" "health of $H1"
fi
if [ "${RUNTIME[$H2]}" = crun ] && [ "$(stat -f -c %T /sys/fs/cgroup)" != cgroup2fs ] &&
	[ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
	expect_contains "$(lsc --json host show "$H2" | jq -r '.health // ""')" "crun on hybrid cgroups" "health of $H2"
	grep -q "crun on hybrid cgroups" "$LSC_SCRATCH/agent-$H2.log" || fail "the agent of $H2 did not log its note"
fi
grep -q "armed by the first pet" "$LSC_SCRATCH/fenced-$H1.log" || wait_until 10 grep -q "armed by the first pet" "$LSC_SCRATCH/fenced-$H1.log"

lsc pool create ctnet --cidr 10.61.0.0/24 --gateway 10.61.0.1 >/dev/null
expect_exit 0 lsc server create ct1 --kind container --image bb --vcpus 1 --memory 64 --disk 0 --hostname ct1.example.org
expect_exit 0 lsc --json server show ct1
UUID=$(jq -r .uuid <<<"$OUT")
MAC=$(jq -r '.macs[0]' <<<"$OUT")
IP=$(jq -r '.ips[0]' <<<"$OUT")
IDENT=$(jq -c '[.uuid, .macs, .ips, .hostname]' <<<"$OUT")

# rt HOST ARGS...: HOST's runtime on its root (crun on a hybrid host only in a
# mount namespace that sees cgroup v2 alone, as the driver runs it)
rt() {
	local h=$1
	shift
	if [ "${RUNTIME[$h]}" = crun ]; then
		unshare -m --propagation slave sh -c 'umount -l /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup;
			exec crun "$@"' crun --root "$LSC_SCRATCH/agents/$h/runtime" "$@"
	else
		runc --root "$LSC_SCRATCH/agents/$h/runtime" "$@"
	fi
}
# check_runs HOST: the container of ct1 runs on HOST with its MAC, IP and hostname
check_runs() {
	local h=$1 ns=lscc-$1-$UUID out
	out=$(ip -n "$ns" -br link show eth0) || fail "no eth0 in $ns"
	expect_contains "$out" "$MAC" "eth0 of $ns"
	out=$(ip -n "$ns" -4 -o addr show dev eth0) || fail "no address in $ns"
	expect_contains "$out" "$IP/32" "addresses of $ns"
	out=$(rt "$h" exec "lsc-$UUID" hostname) || fail "${RUNTIME[$h]} exec on $h"
	expect_eq "$out" ct1.example.org "hostname inside ct1"
	out=$(rt "$h" exec "lsc-$UUID" cat /etc/lsc/identity) || fail "no /etc/lsc/identity"
	expect_contains "$out" "uuid=$UUID" "identity file"
}
# check_gone HOST: nothing of ct1 on HOST
check_gone() {
	local h=$1
	[ ! -e "/run/netns/lscc-$h-$UUID" ] || fail "namespace of ct1 still on $h"
	if rt "$h" state "lsc-$UUID" >/dev/null 2>&1; then
		fail "container of ct1 still on $h"
	fi
	[ -z "$(ls "$LSC_SCRATCH/agents/$h/containers" 2>/dev/null | grep "^$UUID")" ] || fail "bundle of ct1 still on $h"
}
host_of() { lsc --json server show ct1 | jq -r .host; }
gen_of() { lsc --json server show ct1 | jq -r .generation; }
other() { if [ "$1" = "$H1" ]; then echo "$H2"; else echo "$H1"; fi; }

# --- 1. start
t0=$(date +%s%3N)
expect_exit 0 lsc server start ct1 --wait --wait-timeout 30
echo "start -> running: $(($(date +%s%3N) - t0)) ms"
HOST=$(host_of)
check_runs "$HOST"
pid() { rt "$1" state "lsc-$UUID" | jq -r .pid; }
pid0=$(pid "$HOST")
# the agent crashes and comes back before its lease ends: it adopts what runs
kill -KILL "${AGENT_PIDS[$HOST]}"
wait "${AGENT_PIDS[$HOST]}" 2>/dev/null || true
agent_start "$HOST" --config "$LSC_SCRATCH/$HOST.conf"
wait_until 10 grep -q "driver container open: .* 1 instances" "$LSC_SCRATCH/agent-$HOST.log"
sleep 1
expect_eq "$(lsc --json server show ct1 | jq -r '.state + " " + .host + " " + (.generation|tostring)')" \
	"running $HOST 1" "ct1 after its agent restarted"
expect_eq "$(pid "$HOST")" "$pid0" "pid of ct1's init after its agent restarted"

# --- 2. stop, start again
expect_exit 0 lsc server stop ct1 --wait --wait-timeout 30
check_gone "$HOST"
expect_exit 0 lsc server start ct1 --wait --wait-timeout 30
HOST=$(host_of)
check_runs "$HOST"
expect_eq "$(gen_of)" 2 "generation after the second start"

# --- 3. migrate
FROM=$HOST
t0=$(date +%s%3N)
expect_exit 0 lsc server migrate ct1 --wait --wait-timeout 30
echo "migrate -> running elsewhere: $(($(date +%s%3N) - t0)) ms"
HOST=$(host_of)
expect_eq "$HOST" "$(other "$FROM")" "host after migrate"
check_runs "$HOST"
check_gone "$FROM"
expect_eq "$(lsc --json server show ct1 | jq -c '[.uuid, .macs, .ips, .hostname]')" "$IDENT" "identity after migrate"
expect_eq "$(gen_of)" 3 "generation after migrate"

# --- 4. the agent holding it dies: lsc-fenced destroys at the deadline, the
# identity comes back on the other host
LOST=$HOST
kill -KILL "${AGENT_PIDS[$LOST]}"
wait "${AGENT_PIDS[$LOST]}" 2>/dev/null || true
unset "AGENT_PIDS[$LOST]"
t0=$(date +%s%3N)
gone() { [ ! -e "/run/netns/lscc-$LOST-$UUID" ] && ! rt "$LOST" state "lsc-$UUID"; }
wait_until 20 gone
gone_ms=$(($(date +%s%3N) - t0))
echo "agent killed -> container destroyed by lsc-fenced: $gone_ms ms (lease $LEASE_MS ms)"
grep -q "destroyed domain ct1 ($UUID) generation 3" "$LSC_SCRATCH/fenced-$LOST.log" ||
	fail "lsc-fenced of $LOST did not destroy ct1"
[ "$gone_ms" -le $((LEASE_MS + 2000)) ] || fail "lsc-fenced destroyed ct1 $gone_ms ms after the kill"
check_gone "$LOST"
back() { [ "$(lsc --json server show ct1 | jq -r '.state + " " + .host')" = "running $(other "$LOST")" ]; }
wait_until 40 back
echo "agent killed -> running on the other host: $(($(date +%s%3N) - t0)) ms (lease + grace $((LEASE_MS + GRACE_MS)) ms)"
HOST=$(host_of)
check_runs "$HOST"
expect_eq "$(gen_of)" 4 "generation after the host loss"
expect_eq "$(lsc --json server show ct1 | jq -c '[.uuid, .macs, .ips, .hostname]')" "$IDENT" "identity after the host loss"

# --- done: stop it and look that nothing is left
expect_exit 0 lsc server stop ct1 --wait --wait-timeout 30
check_gone "$HOST"
echo ok
