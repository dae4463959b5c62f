/* lscd's loop: zmq_poll over the CLI socket, the store's socket and a signalfd.
 * It never waits on PostgreSQL: requests go to the store thread and come back. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include "api.h"
#include "curve.h"
#include "err.h"
#include "log.h"
#include "loop.h"
#include "util.h"
#include "wire.h"

/* Frames above the envelope limit still get an error reply; far larger ones make
 * libzmq drop the peer before they fill memory. */
#define LOOP_MAX_MSG ((int64_t)LSC_WIRE_MAX_FRAME * 4)
#define LIVENESS_DEFER_MAX_US 2000000  /* a busy loop judges liveness this late at most */
#define LOOP_IO_THREADS 2             /* libzmq I/O threads: CurveZMQ runs there */

/* For ipc:// endpoints: the directory exists and the socket is for root's group only. */
static int ipc_prepare(const char *endpoint)
{
        char dir[512];
        char *slash;

        if (strncmp(endpoint, "ipc://", 6) != 0)
                return 0;
        if (strlen(endpoint + 6) >= 108)
                return lsc_err_set(-ENAMETOOLONG, "ipc path %s is longer than 107 bytes", endpoint + 6);
        snprintf(dir, sizeof(dir), "%s", endpoint + 6);
        slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = '\0';
                if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                        return lsc_err_set(-errno, "cannot create %s: %s", dir, strerror(errno));
        }
        return 0;
}

