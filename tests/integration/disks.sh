#!/usr/bin/env bash
# Persistent disks on real VMs, guarded by libvirt's lock manager (virtlockd).
# Two "hosts" on this machine: agents hosta and hostb, each on a libvirtd of this test's
# own (qemu:///system through its own socket, libvirtd_host_start: private mount
# namespace, its own virtlockd, lock_manager = "lockd"), sharing one volume_dir.
#  1. A persistent server starts: its volume volume_dir/UUID.qcow2 is made (a standalone
#     copy of the image: the image's marker is in it, no backing file), the domain
#     uses it, and a virtlockd holds a write lock on the file (/proc/locks).
#  2. A second domain on the same volume, defined and started by hand with virsh on
#     each host, is refused by the lock manager ("Lockspace resource ... is locked");
#     the first keeps running. That domain's qemu has its own image locking off (an
#     emulator wrapper), as a qemu on another host that qemu's OFD locks do not reach:
#     libvirt takes the lease only when it resumes the CPUs, after qemu opened the
#     disk, so with qemu's locking on, qemu's own "Failed to get "write" lock" comes
#     first on one machine and the lock manager is never asked.
#  3. Stop (the volume stays, the same inode), a marker written with qemu-io, start,
#     then `lsc server migrate --wait` to the other host: the same file, marker intact.
# Why two private libvirtds rather than the machine's (tests/run's) one: an agent
# reports every lsc domain its libvirt has and lscd destroys an instance on a host the
# identity is not bound to, so two agents on one libvirtd, or another test run's agents
# on the machine's libvirtd, would destroy each other's domains (seen while writing this).
# Needs root (it starts the libvirtds); never skipped.
set -euo pipefail
. "$LSC_TEST_LIB/pg.sh"
. "$LSC_TEST_LIB/lscd.sh"
. "$LSC_TEST_LIB/libvirtd.sh"

t_begin=$(date +%s%3N)
for tool in virsh qemu-img qemu-io jq; do
	command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "FAIL: needs root (a second libvirtd)" >&2; exit 1; }
lsc_test_setup --agents

SUFFIX=$(printf '%s' "${LSC_SCRATCH##*.}" | tr '[:upper:]' '[:lower:]')
NAME=lsc-disk-$SUFFIX
BYHAND=lsc-disk-byhand-$SUFFIX
declare -A URIS=()
declare -A LIBVIRTDS=([hosta]=dska-$SUFFIX [hostb]=dskb-$SUFFIX)   # dirs under LIBVIRTD_RUN_DIR
vsh() { local uri=$1; shift; timeout 60 virsh -q -c "$uri" "$@" </dev/null; }

disks_cleanup() {
	local rc=$?
	set +e
	local a
	for a in "${!AGENT_PIDS[@]}"; do agent_stop "$a"; done
	for a in "${!URIS[@]}"; do
		for d in "$NAME" "$BYHAND"; do
			vsh "${URIS[$a]}" dominfo "$d" >/dev/null 2>&1 || continue
			vsh "${URIS[$a]}" destroy "$d" >/dev/null 2>&1
			vsh "${URIS[$a]}" undefine "$d" >/dev/null 2>&1
		done
	done
	for a in "${!LIBVIRTDS[@]}"; do libvirtd_host_stop "${LIBVIRTDS[$a]}"; done
	return "$rc"
}
trap 'disks_cleanup; lsc_test_cleanup' EXIT

t0=$(date +%s%3N)
for a in hosta hostb; do
	libvirtd_host_start "${LIBVIRTDS[$a]}" || fail "cannot start a libvirtd for $a"
	URIS[$a]=$LIBVIRTD_HOST_URI
done
libvirtds_ms=$(($(date +%s%3N) - t0))

