#!/usr/bin/env bash
# Agents over CurveZMQ and non-deterministic binding: three agents on libvirt's test
# driver and one on the fake driver register; only enrolled keys get in, each only as
# its own host; 30 servers started at once each run exactly once on a host with room,
# anti-affinity holds, and an lscd killed midway converges after its restart.
set -euo pipefail
. "$LSC_TEST_LIB/pg.sh"
. "$LSC_TEST_LIB/lscd.sh"
lsc_test_setup --agents

cat >"$LSC_SCRATCH/small.conf" <<CONF
[agent]
vcpus = 4
memory_mib = 2048
disk_gib = 100
labels = rack=r9,disk=ssd
CONF
for h in h1 h2 h3 f1; do agent_enrol "$h"; done
for h in h1 h2 h3; do agent_start "$h" --driver libvirt --uri test:///default; done
agent_start f1 --driver fake --config "$LSC_SCRATCH/small.conf"

up_hosts() { lsc --json host list | jq '[.[] | select(.liveness == "up")] | length'; }
hosts_up() { [ "$(up_hosts)" -eq "$1" ]; }
wait_until 20 hosts_up 4

# --- the host JSON
expect_exit 0 lsc --json host show f1
for k in uuid name liveness admin driver labels vcpus memory_mib disk_gib alloc_ratio used_vcpus \
	used_memory_mib used_disk_gib instances healthy; do
	jq -e "has(\"$k\")" <<<"$OUT" >/dev/null || fail "host JSON lacks $k: $OUT"
done
expect_eq "$(jq -r '.driver + " " + (.vcpus|tostring) + " " + .labels.rack + " " + (.healthy|tostring)' <<<"$OUT")" \
	"fake 4 r9 true" "f1 as registered"

# --- a key nobody enrolled is refused; an enrolled key may speak only for its host
mkdir -p "$LSC_SCRATCH/agents/rogue"
"$LSC_BIN/lsc-agent" --name rogue --state-dir "$LSC_SCRATCH/agents/rogue" --manager "tcp://127.0.0.1:$LSC_AGENT_PORT" \
	--manager-key "$LSC_SCRATCH/lscd.pub" --driver fake </dev/null >>"$LSC_SCRATCH/agent-rogue.log" 2>&1 &
AGENT_PIDS[rogue]=$!
cp -r "$LSC_SCRATCH/agents/h1" "$LSC_SCRATCH/agents/impostor"        # h1's key, another name
"$LSC_BIN/lsc-agent" --name impostor --state-dir "$LSC_SCRATCH/agents/impostor" \
	--manager "tcp://127.0.0.1:$LSC_AGENT_PORT" --manager-key "$LSC_SCRATCH/lscd.pub" --driver fake \
	</dev/null >>"$LSC_SCRATCH/agent-impostor.log" 2>&1 &
AGENT_PIDS[impostor]=$!
refused() { grep -q "refused agent connection" "$LSC_SCRATCH/lscd.log" &&
	grep -q "key of host h1 tried to register as impostor" "$LSC_SCRATCH/lscd.log"; }
wait_until 15 refused
expect_exit 1 lsc host show rogue
expect_exit 1 lsc host show impostor
agent_stop rogue
agent_stop impostor

# --- 30 servers, 4 in an anti-affinity group, started in parallel
lsc pool create lan --cidr 10.50.0.0/24 --gateway 10.50.0.1 >/dev/null
lsc group create web --max-per-host 1 >/dev/null
for i in $(seq 1 30); do
	if [ "$i" -le 4 ]; then g=(--group web); else g=(); fi
	lsc server create "s$i" --vcpus 1 --memory 256 "${g[@]}" >/dev/null
done
pids=()
for i in $(seq 1 15); do lsc server start "s$i" >/dev/null & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || fail "a parallel start failed"; done

# lscd dies midway and comes back: it rebuilds its view and converges
lscd_kill9
lscd_start
# the rest as three many-server starts (one transaction each), in parallel
pids=()
for i in 16 21 26; do lsc server start $(seq -f 's%g' "$i" $((i + 4))) >/dev/null & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || fail "a parallel start of several servers failed"; done

all_running() { [ "$(lsc --json server list | jq '[.[] | select(.state == "running")] | length')" -eq 30 ]; }
wait_until 60 all_running

