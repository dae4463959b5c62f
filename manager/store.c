/* The store: every SQL statement of lscd, the libpq connection, migrations, the
 * transaction helper (retries, reconnects, COMMIT with unknown outcome) and the
 * store thread that runs CLI requests off the loop thread. Only file with libpq. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <libpq-fe.h>
#include <uuid/uuid.h>
#include <zmq.h>
#include "err.h"
#include "log.h"
#include "schema.h"
#include "sched.h"                /* sched_policy_names: placement groups */
#include "store.h"
#include "util.h"
#include "validate.h"
#include "wire.h"                 /* LSC_WIRE_MAX_FRAME: what one page must fit */

#define UUID_STR 37
#define JOB_BUDGET_DEFAULT_US   (5 * 1000000LL)
#define CONNECT_MIN_US          (250 * 1000LL)   /* one connect attempt may take this long past a deadline */
#define BACKOFF_MIN_US          (50 * 1000LL)
#define BACKOFF_JOB_MAX_US      (1000 * 1000LL)
#define BACKOFF_IDLE_MAX_US     (5 * 1000000LL)  /* background reconnects while no job waits */
#define TXN_BUSY_RETRIES        5                /* 40001 / 40P01 */
#define ALLOC_RETRIES           100              /* lost races for one address */
#define MAC_RANDOM_TRIES        64
#define MAX_ADDRS               16               /* MACs and IPs per server */
#define MAX_LABELS              64
#define EVENT_LIMIT_DEFAULT     50
#define EVENT_LIMIT_MAX         10000
/* Server and host lists come in pages, keyset by name. A page also stops before its
 * rows pass LIST_PAGE_BYTES packed, so that its envelope stays under the wire limit
 * whatever the rows hold (64 long labels, a host's many instances); the last quarter
 * is headroom for the envelope and for what lscd adds to hosts after the store
 * (liveness, health: at most LIST_HOST_MERGE_BYTES each). */
#define LIST_SERVERS_DEFAULT    500
#define LIST_HOSTS_DEFAULT      200
#define LIST_LIMIT_MAX          5000
#define LIST_PAGE_BYTES         ((size_t)LSC_WIRE_MAX_FRAME / 4 * 3)
#define LIST_HOST_MERGE_BYTES   360      /* + measured load's summary: 60 */
#define MIGRATE_LOCK_KEY        "7107427"        /* "lsc": one migrating lscd at a time */

static const struct lsc_mac mac_prefix_default = { { 0x02, 0x4c, 0x53 } };

/* ---- statements ---------------------------------------------------------- */

/* A server row as the reply needs it; the column order is enum server_col. */
#define SERVER_COLS                                                                     \
        "SELECT s.uuid, s.name, s.kind, s.vcpus, s.memory_mib, s.disk_gib, s.disk_mode,"  \
        " s.image, s.hostname,"                                                         \
        " ARRAY(SELECT l.key FROM jsonb_each_text(s.labels) l ORDER BY l.key),"         \
        " ARRAY(SELECT l.value FROM jsonb_each_text(s.labels) l ORDER BY l.key),"       \
        " ARRAY(SELECT m.mac::text FROM macs m WHERE m.server_uuid = s.uuid"            \
        "       ORDER BY m.position),"                                                  \
        " ARRAY(SELECT host(i.ip) FROM ips i WHERE i.server_uuid = s.uuid"              \
        "       ORDER BY i.position),"                                                  \
        " (SELECT p.name FROM ips i JOIN pools p ON p.id = i.pool_id"                   \
        "   WHERE i.server_uuid = s.uuid ORDER BY i.position LIMIT 1),"                 \
        " coalesce(s.lifetime_s, 0), s.desired, s.state, coalesce(h.name, ''),"         \
        " s.generation,"                                                                \
        " coalesce((SELECT g.name FROM groups g WHERE g.id = s.group_id), ''),"         \
        " floor(extract(epoch FROM s.created_at))::bigint,"                             \
        " floor(extract(epoch FROM s.updated_at))::bigint,"                             \
        " coalesce(floor(extract(epoch FROM s.expires_at))::bigint, 0),"                \
        " s.reason, s.failures, coalesce(s.migrate_from, ''), coalesce(s.migrate_to, '')," \
        " ARRAY(SELECT l.key FROM jsonb_each_text(s.require_labels) l ORDER BY l.key),"  \
        " ARRAY(SELECT l.value FROM jsonb_each_text(s.require_labels) l ORDER BY l.key)," \
        " s.turnovers, s.postponed, s.renewals, coalesce(s.turnover_to, '')"            \
        " FROM servers s LEFT JOIN hosts h ON h.id = s.host_id"

/* The same columns, for lscd's load of every server not merely defined, with only what
 * its view and records need (placement, state, host, name for its logs): empty MACs,
 * IPs, labels, image, hostname, disk mode, pool, times and reason. Only a binding
 * server's INSTANTIATE may be sent from a loaded row, and binding rows are loaded with
 * SERVER_COLS. At 100,000 rows SERVER_COLS's per-row subqueries cost seconds. */
#define SERVER_LOAD_COLS                                                                \
        "SELECT s.uuid, s.name, s.kind, s.vcpus, s.memory_mib, s.disk_gib, '', '', '',"   \
        " '{}', '{}', '{}', '{}', '', 0::bigint, s.desired, s.state, coalesce(h.name, '')," \
        " s.generation, coalesce(g.name, ''), 0::bigint, 0::bigint,"                   \
        " coalesce(floor(extract(epoch FROM s.expires_at))::bigint, 0), '', s.failures," \
        " coalesce(s.migrate_from, ''), coalesce(s.migrate_to, ''),"                    \
        " CASE WHEN s.require_labels = '{}' THEN '{}' ELSE"                             \
        "   ARRAY(SELECT l.key FROM jsonb_each_text(s.require_labels) l ORDER BY l.key) END," \
        " CASE WHEN s.require_labels = '{}' THEN '{}' ELSE"                             \
        "   ARRAY(SELECT l.value FROM jsonb_each_text(s.require_labels) l ORDER BY l.key) END," \
        " s.turnovers, s.postponed, s.renewals, coalesce(s.turnover_to, '')"            \
        " FROM servers s LEFT JOIN hosts h ON h.id = s.host_id"                         \
        " LEFT JOIN groups g ON g.id = s.group_id"

enum server_col {
        SC_UUID, SC_NAME, SC_KIND, SC_VCPUS, SC_MEMORY, SC_DISK, SC_DISK_MODE, SC_IMAGE,
        SC_HOSTNAME, SC_LABEL_KEYS, SC_LABEL_VALUES, SC_MACS, SC_IPS, SC_POOL, SC_LIFETIME,
        SC_DESIRED, SC_STATE, SC_HOST, SC_GENERATION, SC_GROUP, SC_CREATED, SC_UPDATED,
        SC_EXPIRES, SC_REASON, SC_FAILURES, SC_MIGRATE_FROM, SC_MIGRATE_TO, SC_REQ_KEYS, SC_REQ_VALUES,
        SC_TURNOVERS, SC_POSTPONED, SC_RENEWALS, SC_TURNOVER_TO,
        SC_COUNT
};

/* What an event records about a server: its persistent attributes. */
#define SERVER_JSON                                                                     \
        "jsonb_build_object('name', s.name, 'kind', s.kind, 'vcpus', s.vcpus,"          \
        " 'memory_mib', s.memory_mib, 'disk_gib', s.disk_gib, 'disk_mode', s.disk_mode," \
        " 'image', s.image, 'hostname', s.hostname, 'labels', s.labels,"                \
        " 'group', (SELECT g.name FROM groups g WHERE g.id = s.group_id),"              \
        " 'lifetime_s', s.lifetime_s, 'desired', s.desired,"                            \
        " 'require_labels', s.require_labels,"                                          \
        " 'macs', to_jsonb(ARRAY(SELECT m.mac::text FROM macs m"                        \
        "                        WHERE m.server_uuid = s.uuid ORDER BY m.position)),"   \
        " 'ips', to_jsonb(ARRAY(SELECT host(i.ip) FROM ips i"                           \
        "                       WHERE i.server_uuid = s.uuid ORDER BY i.position)))"

/* A pool row: id, name, cidr, gateway ('' when none), allocated addresses. */
#define POOL_COLS                                                                       \
        "SELECT p.id, p.name, p.cidr::text, coalesce(host(p.gateway), ''),"             \
        " (SELECT count(*) FROM ips i WHERE i.pool_id = p.id) FROM pools p"

enum pool_col { PC_ID, PC_NAME, PC_CIDR, PC_GATEWAY, PC_ALLOCATED };

#define HOST_COLS_BUT_INSTANCES                                                         \
        "SELECT h.id, h.uuid::text, h.name, h.liveness, h.admin, h.driver, h.kind,"      \
        " ARRAY(SELECT l.key FROM jsonb_each_text(h.labels) l ORDER BY l.key),"         \
        " ARRAY(SELECT l.value FROM jsonb_each_text(h.labels) l ORDER BY l.key),"       \
        " h.vcpus, h.memory_mib, h.disk_gib, h.alloc_ratio,"                             \
        " h.used_vcpus, h.used_memory_mib, h.used_disk_gib, h.epoch,"                    \
        " floor(extract(epoch FROM h.created_at))::bigint,"

#define HOST_COLS                                                                       \
        HOST_COLS_BUT_INSTANCES                                                         \
        " coalesce((SELECT array_agg(s.name ORDER BY s.name) FROM servers s"             \
        "           WHERE s.host_id = h.id)::text, '{}')"                                \
        " FROM hosts h"

/* The load's hosts: the view has no use for the names of their servers. */
#define HOST_LOAD_COLS HOST_COLS_BUT_INSTANCES " '{}' FROM hosts h"

enum host_col {
        HC_ID, HC_UUID, HC_NAME, HC_LIVENESS, HC_ADMIN, HC_DRIVER, HC_KIND, HC_LABEL_KEYS,
        HC_LABEL_VALUES,
        HC_VCPUS, HC_MEMORY, HC_DISK, HC_RATIO, HC_USED_VCPUS, HC_USED_MEMORY, HC_USED_DISK,
        HC_EPOCH, HC_CREATED, HC_INSTANCES
};

#define EVENT_COLS                                                                      \
        "SELECT e.id, floor(extract(epoch FROM e.at) * 1000000)::bigint, e.actor, e.kind," \
        " coalesce(e.server_name, ''), coalesce(e.server_uuid::text, ''), e.detail::text" \
        " FROM events e"

enum event_col { EC_ID, EC_AT, EC_ACTOR, EC_KIND, EC_SERVER, EC_UUID, EC_DETAIL };

/* ---- placement groups: a group row with its members (server names, sorted) ---- */
#define GROUP_COLS_BUT_MEMBERS                                                          \
        "SELECT g.id, g.name, g.policy, g.max_per_host,"                                \
        " floor(extract(epoch FROM g.created_at))::bigint,"

#define GROUP_COLS                                                                      \
        GROUP_COLS_BUT_MEMBERS                                                          \
        " ARRAY(SELECT s.name FROM servers s WHERE s.group_id = g.id ORDER BY s.name)"  \
        " FROM groups g"

/* The load's groups: their policies, not their members. */
#define GROUP_LOAD_COLS GROUP_COLS_BUT_MEMBERS " '{}'::text[] FROM groups g"

enum group_col { GC_ID, GC_NAME, GC_POLICY, GC_MAX_PER_HOST, GC_CREATED, GC_MEMBERS };
/* ---- end of placement groups ---- */

enum stmt {
        ST_MIG_LOCK, ST_MIG_TABLE, ST_MIG_CURRENT, ST_MIG_RECORD,
        ST_SERVER_BY_NAME, ST_SERVER_BY_UUID, ST_SERVER_LIST, ST_SERVER_LIST_ALL,
        ST_SERVER_LOCK_BY_NAME, ST_SERVER_LOCK_BY_UUID,
        ST_SERVER_INSERT, ST_SERVER_UPDATE, ST_SERVER_DELETE, ST_SERVER_JSON, ST_SERVER_SET_REQUIRE,
        ST_MAC_INSERT, ST_MAC_HOLDER, ST_MAC_DELETE_SERVER,
        ST_IP_INSERT, ST_IP_HOLDER, ST_IP_DELETE_SERVER, ST_IP_NEXT_FREE,
        ST_POOL_BY_NAME, ST_POOL_BY_ID, ST_POOL_LIST, ST_POOL_FIRST_TWO, ST_POOL_CONTAINING,
        ST_POOL_OVERLAP, ST_POOL_INSERT, ST_POOL_LOCK, ST_POOL_DELETE,
        ST_EVENT_SERVER, ST_EVENT_POOL, ST_EVENT_SEEN, ST_EVENT_LIST_ALL, ST_EVENT_LIST_SERVER,
        ST_HOST_REGISTER, ST_HOST_BY_NAME, ST_HOST_BY_UUID, ST_HOST_LIST, ST_HOST_LIST_ALL, ST_EVENT_HOST,
        ST_SERVER_SET_STATE, ST_SERVERS_BY_UUIDS, ST_LOAD_SETTINGS, ST_LOAD_SERVERS, ST_LOAD_HOSTS,
        ST_LOAD_GROUPS, ST_BIND_SERVERS, ST_BIND_RESERVE,
        ST_TURNOVER_DIE, ST_TURNOVER_POSTPONE, ST_SERVER_RENEW,
        ST_BIND_REVERT, ST_TRANSITION, ST_HOST_RELEASE, ST_EVENT_STATE, ST_SERVER_MIGRATE,
        ST_SERVERS_LOCK_REFS, ST_SERVERS_START, ST_TRANSITIONS, ST_SERVER_STATES,
        ST_HOST_LOCK_BY_NAME, ST_HOST_LOCK_BY_UUID, ST_HOST_SET_ADMIN, ST_HOST_DRAIN_SERVERS,
        ST_HOST_BOUND_COUNT, ST_HOST_DELETE,
        /* placement groups */
        ST_GROUP_BY_NAME, ST_GROUP_BY_ID, ST_GROUP_LIST, ST_GROUP_INSERT, ST_GROUP_LOCK,
        ST_GROUP_DELETE, ST_GROUP_ID_SHARE, ST_SERVER_SET_GROUP, ST_EVENT_GROUP,
        ST_COUNT
};

struct stmt_def {
        const char *name;
        const char *sql;
        bool rows;               /* PGRES_TUPLES_OK expected, else PGRES_COMMAND_OK */
        bool unprepared;         /* run before the schema exists (migrations) */
};

#define S(id, rows_, text) [id] = { .name = #id, .sql = text, .rows = rows_ }
#define S_UNPREPARED(id, rows_, text) [id] = { .name = #id, .sql = text, .rows = rows_, .unprepared = true }

