#!/usr/bin/env bash
# Mayflies: three servers with a lifetime of seconds turn over again and again on
# three agents (libvirt's test driver): each death is graceful, its rebirth host is
# reserved first and is another host, generation + 1, and UUID, MACs, IPs and
# hostname never change. Turnovers never exceed the budget (max(1, 10% of 4) = 1 at
# once), checked by sampling and from the events; never two live copies, checked from
# the agents' stamped driver calls as tests/chaos does. lscd killed -9 right after a
# death committed finishes that turnover after its restart. With one host left and no
# rebirth in place allowed, deaths are postponed and counted; a host coming back lets
# them go on. A stopped mayfly just stops. A restarted lscd holds a rebirth's reserved
# room against a new server. A mayfly with nowhere else to go is postponed with
# mayfly_in_place = 0 and reborn on its own, full host with 1. renew pushes one
# death out, within mayfly_renew_max.
set -euo pipefail
. "$LSC_TEST_LIB/pg.sh"
. "$LSC_TEST_LIB/lscd.sh"
command -v jq >/dev/null || { echo "jq is missing" >&2; exit 1; }
lsc_test_setup --agents

cat >"$LSC_SCRATCH/lscd.conf" <<CONF
[manager]
turnover_max_pct = 10
mayfly_jitter_pct = 10
mayfly_shutdown_timeout_ms = 2000
mayfly_postpone_s = 1
mayfly_in_place = 0
mayfly_renew_max = 1
CONF
# a short lease, so that a stopped agent's host is lost within seconds
LSCD_ARGS+=(--lease-ttl-ms 4000 --grace-ms 2000 --config "$LSC_SCRATCH/lscd.conf")
lscd_restart
# the agents destroy their instances only 0.5 s before their lease ends (not 2 s): lscd
# is killed and restarted below, and a slow restart must not make them fence themselves
printf '[agent]\ndestroy_budget_ms = 500\n' >"$LSC_SCRATCH/agent.conf"
for h in h1 h2 h3; do agent_start "$h" --driver libvirt --uri test:///default --config "$LSC_SCRATCH/agent.conf"; done
hosts_up() { [ "$(lsc --json host list | jq '[.[] | select(.liveness == "up")] | length')" -eq "$1" ]; }
wait_until 20 hosts_up 3

lsc pool create lan --cidr 10.60.0.0/24 --gateway 10.60.0.1 >/dev/null
for m in m1 m2 m3; do lsc server create "$m" --vcpus 1 --memory 128 --lifetime 4s >/dev/null; done
lsc server create keeper --vcpus 1 --memory 128 >/dev/null            # not a mayfly
lsc server create m4 --vcpus 1 --memory 128 --lifetime 4s >/dev/null  # a mayfly never started
expect_exit 0 lsc server start m1 m2 m3 keeper --wait --wait-timeout 30
ids() { lsc --json server list | jq -c '[.[] | select(.name | test("^(m[1-4]|keeper)$"))
	| {name, uuid, macs, ips, hostname}] | sort_by(.name)'; }
before=$(ids)
expect_exit 0 lsc --json server show m1
[ "$(jq -r .expires_at <<<"$OUT")" != null ] || fail "a running mayfly has no expires_at: $OUT"
expect_eq "$(lsc --json server show keeper | jq -r .expires_at)" null "keeper's expires_at"
expect_eq "$(lsc --json server show m4 | jq -r .expires_at)" null "expires_at of a mayfly never bound"

# --- renew: refused unless a running mayfly, once per binding here (mayfly_renew_max 1)
expect_exit 1 lsc server renew keeper
expect_contains "$ERR" "not a mayfly" "renewing a server without a lifetime"
expect_exit 1 lsc server renew m4
expect_contains "$ERR" "only a running mayfly is renewed" "renewing a defined mayfly"
expect_exit 2 lsc server renew m3 --by 0
expect_exit 2 lsc server renew m3 --by 5x
expect_exit 1 lsc server renew nosuch
expect_exit 0 lsc --json server renew m3 --by 6s
expect_eq "$(jq -r '.renewals' <<<"$OUT")" 1 "m3's renewals after a renew"
expect_exit 1 lsc server renew m3
expect_contains "$ERR" "mayfly_renew_max" "a second renewal"
expect_exit 0 lsc server show m3
expect_contains "$OUT" "renewed 1 time in this binding" "show after a renew"