servers=$(lsc --json server list)
hosts=$(lsc --json host list)
# each exactly once, on a host that lists it
expect_eq "$(jq '[.[].instances[]] | length' <<<"$hosts")" 30 "instances across hosts"
expect_eq "$(jq '[.[].instances[]] | unique | length' <<<"$hosts")" 30 "distinct instances"
# the same hosts in pages of 2, each page with its liveness from lscd's memory
paged=$(lsc --json host list --page-size 2)
expect_eq "$(jq -c '[.[] | {name, instances, liveness}]' <<<"$paged")" \
	"$(jq -c '[.[] | {name, instances, liveness}]' <<<"$hosts")" "host list in pages of 2"
expect_eq "$(jq '[.[] | select(.liveness != "up" or .last_seen_ms_ago < 0)] | length' <<<"$paged")" 0 \
	"paged hosts not up"
expect_eq "$(jq '[.[] | select(.host == null)] | length' <<<"$servers")" 0 "servers without a host"
expect_eq "$(jq '[.[] | select(.generation != 1)] | length' <<<"$servers")" 0 "servers not at generation 1"
# no host over its allocatable capacity, and used matches what is bound there
jq -e 'all(.[]; .used_vcpus <= (.vcpus * .alloc_ratio) and .used_memory_mib <= (.memory_mib * .alloc_ratio))' \
	<<<"$hosts" >/dev/null || fail "a host is overbooked: $hosts"
jq -e 'all(.[]; .used_vcpus == (.instances | length))' <<<"$hosts" >/dev/null ||
	fail "used vcpus do not match the instances: $hosts"
# anti-affinity: the 4 members of web on 4 different hosts
expect_eq "$(jq '[.[] | select(.group == "web") | .host] | unique | length' <<<"$servers")" 4 "hosts of group web"
# the agents report what runs: every server is in some host's heartbeat inventory
expect_eq "$(grep -c ',10\.50\.0\.' "$LSC_SCRATCH/dhcp-hosts")" 30 "DHCP hosts file lines"

# --- a bound server keeps its size and group until it is stopped
expect_exit 1 lsc server edit s1 --group none
expect_contains "$ERR" "stop it" "group change of a running server"
expect_exit 1 lsc server edit s7 --vcpus 2
expect_contains "$ERR" "stop it" "resize of a running server"

# --- stop, and delete of a running server (stopped first)
expect_exit 0 lsc server stop s5 --wait --wait-timeout 30
expect_eq "$(lsc --json server show s5 | jq -r '.state + " " + (.host // "none")')" "defined none" "s5 stopped"
expect_exit 0 lsc server delete s6
gone() { ! lsc server show s6; }
wait_until 30 gone
expect_eq "$(lsc --json host list | jq '[.[].instances[]] | length')" 28 "instances after stop and delete"
no_s6_dhcp() { ! grep -q ",s6\$" "$LSC_SCRATCH/dhcp-hosts"; }
wait_until 10 no_s6_dhcp
expect_exit 0 lsc --json events --server s6
expect_contains "$(jq -r '[.[].kind] | join(",")' <<<"$OUT")" "server.binding,server.running" "s6's history"
expect_contains "$(jq -r '[.[].kind] | join(",")' <<<"$OUT")" "server.delete" "s6's history"

# --- cold migration: same identity, another host, generation + 1, an event from -> to
before=$(lsc --json server show s7)
from=$(jq -r .host <<<"$before")
expect_exit 0 lsc server migrate s7 --wait --wait-timeout 30
after=$(lsc --json server show s7)
expect_eq "$(jq -r '.uuid + .macs[0] + .ips[0] + .hostname' <<<"$after")" \
	"$(jq -r '.uuid + .macs[0] + .ips[0] + .hostname' <<<"$before")" "identity across migrate"
