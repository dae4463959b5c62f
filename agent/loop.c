/* lsc-agent's loop: zmq_poll over the manager DEALER, its connection monitor, the
 * workers' PAIR sockets, a signalfd and a stop eventfd, with timers on CLOCK_BOOTTIME.
 * It speaks the agent side of the protocol (Register, Heartbeat, Ack, Command, Report),
 * keeps the lease (destroying every instance before it ends without a newer ack) and
 * pets lsc-fenced with its deadline; every driver call and every intent write runs on
 * a worker thread, never here. */
#define _GNU_SOURCE             /* pthread_timedjoin_np */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include "addr.h"
#include "err.h"
#include "log.h"
#include "loop.h"
#include "pet.h"
#include "state.h"
#include "util.h"
#include "watchdog.h"
#include "validate.h"
#include "wire.h"

#define CMD_WORKERS 4                    /* driver calls for different identities at once */
#define QUEUE_MAX 1024                   /* commands waiting for a worker before "busy" */
#define OPEN_RETRY_US (5 * 1000000LL)
#define LINK_WARN_US (10 * 1000000LL)   /* no manager connection for this long: say so */
#define JOIN_WAIT_S 5                    /* at exit, how long a driver call may still take */
#define SPEC_ADDR_MAX 64                 /* MACs, and IPs, per identity */
#define MAX_MSG ((int64_t)LSC_WIRE_MAX_FRAME * 4)

/* Every time in this file is CLOCK_BOOTTIME: the heartbeat stamps the manager echoes,
 * hence the lease, and the deadline lsc-fenced is petted with. It counts while the host
 * is suspended, as the manager's clock does, so a host that wakes after its lease ended
 * knows it at once instead of running its instances for another lease. */
static int64_t now_us(void)
{
        return lsc_boot_us();
}

enum job_kind { JOB_OPEN, JOB_PROBE, JOB_INSTANTIATE, JOB_DESTROY, JOB_SHUTDOWN, JOB_KIND_COUNT };
static const char *const job_kind_names[JOB_KIND_COUNT] = {
        [JOB_OPEN] = "open",
        [JOB_PROBE] = "status check",
        [JOB_INSTANTIATE] = "instantiate",
        [JOB_DESTROY] = "destroy",
        [JOB_SHUTDOWN] = "shutdown",
};

/* One unit of driver work. The loop fills the inputs and owns the job except while a
 * worker runs it: then the worker alone touches it, until it sends it back. */
struct job {
        enum job_kind kind;
        struct job *next;                /* the loop's queue */
        /* in */
        const struct agent_config *cfg;
        struct agent_state *state;
        struct drv *drv;                 /* NULL for JOB_OPEN */
        char uuid[DRV_UUID_STR];
        char name[LSC_NAME_MAX + 1];     /* for messages: "" when unknown */
        uint64_t generation, epoch;
        bool own;                        /* the agent's own decision (its lease ends):
                                          * nobody waits for a report */
        uint32_t timeout_ms;             /* JOB_SHUTDOWN */
        struct drv_spec spec;            /* JOB_INSTANTIATE; its pointers point into the job */
        char *image, *hostname;
        struct lsc_mac macs[SPEC_ADDR_MAX];
        struct lsc_ip ips[SPEC_ADDR_MAX];
        /* out */
        int result;
        char error[512];
        int64_t done_us;                 /* when the driver call returned */
        struct drv *opened;              /* JOB_OPEN */
        struct drv_capacity cap;         /* JOB_OPEN */
        bool has_inv;                    /* a list taken after the call: */
        struct drv_instance *inv;
        int n_inv;
        int64_t inv_us;                  /* when that list started */
        bool has_stats;                  /* JOB_PROBE */
        struct drv_stats stats;
        int health;                      /* JOB_OPEN, JOB_PROBE: 0 or why not healthy */
        char health_msg[256];
        char note[256];                  /* what the host lacks though healthy */
};

struct worker {
        void *sock;                      /* the loop's end of the pair */
        void *peer;                      /* the thread's end: the thread's alone */
        pthread_t thread;
        bool started, joined;
        struct job *job;                 /* in flight (the loop's view), NULL when idle */
        int64_t since_us;
};

#define CHAOS_HELD_MAX 64

struct agent_loop {
        const struct agent_config *cfg;
        void *zctx;
        void *dealer;                    /* to the manager, CURVE client */
        void *monitor;                   /* the dealer's connection events */
        int sigfd, stopfd;
        struct agent_state *state;
        char pub[LSC_Z85_KEY], sec[LSC_Z85_KEY];
        char sender[80];
        uint64_t seq;
        atomic_bool stopping;

        /* test-only wire faults (chaos_* keys): the message sent last, and held ones */
        struct chaos_held { int64_t due_us; size_t len; uint8_t *buf; } chaos_held[CHAOS_HELD_MAX];
        int n_chaos_held;
        uint8_t *chaos_last;
        size_t chaos_last_len;
        uint64_t chaos_rng;

        /* drivers: open and status checks on their own worker, commands on the others */
        struct worker probe;
        struct worker cmd[CMD_WORKERS];
        struct job *queue, *queue_tail;
        size_t queued;
        _Atomic(struct drv *) drv;       /* set once open; read by tests from other threads */
        int64_t next_open_us;
        char open_error[256];
        struct drv_capacity cap;

        /* what the hypervisor said last: the inventory every beat carries */
        struct drv_instance *inv;
        int n_inv;
        int64_t inv_us;                  /* when the list behind it started */
        int64_t inv_min_us;              /* a list started before this misses a change
                                          * already reported: it is dropped */
        struct drv_stats stats_prev, stats_cur;
        int n_stats;                     /* samples held: 0, 1 or 2 */
        int64_t load_sent_us;            /* sampled_us of the stats whose figures (host
                                          * and instances) went out: each sample goes out
                                          * once, so a hung driver does not repeat them */
        int health;
        char health_msg[256];
        char note[256];                  /* the driver's: what this host lacks */

        /* the session with the manager */
        bool connected, auth_warned, handshake_warned, link_warned;
        int64_t redial_us;               /* libzmq gives up after a refused handshake: dial again then */
        int64_t link_down_us;            /* since when no connection is up */
        bool want_register, reg_outstanding, registered;
        int64_t next_reg_us, reg_sent_us;
        int64_t fresh_after_us;          /* acks of heartbeats sent earlier speak of an
                                          * older session: their verdicts are ignored */
        uint64_t epoch, incarnation;
        int64_t lease_deadline_us;       /* 0 until an ack gave one */
        uint32_t lease_ttl_ms;           /* the manager's, from its last ack */
        bool lease_ending;               /* every instance sent to destroy for this
                                          * deadline; cleared by an ack that moves it */
        bool budget_warned;
        int64_t next_beat_us;
        char last_refusal[256];

        /* lsc-fenced */
        int pet_fd;                      /* -1: no fenced_socket configured */
        int pet_errno;                   /* why the last pet failed; 0: it went out */
        bool pet_sent;                   /* some pet ever went out */

        /* the hardware watchdog (watchdog.h) */
        struct watchdog wd;
        const char *wd_path;             /* NULL: none is used */
        bool wd_failed;                  /* it could not be armed: logged once, not retried */
        bool wd_withheld;                /* pets withheld for the current lapse: logged */
};

/* ---- jobs: run on worker threads ---- */

static void job_free(struct job *j)
{
        if (!j)
                return;
        drv_close(&j->opened);
        free(j->image);
        free(j->hostname);
        free(j->inv);
        drv_stats_clear(&j->stats);
        free(j);
}

static void job_note(char *buf, size_t len, int r, const char *prefix)
{
        snprintf(buf, len, "%s%s", prefix, lsc_err_msg(r));
}

static void job_fail(struct job *j, int r)
{
        j->result = r;
        job_note(j->error, sizeof(j->error), r, "");
}

/* The hypervisor's view after whatever the job did. */
static void job_list(struct job *j, struct drv *d)
{
        struct drv_instance *inv = NULL;
        int n;

        j->inv_us = now_us();
        n = drv_list(d, &inv);
        if (n < 0) {
                j->health = n;
                job_note(j->health_msg, sizeof(j->health_msg), n, "cannot list instances: ");
                return;
        }
        j->inv = inv;
        j->n_inv = n;
        j->has_inv = true;
}

static void job_health(struct job *j, struct drv *d)
{
        int r = drv_health(d);

        drv_note(d, j->note, sizeof(j->note));
        if (r < 0 && r != -EOPNOTSUPP) {
                j->health = r;
                job_note(j->health_msg, sizeof(j->health_msg), r, "");
        }
}

#define WHO_LEN (LSC_NAME_MAX + DRV_UUID_STR + 4)

/* "web1 (uuid)" for log lines, or the uuid alone when the name is unknown. */
static const char *who(const char *name, const char *uuid, char buf[WHO_LEN])
{
        if (name && *name)
                snprintf(buf, WHO_LEN, "%s (%s)", name, uuid);
        else
                snprintf(buf, WHO_LEN, "%s", uuid);
        return buf;
}

static const char *inv_name(const struct drv_instance *inv, int n, const char *uuid)
{
        for (int i = 0; i < n; i++)
                if (strcmp(inv[i].uuid, uuid) == 0)
                        return inv[i].name;
        return "";
}

/* The record meets the hypervisor: intents a crash interrupted get their outcome, and
 * instances the record says were destroyed but still exist are destroyed again. */
