/* Desired toward observed. The loop's view (hosts, capacity, who runs where) is rebuilt
 * from PostgreSQL at start and kept current; a decision is made in memory (sched.c),
 * committed by compare-and-set in the store, and only then sent to an agent. A stale
 * instance (an older generation, or one this lscd did not bind there) is destroyed. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api.h"
#include "dhcp.h"
#include "err.h"
#include "fence.h"
#include "liveness.h"
#include "load.h"
#include "log.h"
#include "loop.h"
#include "reconcile.h"
#include "util.h"
#include "validate.h"

#define PLACE_BATCH 1000
#define TX_BATCH 2000                    /* transitions per store transaction */
#define PLACE_RETRY_US 2000000           /* nothing fitted: look again this much later */
#define RESEND_US 10000000               /* a command without an outcome is sent again */
#define TURNOVER_EVERY_US 500000         /* due deaths are looked for this often */
#define FORECAST_EVERY_US 10000000       /* hosts' forecasts refreshed from their history */
#define EARLY_EVERY_US 10000000          /* hot hosts looked for: early retirements */
#define TURNOVER_RETRY_US 1000000        /* a death the store did not start: again after this */

const char *const reconcile_state_names[RECONCILE_STATE_COUNT] = {
        "defined", "pending", "binding", "running", "stopping", "lost", "fencing", "failed",
};
const char *const reconcile_desired_names[RECONCILE_DESIRED_COUNT] = { "running", "stopped", "deleted" };

int reconcile_init(struct reconcile *rc, struct liveness *live, uint64_t seed)
{
        memset(rc, 0, sizeof(*rc));
        rc->live = live;
        sched_rng_seed(&rc->rng, seed);
        rc->bind_timeout_us = 60000000;
        return sched_view_new(&rc->view);
}

void reconcile_fini(struct reconcile *rc)
{
        HASH_CLEAR(hh, rc->by_uuid);
        for (size_t i = 0; i < rc->n_servers; i++) {
                free(rc->servers[i]->why);
                free(rc->servers[i]->row);
                free(rc->servers[i]);
        }
        free(rc->servers);
        free(rc->queue);
        free(rc->groups);
        free(rc->running_on);
        free(rc->flight_groups);
        free(rc->due);
        for (size_t i = 0; i < rc->n_tx; i++)
                lsc__transition__free_unpacked(rc->tx[i], NULL);
        free(rc->tx);
        sched_view_free(&rc->view);
        memset(rc, 0, sizeof(*rc));
}

/* ---- the server table ------------------------------------------------------ */

static struct reconcile_server *find(const struct reconcile *rc, const char *uuid)
{
        struct reconcile_server *s = NULL;

        if (uuid)
                HASH_FIND_STR(rc->by_uuid, uuid, s);
        return s;
}

/* Keeps running_on (what each host should report) in step with s's record, so a
 * heartbeat can tell cheaply whether an instance has vanished. */
static void recount(struct reconcile *rc, struct reconcile_server *s, bool gone)
{
        bool want = !gone && s->state == RECONCILE_RUNNING && s->host >= 0;

        if (s->counted && (!want || s->counted_host != s->host)) {
                rc->running_on[s->counted_host]--;
                s->counted = false;
        }
        if (want && !s->counted) {
                if ((size_t)s->host >= rc->n_running_on) {
                        size_t n = (size_t)s->host + 64;
                        uint32_t *v = realloc(rc->running_on, n * sizeof(*v));
                        if (!v)
                                return;
                        memset(v + rc->n_running_on, 0, (n - rc->n_running_on) * sizeof(*v));
                        rc->running_on = v;
                        rc->n_running_on = n;
                }
                rc->running_on[s->host]++;
                s->counted = true;
                s->counted_host = s->host;
        }
}

static void resv_release(struct reconcile *rc, struct reconcile_server *s);

static void forget(struct reconcile *rc, const char *uuid)
{
        struct reconcile_server *s = find(rc, uuid);

        if (!s)
                return;
        resv_release(rc, s);
        recount(rc, s, true);
        HASH_DEL(rc->by_uuid, s);
        /* the last one takes its place in the array */
        rc->servers[s->idx] = rc->servers[rc->n_servers - 1];
        rc->servers[s->idx]->idx = s->idx;
        rc->n_servers--;
        free(s->why);
        free(s->row);
        free(s);
}

static struct reconcile_server *track(struct reconcile *rc, const char *uuid)
{
        struct reconcile_server *s = find(rc, uuid);

        if (s)
                return s;
        if (rc->n_servers == rc->cap_servers) {
                size_t cap = rc->cap_servers ? rc->cap_servers * 2 : 256;
                struct reconcile_server **n = realloc(rc->servers, cap * sizeof(*n));
                if (!n)
                        return NULL;
                rc->servers = n;
                rc->cap_servers = cap;
        }
        if (!(s = calloc(1, sizeof(*s))))
                return NULL;
        snprintf(s->uuid, sizeof(s->uuid), "%s", uuid);
        s->host = -1;
        s->resv_host = -1;
        s->idx = rc->n_servers;
        rc->servers[rc->n_servers++] = s;
        HASH_ADD_STR(rc->by_uuid, uuid, s);
        return s;
}

static void enqueue(struct reconcile *rc, struct reconcile_server *s)
{
        if (s->queued)
                return;
        if (rc->n_queue == rc->cap_queue) {
                size_t cap = rc->cap_queue ? rc->cap_queue * 2 : 256;
                char (*n)[37] = realloc(rc->queue, cap * sizeof(*n));
                if (!n)
                        return;          /* picked up again by the next load */
                rc->queue = n;
                rc->cap_queue = cap;
        }
        snprintf(rc->queue[rc->n_queue++], 37, "%s", s->uuid);
        s->queued = true;
}


/* The rest of s's row (spec, migrate_from, migrate_to); NULL when out of memory.
 * Freed with lsc__server__free_unpacked. */
static Lsc__Server *row_unpack(const struct reconcile_server *s)
{
        static const uint8_t none;

        return lsc__server__unpack(NULL, s->row_len, s->row ? s->row : &none);
}

/* For log lines: s's name, or "?". */
static const char *name_of(const struct reconcile_server *s, char *buf, size_t len)
{
        Lsc__Server *row = row_unpack(s);

        snprintf(buf, len, "%s", row && row->spec && row->spec->name ? row->spec->name : "?");
        lsc__server__free_unpacked(row, NULL);
        return buf;
}

/* ---- the view ------------------------------------------------------------- */

static struct reconcile_group *group_find(const struct reconcile *rc, const char *name)
{
        for (size_t i = 0; name && name[0] && i < rc->n_groups; i++)
                if (strcmp(rc->groups[i].name, name) == 0)
                        return &rc->groups[i];
        return NULL;
}

/* The group called name, made (not yet known: no policy) when no reply named it yet;
 * NULL when out of memory. */
static struct reconcile_group *group_get(struct reconcile *rc, const char *name)
{
        struct reconcile_group *g = group_find(rc, name), *ng;

        if (g)
                return g;
        ng = realloc(rc->groups, (rc->n_groups + 1) * sizeof(*ng));
        if (!ng)
                return NULL;
        rc->groups = ng;
        g = &rc->groups[rc->n_groups++];
        memset(g, 0, sizeof(*g));
        snprintf(g->name, sizeof(g->name), "%s", name);
        g->id = rc->n_groups;            /* ids are never reused: names are */
        return g;
}

void reconcile_observe_groups(struct loop *l, Lsc__Group *const *v, size_t n)
{
        struct reconcile *rc = &l->reconcile;

        for (size_t i = 0; i < n; i++) {
                struct reconcile_group *g;
                int policy = lsc_enum_parse(sched_policy_names, SCHED_POLICY_COUNT, v[i]->policy);

                if (!v[i]->name || !v[i]->name[0])
                        continue;        /* no server can name it */
                if (!(g = group_get(rc, v[i]->name)))
                        return;
                g->known = true;
                g->policy = policy < 0 ? SCHED_POLICY_ANTI_AFFINITY : (enum sched_policy)policy;
                g->max_per_host = v[i]->has_max_per_host ? v[i]->max_per_host : 0;
        }
}

/* Only a group a reply described has a policy to place by. */
static void request_group(struct sched_request *rq, const struct reconcile_group *g)
{
        if (!g || !g->known)
                return;
        rq->group = g->id;
        rq->policy = g->policy;
        rq->max_per_host = g->policy == SCHED_POLICY_AFFINITY ? 0 : g->max_per_host;
        rq->group_name = g->name;
}

/* Required labels and a migration's hosts, from a row. */
static void request_constraints(struct reconcile *rc, const Lsc__Server *sv, struct sched_request *rq)
{
        const Lsc__ServerSpec *sp = sv->spec;

        /* required host labels, as the view's label ids (a label no host has gets an id
         * of its own, so nothing matches it: the reason says which) */
        rq->nlabels = 0;
        for (size_t i = 0; sp && i < sp->n_require_labels && i < SCHED_LABELS_MAX; i++)
                if (sched_label_intern(rc->view, sp->require_labels[i]->key, sp->require_labels[i]->value,
                                       &rc->req_ids[rq->nlabels]) == 0)
                        rq->nlabels++;
        rq->labels = rc->req_ids;
        /* a migration never lands where it left, and goes where --to said */
        if (sv->migrate_from && sv->migrate_from[0]) {
                const struct liveness_host *h = liveness_find(rc->live, sv->migrate_from);
                if (h && h->view >= 0) {
                        rq->has_exclude = true;
                        rq->exclude_host = (uint32_t)h->view;
                }
        }
        if (sv->migrate_to && sv->migrate_to[0]) {
                const struct liveness_host *h = liveness_find(rc->live, sv->migrate_to);
                rq->has_to = true;
                rq->to_host = h && h->view >= 0 ? (uint32_t)h->view : UINT32_MAX;
        }
}

/* The request for a row that is not tracked (a plan). */
static void request_of_row(struct reconcile *rc, const Lsc__Server *sv, struct sched_request *rq)
{
        const Lsc__ServerSpec *sp = sv->spec;
        int kind = sp && sp->kind ? lsc_enum_parse(lsc_kind_names, LSC_KIND_COUNT, sp->kind) : 0;

        memset(rq, 0, sizeof(*rq));
        rq->kind = kind < 0 ? LSC_KIND_VM : (enum lsc_kind)kind;
        if (sp) {
                rq->need.vcpus = sp->vcpus;
                rq->need.memory_mib = sp->memory_mib;
                rq->need.disk_gib = sp->disk_gib;
        }
        request_group(rq, group_find(rc, sv->group));
        request_constraints(rc, sv, rq);
}