# --- turnover, again and again; sampled all along
budget_seen=0
sample() {
	local list
	list=$(lsc --json server list)
	local inflight stopping
	inflight=$(jq '[.[] | select(.turnover_to != null)] | length' <<<"$list")
	stopping=$(jq '[.[] | select(.state == "stopping")] | length' <<<"$list")
	[ "$inflight" -le 1 ] || fail "$inflight turnovers at once; the budget is 1: $list"
	[ "$stopping" -le 1 ] || fail "$stopping servers stopping at once; the budget is 1: $list"
	[ "$inflight" -lt "$budget_seen" ] || budget_seen=$inflight
	INFLIGHT=$inflight
	expect_eq "$(jq -c '[.[] | select(.name | test("^(m[1-4]|keeper)$"))
		| {name, uuid, macs, ips, hostname}] | sort_by(.name)' <<<"$list")" "$before" \
		"identities during turnover"
	expect_eq "$(jq -r '.[] | select(.name == "keeper") | .generation' <<<"$list")" 1 "keeper's generation"
	LIST=$list
}
turned() { jq -e "[.[] | select(.name | test(\"^m[1-3]$\")) | select(.turnovers >= $1)] | length == 3" <<<"$LIST" \
	>/dev/null; }
t0=$SECONDS
sample
until turned 3; do
	[ $((SECONDS - t0)) -lt 75 ] || fail "mayflies did not turn over 3 times each in 75 s: $LIST"
	sleep 0.2
	sample
done
echo "three turnovers each in $((SECONDS - t0)) s"
[ "$budget_seen" -eq 1 ] || fail "no turnover was ever seen under way by sampling"
for m in m1 m2 m3; do
	g=$(jq -r ".[] | select(.name == \"$m\") | .generation" <<<"$LIST")
	t=$(jq -r ".[] | select(.name == \"$m\") | .turnovers" <<<"$LIST")
	[ "$g" -ge $((1 + t)) ] || fail "$m: generation $g after $t turnovers"
done
expect_eq "$(jq -r '.[] | select(.name == "m3") | .renewals' <<<"$LIST")" 0 "m3's renewals after its rebirth"

