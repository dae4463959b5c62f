/* CLI requests: checked on arrival (bad input is refused even while the database is
 * away, and costs no transaction), run by the store thread, answered when they come back. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api.h"
#include "err.h"
#include "log.h"
#include "util.h"

/* Requests lscd makes of its own store: a CLI may not send them. */
static bool internal_op(Lsc__Request__OpCase op)
{
        return op == LSC__REQUEST__OP_HOST_REGISTER || op == LSC__REQUEST__OP_LOAD ||
               op == LSC__REQUEST__OP_BIND || op == LSC__REQUEST__OP_TRANSITION;
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
        if ((r = store_check(e->request)) < 0) {
                log_debug("refused request from %s: %s", e->sender ? e->sender : "?", lsc_err_msg(r));
                lsc_wire_send_error(l->cli, route, seq, LSC__STATUS__ERR_INVALID, lsc_err_msg(r));
                return;
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
        job->actor = strdup(e->sender && e->sender[0] ? e->sender : "cli:unknown");
        job->user = ctx;
        if ((r = store_submit(l->store, job)) < 0) {
                lsc_wire_send_error(l->cli, route, seq, LSC__STATUS__ERR_INTERNAL, lsc_err_msg(r));
                store_job_free(job);           /* frees ctx too */
                return;
        }
        l->inflight++;
}

/* The database knows hosts; only lscd's memory knows whether they are alive now. */
static void hosts_merge_liveness(struct loop *l, Lsc__Reply *reply)
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
        }
}

void api_complete(struct loop *l, struct store_job *job)
{
        _cleanup_free_ struct api_ctx *ctx = job->user;
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
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
        hosts_merge_liveness(l, job->reply);
        /* start, stop, delete and edit change what the loop must drive */
        if (job->reply && job->reply->status == LSC__STATUS__OK && job->request &&
            job->request->op_case != LSC__REQUEST__OP_SERVER_GET &&
            job->request->op_case != LSC__REQUEST__OP_SERVER_LIST)
                reconcile_observe(l, job->reply->servers, job->reply->n_servers);
        if (job->reply && job->reply->status == LSC__STATUS__OK && job->reply->n_groups)
                reconcile_observe_groups(l, job->reply->groups, job->reply->n_groups);
        if (job->reply && job->reply->status == LSC__STATUS__OK && job->request &&
            (job->request->op_case == LSC__REQUEST__OP_SERVER_CREATE ||
             job->request->op_case == LSC__REQUEST__OP_SERVER_EDIT ||
             job->request->op_case == LSC__REQUEST__OP_SERVER_DELETE))
                l->reconcile.dhcp_dirty = true;          /* MACs, IPs or hostnames changed */
        env.has_seq = 1;
        env.seq = ctx->seq;
        env.body_case = LSC__ENVELOPE__BODY_REPLY;
        env.reply = job->reply;
        if (!job->reply)
                r = lsc_wire_send_error(l->cli, &ctx->route, ctx->seq, LSC__STATUS__ERR_INTERNAL,
                                        "the store returned no reply");
        else
                r = lsc_wire_send(l->cli, &ctx->route, &env);
        if (r < 0)
                log_info("could not answer a CLI request (the client left?): %s", lsc_err_msg(r));
        job->user = NULL;
        store_job_free(job);
}