static const struct stmt_def stmts[ST_COUNT] = {
        S_UNPREPARED(ST_MIG_LOCK, true, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")"),
        S_UNPREPARED(ST_MIG_TABLE, false,
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"),
        S_UNPREPARED(ST_MIG_CURRENT, true, "SELECT coalesce(max(version), 0) FROM schema_version"),
        S_UNPREPARED(ST_MIG_RECORD, false,
                "INSERT INTO schema_version (version, name) VALUES ($1::integer, $2)"),

        S(ST_SERVER_BY_NAME, true, SERVER_COLS " WHERE s.name = $1"),
        S(ST_SERVER_BY_UUID, true, SERVER_COLS " WHERE s.uuid = $1::uuid"),
        /* a page: names after $1, at most $2 rows (names are unique) */
        S(ST_SERVER_LIST, true, SERVER_COLS " WHERE s.name > $1 ORDER BY s.name LIMIT $2::integer"),
        S(ST_SERVER_LIST_ALL, true, SERVER_COLS " ORDER BY s.name"),
        S(ST_SERVER_LOCK_BY_NAME, true,
                "SELECT uuid, name, kind, state FROM servers WHERE name = $1 FOR UPDATE"),
        S(ST_SERVER_LOCK_BY_UUID, true,
                "SELECT uuid, name, kind, state FROM servers WHERE uuid = $1::uuid FOR UPDATE"),
        S(ST_SERVER_INSERT, true,
                "INSERT INTO servers (uuid, name, kind, vcpus, memory_mib, disk_gib, disk_mode,"
                " image, hostname, labels, lifetime_s)"
                " VALUES ($1::uuid, $2, $3, $4::integer, $5::bigint, $6::bigint, $7, $8, $9,"
                " jsonb_object($10::text[], $11::text[]), $12::bigint)"
                " ON CONFLICT (name) DO NOTHING RETURNING uuid"),
        /* NULL parameters leave their column alone */
        S(ST_SERVER_UPDATE, false,
                "UPDATE servers SET name = coalesce($2, name), kind = coalesce($3, kind),"
                " vcpus = coalesce($4::integer, vcpus),"
                " memory_mib = coalesce($5::bigint, memory_mib),"
                " disk_gib = coalesce($6::bigint, disk_gib),"
                " disk_mode = coalesce($7, disk_mode), image = coalesce($8, image),"
                " hostname = coalesce($9, hostname),"
                " labels = (labels || jsonb_object(coalesce($10::text[], '{}'),"
                "                                  coalesce($11::text[], '{}')))"
                "          - coalesce($12::text[], '{}'),"
                " lifetime_s = CASE WHEN $13::boolean THEN $14::bigint ELSE lifetime_s END,"
                /* no longer a mayfly: no death; a new lifetime counts from the next binding */
                " expires_at = CASE WHEN $13::boolean AND $14::bigint IS NULL THEN NULL ELSE expires_at END,"
                " updated_at = now()"
                " WHERE uuid = $1::uuid"),
        S(ST_SERVER_DELETE, false, "DELETE FROM servers WHERE uuid = $1::uuid"),
        S(ST_SERVER_SET_REQUIRE, false,
                "UPDATE servers SET require_labels = jsonb_object($2::text[], $3::text[]) WHERE uuid = $1::uuid"),
        S(ST_SERVER_JSON, true, "SELECT " SERVER_JSON "::text FROM servers s WHERE s.uuid = $1::uuid"),

        S(ST_MAC_INSERT, true,
                "INSERT INTO macs (mac, server_uuid, position)"
                " VALUES ($1::macaddr, $2::uuid, $3::smallint)"
                " ON CONFLICT (mac) DO NOTHING RETURNING mac"),
        S(ST_MAC_HOLDER, true,
                "SELECT s.name FROM macs m JOIN servers s ON s.uuid = m.server_uuid"
                " WHERE m.mac = $1::macaddr"),
        S(ST_MAC_DELETE_SERVER, false, "DELETE FROM macs WHERE server_uuid = $1::uuid"),

        S(ST_IP_INSERT, true,
                "INSERT INTO ips (ip, pool_id, server_uuid, position)"
                " VALUES ($1::inet, $2::bigint, $3::uuid, $4::smallint)"
                " ON CONFLICT (ip) DO NOTHING RETURNING host(ip)"),
        S(ST_IP_HOLDER, true,
                "SELECT s.name FROM ips i JOIN servers s ON s.uuid = i.server_uuid"
                " WHERE i.ip = $1::inet"),
        S(ST_IP_DELETE_SERVER, false, "DELETE FROM ips WHERE server_uuid = $1::uuid"),
        /* The lowest free address is the first host address, or follows the gateway or
         * an allocated address: probing only those never scans the whole range. */
        S(ST_IP_NEXT_FREE, true,
                "WITH b AS (SELECT p.cidr, p.gateway, family(p.cidr) AS fam,"
                "   set_masklen(p.cidr::inet, CASE family(p.cidr) WHEN 4 THEN 32 ELSE 128 END) AS net,"
                "   set_masklen(broadcast(p.cidr), CASE family(p.cidr) WHEN 4 THEN 32 ELSE 128 END) AS last"
                "   FROM pools p WHERE p.id = $1::bigint),"
                " cand AS (SELECT b.net + 1 AS ip FROM b"
                "   UNION ALL SELECT b.gateway + 1 FROM b WHERE b.gateway < b.last"
                "   UNION ALL SELECT i.ip + 1 FROM ips i, b WHERE i.pool_id = $1::bigint AND i.ip < b.last)"
                " SELECT host(c.ip) FROM cand c, b"
                " WHERE c.ip << b.cidr AND (b.fam = 6 OR c.ip <> b.last)"
                "   AND c.ip IS DISTINCT FROM b.gateway"
                "   AND NOT EXISTS (SELECT 1 FROM ips i WHERE i.ip = c.ip)"
                " ORDER BY c.ip LIMIT 1"),

        S(ST_POOL_BY_NAME, true, POOL_COLS " WHERE p.name = $1"),
        S(ST_POOL_BY_ID, true, POOL_COLS " WHERE p.id = $1::bigint"),
        S(ST_POOL_LIST, true, POOL_COLS " ORDER BY p.name"),
        S(ST_POOL_FIRST_TWO, true, POOL_COLS " ORDER BY p.name LIMIT 2"),
        S(ST_POOL_CONTAINING, true, POOL_COLS " WHERE p.cidr >> $1::inet"),
        S(ST_POOL_OVERLAP, true,
                "SELECT name, cidr::text FROM pools WHERE cidr && $1::cidr ORDER BY name LIMIT 1"),
        S(ST_POOL_INSERT, true,
                "INSERT INTO pools (name, cidr, gateway) VALUES ($1, $2::cidr, $3::inet) RETURNING id"),
        S(ST_POOL_LOCK, true, POOL_COLS " WHERE p.name = $1 FOR UPDATE"),
        S(ST_POOL_DELETE, false, "DELETE FROM pools WHERE id = $1::bigint"),

        /* detail: the whole server when $5 is NULL (create, delete), else what changed
         * since the snapshot $5 (edit) */
        S(ST_EVENT_SERVER, false,
                "INSERT INTO events (actor, kind, server_uuid, server_name, request_id, detail)"
                " SELECT $1, $2, s.uuid, s.name, $4::uuid,"
                "  CASE WHEN $5::jsonb IS NULL THEN j.snap ELSE"
                "   (SELECT coalesce(jsonb_object_agg(n.key, jsonb_build_object('from', o.value, 'to', n.value)), '{}')"
                "      FROM jsonb_each(j.snap) n LEFT JOIN jsonb_each($5::jsonb) o ON o.key = n.key"
                "     WHERE o.value IS DISTINCT FROM n.value) END"
                " FROM servers s, LATERAL (SELECT " SERVER_JSON " AS snap) j"
                " WHERE s.uuid = $3::uuid"),
        S(ST_EVENT_POOL, false,
                "INSERT INTO events (actor, kind, request_id, detail)"
                " SELECT $1, $2, $4::uuid, jsonb_build_object('name', p.name, 'cidr', p.cidr::text,"
                "        'gateway', host(p.gateway))"
                " FROM pools p WHERE p.id = $3::bigint"),
        S(ST_EVENT_SEEN, true, "SELECT 1 FROM events WHERE request_id = $1::uuid"),
        /* the last N in chronological order */
        S(ST_EVENT_LIST_ALL, true,
                "SELECT * FROM (" EVENT_COLS " ORDER BY e.id DESC LIMIT $1::integer) t ORDER BY 1"),
        S(ST_EVENT_LIST_SERVER, true,
                /* the name at the time, the whole history (across renames) of the server
                 * now called $1, or a server by UUID */
                "SELECT * FROM (" EVENT_COLS " WHERE e.server_name = $1"
                " OR e.server_uuid = (SELECT uuid FROM servers WHERE name = $1)"
                " OR e.server_uuid = CASE WHEN $1 ~ '^[0-9a-fA-F-]{36}$' THEN $1::uuid END"
                " ORDER BY e.id DESC LIMIT $2::integer) t ORDER BY 1"),

        /* first registration creates the host; every registration opens a new session
         * epoch and refreshes what the agent says (admin state stays the operator's) */
        S(ST_HOST_REGISTER, true,
                "INSERT INTO hosts AS h (uuid, name, kind, driver, labels, vcpus, memory_mib,"
                " disk_gib, alloc_ratio, epoch, registered_at)"
                " VALUES (gen_random_uuid(), $1, $2, $3, jsonb_object($4::text[], $5::text[]),"
                " $6::integer, $7::bigint, $8::bigint, $9::double precision, 1, now())"
                " ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, driver = EXCLUDED.driver,"
                " labels = EXCLUDED.labels, vcpus = EXCLUDED.vcpus, memory_mib = EXCLUDED.memory_mib,"
                " disk_gib = EXCLUDED.disk_gib, alloc_ratio = EXCLUDED.alloc_ratio,"
                " epoch = h.epoch + 1, registered_at = now(), updated_at = now()"
                " RETURNING h.name"),
        S(ST_HOST_BY_NAME, true, HOST_COLS " WHERE h.name = $1"),
        S(ST_HOST_BY_UUID, true, HOST_COLS " WHERE h.uuid = $1::uuid"),
        S(ST_HOST_LIST, true, HOST_COLS " WHERE h.name > $1 ORDER BY h.name LIMIT $2::integer"),
        S(ST_HOST_LIST_ALL, true, HOST_COLS " ORDER BY h.name"),
        /* start / stop: desired and the state that follows from it, with a reason */
        S(ST_SERVER_SET_STATE, false,
                "UPDATE servers SET desired = $2, state = $3, reason = $4,"
                " failures = CASE WHEN $5::boolean THEN 0 ELSE failures END, updated_at = now(),"
                /* a stopped mayfly just stops: no death, no turnover under way */
                " expires_at = CASE WHEN $2 <> 'running' THEN NULL ELSE expires_at END,"
                " turnover_to = CASE WHEN $2 <> 'running' THEN NULL ELSE turnover_to END"
                " WHERE uuid = $1::uuid"),
        S(ST_SERVERS_BY_UUIDS, true, SERVER_COLS " WHERE s.uuid = ANY($1::uuid[]) ORDER BY s.name"),
        /* What the loop's view is rebuilt from: every server not merely defined (in one
         * statement, so in one snapshot; those whose INSTANTIATE may be sent again whole),
         * every host and group, unsorted where the loop does not care. The planner costs
         * the required-labels subqueries as if every row ran them and JIT-compiles the
         * load, which takes longer than the load: not in this transaction. */
        S(ST_LOAD_SETTINGS, true, "SELECT set_config('jit', 'off', true)"),
        S(ST_LOAD_SERVERS, true,
                SERVER_LOAD_COLS " WHERE s.state NOT IN ('defined', 'binding')"
                " UNION ALL " SERVER_COLS " WHERE s.state = 'binding'"),
        S(ST_LOAD_HOSTS, true, HOST_LOAD_COLS " ORDER BY h.name"),
        S(ST_LOAD_GROUPS, true, GROUP_LOAD_COLS " ORDER BY g.name"),
        /* compare-and-set, set-based: a binding commits only at the generation the
         * scheduler saw, and bumps it */
        S(ST_BIND_SERVERS, true,
                "UPDATE servers s SET host_id = h.id, generation = s.generation + 1,"
                " state = 'binding', reason = CASE WHEN s.turnover_to IS NULL THEN ''"
                "                                  ELSE 'turnover: reborn' END,"
                " bound_at = now(), updated_at = now(), renewals = 0,"
                /* a mayfly dies its lifetime less up to jitter ($4, a fraction) after each
                 * binding: the lifetime is a maximum (mayfly_expires_at, mayfly.h) */
                " expires_at = CASE WHEN s.lifetime_s IS NULL THEN NULL ELSE now() + s.lifetime_s"
                "   * (1 - $4::double precision * random()) * interval '1 second' END"
                " FROM unnest($1::uuid[], $2::bigint[], $3::text[]) AS r(uuid, gen, host)"
                " JOIN hosts h ON h.name = r.host"
                " WHERE s.uuid = r.uuid AND s.generation = r.gen AND s.state = 'pending'"
                " AND s.desired = 'running'"
                " RETURNING s.uuid::text, s.host_id, s.vcpus, s.memory_mib, s.disk_gib"),
        /* reserve per host; a host takes its share of the batch only if all of it fits */
        S(ST_BIND_RESERVE, true,
                "UPDATE hosts h SET used_vcpus = h.used_vcpus + b.v, used_memory_mib = h.used_memory_mib + b.m,"
                " used_disk_gib = h.used_disk_gib + b.d, updated_at = now()"
                " FROM (SELECT host_id, sum(v)::integer AS v, sum(m)::bigint AS m, sum(d)::bigint AS d"
                "       FROM unnest($1::bigint[], $2::integer[], $3::bigint[], $4::bigint[])"
                "            AS x(host_id, v, m, d) GROUP BY host_id) b"
                " WHERE h.id = b.host_id"
                " AND h.used_vcpus + b.v <= floor(h.vcpus * h.alloc_ratio)"
                " AND h.used_memory_mib + b.m <= floor(h.memory_mib * h.alloc_ratio)"
                " AND h.used_disk_gib + b.d <= h.disk_gib"
                " RETURNING h.id"),
        S(ST_SERVER_MIGRATE, false,
                "UPDATE servers SET state = 'stopping', desired = 'running', reason = $2,"
                " migrate_from = $3, migrate_to = nullif($4, ''), updated_at = now()"
                " WHERE uuid = $1::uuid"),
        S(ST_BIND_REVERT, false,
                "UPDATE servers SET host_id = NULL, state = 'pending', reason = $2, updated_at = now(),"
                " expires_at = NULL"
                " WHERE uuid = ANY($1::uuid[]) AND state = 'binding'"),
        /* a mayfly's death, compare-and-set: only at generation $2, running, past its
         * expires_at less $5 s (an early retirement; else 0) (a renew that came first
         * wins), with its rebirth host $4 recorded */
        S(ST_TURNOVER_DIE, true,
                "UPDATE servers SET state = 'stopping', reason = $3, turnover_to = $4, updated_at = now()"
                " WHERE uuid = $1::uuid AND generation = $2::bigint AND state = 'running'"
                " AND desired = 'running' AND lifetime_s IS NOT NULL"
                " AND expires_at <= now() + $5::integer * interval '1 second'"
                " AND turnover_to IS NULL AND EXISTS (SELECT 1 FROM hosts WHERE name = $4)"
                " RETURNING uuid::text"),
        /* no rebirth host: the death moves $4 seconds on, and is counted */
        S(ST_TURNOVER_POSTPONE, true,
                "UPDATE servers SET postponed = postponed + 1, reason = $3,"
                " expires_at = now() + $4::integer * interval '1 second', updated_at = now()"
                " WHERE uuid = $1::uuid AND generation = $2::bigint AND state = 'running'"
                " AND desired = 'running' AND lifetime_s IS NOT NULL AND expires_at <= now()"
                " AND turnover_to IS NULL"
                " RETURNING uuid::text"),
        S(ST_SERVER_RENEW, false,
                "UPDATE servers SET expires_at = now() + $2::bigint * interval '1 second',"
                " renewals = renewals + 1, reason = $3, updated_at = now() WHERE uuid = $1::uuid"),
        /* one server's state change, only at generation $2 and from states $3 */
        S(ST_TRANSITION, true,
                "WITH old AS (SELECT uuid, host_id, vcpus, memory_mib, disk_gib FROM servers"
                "             WHERE uuid = $1::uuid AND generation = $2::bigint AND state = ANY($3::text[])"
                "             FOR UPDATE)"
                " UPDATE servers s SET"
                "  state = CASE WHEN $7::boolean AND s.failures + 1 >= 3 THEN 'failed' ELSE $4 END,"
                "  reason = $5, failures = s.failures + CASE WHEN $7::boolean THEN 1 ELSE 0 END,"
                "  host_id = CASE WHEN $6::boolean THEN NULL ELSE s.host_id END, updated_at = now(),"
                "  migrate_from = CASE WHEN $4 IN ('running', 'defined') THEN NULL ELSE s.migrate_from END,"
                "  migrate_to = CASE WHEN $4 IN ('running', 'defined') THEN NULL ELSE s.migrate_to END,"
                "  turnovers = s.turnovers + CASE WHEN $4 = 'running' AND s.turnover_to IS NOT NULL"
                "                                 THEN 1 ELSE 0 END,"
                "  turnover_to = CASE WHEN $4 IN ('running', 'defined', 'failed')"
                "                          OR ($7::boolean AND s.failures + 1 >= 3) THEN NULL"
                "                     ELSE s.turnover_to END,"
                "  expires_at = CASE WHEN $6::boolean OR $4 IN ('defined', 'failed') THEN NULL"
                "                    ELSE s.expires_at END"
                " FROM old WHERE s.uuid = old.uuid"
                " RETURNING coalesce(old.host_id, 0), old.vcpus, old.memory_mib, old.disk_gib,"
                "  coalesce((SELECT name FROM hosts WHERE id = old.host_id), '')"),
        /* many servers' state changes in one statement: each only at its generation and
         * from its states (a comma-separated list); capacity given back per host; one
         * event each, the first carrying the request id */
        S(ST_TRANSITIONS, true,
                "WITH r AS (SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[],"
                "                                $6::boolean[], $7::boolean[], $8::text[])"
                "           AS r(uuid, gen, from_states, to_state, reason, release, failure, kind)),"
                " old AS (SELECT s.uuid, s.host_id, s.vcpus, s.memory_mib, s.disk_gib, r.to_state, r.reason,"
                "                r.release, r.failure, r.kind"
                "         FROM servers s JOIN r ON s.uuid = r.uuid"
                "         WHERE s.generation = r.gen AND s.state = ANY(string_to_array(r.from_states, ','))"
                "         FOR UPDATE OF s),"
                " upd AS (UPDATE servers s SET"
                "          state = CASE WHEN old.failure AND s.failures + 1 >= 3 THEN 'failed' ELSE old.to_state END,"
                "          reason = old.reason,"
                "          failures = s.failures + CASE WHEN old.failure THEN 1 ELSE 0 END,"
                "          host_id = CASE WHEN old.release THEN NULL ELSE s.host_id END, updated_at = now(),"
                "          migrate_from = CASE WHEN old.to_state IN ('running', 'defined') THEN NULL"
                "                         ELSE s.migrate_from END,"
                "          migrate_to = CASE WHEN old.to_state IN ('running', 'defined') THEN NULL"
                "                       ELSE s.migrate_to END,"
                "          turnovers = s.turnovers + CASE WHEN old.to_state = 'running'"
                "                      AND s.turnover_to IS NOT NULL THEN 1 ELSE 0 END,"
                "          turnover_to = CASE WHEN old.to_state IN ('running', 'defined', 'failed')"
                "                                OR (old.failure AND s.failures + 1 >= 3) THEN NULL"
                "                        ELSE s.turnover_to END,"
                "          expires_at = CASE WHEN old.release OR old.to_state IN ('defined', 'failed')"
                "                       THEN NULL ELSE s.expires_at END"
                "         FROM old WHERE s.uuid = old.uuid"
                "         RETURNING s.uuid, s.name, s.state, s.generation, s.reason, s.migrate_from, s.turnover_to,"
                "                   old.host_id, old.vcpus, old.memory_mib, old.disk_gib, old.release, old.kind),"
                " rel AS (UPDATE hosts h SET used_vcpus = greatest(h.used_vcpus - x.v, 0),"
                "          used_memory_mib = greatest(h.used_memory_mib - x.m, 0),"
                "          used_disk_gib = greatest(h.used_disk_gib - x.d, 0), updated_at = now()"
                "         FROM (SELECT host_id, sum(vcpus)::integer AS v, sum(memory_mib)::bigint AS m,"
                "                      sum(disk_gib)::bigint AS d"
                "               FROM upd WHERE release AND host_id IS NOT NULL GROUP BY host_id) x"
                "         WHERE h.id = x.host_id)"
                " INSERT INTO events (actor, kind, server_uuid, server_name, host_name, request_id, detail)"
                " SELECT $9, u.kind, u.uuid, u.name, h.name,"
                "  CASE WHEN row_number() OVER () = 1 THEN $10::uuid END,"
                "  jsonb_build_object('state', u.state, 'generation', u.generation, 'host', h.name,"
                "                     'reason', u.reason)"
                "  || CASE WHEN u.migrate_from IS NULL THEN '{}'::jsonb"
                "          ELSE jsonb_build_object('from', u.migrate_from) END"
                "  || CASE WHEN u.turnover_to IS NULL THEN '{}'::jsonb"
                "          ELSE jsonb_build_object('turnover_to', u.turnover_to) END"
                " FROM upd u LEFT JOIN hosts h ON h.id = u.host_id"
                " RETURNING server_uuid::text"),
        /* what lscd's loop needs back from a bind or a transition batch: the state only */
        S(ST_SERVER_STATES, true,
                "SELECT s.uuid::text, s.desired, s.state, coalesce(h.name, ''), s.generation, s.reason,"
                " s.failures, coalesce(s.migrate_from, ''), coalesce(s.migrate_to, ''),"
                " coalesce(floor(extract(epoch FROM s.expires_at))::bigint, 0), coalesce(s.turnover_to, '')"
                " FROM servers s LEFT JOIN hosts h ON h.id = s.host_id WHERE s.uuid = ANY($1::uuid[])"),
        /* drain, undrain, remove */
        S(ST_HOST_LOCK_BY_NAME, true, "SELECT id, name, admin FROM hosts WHERE name = $1 FOR UPDATE"),
        S(ST_HOST_LOCK_BY_UUID, true, "SELECT id, name, admin FROM hosts WHERE uuid = $1::uuid FOR UPDATE"),
        S(ST_HOST_SET_ADMIN, false, "UPDATE hosts SET admin = $2, updated_at = now() WHERE id = $1::bigint"),
        /* what runs (or is on its way up) there is destroyed and bound again elsewhere:
         * a migration away from the host (break before make) */
        S(ST_HOST_DRAIN_SERVERS, true,
                "UPDATE servers SET state = 'stopping', reason = $3, migrate_from = $2, migrate_to = NULL,"
                " updated_at = now()"
                " WHERE host_id = $1::bigint AND state IN ('running', 'binding') AND desired = 'running'"
                " RETURNING uuid::text"),
        S(ST_HOST_BOUND_COUNT, true, "SELECT count(*) FROM servers WHERE host_id = $1::bigint"),
        S(ST_HOST_DELETE, false, "DELETE FROM hosts WHERE id = $1::bigint"),
        /* start, many at once: the servers named (or with these UUIDs), locked */
        S(ST_SERVERS_LOCK_REFS, true,
                "SELECT s.uuid::text, s.name, s.state FROM servers s"
                " WHERE s.name = ANY($1::text[]) OR s.uuid = ANY($2::uuid[]) ORDER BY s.uuid FOR UPDATE"),
        /* defined or failed -> pending; anything on its way up stays as it is */
        S(ST_SERVERS_START, false,
                "UPDATE servers SET desired = 'running',"
                " state = CASE WHEN state IN ('defined', 'failed') THEN 'pending' ELSE state END,"
                " reason = CASE WHEN state IN ('defined', 'failed') THEN 'waiting for a host' ELSE '' END,"
                " failures = CASE WHEN state IN ('defined', 'failed') THEN 0 ELSE failures END,"
                " updated_at = now()"
                " WHERE uuid = ANY($1::uuid[])"),
        S(ST_HOST_RELEASE, false,
                "UPDATE hosts SET used_vcpus = greatest(used_vcpus - $2::integer, 0),"
                " used_memory_mib = greatest(used_memory_mib - $3::bigint, 0),"
                " used_disk_gib = greatest(used_disk_gib - $4::bigint, 0), updated_at = now()"
                " WHERE id = $1::bigint"),
        /* a state change of servers $3 (one event each); the first carries the request id;
         * $5 names the host when the change just released it */
        S(ST_EVENT_STATE, false,
                "INSERT INTO events (actor, kind, server_uuid, server_name, host_name, request_id, detail)"
                " SELECT $1, $2, s.uuid, s.name, coalesce(h.name, nullif($5, '')),"
                "  CASE WHEN s.uuid = ($3::uuid[])[1] THEN $4::uuid END,"
                "  jsonb_build_object('state', s.state, 'generation', s.generation,"
                "                     'host', coalesce(h.name, nullif($5, '')), 'reason', s.reason)"
                "  || CASE WHEN s.migrate_from IS NULL THEN '{}'::jsonb"
                "          ELSE jsonb_build_object('from', s.migrate_from) END"
                "  || CASE WHEN s.turnover_to IS NULL THEN '{}'::jsonb"
                "          ELSE jsonb_build_object('turnover_to', s.turnover_to) END"
                "  || CASE WHEN s.expires_at IS NULL THEN '{}'::jsonb"
                "          ELSE jsonb_build_object('expires_at', floor(extract(epoch FROM s.expires_at))::bigint) END"
                " FROM servers s LEFT JOIN hosts h ON h.id = s.host_id WHERE s.uuid = ANY($3::uuid[])"),
        S(ST_EVENT_HOST, false,
                "INSERT INTO events (actor, kind, host_name, request_id, detail)"
                " VALUES ($1, $2, $3, $4::uuid, $5::jsonb)"),

        /* ---- placement groups ---- */
        S(ST_GROUP_BY_NAME, true, GROUP_COLS " WHERE g.name = $1"),
        S(ST_GROUP_BY_ID, true, GROUP_COLS " WHERE g.id = $1::bigint"),
        S(ST_GROUP_LIST, true, GROUP_COLS " ORDER BY g.name"),
        S(ST_GROUP_INSERT, true,
                "INSERT INTO groups (name, policy, max_per_host) VALUES ($1, $2, $3::integer)"
                " ON CONFLICT (name) DO NOTHING RETURNING id"),
        /* delete: members are counted after this lock, by a statement that sees them */
        S(ST_GROUP_LOCK, true, "SELECT id FROM groups WHERE name = $1 FOR UPDATE"),
        S(ST_GROUP_DELETE, false, "DELETE FROM groups WHERE id = $1::bigint"),
        /* joining: the group cannot be deleted under us until we commit */
        S(ST_GROUP_ID_SHARE, true, "SELECT id FROM groups WHERE name = $1 FOR KEY SHARE"),
        /* $2 NULL leaves the group; updated_at moves only when the group does */
        S(ST_SERVER_SET_GROUP, false,
                "UPDATE servers SET group_id = $2::bigint, updated_at = now()"
                " WHERE uuid = $1::uuid AND group_id IS DISTINCT FROM $2::bigint"),
        S(ST_EVENT_GROUP, false,
                "INSERT INTO events (actor, kind, request_id, detail)"
                " SELECT $1, $2, $4::uuid, jsonb_build_object('name', g.name, 'policy', g.policy,"
                "        'max_per_host', CASE WHEN g.policy = 'anti-affinity' THEN g.max_per_host END)"
                " FROM groups g WHERE g.id = $3::bigint"),
        /* ---- end of placement groups ---- */
};

/* ---- connection ---------------------------------------------------------- */

struct store_conn {
        PGconn *pg;
        char *conninfo;
        struct store_config cfg;
        bool prepared;
        bool migrated;
        atomic_bool *cancel;             /* the store thread's stop flag; NULL elsewhere */
        uint64_t rnd;
        char why[256];                   /* the last reason the database was unreachable */
};

static inline void pqclearp(PGresult **r)
{
        if (*r)
                PQclear(*r);
}
#define _cleanup_pgres_ _cleanup_(pqclearp)

static bool cancelled(const struct store_conn *c)
{
        return c->cancel && atomic_load(c->cancel);
}

static uint64_t rnd_next(struct store_conn *c)
{
        /* xorshift64: jitter only */
        c->rnd ^= c->rnd << 13;
        c->rnd ^= c->rnd >> 7;
        c->rnd ^= c->rnd << 17;
        return c->rnd;
}

/* Sleeps us microseconds in short slices, returning early when the store stops. */
static void nap(const struct store_conn *c, int64_t us)
{
        while (us > 0 && !cancelled(c)) {
                int64_t slice = us < 50000 ? us : 50000;
                struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)slice * 1000 };
                nanosleep(&ts, NULL);
                us -= slice;
        }
}

