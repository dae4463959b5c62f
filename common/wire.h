/* Envelopes over zmq multipart messages: [routing id (ROUTER only)] [empty] [Envelope].
 * Decoding never trusts the peer: size, framing and version are checked first. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <zmq.h>
#include "lsc.pb-c.h"

#define LSC_WIRE_VERSION 1u
#define LSC_WIRE_MAX_FRAME (1u << 20)     /* an envelope larger than 1 MiB is refused */
#define LSC_WIRE_ROUTE_MAX 256            /* zmq routing ids are at most 255 bytes */

#define LSC_WIRE_PEER_MAX 256

struct lsc_route {
        size_t len;
        unsigned char id[LSC_WIRE_ROUTE_MAX];
        /* Who the ZAP handler authenticated the connection as (its User-Id, e.g. the
         * host a CURVE key is enrolled for); "" on unauthenticated sockets. */
        char peer[LSC_WIRE_PEER_MAX];
        /* libzmq's Peer-Address: on ipc:// "HOST:UID:GID:PID" from the kernel
         * (SO_PEERCRED), so the CLI's user is known without trusting its word. */
        char address[LSC_WIRE_PEER_MAX];
};

/* Envelope bytes -> message. -EMSGSIZE when too large, -EBADMSG when it does not
 * parse or has no body, -EPROTONOSUPPORT when its version is not ours. On the
 * version error *ret_env is still set (so the caller can echo seq), else NULL. */
int lsc_wire_decode(const void *data, size_t len, Lsc__Envelope **ret_env);
void lsc_wire_free(Lsc__Envelope *env);
static inline void lsc_wire_freep(Lsc__Envelope **p) { lsc_wire_free(*p); }
#define _cleanup_envelope_ __attribute__((cleanup(lsc_wire_freep)))

/* Sends env (version filled in if unset); route NULL for DEALER/REQ peers. 0 or -errno. */
int lsc_wire_send(void *sock, const struct lsc_route *route, Lsc__Envelope *env);

/* Receives one whole multipart message (waits only if the caller's poll said
 * POLLIN). routed: expect a routing id first (ROUTER). Always consumes every part.
 * On a decode failure ret_route is still filled so the caller can answer. */
int lsc_wire_recv(void *sock, bool routed, struct lsc_route *ret_route, Lsc__Envelope **ret_env);

/* Builds and sends a Reply with status and message, echoing seq. */
int lsc_wire_send_error(void *sock, const struct lsc_route *route, uint64_t seq,
                        Lsc__Status status, const char *msg);

/* Sends reply echoing seq. One too large for an envelope goes out as an ERR_INTERNAL
 * "reply too large" error instead, and the call returns -EMSGSIZE (the detail says so). */
int lsc_wire_send_reply(void *sock, const struct lsc_route *route, uint64_t seq, Lsc__Reply *reply);
