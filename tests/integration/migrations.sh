#!/usr/bin/env bash
# Migrations: a second start on an up-to-date database applies nothing; a database
# newer than the binary is refused with a clear message and a non-zero exit.
set -euo pipefail
. "$LSC_TEST_LIB/pg.sh"
. "$LSC_TEST_LIB/lscd.sh"
lsc_test_setup

sql() { psql "$PG_CONNINFO" -XqtA -v ON_ERROR_STOP=1 -c "$1"; }

version=$(sql 'SELECT max(version) FROM schema_version')
rows=$(sql 'SELECT count(*) FROM schema_version')
[[ $version =~ ^[0-9]+$ && $version -ge 1 ]] || fail "no schema version after the first start: '$version'"
lsc pool create net1 --cidr 10.70.0.0/24 >/dev/null
lsc server create web1 --vcpus 1 --memory 64 >/dev/null
servers=$(lsc --json server list)

# --- a second start on an up-to-date database applies nothing
lscd_restart
expect_eq "$(sql 'SELECT max(version) FROM schema_version')" "$version" "schema version after a restart"
expect_eq "$(sql 'SELECT count(*) FROM schema_version')" "$rows" "schema_version rows after a restart"
expect_eq "$(lsc --json server list)" "$servers" "servers after a restart"

# --- a database newer than this lscd is refused
lscd_stop
sql "INSERT INTO schema_version (version, name) VALUES (9999, 'from_the_future')" >/dev/null ||
	fail "cannot record version 9999 in schema_version"
rc=0
timeout 30 "$LSC_BIN/lscd" --db "$PG_CONNINFO" --listen "ipc://$LSC_SCRATCH/newer.sock" \
	</dev/null >"$LSC_SCRATCH/newer.log" 2>&1 || rc=$?
cat "$LSC_SCRATCH/newer.log" >>"$LSC_SCRATCH/lscd.log"
[ "$rc" -ne 0 ] || fail "lscd started on a database newer than itself"
[ "$rc" -ne 124 ] || fail "lscd neither started nor exited on a newer database (killed after 30 s)"
grep -qE '9999|newer' "$LSC_SCRATCH/newer.log" ||
	fail "the refusal does not say the database is newer: $(cat "$LSC_SCRATCH/newer.log")"
# and it changed nothing
expect_eq "$(sql 'SELECT max(version) FROM schema_version')" 9999 "schema version after the refusal"
expect_eq "$(sql 'SELECT count(*) FROM schema_version')" "$((rows + 1))" "schema_version rows after the refusal"
echo "ok"
