#!/usr/bin/env bash
# Fencing on real VMs: lscd with a short lease (5 s, grace 3 s), lsc-fenced and one agent
# on qemu:///system, and a domain defined by hand that lsc did not create.
#  1. The agent frozen (SIGSTOP): its VM keeps running in its own qemu, and lsc-fenced
#     destroys it shortly after the lease deadline, before lscd may re-bind it; after
#     SIGCONT the agent lives on, and the identity runs again (generation 2).
#  2. lscd frozen, the agent healthy: the agent itself destroys its instance at
#     deadline - destroy_budget (2.5 s here), before lsc-fenced's deadline, which then
#     finds nothing to do; lscd back, the lease is renewed and lsc-fenced re-armed.
# The hand-made domain survives both. Ground truth is virsh's own connection.
# Why not a 3 s lease with 2 s of grace: a libvirt destroy takes 1.4-1.7 s on the CI
# machines (qemu exits in ms, but their PID 1 reaps it late and libvirt polls until it
# is reaped), and the rules want grace > destroy time and destroy_budget > destroy time.
# Needs a libvirtd on qemu:///system, as qemu_vm.sh does (see its header).
set -euo pipefail
. "$LSC_TEST_LIB/pg.sh"
. "$LSC_TEST_LIB/lscd.sh"
. "$LSC_TEST_LIB/libvirtd.sh"

URI=qemu:///system
TTL_MS=5000
GRACE_MS=3000
BUDGET_MS=2500
vsh() { timeout 60 virsh -q -c "$URI" "$@" </dev/null; }
now_ms() { date +%s%3N; }
# log_ms FILE PATTERN: the wall-clock ms of the first log line matching PATTERN
log_ms() {
	local stamp
	stamp=$(grep -m1 -E "$2" "$1" | cut -d' ' -f1) || return 1
	[ -n "$stamp" ] && date -d "$stamp" +%s%3N
}

t_begin=$(now_ms)
command -v virsh >/dev/null || { echo "FAIL: virsh is not installed (libvirt-clients)" >&2; exit 1; }
command -v jq >/dev/null || { echo "FAIL: jq is not installed" >&2; exit 1; }
lsc_test_setup --agents
LSCD_ARGS+=(--lease-ttl-ms "$TTL_MS" --grace-ms "$GRACE_MS")
lscd_restart

FENCED_PID=
SUFFIX=$(printf '%s' "${LSC_SCRATCH##*.}" | tr '[:upper:]' '[:lower:]')
NAME=lsc-fence-$SUFFIX
FOREIGN=not-lsc-$SUFFIX
DOMAINS_MAYBE=no
fence_cleanup() {
	local rc=$?
	set +e
	# frozen processes of ours cannot stop: thaw them first
	[ -n "${AGENT_PIDS[vmhost]:-}" ] && kill -CONT "${AGENT_PIDS[vmhost]}" 2>/dev/null
	[ -n "$LSCD_PID" ] && kill -CONT "$LSCD_PID" 2>/dev/null
	local a
	for a in "${!AGENT_PIDS[@]}"; do agent_stop "$a"; done
	if [ -n "$FENCED_PID" ]; then
		kill -TERM "$FENCED_PID" 2>/dev/null
		wait "$FENCED_PID" 2>/dev/null
	fi
	if [ "$DOMAINS_MAYBE" = yes ]; then
		local d
		for d in "$NAME" "$FOREIGN"; do
			vsh dominfo "$d" >/dev/null 2>&1 || continue
			vsh destroy "$d" >/dev/null 2>&1
			vsh undefine "$d" >/dev/null 2>&1
		done
	fi
	if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$LSC_SCRATCH/fenced.log" 2>/dev/null; then
		echo "FAIL: sanitizer report in lsc-fenced's log" >&2
		[ "$rc" -eq 0 ] && rc=1
	fi
	if [ "$rc" -ne 0 ] && [ -f "$LSC_SCRATCH/fenced.log" ]; then
		echo "--- last 25 lines of fenced.log:" >&2
		tail -n 25 "$LSC_SCRATCH/fenced.log" >&2
	fi
	libvirtd_stop_started
	return "$rc"
}
trap 'fence_cleanup; lsc_test_cleanup' EXIT

if ! libvirtd_answers; then
	[ "$(id -u)" -eq 0 ] || fail "$URI does not answer: run ./tests/run as root, or start libvirtd"
	libvirtd_ensure || fail "cannot start libvirtd for $URI"
