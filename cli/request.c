/* One request to the manager and its reply: a fresh DEALER socket per call, a
 * deadline, and never a hang (LINGER 0, send and receive bounded by the timeout). */
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include "cli.h"
#include "err.h"
#include "log.h"
#include "util.h"
#include "wire.h"

static void ctx_termp(void **ctx)
{
        if (*ctx)
                zmq_ctx_term(*ctx);
}

static void sock_closep(void **sock)
{
        if (*sock)
                zmq_close(*sock);
}

/* "cli:USER@HOST": written by lscd into the event rows as the actor. */
static void sender_id(char *buf, size_t len)
{
        const struct passwd *pw = getpwuid(geteuid());
        char host[HOST_NAME_MAX + 1];

        if (gethostname(host, sizeof(host)) < 0)
                snprintf(host, sizeof(host), "unknown");
        host[sizeof(host) - 1] = '\0';
        if (pw)
                snprintf(buf, len, "cli:%s@%s", pw->pw_name, host);
        else
                snprintf(buf, len, "cli:%u@%s", (unsigned)geteuid(), host);
}

static uint64_t random_seq(void)
{
        uint64_t v;

        if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
                v = (uint64_t)lsc_wall_us() ^ ((uint64_t)getpid() << 32);
        return v & INT64_MAX;           /* readable in logs as a non-negative number */
}

static int no_answer(const struct cli_opts *o)
{
        return lsc_err_set(-ETIMEDOUT, "no answer from the manager at %s within %g s "
                           "(is lscd running?)", o->manager, o->timeout_s);
}

/* Only ipc:// and tcp:// make sense for the CLI; anything else is a usage error. */
static int check_endpoint(const struct cli_opts *o)
{
        const char *e = o->manager;

        if ((strncmp(e, "ipc://", 6) == 0 && e[6]) || (strncmp(e, "tcp://", 6) == 0 && e[6]))
                return 0;
        return cli_usage(NULL, "invalid manager endpoint '%.128s': use ipc://PATH or "
                         "tcp://HOST:PORT (--manager or LSC_MANAGER)", e);
}

/* A missing ipc socket file means nobody listens: say so now rather than wait. */
static int check_ipc_socket(const struct cli_opts *o)
{
        const char *path = o->manager + 6;
        struct stat st;

        if (strncmp(o->manager, "ipc://", 6) != 0 || path[0] == '@')   /* '@': abstract */
                return 0;
        if (stat(path, &st) < 0 && errno == ENOENT)
                return lsc_err_set(-ETIMEDOUT, "no answer from the manager at %s: "
                                   "no manager socket at %s (is lscd running?)", o->manager, path);
        return 0;
}

static const char *status_name(Lsc__Status s)
{
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&lsc__status__descriptor, s);
        return v ? v->name : "UNKNOWN";
}

/* A reply whose status is not OK: its text becomes the detail, its status the errno. */
static int refusal(const Lsc__Reply *reply)
{
        static const int errs[] = {
                [LSC__STATUS__ERR_INVALID] = -EINVAL,
                [LSC__STATUS__ERR_NOTFOUND] = -ENOENT,
                [LSC__STATUS__ERR_EXISTS] = -EEXIST,
                [LSC__STATUS__ERR_CONFLICT] = -EBUSY,
                [LSC__STATUS__ERR_UNAVAILABLE] = -EAGAIN,
                [LSC__STATUS__ERR_INTERNAL] = -EIO,
                [LSC__STATUS__ERR_VERSION] = -EPROTONOSUPPORT,
        };
        unsigned s = (unsigned)reply->status;
        int r = s < ARRAY_SIZE(errs) && errs[s] ? errs[s] : -EIO;

        if (reply->error && reply->error[0]) {
                char msg[401];

                /* the text goes to a terminal: no escape sequences from the wire */
                snprintf(msg, sizeof(msg), "%s", reply->error);
                for (char *p = msg; *p; p++)
                        if ((unsigned char)*p < 0x20 || *p == 0x7f)
                                *p = '?';
                return lsc_err_set(r, "%s", msg);
        }
        return lsc_err_set(r, "the manager refused the request (%s)", status_name(reply->status));
}

