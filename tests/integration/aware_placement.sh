#!/usr/bin/env bash
# Die-off-aware placement in lscd (docs/mayflies.md): two fake hosts of 16 vCPUs. On
# "hot" two busy servers keep 8 vCPUs busy (fake_load 1.0) but reserve only 8; on
# "cool" three idle servers reserve 12 and keep none busy. Reservations alone (power of
# k: the freest sampled host) favour hot; measured load favours cool. With
# mayfly_aware = 1 (the default) three new servers all go to cool; with mayfly_aware = 0
# (the same seed) at least one goes to hot: the switch is what decides.
set -euo pipefail
. "$LSC_TEST_LIB/pg.sh"
. "$LSC_TEST_LIB/lscd.sh"
command -v jq >/dev/null || { echo "jq is missing" >&2; exit 1; }
lsc_test_setup --agents

for h in hot cool; do
	cat >"$LSC_SCRATCH/$h.conf" <<CONF
[agent]
vcpus = 16
memory_mib = 65536
labels = box=$h
fake_load = $([ "$h" = hot ] && echo 1.0 || echo 0)
CONF
	agent_start "$h" --driver fake --config "$LSC_SCRATCH/$h.conf"
done
up() { [ "$(lsc --json host list | jq '[.[] | select(.liveness == "up")] | length')" -eq 2 ]; }
wait_until 20 up

for i in 1 2; do lsc server create busy$i --vcpus 4 --memory 1024 --require-label box=hot >/dev/null; done
for i in 1 2 3; do lsc server create idle$i --vcpus 4 --memory 1024 --require-label box=cool >/dev/null; done
lsc server start busy1 busy2 idle1 idle2 idle3 >/dev/null
all_running() {
	[ "$(lsc --json server list | jq '[.[] | select(.state == "running")] | length')" -eq "$1" ]
}
wait_until 30 all_running 5
hot_busy() {
	lsc --json host show hot | jq -e '.measured.cpu_vcpus != null and .measured.cpu_vcpus > 7' >/dev/null
}
wait_until 30 hot_busy

# place: three new 1-vCPU servers after lscd refreshed its hosts' forecasts
place() {   # place TAG: creates and starts TAG1..3, prints the hosts they run on
	local i
	for i in 1 2 3; do lsc server create "$1$i" --vcpus 1 --memory 256 >/dev/null; done
	lsc server start "${1}1" "${1}2" "${1}3" >/dev/null
	wait_until 30 all_running "$2"
	lsc --json server list | jq -r --arg t "$1" '[.[] | select(.name | startswith($t)) | .host] | join(" ")'
}
sleep 11                                  # the forecasts are refreshed every 10 s
hosts=$(place new 8)
[ "$hosts" = "cool cool cool" ] || fail "aware placement put the new servers on: $hosts (want cool x3)"

# (d) early retirement: a mayfly moved onto "tiny" (2 vCPUs, all busy: 100% measured,
# hot above 90%) retires in the last fifth of its life, before its expires_at, and is
# reborn on a cooler host
cat >"$LSC_SCRATCH/tiny.conf" <<CONF
[agent]
vcpus = 2
memory_mib = 4096
labels = box=tiny
fake_load = 1.0
CONF
agent_start tiny --driver fake --config "$LSC_SCRATCH/tiny.conf"
up3() { [ "$(lsc --json host list | jq '[.[] | select(.liveness == "up")] | length')" -eq 3 ]; }
wait_until 20 up3
lsc server create hotfly --vcpus 2 --memory 256 --lifetime 60s >/dev/null
lsc server start hotfly >/dev/null
wait_until 30 all_running 9
# (placed on tiny already when it was still idle; else moved there)
[ "$(lsc --json server show hotfly | jq -r .host)" = tiny ] || lsc server migrate hotfly --to tiny --wait >/dev/null
expires=$(lsc --json server show hotfly | jq -r .expires_at)
early_gone() { lsc --json server show hotfly | jq -e '.host != "tiny" and .state == "running"' >/dev/null; }
wait_until 80 early_gone
left=$(( $(date -d "$expires" +%s) - $(date +%s) ))
[ "$left" -ge 1 ] || fail "hotfly left tiny only $((-left)) s after its expires_at: no early retirement"
expect_exit 0 lsc --json events --server hotfly
expect_contains "$OUT" "retired early, off hot host tiny" "the early retirement's event"
echo "hotfly retired $left s before its expires_at"
lsc server delete hotfly >/dev/null
# tiny goes: the rest of the test knows two hosts
agent_stop tiny
tiny_lost() { [ "$(lsc --json host show tiny | jq -r .liveness)" = lost ]; }
wait_until 30 tiny_lost
lsc host remove tiny >/dev/null

# the same with awareness off: lscd restarted with mayfly_aware = 0
for s in new1 new2 new3; do lsc server delete "$s" --wait >/dev/null 2>&1 || lsc server delete "$s" >/dev/null; done
printf '[manager]\nmayfly_aware = 0\n' >"$LSC_SCRATCH/lscd.conf"
LSCD_ARGS+=(--config "$LSC_SCRATCH/lscd.conf")
lscd_restart
wait_until 20 up
wait_until 30 all_running 5
hosts=$(place old 8)
case " $hosts " in
*" hot "*) ;;
*) fail "with awareness off the new servers still all went to cool ($hosts): the test proves nothing" ;;
esac

# lsc plan turnover: a mayfly's deaths over two days, each rebirth placed by the
# scheduler as it stands (never on the host it dies on: another fits), every host's
# projected load by hour; and nothing changes
lsc server create fly1 --vcpus 1 --memory 256 --lifetime 2h >/dev/null
lsc server start fly1 >/dev/null
wait_until 30 all_running 9
before=$(lsc --json server show fly1 | jq -c '{generation, host, expires_at}')
expect_exit 0 lsc --json plan turnover --hours 48
plan=$OUT
n=$(jq '[.deaths[] | select(.server == "fly1")] | length' <<<"$plan")
[ "$n" -ge 20 ] && [ "$n" -le 26 ] || fail "fly1 dies $n times in 48 h with a 2 h lifetime"
expect_eq "$(jq -r '.deaths[0].host' <<<"$plan")" "$(jq -r .host <<<"$before")" "the first death's host"
expect_eq "$(jq -r '.deaths[0].expires_at' <<<"$plan")" "$(jq -r .expires_at <<<"$before")" "its planned death"
jq -e '[.deaths[] | select(.rebirth == null or .rebirth == .host)] | length == 0' <<<"$plan" >/dev/null ||
	fail "a rebirth without a host, or on the host it dies on: $(jq -c .deaths <<<"$plan")"
expect_eq "$(jq '.loads | length' <<<"$plan")" 2 "hosts in the load projection"
expect_eq "$(jq '[.loads[] | .vcpus_by_hour | length] | unique' -c <<<"$plan")" "[48]" "hours per host"
expect_eq "$(jq -r '.loads[0].host' <<<"$plan")" hot "the hottest host first"
expect_eq "$(lsc --json server show fly1 | jq -c '{generation, host, expires_at}')" "$before" "the plan changed nothing"
expect_exit 0 lsc plan turnover
expect_contains "$OUT" "REBIRTH" "the text table"
expect_contains "$OUT" "nothing was changed" "the text plan says it changes nothing"
expect_exit 2 lsc plan turnover --hours 0
expect_contains "$ERR" "--hours" "a bad horizon is named"
expect_exit 2 lsc plan turnover --hours 9000
expect_exit 2 lsc plan turnover extra
echo "ok: aware -> cool cool cool; reservations only -> $hosts; plan turnover: $n deaths of fly1 in 48 h"
