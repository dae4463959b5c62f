# shellcheck shell=bash
# libvirtd for the tests that boot real VMs through qemu:///system.
#
#   libvirtd_ensure          qemu:///system answers afterwards, or it returns 1 and says why
#   libvirtd_stop_started    stops what libvirtd_ensure started (by pid), nothing else
#
# If qemu:///system already answers (a host with systemd, a developer's libvirtd) it is
# used as it is and nothing is started. Otherwise, as root and without systemd (PID 1
# is not systemd on the CI machines), virtlogd and virtlockd are started unless they
# already run, then libvirtd, each daemonised; the pids come from their pid files under
# /run, and only those pids are ever stopped.
#
# qemu runs as root under the libvirtd started here. The reason: a /dev/kvm that is
# crw------- root root (as on some CI machines). libvirt probes qemu's capabilities as
# root and sees KVM, then finds that qemu's user (libvirt-qemu) cannot open /dev/kvm,
# calls its capabilities cache stale and probes qemu again -- on every lookup, about 4 s
# each, about 9 per domain definition: a 3 s VM start took 53 s. With qemu as root both
# views agree and the cache holds. It changes nothing on the machine: libvirtd runs in a
# private mount namespace (unshare -m) in which a private copy of /etc/libvirt/qemu.conf,
# with user = "root" and group = "root", is bind-mounted over the real one; the real
# file, and any libvirtd started by someone else, are untouched. Whether /dev/kvm
# exists, is root's alone or is the kvm group's, this libvirtd behaves the same. (The
# agent still picks <domain type='qemu'>, TCG, when qemu's user cannot open /dev/kvm.)
# The private qemu.conf also sets lock_manager = "lockd": libvirt then takes a lease in
# virtlockd on every writable disk when a domain starts (auto_disk_leases, the default
# of qemu-lockd.conf: an fcntl lock on the disk file itself), which is what keeps a
# second qemu off a persistent volume (the disks test). libvirtd_has_lockd tells
# whether the libvirtd that answers has it (one started by someone else may not).
# LSC_LIBVIRTD_QEMU_ROOT=0 starts libvirtd with the machine's own qemu.conf instead; so
# does a machine where unshare -m is not permitted (with a warning).
#
#   libvirtd_host_start NAME  a second, private libvirtd: another "host" on this machine
#   libvirtd_host_stop NAME   (see there)

LIBVIRTD_URI=qemu:///system
LIBVIRTD_STARTED=()          # "NAME PID" of each daemon libvirtd_ensure started
LIBVIRTD_RUN_DIR=/run/lsc-tests-libvirtd

libvirtd_say() { printf 'libvirtd: %s\n' "$*" >&2; }

# Whether qemu:///system answers (a fresh connection each time).
libvirtd_answers() {
	timeout 20 virsh -c "$LIBVIRTD_URI" version </dev/null >/dev/null 2>&1
}

# libvirtd_pid_is PID NAME: whether PID is a live NAME (not a zombie, not a reused pid).
libvirtd_pid_is() {
	[ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] &&
		[ "$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" != Z ]
}

# libvirtd_running NAME: whether NAME already runs (its pid file, else any live process
# NAME: the zombies of stopped daemons do not count, PID 1 may be slow to reap them).
libvirtd_running() {
	local pid
	libvirtd_pid_is "$(cat "/run/$1.pid" 2>/dev/null)" "$1" && return 0
	for pid in $(pgrep -x "$1" 2>/dev/null); do
		libvirtd_pid_is "$pid" "$1" && return 0
	done
	return 1
}

# libvirtd_daemon NAME CMD...: runs CMD (which daemonises NAME, writing /run/NAME.pid),
# then records the daemon's pid.
libvirtd_daemon() {
	local name=$1 pid='' _
	shift
	rm -f "/run/$name.pid"   # only when NAME does not run: a stale file
	"$@" </dev/null >>"$LIBVIRTD_RUN_DIR/$name.out" 2>&1 ||
		{ libvirtd_say "$name did not start: $(tail -n 3 "$LIBVIRTD_RUN_DIR/$name.out")"; return 1; }
	for _ in $(seq 1 100); do
		pid=$(cat "/run/$name.pid" 2>/dev/null || true)
		libvirtd_pid_is "$pid" "$name" && break
		pid=
		sleep 0.05
	done
	[ -n "$pid" ] || { libvirtd_say "$name wrote no pid file /run/$name.pid"; return 1; }
	LIBVIRTD_STARTED+=("$name $pid")
}

