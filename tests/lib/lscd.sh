# shellcheck shell=bash
# Integration test helpers: a private PostgreSQL and the real lscd, driven with
# the real lsc. Source after pg.sh, then call lsc_test_setup.
# Needs LSC_BIN (the build's bin/); ctest sets it.

: "${LSC_BIN:?LSC_BIN must point at the bin directory of the build}"
LSCD_PID=
LSCD_ARGS=()                 # extra lscd arguments (agents: see lsc_test_setup --agents)
declare -A AGENT_PIDS=()

lsc() { "$LSC_BIN/lsc" "$@"; }

# fail MESSAGE: ends the test with MESSAGE and the line that called the check.
fail() {
	local i=0
	# name the caller of the assertion helper, not the helper
	while [ "${FUNCNAME[i + 1]:-}" = expect_exit ] || [ "${FUNCNAME[i + 1]:-}" = expect_eq ] ||
		[ "${FUNCNAME[i + 1]:-}" = expect_contains ] || [ "${FUNCNAME[i + 1]:-}" = fail ] ||
		[ "${FUNCNAME[i + 1]:-}" = expect_one_line_error ]; do
		i=$((i + 1))
	done
	printf 'FAIL (%s:%s): %s\n' "${BASH_SOURCE[i + 1]##*/}" "${BASH_LINENO[i]}" "$*" >&2
	exit 1
}

# expect_exit CODE CMD [ARGS...]: runs CMD; its stdout and stderr land in OUT and ERR.
expect_exit() {
	local want=$1 rc=0
	shift
	OUT=$("$@" 2>"$LSC_SCRATCH/stderr") || rc=$?
	ERR=$(cat "$LSC_SCRATCH/stderr")
	[ "$rc" -eq "$want" ] ||
		fail "\`$*\` exited $rc, expected $want${OUT:+; stdout: $OUT}${ERR:+; stderr: $ERR}"
}

# expect_one_line_error: the last expect_exit printed one line saying what is
# wrong on stderr (plus, for usage errors, the hint "Try 'lsc ... --help'.").
expect_one_line_error() {
	local what
	what=$(printf '%s\n' "$ERR" | grep -v "^Try 'lsc[a-z ]* --help'\.$" || true)
	[ -n "$what" ] || fail "no message on stderr${ERR:+: $ERR}"
	[ "$(printf '%s\n' "$what" | wc -l)" -eq 1 ] || fail "more than one line on stderr: $ERR"
}

# expect_eq ACTUAL EXPECTED [WHAT]
expect_eq() {
	[ "$1" = "$2" ] || fail "${3:-value}: got '$1', expected '$2'"
}

# expect_contains HAYSTACK NEEDLE [WHAT]
expect_contains() {
	case $1 in *"$2"*) ;; *) fail "${3:-output} does not contain '$2': $1" ;; esac
}

# lsc_wait_ping [SECONDS]: until lscd answers (default 20 s).
lsc_wait_ping() {
	local deadline=$((SECONDS + ${1:-20}))
	until lsc --timeout 1 ping >/dev/null 2>&1; do
		if [ -n "$LSCD_PID" ] && ! kill -0 "$LSCD_PID" 2>/dev/null; then
			fail "lscd exited before answering ping"
		fi
		[ "$SECONDS" -lt "$deadline" ] || fail "lscd does not answer ping after ${1:-20} s"
		sleep 0.1
	done
}

# lscd_start: starts lscd in the background on $LSC_MANAGER and waits for it; with
# agents, a port taken meanwhile by something else is replaced (up to 3 times).
lscd_start() {
	local i
	for i in 1 2 3; do
		lscd_start_once && return 0
		grep -q "cannot listen for agents.*Address already in use" "$LSC_SCRATCH/lscd.log" ||
			fail "lscd exited before answering ping"
		LSC_AGENT_PORT=$(pg_free_port)
		LSCD_ARGS[1]="tcp://127.0.0.1:$LSC_AGENT_PORT"
	done
	fail "lscd could not find a free port for the agents"
}

