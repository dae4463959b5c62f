# Private PostgreSQL clusters for tests and quickstart. Source this file.
# initdb refuses root, and /root and mktemp -d directories are 0700, so the
# cluster lives under /var/tmp (traversable) and belongs to an unprivileged user.

PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

# The user that owns clusters when we run as root.
pg_user() {
	if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi
}

# From / because the caller's directory may be one postgres cannot enter (a clone
# in /root); every path handed to PostgreSQL's tools is absolute.
pg_as_user() {
	if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_abspath() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }

# A free TCP port on 127.0.0.1: one nothing answers on (a race remains; callers retry).
pg_free_port() {
	local p i
	for i in $(seq 1 50); do
		# below the kernel's ephemeral range (ip_local_port_range, 32768 up on
		# Debian): outgoing connections never take these behind our back
		p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12000 ))
		# a refused connection means nothing listens there
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
	done
	return 1
}

# pg_start DIR [PORT]: creates (if needed) and starts a cluster in DIR; sets
# PG_PORT, PG_DIR and PG_CONNINFO. DIR's parents must be traversable by the
# cluster's user. fsync off unless PG_FSYNC=on; PG_OPTS adds server options ("-c k=v ...").
pg_start() {
	PG_DIR=$(pg_abspath "$1")
	PG_PORT=${2:-$(pg_free_port)}
	local owner
	owner=$(pg_user)
	mkdir -p "$PG_DIR"
	chmod 0700 "$PG_DIR"
	[ "$(id -u)" -eq 0 ] && chown "$owner" "$PG_DIR"
	if [ ! -f "$PG_DIR/PG_VERSION" ]; then
		pg_as_user "$PG_BIN/initdb" -D "$PG_DIR" -U postgres -A trust --no-sync \
			-E UTF8 --locale=C.UTF-8 >"$PG_DIR.initdb.log" 2>&1 || {
			cat "$PG_DIR.initdb.log" >&2; return 1; }
	fi
	pg_as_user "$PG_BIN/pg_ctl" -D "$PG_DIR" -l "$PG_DIR/server.log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=${PG_FSYNC:-off} ${PG_OPTS:-}" \
		start >/dev/null || { tail -n 20 "$PG_DIR/server.log" >&2; return 1; }
	PG_CONNINFO="host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres connect_timeout=5"
	export PG_PORT PG_DIR PG_CONNINFO
}

# pg_stop DIR [MODE]: fast (default) or immediate (a crash, for tests).
pg_stop() {
	pg_as_user "$PG_BIN/pg_ctl" -D "$(pg_abspath "$1")" -m "${2:-fast}" -w -t 60 stop >/dev/null 2>&1 || true
}

# pg_restart DIR PORT: stops and starts the same cluster on the same port.
pg_restart() {
	pg_stop "$1" "${3:-fast}"
	pg_start "$1" "$2"
}

# A scratch directory that unprivileged users can traverse (mode 0755).
pg_scratch_dir() {
	local d
	d=$(mktemp -d /var/tmp/lsc-test.XXXXXX) || return 1
	chmod 0755 "$d"
	echo "$d"
}