static int reconcile(struct job *j, struct drv *d)
{
        _cleanup_free_ struct agent_state_intent *pending = NULL;
        _cleanup_free_ struct drv_instance *inv = NULL;
        int n, np, r;

        if ((n = drv_list(d, &inv)) < 0)
                return n;
        if ((np = agent_state_pending(j->state, &pending)) < 0)
                log_error("%s", lsc_err_msg(np));
        for (int i = 0; i < np; i++) {
                const struct agent_state_intent *p = &pending[i];
                char w[WHO_LEN];
                const char *name = who(inv_name(inv, n, p->uuid), p->uuid, w);
                bool ok = false;

                if (p->op == AGENT_STATE_DESTROY) {
                        r = drv_destroy(d, p->uuid, p->generation);
                        ok = r >= 0;
                        log_info("instance %s: destroy of generation %llu interrupted by a restart: %s%s",
                                 name, (unsigned long long)p->generation,
                                 ok ? "finished" : "failed again: ", ok ? "" : lsc_err_msg(r));
                } else {
                        for (int k = 0; k < n; k++)
                                if (strcmp(inv[k].uuid, p->uuid) == 0 && inv[k].generation == p->generation)
                                        ok = true;
                        log_info("instance %s: instantiate of generation %llu interrupted by a restart: %s",
                                 name, (unsigned long long)p->generation,
                                 ok ? "it exists" : "it does not exist");
                }
                if ((r = agent_state_outcome(j->state, p->op, p->uuid, p->generation, p->epoch, ok)) < 0)
                        log_error("%s", lsc_err_msg(r));
        }
        /* what the finished destroys left */
        free(TAKE_PTR(inv));
        if ((n = drv_list(d, &inv)) < 0)
                return n;
        for (int i = 0; i < n; i++) {
                uint64_t t = agent_state_tombstone(j->state, inv[i].uuid);

                if (!t || inv[i].generation > t)
                        continue;
                log_warn("instance %s (%s) generation %llu still exists though generation %llu was "
                         "destroyed here: destroying it again", inv[i].name, inv[i].uuid,
                         (unsigned long long)inv[i].generation, (unsigned long long)t);
                if ((r = agent_state_intent(j->state, AGENT_STATE_DESTROY, inv[i].uuid, t, 0)) < 0) {
                        log_error("%s", lsc_err_msg(r));
                        continue;
                }
                r = drv_destroy(d, inv[i].uuid, t);
                if (r < 0)
                        log_error("instance %s (%s): %s", inv[i].name, inv[i].uuid, lsc_err_msg(r));
                if ((r = agent_state_outcome(j->state, AGENT_STATE_DESTROY, inv[i].uuid, t, 0, r >= 0)) < 0)
                        log_error("%s", lsc_err_msg(r));
        }
        return 0;
}

static void run_open(struct job *j)
{
        struct drv_config dc;
        struct drv *d = NULL;
        int r;

        agent_config_driver(j->cfg, &dc);
        if ((r = drv_open(j->cfg->driver, &dc, &d)) < 0) {
                job_fail(j, r);
                return;
        }
        if ((r = drv_capacity(d, &j->cap)) < 0 || (r = reconcile(j, d)) < 0) {
                job_fail(j, r);
                drv_close(&d);
                return;
        }
        job_list(j, d);
        if (!j->has_inv) {
                j->result = j->health;
                snprintf(j->error, sizeof(j->error), "%s", j->health_msg);
                drv_close(&d);
                return;
        }
        job_health(j, d);
        j->opened = d;
        j->result = 0;
}

static void run_probe(struct job *j)
{
        job_health(j, j->drv);
        job_list(j, j->drv);
        j->has_stats = drv_stats(j->drv, &j->stats) == 0;
        if (j->has_stats && !j->stats.sampled_us)
                j->stats.sampled_us = now_us();  /* a backend that does not stamp its samples */
}

static void run_command(struct job *j)
{
        enum agent_state_op op = j->kind == JOB_INSTANTIATE ? AGENT_STATE_INSTANTIATE : AGENT_STATE_DESTROY;
        char who_buf[WHO_LEN];
        int r, w;

        /* the intent is durable before the hypervisor hears of it */
        if ((r = agent_state_intent(j->state, op, j->uuid, j->generation, j->epoch)) < 0) {
                job_fail(j, r);
                j->done_us = now_us();
                return;
        }
        /* stamped on the lease's clock, so an outside checker (tests/chaos) can merge
         * instance lifetimes across hosts: the intent before the driver hears of it... */
        log_info("driver %s %s generation %llu: intent at boot %lld us", job_kind_names[j->kind],
                 who(j->name, j->uuid, who_buf), (unsigned long long)j->generation, (long long)now_us());
        if (j->kind == JOB_INSTANTIATE)
                r = drv_instantiate(j->drv, &j->spec);
        else if (j->kind == JOB_DESTROY)
                r = drv_destroy(j->drv, j->uuid, j->generation);
        else
                r = drv_shutdown(j->drv, j->uuid, j->generation, j->timeout_ms);
        j->done_us = now_us();
        /* ...and the outcome once the driver returned */
        log_info("driver %s %s generation %llu: %s at boot %lld us", job_kind_names[j->kind],
                 who(j->name, j->uuid, who_buf), (unsigned long long)j->generation, r < 0 ? "failed" : "returned",
                 (long long)j->done_us);
        if (r < 0)
                job_fail(j, r);
        else
                j->result = 0;
        /* not recorded: the intent stays pending and the next start resolves it */
        if ((w = agent_state_outcome(j->state, op, j->uuid, j->generation, j->epoch, r >= 0)) < 0)
                log_error("instance %s: %s", who(j->name, j->uuid, who_buf), lsc_err_msg(w));
        job_list(j, j->drv);
}

static void job_run(struct job *j)
{
        switch (j->kind) {
        case JOB_OPEN:
                run_open(j);
                break;
        case JOB_PROBE:
                run_probe(j);
                break;
        default:
                run_command(j);
                break;
        }
}

static void *worker_main(void *arg)
{
        struct worker *w = arg;

        for (;;) {
                struct job *j = NULL;
                int n = zmq_recv(w->peer, &j, sizeof(j), 0);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n != (int)sizeof(j) || !j)
                        break;           /* NULL: stop */
                job_run(j);
                if (zmq_send(w->peer, &j, sizeof(j), 0) != (int)sizeof(j)) {
                        job_free(j);
                        break;
                }
        }
        zmq_close(w->peer);
        return NULL;
}

static void *pair_socket(void *zctx)
{
        void *sock = zmq_socket(zctx, ZMQ_PAIR);
        int zero = 0;

        if (!sock)
                return NULL;
        /* unbounded: one job at a time per worker, and the loop must never block */
        zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(sock, ZMQ_SNDHWM, &zero, sizeof(zero));
        zmq_setsockopt(sock, ZMQ_RCVHWM, &zero, sizeof(zero));
        return sock;
}

static int worker_start(struct agent_loop *l, struct worker *w)
{
        char endpoint[96];
        int r;

        snprintf(endpoint, sizeof(endpoint), "inproc://lsc-agent-worker-%p", (void *)w);
        w->sock = pair_socket(l->zctx);
        w->peer = pair_socket(l->zctx);
        if (!w->sock || !w->peer)
                return lsc_err_set(-ENOMEM, "cannot create a worker's sockets: %s", zmq_strerror(errno));
        if (zmq_bind(w->sock, endpoint) < 0 || zmq_connect(w->peer, endpoint) < 0)
                return lsc_err_set(-errno, "cannot connect a worker's sockets: %s", zmq_strerror(errno));
        if ((r = pthread_create(&w->thread, NULL, worker_main, w)) != 0)
                return lsc_err_set(-r, "cannot start a worker thread: %s", strerror(r));
        w->started = true;
        return 0;
}

static int worker_give(struct worker *w, struct job *j)
{
        if (zmq_send(w->sock, &j, sizeof(j), ZMQ_DONTWAIT) != (int)sizeof(j))
                return lsc_err_set(-errno, "cannot hand a job to a worker: %s", zmq_strerror(errno));
        w->job = j;
        w->since_us = now_us();
        return 0;
}

/* ---- the loop's view ---- */

static struct drv *loop_drv(struct agent_loop *l)
{
        return atomic_load(&l->drv);
}

static struct job *job_new(struct agent_loop *l, enum job_kind kind)
{
        struct job *j = calloc(1, sizeof(*j));

        if (!j)
                return NULL;
        j->kind = kind;
        j->cfg = l->cfg;
        j->state = l->state;
        j->drv = loop_drv(l);
        return j;
}

/* Accepts a list unless an earlier-started one is already in, or it started before a
 * change that has already been reported (it would make that change look undone). */
static void inventory_take(struct agent_loop *l, struct job *j)
{
        if (!j->has_inv || j->inv_us < l->inv_us || j->inv_us < l->inv_min_us)
                return;
        free(l->inv);
        l->inv = TAKE_PTR(j->inv);
        l->n_inv = j->n_inv;
        l->inv_us = j->inv_us;
}

