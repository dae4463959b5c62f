/* Envelopes over zmq: [routing id (ROUTER only)] [empty delimiter] [Envelope bytes].
 * Everything received is hostile until checked: part count, sizes, framing, version. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "util.h"
#include "wire.h"

int lsc_wire_decode(const void *data, size_t len, Lsc__Envelope **ret_env)
{
        Lsc__Envelope *env;

        *ret_env = NULL;
        if (len > LSC_WIRE_MAX_FRAME)
                return lsc_err_set(-EMSGSIZE, "envelope of %zu bytes exceeds the limit of %u",
                                   len, LSC_WIRE_MAX_FRAME);
        env = lsc__envelope__unpack(NULL, len, data);
        if (!env)
                return lsc_err_set(-EBADMSG, "malformed envelope (%zu bytes)", len);
        if (!env->has_version || env->version != LSC_WIRE_VERSION) {
                int v = env->has_version ? (int)env->version : 0;
                *ret_env = env;
                return lsc_err_set(-EPROTONOSUPPORT,
                                   "protocol version %d is not supported (this side speaks %u)",
                                   v, LSC_WIRE_VERSION);
        }
        if (env->body_case == LSC__ENVELOPE__BODY__NOT_SET) {
                lsc__envelope__free_unpacked(env, NULL);
                return lsc_err_set(-EBADMSG, "envelope without a body");
        }
        *ret_env = env;
        return 0;
}

void lsc_wire_free(Lsc__Envelope *env)
{
        if (env)
                lsc__envelope__free_unpacked(env, NULL);
}

int lsc_wire_send(void *sock, const struct lsc_route *route, Lsc__Envelope *env)
{
        size_t len;
        _cleanup_free_ uint8_t *buf = NULL;

        if (!env->has_version) {
                env->has_version = 1;
                env->version = LSC_WIRE_VERSION;
        }
        len = lsc__envelope__get_packed_size(env);
        if (len > LSC_WIRE_MAX_FRAME)
                return lsc_err_set(-EMSGSIZE, "envelope of %zu bytes exceeds the limit of %u",
                                   len, LSC_WIRE_MAX_FRAME);
        buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        lsc__envelope__pack(env, buf);

        /* ROUTER_MANDATORY reports an unroutable peer as EHOSTUNREACH on the first part */
        if (route && zmq_send(sock, route->id, route->len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
                return lsc_err_set(-errno, "send: %s", zmq_strerror(errno));
        if (zmq_send(sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
                return lsc_err_set(-errno, "send: %s", zmq_strerror(errno));
        if (zmq_send(sock, buf, len, ZMQ_DONTWAIT) < 0)
                return lsc_err_set(-errno, "send: %s", zmq_strerror(errno));
        return 0;
}

/* Discards what is left of a multipart message, so the next recv starts clean. */
static void drain(void *sock)
{
        int more = 1;
        size_t sz = sizeof(more);

        while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) == 0 && more) {
                zmq_msg_t m;
                zmq_msg_init(&m);
                zmq_msg_recv(&m, sock, 0);
                zmq_msg_close(&m);
        }
}

static bool has_more(void *sock)
{
        int more = 0;
        size_t sz = sizeof(more);
        return zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) == 0 && more;
}

int lsc_wire_recv(void *sock, bool routed, struct lsc_route *ret_route, Lsc__Envelope **ret_env)
{
        zmq_msg_t part;
        int r;

        *ret_env = NULL;
        if (ret_route) {
                ret_route->len = 0;
                ret_route->peer[0] = '\0';
        }
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, ZMQ_DONTWAIT) < 0) {
                r = -errno;
                zmq_msg_close(&part);
                return r == -EAGAIN ? -EAGAIN : lsc_err_set(r, "recv: %s", zmq_strerror(-r));
        }
        if (routed) {
                size_t len = zmq_msg_size(&part);
                if (ret_route && len <= LSC_WIRE_ROUTE_MAX) {
                        memcpy(ret_route->id, zmq_msg_data(&part), len);
                        ret_route->len = len;
                }
                if (!has_more(sock)) {
                        zmq_msg_close(&part);
                        return lsc_err_set(-EBADMSG, "message has no parts after the routing id");
                }
                zmq_msg_close(&part);
                zmq_msg_init(&part);
                if (zmq_msg_recv(&part, sock, 0) < 0) {
                        r = -errno;
                        zmq_msg_close(&part);
                        return lsc_err_set(r, "recv: %s", zmq_strerror(-r));
                }
        }
        /* the empty delimiter (REQ-compatible framing) */
        if (zmq_msg_size(&part) != 0 || !has_more(sock)) {
                zmq_msg_close(&part);
                drain(sock);
                return lsc_err_set(-EBADMSG, "message does not start with an empty delimiter frame");
        }
        zmq_msg_close(&part);
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, 0) < 0) {
                r = -errno;
                zmq_msg_close(&part);
                return lsc_err_set(r, "recv: %s", zmq_strerror(-r));
        }
        if (has_more(sock)) {
                zmq_msg_close(&part);
                drain(sock);
                return lsc_err_set(-EBADMSG, "message has parts after the envelope");
        }
        if (ret_route) {
                const char *peer = zmq_msg_gets(&part, "User-Id");
                const char *addr = zmq_msg_gets(&part, "Peer-Address");
                snprintf(ret_route->peer, sizeof(ret_route->peer), "%s", peer ? peer : "");
                snprintf(ret_route->address, sizeof(ret_route->address), "%s", addr ? addr : "");
        }
        r = lsc_wire_decode(zmq_msg_data(&part), zmq_msg_size(&part), ret_env);
        zmq_msg_close(&part);
        return r;
}

int lsc_wire_send_error(void *sock, const struct lsc_route *route, uint64_t seq,
                        Lsc__Status status, const char *msg)
{
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        Lsc__Reply reply = LSC__REPLY__INIT;

        reply.has_status = 1;
        reply.status = status;
        reply.error = (char *)msg;
        env.has_seq = 1;
        env.seq = seq;
        env.body_case = LSC__ENVELOPE__BODY_REPLY;
        env.reply = &reply;
        return lsc_wire_send(sock, route, &env);
}

int lsc_wire_send_reply(void *sock, const struct lsc_route *route, uint64_t seq, Lsc__Reply *reply)
{
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        char msg[160];
        int r;

        env.has_seq = 1;
        env.seq = seq;
        env.body_case = LSC__ENVELOPE__BODY_REPLY;
        env.reply = reply;
        r = lsc_wire_send(sock, route, &env);
        if (r != -EMSGSIZE)
                return r;
        /* nothing went out: say why rather than leave the peer waiting for its timeout */
        snprintf(msg, sizeof(msg), "reply too large: %zu bytes exceed the limit of %u for one envelope",
                 lsc__envelope__get_packed_size(&env), LSC_WIRE_MAX_FRAME);
        r = lsc_wire_send_error(sock, route, seq, LSC__STATUS__ERR_INTERNAL, msg);
        return r < 0 ? r : lsc_err_set(-EMSGSIZE, "%s: answered with an error", msg);
}
