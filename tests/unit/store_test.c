/* store: migrations, every request against a real PostgreSQL (tests/lib/with-pg
 * sets LSC_TEST_DB), address allocation under concurrency, reconnects, COMMIT with
 * an unknown outcome (through a proxy that cuts the connection at COMMIT), and the
 * store thread end to end. Each test gets a fresh database. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <libpq-fe.h>
#include <zmq.h>
#include "err.h"
#include "log.h"
#include "schema.h"
#include "store.h"
#include "util.h"
#include "wire.h"

#define BUDGET_US (5 * 1000000LL)

static const char *admin_conninfo;       /* LSC_TEST_DB: the cluster's postgres database */
static PGconn *admin;
static int db_serial;

struct fx {
        char db[64];
        char conninfo[1024];
        struct store_config cfg;
        struct store_conn *c;
        PGconn *pg;                      /* the test's own look at the database */
};

/* ---- helpers ----------------------------------------------------------------- */

static void sql_ok(PGconn *pg, const char *sql)
{
        PGresult *res = PQexec(pg, sql);
        ExecStatusType st = PQresultStatus(res);

        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
                fail_msg("%s: %s", sql, PQerrorMessage(pg));
        PQclear(res);
}

static long long sql_count(PGconn *pg, const char *sql)
{
        PGresult *res = PQexec(pg, sql);
        long long n;

        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
                fail_msg("%s: %s", sql, PQerrorMessage(pg));
        n = atoll(PQgetvalue(res, 0, 0));
        PQclear(res);
        return n;
}

static PGconn *connect_or_fail(const char *conninfo)
{
        PGconn *pg = PQconnectdb(conninfo);

        if (PQstatus(pg) != CONNECTION_OK)
                fail_msg("cannot connect to %s: %s", conninfo, PQerrorMessage(pg));
        return pg;
}

static int group_setup(void **state)
{
        admin_conninfo = getenv("LSC_TEST_DB");
        if (!admin_conninfo || !*admin_conninfo) {
                fprintf(stderr, "LSC_TEST_DB is not set: run this test under tests/lib/with-pg\n");
                return -1;
        }
        admin = PQconnectdb(admin_conninfo);
        if (PQstatus(admin) != CONNECTION_OK) {
                fprintf(stderr, "cannot connect to %s: %s", admin_conninfo, PQerrorMessage(admin));
                return -1;
        }
        lsc_log_threshold = getenv("LSC_TEST_DEBUG") ? LSC_LOG_DEBUG : LSC_LOG_ERROR;
        return 0;
}

static int group_teardown(void **state)
{
        PQfinish(admin);
        return 0;
}

/* A fresh database and a store connection to it, not yet migrated. */
static bool mayfly_cfg;                  /* setup_mayfly: lscd's mayfly keys for the store */

static int setup_empty(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));
        char sql[128];

        if (mayfly_cfg) {
                f->cfg.mayfly_jitter_pct = 10;
                f->cfg.mayfly_renew_max = 1;
        }

        snprintf(f->db, sizeof(f->db), "lsc_t_%d_%d", (int)getpid(), ++db_serial);
        snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->db);
        sql_ok(admin, sql);
        snprintf(f->conninfo, sizeof(f->conninfo), "%s dbname=%s", admin_conninfo, f->db);
        f->cfg.conninfo = f->conninfo;
        f->cfg.job_budget_us = BUDGET_US;
        f->pg = connect_or_fail(f->conninfo);
        assert_int_equal(store_conn_open(&f->cfg, &f->c), 0);
        *state = f;
        return 0;
}

static int setup(void **state)
{
        struct fx *f;

        setup_empty(state);
        f = *state;
        if (store_migrate(f->c) < 0) {
                fprintf(stderr, "migrate: %s\n", lsc_err_msg(-1));
                return -1;
        }
        return 0;
}

static int setup_mayfly(void **state)
{
        int r;

        mayfly_cfg = true;
        r = setup(state);
        mayfly_cfg = false;
        return r;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        char sql[128];

        store_conn_close(&f->c);
        PQfinish(f->pg);
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", f->db);
        sql_ok(admin, sql);
        free(f);
        return 0;
}

/* Jobs own an unpacked request, as lscd's would. */
static Lsc__Request *request_copy(const Lsc__Request *r)
{
        size_t len = lsc__request__get_packed_size(r);
        uint8_t *buf = malloc(len + 1);
        Lsc__Request *out;

        lsc__request__pack(r, buf);
        out = lsc__request__unpack(NULL, len, buf);
        free(buf);
        assert_non_null(out);
        return out;
}

static struct store_job *job_new(const Lsc__Request *r)
{
        struct store_job *job = calloc(1, sizeof(*job));

        job->kind = STORE_JOB_REQUEST;
        job->request = request_copy(r);
        job->actor = strdup("test:unit");
        return job;
}

static struct store_job *run_on(struct store_conn *c, const Lsc__Request *r)
{
        struct store_job *job = job_new(r);

        store_run(c, job, lsc_now_us() + BUDGET_US);
        assert_non_null(job->reply);
        return job;
}

static void expect(const struct store_job *job, Lsc__Status status, const char *needle)
{
        const Lsc__Reply *rp = job->reply;

        if (rp->status != status)
                fail_msg("status %d, expected %d (error: %s)", rp->status, status,
                         rp->error ? rp->error : "none");
        if (needle && (!rp->error || !strstr(rp->error, needle)))
                fail_msg("error \"%s\" does not mention \"%s\"", rp->error ? rp->error : "", needle);
}

static Lsc__ServerSpec spec_of(const char *name)
{
        Lsc__ServerSpec s = LSC__SERVER_SPEC__INIT;

        s.name = (char *)name;
        s.has_vcpus = 1;
        s.vcpus = 2;
        s.has_memory_mib = 1;
        s.memory_mib = 1024;
        return s;
}

static struct store_job *create_spec_on(struct store_conn *c, Lsc__ServerSpec *s)
{
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__ServerCreate cr = LSC__SERVER_CREATE__INIT;

        cr.spec = s;
        r.op_case = LSC__REQUEST__OP_SERVER_CREATE;
        r.server_create = &cr;
        return run_on(c, &r);
}

static struct store_job *create_spec(struct fx *f, Lsc__ServerSpec *s)
{
        return create_spec_on(f->c, s);
}

/* name, then optional MAC, IP, pool (NULL for none) */
static struct store_job *create(struct fx *f, const char *name, const char *mac, const char *ip,
                                const char *pool)
{
        Lsc__ServerSpec s = spec_of(name);
        char *macs[1] = { (char *)mac }, *ips[1] = { (char *)ip };

        if (mac) {
                s.n_macs = 1;
                s.macs = macs;
        }
        if (ip) {
                s.n_ips = 1;
                s.ips = ips;
        }
        s.pool = (char *)pool;
        return create_spec(f, &s);
}

static void create_ok(struct fx *f, const char *name, const char *mac, const char *ip, const char *pool)
{
        struct store_job *job = create(f, name, mac, ip, pool);

        expect(job, LSC__STATUS__OK, NULL);
        store_job_free(job);
}

static struct store_job *pool_create(struct fx *f, const char *name, const char *cidr, const char *gw)
{
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__PoolCreate p = LSC__POOL_CREATE__INIT;

        p.name = (char *)name;
        p.cidr = (char *)cidr;
        p.gateway = (char *)gw;
        r.op_case = LSC__REQUEST__OP_POOL_CREATE;
        r.pool_create = &p;
        return run_on(f->c, &r);
}

static void pool_ok(struct fx *f, const char *name, const char *cidr, const char *gw)
{
        struct store_job *job = pool_create(f, name, cidr, gw);

        expect(job, LSC__STATUS__OK, NULL);
        store_job_free(job);
}

static struct store_job *ref_op(struct fx *f, Lsc__Request__OpCase op, const char *ref)
{
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__Ref rf = LSC__REF__INIT;

        rf.ref = (char *)ref;
        r.op_case = op;
        r.server_get = &rf;              /* every Ref member shares the union */
        return run_on(f->c, &r);
}

static struct store_job *list_op(struct fx *f, Lsc__Request__OpCase op)
{
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__ServerList sl = LSC__SERVER_LIST__INIT;
        Lsc__PoolList pl = LSC__POOL_LIST__INIT;

        r.op_case = op;
        if (op == LSC__REQUEST__OP_SERVER_LIST)
                r.server_list = &sl;
        else
                r.pool_list = &pl;
        return run_on(f->c, &r);
}

static struct store_job *events(struct fx *f, const char *server, uint32_t limit)
{
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__EventList e = LSC__EVENT_LIST__INIT;

        e.server = (char *)server;
        e.has_limit = limit > 0;
        e.limit = limit;
        r.op_case = LSC__REQUEST__OP_EVENT_LIST;
        r.event_list = &e;
        return run_on(f->c, &r);
}

static struct store_job *edit(struct fx *f, Lsc__ServerEdit *e)
{
        Lsc__Request r = LSC__REQUEST__INIT;

        r.op_case = LSC__REQUEST__OP_SERVER_EDIT;
        r.server_edit = e;
        return run_on(f->c, &r);
}

struct counts {
        long long servers, macs, ips, pools, events;
};

static struct counts counts_of(struct fx *f)
{
        struct counts c = {
                .servers = sql_count(f->pg, "SELECT count(*) FROM servers"),
                .macs = sql_count(f->pg, "SELECT count(*) FROM macs"),
                .ips = sql_count(f->pg, "SELECT count(*) FROM ips"),
                .pools = sql_count(f->pg, "SELECT count(*) FROM pools"),
                .events = sql_count(f->pg, "SELECT count(*) FROM events"),
        };
        return c;
}

static void same_counts(const struct counts *a, const struct counts *b)
{
        assert_int_equal(a->servers, b->servers);
        assert_int_equal(a->macs, b->macs);
        assert_int_equal(a->ips, b->ips);
        assert_int_equal(a->pools, b->pools);
        assert_int_equal(a->events, b->events);
}

static const Lsc__Server *only_server(const struct store_job *job)
{
        assert_int_equal(job->reply->n_servers, 1);
        return job->reply->servers[0];
}

/* ---- migrations ---------------------------------------------------------------- */

static void migrations_apply_and_are_recorded(void **state)
{
        struct fx *f = *state;
        char sql[256];
        int newest = schema_migrations[schema_migrations_count - 1].version;

        assert_int_equal(store_migrate(f->c), 0);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM schema_version"), schema_migrations_count);
        assert_int_equal(sql_count(f->pg, "SELECT max(version) FROM schema_version"), newest);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM schema_version WHERE version = 1 "
                                          "AND name = 'init' AND applied_at <= now()"), 1);
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM information_schema.tables WHERE table_name IN "
                 "('servers', 'hosts', 'pools', 'macs', 'ips', 'events')");
        assert_int_equal(sql_count(f->pg, sql), 6);
}

static void migrating_twice_is_a_noop(void **state)
{
        struct fx *f = *state;
        struct store_job *job;

        assert_int_equal(store_migrate(f->c), 0);
        pool_ok(f, "lan", "10.0.0.0/24", NULL);
        assert_int_equal(store_migrate(f->c), 0);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM schema_version"), schema_migrations_count);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM pools"), 1);
        /* statements were prepared again and still work */
        job = list_op(f, LSC__REQUEST__OP_POOL_LIST);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_pools, 1);
        store_job_free(job);
}

static void newer_database_schema_is_refused(void **state)
{
        struct fx *f = *state;

        sql_ok(f->pg, "CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL, "
                      "applied_at timestamptz NOT NULL DEFAULT now())");
        sql_ok(f->pg, "INSERT INTO schema_version (version, name) VALUES (999, 'future')");
        lsc_err_clear();
        assert_int_equal(store_migrate(f->c), -EPROTO);
        assert_non_null(strstr(lsc_err_msg(-EPROTO), "database schema version 999 is newer than this lscd"));
        assert_non_null(strstr(lsc_err_msg(-EPROTO), "upgrade lscd"));
        /* nothing was applied */
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM information_schema.tables "
                                          "WHERE table_name = 'servers'"), 0);
}

/* ---- servers ------------------------------------------------------------------- */

static void server_create_fills_defaults_and_allocates_addresses(void **state)
{
        struct fx *f = *state;
        struct store_job *job;
        const Lsc__Server *s;

        pool_ok(f, "lan", "10.0.0.0/24", "10.0.0.1");
        job = create(f, "web1", NULL, NULL, NULL);
        expect(job, LSC__STATUS__OK, NULL);
        s = only_server(job);
        assert_int_equal(strlen(s->uuid), 36);
        assert_string_equal(s->spec->name, "web1");
        assert_string_equal(s->spec->kind, "vm");
        assert_int_equal(s->spec->vcpus, 2);
        assert_int_equal(s->spec->memory_mib, 1024);
        assert_int_equal(s->spec->disk_gib, 10);
        assert_string_equal(s->spec->disk_mode, "ephemeral");
        assert_string_equal(s->spec->image, "debian-12");
        assert_string_equal(s->spec->hostname, "web1");
        assert_int_equal(s->spec->lifetime_s, 0);
        assert_int_equal(s->spec->n_labels, 0);
        assert_int_equal(s->spec->n_macs, 1);
        assert_int_equal(strncmp(s->spec->macs[0], "02:4c:53:", 9), 0);
        assert_int_equal(s->spec->n_ips, 1);
        assert_string_equal(s->spec->ips[0], "10.0.0.2");
        assert_string_equal(s->spec->pool, "lan");
        assert_string_equal(s->desired, "stopped");
        assert_string_equal(s->state, "defined");
        assert_string_equal(s->host, "");
        assert_string_equal(s->group, "");
        assert_int_equal(s->generation, 0);
        assert_true(s->created_at > 1600000000);
        assert_int_equal(s->expires_at, 0);
        store_job_free(job);
}