[ "$(jq -r .host <<<"$after")" != "$from" ] || fail "s7 migrated onto the host it left ($from)"
expect_eq "$(jq -r '.generation' <<<"$after")" 2 "generation after migrate"
expect_exit 0 lsc --json events --server s7
expect_eq "$(jq -r "[.[] | select(.kind == \"server.binding\" and .detail.from == \"$from\")] | length" <<<"$OUT")" 1 \
	"a binding event records where s7 came from"
# --to names the host; one it cannot go to is refused or explained
target=$(lsc --json host list | jq -r --arg h "$(jq -r .host <<<"$after")" \
	'[.[] | select(.name != $h and .driver == "libvirt")][0].name')
expect_exit 0 lsc server migrate s7 --to "$target" --wait --wait-timeout 30
expect_eq "$(lsc --json server show s7 | jq -r .host)" "$target" "s7 after migrate --to"
expect_exit 1 lsc server migrate s7 --to "$target"
expect_exit 1 lsc server migrate s5
expect_contains "$ERR" "only a running server migrates" "migrate of a stopped server"

# --- instances that vanish (the agent restarts with an empty test hypervisor) are
# noticed from the inventory and placed again, one generation up
on_h2=$(lsc --json server list | jq -r '[.[] | select(.host == "h2" and .state == "running") | .name] | sort | join(" ")')
[ -n "$on_h2" ] || fail "nothing runs on h2"
agent_stop h2
agent_start h2 --driver libvirt --uri test:///default
back() {
	local n
	for n in $on_h2; do
		lsc --json server show "$n" | jq -e '.state == "running" and .generation >= 2' >/dev/null || return 1
	done
}
wait_until 40 back
expect_exit 0 lsc --json events --server "${on_h2%% *}"
expect_contains "$(jq -r '[.[].kind] | join(",")' <<<"$OUT")" "server.vanished" "history of a vanished server"

# --- plans bind nothing, and say why a host does not fit
short=$(lsc --json host list | jq '[.[] | select(.vcpus * .alloc_ratio - .used_vcpus < 3 or
	.memory_mib * .alloc_ratio - .used_memory_mib < 256)] | length')
expect_exit 0 lsc --json plan server --vcpus 3 --memory 256
expect_eq "$(jq -r '.not_feasible | length' <<<"$OUT")" "$short" "hosts that cannot take 3 vCPUs"
expect_eq "$(jq -r '(.feasible | length) + (.not_feasible | length)' <<<"$OUT")" 4 "hosts in a plan"
expect_exit 0 lsc --json plan server --vcpus 8 --memory 256
expect_eq "$(jq -r '.not_feasible[] | select(.host == "f1") | .why | test("vCPU")' <<<"$OUT")" true "why not f1"
# the plan and the hosts' own figures agree
expect_eq "$(lsc --json host list | jq '[.[] | select(.vcpus * .alloc_ratio - .used_vcpus >= 8 and
	.memory_mib * .alloc_ratio - .used_memory_mib >= 256)] | length')" "$(jq '.feasible | length' <<<"$OUT")" \
	"hosts for 8 vCPUs"
expect_exit 0 lsc server start s5 --dry-run
expect_contains "$OUT" "nothing was bound" "dry run"
expect_eq "$(lsc --json server show s5 | jq -r .state)" defined "s5 after a dry run"

# --- required host labels: only f1 is labelled disk=ssd (and rack=r9)
lsc server create ssd1 --vcpus 1 --memory 64 --require-label disk=ssd >/dev/null
expect_exit 0 lsc --json plan server ssd1
expect_eq "$(jq -r '.feasible | join(",")' <<<"$OUT")" "$(lsc --json host show f1 | jq -r 'if .used_vcpus < .vcpus then "f1" else "" end')" \
	"hosts for disk=ssd"
lsc server stop s5 >/dev/null 2>&1 || true
for n in $(lsc --json host show f1 | jq -r '.instances[]'); do lsc server stop "$n" --wait --wait-timeout 30 >/dev/null; done
expect_exit 0 lsc server start ssd1 --wait --wait-timeout 30
expect_eq "$(lsc --json server show ssd1 | jq -r '.host + " " + .require_labels.disk')" "f1 ssd" "ssd1 placement"
lsc server create gpu1 --vcpus 1 --memory 64 --require-label gpu=1 >/dev/null
expect_exit 0 lsc server start gpu1
no_gpu() { lsc --json server show gpu1 | jq -e '.reason | test("lack label gpu=1")'; }
wait_until 15 no_gpu
expect_exit 1 lsc server edit ssd1 --require-label none
expect_exit 0 lsc server stop gpu1
expect_exit 0 lsc --json server edit gpu1 --require-label none
expect_eq "$(jq -r '.require_labels | length' <<<"$OUT")" 0 "required labels cleared"

# --- nothing fits: the reason is shown, and the server binds once room appears
lsc server create big --vcpus 64 --memory 256 >/dev/null
expect_exit 0 lsc server start big
no_room() { lsc --json server show big | jq -e '.reason | test("no host fits")'; }
wait_until 15 no_room
expect_exit 0 lsc server stop big
echo "ok"
