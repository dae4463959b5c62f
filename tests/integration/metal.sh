#!/usr/bin/env bash
# Driver metal against real BMCs (ipmi_sim, one per machine, each with a chassis script
# recording what it is asked). A pool agent (one process, machines m1 and m2, each its
# own host) and a single-machine agent (m3). Binding a metal identity sets PXE, powers
# on and writes the iPXE script and dnsmasq entries carrying the identity; it runs
# only once the machine calls back; a machine holds one identity. Losing the agent
# ends in lscd's fence worker powering the machine off (recorded) before the identity
# is bound again; with the BMC silent, the identity waits in fencing until
# `lsc host confirm-off`, an audited event naming the operator.
set -euo pipefail
. "$LSC_TEST_LIB/pg.sh"
. "$LSC_TEST_LIB/lscd.sh"
command -v ipmi_sim >/dev/null || { echo "ipmi_sim missing: install openipmi (deploy/packages)" >&2; exit 1; }
lsc_test_setup --agents
SIM="$LSC_TEST_LIB/ipmi-sim"
sims=()
NS_S=lscmt-$$-s NS_C=lscmt-$$-c DNSMASQ_PID=
metal_cleanup() {
	local rc=$? d
	set +e
	[ -z "$DNSMASQ_PID" ] || { kill "$DNSMASQ_PID"; wait "$DNSMASQ_PID"; }
	ip netns del "$NS_S" 2>/dev/null
	ip netns del "$NS_C" 2>/dev/null
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

# machine NAME MAC: a BMC simulator for it; its own keys in NAME.keys
machine() {
	local name=$1 mac=$2 dir=$LSC_SCRATCH/bmc-$1 port cb
	mkdir -p "$dir"
	port=$("$SIM" start "$dir") || fail "ipmi_sim for $name did not start"
	sims+=("$dir")
	cb=$(pg_free_port)
	printf 'bmc_port = %s\nmac = %s\nboot_listen = 127.0.0.1:%s\n' "$port" "$mac" "$cb" >"$LSC_SCRATCH/$name.keys"
	echo "$cb" >"$dir/callback-port"
}
common() {
	cat <<CONF
[agent]
driver = metal
vcpus = 8
memory_mib = 16384
disk_gib = 100
bmc_address = 127.0.0.1
bmc_user = admin
bmc_password_file = $LSC_SCRATCH/bmc.password
bmc_timeout_ms = 1000
bmc_retries = 1
boot_dir = $BOOT
boot_kernel = vmlinuz
boot_initrd = initrd.img
boot_timeout_ms = 30000
driver_slow_ms = 60000
CONF
}
machine m1 52:54:00:aa:00:01
machine m2 52:54:00:aa:00:02
machine m3 52:54:00:aa:00:03
{ common; for m in m1 m2; do echo "[machine $m]"; cat "$LSC_SCRATCH/$m.keys"; done; } >"$LSC_SCRATCH/pool.conf"
{ common; cat "$LSC_SCRATCH/m3.keys"; } >"$LSC_SCRATCH/m3.conf"
mac_key() { tr -d : <<<"$1"; }
declare -A MAC=([m1]=52:54:00:aa:00:01 [m2]=52:54:00:aa:00:02 [m3]=52:54:00:aa:00:03)

# --- bad settings: a clear error naming key and value; the agent does not start
expect_exit 2 "$LSC_BIN/lsc-agent" --name bad --config "$LSC_SCRATCH/m3.conf" --log-level nope
sed 's/^mac = .*/mac = zz:00/' "$LSC_SCRATCH/m3.conf" >"$LSC_SCRATCH/bad.conf"
expect_exit 2 "$LSC_BIN/lsc-agent" --name bad --config "$LSC_SCRATCH/bad.conf" --print-public-key
expect_contains "$ERR" 'invalid mac "zz:00"'
sed 's/^bmc_port = .*/bmc_port = 70000/' "$LSC_SCRATCH/m3.conf" >"$LSC_SCRATCH/bad.conf"
expect_exit 2 "$LSC_BIN/lsc-agent" --name bad --config "$LSC_SCRATCH/bad.conf" --print-public-key
expect_contains "$ERR" 'invalid bmc_port "70000"'
grep -v '^boot_kernel' "$LSC_SCRATCH/m3.conf" >"$LSC_SCRATCH/bad.conf"
expect_exit 2 "$LSC_BIN/lsc-agent" --name bad --config "$LSC_SCRATCH/bad.conf" --print-public-key
expect_contains "$ERR" 'driver metal needs boot_kernel'
cp "$LSC_SCRATCH/bmc.password" "$LSC_SCRATCH/open.password"; chmod 644 "$LSC_SCRATCH/open.password"
sed "s|^bmc_password_file = .*|bmc_password_file = $LSC_SCRATCH/open.password|" "$LSC_SCRATCH/m3.conf" >"$LSC_SCRATCH/bad.conf"
expect_exit 2 "$LSC_BIN/lsc-agent" --name bad --config "$LSC_SCRATCH/bad.conf" --print-public-key
expect_contains "$ERR" 'may be read by others'
{ cat "$LSC_SCRATCH/pool.conf"; printf '[machine m9]\nmac = 52:54:00:aa:00:09\n'; } >"$LSC_SCRATCH/bad.conf"
expect_exit 2 "$LSC_BIN/lsc-agent" --config "$LSC_SCRATCH/bad.conf" --print-public-key
expect_contains "$ERR" '[machine m9]: driver metal needs boot_listen'
[ ! -e "$LSC_SCRATCH/bad" ] || fail "a refused agent created its state dir"

# --- lscd with the machines' BMCs for its fence worker
{
	for m in m1 m2 m3; do
		printf '[bmc %s]\naddress = 127.0.0.1\nport = %s\nuser = admin\npassword_file = %s\ntimeout_ms = 1000\nretries = 1\n' \
			"$m" "$(cat "$LSC_SCRATCH/bmc-$m/port")" "$LSC_SCRATCH/bmc.password"
	done
} >"$LSC_SCRATCH/lscd.conf"
# a bad [bmc HOST] section stops lscd at start, naming section, key and value
printf '[bmc m1]\naddress = 127.0.0.1\nport = 99999\n' >"$LSC_SCRATCH/lscd-bad.conf"
expect_exit 1 "$LSC_BIN/lscd" --db "$PG_CONNINFO" --listen "ipc://$LSC_SCRATCH/bad.sock" --config "$LSC_SCRATCH/lscd-bad.conf"
expect_contains "$ERR" '[bmc m1]: invalid port "99999"'
printf '[bmc m1]\naddress = 127.0.0.1\nuser = admin\n' >"$LSC_SCRATCH/lscd-bad.conf"
expect_exit 1 "$LSC_BIN/lscd" --db "$PG_CONNINFO" --listen "ipc://$LSC_SCRATCH/bad.sock" --config "$LSC_SCRATCH/lscd-bad.conf"
expect_contains "$ERR" '[bmc m1] needs address, user and password_file'
LSCD_ARGS+=(--lease-ttl-ms "$LEASE_MS" --grace-ms "$GRACE_MS" --config "$LSC_SCRATCH/lscd.conf")
lscd_restart

# the pool: one process, one host per [machine]; each machine's key enrolled
POOL=(--config "$LSC_SCRATCH/pool.conf" --state-dir "$LSC_SCRATCH/agents/pool")
"$LSC_BIN/lsc-agent" "${POOL[@]}" --print-public-key >"$LSC_SCRATCH/pool.keys" || fail "no pool keys"
expect_eq "$(cut -d' ' -f1 "$LSC_SCRATCH/pool.keys" | tr '\n' ' ')" "m1 m2 " "the pool's machines"
while read -r m key; do echo "$key" >"$LSC_SCRATCH/keys/$m.pub"; done <"$LSC_SCRATCH/pool.keys"
pool_start() {
	"$LSC_BIN/lsc-agent" "${POOL[@]}" --manager "tcp://127.0.0.1:$LSC_AGENT_PORT" \
		--manager-key "$LSC_SCRATCH/lscd.pub" --log-level debug </dev/null >>"$LSC_SCRATCH/agent-pool.log" 2>&1 &
	AGENT_PIDS[pool]=$!
}
agent_kill9() {
	kill -KILL "${AGENT_PIDS[$1]}"
	wait "${AGENT_PIDS[$1]}" 2>/dev/null || true
	unset "AGENT_PIDS[$1]"
}
pool_start
hosts_up() { [ "$(lsc --json host list | jq '[.[] | select(.liveness == "up")] | length')" -eq "$1" ]; }
wait_until 20 hosts_up 2
expect_eq "$(lsc --json host show m1 | jq -r '.driver + " " + .kind')" "metal metal" "m1's driver and kind"

lsc pool create lan --cidr 10.60.0.0/24 --gateway 10.60.0.1 >/dev/null
lsc server create db1 --kind metal --vcpus 4 --memory 8192 --disk 50 --hostname db1.lan.example >/dev/null
UUID=$(lsc --json server show db1 | jq -r .uuid)
IP=$(lsc --json server show db1 | jq -r '.ips[0]')
expect_eq "$IP" 10.60.0.2 "db1's IP"

# callback MACHINE GENERATION [UUID]: what the booted initrd does; prints the HTTP status
callback() {
	curl -s -o /dev/null -w '%{http_code}' \
		"http://127.0.0.1:$(cat "$LSC_SCRATCH/bmc-$1/callback-port")/booted?uuid=${3:-$UUID}&generation=$2"
}
field() { lsc --json server show "${2:-db1}" | jq -r ".$1"; }
state_is() { [ "$(field state "${2:-db1}")" = "$1" ]; }
# bound_on STATE GEN [SERVER]: the server is in STATE with generation GEN on some host
bound_on() { [ "$(field state "${3:-db1}")" = "$1" ] && [ "$(field generation "${3:-db1}")" = "$2" ] && [ -n "$(field host "${3:-db1}")" ]; }

# --- binding: PXE, power on, the iPXE script and DHCP entry carry the identity
expect_exit 0 lsc server start db1
wait_until 20 bound_on binding 1
A=$(field host)
B=$([ "$A" = m1 ] && echo m2 || echo m1)
echo "db1 bound to $A (the pool's other machine: $B)"
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

# lscd's own DHCP file (MACs lscd allocated) leaves metal out: the machine's MAC is the key
wait_until 10 test -f "$LSC_SCRATCH/dhcp-hosts"
if grep -q ",$IP," "$LSC_SCRATCH/dhcp-hosts"; then fail "lscd's DHCP file maps an allocated MAC to db1's IP"; fi

# --- dnsmasq from the agent's boot dir, in namespaces of this test: the machine's NIC
# gets the identity's IP and, as iPXE, its script by TFTP (plain PXE: iPXE first)
expect_contains "$(cat "$BOOT/dnsmasq.conf")" "dhcp-hostsdir=$BOOT/hosts"
ip netns add "$NS_S"
ip netns add "$NS_C"
ip link add "lscmt$$a" type veth peer name "lscmt$$b"
ip link set "lscmt$$a" netns "$NS_S"
ip link set "lscmt$$b" netns "$NS_C"
ip -n "$NS_S" addr add 10.60.0.1/24 dev "lscmt$$a"
ip -n "$NS_S" link set "lscmt$$a" up
ip -n "$NS_C" link set "lscmt$$b" address "${MAC[$A]}"
ip -n "$NS_C" link set "lscmt$$b" up
ip netns exec "$NS_S" dnsmasq --keep-in-foreground --conf-file="$BOOT/dnsmasq.conf" --interface="lscmt$$a" \
	--bind-interfaces --dhcp-range=10.60.0.0,static,255.255.255.0 --port=0 \
	--dhcp-leasefile="$LSC_SCRATCH/dnsmasq.leases" --log-facility="$LSC_SCRATCH/dnsmasq.log" --log-dhcp &
DNSMASQ_PID=$!
cat >"$LSC_SCRATCH/udhcpc.sh" <<SCRIPT
#!/bin/sh
[ "\$1" = bound ] || exit 0
echo "ip=\$ip bootfile=\$bootfile" >"\$LEASE"
busybox ip addr replace "\$ip/24" dev "\$interface"
SCRIPT
chmod 755 "$LSC_SCRATCH/udhcpc.sh"
dhcp() {   # dhcp FILE [udhcpc options]: the lease's ip and boot file into FILE
	local f=$1
	shift
	LEASE=$f timeout 20 ip netns exec "$NS_C" busybox udhcpc -i "lscmt$$b" -n -q -f -t 10 -T 1 \
		-s "$LSC_SCRATCH/udhcpc.sh" -O bootfile "$@" >>"$LSC_SCRATCH/udhcpc.log" 2>&1 ||
		fail "no DHCP lease for ${MAC[$A]}: $(tail -5 "$LSC_SCRATCH/dnsmasq.log")"
}
export LEASE
dhcp "$LSC_SCRATCH/lease.ipxe" -x 0xaf:01
expect_eq "$(cat "$LSC_SCRATCH/lease.ipxe")" "ip=$IP bootfile=lsc-$(mac_key "${MAC[$A]}").ipxe" "DHCP for iPXE"
dhcp "$LSC_SCRATCH/lease.pxe"
expect_eq "$(cat "$LSC_SCRATCH/lease.pxe")" "ip=$IP bootfile=undionly.kpxe" "DHCP for plain PXE"
ip netns exec "$NS_C" busybox tftp -g -r "lsc-$(mac_key "${MAC[$A]}").ipxe" -l "$LSC_SCRATCH/tftp.ipxe" 10.60.0.1 ||
	fail "TFTP of the iPXE script failed"
cmp -s "$LSC_SCRATCH/tftp.ipxe" "$script" || fail "TFTP served another script"
kill "$DNSMASQ_PID"
wait "$DNSMASQ_PID" 2>/dev/null || true
DNSMASQ_PID=

# --- running means booted: powered, it stays binding until the machine calls back
sleep 2
expect_eq "$(field state)" binding "db1 powered but not booted"
expect_eq "$(callback "$A" 7)" 409 "a callback for another generation"
expect_eq "$(callback "$B" 1)" 409 "a callback to the machine that does not hold it"
expect_eq "$(field state)" binding "db1 after wrong callbacks"
expect_eq "$(callback "$A" 1)" 200 "the boot callback"
wait_until 10 bound_on running 1

# --- a machine holds one identity, however small: db2 gets B, db3 waits
lsc server create db2 --kind metal --vcpus 1 --memory 1024 >/dev/null
lsc server create db3 --kind metal --vcpus 1 --memory 1024 >/dev/null
expect_exit 0 lsc server start db2
wait_until 20 bound_on binding 1 db2
expect_eq "$(field host db2)" "$B" "db2's machine"
expect_eq "$(callback "$B" 1 "$(field uuid db2)")" 200 "db2's boot callback"
wait_until 10 bound_on running 1 db2
expect_exit 0 lsc server start db3
sleep 3
expect_eq "$(field state db3)" pending "db3 with both machines taken"
expect_exit 0 lsc server delete db3
expect_exit 0 lsc server stop db2
wait_until 20 state_is defined db2
expect_eq "$(cat "$LSC_SCRATCH/bmc-$B/power")" 0 "$B's power after db2 stopped"

# --- the pool agent dies: lscd's fence worker powers A off before db1 is bound again,
# on m3, whose agent starts now
agent_start m3 --config "$LSC_SCRATCH/m3.conf"
wait_until 20 hosts_up 3
t0=$(date +%s%3N)
agent_kill9 pool
wait_until 30 bound_on binding 2
expect_eq "$(field host)" m3 "db1 bound again to"
expect_eq "$(cat "$LSC_SCRATCH/bmc-$A/power")" 0 "$A's power when db1 was bound again"
grep -q "set power 0" "$LSC_SCRATCH/bmc-$A/calls" || fail "nobody powered $A off"
ms=$(($(date +%s%3N) - t0))
echo "pool agent killed -> $A fenced -> db1 binding on m3: $ms ms (lease $LEASE_MS + grace $GRACE_MS)"
[ "$ms" -ge $((LEASE_MS + GRACE_MS - 1000)) ] || fail "db1 moved after $ms ms, before the lease ran out"
expect_exit 0 lsc --json events --server db1
expect_eq "$(jq -r '[.[] | .kind] | join(" ")' <<<"$OUT")" \
	"server.create server.start server.binding server.running server.lost server.fencing server.fenced server.binding" "db1's events"
expect_contains "$(jq -r '.[] | select(.kind == "server.fenced") | .detail.reason' <<<"$OUT")" "BMC of host $A confirmed power off"
wait_until 10 grep -q "set power 1" "$LSC_SCRATCH/bmc-m3/calls"
expect_contains "$(cat "$BOOT/lsc-$(mac_key "${MAC[m3]}").ipxe")" "lsc.generation=2"
expect_eq "$(callback m3 2)" 200 "the boot callback on m3"
wait_until 10 bound_on running 2
expect_eq "$(field uuid)" "$UUID" "db1's uuid after the move"
expect_eq "$(field 'ips[0]')" "$IP" "db1's IP after the move"
expect_eq "$(field hostname)" db1.lan.example "db1's hostname after the move"

# --- m3's BMC goes silent and its agent dies: db1 waits in fencing
"$SIM" stop "$LSC_SCRATCH/bmc-m3"
pool_start                          # m1 and m2, free again
wait_until 20 hosts_up 3
agent_kill9 m3
wait_until 30 state_is fencing
sleep 4                             # fence attempts fail meanwhile
expect_eq "$(field state)" fencing "db1 while m3's BMC is silent"
grep -q "host m3: fencing failed" "$LSC_SCRATCH/lscd.log" || fail "lscd logged no failed fencing of m3"
# confirm-off is refused where it would change nothing
expect_exit 1 lsc host confirm-off m1
expect_contains "$ERR" "is up"
expect_exit 1 lsc host confirm-off nosuch
expect_one_line_error
expect_eq "$(field state)" fencing "db1 after refused confirm-offs"
expect_exit 0 lsc host confirm-off m3
wait_until 20 bound_on binding 3
C=$(field host)
[ "$C" = m1 ] || [ "$C" = m2 ] || fail "db1 bound after confirm-off to $C, not a free machine"
expect_exit 0 lsc --json events --limit 1000
ev=$(jq -c '.[] | select(.kind == "host.confirm-off")' <<<"$OUT")
[ -n "$ev" ] || fail "no host.confirm-off event"
expect_eq "$(jq -r .detail.host <<<"$ev")" m3 "confirm-off event's host"
expect_contains "$(jq -r .actor <<<"$ev")" "uid=$(id -u)" "confirm-off event's actor"
expect_exit 0 lsc --json events --server db1
expect_contains "$(jq -r '[.[] | select(.kind == "server.fenced")] | last | .detail.reason' <<<"$OUT")" "confirmed host m3 off by hand"
expect_eq "$(callback "$C" 3)" 200 "the boot callback on $C"
wait_until 10 bound_on running 3

# --- stop: the machine is powered off and its boot entries removed
expect_exit 0 lsc server stop db1
wait_until 20 state_is defined
expect_eq "$(cat "$LSC_SCRATCH/bmc-$C/power")" 0 "$C's power after stop"
[ ! -e "$BOOT/lsc-$(mac_key "${MAC[$C]}").ipxe" ] || fail "the iPXE script outlived the binding"
[ ! -e "$BOOT/hosts/$(mac_key "${MAC[$C]}")" ] || fail "the DHCP entry outlived the binding"
echo ok