/* Receives until the reply to seq arrives or the deadline passes. */
static int wait_reply(const struct cli_opts *o, void *sock, uint64_t seq, int64_t deadline,
                      Lsc__Envelope **ret_env)
{
        for (;;) {
                _cleanup_envelope_ Lsc__Envelope *env = NULL;
                zmq_pollitem_t item = { .socket = sock, .events = ZMQ_POLLIN };
                int64_t left_ms = (deadline - lsc_now_us() + 999) / 1000;
                int n, r;

                if (left_ms <= 0)
                        return no_answer(o);
                n = zmq_poll(&item, 1, (long)left_ms);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return lsc_err_set(-errno, "waiting for the manager: %s", zmq_strerror(errno));
                }
                if (n == 0 || !(item.revents & ZMQ_POLLIN))
                        continue;

                r = lsc_wire_recv(sock, false, NULL, &env);
                if (r == -EAGAIN)
                        continue;
                if (r == -EPROTONOSUPPORT)
                        return lsc_err_set(r, "the manager at %s speaks another protocol version "
                                           "(%u; this lsc speaks %u)", o->manager,
                                           env ? env->version : 0, LSC_WIRE_VERSION);
                if (r < 0)
                        return cli_err_prefix(r == -EMSGSIZE ? -EBADMSG : r,
                                              "the manager sent a broken reply");
                if (!env->has_seq || env->seq != seq) {
                        /* not ours: a fresh socket should never see one, but a late
                         * answer to someone else must not be taken for ours */
                        log_debug("dropped a reply with seq %llu, waiting for %llu",
                                  (unsigned long long)env->seq, (unsigned long long)seq);
                        continue;
                }
                if (env->body_case != LSC__ENVELOPE__BODY_REPLY || !env->reply)
                        return lsc_err_set(-EBADMSG, "the manager sent a broken reply: "
                                           "not a reply");
                *ret_env = TAKE_PTR(env);
                return 0;
        }
}

int cli_call(const struct cli_opts *o, Lsc__Request *req, Lsc__Reply **ret_reply)
{
        /* declared in this order so that the socket closes before the context ends */
        _cleanup_(ctx_termp) void *ctx = NULL;
        _cleanup_(sock_closep) void *sock = NULL;
        _cleanup_envelope_ Lsc__Envelope *in = NULL;
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        Lsc__Reply *reply;
        char sender[HOST_NAME_MAX + 64];
        int linger = 0, hwm = 16, tmo_ms;
        int64_t deadline;
        int r;

        if ((r = check_endpoint(o)) < 0 || (r = check_ipc_socket(o)) < 0)
                return r;
        deadline = lsc_now_us() + (int64_t)(o->timeout_s * 1e6);
        tmo_ms = (int)(o->timeout_s * 1000) + 1;

        ctx = zmq_ctx_new();
        if (!ctx)
                return lsc_err_set(-errno, "zmq: %s", zmq_strerror(errno));
        sock = zmq_socket(ctx, ZMQ_DEALER);
        if (!sock)
                return lsc_err_set(-errno, "zmq: %s", zmq_strerror(errno));
        if (zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
            zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof(hwm)) < 0 ||
            zmq_setsockopt(sock, ZMQ_SNDTIMEO, &tmo_ms, sizeof(tmo_ms)) < 0 ||
            zmq_setsockopt(sock, ZMQ_RCVTIMEO, &tmo_ms, sizeof(tmo_ms)) < 0)
                return lsc_err_set(-errno, "zmq: %s", zmq_strerror(errno));
        if (zmq_connect(sock, o->manager) < 0) {
                r = -errno;
                /* a malformed endpoint is the user's to fix; anything else is "not there" */
                if (r == -EINVAL || r == -EPROTONOSUPPORT)
                        return cli_usage(NULL, "invalid manager endpoint '%.128s': %s",
                                         o->manager, zmq_strerror(-r));
                return lsc_err_set(-ETIMEDOUT, "no answer from the manager at %s: %s "
                                   "(is lscd running?)", o->manager, zmq_strerror(-r));
        }

        sender_id(sender, sizeof(sender));
        env.has_version = 1;
        env.version = LSC_WIRE_VERSION;
        env.sender = sender;
        env.has_seq = 1;
        env.seq = random_seq();
        env.body_case = LSC__ENVELOPE__BODY_REQUEST;
        env.request = req;
        r = lsc_wire_send(sock, NULL, &env);
        if (r == -EAGAIN)
                return no_answer(o);
        if (r < 0)
                return cli_err_prefix(r, "cannot send to the manager");

        if ((r = wait_reply(o, sock, env.seq, deadline, &in)) < 0)
                return r;
        /* an absent status is proto2's default, OK */
        if (in->reply->status != LSC__STATUS__OK)
                return refusal(in->reply);

        /* hand the reply out on its own: detach it from the envelope */
        reply = in->reply;
        in->reply = NULL;
        in->body_case = LSC__ENVELOPE__BODY__NOT_SET;
        *ret_reply = reply;
        return 0;
}