/* What s needs and its group: all that the view's usage counts. */
static void request_base(struct reconcile *rc, const struct reconcile_server *s, struct sched_request *rq)
{
        memset(rq, 0, sizeof(*rq));
        rq->kind = (enum lsc_kind)s->kind;
        rq->need.vcpus = s->vcpus;
        rq->need.memory_mib = s->memory_mib;
        rq->need.disk_gib = s->disk_gib;
        if (s->group)
                request_group(rq, &rc->groups[s->group - 1]);
        rq->labels = rc->req_ids;
}

/* s's whole request, for a placement; -ENOMEM when its row cannot be unpacked. */
static int request_of(struct reconcile *rc, const struct reconcile_server *s, struct sched_request *rq)
{
        Lsc__Server *row;

        request_base(rc, s, rq);
        if (!s->constrained)
                return 0;
        if (!(row = row_unpack(s)))
                return -ENOMEM;
        request_constraints(rc, row, rq);
        lsc__server__free_unpacked(row, NULL);
        return 0;
}

/* Counts (or stops counting) s on its host in the view. */
/* Die-off awareness (sched.h): the request's clock, its planned death (expires, unix
 * s; 0: none) and its expected load from the identity's measured history (load.c), or
 * none known (the scheduler's default share of its vCPUs). */
static void request_load(struct reconcile *rc, const struct reconcile_server *s, struct sched_request *rq,
                         int64_t expires, bool rebirth)
{
        const struct load_hist *h = rc->load ? load_identity_find(rc->load, s->uuid) : NULL;
        uint32_t mean = 0;
        int n;

        rq->now = lsc_wall_us() / 1000000;
        rq->expires_at = expires;
        rq->rebirth = rebirth;
        if (h && (n = load_hist_forecast_m(h, rq->now, rc->req_profile, &mean)) >= 0) {
                rq->load_profile_m = rc->req_profile;
                rq->load_m = mean;
                rq->load_known = n == LOAD_HOURS;
        }
}

/* A new binding's planned death: its lifetime from now (the store adds the jitter). */
static int64_t planned_death(const struct reconcile_server *s)
{
        return s->lifetime_s ? lsc_wall_us() / 1000000 + s->lifetime_s : 0;
}

static void view_apply(struct reconcile *rc, struct reconcile_server *s, int64_t host)
{
        struct sched_request rq;

        if (s->applied || host < 0)
                return;
        request_base(rc, s, &rq);
        request_load(rc, s, &rq, s->expires_s ? s->expires_s : planned_death(s), false);
        if (sched_apply(rc->view, &rq, (uint32_t)host) == 0) {
                s->applied = true;
                s->host = (int32_t)host;
                s->applied_group = (uint32_t)rq.group;
                s->applied_expires_s = rq.expires_at;
        }
}

static void view_unapply(struct reconcile *rc, struct reconcile_server *s)
{
        struct sched_request rq;

        if (s->applied && s->host >= 0) {
                request_base(rc, s, &rq);
                /* what apply counted, whatever the record says now: the group, and the death
                 * on the host's calendar (the load may have moved: the forecasts are
                 * refreshed from measurements anyway) */
                request_load(rc, s, &rq, s->applied_expires_s, false);
                rq.group = s->applied_group;
                sched_unapply(rc->view, &rq, (uint32_t)s->host);
        }
        s->applied = false;
        s->host = -1;
}

/* ---- a rebirth's reservation ------------------------------------------------
 * While a turnover is under way the rebirth host holds the identity's size in the
 * view, so no other placement takes that room between the death and the rebirth.
 * It follows the record: from the death's decision until the rebirth is placed. On
 * the host the old copy still holds, that copy's capacity is the reservation until
 * its destroy is acknowledged. The rebirth host is in the row (turnover_to), so a
 * restarted lscd holds the reservation again when it loads. */

static void resv_release(struct reconcile *rc, struct reconcile_server *s)
{
        struct sched_request rq;

        if (s->resv_applied) {
                request_base(rc, s, &rq);
                rq.group = s->resv_group;
                sched_unapply(rc->view, &rq, (uint32_t)s->resv_host);
        }
        s->resv_applied = false;
        s->resv_host = -1;
}

static void resv_sync(struct reconcile *rc, struct reconcile_server *s)
{
        int32_t want = -1, to = s->turn_to ? s->turn_to->view : -1;
        struct sched_request rq;

        if (to >= 0 && s->desired == RECONCILE_WANT_RUNNING) {
                bool old_copy = s->state == RECONCILE_RUNNING || s->state == RECONCILE_STOPPING ||
                                s->state == RECONCILE_LOST;
                if (old_copy && !(s->applied && s->host == to))
                        want = to;
                else if (s->state == RECONCILE_PENDING && !s->applied)
                        want = to;       /* placed: the host it is bound to counts it instead */
        }
        if (s->resv_applied && s->resv_host != want)
                resv_release(rc, s);
        if (want >= 0 && !s->resv_applied) {
                request_base(rc, s, &rq);
                if (sched_apply(rc->view, &rq, (uint32_t)want) == 0) {
                        s->resv_applied = true;
                        s->resv_host = want;
                        s->resv_group = (uint32_t)rq.group;
                }
        }
}

static void host_filters(struct reconcile *rc, const struct liveness_host *h)
{
        struct sched_host *vh;

        if (h->view < 0 || !(vh = sched_view_host(rc->view, (uint32_t)h->view)))
                return;
        vh->up = h->state == LIVENESS_UP && h->epoch != 0;
        vh->healthy = h->healthy;
}

/* Adds a host row to the view (or refreshes its capacity and labels). */
static int view_host(struct loop *l, const Lsc__Host *row)
{
        struct reconcile *rc = &l->reconcile;
        struct liveness_host *h = liveness_get(&l->liveness, row->name);
        double ratio = row->has_alloc_ratio && row->alloc_ratio > 0 ? row->alloc_ratio : 1.0;
        struct sched_res alloc = { 0 };
        uint32_t ids[SCHED_LABELS_MAX];
        size_t n = 0;
        int kind;

        if (!h)
                return -ENOMEM;
        if (row->capacity) {
                alloc.vcpus = (uint64_t)(row->capacity->vcpus * ratio);
                alloc.memory_mib = (uint64_t)((double)row->capacity->memory_mib * ratio);
                alloc.disk_gib = row->capacity->disk_gib;
        }
        if (h->view < 0) {
                struct sched_host_spec spec = { .name = row->name, .alloc = alloc, .active = true };
                uint32_t idx;
                kind = row->kind ? lsc_enum_parse(lsc_kind_names, LSC_KIND_COUNT, row->kind) : 0;
                spec.kind = kind < 0 ? LSC_KIND_VM : (enum lsc_kind)kind;
                spec.id = ++rc->next_host_id;   /* the view's own; names are the real key */
                spec.active = !row->admin || strcmp(row->admin, "active") == 0;
                int r = sched_host_add(rc->view, &spec, &idx);
                if (r < 0)
                        return r;
                h->view = idx;
        } else {
                struct sched_host *vh = sched_view_host(rc->view, (uint32_t)h->view);
                vh->alloc = alloc;
                vh->active = !row->admin || strcmp(row->admin, "active") == 0;
        }
        for (size_t i = 0; i < row->n_labels && n < SCHED_LABELS_MAX; i++)
                if (sched_label_intern(rc->view, row->labels[i]->key, row->labels[i]->value, &ids[n]) == 0)
                        n++;
        sched_host_set_labels(rc->view, (uint32_t)h->view, ids, n);
        host_filters(rc, h);
        return 0;
}

/* ---- store jobs ------------------------------------------------------------ */

static int submit(struct loop *l, Lsc__Request *req)
{
        struct api_ctx *ctx = calloc(1, sizeof(*ctx));
        struct store_job *job = calloc(1, sizeof(*job));
        int r;

        if (!ctx || !job) {
                free(ctx);
                free(job);
                lsc__request__free_unpacked(req, NULL);
                return -ENOMEM;
        }
        ctx->origin = API_ORIGIN_RECONCILE;
        job->kind = STORE_JOB_REQUEST;
        job->request = req;
        job->actor = strdup("lscd");
        job->user = ctx;
        job->unpaged = true;             /* the DHCP file needs every server, in-process */
        if ((r = store_submit(l->store, job)) < 0) {
                store_job_free(job);
                return r;
        }
        l->inflight++;
        return 0;
}

/* Heap copies, because the store job frees its request with free_unpacked. */
static char *dup_or_empty(const char *s)
{
        return strdup(s ? s : "");
}

/* A state change of s at its generation. A deletion goes to the store alone; every
 * other change joins the batch that reconcile_flush() sends as one transaction. */
static int transition(struct loop *l, struct reconcile_server *s, const char *const *from, size_t n_from,
                      const char *to, const char *kind, const char *reason, bool release, bool failure)
{
        struct reconcile *rc = &l->reconcile;
        Lsc__Transition *t = calloc(1, sizeof(*t));
        char **fr = calloc(n_from, sizeof(char *));
        bool alone = strcmp(to, "deleted") == 0;
        Lsc__Request *req = NULL;
        int r;

        if (!t || !fr) {
                free(t);
                free(fr);
                return -ENOMEM;
        }
        lsc__transition__init(t);
        t->uuid = dup_or_empty(s->uuid);
        t->has_generation = t->has_release = t->has_failure = 1;
        t->generation = s->generation;
        for (size_t i = 0; i < n_from; i++)
                fr[i] = dup_or_empty(from[i]);
        t->from = fr;
        t->n_from = n_from;
        t->to = dup_or_empty(to);
        t->kind = dup_or_empty(kind);
        t->reason = dup_or_empty(reason);
        t->release = release;
        t->failure = failure;
        if (!alone && rc->n_tx == rc->cap_tx) {
                size_t cap = rc->cap_tx ? rc->cap_tx * 2 : 256;
                Lsc__Transition **v = realloc(rc->tx, cap * sizeof(*v));
                if (v) {
                        rc->tx = v;
                        rc->cap_tx = cap;
                }
        }
        if (alone || rc->n_tx == rc->cap_tx) {
                if (!(req = calloc(1, sizeof(*req)))) {
                        lsc__transition__free_unpacked(t, NULL);
                        return -ENOMEM;
                }
                lsc__request__init(req);
                req->op_case = LSC__REQUEST__OP_TRANSITION;
                req->transition = t;
                s->busy = true;
                if ((r = submit(l, req)) < 0)
                        s->busy = false;
                return r;
        }
        rc->tx[rc->n_tx++] = t;
        s->busy = true;
        return 0;
}

/* Sends the transitions gathered since the last batch went, at most TX_BATCH of them,
 * unless a batch is still at the store: while one commits, the next gathers. */
