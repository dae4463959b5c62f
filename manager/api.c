/* CLI requests: checked on arrival (bad input is refused even while the database is
 * away, and costs no transaction), run by the store thread, answered when they come back. */
#define _GNU_SOURCE             /* asprintf */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api.h"
#include "err.h"
#include "log.h"
#include "util.h"

/* plan_server for a spec: answered at once from the view. */
static void plan_spec(struct loop *l, const struct lsc_route *route, uint64_t seq, Lsc__ServerSpec *spec)
{
        Lsc__Reply reply = LSC__REPLY__INIT;
        Lsc__Request check = LSC__REQUEST__INIT;
        Lsc__ServerCreate create = LSC__SERVER_CREATE__INIT;
        Lsc__Server sv = LSC__SERVER__INIT;
        int r;

        /* the same checks as a create, without the name a plan does not need */
        if (!spec->name)
                spec->name = strdup("planned");
        create.spec = spec;
        check.op_case = LSC__REQUEST__OP_SERVER_CREATE;
        check.server_create = &create;
        if ((r = store_check(&check)) < 0) {
                lsc_wire_send_error(l->cli, route, seq, LSC__STATUS__ERR_INVALID, lsc_err_msg(r));
                return;
        }
        sv.spec = spec;
        sv.group = spec->group;
        r = reconcile_plan(l, &sv, &reply);
        if (r < 0) {
                lsc_wire_send_error(l->cli, route, seq, r == -ENOENT ? LSC__STATUS__ERR_NOTFOUND
                                                                      : LSC__STATUS__ERR_UNAVAILABLE,
                                    lsc_err_msg(r));
        } else {
                reply.has_status = 1;
                reply.status = LSC__STATUS__OK;
                if ((r = lsc_wire_send_reply(l->cli, route, seq, &reply)) == -EMSGSIZE)
                        log_warn("plan: %s", lsc_err_msg(r));
        }
        for (size_t i = 0; i < reply.n_plan; i++)
                lsc__plan_host__free_unpacked(reply.plan[i], NULL);
        free(reply.plan);
}

/* plan_turnover: answered at once from the view, like a plan for a spec. */
static void plan_turnover(struct loop *l, const struct lsc_route *route, uint64_t seq, const Lsc__PlanTurnover *p)
{
        Lsc__Reply reply = LSC__REPLY__INIT;
        uint32_t hours = p && p->has_hours ? p->hours : 168;
        int r;

        if (hours < 1 || hours > 8760) {
                lsc_wire_send_error(l->cli, route, seq, LSC__STATUS__ERR_INVALID,
                                    "hours: want 1-8760 (a year at most)");
                return;
        }
        r = reconcile_plan_turnover(l, hours, &reply);
        if (r < 0) {
                lsc_wire_send_error(l->cli, route, seq, r == -EAGAIN ? LSC__STATUS__ERR_UNAVAILABLE
                                                                      : LSC__STATUS__ERR_INTERNAL, lsc_err_msg(r));
        } else {
                reply.has_status = 1;
                reply.status = LSC__STATUS__OK;
                if ((r = lsc_wire_send_reply(l->cli, route, seq, &reply)) == -EMSGSIZE)
                        log_warn("plan turnover: %s", lsc_err_msg(r));
        }
        for (size_t i = 0; i < reply.n_deaths; i++)
                lsc__plan_death__free_unpacked(reply.deaths[i], NULL);
        free(reply.deaths);
        for (size_t i = 0; i < reply.n_loads; i++)
                lsc__plan_load__free_unpacked(reply.loads[i], NULL);
        free(reply.loads);
}

/* plan_server: for a spec at once; for an existing server, read it first (the store
 * answers a server_get, and api_complete turns the answer into the plan). */