static void server_create_takes_every_given_field(void **state)
{
        struct fx *f = *state;
        Lsc__ServerSpec sp = spec_of("db1");
        Lsc__Label l1 = LSC__LABEL__INIT, l2 = LSC__LABEL__INIT, *labels[2] = { &l1, &l2 };
        char *macs[2] = { "02:00:00:00:00:0A", "02:00:00:00:00:0b" }, *ips[2] = { "10.0.0.9", "10.0.0.7" };
        struct store_job *job;
        const Lsc__Server *s;

        pool_ok(f, "lan", "10.0.0.0/24", NULL);
        l1.key = "role";
        l1.value = "db";
        l2.key = "env";
        l2.value = "prod";
        sp.kind = "container";
        sp.has_disk_gib = 1;
        sp.disk_gib = 0;
        sp.disk_mode = "persistent";
        sp.image = "alpine-3";
        sp.hostname = "db1.example.org";
        sp.has_lifetime_s = 1;
        sp.lifetime_s = 7 * 86400;
        sp.n_labels = 2;
        sp.labels = labels;
        sp.n_macs = 2;
        sp.macs = macs;
        sp.n_ips = 2;
        sp.ips = ips;
        job = create_spec(f, &sp);
        expect(job, LSC__STATUS__OK, NULL);
        s = only_server(job);
        assert_string_equal(s->spec->kind, "container");
        assert_int_equal(s->spec->disk_gib, 0);
        assert_string_equal(s->spec->disk_mode, "persistent");
        assert_string_equal(s->spec->image, "alpine-3");
        assert_string_equal(s->spec->hostname, "db1.example.org");
        assert_int_equal(s->spec->lifetime_s, 7 * 86400);
        assert_int_equal(s->spec->n_labels, 2);  /* sorted by key */
        assert_string_equal(s->spec->labels[0]->key, "env");
        assert_string_equal(s->spec->labels[0]->value, "prod");
        assert_string_equal(s->spec->labels[1]->key, "role");
        assert_int_equal(s->spec->n_macs, 2);     /* in the given order, normalised */
        assert_string_equal(s->spec->macs[0], "02:00:00:00:00:0a");
        assert_string_equal(s->spec->macs[1], "02:00:00:00:00:0b");
        assert_int_equal(s->spec->n_ips, 2);
        assert_string_equal(s->spec->ips[0], "10.0.0.9");
        assert_string_equal(s->spec->ips[1], "10.0.0.7");
        store_job_free(job);
}

static void server_get_by_name_or_uuid_and_list_by_name(void **state)
{
        struct fx *f = *state;
        struct store_job *job, *got;
        char uuid[40];

        create_ok(f, "web2", NULL, NULL, NULL);   /* no pool: no IP */
        create_ok(f, "alpha", NULL, NULL, NULL);
        job = create(f, "web1", NULL, NULL, NULL);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(only_server(job)->spec->n_ips, 0);
        snprintf(uuid, sizeof(uuid), "%s", only_server(job)->uuid);
        store_job_free(job);

        got = ref_op(f, LSC__REQUEST__OP_SERVER_GET, "web1");
        expect(got, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(got)->uuid, uuid);
        store_job_free(got);
        got = ref_op(f, LSC__REQUEST__OP_SERVER_GET, uuid);
        expect(got, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(got)->spec->name, "web1");
        store_job_free(got);
        got = ref_op(f, LSC__REQUEST__OP_SERVER_GET, "nope");
        expect(got, LSC__STATUS__ERR_NOTFOUND, "server nope not found");
        store_job_free(got);
        got = ref_op(f, LSC__REQUEST__OP_SERVER_GET, "Bad Name");
        expect(got, LSC__STATUS__ERR_INVALID, NULL);
        store_job_free(got);

        got = list_op(f, LSC__REQUEST__OP_SERVER_LIST);
        expect(got, LSC__STATUS__OK, NULL);
        assert_int_equal(got->reply->n_servers, 3);
        assert_string_equal(got->reply->servers[0]->spec->name, "alpha");
        assert_string_equal(got->reply->servers[1]->spec->name, "web1");
        assert_string_equal(got->reply->servers[2]->spec->name, "web2");
        store_job_free(got);
}

static void server_edit_changes_only_what_is_given(void **state)
{
        struct fx *f = *state;
        Lsc__ServerSpec sp = spec_of("web1"), ch = LSC__SERVER_SPEC__INIT;
        Lsc__Label l1 = LSC__LABEL__INIT, l2 = LSC__LABEL__INIT, *labels[2] = { &l1, &l2 };
        Lsc__ServerEdit e = LSC__SERVER_EDIT__INIT;
        char *unlabel[1] = { "env" }, *macs[1] = { "02:00:00:00:01:01" }, *ips[1] = { "10.0.0.50" };
        struct store_job *job;
        const Lsc__Server *s;
        char uuid[40];

        pool_ok(f, "lan", "10.0.0.0/24", NULL);
        l1.key = "env";
        l1.value = "prod";
        sp.n_labels = 1;
        sp.labels = labels;
        job = create_spec(f, &sp);
        expect(job, LSC__STATUS__OK, NULL);
        snprintf(uuid, sizeof(uuid), "%s", only_server(job)->uuid);
        store_job_free(job);

        /* vcpus, a new label, one removed, new MAC and IP, a new name, a lifetime */
        ch.has_vcpus = 1;
        ch.vcpus = 8;
        ch.name = "web9";
        ch.kind = "metal";
        ch.has_lifetime_s = 1;
        ch.lifetime_s = 3600;
        l2.key = "tier";
        l2.value = "front";
        labels[0] = &l2;
        ch.n_labels = 1;
        ch.labels = labels;
        ch.n_macs = 1;
        ch.macs = macs;
        ch.n_ips = 1;
        ch.ips = ips;
        e.ref = "web1";
        e.spec = &ch;
        e.has_set_labels = e.set_labels = 1;
        e.n_unlabel = 1;
        e.unlabel = unlabel;
        job = edit(f, &e);
        expect(job, LSC__STATUS__OK, NULL);
        s = only_server(job);
        assert_string_equal(s->uuid, uuid);
        assert_string_equal(s->spec->name, "web9");
        assert_string_equal(s->spec->kind, "metal");
        assert_int_equal(s->spec->vcpus, 8);
        assert_int_equal(s->spec->memory_mib, 1024);     /* untouched */
        assert_string_equal(s->spec->hostname, "web1");  /* untouched */
        assert_int_equal(s->spec->lifetime_s, 3600);
        assert_int_equal(s->spec->n_labels, 1);
        assert_string_equal(s->spec->labels[0]->key, "tier");
        assert_int_equal(s->spec->n_macs, 1);
        assert_string_equal(s->spec->macs[0], "02:00:00:00:01:01");
        assert_int_equal(s->spec->n_ips, 1);
        assert_string_equal(s->spec->ips[0], "10.0.0.50");
        store_job_free(job);
        /* the old addresses are free again */
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM ips"), 1);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM macs"), 1);

        /* lifetime 0 removes it; nothing else given changes nothing else */
        memset(&e, 0, sizeof(e));
        lsc__server_edit__init(&e);
        ch = (Lsc__ServerSpec)LSC__SERVER_SPEC__INIT;
        ch.has_lifetime_s = 1;
        ch.lifetime_s = 0;
        e.ref = uuid;
        e.spec = &ch;
        job = edit(f, &e);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(only_server(job)->spec->lifetime_s, 0);
        assert_int_equal(only_server(job)->spec->vcpus, 8);
        store_job_free(job);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE lifetime_s IS NULL"), 1);

        /* the edit event says what changed */
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'server.edit' AND "
                                          "detail->'vcpus' = '{\"from\": 2, \"to\": 8}'::jsonb"), 1);
}

static void server_edit_refusals_change_nothing(void **state)
{
        struct fx *f = *state;
        Lsc__ServerSpec ch = LSC__SERVER_SPEC__INIT;
        Lsc__ServerEdit e = LSC__SERVER_EDIT__INIT;
        char *ips[1] = { "10.0.0.1" };
        struct store_job *job;
        struct counts before, after;

        pool_ok(f, "lan", "10.0.0.0/24", NULL);
        create_ok(f, "web1", NULL, NULL, NULL);
        create_ok(f, "web2", NULL, NULL, NULL);
        before = counts_of(f);
        e.ref = "web2";
        e.spec = &ch;

        ch.name = "web1";                        /* rename onto another */
        job = edit(f, &e);
        expect(job, LSC__STATUS__ERR_EXISTS, "server web1 already exists");
        store_job_free(job);

        ch.name = NULL;                          /* web1's IP */
        ch.n_ips = 1;
        ch.ips = ips;
        job = edit(f, &e);
        expect(job, LSC__STATUS__ERR_EXISTS, "IP 10.0.0.1 is already held by server web1");
        store_job_free(job);

        ch.n_ips = 0;                            /* kind while not defined */
        ch.kind = "container";
        sql_ok(f->pg, "UPDATE servers SET state = 'pending' WHERE name = 'web2'");
        job = edit(f, &e);
        expect(job, LSC__STATUS__ERR_CONFLICT, "kind can change only while it is defined");
        store_job_free(job);

        ch.kind = NULL;
        ch.has_vcpus = 1;
        ch.vcpus = 0;
        job = edit(f, &e);
        expect(job, LSC__STATUS__ERR_INVALID, NULL);
        store_job_free(job);

        e.ref = "nope";
        ch.vcpus = 3;
        job = edit(f, &e);
        expect(job, LSC__STATUS__ERR_NOTFOUND, "server nope not found");
        store_job_free(job);

        after = counts_of(f);
        same_counts(&before, &after);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE name = 'web2' AND "
                                          "kind = 'vm' AND vcpus = 2 AND "
                                          "(SELECT host(ip) FROM ips i WHERE i.server_uuid = servers.uuid) = '10.0.0.2'"), 1);
}

static void server_delete_frees_addresses_and_keeps_the_event(void **state)
{
        struct fx *f = *state;
        struct store_job *job;
        char uuid[40], sql[256];

        pool_ok(f, "lan", "10.0.0.0/24", NULL);
        job = create(f, "web1", NULL, NULL, NULL);
        expect(job, LSC__STATUS__OK, NULL);
        snprintf(uuid, sizeof(uuid), "%s", only_server(job)->uuid);
        store_job_free(job);

        job = ref_op(f, LSC__REQUEST__OP_SERVER_DELETE, "web1");
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(job)->uuid, uuid);
        store_job_free(job);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers"), 0);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM macs"), 0);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM ips"), 0);
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM events WHERE kind = 'server.delete' AND "
                 "server_name = 'web1' AND server_uuid = '%s' AND detail->>'name' = 'web1'", uuid);
        assert_int_equal(sql_count(f->pg, sql), 1);

        job = ref_op(f, LSC__REQUEST__OP_SERVER_DELETE, "web1");
        expect(job, LSC__STATUS__ERR_NOTFOUND, "server web1 not found");
        store_job_free(job);

        /* the same address goes to the next server */
        job = create(f, "web2", NULL, NULL, NULL);
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(job)->spec->ips[0], "10.0.0.1");
        store_job_free(job);
}

static void duplicate_name_is_refused_and_changes_nothing(void **state)
{
        struct fx *f = *state;
        struct store_job *job;
        struct counts before, after;

        pool_ok(f, "lan", "10.0.0.0/24", NULL);
        create_ok(f, "web1", NULL, NULL, NULL);
        before = counts_of(f);
        job = create(f, "web1", NULL, NULL, NULL);
        expect(job, LSC__STATUS__ERR_EXISTS, "server web1 already exists");
        store_job_free(job);
        after = counts_of(f);
        same_counts(&before, &after);
}

static void duplicate_mac_is_refused_and_changes_nothing(void **state)
{
        struct fx *f = *state;
        struct store_job *job;
        struct counts before, after;

        pool_ok(f, "lan", "10.0.0.0/24", NULL);
        create_ok(f, "web1", "02:00:00:00:00:01", NULL, NULL);
        before = counts_of(f);
        job = create(f, "web2", "02:00:00:00:00:01", NULL, NULL);
        expect(job, LSC__STATUS__ERR_EXISTS, "MAC 02:00:00:00:00:01 is already held by server web1");
        store_job_free(job);
        after = counts_of(f);
        same_counts(&before, &after);
}

static void duplicate_ip_is_refused_and_changes_nothing(void **state)
{
        struct fx *f = *state;
        struct store_job *job;
        struct counts before, after;

        pool_ok(f, "lan", "10.0.0.0/24", NULL);
        create_ok(f, "web1", NULL, "10.0.0.20", NULL);
        before = counts_of(f);
        job = create(f, "web2", NULL, "10.0.0.20", NULL);
        expect(job, LSC__STATUS__ERR_EXISTS, "IP 10.0.0.20 is already held by server web1");
        store_job_free(job);
        after = counts_of(f);
        same_counts(&before, &after);
}