static int socket_setup(struct loop *l)
{
        int zero = 0, one = 1, hwm = 10000, r;
        int64_t maxmsg = LOOP_MAX_MSG;
        mode_t old;

        l->cli = zmq_socket(l->zctx, ZMQ_ROUTER);
        if (!l->cli)
                return lsc_err_set(-errno, "zmq_socket: %s", zmq_strerror(errno));
        zmq_setsockopt(l->cli, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(l->cli, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
        zmq_setsockopt(l->cli, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
        zmq_setsockopt(l->cli, ZMQ_SNDHWM, &hwm, sizeof(hwm));
        zmq_setsockopt(l->cli, ZMQ_RCVHWM, &hwm, sizeof(hwm));
        if ((r = ipc_prepare(l->cfg.cli_endpoint)) < 0)
                return r;
        /* the CLI socket is the admin's door: owner and group only */
        old = umask(0007);
        r = zmq_bind(l->cli, l->cfg.cli_endpoint);
        umask(old);
        if (r < 0)
                return lsc_err_set(-errno, "cannot listen on %s: %s", l->cfg.cli_endpoint,
                                   zmq_strerror(errno));
        l->cli_bound = true;
        return 0;
}

/* The agents' door: CURVE server, ZAP-checked, one routing id per agent connection. */
static int agent_socket_setup(struct loop *l)
{
        char pub[LSC_Z85_KEY], sec[LSC_Z85_KEY];
        int zero = 0, one = 1, hwm = 1000, idle = 10, intvl = 2, cnt = 3, r;

        if (!l->cfg.curve_secret_file || !l->cfg.authorized_keys_dir)
                return lsc_err_set(-EINVAL, "agents need --curve-key and --authorized-keys");
        if ((r = lsc_curve_load_or_create(l->cfg.curve_secret_file, NULL, pub, sec)) < 0)
                return r;
        /* the ZAP handler must be bound before a CURVE socket accepts anyone */
        if ((r = auth_init(&l->auth, l->zctx, l->cfg.authorized_keys_dir)) < 0)
                return r;
        l->agents = zmq_socket(l->zctx, ZMQ_ROUTER);
        if (!l->agents)
                return lsc_err_set(-errno, "zmq_socket: %s", zmq_strerror(errno));
        zmq_setsockopt(l->agents, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(l->agents, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
        zmq_setsockopt(l->agents, ZMQ_ROUTER_HANDOVER, &one, sizeof(one));
        zmq_setsockopt(l->agents, ZMQ_SNDHWM, &hwm, sizeof(hwm));
        zmq_setsockopt(l->agents, ZMQ_RCVHWM, &hwm, sizeof(hwm));
        /* No ZMTP heartbeats on this side: libzmq 4.3 cancels a heartbeat timer by walking
         * every timer of its I/O thread on each message received, which is quadratic in
         * the agents (docs/performance.md). The agents' own heartbeats and leases say who
         * is alive; TCP keepalive only reaps connections whose peer vanished. */
        zmq_setsockopt(l->agents, ZMQ_TCP_KEEPALIVE, &one, sizeof(one));
        zmq_setsockopt(l->agents, ZMQ_TCP_KEEPALIVE_IDLE, &idle, sizeof(idle));
        zmq_setsockopt(l->agents, ZMQ_TCP_KEEPALIVE_INTVL, &intvl, sizeof(intvl));
        zmq_setsockopt(l->agents, ZMQ_TCP_KEEPALIVE_CNT, &cnt, sizeof(cnt));
        int64_t maxmsg = LOOP_MAX_MSG;
        zmq_setsockopt(l->agents, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
        zmq_setsockopt(l->agents, ZMQ_CURVE_SERVER, &one, sizeof(one));
        zmq_setsockopt(l->agents, ZMQ_CURVE_SECRETKEY, sec, 40);
        zmq_setsockopt(l->agents, ZMQ_ZAP_DOMAIN, "lsc", 3);
        if (zmq_bind(l->agents, l->cfg.agent_endpoint) < 0)
                return lsc_err_set(-errno, "cannot listen for agents on %s: %s", l->cfg.agent_endpoint,
                                   zmq_strerror(errno));
        log_info("listening for agents on %s (CurveZMQ, public key %s, %zu hosts enrolled)",
                 l->cfg.agent_endpoint, pub, l->auth.n_keys);
        return 0;
}

int loop_init(struct loop *l, const struct loop_config *cfg)
{
        sigset_t mask;
        int r;

        memset(l, 0, sizeof(*l));
        l->cfg = *cfg;
        if (l->cfg.max_inflight <= 0)
                l->cfg.max_inflight = 1024;
        l->sigfd = -1;
        if (getrandom(&l->incarnation, sizeof(l->incarnation), 0) != sizeof(l->incarnation))
                l->incarnation = (uint64_t)lsc_wall_us();

        /* signals arrive on a descriptor; threads started later inherit the mask */
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        l->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (l->sigfd < 0)
                return lsc_err_set(-errno, "signalfd: %s", strerror(errno));

        l->zctx = zmq_ctx_new();
        if (!l->zctx)
                return lsc_err_set(-errno, "zmq_ctx_new: %s", zmq_strerror(errno));
        /* CurveZMQ's encryption runs on the I/O threads: one is a bottleneck with
         * thousands of agents (docs/performance.md) */
        zmq_ctx_set(l->zctx, ZMQ_IO_THREADS, LOOP_IO_THREADS);
        if ((r = socket_setup(l)) < 0)
                return r;
        l->started_us = lsc_now_us();
        liveness_init(&l->liveness, l->cfg.lease_ttl_us ? l->cfg.lease_ttl_us : 10000000, l->cfg.grace_us);
        load_init(&l->load);
        if ((r = reconcile_init(&l->reconcile, &l->liveness, l->cfg.seed)) < 0)
                return lsc_err_set(r, "out of memory");
        l->reconcile.dhcp_hosts = l->cfg.dhcp_hosts_file;
        if ((r = fence_new(l->cfg.fence, &l->fence)) < 0)
                return r;
        if (l->cfg.agent_endpoint && (r = agent_socket_setup(l)) < 0)
                return r;
        return store_new(l->zctx, &l->cfg.store, &l->store);
}

static void cli_readable(struct loop *l)
{
        /* bounded batch, so a flood of CLI requests cannot starve the store socket */
        for (int i = 0; i < 256; i++) {
                struct lsc_route route;
                Lsc__Envelope *env = NULL;
                int r = lsc_wire_recv(l->cli, true, &route, &env);

                if (r == -EAGAIN)
                        return;
                if (r < 0) {
                        log_warn("bad message on the CLI socket: %s", lsc_err_msg(r));
                        if (route.len > 0)
                                lsc_wire_send_error(l->cli, &route, env && env->has_seq ? env->seq : 0,
                                                    r == -EPROTONOSUPPORT ? LSC__STATUS__ERR_VERSION
                                                                          : LSC__STATUS__ERR_INVALID,
                                                    lsc_err_msg(r));
                        lsc_wire_free(env);
                        continue;
                }
                api_request(l, &route, env);
        }
}

static void agent_ack(struct loop *l, const struct lsc_route *route, const struct liveness_host *h,
                      int64_t echo_sent_us, bool reregister, Lsc__Status status, const char *error)
{
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        Lsc__Ack ack = LSC__ACK__INIT;
        char sender[64];
        int r;

        snprintf(sender, sizeof(sender), "lscd:%016llx", (unsigned long long)l->incarnation);
        ack.has_echo_sent_us = ack.has_incarnation = ack.has_epoch = ack.has_lease_ttl_ms = 1;
        ack.has_reregister = ack.has_status = 1;
        ack.echo_sent_us = echo_sent_us;
        ack.incarnation = l->incarnation;
        ack.epoch = h ? h->epoch : 0;
        ack.lease_ttl_ms = (uint32_t)(l->liveness.lease_ttl_us / 1000);
        ack.reregister = reregister;
        ack.status = status;
        ack.error = (char *)error;
        env.sender = sender;
        env.has_epoch = 1;
        env.epoch = ack.epoch;
        env.body_case = LSC__ENVELOPE__BODY_ACK;
        env.ack = &ack;
        if ((r = lsc_wire_send(l->agents, route, &env)) < 0)
                log_debug("ack to %s not sent: %s", route->peer, lsc_err_msg(r));
}

static void agent_register(struct loop *l, const struct lsc_route *route, Lsc__Envelope *e)
{
        Lsc__Register *reg = e->register_;
        struct liveness_host *h;
        struct api_ctx *ctx;
        struct store_job *job;
        Lsc__Request *req;
        char actor[LSC_WIRE_PEER_MAX + 8];

        if (!reg->host || strcmp(reg->host, route->peer) != 0) {
                log_warn("agent with the key of host %s tried to register as %s: refused", route->peer,
                         reg->host ? reg->host : "(none)");
                agent_ack(l, route, NULL, 0, false, LSC__STATUS__ERR_INVALID,
                          "this key is enrolled for another host");
                return;
        }
        h = liveness_get(&l->liveness, reg->host);
        if (!h || h->registering)
                return;                  /* one registration at a time; the agent retries */
        ctx = calloc(1, sizeof(*ctx));
        job = calloc(1, sizeof(*job));
        req = calloc(1, sizeof(*req));
        if (!ctx || !job || !req) {
                free(ctx);
                free(job);
                free(req);
                return;
        }
        lsc__request__init(req);
        req->op_case = LSC__REQUEST__OP_HOST_REGISTER;
        req->host_register = TAKE_PTR(e->register_);   /* the job owns it now */
        e->body_case = LSC__ENVELOPE__BODY__NOT_SET;
        ctx->origin = API_ORIGIN_AGENT;
        ctx->route = *route;
        snprintf(actor, sizeof(actor), "agent:%s", route->peer);
        job->kind = STORE_JOB_REQUEST;
        job->request = req;
        job->actor = strdup(actor);
        job->user = ctx;
        if (store_check(req) < 0) {
                agent_ack(l, route, NULL, 0, false, LSC__STATUS__ERR_INVALID, lsc_err_msg(-EINVAL));
                store_job_free(job);
                return;
        }
        if (store_submit(l->store, job) < 0) {
                store_job_free(job);
                return;
        }
        h->registering = true;
        l->inflight++;
}

void loop_agent_registered(struct loop *l, struct store_job *job)
{
        struct api_ctx *ctx = job->user;
        const Lsc__Reply *rp = job->reply;
        struct liveness_host *h = liveness_find(&l->liveness, ctx->route.peer);

        if (h)
                h->registering = false;
        if (!rp || rp->status != LSC__STATUS__OK || rp->n_hosts != 1 || !h) {
                const char *why = rp && rp->error ? rp->error : "registration failed";
                log_warn("registration of host %s failed: %s", ctx->route.peer, why);
                agent_ack(l, &ctx->route, NULL, 0, false,
                          rp ? rp->status : LSC__STATUS__ERR_INTERNAL, why);
        } else {
                h->epoch = rp->hosts[0]->epoch;
                h->route = ctx->route;
                h->vcpus = rp->hosts[0]->capacity->vcpus;
                log_info("host %s registered (uuid %s, epoch %llu, %u vcpus, %llu MiB)", h->name,
                         rp->hosts[0]->uuid, (unsigned long long)h->epoch,
                         rp->hosts[0]->capacity->vcpus,
                         (unsigned long long)rp->hosts[0]->capacity->memory_mib);
                agent_ack(l, &ctx->route, h, 0, false, LSC__STATUS__OK, NULL);
                reconcile_host_registered(l, h, rp->hosts[0]);
        }
        store_job_free(job);
}

static void agent_heartbeat(struct loop *l, const struct lsc_route *route, const Lsc__Envelope *e)
{
        const Lsc__Heartbeat *hb = e->heartbeat;
        struct liveness_host *h = liveness_find(&l->liveness, route->peer);

        /* Acknowledged even when this lscd does not know the session yet (it just
         * restarted): a restarting manager must not make healthy hosts fence. */
        if (!h || h->epoch == 0 || !e->has_epoch || e->epoch != h->epoch) {
                agent_ack(l, route, h, hb->sent_us, true, LSC__STATUS__OK, NULL);
                return;
        }
        h->route = *route;
        if (liveness_beat(h, hb, lsc_now_us()) < 0)
                log_warn("host %s: heartbeat not recorded: out of memory", h->name);
        liveness_beat_load(h, hb, &l->load, lsc_wall_us() / 1000000);
        agent_ack(l, route, h, hb->sent_us, false, LSC__STATUS__OK, NULL);
        reconcile_heartbeat(l, h);
}

static void agents_readable(struct loop *l)
{
        for (int i = 0; i < 1024; i++) {
                struct lsc_route route;
                Lsc__Envelope *env = NULL;
                int r = lsc_wire_recv(l->agents, true, &route, &env);

                if (r == -EAGAIN)
                        return;
                if (r < 0 || !route.peer[0]) {
                        log_warn("bad message from agent %s: %s", route.peer[0] ? route.peer : "?",
                                 r < 0 ? lsc_err_msg(r) : "unauthenticated");
                        lsc_wire_free(env);
                        continue;
                }
                switch (env->body_case) {
                case LSC__ENVELOPE__BODY_REGISTER:
                        agent_register(l, &route, env);
                        break;
                case LSC__ENVELOPE__BODY_HEARTBEAT:
                        agent_heartbeat(l, &route, env);
                        break;
                case LSC__ENVELOPE__BODY_REPORT: {
                        struct liveness_host *h = liveness_find(&l->liveness, route.peer);
                        log_debug("host %s: report for %s g%llu: %s", route.peer,
                                  env->report->uuid ? env->report->uuid : "?",
                                  (unsigned long long)env->report->generation,
                                  env->report->ok ? "ok" : (env->report->error ? env->report->error : "failed"));
                        /* a report from a session the host no longer has is stale */
                        if (h && h->epoch && env->report->has_epoch && env->report->epoch == h->epoch)
                                reconcile_report(l, h, env->report);
                        break;
                }
                default:
                        log_warn("host %s sent a message agents do not send (%d)", route.peer,
                                 (int)env->body_case);
                }
                lsc_wire_free(env);
        }
}

/* 0 normally, -errno when the store reported a fatal error. */
static int store_readable(struct loop *l)
{
        for (;;) {
                int fatal = 0;
                zmq_pollitem_t it = { .socket = store_socket(l->store), .events = ZMQ_POLLIN };

                if (zmq_poll(&it, 1, 0) <= 0)
                        return 0;
                struct store_job *job = store_recv(l->store, &fatal);
                if (fatal)
                        return -EPROTO;
                if (job)
                        api_complete(l, job);
        }
}

/* Whether agents' messages wait unread on lscd's socket. */
static bool agents_pending(struct loop *l)
{
        int events = 0;
        size_t len = sizeof(events);

        return l->agents && zmq_getsockopt(l->agents, ZMQ_EVENTS, &events, &len) == 0 && (events & ZMQ_POLLIN);
}

int loop_run(struct loop *l)
{
        int64_t next_tick = lsc_now_us() + 500000, judged_at = lsc_now_us();

        log_info("lscd listening for the CLI on %s (incarnation %016llx)", l->cfg.cli_endpoint,
                 (unsigned long long)l->incarnation);
        reconcile_start(l);
        while (!l->stopping) {
                zmq_pollitem_t items[] = {
                        { .socket = l->cli, .events = ZMQ_POLLIN },
                        { .socket = store_socket(l->store), .events = ZMQ_POLLIN },
                        { .fd = l->sigfd, .events = ZMQ_POLLIN },
                        { .socket = l->agents, .events = ZMQ_POLLIN },
                        { .socket = l->auth.zap, .events = ZMQ_POLLIN },
                        { .fd = fence_fd(l->fence), .events = ZMQ_POLLIN },
                };
                int64_t now = lsc_now_us();
                long timeout = next_tick > now ? (long)((next_tick - now) / 1000) + 1 : 0;
                int n;

                if (!l->agents)         /* the fence's fd in the slot the agents' socket leaves */
                        items[3] = items[5];
                n = zmq_poll(items, l->agents ? 6 : 4, timeout);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return lsc_err_set(-errno, "zmq_poll: %s", zmq_strerror(errno));
                }
                if (items[2].revents & ZMQ_POLLIN) {
                        struct signalfd_siginfo si;
                        if (read(l->sigfd, &si, sizeof(si)) == sizeof(si))
                                log_info("signal %u: shutting down", si.ssi_signo);
                        l->stopping = true;
                }
                if (items[1].revents & ZMQ_POLLIN) {
                        int r = store_readable(l);
                        if (r < 0)
                                return r;
                }
                if (items[0].revents & ZMQ_POLLIN)
                        cli_readable(l);
                if (items[l->agents ? 5 : 3].revents & ZMQ_POLLIN)
                        reconcile_fence_results(l);
                if (l->agents && (items[4].revents & ZMQ_POLLIN))
                        auth_handle(&l->auth);
                if (l->agents && (items[3].revents & ZMQ_POLLIN))
                        agents_readable(l);
                now = lsc_now_us();
                if (now >= next_tick) {
                        /* A loop that has not read the agents' messages yet does not
                         * judge them: heartbeats may be waiting in the socket. Judged
                         * late by at most LIVENESS_DEFER_MAX_US. */
                        if (!agents_pending(l) || now - judged_at >= LIVENESS_DEFER_MAX_US) {
                                liveness_tick(&l->liveness, now);
                                judged_at = now;
                                for (size_t i = 0; i < l->liveness.n_hosts; i++)
                                        reconcile_host_state(l, l->liveness.hosts[i]);
                        }
                        reconcile_tick(l, now);
                        if (now >= l->load_expire_us) {
                                size_t gone = load_expire(&l->load, lsc_wall_us() / 1000000);

                                if (gone)
                                        log_info("forgot the measured load of %zu identities silent for a day", gone);
                                l->load_expire_us = now + 60 * 1000000LL;
                        }
                        next_tick = now + 200000;
                }
                reconcile_flush(l);
        }
        return 0;
}

void loop_fini(struct loop *l)
{
        fence_destroy(&l->fence);
        store_destroy(&l->store);
        /* a socket file left behind would make the CLI wait for its whole timeout
         * instead of saying at once that no lscd runs */
        if (l->cli_bound && strncmp(l->cfg.cli_endpoint, "ipc://", 6) == 0)
                unlink(l->cfg.cli_endpoint + 6);
        if (l->cli)
                zmq_close(l->cli);
        l->cli = NULL;
        if (l->agents)
                zmq_close(l->agents);
        l->agents = NULL;
        auth_fini(&l->auth);
        reconcile_fini(&l->reconcile);
        liveness_fini(&l->liveness);
        load_fini(&l->load);
        if (l->zctx)
                zmq_ctx_term(l->zctx);
        l->zctx = NULL;
        if (l->sigfd >= 0)
                close(l->sigfd);
        l->sigfd = -1;
}