lscd_start_once() {
	printf -- '--- lscd start %s\n' "$(date +%T.%N)" >>"$LSC_SCRATCH/lscd.log"
	"$LSC_BIN/lscd" --db "$PG_CONNINFO" --listen "$LSC_MANAGER" --log-level debug "${LSCD_ARGS[@]}" \
		</dev/null >>"$LSC_SCRATCH/lscd.log" 2>&1 &
	LSCD_PID=$!
	local deadline=$((SECONDS + 20))
	until lsc --timeout 1 ping >/dev/null 2>&1; do
		if ! lsc_pid_alive "$LSCD_PID"; then
			wait "$LSCD_PID" 2>/dev/null || true
			LSCD_PID=
			return 1
		fi
		[ "$SECONDS" -lt "$deadline" ] || fail "lscd does not answer ping after 20 s"
		sleep 0.1
	done
}

# Whether PID lives (a zombie does not: PID 1 may not reap here).
lsc_pid_alive() {
	kill -0 "$1" 2>/dev/null && [ "$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" != Z ]
}

# lscd_stop: SIGTERM and wait (10 s, then SIGKILL); returns the exit status of lscd.
lscd_stop() {
	local pid=$LSCD_PID i rc=0
	[ -n "$pid" ] || return 0
	LSCD_PID=
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 1 100); do
		lsc_pid_alive "$pid" || break
		sleep 0.1
	done
	if lsc_pid_alive "$pid"; then
		echo "lscd (pid $pid) ignored SIGTERM for 10 s: killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || rc=$?
	return "$rc"
}

# lscd_kill9: a crash of lscd.
lscd_kill9() {
	[ -n "$LSCD_PID" ] || return 0
	kill -KILL "$LSCD_PID" 2>/dev/null || true
	wait "$LSCD_PID" 2>/dev/null || true
	LSCD_PID=
}

# lscd_restart: stops lscd (if it runs) and starts it again on the same database.
lscd_restart() {
	lscd_stop || true
	lscd_start
}

# pg_restart_same_port [MODE]: stops PostgreSQL (fast, or MODE) and starts it again
# on the same port, under whatever lscd is running.
pg_restart_same_port() {
	pg_stop "$PG_DIR" "${1:-fast}"
	pg_start "$PG_DIR" "$PG_PORT"
}

# agent_enrol NAME: creates NAME's keypair and enrols its public key with lscd.
agent_enrol() {
	mkdir -p "$LSC_SCRATCH/agents/$1"
	"$LSC_BIN/lsc-agent" --name "$1" --state-dir "$LSC_SCRATCH/agents/$1" \
		--print-public-key >"$LSC_SCRATCH/keys/$1.pub.tmp" || fail "no key for agent $1"
	mv "$LSC_SCRATCH/keys/$1.pub.tmp" "$LSC_SCRATCH/keys/$1.pub"   # appears whole
}

# agent_start NAME [lsc-agent options...]: enrols NAME (unless it is) and starts its
# agent (libvirt's in-process test driver unless options say otherwise).
agent_start() {
	local name=$1
	shift
	[ -f "$LSC_SCRATCH/keys/$name.pub" ] || agent_enrol "$name"
	"$LSC_BIN/lsc-agent" --name "$name" --state-dir "$LSC_SCRATCH/agents/$name" \
		--manager "tcp://127.0.0.1:$LSC_AGENT_PORT" --manager-key "$LSC_SCRATCH/lscd.pub" \
		--log-level debug "$@" </dev/null >>"$LSC_SCRATCH/agent-$name.log" 2>&1 &
	AGENT_PIDS[$name]=$!
}

# agent_stop NAME: SIGTERM, then wait for it.
agent_stop() {
	local pid=${AGENT_PIDS[$1]:-}
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	unset "AGENT_PIDS[$1]"
}