static void bad_addresses_are_refused_and_change_nothing(void **state)
{
        struct fx *f = *state;
        static const struct { const char *mac, *ip, *pool; Lsc__Status status; const char *msg; } cases[] = {
                { NULL, "192.168.1.5", NULL, LSC__STATUS__ERR_INVALID, "IP 192.168.1.5 is not inside any pool" },
                { NULL, "10.0.0.0", NULL, LSC__STATUS__ERR_INVALID, "network or broadcast" },
                { NULL, "10.0.0.255", NULL, LSC__STATUS__ERR_INVALID, "network or broadcast" },
                { NULL, "10.0.0.1", NULL, LSC__STATUS__ERR_INVALID, "IP 10.0.0.1 is the gateway of pool lan" },
                { NULL, "10.0.0.5", "dmz", LSC__STATUS__ERR_INVALID, "IP 10.0.0.5 is not inside pool dmz" },
                { NULL, NULL, "nope", LSC__STATUS__ERR_NOTFOUND, "pool nope not found" },
                { "01:00:00:00:00:01", NULL, NULL, LSC__STATUS__ERR_INVALID, "multicast" },
                { "zz", NULL, NULL, LSC__STATUS__ERR_INVALID, "invalid MAC" },
                { NULL, "10.0.0.300", NULL, LSC__STATUS__ERR_INVALID, "invalid IP" },
        };
        struct counts before, after;

        pool_ok(f, "lan", "10.0.0.0/24", "10.0.0.1");
        pool_ok(f, "dmz", "10.9.0.0/24", NULL);
        before = counts_of(f);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct store_job *job = create(f, "web1", cases[i].mac, cases[i].ip, cases[i].pool);
                expect(job, cases[i].status, cases[i].msg);
                store_job_free(job);
        }
        after = counts_of(f);
        same_counts(&before, &after);
}

static void bad_sizes_and_names_are_refused_and_change_nothing(void **state)
{
        struct fx *f = *state;
        struct counts before = counts_of(f), after;
        Lsc__ServerSpec s;
        struct store_job *job;

        s = spec_of("web1");
        s.vcpus = 0;
        job = create_spec(f, &s);
        expect(job, LSC__STATUS__ERR_INVALID, NULL);
        store_job_free(job);
        s = spec_of("web1");
        s.memory_mib = 15;
        job = create_spec(f, &s);
        expect(job, LSC__STATUS__ERR_INVALID, NULL);
        store_job_free(job);
        s = spec_of("web1");
        s.has_disk_gib = 1;
        s.disk_gib = 1024ull * 1024 + 1;
        job = create_spec(f, &s);
        expect(job, LSC__STATUS__ERR_INVALID, NULL);
        store_job_free(job);
        s = spec_of("-web1");
        job = create_spec(f, &s);
        expect(job, LSC__STATUS__ERR_INVALID, NULL);
        store_job_free(job);
        s = spec_of("web1");
        s.kind = "toaster";
        job = create_spec(f, &s);
        expect(job, LSC__STATUS__ERR_INVALID, "unknown kind");
        store_job_free(job);
        s = spec_of("web1");
        s.has_memory_mib = 0;
        job = create_spec(f, &s);
        expect(job, LSC__STATUS__ERR_INVALID, "memory");
        store_job_free(job);
        after = counts_of(f);
        same_counts(&before, &after);
}

/* ---- pools and addresses ---------------------------------------------------------- */

static void ip_allocation_skips_network_and_gateway_and_takes_the_lowest_free(void **state)
{
        struct fx *f = *state;
        static const char *const want[] = { "10.1.0.1", "10.1.0.2", "10.1.0.4", "10.1.0.5", "10.1.0.6" };
        struct store_job *job;
        char name[16];

        pool_ok(f, "small", "10.1.0.0/29", "10.1.0.3");
        for (int i = 0; i < 5; i++) {
                snprintf(name, sizeof(name), "s%d", i);
                job = create(f, name, NULL, NULL, NULL);
                expect(job, LSC__STATUS__OK, NULL);
                assert_string_equal(only_server(job)->spec->ips[0], want[i]);
                store_job_free(job);
        }
        /* freeing .2 makes it the lowest free one again */
        job = ref_op(f, LSC__REQUEST__OP_SERVER_DELETE, "s1");
        expect(job, LSC__STATUS__OK, NULL);
        store_job_free(job);
        job = create(f, "again", NULL, NULL, NULL);
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(job)->spec->ips[0], "10.1.0.2");
        store_job_free(job);

        /* IPv6: only the network address is reserved */
        pool_ok(f, "six", "fd00::/64", "fd00::1");
        job = create(f, "v6", NULL, NULL, "six");
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(job)->spec->ips[0], "fd00::2");
        store_job_free(job);
}

static void full_pool_is_a_conflict_and_changes_nothing(void **state)
{
        struct fx *f = *state;
        struct store_job *job;
        struct counts before, after;

        pool_ok(f, "tiny", "10.2.0.0/30", NULL);
        create_ok(f, "a", NULL, NULL, NULL);
        create_ok(f, "b", NULL, NULL, NULL);
        before = counts_of(f);
        job = create(f, "c", NULL, NULL, NULL);
        expect(job, LSC__STATUS__ERR_CONFLICT, "pool tiny is full");
        store_job_free(job);
        after = counts_of(f);
        same_counts(&before, &after);

        job = ref_op(f, LSC__REQUEST__OP_POOL_GET, "tiny");
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_pools, 1);
        assert_int_equal(job->reply->pools[0]->size, 2);
        assert_int_equal(job->reply->pools[0]->allocated, 2);
        store_job_free(job);
}

static void pool_choice_when_no_ip_is_given(void **state)
{
        struct fx *f = *state;
        struct store_job *job;

        pool_ok(f, "one", "10.3.0.0/24", NULL);
        pool_ok(f, "two", "10.4.0.0/24", NULL);
        job = create(f, "web1", NULL, NULL, NULL);
        expect(job, LSC__STATUS__ERR_INVALID, "several pools exist: choose one with --pool NAME");
        store_job_free(job);
        job = create(f, "web1", NULL, NULL, "two");
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(job)->spec->ips[0], "10.4.0.1");
        assert_string_equal(only_server(job)->spec->pool, "two");
        store_job_free(job);
        job = create(f, "web2", NULL, NULL, "three");
        expect(job, LSC__STATUS__ERR_NOTFOUND, "pool three not found");
        store_job_free(job);
}

static void pool_create_get_list_and_refusals(void **state)
{
        struct fx *f = *state;
        struct store_job *job;
        struct counts before, after;

        job = pool_create(f, "lan", "10.0.0.0/24", "10.0.0.1");
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_pools, 1);
        assert_string_equal(job->reply->pools[0]->cidr, "10.0.0.0/24");
        assert_string_equal(job->reply->pools[0]->gateway, "10.0.0.1");
        assert_int_equal(job->reply->pools[0]->size, 253);
        assert_int_equal(job->reply->pools[0]->allocated, 0);
        store_job_free(job);
        pool_ok(f, "dmz", "10.9.0.0/24", NULL);

        before = counts_of(f);
        job = pool_create(f, "lan", "10.7.0.0/24", NULL);
        expect(job, LSC__STATUS__ERR_EXISTS, "pool lan already exists");
        store_job_free(job);
        job = pool_create(f, "big", "10.0.0.0/16", NULL);
        expect(job, LSC__STATUS__ERR_CONFLICT, "overlaps pool lan");
        store_job_free(job);
        job = pool_create(f, "inner", "10.0.0.128/25", NULL);
        expect(job, LSC__STATUS__ERR_CONFLICT, "overlaps pool lan");
        store_job_free(job);
        job = pool_create(f, "gw", "10.8.0.0/24", "10.9.0.1");
        expect(job, LSC__STATUS__ERR_INVALID, "not inside");
        store_job_free(job);
        job = pool_create(f, "gw", "10.8.0.0/24", "10.8.0.255");
        expect(job, LSC__STATUS__ERR_INVALID, "broadcast");
        store_job_free(job);
        job = pool_create(f, "host", "10.8.0.1/24", NULL);
        expect(job, LSC__STATUS__ERR_INVALID, "host bits");
        store_job_free(job);
        after = counts_of(f);
        same_counts(&before, &after);

        job = list_op(f, LSC__REQUEST__OP_POOL_LIST);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_pools, 2);
        assert_string_equal(job->reply->pools[0]->name, "dmz");
        assert_string_equal(job->reply->pools[0]->gateway, "");
        assert_string_equal(job->reply->pools[1]->name, "lan");
        store_job_free(job);
        job = ref_op(f, LSC__REQUEST__OP_POOL_GET, "nope");
        expect(job, LSC__STATUS__ERR_NOTFOUND, "pool nope not found");
        store_job_free(job);
}

static void pool_delete_is_refused_while_addresses_are_allocated(void **state)
{
        struct fx *f = *state;
        struct store_job *job;
        struct counts before, after;

        pool_ok(f, "lan", "10.0.0.0/24", NULL);
        create_ok(f, "web1", NULL, NULL, NULL);
        before = counts_of(f);
        job = ref_op(f, LSC__REQUEST__OP_POOL_DELETE, "lan");
        expect(job, LSC__STATUS__ERR_CONFLICT, "pool lan still has 1 allocated address");
        store_job_free(job);
        after = counts_of(f);
        same_counts(&before, &after);

        job = ref_op(f, LSC__REQUEST__OP_SERVER_DELETE, "web1");
        expect(job, LSC__STATUS__OK, NULL);
        store_job_free(job);
        job = ref_op(f, LSC__REQUEST__OP_POOL_DELETE, "lan");
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(job->reply->pools[0]->name, "lan");
        store_job_free(job);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM pools"), 0);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'pool.delete' "
                                          "AND detail->>'name' = 'lan'"), 1);
        job = ref_op(f, LSC__REQUEST__OP_POOL_DELETE, "lan");
        expect(job, LSC__STATUS__ERR_NOTFOUND, "pool lan not found");
        store_job_free(job);
}

static void mac_auto_allocation_keeps_the_prefix(void **state)
{
        struct fx *f = *state;
        struct store_conn *c = NULL;
        struct store_config cfg = f->cfg;
        char name[16];

        cfg.mac_prefix = (struct lsc_mac){ { 0x06, 0xaa, 0xbb, 0xcc } };
        cfg.mac_prefix_len = 4;
        assert_int_equal(store_conn_open(&cfg, &c), 0);
        for (int i = 0; i < 20; i++) {
                Lsc__ServerSpec s;
                struct store_job *job;

                snprintf(name, sizeof(name), "m%d", i);
                s = spec_of(name);
                job = create_spec_on(c, &s);
                expect(job, LSC__STATUS__OK, NULL);
                assert_int_equal(only_server(job)->spec->n_macs, 1);
                assert_int_equal(strncmp(only_server(job)->spec->macs[0], "06:aa:bb:cc:", 12), 0);
                store_job_free(job);
        }
        store_conn_close(&c);
        assert_int_equal(sql_count(f->pg, "SELECT count(DISTINCT mac) FROM macs WHERE mac::text LIKE '06:aa:bb:cc:%'"), 20);
}

/* ---- events -------------------------------------------------------------------- */

static void events_are_written_with_each_change(void **state)
{
        struct fx *f = *state;
        Lsc__ServerEdit e = LSC__SERVER_EDIT__INIT;
        Lsc__ServerSpec ch = LSC__SERVER_SPEC__INIT;
        struct store_job *job;
        const Lsc__Reply *rp;

        pool_ok(f, "lan", "10.0.0.0/24", NULL);
        create_ok(f, "web1", NULL, NULL, NULL);
        ch.has_memory_mib = 1;
        ch.memory_mib = 4096;
        e.ref = "web1";
        e.spec = &ch;
        job = edit(f, &e);
        expect(job, LSC__STATUS__OK, NULL);
        store_job_free(job);
        create_ok(f, "web2", NULL, NULL, NULL);
        job = ref_op(f, LSC__REQUEST__OP_SERVER_DELETE, "web1");
        expect(job, LSC__STATUS__OK, NULL);
        store_job_free(job);

        job = events(f, NULL, 0);
        expect(job, LSC__STATUS__OK, NULL);
        rp = job->reply;
        assert_int_equal(rp->n_events, 5);
        assert_string_equal(rp->events[0]->kind, "pool.create");
        assert_string_equal(rp->events[0]->server, "");
        assert_string_equal(rp->events[1]->kind, "server.create");
        assert_string_equal(rp->events[1]->server, "web1");
        assert_string_equal(rp->events[1]->actor, "test:unit");
        assert_int_equal(strlen(rp->events[1]->uuid), 36);
        assert_non_null(strstr(rp->events[1]->detail, "\"vcpus\": 2"));
        assert_string_equal(rp->events[2]->kind, "server.edit");
        assert_non_null(strstr(rp->events[2]->detail, "\"memory_mib\": {\"to\": 4096, \"from\": 1024}"));
        assert_string_equal(rp->events[3]->kind, "server.create");
        assert_string_equal(rp->events[4]->kind, "server.delete");
        for (size_t i = 1; i < rp->n_events; i++) {
                assert_true(rp->events[i]->id > rp->events[i - 1]->id);
                assert_true(rp->events[i]->at_us >= rp->events[i - 1]->at_us);
        }
        store_job_free(job);

        /* by server name (deleted servers too), and the last N in chronological order */
        job = events(f, "web1", 0);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_events, 3);
        assert_string_equal(job->reply->events[2]->kind, "server.delete");
        store_job_free(job);
        job = events(f, NULL, 2);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_events, 2);
        assert_string_equal(job->reply->events[0]->kind, "server.create");
        assert_string_equal(job->reply->events[0]->server, "web2");
        assert_string_equal(job->reply->events[1]->kind, "server.delete");
        store_job_free(job);
        job = events(f, NULL, 10001);
        expect(job, LSC__STATUS__ERR_INVALID, "limit");
        store_job_free(job);
        /* each change carried its own request id */
        assert_int_equal(sql_count(f->pg, "SELECT count(DISTINCT request_id) FROM events"), 5);
}

/* ---- concurrency --------------------------------------------------------------- */

struct racer {
        struct fx *f;
        char prefix;
        char ips[50][48];
        int failures;
};