void reconcile_flush(struct loop *l)
{
        struct reconcile *rc = &l->reconcile;
        Lsc__Request *req;
        Lsc__Transitions *tr;
        /* bench-bind: --bind-batch N caps transition batches too (1: one per transaction) */
        size_t max = l->cfg.bind_batch > 0 ? (size_t)l->cfg.bind_batch : TX_BATCH;
        size_t n = rc->n_tx < max ? rc->n_tx : max;
        struct reconcile_server **who;

        if (rc->tx_inflight || n == 0)
                return;
        req = calloc(1, sizeof(*req));
        tr = calloc(1, sizeof(*tr));
        who = calloc(n, sizeof(*who));
        if (req)
                lsc__request__init(req);
        if (tr)
                lsc__transitions__init(tr);
        if (!req || !tr || !who || !(tr->items = malloc(n * sizeof(*tr->items)))) {
                free(req);
                free(tr);
                free(who);
                return;                  /* the next flush tries again */
        }
        memcpy(tr->items, rc->tx, n * sizeof(*tr->items));
        tr->n_items = n;
        memmove(rc->tx, rc->tx + n, (rc->n_tx - n) * sizeof(*rc->tx));
        rc->n_tx -= n;
        req->op_case = LSC__REQUEST__OP_TRANSITIONS;
        req->transitions = tr;
        rc->tx_inflight = true;
        for (size_t i = 0; i < n; i++)
                who[i] = find(rc, tr->items[i]->uuid);
        if (submit(l, req) < 0) {
                /* the servers are free again; what asked for the change asks again */
                rc->tx_inflight = false;
                for (size_t i = 0; i < n; i++)
                        if (who[i])
                                who[i]->busy = false;
        }
        free(who);
}

#define FROM(...) (const char *const[]){ __VA_ARGS__ }, ARRAY_SIZE(((const char *const[]){ __VA_ARGS__ }))

/* ---- commands to agents ---------------------------------------------------- */

static struct liveness_host *host_of(const struct reconcile_server *s)
{
        return s->bound;
}

static void command(struct loop *l, struct liveness_host *h, Lsc__Command__Op op, const char *uuid,
                    uint64_t generation, Lsc__ServerSpec *spec)
{
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        Lsc__Command cmd = LSC__COMMAND__INIT;
        char sender[64];
        int r;

        if (!h || h->epoch == 0 || !h->route.len)
                return;                  /* sent when the host registers */
        snprintf(sender, sizeof(sender), "lscd:%016llx", (unsigned long long)l->incarnation);
        cmd.has_op = cmd.has_generation = cmd.has_epoch = 1;
        cmd.op = op;
        cmd.uuid = (char *)uuid;
        cmd.generation = generation;
        cmd.epoch = h->epoch;
        cmd.spec = spec;
        if (op == LSC__COMMAND__OP__SHUTDOWN) {
                cmd.has_timeout_ms = 1;
                cmd.timeout_ms = l->cfg.mayfly_shutdown_timeout_ms;
        }
        env.sender = sender;
        env.has_epoch = 1;
        env.epoch = h->epoch;
        env.body_case = LSC__ENVELOPE__BODY_COMMAND;
        env.command = &cmd;
        if ((r = lsc_wire_send(l->agents, &h->route, &env)) < 0)
                log_info("host %s: command for %s not sent: %s", h->name, uuid, lsc_err_msg(r));
        else
                log_debug("host %s: %s %s g%llu (epoch %llu)", h->name,
                          op == LSC__COMMAND__OP__INSTANTIATE ? "instantiate" :
                          op == LSC__COMMAND__OP__SHUTDOWN ? "shutdown" : "destroy", uuid,
                          (unsigned long long)generation, (unsigned long long)h->epoch);
}

/* Sends what s's state asks of its host: instantiate when binding, destroy when stopping. */
static void drive(struct loop *l, struct reconcile_server *s, int64_t now)
{
        struct liveness_host *h = host_of(s);

        if (!h || h->epoch == 0)
                return;
        if ((s->state == RECONCILE_BINDING)) {
                Lsc__Server *row = row_unpack(s);
                if (!row)
                        return;          /* sent again at the next resend */
                command(l, h, LSC__COMMAND__OP__INSTANTIATE, s->uuid, s->generation, row->spec);
                lsc__server__free_unpacked(row, NULL);
        } else if ((s->state == RECONCILE_STOPPING)) {
                /* a mayfly's death is graceful: the guest is asked first (ACPI), then destroyed */
                command(l, h, s->turn_to ? LSC__COMMAND__OP__SHUTDOWN : LSC__COMMAND__OP__DESTROY, s->uuid,
                        s->generation, NULL);
        } else {
                return;
        }
        s->sent_us = now;
}

/* ---- following the store's truth -------------------------------------------- */

/* The rest of sv's row, packed: what only INSTANTIATE, a constrained placement and
 * log lines need. 0, or -ENOMEM. */
static int row_pack(const Lsc__Server *sv, uint8_t **ret_row, uint32_t *ret_len)
{
        Lsc__Server rest = LSC__SERVER__INIT;
        uint8_t *row = NULL;
        size_t len;

        rest.spec = sv->spec;
        rest.migrate_from = sv->migrate_from && sv->migrate_from[0] ? sv->migrate_from : NULL;
        rest.migrate_to = sv->migrate_to && sv->migrate_to[0] ? sv->migrate_to : NULL;
        len = lsc__server__get_packed_size(&rest);
        if (len > UINT32_MAX)
                return -ENOMEM;
        if (len && !(row = malloc(len)))
                return -ENOMEM;
        if (len)
                lsc__server__pack(&rest, row);
        *ret_row = row;
        *ret_len = (uint32_t)len;
        return 0;
}

/* A state-only row (a transition batch's reply) changes no identity, but may start or
 * end a migration: the record's packed row then gets sv's migrate_from and migrate_to.
 * *ret_row stays NULL when the packed row is kept as it is (the common case). */
static int row_repack(const struct reconcile_server *s, const Lsc__Server *sv, uint8_t **ret_row,
                      uint32_t *ret_len, bool *ret_constrained)
{
        bool migrating = (sv->migrate_from && sv->migrate_from[0]) || (sv->migrate_to && sv->migrate_to[0]);
        Lsc__Server *old, merged = LSC__SERVER__INIT;
        int r;

        *ret_row = NULL;
        *ret_len = 0;
        *ret_constrained = false;
        if (!s->constrained && !migrating)
                return 0;                /* no labels required, no migration before or now */
        if (!(old = row_unpack(s)))
                return -ENOMEM;
        merged.spec = old->spec;
        merged.migrate_from = sv->migrate_from;
        merged.migrate_to = sv->migrate_to;
        r = row_pack(&merged, ret_row, ret_len);
        *ret_constrained = (old->spec && old->spec->n_require_labels > 0) || migrating;
        lsc__server__free_unpacked(old, NULL);
        return r;
}

/* Takes sv (the store's row for one server) as the truth and acts on it. */
static void adopt(struct loop *l, const Lsc__Server *sv)
{
        struct reconcile *rc = &l->reconcile;
        struct reconcile_server *s = find(rc, sv->uuid);
        const Lsc__ServerSpec *sp = sv->spec;
        struct liveness_host *bound = NULL;
        struct reconcile_group *g = NULL;
        uint8_t *row = NULL;
        uint32_t row_len = 0;
        int state, desired, kind;
        bool changed, constrained = false;

        if (!strcmp(sv->state, "defined")) {
                if (s) {
                        view_unapply(rc, s);
                        forget(rc, sv->uuid);
                }
                return;
        }
        if (!sp && !s)
                return;          /* a state-only row (a transition batch's) of a server not tracked */
        state = lsc_enum_parse(reconcile_state_names, RECONCILE_STATE_COUNT, sv->state);
        desired = sv->desired ? lsc_enum_parse(reconcile_desired_names, RECONCILE_DESIRED_COUNT, sv->desired) : -1;
        kind = sp && sp->kind ? lsc_enum_parse(lsc_kind_names, LSC_KIND_COUNT, sp->kind) : 0;
        /* every host a row names is a host of the store, so liveness knows it after the
         * load; the record points at it instead of keeping its name */
        if (sv->host && sv->host[0] && !(bound = liveness_get(&l->liveness, sv->host)))
                return;
        if (sp && sv->group && sv->group[0] && !(g = group_get(rc, sv->group)))
                return;
        if ((sp ? row_pack(sv, &row, &row_len) : row_repack(s, sv, &row, &row_len, &constrained)) < 0)
                return;
        if (!s && !(s = track(rc, sv->uuid))) {
                free(row);
                return;
        }
        /* a record just made is in no state yet: defined is never kept */
        changed = s->state == RECONCILE_DEFINED ||
                  s->state != (state < 0 ? RECONCILE_STATE_COUNT : state) || s->generation != sv->generation;
        /* the view counts a server where the store says it is bound */
        if (s->applied && (!bound || s->bound != bound))
                view_unapply(rc, s);
        s->state = state < 0 ? RECONCILE_STATE_COUNT : (uint8_t)state;
        s->desired = desired < 0 ? RECONCILE_WANT_STOPPED : (uint8_t)desired;
        s->generation = sv->generation;
        s->bound = bound;
        if (sv->has_expires_at && sv->expires_at != s->expires_s) {
                bool was = s->applied;
                int32_t at = s->host;
                /* the binding's death moved (bound, renewed, cleared): its host's calendar
                 * follows, so a later unapply finds what apply counted */
                if (was && bound && s->bound == bound)
                        view_unapply(rc, s);
                s->expires_s = sv->expires_at;
                if (was && bound && s->bound == bound)
                        view_apply(rc, s, at);
        }
        if (sv->turnover_to)
                s->turn_to = sv->turnover_to[0] ? liveness_get(&l->liveness, sv->turnover_to) : NULL;
        if (sp) {
                s->kind = kind < 0 ? LSC_KIND_VM : (uint8_t)kind;
                s->group = g ? (uint32_t)g->id : 0;
                s->vcpus = sp->vcpus;
                s->memory_mib = sp->memory_mib;
                s->disk_gib = sp->disk_gib;
                s->lifetime_s = sp->lifetime_s > UINT32_MAX ? UINT32_MAX : (uint32_t)sp->lifetime_s;
                constrained = sp->n_require_labels > 0 || (sv->migrate_from && sv->migrate_from[0]) ||
                              (sv->migrate_to && sv->migrate_to[0]);
        }
        s->constrained = constrained;
        if (row || sp) {
                free(s->row);
                s->row = row;
                s->row_len = row_len;
        }
        if (changed) {
                s->since_us = lsc_now_us();
                s->sent_us = 0;
        }
        if (bound && bound->view >= 0)
                view_apply(rc, s, bound->view);
        resv_sync(rc, s);
        recount(rc, s, false);
        if (changed)
                s->missing = 0;
        if ((s->state == RECONCILE_PENDING) && s->desired == RECONCILE_WANT_RUNNING)
                enqueue(rc, s);
        if (changed)
                drive(l, s, lsc_now_us());
}

