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
	local d
	for d in "${sims[@]}"; do "$SIM" stop "$d" || true; done
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