# --- lscd dies (-9) just after a death committed, before its SHUTDOWN went out: the row
# is made so by hand, as ST_TURNOVER_DIE writes it (a real kill lands there only by
# chance: a turnover takes a quarter of a second here). The restarted lscd must find
# the turnover in its load, shut the old copy down, and only then rebind on the
# reserved host.
lscd_kill9
sql() { psql "$PG_CONNINFO" -XqtA -v ON_ERROR_STOP=1 -c "$1"; }
victim=$(sql "SELECT name FROM servers WHERE name IN ('m1', 'm2', 'm3') AND state = 'running'
	AND turnover_to IS NULL ORDER BY name LIMIT 1")
[ -n "$victim" ] || fail "no mayfly running when lscd was killed"
IFS='|' read -r vuuid vgen vhost < <(sql "SELECT s.uuid, s.generation, h.name FROM servers s
	JOIN hosts h ON h.id = s.host_id WHERE s.name = '$victim'")
vto=$(sql "SELECT name FROM hosts WHERE name <> '$vhost' ORDER BY name LIMIT 1")
vturns=$(sql "SELECT turnovers FROM servers WHERE name = '$victim'")
sql "BEGIN;
	UPDATE servers SET state = 'stopping', turnover_to = '$vto', updated_at = now(),
		reason = 'turnover: lifetime over; reborn on $vto' WHERE name = '$victim';
	INSERT INTO events (actor, kind, server_uuid, server_name, host_name, detail)
		SELECT 'test', 'server.turnover', uuid, name, '$vhost', jsonb_build_object('state', state,
			'generation', generation, 'host', '$vhost', 'reason', reason, 'turnover_to', turnover_to)
		FROM servers WHERE name = '$victim';
	COMMIT;" >/dev/null
shut_re="driver shutdown ($victim \\()?$vuuid\\)? generation $vgen: returned"
shutdowns_before=$(grep -cE "$shut_re" "$LSC_SCRATCH/agent-$vhost.log" || true)
lscd_start
reborn() { lsc --json server show "$victim" | jq -e ".state == \"running\" and .host == \"$vto\"
	and .generation == $((vgen + 1)) and .turnovers == $((vturns + 1)) and .turnover_to == null"; }
wait_until 40 reborn
[ "$(grep -cE "$shut_re" "$LSC_SCRATCH/agent-$vhost.log")" -gt "$shutdowns_before" ] ||
	fail "the restarted lscd did not shut $victim g$vgen down on $vhost"
grep -q "destroying [1-9][0-9]* instances" "$LSC_SCRATCH"/agent-h*.log &&
	fail "an agent fenced itself while lscd restarted"
echo "lscd killed after $victim's death committed: reborn g$((vgen + 1)) on $vto after its restart"
sample

# --- the events: every step says turnover; every death reserved another host; never
# more than one turnover from death to rebirth, in commit order
expect_exit 0 lsc --json events --limit 10000
events=$OUT
deaths=$(jq '[.[] | select(.kind == "server.turnover" and .detail.state == "stopping")] | length' <<<"$events")
[ "$deaths" -ge 9 ] || fail "only $deaths deaths in the events"
expect_eq "$(jq '[.[] | select(.kind == "server.turnover" and .detail.state == "stopping")
	| select(.detail.turnover_to == null or .detail.turnover_to == .detail.host)] | length' <<<"$events")" 0 \
	"deaths without another reserved host"
destroyed=$(jq '[.[] | select(.kind == "server.turnover" and .detail.state == "pending")] | length' <<<"$events")
reborn=$(jq '[.[] | select(.kind == "server.running" and (.detail.reason | startswith("turnover")))] | length' <<<"$events")
[ "$reborn" -le "$destroyed" ] && [ "$destroyed" -le $((reborn + 1)) ] ||
	fail "$destroyed old copies destroyed and $reborn rebirths running (one may be under way)"
[ "$destroyed" -ge "$((deaths - 1))" ] || fail "$deaths deaths but only $destroyed destroyed"
max_at_once=$(jq '[sort_by(.id)[] | select((.server // "") | test("^m[1-3]$"))
	| if .kind == "server.turnover" and .detail.state == "stopping" then 1
	  elif .kind == "server.running" and (.detail.reason | startswith("turnover")) then -1 else empty end]
	| reduce .[] as $d ({n: 0, max: 0}; .n += $d | .max = ([.max, .n] | max)) | .max' <<<"$events")
expect_eq "$max_at_once" 1 "turnovers at once, from the events"
# how long a turnover takes here: expiry -> death (the budget and the 0.5 s scan) and
# death -> running elsewhere (shutdown, acknowledgement, binding, instantiate)
jq -r 'def us: (.at | capture("^(?<s>[^.]+)\\.(?<f>[0-9]+)Z$")) as $c
		| (($c.s + "Z") | fromdateiso8601) * 1000000 + ($c.f | tonumber);
	[sort_by(.id)[] | select((.server // "") | test("^m[1-3]$"))] as $e
	| [$e[] | select(.kind == "server.turnover" and .detail.state == "stopping" and .detail.expires_at != null)
	   | (us - .detail.expires_at * 1000000) / 1000] as $wait
	| [$e | to_entries[] | select(.value.kind == "server.turnover" and .value.detail.state == "stopping") as $d
	   | first($e[$d.key + 1:][] | select(.server == $d.value.server and .kind == "server.running"))
	   | (us - ($d.value | us)) / 1000] as $turn
	| "turnover: expiry -> death mean \($wait | add / length | floor) ms (expires_at is whole seconds);"
	  + " death -> running elsewhere mean \($turn | add / length | floor) ms, max \($turn | max | floor) ms"
	  + " (\($turn | length) turnovers; lscd was killed -9 once meanwhile)"' <<<"$events"
# graceful: the agents were asked to shut down, not to destroy
grep -q "driver shutdown m[1-3] " "$LSC_SCRATCH"/agent-h*.log || fail "no graceful shutdown in the agents' logs"

# --- one host left, no rebirth in place: deaths are postponed and counted
gone() {   # the test driver's instances die with the agent's process: say when
	agent_stop "$1"
	echo "test: agent gone at boot $(awk '{ printf "%d", $1 * 1000000 }' /proc/uptime) us" \
		>>"$LSC_SCRATCH/agent-$1.log"
}
gone h2
gone h3
all_on_h1() { lsc --json server list | jq -e '[.[] | select(.desired == "running")]
	| all(.host == "h1" and .state == "running")'; }
wait_until 40 all_on_h1
postponed() { lsc --json server list | jq -e '[.[] | select(.name | test("^m[1-3]$")) | .postponed] | add >= 3'; }
wait_until 30 postponed
expect_exit 0 lsc server show m1
expect_contains "$OUT" "death postponed" "show of a postponed mayfly"
expect_exit 0 lsc --json events --limit 10000
[ "$(jq '[.[] | select(.kind == "server.turnover-postponed")] | length' <<<"$OUT")" -ge 3 ] ||
	fail "no server.turnover-postponed events"
# postponed, never skipped: a host back, and they go on
before_back=$(lsc --json server list | jq '[.[] | select(.name | test("^m[1-3]$")) | .turnovers] | add')
agent_start h2 --driver libvirt --uri test:///default --config "$LSC_SCRATCH/agent.conf"
wait_until 20 hosts_up 2
more() { lsc --json server list | jq -e "[.[] | select(.name | test(\"^m[1-3]$\")) | .turnovers] | add > $before_back"; }
wait_until 30 more
expect_eq "$(ids)" "$before" "identities after everything"

# --- a stopped mayfly just stops: no death, no turnover
expect_exit 0 lsc server stop m1 --wait --wait-timeout 30
expect_exit 0 lsc server stop m2 --wait --wait-timeout 30
expect_exit 0 lsc server stop m3 --wait --wait-timeout 30
expect_eq "$(lsc --json server list | jq -c '[.[] | select(.name | test("^m[1-3]$"))
	| select(.expires_at != null or .turnover_to != null)]')" "[]" "stopped mayflies with a death"

# --- the reservation holds the rebirth's room: two small hosts (2 vCPUs), fly on X, one
# filler on each, so the other host Y has one free vCPU. lscd dies just after fly's
# death committed (row made so by hand, rebirth reserved on Y) and a new server n is
# started meanwhile. The restarted lscd holds Y for fly: n waits for X to free up,
# where fly's old copy was, instead of taking Y.
cat >"$LSC_SCRATCH/small-a.conf" <<CONF
[agent]
vcpus = 2
labels = pool=r,slot=a
destroy_budget_ms = 500
CONF
sed 's/slot=a/slot=b/' "$LSC_SCRATCH/small-a.conf" >"$LSC_SCRATCH/small-b.conf"
agent_start r1 --driver libvirt --uri test:///default --config "$LSC_SCRATCH/small-a.conf"
agent_start r2 --driver libvirt --uri test:///default --config "$LSC_SCRATCH/small-b.conf"
wait_until 20 hosts_up 4
lsc server create fa --vcpus 1 --memory 128 --require-label slot=a >/dev/null
lsc server create fb --vcpus 1 --memory 128 --require-label slot=b >/dev/null
lsc server create fly --vcpus 1 --memory 128 --require-label pool=r --lifetime 1h >/dev/null
lsc server create n --vcpus 1 --memory 128 --require-label pool=r >/dev/null
expect_exit 0 lsc server start fa fb --wait --wait-timeout 30
expect_exit 0 lsc server start fly --wait --wait-timeout 30
fx=$(lsc --json server show fly | jq -r .host)
case $fx in r1) fy=r2 ;; r2) fy=r1 ;; *) fail "fly landed on $fx, not on r1 or r2" ;; esac
lscd_kill9
sql "BEGIN;
	UPDATE servers SET state = 'stopping', turnover_to = '$fy', updated_at = now(),
		reason = 'turnover: lifetime over; reborn on $fy' WHERE name = 'fly';
	UPDATE servers SET desired = 'running', state = 'pending', reason = 'waiting for a host' WHERE name = 'n';
	COMMIT;" >/dev/null
lscd_start
settled() { lsc --json server list | jq -e '[.[] | select(.name == "fly" or .name == "n")]
	| all(.state == "running")'; }
wait_until 40 settled
expect_eq "$(lsc --json server show fly | jq -r '.host + " " + (.turnovers | tostring)')" "$fy 1" \
	"fly's rebirth (reserved on $fy)"
expect_eq "$(lsc --json server show n | jq -r .host)" "$fx" "n, placed while fly's rebirth held $fy"
echo "reservation held: fly reborn on $fy, n waited for $fx"

# --- nowhere else to go: solo may run only on r1 (slot=a), which it fills. With
# mayfly_in_place = 0 its death is postponed; with 1 (the default) it is reborn on r1,
# in the room its old copy gives back (break before make on one host).
expect_exit 0 lsc server stop fly --wait --wait-timeout 30
expect_exit 0 lsc server stop n --wait --wait-timeout 30
sa=$(lsc --json host list | jq -r '.[] | select(.labels.slot == "a") | .name')
lsc server create solo --vcpus 1 --memory 128 --require-label slot=a --lifetime 2s >/dev/null
expect_exit 0 lsc server start solo --wait --wait-timeout 30
solo_postponed() { lsc --json server show solo | jq -e '.postponed >= 1 and .turnovers == 0'; }
wait_until 20 solo_postponed
# ... and with it the group budget: the cloud's is now max(1, 100% of 8), but the three
# m's, in one group, turn over one at a time (mayfly_group_max = 1)
lsc group create flies --max-per-host 3 >/dev/null
for m in m1 m2 m3; do lsc server edit "$m" --group flies >/dev/null; done
sed -i -e 's/^mayfly_in_place = 0$/mayfly_in_place = 1/' -e 's/^turnover_max_pct = 10$/turnover_max_pct = 100/' \
	"$LSC_SCRATCH/lscd.conf"
last_event=$(lsc --json events --limit 1 | jq '.[0].id')
lscd_restart
expect_exit 0 lsc server start m1 m2 m3 --wait --wait-timeout 30
m_turns=$(lsc --json server list | jq '[.[] | select(.name | test("^m[1-3]$")) | .turnovers] | min')
solo_turned() { lsc --json server show solo | jq -e ".turnovers >= 2 and .host == \"$sa\""; }
wait_until 40 solo_turned
group_turned() { lsc --json server list | jq -e "[.[] | select(.name | test(\"^m[1-3]$\")) | .turnovers]
	| min >= $((m_turns + 2))"; }
wait_until 40 group_turned
expect_exit 0 lsc --json events --limit 10000
expect_eq "$(jq "[sort_by(.id)[] | select(.id > $last_event and ((.server // \"\") | test(\"^m[1-3]$\")))
	| if .kind == \"server.turnover\" and .detail.state == \"stopping\" then 1
	  elif .kind == \"server.running\" and (.detail.reason | startswith(\"turnover\")) then -1 else empty end]
	| reduce .[] as \$d ({n: 0, max: 0}; .n += \$d | .max = ([.max, .n] | max)) | .max" <<<"$OUT")" 1 \
	"the group's turnovers at once"
expect_eq "$(ids)" "$before" "identities after the group's turnovers"
expect_exit 0 lsc --json events --server solo --limit 1000
expect_eq "$(jq '[.[] | select(.kind == "server.turnover" and .detail.state == "stopping")
	| select(.detail.turnover_to != .detail.host)] | length' <<<"$OUT")" 0 "solo's deaths reserved elsewhere"
echo "in place: solo turned over on $sa after $(lsc --json server show solo | jq .postponed) postponements"

# --- never two live copies: every instance's life on every host, from the agents' logs
# ("driver OP NAME (UUID) generation G: intent|returned|failed at boot T us")
awk '
function endall(agent, t,   k) { for (k = 1; k <= n; k++) if (ag[k] == agent && en[k] < 0) en[k] = t }
/test: agent gone at boot/ { endall(FILENAME, $(NF - 1)); next }
/: driver (instantiate|destroy|shutdown) / {
	rest = substr($0, index($0, ": driver ") + 9)
	c = split(rest, f, " ")
	for (gi = 1; gi <= c && f[gi] != "generation"; gi++);
	if (gi > c) next
	op = f[1]; uuid = f[gi - 1]; gsub(/[()]/, "", uuid)
	g = f[gi + 1]; sub(/:$/, "", g); what = f[gi + 2]; t = f[gi + 5]
	if (op == "instantiate" && what == "intent") {
		n++; uu[n] = uuid; ag[n] = FILENAME; ge[n] = g + 0; st[n] = t + 0; en[n] = -1
	} else if ((op == "instantiate" && what == "failed") || (op != "instantiate" && what == "returned")) {
		for (k = 1; k <= n; k++)
			if (ag[k] == FILENAME && en[k] < 0 && uu[k] == uuid &&
			    (op == "instantiate" ? ge[k] == g + 0 : ge[k] <= g + 0))
				en[k] = t + 0
	}
}
END {
	bad = 0
	for (a = 1; a <= n; a++)
		for (b = a + 1; b <= n; b++) {
			if (uu[a] != uu[b] || (ag[a] == ag[b] && ge[a] == ge[b])) continue
			ea = en[a] < 0 ? 9e18 : en[a]; eb = en[b] < 0 ? 9e18 : en[b]
			if (st[a] < eb && st[b] < ea) {
				printf "two live copies of %s: g%d on %s and g%d on %s\n", uu[a], ge[a], ag[a], ge[b], ag[b]
				bad = 1
			}
		}
	printf "%d instance lives checked for overlaps\n", n
	exit bad
}' "$LSC_SCRATCH"/agent-*.log || fail "two live copies of one identity (above)"
echo ok