static void plan_request(struct loop *l, const struct lsc_route *route, uint64_t seq, Lsc__Envelope *e)
{
        Lsc__PlanServer *p = e->request->plan_server;
        struct api_ctx *ctx;
        struct store_job *job;
        Lsc__Request *get;
        Lsc__Ref *ref;
        int r;

        if (p->spec && !p->ref) {
                plan_spec(l, route, seq, p->spec);
                return;
        }
        if (!p->ref || !p->ref[0]) {
                lsc_wire_send_error(l->cli, route, seq, LSC__STATUS__ERR_INVALID, "plan what? give a server or a spec");
                return;
        }
        ctx = calloc(1, sizeof(*ctx));
        job = calloc(1, sizeof(*job));
        get = calloc(1, sizeof(*get));
        ref = calloc(1, sizeof(*ref));
        if (!ctx || !job || !get || !ref) {
                free(ctx);
                free(job);
                free(get);
                free(ref);
                lsc_wire_send_error(l->cli, route, seq, LSC__STATUS__ERR_INTERNAL, "out of memory");
                return;
        }
        lsc__request__init(get);
        lsc__ref__init(ref);
        ref->ref = TAKE_PTR(p->ref);
        get->op_case = LSC__REQUEST__OP_SERVER_GET;
        get->server_get = ref;
        ctx->origin = API_ORIGIN_CLI;
        ctx->route = *route;
        ctx->seq = seq;
        ctx->plan = true;
        job->kind = STORE_JOB_REQUEST;
        job->request = get;
        job->actor = strdup(e->sender && e->sender[0] ? e->sender : "cli:unknown");
        job->user = ctx;
        if ((r = store_check(get)) < 0 || (r = store_submit(l->store, job)) < 0) {
                lsc_wire_send_error(l->cli, route, seq, LSC__STATUS__ERR_INVALID, lsc_err_msg(r));
                store_job_free(job);
                return;
        }
        l->inflight++;
}

/* Who asked: what the CLI says (cli:USER@HOST), and on ipc:// the uid the kernel
 * vouches for (SO_PEERCRED, in libzmq's Peer-Address "HOST:UID:GID:PID"). */
static char *actor_of(const Lsc__Envelope *e, const struct lsc_route *route)
{
        const char *said = e->sender && e->sender[0] ? e->sender : "cli:unknown";
        const char *p = strchr(route->address, ':');
        unsigned long uid;
        char *end, *s;

        if (!p || !p[1] || (uid = strtoul(p + 1, &end, 10), *end != ':'))
                return strdup(said);
        if (asprintf(&s, "%s uid=%lu", said, uid) < 0)
                return NULL;
        return s;
}

/* Requests lscd makes of its own store: a CLI may not send them. */
static bool internal_op(Lsc__Request__OpCase op)
{
        return op == LSC__REQUEST__OP_HOST_REGISTER || op == LSC__REQUEST__OP_LOAD ||
               op == LSC__REQUEST__OP_BIND || op == LSC__REQUEST__OP_TRANSITION ||
               op == LSC__REQUEST__OP_TRANSITIONS || op == LSC__REQUEST__OP_TURNOVER;
}

void api_request(struct loop *l, const struct lsc_route *route, Lsc__Envelope *env)
{
        _cleanup_envelope_ Lsc__Envelope *e = env;
        uint64_t seq = e->has_seq ? e->seq : 0;
        struct api_ctx *ctx;
        struct store_job *job;
        int r;

        if (e->body_case == LSC__ENVELOPE__BODY_REQUEST && internal_op(e->request->op_case)) {
                lsc_wire_send_error(l->cli, route, seq, LSC__STATUS__ERR_INVALID,
                                    "that request is lscd's own, not the CLI's");
                return;
        }
        if (e->body_case != LSC__ENVELOPE__BODY_REQUEST) {
                log_warn("CLI peer %s sent a message that is not a request; answered with an error",
                         e->sender ? e->sender : "?");
                lsc_wire_send_error(l->cli, route, seq, LSC__STATUS__ERR_INVALID,
                                    "expected a request");
                return;
        }
        lsc_err_clear();
        if (e->request->op_case == LSC__REQUEST__OP_PLAN_SERVER) {
                plan_request(l, route, seq, e);
                return;
        }
        if (e->request->op_case == LSC__REQUEST__OP_PLAN_TURNOVER) {
                plan_turnover(l, route, seq, e->request->plan_turnover);
                return;
        }
        if ((r = store_check(e->request)) < 0) {
                log_debug("refused request from %s: %s", e->sender ? e->sender : "?", lsc_err_msg(r));
                lsc_wire_send_error(l->cli, route, seq, LSC__STATUS__ERR_INVALID, lsc_err_msg(r));
                return;
        }
        if (e->request->op_case == LSC__REQUEST__OP_HOST_REMOVE) {
                /* a live agent would register it again at once */
                const struct liveness_host *h = liveness_find(&l->liveness, e->request->host_remove->ref);
                char msg[200];
                if (h && h->state != LIVENESS_LOST) {
                        snprintf(msg, sizeof(msg), "host %s is %s: stop its agent first, or it registers again",
                                 h->name, liveness_state_names[h->state]);
                        lsc_wire_send_error(l->cli, route, seq, LSC__STATUS__ERR_CONFLICT, msg);
                        return;
                }
        }
        if (e->request->op_case == LSC__REQUEST__OP_HOST_CONFIRM_OFF) {
                /* only for a lost host whose servers wait for their BMC: else it changes nothing */
                const char *ref = e->request->host_confirm_off->ref;
                const struct liveness_host *h = liveness_find(&l->liveness, ref);
                char msg[300];
                if (h && h->state != LIVENESS_LOST) {
                        snprintf(msg, sizeof(msg), "host %s is %s: its agent still answers, nothing to confirm",
                                 h->name, liveness_state_names[h->state]);
                        lsc_wire_send_error(l->cli, route, seq, LSC__STATUS__ERR_CONFLICT, msg);
                        return;
                }
                if (reconcile_fencing_on(l, ref) == 0) {
                        snprintf(msg, sizeof(msg), "no server waits in fencing on host %s (name the host by its name)",
                                 ref);
                        lsc_wire_send_error(l->cli, route, seq, LSC__STATUS__ERR_CONFLICT, msg);
                        return;
                }
        }
        if (l->inflight >= l->cfg.max_inflight) {
                lsc_wire_send_error(l->cli, route, seq, LSC__STATUS__ERR_UNAVAILABLE,
                                    "lscd is busy: too many requests waiting for the database");
                return;
        }
        ctx = calloc(1, sizeof(*ctx));
        job = calloc(1, sizeof(*job));
        if (!ctx || !job) {
                free(ctx);
                free(job);
                lsc_wire_send_error(l->cli, route, seq, LSC__STATUS__ERR_INTERNAL, "out of memory");
                return;
        }
        ctx->origin = API_ORIGIN_CLI;
        ctx->route = *route;
        ctx->seq = seq;
        job->kind = STORE_JOB_REQUEST;
        job->request = e->request;      /* detach: the job owns it now */
        e->request = NULL;
        e->body_case = LSC__ENVELOPE__BODY__NOT_SET;
        job->actor = actor_of(e, route);
        job->user = ctx;
        if ((r = store_submit(l->store, job)) < 0) {
                lsc_wire_send_error(l->cli, route, seq, LSC__STATUS__ERR_INTERNAL, lsc_err_msg(r));
                store_job_free(job);           /* frees ctx too */
                return;
        }
        l->inflight++;
}