/* Healthy, or why not: the driver not open, a call running too long, its own complaint. */
static bool health_now(struct agent_loop *l, int64_t now, char *buf, size_t len)
{
        const struct worker *slow = NULL;
        int64_t limit = (int64_t)l->cfg->driver_slow_ms * 1000;

        buf[0] = '\0';
        if (!loop_drv(l)) {
                snprintf(buf, len, "driver %s is not open%s%.200s", l->cfg->driver,
                         l->open_error[0] ? ": " : "", l->open_error);
                return false;
        }
        if (l->probe.job && now - l->probe.since_us >= limit)
                slow = &l->probe;
        for (int i = 0; i < CMD_WORKERS; i++) {
                const struct worker *w = &l->cmd[i];
                /* a shutdown waits for its guest on purpose */
                int64_t grace = w->job && w->job->kind == JOB_SHUTDOWN ? (int64_t)w->job->timeout_ms * 1000 : 0;

                if (w->job && now - w->since_us >= limit + grace && (!slow || w->since_us < slow->since_us))
                        slow = w;
        }
        if (slow) {
                snprintf(buf, len, "driver call %s%s%s running for %.1f s", job_kind_names[slow->job->kind],
                         slow->job->name[0] ? " " : "", slow->job->name,
                         (double)(now - slow->since_us) / 1e6);
                return false;
        }
        if (l->health < 0) {
                snprintf(buf, len, "driver %s: %.200s", l->cfg->driver, l->health_msg);
                return false;
        }
        /* healthy, with a note: the agent's own destroys still guard the lease; what
         * the driver lacks comes first */
        if (l->note[0])
                snprintf(buf, len, "driver %s: %.200s", l->cfg->driver, l->note);
        /* metal's fence is lscd's BMC worker, not a daemon on the host */
        if (l->pet_fd < 0 && strcmp(l->cfg->driver, "metal") != 0)
                snprintf(buf + strlen(buf), len - strlen(buf), "%sno fencing daemon (fenced_socket is not set)",
                         buf[0] ? "; " : "");
        else if (l->pet_errno)
                snprintf(buf + strlen(buf), len - strlen(buf), "%slsc-fenced at %.150s takes no pets: %s",
                         buf[0] ? "; " : "", l->cfg->fenced_socket, strerror(l->pet_errno));
        return true;
}

/* ---- sending ---- */

/* ---- test-only wire faults (tests/chaos): duplicated, replayed and delayed messages.
 * CurveZMQ keeps a man in the middle out, so the agent's own sending path makes them;
 * off unless a chaos_* key is set. ---- */

static bool chaos_on(const struct agent_config *c)
{
        return c->chaos_duplicate_pct || c->chaos_replay_pct || (c->chaos_delay_pct && c->chaos_delay_ms);
}

static bool chaos_roll(struct agent_loop *l, uint32_t pct)
{
        uint64_t x = l->chaos_rng ? l->chaos_rng : (uint64_t)now_us() ^ ((uint64_t)getpid() << 32);

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        l->chaos_rng = x;
        return pct && x % 100 < pct;
}

/* One packed envelope, framed as lsc_wire_send frames it (empty delimiter, body). */
static int chaos_raw(struct agent_loop *l, const uint8_t *buf, size_t len)
{
        if (zmq_send(l->dealer, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
            zmq_send(l->dealer, buf, len, ZMQ_DONTWAIT) < 0)
                return lsc_err_set(-errno, "send: %s", zmq_strerror(errno));
        return 0;
}

/* Sends the held messages that are due (called by the loop on every wake-up). */
static void chaos_flush(struct agent_loop *l, int64_t now)
{
        for (int i = 0; i < l->n_chaos_held;) {
                struct chaos_held *h = &l->chaos_held[i];
                if (h->due_us > now) {
                        i++;
                        continue;
                }
                log_debug("chaos: a message held %u ms sent now", l->cfg->chaos_delay_ms);
                chaos_raw(l, h->buf, h->len);
                free(h->buf);
                *h = l->chaos_held[--l->n_chaos_held];
        }
}

static int chaos_send(struct agent_loop *l, Lsc__Envelope *env)
{
        const struct agent_config *c = l->cfg;
        size_t len;
        uint8_t *buf;
        int r = 0;

        if (!env->has_version) {
                env->has_version = 1;
                env->version = LSC_WIRE_VERSION;
        }
        len = lsc__envelope__get_packed_size(env);
        if (!(buf = malloc(len ? len : 1)))
                return -ENOMEM;
        lsc__envelope__pack(env, buf);
        if (c->chaos_delay_ms && l->n_chaos_held < CHAOS_HELD_MAX && chaos_roll(l, c->chaos_delay_pct)) {
                uint8_t *copy = malloc(len ? len : 1);
                if (copy) {
                        memcpy(copy, buf, len);
                        l->chaos_held[l->n_chaos_held++] = (struct chaos_held){
                                .due_us = now_us() + (int64_t)c->chaos_delay_ms * 1000, .len = len, .buf = copy };
                        log_debug("chaos: seq %llu held back %u ms", (unsigned long long)env->seq, c->chaos_delay_ms);
                }
        } else {
                r = chaos_raw(l, buf, len);
                if (r == 0 && chaos_roll(l, c->chaos_duplicate_pct)) {
                        log_debug("chaos: seq %llu sent twice", (unsigned long long)env->seq);
                        chaos_raw(l, buf, len);
                }
        }
        if (r == 0 && l->chaos_last && chaos_roll(l, c->chaos_replay_pct)) {
                log_debug("chaos: the message before seq %llu replayed", (unsigned long long)env->seq);
                chaos_raw(l, l->chaos_last, l->chaos_last_len);
        }
        free(l->chaos_last);
        l->chaos_last = buf;
        l->chaos_last_len = len;
        return r;
}

static int send_env(struct agent_loop *l, Lsc__Envelope *env)
{
        env->sender = l->sender;
        env->has_epoch = 1;
        env->epoch = l->epoch;
        env->has_seq = 1;
        env->seq = ++l->seq;
        if (chaos_on(l->cfg))
                return chaos_send(l, env);
        return lsc_wire_send(l->dealer, NULL, env);
}

/* The inventory as Instance messages borrowing l->inv's strings (two malloc'd arrays). */
/* The last two samples' figures for inventory entry i, when they have it: vCPUs busy
 * between them, memory at the last. */
static void instance_load(const struct agent_loop *l, int i, Lsc__Instance *it)
{
        const struct drv_stats *s = &l->stats_cur;
        size_t k = (size_t)i;
        double vcpus;

        if (l->n_stats < 1)
                return;
        if (k >= s->n_instances || strcmp(s->instances[k].uuid, l->inv[i].uuid) != 0)
                for (k = 0; k < s->n_instances && strcmp(s->instances[k].uuid, l->inv[i].uuid) != 0; k++)
                        ;
        if (k == s->n_instances)
                return;
        it->has_memory_mib = 1;
        it->memory_mib = s->instances[k].memory_kib / 1024;
        if (l->n_stats == 2 && drv_stats_instance_vcpus(&l->stats_prev, s, k, &vcpus) == 0) {
                it->has_cpu = 1;
                it->cpu = vcpus;
        }
}

/* with_load: heartbeats carry each instance's figures, registrations do not. */
static int instances_build(struct agent_loop *l, bool with_load, Lsc__Instance **ret_items,
                           Lsc__Instance ***ret_ptrs)
{
        size_t n = l->n_inv > 0 ? (size_t)l->n_inv : 0;
        Lsc__Instance *items = calloc(n ? n : 1, sizeof(*items));
        Lsc__Instance **ptrs = calloc(n ? n : 1, sizeof(*ptrs));

        /* an empty inventory sent by mistake would read as "everything vanished" */
        if (!items || !ptrs) {
                free(items);
                free(ptrs);
                return lsc_err_set(-ENOMEM, "out of memory building the inventory");
        }
        for (int i = 0; i < l->n_inv; i++) {
                lsc__instance__init(&items[i]);
                items[i].uuid = l->inv[i].uuid;
                items[i].name = l->inv[i].name;
                items[i].has_generation = 1;
                items[i].generation = l->inv[i].generation;
                items[i].state = (char *)((unsigned)l->inv[i].state < DRV_STATE_COUNT
                                                  ? drv_state_names[l->inv[i].state] : "crashed");
                if (with_load)
                        instance_load(l, i, &items[i]);
                ptrs[i] = &items[i];
        }
        *ret_items = items;
        *ret_ptrs = ptrs;
        return (int)n;
}

static void send_register(struct agent_loop *l, int64_t now)
{
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        Lsc__Register reg = LSC__REGISTER__INIT;
        Lsc__Capacity cap = LSC__CAPACITY__INIT;
        Lsc__Label labels[AGENT_LABELS_MAX], *label_ptrs[AGENT_LABELS_MAX];
        _cleanup_free_ Lsc__Instance *items = NULL;
        _cleanup_free_ Lsc__Instance **inst = NULL;
        char health[256];
        int r, n;

        if ((n = instances_build(l, false, &items, &inst)) < 0) {
                log_error("register not sent: %s", lsc_err_msg(n));
                l->next_reg_us = now + (int64_t)l->cfg->register_retry_ms * 1000;
                return;
        }
        reg.host = l->cfg->name;
        reg.driver = l->cfg->driver;
        reg.kind = (char *)agent_config_kind(l->cfg);
        cap.has_vcpus = cap.has_memory_mib = cap.has_disk_gib = 1;
        cap.vcpus = l->cap.vcpus;
        cap.memory_mib = l->cap.memory_mib;
        cap.disk_gib = l->cap.disk_gib;
        reg.capacity = &cap;
        reg.has_alloc_ratio = 1;
        reg.alloc_ratio = l->cfg->alloc_ratio;
        for (size_t i = 0; i < l->cfg->n_labels; i++) {
                lsc__label__init(&labels[i]);
                labels[i].key = (char *)l->cfg->labels[i].key;
                labels[i].value = (char *)l->cfg->labels[i].value;
                label_ptrs[i] = &labels[i];
        }
        reg.n_labels = l->cfg->n_labels;
        reg.labels = label_ptrs;
        reg.n_instances = (size_t)n;
        reg.instances = inst;
        reg.has_healthy = 1;
        reg.healthy = health_now(l, now, health, sizeof(health));
        reg.health = health;
        reg.agent_version = LSC_VERSION;
        env.body_case = LSC__ENVELOPE__BODY_REGISTER;
        env.register_ = &reg;
        r = send_env(l, &env);
        l->reg_sent_us = now;
        l->reg_outstanding = true;
        l->fresh_after_us = now;
        l->next_reg_us = now + (int64_t)l->cfg->register_retry_ms * 1000;
        if (r < 0)
                log_debug("register not sent (%s): again in %u ms", lsc_err_msg(r), l->cfg->register_retry_ms);
        else
                log_debug("register sent: %zu instances, %s", reg.n_instances, reg.healthy ? "healthy" : health);
}

static void send_heartbeat(struct agent_loop *l, int64_t now)
{
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        Lsc__Heartbeat hb = LSC__HEARTBEAT__INIT;
        Lsc__Utilisation util = LSC__UTILISATION__INIT;
        _cleanup_free_ Lsc__Instance *items = NULL;
        _cleanup_free_ Lsc__Instance **inst = NULL;
        char health[256];
        bool fresh = l->n_stats >= 1 && l->stats_cur.sampled_us != l->load_sent_us;
        int r, n;

        if ((n = instances_build(l, fresh, &items, &inst)) < 0) {
                log_error("heartbeat not sent: %s", lsc_err_msg(n));
                return;
        }
        hb.n_instances = (size_t)n;
        hb.instances = inst;
        hb.has_healthy = 1;
        hb.healthy = health_now(l, now, health, sizeof(health));
        hb.health = health;
        if (fresh) {
                const struct drv_stats *s = &l->stats_cur;

                if (s->host_memory_total_kib >= s->host_memory_free_kib) {
                        util.has_memory_mib = 1;
                        util.memory_mib = (s->host_memory_total_kib - s->host_memory_free_kib) / 1024;
                }
                if (l->n_stats == 2) {
                        util.has_cpu = 1;
                        util.cpu = drv_stats_cpu_permille(&l->stats_prev, s) / 1000.0;
                }
                hb.util = &util;
                l->load_sent_us = s->sampled_us;
        }
        env.body_case = LSC__ENVELOPE__BODY_HEARTBEAT;
        env.heartbeat = &hb;
        hb.has_sent_us = 1;
        hb.sent_us = now_us();           /* last: the lease counts from the send */
        r = send_env(l, &env);
        if (r < 0)
                log_debug("heartbeat not sent: %s", lsc_err_msg(r));
        else if (!hb.healthy)
                log_debug("heartbeat: unhealthy: %s", health);
}

static void send_report(struct agent_loop *l, Lsc__Command__Op op, const char *uuid, uint64_t generation,
                        uint64_t epoch, bool ok, const char *error)
{
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        Lsc__Report rep = LSC__REPORT__INIT;
        int r;

        rep.has_op = 1;
        rep.op = op;
        rep.uuid = (char *)uuid;
        rep.has_generation = rep.has_epoch = rep.has_ok = 1;
        rep.generation = generation;
        rep.epoch = epoch;
        rep.ok = ok;
        rep.error = ok ? NULL : (char *)(error && *error ? error : "failed");
        env.body_case = LSC__ENVELOPE__BODY_REPORT;
        env.report = &rep;
        /* lost while disconnected: stale by then; the manager asks again */
        if ((r = send_env(l, &env)) < 0)
                log_warn("report for %s generation %llu not sent: %s", uuid, (unsigned long long)generation,
                         lsc_err_msg(r));
}

/* ---- the session: Register, Ack, lease ---- */

/* At once, unless a Register is on its way or the last one was refused: then when its
 * retry is due, so acks cannot make the agent register at the heartbeat rate. */
static void need_register(struct agent_loop *l, int64_t now)
{
        l->want_register = true;
        l->registered = false;
        if (!l->reg_outstanding && !l->last_refusal[0])
                l->next_reg_us = now;
}

/* How long before the deadline the agent destroys its instances: destroy_budget_ms, but
 * at most half the lease, or a healthy host would destroy everything after each ack. */
static int64_t lease_budget_us(const struct agent_loop *l)
{
        int64_t budget = (int64_t)l->cfg->destroy_budget_ms * 1000, half = (int64_t)l->lease_ttl_ms * 500;

        return l->lease_ttl_ms && budget > half ? half : budget;
}

/* When every instance is sent to destroy unless an ack moves the deadline; 0: no lease. */
static int64_t lease_end_us(const struct agent_loop *l)
{
        return l->lease_deadline_us ? l->lease_deadline_us - lease_budget_us(l) : 0;
}

/* Tells lsc-fenced the deadline. A unix datagram either lands in its queue or fails at
 * once, so the loop never waits; the next ack tries again. */
static void pet(struct agent_loop *l)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const char *path = l->cfg->fenced_socket;
        char msg[LSC_PET_MAX];
        int n, e;

        if (l->pet_fd < 0 || (n = lsc_pet_format(msg, sizeof(msg), l->lease_deadline_us)) < 0)
                return;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        if (sendto(l->pet_fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&sa,
                   sizeof(sa)) == n) {
                if (l->pet_errno || !l->pet_sent)
                        log_info("lsc-fenced at %s takes pets: it destroys this host's instances if the "
                                 "lease ends", path);
                l->pet_errno = 0;
                l->pet_sent = true;
                return;
        }
        e = errno;
        if (e != l->pet_errno)
                log_warn("cannot pet lsc-fenced at %s: %s: should this agent freeze, nothing destroys its "
                         "instances when the lease ends", path, strerror(e));
        l->pet_errno = e;
}