fi
for d in "$NAME" "$FOREIGN"; do
	vsh dominfo "$d" >/dev/null 2>&1 && fail "a domain $d already exists on $URI"
done

# --- a domain lsc did not create: defined by hand and running, never to be touched
DOMAINS_MAYBE=yes
cat >"$LSC_SCRATCH/foreign.xml" <<XML
<domain type='qemu'>
  <name>$FOREIGN</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices><serial type='pty'/><console type='pty'/></devices>
</domain>
XML
vsh define "$LSC_SCRATCH/foreign.xml" >/dev/null || fail "cannot define $FOREIGN"
vsh start "$FOREIGN" >/dev/null || fail "cannot start $FOREIGN"
foreign_runs() { [ "$(vsh domstate "$FOREIGN")" = running ]; }

# --- lsc-fenced, on its own; then the agent, petting it
SOCK=$LSC_SCRATCH/fenced.sock
"$LSC_BIN/lsc-fenced" --socket "$SOCK" --uri "$URI" --host vmhost --state-dir "$LSC_SCRATCH/agents/vmhost" \
	--log-level debug </dev/null >>"$LSC_SCRATCH/fenced.log" 2>&1 &
FENCED_PID=$!
wait_until 10 test -S "$SOCK"

cat >"$LSC_SCRATCH/vmhost.conf" <<CONF
[agent]
driver_slow_ms = 120000
image_dir = $LSC_SCRATCH/images
fenced_socket = $SOCK
destroy_budget_ms = $BUDGET_MS
CONF
mkdir -p "$LSC_SCRATCH/images"
agent_start vmhost --driver libvirt --uri "$URI" --config "$LSC_SCRATCH/vmhost.conf"
AGENT_PID=${AGENT_PIDS[vmhost]}
host_up() { [ "$(lsc --json host show vmhost | jq -r '.liveness + " " + (.healthy|tostring)')" = "up true" ]; }
wait_until 90 host_up
expect_exit 0 lsc --json host show vmhost
expect_eq "$(jq -r '.health // ""' <<<"$OUT")" "" "health of a host whose lsc-fenced takes pets"
wait_until 10 grep -q "armed by the first pet" "$LSC_SCRATCH/fenced.log"

expect_exit 0 lsc --json server create "$NAME" --vcpus 1 --memory 64 --disk 0
uuid=$(jq -r .uuid <<<"$OUT")
expect_exit 0 lsc server start "$NAME" --wait --wait-timeout 240
dom_runs() { [ "$(vsh domstate "$NAME" 2>/dev/null)" = running ]; }
dom_gone() { ! vsh dominfo "$NAME" >/dev/null 2>&1; }
dom_runs || fail "domain $NAME does not run after start --wait"

# ms until the domain is gone, polled through virsh (fails after $1 s)
ms_until_gone() {
	local t0 limit=$(($(now_ms) + $1 * 1000))
	t0=$(now_ms)
	until dom_gone; do
		[ "$(now_ms)" -lt "$limit" ] || fail "domain $NAME still there $1 s later"
		sleep 0.05
	done
	echo $(($(now_ms) - t0))
}

# --- 1. the agent frozen: lsc-fenced destroys the VM at the deadline
sleep 1   # a steady state: pets every second
kill -STOP "$AGENT_PID"
t_stop=$(now_ms)
stop_to_gone=$(ms_until_gone 20)
liveness_then=$(lsc --json host show vmhost | jq -r .liveness)
# the deadline is the last acked beat's send + the lease, at most a beat before the
# freeze; then the destroy itself
[ "$stop_to_gone" -ge $((TTL_MS - 1200)) ] || fail "lsc-fenced destroyed after only $stop_to_gone ms"
[ "$stop_to_gone" -le $((TTL_MS + 3000)) ] || fail "lsc-fenced destroyed $stop_to_gone ms after the freeze"
# and before lscd may call the host lost and place the identity elsewhere
[ "$liveness_then" != lost ] || fail "vmhost was already lost when its VM was destroyed"
grep -q "destroyed domain $NAME ($uuid) generation 1" "$LSC_SCRATCH/fenced.log" ||
	fail "lsc-fenced did not log destroying $NAME"