/* Three decimals: the figures are measured, not exact, and floats print long. */
static double milli(double v)
{
        return round(v * 1000.0) / 1000.0;
}

/* A history as the CLI shows it; with_profile adds the 24 hourly buckets (show, not
 * list: a list page has room for the summary only). NULL when nothing is known. */
static Lsc__Measured *measured_of(const struct load_hist *h, bool with_profile)
{
        int64_t wall_s = lsc_wall_us() / 1000000;
        struct load_summary s;
        Lsc__Measured *m;
        double expected;

        if (!h || load_hist_summary(h, wall_s, &s) < 0 || !(m = malloc(sizeof(*m))))
                return NULL;
        lsc__measured__init(m);
        m->has_cpu_vcpus = m->has_memory_mib = m->has_sampled_at = 1;
        m->cpu_vcpus = milli(s.now[LOAD_CPU]);
        m->memory_mib = (uint64_t)llround(s.now[LOAD_MEMORY]);
        m->sampled_at = s.sampled_at;
        if (s.minutes_1h) {
                m->has_cpu_mean_1h = m->has_cpu_peak_1h = m->has_memory_peak_1h_mib = 1;
                m->cpu_mean_1h = milli(s.mean_1h[LOAD_CPU]);
                m->cpu_peak_1h = milli(s.peak_1h[LOAD_CPU]);
                m->memory_peak_1h_mib = (uint64_t)llround(s.peak_1h[LOAD_MEMORY]);
        }
        if (!with_profile)
                return m;
        if (load_hist_expected(h, LOAD_CPU, -1, wall_s, &expected) == 0) {
                m->has_cpu_expected = 1;
                m->cpu_expected = milli(expected);
        }
        if ((m->profile_vcpus = malloc(LOAD_HOURS * sizeof(*m->profile_vcpus)))) {
                load_hist_profile(h, LOAD_CPU, m->profile_vcpus);
                m->n_profile_vcpus = LOAD_HOURS;
                for (size_t i = 0; i < LOAD_HOURS; i++)
                        if (m->profile_vcpus[i] >= 0)
                                m->profile_vcpus[i] = milli(m->profile_vcpus[i]);
        }
        return m;
}

/* Measured load is lscd's memory's, never the database's. */
static void servers_merge_load(struct loop *l, Lsc__Reply *reply)
{
        for (size_t i = 0; reply && i < reply->n_servers; i++) {
                Lsc__Server *sv = reply->servers[i];

                if (sv->uuid && !sv->measured)
                        sv->measured = measured_of(load_identity_find(&l->load, sv->uuid), true);
        }
}