# libvirtd_private_conf [FILE]: writes FILE ($LIBVIRTD_RUN_DIR/qemu.conf), the machine's
# qemu.conf with qemu running as root and disks leased through virtlockd.
libvirtd_private_conf() {
	local conf=${1:-$LIBVIRTD_RUN_DIR/qemu.conf}
	{
		grep -Ev '^[[:space:]]*(user|group|lock_manager)[[:space:]]*=' /etc/libvirt/qemu.conf
		printf '\n# lsc tests: qemu runs as root (see tests/lib/libvirtd.sh)\nuser = "root"\ngroup = "root"\n'
		printf '# lsc tests: disks leased through virtlockd\nlock_manager = "lockd"\n'
	} >"$conf.tmp" && chmod 0600 "$conf.tmp" && mv "$conf.tmp" "$conf"
}

# libvirtd_has_lockd: whether the running libvirtd's qemu.conf, as that libvirtd sees it
# (its own mount namespace, through /proc/PID/root), sets lock_manager = "lockd".
libvirtd_has_lockd() {
	local pid
	for pid in $(cat /run/libvirtd.pid 2>/dev/null) $(pgrep -x libvirtd 2>/dev/null); do
		libvirtd_pid_is "$pid" libvirtd || continue
		grep -Eq '^[[:space:]]*lock_manager[[:space:]]*=[[:space:]]*"lockd"' \
			"/proc/$pid/root/etc/libvirt/qemu.conf" 2>/dev/null && return 0
	done
	return 1
}

libvirtd_ensure() {
	local t0 deadline how=plain
	t0=$(date +%s%3N)
	if libvirtd_answers; then
		libvirtd_say "$LIBVIRTD_URI answers: using the running libvirtd" \
			"($(libvirtd_has_lockd && echo with || echo without) lock_manager = \"lockd\")"
		return 0
	fi
	if [ "$(id -u)" -ne 0 ]; then
		libvirtd_say "$LIBVIRTD_URI does not answer and starting libvirtd needs root:" \
			"run ./tests/run as root, or start libvirtd"
		return 1
	fi
	local d
	for d in virtlogd virtlockd libvirtd; do
		command -v "$d" >/dev/null ||
			{ libvirtd_say "$d is not installed (package libvirt-daemon-system)"; return 1; }
	done
	mkdir -p "$LIBVIRTD_RUN_DIR" || return 1
	chmod 0700 "$LIBVIRTD_RUN_DIR"
	libvirtd_running virtlogd || libvirtd_daemon virtlogd virtlogd -d || return 1
	libvirtd_running virtlockd || libvirtd_daemon virtlockd virtlockd -d || return 1
	if libvirtd_running libvirtd; then
		# someone's libvirtd is starting (or hung): wait for it, start no second one
		libvirtd_say "a libvirtd runs but does not answer yet: waiting for it"
	else
		if [ "${LSC_LIBVIRTD_QEMU_ROOT:-1}" != 0 ] && [ -f /etc/libvirt/qemu.conf ] &&
			unshare -m --propagation private true 2>/dev/null; then
			libvirtd_private_conf || return 1
			how="qemu as root, private qemu.conf"
			# shellcheck disable=SC2016  # $1 expands in the inner shell
			libvirtd_daemon libvirtd unshare -m --propagation private sh -c \
				'mount --bind "$1" /etc/libvirt/qemu.conf && exec libvirtd -d' sh \
				"$LIBVIRTD_RUN_DIR/qemu.conf" || return 1
		else
			[ "${LSC_LIBVIRTD_QEMU_ROOT:-1}" != 0 ] &&
				libvirtd_say "warning: no private mount namespace here (unshare -m):" \
					"libvirtd uses the machine's qemu.conf; a /dev/kvm that only root" \
					"can open makes every VM start slow (about 50 s)"
			libvirtd_daemon libvirtd libvirtd -d || return 1
		fi
	fi
	deadline=$((SECONDS + ${LIBVIRTD_TIMEOUT:-60}))
	until libvirtd_answers; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			libvirtd_say "$LIBVIRTD_URI does not answer ${LIBVIRTD_TIMEOUT:-60} s after starting" \
				"libvirtd; see /var/log/libvirt/libvirtd.log and $LIBVIRTD_RUN_DIR"
			return 1
		fi
		sleep 0.2
	done
	libvirtd_say "started ${LIBVIRTD_STARTED[*]:-nothing} ($how); $LIBVIRTD_URI answers" \
		"after $(($(date +%s%3N) - t0)) ms"
}

