#!/usr/bin/env bash
# A real VM: an agent on qemu:///system boots an identity as a qemu domain, and a
# separate libvirt connection (virsh) sees it running with the identity's UUID and MAC;
# stopping the server removes the domain.
#
# Needs a libvirtd answering on qemu:///system: ./tests/run starts one as root (see
# tests/lib/libvirtd.sh, which also says why qemu runs as root under it); run alone as
# root (ctest -R qemu_vm), this test starts one itself and stops it at the end. Not
# root and no libvirtd: the test fails and says so; it is never skipped.
# The VM is small and diskless (the image debian-12 is no file in the agent's
# image_dir, so the driver boots without a disk); with TCG and no boot device it just
# sits in SeaBIOS/iPXE, which is "running" for libvirt. Domain type: the agent picks
# 'kvm' when qemu's user can open /dev/kvm, else 'qemu' (TCG).
set -euo pipefail
. "$LSC_TEST_LIB/pg.sh"
. "$LSC_TEST_LIB/lscd.sh"
. "$LSC_TEST_LIB/libvirtd.sh"

URI=qemu:///system
vsh() { timeout 60 virsh -q -c "$URI" "$@" </dev/null; }

t_begin=$(date +%s%3N)
command -v virsh >/dev/null || { echo "FAIL: virsh is not installed (libvirt-clients)" >&2; exit 1; }
lsc_test_setup --agents

DOMAIN_MAYBE=no   # yes from just before the start until the domain is seen gone
vm_cleanup() {
	local rc=$?
	set +e
	if [ "$DOMAIN_MAYBE" = yes ] && vsh dominfo "$NAME" >/dev/null 2>&1; then
		echo "cleanup: destroying and undefining domain $NAME" >&2
		vsh destroy "$NAME" >/dev/null 2>&1
		vsh undefine "$NAME" >/dev/null 2>&1
	fi
	local a
	for a in "${!AGENT_PIDS[@]}"; do agent_stop "$a"; done   # before its libvirtd goes
	libvirtd_stop_started
	return "$rc"
}
trap 'vm_cleanup; lsc_test_cleanup' EXIT

if ! libvirtd_answers; then
	[ "$(id -u)" -eq 0 ] || fail "$URI does not answer: run ./tests/run as root, or start libvirtd"
	libvirtd_ensure || fail "cannot start libvirtd for $URI"
fi

# The domain is named after the server: unique per run (the scratch dir's suffix), so
# it cannot be anyone else's domain on this host, and the cleanup touches only it.
NAME=lsc-qvm-$(printf '%s' "${LSC_SCRATCH##*.}" | tr '[:upper:]' '[:lower:]')
vsh dominfo "$NAME" >/dev/null 2>&1 && fail "a domain $NAME already exists on $URI"

# A TCG start is slow on a loaded CI machine: a generous driver_slow_ms keeps the host
# healthy meanwhile (lscd's own binding timeout is 60 s).
cat >"$LSC_SCRATCH/vmhost.conf" <<CONF
[agent]
driver_slow_ms = 120000
image_dir = $LSC_SCRATCH/images
CONF
mkdir -p "$LSC_SCRATCH/images"
agent_start vmhost --driver libvirt --uri "$URI" --config "$LSC_SCRATCH/vmhost.conf"
host_up() { [ "$(lsc --json host show vmhost | jq -r '.liveness + " " + (.healthy|tostring)')" = "up true" ]; }
wait_until 90 host_up
expect_eq "$(lsc --json host show vmhost | jq -r .driver)" libvirt "driver of vmhost"

expect_exit 0 lsc --json server create "$NAME" --vcpus 1 --memory 128 --disk 0
uuid=$(jq -r .uuid <<<"$OUT")
mac=$(jq -r '.macs[0]' <<<"$OUT")
expect_eq "$(jq -r '.macs | length' <<<"$OUT")" 1 "number of MACs"

DOMAIN_MAYBE=yes
t0=$(date +%s%3N)
expect_exit 0 lsc server start "$NAME" --wait --wait-timeout 240
start_ms=$(($(date +%s%3N) - t0))
expect_eq "$(lsc --json server show "$NAME" | jq -r '.state + " " + .host')" "running vmhost" "server after start"

# --- what libvirt itself says, through a connection of our own
expect_exit 0 vsh dominfo "$NAME"
state=$(sed -n 's/^State:[[:space:]]*//p' <<<"$OUT")
expect_eq "$state" running "domain state (virsh dominfo)"
expect_eq "$(sed -n 's/^UUID:[[:space:]]*//p' <<<"$OUT")" "$uuid" "domain UUID (virsh dominfo)"
expect_exit 0 vsh dumpxml "$NAME"
xml=$OUT
expect_eq "$(sed -n 's|^ *<uuid>\(.*\)</uuid>.*|\1|p' <<<"$xml")" "$uuid" "<uuid> of the domain"
expect_eq "$(sed -n "s|.*<mac address='\([^']*\)'.*|\1|p" <<<"$xml" | tr '\n' ' ')" "$mac " \
	"<mac address> of the domain"
dtype=$(sed -n "1s|^<domain type='\([a-z]*\)'.*|\1|p" <<<"$xml")
case $dtype in qemu | kvm) ;; *) fail "domain type '$dtype' is neither qemu nor kvm" ;; esac
pid=$(cat "/run/libvirt/qemu/$NAME.pid" 2>/dev/null || true)
if [ -n "$pid" ]; then   # the qemu process itself (readable as root)
	grep -qz -- "$uuid" "/proc/$pid/cmdline" || fail "qemu (pid $pid) runs without -uuid $uuid"
fi

# --- stop: the domain is destroyed and undefined
expect_exit 0 lsc server stop "$NAME" --wait --wait-timeout 120
expect_eq "$(lsc --json server show "$NAME" | jq -r '.state + " " + (.host // "none")')" "defined none" \
	"server after stop"
gone() { ! vsh dominfo "$NAME"; }
wait_until 30 gone
vsh list --all --uuid | grep -qx "$uuid" && fail "a domain with UUID $uuid is still defined"
DOMAIN_MAYBE=no

printf 'ok: %s booted as a %s domain in %d.%03d s (start --wait), whole test %d s\n' "$NAME" "$dtype" \
	$((start_ms / 1000)) $((start_ms % 1000)) $((($(date +%s%3N) - t_begin) / 1000))
