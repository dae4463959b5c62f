/* CLI requests: checked here before any database work (bad input changes nothing and
 * costs no transaction), then run by the store thread; answered when they come back. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "addr.h"
#include "api.h"
#include "err.h"
#include "log.h"
#include "util.h"
#include "validate.h"

struct api_ctx {
        struct lsc_route route;
        uint64_t seq;
};

static int check_spec(const Lsc__ServerSpec *s, bool create)
{
        struct lsc_mac mac;
        struct lsc_ip ip;
        char shown[LSC_SHOW_BUF];
        int r;

        if (create) {
                if (!s->name)
                        return lsc_err_set(-EINVAL, "a server needs a name");
                if (!s->has_vcpus)
                        return lsc_err_set(-EINVAL, "--vcpus is required");
                if (!s->has_memory_mib)
                        return lsc_err_set(-EINVAL, "--memory is required");
        }
        if (s->name && (r = lsc_validate_name("server name", s->name)) < 0)
                return r;
        if (s->kind && lsc_enum_parse(lsc_kind_names, LSC_KIND_COUNT, s->kind) < 0)
                return lsc_err_set(-EINVAL, "unknown kind \"%s\": use vm, container or metal",
                                   lsc_str_show(s->kind, shown));
        if (s->has_vcpus && (r = lsc_validate_vcpus(s->vcpus)) < 0)
                return r;
        if (s->has_memory_mib && (r = lsc_validate_memory_mib(s->memory_mib)) < 0)
                return r;
        if (s->has_disk_gib && (r = lsc_validate_disk_gib(s->disk_gib)) < 0)
                return r;
        if (s->disk_mode && lsc_enum_parse(lsc_disk_mode_names, LSC_DISK_MODE_COUNT, s->disk_mode) < 0)
                return lsc_err_set(-EINVAL, "unknown disk mode \"%s\": use ephemeral or persistent",
                                   lsc_str_show(s->disk_mode, shown));
        if (s->image && (r = lsc_validate_image(s->image)) < 0)
                return r;
        if (s->hostname && (r = lsc_validate_hostname(s->hostname)) < 0)
                return r;
        if (s->pool && (r = lsc_validate_name("pool name", s->pool)) < 0)
                return r;
        if (s->has_lifetime_s && (r = lsc_validate_lifetime_s(s->lifetime_s)) < 0)
                return r;
        for (size_t i = 0; i < s->n_labels; i++) {
                const Lsc__Label *l = s->labels[i];
                if ((r = lsc_validate_label_part("label key", l->key ? l->key : "")) < 0 ||
                    (r = lsc_validate_label_part("label value", l->value ? l->value : "")) < 0)
                        return r;
        }
        if (s->n_macs > 16 || s->n_ips > 16)
                return lsc_err_set(-EINVAL, "at most 16 MACs and 16 IPs per server");
        for (size_t i = 0; i < s->n_macs; i++)
                if ((r = lsc_mac_parse(s->macs[i], &mac)) < 0)
                        return r;
        for (size_t i = 0; i < s->n_ips; i++)
                if ((r = lsc_ip_parse(s->ips[i], &ip)) < 0)
                        return r;
        return 0;
}

static int check_ref(const Lsc__Ref *ref, const char *what)
{
        if (!ref || !ref->ref || !ref->ref[0])
                return lsc_err_set(-EINVAL, "which %s? give its name", what);
        if (strlen(ref->ref) > 64)
                return lsc_err_set(-EINVAL, "%s reference is too long", what);
        return 0;
}

int api_validate(const Lsc__Request *req)
{
        int r;

        switch (req->op_case) {
        case LSC__REQUEST__OP_SERVER_CREATE:
                if (!req->server_create->spec)
                        return lsc_err_set(-EINVAL, "server create without a specification");
                return check_spec(req->server_create->spec, true);
        case LSC__REQUEST__OP_SERVER_EDIT: {
                const Lsc__ServerEdit *e = req->server_edit;
                Lsc__Ref ref = LSC__REF__INIT;
                ref.ref = e->ref;
                if ((r = check_ref(&ref, "server")) < 0)
                        return r;
                for (size_t i = 0; i < e->n_unlabel; i++)
                        if ((r = lsc_validate_label_part("label key", e->unlabel[i])) < 0)
                                return r;
                return e->spec ? check_spec(e->spec, false) : 0;
        }
        case LSC__REQUEST__OP_SERVER_DELETE:
                return check_ref(req->server_delete, "server");
        case LSC__REQUEST__OP_SERVER_GET:
                return check_ref(req->server_get, "server");
        case LSC__REQUEST__OP_POOL_CREATE: {
                const Lsc__PoolCreate *p = req->pool_create;
                struct lsc_cidr cidr;
                struct lsc_ip gw;
                char shown_gw[LSC_SHOW_BUF];
                if (!p->name)
                        return lsc_err_set(-EINVAL, "a pool needs a name");
                if ((r = lsc_validate_name("pool name", p->name)) < 0)
                        return r;
                if (!p->cidr)
                        return lsc_err_set(-EINVAL, "--cidr is required");
                if ((r = lsc_cidr_parse(p->cidr, &cidr)) < 0)
                        return r;
                if (p->gateway) {
                        if ((r = lsc_ip_parse(p->gateway, &gw)) < 0)
                                return r;
                        if (!lsc_cidr_contains(&cidr, &gw) || lsc_cidr_is_reserved(&cidr, &gw))
                                return lsc_err_set(-EINVAL, "gateway %s is not a host address of %s",
                                                   lsc_str_show(p->gateway, shown_gw), p->cidr);
                }
                return 0;
        }
        case LSC__REQUEST__OP_POOL_DELETE:
                return check_ref(req->pool_delete, "pool");
        case LSC__REQUEST__OP_POOL_GET:
                return check_ref(req->pool_get, "pool");
        case LSC__REQUEST__OP_EVENT_LIST:
                if (req->event_list->has_limit &&
                    (req->event_list->limit < 1 || req->event_list->limit > 10000))
                        return lsc_err_set(-EINVAL, "--limit %u out of range: 1-10000",
                                           req->event_list->limit);
                if (req->event_list->server && strlen(req->event_list->server) > 64)
                        return lsc_err_set(-EINVAL, "server reference is too long");
                return 0;
        case LSC__REQUEST__OP_SERVER_LIST:
        case LSC__REQUEST__OP_POOL_LIST:
        case LSC__REQUEST__OP_PING:
                return 0;
        default:
                return lsc_err_set(-EINVAL, "unknown request (operation %d)", (int)req->op_case);
        }
}

void api_request(struct loop *l, const struct lsc_route *route, Lsc__Envelope *env)
{
        _cleanup_envelope_ Lsc__Envelope *e = env;
        uint64_t seq = e->has_seq ? e->seq : 0;
        struct api_ctx *ctx;
        struct store_job *job;
        int r;

        if (e->body_case != LSC__ENVELOPE__BODY_REQUEST) {
                log_warn("CLI peer %s sent a message that is not a request; answered with an error",
                         e->sender ? e->sender : "?");
                lsc_wire_send_error(l->cli, route, seq, LSC__STATUS__ERR_INVALID,
                                    "expected a request");
                return;
        }
        lsc_err_clear();
        if ((r = api_validate(e->request)) < 0) {
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

void api_complete(struct loop *l, struct store_job *job)
{
        _cleanup_free_ struct api_ctx *ctx = job->user;
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        int r;

        l->inflight--;
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
