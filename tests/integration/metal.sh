#!/usr/bin/env bash
# Driver metal against real BMCs (ipmi_sim, one per machine, each with a chassis script
# recording what it is asked): binding a metal identity sets PXE, powers on and writes
# the iPXE script and dnsmasq entries carrying the identity; it runs only once the
# machine calls back. Losing the machine's agent ends in lscd's fence worker powering
# it off (recorded) before the identity is bound again; with the BMC silent, the
# identity waits in fencing until `lsc host confirm-off`, an audited event.
set -euo pipefail
. "$LSC_TEST_LIB/pg.sh"
. "$LSC_TEST_LIB/lscd.sh"
command -v ipmi_sim >/dev/null || { echo "ipmi_sim missing: install openipmi (deploy/packages)" >&2; exit 1; }
lsc_test_setup --agents
SIM="$LSC_TEST_LIB/ipmi-sim"
sims=()
metal_cleanup() {
	local rc=$? d
	set +e
	for d in "${!AGENT_PIDS[@]}"; do agent_stop "$d"; done    # before their BMCs go
	for d in "${sims[@]}"; do "$SIM" stop "$d" || true; done
	(exit "$rc")         # lsc_test_cleanup takes the test's status from $?
	lsc_test_cleanup
}
trap metal_cleanup EXIT

LEASE_MS=4000
GRACE_MS=2000
BOOT=$LSC_SCRATCH/boot
mkdir -p "$BOOT"
umask 077
echo secret >"$LSC_SCRATCH/bmc.password"
umask 022

# machine NAME MAC: a BMC simulator for it and an agent config
machine() {
	local name=$1 mac=$2 dir=$LSC_SCRATCH/bmc-$1 port cb
	mkdir -p "$dir"
	port=$("$SIM" start "$dir") || fail "ipmi_sim for $name did not start"
	sims+=("$dir")
	cb=$(pg_free_port)
	cat >"$LSC_SCRATCH/$name.conf" <<CONF
[agent]
driver = metal
vcpus = 8
memory_mib = 16384
disk_gib = 100
bmc_address = 127.0.0.1
bmc_port = $port
bmc_user = admin
bmc_password_file = $LSC_SCRATCH/bmc.password
bmc_timeout_ms = 1000
bmc_retries = 1
mac = $mac
boot_dir = $BOOT
boot_listen = 127.0.0.1:$cb
boot_kernel = vmlinuz
boot_initrd = initrd.img
boot_timeout_ms = 30000
watchdog = none
driver_slow_ms = 60000
CONF
	echo "$cb" >"$dir/callback-port"
}
machine m1 52:54:00:aa:00:01
machine m2 52:54:00:aa:00:02
mac_key() { tr -d : <<<"$1"; }
declare -A MAC=([m1]=52:54:00:aa:00:01 [m2]=52:54:00:aa:00:02)

# --- bad settings: a clear error naming key and value; the agent does not start
expect_exit 2 "$LSC_BIN/lsc-agent" --name bad --config "$LSC_SCRATCH/m1.conf" --log-level nope
sed 's/^mac = .*/mac = zz:00/' "$LSC_SCRATCH/m1.conf" >"$LSC_SCRATCH/bad.conf"
expect_exit 2 "$LSC_BIN/lsc-agent" --name bad --config "$LSC_SCRATCH/bad.conf" --print-public-key
expect_contains "$ERR" 'invalid mac "zz:00"'
sed 's/^bmc_port = .*/bmc_port = 70000/' "$LSC_SCRATCH/m1.conf" >"$LSC_SCRATCH/bad.conf"
expect_exit 2 "$LSC_BIN/lsc-agent" --name bad --config "$LSC_SCRATCH/bad.conf" --print-public-key
expect_contains "$ERR" 'invalid bmc_port "70000"'
grep -v '^boot_kernel' "$LSC_SCRATCH/m1.conf" >"$LSC_SCRATCH/bad.conf"
expect_exit 2 "$LSC_BIN/lsc-agent" --name bad --config "$LSC_SCRATCH/bad.conf" --print-public-key
expect_contains "$ERR" 'driver metal needs boot_kernel'
cp "$LSC_SCRATCH/bmc.password" "$LSC_SCRATCH/open.password"; chmod 644 "$LSC_SCRATCH/open.password"
sed "s|^bmc_password_file = .*|bmc_password_file = $LSC_SCRATCH/open.password|" "$LSC_SCRATCH/m1.conf" >"$LSC_SCRATCH/bad.conf"
expect_exit 2 "$LSC_BIN/lsc-agent" --name bad --config "$LSC_SCRATCH/bad.conf" --print-public-key
expect_contains "$ERR" 'may be read by others'
[ ! -e "$LSC_SCRATCH/bad" ] || fail "a refused agent created its state dir"

