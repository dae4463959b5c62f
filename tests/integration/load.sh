#!/usr/bin/env bash
# Measured load (docs/load.md): two fake hosts keep a set share of their instances'
# vCPUs busy; after a few beats `lsc host show` and `lsc server show` say so, in text
# and JSON; a bad fake_load is refused at start with a message naming it; the
# identity's history outlives its re-binding, and a restarted lscd starts empty.
set -euo pipefail
. "$LSC_TEST_LIB/pg.sh"
. "$LSC_TEST_LIB/lscd.sh"
lsc_test_setup --agents

# a bad value: the agent refuses to start and says why
agent_enrol bad
expect_exit 2 "$LSC_BIN/lsc-agent" --name bad --state-dir "$LSC_SCRATCH/agents/bad" --driver fake \
	--manager "tcp://127.0.0.1:$LSC_AGENT_PORT" --manager-key "$LSC_SCRATCH/lscd.pub" \
	--config <(printf '[agent]\nfake_load = 1.5\n')
expect_contains "$ERR" "fake_load" "the error names the key"
expect_contains "$ERR" "1.5" "the error shows the value"

for h in f1 f2; do
	cat >"$LSC_SCRATCH/$h.conf" <<CONF
[agent]
vcpus = 8
memory_mib = 16384
labels = box=$h
fake_load = $([ "$h" = f1 ] && echo 0.5 || echo 0.25)
CONF
	agent_start "$h" --driver fake --config "$LSC_SCRATCH/$h.conf"
done
up() { [ "$(lsc --json host list | jq '[.[] | select(.liveness == "up")] | length')" -eq 2 ]; }
wait_until 20 up

# s1 (4 vCPUs) on f1 at half load: 2 vCPUs busy; s2 (2 vCPUs) on f2 at a quarter: 0.5
lsc server create s1 --vcpus 4 --memory 1024 --require-label box=f1 >/dev/null
lsc server create s2 --vcpus 2 --memory 512 --require-label box=f2 >/dev/null
lsc server start s1 s2 >/dev/null
measured() { lsc --json server show "$1" | jq -e '.measured.cpu_vcpus != null' >/dev/null; }
wait_until 30 measured s1
wait_until 30 measured s2
sleep 3                                   # a few more beats

near() {   # near VALUE WANT TOLERANCE WHAT
	awk -v v="$1" -v w="$2" -v t="$3" 'BEGIN { exit !(v >= w - t && v <= w + t) }' ||
		fail "$4: $1, want $2 +- $3"
}
expect_exit 0 lsc --json server show s1
near "$(jq '.measured.cpu_vcpus' <<<"$OUT")" 2.0 0.3 "s1 vCPUs busy now"
near "$(jq '.measured.cpu_mean_1h' <<<"$OUT")" 2.0 0.3 "s1 mean over the last hour"
near "$(jq '.measured.cpu_peak_1h' <<<"$OUT")" 2.0 0.4 "s1 peak minute"
expect_eq "$(jq '.measured.memory_mib' <<<"$OUT")" 1024 "s1 memory in use"
expect_eq "$(jq '.measured.profile_vcpus | length' <<<"$OUT")" 24 "s1 daily profile buckets"
expect_eq "$(jq '.measured.cpu_expected != null' <<<"$OUT")" true "s1 expected load"
expect_exit 0 lsc --json server show s2
near "$(jq '.measured.cpu_vcpus' <<<"$OUT")" 0.5 0.15 "s2 vCPUs busy now"

# hosts: the busy vCPUs of their physical 8, and the share
expect_exit 0 lsc --json host show f1
near "$(jq '.measured.cpu_vcpus' <<<"$OUT")" 2.0 0.4 "f1 vCPUs busy"
near "$(jq '.measured.cpu_pct' <<<"$OUT")" 25 5 "f1 share of its physical vCPUs"
expect_eq "$(jq '.measured.memory_mib' <<<"$OUT")" 1024 "f1 memory in use"
expect_eq "$(jq '.measured.profile_vcpus | length' <<<"$OUT")" 24 "f1 daily profile buckets"
expect_exit 0 lsc --json host show f2
near "$(jq '.measured.cpu_vcpus' <<<"$OUT")" 0.5 0.15 "f2 vCPUs busy"

# the text forms
expect_exit 0 lsc host show f1
expect_contains "$OUT" "vCPUs busy of 8" "host show's load line"
expect_contains "$OUT" "last hour:" "host show's last hour"
expect_contains "$OUT" "daily:" "host show's daily profile"
expect_exit 0 lsc server show s1
expect_contains "$OUT" "1024 MiB in use" "server show's load line"
expect_exit 0 lsc host list
expect_contains "$OUT" "LOAD" "host list's load column"
grep -Eq '^f1 .* (1\.[6-9]|2\.[0-4])/8 *$' <<<"$OUT" || fail "host list's load of f1: $OUT"

# the history is the identity's: s1 bound again on f2 (quarter load) keeps its
# samples and now shows f2's load
expect_exit 0 lsc server stop s1 --wait
lsc server edit s1 --require-label box=f2 >/dev/null
lsc server start s1 >/dev/null
on_f2() { [ "$(lsc --json server show s1 | jq -r '.host + " " + .state')" = "f2 running" ]; }
wait_until 60 on_f2
lowered() { lsc --json server show s1 | jq -e '.measured.cpu_vcpus < 1.3' >/dev/null; }
wait_until 20 lowered
expect_exit 0 lsc --json server show s1
near "$(jq '.measured.cpu_vcpus' <<<"$OUT")" 1.0 0.3 "s1 on f2 at a quarter of 4 vCPUs"
near "$(jq '.measured.cpu_peak_1h' <<<"$OUT")" 2.0 0.4 "s1's peak from f1 is still there"

# a restarted lscd starts from nothing: s1's peak on f1 is forgotten, what it
# measures afterwards is f2's quarter load
lscd_restart
wait_until 30 measured s1
sleep 2
expect_exit 0 lsc --json server show s1
near "$(jq '.measured.cpu_peak_1h' <<<"$OUT")" 1.0 0.3 "s1's peak after lscd restarted"