/* The records keep what they need of a reply's rows: the reply stays the job's. */
static void adopt_all(struct loop *l, Lsc__Reply *rp)
{
        for (size_t i = 0; rp && i < rp->n_servers; i++)
                adopt(l, rp->servers[i]);
}

void reconcile_observe(struct loop *l, Lsc__Server *const *v, size_t n)
{
        if (!l->reconcile.loaded)
                return;                  /* the load that is coming sees them */
        for (size_t i = 0; i < n; i++)
                adopt(l, v[i]);
}


static void loaded(struct loop *l, Lsc__Reply *rp)
{
        struct reconcile *rc = &l->reconcile;

        reconcile_observe_groups(l, rp->groups, rp->n_groups);
        for (size_t i = 0; i < rp->n_hosts; i++)
                if (view_host(l, rp->hosts[i]) < 0)
                        log_error("cannot add host %s to the view: %s", rp->hosts[i]->name,
                                  lsc_err_msg(-EIO));
        rc->loaded = true;
        rc->dhcp_dirty = true;
        adopt_all(l, rp);
        log_info("view loaded: %zu hosts, %zu servers not merely defined", rp->n_hosts, rp->n_servers);
        /* The rows (and the store thread's copies they were made from) were the largest
         * thing lscd ever holds, in the store thread's malloc arena: freed, those pages
         * would stay resident for the life of the process unless trimmed. Freed only
         * once every record is made, so no record reuses a chunk among them. */
        for (size_t i = 0; i < rp->n_servers; i++)
                lsc__server__free_unpacked(TAKE_PTR(rp->servers[i]), NULL);
        rp->n_servers = 0;
        malloc_trim(0);
}

static void place(struct loop *l, int64_t now);

static void bound(struct loop *l, Lsc__Reply *rp)
{
        struct reconcile *rc = &l->reconcile;

        rc->bind_inflight = false;
        for (size_t i = 0; i < rp->n_servers; i++) {
                struct reconcile_server *s = find(rc, rp->servers[i]->uuid);
                bool refused = false;

                for (size_t k = 0; k < rp->n_refused && !refused; k++)
                        refused = !strcmp(rp->refused[k], rp->servers[i]->uuid);
                if (!s)
                        continue;
                s->busy = false;
                if (refused) {
                        /* the choice made in memory did not commit: the row says where
                         * (or whether) it is bound, and adopt() follows that */
                        view_unapply(rc, s);
                        rc->refused++;
                } else {
                        rc->bound++;
                }
        }
        adopt_all(l, rp);
        /* bench-bind (--bind-batch): the next batch goes at once, not at the next tick,
         * so a small batch costs a transaction each rather than a 200 ms tick each */
        if (rc->n_queue > 0)
                place(l, lsc_now_us());
}

/* A batch is back, committed or not: its servers are free for what comes next, and
 * the transitions gathered meanwhile go (the loop flushes after this job). */
static void transitions_done(struct loop *l, const Lsc__Transitions *tr)
{
        struct reconcile *rc = &l->reconcile;

        rc->tx_inflight = false;
        for (size_t i = 0; tr && i < tr->n_items; i++) {
                struct reconcile_server *s = find(rc, tr->items[i]->uuid);
                if (s)
                        s->busy = false;
        }
}

/* A death (or its postponement) is back: committed, stale, or failed (rp NULL). The
 * row says whether the turnover is under way; without one the reservation goes. */
static void turnover_done(struct loop *l, const Lsc__Turnover *t, Lsc__Reply *rp)
{
        struct reconcile *rc = &l->reconcile;
        struct reconcile_server *s = find(rc, t->uuid);

        if (!s)
                return;
        s->busy = false;
        if (rp)
                adopt_all(l, rp);
        if (s->state == RECONCILE_RUNNING && !(rp && rp->n_servers == 1 && rp->servers[0]->turnover_to &&
                                              rp->servers[0]->turnover_to[0])) {
                /* nothing started: a renew or clock skew came first, or the store failed */
                s->turn_to = NULL;
                resv_sync(rc, s);
                s->turn_retry_us = lsc_now_us() + TURNOVER_RETRY_US;
        }
}

void reconcile_job_done(struct loop *l, struct store_job *job)
{
        struct reconcile *rc = &l->reconcile;
        Lsc__Reply *rp = job->reply;
        Lsc__Request__OpCase op = job->request ? job->request->op_case : LSC__REQUEST__OP__NOT_SET;

        if (!rp || rp->status != LSC__STATUS__OK) {
                const char *why = rp && rp->error ? rp->error : "no reply";
                log_warn("store job %d failed: %s", (int)op, why);
                if (op == LSC__REQUEST__OP_SERVER_LIST) {
                        rc->dhcp_inflight = false;
                        rc->dhcp_dirty = true;
                }
                if (op == LSC__REQUEST__OP_LOAD)
                        rc->load_inflight = false;   /* the tick asks again */
                if (op == LSC__REQUEST__OP_BIND) {
                        /* nothing committed that we know of: place them again */
                        for (size_t i = 0; i < job->request->bind->n_bindings; i++) {
                                struct reconcile_server *s = find(rc, job->request->bind->bindings[i]->uuid);
                                if (s) {
                                        s->busy = false;
                                        view_unapply(rc, s);
                                        enqueue(rc, s);
                                }
                        }
                        rc->bind_inflight = false;
                }
                if (op == LSC__REQUEST__OP_TRANSITION) {
                        struct reconcile_server *s = find(rc, job->request->transition->uuid);
                        if (s)
                                s->busy = false;
                }
                if (op == LSC__REQUEST__OP_TRANSITIONS)
                        transitions_done(l, job->request->transitions);
                if (op == LSC__REQUEST__OP_TURNOVER)
                        turnover_done(l, job->request->turnover, NULL);
        } else if (op == LSC__REQUEST__OP_TURNOVER) {
                turnover_done(l, job->request->turnover, rp);
        } else if (op == LSC__REQUEST__OP_TRANSITIONS) {
                transitions_done(l, job->request->transitions);
                adopt_all(l, rp);
        } else if (op == LSC__REQUEST__OP_SERVER_LIST) {
                rc->dhcp_inflight = false;
                if (dhcp_hosts_write(rc->dhcp_hosts, rp->servers, rp->n_servers) < 0) {
                        log_warn("%s", lsc_err_msg(-EIO));
                        rc->dhcp_dirty = true;
                }
        } else if (op == LSC__REQUEST__OP_LOAD) {
                rc->load_inflight = false;
                loaded(l, rp);
        } else if (op == LSC__REQUEST__OP_BIND) {
                bound(l, rp);
        } else {
                if (op == LSC__REQUEST__OP_TRANSITION) {
                        struct reconcile_server *s = find(rc, job->request->transition->uuid);
                        if (s)
                                s->busy = false;
                        /* a deletion that happened replies the row as it was last:
                         * defined, desired deleted (a stale one replies it as it is) */
                        if (!strcmp(job->request->transition->to, "deleted") && rp->n_servers == 1 &&
                            !strcmp(rp->servers[0]->state, "defined") &&
                            !strcmp(rp->servers[0]->desired, "deleted")) {
                                /* gone: forget it; the reply (and its row) goes with the job */
                                if (s)
                                        view_unapply(rc, s);
                                forget(rc, job->request->transition->uuid);
                                rc->dhcp_dirty = true;   /* its MACs and IPs are free now */
                                store_job_free(job);
                                return;
                        }
                }
                adopt_all(l, rp);
        }
        store_job_free(job);
}

/* ---- placing -------------------------------------------------------------- */

static void no_fit(struct loop *l, struct reconcile_server *s, const struct sched_request *rq,
                   const struct sched_reasons *why)
{
        char line[256], name[LSC_NAME_MAX + 1];

        l->reconcile.no_fit++;
        sched_reasons_format(l->reconcile.view, rq, why, line, sizeof(line));
        if (strcmp(line, s->why ? s->why : "") == 0 || s->busy)
                return;                  /* said already */
        free(s->why);
        s->why = strdup(line);           /* out of memory: said again next time */
        log_info("server %s (%s) stays pending: %s", name_of(s, name, sizeof(name)), s->uuid, line);
        transition(l, s, FROM("pending"), "pending", "server.pending", line, false, false);
}

static void place(struct loop *l, int64_t now)
{
        struct reconcile *rc = &l->reconcile;
        Lsc__Request *req;
        Lsc__Bind *bind;
        size_t n = 0, keep = 0;
        bool any_no_fit = false;
        /* bench-bind: --bind-batch N (default PLACE_BATCH) */
        size_t batch = l->cfg.bind_batch > 0 ? (size_t)l->cfg.bind_batch : PLACE_BATCH;

        if (rc->bind_inflight || rc->n_queue == 0 || now < rc->next_place_us)
                return;
        req = calloc(1, sizeof(*req));
        bind = calloc(1, sizeof(*bind));
        if (req)
                lsc__request__init(req);
        if (bind)
                lsc__bind__init(bind);
        if (!req || !bind || !(bind->bindings = calloc(batch, sizeof(*bind->bindings)))) {
                free(req);
                free(bind);
                return;
        }
        for (size_t i = 0; i < rc->n_queue; i++) {
                struct reconcile_server *s = find(rc, rc->queue[i]);
                struct sched_request rq;
                struct sched_reasons why;
                uint32_t host;
                Lsc__Binding *b;
                bool reborn, placed;

                if (!s || !(s->state == RECONCILE_PENDING) || s->desired != RECONCILE_WANT_RUNNING) {
                        if (s)
                                s->queued = false;
                        continue;        /* no longer wants a host */
                }
                if (n == batch) {
                        /* bench-bind: a full batch keeps the rest as it is, unscanned, so
                         * a small --bind-batch does not cost a pass over the whole queue */
                        memmove(rc->queue[keep], rc->queue[i], (rc->n_queue - i) * sizeof(*rc->queue));
                        keep += rc->n_queue - i;
                        break;
                }
                if (s->busy) {
                        memcpy(rc->queue[keep++], rc->queue[i], 37);
                        continue;
                }
                if (request_of(rc, s, &rq) < 0) {
                        memcpy(rc->queue[keep++], rc->queue[i], 37);
                        continue;        /* out of memory: the next pass */
                }
                request_load(rc, s, &rq, planned_death(s), s->turn_to != NULL);
                reborn = s->turn_to && s->turn_to->view >= 0 && !rq.has_to;   /* migrate --to wins */
                if (reborn) {
                        /* a rebirth goes where its room was reserved: the reservation
                         * makes way for the binding itself */
                        resv_release(rc, s);
                        rq.has_to = true;
                        rq.to_host = (uint32_t)s->turn_to->view;
                }
                placed = sched_place(rc->view, &rq, &rc->rng, &host, &why) == 0;
                if (!placed && reborn) {
                        /* the reserved host can no longer take it (lost, drained): anywhere */
                        rq.has_to = false;
                        placed = sched_place(rc->view, &rq, &rc->rng, &host, &why) == 0;
                }
                if (!placed) {
                        resv_sync(rc, s);
                        no_fit(l, s, &rq, &why);
                        any_no_fit = true;
                        memcpy(rc->queue[keep++], rc->queue[i], 37);
                        continue;
                }
                view_apply(rc, s, host);
                b = calloc(1, sizeof(*b));
                if (!b) {
                        view_unapply(rc, s);
                        memcpy(rc->queue[keep++], rc->queue[i], 37);
                        continue;
                }
                lsc__binding__init(b);
                b->uuid = strdup(s->uuid);
                b->has_generation = 1;
                b->generation = s->generation;
                b->host = strdup(sched_view_host(rc->view, host)->name);
                bind->bindings[n++] = b;
                s->queued = false;
                s->busy = true;
                free(s->why);
                s->why = NULL;
        }
        rc->n_queue = keep;
        if (any_no_fit)
                rc->next_place_us = now + PLACE_RETRY_US;
        if (n == 0) {
                free(bind->bindings);
                free(bind);
                free(req);
                return;
        }
        bind->n_bindings = n;
        req->op_case = LSC__REQUEST__OP_BIND;
        req->bind = bind;
        rc->bind_inflight = true;
        if (submit(l, req) < 0)
                rc->bind_inflight = false;
}