# --- lscd with the machines' BMCs for its fence worker
{
	for m in m1 m2; do
		printf '[bmc %s]\naddress = 127.0.0.1\nport = %s\nuser = admin\npassword_file = %s\ntimeout_ms = 1000\nretries = 1\n' \
			"$m" "$(cat "$LSC_SCRATCH/bmc-$m/port")" "$LSC_SCRATCH/bmc.password"
	done
} >"$LSC_SCRATCH/lscd.conf"
LSCD_ARGS+=(--lease-ttl-ms "$LEASE_MS" --grace-ms "$GRACE_MS" --config "$LSC_SCRATCH/lscd.conf")
lscd_restart
for m in m1 m2; do agent_start "$m" --config "$LSC_SCRATCH/$m.conf"; done
hosts_up() { [ "$(lsc --json host list | jq '[.[] | select(.liveness == "up")] | length')" -eq "$1" ]; }
wait_until 20 hosts_up 2
expect_eq "$(lsc --json host show m1 | jq -r '.driver + " " + .kind')" "metal metal" "m1's driver and kind"

lsc pool create lan --cidr 10.60.0.0/24 --gateway 10.60.0.1 >/dev/null
lsc server create db1 --kind metal --vcpus 4 --memory 8192 --disk 50 --hostname db1.lan.example >/dev/null
UUID=$(lsc --json server show db1 | jq -r .uuid)
IP=$(lsc --json server show db1 | jq -r '.ips[0]')
expect_eq "$IP" 10.60.0.2 "db1's IP"

# callback HOST GENERATION: what the booted initrd does; prints the HTTP status
callback() {
	curl -s -o /dev/null -w '%{http_code}' \
		"http://127.0.0.1:$(cat "$LSC_SCRATCH/bmc-$1/callback-port")/booted?uuid=$UUID&generation=$2"
}
field() { lsc --json server show db1 | jq -r ".$1"; }
state_is() { [ "$(field state)" = "$1" ]; }
# bound_on STATE GEN: db1 is in STATE with generation GEN; prints its host
bound_on() { [ "$(field state)" = "$1" ] && [ "$(field generation)" = "$2" ] && [ -n "$(field host)" ]; }

# --- binding: PXE, power on, the iPXE script and DHCP entry carry the identity
expect_exit 0 lsc server start db1
wait_until 20 bound_on binding 1
A=$(field host)
B=$([ "$A" = m1 ] && echo m2 || echo m1)
echo "db1 bound to $A (the other machine: $B)"
wait_until 10 grep -q "set power 1" "$LSC_SCRATCH/bmc-$A/calls"
grep -q "set boot pxe" "$LSC_SCRATCH/bmc-$A/calls" || fail "PXE boot was not set on $A: $(cat "$LSC_SCRATCH/bmc-$A/calls")"
[ "$(grep -n 'set boot pxe' "$LSC_SCRATCH/bmc-$A/calls" | head -1 | cut -d: -f1)" -lt \
  "$(grep -n 'set power 1' "$LSC_SCRATCH/bmc-$A/calls" | head -1 | cut -d: -f1)" ] || fail "power went on before PXE was set"
expect_eq "$(cat "$LSC_SCRATCH/bmc-$A/power")" 1 "$A's power"
expect_eq "$(cat "$LSC_SCRATCH/bmc-$B/power")" 0 "$B's power"
script=$BOOT/lsc-$(mac_key "${MAC[$A]}").ipxe
[ -f "$script" ] || fail "no iPXE script $script"
s=$(cat "$script")
expect_contains "$s" "#!ipxe"
expect_contains "$s" "kernel vmlinuz"
expect_contains "$s" "lsc.uuid=$UUID"
expect_contains "$s" "lsc.generation=1"
expect_contains "$s" "lsc.hostname=db1.lan.example"
expect_contains "$s" "lsc.ip=$IP"
expect_contains "$s" "initrd --name initrd initrd.img"
expect_eq "$(cat "$BOOT/hosts/$(mac_key "${MAC[$A]}")")" "${MAC[$A]},set:lsc$(mac_key "${MAC[$A]}"),$IP,db1.lan.example" "dnsmasq host entry"
expect_contains "$(cat "$BOOT/opts/$(mac_key "${MAC[$A]}")")" "option:bootfile-name,lsc-$(mac_key "${MAC[$A]}").ipxe"

# --- running means booted: powered, it stays binding until the machine calls back
sleep 2
expect_eq "$(field state)" binding "db1 powered but not booted"
expect_eq "$(callback "$A" 7)" 409 "a callback for another generation"
expect_eq "$(callback "$B" 1)" 409 "a callback to the machine that does not hold it"
expect_eq "$(field state)" binding "db1 after wrong callbacks"
expect_eq "$(callback "$A" 1)" 200 "the boot callback"
wait_until 10 bound_on running 1