# wait_until SECONDS CMD...: until CMD succeeds; fails the test after SECONDS.
wait_until() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$deadline" ] || fail "still not true after the wait: $*"
		sleep 0.2
	done
}

lsc_test_cleanup() {
	local rc=$?
	set +e
	local a
	for a in "${!AGENT_PIDS[@]}"; do agent_stop "$a"; done
	if grep -lE 'AddressSanitizer|LeakSanitizer|runtime error:' "$LSC_SCRATCH"/agent-*.log 2>/dev/null; then
		echo "FAIL: sanitizer report in an agent's log" >&2
		[ "$rc" -eq 0 ] && rc=1
	fi
	if [ -n "$LSCD_PID" ]; then
		lscd_stop
		local lrc=$?
		# 143 = died of our SIGTERM without handling it; 0 = clean shutdown
		if [ "$lrc" -ne 0 ] && [ "$rc" -eq 0 ]; then
			echo "FAIL: lscd exited $lrc on SIGTERM" >&2
			rc=1
		fi
	fi
	if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$LSC_SCRATCH/lscd.log" 2>/dev/null; then
		echo "FAIL: sanitizer report in lscd's log" >&2
		[ "$rc" -eq 0 ] && rc=1
	fi
	[ -n "${PG_DIR:-}" ] && pg_stop "$PG_DIR" immediate
	if [ "$rc" -ne 0 ]; then
		echo "--- last 40 lines of lscd's log ($LSC_SCRATCH/lscd.log):" >&2
		tail -n 40 "$LSC_SCRATCH/lscd.log" >&2
		for a in "$LSC_SCRATCH"/agent-*.log; do
			[ -f "$a" ] || continue
			echo "--- last 15 lines of ${a##*/}:" >&2
			tail -n 15 "$a" >&2
		done
	fi
	if [ "$rc" -eq 0 ] || [ -z "${LSC_KEEP_SCRATCH:-}" ]; then
		rm -rf "$LSC_SCRATCH"
	else
		echo "scratch kept: $LSC_SCRATCH" >&2
	fi
	exit "$rc"
}

# lsc_test_setup [--agents]: scratch dir, PostgreSQL, lscd on ipc://SCRATCH/lscd.sock,
# LSC_MANAGER exported, and an EXIT trap that stops everything and cleans up. With
# --agents, lscd also listens for agents (CurveZMQ) on 127.0.0.1:LSC_AGENT_PORT,
# with its key in SCRATCH/lscd.key (public: lscd.pub) and enrolled keys in SCRATCH/keys.
lsc_test_setup() {
	LSC_SCRATCH=$(pg_scratch_dir)
	touch "$LSC_SCRATCH/lscd.log"
	trap lsc_test_cleanup EXIT
	if [ "${1:-}" = --agents ]; then
		mkdir -p "$LSC_SCRATCH/keys"
		LSC_AGENT_PORT=$(pg_free_port)
		"$LSC_BIN/lscd" --curve-key "$LSC_SCRATCH/lscd.key" --print-public-key >"$LSC_SCRATCH/lscd.pub" ||
			fail "lscd made no key"
		LSCD_ARGS=(--agent-listen "tcp://127.0.0.1:$LSC_AGENT_PORT" --curve-key "$LSC_SCRATCH/lscd.key"
			--authorized-keys "$LSC_SCRATCH/keys" --dhcp-hosts "$LSC_SCRATCH/dhcp-hosts" --seed 1)
	fi
	local i
	for i in 1 2 3; do   # pg_free_port can race with another test: retry
		pg_start "$LSC_SCRATCH/pg" && break
		[ "$i" -lt 3 ] || fail "PostgreSQL did not start"
	done
	export LSC_MANAGER="ipc://$LSC_SCRATCH/lscd.sock"
	lscd_start
}
