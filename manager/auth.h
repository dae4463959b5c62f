/* Agent admission: a ZAP handler that lets in only CurveZMQ public keys listed in the
 * authorised-keys directory (one file HOST.pub per host, holding its Z85 key), and
 * tells the agent socket which host each key is enrolled for (the ZAP User-Id). */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "curve.h"

struct auth_key {
        char host[64];
        char key[LSC_Z85_KEY];
};

struct auth {
        char *dir;
        struct auth_key *keys;
        size_t n_keys;
        int64_t loaded_us;               /* when dir was last read (monotonic) */
        int64_t mtime_ns;                /* dir's mtime then */
        bool incomplete;                 /* a key file did not parse: read again */
        void *zap;                       /* REP on inproc://zeromq.zap.01 */
        uint64_t admitted, refused;
};

/* Reads dir and binds the ZAP handler on zctx; must run before any CURVE socket binds. */
int auth_init(struct auth *a, void *zctx, const char *dir);
void auth_fini(struct auth *a);
/* After POLLIN on a->zap: answers one ZAP request. */
void auth_handle(struct auth *a);
/* The host a Z85 key is enrolled for, or NULL. Re-reads the directory when the key is
 * unknown and the directory changed (at most ten times a second), so enrolling a
 * host needs no restart. */
const char *auth_host_of(struct auth *a, const char *key);