# --- the agent of A dies: lscd's fence worker powers A off before db1 is bound again
t0=$(date +%s%3N)
kill -KILL "${AGENT_PIDS[$A]}"
wait "${AGENT_PIDS[$A]}" 2>/dev/null || true
unset "AGENT_PIDS[$A]"
wait_until 30 bound_on binding 2
expect_eq "$(field host)" "$B" "db1 bound again to"
expect_eq "$(cat "$LSC_SCRATCH/bmc-$A/power")" 0 "$A's power when db1 was bound again"
grep -q "set power 0" "$LSC_SCRATCH/bmc-$A/calls" || fail "nobody powered $A off"
ms=$(($(date +%s%3N) - t0))
echo "agent of $A killed -> fenced -> db1 binding on $B: $ms ms (lease $LEASE_MS + grace $GRACE_MS)"
[ "$ms" -ge $((LEASE_MS + GRACE_MS - 1000)) ] || fail "db1 moved after $ms ms, before the lease ran out"
expect_exit 0 lsc --json events --server db1
expect_eq "$(jq -r '[.[] | .kind] | join(" ")' <<<"$OUT")" \
	"server.create server.start server.binding server.running server.lost server.fencing server.fenced server.binding" "db1's events"
expect_contains "$(jq -r '.[] | select(.kind == "server.fenced") | .detail.reason' <<<"$OUT")" "BMC of host $A confirmed power off"
wait_until 10 grep -q "set power 1" "$LSC_SCRATCH/bmc-$B/calls"
expect_contains "$(cat "$BOOT/lsc-$(mac_key "${MAC[$B]}").ipxe")" "lsc.generation=2"
expect_eq "$(callback "$B" 2)" 200 "the boot callback on $B"
wait_until 10 bound_on running 2
for k in uuid ips hostname; do
	[ "$(field "$k")" != null ] || fail "db1 lost its $k"
done
expect_eq "$(field uuid)" "$UUID" "db1's uuid after the move"
expect_eq "$(field 'ips[0]')" "$IP" "db1's IP after the move"

# --- B's BMC goes silent and B's agent dies: db1 waits in fencing
"$SIM" stop "$LSC_SCRATCH/bmc-$B"
agent_start "$A" --config "$LSC_SCRATCH/$A.conf"      # a free machine again
kill -KILL "${AGENT_PIDS[$B]}"
wait "${AGENT_PIDS[$B]}" 2>/dev/null || true
unset "AGENT_PIDS[$B]"
wait_until 30 state_is fencing
sleep 4            # several fence attempts fail meanwhile
expect_eq "$(field state)" fencing "db1 while $B's BMC is silent"
grep -q "host $B: fencing failed" "$LSC_SCRATCH/lscd.log" || fail "lscd logged no failed fencing of $B"
# confirm-off is refused where it would change nothing
expect_exit 1 lsc host confirm-off "$A"
expect_contains "$ERR" "is up"
expect_exit 1 lsc host confirm-off nosuch
expect_one_line_error
expect_eq "$(field state)" fencing "db1 after refused confirm-offs"
expect_exit 0 lsc host confirm-off "$B"
wait_until 20 bound_on binding 3
expect_eq "$(field host)" "$A" "db1 bound after confirm-off to"
expect_exit 0 lsc --json events --limit 1000
ev=$(jq -c ".[] | select(.kind == \"host.confirm-off\")" <<<"$OUT")
[ -n "$ev" ] || fail "no host.confirm-off event"
expect_eq "$(jq -r .detail.host <<<"$ev")" "$B" "confirm-off event's host"
expect_contains "$(jq -r .actor <<<"$ev")" "uid=$(id -u)" "confirm-off event's actor"
expect_exit 0 lsc --json events --server db1
expect_contains "$(jq -r '[.[] | select(.kind == "server.fenced")] | last | .detail.reason' <<<"$OUT")" "confirmed host $B off by hand"
expect_eq "$(callback "$A" 3)" 200 "the boot callback on $A again"
wait_until 10 bound_on running 3

# --- stop: the machine is powered off and its boot entries removed
expect_exit 0 lsc server stop db1
wait_until 20 state_is defined
expect_eq "$(cat "$LSC_SCRATCH/bmc-$A/power")" 0 "$A's power after stop"
[ ! -e "$BOOT/lsc-$(mac_key "${MAC[$A]}").ipxe" ] || fail "the iPXE script outlived the binding"
[ ! -e "$BOOT/hosts/$(mac_key "${MAC[$A]}")" ] || fail "the DHCP entry outlived the binding"
echo ok