/* Moves src's rows to the end of dst's: unpacked messages own each row on its own
 * (the system allocator), so pointers can change hands. */
static int servers_append(Lsc__Reply *dst, Lsc__Reply *src)
{
        Lsc__Server **v;

        if (!src->n_servers)
                return 0;
        v = realloc(dst->servers, (dst->n_servers + src->n_servers) * sizeof(*v));
        if (!v)
                return lsc_err_set(-ENOMEM, "out of memory");
        memcpy(v + dst->n_servers, src->servers, src->n_servers * sizeof(*v));
        dst->servers = v;
        dst->n_servers += src->n_servers;
        src->n_servers = 0;
        return 0;
}

static int hosts_append(Lsc__Reply *dst, Lsc__Reply *src)
{
        Lsc__Host **v;

        if (!src->n_hosts)
                return 0;
        v = realloc(dst->hosts, (dst->n_hosts + src->n_hosts) * sizeof(*v));
        if (!v)
                return lsc_err_set(-ENOMEM, "out of memory");
        memcpy(v + dst->n_hosts, src->hosts, src->n_hosts * sizeof(*v));
        dst->hosts = v;
        dst->n_hosts += src->n_hosts;
        src->n_hosts = 0;
        return 0;
}

int cli_call_list(const struct cli_opts *o, Lsc__Request *req, char **after, Lsc__Reply **ret_reply)
{
        _cleanup_reply_ Lsc__Reply *all = NULL;
        _cleanup_free_ char *cursor = NULL;
        int r;

        for (bool more = true; more;) {
                _cleanup_reply_ Lsc__Reply *page = NULL;

                *after = cursor;
                r = cli_call(o, req, &page);
                *after = NULL;
                if (r < 0)
                        return r;
                more = page->next && page->next[0];
                if (more) {
                        /* a manager that does not move on would keep us here forever */
                        if ((cursor && strcmp(page->next, cursor) == 0) ||
                            (page->n_servers == 0 && page->n_hosts == 0))
                                return lsc_err_set(-EBADMSG, "the manager sent a broken reply: "
                                                   "the page after '%.64s' does not move on",
                                                   cursor ? cursor : "");
                        free(cursor);
                        if (!(cursor = strdup(page->next)))
                                return lsc_err_set(-ENOMEM, "out of memory");
                }
                if (!all)
                        all = TAKE_PTR(page);
                else if ((r = servers_append(all, page)) < 0 || (r = hosts_append(all, page)) < 0)
                        return r;
        }
        free(all->next);
        all->next = NULL;
        *ret_reply = TAKE_PTR(all);
        return 0;
}