/* Instances held, or being made or destroyed: what a watchdog reset would fence. */
static bool holds_instances(const struct agent_loop *l)
{
        if (l->n_inv > 0 || l->queued > 0)
                return true;
        for (int i = 0; i < CMD_WORKERS; i++)
                if (l->cmd[i].job)
                        return true;
        return false;
}

/* Arms the watchdog at the first lease, then pets it while watchdog_may_pet allows. */
static void watchdog_tick(struct agent_loop *l, int64_t now)
{
        struct watchdog *w = &l->wd;
        bool holds;
        int r;

        if (!l->wd_path || l->wd_failed || !l->lease_deadline_us)
                return;
        if (w->fd < 0) {
                if ((uint64_t)l->cfg->watchdog_timeout_s * 1000 + WATCHDOG_MARGIN_US / 1000 >= l->lease_ttl_ms) {
                        log_error("watchdog_timeout_s %u is not shorter than the manager's lease of %u ms (less "
                                  "%d ms): the watchdog %s is not armed", l->cfg->watchdog_timeout_s,
                                  l->lease_ttl_ms, WATCHDOG_MARGIN_US / 1000, l->wd_path);
                        l->wd_failed = true;
                        return;
                }
                if ((r = watchdog_arm(w, l->wd_path, l->cfg->watchdog_timeout_s)) < 0) {
                        log_error("%s: this host is not reset should its agent and lsc-fenced both fail",
                                  lsc_err_msg(r));
                        l->wd_failed = true;
                        return;
                }
                log_info("watchdog %s armed: timeout %u s; petted while the lease runs %u.%u s longer, so a "
                         "host that cannot act is reset before its lease ends", l->wd_path, w->timeout_s,
                         w->timeout_s, WATCHDOG_MARGIN_US / 100000);
        }
        holds = holds_instances(l);
        if (!watchdog_may_pet(now, l->lease_deadline_us, w->timeout_s, holds)) {
                if (!l->wd_withheld)
                        log_warn("watchdog not petted: the lease ends in %lld ms with instances held; the host "
                                 "is reset in %u s unless an ack comes or they are destroyed",
                                 (long long)((l->lease_deadline_us - now) / 1000), w->timeout_s);
                l->wd_withheld = true;
                return;
        }
        if (now - w->last_pet_us < 200000)
                return;
        if ((r = watchdog_pet(w, now)) < 0) {
                log_error("%s", lsc_err_msg(r));
                return;
        }
        if (l->wd_withheld)
                log_info("watchdog petted again (%s)", holds ? "lease renewed" : "no instance left");
        l->wd_withheld = false;
}

static void lease_extend(struct agent_loop *l, int64_t from_us, uint32_t ttl_ms, int64_t now)
{
        int64_t deadline = from_us + (int64_t)ttl_ms * 1000;

        if (ttl_ms != l->lease_ttl_ms) {
                l->lease_ttl_ms = ttl_ms;
                if (!l->budget_warned && (uint64_t)l->cfg->destroy_budget_ms * 2 > ttl_ms)
                        log_warn("destroy_budget_ms %u is more than half the manager's lease of %u ms: "
                                 "instances are destroyed %u ms before it ends", l->cfg->destroy_budget_ms,
                                 ttl_ms, ttl_ms / 2);
                l->budget_warned = true;
        }
        if (deadline <= l->lease_deadline_us)
                return;
        l->lease_deadline_us = deadline;
        if (l->lease_ending && lease_end_us(l) > now) {
                l->lease_ending = false;
                log_info("lease renewed by an acknowledged heartbeat: until now%+lld ms",
                         (long long)((deadline - now) / 1000));
        }
        pet(l);
        watchdog_tick(l, now);
        log_debug("lease until now%+lld ms (at boot %lld us)", (long long)((deadline - now) / 1000),
                  (long long)deadline);
}

