#!/usr/bin/env bash
# Drain, undrain and remove: a drained host takes no new placements and everything
# bound there moves off (destroyed there, bound again elsewhere at generation + 1,
# same identity); draining survives the agent's restart; a host is removed only when
# nothing is bound to it and its agent is gone.
set -euo pipefail
. "$LSC_TEST_LIB/pg.sh"
. "$LSC_TEST_LIB/lscd.sh"
lsc_test_setup --agents
# a short lease, so that a stopped agent's host is lost within seconds
LSCD_ARGS+=(--lease-ttl-ms 2000 --grace-ms 1000)
lscd_restart

cat >"$LSC_SCRATCH/fake.conf" <<CONF
[agent]
driver = fake
vcpus = 16
memory_mib = 16384
disk_gib = 500
CONF
for h in f1 f2 f3; do agent_start "$h" --config "$LSC_SCRATCH/fake.conf"; done
hosts_up() { [ "$(lsc --json host list | jq '[.[] | select(.liveness == "up")] | length')" -eq "$1" ]; }
wait_until 20 hosts_up 3

for i in $(seq 1 9); do lsc server create "d$i" --vcpus 1 --memory 256 >/dev/null; done
expect_exit 0 lsc server start $(seq -f 'd%g' 1 9)
running() { [ "$(lsc --json server list | jq '[.[] | select(.state == "running")] | length')" -eq "$1" ]; }
wait_until 30 running 9
before=$(lsc --json server list)
on_f1=$(jq -r '[.[] | select(.host == "f1") | .name] | join(" ")' <<<"$before")
[ -n "$on_f1" ] || fail "nothing landed on f1 (lscd --seed 1 spreads 9 servers over 3 hosts)"

# --- drain: everything on f1 moves, nothing else does
expect_exit 0 lsc host drain f1 --wait --wait-timeout 60
expect_contains "$OUT" "f1: drained, nothing bound to it" "drain --wait's last line"
wait_until 30 running 9
after=$(lsc --json server list)
expect_eq "$(jq '[.[] | select(.host == "f1")] | length' <<<"$after")" 0 "servers left on f1"
for n in $on_f1; do
	expect_eq "$(jq -r ".[] | select(.name == \"$n\") | .generation" <<<"$after")" 2 "generation of moved $n"
	for k in uuid macs ips hostname; do
		expect_eq "$(jq -c ".[] | select(.name == \"$n\") | .$k" <<<"$after")" \
			"$(jq -c ".[] | select(.name == \"$n\") | .$k" <<<"$before")" "$k of moved $n"
	done
done
expect_eq "$(jq '[.[] | select(.generation != 1 and .host != null)] | length' <<<"$after")" \
	"$(wc -w <<<"$on_f1")" "servers that moved"
expect_exit 0 lsc --json host show f1
expect_eq "$(jq -r '.admin + " " + (.used_vcpus|tostring) + " " + (.instances|length|tostring)' <<<"$OUT")" \
	"drained 0 0" "f1 after the drain"
expect_exit 0 lsc --json events --limit 1000
expect_eq "$(jq '[.[] | select(.kind == "host.drain")] | length' <<<"$OUT")" 1 "host.drain events"
expect_eq "$(jq '[.[] | select(.kind == "server.drain")] | length' <<<"$OUT")" "$(wc -w <<<"$on_f1")" \
	"server.drain events"

# --- no new placements on a drained host, also after its agent restarted
agent_stop f1
agent_start f1 --config "$LSC_SCRATCH/fake.conf"
wait_until 20 hosts_up 3
for i in $(seq 10 15); do lsc server create "d$i" --vcpus 1 --memory 256 >/dev/null; done
expect_exit 0 lsc server start $(seq -f 'd%g' 10 15)
wait_until 30 running 15
expect_eq "$(lsc --json server list | jq '[.[] | select(.host == "f1")] | length')" 0 "servers placed on drained f1"
expect_eq "$(lsc --json host show f1 | jq -r .admin)" drained "f1's admin state after its agent's restart"

# --- remove: refused while the agent runs (and while something is bound: store_test)
expect_exit 1 lsc host remove f2
expect_contains "$ERR" "stop its agent first" "removing a live host with servers"
expect_exit 1 lsc host remove f1
expect_contains "$ERR" "host f1 is up: stop its agent first" "removing a live host"
expect_exit 1 lsc host drain nosuch
expect_contains "$ERR" "host nosuch not found" "draining an unknown host"
expect_exit 2 lsc host drain Bad_Name
agent_stop f1
lost() { lsc --json host show f1 | jq -e '.liveness == "lost"'; }
wait_until 20 lost
expect_exit 0 lsc host remove f1
expect_exit 1 lsc host show f1
expect_exit 0 lsc --json events --limit 1000
expect_eq "$(jq '[.[] | select(.kind == "host.remove")] | length' <<<"$OUT")" 1 "host.remove events"

# --- undrain: placements again
expect_exit 0 lsc host drain f3 --wait --wait-timeout 60
wait_until 30 running 15
expect_eq "$(lsc --json server list | jq '[.[] | select(.host != "f2")] | length')" 0 "servers not on f2"
expect_exit 0 lsc host undrain f3
expect_eq "$(lsc --json host show f3 | jq -r .admin)" active "f3 after undrain"
for i in $(seq 16 19); do lsc server create "d$i" --vcpus 1 --memory 256 >/dev/null; done
expect_exit 0 lsc server start $(seq -f 'd%g' 16 19)
wait_until 30 running 19
# f2 has room for one more of its 16 vCPUs: at least three of the four went to f3
expect_eq "$(lsc --json host show f3 | jq '.instances | length >= 3')" true "servers placed on f3 after undrain"
echo ok