static void *race(void *arg)
{
        struct racer *rc = arg;
        struct store_conn *c = NULL;

        if (store_conn_open(&rc->f->cfg, &c) < 0) {
                rc->failures = 50;
                return NULL;
        }
        for (int i = 0; i < 50; i++) {
                char name[16];
                Lsc__ServerSpec s;
                struct store_job *job;

                snprintf(name, sizeof(name), "%c%d", rc->prefix, i);
                s = spec_of(name);
                job = create_spec_on(c, &s);
                if (job->reply->status != LSC__STATUS__OK || job->reply->n_servers != 1 ||
                    job->reply->servers[0]->spec->n_ips != 1) {
                        fprintf(stderr, "%s: %s\n", name, job->reply->error ? job->reply->error : "?");
                        rc->failures++;
                } else {
                        snprintf(rc->ips[i], sizeof(rc->ips[i]), "%s", job->reply->servers[0]->spec->ips[0]);
                }
                store_job_free(job);
        }
        store_conn_close(&c);
        return NULL;
}

static void concurrent_creates_never_share_an_ip(void **state)
{
        struct fx *f = *state;
        struct racer a = { .f = f, .prefix = 'a' }, b = { .f = f, .prefix = 'b' };
        pthread_t ta, tb;

        pool_ok(f, "lan", "10.0.0.0/24", "10.0.0.1");
        pthread_create(&ta, NULL, race, &a);
        pthread_create(&tb, NULL, race, &b);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        assert_int_equal(a.failures, 0);
        assert_int_equal(b.failures, 0);
        for (int i = 0; i < 50; i++)
                for (int j = 0; j < 50; j++) {
                        assert_string_not_equal(a.ips[i], b.ips[j]);
                        if (j != i) {
                                assert_string_not_equal(a.ips[i], a.ips[j]);
                                assert_string_not_equal(b.ips[i], b.ips[j]);
                        }
                }
        assert_int_equal(sql_count(f->pg, "SELECT count(DISTINCT ip) FROM ips"), 100);
        /* and they are the lowest 100 after the gateway */
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM ips WHERE ip BETWEEN '10.0.0.2' AND '10.0.0.101'"), 100);
}

/* ---- reconnecting -------------------------------------------------------------- */

static long long store_backend_pid(struct fx *f)
{
        char sql[256];

        snprintf(sql, sizeof(sql), "SELECT coalesce(max(pid), 0) FROM pg_stat_activity "
                 "WHERE datname = '%s' AND application_name = 'lscd'", f->db);
        return sql_count(admin, sql);
}

static void next_job_succeeds_after_the_backend_is_terminated(void **state)
{
        struct fx *f = *state;
        struct store_job *job;
        long long pid, after;
        char sql[256];

        pool_ok(f, "lan", "10.0.0.0/24", NULL);
        pid = store_backend_pid(f);
        assert_true(pid > 0);
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM (SELECT pg_terminate_backend(%lld)) t", pid);
        sql_count(admin, sql);
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE pid = %lld", pid);
        for (int i = 0; i < 100 && sql_count(admin, sql) > 0; i++)
                usleep(20000);

        job = create(f, "web1", NULL, NULL, NULL);
        expect(job, LSC__STATUS__OK, NULL);
        store_job_free(job);
        after = store_backend_pid(f);
        assert_true(after > 0);
        assert_true(after != pid);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers"), 1);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'server.create'"), 1);
}

/* A TCP proxy in front of PostgreSQL that, when armed, cuts the connection at the
 * next COMMIT: either after the server got it (the commit happens, the client never
 * hears) or before (it never happens). The store must find out which. */
enum cut { CUT_NONE, CUT_AFTER_COMMIT, CUT_BEFORE_COMMIT };

struct proxy {
        int listen_fd;
        int port;
        struct sockaddr_in upstream;
        atomic_int cut;
        atomic_int cuts;                 /* how many times it cut */
        atomic_bool stop;
        pthread_t thread;
};

static const char commit_msg[] = { 'Q', 0, 0, 0, 11, 'C', 'O', 'M', 'M', 'I', 'T', 0 };

static bool has_commit(const char *buf, size_t n)
{
        for (size_t i = 0; i + sizeof(commit_msg) <= n; i++)
                if (!memcmp(buf + i, commit_msg, sizeof(commit_msg)))
                        return true;
        return false;
}

static void *proxy_main(void *arg)
{
        struct proxy *p = arg;
        int cl = -1, up = -1;
        char buf[65536];

        while (!atomic_load(&p->stop)) {
                struct pollfd fds[3] = { { .fd = p->listen_fd, .events = POLLIN },
                                         { .fd = cl, .events = POLLIN },
                                         { .fd = up, .events = POLLIN } };
                if (poll(fds, 3, 50) <= 0)
                        continue;
                if (fds[0].revents & POLLIN) {
                        int fd = accept(p->listen_fd, NULL, NULL);
                        if (fd >= 0) {           /* one client at a time: the newest */
                                if (cl >= 0)
                                        close(cl);
                                if (up >= 0)
                                        close(up);
                                cl = fd;
                                up = socket(AF_INET, SOCK_STREAM, 0);
                                if (connect(up, (struct sockaddr *)&p->upstream, sizeof(p->upstream)) < 0) {
                                        close(cl);
                                        close(up);
                                        cl = up = -1;
                                }
                        }
                        continue;
                }
                if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
                        ssize_t n = read(cl, buf, sizeof(buf));
                        int cut = atomic_load(&p->cut);
                        if (n <= 0) {
                                close(cl);
                                close(up);
                                cl = up = -1;
                                continue;
                        }
                        if (cut != CUT_NONE && has_commit(buf, (size_t)n)) {
                                if (cut == CUT_AFTER_COMMIT) {
                                        struct pollfd w = { .fd = up, .events = POLLIN };
                                        if (write(up, buf, (size_t)n) != n)
                                                fprintf(stderr, "proxy: short write\n");
                                        poll(&w, 1, 2000);       /* the server has committed */
                                }
                                close(cl);
                                close(up);
                                cl = up = -1;
                                atomic_store(&p->cut, CUT_NONE);
                                atomic_fetch_add(&p->cuts, 1);
                                continue;
                        }
                        if (write(up, buf, (size_t)n) != n) {
                                close(cl);
                                close(up);
                                cl = up = -1;
                        }
                        continue;
                }
                if (fds[2].revents & (POLLIN | POLLHUP | POLLERR)) {
                        ssize_t n = read(up, buf, sizeof(buf));
                        if (n <= 0 || write(cl, buf, (size_t)n) != n) {
                                close(cl);
                                close(up);
                                cl = up = -1;
                        }
                }
        }
        if (cl >= 0)
                close(cl);
        if (up >= 0)
                close(up);
        return NULL;
}

static void proxy_start(struct proxy *p)
{
        PQconninfoOption *opts = PQconninfoParse(admin_conninfo, NULL);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        int port = 5432;

        assert_non_null(opts);
        for (PQconninfoOption *o = opts; o->keyword; o++)
                if (!strcmp(o->keyword, "port") && o->val)
                        port = atoi(o->val);
        PQconninfoFree(opts);
        memset(p, 0, sizeof(*p));
        p->upstream = a;
        p->upstream.sin_port = htons((uint16_t)port);
        p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(bind(p->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(listen(p->listen_fd, 8), 0);
        assert_int_equal(getsockname(p->listen_fd, (struct sockaddr *)&a, &len), 0);
        p->port = ntohs(a.sin_port);
        pthread_create(&p->thread, NULL, proxy_main, p);
}

static void proxy_stop(struct proxy *p)
{
        atomic_store(&p->stop, true);
        pthread_join(p->thread, NULL);
        close(p->listen_fd);
}

static void commit_cut(void **state, enum cut cut)
{
        struct fx *f = *state;
        struct store_config cfg = f->cfg;
        struct store_conn *c = NULL;
        struct proxy p;
        struct store_job *job;
        Lsc__ServerSpec s = spec_of("web1");
        char conninfo[1200];

        pool_ok(f, "lan", "10.0.0.0/24", NULL);
        proxy_start(&p);
        snprintf(conninfo, sizeof(conninfo), "%s host=127.0.0.1 port=%d sslmode=disable gssencmode=disable",
                 f->conninfo, p.port);
        cfg.conninfo = conninfo;
        assert_int_equal(store_conn_open(&cfg, &c), 0);
        atomic_store(&p.cut, cut);
        job = create_spec_on(c, &s);
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(job)->spec->name, "web1");
        assert_string_equal(only_server(job)->spec->ips[0], "10.0.0.1");
        store_job_free(job);
        assert_int_equal(atomic_load(&p.cuts), 1);
        /* exactly once, whichever way the cut went */
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers"), 1);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM ips"), 1);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'server.create'"), 1);
        store_conn_close(&c);
        proxy_stop(&p);
}

static void commit_that_happened_but_was_not_acknowledged_is_not_repeated(void **state)
{
        commit_cut(state, CUT_AFTER_COMMIT);
}

static void commit_that_never_arrived_is_run_again(void **state)
{
        commit_cut(state, CUT_BEFORE_COMMIT);
}

/* ---- the store thread ------------------------------------------------------------- */

/* ---- bindings: compare-and-set, capacity, transitions ---------------------- */

static void register_host(struct fx *f, const char *name, uint32_t vcpus, uint64_t memory_mib)
{
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__Register reg = LSC__REGISTER__INIT;
        Lsc__Capacity cap = LSC__CAPACITY__INIT;
        struct store_job *job;

        cap.has_vcpus = cap.has_memory_mib = cap.has_disk_gib = 1;
        cap.vcpus = vcpus;
        cap.memory_mib = memory_mib;
        cap.disk_gib = 1000;
        reg.host = (char *)name;
        reg.driver = "fake";
        reg.kind = "vm";
        reg.capacity = &cap;
        r.op_case = LSC__REQUEST__OP_HOST_REGISTER;
        r.host_register = &reg;
        job = run_on(f->c, &r);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_hosts, 1);
        store_job_free(job);
}

/* Starts server name (defined -> pending) and returns its uuid and generation. */
static void start_ok(struct fx *f, const char *name, char uuid[37], uint64_t *gen)
{
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__ServerStart st = LSC__SERVER_START__INIT;
        struct store_job *job;

        st.ref = (char *)name;
        r.op_case = LSC__REQUEST__OP_SERVER_START;
        r.server_start = &st;
        job = run_on(f->c, &r);
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(job)->state, "pending");
        snprintf(uuid, 37, "%s", only_server(job)->uuid);
        *gen = only_server(job)->generation;
        store_job_free(job);
}

static struct store_job *bind_op(struct fx *f, size_t n, char (*uuids)[37], const uint64_t *gens,
                              const char *const *hosts)
{
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__Bind b = LSC__BIND__INIT;
        Lsc__Binding bs[16], *bp[16];

        assert_true(n <= 16);
        for (size_t i = 0; i < n; i++) {
                lsc__binding__init(&bs[i]);
                bs[i].uuid = uuids[i];
                bs[i].has_generation = 1;
                bs[i].generation = gens[i];
                bs[i].host = (char *)hosts[i];
                bp[i] = &bs[i];
        }
        b.n_bindings = n;
        b.bindings = bp;
        r.op_case = LSC__REQUEST__OP_BIND;
        r.bind = &b;
        return run_on(f->c, &r);
}

static void bind_commits_what_fits_and_never_overbooks(void **state)
{
        struct fx *f = *state;
        char uuids[6][37], name[16];
        uint64_t gens[6];
        const char *hosts[6] = { "h1", "h1", "h1", "h2", "h2", "h2" };
        struct store_job *job;

        /* h1 has room for two 2-vCPU servers, h2 for three */
        register_host(f, "h1", 4, 100000);
        register_host(f, "h2", 6, 100000);
        for (int i = 0; i < 6; i++) {
                snprintf(name, sizeof(name), "s%d", i);
                create_ok(f, name, NULL, NULL, NULL);
                start_ok(f, name, uuids[i], &gens[i]);
        }
        /* h1's share of the batch (6 vCPUs) does not fit: all of it goes back to pending */
        job = bind_op(f, 6, uuids, gens, hosts);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_refused, 3);
        store_job_free(job);
        assert_int_equal(sql_count(f->pg, "SELECT used_vcpus FROM hosts WHERE name = 'h1'"), 0);
        assert_int_equal(sql_count(f->pg, "SELECT used_vcpus FROM hosts WHERE name = 'h2'"), 6);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE state = 'binding'"), 3);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE state = 'binding'"
                                          " AND generation = 1"), 3);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE state = 'pending'"
                                          " AND host_id IS NULL"), 3);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'server.binding'"), 3);
        /* nowhere can a host's used exceed what it may allocate */
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM hosts"
                                          " WHERE used_vcpus > floor(vcpus * alloc_ratio)"), 0);
}

static void bind_at_a_stale_generation_changes_nothing(void **state)
{
        struct fx *f = *state;
        char uuids[1][37];
        uint64_t gens[1];
        const char *hosts[1] = { "h1" };
        struct store_job *job;

        register_host(f, "h1", 8, 100000);
        create_ok(f, "web1", NULL, NULL, NULL);
        start_ok(f, "web1", uuids[0], &gens[0]);
        job = bind_op(f, 1, uuids, gens, hosts);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_refused, 0);
        assert_int_equal(only_server(job)->generation, gens[0] + 1);
        store_job_free(job);
        /* the same binding again, at the generation the scheduler saw before: refused */
        job = bind_op(f, 1, uuids, gens, hosts);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_refused, 1);
        store_job_free(job);
        assert_int_equal(sql_count(f->pg, "SELECT used_vcpus FROM hosts WHERE name = 'h1'"), 2);
        assert_int_equal(sql_count(f->pg, "SELECT generation FROM servers WHERE name = 'web1'"), 1);
}