/* ---- agents' news --------------------------------------------------------- */

void reconcile_host_registered(struct loop *l, struct liveness_host *h, const Lsc__Host *row)
{
        struct reconcile *rc = &l->reconcile;

        if (view_host(l, row) < 0)
                return;
        if (!rc->loaded)
                return;
        /* a new session: whatever was on its way to this host is sent again */
        for (size_t i = 0; i < rc->n_servers; i++) {
                struct reconcile_server *s = rc->servers[i];
                if (s->bound == h) {
                        if (s->host < 0)
                                view_apply(rc, s, h->view);
                        drive(l, s, lsc_now_us());
                }
        }
        rc->next_place_us = 0;           /* new room, perhaps */
}

void reconcile_observe_hosts(struct loop *l, Lsc__Host *const *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (view_host(l, v[i]) < 0)
                        log_error("cannot update host %s in the view: %s", v[i]->name, lsc_err_msg(-ENOMEM));
        l->reconcile.next_place_us = 0;          /* undrained: room, perhaps */
}

void reconcile_host_state(struct loop *l, struct liveness_host *h)
{
        host_filters(&l->reconcile, h);
        if (h->state == LIVENESS_UP)
                l->reconcile.next_place_us = 0;
}

static void now_running(struct loop *l, struct reconcile_server *s, const struct liveness_host *h);

/* A server lscd thinks runs on h that h's inventory no longer shows twice in a row
 * has vanished (crashed and undefined, or the host lost its hypervisor's state):
 * it goes back to pending and is bound again (generation + 1). */
static void find_vanished(struct loop *l, struct liveness_host *h)
{
        struct reconcile *rc = &l->reconcile;

        for (size_t i = 0; i < rc->n_servers; i++) {
                struct reconcile_server *s = rc->servers[i];
                bool seen = false;
                char reason[200], name[LSC_NAME_MAX + 1];

                if (s->host != h->view || !(s->state == RECONCILE_RUNNING) || s->busy)
                        continue;
                for (size_t k = 0; k < h->n_instances && !seen; k++)
                        seen = !strcmp(h->instances[k].uuid, s->uuid) &&
                               h->instances[k].generation == s->generation;
                if (!seen && s->missing < UINT8_MAX)
                        s->missing++;
                if (seen || s->missing < 2)
                        continue;
                snprintf(reason, sizeof(reason), "vanished from host %s; placing it again", h->name);
                log_warn("server %s (%s) g%llu %s", name_of(s, name, sizeof(name)), s->uuid,
                         (unsigned long long)s->generation, reason);
                view_unapply(rc, s);
                transition(l, s, FROM("running"), "pending", "server.vanished", reason, true, false);
        }
}

void reconcile_heartbeat(struct loop *l, struct liveness_host *h)
{
        struct reconcile *rc = &l->reconcile;
        uint32_t running_seen = 0;

        host_filters(rc, h);
        if (!rc->loaded)
                return;
        for (size_t i = 0; i < h->n_instances; i++) {
                const struct liveness_instance *in = &h->instances[i];
                struct reconcile_server *s = find(rc, in->uuid);
                bool ours = s && s->bound == h && in->generation == s->generation;

                if (!ours) {
                        /* an older generation, or bound elsewhere, or no longer wanted:
                         * at most one live copy, so this one goes */
                        if (s && s->bound == h && in->generation > s->generation)
                                continue;        /* newer than we know: the store will tell */
                        if (s && (s->busy || (s->state == RECONCILE_BINDING)) && in->generation >= s->generation)
                                continue;
                        log_info("host %s runs %s g%llu, which it should not: destroying it", h->name,
                                 in->uuid, (unsigned long long)in->generation);
                        command(l, h, LSC__COMMAND__OP__DESTROY, in->uuid, in->generation, NULL);
                        continue;
                }
                if ((s->state == RECONCILE_RUNNING)) {
                        s->missing = 0;
                        running_seen++;
                }
                if ((s->state == RECONCILE_BINDING) && !s->busy && !strcmp(in->state, "running"))
                        now_running(l, s, h);
        }
        /* only when the count says something is missing: no scan per beat otherwise */
        if (h->view >= 0 && (size_t)h->view < rc->n_running_on && running_seen < rc->running_on[h->view])
                find_vanished(l, h);
}

/* binding -> running; a rebirth's event says it ends a turnover. */
static void now_running(struct loop *l, struct reconcile_server *s, const struct liveness_host *h)
{
        char reason[200] = "";

        if (s->turn_to)
                snprintf(reason, sizeof(reason), "turnover: reborn as g%llu on %s",
                         (unsigned long long)s->generation, h->name);
        transition(l, s, FROM("binding"), "running", "server.running", reason, false, false);
}

void reconcile_report(struct loop *l, struct liveness_host *h, const Lsc__Report *rp)
{
        struct reconcile *rc = &l->reconcile;
        struct reconcile_server *s = rp->uuid ? find(rc, rp->uuid) : NULL;
        char reason[300];

        if (!s || s->busy || s->bound != h || rp->generation != s->generation)
                return;                  /* stale: the heartbeat inventory settles it */
        if (rp->op == LSC__COMMAND__OP__INSTANTIATE && (s->state == RECONCILE_BINDING)) {
                if (rp->ok) {
                        now_running(l, s, h);
                } else {
                        snprintf(reason, sizeof(reason), "host %s could not start it: %s", h->name,
                                 rp->error ? rp->error : "unknown error");
                        view_unapply(rc, s);
                        transition(l, s, FROM("binding"), "pending", "server.bind-failed", reason, true, true);
                }
        } else if ((rp->op == LSC__COMMAND__OP__DESTROY || rp->op == LSC__COMMAND__OP__SHUTDOWN) &&
                   (s->state == RECONCILE_STOPPING)) {
                if (!rp->ok) {
                        log_warn("host %s could not destroy %s g%llu: %s (retrying)", h->name, s->uuid,
                                 (unsigned long long)rp->generation, rp->error ? rp->error : "?");
                        return;
                }
                view_unapply(rc, s);
                /* the old copy's room on the rebirth host (in place) is the reservation now */
                resv_sync(rc, s);
                if (s->desired == RECONCILE_WANT_DELETED)
                        transition(l, s, FROM("stopping"), "deleted", "server.stopped", "", true, false);
                else if (s->desired == RECONCILE_WANT_RUNNING && s->turn_to) {
                        snprintf(reason, sizeof(reason), "turnover: g%llu %s on %s; reborn on %s",
                                 (unsigned long long)s->generation,
                                 rp->op == LSC__COMMAND__OP__SHUTDOWN ? "shut down" : "destroyed", h->name,
                                 s->turn_to->name);
                        transition(l, s, FROM("stopping"), "pending", "server.turnover", reason, true, false);
                } else if (s->desired == RECONCILE_WANT_RUNNING)
                        transition(l, s, FROM("stopping"), "pending", "server.stopped", "waiting for a host",
                                   true, false);
                else
                        transition(l, s, FROM("stopping"), "defined", "server.stopped", "", true, false);
        }
}

/* ---- the periodic part ------------------------------------------------------ */

/* Asks the store for the view (once at a time; a failed load is asked for again). */
static void load(struct loop *l)
{
        struct reconcile *rc = &l->reconcile;
        Lsc__Request *req;
        Lsc__Load *ld;

        if (rc->loaded || rc->load_inflight)
                return;
        req = calloc(1, sizeof(*req));
        ld = calloc(1, sizeof(*ld));
        if (!req || !ld) {
                free(req);
                free(ld);
                return;
        }
        lsc__request__init(req);
        lsc__load__init(ld);
        req->op_case = LSC__REQUEST__OP_LOAD;
        req->load = ld;
        if (submit(l, req) == 0)
                rc->load_inflight = true;
}

void reconcile_start(struct loop *l)
{
        struct reconcile *rc = &l->reconcile;

        rc->load = &l->load;
        sched_view_set_aware(rc->view, l->cfg.mayfly_aware, SCHED_AWARE_SAMPLES_DEFAULT,
                             SCHED_AWARE_FIT_PCT_DEFAULT);
        load(l);
}

/* Every host's forecast from its measured history (load.c), for aware placement and the
 * turnover plan: the profile replaces what sched_apply added since, which the
 * measurements now show. */
static void forecasts_refresh(struct loop *l, int64_t now)
{
        struct reconcile *rc = &l->reconcile;
        int64_t wall_s = lsc_wall_us() / 1000000;
        uint32_t prof[LOAD_HOURS], mean;

        /* kept with awareness off too: lsc plan turnover shows them */
        if (now < rc->next_forecast_us)
                return;
        rc->next_forecast_us = now + FORECAST_EVERY_US;
        for (size_t i = 0; i < l->liveness.n_hosts; i++) {
                struct liveness_host *h = l->liveness.hosts[i];

                if (h->view < 0 || load_hist_forecast_m(&h->load, wall_s, prof, &mean) < 0)
                        continue;
                sched_host_set_load(rc->view, (uint32_t)h->view, h->vcpus, prof);
        }
}