/* libpq messages end with a newline; one line is what a reply can show. */
static void oneline(char *dst, size_t len, const char *src)
{
        static const char *const severities[] = { "FATAL:  ", "ERROR:  ", "PANIC:  " };
        size_t n;

        for (size_t i = 0; src && i < ARRAY_SIZE(severities); i++)
                if (!strncmp(src, severities[i], strlen(severities[i])))
                        src += strlen(severities[i]);
        snprintf(dst, len, "%s", src && *src ? src : "unknown error");
        n = strcspn(dst, "\n");
        dst[n] = '\0';
}

static void notice_log(void *arg, const char *msg)
{
        char line[256];

        oneline(line, sizeof(line), msg);
        log_debug("postgres: %s", line);
}

static bool conn_ok(const struct store_conn *c)
{
        return c->pg && PQstatus(c->pg) == CONNECTION_OK;
}

static int conn_down(struct store_conn *c, const char *msg)
{
        oneline(c->why, sizeof(c->why), msg);
        return lsc_err_set(-ENOTCONN, "%s", c->why);
}

static int sqlstate_errno(const char *state)
{
        static const struct { const char *state; int err; } map[] = {
                { "23505", -EEXIST },    /* unique_violation */
                { "23503", -EBUSY },     /* foreign_key_violation: still referenced */
                { "23P01", -EBUSY },     /* exclusion_violation: overlapping pools */
                { "23514", -EINVAL },    /* check_violation */
                { "23502", -EINVAL },    /* not_null_violation */
                { "40001", -EAGAIN },    /* serialization_failure */
                { "40P01", -EAGAIN },    /* deadlock_detected */
                { "55P03", -EAGAIN },    /* lock_not_available */
        };

        for (size_t i = 0; i < ARRAY_SIZE(map); i++)
                if (!strcmp(state, map[i].state))
                        return map[i].err;
        if (!strncmp(state, "22", 2))    /* data_exception: a malformed value */
                return -EINVAL;
        return -EIO;
}

/* Turns a failed result into -errno with the server's message as the detail. */
static int pg_fail(struct store_conn *c, const PGresult *res, const char *what)
{
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
        char line[256];

        if (!msg || !*msg)
                msg = c->pg ? PQerrorMessage(c->pg) : "not connected";
        if (!conn_ok(c) || (state && (!strncmp(state, "08", 2) || !strncmp(state, "57P", 3))))
                return conn_down(c, msg);
        oneline(line, sizeof(line), msg);
        if (!state) {
                if (res && PQresultStatus(res) != PGRES_FATAL_ERROR)
                        return lsc_err_set(-EIO, "%s: unexpected result %s", what,
                                           PQresStatus(PQresultStatus(res)));
                return lsc_err_set(-EIO, "%s: %s", what, line);
        }
        if (detail)
                return lsc_err_set(sqlstate_errno(state), "%s (%s)", line, detail);
        return lsc_err_set(sqlstate_errno(state), "%s", line);
}

/* Runs statement id with n text parameters (NULL is SQL NULL). *ret gets the result
 * when rows are expected and ret is not NULL. */
static int q(struct store_conn *c, enum stmt id, PGresult **ret, int n, const char *const *params)
{
        const struct stmt_def *d = &stmts[id];
        ExecStatusType want = d->rows ? PGRES_TUPLES_OK : PGRES_COMMAND_OK;
        PGresult *res;
        int r;

        if (!c->pg)
                return conn_down(c, c->why[0] ? c->why : "not connected");
        if (d->unprepared)
                res = PQexecParams(c->pg, d->sql, n, NULL, params, NULL, NULL, 0);
        else
                res = PQexecPrepared(c->pg, d->name, n, params, NULL, NULL, 0);
        if (!res || PQresultStatus(res) != want) {
                r = pg_fail(c, res, d->name);
                if (res)
                        PQclear(res);
                return r;
        }
        if (ret)
                *ret = res;
        else
                PQclear(res);
        return 0;
}

#define NARGS(...) ((int)(sizeof((const char *[]){ __VA_ARGS__ }) / sizeof(const char *)))
#define Q(c, id, ret, ...) q((c), (id), (ret), NARGS(__VA_ARGS__), (const char *const[]){ __VA_ARGS__ })
#define Q0(c, id, ret) q((c), (id), (ret), 0, NULL)

/* BEGIN, COMMIT, ROLLBACK and the migrations' own text: fixed SQL, no parameters. */
static int exec_fixed(struct store_conn *c, const char *sql, const char *what)
{
        _cleanup_pgres_ PGresult *res = NULL;

        if (!c->pg)
                return conn_down(c, c->why[0] ? c->why : "not connected");
        res = PQexec(c->pg, sql);
        if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
                return pg_fail(c, res, what);
        return 0;
}

static void rollback(struct store_conn *c)
{
        /* Not exec_fixed: the failure that led here keeps its detail. */
        if (conn_ok(c) && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
                PGresult *res = PQexec(c->pg, "ROLLBACK");
                if (res)
                        PQclear(res);
        }
}

/* One connection attempt, bounded by deadline (at least CONNECT_MIN_US). */
static int conn_connect(struct store_conn *c, int64_t deadline)
{
        static const char *const keys[] = { "dbname", "fallback_application_name", NULL };
        const char *vals[] = { c->conninfo, "lscd", NULL };
        PostgresPollingStatusType st = PGRES_POLLING_WRITING;
        int64_t end = lsc_now_us() + CONNECT_MIN_US;
        PGconn *pg;

        if (end < deadline)
                end = deadline;
        if (c->pg)
                PQfinish(c->pg);
        c->pg = NULL;
        c->prepared = false;

        pg = PQconnectStartParams(keys, vals, 1);
        if (!pg)
                return conn_down(c, "out of memory");
        if (PQstatus(pg) == CONNECTION_BAD) {
                int r = conn_down(c, PQerrorMessage(pg));
                PQfinish(pg);
                return r;
        }
        while (st != PGRES_POLLING_OK) {
                int64_t left = end - lsc_now_us();
                struct pollfd p = { .fd = PQsocket(pg),
                                    .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT };
                int n;

                if (st == PGRES_POLLING_FAILED) {
                        int r = conn_down(c, PQerrorMessage(pg));
                        PQfinish(pg);
                        return r;
                }
                if (left <= 0 || cancelled(c)) {
                        PQfinish(pg);
                        return conn_down(c, "timed out connecting to PostgreSQL");
                }
                n = poll(&p, 1, (int)(left > 100000 ? 100 : left / 1000 + 1));
                if (n < 0 && errno != EINTR) {
                        PQfinish(pg);
                        return conn_down(c, strerror(errno));
                }
                if (n > 0)
                        st = PQconnectPoll(pg);
        }
        PQsetNoticeProcessor(pg, notice_log, NULL);
        c->pg = pg;
        c->why[0] = '\0';
        return 0;
}

/* Connected, retrying with backoff until deadline (one attempt at least). */
static int conn_up(struct store_conn *c, int64_t deadline)
{
        int64_t backoff = BACKOFF_MIN_US;
        int r;

        for (;;) {
                if (conn_ok(c))
                        return 0;
                if ((r = conn_connect(c, deadline)) == 0)
                        return 0;
                if (lsc_now_us() + backoff >= deadline || cancelled(c))
                        return r;
                nap(c, backoff + (int64_t)(rnd_next(c) % (uint64_t)backoff));
                backoff = backoff * 2 > BACKOFF_JOB_MAX_US ? BACKOFF_JOB_MAX_US : backoff * 2;
        }
}

static int conn_prepare(struct store_conn *c)
{
        int r;

        /* a second migrate on the same session prepares again */
        if ((r = exec_fixed(c, "DEALLOCATE ALL", "DEALLOCATE")) < 0)
                return r;
        for (int i = 0; i < ST_COUNT; i++) {
                _cleanup_pgres_ PGresult *res = NULL;

                if (stmts[i].unprepared)
                        continue;
                res = PQprepare(c->pg, stmts[i].name, stmts[i].sql, 0, NULL);
                if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
                        return pg_fail(c, res, stmts[i].name);
        }
        c->prepared = true;
        return 0;
}

/* Connected with every statement prepared, reconnecting until deadline. */
static int conn_ensure(struct store_conn *c, int64_t deadline)
{
        int r;

        for (;;) {
                if ((r = conn_up(c, deadline)) < 0)
                        return r;
                if (c->prepared)
                        return 0;
                r = conn_prepare(c);
                if (r != -ENOTCONN)
                        return r;
                if (lsc_now_us() >= deadline || cancelled(c))
                        return r;
        }
}

static struct store_conn *conn_new(const struct store_config *cfg)
{
        struct store_conn *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        c->cfg = *cfg;
        c->conninfo = strdup(cfg->conninfo ? cfg->conninfo : "");
        if (!c->conninfo) {
                free(c);
                return NULL;
        }
        c->cfg.conninfo = c->conninfo;
        if (c->cfg.job_budget_us <= 0)
                c->cfg.job_budget_us = JOB_BUDGET_DEFAULT_US;
        if (c->cfg.mac_prefix_len < 1 || c->cfg.mac_prefix_len > 5) {
                c->cfg.mac_prefix = mac_prefix_default;
                c->cfg.mac_prefix_len = 3;
        }
        if (getrandom(&c->rnd, sizeof(c->rnd), GRND_NONBLOCK) != sizeof(c->rnd))
                c->rnd = (uint64_t)lsc_now_us();
        c->rnd |= 1;
        return c;
}

int store_conn_open(const struct store_config *cfg, struct store_conn **ret)
{
        struct store_conn *c = conn_new(cfg);
        int r;

        if (!c)
                return lsc_err_set(-ENOMEM, "out of memory");
        if ((r = conn_up(c, lsc_now_us() + c->cfg.job_budget_us)) < 0) {
                store_conn_close(&c);
                return r;
        }
        *ret = c;
        return 0;
}

void store_conn_close(struct store_conn **cp)
{
        struct store_conn *c = cp ? *cp : NULL;

        if (!c)
                return;
        if (c->pg)
                PQfinish(c->pg);
        free(c->conninfo);
        free(c);
        *cp = NULL;
}

/* ---- migrations ---------------------------------------------------------- */

static int migrate_locked(struct store_conn *c)
{
        _cleanup_pgres_ PGresult *res = NULL;
        int newest = 0, current, r;

        for (int i = 0; i < schema_migrations_count; i++)
                if (schema_migrations[i].version > newest)
                        newest = schema_migrations[i].version;
        if ((r = Q0(c, ST_MIG_LOCK, NULL)) < 0 || (r = Q0(c, ST_MIG_TABLE, NULL)) < 0 ||
            (r = Q0(c, ST_MIG_CURRENT, &res)) < 0)
                return r;
        current = atoi(PQgetvalue(res, 0, 0));
        if (current > newest)
                return lsc_err_set(-EPROTO, "database schema version %d is newer than this lscd "
                                   "(knows 1..%d): upgrade lscd", current, newest);
        for (int i = 0; i < schema_migrations_count; i++) {
                const struct schema_migration *m = &schema_migrations[i];
                char ver[16], what[128];

                if (m->version <= current)
                        continue;
                snprintf(what, sizeof(what), "migration %04d_%s", m->version, m->name);
                if ((r = exec_fixed(c, m->sql, what)) < 0) {
                        char why[512];
                        if (r == -ENOTCONN)
                                return r;
                        snprintf(why, sizeof(why), "%s", lsc_err_msg(r));
                        return lsc_err_set(r, "%s failed: %s", what, why);
                }
                snprintf(ver, sizeof(ver), "%d", m->version);
                if ((r = Q(c, ST_MIG_RECORD, NULL, ver, m->name)) < 0)
                        return r;
                log_info("schema: applied migration %04d_%s", m->version, m->name);
        }
        return 0;
}

int store_migrate(struct store_conn *c)
{
        int r;

        if ((r = conn_up(c, lsc_now_us() + c->cfg.job_budget_us)) < 0)
                return r;
        if ((r = exec_fixed(c, "BEGIN", "BEGIN")) < 0)
                return r;
        if ((r = migrate_locked(c)) < 0) {
                rollback(c);
                return r;
        }
        if ((r = exec_fixed(c, "COMMIT", "COMMIT")) < 0)
                return r;        /* unknown outcome is harmless: migrating is idempotent */
        c->migrated = true;
        c->prepared = false;
        return conn_prepare(c);
}

/* ---- a bag: one allocation arena per reply --------------------------------
 * The reply is built here, packed and unpacked once, so that the job's reply is
 * an ordinary unpacked message that lsc__reply__free_unpacked frees. */

struct bag_chunk {
        struct bag_chunk *next;
        size_t used, size;
        max_align_t data[];
};
struct bag {
        struct bag_chunk *head;
};

static void *bag_alloc(struct bag *b, size_t n)
{
        struct bag_chunk *h = b->head;
        void *p;

        n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
        if (!h || h->size - h->used < n) {
                size_t size = n > 65536 ? n : 65536;
                h = malloc(sizeof(*h) + size);
                if (!h)
                        return NULL;
                h->used = 0;
                h->size = size;
                h->next = b->head;
                b->head = h;
        }
        p = (char *)h->data + h->used;
        h->used += n;
        return memset(p, 0, n);
}

static char *bag_strdup(struct bag *b, const char *s)
{
        size_t n = strlen(s) + 1;
        char *d = bag_alloc(b, n);

        return d ? memcpy(d, s, n) : NULL;
}

static void bag_free(struct bag *b)
{
        while (b->head) {
                struct bag_chunk *next = b->head->next;
                free(b->head);
                b->head = next;
        }
}

/* PostgreSQL's text form of a one-dimensional text array ('{a,"b c"}') as strings
 * in the bag. Our arrays never hold NULL. */