static void refused(struct agent_loop *l, const char *error)
{
        const char *e = error && *error ? error : "no reason given";

        if (strcmp(e, l->last_refusal) != 0)
                log_error("the manager refused host %s: %s (registering again every %u ms)", l->cfg->name, e,
                          l->cfg->register_retry_ms);
        else
                log_debug("the manager refused host %s again: %s", l->cfg->name, e);
        snprintf(l->last_refusal, sizeof(l->last_refusal), "%s", e);
}

static void on_register_ack(struct agent_loop *l, const Lsc__Ack *a, bool ok, int64_t now)
{
        l->reg_outstanding = false;
        if (!ok || !a->has_epoch || a->epoch == 0) {
                refused(l, ok ? "registration acknowledged without an epoch" : a->error);
                l->epoch = 0;            /* no session: every command is refused */
                l->registered = false;
                l->want_register = true;
                l->next_reg_us = now + (int64_t)l->cfg->register_retry_ms * 1000;
                return;
        }
        if (!l->registered || a->epoch != l->epoch)
                log_info("host %s registered with the manager at %s: epoch %llu, incarnation %016llx",
                         l->cfg->name, l->cfg->manager, (unsigned long long)a->epoch,
                         (unsigned long long)a->incarnation);
        l->epoch = a->epoch;
        if (a->has_incarnation && a->incarnation)
                l->incarnation = a->incarnation;
        l->registered = true;
        l->want_register = false;
        l->last_refusal[0] = '\0';
        l->fresh_after_us = now;
        l->next_reg_us = now;
        if (a->has_lease_ttl_ms && a->lease_ttl_ms)
                lease_extend(l, l->reg_sent_us, a->lease_ttl_ms, now);
        l->next_beat_us = now;           /* at once: it carries utilisation and starts the lease */
}

static void on_ack(struct agent_loop *l, const Lsc__Envelope *env, int64_t now)
{
        const Lsc__Ack *a = env->ack;
        bool ok = !a->has_status || a->status == LSC__STATUS__OK;
        bool stale;

        /* a Register's ack carries no heartbeat stamp (seq is not relied on: lscd's
         * acks need not echo it) */
        if (!a->has_echo_sent_us || !a->echo_sent_us) {
                if (l->reg_sent_us)
                        on_register_ack(l, a, ok, now);
                return;
        }
        if (a->echo_sent_us > now) {
                log_debug("ack echoes a heartbeat stamp from the future: ignored");
                return;
        }
        stale = a->echo_sent_us < l->fresh_after_us;
        if (!ok) {
                if (!stale) {
                        refused(l, a->error);
                        need_register(l, now);
                }
                return;
        }
        if (a->has_lease_ttl_ms && a->lease_ttl_ms)
                lease_extend(l, a->echo_sent_us, a->lease_ttl_ms, now);
        if (stale)
                return;
        if (a->has_incarnation && a->incarnation && a->incarnation != l->incarnation) {
                if (l->incarnation) {
                        log_info("the manager restarted (incarnation %016llx, was %016llx): registering again",
                                 (unsigned long long)a->incarnation, (unsigned long long)l->incarnation);
                        need_register(l, now);
                }
                l->incarnation = a->incarnation;
        }
        if (a->has_reregister && a->reregister) {
                if (l->registered)
                        log_info("the manager does not know this session: registering again");
                need_register(l, now);
        } else if (l->registered && a->has_epoch && a->epoch && a->epoch != l->epoch) {
                log_info("the manager says epoch %llu, this host has %llu: registering again",
                         (unsigned long long)a->epoch, (unsigned long long)l->epoch);
                need_register(l, now);
        }
}

/* ---- commands ---- */

static enum job_kind op_kind(Lsc__Command__Op op)
{
        switch (op) {
        case LSC__COMMAND__OP__INSTANTIATE:
                return JOB_INSTANTIATE;
        case LSC__COMMAND__OP__DESTROY:
                return JOB_DESTROY;
        case LSC__COMMAND__OP__SHUTDOWN:
                return JOB_SHUTDOWN;
        default:
                return JOB_KIND_COUNT;
        }
}

static Lsc__Command__Op kind_op(enum job_kind k)
{
        return k == JOB_INSTANTIATE ? LSC__COMMAND__OP__INSTANTIATE
             : k == JOB_DESTROY     ? LSC__COMMAND__OP__DESTROY
                                    : LSC__COMMAND__OP__SHUTDOWN;
}

/* ServerSpec -> drv_spec, every field checked; the spec's pointers point into j. */
static int spec_from_proto(struct agent_loop *l, struct job *j, const Lsc__ServerSpec *s)
{
        const char *host_kind = agent_config_kind(l->cfg);
        int r;

        if (!s)
                return lsc_err_set(-EINVAL, "instantiate without a spec");
        if (!s->name)
                return lsc_err_set(-EINVAL, "instantiate without a server name");
        if ((r = lsc_validate_name("server name", s->name)) < 0)
                return r;
        snprintf(j->name, sizeof(j->name), "%s", s->name);
        j->spec.uuid = j->uuid;
        j->spec.name = j->name;
        j->spec.generation = j->generation;
        j->spec.kind = LSC_KIND_VM;
        if (s->kind && *s->kind) {
                if ((r = lsc_enum_parse(lsc_kind_names, LSC_KIND_COUNT, s->kind)) < 0)
                        return r;
                j->spec.kind = (enum lsc_kind)r;
        }
        if (strcmp(lsc_kind_names[j->spec.kind], host_kind) != 0)
                return lsc_err_set(-EINVAL, "this host runs %s identities, not %s", host_kind,
                                   lsc_kind_names[j->spec.kind]);
        j->spec.disk_mode = LSC_DISK_EPHEMERAL;
        if (s->disk_mode && *s->disk_mode) {
                if ((r = lsc_enum_parse(lsc_disk_mode_names, LSC_DISK_MODE_COUNT, s->disk_mode)) < 0)
                        return r;
                j->spec.disk_mode = (enum lsc_disk_mode)r;
        }
        j->spec.vcpus = s->has_vcpus ? s->vcpus : 0;
        j->spec.memory_mib = s->has_memory_mib ? s->memory_mib : 0;
        j->spec.disk_gib = s->has_disk_gib ? s->disk_gib : 0;
        if (s->image && *s->image && !(j->image = strdup(s->image)))
                return lsc_err_set(-ENOMEM, "out of memory");
        if (s->hostname && *s->hostname && !(j->hostname = strdup(s->hostname)))
                return lsc_err_set(-ENOMEM, "out of memory");
        j->spec.image = j->image;
        j->spec.hostname = j->hostname;
        if (s->n_macs > SPEC_ADDR_MAX || s->n_ips > SPEC_ADDR_MAX)
                return lsc_err_set(-EINVAL, "at most %d MACs and %d IPs per identity", SPEC_ADDR_MAX,
                                   SPEC_ADDR_MAX);
        for (size_t i = 0; i < s->n_macs; i++)
                if ((r = lsc_mac_parse(s->macs[i] ? s->macs[i] : "", &j->macs[i])) < 0)
                        return r;
        for (size_t i = 0; i < s->n_ips; i++)
                if ((r = lsc_ip_parse(s->ips[i] ? s->ips[i] : "", &j->ips[i])) < 0)
                        return r;
        j->spec.macs = j->macs;
        j->spec.n_macs = s->n_macs;
        j->spec.ips = j->ips;
        j->spec.n_ips = s->n_ips;
        return drv_spec_check(&j->spec);
}

static void refuse(struct agent_loop *l, Lsc__Command__Op op, const char *uuid, uint64_t generation,
                   uint64_t epoch, const char *why)
{
        char shown[LSC_SHOW_BUF];

        log_warn("refused %s %s generation %llu (epoch %llu): %s",
                 op_kind(op) != JOB_KIND_COUNT ? job_kind_names[op_kind(op)] : "command",
                 lsc_str_show(uuid, shown), (unsigned long long)generation, (unsigned long long)epoch, why);
        send_report(l, op, uuid, generation, epoch, false, why);
}

static bool uuid_busy(const struct agent_loop *l, const char *uuid)
{
        for (int i = 0; i < CMD_WORKERS; i++)
                if (l->cmd[i].job && strcmp(l->cmd[i].job->uuid, uuid) == 0)
                        return true;
        return false;
}

static struct worker *idle_worker(struct agent_loop *l)
{
        for (int i = 0; i < CMD_WORKERS; i++)
                if (!l->cmd[i].job)
                        return &l->cmd[i];
        return NULL;
}

/* Queued commands to idle workers, in order, but never two for one uuid at once: a
 * destroy and the instantiate after it must reach the driver in that order. */
static void dispatch(struct agent_loop *l)
{
        struct job **pp = &l->queue, *prev = NULL;

        if (!loop_drv(l))
                return;
        while (*pp) {
                struct job *j = *pp;
                struct worker *w;
                int r;

                if (uuid_busy(l, j->uuid)) {
                        prev = j;
                        pp = &j->next;
                        continue;
                }
                if (!(w = idle_worker(l)))
                        return;
                *pp = j->next;
                if (l->queue_tail == j)
                        l->queue_tail = prev;
                l->queued--;
                j->next = NULL;
                j->drv = loop_drv(l);
                if ((r = worker_give(w, j)) < 0) {
                        refuse(l, kind_op(j->kind), j->uuid, j->generation, j->epoch, lsc_err_msg(r));
                        job_free(j);
                }
        }
}

/* Why the loop refuses c before any driver work, or NULL. The tombstone is checked by
 * the worker, against the record, in the same step that records the intent. */