/* Whether what ran on h is gone for sure: h is lost and its lease ran out at least
 * lease_ttl + grace ago — counted from this lscd's start when it never heard from h,
 * so that a restarted lscd re-binds nothing before the leases it cannot see ran out.
 * By then h's agent destroyed its instances (at deadline - destroy_budget), and
 * lsc-fenced did at the deadline if the agent could not. */
static bool host_fenced(const struct loop *l, const struct liveness_host *h, int64_t now)
{
        int64_t since = h->last_beat_us > l->started_us ? h->last_beat_us : l->started_us;

        return h->state == LIVENESS_LOST && now - since > l->liveness.lease_ttl_us + l->liveness.grace_us;
}

static bool metal_fence(struct loop *l, struct reconcile_server *s, int64_t now);

/* A server whose host was lost: first lost (the event says so), then, its lease being
 * over, back to pending to be bound elsewhere with generation + 1 (or defined, or
 * gone, when that is what was wanted). Metal waits for its BMC instead (fencing). */
static bool relocate(struct loop *l, struct reconcile_server *s, int64_t now)
{
        struct liveness_host *h = s->bound;
        char reason[200];

        if (h && (s->state == RECONCILE_BINDING || s->state == RECONCILE_RUNNING ||
                  s->state == RECONCILE_STOPPING) && host_fenced(l, h, now)) {
                int64_t since = h->last_beat_us > l->started_us ? h->last_beat_us : l->started_us;
                snprintf(reason, sizeof(reason), "host %s lost: no heartbeat for %lld s", h->name,
                         (long long)((now - since) / 1000000));
                log_warn("server %s: %s", s->uuid, reason);
                transition(l, s, FROM("binding", "running", "stopping"), "lost", "server.lost", reason, false, false);
                return true;
        }
        if (s->kind == LSC_KIND_METAL && (s->state == RECONCILE_LOST || s->state == RECONCILE_FENCING))
                return metal_fence(l, s, now);   /* the BMC first: see "metal fencing" below */
        if (s->state != RECONCILE_LOST)
                return false;
        snprintf(reason, sizeof(reason), "the lease of host %s ran out: %s", h ? h->name : "?",
                 s->desired == RECONCILE_WANT_RUNNING ? "placing it again" : "it no longer runs");
        view_unapply(&l->reconcile, s);
        if (s->desired == RECONCILE_WANT_RUNNING)
                transition(l, s, FROM("lost"), "pending", "server.fenced", reason, true, false);
        else if (s->desired == RECONCILE_WANT_DELETED)
                transition(l, s, FROM("lost"), "deleted", "server.fenced", reason, true, false);
        else
                transition(l, s, FROM("lost"), "defined", "server.fenced", reason, true, false);
        return true;
}

/* ---- mayflies: turnover ------------------------------------------------------
 * A running mayfly past its expires_at dies and is reborn (generation + 1) on a host
 * reserved before the death: running -> stopping (graceful shutdown) -> pending once
 * the destroy is acknowledged or the old host's lease ran out -> binding on the
 * reserved host -> running. mayfly.c (mayfly_admit) decides which due deaths start now (the
 * budget); the others wait, in deadline order. */

static int turnover_submit(struct loop *l, struct reconcile_server *s, const char *to, const char *reason,
                           uint32_t early_s)
{
        Lsc__Request *req = calloc(1, sizeof(*req));
        Lsc__Turnover *t = calloc(1, sizeof(*t));

        if (!req || !t) {
                free(req);
                free(t);
                return -ENOMEM;
        }
        lsc__request__init(req);
        lsc__turnover__init(t);
        t->uuid = dup_or_empty(s->uuid);
        t->has_generation = 1;
        t->generation = s->generation;
        t->to = dup_or_empty(to);
        t->reason = dup_or_empty(reason);
        if (!to) {
                t->has_postpone_s = 1;
                t->postpone_s = l->cfg.mayfly_postpone_s ? l->cfg.mayfly_postpone_s : 30;
        }
        t->has_early_s = early_s > 0;
        t->early_s = early_s;
        req->op_case = LSC__REQUEST__OP_TURNOVER;
        req->turnover = t;
        return submit(l, req);
}

/* Reserves s's rebirth host and starts its death; postpones it when no host fits. */
static void turnover_start(struct loop *l, struct reconcile_server *s)
{
        struct reconcile *rc = &l->reconcile;
        struct sched_request rq;
        struct sched_reasons why;
        struct sched_host *cur = s->host >= 0 ? sched_view_host(rc->view, (uint32_t)s->host) : NULL;
        char reason[300], line[200], name[LSC_NAME_MAX + 1];
        const char *to = NULL;
        uint32_t host, early_s = 0;
        bool early = s->early;

        s->early = false;
        if (early) {
                int64_t left = s->expires_s - lsc_wall_us() / 1000000;
                early_s = left > 0 ? (uint32_t)(left < UINT32_MAX ? left + 1 : UINT32_MAX) : 0;
        }
        if (request_of(rc, s, &rq) < 0)
                return;
        request_load(rc, s, &rq, planned_death(s), true);
        if (!rq.has_to && s->host >= 0) {
                rq.has_exclude = true;   /* reborn elsewhere when another host fits */
                rq.exclude_host = (uint32_t)s->host;
        }
        if (sched_place(rc->view, &rq, &rc->rng, &host, &why) == 0) {
                to = sched_view_host(rc->view, host)->name;
        } else if (early) {
                return;          /* not due: it stays until its time, or until a host fits */
        } else if (cur && cur->up && cur->healthy && cur->active && !rq.has_to && !l->cfg.mayfly_no_in_place) {
                /* nowhere else: reborn where it runs, in the room the old copy gives back */
                to = cur->name;
        }
        if (!to) {
                sched_reasons_format(rc->view, &rq, &why, line, sizeof(line));
                snprintf(reason, sizeof(reason), "turnover postponed: no host can take the rebirth (%s)", line);
                log_info("server %s (%s) g%llu: %s", name_of(s, name, sizeof(name)), s->uuid,
                         (unsigned long long)s->generation, reason);
                if (turnover_submit(l, s, NULL, reason, 0) == 0) {
                        s->busy = true;
                        rc->turnovers_postponed++;
                }
                return;
        }
        if (early)
                snprintf(reason, sizeof(reason), "turnover: retired early, off hot host %s; reborn on %s",
                         cur ? cur->name : "?", to);
        else
                snprintf(reason, sizeof(reason), "turnover: lifetime over; reborn on %s", to);
        s->turn_to = liveness_get(rc->live, to);
        resv_sync(rc, s);                /* held from now: the next death does not take it */
        if (!s->turn_to || turnover_submit(l, s, to, reason, early_s) < 0) {
                s->turn_to = NULL;
                resv_sync(rc, s);
                return;
        }
        s->busy = true;
        rc->turnovers_started++;
        rc->turnovers_early += early;
        log_info("server %s (%s) g%llu on %s: %s", name_of(s, name, sizeof(name)), s->uuid,
                 (unsigned long long)s->generation, s->bound ? s->bound->name : "?", reason);
}

static bool due_add(struct reconcile *rc, size_t *n, int64_t deadline, uint64_t group, size_t idx)
{
        if (*n == rc->cap_due) {
                size_t cap = rc->cap_due ? rc->cap_due * 2 : 64;
                struct mayfly_due *d = realloc(rc->due, cap * sizeof(*d));
                if (!d)
                        return false;
                rc->due = d;
                rc->cap_due = cap;
        }
        rc->due[(*n)++] = (struct mayfly_due){ .deadline = deadline, .group = group, .cookie = idx };
        return true;
}

struct early_cand {
        int32_t host;
        size_t idx;
        struct mayfly_server ms;
};

