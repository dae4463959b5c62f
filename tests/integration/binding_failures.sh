#!/usr/bin/env bash
# A host whose driver refuses to start a server: each refusal sends the server back to
# pending with the driver's message; after three in a row it is failed, and a start
# (once the host is fixed) brings it up.
set -euo pipefail
. "$LSC_TEST_LIB/pg.sh"
. "$LSC_TEST_LIB/lscd.sh"
lsc_test_setup --agents

cat >"$LSC_SCRATCH/broken.conf" <<CONF
[agent]
driver = fake
fake_fail_instantiate = 3
fake_fail_message = disk controller on fire
CONF
agent_start b1 --config "$LSC_SCRATCH/broken.conf"
up() { lsc --json host show b1 | jq -e '.liveness == "up"'; }
wait_until 20 up

lsc server create web1 --vcpus 1 --memory 64 >/dev/null
expect_exit 0 lsc server start web1
failed() { lsc --json server show web1 | jq -e '.state == "failed"'; }
wait_until 30 failed
expect_exit 0 lsc --json server show web1
expect_eq "$(jq -r .failures <<<"$OUT")" 3 "failures"
expect_contains "$(jq -r .reason <<<"$OUT")" "disk controller on fire" "the driver's message"
expect_eq "$(jq -r '.host // "none"' <<<"$OUT")" none "host of a failed server"
expect_eq "$(lsc --json host show b1 | jq -r .used_vcpus)" 0 "capacity given back"
expect_exit 0 lsc --json events --server web1
expect_eq "$(jq '[.[] | select(.kind == "server.bind-failed")] | length' <<<"$OUT")" 3 "bind-failed events"

# the fake driver fails only its first three instantiates: a start now succeeds
expect_exit 0 lsc server start web1 --wait --wait-timeout 30
expect_exit 0 lsc --json server show web1
expect_eq "$(jq -r '.state + " " + (.failures|tostring) + " " + (.generation|tostring)' <<<"$OUT")" \
	"running 0 4" "after the host recovered"
echo "ok"
