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
echo "ok: aware -> cool cool cool; reservations only -> $hosts"