static const char *command_refusal(const struct agent_loop *l, const Lsc__Command *c, int64_t now,
                                   char *why, size_t len)
{
        enum job_kind kind = op_kind(c->op);
        uint64_t epoch = c->has_epoch ? c->epoch : 0;

        if (kind == JOB_KIND_COUNT) {
                snprintf(why, len, "unknown command op %d", (int)c->op);
                return why;
        }
        if (!drv_uuid_valid(c->uuid))
                return "invalid uuid: want the canonical lower-case form";
        if (!c->has_generation || c->generation == 0)
                return "generation 0 is never bound";
        if (l->epoch == 0 || epoch != l->epoch) {
                snprintf(why, len, "command for epoch %llu, but this host's session is %s%llu",
                         (unsigned long long)epoch, l->epoch ? "epoch " : "not open: epoch ",
                         (unsigned long long)l->epoch);
                return why;
        }
        /* no lease, no new instances: the manager may already have placed them elsewhere;
         * nor while the agent destroys everything before the lease ends */
        if (kind == JOB_INSTANTIATE && l->lease_deadline_us && now >= l->lease_deadline_us) {
                snprintf(why, len, "the lease expired %lld ms ago: no new instances until the manager "
                         "acknowledges a heartbeat", (long long)((now - l->lease_deadline_us) / 1000));
                return why;
        }
        if (kind == JOB_INSTANTIATE && l->lease_deadline_us && (l->lease_ending || now >= lease_end_us(l))) {
                snprintf(why, len, "the lease ends in %lld ms without an acknowledged heartbeat: no new "
                         "instances until the manager acknowledges one",
                         (long long)((l->lease_deadline_us - now) / 1000));
                return why;
        }
        if (l->queued >= QUEUE_MAX) {
                snprintf(why, len, "busy: %zu commands wait for the driver", l->queued);
                return why;
        }
        return NULL;
}

static void on_command(struct agent_loop *l, const Lsc__Command *c, int64_t now)
{
        enum job_kind kind = op_kind(c->op);
        const char *uuid = c->uuid ? c->uuid : "", *no;
        uint64_t g = c->has_generation ? c->generation : 0, epoch = c->has_epoch ? c->epoch : 0;
        char why[300], w[WHO_LEN];
        struct job *j = NULL;
        int r;

        if (!(no = command_refusal(l, c, now, why, sizeof(why))) && !(j = job_new(l, kind)))
                no = "out of memory";
        if (!no) {
                snprintf(j->uuid, sizeof(j->uuid), "%s", uuid);
                j->generation = g;
                j->epoch = epoch;
                j->timeout_ms = c->has_timeout_ms ? c->timeout_ms : 0;
                if (kind != JOB_INSTANTIATE)
                        snprintf(j->name, sizeof(j->name), "%s", inv_name(l->inv, l->n_inv, uuid));
                else if ((r = spec_from_proto(l, j, c->spec)) < 0)
                        no = lsc_err_msg(r);
        }
        if (no) {
                refuse(l, c->op, uuid, g, epoch, no);
                job_free(j);
                return;
        }
        log_debug("%s %s generation %llu queued", job_kind_names[kind], who(j->name, uuid, w),
                  (unsigned long long)g);
        if (l->queue_tail)
                l->queue_tail->next = j;
        else
                l->queue = j;
        l->queue_tail = j;
        l->queued++;
        dispatch(l);
}

/* A destroy of uuid at generation g (or above, if it is there already) on the list of
 * the agent's own destroys; false when out of memory. */
static bool own_destroy_add(struct agent_loop *l, struct job **list, const char *uuid, const char *name,
                            uint64_t g)
{
        struct job *j;

        for (j = *list; j; j = j->next)
                if (strcmp(j->uuid, uuid) == 0) {
                        if (g > j->generation)
                                j->generation = g;
                        return true;
                }
        if (!(j = job_new(l, JOB_DESTROY)))
                return false;
        snprintf(j->uuid, sizeof(j->uuid), "%s", uuid);
        snprintf(j->name, sizeof(j->name), "%s", name);
        j->generation = g;
        j->own = true;
        j->next = *list;
        *list = j;
        return true;
}

/* No acknowledged heartbeat moved the deadline: every instance is destroyed, through the
 * workers and the intent record like any destroy, before the manager may place its
 * identity elsewhere (lease_ttl + grace after it last heard of this host). Queued
 * instantiates are dropped; one a worker runs now is followed by a destroy of what it
 * makes. The decision is the loop's, so a hung driver delays the destroys (lsc-fenced
 * is there for that), never the decision. */
static void lease_end(struct agent_loop *l, int64_t now)
{
        struct job *own = NULL, **pp = &l->queue, *prev = NULL, *j;
        int64_t left = l->lease_deadline_us - now;
        bool oom = false;
        int n = 0;

        for (int i = 0; i < l->n_inv; i++)
                oom |= !own_destroy_add(l, &own, l->inv[i].uuid, l->inv[i].name, l->inv[i].generation);
        for (int i = 0; i < CMD_WORKERS; i++)
                if ((j = l->cmd[i].job) && j->kind == JOB_INSTANTIATE)
                        oom |= !own_destroy_add(l, &own, j->uuid, j->name, j->generation);
        while ((j = *pp)) {
                if (j->kind != JOB_INSTANTIATE) {
                        prev = j;
                        pp = &j->next;
                        continue;
                }
                *pp = j->next;
                if (l->queue_tail == j)
                        l->queue_tail = prev;
                l->queued--;
                refuse(l, LSC__COMMAND__OP__INSTANTIATE, j->uuid, j->generation, j->epoch,
                       "the lease ends without an acknowledged heartbeat");
                job_free(j);
        }
        for (j = own; j; j = j->next)
                n++;
        if (left >= 0)
                log_warn("lease ends in %lld ms without an acknowledged heartbeat: destroying %d instances",
                         (long long)(left / 1000), n);
        else
                log_warn("lease ended %lld ms ago without an acknowledged heartbeat: destroying %d instances",
                         (long long)(-left / 1000), n);
        if (oom)
                log_error("out of memory: some instances are not destroyed (lsc-fenced destroys them at the "
                          "deadline)");
        /* first in line: they go before any graceful shutdown the manager asked for */
        while (own) {
                j = own;
                own = j->next;
                j->next = l->queue;
                l->queue = j;
                if (!l->queue_tail)
                        l->queue_tail = j;
                l->queued++;
        }
        l->lease_ending = true;
        dispatch(l);
}

/* ---- worker results ---- */

static void open_done(struct agent_loop *l, struct job *j, int64_t now)
{
        if (j->result < 0) {
                if (strcmp(j->error, l->open_error) != 0)
                        log_error("cannot open driver %s: %s (trying again every %lld s)", l->cfg->driver, j->error,
                                  OPEN_RETRY_US / 1000000);
                snprintf(l->open_error, sizeof(l->open_error), "%.200s", j->error);
                l->next_open_us = now + OPEN_RETRY_US;
                return;
        }
        l->cap = j->cap;
        atomic_store(&l->drv, TAKE_PTR(j->opened));
        l->open_error[0] = '\0';
        inventory_take(l, j);
        l->health = j->health;
        snprintf(l->health_msg, sizeof(l->health_msg), "%s", j->health_msg);
        snprintf(l->note, sizeof(l->note), "%s", j->note);
        if (l->note[0])
                log_warn("driver %s: %s", l->cfg->driver, l->note);
        log_info("driver %s open: %u vcpus, %llu MiB, %llu GiB, %d instances", l->cfg->driver, l->cap.vcpus,
                 (unsigned long long)l->cap.memory_mib, (unsigned long long)l->cap.disk_gib, l->n_inv);
        l->want_register = true;
        l->next_reg_us = now;
        l->next_beat_us = now + (int64_t)l->cfg->heartbeat_ms * 1000;
}

static void probe_done(struct agent_loop *l, struct job *j)
{
        l->health = j->health;
        snprintf(l->health_msg, sizeof(l->health_msg), "%s", j->health_msg);
        if (strcmp(l->note, j->note) != 0 && j->note[0])
                log_warn("driver %s: %s", l->cfg->driver, j->note);
        snprintf(l->note, sizeof(l->note), "%s", j->note);
        inventory_take(l, j);
        if (j->has_stats) {
                drv_stats_clear(&l->stats_prev);
                l->stats_prev = l->stats_cur;
                l->stats_cur = j->stats;
                memset(&j->stats, 0, sizeof(j->stats));
                if (l->n_stats < 2)
                        l->n_stats++;
        }
}

static void command_done(struct agent_loop *l, struct job *j)
{
        char w[WHO_LEN];

        if (j->done_us > l->inv_min_us)
                l->inv_min_us = j->done_us;
        inventory_take(l, j);
        if (j->result == 0)
                log_info("%s %s generation %llu: done%s", job_kind_names[j->kind], who(j->name, j->uuid, w),
                         (unsigned long long)j->generation, j->own ? " (the lease ends)" : "");
        else
                log_warn("%s %s generation %llu failed: %s", job_kind_names[j->kind], who(j->name, j->uuid, w),
                         (unsigned long long)j->generation, j->error);
        /* the agent's own destroys show in the inventory; no command waits for them */
        if (!j->own)
                send_report(l, kind_op(j->kind), j->uuid, j->generation, j->epoch, j->result == 0, j->error);
}

static void worker_readable(struct agent_loop *l, struct worker *w, int64_t now)
{
        struct job *j = NULL;

        if (zmq_recv(w->sock, &j, sizeof(j), ZMQ_DONTWAIT) != (int)sizeof(j) || !j)
                return;
        w->job = NULL;
        if (j->kind == JOB_OPEN)
                open_done(l, j, now);
        else if (j->kind == JOB_PROBE)
                probe_done(l, j);
        else
                command_done(l, j);
        job_free(j);
        dispatch(l);
}

