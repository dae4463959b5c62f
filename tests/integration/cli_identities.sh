#!/usr/bin/env bash
# Identities from the CLI: pools, servers with allocated and explicit addresses,
# edit, rename, delete (frees the addresses), and the event trail.
set -euo pipefail
. "$LSC_TEST_LIB/pg.sh"
. "$LSC_TEST_LIB/lscd.sh"
lsc_test_setup

# --- pools
expect_exit 0 lsc pool create net1 --cidr 10.10.0.0/24 --gateway 10.10.0.1
expect_exit 0 lsc pool create net2 --cidr 10.20.0.0/24
expect_exit 0 lsc --json pool show net1
expect_eq "$(jq -r .name <<<"$OUT")" net1 "pool name"
expect_eq "$(jq -r .cidr <<<"$OUT")" 10.10.0.0/24 "pool cidr"
expect_eq "$(jq -r .gateway <<<"$OUT")" 10.10.0.1 "pool gateway"
expect_exit 0 lsc pool show net1
expect_contains "$OUT" 10.10.0.0/24 "pool show"
expect_exit 0 lsc --json pool list
expect_eq "$(jq -r '[.[].name] | sort | join(",")' <<<"$OUT")" net1,net2 "pool list names"
expect_exit 0 lsc pool list
expect_contains "$OUT" net1 "pool list table"
expect_contains "$OUT" net2 "pool list table"

# --- a server with every default
expect_exit 0 lsc server create web1 --vcpus 2 --memory 1024 --pool net1
expect_exit 0 lsc --json server show web1
web1=$OUT
for key in uuid name kind vcpus memory_mib disk_gib disk_mode image macs ips hostname \
	labels group lifetime_s desired state host generation; do
	jq -e --arg k "$key" 'has($k)' <<<"$web1" >/dev/null || fail "server JSON lacks key $key: $web1"
