/* The fence worker: a queue of hosts to power off, one thread that runs the IPMI calls
 * (seconds each when a BMC is slow or gone), and an eventfd that tells the loop when
 * results wait. One entry per host: asked again while queued or running, nothing
 * happens; a failure may be asked again FENCE_RETRY_US later. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "err.h"
#include "fence.h"
#include "util.h"

enum slot_state { SLOT_IDLE, SLOT_QUEUED, SLOT_RUNNING, SLOT_DONE };

struct slot {
        struct fence_bmc cfg;            /* address etc. unused after finish: bmc holds it */
        enum slot_state state;
        int64_t done_us;                 /* when the last attempt ended */
        struct fence_result result;
};

struct fence {
        struct slot *slots;
        size_t n;
        uint32_t confirm_ms;
        pthread_mutex_t lock;
        pthread_cond_t work;
        pthread_t thread;
        bool started, stopping;
        int efd;
};

/* ---- config ---- */

static struct fence_bmc *bmc_of(struct fence_config *c, const char *host)
{
        struct fence_bmc *v;

        for (size_t i = 0; i < c->n; i++)
                if (!strcmp(c->bmcs[i].host, host))
                        return &c->bmcs[i];
        if (!(v = realloc(c->bmcs, (c->n + 1) * sizeof(*v))))
                return NULL;
        c->bmcs = v;
        memset(&v[c->n], 0, sizeof(*v));
        snprintf(v[c->n].host, sizeof(v[c->n].host), "%s", host);
        v[c->n].port = LSC_IPMI_DEFAULT_PORT;
        v[c->n].timeout_ms = LSC_IPMI_DEFAULT_TIMEOUT_MS;
        v[c->n].retries = LSC_IPMI_DEFAULT_RETRIES;
        return &v[c->n++];
}

static int set_u32(const char *host, const char *key, const char *value, uint32_t min, uint32_t max, uint32_t *dst)
{
        char shown[LSC_SHOW_BUF];
        uint64_t n;

        if (lsc_parse_u64(key, value, &n) < 0 || n < min || n > max)
                return lsc_err_set(-EINVAL, "[bmc %s]: invalid %s \"%s\": want %u-%u", host, key,
                                   lsc_str_show(value, shown), min, max);
        *dst = (uint32_t)n;
        return 0;
}

static int set_text(char **dst, const char *v)
{
        char *s = strdup(v);

        if (!s)
                return lsc_err_set(-ENOMEM, "out of memory");
        free(*dst);
        *dst = s;
        return 0;
}

int fence_config_set(struct fence_config *c, const char *host, const char *key, const char *value)
{
        char shown[LSC_SHOW_BUF];
        struct fence_bmc *b;
        int r;

        if ((r = lsc_validate_name("host name in [bmc HOST]", host)) < 0)
                return r;
        if (!(b = bmc_of(c, host)))
                return lsc_err_set(-ENOMEM, "out of memory");
        if (!strcmp(key, "address"))
                return set_text(&b->address, value);     /* checked by finish */
        if (!strcmp(key, "user"))
                return set_text(&b->user, value);
        if (!strcmp(key, "password_file")) {
                if (value[0] != '/')
                        return lsc_err_set(-EINVAL, "[bmc %s]: invalid password_file \"%s\": want an absolute path",
                                           host, lsc_str_show(value, shown));
                return set_text(&b->password_file, value);
        }
        if (!strcmp(key, "port"))
                return set_u32(host, key, value, 1, 65535, &b->port);
        if (!strcmp(key, "timeout_ms"))
                return set_u32(host, key, value, 100, 600000, &b->timeout_ms);
        if (!strcmp(key, "retries"))
                return set_u32(host, key, value, 0, 20, &b->retries);
        return lsc_err_set(-ENOENT, "[bmc %s]: unknown key \"%s\": use address, port, user, password_file, "
                           "timeout_ms, retries", host, lsc_str_show(key, shown));
}

int fence_config_finish(struct fence_config *c)
{
        char password[LSC_IPMI_PASSWORD_MAX + 1], what[LSC_NAME_MAX + 16];
        int r;

        if (!c->confirm_ms)
                c->confirm_ms = 10000;
        for (size_t i = 0; i < c->n; i++) {
                struct fence_bmc *b = &c->bmcs[i];

                if (!b->address || !b->user || !b->password_file)
                        return lsc_err_set(-EINVAL, "[bmc %s] needs address, user and password_file", b->host);
                if ((r = lsc_ipmi_password_read(b->password_file, password)) < 0)
                        return r;
                snprintf(what, sizeof(what), "[bmc %s] ", b->host);
                r = lsc_ipmi_bmc_set(&b->bmc, what, b->address, b->port, b->user, password);
                explicit_bzero(password, sizeof(password));
                if (r < 0)
                        return r;
                b->bmc.timeout_ms = b->timeout_ms;
                b->bmc.retries = b->retries;
        }
        return 0;
}

void fence_config_free(struct fence_config *c)
{
        for (size_t i = 0; i < c->n; i++) {
                free(c->bmcs[i].address);
                free(c->bmcs[i].user);
                free(c->bmcs[i].password_file);
                explicit_bzero(&c->bmcs[i].bmc, sizeof(c->bmcs[i].bmc));
        }
        free(c->bmcs);
        memset(c, 0, sizeof(*c));
}