# A tiny base image with a marker; the volumes live in a directory both hosts share.
IMG=$LSC_SCRATCH/images
VOLS=$LSC_SCRATCH/volumes
mkdir -p "$IMG" "$VOLS"
qemu-img create -q -f qcow2 "$IMG/tiny.qcow2" 32M
qemu-io -c 'write -P 0xb1 0 64k' "$IMG/tiny.qcow2" >/dev/null
base_sum=$(sha256sum <"$IMG/tiny.qcow2")
for a in hosta hostb; do
	cat >"$LSC_SCRATCH/$a.conf" <<CONF
[agent]
driver_slow_ms = 120000
image_dir = $IMG
volume_dir = $VOLS
CONF
	agent_start "$a" --driver libvirt --uri "${URIS[$a]}" --config "$LSC_SCRATCH/$a.conf"
done
hosts_up() {
	[ "$(lsc --json host list | jq '[.[] | select(.liveness == "up" and .healthy)] | length')" = 2 ]
}
wait_until 90 hosts_up

expect_exit 0 lsc --json server create "$NAME" --vcpus 1 --memory 64 --disk 1 --disk-mode persistent \
	--image tiny
uuid=$(jq -r .uuid <<<"$OUT")
VOL=$VOLS/$uuid.qcow2

# running_on: the host the server runs on (running, and its domain runs there)
running_on() {
	local h
	h=$(lsc --json server show "$NAME" | jq -r 'select(.state == "running") | .host')
	[ -n "$h" ] && [ "$(vsh "${URIS[$h]}" domstate "$NAME" 2>/dev/null)" = running ] && echo "$h"
}
# uses_volume HOST: the domain on HOST has exactly one disk, the volume
uses_volume() {
	expect_exit 0 vsh "${URIS[$1]}" domblklist "$NAME"
	expect_eq "$(awk '{print $2}' <<<"$OUT")" "$VOL" "disk of $NAME on $1 (virsh domblklist)"
}
# marker PATTERN OFFSET: the volume holds 64 KiB of PATTERN at OFFSET (read-only, shared)
marker() {
	qemu-io -U -r -f qcow2 -c "read -P $1 $2 64k" "$VOL" >"$LSC_SCRATCH/qemu-io.out" 2>&1 ||
		fail "volume $VOL lacks pattern $1 at $2: $(head -n 2 "$LSC_SCRATCH/qemu-io.out")"
}

# --- 1. the first binding makes the volume; virtlockd holds it
t0=$(date +%s%3N)
expect_exit 0 lsc server start "$NAME" --wait --wait-timeout 240
start_ms=$(($(date +%s%3N) - t0))
h1=$(running_on) || fail "$NAME does not run after start --wait"
[ -f "$VOL" ] || fail "no volume $VOL after the first start"
uses_volume "$h1"
vsh "${URIS[$h1]}" dumpxml "$NAME" | grep -q "<shareable" && fail "the volume is marked shareable"
vsh "${URIS[$h1]}" dumpxml "$NAME" | grep -q "<readonly" && fail "the volume is read-only"
qemu-img info -U --output=json "$VOL" | jq -e 'has("backing-filename") | not' >/dev/null ||
	fail "volume $VOL has a backing file: want a standalone copy"
marker 0xb1 0                                   # the image's content, copied
[ "$(sha256sum <"$IMG/tiny.qcow2")" = "$base_sum" ] || fail "the base image was written"
ino=$(stat -c %i "$VOL")
# the lease, as the kernel has it: a POSIX write lock on the volume held by a virtlockd
lock_holder() {
	local pid
	for pid in $(awk -v ino=":$ino" '$2 == "POSIX" && $4 == "WRITE" && substr($6, length($6) - length(ino) + 1) == ino {print $5}' /proc/locks); do
		[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = virtlockd ] && return 0
	done
	return 1
}
lock_holder || fail "no virtlockd holds a write lock on $VOL (inode $ino): see /proc/locks"

# --- 2. a second domain on the same volume, by hand, on each host: refused by lockd
QEMU=$(command -v qemu-system-x86_64) || fail "qemu-system-x86_64 is not installed"
cat >"$LSC_SCRATCH/qemu-nolock" <<SH
#!/bin/sh
# qemu-system-x86_64 with its own image locking off on file nodes: only lockd guards
for a do
	shift
	case \$a in *'"driver":"file"'*) a=\$(printf '%s' "\$a" | sed 's/"driver":"file",/"driver":"file","locking":"off",/') ;; esac
	set -- "\$@" "\$a"