/* The database knows hosts; only lscd's memory knows whether they are alive now. */
static void hosts_merge_liveness(struct loop *l, Lsc__Reply *reply, bool with_profile)
{
        int64_t now = lsc_now_us();

        for (size_t i = 0; reply && i < reply->n_hosts; i++) {
                Lsc__Host *h = reply->hosts[i];
                const struct liveness_host *live = liveness_find(&l->liveness, h->name);
                const char *state = liveness_state_names[live ? live->state : LIVENESS_LOST];

                free(h->liveness);
                h->liveness = strdup(state);
                h->has_healthy = h->has_last_seen_ms_ago = 1;
                h->healthy = live && live->state == LIVENESS_UP && live->healthy;
                h->last_seen_ms_ago = live && live->last_beat_us ? (now - live->last_beat_us) / 1000 : -1;
                if (live && live->health[0]) {
                        free(h->health);
                        h->health = strdup(live->health);
                }
                if (live && !h->measured && load_hist_known(&live->load))
                        h->measured = measured_of(&live->load, with_profile);
        }
}

void api_complete(struct loop *l, struct store_job *job)
{
        _cleanup_free_ struct api_ctx *ctx = job->user;
        int r;

        l->inflight--;
        if (ctx->origin == API_ORIGIN_AGENT) {
                job->user = TAKE_PTR(ctx);
                loop_agent_registered(l, job);
                return;
        }
        if (ctx->origin == API_ORIGIN_RECONCILE) {
                job->user = TAKE_PTR(ctx);
                reconcile_job_done(l, job);
                return;
        }
        hosts_merge_liveness(l, job->reply, !job->request || job->request->op_case != LSC__REQUEST__OP_HOST_LIST);
        if (job->request && job->request->op_case == LSC__REQUEST__OP_SERVER_GET)
                servers_merge_load(l, job->reply);
        if (ctx->plan && job->reply && job->reply->status == LSC__STATUS__OK && job->reply->n_servers == 1) {
                int r2 = reconcile_plan(l, job->reply->servers[0], job->reply);
                if (r2 < 0) {
                        lsc_wire_send_error(l->cli, &ctx->route, ctx->seq, LSC__STATUS__ERR_UNAVAILABLE,
                                            lsc_err_msg(r2));
                        job->user = NULL;
                        store_job_free(job);
                        return;
                }
        }
        /* start, stop, delete and edit change what the loop must drive */
        if (!ctx->plan && job->reply && job->reply->status == LSC__STATUS__OK && job->request &&
            job->request->op_case != LSC__REQUEST__OP_SERVER_GET &&
            job->request->op_case != LSC__REQUEST__OP_SERVER_LIST)
                reconcile_observe(l, job->reply->servers, job->reply->n_servers);
        if (job->reply && job->reply->status == LSC__STATUS__OK && job->reply->n_groups)
                reconcile_observe_groups(l, job->reply->groups, job->reply->n_groups);
        if (job->reply && job->reply->status == LSC__STATUS__OK && job->request &&
            (job->request->op_case == LSC__REQUEST__OP_HOST_DRAIN ||
             job->request->op_case == LSC__REQUEST__OP_HOST_UNDRAIN))
                reconcile_observe_hosts(l, job->reply->hosts, job->reply->n_hosts);   /* admin changed */
        if (job->reply && job->reply->status == LSC__STATUS__OK && job->request &&
            job->request->op_case == LSC__REQUEST__OP_HOST_CONFIRM_OFF && job->reply->n_hosts == 1)
                reconcile_confirmed_off(l, job->reply->hosts[0]->name, job->actor ? job->actor : "?");
        if (job->reply && job->reply->status == LSC__STATUS__OK && job->request &&
            (job->request->op_case == LSC__REQUEST__OP_SERVER_CREATE ||
             job->request->op_case == LSC__REQUEST__OP_SERVER_EDIT ||
             job->request->op_case == LSC__REQUEST__OP_SERVER_DELETE))
                l->reconcile.dhcp_dirty = true;          /* MACs, IPs or hostnames changed */
        if (!job->reply)
                r = lsc_wire_send_error(l->cli, &ctx->route, ctx->seq, LSC__STATUS__ERR_INTERNAL,
                                        "the store returned no reply");
        else
                r = lsc_wire_send_reply(l->cli, &ctx->route, ctx->seq, job->reply);
        if (r == -EMSGSIZE)
                log_warn("request %d: %s", job->request ? (int)job->request->op_case : 0, lsc_err_msg(r));
        else if (r < 0)
                log_info("could not answer a CLI request (the client left?): %s", lsc_err_msg(r));
        job->user = NULL;
        store_job_free(job);
}