# Stops, newest first, the daemons libvirtd_ensure started: SIGTERM, 15 s, SIGKILL.
libvirtd_stop_started() {
	local i name pid _
	for ((i = ${#LIBVIRTD_STARTED[@]} - 1; i >= 0; i--)); do
		read -r name pid <<<"${LIBVIRTD_STARTED[i]}"
		libvirtd_pid_is "$pid" "$name" || continue
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 150); do
			libvirtd_pid_is "$pid" "$name" || break
			sleep 0.1
		done
		if libvirtd_pid_is "$pid" "$name"; then
			libvirtd_say "$name (pid $pid) ignored SIGTERM for 15 s: killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	LIBVIRTD_STARTED=()
	return 0
}

# libvirtd_host_start NAME: a libvirtd of the test's own, another "host" on this
# machine (qemu:///system through its own socket). It runs, with its own virtlogd and
# virtlockd, in a private mount namespace whose /run/libvirt, /var/lib/libvirt,
# /etc/libvirt/qemu and /var/cache/libvirt are directories under $LIBVIRTD_RUN_DIR/NAME
# (the capabilities cache is seeded from the machine's), with a private qemu.conf
# (qemu as root, lock_manager = "lockd"). Its domains are its own: agents of other test
# runs on the machine's libvirtd neither see nor destroy them. Two such hosts' virtlockds
# lock one volume file as two hosts' would over NFS. Sets LIBVIRTD_HOST_URI; stop it
# with libvirtd_host_stop NAME (by pid). Needs root and unshare -m.
libvirtd_host_start() {
	local name=$1 dir=$LIBVIRTD_RUN_DIR/$1 d pid _
	[ "$(id -u)" -eq 0 ] || { libvirtd_say "a second libvirtd needs root"; return 1; }
	mkdir -p "$LIBVIRTD_RUN_DIR" && chmod 0700 "$LIBVIRTD_RUN_DIR" || return 1
	rm -rf "$dir"
	for d in run lib etc cache log; do mkdir -p "$dir/$d" || return 1; done
	libvirtd_private_conf "$dir/qemu.conf" || return 1
	cp -a /var/cache/libvirt/. "$dir/cache/" 2>/dev/null || true
	# shellcheck disable=SC2016  # $1 and $2 expand in the inner shell
	unshare -m --propagation private sh -c '
		set -e
		mount --bind "$1/run" /run/libvirt
		mount --bind "$1/lib" /var/lib/libvirt
		mount --bind "$1/etc" /etc/libvirt/qemu
		mount --bind "$1/cache" /var/cache/libvirt
		mount --bind "$2" /etc/libvirt/qemu.conf
		virtlogd -d -p "$1/virtlogd.pid"
		virtlockd -d -p "$1/virtlockd.pid"
		exec libvirtd -d -p "$1/libvirtd.pid"' sh "$dir" "$dir/qemu.conf" \
		</dev/null >>"$dir/log/start.out" 2>&1 ||
		{ libvirtd_say "libvirtd $name did not start: $(tail -n 3 "$dir/log/start.out")"; return 1; }
	LIBVIRTD_HOST_URI="qemu:///system?socket=$dir/run/libvirt-sock"
	for _ in $(seq 1 300); do
		timeout 20 virsh -c "$LIBVIRTD_HOST_URI" version </dev/null >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	libvirtd_say "libvirtd $name does not answer on $LIBVIRTD_HOST_URI"
	return 1
}

# libvirtd_host_stop NAME: destroys NAME's running domains (qemu outlives libvirtd),
# then stops its libvirtd, virtlockd and virtlogd by their pids; removes its dir.
libvirtd_host_stop() {
	local dir=$LIBVIRTD_RUN_DIR/$1 uri d pid _
	uri="qemu:///system?socket=$dir/run/libvirt-sock"
	[ -d "$dir" ] || return 0
	for d in $(timeout 20 virsh -q -c "$uri" list --all --name </dev/null 2>/dev/null); do
		timeout 30 virsh -q -c "$uri" destroy "$d" </dev/null >/dev/null 2>&1
		timeout 30 virsh -q -c "$uri" undefine "$d" </dev/null >/dev/null 2>&1
	done
	for d in libvirtd virtlockd virtlogd; do
		pid=$(cat "$dir/$d.pid" 2>/dev/null) || continue
		libvirtd_pid_is "$pid" "$d" || continue
		kill -TERM "$pid" 2>/dev/null
		for _ in $(seq 1 100); do
			libvirtd_pid_is "$pid" "$d" || break
			sleep 0.1
		done
		libvirtd_pid_is "$pid" "$d" && kill -KILL "$pid" 2>/dev/null
	done
	rm -rf "$dir"
	return 0
}