static struct store_job *transition_op(struct fx *f, const char *uuid, uint64_t gen, const char *from,
                                    const char *to, bool release, bool failure)
{
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__Transition t = LSC__TRANSITION__INIT;
        char *fr[1] = { (char *)from };

        t.uuid = (char *)uuid;
        t.has_generation = t.has_release = t.has_failure = 1;
        t.generation = gen;
        t.from = fr;
        t.n_from = 1;
        t.to = (char *)to;
        t.kind = "server.test";
        t.reason = "because";
        t.release = release;
        t.failure = failure;
        r.op_case = LSC__REQUEST__OP_TRANSITION;
        r.transition = &t;
        return run_on(f->c, &r);
}

static void transitions_apply_only_at_their_generation_and_give_capacity_back(void **state)
{
        struct fx *f = *state;
        char uuids[1][37];
        uint64_t gens[1];
        const char *hosts[1] = { "h1" };
        struct store_job *job;

        register_host(f, "h1", 8, 100000);
        create_ok(f, "web1", NULL, NULL, NULL);
        start_ok(f, "web1", uuids[0], &gens[0]);
        store_job_free(bind_op(f, 1, uuids, gens, hosts));
        /* stale: generation 0 is gone */
        job = transition_op(f, uuids[0], 0, "binding", "running", false, false);
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(job)->state, "binding");
        store_job_free(job);
        /* the start failed on the host: back to pending, capacity returned, counted */
        job = transition_op(f, uuids[0], 1, "binding", "pending", true, true);
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(job)->state, "pending");
        assert_int_equal(only_server(job)->failures, 1);
        assert_string_equal(only_server(job)->host, "");
        store_job_free(job);
        assert_int_equal(sql_count(f->pg, "SELECT used_vcpus FROM hosts WHERE name = 'h1'"), 0);
        /* the third failure in a row makes it failed */
        for (int i = 0; i < 2; i++) {
                gens[0] = 1 + (uint64_t)i;
                store_job_free(bind_op(f, 1, uuids, gens, hosts));
                job = transition_op(f, uuids[0], gens[0] + 1, "binding", "pending", true, true);
                expect(job, LSC__STATUS__OK, NULL);
                if (i == 1) {
                        assert_string_equal(only_server(job)->state, "failed");
                        assert_int_equal(only_server(job)->failures, 3);
                }
                store_job_free(job);
        }
        assert_int_equal(sql_count(f->pg, "SELECT used_vcpus FROM hosts WHERE name = 'h1'"), 0);
}

/* ---- mayflies ---- */

static void expect_free(struct store_job *job, Lsc__Status status, const char *needle)
{
        expect(job, status, needle);
        store_job_free(job);
}

static void mayfly_ok(struct fx *f, const char *name, uint64_t lifetime_s)
{
        Lsc__ServerSpec sp = spec_of(name);
        struct store_job *job;

        sp.has_lifetime_s = 1;
        sp.lifetime_s = lifetime_s;
        job = create_spec(f, &sp);
        expect(job, LSC__STATUS__OK, NULL);
        store_job_free(job);
}

static struct store_job *turnover_op(struct fx *f, const char *uuid, uint64_t gen, const char *to,
                                     uint32_t postpone_s)
{
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__Turnover t = LSC__TURNOVER__INIT;

        t.uuid = (char *)uuid;
        t.has_generation = 1;
        t.generation = gen;
        t.to = (char *)to;
        t.reason = "turnover: test";
        t.has_postpone_s = postpone_s > 0;
        t.postpone_s = postpone_s;
        r.op_case = LSC__REQUEST__OP_TURNOVER;
        r.turnover = &t;
        return run_on(f->c, &r);
}

static struct store_job *renew_op(struct fx *f, const char *ref, uint64_t by_s)
{
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__ServerRenew rn = LSC__SERVER_RENEW__INIT;

        rn.ref = (char *)ref;
        rn.has_by_s = by_s > 0;
        rn.by_s = by_s;
        r.op_case = LSC__REQUEST__OP_SERVER_RENEW;
        r.server_renew = &rn;
        return run_on(f->c, &r);
}

/* binds name (pending, at *gen) on host and confirms it running; *gen follows */
static void run_on_host(struct fx *f, char uuid[37], uint64_t *gen, const char *host)
{
        char uuids[1][37];
        const char *hosts[1] = { host };
        struct store_job *job;

        snprintf(uuids[0], 37, "%s", uuid);
        job = bind_op(f, 1, uuids, gen, hosts);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_refused, 0);
        store_job_free(job);
        (*gen)++;
        job = transition_op(f, uuid, *gen, "binding", "running", false, false);
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(job)->state, "running");
        store_job_free(job);
}

static void mayfly_binding_sets_its_death_and_a_turnover_is_compare_and_set(void **state)
{
        struct fx *f = *state;
        char fly[37], plain[37];
        uint64_t gf, gp;
        struct store_job *job;

        register_host(f, "h1", 8, 100000);
        register_host(f, "h2", 8, 100000);
        mayfly_ok(f, "fly1", 100);
        create_ok(f, "plain", NULL, NULL, NULL);
        start_ok(f, "fly1", fly, &gf);
        start_ok(f, "plain", plain, &gp);
        /* never bound: no death yet */
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE expires_at IS NOT NULL"), 0);
        run_on_host(f, fly, &gf, "h1");
        run_on_host(f, plain, &gp, "h1");
        /* lifetime 100 s +- 10 %, from the binding; none for a server without a lifetime */
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE name = 'fly1' AND expires_at"
                                          " BETWEEN bound_at + interval '90 s' AND bound_at + interval '110 s'"), 1);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE name = 'plain'"
                                          " AND expires_at IS NULL"), 1);
        /* not dead yet: the death changes nothing, writes no event */
        job = turnover_op(f, fly, gf, "h2", 0);
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(job)->state, "running");
        assert_string_equal(only_server(job)->turnover_to, "");
        store_job_free(job);
        sql_ok(f->pg, "UPDATE servers SET expires_at = now() - interval '1 s'");
        /* a stale generation, an unknown host, a server that is no mayfly: nothing */
        store_job_free(turnover_op(f, fly, gf - 1, "h2", 0));
        store_job_free(turnover_op(f, fly, gf, "nosuch", 0));
        store_job_free(turnover_op(f, plain, gp, "h2", 0));
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE state = 'stopping'"), 0);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind LIKE 'server.turnover%'"), 0);
        /* past its death, at its generation: stopping, the rebirth host recorded */
        job = turnover_op(f, fly, gf, "h2", 0);
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(job)->state, "stopping");
        assert_string_equal(only_server(job)->turnover_to, "h2");
        store_job_free(job);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'server.turnover'"
                                          " AND detail->>'turnover_to' = 'h2' AND detail->>'host' = 'h1'"), 1);
        /* once only */
        job = turnover_op(f, fly, gf, "h1", 0);
        assert_string_equal(only_server(job)->turnover_to, "h2");
        store_job_free(job);
        /* the old copy destroyed: unbound, no death, still turning over */
        store_job_free(transition_op(f, fly, gf, "stopping", "pending", true, false));
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE name = 'fly1' AND expires_at IS NULL"
                                          " AND turnover_to = 'h2' AND host_id IS NULL"), 1);
        assert_int_equal(sql_count(f->pg, "SELECT used_vcpus FROM hosts WHERE name = 'h1'"), 2);
        /* reborn: generation + 1, a new death, one turnover counted, the turnover over */
        run_on_host(f, fly, &gf, "h2");
        assert_int_equal(gf, 2);
        job = ref_op(f, LSC__REQUEST__OP_SERVER_GET, "fly1");
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(only_server(job)->turnovers, 1);
        assert_string_equal(only_server(job)->turnover_to, "");
        assert_string_equal(only_server(job)->host, "h2");
        assert_true(only_server(job)->expires_at > 0);
        store_job_free(job);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'server.binding'"
                                          " AND detail->>'reason' = 'turnover: reborn'"), 1);
}

static void renew_and_postpone_move_a_death_and_are_counted(void **state)
{
        struct fx *f = *state;
        char fly[37], plain[37];
        uint64_t gf, gp;
        struct counts before, after;
        struct store_job *job;

        register_host(f, "h1", 8, 100000);
        mayfly_ok(f, "fly1", 100);
        mayfly_ok(f, "fly2", 100);
        create_ok(f, "plain", NULL, NULL, NULL);
        start_ok(f, "fly1", fly, &gf);
        start_ok(f, "plain", plain, &gp);
        run_on_host(f, fly, &gf, "h1");
        run_on_host(f, plain, &gp, "h1");
        /* refusals change nothing */
        before = counts_of(f);
        expect_free(renew_op(f, "plain", 0), LSC__STATUS__ERR_CONFLICT, "not a mayfly");
        expect_free(renew_op(f, "fly2", 0), LSC__STATUS__ERR_CONFLICT, "only a running mayfly");
        expect_free(renew_op(f, "nosuch", 0), LSC__STATUS__ERR_NOTFOUND, "not found");
        expect_free(renew_op(f, "fly1", 315360001), LSC__STATUS__ERR_INVALID, "lifetime");
        after = counts_of(f);
        same_counts(&before, &after);
        /* renewed by 50 s: from now, counted */
        job = renew_op(f, "fly1", 50);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(only_server(job)->renewals, 1);
        store_job_free(job);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE name = 'fly1' AND expires_at"
                                          " BETWEEN now() + interval '49 s' AND now() + interval '51 s'"), 1);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'server.renew'"), 1);
        /* mayfly_renew_max 1 */
        expect_free(renew_op(f, "fly1", 0), LSC__STATUS__ERR_CONFLICT, "mayfly_renew_max");
        /* no rebirth host: postponed by 5 s, counted, an event */
        sql_ok(f->pg, "UPDATE servers SET expires_at = now() - interval '1 s' WHERE name = 'fly1'");
        job = turnover_op(f, fly, gf, NULL, 5);
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(job)->state, "running");
        store_job_free(job);
        assert_int_equal(sql_count(f->pg, "SELECT postponed FROM servers WHERE name = 'fly1'"), 1);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE name = 'fly1' AND expires_at"
                                          " BETWEEN now() + interval '4 s' AND now() + interval '6 s'"), 1);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'server.turnover-postponed'"), 1);
        /* not due any more: a second postponement changes nothing */
        store_job_free(turnover_op(f, fly, gf, NULL, 5));
        assert_int_equal(sql_count(f->pg, "SELECT postponed FROM servers WHERE name = 'fly1'"), 1);
        /* a stopped mayfly just stops: no death */
        store_job_free(ref_op(f, LSC__REQUEST__OP_SERVER_STOP, "fly1"));
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE name = 'fly1'"
                                          " AND expires_at IS NULL AND state = 'stopping'"), 1);
}

static void lifetime_removed_by_edit_cancels_the_death(void **state)
{
        struct fx *f = *state;
        Lsc__ServerEdit e = LSC__SERVER_EDIT__INIT;
        Lsc__ServerSpec sp = LSC__SERVER_SPEC__INIT;
        char fly[37];
        uint64_t gf;

        register_host(f, "h1", 8, 100000);
        mayfly_ok(f, "fly1", 100);
        start_ok(f, "fly1", fly, &gf);
        run_on_host(f, fly, &gf, "h1");
        /* a new lifetime waits for the next binding */
        e.ref = "fly1";
        e.spec = &sp;
        sp.has_lifetime_s = 1;
        sp.lifetime_s = 1000;
        store_job_free(edit(f, &e));
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE name = 'fly1' AND lifetime_s = 1000"
                                          " AND expires_at < bound_at + interval '111 s'"), 1);
        /* no lifetime: no death */
        sp.lifetime_s = 0;
        store_job_free(edit(f, &e));
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE name = 'fly1'"
                                          " AND lifetime_s IS NULL AND expires_at IS NULL"), 1);
}

static struct store_job *start_many(struct fx *f, const char *const *refs, size_t n)
{
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__ServerStart st = LSC__SERVER_START__INIT;

        st.refs = (char **)refs;
        st.n_refs = n;
        r.op_case = LSC__REQUEST__OP_SERVER_START;
        r.server_start = &st;
        return run_on(f->c, &r);
}

static void start_of_many_servers_is_all_or_nothing(void **state)
{
        struct fx *f = *state;
        char name[16], uuid2[37];
        const char *refs[3] = { "s0", "s1", uuid2 };
        const char *bad[3] = { "s3", "nosuch", "s4" };
        const char **many = calloc(1001, sizeof(char *));
        struct store_job *job;
        struct counts before, after;

        for (int i = 0; i < 5; i++) {
                snprintf(name, sizeof(name), "s%d", i);
                create_ok(f, name, NULL, NULL, NULL);
        }
        job = ref_op(f, LSC__REQUEST__OP_SERVER_GET, "s2");
        snprintf(uuid2, sizeof(uuid2), "%s", only_server(job)->uuid);
        store_job_free(job);
        /* by name and by UUID, in one transaction; the reply has them all */
        job = start_many(f, refs, 3);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_servers, 3);
        for (size_t i = 0; i < 3; i++)
                assert_string_equal(job->reply->servers[i]->state, "pending");
        store_job_free(job);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE state = 'pending'"
                                          " AND desired = 'running'"), 3);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'server.start'"), 3);
        assert_int_equal(sql_count(f->pg, "SELECT count(DISTINCT request_id) FROM events"
                                          " WHERE kind = 'server.start'"), 1);
        /* started again with a new one: the pending stay pending, one more event each */
        refs[2] = "s3";
        job = start_many(f, refs, 3);
        expect(job, LSC__STATUS__OK, NULL);
        store_job_free(job);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE state = 'pending'"), 4);
        /* one unknown name: nothing changes at all */
        before = counts_of(f);
        job = start_many(f, bad, 3);
        expect(job, LSC__STATUS__ERR_NOTFOUND, "server nosuch not found");
        store_job_free(job);
        after = counts_of(f);
        same_counts(&before, &after);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE name = 's4'"
                                          " AND state = 'defined'"), 1);
        /* a malformed name or too many: refused before any SQL */
        bad[1] = "Bad_Name";
        job = start_many(f, bad, 3);
        expect(job, LSC__STATUS__ERR_INVALID, "no server can be called");
        store_job_free(job);
        for (int i = 0; i < 1001; i++)
                many[i] = "s4";
        job = start_many(f, many, 1001);
        expect(job, LSC__STATUS__ERR_INVALID, "at most 1000 servers per start request");
        store_job_free(job);
        free(many);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE name = 's4'"
                                          " AND state = 'defined'"), 1);
}