static int early_cand_cmp(const void *a, const void *b)
{
        const struct early_cand *x = a, *y = b;

        if (x->host != y->host)
                return x->host < y->host ? -1 : 1;
        return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* (d) of the die-off awareness: a host whose forecast peaks above hot_pct of its
 * physical vCPUs sheds load through its mayflies' deaths, brought forward within the
 * last early_pct of their lives (mayfly_pick_early: as few as will do). They join the
 * due deaths at now, under the same budget; one that finds no rebirth host elsewhere
 * just waits for its time. Every EARLY_EVERY_US, with awareness on. */
static void early_add(struct loop *l, int64_t now, int64_t now_s, size_t *n)
{
        struct reconcile *rc = &l->reconcile;
        struct mayfly_limits lim = MAYFLY_LIMITS_DEFAULT;
        uint32_t nh = sched_view_host_count(rc->view);
        _cleanup_free_ uint64_t *excess = NULL;
        _cleanup_free_ struct early_cand *c = NULL;
        _cleanup_free_ uint32_t *pick = NULL;
        size_t nc = 0, cap = 0;
        bool any = false;

        if (!sched_view_aware(rc->view) || now < rc->next_early_us || !nh)
                return;
        rc->next_early_us = now + EARLY_EVERY_US;
        if (!(excess = calloc(nh, sizeof(*excess))))
                return;
        for (uint32_t h = 0; h < nh; h++) {
                const struct sched_forecast *f = sched_host_forecast(rc->view, h);
                int64_t peak = sched_host_forecast_peak(rc->view, h, now_s);
                if (f && f->phys_m && peak > 0 && (excess[h] = mayfly_excess(&lim, (uint64_t)peak, f->phys_m)))
                        any = true;
        }
        if (!any)
                return;
        for (size_t i = 0; i < rc->n_servers; i++) {
                struct reconcile_server *s = rc->servers[i];
                const struct load_hist *lh;
                double v;

                if (s->state != RECONCILE_RUNNING || s->desired != RECONCILE_WANT_RUNNING || s->busy || s->turn_to ||
                    s->expires_s <= now_s || !s->lifetime_s || !s->applied || s->host < 0 ||
                    (uint32_t)s->host >= nh || !excess[s->host] || !s->bound || s->bound->state != LIVENESS_UP)
                        continue;
                if (nc == cap) {
                        size_t ncap = cap ? cap * 2 : 64;
                        struct early_cand *x = realloc(c, ncap * sizeof(*c));
                        if (!x)
                                return;
                        c = x;
                        cap = ncap;
                }
                lh = load_identity_find(rc->load, s->uuid);
                c[nc++] = (struct early_cand){
                        .host = s->host, .idx = i,
                        .ms = { .bound_at = s->expires_s - s->lifetime_s, .expires_at = s->expires_s,
                                .load_m = lh && load_hist_expected(lh, LOAD_CPU, -1, now_s, &v) == 0
                                          ? (uint32_t)(v * 1000) : s->vcpus * 10 * SCHED_LOAD_DEFAULT_PCT },
                };
        }
        if (!nc)
                return;
        qsort(c, nc, sizeof(*c), early_cand_cmp);
        if (!(pick = calloc(nc, sizeof(*pick))))
                return;
        for (size_t a = 0, b; a < nc; a = b) {
                struct mayfly_server *ms;
                size_t k;

                for (b = a; b < nc && c[b].host == c[a].host; b++)
                        ;
                if (!(ms = calloc(b - a, sizeof(*ms))))
                        return;
                for (size_t j = a; j < b; j++)
                        ms[j - a] = c[j].ms;
                k = mayfly_pick_early(&lim, ms, b - a, now_s, excess[c[a].host], pick);
                free(ms);
                for (size_t j = 0; j < k; j++) {
                        struct reconcile_server *s = rc->servers[c[a + pick[j]].idx];
                        if (!due_add(rc, n, now_s, s->group, c[a + pick[j]].idx))
                                return;
                        s->early = true;
                }
        }
}

static void turnover_run(struct loop *l, int64_t now)
{
        struct reconcile *rc = &l->reconcile;
        int64_t now_s = lsc_wall_us() / 1000000;
        struct mayfly_limits lim = MAYFLY_LIMITS_DEFAULT;
        struct mayfly_flight fl = { 0 };
        size_t n = 0, k;

        if (now < rc->next_turnover_us)
                return;
        rc->next_turnover_us = now + TURNOVER_EVERY_US;
        /* a restarted lscd waits as it does before re-binding: until every host had the
         * time to come back, so the view it reserves in is whole */
        if (now - l->started_us < l->liveness.lease_ttl_us + l->liveness.grace_us)
                return;
        for (size_t i = 0; i < rc->n_servers; i++) {
                struct reconcile_server *s = rc->servers[i];

                if (s->turn_to && s->desired == RECONCILE_WANT_RUNNING && s->state != RECONCILE_FAILED) {
                        if (s->group && fl.ngroups == rc->cap_flight_groups) {
                                size_t cap = rc->cap_flight_groups ? rc->cap_flight_groups * 2 : 64;
                                uint64_t *g = realloc(rc->flight_groups, cap * sizeof(*g));
                                if (!g)
                                        return;
                                rc->flight_groups = g;
                                rc->cap_flight_groups = cap;
                        }
                        fl.total++;
                        if (s->group)
                                rc->flight_groups[fl.ngroups++] = s->group;
                        continue;
                }
                /* expires_at is whole seconds here, exact in the store: one more second
                 * and the store agrees that it passed */
                if (s->state != RECONCILE_RUNNING || s->desired != RECONCILE_WANT_RUNNING || s->busy ||
                    s->expires_s <= 0 || now_s <= s->expires_s || now < s->turn_retry_us ||
                    !s->bound || s->bound->state != LIVENESS_UP)
                        continue;
                s->early = false;
                if (!due_add(rc, &n, s->expires_s, s->group, i))
                        break;
        }
        early_add(l, now, now_s, &n);
        if (n == 0)
                return;
        fl.groups = rc->flight_groups;
        lim.turnover_max_pct = l->cfg.turnover_max_pct;
        lim.group_max = l->cfg.mayfly_group_max;
        k = mayfly_admit(&lim, rc->n_servers, &fl, rc->due, n);
        rc->turnovers_shifted += n - k;
        if (n > k)
                log_debug("%zu turnovers due wait for the budget (%llu at once)", n - k,
                          (unsigned long long)mayfly_budget(lim.turnover_max_pct, rc->n_servers));
        for (size_t i = 0; i < k; i++)
                turnover_start(l, rc->servers[rc->due[i].cookie]);
        for (size_t i = k; i < n; i++)
                rc->servers[rc->due[i].cookie]->early = false;   /* looked at again later */
}

void reconcile_tick(struct loop *l, int64_t now)
{
        struct reconcile *rc = &l->reconcile;

        if (!rc->loaded) {
                load(l);
                return;
        }
        for (size_t i = 0; i < rc->n_servers; i++) {
                struct reconcile_server *s = rc->servers[i];
                struct liveness_host *h;
                /* a graceful shutdown takes its timeout: not sent again before it is over */
                int64_t resend = s->state == RECONCILE_STOPPING && s->turn_to
                                 ? RESEND_US + (int64_t)l->cfg.mayfly_shutdown_timeout_ms * 1000 : RESEND_US;

                if (s->busy || relocate(l, s, now))
                        continue;
                if ((s->state == RECONCILE_BINDING) && now - s->since_us > rc->bind_timeout_us) {
                        char reason[200];
                        snprintf(reason, sizeof(reason), "host %s did not confirm the start within %lld s",
                                 s->bound ? s->bound->name : "", (long long)(rc->bind_timeout_us / 1000000));
                        view_unapply(rc, s);
                        transition(l, s, FROM("binding"), "pending", "server.bind-failed", reason, true, true);
                        continue;
                }
                if (((s->state == RECONCILE_BINDING) || (s->state == RECONCILE_STOPPING)) && now - s->sent_us > resend &&
                    (h = host_of(s)) && h->state == LIVENESS_UP)
                        drive(l, s, now);
        }
        turnover_run(l, now);
        forecasts_refresh(l, now);
        place(l, now);
        if (rc->dhcp_hosts && rc->dhcp_dirty && !rc->dhcp_inflight) {
                Lsc__Request *req = calloc(1, sizeof(*req));
                Lsc__ServerList *list = calloc(1, sizeof(*list));
                if (!req || !list) {
                        free(req);
                        free(list);
                        return;
                }
                lsc__request__init(req);
                lsc__server_list__init(list);
                req->op_case = LSC__REQUEST__OP_SERVER_LIST;
                req->server_list = list;
                rc->dhcp_dirty = false;
                if (submit(l, req) == 0)
                        rc->dhcp_inflight = true;
                else
                        rc->dhcp_dirty = true;
        }
}

/* ---- plan: where would it go? ------------------------------------------------ */

int reconcile_plan(struct loop *l, const Lsc__Server *sv, Lsc__Reply *reply)
{
        struct reconcile *rc = &l->reconcile;
        uint32_t n = sched_view_host_count(rc->view);
        struct sched_request rq;

        if (!rc->loaded)
                return lsc_err_set(-EAGAIN, "lscd is still loading its view: try again in a moment");
        request_of_row(rc, sv, &rq);
        if (rq.has_to && rq.to_host == UINT32_MAX)
                return lsc_err_set(-ENOENT, "host %s is not known to lscd", sv->migrate_to);
        reply->plan = calloc(n ? n : 1, sizeof(*reply->plan));
        if (!reply->plan)
                return -ENOMEM;
        for (uint32_t i = 0; i < n; i++) {
                Lsc__PlanHost *p = calloc(1, sizeof(*p));
                char why[256] = "";

                if (!p)
                        return -ENOMEM;
                lsc__plan_host__init(p);
                p->host = strdup(sched_view_host(rc->view, i)->name);
                p->has_fits = 1;
                p->fits = sched_host_check(rc->view, &rq, i) == 0;
                if (!p->fits)
                        sched_host_explain(rc->view, &rq, i, why, sizeof(why));
                p->why = strdup(why);
                reply->plan[reply->n_plan++] = p;
                if (!p->host || !p->why)
                        return -ENOMEM;
        }
        return 0;
}

/* ---- plan: the calendar of deaths ------------------------------------------- */

#define PLAN_TURNOVER_S 60               /* what a turnover takes, for the budget's queue */
#define PLAN_DEATHS_MAX 4000             /* entries in one reply (its size is bounded) */
#define PLAN_LOAD_VALUES_MAX 60000       /* host-hours of projected load in one reply */
#define PLAN_CYCLES_MAX 1000             /* deaths of one mayfly within the horizon */

struct plan_death {
        int64_t at, start;
        size_t idx;                      /* rc->servers */
        uint32_t cycle;
        int32_t from, to;                /* view hosts: dies on, reborn on (-1: none fits) */
        uint32_t load_m;
};

static int plan_death_cmp(const void *a, const void *b)
{
        const struct plan_death *x = a, *y = b;

        if (x->at != y->at)
                return x->at < y->at ? -1 : 1;
        return x->idx < y->idx ? -1 : x->idx > y->idx;
}

struct plan_peak {
        uint32_t host;
        double peak;
};

static int plan_peak_cmp(const void *a, const void *b)
{
        const struct plan_peak *x = a, *y = b;

        return x->peak > y->peak ? -1 : x->peak < y->peak;
}

int reconcile_plan_turnover(struct loop *l, uint32_t hours, Lsc__Reply *reply)
{
        struct reconcile *rc = &l->reconcile;
        int64_t now_s = lsc_wall_us() / 1000000, from = now_s - now_s % 3600, end = now_s + (int64_t)hours * 3600;
        uint32_t nh = sched_view_host_count(rc->view), budget;
        _cleanup_free_ struct plan_death *d = NULL;
        _cleanup_free_ double *delta = NULL;
        _cleanup_free_ struct plan_peak *peaks = NULL;
        struct sched_rng rng = rc->rng;          /* a copy: the plan moves nothing */
        size_t n = 0, cap = 0, omitted = 0, nload;

        if (!rc->loaded)
                return lsc_err_set(-EAGAIN, "lscd is still loading its view: try again in a moment");
        budget = (uint32_t)mayfly_budget(l->cfg.turnover_max_pct, rc->n_servers);
        /* every mayfly's deaths within the horizon: the next (its expires_at, or a
         * lifetime after its coming binding), then one mean lifetime after each rebirth */
        for (size_t i = 0; i < rc->n_servers; i++) {
                struct reconcile_server *s = rc->servers[i];
                int64_t at, step;

                if (!s->lifetime_s || s->desired != RECONCILE_WANT_RUNNING || s->state == RECONCILE_FAILED)
                        continue;
                at = s->expires_s > 0 && !s->turn_to ? s->expires_s : now_s + s->lifetime_s;
                step = (int64_t)s->lifetime_s - (int64_t)s->lifetime_s * l->cfg.store.mayfly_jitter_pct / 200;
                if (step < 1)
                        step = 1;
                for (uint32_t c = 0; at <= end && c < PLAN_CYCLES_MAX; c++, at += step) {
                        if (n == PLAN_DEATHS_MAX) {
                                omitted++;
                                continue;
                        }
                        if (n == cap) {
                                size_t nc = cap ? cap * 2 : 256;
                                struct plan_death *x = realloc(d, nc * sizeof(*d));
                                if (!x)
                                        return -ENOMEM;
                                d = x;
                                cap = nc;
                        }
                        d[n++] = (struct plan_death){ .at = at < now_s ? now_s : at, .idx = i, .cycle = c };
                }
        }
        if (n)
                qsort(d, n, sizeof(*d), plan_death_cmp);
        /* the budget: at most `budget` at once, each taking PLAN_TURNOVER_S; in deadline
         * order, so starts (and ends) never decrease: the one that frees a slot for the
         * i-th is the (i - budget)-th */
        for (size_t i = 0; i < n; i++) {
                int64_t freed = i >= budget ? d[i - budget].start + PLAN_TURNOVER_S : 0;
                d[i].start = d[i].at > freed ? d[i].at : freed;
        }
        /* where each is reborn, from the view as it stands: sched_place on a copy of the
         * random state, nothing applied; a later cycle dies where the one before was reborn */
        if (!(delta = calloc((size_t)nh * (hours ? hours : 1), sizeof(*delta))) && nh && hours)
                return -ENOMEM;
        reply->deaths = calloc(n ? n : 1, sizeof(*reply->deaths));
        if (!reply->deaths)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                struct reconcile_server *s = rc->servers[d[i].idx];
                struct sched_request rq;
                struct sched_reasons why;
                uint32_t host;
                int32_t at_host = s->host;
                char name[LSC_NAME_MAX + 1], line[200] = "";
                Lsc__PlanDeath *p;

                for (size_t j = i; j-- > 0;)     /* the host its previous rebirth went to */
                        if (d[j].idx == d[i].idx) {
                                at_host = d[j].to;
                                break;
                        }
                d[i].from = at_host;
                if (request_of(rc, s, &rq) < 0)
                        return -ENOMEM;
                request_load(rc, s, &rq, d[i].start + s->lifetime_s, true);
                rq.now = d[i].start;
                if (at_host >= 0 && !rq.has_to) {
                        rq.has_exclude = true;
                        rq.exclude_host = (uint32_t)at_host;
                }
                d[i].to = sched_place(rc->view, &rq, &rng, &host, &why) == 0 ? (int32_t)host : -1;
                if (d[i].to < 0)
                        sched_reasons_format(rc->view, &rq, &why, line, sizeof(line));
                d[i].load_m = rq.load_m ? rq.load_m : (uint32_t)(s->vcpus * 10 * SCHED_LOAD_DEFAULT_PCT);
                /* the load leaves its host and arrives at the rebirth's from that hour on */
                if (hours && d[i].start < end) {
                        int64_t k = (d[i].start - from) / 3600;
                        if (k >= 0 && k < hours) {
                                if (d[i].from >= 0)
                                        delta[(size_t)d[i].from * hours + (size_t)k] -= d[i].load_m / 1000.0;
                                if (d[i].to >= 0)
                                        delta[(size_t)d[i].to * hours + (size_t)k] += d[i].load_m / 1000.0;
                        }
                }
                if (!(p = calloc(1, sizeof(*p))))
                        return -ENOMEM;
                lsc__plan_death__init(p);
                reply->deaths[reply->n_deaths++] = p;
                p->server = strdup(name_of(s, name, sizeof(name)));
                p->uuid = strdup(s->uuid);
                p->host = strdup(d[i].from >= 0 ? sched_view_host(rc->view, (uint32_t)d[i].from)->name : "");
                p->rebirth = strdup(d[i].to >= 0 ? sched_view_host(rc->view, (uint32_t)d[i].to)->name : "");
                p->why = strdup(line);
                p->has_expires_at = p->has_starts_at = p->has_cycle = 1;
                p->expires_at = d[i].at;
                p->starts_at = d[i].start;
                p->cycle = d[i].cycle;
                if (!p->server || !p->uuid || !p->host || !p->rebirth || !p->why)
                        return -ENOMEM;
        }
        /* each host's forecast (measured profile by hour of day), moved by the deaths and
         * rebirths above; the hottest hosts first when they do not all fit in a reply */
        if (!(peaks = calloc(nh ? nh : 1, sizeof(*peaks))))
                return -ENOMEM;
        for (uint32_t h = 0; h < nh; h++) {
                const struct sched_forecast *f = sched_host_forecast(rc->view, h);
                double run = 0, peak = 0;

                for (uint32_t k = 0; k < hours; k++) {
                        double *v = &delta[(size_t)h * hours + k];
                        run += *v;
                        *v = (f ? f->profile_m[((from + (int64_t)k * 3600) / 3600) % SCHED_SLOTS] / 1000.0 : 0) + run;
                        if (*v < 0)
                                *v = 0;
                        if (*v > peak)
                                peak = *v;
                }
                peaks[h] = (struct plan_peak){ .host = h, .peak = peak };
        }
        qsort(peaks, nh, sizeof(*peaks), plan_peak_cmp);
        nload = hours ? PLAN_LOAD_VALUES_MAX / hours : nh;
        if (nload > nh)
                nload = nh;
        reply->loads = calloc(nload ? nload : 1, sizeof(*reply->loads));
        if (!reply->loads)
                return -ENOMEM;
        for (size_t i = 0; i < nload; i++) {
                uint32_t h = peaks[i].host;
                const struct sched_forecast *f = sched_host_forecast(rc->view, h);
                const struct sched_host *vh = sched_view_host_const(rc->view, h);
                Lsc__PlanLoad *p = calloc(1, sizeof(*p));

                if (!p)
                        return -ENOMEM;
                lsc__plan_load__init(p);
                reply->loads[reply->n_loads++] = p;
                p->host = strdup(vh->name);
                p->has_phys_vcpus = 1;
                p->phys_vcpus = f && f->phys_m ? f->phys_m / 1000.0 : (double)vh->alloc.vcpus;
                if (!p->host || !(p->vcpus = calloc(hours ? hours : 1, sizeof(*p->vcpus))))
                        return -ENOMEM;
                memcpy(p->vcpus, &delta[(size_t)h * hours], hours * sizeof(*p->vcpus));
                p->n_vcpus = hours;
        }
        reply->has_plan_from = reply->has_turnover_budget = 1;
        reply->plan_from = from;
        reply->turnover_budget = budget;
        if (omitted || nload < nh)
                log_info("plan turnover: %zu deaths and %zu hosts' loads left out of the reply (its size is "
                         "bounded)", omitted, (size_t)(nh - nload));
        return 0;
}

