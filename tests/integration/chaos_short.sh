#!/usr/bin/env bash
# A short run of the fault harness (tests/chaos, docs/reliability.md): lsc-chaos starts its
# own PostgreSQL, lscd, lsc-fenced and agents (fake, test:///default, and one on
# qemu:///system with real TCG VMs), injects 30 seeded faults (kill -9 and restart of
# agents, lscd and PostgreSQL; SIGSTOP of agents past their lease) and fails on any
# violation: two live instances of an identity at once, an identity lost or changed, a
# host over capacity, no convergence, or a host fencing itself because lscd or PostgreSQL
# restarted. Needs qemu:///system as qemu_vm.sh does (as root it starts the private
# libvirtd itself and stops what it started). LSC_CHAOS_SEED replays another seed.
# Heartbeats every 500 ms: with a 4 s lease the agent starts destroying 2 s after its
# last acknowledged heartbeat was sent, and at 1000 ms a lscd restart that straddles one
# heartbeat races the next ack against that moment (seen once in 200 faults, see
# docs/reliability.md); the production lease of 10 s leaves 7 s.
set -euo pipefail
: "${LSC_BIN:?LSC_BIN must point at the bin directory of the build}"
exec "$LSC_BIN/lsc-chaos" --seed "${LSC_CHAOS_SEED:-1}" --faults 30 --max-seconds 420 --heartbeat-ms 500