static struct store_job *transitions_op(struct fx *f, size_t n, const char *const *uuids, const uint64_t *gens,
                                     const char *const *to, const bool *release, const bool *failure)
{
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__Transitions tr = LSC__TRANSITIONS__INIT;
        Lsc__Transition t[8], *tp[8];
        char *fr[1] = { "binding" };

        assert_true(n <= 8);
        for (size_t i = 0; i < n; i++) {
                lsc__transition__init(&t[i]);
                t[i].uuid = (char *)uuids[i];
                t[i].has_generation = t[i].has_release = t[i].has_failure = 1;
                t[i].generation = gens[i];
                t[i].from = fr;
                t[i].n_from = 1;
                t[i].to = (char *)to[i];
                t[i].kind = "server.test";
                t[i].reason = "batched \"reason\", with a comma";
                t[i].release = release[i];
                t[i].failure = failure[i];
                tp[i] = &t[i];
        }
        tr.items = tp;
        tr.n_items = n;
        r.op_case = LSC__REQUEST__OP_TRANSITIONS;
        r.transitions = &tr;
        return run_on(f->c, &r);
}

static void transition_batch_checks_each_generation_and_gives_capacity_back(void **state)
{
        struct fx *f = *state;
        char uuids[4][37], name[16];
        uint64_t gens[4];
        const char *hosts[4] = { "h1", "h1", "h2", "h2" };
        const char *u[4], *to[4] = { "running", "running", "pending", "pending" };
        bool rel[4] = { false, false, true, true }, fail[4] = { false, false, true, false };
        struct store_job *job;
        struct counts before, after;

        register_host(f, "h1", 8, 100000);
        register_host(f, "h2", 8, 100000);
        for (int i = 0; i < 4; i++) {
                snprintf(name, sizeof(name), "s%d", i);
                create_ok(f, name, NULL, NULL, NULL);
                start_ok(f, name, uuids[i], &gens[i]);
                u[i] = uuids[i];
        }
        store_job_free(bind_op(f, 4, uuids, gens, hosts));
        for (int i = 0; i < 4; i++)
                gens[i]++;
        gens[1] = 0;                     /* stale: changes nothing */
        job = transitions_op(f, 4, u, gens, to, rel, fail);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_servers, 4);
        store_job_free(job);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE name = 's0' AND state = 'running'"
                                          " AND reason = 'batched \"reason\", with a comma'"), 1);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE name = 's1'"
                                          " AND state = 'binding'"), 1);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE name IN ('s2', 's3')"
                                          " AND state = 'pending' AND host_id IS NULL"), 2);
        assert_int_equal(sql_count(f->pg, "SELECT failures FROM servers WHERE name = 's2'"), 1);
        assert_int_equal(sql_count(f->pg, "SELECT failures FROM servers WHERE name = 's3'"), 0);
        /* capacity: h1 keeps both of its servers, h2 has both back */
        assert_int_equal(sql_count(f->pg, "SELECT used_vcpus FROM hosts WHERE name = 'h1'"), 4);
        assert_int_equal(sql_count(f->pg, "SELECT used_vcpus FROM hosts WHERE name = 'h2'"), 0);
        /* one event per change that happened, naming the host it was on */
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'server.test'"), 3);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'server.test'"
                                          " AND request_id IS NOT NULL"), 1);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'server.test'"
                                          " AND host_name = 'h2' AND detail->>'state' = 'pending'"), 2);
        /* the same batch again: every item is stale now, nothing changes */
        before = counts_of(f);
        gens[1] = 1;
        to[1] = "deleted";
        job = transitions_op(f, 4, u, gens, to, rel, fail);
        expect(job, LSC__STATUS__ERR_INVALID, "a deletion is a transition of its own");
        store_job_free(job);
        to[1] = "running";
        u[1] = u[0];
        job = transitions_op(f, 4, u, gens, to, rel, fail);
        expect(job, LSC__STATUS__ERR_INVALID, "appears twice");
        store_job_free(job);
        after = counts_of(f);
        same_counts(&before, &after);
        assert_int_equal(sql_count(f->pg, "SELECT used_vcpus FROM hosts WHERE name = 'h1'"), 4);
}

static struct store_job *host_op(struct fx *f, Lsc__Request__OpCase op, const char *name)
{
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__Ref ref = LSC__REF__INIT;

        ref.ref = (char *)name;
        r.op_case = op;
        if (op == LSC__REQUEST__OP_HOST_DRAIN)
                r.host_drain = &ref;
        else if (op == LSC__REQUEST__OP_HOST_UNDRAIN)
                r.host_undrain = &ref;
        else
                r.host_remove = &ref;
        return run_on(f->c, &r);
}

static void drain_moves_what_is_bound_and_remove_needs_an_empty_host(void **state)
{
        struct fx *f = *state;
        char uuids[3][37];
        uint64_t gens[3];
        const char *hosts[3] = { "h1", "h1", "h2" };
        const char *u[2], *to[2] = { "running", "running" };
        bool no[2] = { false, false };
        struct store_job *job;

        register_host(f, "h1", 8, 100000);
        register_host(f, "h2", 8, 100000);
        for (int i = 0; i < 3; i++) {
                char name[8];
                snprintf(name, sizeof(name), "s%d", i);
                create_ok(f, name, NULL, NULL, NULL);
                start_ok(f, name, uuids[i], &gens[i]);
        }
        store_job_free(bind_op(f, 3, uuids, gens, hosts));
        u[0] = uuids[0];                 /* s0 runs on h1, s1 is still binding there */
        gens[0]++;
        store_job_free(transitions_op(f, 1, u, gens, to, no, no));
        job = host_op(f, LSC__REQUEST__OP_HOST_REMOVE, "h1");
        expect(job, LSC__STATUS__ERR_CONFLICT, "host h1 still has 2 servers bound to it");
        store_job_free(job);
        /* drain: both move (destroyed there first), s2 on h2 stays */
        job = host_op(f, LSC__REQUEST__OP_HOST_DRAIN, "h1");
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_hosts, 1);
        assert_string_equal(job->reply->hosts[0]->admin, "drained");
        assert_int_equal(job->reply->n_servers, 2);
        for (size_t i = 0; i < 2; i++) {
                assert_string_equal(job->reply->servers[i]->state, "stopping");
                assert_string_equal(job->reply->servers[i]->migrate_from, "h1");
        }
        store_job_free(job);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers WHERE name = 's2' AND state = 'binding'"), 1);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'server.drain'"), 2);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'host.drain'"
                                          " AND host_name = 'h1' AND request_id IS NOT NULL"), 1);
        /* registering again keeps it drained */
        register_host(f, "h1", 8, 100000);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM hosts WHERE name = 'h1' AND admin = 'drained'"), 1);
        /* once the destroys are acknowledged (stopping -> pending, released), it can go */
        sql_ok(f->pg, "UPDATE servers SET state = 'pending', host_id = NULL WHERE state = 'stopping'");
        job = host_op(f, LSC__REQUEST__OP_HOST_REMOVE, "h1");
        expect(job, LSC__STATUS__OK, NULL);
        store_job_free(job);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM hosts WHERE name = 'h1'"), 0);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'host.remove'"), 1);
        job = host_op(f, LSC__REQUEST__OP_HOST_UNDRAIN, "h1");
        expect(job, LSC__STATUS__ERR_NOTFOUND, "host h1 not found");
        store_job_free(job);
        job = host_op(f, LSC__REQUEST__OP_HOST_UNDRAIN, "h2");
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(job->reply->hosts[0]->admin, "active");
        store_job_free(job);
        job = host_op(f, LSC__REQUEST__OP_HOST_DRAIN, "Bad_Name");
        expect(job, LSC__STATUS__ERR_INVALID, NULL);
        store_job_free(job);
}

static bool packed_equal(const Lsc__Server *a, const Lsc__Server *b)
{
        size_t la = lsc__server__get_packed_size(a), lb = lsc__server__get_packed_size(b);
        uint8_t *pa = malloc(la + 1), *pb = malloc(lb + 1);
        bool eq;

        assert_non_null(pa);
        assert_non_null(pb);
        lsc__server__pack(a, pa);
        lsc__server__pack(b, pb);
        eq = la == lb && memcmp(pa, pb, la) == 0;
        free(pa);
        free(pb);
        return eq;
}

/* lscd's load: a binding server whole (its INSTANTIATE may be sent again from it), the
 * others with what the view needs, no defined one; hosts without their servers' names. */
static void load_gives_binding_servers_whole_and_the_others_what_the_view_needs(void **state)
{
        struct fx *f = *state;
        Lsc__ServerSpec sp = spec_of("run1");
        Lsc__Label need = LSC__LABEL__INIT, *needp[1] = { &need };
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__Load ld = LSC__LOAD__INIT;
        char uuids[3][37];
        uint64_t gens[3];
        const char *hosts[2] = { "h1", "h1" };
        struct store_job *job;

        register_host(f, "h1", 16, 100000);
        pool_ok(f, "lan", "10.70.0.0/24", NULL);
        create_ok(f, "bind1", "02:00:00:00:70:01", "10.70.0.5", "lan");
        need.key = "rack";
        need.value = "r1";
        sp.n_require_labels = 1;
        sp.require_labels = needp;
        sp.pool = "lan";
        job = create_spec(f, &sp);
        expect(job, LSC__STATUS__OK, NULL);
        store_job_free(job);
        create_ok(f, "idle", NULL, NULL, NULL);
        create_ok(f, "wait", NULL, NULL, NULL);
        start_ok(f, "bind1", uuids[0], &gens[0]);
        start_ok(f, "run1", uuids[1], &gens[1]);
        start_ok(f, "wait", uuids[2], &gens[2]);
        job = bind_op(f, 2, uuids, gens, hosts);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_refused, 0);
        store_job_free(job);
        job = transition_op(f, uuids[1], gens[1] + 1, "binding", "running", false, false);
        expect(job, LSC__STATUS__OK, NULL);
        store_job_free(job);

        r.op_case = LSC__REQUEST__OP_LOAD;
        r.load = &ld;
        job = run_on(f->c, &r);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_servers, 3);
        assert_int_equal(job->reply->n_hosts, 1);
        assert_int_equal(job->reply->hosts[0]->n_instances, 0);
        for (size_t i = 0; i < job->reply->n_servers; i++) {
                const Lsc__Server *sv = job->reply->servers[i];
                struct store_job *get = ref_op(f, LSC__REQUEST__OP_SERVER_GET, sv->uuid);
                const Lsc__Server *whole;

                expect(get, LSC__STATUS__OK, NULL);
                whole = only_server(get);
                assert_string_not_equal(sv->spec->name, "idle");
                if (!strcmp(sv->state, "binding")) {
                        assert_string_equal(sv->spec->name, "bind1");
                        assert_true(packed_equal(sv, whole));
                } else {
                        assert_string_equal(sv->spec->name, whole->spec->name);
                        assert_string_equal(sv->spec->kind, whole->spec->kind);
                        assert_int_equal(sv->spec->vcpus, whole->spec->vcpus);
                        assert_int_equal(sv->spec->memory_mib, whole->spec->memory_mib);
                        assert_int_equal(sv->spec->disk_gib, whole->spec->disk_gib);
                        assert_string_equal(sv->state, whole->state);
                        assert_string_equal(sv->desired, whole->desired);
                        assert_string_equal(sv->host, whole->host);
                        assert_int_equal(sv->generation, whole->generation);
                        assert_string_equal(sv->group, whole->group);
                        assert_string_equal(sv->migrate_from, whole->migrate_from);
                        assert_string_equal(sv->migrate_to, whole->migrate_to);
                        assert_int_equal(sv->spec->n_require_labels, whole->spec->n_require_labels);
                        for (size_t k = 0; k < sv->spec->n_require_labels; k++) {
                                assert_string_equal(sv->spec->require_labels[k]->key,
                                                    whole->spec->require_labels[k]->key);
                                assert_string_equal(sv->spec->require_labels[k]->value,
                                                    whole->spec->require_labels[k]->value);
                        }
                        /* what only an INSTANTIATE needs is left out */
                        assert_true(whole->spec->n_macs > 0);
                        assert_int_equal(sv->spec->n_macs, 0);
                }
                store_job_free(get);
        }
        store_job_free(job);
}

static struct store_job *thread_wait(struct store *s, int *ret_fatal, int timeout_ms)
{
        int64_t end = lsc_now_us() + (int64_t)timeout_ms * 1000;

        *ret_fatal = 0;
        while (lsc_now_us() < end) {
                zmq_pollitem_t it = { .socket = store_socket(s), .events = ZMQ_POLLIN };
                struct store_job *job;

                if (zmq_poll(&it, 1, 100) <= 0)
                        continue;
                job = store_recv(s, ret_fatal);
                if (job || *ret_fatal)
                        return job;
        }
        return NULL;
}

