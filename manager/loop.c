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
#include "err.h"
#include "log.h"
#include "loop.h"
#include "util.h"
#include "wire.h"

/* Frames above the envelope limit still get an error reply; far larger ones make
 * libzmq drop the peer before they fill memory. */
#define LOOP_MAX_MSG ((int64_t)LSC_WIRE_MAX_FRAME * 4)

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
        if ((r = socket_setup(l)) < 0)
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

int loop_run(struct loop *l)
{
        log_info("lscd listening for the CLI on %s (incarnation %016llx)", l->cfg.cli_endpoint,
                 (unsigned long long)l->incarnation);
        while (!l->stopping) {
                zmq_pollitem_t items[] = {
                        { .socket = l->cli, .events = ZMQ_POLLIN },
                        { .socket = store_socket(l->store), .events = ZMQ_POLLIN },
                        { .fd = l->sigfd, .events = ZMQ_POLLIN },
                };
                int n = zmq_poll(items, ARRAY_SIZE(items), 1000);

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
        }
        return 0;
}

void loop_fini(struct loop *l)
{
        store_destroy(&l->store);
        /* a socket file left behind would make the CLI wait for its whole timeout
         * instead of saying at once that no lscd runs */
        if (l->cli_bound && strncmp(l->cfg.cli_endpoint, "ipc://", 6) == 0)
                unlink(l->cfg.cli_endpoint + 6);
        if (l->cli)
                zmq_close(l->cli);
        l->cli = NULL;
        if (l->zctx)
                zmq_ctx_term(l->zctx);
        l->zctx = NULL;
        if (l->sigfd >= 0)
                close(l->sigfd);
        l->sigfd = -1;
}
