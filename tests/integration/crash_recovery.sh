#!/usr/bin/env bash
# Identities survive a kill -9 of lscd and a restart of PostgreSQL under a running
# lscd; with PostgreSQL down the CLI gets a clear refusal, not a hang.
set -euo pipefail
. "$LSC_TEST_LIB/pg.sh"
. "$LSC_TEST_LIB/lscd.sh"
lsc_test_setup

lsc pool create net1 --cidr 10.60.0.0/24 --gateway 10.60.0.1 >/dev/null
lsc server create web1 --vcpus 2 --memory 1024 --label tier=web >/dev/null
lsc server create web2 --vcpus 1 --memory 512 --lifetime 168h >/dev/null
lsc server create db1 --vcpus 4 --memory 4096 --disk 100 --disk-mode persistent \
	--mac 02:aa:00:00:00:01 --ip 10.60.0.100 >/dev/null

identities() { lsc --json server list | jq -S 'sort_by(.name)'; lsc --json pool list | jq -S 'sort_by(.name)'; }
before=$(identities)

# retry_ok SECONDS CMD...: until CMD succeeds (lscd reconnecting); fails after SECONDS.
retry_ok() {
	local deadline=$((SECONDS + $1)) rc
	shift
	while :; do
		rc=0
		"$@" >/dev/null 2>"$LSC_SCRATCH/retry.err" || rc=$?
		[ "$rc" -eq 0 ] && return 0
		[ "$SECONDS" -lt "$deadline" ] ||
			fail "\`$*\` still exits $rc after $1 s: $(cat "$LSC_SCRATCH/retry.err")"
		sleep 0.2
	done
}

# --- kill -9 of lscd, then a restart: the same identities
lscd_kill9
lscd_start
expect_eq "$(identities)" "$before" "identities after kill -9 of lscd"

# --- PostgreSQL restarts under a running lscd: it reconnects
pid=$LSCD_PID
pg_restart_same_port fast
retry_ok 10 lsc --timeout 2 server list
expect_eq "$(identities)" "$before" "identities after a PostgreSQL restart"
expect_exit 0 lsc server create web3 --vcpus 1 --memory 64
expect_exit 0 lsc --json server show web3
expect_eq "$(jq -r '.ips[0]' <<<"$OUT")" 10.60.0.4 "IP of a server created after the restart"
expect_eq "$LSCD_PID" "$pid" "lscd pid (it must not restart)"
kill -0 "$pid" || fail "lscd died while PostgreSQL restarted"
before=$(identities)

# --- PostgreSQL down: a clear refusal that names the database, within the timeout
pg_stop "$PG_DIR" fast
t0=$(date +%s%3N)
expect_exit 1 lsc --timeout 10 server list
ms=$(($(date +%s%3N) - t0))
expect_one_line_error
grep -qiE 'database|postgres' <<<"$ERR" || fail "the refusal does not mention the database: $ERR"
[ "$ms" -lt 11000 ] || fail "the refusal took $ms ms with --timeout 10"
expect_exit 1 lsc --timeout 10 server create web4 --vcpus 1 --memory 64
lsc_pid_alive "$LSCD_PID" || fail "lscd died while PostgreSQL was down"

# --- PostgreSQL back: lscd works again, nothing lost, nothing half-done
pg_start "$PG_DIR" "$PG_PORT"
retry_ok 10 lsc --timeout 2 server list
expect_eq "$(identities)" "$before" "identities after PostgreSQL came back"
expect_exit 0 lsc server create web4 --vcpus 1 --memory 64
expect_exit 0 lsc server delete web4

# --- and once more: a kill -9 after all that
lscd_kill9
lscd_start
expect_eq "$(identities)" "$before" "identities after the second kill -9"

# --- a clean stop removes the socket, so the CLI says at once that nobody is there
lscd_stop || fail "lscd did not exit cleanly on SIGTERM"
[ ! -e "${LSC_MANAGER#ipc://}" ] || fail "lscd left its socket ${LSC_MANAGER#ipc://} behind"
t0=$(date +%s%3N)
expect_exit 3 lsc --timeout 10 server list
ms=$(($(date +%s%3N) - t0))
[ "$ms" -lt 2000 ] || fail "lsc took $ms ms to notice that no lscd runs"
echo "ok"