static void store_thread_runs_jobs_and_returns_them(void **state)
{
        struct fx *f = *state;
        void *zctx = zmq_ctx_new();
        struct store *s = NULL;
        Lsc__Request ping = LSC__REQUEST__INIT, cr = LSC__REQUEST__INIT;
        Lsc__Ping pg = LSC__PING__INIT;
        Lsc__ServerCreate c = LSC__SERVER_CREATE__INIT;
        Lsc__ServerSpec sp = spec_of("web1");
        struct store_job *a, *b, *got;
        int fatal, seen = 0;

        ping.op_case = LSC__REQUEST__OP_PING;
        ping.ping = &pg;
        c.spec = &sp;
        cr.op_case = LSC__REQUEST__OP_SERVER_CREATE;
        cr.server_create = &c;
        a = job_new(&ping);
        b = job_new(&cr);
        a->user = strdup("a");          /* the job owns user and frees it */
        b->user = strdup("b");

        /* the thread migrates an empty database itself */
        assert_int_equal(store_new(zctx, &f->cfg, &s), 0);
        assert_int_equal(store_submit(s, a), 0);
        assert_int_equal(store_submit(s, b), 0);
        while (seen != 3) {
                got = thread_wait(s, &fatal, 10000);
                assert_int_equal(fatal, 0);
                assert_non_null(got);
                assert_non_null(got->reply);
                expect(got, LSC__STATUS__OK, NULL);
                if (strcmp(got->user, "b") == 0) {
                        assert_string_equal(only_server(got)->spec->name, "web1");
                        seen |= 2;
                } else {
                        assert_string_equal(got->user, "a");
                        seen |= 1;
                }
                store_job_free(got);
        }
        assert_true(store_ready(s));
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers"), 1);

        /* destroy with work still queued frees it */
        for (int i = 0; i < 5; i++)
                assert_int_equal(store_submit(s, job_new(&ping)), 0);
        store_destroy(&s);
        assert_null(s);
        store_destroy(&s);
        zmq_ctx_term(zctx);
}

static void store_thread_reports_a_newer_schema_as_fatal(void **state)
{
        struct fx *f = *state;
        void *zctx = zmq_ctx_new();
        struct store *s = NULL;
        Lsc__Request ping = LSC__REQUEST__INIT;
        Lsc__Ping pg = LSC__PING__INIT;
        struct store_job *got;
        int fatal;

        sql_ok(f->pg, "CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL, "
                      "applied_at timestamptz NOT NULL DEFAULT now())");
        sql_ok(f->pg, "INSERT INTO schema_version (version, name) VALUES (9999, 'future')");
        assert_int_equal(store_new(zctx, &f->cfg, &s), 0);
        lsc_err_clear();
        got = thread_wait(s, &fatal, 10000);
        assert_null(got);
        assert_int_equal(fatal, 1);
        assert_non_null(strstr(lsc_err_msg(-EPROTO), "database schema version 9999 is newer than this lscd"));
        assert_false(store_ready(s));

        ping.op_case = LSC__REQUEST__OP_PING;
        ping.ping = &pg;
        assert_int_equal(store_submit(s, job_new(&ping)), 0);
        got = thread_wait(s, &fatal, 10000);
        assert_non_null(got);
        expect(got, LSC__STATUS__ERR_UNAVAILABLE, "newer than this lscd");
        store_job_free(got);
        store_destroy(&s);
        zmq_ctx_term(zctx);
}

static void store_thread_answers_unavailable_within_the_budget(void **state)
{
        void *zctx = zmq_ctx_new();
        struct store *s = NULL;
        struct store_config cfg = { .job_budget_us = 300000 };
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__ServerList sl = LSC__SERVER_LIST__INIT;
        struct store_job *got;
        char conninfo[256];
        int fd = socket(AF_INET, SOCK_STREAM, 0), fatal;
        int64_t t0;

        /* a port nobody listens on */
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
        close(fd);
        snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d user=postgres dbname=x", ntohs(a.sin_port));
        cfg.conninfo = conninfo;
        assert_int_equal(store_new(zctx, &cfg, &s), 0);
        r.op_case = LSC__REQUEST__OP_SERVER_LIST;
        r.server_list = &sl;
        t0 = lsc_now_us();
        assert_int_equal(store_submit(s, job_new(&r)), 0);
        got = thread_wait(s, &fatal, 5000);
        assert_non_null(got);
        assert_true(lsc_now_us() - t0 < 2000000);
        expect(got, LSC__STATUS__ERR_UNAVAILABLE, "database unavailable: ");
        assert_false(store_ready(s));
        store_job_free(got);
        store_destroy(&s);
        zmq_ctx_term(zctx);
}

/* with-pg's cluster, stopped and started by its own helpers */
static void cluster(const char *action)
{
        const char *lib = getenv("LSC_TEST_LIB"), *dir = getenv("LSC_TEST_PGDIR"),
                   *port = getenv("LSC_TEST_PGPORT");
        char cmd[2048];

        assert_non_null(lib);
        assert_non_null(dir);
        assert_non_null(port);
        snprintf(cmd, sizeof(cmd), "bash -c '. \"%s/pg.sh\" && %s \"%s\" %s'", lib, action, dir,
                 !strcmp(action, "pg_start") ? port : "fast");
        assert_int_equal(system(cmd), 0);
}

static void *start_later(void *arg)
{
        usleep(1000000);
        cluster("pg_start");
        return NULL;
}

static void store_thread_rides_out_a_postgres_restart(void **state)
{
        struct fx *f = *state;
        struct store_config cfg = f->cfg;
        void *zctx = zmq_ctx_new();
        struct store *s = NULL;
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__ServerCreate c = LSC__SERVER_CREATE__INIT;
        Lsc__ServerSpec sp = spec_of("web1");
        struct store_job *got;
        pthread_t starter;
        int fatal;

        cfg.job_budget_us = 20 * 1000000LL;
        c.spec = &sp;
        r.op_case = LSC__REQUEST__OP_SERVER_CREATE;
        r.server_create = &c;
        assert_int_equal(store_new(zctx, &cfg, &s), 0);
        for (int i = 0; i < 100 && !store_ready(s); i++)
                usleep(50000);
        assert_true(store_ready(s));

        /* down, a request arrives, and PostgreSQL comes back within its budget */
        cluster("pg_stop");
        pthread_create(&starter, NULL, start_later, NULL);
        assert_int_equal(store_submit(s, job_new(&r)), 0);
        got = thread_wait(s, &fatal, 30000);
        pthread_join(starter, NULL);
        assert_non_null(got);
        expect(got, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(got)->spec->name, "web1");
        store_job_free(got);
        assert_true(store_ready(s));
        store_destroy(&s);
        zmq_ctx_term(zctx);

        PQreset(admin);
        PQreset(f->pg);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM servers"), 1);
}

/* ---- placement groups ------------------------------------------------------------ */

static struct store_job *pgroup_create(struct fx *f, const char *name, const char *policy, uint32_t max)
{
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__GroupCreate g = LSC__GROUP_CREATE__INIT;

        g.name = (char *)name;
        g.policy = (char *)policy;
        g.has_max_per_host = max > 0;
        g.max_per_host = max;
        r.op_case = LSC__REQUEST__OP_GROUP_CREATE;
        r.group_create = &g;
        return run_on(f->c, &r);
}

static void pgroup_ok(struct fx *f, const char *name, const char *policy, uint32_t max)
{
        struct store_job *job = pgroup_create(f, name, policy, max);

        expect(job, LSC__STATUS__OK, NULL);
        store_job_free(job);
}

static struct store_job *pgroup_ref(struct fx *f, Lsc__Request__OpCase op, const char *name)
{
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__Ref rf = LSC__REF__INIT;

        rf.ref = (char *)name;
        r.op_case = op;
        if (op == LSC__REQUEST__OP_GROUP_GET)
                r.group_get = &rf;
        else
                r.group_delete = &rf;
        return run_on(f->c, &r);
}

static struct store_job *pgroup_list(struct fx *f)
{
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__GroupList gl = LSC__GROUP_LIST__INIT;

        r.op_case = LSC__REQUEST__OP_GROUP_LIST;
        r.group_list = &gl;
        return run_on(f->c, &r);
}

/* server edit --group NAME (NULL: --group none) */
static struct store_job *pgroup_join(struct fx *f, const char *server, const char *group)
{
        Lsc__ServerEdit e = LSC__SERVER_EDIT__INIT;
        Lsc__ServerSpec s = LSC__SERVER_SPEC__INIT;

        e.ref = (char *)server;
        e.spec = &s;
        s.group = (char *)group;
        e.has_clear_group = e.clear_group = !group;
        return edit(f, &e);
}

static void placement_group_create_get_list_and_refusals(void **state)
{
        struct fx *f = *state;
        struct store_job *job;
        const Lsc__Group *g;
        long long events;

        job = pgroup_create(f, "web", NULL, 0);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_groups, 1);
        g = job->reply->groups[0];
        assert_string_equal(g->name, "web");
        assert_string_equal(g->policy, "anti-affinity");
        assert_true(g->has_max_per_host);
        assert_int_equal(g->max_per_host, 1);
        assert_int_equal(g->n_members, 0);
        assert_true(g->created_at > 0);
        store_job_free(job);
        pgroup_ok(f, "db", "anti-affinity", 3);
        pgroup_ok(f, "cache", "affinity", 0);
        events = sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'group.create'");
        assert_int_equal(events, 3);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'group.create' "
                                          "AND detail->>'name' = 'db' AND detail->>'max_per_host' = '3' "
                                          "AND server_uuid IS NULL AND server_name IS NULL"), 1);

        job = pgroup_list(f);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_groups, 3);
        assert_string_equal(job->reply->groups[0]->name, "cache");
        assert_string_equal(job->reply->groups[0]->policy, "affinity");
        assert_false(job->reply->groups[0]->has_max_per_host);   /* affinity: no limit */
        assert_string_equal(job->reply->groups[1]->name, "db");
        assert_int_equal(job->reply->groups[1]->max_per_host, 3);
        assert_string_equal(job->reply->groups[2]->name, "web");
        store_job_free(job);

        /* members, sorted by name */
        for (const char *const *n = (const char *const[]){ "web2", "web1", NULL }; *n; n++) {
                Lsc__ServerSpec s = spec_of(*n);
                s.group = "web";
                job = create_spec(f, &s);
                expect(job, LSC__STATUS__OK, NULL);
                assert_string_equal(only_server(job)->group, "web");
                store_job_free(job);
        }
        job = pgroup_ref(f, LSC__REQUEST__OP_GROUP_GET, "web");
        expect(job, LSC__STATUS__OK, NULL);
        g = job->reply->groups[0];
        assert_int_equal(g->n_members, 2);
        assert_string_equal(g->members[0], "web1");
        assert_string_equal(g->members[1], "web2");
        store_job_free(job);

        /* refusals change nothing */
        job = pgroup_create(f, "web", "affinity", 0);
        expect(job, LSC__STATUS__ERR_EXISTS, "group web already exists");
        store_job_free(job);
        job = pgroup_create(f, "x", "affinity", 2);
        expect(job, LSC__STATUS__ERR_INVALID, "anti-affinity groups only");
        store_job_free(job);
        job = pgroup_create(f, "x", "together", 0);
        expect(job, LSC__STATUS__ERR_INVALID, "together");
        store_job_free(job);
        job = pgroup_create(f, "x", NULL, 1000001);
        expect(job, LSC__STATUS__ERR_INVALID, "1000001");
        store_job_free(job);
        job = pgroup_create(f, "none", NULL, 0);
        expect(job, LSC__STATUS__ERR_INVALID, "reserved");
        store_job_free(job);
        job = pgroup_create(f, "Bad_Name", NULL, 0);
        expect(job, LSC__STATUS__ERR_INVALID, "group name");
        store_job_free(job);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM groups"), 3);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'group.create'"), events);
        job = pgroup_ref(f, LSC__REQUEST__OP_GROUP_GET, "nope");
        expect(job, LSC__STATUS__ERR_NOTFOUND, "group nope not found");
        store_job_free(job);
}

static void placement_group_delete_is_refused_while_it_has_members(void **state)
{
        struct fx *f = *state;
        struct store_job *job;
        struct counts before, after;
        Lsc__ServerSpec s = spec_of("web1");

        pgroup_ok(f, "web", NULL, 0);
        pgroup_ok(f, "db", NULL, 0);
        s.group = "web";
        job = create_spec(f, &s);
        expect(job, LSC__STATUS__OK, NULL);
        store_job_free(job);

        before = counts_of(f);
        job = pgroup_ref(f, LSC__REQUEST__OP_GROUP_DELETE, "web");
        expect(job, LSC__STATUS__ERR_CONFLICT, "group web still has 1 member (web1)");
        store_job_free(job);
        after = counts_of(f);
        same_counts(&before, &after);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM groups"), 2);

        /* moving to another group: the edit event records it */
        job = pgroup_join(f, "web1", "db");
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(job)->group, "db");
        store_job_free(job);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'server.edit' "
                                          "AND detail->'group'->>'from' = 'web' "
                                          "AND detail->'group'->>'to' = 'db'"), 1);
        job = pgroup_ref(f, LSC__REQUEST__OP_GROUP_DELETE, "web");
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(job->reply->groups[0]->name, "web");
        store_job_free(job);

        /* --group none leaves it; then db can go too */
        job = pgroup_join(f, "web1", NULL);
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(job)->group, "");
        store_job_free(job);
        job = pgroup_ref(f, LSC__REQUEST__OP_GROUP_DELETE, "db");
        expect(job, LSC__STATUS__OK, NULL);
        store_job_free(job);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM groups"), 0);
        assert_int_equal(sql_count(f->pg, "SELECT count(*) FROM events WHERE kind = 'group.delete'"), 2);
        job = pgroup_ref(f, LSC__REQUEST__OP_GROUP_DELETE, "db");
        expect(job, LSC__STATUS__ERR_NOTFOUND, "group db not found");
        store_job_free(job);
}