fenced_ms=$(grep -m1 -oE 'fenced: 1 domains destroyed, 0 failed, [0-9]+ ms after the deadline' \
	"$LSC_SCRATCH/fenced.log" | grep -oE '[0-9]+ ms' | cut -d' ' -f1) ||
	fail "lsc-fenced did not sum up its sweep"
foreign_runs || fail "lsc-fenced touched $FOREIGN, a domain lsc did not create"
lsc_pid_alive "$AGENT_PID" || fail "the agent died while frozen"

kill -CONT "$AGENT_PID"
wait_until 30 grep -q "lease ended .* ago without an acknowledged heartbeat" "$LSC_SCRATCH/agent-vmhost.log"
wait_until 90 host_up
lsc_pid_alive "$AGENT_PID" || fail "the agent died after SIGCONT"
# the identity vanished from the inventory: lscd binds it again, a new generation
running_again() { lsc --json server show "$NAME" | jq -e '.state == "running" and .generation > 1'; }
wait_until 240 running_again
wait_until 30 dom_runs
wait_until 10 grep -q "re-armed by a pet" "$LSC_SCRATCH/fenced.log"

# --- 2. lscd frozen, the agent healthy: the agent destroys first, deadline - budget
sleep 1
fenced_lines=$(wc -l <"$LSC_SCRATCH/fenced.log")
agent_lines=$(wc -l <"$LSC_SCRATCH/agent-vmhost.log")
kill -STOP "$LSCD_PID"
t_stop=$(now_ms)
mgr_stop_to_gone=$(ms_until_gone 20)
# ...and lsc-fenced's deadline comes after, with nothing left to destroy
wait_until 10 sh -c "tail -n +$((fenced_lines + 1)) '$LSC_SCRATCH/fenced.log' | grep -q 'lease ended'"
tail -n +$((fenced_lines + 1)) "$LSC_SCRATCH/fenced.log" >"$LSC_SCRATCH/fenced-2.log"
tail -n +$((agent_lines + 1)) "$LSC_SCRATCH/agent-vmhost.log" >"$LSC_SCRATCH/agent-2.log"
grep -q "lease ended .* without a newer pet: destroying 0 lsc domains" "$LSC_SCRATCH/fenced-2.log" ||
	fail "lsc-fenced found something left to destroy: $(grep 'lease ended' "$LSC_SCRATCH/fenced-2.log")"
grep -q "lease ends in [0-9]* ms without an acknowledged heartbeat: destroying 1 instances" \
	"$LSC_SCRATCH/agent-2.log" || fail "the agent did not say it destroys its instance"
agent_done=$(log_ms "$LSC_SCRATCH/agent-2.log" "destroy $NAME .* done \(the lease ends\)") ||
	fail "the agent did not log its destroy"
fenced_deadline=$(log_ms "$LSC_SCRATCH/fenced-2.log" "lease ended") || fail "no deadline in lsc-fenced's log"
lead=$((fenced_deadline - agent_done))
[ "$lead" -gt 0 ] || fail "the agent's destroy ended $((-lead)) ms after lsc-fenced's deadline"
[ "$mgr_stop_to_gone" -le $((TTL_MS - BUDGET_MS + 3000)) ] ||
	fail "the agent destroyed $mgr_stop_to_gone ms after lscd froze"
foreign_runs || fail "$FOREIGN, a domain lsc did not create, is not running"
lsc_pid_alive "$AGENT_PID" || fail "the agent died"

# lscd back: the next ack renews the lease and re-arms lsc-fenced
kill -CONT "$LSCD_PID"
wait_until 30 sh -c "tail -n +$((agent_lines + 1)) '$LSC_SCRATCH/agent-vmhost.log' |
	grep -q 'lease renewed by an acknowledged heartbeat'"
wait_until 10 sh -c "tail -n +$((fenced_lines + 1)) '$LSC_SCRATCH/fenced.log' | grep -q 're-armed by a pet'"
lsc_pid_alive "$FENCED_PID" || fail "lsc-fenced died"
foreign_runs || fail "$FOREIGN is not running at the end"

echo "ok: agent SIGSTOP -> domain gone (lsc-fenced) after $stop_to_gone ms, $fenced_ms ms after" \
	"the deadline; lscd SIGSTOP -> domain gone (the agent) after $mgr_stop_to_gone ms, $lead ms" \
	"before lsc-fenced's deadline; whole test $((($(now_ms) - t_begin) / 1000)) s"