/* ---- the worker ---- */

static void *worker(void *arg)
{
        struct fence *f = arg;

        pthread_mutex_lock(&f->lock);
        for (;;) {
                struct slot *s = NULL;

                for (size_t i = 0; i < f->n && !s; i++)
                        if (f->slots[i].state == SLOT_QUEUED)
                                s = &f->slots[i];
                if (f->stopping)
                        break;
                if (!s) {
                        pthread_cond_wait(&f->work, &f->lock);
                        continue;
                }
                s->state = SLOT_RUNNING;
                struct lsc_ipmi_bmc bmc = s->cfg.bmc;
                pthread_mutex_unlock(&f->lock);

                int64_t t0 = lsc_now_us();
                int r = lsc_ipmi_power_off_confirmed(&bmc, f->confirm_ms);
                struct fence_result res = { .error = r, .took_us = lsc_now_us() - t0 };
                uint64_t one = 1;

                explicit_bzero(&bmc, sizeof(bmc));
                snprintf(res.host, sizeof(res.host), "%s", s->cfg.host);
                snprintf(res.detail, sizeof(res.detail), "%s", r < 0 ? lsc_err_msg(r) : "power off confirmed");
                pthread_mutex_lock(&f->lock);
                s->result = res;
                s->state = SLOT_DONE;
                s->done_us = lsc_now_us();
                if (write(f->efd, &one, sizeof(one)) < 0) {
                        /* the counter cannot overflow at one a call: nothing to do */
                }
        }
        pthread_mutex_unlock(&f->lock);
        return NULL;
}

int fence_new(const struct fence_config *cfg, struct fence **ret)
{
        struct fence *f = calloc(1, sizeof(*f));

        if (!f)
                return lsc_err_set(-ENOMEM, "out of memory");
        f->efd = -1;
        pthread_mutex_init(&f->lock, NULL);
        pthread_cond_init(&f->work, NULL);
        f->confirm_ms = cfg && cfg->confirm_ms ? cfg->confirm_ms : 10000;
        if (cfg && cfg->n) {
                if (!(f->slots = calloc(cfg->n, sizeof(*f->slots)))) {
                        fence_destroy(&f);
                        return lsc_err_set(-ENOMEM, "out of memory");
                }
                for (size_t i = 0; i < cfg->n; i++) {
                        f->slots[i].cfg = cfg->bmcs[i];
                        f->slots[i].cfg.address = f->slots[i].cfg.user = f->slots[i].cfg.password_file = NULL;
                }
                f->n = cfg->n;
        }
        f->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (f->efd < 0) {
                int e = errno;
                fence_destroy(&f);
                return lsc_err_set(-e, "eventfd: %s", strerror(e));
        }
        if (f->n) {
                int e = pthread_create(&f->thread, NULL, worker, f);
                if (e) {
                        fence_destroy(&f);
                        return lsc_err_set(-e, "cannot start the fence worker: %s", strerror(e));
                }
                f->started = true;
        }
        *ret = f;
        return 0;
}

void fence_destroy(struct fence **fp)
{
        struct fence *f = fp ? *fp : NULL;

        if (!f)
                return;
        if (f->started) {
                pthread_mutex_lock(&f->lock);
                f->stopping = true;
                pthread_cond_broadcast(&f->work);
                pthread_mutex_unlock(&f->lock);
                pthread_join(f->thread, NULL);
        }
        if (f->efd >= 0)
                close(f->efd);
        for (size_t i = 0; i < f->n; i++)
                explicit_bzero(&f->slots[i].cfg.bmc, sizeof(f->slots[i].cfg.bmc));
        free(f->slots);
        pthread_cond_destroy(&f->work);
        pthread_mutex_destroy(&f->lock);
        free(f);
        *fp = NULL;
}

int fence_fd(const struct fence *f)
{
        return f->efd;
}

static struct slot *slot_of(const struct fence *f, const char *host)
{
        for (size_t i = 0; i < f->n; i++)
                if (!strcmp(f->slots[i].cfg.host, host))
                        return &f->slots[i];
        return NULL;
}

bool fence_knows(const struct fence *f, const char *host)
{
        return slot_of(f, host) != NULL;
}

int fence_request(struct fence *f, const char *host, int64_t now_us)
{
        struct slot *s = slot_of(f, host);

        if (!s)
                return -ENOENT;
        pthread_mutex_lock(&f->lock);
        if ((s->state == SLOT_IDLE && (!s->done_us || now_us - s->done_us >= FENCE_RETRY_US))) {
                s->state = SLOT_QUEUED;
                pthread_cond_signal(&f->work);
        }
        pthread_mutex_unlock(&f->lock);
        return 0;
}

size_t fence_results(struct fence *f, struct fence_result *out, size_t max)
{
        uint64_t v;
        size_t n = 0;

        if (read(f->efd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
                /* nothing to read: the slots below say what is done */
        }
        pthread_mutex_lock(&f->lock);
        for (size_t i = 0; i < f->n && n < max; i++) {
                if (f->slots[i].state != SLOT_DONE)
                        continue;
                out[n++] = f->slots[i].result;
                f->slots[i].state = SLOT_IDLE;
        }
        pthread_mutex_unlock(&f->lock);
        return n;
}