static void server_with_unknown_group_is_refused_and_changes_nothing(void **state)
{
        struct fx *f = *state;
        struct store_job *job;
        struct counts before, after;
        Lsc__ServerSpec s = spec_of("web1");
        Lsc__ServerEdit e = LSC__SERVER_EDIT__INIT;
        Lsc__ServerSpec es = LSC__SERVER_SPEC__INIT;

        pool_ok(f, "lan", "10.0.0.0/24", NULL);
        pgroup_ok(f, "web", NULL, 0);
        before = counts_of(f);
        s.group = "nope";
        job = create_spec(f, &s);
        expect(job, LSC__STATUS__ERR_NOTFOUND, "group nope not found");
        store_job_free(job);
        after = counts_of(f);
        same_counts(&before, &after);

        s.group = "web";
        job = create_spec(f, &s);
        expect(job, LSC__STATUS__OK, NULL);
        store_job_free(job);
        before = counts_of(f);
        job = pgroup_join(f, "web1", "nope");
        expect(job, LSC__STATUS__ERR_NOTFOUND, "group nope not found");
        store_job_free(job);
        /* joining and leaving at once is a contradiction */
        e.ref = "web1";
        e.spec = &es;
        es.group = "web";
        e.has_clear_group = e.clear_group = 1;
        job = edit(f, &e);
        expect(job, LSC__STATUS__ERR_INVALID, "both join");
        store_job_free(job);
        after = counts_of(f);
        same_counts(&before, &after);
        job = ref_op(f, LSC__REQUEST__OP_SERVER_GET, "web1");
        expect(job, LSC__STATUS__OK, NULL);
        assert_string_equal(only_server(job)->group, "web");
        store_job_free(job);
}

/* ---- lists come in pages -------------------------------------------------------- */

/* One page of a server or host list (after NULL: from the start; limit 0: lscd's). */
static struct store_job *list_page(struct fx *f, Lsc__Request__OpCase op, const char *after,
                                   uint32_t limit, bool unpaged)
{
        Lsc__Request r = LSC__REQUEST__INIT;
        Lsc__ServerList sl = LSC__SERVER_LIST__INIT;
        Lsc__HostList hl = LSC__HOST_LIST__INIT;
        struct store_job *job;

        r.op_case = op;
        sl.after = hl.after = (char *)after;
        sl.has_limit = hl.has_limit = limit > 0;
        sl.limit = hl.limit = limit;
        if (op == LSC__REQUEST__OP_SERVER_LIST)
                r.server_list = &sl;
        else
                r.host_list = &hl;
        job = job_new(&r);
        job->unpaged = unpaged;
        store_run(f->c, job, lsc_now_us() + BUDGET_US);
        assert_non_null(job->reply);
        return job;
}

static size_t page_rows(const Lsc__Reply *rp, const char ***ret_names)
{
        static const char *names[256];
        size_t n = rp->n_servers ? rp->n_servers : rp->n_hosts;

        assert_true(n <= ARRAY_SIZE(names));
        for (size_t i = 0; i < n; i++)
                names[i] = rp->n_servers ? rp->servers[i]->spec->name : rp->hosts[i]->name;
        *ret_names = names;
        return n;
}

/* Pages through a whole list; returns the names joined by ',' (the caller frees) and
 * checks every page: at most limit rows, under the envelope limit, next = its last row. */
static char *list_all(struct fx *f, Lsc__Request__OpCase op, uint32_t limit, int *ret_pages)
{
        char *all = calloc(1, 1), *after = NULL;
        size_t len = 0;
        int pages = 0;

        for (;;) {
                struct store_job *job = list_page(f, op, after, limit, false);
                Lsc__Envelope env = LSC__ENVELOPE__INIT;
                const char **names;
                size_t n;

                expect(job, LSC__STATUS__OK, NULL);
                env.body_case = LSC__ENVELOPE__BODY_REPLY;
                env.reply = job->reply;
                assert_true(lsc__envelope__get_packed_size(&env) < LSC_WIRE_MAX_FRAME);
                n = page_rows(job->reply, &names);
                assert_true(limit == 0 || n <= limit);
                pages++;
                for (size_t i = 0; i < n; i++) {
                        all = realloc(all, len + strlen(names[i]) + 2);
                        len += (size_t)sprintf(all + len, "%s%s", len ? "," : "", names[i]);
                }
                free(after);
                after = NULL;
                if (job->reply->next && job->reply->next[0]) {
                        assert_true(n > 0);
                        assert_string_equal(job->reply->next, names[n - 1]);
                        after = strdup(job->reply->next);
                }
                store_job_free(job);
                if (!after)
                        break;
                assert_true(pages < 1000);
        }
        *ret_pages = pages;
        return all;
}

static char *sql_text(PGconn *pg, const char *sql)
{
        PGresult *res = PQexec(pg, sql);
        char *s;

        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
                fail_msg("%s: %s", sql, PQerrorMessage(pg));
        s = strdup(PQgetvalue(res, 0, 0));
        PQclear(res);
        return s;
}

static void lists_come_in_complete_ordered_pages(void **state)
{
        static const char *const servers[] = { "s5", "a1", "s10", "m-2", "b7", "z9", "c3" };
        static const char *const hosts[] = { "h4", "h2", "h5", "h1", "h3" };
        struct fx *f = *state;
        char *want, *got, *first;
        struct store_job *job;
        int pages;

        for (size_t i = 0; i < ARRAY_SIZE(servers); i++)
                create_ok(f, servers[i], NULL, NULL, NULL);
        for (size_t i = 0; i < ARRAY_SIZE(hosts); i++)
                register_host(f, hosts[i], 8, 16384);

        /* 7 servers by 3: 3 + 3 + 1, in the database's order, each once, next empty at the end */
        want = sql_text(f->pg, "SELECT string_agg(name, ',' ORDER BY name) FROM servers");
        got = list_all(f, LSC__REQUEST__OP_SERVER_LIST, 3, &pages);
        assert_string_equal(got, want);
        assert_int_equal(pages, 3);
        free(got);
        /* a last page that is exactly full says so: no empty page after it */
        got = list_all(f, LSC__REQUEST__OP_SERVER_LIST, 7, &pages);
        assert_string_equal(got, want);
        assert_int_equal(pages, 1);
        free(got);
        /* lscd's default page holds them all */
        got = list_all(f, LSC__REQUEST__OP_SERVER_LIST, 0, &pages);
        assert_string_equal(got, want);
        assert_int_equal(pages, 1);
        free(got);
        /* lscd's own (the DHCP file) gets every row whatever the limit */
        job = list_page(f, LSC__REQUEST__OP_SERVER_LIST, NULL, 1, true);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_servers, ARRAY_SIZE(servers));
        assert_true(!job->reply->next || !job->reply->next[0]);
        store_job_free(job);
        /* a row created behind the cursor is not seen, one ahead of it is: no page
         * is skipped or repeated */
        job = list_page(f, LSC__REQUEST__OP_SERVER_LIST, NULL, 3, false);
        first = strdup(job->reply->next);
        store_job_free(job);
        create_ok(f, "a0", NULL, NULL, NULL);
        create_ok(f, "zz", NULL, NULL, NULL);
        job = list_page(f, LSC__REQUEST__OP_SERVER_LIST, first, 100, false);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_servers, 5);
        assert_string_equal(job->reply->servers[4]->spec->name, "zz");
        assert_true(!job->reply->next || !job->reply->next[0]);
        store_job_free(job);
        free(first);
        free(want);

        /* 5 hosts by 2: 2 + 2 + 1 */
        want = sql_text(f->pg, "SELECT string_agg(name, ',' ORDER BY name) FROM hosts");
        assert_string_equal(want, "h1,h2,h3,h4,h5");
        got = list_all(f, LSC__REQUEST__OP_HOST_LIST, 2, &pages);
        assert_string_equal(got, want);
        assert_int_equal(pages, 3);
        free(got);
        job = list_page(f, LSC__REQUEST__OP_HOST_LIST, "h5", 2, false);
        expect(job, LSC__STATUS__OK, NULL);
        assert_int_equal(job->reply->n_hosts, 0);
        assert_true(!job->reply->next || !job->reply->next[0]);
        store_job_free(job);
        free(want);
}

static void list_page_size_and_cursor_are_checked(void **state)
{
        struct fx *f = *state;
        struct store_job *job;

        job = list_page(f, LSC__REQUEST__OP_SERVER_LIST, NULL, 5001, false);
        expect(job, LSC__STATUS__ERR_INVALID, "page size 5001 out of range: 1-5000");
        store_job_free(job);
        job = list_page(f, LSC__REQUEST__OP_HOST_LIST, NULL, 4000000000u, false);
        expect(job, LSC__STATUS__ERR_INVALID, "out of range");
        store_job_free(job);
        job = list_page(f, LSC__REQUEST__OP_SERVER_LIST, "Not a name!", 3, false);
        expect(job, LSC__STATUS__ERR_INVALID, "server list cursor");
        store_job_free(job);
        job = list_page(f, LSC__REQUEST__OP_HOST_LIST, "-x", 0, false);
        expect(job, LSC__STATUS__ERR_INVALID, "host list cursor");
        store_job_free(job);
        job = list_page(f, LSC__REQUEST__OP_SERVER_LIST, NULL, 5000, false);
        expect(job, LSC__STATUS__OK, NULL);
        store_job_free(job);
}

/* Rows of 64 long labels (~8 KiB each): a page stops short of the envelope limit. */
static void list_page_stops_before_the_envelope_limit(void **state)
{
        static const char fat[] =
                "(SELECT jsonb_object_agg(lpad(k::text, 63, 'k'), repeat('v', 63))"
                " FROM generate_series(1, 64) k)";
        struct fx *f = *state;
        char name[16], sql[256], *want, *got;
        int pages;

        for (int i = 0; i < 120; i++) {
                snprintf(name, sizeof(name), "fat%03d", i);
                create_ok(f, name, NULL, NULL, NULL);
                register_host(f, name, 8, 16384);
        }
        snprintf(sql, sizeof(sql), "UPDATE servers SET labels = %s", fat);
        sql_ok(f->pg, sql);
        snprintf(sql, sizeof(sql), "UPDATE hosts SET labels = %s", fat);
        sql_ok(f->pg, sql);

        want = sql_text(f->pg, "SELECT string_agg(name, ',' ORDER BY name) FROM servers");
        got = list_all(f, LSC__REQUEST__OP_SERVER_LIST, 5000, &pages);
        assert_string_equal(got, want);
        assert_int_equal(pages, 2);
        free(got);
        got = list_all(f, LSC__REQUEST__OP_HOST_LIST, 5000, &pages);
        assert_string_equal(got, want);
        assert_int_equal(pages, 2);
        free(got);
        free(want);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
#define T_EMPTY(name) cmocka_unit_test_setup_teardown(name, setup_empty, teardown)
        const struct CMUnitTest tests[] = {
                T_EMPTY(migrations_apply_and_are_recorded),
                T_EMPTY(migrating_twice_is_a_noop),
                T_EMPTY(newer_database_schema_is_refused),
                T(server_create_fills_defaults_and_allocates_addresses),
                T(server_create_takes_every_given_field),
                T(server_get_by_name_or_uuid_and_list_by_name),
                T(server_edit_changes_only_what_is_given),
                T(server_edit_refusals_change_nothing),
                T(server_delete_frees_addresses_and_keeps_the_event),
                T(duplicate_name_is_refused_and_changes_nothing),
                T(duplicate_mac_is_refused_and_changes_nothing),
                T(duplicate_ip_is_refused_and_changes_nothing),
                T(bad_addresses_are_refused_and_change_nothing),
                T(bad_sizes_and_names_are_refused_and_change_nothing),
                T(ip_allocation_skips_network_and_gateway_and_takes_the_lowest_free),
                T(full_pool_is_a_conflict_and_changes_nothing),
                T(pool_choice_when_no_ip_is_given),
                T(pool_create_get_list_and_refusals),
                T(pool_delete_is_refused_while_addresses_are_allocated),
                T(placement_group_create_get_list_and_refusals),
                T(placement_group_delete_is_refused_while_it_has_members),
                T(server_with_unknown_group_is_refused_and_changes_nothing),
                T(bind_commits_what_fits_and_never_overbooks),
                T(bind_at_a_stale_generation_changes_nothing),
                T(transitions_apply_only_at_their_generation_and_give_capacity_back),
                cmocka_unit_test_setup_teardown(mayfly_binding_sets_its_death_and_a_turnover_is_compare_and_set,
                                                setup_mayfly, teardown),
                cmocka_unit_test_setup_teardown(renew_and_postpone_move_a_death_and_are_counted, setup_mayfly,
                                                teardown),
                cmocka_unit_test_setup_teardown(lifetime_removed_by_edit_cancels_the_death, setup_mayfly,
                                                teardown),
                T(start_of_many_servers_is_all_or_nothing),
                T(transition_batch_checks_each_generation_and_gives_capacity_back),
                T(drain_moves_what_is_bound_and_remove_needs_an_empty_host),
                T(load_gives_binding_servers_whole_and_the_others_what_the_view_needs),
                T(mac_auto_allocation_keeps_the_prefix),
                T(events_are_written_with_each_change),
                T(concurrent_creates_never_share_an_ip),
                T(next_job_succeeds_after_the_backend_is_terminated),
                T(commit_that_happened_but_was_not_acknowledged_is_not_repeated),
                T(commit_that_never_arrived_is_run_again),
                T(lists_come_in_complete_ordered_pages),
                T(list_page_size_and_cursor_are_checked),
                T(list_page_stops_before_the_envelope_limit),
                T_EMPTY(store_thread_runs_jobs_and_returns_them),
                T_EMPTY(store_thread_reports_a_newer_schema_as_fatal),
                T_EMPTY(store_thread_answers_unavailable_within_the_budget),
                /* last: it restarts the cluster under everyone */
                T(store_thread_rides_out_a_postgres_restart),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
