#!/usr/bin/env bash
# Bad input: one clear line on stderr, exit 2 (usage, validation) or 1 (refusal),
# and nothing changes in the database. A manager that does not answer: exit 3, quickly.
set -euo pipefail
. "$LSC_TEST_LIB/pg.sh"
. "$LSC_TEST_LIB/lscd.sh"
lsc_test_setup

lsc pool create net1 --cidr 10.20.0.0/24 --gateway 10.20.0.1 >/dev/null
lsc pool create empty --cidr 10.30.0.0/24 >/dev/null
lsc server create web1 --vcpus 1 --memory 64 --mac 02:4c:53:00:00:01 --ip 10.20.0.10 >/dev/null

snapshot() {
	lsc --json server list
	lsc --json pool list
	lsc --json events --limit 10000 | jq length
}
before=$(snapshot)

# bad CODE ARGS...: lsc ARGS exits CODE with one line on stderr and changes nothing.
bad() {
	local want=$1
	shift
	expect_exit "$want" lsc "$@"
	expect_one_line_error
	printf '%-70s -> %s: %s\n' "lsc $*" "$want" "${ERR%%$'\n'*}"
	local now
	now=$(snapshot)
	[ "$now" = "$before" ] || fail "\`lsc $*\` changed the database:"$'\n'"$before"$'\n'"---"$'\n'"$now"
}

ok=(--vcpus 1 --memory 64)

# names that are not DNS labels
bad 2 server create Web_1 "${ok[@]}"
bad 2 server create -web "${ok[@]}"
bad 2 server create web- "${ok[@]}"
bad 2 server create "$(printf 'a%.0s' $(seq 64))" "${ok[@]}"
bad 2 server create "" "${ok[@]}"
bad 2 server create web.1 "${ok[@]}"
bad 2 pool create Net_2 --cidr 10.40.0.0/24
# sizes outside the limits, and numbers that are not numbers
bad 2 server create web2 --vcpus 0 --memory 64
bad 2 server create web2 --vcpus 1025 --memory 64
bad 2 server create web2 --vcpus 1 --memory 15
bad 2 server create web2 --vcpus 1 --memory 16777217
bad 2 server create web2 "${ok[@]}" --disk 1048577
bad 2 server create web2 --vcpus two --memory 64
bad 2 server create web2 --vcpus 1 --memory -64
bad 2 server create web2 --vcpus 1 --memory 64k
# malformed addresses, labels, durations, enums
bad 2 server create web2 "${ok[@]}" --mac 02:4c:53:zz:00:01
bad 2 server create web2 "${ok[@]}" --mac 02:4c:53:00:01
bad 2 server create web2 "${ok[@]}" --mac 01:00:5e:00:00:01
bad 2 server create web2 "${ok[@]}" --ip 10.20.0.300
bad 2 server create web2 "${ok[@]}" --label novalue
bad 2 server create web2 "${ok[@]}" --label 'bad key=x'
bad 2 server create web2 "${ok[@]}" --label k=
bad 2 server create web2 "${ok[@]}" --label "$(printf 'k%.0s' $(seq 64))=v"
bad 2 server create web2 "${ok[@]}" --lifetime 10x
bad 2 server create web2 "${ok[@]}" --lifetime 1.5h
bad 2 server create web2 "${ok[@]}" --lifetime 7
bad 2 server create web2 "${ok[@]}" --lifetime -5m
bad 2 server create web2 "${ok[@]}" --kind toaster
bad 2 server create web2 "${ok[@]}" --disk-mode sometimes
bad 2 server create web2 "${ok[@]}" --hostname -bad-
bad 2 pool create net2 --cidr 10.40.0.0/33
bad 2 pool create net2 --cidr 10.40.0.1/24
bad 2 pool create net2 --cidr banana
bad 2 pool create net2 --cidr 10.40.0.0/24 --gateway 10.41.0.1
bad 2 pool create net2
# usage: unknown options, missing ones, wrong arguments
bad 2 server create web2 "${ok[@]}" --frobnicate
bad 2 server create web2 --memory 64
bad 2 server create web2 --vcpus 1
bad 2 server create "${ok[@]}"
bad 2 server create web2 web3 "${ok[@]}"
bad 2 server create web2 --vcpus
bad 2 server frobnicate web1
bad 2 frobnicate list
bad 2 events --limit abc
bad 2 events --limit 0
bad 2 events --limit 10001
bad 2 server edit web1 --vcpus 0
bad 2 server edit web1 --name Web_1
bad 2 server edit web1 --label novalue
bad 2 server edit web1 --bogus
bad 2 --timeout abc server list
bad 2 server list --page-size 0
bad 2 server list --page-size 5001
bad 2 host list --page-size abc
bad 2 host list extra
bad 2 server renew web1 --by 0
bad 2 server renew web1 --by 5x
bad 2 server renew web1 --by 3651d
bad 2 server renew Bad_Name
bad 2 server renew
bad 2 server renew web1 --frobnicate
# an IP outside every pool is invalid input
bad 2 server create web2 "${ok[@]}" --ip 192.168.99.5

# refusals: duplicates, taken, not found, in use, overlapping
bad 1 server create web1 "${ok[@]}"
bad 1 server create web2 "${ok[@]}" --mac 02:4c:53:00:00:01
bad 1 server create web2 "${ok[@]}" --ip 10.20.0.10
bad 1 server create web2 "${ok[@]}" --pool nosuch
bad 1 pool create net1 --cidr 10.50.0.0/24
bad 1 pool create net3 --cidr 10.20.0.128/25
bad 1 pool create net3 --cidr 10.0.0.0/8
bad 1 pool delete net1
bad 1 pool delete nosuch
bad 1 pool show nosuch
bad 1 server show nosuch
bad 1 server show 00000000-0000-4000-8000-000000000000
bad 1 server delete nosuch
bad 1 server edit nosuch --vcpus 2
bad 1 server renew nosuch
bad 1 server renew web1
# several at once: all or nothing (web1 exists and stays defined)
bad 1 server start web1 nosuch
bad 2 server start web1 Bad_Name
bad 2 server start web1 nosuch --dry-run

# everything above left the database as it was; a good command still works
expect_exit 0 lsc server create web2 "${ok[@]}" --pool net1

# a manager that does not answer: exit 3 within the timeout, never a hang
t0=$(date +%s%3N)
LSC_MANAGER="ipc://$LSC_SCRATCH/none.sock" expect_exit 3 lsc --timeout 1 server list
ms=$(($(date +%s%3N) - t0))
expect_one_line_error
[ "$ms" -lt 5000 ] || fail "no answer took $ms ms with --timeout 1"
expect_exit 3 lsc --manager "ipc://$LSC_SCRATCH/none.sock" --timeout 1 ping
# a manager that is there but frozen: the same, and it answers again once thawed
kill -STOP "$LSCD_PID"
t0=$(date +%s%3N)
expect_exit 3 lsc --timeout 1 server list
ms=$(($(date +%s%3N) - t0))
kill -CONT "$LSCD_PID"
expect_one_line_error
[ "$ms" -lt 5000 ] || fail "a frozen manager took $ms ms with --timeout 1"
expect_exit 0 lsc ping
echo "ok"