static void start_job(struct agent_loop *l, enum job_kind kind)
{
        struct job *j = job_new(l, kind);
        int r;

        if (!j)
                return;
        if ((r = worker_give(&l->probe, j)) < 0) {
                log_error("%s", lsc_err_msg(r));
                job_free(j);
        }
}

/* ---- the manager socket ---- */

static void monitor_readable(struct agent_loop *l, int64_t now)
{
        for (;;) {
                zmq_msg_t ev, addr;
                uint16_t event = 0;
                uint32_t value = 0;
                int more = 0;
                size_t sz = sizeof(more);

                zmq_msg_init(&ev);
                if (zmq_msg_recv(&ev, l->monitor, ZMQ_DONTWAIT) < 0) {
                        zmq_msg_close(&ev);
                        return;
                }
                if (zmq_msg_size(&ev) >= 6) {
                        memcpy(&event, zmq_msg_data(&ev), 2);
                        memcpy(&value, (char *)zmq_msg_data(&ev) + 2, 4);
                }
                zmq_msg_close(&ev);
                zmq_getsockopt(l->monitor, ZMQ_RCVMORE, &more, &sz);
                if (more) {
                        zmq_msg_init(&addr);
                        zmq_msg_recv(&addr, l->monitor, 0);
                        zmq_msg_close(&addr);
                }
                switch (event) {
                case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
                        log_info("connected to the manager at %s", l->cfg->manager);
                        l->connected = true;
                        l->auth_warned = l->handshake_warned = l->link_warned = false;
                        /* a new connection may lead to a new manager: tell it everything */
                        l->reg_outstanding = false;
                        need_register(l, now);
                        l->next_reg_us = now;
                        break;
                case ZMQ_EVENT_DISCONNECTED:
                        if (l->connected) {
                                log_warn("lost the connection to the manager at %s: reconnecting", l->cfg->manager);
                                l->link_down_us = now;
                        }
                        l->connected = false;
                        break;
                case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
                        if (!l->auth_warned)
                                log_error("the manager at %s refused this agent's key (ZAP status %u): enrol "
                                          "%s/%s as %s.pub in its authorised-keys directory", l->cfg->manager,
                                          value, l->cfg->state_dir, AGENT_PUB_FILE, l->cfg->name);
                        l->auth_warned = true;
                        /* libzmq does not reconnect after a refusal; the key may be
                         * enrolled any moment, so dial again later */
                        l->redial_us = now + (int64_t)l->cfg->register_retry_ms * 1000;
                        break;
                case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
                case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                        if (!l->handshake_warned)
                                log_warn("CurveZMQ handshake with the manager at %s failed: is %s its public key?",
                                         l->cfg->manager, l->cfg->manager_key_file);
                        l->handshake_warned = true;
                        break;
                default:
                        break;
                }
        }
}

static void dealer_readable(struct agent_loop *l, int64_t now)
{
        /* bounded, so a chatty manager cannot starve the workers' results */
        for (int i = 0; i < 256; i++) {
                Lsc__Envelope *env = NULL;
                int r = lsc_wire_recv(l->dealer, false, NULL, &env);

                if (r == -EAGAIN)
                        return;
                if (r < 0) {
                        log_warn("bad message from the manager: %s", lsc_err_msg(r));
                        lsc_wire_free(env);
                        continue;
                }
                if (env->body_case == LSC__ENVELOPE__BODY_ACK)
                        on_ack(l, env, now);
                else if (env->body_case == LSC__ENVELOPE__BODY_COMMAND)
                        on_command(l, env->command, now);
                else
                        log_warn("the manager sent a message agents do not take (%d)", (int)env->body_case);
                lsc_wire_free(env);
        }
}

static int socket_setup(struct agent_loop *l)
{
        const int zero = 0, one = 1, hwm = 64, rcvhwm = 1000, ivl = 1000, timeout = 3000,
                  reconnect = 200, reconnect_max = 2000;
        const int64_t maxmsg = MAX_MSG;
        char endpoint[96];

        l->dealer = zmq_socket(l->zctx, ZMQ_DEALER);
        if (!l->dealer)
                return lsc_err_set(-errno, "zmq_socket: %s", zmq_strerror(errno));
        if (zmq_setsockopt(l->dealer, ZMQ_CURVE_SERVERKEY, l->cfg->manager_key, 40) < 0 ||
            zmq_setsockopt(l->dealer, ZMQ_CURVE_PUBLICKEY, l->pub, 40) < 0 ||
            zmq_setsockopt(l->dealer, ZMQ_CURVE_SECRETKEY, l->sec, 40) < 0)
                return lsc_err_set(-errno, "cannot set the CurveZMQ keys: %s", zmq_strerror(errno));
        zmq_setsockopt(l->dealer, ZMQ_LINGER, &zero, sizeof(zero));
        /* a message that cannot go now is stale by the time the link is back */
        zmq_setsockopt(l->dealer, ZMQ_IMMEDIATE, &one, sizeof(one));
        zmq_setsockopt(l->dealer, ZMQ_SNDHWM, &hwm, sizeof(hwm));
        zmq_setsockopt(l->dealer, ZMQ_RCVHWM, &rcvhwm, sizeof(rcvhwm));
        /* ZMTP pings notice a half-open TCP connection. No TTL: it would make lscd arm and
         * cancel a timer per agent message, which libzmq 4.3 does in O(timers). */
        zmq_setsockopt(l->dealer, ZMQ_HEARTBEAT_IVL, &ivl, sizeof(ivl));
        zmq_setsockopt(l->dealer, ZMQ_HEARTBEAT_TIMEOUT, &timeout, sizeof(timeout));
        zmq_setsockopt(l->dealer, ZMQ_RECONNECT_IVL, &reconnect, sizeof(reconnect));
        zmq_setsockopt(l->dealer, ZMQ_RECONNECT_IVL_MAX, &reconnect_max, sizeof(reconnect_max));
        zmq_setsockopt(l->dealer, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));

        snprintf(endpoint, sizeof(endpoint), "inproc://lsc-agent-monitor-%p", (void *)l);
        if (zmq_socket_monitor(l->dealer, endpoint,
                               ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                                       ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                       ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) < 0)
                return lsc_err_set(-errno, "cannot monitor the manager socket: %s", zmq_strerror(errno));
        l->monitor = zmq_socket(l->zctx, ZMQ_PAIR);
        if (!l->monitor)
                return lsc_err_set(-errno, "zmq_socket: %s", zmq_strerror(errno));
        zmq_setsockopt(l->monitor, ZMQ_LINGER, &zero, sizeof(zero));
        if (zmq_connect(l->monitor, endpoint) < 0)
                return lsc_err_set(-errno, "cannot monitor the manager socket: %s", zmq_strerror(errno));
        if (zmq_connect(l->dealer, l->cfg->manager) < 0)
                return lsc_err_set(-errno, "cannot connect to %s: %s", l->cfg->manager, zmq_strerror(errno));
        return 0;
}

/* ---- timers and the loop ---- */

static void timers(struct agent_loop *l, int64_t now)
{
        if (l->lease_deadline_us && !l->lease_ending && now >= lease_end_us(l)) {
                /* an ack that already arrived counts: the timer may have woken the poll
                 * just before the socket would have (seen in lsc-chaos during lscd restarts) */
                dealer_readable(l, now);
                if (!l->lease_ending && now >= lease_end_us(l))
                        lease_end(l, now);
        }
        if (l->redial_us && now >= l->redial_us) {
                l->redial_us = 0;
                zmq_disconnect(l->dealer, l->cfg->manager);     /* ENOENT when already gone */
                if (zmq_connect(l->dealer, l->cfg->manager) < 0)
                        log_warn("cannot connect to %s: %s", l->cfg->manager, zmq_strerror(errno));
        }
        if (!loop_drv(l)) {
                if (!l->probe.job && now >= l->next_open_us)
                        start_job(l, JOB_OPEN);
                return;
        }
        if (l->want_register && now >= l->next_reg_us)
                send_register(l, now);
        if (now >= l->next_beat_us) {
                /* the check runs beside the beat: a hung driver delays the data, never the beat */
                if (!l->probe.job)
                        start_job(l, JOB_PROBE);
                send_heartbeat(l, now);
                watchdog_tick(l, now);
                if (!l->connected && !l->link_warned && !l->auth_warned && !l->handshake_warned &&
                    now - l->link_down_us >= LINK_WARN_US) {
                        log_warn("no connection to the manager at %s for %lld s: is lscd listening there?",
                                 l->cfg->manager, (long long)((now - l->link_down_us) / 1000000));
                        l->link_warned = true;
                }
                l->next_beat_us += (int64_t)l->cfg->heartbeat_ms * 1000;
                if (l->next_beat_us <= now)
                        l->next_beat_us = now + (int64_t)l->cfg->heartbeat_ms * 1000;
        }
}

/* Milliseconds to the nearest timer (rounded up), -1 when none runs. */
static long poll_timeout(struct agent_loop *l, int64_t now)
{
        int64_t next = INT64_MAX;

        if (!loop_drv(l)) {
                if (!l->probe.job)
                        next = l->next_open_us;
        } else {
                next = l->next_beat_us;
                if (l->want_register && l->next_reg_us < next)
                        next = l->next_reg_us;
        }
        if (l->redial_us && l->redial_us < next)
                next = l->redial_us;
        if (l->lease_deadline_us && !l->lease_ending && lease_end_us(l) < next)
                next = lease_end_us(l);
        for (int i = 0; i < l->n_chaos_held; i++)
                if (l->chaos_held[i].due_us < next)
                        next = l->chaos_held[i].due_us;
        if (next == INT64_MAX)
                return -1;
        return next <= now ? 0 : (long)((next - now + 999) / 1000);
}

