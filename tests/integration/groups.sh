#!/usr/bin/env bash
# Placement groups from the CLI: create (policies, defaults, limits), servers joining
# and leaving, members in show and list, delete refused while members remain, unknown
# groups refused with nothing changed, bad input refused before anything is sent.
set -euo pipefail
. "$LSC_TEST_LIB/pg.sh"
. "$LSC_TEST_LIB/lscd.sh"
lsc_test_setup

# --- create: defaults, an explicit limit, affinity
expect_exit 0 lsc --json group create web
for key in name policy max_per_host members created_at; do
	jq -e --arg k "$key" 'has($k)' <<<"$OUT" >/dev/null || fail "group JSON lacks key $key: $OUT"
done
expect_eq "$(jq -r .name <<<"$OUT")" web "group name"
expect_eq "$(jq -r .policy <<<"$OUT")" anti-affinity "default policy"
expect_eq "$(jq -r .max_per_host <<<"$OUT")" 1 "default max_per_host"
expect_eq "$(jq -c .members <<<"$OUT")" '[]' "members of a new group"
expect_exit 0 lsc group create db --policy anti-affinity --max-per-host 2
expect_contains "$OUT" anti-affinity "group create output"
expect_exit 0 lsc --json group create cache --policy affinity
expect_eq "$(jq -r .policy <<<"$OUT")" affinity "affinity policy"
expect_eq "$(jq -r .max_per_host <<<"$OUT")" null "affinity has no per-host limit"
expect_exit 1 lsc group create web
expect_one_line_error
expect_contains "$ERR" "already exists" "duplicate group"

# --- bad input: exit 2, one line, nothing sent
expect_exit 2 lsc group create g1 --policy together
expect_one_line_error
expect_contains "$ERR" together "bad policy"
expect_exit 2 lsc group create g1 --max-per-host 0
expect_one_line_error
expect_exit 2 lsc group create g1 --max-per-host 1000001
expect_one_line_error
expect_exit 2 lsc group create g1 --max-per-host -1
expect_one_line_error
expect_exit 2 lsc group create g1 --policy affinity --max-per-host 2
expect_one_line_error
expect_contains "$ERR" "anti-affinity groups only" "max per host with affinity"
expect_exit 2 lsc group create Bad_Name
expect_one_line_error
expect_exit 2 lsc group create none
expect_one_line_error
expect_contains "$ERR" reserved "the name none"
expect_exit 2 lsc group show
expect_one_line_error
expect_exit 2 lsc server create x1 --vcpus 1 --memory 64 --group Bad_Name
expect_one_line_error
expect_exit 0 lsc --json group list
expect_eq "$(jq -r '[.[].name] | join(",")' <<<"$OUT")" cache,db,web "groups after refusals"

# --- servers join; members show in group show and list, the group in server show
expect_exit 0 lsc server create web2 --vcpus 1 --memory 64 --group web
expect_exit 0 lsc server create web1 --vcpus 1 --memory 64 --group web
expect_exit 0 lsc server create db1 --vcpus 1 --memory 64 --group db
expect_exit 0 lsc server create solo --vcpus 1 --memory 64 --group none
expect_exit 0 lsc --json server show web1
expect_eq "$(jq -r .group <<<"$OUT")" web "group of web1"
expect_exit 0 lsc --json server show solo
expect_eq "$(jq -r .group <<<"$OUT")" null "group of solo (--group none)"
expect_exit 0 lsc server show web1
expect_contains "$OUT" "group:       web" "server show text"
expect_exit 0 lsc --json group show web
expect_eq "$(jq -c .members <<<"$OUT")" '["web1","web2"]' "members of web, sorted"
expect_exit 0 lsc group show web
expect_contains "$OUT" "web1, web2" "group show text"
expect_contains "$OUT" anti-affinity "group show text"
expect_exit 0 lsc group list
expect_contains "$OUT" NAME "group list header"
expect_contains "$(grep '^web ' <<<"$OUT")" anti-affinity "group list row of web"
expect_eq "$(grep '^web ' <<<"$OUT" | awk '{print $NF}')" 2 "member count of web in the table"
expect_eq "$(grep '^cache ' <<<"$OUT" | awk '{print $3}')" - "max/host of an affinity group in the table"
expect_exit 0 lsc --json group list
expect_eq "$(jq -c '[.[] | {name, n: (.members | length)}]' <<<"$OUT")" \
	'[{"name":"cache","n":0},{"name":"db","n":1},{"name":"web","n":2}]' "group list JSON"

# --- delete is refused while members remain, and changes nothing
expect_exit 1 lsc group delete web
expect_one_line_error
expect_contains "$ERR" "group web still has 2 members" "delete with members"
expect_exit 0 lsc --json group show web
expect_eq "$(jq -c .members <<<"$OUT")" '["web1","web2"]' "members after the refused delete"

# --- unknown groups are refused (exit 1) and change nothing
servers=$(lsc --json server list)
events=$(lsc --json events --limit 10000 | jq length)
expect_exit 1 lsc server create ghost --vcpus 1 --memory 64 --group nope
expect_one_line_error
expect_contains "$ERR" "group nope not found" "create with an unknown group"
expect_exit 1 lsc server show ghost
expect_exit 1 lsc server edit web1 --group nope
expect_one_line_error
expect_contains "$ERR" "group nope not found" "edit with an unknown group"
expect_eq "$(lsc --json server list)" "$servers" "servers after the refusals"
expect_eq "$(lsc --json events --limit 10000 | jq length)" "$events" "events after the refusals"

# --- leaving and moving
expect_exit 0 lsc --json server edit web2 --group none
expect_eq "$(jq -r .group <<<"$OUT")" null "group of web2 after --group none"
expect_exit 0 lsc --json server edit web1 --group db
expect_eq "$(jq -r .group <<<"$OUT")" db "group of web1 after moving"
expect_exit 0 lsc --json group show db
expect_eq "$(jq -c .members <<<"$OUT")" '["db1","web1"]' "members of db after the move"
expect_exit 0 lsc --json events --server web1
expect_eq "$(jq -cS '[.[] | select(.kind == "server.edit") | .detail.group]' <<<"$OUT")" \
	'[{"from":"web","to":"db"}]' "the edit event records the move"
expect_exit 2 lsc server edit web1 --group Bad_Name
expect_one_line_error

# --- now empty, web can go
expect_exit 0 lsc group delete web
expect_contains "$OUT" "deleted group web" "group delete output"
expect_exit 1 lsc group show web
expect_one_line_error
expect_contains "$ERR" "group web not found" "show a deleted group"
expect_exit 0 lsc --json events
expect_eq "$(jq '[.[] | select(.kind == "group.create")] | length' <<<"$OUT")" 3 "group.create events"
expect_eq "$(jq -r '[.[] | select(.kind == "group.delete") | .detail.name] | join(",")' <<<"$OUT")" web \
	"group.delete events"
expect_exit 0 lsc group --help
expect_contains "$OUT" "holds no host" "group help"
expect_exit 0 lsc server --help
expect_contains "$OUT" "--group NAME" "server help"
echo "ok"