static int parse_array(struct bag *b, const char *s, char ***ret, size_t *ret_n)
{
        size_t n = 0, cap = 1;
        char **v, *out;
        const char *p;

        if (*s != '{')
                return lsc_err_set(-EIO, "malformed array from the database");
        for (p = s; *p; p++)
                cap += *p == ',';
        v = bag_alloc(b, cap * sizeof(char *));
        out = bag_alloc(b, strlen(s) + 1);
        if (!v || !out)
                return lsc_err_set(-ENOMEM, "out of memory");
        p = s + 1;
        if (*p == '}' && !p[1]) {
                *ret = v;
                *ret_n = 0;
                return 0;
        }
        for (;;) {
                char *start = out;

                if (*p == '"') {
                        for (p++; *p && *p != '"'; p++) {
                                if (*p == '\\' && p[1])
                                        p++;
                                *out++ = *p;
                        }
                        if (*p++ != '"')
                                return lsc_err_set(-EIO, "malformed array from the database");
                } else {
                        while (*p && *p != ',' && *p != '}')
                                *out++ = *p++;
                }
                *out++ = '\0';
                if (n == cap)
                        return lsc_err_set(-EIO, "malformed array from the database");
                v[n++] = start;
                if (*p == ',') {
                        p++;
                        continue;
                }
                if (*p == '}' && !p[1])
                        break;
                return lsc_err_set(-EIO, "malformed array from the database");
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* A text[] literal for a parameter: every element quoted and escaped. */
static char *array_literal(struct bag *b, const char *const *items, size_t n)
{
        size_t len = 3;
        char *s, *o;

        for (size_t i = 0; i < n; i++)
                len += 2 * strlen(items[i]) + 3;
        s = o = bag_alloc(b, len);
        if (!s)
                return NULL;
        *o++ = '{';
        for (size_t i = 0; i < n; i++) {
                if (i)
                        *o++ = ',';
                *o++ = '"';
                for (const char *p = items[i]; *p; p++) {
                        if (*p == '"' || *p == '\\')
                                *o++ = '\\';
                        *o++ = *p;
                }
                *o++ = '"';
        }
        *o++ = '}';
        *o = '\0';
        return s;
}

/* ---- one request --------------------------------------------------------- */

struct op {
        struct store_conn *c;
        const Lsc__Request *req;
        const char *actor;
        struct bag in;                   /* parsed input: lives for the whole job */
        struct bag out;                  /* the reply being built: reset per attempt */
        Lsc__Reply reply;
        char request_id[UUID_STR];       /* fresh per attempt; written with the event */
        char uuid[UUID_STR];             /* the server created or changed */
        /* parsed input */
        const Lsc__ServerSpec *spec;
        char macs[MAX_ADDRS][LSC_MAC_STR];
        size_t n_macs;
        struct lsc_ip ips[MAX_ADDRS];
        size_t n_ips;
        const char *label_keys, *label_values, *unlabel;   /* text[] literals or NULL */
        const char *req_keys, *req_values;                /* required host labels, text[] */
        bool set_require;
        bool set_labels, set_macs, set_ips;
        char lifetime[24];               /* "" when no lifetime */
        bool lifetime_set;
        struct lsc_cidr cidr;
        struct lsc_ip gateway;
        bool has_gateway;
        unsigned limit;                  /* events; rows per page of a list */
        const char *after;               /* a list's page starts after this name */
        bool unpaged;                    /* an in-process list: every row in one reply */
        /* placement groups */
        const char *group;               /* the group to join; NULL: none (create), unchanged (edit) */
        bool clear_group;                /* edit: leave the group */
        const char *group_policy;        /* group create */
        char group_max[16];
};

static const char *show(const char *s, char buf[LSC_SHOW_BUF])
{
        return lsc_str_show(s ? s : "", buf);
}

static void u64s(char *buf, size_t len, uint64_t v)
{
        snprintf(buf, len, "%llu", (unsigned long long)v);
}

static int64_t col_i64(const PGresult *res, int row, int col)
{
        return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static void reply_reset(struct op *o)
{
        bag_free(&o->out);
        o->reply = (Lsc__Reply)LSC__REPLY__INIT;
}

/* Labels from two text[] columns, keys at col and values at col + 1. */
static int labels_from_row(struct bag *b, const PGresult *res, int row, int col,
                           Lsc__Label ***ret, size_t *ret_n)
{
        char **keys = NULL, **values = NULL;
        size_t n_keys = 0, n_values = 0;
        Lsc__Label **labels;
        int r;

        if ((r = parse_array(b, PQgetvalue(res, row, col), &keys, &n_keys)) < 0 ||
            (r = parse_array(b, PQgetvalue(res, row, col + 1), &values, &n_values)) < 0)
                return r;
        if (n_keys != n_values)
                return lsc_err_set(-EIO, "labels do not pair up (%zu keys, %zu values)", n_keys, n_values);
        labels = bag_alloc(b, (n_keys ? n_keys : 1) * sizeof(*labels));
        if (!labels)
                return lsc_err_set(-ENOMEM, "out of memory");
        for (size_t i = 0; i < n_keys; i++) {
                Lsc__Label *l = bag_alloc(b, sizeof(*l));
                if (!l)
                        return lsc_err_set(-ENOMEM, "out of memory");
                lsc__label__init(l);
                l->key = keys[i];
                l->value = values[i];
                labels[i] = l;
        }
        *ret = labels;
        *ret_n = n_keys;
        return 0;
}

static int reply_hosts(struct op *o, const PGresult *res);
static int stop_locked(struct op *o, const PGresult *cur, const char *desired, const char *kind);

static int server_from_row(struct op *o, const PGresult *res, int row, Lsc__Server **ret)
{
        struct bag *b = &o->out;
        Lsc__Server *sv = bag_alloc(b, sizeof(*sv));
        Lsc__ServerSpec *sp = bag_alloc(b, sizeof(*sp));
        int r;

        if (!sv || !sp)
                return lsc_err_set(-ENOMEM, "out of memory");
        lsc__server__init(sv);
        lsc__server_spec__init(sp);
        sv->spec = sp;
#define COL(i) bag_strdup(b, PQgetvalue(res, row, (i)))
        sv->uuid = COL(SC_UUID);
        sp->name = COL(SC_NAME);
        sp->kind = COL(SC_KIND);
        sp->has_vcpus = sp->has_memory_mib = sp->has_disk_gib = sp->has_lifetime_s = 1;
        sp->vcpus = (uint32_t)col_i64(res, row, SC_VCPUS);
        sp->memory_mib = (uint64_t)col_i64(res, row, SC_MEMORY);
        sp->disk_gib = (uint64_t)col_i64(res, row, SC_DISK);
        sp->disk_mode = COL(SC_DISK_MODE);
        sp->image = COL(SC_IMAGE);
        sp->hostname = COL(SC_HOSTNAME);
        sp->pool = COL(SC_POOL);         /* the first IP's pool; "" without IPs */
        sp->lifetime_s = (uint64_t)col_i64(res, row, SC_LIFETIME);
        sv->desired = COL(SC_DESIRED);
        sv->state = COL(SC_STATE);
        sv->host = COL(SC_HOST);
        sv->group = COL(SC_GROUP);
#undef COL
        sv->has_generation = sv->has_created_at = sv->has_updated_at = sv->has_expires_at = 1;
        sv->generation = (uint64_t)col_i64(res, row, SC_GENERATION);
        sv->created_at = col_i64(res, row, SC_CREATED);
        sv->updated_at = col_i64(res, row, SC_UPDATED);
        sv->expires_at = col_i64(res, row, SC_EXPIRES);
        sv->reason = bag_strdup(b, PQgetvalue(res, row, SC_REASON));
        sv->migrate_from = bag_strdup(b, PQgetvalue(res, row, SC_MIGRATE_FROM));
        sv->migrate_to = bag_strdup(b, PQgetvalue(res, row, SC_MIGRATE_TO));
        sv->has_failures = 1;
        sv->failures = (uint32_t)col_i64(res, row, SC_FAILURES);
        sv->has_turnovers = sv->has_postponed = sv->has_renewals = 1;
        sv->turnovers = (uint64_t)col_i64(res, row, SC_TURNOVERS);
        sv->postponed = (uint64_t)col_i64(res, row, SC_POSTPONED);
        sv->renewals = (uint32_t)col_i64(res, row, SC_RENEWALS);
        sv->turnover_to = bag_strdup(b, PQgetvalue(res, row, SC_TURNOVER_TO));
        if (!sv->turnover_to)
                return lsc_err_set(-ENOMEM, "out of memory");
        if (!sv->uuid || !sp->name || !sp->kind || !sp->disk_mode || !sp->image ||
            !sp->hostname || !sp->pool || !sv->desired || !sv->state || !sv->host || !sv->group ||
            !sv->reason || !sv->migrate_from || !sv->migrate_to)
                return lsc_err_set(-ENOMEM, "out of memory");

        if ((r = parse_array(b, PQgetvalue(res, row, SC_MACS), &sp->macs, &sp->n_macs)) < 0 ||
            (r = parse_array(b, PQgetvalue(res, row, SC_IPS), &sp->ips, &sp->n_ips)) < 0 ||
            (r = labels_from_row(b, res, row, SC_LABEL_KEYS, &sp->labels, &sp->n_labels)) < 0 ||
            (r = labels_from_row(b, res, row, SC_REQ_KEYS, &sp->require_labels, &sp->n_require_labels)) < 0)
                return r;
        *ret = sv;
        return 0;
}

/* Appends every row of a SERVER_COLS result to the reply. */
static int reply_servers(struct op *o, const PGresult *res)
{
        int n = PQntuples(res), r;

        if (PQnfields(res) != SC_COUNT)
                return lsc_err_set(-EIO, "server query returned %d columns", PQnfields(res));
        o->reply.servers = bag_alloc(&o->out, (size_t)(n ? n : 1) * sizeof(Lsc__Server *));
        if (!o->reply.servers)
                return lsc_err_set(-ENOMEM, "out of memory");
        for (int i = 0; i < n; i++) {
                if ((r = server_from_row(o, res, i, &o->reply.servers[i])) < 0)
                        return r;
                o->reply.n_servers = (size_t)i + 1;
        }
        return 0;
}

/* Whether a row of row_bytes (packed) still fits a page of *bytes so far, counting it
 * in if so. The first row always fits: one larger than the envelope is refused where
 * replies are sent. */
static bool page_fits(size_t *bytes, size_t rows, size_t row_bytes)
{
        row_bytes += 6;                  /* the repeated field's tag and length */
        if (rows > 0 && *bytes + row_bytes > LIST_PAGE_BYTES)
                return false;
        *bytes += row_bytes;
        return true;
}

/* A page of a server list from a result of up to o->limit + 1 rows: the rows that fit,
 * and next = the last name kept when any row was left out. */
static int reply_server_page(struct op *o, const PGresult *res)
{
        int n = PQntuples(res), r;
        size_t bytes = 0;

        if (PQnfields(res) != SC_COUNT)
                return lsc_err_set(-EIO, "server query returned %d columns", PQnfields(res));
        o->reply.servers = bag_alloc(&o->out, (size_t)(n ? n : 1) * sizeof(Lsc__Server *));
        if (!o->reply.servers)
                return lsc_err_set(-ENOMEM, "out of memory");
        for (int i = 0; i < n && (unsigned)i < o->limit; i++) {
                Lsc__Server *sv;

                if ((r = server_from_row(o, res, i, &sv)) < 0)
                        return r;
                if (!page_fits(&bytes, (size_t)i, lsc__server__get_packed_size(sv)))
                        break;
                o->reply.servers[i] = sv;
                o->reply.n_servers = (size_t)i + 1;
        }
        if (o->reply.n_servers < (size_t)n)
                o->reply.next = o->reply.servers[o->reply.n_servers - 1]->spec->name;
        return 0;
}

static int reply_server_by_uuid(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL;
        int r;

        if ((r = Q(o->c, ST_SERVER_BY_UUID, &res, o->uuid)) < 0)
                return r;
        if (PQntuples(res) != 1)
                return lsc_err_set(-ENOENT, "server %s not found", o->uuid);
        return reply_servers(o, res);
}

static int reply_pools(struct op *o, const PGresult *res)
{
        int n = PQntuples(res);

        o->reply.pools = bag_alloc(&o->out, (size_t)(n ? n : 1) * sizeof(Lsc__Pool *));
        if (!o->reply.pools)
                return lsc_err_set(-ENOMEM, "out of memory");
        for (int i = 0; i < n; i++) {
                Lsc__Pool *p = bag_alloc(&o->out, sizeof(*p));
                struct lsc_cidr cidr;
                uint64_t size = 0;

                if (!p)
                        return lsc_err_set(-ENOMEM, "out of memory");
                lsc__pool__init(p);
                p->name = bag_strdup(&o->out, PQgetvalue(res, i, PC_NAME));
                p->cidr = bag_strdup(&o->out, PQgetvalue(res, i, PC_CIDR));
                p->gateway = bag_strdup(&o->out, PQgetvalue(res, i, PC_GATEWAY));
                if (!p->name || !p->cidr || !p->gateway)
                        return lsc_err_set(-ENOMEM, "out of memory");
                if (lsc_cidr_parse(p->cidr, &cidr) == 0)
                        size = lsc_cidr_size(&cidr);
                if (p->gateway[0] && size > 0)
                        size--;          /* the gateway is not handed out */
                p->has_size = p->has_allocated = 1;
                p->size = size;
                p->allocated = (uint64_t)col_i64(res, i, PC_ALLOCATED);
                o->reply.pools[i] = p;
                o->reply.n_pools = (size_t)i + 1;
        }
        return 0;
}

/* ---- input checks (before any SQL; lscd's api layer checked too) ----------- */

static int check_spec(struct op *o, const Lsc__ServerSpec *s, bool create)
{
        char shown[LSC_SHOW_BUF];
        const char **keys, **values;
        int r;

        o->spec = s;
        if (create) {
                if (!s->name)
                        return lsc_err_set(-EINVAL, "a server needs a name");
                if (!s->has_vcpus)
                        return lsc_err_set(-EINVAL, "vcpus is required");
                if (!s->has_memory_mib)
                        return lsc_err_set(-EINVAL, "memory is required");
        }
        if (s->name && (r = lsc_validate_name("server name", s->name)) < 0)
                return r;
        if (s->kind && lsc_enum_parse(lsc_kind_names, LSC_KIND_COUNT, s->kind) < 0)
                return lsc_err_set(-EINVAL, "unknown kind \"%s\": use vm, container or metal",
                                   show(s->kind, shown));
        if (s->has_vcpus && (r = lsc_validate_vcpus(s->vcpus)) < 0)
                return r;
        if (s->has_memory_mib && (r = lsc_validate_memory_mib(s->memory_mib)) < 0)
                return r;
        if (s->has_disk_gib && (r = lsc_validate_disk_gib(s->disk_gib)) < 0)
                return r;
        if (s->disk_mode && lsc_enum_parse(lsc_disk_mode_names, LSC_DISK_MODE_COUNT, s->disk_mode) < 0)
                return lsc_err_set(-EINVAL, "unknown disk mode \"%s\": use ephemeral or persistent",
                                   show(s->disk_mode, shown));
        if (s->image && (r = lsc_validate_image(s->image)) < 0)
                return r;
        if (s->hostname && (r = lsc_validate_hostname(s->hostname)) < 0)
                return r;
        if (s->pool && (r = lsc_validate_name("pool name", s->pool)) < 0)
                return r;
        if (s->group && s->group[0] && (r = lsc_validate_name("group name", s->group)) < 0)
                return r;
        o->group = s->group && s->group[0] ? s->group : NULL;   /* placement group */
        o->lifetime_set = s->has_lifetime_s;
        if (s->has_lifetime_s && s->lifetime_s > 0) {
                if ((r = lsc_validate_lifetime_s(s->lifetime_s)) < 0)
                        return r;
                u64s(o->lifetime, sizeof(o->lifetime), s->lifetime_s);
        }

        if (s->n_labels > MAX_LABELS)
                return lsc_err_set(-EINVAL, "at most %d labels per server", MAX_LABELS);
        keys = bag_alloc(&o->in, (s->n_labels + 1) * sizeof(char *));
        values = bag_alloc(&o->in, (s->n_labels + 1) * sizeof(char *));
        if (!keys || !values)
                return lsc_err_set(-ENOMEM, "out of memory");
        for (size_t i = 0; i < s->n_labels; i++) {
                const Lsc__Label *l = s->labels[i];
                keys[i] = l->key ? l->key : "";
                values[i] = l->value ? l->value : "";
                if ((r = lsc_validate_label_part("label key", keys[i])) < 0 ||
                    (r = lsc_validate_label_part("label value", values[i])) < 0)
                        return r;
        }
        o->label_keys = array_literal(&o->in, keys, s->n_labels);
        o->label_values = array_literal(&o->in, values, s->n_labels);
        if (!o->label_keys || !o->label_values)
                return lsc_err_set(-ENOMEM, "out of memory");
        if (s->n_require_labels > MAX_LABELS)
                return lsc_err_set(-EINVAL, "at most %d required labels per server", MAX_LABELS);
        {
                const char **rk = bag_alloc(&o->in, (s->n_require_labels + 1) * sizeof(char *));
                const char **rv = bag_alloc(&o->in, (s->n_require_labels + 1) * sizeof(char *));
                if (!rk || !rv)
                        return lsc_err_set(-ENOMEM, "out of memory");
                for (size_t i = 0; i < s->n_require_labels; i++) {
                        rk[i] = s->require_labels[i]->key ? s->require_labels[i]->key : "";
                        rv[i] = s->require_labels[i]->value ? s->require_labels[i]->value : "";
                        if ((r = lsc_validate_label_part("required label key", rk[i])) < 0 ||
                            (r = lsc_validate_label_part("required label value", rv[i])) < 0)
                                return r;
                }
                o->req_keys = array_literal(&o->in, rk, s->n_require_labels);
                o->req_values = array_literal(&o->in, rv, s->n_require_labels);
                if (!o->req_keys || !o->req_values)
                        return lsc_err_set(-ENOMEM, "out of memory");
        }

        if (s->n_macs > MAX_ADDRS || s->n_ips > MAX_ADDRS)
                return lsc_err_set(-EINVAL, "at most %d MACs and %d IPs per server", MAX_ADDRS, MAX_ADDRS);
        for (size_t i = 0; i < s->n_macs; i++) {
                struct lsc_mac mac;
                if ((r = lsc_mac_parse(s->macs[i], &mac)) < 0)
                        return r;
                lsc_mac_format(&mac, o->macs[i]);
                for (size_t j = 0; j < i; j++)
                        if (!strcmp(o->macs[i], o->macs[j]))
                                return lsc_err_set(-EINVAL, "MAC %s is given twice", o->macs[i]);
        }
        o->n_macs = s->n_macs;
        for (size_t i = 0; i < s->n_ips; i++) {
                char ip[LSC_IP_STR];
                if ((r = lsc_ip_parse(s->ips[i], &o->ips[i])) < 0)
                        return r;
                for (size_t j = 0; j < i; j++)
                        if (lsc_ip_equal(&o->ips[i], &o->ips[j])) {
                                lsc_ip_format(&o->ips[i], ip);
                                return lsc_err_set(-EINVAL, "IP %s is given twice", ip);
                        }
        }
        o->n_ips = s->n_ips;
        return 0;
}

static int check_ref(const char *ref, const char *what)
{
        char shown[LSC_SHOW_BUF];
        uuid_t u;

        if (!ref || !ref[0])
                return lsc_err_set(-EINVAL, "which %s? give its name", what);
        if (uuid_parse(ref, u) == 0)
                return 0;
        if (lsc_validate_name(what, ref) < 0)
                return lsc_err_set(-EINVAL, "no %s can be called \"%s\": give a name or a UUID",
                                   what, show(ref, shown));
        return 0;
}

static int check_server_create(struct op *o)
{
        const Lsc__ServerCreate *m = o->req->server_create;

        if (!m || !m->spec)
                return lsc_err_set(-EINVAL, "server create without a specification");
        return check_spec(o, m->spec, true);
}

static int check_server_edit(struct op *o)
{
        static const Lsc__ServerSpec empty = LSC__SERVER_SPEC__INIT;
        const Lsc__ServerEdit *e = o->req->server_edit;
        const Lsc__ServerSpec *s;
        int r;

        if (!e)
                return lsc_err_set(-EINVAL, "server edit without a request");
        s = e->spec ? e->spec : &empty;
        if ((r = check_ref(e->ref, "server")) < 0 || (r = check_spec(o, s, false)) < 0)
                return r;
        if (e->n_unlabel > MAX_LABELS)
                return lsc_err_set(-EINVAL, "at most %d labels per server", MAX_LABELS);
        for (size_t i = 0; i < e->n_unlabel; i++)
                if ((r = lsc_validate_label_part("label key", e->unlabel[i])) < 0)
                        return r;
        o->unlabel = e->n_unlabel ? array_literal(&o->in, (const char *const *)e->unlabel, e->n_unlabel) : NULL;
        if (e->n_unlabel && !o->unlabel)
                return lsc_err_set(-ENOMEM, "out of memory");
        /* Giving addresses or labels means setting them; a pool alone means "move
         * to that pool", i.e. new IPs from it. */
        o->set_labels = (e->has_set_labels && e->set_labels) || s->n_labels > 0;
        o->set_macs = (e->has_set_macs && e->set_macs) || s->n_macs > 0;
        o->set_ips = (e->has_set_ips && e->set_ips) || s->n_ips > 0 || s->pool;
        o->set_require = (e->has_set_require && e->set_require) || s->n_require_labels > 0;
        o->clear_group = e->has_clear_group && e->clear_group;
        if (o->clear_group && o->group)
                return lsc_err_set(-EINVAL, "a server cannot both join group %s and leave its group",
                                   o->group);
        return 0;
}

static int check_ref_op(struct op *o)
{
        switch (o->req->op_case) {
        case LSC__REQUEST__OP_SERVER_DELETE:
                return check_ref(o->req->server_delete ? o->req->server_delete->ref : NULL, "server");
        case LSC__REQUEST__OP_SERVER_GET:
                return check_ref(o->req->server_get ? o->req->server_get->ref : NULL, "server");
        case LSC__REQUEST__OP_HOST_GET:
                return check_ref(o->req->host_get ? o->req->host_get->ref : NULL, "host");
        case LSC__REQUEST__OP_HOST_DRAIN:
                return check_ref(o->req->host_drain ? o->req->host_drain->ref : NULL, "host");
        case LSC__REQUEST__OP_HOST_CONFIRM_OFF:
                return check_ref(o->req->host_confirm_off ? o->req->host_confirm_off->ref : NULL, "host");
        case LSC__REQUEST__OP_HOST_UNDRAIN:
                return check_ref(o->req->host_undrain ? o->req->host_undrain->ref : NULL, "host");
        case LSC__REQUEST__OP_HOST_REMOVE:
                return check_ref(o->req->host_remove ? o->req->host_remove->ref : NULL, "host");
        case LSC__REQUEST__OP_SERVER_STOP:
                return check_ref(o->req->server_stop ? o->req->server_stop->ref : NULL, "server");
        case LSC__REQUEST__OP_SERVER_MIGRATE:
                if (o->req->server_migrate && o->req->server_migrate->to && o->req->server_migrate->to[0] &&
                    lsc_validate_name("host name", o->req->server_migrate->to) < 0)
                        return -EINVAL;
                return check_ref(o->req->server_migrate ? o->req->server_migrate->ref : NULL, "server");
        case LSC__REQUEST__OP_POOL_DELETE:
        case LSC__REQUEST__OP_POOL_GET: {
                const Lsc__Ref *ref = o->req->op_case == LSC__REQUEST__OP_POOL_GET
                                      ? o->req->pool_get : o->req->pool_delete;
                if (!ref || !ref->ref || !ref->ref[0])
                        return lsc_err_set(-EINVAL, "which pool? give its name");
                return lsc_validate_name("pool name", ref->ref);
        }
        default:
                return 0;
        }
}

static int check_pool_create(struct op *o)
{
        const Lsc__PoolCreate *p = o->req->pool_create;
        char shown[LSC_SHOW_BUF], net[LSC_CIDR_STR];
        int r;

        if (!p || !p->name)
                return lsc_err_set(-EINVAL, "a pool needs a name");
        if ((r = lsc_validate_name("pool name", p->name)) < 0)
                return r;
        if (!p->cidr)
                return lsc_err_set(-EINVAL, "a pool needs a CIDR");
        if ((r = lsc_cidr_parse(p->cidr, &o->cidr)) < 0)
                return r;
        if (p->gateway && p->gateway[0]) {
                if ((r = lsc_ip_parse(p->gateway, &o->gateway)) < 0)
                        return r;
                lsc_cidr_format(&o->cidr, net);
                if (!lsc_cidr_contains(&o->cidr, &o->gateway))
                        return lsc_err_set(-EINVAL, "gateway %s is not inside %s",
                                           show(p->gateway, shown), net);
                if (lsc_cidr_is_reserved(&o->cidr, &o->gateway))
                        return lsc_err_set(-EINVAL, "gateway %s is the network or broadcast address of %s",
                                           show(p->gateway, shown), net);
                o->has_gateway = true;
        }
        return 0;
}

static int check_event_list(struct op *o)
{
        const Lsc__EventList *e = o->req->event_list;
        char shown[LSC_SHOW_BUF];

        o->limit = EVENT_LIMIT_DEFAULT;
        if (!e)
                return 0;
        if (e->has_limit) {
                if (e->limit < 1 || e->limit > EVENT_LIMIT_MAX)
                        return lsc_err_set(-EINVAL, "limit %u out of range: 1-%d", e->limit, EVENT_LIMIT_MAX);
                o->limit = e->limit;
        }
        if (e->server && (!e->server[0] || strlen(e->server) > LSC_NAME_MAX))
                return lsc_err_set(-EINVAL, "no server can be called \"%s\"", show(e->server, shown));
        return 0;
}

/* after and limit of a server or host list (an unpaged, in-process one ignores them). */
static int check_list(struct op *o)
{
        bool servers = o->req->op_case == LSC__REQUEST__OP_SERVER_LIST;
        const Lsc__ServerList *sl = servers ? o->req->server_list : NULL;
        const Lsc__HostList *hl = servers ? NULL : o->req->host_list;
        const char *after = sl ? sl->after : hl ? hl->after : NULL;
        uint32_t limit = sl && sl->has_limit ? sl->limit : hl && hl->has_limit ? hl->limit : 0;
        int r;

        if (limit > LIST_LIMIT_MAX)
                return lsc_err_set(-EINVAL, "page size %u out of range: 1-%d (0: lscd's default)",
                                   limit, LIST_LIMIT_MAX);
        o->limit = limit ? limit : servers ? LIST_SERVERS_DEFAULT : LIST_HOSTS_DEFAULT;
        o->after = "";
        if (after && after[0]) {
                if ((r = lsc_validate_name(servers ? "server list cursor" : "host list cursor", after)) < 0)
                        return r;
                o->after = after;
        }
        return 0;
}

/* ---- addresses ----------------------------------------------------------- */

static int mac_claim(struct op *o, const char *mac, int position, bool *ret_taken)
{
        _cleanup_pgres_ PGresult *res = NULL;
        char pos[8];
        int r;

        snprintf(pos, sizeof(pos), "%d", position);
        if ((r = Q(o->c, ST_MAC_INSERT, &res, mac, o->uuid, pos)) < 0)
                return r;
        *ret_taken = PQntuples(res) == 0;
        return 0;
}

static int macs_assign(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL;
        bool taken;
        int r;

        for (size_t i = 0; i < o->n_macs; i++) {
                if ((r = mac_claim(o, o->macs[i], (int)i, &taken)) < 0)
                        return r;
                if (!taken)
                        continue;
                if ((r = Q(o->c, ST_MAC_HOLDER, &res, o->macs[i])) < 0)
                        return r;
                return lsc_err_set(-EEXIST, "MAC %s is already held by server %s", o->macs[i],
                                   PQntuples(res) ? PQgetvalue(res, 0, 0) : "(another)");
        }
        if (o->n_macs > 0)
                return 0;
        for (int i = 0; i < MAC_RANDOM_TRIES; i++) {
                struct lsc_mac m;
                char mac[LSC_MAC_STR];

                lsc_mac_random(&o->c->cfg.mac_prefix, o->c->cfg.mac_prefix_len, &m);
                lsc_mac_format(&m, mac);
                if ((r = mac_claim(o, mac, 0, &taken)) < 0)
                        return r;
                if (!taken)
                        return 0;
        }
        return lsc_err_set(-EBUSY, "no free MAC found under the prefix after %d tries",
                           MAC_RANDOM_TRIES);
}

struct pool_row {
        char id[24];
        char name[LSC_NAME_MAX + 1];
        struct lsc_cidr cidr;
        struct lsc_ip gateway;
        bool has_gateway;
};

static int pool_read(const PGresult *res, int row, struct pool_row *p)
{
        const char *gw = PQgetvalue(res, row, PC_GATEWAY);

        snprintf(p->id, sizeof(p->id), "%s", PQgetvalue(res, row, PC_ID));
        snprintf(p->name, sizeof(p->name), "%s", PQgetvalue(res, row, PC_NAME));
        if (lsc_cidr_parse(PQgetvalue(res, row, PC_CIDR), &p->cidr) < 0)
                return lsc_err_set(-EIO, "pool %s has a CIDR this lscd cannot read", p->name);
        p->has_gateway = gw[0] != '\0';
        if (p->has_gateway && lsc_ip_parse(gw, &p->gateway) < 0)
                return lsc_err_set(-EIO, "pool %s has a gateway this lscd cannot read", p->name);
        return 0;
}

static int pool_by_name(struct op *o, const char *name, struct pool_row *ret)
{
        _cleanup_pgres_ PGresult *res = NULL;
        char shown[LSC_SHOW_BUF];
        int r;

        if ((r = Q(o->c, ST_POOL_BY_NAME, &res, name)) < 0)
                return r;
        if (PQntuples(res) == 0)
                return lsc_err_set(-ENOENT, "pool %s not found", show(name, shown));
        return pool_read(res, 0, ret);
}

/* A given IP: inside a pool (the named one if any), a host address, not held. */
static int ip_claim(struct op *o, const struct lsc_ip *ip, int position)
{
        _cleanup_pgres_ PGresult *res = NULL, *holder = NULL;
        struct pool_row p;
        char s[LSC_IP_STR], pos[8];
        int r;

        lsc_ip_format(ip, s);
        if (o->spec->pool) {
                if ((r = pool_by_name(o, o->spec->pool, &p)) < 0)
                        return r;
                if (!lsc_cidr_contains(&p.cidr, ip))
                        return lsc_err_set(-EINVAL, "IP %s is not inside pool %s", s, p.name);
        } else {
                if ((r = Q(o->c, ST_POOL_CONTAINING, &res, s)) < 0)
                        return r;
                if (PQntuples(res) == 0)
                        return lsc_err_set(-EINVAL, "IP %s is not inside any pool", s);
                if ((r = pool_read(res, 0, &p)) < 0)
                        return r;
        }
        if (lsc_cidr_is_reserved(&p.cidr, ip))
                return lsc_err_set(-EINVAL, "IP %s is the network or broadcast address of pool %s",
                                   s, p.name);
        if (p.has_gateway && lsc_ip_equal(&p.gateway, ip))
                return lsc_err_set(-EINVAL, "IP %s is the gateway of pool %s", s, p.name);
        snprintf(pos, sizeof(pos), "%d", position);
        PQclear(TAKE_PTR(res));
        if ((r = Q(o->c, ST_IP_INSERT, &res, s, p.id, o->uuid, pos)) < 0)
                return r;
        if (PQntuples(res) == 1)
                return 0;
        if ((r = Q(o->c, ST_IP_HOLDER, &holder, s)) < 0)
                return r;
        return lsc_err_set(-EEXIST, "IP %s is already held by server %s", s,
                           PQntuples(holder) ? PQgetvalue(holder, 0, 0) : "(another)");
}

/* The lowest free address of pool p; a lost race just means: the next one. */
static int ip_allocate(struct op *o, const struct pool_row *p)
{
        for (int i = 0; i < ALLOC_RETRIES; i++) {
                _cleanup_pgres_ PGresult *next = NULL, *ins = NULL;
                int r;

                if ((r = Q(o->c, ST_IP_NEXT_FREE, &next, p->id)) < 0)
                        return r;
                if (PQntuples(next) == 0)
                        return lsc_err_set(-EBUSY, "pool %s is full", p->name);
                if ((r = Q(o->c, ST_IP_INSERT, &ins, PQgetvalue(next, 0, 0), p->id, o->uuid, "0")) < 0)
                        return r;
                if (PQntuples(ins) == 1)
                        return 0;
        }
        return lsc_err_set(-EAGAIN, "pool %s: lost %d races for a free address", p->name, ALLOC_RETRIES);
}

static int ips_assign(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL;
        struct pool_row p;
        int r;

        for (size_t i = 0; i < o->n_ips; i++)
                if ((r = ip_claim(o, &o->ips[i], (int)i)) < 0)
                        return r;
        if (o->n_ips > 0)
                return 0;
        if (o->spec->pool) {
                if ((r = pool_by_name(o, o->spec->pool, &p)) < 0)
                        return r;
        } else {
                if ((r = Q0(o->c, ST_POOL_FIRST_TWO, &res)) < 0)
                        return r;
                if (PQntuples(res) == 0)
                        return 0;        /* no pools: a server without an IP */
                if (PQntuples(res) > 1)
                        return lsc_err_set(-EINVAL, "several pools exist: choose one with --pool NAME");
                if ((r = pool_read(res, 0, &p)) < 0)
                        return r;
        }
        return ip_allocate(o, &p);
}

/* ---- operations (inside the transaction) ----------------------------------- */

static int event_server(struct op *o, const char *kind, const char *before)
{
        _cleanup_pgres_ PGresult *res = NULL;
        int r;

        if ((r = Q(o->c, ST_EVENT_SERVER, &res, o->actor, kind, o->uuid, o->request_id, before)) < 0)
                return r;
        if (strcmp(PQcmdTuples(res), "1") != 0)
                return lsc_err_set(-EIO, "%s: no event written for server %s", kind, o->uuid);
        return 0;
}

static int event_pool(struct op *o, const char *kind, const char *pool_id)
{
        _cleanup_pgres_ PGresult *res = NULL;
        int r;

        if ((r = Q(o->c, ST_EVENT_POOL, &res, o->actor, kind, pool_id, o->request_id)) < 0)
                return r;
        if (strcmp(PQcmdTuples(res), "1") != 0)
                return lsc_err_set(-EIO, "%s: no event written for pool %s", kind, pool_id);
        return 0;
}

/* ---- placement groups ------------------------------------------------------
 * A group is a named placement rule that servers join: anti-affinity (at most
 * max_per_host members on one host, default 1) or affinity (members go only where
 * members already run). max_per_host means nothing for affinity: giving one is
 * refused, and the row stores LSC_GROUP_MAX_PER_HOST_MAX (no limit); replies and
 * events leave it out. A server joins or leaves only while it holds no host (see
 * op_server_edit), so the loop's group counts always match what runs. */

static int group_name_check(const char *name)
{
        int r;

        if ((r = lsc_validate_name("group name", name)) < 0)
                return r;
        if (strcmp(name, "none") == 0)
                return lsc_err_set(-EINVAL, "group name \"none\" is reserved: it means no group");
        return 0;
}

static int check_group_create(struct op *o)
{
        const Lsc__GroupCreate *g = o->req->group_create;
        char shown[LSC_SHOW_BUF];
        uint32_t max = 1;
        int policy = SCHED_POLICY_ANTI_AFFINITY, r;

        if (!g || !g->name || !g->name[0])
                return lsc_err_set(-EINVAL, "a group needs a name");
        if ((r = group_name_check(g->name)) < 0)
                return r;
        if (g->policy && g->policy[0] &&
            (policy = lsc_enum_parse(sched_policy_names, SCHED_POLICY_COUNT, g->policy)) < 0)
                return lsc_err_set(-EINVAL, "unknown group policy \"%s\": use anti-affinity or affinity",
                                   show(g->policy, shown));
        if (policy == SCHED_POLICY_AFFINITY) {
                if (g->has_max_per_host)
                        return lsc_err_set(-EINVAL, "max per host applies to anti-affinity groups only");
                max = LSC_GROUP_MAX_PER_HOST_MAX;
        } else if (g->has_max_per_host) {
                if (g->max_per_host < 1 || g->max_per_host > LSC_GROUP_MAX_PER_HOST_MAX)
                        return lsc_err_set(-EINVAL, "max per host %u out of range: 1-%u",
                                           g->max_per_host, LSC_GROUP_MAX_PER_HOST_MAX);
                max = g->max_per_host;
        }
        o->group_policy = sched_policy_names[policy];
        snprintf(o->group_max, sizeof(o->group_max), "%u", max);
        return 0;
}

static int check_group_ref(struct op *o)
{
        const Lsc__Ref *ref = o->req->op_case == LSC__REQUEST__OP_GROUP_GET
                              ? o->req->group_get : o->req->group_delete;

        if (!ref || !ref->ref || !ref->ref[0])
                return lsc_err_set(-EINVAL, "which group? give its name");
        return lsc_validate_name("group name", ref->ref);
}

/* Appends every row of a GROUP_COLS result to the reply. */
static int reply_groups(struct op *o, const PGresult *res)
{
        struct bag *b = &o->out;
        int n = PQntuples(res), r;

        o->reply.groups = bag_alloc(b, (size_t)(n ? n : 1) * sizeof(Lsc__Group *));
        if (!o->reply.groups)
                return lsc_err_set(-ENOMEM, "out of memory");
        for (int i = 0; i < n; i++) {
                Lsc__Group *g = bag_alloc(b, sizeof(*g));

                if (!g)
                        return lsc_err_set(-ENOMEM, "out of memory");
                lsc__group__init(g);
                g->name = bag_strdup(b, PQgetvalue(res, i, GC_NAME));
                g->policy = bag_strdup(b, PQgetvalue(res, i, GC_POLICY));
                if (!g->name || !g->policy)
                        return lsc_err_set(-ENOMEM, "out of memory");
                if (strcmp(g->policy, "anti-affinity") == 0) {
                        g->has_max_per_host = 1;
                        g->max_per_host = (uint32_t)col_i64(res, i, GC_MAX_PER_HOST);
                }
                g->has_created_at = 1;
                g->created_at = col_i64(res, i, GC_CREATED);
                if ((r = parse_array(b, PQgetvalue(res, i, GC_MEMBERS), &g->members, &g->n_members)) < 0)
                        return r;
                o->reply.groups[i] = g;
                o->reply.n_groups = (size_t)i + 1;
        }
        return 0;
}

static int event_group(struct op *o, const char *kind, const char *group_id)
{
        _cleanup_pgres_ PGresult *res = NULL;
        int r;

        if ((r = Q(o->c, ST_EVENT_GROUP, &res, o->actor, kind, group_id, o->request_id)) < 0)
                return r;
        if (strcmp(PQcmdTuples(res), "1") != 0)
                return lsc_err_set(-EIO, "%s: no event written for group %s", kind, group_id);
        return 0;
}

/* Server create and edit: joins o->group, or leaves the group with clear_group. */
static int server_group_apply(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL;
        char shown[LSC_SHOW_BUF];
        int r;

        if (o->clear_group)
                return Q(o->c, ST_SERVER_SET_GROUP, NULL, o->uuid, NULL);
        if (!o->group)
                return 0;
        if ((r = Q(o->c, ST_GROUP_ID_SHARE, &res, o->group)) < 0)
                return r;
        if (PQntuples(res) != 1)
                return lsc_err_set(-ENOENT, "group %s not found", show(o->group, shown));
        return Q(o->c, ST_SERVER_SET_GROUP, NULL, o->uuid, PQgetvalue(res, 0, 0));
}

static int op_group_create(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL, *row = NULL;
        const Lsc__GroupCreate *g = o->req->group_create;
        char id[24];
        int r;

        if ((r = Q(o->c, ST_GROUP_INSERT, &res, g->name, o->group_policy, o->group_max)) < 0)
                return r;
        if (PQntuples(res) == 0)
                return lsc_err_set(-EEXIST, "group %s already exists", g->name);
        snprintf(id, sizeof(id), "%s", PQgetvalue(res, 0, 0));
        if ((r = event_group(o, "group.create", id)) < 0 || (r = Q(o->c, ST_GROUP_BY_ID, &row, id)) < 0)
                return r;
        return reply_groups(o, row);
}

static int op_group_delete(struct op *o)
{
        _cleanup_pgres_ PGresult *lock = NULL, *res = NULL;
        const char *name = o->req->group_delete->ref;
        const Lsc__Group *g;
        char shown[LSC_SHOW_BUF], id[24], names[400] = "";
        size_t off = 0;
        int r;

        if ((r = Q(o->c, ST_GROUP_LOCK, &lock, name)) < 0)
                return r;
        if (PQntuples(lock) != 1)
                return lsc_err_set(-ENOENT, "group %s not found", show(name, shown));
        snprintf(id, sizeof(id), "%s", PQgetvalue(lock, 0, 0));
        /* a new statement: it sees members that joined while we waited for the lock */
        if ((r = Q(o->c, ST_GROUP_BY_ID, &res, id)) < 0 || (r = reply_groups(o, res)) < 0)
                return r;
        if (o->reply.n_groups != 1)
                return lsc_err_set(-ENOENT, "group %s not found", show(name, shown));
        g = o->reply.groups[0];
        if (g->n_members > 0) {
                for (size_t i = 0; i < g->n_members && i < 5; i++)
                        off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s",
                                                i ? ", " : "", g->members[i]);
                return lsc_err_set(-EBUSY, "group %s still has %zu member%s (%s%s)", name,
                                   g->n_members, g->n_members == 1 ? "" : "s", names,
                                   g->n_members > 5 ? ", ..." : "");
        }
        if ((r = event_group(o, "group.delete", id)) < 0)
                return r;
        r = Q(o->c, ST_GROUP_DELETE, NULL, id);
        if (r == -EBUSY)         /* a server joined after our count */
                return lsc_err_set(-EBUSY, "group %s still has members", name);
        return r;
}

static int op_group_get(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL;
        const char *name = o->req->group_get->ref;
        char shown[LSC_SHOW_BUF];
        int r;

        if ((r = Q(o->c, ST_GROUP_BY_NAME, &res, name)) < 0)
                return r;
        if (PQntuples(res) != 1)
                return lsc_err_set(-ENOENT, "group %s not found", show(name, shown));
        return reply_groups(o, res);
}

static int op_group_list(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL;
        int r;

        if ((r = Q0(o->c, ST_GROUP_LIST, &res)) < 0)
                return r;
        return reply_groups(o, res);
}

/* ---- end of placement groups --------------------------------------------- */

static int op_server_create(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL;
        const Lsc__ServerSpec *s = o->spec;
        char vcpus[16], mem[24], disk[24];
        int r;

        snprintf(vcpus, sizeof(vcpus), "%u", s->vcpus);
        u64s(mem, sizeof(mem), s->memory_mib);
        u64s(disk, sizeof(disk), s->has_disk_gib ? s->disk_gib : 10);
        r = Q(o->c, ST_SERVER_INSERT, &res, o->uuid, s->name,
              s->kind ? s->kind : "vm", vcpus, mem, disk,
              s->disk_mode ? s->disk_mode : "ephemeral",
              s->image ? s->image : "debian-12",
              s->hostname ? s->hostname : s->name,
              o->label_keys, o->label_values,
              o->lifetime[0] ? o->lifetime : NULL);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return lsc_err_set(-EEXIST, "server %s already exists", s->name);
        if ((r = Q(o->c, ST_SERVER_SET_REQUIRE, NULL, o->uuid, o->req_keys, o->req_values)) < 0 ||
            (r = server_group_apply(o)) < 0 ||         /* placement group */
            (r = macs_assign(o)) < 0 || (r = ips_assign(o)) < 0 ||
            (r = event_server(o, "server.create", NULL)) < 0)
                return r;
        return reply_server_by_uuid(o);
}

/* Locks the server named by ref (a UUID or a name); *ret holds uuid, name, kind, state. */
static int server_lock(struct op *o, const char *ref, PGresult **ret)
{
        char shown[LSC_SHOW_BUF];
        uuid_t u;
        int r;

        if (uuid_parse(ref, u) == 0) {
                if ((r = Q(o->c, ST_SERVER_LOCK_BY_UUID, ret, ref)) < 0)
                        return r;
                if (PQntuples(*ret) != 1)
                        PQclear(TAKE_PTR(*ret));
        }
        if (!*ret) {
                if ((r = Q(o->c, ST_SERVER_LOCK_BY_NAME, ret, ref)) < 0)
                        return r;
                if (PQntuples(*ret) != 1) {
                        PQclear(TAKE_PTR(*ret));
                        return lsc_err_set(-ENOENT, "server %s not found", show(ref, shown));
                }
        }
        snprintf(o->uuid, sizeof(o->uuid), "%s", PQgetvalue(*ret, 0, 0));
        return 0;
}

static int op_server_edit(struct op *o)
{
        _cleanup_pgres_ PGresult *cur = NULL, *before = NULL;
        const Lsc__ServerEdit *e = o->req->server_edit;
        const Lsc__ServerSpec *s = o->spec;
        char vcpus[16], mem[24], disk[24];
        const char *name, *state;
        int r;

        if ((r = server_lock(o, e->ref, &cur)) < 0)
                return r;
        name = PQgetvalue(cur, 0, 1);
        state = PQgetvalue(cur, 0, 3);
        if (s->kind && strcmp(s->kind, PQgetvalue(cur, 0, 2)) != 0 && strcmp(state, "defined") != 0)
                return lsc_err_set(-EBUSY, "server %s is %s: its kind can change only while it is defined",
                                   name, state);
        /* a binding reserved the old size on its host: resizing waits for the next one */
        if ((s->has_vcpus || s->has_memory_mib || s->has_disk_gib || s->group || e->clear_group ||
             o->set_require) &&
            strcmp(state, "defined") != 0 && strcmp(state, "pending") != 0 && strcmp(state, "failed") != 0)
                return lsc_err_set(-EBUSY, "server %s is %s: stop it to change its size, group or "
                                   "required labels", name, state);
        if ((r = Q(o->c, ST_SERVER_JSON, &before, o->uuid)) < 0)
                return r;

        snprintf(vcpus, sizeof(vcpus), "%u", s->vcpus);
        u64s(mem, sizeof(mem), s->memory_mib);
        u64s(disk, sizeof(disk), s->disk_gib);
        r = Q(o->c, ST_SERVER_UPDATE, NULL, o->uuid, s->name, s->kind,
              s->has_vcpus ? vcpus : NULL, s->has_memory_mib ? mem : NULL,
              s->has_disk_gib ? disk : NULL, s->disk_mode, s->image, s->hostname,
              o->set_labels ? o->label_keys : NULL, o->set_labels ? o->label_values : NULL,
              o->unlabel, o->lifetime_set ? "true" : "false", o->lifetime[0] ? o->lifetime : NULL);
        if (r == -EEXIST)
                return lsc_err_set(-EEXIST, "server %s already exists", s->name);
        if (r < 0)
                return r;
        if (o->set_macs &&
            ((r = Q(o->c, ST_MAC_DELETE_SERVER, NULL, o->uuid)) < 0 || (r = macs_assign(o)) < 0))
                return r;
        if (o->set_ips &&
            ((r = Q(o->c, ST_IP_DELETE_SERVER, NULL, o->uuid)) < 0 || (r = ips_assign(o)) < 0))
                return r;
        if (o->set_require &&
            (r = Q(o->c, ST_SERVER_SET_REQUIRE, NULL, o->uuid, o->req_keys, o->req_values)) < 0)
                return r;
        if ((r = server_group_apply(o)) < 0)            /* placement group */
                return r;
        if ((r = event_server(o, "server.edit", PQgetvalue(before, 0, 0))) < 0)
                return r;
        return reply_server_by_uuid(o);
}

static int op_server_delete(struct op *o)
{
        _cleanup_pgres_ PGresult *cur = NULL;
        const char *state;
        int r;

        if ((r = server_lock(o, o->req->server_delete->ref, &cur)) < 0)
                return r;
        state = PQgetvalue(cur, 0, 3);
        /* something may run: stop it first; the loop deletes the row once the
         * destroy is acknowledged */
        if (strcmp(state, "defined") != 0 && strcmp(state, "failed") != 0 && strcmp(state, "pending") != 0)
                return stop_locked(o, cur, "deleted", "server.delete-requested");
        /* the reply shows what was deleted; the event keeps name and uuid */
        if ((r = reply_server_by_uuid(o)) < 0 || (r = event_server(o, "server.delete", NULL)) < 0)
                return r;
        return Q(o->c, ST_SERVER_DELETE, NULL, o->uuid);   /* MACs and IPs go by cascade */
}

/* ---- bindings: start, stop, bind, transitions, the view at start ----------- */

#define BIND_BATCH_MAX 10000

/* Events of one state change for the servers in uuids (a text[] literal). */
static int event_state(struct op *o, const char *kind, const char *uuids, const char *host)
{
        return Q(o->c, ST_EVENT_STATE, NULL, o->actor, kind, uuids, o->request_id, host ? host : "");
}

static int reply_servers_by_uuids(struct op *o, const char *uuids)
{
        _cleanup_pgres_ PGresult *res = NULL;
        int r;

        if ((r = Q(o->c, ST_SERVERS_BY_UUIDS, &res, uuids)) < 0)
                return r;
        return reply_servers(o, res);
}

/* Rows with the state only (no spec): the reply of a transition batch, which only
 * lscd's loop reads and which it merges into the records it has. Building the whole
 * row costs six subqueries per server. */
static int reply_states_by_uuids(struct op *o, const char *uuids)
{
        _cleanup_pgres_ PGresult *res = NULL;
        struct bag *b = &o->out;
        int r, n;

        if ((r = Q(o->c, ST_SERVER_STATES, &res, uuids)) < 0)
                return r;
        n = PQntuples(res);
        if (!(o->reply.servers = bag_alloc(b, (size_t)(n ? n : 1) * sizeof(*o->reply.servers))))
                return lsc_err_set(-ENOMEM, "out of memory");
        for (int i = 0; i < n; i++) {
                Lsc__Server *sv = bag_alloc(b, sizeof(*sv));
                if (!sv)
                        return lsc_err_set(-ENOMEM, "out of memory");
                lsc__server__init(sv);
#define COL(c) bag_strdup(b, PQgetvalue(res, i, (c)))
                sv->uuid = COL(0);
                sv->desired = COL(1);
                sv->state = COL(2);
                sv->host = COL(3);
                sv->has_generation = sv->has_failures = 1;
                sv->generation = (uint64_t)col_i64(res, i, 4);
                sv->reason = COL(5);
                sv->failures = (uint32_t)col_i64(res, i, 6);
                sv->migrate_from = COL(7);
                sv->migrate_to = COL(8);
                sv->has_expires_at = 1;
                sv->expires_at = col_i64(res, i, 9);
                sv->turnover_to = COL(10);
#undef COL
                if (!sv->uuid || !sv->desired || !sv->state || !sv->host || !sv->reason || !sv->migrate_from ||
                    !sv->migrate_to || !sv->turnover_to)
                        return lsc_err_set(-ENOMEM, "out of memory");
                o->reply.servers[o->reply.n_servers++] = sv;
        }
        return 0;
}

static const char *one_uuid(struct op *o)
{
        const char *v[] = { o->uuid };
        return array_literal(&o->in, v, 1);
}

#define START_REFS_MAX 1000

static int check_server_start(struct op *o)
{
        const Lsc__ServerStart *st = o->req->server_start;
        size_t n;
        int r;

        if (!st)
                return check_ref(NULL, "server");
        n = st->n_refs + (st->ref && st->ref[0] ? 1 : 0);
        if (n == 0)
                return check_ref(NULL, "server");
        if (n > START_REFS_MAX)
                return lsc_err_set(-EINVAL, "at most %d servers per start request, not %zu", START_REFS_MAX, n);
        if (st->ref && st->ref[0] && (r = check_ref(st->ref, "server")) < 0)
                return r;
        for (size_t i = 0; i < st->n_refs; i++)
                if ((r = check_ref(st->refs[i], "server")) < 0)
                        return r;
        return 0;
}

/* The row of rows that ref names: by UUID first when it is one, then by name; -1. */
static int ref_row(const PGresult *rows, const char *ref)
{
        uuid_t u;

        if (uuid_parse(ref, u) == 0)
                for (int i = 0; i < PQntuples(rows); i++)
                        if (!strcasecmp(PQgetvalue(rows, i, 0), ref))
                                return i;
        for (int i = 0; i < PQntuples(rows); i++)
                if (!strcmp(PQgetvalue(rows, i, 1), ref))
                        return i;
        return -1;
}

/* start, of one server or many in one transaction: defined or failed -> pending;
 * anything on its way up stays as it is. One unknown name, or a server that is lost
 * or being fenced, refuses the whole request. */
static int op_server_start(struct op *o)
{
        _cleanup_pgres_ PGresult *rows = NULL;
        const Lsc__ServerStart *st = o->req->server_start;
        size_t n = 0, nu = 0, cap = st->n_refs + 1;
        const char **refs = bag_alloc(&o->in, cap * sizeof(char *)),
                   **urefs = bag_alloc(&o->in, cap * sizeof(char *)),
                   **uuids = bag_alloc(&o->in, cap * sizeof(char *));
        const char *all, *ulit;
        char shown[LSC_SHOW_BUF];
        uuid_t u;
        int r;

        if (!refs || !urefs || !uuids)
                return lsc_err_set(-ENOMEM, "out of memory");
        if (st->ref && st->ref[0])
                refs[n++] = st->ref;
        for (size_t i = 0; i < st->n_refs; i++)
                refs[n++] = st->refs[i];
        for (size_t i = 0; i < n; i++)
                if (uuid_parse(refs[i], u) == 0)
                        urefs[nu++] = refs[i];
        if (!(all = array_literal(&o->in, refs, n)) || !(ulit = array_literal(&o->in, urefs, nu)))
                return lsc_err_set(-ENOMEM, "out of memory");
        if ((r = Q(o->c, ST_SERVERS_LOCK_REFS, &rows, all, ulit)) < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                int row = ref_row(rows, refs[i]);
                const char *state;

                if (row < 0)
                        return lsc_err_set(-ENOENT, "server %s not found", show(refs[i], shown));
                state = PQgetvalue(rows, row, 2);
                if (!strcmp(state, "lost") || !strcmp(state, "fencing"))
                        return lsc_err_set(-EBUSY, "server %s is %s: it comes back by itself once its host "
                                           "is fenced", PQgetvalue(rows, row, 1), state);
                uuids[i] = PQgetvalue(rows, row, 0);
        }
        snprintf(o->uuid, sizeof(o->uuid), "%s", uuids[0]);
        if (!(all = array_literal(&o->in, uuids, n)))
                return lsc_err_set(-ENOMEM, "out of memory");
        if ((r = Q(o->c, ST_SERVERS_START, NULL, all)) < 0 ||
            (r = event_state(o, "server.start", all, NULL)) < 0)
                return r;
        return reply_servers_by_uuids(o, all);
}

/* stop (and delete of a bound server): pending -> defined at once; binding and
 * running -> stopping, and the loop destroys the instance; the rest is there already. */
static int stop_locked(struct op *o, const PGresult *cur, const char *desired, const char *kind)
{
        const char *state = PQgetvalue(cur, 0, 3), *uuids = one_uuid(o);
        int r;

        if (!uuids)
                return lsc_err_set(-ENOMEM, "out of memory");
        if (!strcmp(state, "binding") || !strcmp(state, "running") || !strcmp(state, "stopping"))
                r = Q(o->c, ST_SERVER_SET_STATE, NULL, o->uuid, desired, "stopping", "stop requested", "false");
        else if (!strcmp(state, "lost") || !strcmp(state, "fencing"))
                return lsc_err_set(-EBUSY, "server %s is %s: wait until its host is fenced",
                                   PQgetvalue(cur, 0, 1), state);
        else    /* defined, pending, failed: nothing runs */
                r = Q(o->c, ST_SERVER_SET_STATE, NULL, o->uuid, desired, "defined", "", "false");
        if (r < 0 || (r = event_state(o, kind, uuids, NULL)) < 0)
                return r;
        return reply_servers_by_uuids(o, uuids);
}

static int op_server_stop(struct op *o)
{
        _cleanup_pgres_ PGresult *cur = NULL;
        int r;

        if ((r = server_lock(o, o->req->server_stop->ref, &cur)) < 0)
                return r;
        return stop_locked(o, cur, "stopped", "server.stop");
}

/* migrate: a running server is destroyed where it runs, then bound again elsewhere
 * (break before make); the host it leaves is never chosen for it this time. */
static int op_server_migrate(struct op *o)
{
        _cleanup_pgres_ PGresult *cur = NULL, *row = NULL, *to = NULL;
        const Lsc__ServerMigrate *m = o->req->server_migrate;
        const char *uuids, *name;
        char reason[200], from[64];
        int r;

        if ((r = server_lock(o, m->ref, &cur)) < 0)
                return r;
        name = PQgetvalue(cur, 0, 1);
        if (strcmp(PQgetvalue(cur, 0, 3), "running") != 0)
                return lsc_err_set(-EBUSY, "server %s is %s: only a running server migrates", name,
                                   PQgetvalue(cur, 0, 3));
        if (!(uuids = one_uuid(o)))
                return lsc_err_set(-ENOMEM, "out of memory");
        if ((r = Q(o->c, ST_SERVERS_BY_UUIDS, &row, uuids)) < 0)
                return r;
        snprintf(from, sizeof(from), "%s", PQgetvalue(row, 0, SC_HOST));
        if (m->to && m->to[0]) {
                if ((r = Q(o->c, ST_HOST_BY_NAME, &to, m->to)) < 0)
                        return r;
                if (PQntuples(to) != 1)
                        return lsc_err_set(-ENOENT, "host %s not found", m->to);
                if (!strcmp(m->to, from))
                        return lsc_err_set(-EBUSY, "server %s already runs on %s", name, from);
                snprintf(reason, sizeof(reason), "migrating from %s to %s", from, m->to);
        } else {
                snprintf(reason, sizeof(reason), "migrating from %s", from);
        }
        if ((r = Q(o->c, ST_SERVER_MIGRATE, NULL, o->uuid, reason, from, m->to ? m->to : "")) < 0 ||
            (r = event_state(o, "server.migrate", uuids, NULL)) < 0)
                return r;
        return reply_servers_by_uuids(o, uuids);
}

static int check_bind(struct op *o)
{
        const Lsc__Bind *b = o->req->bind;

        if (!b || b->n_bindings == 0 || b->n_bindings > BIND_BATCH_MAX)
                return lsc_err_set(-EINVAL, "a bind batch holds 1-%d bindings", BIND_BATCH_MAX);
        for (size_t i = 0; i < b->n_bindings; i++) {
                const Lsc__Binding *x = b->bindings[i];
                uuid_t u;
                if (!x->uuid || uuid_parse(x->uuid, u) != 0 || !x->host ||
                    lsc_validate_name("host name", x->host) < 0)
                        return lsc_err_set(-EINVAL, "binding %zu is malformed", i);
        }
        return 0;
}

/* The set-based compare-and-set: servers at the generation the scheduler saw move to
 * binding (generation + 1); each host then takes its share only if all of it fits
 * its allocatable capacity; servers of hosts that did not fit go back to pending. */
static int op_bind(struct op *o)
{
        _cleanup_pgres_ PGresult *bound = NULL, *fit = NULL;
        const Lsc__Bind *b = o->req->bind;
        size_t n = b->n_bindings, nb, nback = 0, ndone = 0;
        const char **uuids = bag_alloc(&o->in, n * sizeof(char *)), **gens = bag_alloc(&o->in, n * sizeof(char *)),
                   **hosts = bag_alloc(&o->in, n * sizeof(char *)), **done = bag_alloc(&o->in, n * sizeof(char *));
        const char *all, **hid, **v, **m, **d, **back;
        char jitter[16];
        int r;

        if (!uuids || !gens || !hosts || !done)
                return lsc_err_set(-ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                char *g = bag_alloc(&o->in, 24);
                if (!g)
                        return lsc_err_set(-ENOMEM, "out of memory");
                u64s(g, 24, b->bindings[i]->generation);
                uuids[i] = b->bindings[i]->uuid;
                gens[i] = g;
                hosts[i] = b->bindings[i]->host;
        }
        if (!(all = array_literal(&o->in, uuids, n)))
                return lsc_err_set(-ENOMEM, "out of memory");
        snprintf(jitter, sizeof(jitter), "%.4f", o->c->cfg.mayfly_jitter_pct / 100.0);
        if ((r = Q(o->c, ST_BIND_SERVERS, &bound, all, array_literal(&o->in, gens, n),
                   array_literal(&o->in, hosts, n), jitter)) < 0)
                return r;
        nb = (size_t)PQntuples(bound);
        if (nb > 0) {
                hid = bag_alloc(&o->in, nb * sizeof(char *));
                v = bag_alloc(&o->in, nb * sizeof(char *));
                m = bag_alloc(&o->in, nb * sizeof(char *));
                d = bag_alloc(&o->in, nb * sizeof(char *));
                back = bag_alloc(&o->in, nb * sizeof(char *));
                if (!hid || !v || !m || !d || !back)
                        return lsc_err_set(-ENOMEM, "out of memory");
                for (size_t i = 0; i < nb; i++) {
                        hid[i] = PQgetvalue(bound, (int)i, 1);
                        v[i] = PQgetvalue(bound, (int)i, 2);
                        m[i] = PQgetvalue(bound, (int)i, 3);
                        d[i] = PQgetvalue(bound, (int)i, 4);
                }
                if ((r = Q(o->c, ST_BIND_RESERVE, &fit, array_literal(&o->in, hid, nb),
                           array_literal(&o->in, v, nb), array_literal(&o->in, m, nb),
                           array_literal(&o->in, d, nb))) < 0)
                        return r;
                for (size_t i = 0; i < nb; i++) {
                        bool ok = false;
                        for (int j = 0; j < PQntuples(fit) && !ok; j++)
                                ok = !strcmp(PQgetvalue(fit, j, 0), hid[i]);
                        if (ok)
                                done[ndone++] = PQgetvalue(bound, (int)i, 0);
                        else
                                back[nback++] = PQgetvalue(bound, (int)i, 0);
                }
                if (nback > 0 &&
                    (r = Q(o->c, ST_BIND_REVERT, NULL, array_literal(&o->in, back, nback),
                           "the chosen host had no room left; placing again")) < 0)
                        return r;
        }
        /* one event per binding this transaction committed; the first carries the request
         * id (none committed: one event for the batch, so the commit can be recognised) */
        if (ndone > 0)
                r = event_state(o, "server.binding", array_literal(&o->in, done, ndone), NULL);
        else
                r = Q(o->c, ST_EVENT_HOST, NULL, o->actor, "bind.refused", NULL, o->request_id, "{}");
        /* whole rows: lscd's loop sends INSTANTIATE with the spec of what it bound (its
         * view keeps only what placing needs of servers that are not binding) */
        if (r < 0 || (r = reply_servers_by_uuids(o, all)) < 0)
                return r;
        /* refused: what this transaction did not bind (whatever state it is in now) */
        for (size_t i = 0; i < n; i++) {
                bool ok = false;
                for (size_t j = 0; j < ndone && !ok; j++)
                        ok = !strcmp(uuids[i], done[j]);
                if (!ok) {
                        char **nr = bag_alloc(&o->out, (o->reply.n_refused + 1) * sizeof(char *));
                        if (!nr)
                                return lsc_err_set(-ENOMEM, "out of memory");
                        if (o->reply.n_refused)
                                memcpy(nr, o->reply.refused, o->reply.n_refused * sizeof(char *));
                        nr[o->reply.n_refused++] = bag_strdup(&o->out, uuids[i]);
                        o->reply.refused = nr;
                }
        }
        return 0;
}

/* ---- mayflies ---- */

static int check_turnover(struct op *o)
{
        const Lsc__Turnover *t = o->req->turnover;
        uuid_t u;

        if (!t || !t->uuid || uuid_parse(t->uuid, u) != 0 || !t->has_generation)
                return lsc_err_set(-EINVAL, "malformed turnover");
        if (t->to && t->to[0] && lsc_validate_name("host name", t->to) < 0)
                return -EINVAL;
        if ((!t->to || !t->to[0]) && (t->postpone_s == 0 || t->postpone_s > 86400))
                return lsc_err_set(-EINVAL, "a postponed turnover moves 1-86400 s on");
        snprintf(o->uuid, sizeof(o->uuid), "%s", t->uuid);
        return 0;
}

/* A mayfly's death (running -> stopping, its rebirth host recorded in the same
 * transaction), or its postponement when no host could be reserved. A stale one (a
 * renew, a stop or another binding came first) changes nothing; the reply carries the
 * state as it is either way. */
static int op_turnover(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL;
        const Lsc__Turnover *t = o->req->turnover;
        const char *uuids = one_uuid(o);
        bool die = t->to && t->to[0];
        char gen[24], secs[16], early[16];
        int r;

        if (!uuids)
                return lsc_err_set(-ENOMEM, "out of memory");
        u64s(gen, sizeof(gen), t->generation);
        snprintf(secs, sizeof(secs), "%u", t->postpone_s);
        snprintf(early, sizeof(early), "%u", t->early_s);
        if (die)
                r = Q(o->c, ST_TURNOVER_DIE, &res, o->uuid, gen, t->reason ? t->reason : "turnover", t->to, early);
        else
                r = Q(o->c, ST_TURNOVER_POSTPONE, &res, o->uuid, gen, t->reason ? t->reason : "turnover postponed",
                      secs);
        if (r < 0)
                return r;
        /* a stale one writes nothing: after a lost COMMIT it is simply tried again */
        if (PQntuples(res) == 1 &&
            (r = event_state(o, die ? "server.turnover" : "server.turnover-postponed", uuids, NULL)) < 0)
                return r;
        return reply_states_by_uuids(o, uuids);
}

static int check_server_renew(struct op *o)
{
        const Lsc__ServerRenew *rn = o->req->server_renew;
        int r;

        if (!rn)
                return check_ref(NULL, "server");
        if (rn->has_by_s && rn->by_s > 0 && (r = lsc_validate_lifetime_s(rn->by_s)) < 0)
                return r;
        return check_ref(rn->ref, "server");
}

/* renew: a running mayfly's death moves to now + by (default: its lifetime), at most
 * mayfly_renew_max times per binding. */
static int op_server_renew(struct op *o)
{
        _cleanup_pgres_ PGresult *cur = NULL, *row = NULL;
        const Lsc__ServerRenew *rn = o->req->server_renew;
        const char *uuids, *name, *state;
        char by[24], reason[100];
        uint64_t lifetime, renewals, max = o->c->cfg.mayfly_renew_max;
        int r;

        if ((r = server_lock(o, rn->ref, &cur)) < 0)
                return r;
        name = PQgetvalue(cur, 0, 1);
        state = PQgetvalue(cur, 0, 3);
        if (!(uuids = one_uuid(o)))
                return lsc_err_set(-ENOMEM, "out of memory");
        if ((r = Q(o->c, ST_SERVERS_BY_UUIDS, &row, uuids)) < 0)
                return r;
        lifetime = (uint64_t)col_i64(row, 0, SC_LIFETIME);
        renewals = (uint64_t)col_i64(row, 0, SC_RENEWALS);
        if (lifetime == 0)
                return lsc_err_set(-EBUSY, "server %s is not a mayfly (it has no lifetime): nothing to renew", name);
        if (strcmp(state, "running") != 0 || PQgetvalue(row, 0, SC_TURNOVER_TO)[0])
                return lsc_err_set(-EBUSY, "server %s is %s%s: only a running mayfly is renewed", name, state,
                                   PQgetvalue(row, 0, SC_TURNOVER_TO)[0] ? " (turning over)" : "");
        if (renewals >= max)
                return lsc_err_set(-EBUSY, "server %s was renewed %llu times since it was bound; lscd allows "
                                   "%llu (mayfly_renew_max): it turns over as planned", name,
                                   (unsigned long long)renewals, (unsigned long long)max);
        u64s(by, sizeof(by), rn->has_by_s && rn->by_s ? rn->by_s : lifetime);
        snprintf(reason, sizeof(reason), "renewed: dies %s s from now", by);
        if ((r = Q(o->c, ST_SERVER_RENEW, NULL, o->uuid, by, reason)) < 0 ||
            (r = event_state(o, "server.renew", uuids, NULL)) < 0)
                return r;
        return reply_servers_by_uuids(o, uuids);
}

static const char *const server_states[] = { "defined", "pending", "binding", "running", "stopping",
                                             "lost", "fencing", "failed", "deleted" };

static bool server_state_known(const char *state)
{
        for (size_t i = 0; state && i < ARRAY_SIZE(server_states); i++)
                if (!strcmp(server_states[i], state))
                        return true;
        return false;
}

static int transition_check(const Lsc__Transition *t)
{
        uuid_t u;

        if (!t || !t->uuid || uuid_parse(t->uuid, u) != 0 || !t->to || !t->kind || t->n_from == 0)
                return lsc_err_set(-EINVAL, "malformed transition");
        if (!server_state_known(t->to))
                return lsc_err_set(-EINVAL, "transition to an unknown state");
        for (size_t i = 0; i < t->n_from; i++)
                if (!server_state_known(t->from[i]))
                        return lsc_err_set(-EINVAL, "transition from an unknown state");
        return 0;
}

static int check_transition(struct op *o)
{
        const Lsc__Transition *t = o->req->transition;
        int r;

        if ((r = transition_check(t)) < 0)
                return r;
        snprintf(o->uuid, sizeof(o->uuid), "%s", t->uuid);
        return 0;
}

#define TRANSITIONS_MAX 5000

static int uuid_cmp(const void *a, const void *b)
{
        return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

static int check_transitions(struct op *o)
{
        const Lsc__Transitions *t = o->req->transitions;
        const char **v;
        int r;

        if (!t || t->n_items == 0 || t->n_items > TRANSITIONS_MAX)
                return lsc_err_set(-EINVAL, "a transition batch holds 1-%d transitions", TRANSITIONS_MAX);
        for (size_t i = 0; i < t->n_items; i++) {
                if ((r = transition_check(t->items[i])) < 0)
                        return r;
                if (!strcmp(t->items[i]->to, "deleted"))
                        return lsc_err_set(-EINVAL, "a deletion is a transition of its own");
        }
        if (!(v = bag_alloc(&o->in, t->n_items * sizeof(*v))))
                return lsc_err_set(-ENOMEM, "out of memory");
        for (size_t i = 0; i < t->n_items; i++)
                v[i] = t->items[i]->uuid;
        qsort(v, t->n_items, sizeof(*v), uuid_cmp);
        for (size_t i = 1; i < t->n_items; i++)
                if (!uuid_cmp(&v[i - 1], &v[i]))
                        return lsc_err_set(-EINVAL, "server %s appears twice in one transition batch", v[i]);
        return 0;
}

/* Many state changes, set-based (ST_TRANSITIONS); stale ones change nothing. The
 * reply carries every server of the batch as it is now. */
static int op_transitions(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL;
        const Lsc__Transitions *t = o->req->transitions;
        size_t n = t->n_items;
        const char **uuids = bag_alloc(&o->in, n * sizeof(char *)), **gens = bag_alloc(&o->in, n * sizeof(char *)),
                   **from = bag_alloc(&o->in, n * sizeof(char *)), **to = bag_alloc(&o->in, n * sizeof(char *)),
                   **why = bag_alloc(&o->in, n * sizeof(char *)), **rel = bag_alloc(&o->in, n * sizeof(char *)),
                   **fail = bag_alloc(&o->in, n * sizeof(char *)), **kind = bag_alloc(&o->in, n * sizeof(char *));
        const char *all;
        int r;

        if (!uuids || !gens || !from || !to || !why || !rel || !fail || !kind)
                return lsc_err_set(-ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                const Lsc__Transition *x = t->items[i];
                size_t len = 1;
                char *g = bag_alloc(&o->in, 24), *f;

                for (size_t k = 0; k < x->n_from; k++)
                        len += strlen(x->from[k]) + 1;
                if (!g || !(f = bag_alloc(&o->in, len)))
                        return lsc_err_set(-ENOMEM, "out of memory");
                f[0] = '\0';
                for (size_t k = 0; k < x->n_from; k++) {
                        if (k)
                                strcat(f, ",");
                        strcat(f, x->from[k]);
                }
                u64s(g, 24, x->generation);
                uuids[i] = x->uuid;
                gens[i] = g;
                from[i] = f;
                to[i] = x->to;
                why[i] = x->reason ? x->reason : "";
                rel[i] = x->release ? "t" : "f";
                fail[i] = x->failure ? "t" : "f";
                kind[i] = x->kind;
        }
        if (!(all = array_literal(&o->in, uuids, n)))
                return lsc_err_set(-ENOMEM, "out of memory");
        if ((r = Q(o->c, ST_TRANSITIONS, &res, all, array_literal(&o->in, gens, n),
                   array_literal(&o->in, from, n), array_literal(&o->in, to, n), array_literal(&o->in, why, n),
                   array_literal(&o->in, rel, n), array_literal(&o->in, fail, n),
                   array_literal(&o->in, kind, n), o->actor, o->request_id)) < 0)
                return r;
        return reply_states_by_uuids(o, all);
}

/* One server's state change at generation g from the given states; a stale one
 * (another generation or state) changes nothing and replies the server as it is. */
static int op_transition(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL;
        const Lsc__Transition *t = o->req->transition;
        const char *uuids = one_uuid(o), *from, *to = strcmp(t->to, "deleted") ? t->to : "defined";
        char gen[24], host[64] = "";
        int r;

        u64s(gen, sizeof(gen), t->generation);
        if (!uuids || !(from = array_literal(&o->in, (const char *const *)t->from, t->n_from)))
                return lsc_err_set(-ENOMEM, "out of memory");
        if ((r = Q(o->c, ST_TRANSITION, &res, o->uuid, gen, from, to, t->reason ? t->reason : "",
                   t->release ? "true" : "false", t->failure ? "true" : "false")) < 0)
                return r;
        if (PQntuples(res) == 1) {
                snprintf(host, sizeof(host), "%s", PQgetvalue(res, 0, 4));
                if (t->release && strcmp(PQgetvalue(res, 0, 0), "0") != 0 &&
                    (r = Q(o->c, ST_HOST_RELEASE, NULL, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
                           PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3))) < 0)
                        return r;
                /* a deletion's event is server.delete with the whole identity */
                if (strcmp(t->to, "deleted") != 0 && (r = event_state(o, t->kind, uuids, host)) < 0)
                        return r;
                if (!strcmp(t->to, "deleted")) {
                        if ((r = reply_servers_by_uuids(o, uuids)) < 0 ||
                            (r = event_server(o, "server.delete", NULL)) < 0)
                                return r;
                        return Q(o->c, ST_SERVER_DELETE, NULL, o->uuid);
                }
        }
        return reply_servers_by_uuids(o, uuids);
}

static int reply_groups(struct op *o, const PGresult *res);

static int op_load(struct op *o)
{
        _cleanup_pgres_ PGresult *settings = NULL, *servers = NULL, *hosts = NULL, *groups = NULL;
        int r;

        if ((r = Q0(o->c, ST_LOAD_SETTINGS, &settings)) < 0 || (r = Q0(o->c, ST_LOAD_SERVERS, &servers)) < 0 ||
            (r = Q0(o->c, ST_LOAD_HOSTS, &hosts)) < 0 || (r = Q0(o->c, ST_LOAD_GROUPS, &groups)) < 0)
                return r;
        /* the large result goes as soon as it is in the reply */
        if ((r = reply_servers(o, servers)) < 0)
                return r;
        PQclear(TAKE_PTR(servers));
        if ((r = reply_groups(o, groups)) < 0)
                return r;
        return reply_hosts(o, hosts);
}

static int op_server_get(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL;
        const char *ref = o->req->server_get->ref;
        char shown[LSC_SHOW_BUF];
        uuid_t u;
        int r;

        if (uuid_parse(ref, u) == 0) {
                if ((r = Q(o->c, ST_SERVER_BY_UUID, &res, ref)) < 0)
                        return r;
                if (PQntuples(res) == 1)
                        return reply_servers(o, res);
                PQclear(TAKE_PTR(res));
        }
        if ((r = Q(o->c, ST_SERVER_BY_NAME, &res, ref)) < 0)
                return r;
        if (PQntuples(res) != 1)
                return lsc_err_set(-ENOENT, "server %s not found", show(ref, shown));
        return reply_servers(o, res);
}

static int op_server_list(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL;
        char peek[16];
        int r;

        if (o->unpaged) {
                if ((r = Q0(o->c, ST_SERVER_LIST_ALL, &res)) < 0)
                        return r;
                return reply_servers(o, res);
        }
        /* one row more than the page says whether another page follows */
        snprintf(peek, sizeof(peek), "%u", o->limit + 1);
        if ((r = Q(o->c, ST_SERVER_LIST, &res, o->after, peek)) < 0)
                return r;
        return reply_server_page(o, res);
}

static int op_pool_create(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL, *row = NULL;
        const Lsc__PoolCreate *p = o->req->pool_create;
        char cidr[LSC_CIDR_STR], gw[LSC_IP_STR], id[24];
        int r;

        lsc_cidr_format(&o->cidr, cidr);
        if (o->has_gateway)
                lsc_ip_format(&o->gateway, gw);
        if ((r = Q(o->c, ST_POOL_BY_NAME, &res, p->name)) < 0)
                return r;
        if (PQntuples(res) > 0)
                return lsc_err_set(-EEXIST, "pool %s already exists", p->name);
        PQclear(TAKE_PTR(res));
        if ((r = Q(o->c, ST_POOL_OVERLAP, &res, cidr)) < 0)
                return r;
        if (PQntuples(res) > 0)
                return lsc_err_set(-EBUSY, "%s overlaps pool %s (%s)", cidr, PQgetvalue(res, 0, 0),
                                   PQgetvalue(res, 0, 1));
        PQclear(TAKE_PTR(res));
        r = Q(o->c, ST_POOL_INSERT, &res, p->name, cidr, o->has_gateway ? gw : NULL);
        if (r == -EEXIST)        /* a concurrent create won */
                return lsc_err_set(-EEXIST, "pool %s or a pool with %s already exists", p->name, cidr);
        if (r == -EBUSY)
                return lsc_err_set(-EBUSY, "%s overlaps another pool", cidr);
        if (r < 0)
                return r;
        snprintf(id, sizeof(id), "%s", PQgetvalue(res, 0, 0));
        if ((r = event_pool(o, "pool.create", id)) < 0 || (r = Q(o->c, ST_POOL_BY_ID, &row, id)) < 0)
                return r;
        return reply_pools(o, row);
}

static int op_pool_delete(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL;
        const char *name = o->req->pool_delete->ref;
        char shown[LSC_SHOW_BUF], id[24];
        long long allocated;
        int r;

        if ((r = Q(o->c, ST_POOL_LOCK, &res, name)) < 0)
                return r;
        if (PQntuples(res) != 1)
                return lsc_err_set(-ENOENT, "pool %s not found", show(name, shown));
        allocated = col_i64(res, 0, PC_ALLOCATED);
        if (allocated > 0)
                return lsc_err_set(-EBUSY, "pool %s still has %lld allocated address%s", name,
                                   allocated, allocated == 1 ? "" : "es");
        snprintf(id, sizeof(id), "%s", PQgetvalue(res, 0, PC_ID));
        if ((r = reply_pools(o, res)) < 0 || (r = event_pool(o, "pool.delete", id)) < 0)
                return r;
        r = Q(o->c, ST_POOL_DELETE, NULL, id);
        if (r == -EBUSY)         /* an address was allocated after our count */
                return lsc_err_set(-EBUSY, "pool %s still has allocated addresses", name);
        return r;
}

static int op_pool_get(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL;
        const char *name = o->req->pool_get->ref;
        char shown[LSC_SHOW_BUF];
        int r;

        if ((r = Q(o->c, ST_POOL_BY_NAME, &res, name)) < 0)
                return r;
        if (PQntuples(res) != 1)
                return lsc_err_set(-ENOENT, "pool %s not found", show(name, shown));
        return reply_pools(o, res);
}

static int op_pool_list(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL;
        int r;

        if ((r = Q0(o->c, ST_POOL_LIST, &res)) < 0)
                return r;
        return reply_pools(o, res);
}

static int op_event_list(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL;
        const Lsc__EventList *e = o->req->event_list;
        char limit[16];
        int n, r;

        snprintf(limit, sizeof(limit), "%u", o->limit);
        if (e && e->server)
                r = Q(o->c, ST_EVENT_LIST_SERVER, &res, e->server, limit);
        else
                r = Q(o->c, ST_EVENT_LIST_ALL, &res, limit);
        if (r < 0)
                return r;
        n = PQntuples(res);
        o->reply.events = bag_alloc(&o->out, (size_t)(n ? n : 1) * sizeof(Lsc__Event *));
        if (!o->reply.events)
                return lsc_err_set(-ENOMEM, "out of memory");
        for (int i = 0; i < n; i++) {
                Lsc__Event *ev = bag_alloc(&o->out, sizeof(*ev));

                if (!ev)
                        return lsc_err_set(-ENOMEM, "out of memory");
                lsc__event__init(ev);
                ev->has_id = ev->has_at_us = 1;
                ev->id = col_i64(res, i, EC_ID);
                ev->at_us = col_i64(res, i, EC_AT);
                ev->actor = bag_strdup(&o->out, PQgetvalue(res, i, EC_ACTOR));
                ev->kind = bag_strdup(&o->out, PQgetvalue(res, i, EC_KIND));
                ev->server = bag_strdup(&o->out, PQgetvalue(res, i, EC_SERVER));
                ev->uuid = bag_strdup(&o->out, PQgetvalue(res, i, EC_UUID));
                ev->detail = bag_strdup(&o->out, PQgetvalue(res, i, EC_DETAIL));
                if (!ev->actor || !ev->kind || !ev->server || !ev->uuid || !ev->detail)
                        return lsc_err_set(-ENOMEM, "out of memory");
                o->reply.events[i] = ev;
                o->reply.n_events = (size_t)i + 1;
        }
        return 0;
}

/* After a COMMIT whose outcome was unknown but did commit: the reply from the
 * database as it is, without running the change again. */
/* ---- hosts --------------------------------------------------------------- */

#define HOST_VCPUS_MAX 1048576u
#define HOST_SIZE_MAX  1073741824ull     /* MiB or GiB */

static int host_from_row(struct op *o, const PGresult *res, int i, Lsc__Host **ret)
{
        struct bag *b = &o->out;
        Lsc__Host *h = bag_alloc(b, sizeof(*h));
        Lsc__Capacity *cap = bag_alloc(b, sizeof(*cap)), *used = bag_alloc(b, sizeof(*used));
        int r;

        if (!h || !cap || !used)
                return lsc_err_set(-ENOMEM, "out of memory");
        lsc__host__init(h);
        lsc__capacity__init(cap);
        lsc__capacity__init(used);
#define COL(c) bag_strdup(b, PQgetvalue(res, i, (c)))
        h->uuid = COL(HC_UUID);
        h->name = COL(HC_NAME);
        h->liveness = COL(HC_LIVENESS);
        h->admin = COL(HC_ADMIN);
        h->driver = COL(HC_DRIVER);
        h->kind = COL(HC_KIND);
#undef COL
        if (!h->uuid || !h->name || !h->liveness || !h->admin || !h->driver || !h->kind)
                return lsc_err_set(-ENOMEM, "out of memory");
        cap->has_vcpus = cap->has_memory_mib = cap->has_disk_gib = 1;
        cap->vcpus = (uint32_t)col_i64(res, i, HC_VCPUS);
        cap->memory_mib = (uint64_t)col_i64(res, i, HC_MEMORY);
        cap->disk_gib = (uint64_t)col_i64(res, i, HC_DISK);
        used->has_vcpus = used->has_memory_mib = used->has_disk_gib = 1;
        used->vcpus = (uint32_t)col_i64(res, i, HC_USED_VCPUS);
        used->memory_mib = (uint64_t)col_i64(res, i, HC_USED_MEMORY);
        used->disk_gib = (uint64_t)col_i64(res, i, HC_USED_DISK);
        h->capacity = cap;
        h->used = used;
        h->has_alloc_ratio = h->has_epoch = h->has_created_at = 1;
        h->alloc_ratio = strtod(PQgetvalue(res, i, HC_RATIO), NULL);
        h->epoch = (uint64_t)col_i64(res, i, HC_EPOCH);
        h->created_at = col_i64(res, i, HC_CREATED);
        if ((r = labels_from_row(b, res, i, HC_LABEL_KEYS, &h->labels, &h->n_labels)) < 0 ||
            (r = parse_array(b, PQgetvalue(res, i, HC_INSTANCES), &h->instances, &h->n_instances)) < 0)
                return r;
        *ret = h;
        return 0;
}

static int reply_hosts(struct op *o, const PGresult *res)
{
        int n = PQntuples(res), r;

        o->reply.hosts = bag_alloc(&o->out, (size_t)(n ? n : 1) * sizeof(Lsc__Host *));
        if (!o->reply.hosts)
                return lsc_err_set(-ENOMEM, "out of memory");
        for (int i = 0; i < n; i++) {
                if ((r = host_from_row(o, res, i, &o->reply.hosts[i])) < 0)
                        return r;
                o->reply.n_hosts = (size_t)i + 1;
        }
        return 0;
}

/* A page of a host list: as reply_server_page, counting the liveness lscd adds. */
static int reply_host_page(struct op *o, const PGresult *res)
{
        int n = PQntuples(res), r;
        size_t bytes = 0;

        o->reply.hosts = bag_alloc(&o->out, (size_t)(n ? n : 1) * sizeof(Lsc__Host *));
        if (!o->reply.hosts)
                return lsc_err_set(-ENOMEM, "out of memory");
        for (int i = 0; i < n && (unsigned)i < o->limit; i++) {
                Lsc__Host *h;

                if ((r = host_from_row(o, res, i, &h)) < 0)
                        return r;
                if (!page_fits(&bytes, (size_t)i, lsc__host__get_packed_size(h) + LIST_HOST_MERGE_BYTES))
                        break;
                o->reply.hosts[i] = h;
                o->reply.n_hosts = (size_t)i + 1;
        }
        if (o->reply.n_hosts < (size_t)n)
                o->reply.next = o->reply.hosts[o->reply.n_hosts - 1]->name;
        return 0;
}

static int check_host_register(struct op *o)
{
        const Lsc__Register *g = o->req->host_register;
        const char **keys, **values;
        int r;

        if (!g || !g->host)
                return lsc_err_set(-EINVAL, "a registration needs a host name");
        if ((r = lsc_validate_name("host name", g->host)) < 0)
                return r;
        if (!g->driver || (strcmp(g->driver, "libvirt") && strcmp(g->driver, "fake") &&
                           strcmp(g->driver, "container") && strcmp(g->driver, "metal")))
                return lsc_err_set(-EINVAL, "host %s: unknown driver", g->host);
        if (!g->kind || lsc_enum_parse(lsc_kind_names, LSC_KIND_COUNT, g->kind) < 0)
                return lsc_err_set(-EINVAL, "host %s: unknown kind", g->host);
        if (!g->capacity || g->capacity->vcpus > HOST_VCPUS_MAX ||
            g->capacity->memory_mib > HOST_SIZE_MAX || g->capacity->disk_gib > HOST_SIZE_MAX)
                return lsc_err_set(-EINVAL, "host %s: capacity missing or out of range", g->host);
        if (g->has_alloc_ratio && !(g->alloc_ratio > 0 && g->alloc_ratio <= 64))
                return lsc_err_set(-EINVAL, "host %s: allocation ratio %g out of range: (0, 64]",
                                   g->host, g->alloc_ratio);
        if (g->n_labels > MAX_LABELS)
                return lsc_err_set(-EINVAL, "host %s: at most %d labels", g->host, MAX_LABELS);
        keys = bag_alloc(&o->in, (g->n_labels + 1) * sizeof(char *));
        values = bag_alloc(&o->in, (g->n_labels + 1) * sizeof(char *));
        if (!keys || !values)
                return lsc_err_set(-ENOMEM, "out of memory");
        for (size_t i = 0; i < g->n_labels; i++) {
                keys[i] = g->labels[i]->key ? g->labels[i]->key : "";
                values[i] = g->labels[i]->value ? g->labels[i]->value : "";
                if ((r = lsc_validate_label_part("label key", keys[i])) < 0 ||
                    (r = lsc_validate_label_part("label value", values[i])) < 0)
                        return r;
        }
        o->label_keys = array_literal(&o->in, keys, g->n_labels);
        o->label_values = array_literal(&o->in, values, g->n_labels);
        if (!o->label_keys || !o->label_values)
                return lsc_err_set(-ENOMEM, "out of memory");
        return 0;
}

static int op_host_register(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL, *row = NULL;
        const Lsc__Register *g = o->req->host_register;
        char vcpus[24], mem[24], disk[24], ratio[32], detail[256];
        int r;

        u64s(vcpus, sizeof(vcpus), g->capacity->vcpus);
        u64s(mem, sizeof(mem), g->capacity->memory_mib);
        u64s(disk, sizeof(disk), g->capacity->disk_gib);
        snprintf(ratio, sizeof(ratio), "%.17g", g->has_alloc_ratio ? g->alloc_ratio : 1.0);
        if ((r = Q(o->c, ST_HOST_REGISTER, &res, g->host, g->kind, g->driver, o->label_keys,
                   o->label_values, vcpus, mem, disk, ratio)) < 0 ||
            (r = Q(o->c, ST_HOST_BY_NAME, &row, g->host)) < 0)
                return r;
        snprintf(detail, sizeof(detail),
                 "{\"epoch\": %s, \"driver\": \"%s\", \"vcpus\": %s, \"memory_mib\": %s, \"disk_gib\": %s}",
                 PQgetvalue(row, 0, HC_EPOCH), g->driver, vcpus, mem, disk);
        if ((r = Q(o->c, ST_EVENT_HOST, NULL, o->actor, "host.register", g->host, o->request_id,
                   detail)) < 0)
                return r;
        return reply_hosts(o, row);
}

static int op_host_get(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL;
        const char *ref = o->req->host_get->ref;
        char shown[LSC_SHOW_BUF];
        uuid_t u;
        int r;

        r = uuid_parse(ref, u) == 0 ? Q(o->c, ST_HOST_BY_UUID, &res, ref) : Q(o->c, ST_HOST_BY_NAME, &res, ref);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1)
                return lsc_err_set(-ENOENT, "host %s not found", show(ref, shown));
        return reply_hosts(o, res);
}

/* The host ref names, locked for this transaction: id, name, admin. */
static int host_lock(struct op *o, const char *ref, PGresult **ret)
{
        char shown[LSC_SHOW_BUF];
        uuid_t u;
        int r;

        r = uuid_parse(ref, u) == 0 ? Q(o->c, ST_HOST_LOCK_BY_UUID, ret, ref) : Q(o->c, ST_HOST_LOCK_BY_NAME, ret, ref);
        if (r < 0)
                return r;
        if (PQntuples(*ret) != 1) {
                PQclear(TAKE_PTR(*ret));
                return lsc_err_set(-ENOENT, "host %s not found", show(ref, shown));
        }
        return 0;
}

static int reply_host_named(struct op *o, const char *name)
{
        _cleanup_pgres_ PGresult *res = NULL;
        int r;

        if ((r = Q(o->c, ST_HOST_BY_NAME, &res, name)) < 0)
                return r;
        return reply_hosts(o, res);
}

/* drain: no new placements (the view filters on admin), and every server bound there
 * moves off: destroyed where it is, then bound again elsewhere. Idempotent: draining a
 * drained host moves what came back since. The reply: the host, and the servers that
 * started to move (lscd's loop drives them). */
static int op_host_drain(struct op *o)
{
        _cleanup_pgres_ PGresult *h = NULL, *moved = NULL;
        const char *id, *name, **uuids, *all;
        char reason[160];
        int r, n;

        if ((r = host_lock(o, o->req->host_drain->ref, &h)) < 0)
                return r;
        id = PQgetvalue(h, 0, 0);
        name = PQgetvalue(h, 0, 1);
        snprintf(reason, sizeof(reason), "host %s is drained: moving it", name);
        if ((r = Q(o->c, ST_HOST_SET_ADMIN, NULL, id, "drained")) < 0 ||
            (r = Q(o->c, ST_EVENT_HOST, NULL, o->actor, "host.drain", name, o->request_id, "{}")) < 0 ||
            (r = Q(o->c, ST_HOST_DRAIN_SERVERS, &moved, id, name, reason)) < 0)
                return r;
        n = PQntuples(moved);
        if (n > 0) {
                if (!(uuids = bag_alloc(&o->in, (size_t)n * sizeof(char *))))
                        return lsc_err_set(-ENOMEM, "out of memory");
                for (int i = 0; i < n; i++)
                        uuids[i] = PQgetvalue(moved, i, 0);
                if (!(all = array_literal(&o->in, uuids, (size_t)n)))
                        return lsc_err_set(-ENOMEM, "out of memory");
                /* the request id is on host.drain already: these carry none */
                if ((r = Q(o->c, ST_EVENT_STATE, NULL, o->actor, "server.drain", all, NULL, "")) < 0 ||
                    (r = reply_servers_by_uuids(o, all)) < 0)
                        return r;
        }
        return reply_host_named(o, name);
}

static int op_host_undrain(struct op *o)
{
        _cleanup_pgres_ PGresult *h = NULL;
        int r;

        if ((r = host_lock(o, o->req->host_undrain->ref, &h)) < 0)
                return r;
        if ((r = Q(o->c, ST_HOST_SET_ADMIN, NULL, PQgetvalue(h, 0, 0), "active")) < 0 ||
            (r = Q(o->c, ST_EVENT_HOST, NULL, o->actor, "host.undrain", PQgetvalue(h, 0, 1), o->request_id,
                   "{}")) < 0)
                return r;
        return reply_host_named(o, PQgetvalue(h, 0, 1));
}

/* confirm-off: the audited record that an operator checked a lost metal host is off;
 * lscd's loop checked that servers wait in fencing there, and releases them once this
 * committed (reconcile_confirmed_off). */
static int op_host_confirm_off(struct op *o)
{
        _cleanup_pgres_ PGresult *h = NULL;
        int r;

        char detail[LSC_NAME_MAX + 64];

        if ((r = host_lock(o, o->req->host_confirm_off->ref, &h)) < 0)
                return r;
        /* the host's name is a DNS label (checked at registration): safe inside JSON */
        snprintf(detail, sizeof(detail), "{\"host\": \"%s\"}", PQgetvalue(h, 0, 1));
        if ((r = Q(o->c, ST_EVENT_HOST, NULL, o->actor, "host.confirm-off", PQgetvalue(h, 0, 1), o->request_id,
                   detail)) < 0)
                return r;
        return reply_host_named(o, PQgetvalue(h, 0, 1));
}

/* remove: only a host nothing is bound to; its events stay (they name it by text). */
static int op_host_remove(struct op *o)
{
        _cleanup_pgres_ PGresult *h = NULL, *cnt = NULL;
        const char *id, *name, *n;
        int r;

        if ((r = host_lock(o, o->req->host_remove->ref, &h)) < 0)
                return r;
        id = PQgetvalue(h, 0, 0);
        name = PQgetvalue(h, 0, 1);
        if ((r = Q(o->c, ST_HOST_BOUND_COUNT, &cnt, id)) < 0)
                return r;
        n = PQgetvalue(cnt, 0, 0);
        if (strcmp(n, "0") != 0)
                return lsc_err_set(-EBUSY, "host %s still has %s server%s bound to it: drain it first "
                                   "(lsc host drain %s --wait)", name, n, strcmp(n, "1") ? "s" : "", name);
        if ((r = reply_host_named(o, name)) < 0 ||
            (r = Q(o->c, ST_EVENT_HOST, NULL, o->actor, "host.remove", name, o->request_id, "{}")) < 0)
                return r;
        return Q(o->c, ST_HOST_DELETE, NULL, id);
}

static int op_host_list(struct op *o)
{
        _cleanup_pgres_ PGresult *res = NULL;
        char peek[16];
        int r;

        if (o->unpaged) {
                if ((r = Q0(o->c, ST_HOST_LIST_ALL, &res)) < 0)
                        return r;
                return reply_hosts(o, res);
        }
        snprintf(peek, sizeof(peek), "%u", o->limit + 1);
        if ((r = Q(o->c, ST_HOST_LIST, &res, o->after, peek)) < 0)
                return r;
        return reply_host_page(o, res);
}

static int reread_server(struct op *o)
{
        reply_reset(o);
        return reply_server_by_uuid(o);
}

struct op_def {
        Lsc__Request__OpCase op;
        int (*check)(struct op *o);      /* input only, before any SQL */
        int (*run)(struct op *o);        /* inside one transaction; NULL: no database */
        int (*reread)(struct op *o);     /* NULL: the reply run built stands */
        bool writes;                     /* writes an event with the request id */
};

static const struct op_def op_defs[] = {
        { LSC__REQUEST__OP_SERVER_CREATE, check_server_create, op_server_create, reread_server, true },
        { LSC__REQUEST__OP_SERVER_EDIT, check_server_edit, op_server_edit, reread_server, true },
        { LSC__REQUEST__OP_SERVER_DELETE, check_ref_op, op_server_delete, NULL, true },
        { LSC__REQUEST__OP_SERVER_GET, check_ref_op, op_server_get, NULL, false },
        { LSC__REQUEST__OP_SERVER_LIST, check_list, op_server_list, NULL, false },
        { LSC__REQUEST__OP_POOL_CREATE, check_pool_create, op_pool_create, NULL, true },
        { LSC__REQUEST__OP_POOL_DELETE, check_ref_op, op_pool_delete, NULL, true },
        { LSC__REQUEST__OP_POOL_GET, check_ref_op, op_pool_get, NULL, false },
        { LSC__REQUEST__OP_POOL_LIST, NULL, op_pool_list, NULL, false },
        { LSC__REQUEST__OP_EVENT_LIST, check_event_list, op_event_list, NULL, false },
        { LSC__REQUEST__OP_PING, NULL, NULL, NULL, false },
        { LSC__REQUEST__OP_HOST_REGISTER, check_host_register, op_host_register, NULL, true },
        { LSC__REQUEST__OP_SERVER_START, check_server_start, op_server_start, NULL, true },
        { LSC__REQUEST__OP_SERVER_STOP, check_ref_op, op_server_stop, NULL, true },
        { LSC__REQUEST__OP_SERVER_MIGRATE, check_ref_op, op_server_migrate, NULL, true },
        { LSC__REQUEST__OP_BIND, check_bind, op_bind, NULL, true },
        { LSC__REQUEST__OP_TRANSITION, check_transition, op_transition, NULL, true },
        { LSC__REQUEST__OP_TRANSITIONS, check_transitions, op_transitions, NULL, true },
        { LSC__REQUEST__OP_TURNOVER, check_turnover, op_turnover, NULL, true },
        { LSC__REQUEST__OP_SERVER_RENEW, check_server_renew, op_server_renew, NULL, true },
        { LSC__REQUEST__OP_LOAD, NULL, op_load, NULL, false },
        { LSC__REQUEST__OP_HOST_GET, check_ref_op, op_host_get, NULL, false },
        { LSC__REQUEST__OP_HOST_LIST, check_list, op_host_list, NULL, false },
        { LSC__REQUEST__OP_HOST_DRAIN, check_ref_op, op_host_drain, NULL, true },
        { LSC__REQUEST__OP_HOST_UNDRAIN, check_ref_op, op_host_undrain, NULL, true },
        { LSC__REQUEST__OP_HOST_CONFIRM_OFF, check_ref_op, op_host_confirm_off, NULL, true },
        { LSC__REQUEST__OP_HOST_REMOVE, check_ref_op, op_host_remove, NULL, true },
        /* placement groups */
        { LSC__REQUEST__OP_GROUP_CREATE, check_group_create, op_group_create, NULL, true },
        { LSC__REQUEST__OP_GROUP_DELETE, check_group_ref, op_group_delete, NULL, true },
        { LSC__REQUEST__OP_GROUP_GET, check_group_ref, op_group_get, NULL, false },
        { LSC__REQUEST__OP_GROUP_LIST, NULL, op_group_list, NULL, false },
};

/* ---- the transaction helper ---------------------------------------------- */

/* 1 when the transaction that wrote o->request_id committed, 0 when not. */
static int commit_outcome(struct op *o, int64_t deadline)
{
        for (int tries = 0;; tries++) {
                _cleanup_pgres_ PGresult *res = NULL;
                int r = conn_ensure(o->c, deadline);

                if (r == 0 && (r = Q(o->c, ST_EVENT_SEEN, &res, o->request_id)) == 0)
                        return PQntuples(res) > 0;
                if (r != -ENOTCONN || lsc_now_us() >= deadline || cancelled(o->c)) {
                        char why[512];
                        snprintf(why, sizeof(why), "%s", lsc_err_msg(r));
                        return lsc_err_set(r, "%s (whether the change was applied is unknown)", why);
                }
                nap(o->c, BACKOFF_MIN_US * (tries < 10 ? tries + 1 : 10));
        }
}

/* BEGIN / run / COMMIT, with ROLLBACK on error; retries serialization failures and
 * deadlocks a few times, reconnects until deadline, and after a COMMIT that lost
 * its connection asks the database whether it committed before trying again. */
static int txn(struct op *o, const struct op_def *d, int64_t deadline)
{
        struct store_conn *c = o->c;
        int busy = 0, reconnects = 0, r;

        for (;;) {
                uuid_t id;

                if ((r = conn_ensure(c, deadline)) < 0)
                        return r;
                uuid_generate_random(id);
                uuid_unparse_lower(id, o->request_id);
                reply_reset(o);
                lsc_err_clear();
                r = exec_fixed(c, "BEGIN", "BEGIN");
                if (r == 0) {
                        r = d->run(o);
                        if (r == 0) {
                                r = exec_fixed(c, "COMMIT", "COMMIT");
                                if (r == -ENOTCONN && !d->writes)
                                        return 0;        /* a read: the answer stands */
                                if (r == -ENOTCONN) {
                                        log_warn("connection lost during COMMIT of request %s (%s): "
                                                 "checking whether it committed", o->request_id, c->why);
                                        r = commit_outcome(o, deadline);
                                        if (r < 0)
                                                return r;
                                        if (r == 1)
                                                return d->reread ? d->reread(o) : 0;
                                        log_info("request %s did not commit: running it again",
                                                 o->request_id);
                                        r = -ENOTCONN;   /* counts as a reconnect, bounded by deadline */
                                }
                                if (r == 0)
                                        return 0;
                        } else {
                                rollback(c);
                        }
                }
                if (r == -EAGAIN && ++busy <= TXN_BUSY_RETRIES) {
                        int64_t base = 5000LL << busy;
                        nap(c, base + (int64_t)(rnd_next(c) % (uint64_t)base));
                        continue;
                }
                if (r == -ENOTCONN && !cancelled(c) && (reconnects++ == 0 || lsc_now_us() < deadline)) {
                        if (!conn_ok(c))
                                log_warn("database connection lost (%s): reconnecting", c->why);
                        /* a server that accepts and drops at once must not make us spin */
                        if (reconnects > 1)
                                nap(c, BACKOFF_MIN_US * (reconnects < 20 ? reconnects : 20));
                        continue;
                }
                return r;
        }
}

static Lsc__Status status_of(int err)
{
        switch (err) {
        case -EINVAL:
                return LSC__STATUS__ERR_INVALID;
        case -ENOENT:
                return LSC__STATUS__ERR_NOTFOUND;
        case -EEXIST:
                return LSC__STATUS__ERR_EXISTS;
        case -EBUSY:
                return LSC__STATUS__ERR_CONFLICT;
        case -ENOTCONN:
        case -ETIMEDOUT:
        case -EAGAIN:
        case -EPROTO:
                return LSC__STATUS__ERR_UNAVAILABLE;
        default:
                return LSC__STATUS__ERR_INTERNAL;
        }
}

static Lsc__Reply *reply_error_new(Lsc__Status status, const char *msg)
{
        Lsc__Reply *rp = calloc(1, sizeof(*rp));

        if (!rp)
                return NULL;
        lsc__reply__init(rp);
        rp->has_status = 1;
        rp->status = status;
        rp->error = msg ? strdup(msg) : NULL;
        return rp;
}

/* The built reply (or the error r) as an unpacked message the job owns. */
static Lsc__Reply *reply_finish(struct op *o, int r)
{
        char msg[600];
        uint8_t *buf;
        size_t len;
        Lsc__Reply *out;

        if (r < 0) {
                reply_reset(o);
                if (r == -ENOTCONN)
                        snprintf(msg, sizeof(msg), "database unavailable: %s", lsc_err_msg(r));
                else if (r == -EAGAIN)
                        snprintf(msg, sizeof(msg), "database busy: %s; try again", lsc_err_msg(r));
                else
                        snprintf(msg, sizeof(msg), "%s", lsc_err_msg(r));
                o->reply.has_status = 1;
                o->reply.status = status_of(r);
                o->reply.error = msg;
        } else {
                o->reply.has_status = 1;
                o->reply.status = LSC__STATUS__OK;
        }
        len = lsc__reply__get_packed_size(&o->reply);
        buf = malloc(len ? len : 1);
        if (!buf)
                return reply_error_new(LSC__STATUS__ERR_INTERNAL, "out of memory");
        lsc__reply__pack(&o->reply, buf);
        out = lsc__reply__unpack(NULL, len, buf);
        free(buf);
        return out ? out : reply_error_new(LSC__STATUS__ERR_INTERNAL, "out of memory");
}

static const struct op_def *op_def_find(Lsc__Request__OpCase op)
{
        for (size_t i = 0; i < ARRAY_SIZE(op_defs); i++)
                if (op_defs[i].op == op)
                        return &op_defs[i];
        return NULL;
}

int store_check(const Lsc__Request *req)
{
        struct op o = { .req = req, .actor = "" };
        const struct op_def *d = op_def_find(req->op_case);
        int r;

        if (!d)
                return lsc_err_set(-EINVAL, "unknown request (operation %d)", (int)req->op_case);
        r = d->check ? d->check(&o) : 0;
        bag_free(&o.in);
        bag_free(&o.out);
        return r;
}

void store_run(struct store_conn *c, struct store_job *job, int64_t deadline_us)
{
        struct op o = { .c = c, .req = job->request, .unpaged = job->unpaged,
                        .actor = job->actor && job->actor[0] ? job->actor : "unknown" };
        const struct op_def *d = NULL;
        int r = 0;

        lsc_err_clear();
        reply_reset(&o);
        if (job->reply)
                lsc__reply__free_unpacked(job->reply, NULL);
        job->reply = NULL;
        if (job->kind != STORE_JOB_REQUEST || !job->request) {
                r = lsc_err_set(-EINVAL, "empty request");
        } else if (!(d = op_def_find(job->request->op_case))) {
                r = lsc_err_set(-EINVAL, "unknown request (operation %d)", (int)job->request->op_case);
        }
        if (r == 0 && d->check)
                r = d->check(&o);
        if (r == 0 && d->op == LSC__REQUEST__OP_SERVER_CREATE) {
                uuid_t u;               /* one uuid for every attempt */
                uuid_generate_random(u);
                uuid_unparse_lower(u, o.uuid);
        }
        if (r == 0 && d->run)
                r = txn(&o, d, deadline_us);
        job->reply = reply_finish(&o, r);
        bag_free(&o.out);
        bag_free(&o.in);
}

void store_job_free(struct store_job *job)
{
        if (!job)
                return;
        if (job->request)
                lsc__request__free_unpacked(job->request, NULL);
        if (job->reply)
                lsc__reply__free_unpacked(job->reply, NULL);
        free(job->actor);
        free(job->user);
        free(job);
}

/* ---- the store thread ---------------------------------------------------- */

struct store {
        void *sock;                      /* the loop's end of the pair */
        void *peer;                      /* the thread's end: used by the thread only */
        pthread_t thread;
        bool started;
        struct store_config cfg;
        char *conninfo;
        atomic_bool stop;
        atomic_bool ready;
};

/* What crosses the pair, by value. */
struct store_msg {
        struct store_job *job;           /* NULL: a notice (fatal from the thread, stop to it) */
        int64_t deadline_us;             /* submit time + job budget */
        char *fatal;                     /* malloc'd detail of a fatal notice */
};

static int msg_send(void *sock, const struct store_msg *m, int flags)
{
        if (zmq_send(sock, m, sizeof(*m), flags) != (int)sizeof(*m))
                return -errno;
        return 0;
}

static void send_fatal(struct store *s, const char *detail)
{
        struct store_msg m = { .fatal = strdup(detail) };

        if (msg_send(s->peer, &m, 0) < 0)
                free(m.fatal);
}

/* Connected and migrated before deadline, or why not. -EPROTO is for good. */
static int bring_up(struct store_conn *c, int64_t deadline)
{
        int64_t backoff = BACKOFF_MIN_US;
        int r;

        for (;;) {
                if ((r = conn_up(c, deadline)) == 0 && (r = store_migrate(c)) == 0)
                        return 0;
                if (r == -EPROTO || cancelled(c) || lsc_now_us() + backoff >= deadline)
                        return r;
                nap(c, backoff);
                backoff = backoff * 2 > BACKOFF_JOB_MAX_US ? BACKOFF_JOB_MAX_US : backoff * 2;
        }
}

static void job_fail(struct store_job *job, Lsc__Status status, const char *prefix, const char *detail)
{
        char msg[600];

        snprintf(msg, sizeof(msg), "%s%s", prefix, detail);
        if (job->reply)
                lsc__reply__free_unpacked(job->reply, NULL);
        job->reply = reply_error_new(status, msg);
}

struct thread_state {
        struct store_conn *c;
        char *fatal;                     /* set once migrations are refused */
        int64_t next_try, backoff;
        bool logged_down;
};

static void thread_bring_up(struct store *s, struct thread_state *t, int64_t deadline)
{
        int r = bring_up(t->c, deadline);

        if (r == 0) {
                log_info("store: connected to PostgreSQL, schema current");
                t->logged_down = false;
                t->backoff = BACKOFF_MIN_US;
                return;
        }
        if (r == -EPROTO) {
                t->fatal = strdup(lsc_err_msg(r));
                log_error("%s", lsc_err_msg(r));
                send_fatal(s, lsc_err_msg(r));
                return;
        }
        if (!t->logged_down)
                log_warn("database unavailable: %s (retrying)", lsc_err_msg(r));
        t->logged_down = true;
        t->next_try = lsc_now_us() + t->backoff;
        t->backoff = t->backoff * 2 > BACKOFF_IDLE_MAX_US ? BACKOFF_IDLE_MAX_US : t->backoff * 2;
}

#define SLOW_JOB_US 2000000

static void thread_job(struct store *s, struct thread_state *t, struct store_msg *m)
{
        if (!t->fatal && !t->c->migrated)
                thread_bring_up(s, t, m->deadline_us);
        if (t->fatal)
                job_fail(m->job, LSC__STATUS__ERR_UNAVAILABLE, "", t->fatal);
        else if (!t->c->migrated)
                job_fail(m->job, LSC__STATUS__ERR_UNAVAILABLE, "database unavailable: ",
                         t->c->why[0] ? t->c->why : "not connected");
        else {
                int64_t t0 = lsc_now_us(), took;
                store_run(t->c, m->job, m->deadline_us);
                /* a slow job holds up every other: say so */
                if ((took = lsc_now_us() - t0) > SLOW_JOB_US)
                        log_warn("store: request %d took %.1f s", m->job->request ? (int)m->job->request->op_case : 0,
                                 (double)took / 1e6);
        }
        if (!m->job->reply)
                job_fail(m->job, LSC__STATUS__ERR_INTERNAL, "", "the store built no reply");
}

static void *thread_main(void *arg)
{
        struct store *s = arg;
        struct thread_state t = { .backoff = BACKOFF_MIN_US };
        struct store_msg m;

        t.c = conn_new(&s->cfg);
        if (!t.c) {
                log_error("store: out of memory");
                t.fatal = strdup("out of memory");
                send_fatal(s, "store: out of memory");
        } else {
                t.c->cancel = &s->stop;
        }
        while (!atomic_load(&s->stop)) {
                zmq_pollitem_t it = { .socket = s->peer, .events = ZMQ_POLLIN };
                long timeout = -1;

                if (t.c && !t.fatal && !t.c->migrated) {
                        if (lsc_now_us() >= t.next_try)
                                thread_bring_up(s, &t, lsc_now_us());   /* one attempt */
                        if (!t.fatal && !t.c->migrated) {
                                int64_t left = t.next_try - lsc_now_us();
                                timeout = left > 0 ? (long)(left / 1000) + 1 : 0;
                        }
                }
                atomic_store(&s->ready, t.c && !t.fatal && t.c->migrated && conn_ok(t.c));
                if (zmq_poll(&it, 1, timeout) < 0) {
                        if (errno == ETERM)
                                break;
                        continue;
                }
                while (zmq_recv(s->peer, &m, sizeof(m), ZMQ_DONTWAIT) == (int)sizeof(m)) {
                        if (!m.job)
                                goto out;        /* stop */
                        if (atomic_load(&s->stop)) {
                                store_job_free(m.job);
                                continue;
                        }
                        if (t.c)
                                thread_job(s, &t, &m);
                        else
                                job_fail(m.job, LSC__STATUS__ERR_INTERNAL, "", "store: out of memory");
                        if (msg_send(s->peer, &m, 0) < 0) {
                                log_error("store: cannot return a job: %s", zmq_strerror(errno));
                                store_job_free(m.job);
                        }
                        atomic_store(&s->ready, t.c && !t.fatal && t.c->migrated && conn_ok(t.c));
                }
        }
out:
        atomic_store(&s->ready, false);
        while (zmq_recv(s->peer, &m, sizeof(m), ZMQ_DONTWAIT) == (int)sizeof(m))
                store_job_free(m.job);
        zmq_close(s->peer);
        store_conn_close(&t.c);
        free(t.fatal);
        return NULL;
}

static void *pair_socket(void *zctx)
{
        void *sock = zmq_socket(zctx, ZMQ_PAIR);
        int zero = 0;

        if (!sock)
                return NULL;
        /* Unbounded: the loop limits jobs in flight, and must never block on a send. */
        zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(sock, ZMQ_SNDHWM, &zero, sizeof(zero));
        zmq_setsockopt(sock, ZMQ_RCVHWM, &zero, sizeof(zero));
        return sock;
}

int store_new(void *zctx, const struct store_config *cfg, struct store **ret)
{
        struct store *s;
        char endpoint[64];
        int r;

        if (!zctx || !cfg || !cfg->conninfo)
                return lsc_err_set(-EINVAL, "store: no zmq context or no conninfo");
        s = calloc(1, sizeof(*s));
        if (!s)
                return lsc_err_set(-ENOMEM, "out of memory");
        s->cfg = *cfg;
        s->conninfo = strdup(cfg->conninfo);
        s->cfg.conninfo = s->conninfo;
        if (s->cfg.job_budget_us <= 0)
                s->cfg.job_budget_us = JOB_BUDGET_DEFAULT_US;
        atomic_init(&s->stop, false);
        atomic_init(&s->ready, false);
        snprintf(endpoint, sizeof(endpoint), "inproc://lsc-store-%p", (void *)s);
        s->sock = pair_socket(zctx);
        s->peer = pair_socket(zctx);
        if (!s->conninfo || !s->sock || !s->peer) {
                r = lsc_err_set(-ENOMEM, "store: cannot create its sockets: %s", zmq_strerror(errno));
                goto fail;
        }
        if (zmq_bind(s->sock, endpoint) < 0 || zmq_connect(s->peer, endpoint) < 0) {
                r = lsc_err_set(-errno, "store: cannot connect its sockets: %s", zmq_strerror(errno));
                goto fail;
        }
        if ((r = pthread_create(&s->thread, NULL, thread_main, s)) != 0) {
                r = lsc_err_set(-r, "store: cannot start its thread: %s", strerror(r));
                goto fail;
        }
        s->started = true;
        *ret = s;
        return 0;
fail:
        if (s->peer)
                zmq_close(s->peer);
        if (s->sock)
                zmq_close(s->sock);
        free(s->conninfo);
        free(s);
        return r;
}

void store_destroy(struct store **sp)
{
        struct store *s = sp ? *sp : NULL;
        struct store_msg m = { 0 };

        if (!s)
                return;
        if (s->started) {
                atomic_store(&s->stop, true);
                (void)msg_send(s->sock, &m, 0);   /* wakes the thread */
                pthread_join(s->thread, NULL);
        }
        /* finished jobs nobody collected */
        while (zmq_recv(s->sock, &m, sizeof(m), ZMQ_DONTWAIT) == (int)sizeof(m)) {
                store_job_free(m.job);
                free(m.fatal);
        }
        zmq_close(s->sock);
        free(s->conninfo);
        free(s);
        *sp = NULL;
}

void *store_socket(struct store *s)
{
        return s->sock;
}

int store_submit(struct store *s, struct store_job *job)
{
        struct store_msg m = { .job = job, .deadline_us = lsc_now_us() + s->cfg.job_budget_us };
        int r;

        if (!job)
                return lsc_err_set(-EINVAL, "store: no job");
        if ((r = msg_send(s->sock, &m, ZMQ_DONTWAIT)) < 0)
                return lsc_err_set(r, "store: cannot queue a job: %s", zmq_strerror(-r));
        return 0;
}

struct store_job *store_recv(struct store *s, int *ret_fatal)
{
        struct store_msg m;

        *ret_fatal = 0;
        if (zmq_recv(s->sock, &m, sizeof(m), ZMQ_DONTWAIT) != (int)sizeof(m))
                return NULL;
        if (m.job)
                return m.job;
        /* lsc_err is per thread: the thread's detail travels in the notice */
        lsc_err_set(-EPROTO, "%s", m.fatal ? m.fatal : "the store stopped");
        free(m.fatal);
        *ret_fatal = 1;
        return NULL;
}

bool store_ready(struct store *s)
{
        return s && atomic_load(&s->ready);
}