int agent_loop_run(struct agent_loop *l)
{
        log_info("lsc-agent %s for host %s: manager %s, driver %s, state in %s", LSC_VERSION, l->cfg->name,
                 l->cfg->manager, l->cfg->driver, l->cfg->state_dir);
        if (!l->wd_path)
                log_info("no watchdog (%s): a host whose agent and lsc-fenced both fail is not reset",
                         l->cfg->watchdog_off ? "watchdog = none" : "no " WATCHDOG_DEVICE);
        else
                log_info("watchdog %s: armed at the first lease, timeout %u s", l->wd_path,
                         l->cfg->watchdog_timeout_s);
        if (l->pet_fd < 0 && strcmp(l->cfg->driver, "metal") == 0)
                log_info("metal: should this agent be lost, lscd's fence worker powers the machine off "
                         "through its BMC before its identity is bound again");
        else if (l->pet_fd < 0)
                log_warn("no fenced_socket: no lsc-fenced destroys this host's instances should this agent "
                         "freeze; the agent itself destroys them %u ms before its lease ends",
                         l->cfg->destroy_budget_ms);
        while (!atomic_load(&l->stopping)) {
                zmq_pollitem_t items[4 + 1 + CMD_WORKERS] = {
                        { .socket = l->dealer, .events = ZMQ_POLLIN },
                        { .socket = l->monitor, .events = ZMQ_POLLIN },
                        { .fd = l->sigfd, .events = ZMQ_POLLIN },
                        { .fd = l->stopfd, .events = ZMQ_POLLIN },
                        { .socket = l->probe.sock, .events = ZMQ_POLLIN },
                };
                int64_t now = now_us();
                int n;

                for (int i = 0; i < CMD_WORKERS; i++)
                        items[5 + i] = (zmq_pollitem_t){ .socket = l->cmd[i].sock, .events = ZMQ_POLLIN };
                timers(l, now);
                n = zmq_poll(items, (int)ARRAY_SIZE(items), poll_timeout(l, now_us()));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return lsc_err_set(-errno, "zmq_poll: %s", zmq_strerror(errno));
                }
                if (items[2].revents & ZMQ_POLLIN) {
                        struct signalfd_siginfo si;
                        if (read(l->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                                log_info("signal %u: stopping", si.ssi_signo);
                        atomic_store(&l->stopping, true);
                }
                if (items[3].revents & ZMQ_POLLIN) {
                        uint64_t v;
                        if (read(l->stopfd, &v, sizeof(v)) < 0)
                                log_debug("stop: %s", strerror(errno));
                }
                now = now_us();
                if (items[1].revents & ZMQ_POLLIN)
                        monitor_readable(l, now);
                if (items[4].revents & ZMQ_POLLIN)
                        worker_readable(l, &l->probe, now);
                for (int i = 0; i < CMD_WORKERS; i++)
                        if (items[5 + i].revents & ZMQ_POLLIN)
                                worker_readable(l, &l->cmd[i], now);
                if (items[0].revents & ZMQ_POLLIN)
                        dealer_readable(l, now);
                if (l->n_chaos_held)
                        chaos_flush(l, now_us());
        }
        log_info("host %s: agent stopped; its instances keep running", l->cfg->name);
        return 0;
}

void agent_loop_stop(struct agent_loop *l)
{
        uint64_t one = 1;

        atomic_store(&l->stopping, true);
        if (write(l->stopfd, &one, sizeof(one)) < 0)
                log_debug("stop: %s", strerror(errno));
}

struct drv *agent_loop_driver(struct agent_loop *l)
{
        return loop_drv(l);
}

/* ---- setup and teardown ---- */

static struct worker *worker_at(struct agent_loop *l, int i)
{
        return i == 0 ? &l->probe : &l->cmd[i - 1];
}

/* Every worker told to stop and joined, or false when a driver call is still hung. */
static bool workers_stop(struct agent_loop *l)
{
        struct timespec deadline;
        bool all = true;

        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += JOIN_WAIT_S;
        for (int i = 0; i <= CMD_WORKERS; i++) {
                struct worker *w = worker_at(l, i);
                struct job *none = NULL;

                if (w->started && zmq_send(w->sock, &none, sizeof(none), ZMQ_DONTWAIT) != (int)sizeof(none))
                        log_warn("cannot stop a worker: %s", zmq_strerror(errno));
        }
        for (int i = 0; i <= CMD_WORKERS; i++) {
                struct worker *w = worker_at(l, i);

                if (!w->started)
                        continue;
                if (pthread_timedjoin_np(w->thread, NULL, &deadline) != 0) {
                        log_warn("driver call %s%s%s still running at exit: abandoned (an intent it had "
                                 "recorded stays pending until the next start)",
                                 w->job ? job_kind_names[w->job->kind] : "?", w->job && w->job->name[0] ? " " : "",
                                 w->job ? w->job->name : "");
                        pthread_detach(w->thread);
                        all = false;
                        continue;
                }
                w->joined = true;
        }
        return all;
}

static void worker_close(struct worker *w)
{
        struct job *j;

        if (w->started && !w->joined)
                return;                  /* abandoned: its sockets stay with it */
        if (w->sock) {
                /* results nobody collected */
                while (zmq_recv(w->sock, &j, sizeof(j), ZMQ_DONTWAIT) == (int)sizeof(j))
                        job_free(j);
                zmq_close(w->sock);
        }
        if (w->peer && !w->started)
                zmq_close(w->peer);      /* a thread that ran closed its own end */
        w->sock = w->peer = NULL;
}

void agent_loop_destroy(struct agent_loop **lp)
{
        struct agent_loop *l = lp ? *lp : NULL;
        struct drv *d;
        bool all;

        if (!l)
                return;
        *lp = NULL;
        all = workers_stop(l);
        while (l->queue) {
                struct job *j = l->queue;
                l->queue = j->next;
                job_free(j);
        }
        for (int i = 0; i <= CMD_WORKERS; i++)
                worker_close(worker_at(l, i));
        if (l->monitor)
                zmq_close(l->monitor);
        if (l->dealer) {
                zmq_socket_monitor(l->dealer, NULL, 0);
                zmq_close(l->dealer);
        }
        if (l->sigfd >= 0)
                close(l->sigfd);
        if (l->stopfd >= 0)
                close(l->stopfd);
        if (l->pet_fd >= 0)
                close(l->pet_fd);
        if (l->wd.fd >= 0)
                log_info("watchdog %s disarmed: the agent stops", l->wd_path);
        watchdog_disarm(&l->wd);
        for (int i = 0; i < l->n_chaos_held; i++)
                free(l->chaos_held[i].buf);
        free(l->chaos_last);
        explicit_bzero(l->sec, sizeof(l->sec));
        if (!all) {
                /* a hung thread still uses the driver, the record and the context: they go
                 * with the process, which is about to exit */
                return;
        }
        d = atomic_exchange(&l->drv, NULL);
        drv_close(&d);
        if (l->zctx)
                zmq_ctx_term(l->zctx);
        agent_state_close(&l->state);
        free(l->inv);
        drv_stats_clear(&l->stats_prev);
        drv_stats_clear(&l->stats_cur);
        free(l);
}

static void loop_destroyp(struct agent_loop **l)
{
        agent_loop_destroy(l);
}

int agent_loop_new(const struct agent_config *cfg, struct agent_loop **ret)
{
        _cleanup_(loop_destroyp) struct agent_loop *l = NULL;
        sigset_t mask;
        int r;

        l = calloc(1, sizeof(*l));
        if (!l)
                return lsc_err_set(-ENOMEM, "out of memory");
        l->cfg = cfg;
        l->sigfd = l->stopfd = l->pet_fd = -1;
        watchdog_init(&l->wd);
        atomic_init(&l->drv, NULL);
        atomic_init(&l->stopping, false);
        snprintf(l->sender, sizeof(l->sender), "agent:%s", cfg->name);
        if ((r = agent_config_keys(cfg, l->pub, l->sec)) < 0)
                return r;
        if ((r = agent_state_open(cfg->state_dir, &l->state)) < 0)
                return r;

        /* signals arrive on a descriptor; the threads started below inherit the mask */
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        l->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (l->sigfd < 0)
                return lsc_err_set(-errno, "signalfd: %s", strerror(errno));
        l->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (l->stopfd < 0)
                return lsc_err_set(-errno, "eventfd: %s", strerror(errno));
        if (!cfg->watchdog_off)
                l->wd_path = cfg->watchdog ? cfg->watchdog
                                           : access(WATCHDOG_DEVICE, F_OK) == 0 ? WATCHDOG_DEVICE : NULL;
        if (cfg->fenced_socket) {
                l->pet_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (l->pet_fd < 0)
                        return lsc_err_set(-errno, "cannot create a socket to pet lsc-fenced: %s",
                                           strerror(errno));
        }

        l->zctx = zmq_ctx_new();
        if (!l->zctx)
                return lsc_err_set(-errno, "zmq_ctx_new: %s", zmq_strerror(errno));
        if ((r = socket_setup(l)) < 0)
                return r;
        for (int i = 0; i <= CMD_WORKERS; i++)
                if ((r = worker_start(l, worker_at(l, i))) < 0)
                        return r;
        l->next_open_us = l->link_down_us = now_us();
        *ret = TAKE_PTR(l);
        return 0;
}