done
uuid=$(jq -r .uuid <<<"$web1")
[[ $uuid =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] || fail "not a UUID: $uuid"
mac=$(jq -r '.macs[0]' <<<"$web1")
[[ $mac =~ ^02:4c:53(:[0-9a-f]{2}){3}$ ]] || fail "MAC without the default prefix 02:4c:53: $mac"
expect_eq "$(jq -r '.macs | length' <<<"$web1")" 1 "number of MACs"
expect_eq "$(jq -r '.ips | join(",")' <<<"$web1")" 10.10.0.2 "first IP (gateway .1 skipped)"
expect_eq "$(jq -r .hostname <<<"$web1")" web1 "default hostname"
expect_eq "$(jq -r .name <<<"$web1")" web1 name
expect_eq "$(jq -r .vcpus <<<"$web1")" 2 vcpus
expect_eq "$(jq -r .memory_mib <<<"$web1")" 1024 memory_mib
expect_eq "$(jq -r .kind <<<"$web1")" vm "default kind"
expect_eq "$(jq -r .disk_mode <<<"$web1")" ephemeral "default disk mode"
expect_eq "$(jq -r .lifetime_s <<<"$web1")" null "default lifetime (none)"
expect_eq "$(jq -r .desired <<<"$web1")" stopped "desired after create"
expect_eq "$(jq -r .state <<<"$web1")" defined "state after create"
# the same identity by UUID
expect_exit 0 lsc --json server show "$uuid"
expect_eq "$OUT" "$web1" "show by UUID"

# the next one gets the next free address
expect_exit 0 lsc server create web2 --vcpus 1 --memory 512 --pool net1
expect_eq "$(lsc --json server show web2 | jq -r '.ips[0]')" 10.10.0.3 "second IP"

# --- explicit everything round-trips
expect_exit 0 lsc server create db1 --vcpus 4 --memory 4096 --disk 20 \
	--mac 02:aa:bb:cc:dd:01 --ip 10.20.0.50 --label tier=db --label env=prod \
	--lifetime 7d --kind container --disk-mode persistent --image debian-12 \
	--hostname db1.example.org
expect_exit 0 lsc --json server show db1
db1=$OUT
expect_eq "$(jq -r '.macs | join(",")' <<<"$db1")" 02:aa:bb:cc:dd:01 "explicit MAC"
expect_eq "$(jq -r '.ips | join(",")' <<<"$db1")" 10.20.0.50 "explicit IP"
expect_eq "$(jq -r .labels.tier <<<"$db1")" db "label tier"
expect_eq "$(jq -r .labels.env <<<"$db1")" prod "label env"
expect_eq "$(jq -r .lifetime_s <<<"$db1")" 604800 "lifetime 7d"
expect_eq "$(jq -r .kind <<<"$db1")" container kind
expect_eq "$(jq -r .disk_mode <<<"$db1")" persistent "disk mode"
expect_eq "$(jq -r .disk_gib <<<"$db1")" 20 disk_gib
expect_eq "$(jq -r .image <<<"$db1")" debian-12 image
expect_eq "$(jq -r .hostname <<<"$db1")" db1.example.org hostname

# --- list: table and JSON
expect_exit 0 lsc server list
for n in web1 web2 db1; do expect_contains "$OUT" "$n" "server list table"; done
expect_contains "$OUT" 10.10.0.2 "server list table"
expect_exit 0 lsc --json server list
expect_eq "$(jq -r '[.[].name] | sort | join(",")' <<<"$OUT")" db1,web1,web2 "server list names"
# show adds the measured load (lscd's memory, docs/load.md); a list page has no room for it
expect_eq "$(jq -c . <<<"$db1" | jq -c .measured)" null "db1 never ran: nothing measured"
expect_eq "$(jq -c '.[] | select(.name == "db1")' <<<"$OUT")" "$(jq -c 'del(.measured)' <<<"$db1")" "db1 in list = show"
# in pages smaller than the list, lsc asks page after page and prints the same one list
full_json=$OUT
full_table=$(lsc server list)
for size in 1 2; do
	expect_exit 0 lsc --json server list --page-size "$size"
	expect_eq "$OUT" "$full_json" "JSON list in pages of $size"
	expect_exit 0 lsc server list --page-size "$size"
	expect_eq "$OUT" "$full_table" "table in pages of $size"
done

# --- edit changes only the fields given
expect_exit 0 lsc server edit db1 --vcpus 8
expect_exit 0 lsc --json server show db1
expect_eq "$(jq -r .vcpus <<<"$OUT")" 8 "vcpus after edit"
strip='del(.vcpus, .updated_at)'
expect_eq "$(jq -cS "$strip" <<<"$OUT")" "$(jq -cS "$strip" <<<"$db1")" "fields edit did not name"
expect_exit 0 lsc server edit db1 --memory 2048 --label env=staging --label owner=ops
expect_exit 0 lsc --json server show db1
expect_eq "$(jq -r .memory_mib <<<"$OUT")" 2048 "memory after edit"
expect_eq "$(jq -cS .labels <<<"$OUT")" '{"env":"staging","owner":"ops","tier":"db"}' "labels after edit"
expect_exit 0 lsc server edit db1 --unlabel env
expect_exit 0 lsc --json server show db1
expect_eq "$(jq -cS .labels <<<"$OUT")" '{"owner":"ops","tier":"db"}' "labels after --unlabel"
expect_eq "$(jq -r .vcpus <<<"$OUT")" 8 "vcpus kept"

# --- rename keeps the identity
expect_exit 0 lsc server edit web2 --name app2
expect_exit 0 lsc --json server show app2
expect_eq "$(jq -r .name <<<"$OUT")" app2 "renamed"
expect_eq "$(jq -r '.ips[0]' <<<"$OUT")" 10.10.0.3 "IP kept across rename"
expect_exit 1 lsc server show web2

# --- delete frees MAC and IP
expect_exit 0 lsc server delete db1
expect_exit 1 lsc server show db1
expect_exit 0 lsc server create db2 --vcpus 1 --memory 64 --mac 02:aa:bb:cc:dd:01 --ip 10.20.0.50
expect_exit 0 lsc --json server show db2
expect_eq "$(jq -r '.macs[0] + " " + .ips[0]' <<<"$OUT")" "02:aa:bb:cc:dd:01 10.20.0.50" "reused MAC and IP"
expect_exit 0 lsc server delete web1
expect_exit 0 lsc server create web3 --vcpus 1 --memory 64 --pool net1
expect_eq "$(lsc --json server show web3 | jq -r '.ips[0]')" 10.10.0.2 "freed IP is the lowest free again"

# --- the event trail: every change, with its actor
expect_exit 0 lsc --json events --server db1
kinds=$(jq -r '[.[].kind] | join(",")' <<<"$OUT")
for k in server.create server.edit server.delete; do expect_contains "$kinds" "$k" "events of db1"; done
expect_eq "$(jq -r '[.[] | select(.kind == "server.edit")] | length' <<<"$OUT")" 3 "edits of db1"
expect_eq "$(jq -r '[.[] | select((.actor // "") == "")] | length' <<<"$OUT")" 0 "events without actor"
expect_exit 0 lsc events --server db1
expect_contains "$OUT" server.delete "events table"
# a renamed server's history follows it, by its new name and by its UUID
expect_exit 0 lsc --json events --server app2
expect_eq "$(jq -r '[.[].kind] | join(",")' <<<"$OUT")" "server.create,server.edit" "history of app2 (was web2)"
uuid2=$(lsc --json server show app2 | jq -r .uuid)
expect_exit 0 lsc --json events --server "$uuid2"
expect_eq "$(jq length <<<"$OUT")" 2 "history of app2 by UUID"
expect_exit 0 lsc --json events --limit 2
expect_eq "$(jq length <<<"$OUT")" 2 "events --limit 2"
expect_exit 0 lsc --json events
[ "$(jq length <<<"$OUT")" -ge 10 ] || fail "expected at least 10 events: $OUT"

# --- pool delete once empty
expect_exit 0 lsc pool create spare --cidr 10.99.0.0/24
expect_exit 0 lsc pool delete spare
expect_exit 1 lsc pool show spare
echo "ok"