done
exec $QEMU "\$@"
SH
chmod 0755 "$LSC_SCRATCH/qemu-nolock"
cat >"$LSC_SCRATCH/byhand.xml" <<XML
<domain type='qemu'>
  <name>$BYHAND</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <emulator>$LSC_SCRATCH/qemu-nolock</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$VOL'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='pty'/><console type='pty'/>
  </devices>
</domain>
XML
refusal=
for h in "$h1" $([ "$h1" = hosta ] && echo hostb || echo hosta); do
	vsh "${URIS[$h]}" define "$LSC_SCRATCH/byhand.xml" >/dev/null || fail "cannot define $BYHAND on $h"
	rc=0
	vsh "${URIS[$h]}" start "$BYHAND" >"$LSC_SCRATCH/byhand.out" 2>&1 || rc=$?
	out=$(cat "$LSC_SCRATCH/byhand.out")
	[ "$rc" -ne 0 ] || fail "a second domain on $VOL started on $h"
	grep -q "Lockspace resource '$VOL' is locked" <<<"$out" ||
		fail "the second domain on $h was refused, but not by the lock manager: $out"
	[ "$(vsh "${URIS[$h]}" domstate "$BYHAND")" = "shut off" ] || fail "$BYHAND runs on $h"
	vsh "${URIS[$h]}" undefine "$BYHAND" >/dev/null
	[ "$(running_on)" = "$h1" ] || fail "$NAME stopped running on $h1 after the attempt on $h"
	refusal=$(grep -o "error: resource busy.*" <<<"$out" | head -n 1)
done

# --- 3. stop (the volume stays), a marker, start again, migrate: the same file
expect_exit 0 lsc server stop "$NAME" --wait --wait-timeout 120
[ -f "$VOL" ] || fail "stop removed the volume"
[ "$(stat -c %i "$VOL")" = "$ino" ] || fail "the volume was replaced at stop"
qemu-io -f qcow2 -c 'write -P 0x5a 1M 64k' "$VOL" >/dev/null || fail "cannot write a marker into $VOL"
expect_exit 0 lsc server start "$NAME" --wait --wait-timeout 240
h2=$(running_on) || fail "$NAME does not run after the second start"
uses_volume "$h2"
to=$([ "$h2" = hosta ] && echo hostb || echo hosta)
t0=$(date +%s%3N)
expect_exit 0 lsc server migrate "$NAME" --wait --wait-timeout 240
migrate_ms=$(($(date +%s%3N) - t0))
h3=$(running_on) || fail "$NAME does not run after migrate --wait"
expect_eq "$h3" "$to" "host after migrate"
uses_volume "$h3"
[ "$(stat -c %i "$VOL")" = "$ino" ] || fail "the volume was replaced on migrate"
marker 0x5a 1M
marker 0xb1 0
lock_holder || fail "no virtlockd holds $VOL after the migration"
[ "$(find "$VOLS" -mindepth 1 | wc -l)" = 1 ] || fail "volume_dir holds more than the volume: $(ls -a "$VOLS")"
gen=$(lsc --json server show "$NAME" | jq -r .generation)

expect_exit 0 lsc server stop "$NAME" --wait --wait-timeout 120
[ "$(stat -c %i "$VOL")" = "$ino" ] || fail "the volume is gone or replaced after the last stop"

printf 'ok: volume %s on %s, refused by hand on both hosts (%s); migrate %s -> %s (generation %s) in %d ms, same inode and marker; first start %d ms; 2 libvirtds up in %d ms; whole test %d s\n' \
	"${VOL##*/}" "$h1" "$refusal" "$h2" "$h3" "$gen" "$migrate_ms" "$start_ms" "$libvirtds_ms" \
	$((($(date +%s%3N) - t_begin) / 1000))
