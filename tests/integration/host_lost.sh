#!/usr/bin/env bash
# A host lost (its agent killed): after last heartbeat + lease + grace its servers go
# lost -> pending -> binding -> running elsewhere (generation + 1, same identity), each
# step an event. A returning host runs nothing stale. Restarting lscd or PostgreSQL
# loses no host and moves no server (no needless fencing).
set -euo pipefail
. "$LSC_TEST_LIB/pg.sh"
. "$LSC_TEST_LIB/lscd.sh"
lsc_test_setup --agents
LEASE_MS=4000
GRACE_MS=2000
LSCD_ARGS+=(--lease-ttl-ms "$LEASE_MS" --grace-ms "$GRACE_MS")
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

for i in $(seq 1 9); do lsc server create "l$i" --vcpus 1 --memory 256 >/dev/null; done
expect_exit 0 lsc server start $(seq -f 'l%g' 1 9)
running() { [ "$(lsc --json server list | jq '[.[] | select(.state == "running")] | length')" -eq "$1" ]; }
wait_until 30 running 9
before=$(lsc --json server list)
on_f1=$(jq -r '[.[] | select(.host == "f1") | .name] | join(" ")' <<<"$before")
[ -n "$on_f1" ] || fail "nothing landed on f1 (lscd --seed 1 spreads 9 servers over 3 hosts)"

# --- f1's agent dies: its servers come back elsewhere
t0=$(date +%s%3N)
kill -KILL "${AGENT_PIDS[f1]}"
wait "${AGENT_PIDS[f1]}" 2>/dev/null || true
unset "AGENT_PIDS[f1]"
moved() { [ "$(lsc --json server list | jq '[.[] | select(.state == "running" and .host != "f1")] | length')" -eq 9 ]; }
wait_until 40 moved
ms=$(($(date +%s%3N) - t0))
echo "host loss -> all its servers running elsewhere: $ms ms (lease $LEASE_MS ms + grace $GRACE_MS ms)"
[ "$ms" -ge $((LEASE_MS + GRACE_MS - 1000)) ] || fail "servers moved after $ms ms: before the lease could run out"
after=$(lsc --json server list)
for n in $on_f1; do
	expect_eq "$(jq -r ".[] | select(.name == \"$n\") | .generation" <<<"$after")" 2 "generation of relocated $n"
	for k in uuid macs ips hostname; do
		expect_eq "$(jq -c ".[] | select(.name == \"$n\") | .$k" <<<"$after")" \
			"$(jq -c ".[] | select(.name == \"$n\") | .$k" <<<"$before")" "$k of relocated $n"
	done
	expect_exit 0 lsc --json events --server "$n"
	expect_eq "$(jq -r '[.[] | select(.kind != "server.create" and .kind != "server.start") | .kind] | join(" ")' <<<"$OUT")" \
		"server.binding server.running server.lost server.fenced server.binding server.running" "events of $n"
	sorted=$(jq '[.[].at] | . == sort' <<<"$OUT")
	expect_eq "$sorted" true "event times of $n in order"
done
expect_eq "$(lsc --json host show f1 | jq -r '.liveness + " " + (.instances|length|tostring)')" "lost 0" "f1 after"
expect_eq "$(lsc --json host show f1 | jq -r .used_vcpus)" 0 "f1's capacity given back"

# --- f1 returns: it registers again and gets nothing stale; nothing runs twice
agent_start f1 --config "$LSC_SCRATCH/fake.conf"
wait_until 20 hosts_up 3
sleep 2
expect_eq "$(lsc --json host list | jq '[.[].instances[]] | length')" 9 "instances across hosts"
expect_eq "$(lsc --json host list | jq '[.[].instances[]] | unique | length')" 9 "distinct instances"

# --- lscd and PostgreSQL restart: no host is lost, no server moves
gens() { lsc --json server list | jq -c '[.[] | [.name, .generation, .host, .state]]'; }
g0=$(gens)
lscd_kill9
lscd_start
sleep $(((LEASE_MS + GRACE_MS) / 1000 + 2))
expect_eq "$(gens)" "$g0" "servers after an lscd restart"
pg_stop "$PG_DIR" fast
sleep $((LEASE_MS / 1000 + 1))
pg_start "$PG_DIR" "$PG_PORT"
sleep 2
expect_eq "$(gens)" "$g0" "servers after PostgreSQL was away longer than a lease"
hosts_up 3 || fail "a host is not up after the restarts"
for h in f1 f2 f3; do
	if grep -q "without an acknowledged heartbeat" "$LSC_SCRATCH/agent-$h.log"; then
		fail "agent $h fenced itself during a restart of lscd or PostgreSQL"
	fi
done
expect_exit 0 lsc --json events --limit 10000
expect_eq "$(jq '[.[] | select(.kind == "server.lost")] | length' <<<"$OUT")" "$(wc -w <<<"$on_f1")" \
	"server.lost events (only f1's)"
echo ok
