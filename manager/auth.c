/* Agent admission through ZAP (ZeroMQ RFC 27): a connection is let in only when its
 * CURVE public key is enrolled, and its User-Id becomes the host the key is for; the
 * loop then accepts messages only for that host. */
#include <dirent.h>
#include <sys/stat.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>
#include "auth.h"
#include "err.h"
#include "log.h"
#include "util.h"
#include "validate.h"

#define AUTH_RELOAD_MIN_US 100000   /* at most ten directory reads a second */

static int load_dir(struct auth *a)
{
        DIR *d = opendir(a->dir);
        struct dirent *e;
        struct auth_key *keys = NULL;
        size_t n = 0, cap = 0;
        bool incomplete = false;

        if (!d)
                return lsc_err_set(-errno, "cannot read the authorised-keys directory %s: %s", a->dir,
                                   strerror(errno));
        while ((e = readdir(d))) {
                char host[64], path[4096];
                size_t len = strlen(e->d_name);

                if (len < 5 || strcmp(e->d_name + len - 4, ".pub") != 0 || len - 4 >= sizeof(host))
                        continue;
                memcpy(host, e->d_name, len - 4);
                host[len - 4] = '\0';
                if (lsc_validate_name("host name", host) < 0) {
                        log_warn("authorised keys: ignoring %s: %s", e->d_name, lsc_err_msg(-EINVAL));
                        continue;
                }
                if (n == cap) {
                        struct auth_key *k = realloc(keys, (cap = cap ? cap * 2 : 16) * sizeof(*k));
                        if (!k) {
                                free(keys);
                                closedir(d);
                                return -ENOMEM;
                        }
                        keys = k;
                }
                snprintf(path, sizeof(path), "%s/%s", a->dir, e->d_name);
                if (lsc_curve_read_public(path, keys[n].key) < 0) {
                        log_warn("authorised keys: ignoring %s: %s", path, lsc_err_msg(-EINVAL));
                        incomplete = true;       /* perhaps still being written */
                        continue;
                }
                snprintf(keys[n].host, sizeof(keys[n].host), "%s", host);
                n++;
        }
        closedir(d);
        struct stat st;
        a->incomplete = incomplete;
        a->mtime_ns = stat(a->dir, &st) == 0 ? (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec : 0;
        free(a->keys);
        a->keys = keys;
        a->n_keys = n;
        a->loaded_us = lsc_now_us();
        log_debug("authorised keys: %zu hosts enrolled in %s", n, a->dir);
        return 0;
}

int auth_init(struct auth *a, void *zctx, const char *dir)
{
        int r, zero = 0;

        memset(a, 0, sizeof(*a));
        a->dir = strdup(dir);
        if (!a->dir)
                return -ENOMEM;
        if ((r = load_dir(a)) < 0)
                return r;
        a->zap = zmq_socket(zctx, ZMQ_REP);
        if (!a->zap)
                return lsc_err_set(-errno, "zmq_socket: %s", zmq_strerror(errno));
        zmq_setsockopt(a->zap, ZMQ_LINGER, &zero, sizeof(zero));
        if (zmq_bind(a->zap, "inproc://zeromq.zap.01") < 0)
                return lsc_err_set(-errno, "cannot bind the ZAP handler: %s", zmq_strerror(errno));
        return 0;
}

void auth_fini(struct auth *a)
{
        if (a->zap)
                zmq_close(a->zap);
        free(a->keys);
        free(a->dir);
        memset(a, 0, sizeof(*a));
}

static const char *lookup(const struct auth *a, const char *key)
{
        for (size_t i = 0; i < a->n_keys; i++)
                if (strcmp(a->keys[i].key, key) == 0)
                        return a->keys[i].host;
        return NULL;
}

/* Whether the directory changed since it was read (a key added, removed or replaced:
 * files are written next to it and renamed in, which changes the directory). */
static bool dir_changed(const struct auth *a)
{
        struct stat st;

        if (a->incomplete || stat(a->dir, &st) < 0)
                return true;
        return (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec != a->mtime_ns;
}

const char *auth_host_of(struct auth *a, const char *key)
{
        const char *host = lookup(a, key);

        if (!host && lsc_now_us() - a->loaded_us >= AUTH_RELOAD_MIN_US && dir_changed(a)) {
                if (load_dir(a) < 0)
                        log_warn("%s", lsc_err_msg(-EIO));
                host = lookup(a, key);
        }
        return host;
}

/* ZAP request frames: version, request id, domain, address, identity, mechanism,
 * then the mechanism's credentials (CURVE: the client's 32-byte public key). */
#define ZAP_FRAMES 7

void auth_handle(struct auth *a)
{
        zmq_msg_t f[ZAP_FRAMES];
        int n = 0, more = 1;
        size_t sz = sizeof(more);
        char key[LSC_Z85_KEY] = "", mech[16] = "", addr[64] = "";
        const char *host = NULL, *code = "400", *text = "key not enrolled";

        for (; more && n < ZAP_FRAMES; n++) {
                zmq_msg_init(&f[n]);
                if (zmq_msg_recv(&f[n], a->zap, ZMQ_DONTWAIT) < 0) {
                        zmq_msg_close(&f[n]);
                        break;
                }
                zmq_getsockopt(a->zap, ZMQ_RCVMORE, &more, &sz);
        }
        while (more) {                   /* more frames than CURVE sends: drop them */
                zmq_msg_t x;
                zmq_msg_init(&x);
                if (zmq_msg_recv(&x, a->zap, 0) < 0)
                        more = 0;
                else
                        zmq_getsockopt(a->zap, ZMQ_RCVMORE, &more, &sz);
                zmq_msg_close(&x);
        }
        if (n < 6)
                goto out;                /* REP must still answer: below, with what we have */
        snprintf(mech, sizeof(mech), "%.*s", (int)zmq_msg_size(&f[5]), (char *)zmq_msg_data(&f[5]));
        snprintf(addr, sizeof(addr), "%.*s", (int)zmq_msg_size(&f[3]), (char *)zmq_msg_data(&f[3]));
        if (strcmp(mech, "CURVE") == 0 && n == 7 && zmq_msg_size(&f[6]) == 32) {
                zmq_z85_encode(key, zmq_msg_data(&f[6]), 32);
                host = auth_host_of(a, key);
        } else {
                text = "only CURVE is accepted";
        }
        if (host) {
                code = "200";
                text = "OK";
                a->admitted++;
                log_debug("admitted agent key %.8s... from %s as host %s", key, addr, host);
        } else {
                a->refused++;
                log_warn("refused agent connection from %s: %s%s%.8s", addr, text,
                         key[0] ? ", key " : "", key);
        }
out:
        {
                const char *reqid = n > 1 ? zmq_msg_data(&f[1]) : "";
                size_t reqid_len = n > 1 ? zmq_msg_size(&f[1]) : 0;
                zmq_send(a->zap, "1.0", 3, ZMQ_SNDMORE);
                zmq_send(a->zap, reqid, reqid_len, ZMQ_SNDMORE);
                zmq_send(a->zap, code, 3, ZMQ_SNDMORE);
                zmq_send(a->zap, text, strlen(text), ZMQ_SNDMORE);
                zmq_send(a->zap, host ? host : "", host ? strlen(host) : 0, ZMQ_SNDMORE);
                zmq_send(a->zap, "", 0, 0);
        }
        for (int i = 0; i < n; i++)
                zmq_msg_close(&f[i]);
}