/* ---- metal fencing ------------------------------------------------------------
 * A metal identity's machine may still run whatever its lost agent cannot stop, and
 * nothing on it reaches the BMC: lscd's fence worker (fence.c) powers the machine off
 * and reads the power back. lost -> fencing (the power-off is asked for) -> pending
 * (or defined, or deleted) once the BMC confirms off, or once an operator who checked
 * the machine by hand says so with `lsc host confirm-off HOST` (an audited event). */

/* Out of fencing: the machine is off, so the identity may be bound again. */
static void fenced_off(struct loop *l, struct reconcile_server *s, const char *reason)
{
        view_unapply(&l->reconcile, s);
        if (s->desired == RECONCILE_WANT_RUNNING)
                transition(l, s, FROM("fencing"), "pending", "server.fenced", reason, true, false);
        else if (s->desired == RECONCILE_WANT_DELETED)
                transition(l, s, FROM("fencing"), "deleted", "server.fenced", reason, true, false);
        else
                transition(l, s, FROM("fencing"), "defined", "server.fenced", reason, true, false);
}

static bool metal_fence(struct loop *l, struct reconcile_server *s, int64_t now)
{
        struct liveness_host *h = s->bound;
        char reason[512];

        if (!h)
                return false;
        if (s->state == RECONCILE_LOST) {
                if (fence_knows(l->fence, h->name))
                        snprintf(reason, sizeof(reason), "host %s lost: powering it off through its BMC", h->name);
                else
                        snprintf(reason, sizeof(reason), "host %s lost and lscd knows no BMC for it ([bmc %s] "
                                 "in its config): check the machine is off, then lsc host confirm-off %s",
                                 h->name, h->name, h->name);
                log_warn("server %s: %s", s->uuid, reason);
                transition(l, s, FROM("lost"), "fencing", "server.fencing", reason, false, false);
                return true;
        }
        /* fencing: (again) ask for the power-off; the worker keeps one per host and
         * tries a failed one again only FENCE_RETRY_US later */
        fence_request(l->fence, h->name, now);
        return false;
}

void reconcile_fence_results(struct loop *l)
{
        struct reconcile *rc = &l->reconcile;
        struct fence_result res[16];
        size_t n;
        char reason[512];

        while ((n = fence_results(l->fence, res, ARRAY_SIZE(res))) > 0) {
                for (size_t i = 0; i < n; i++) {
                        if (res[i].error < 0) {
                                log_warn("host %s: fencing failed after %lld ms: %s (trying again; or check the "
                                         "machine and run lsc host confirm-off %s)", res[i].host,
                                         (long long)(res[i].took_us / 1000), res[i].detail, res[i].host);
                                continue;
                        }
                        log_info("host %s: its BMC confirmed power off in %lld ms", res[i].host,
                                 (long long)(res[i].took_us / 1000));
                        snprintf(reason, sizeof(reason), "the BMC of host %.63s confirmed power off", res[i].host);
                        for (size_t k = 0; k < rc->n_servers; k++) {
                                struct reconcile_server *s = rc->servers[k];
                                if (s->state == RECONCILE_FENCING && !s->busy && s->bound &&
                                    !strcmp(s->bound->name, res[i].host))
                                        fenced_off(l, s, reason);
                        }
                }
        }
}

size_t reconcile_fencing_on(const struct loop *l, const char *host)
{
        const struct reconcile *rc = &l->reconcile;
        size_t n = 0;

        for (size_t k = 0; k < rc->n_servers; k++) {
                const struct reconcile_server *s = rc->servers[k];
                if (s->state == RECONCILE_FENCING && s->bound && !strcmp(s->bound->name, host))
                        n++;
        }
        return n;
}

void reconcile_confirmed_off(struct loop *l, const char *host, const char *actor)
{
        struct reconcile *rc = &l->reconcile;
        char reason[512];

        snprintf(reason, sizeof(reason), "%.200s confirmed host %.63s off by hand (lsc host confirm-off)", actor, host);
        for (size_t k = 0; k < rc->n_servers; k++) {
                struct reconcile_server *s = rc->servers[k];
                if (s->state != RECONCILE_FENCING || !s->bound || strcmp(s->bound->name, host) != 0)
                        continue;
                if (s->busy) {   /* its entry into fencing is still at the store */
                        log_warn("server %s on host %s: a change is in flight, not released: run lsc host "
                                 "confirm-off %s again", s->uuid, host, host);
                        continue;
                }
                log_warn("server %s: %s", s->uuid, reason);
                fenced_off(l, s, reason);
        }
}
