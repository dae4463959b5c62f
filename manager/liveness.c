/* Heartbeats and leases, in memory: a beat costs a lookup and a copy, never a write.
 * Liveness moves up -> suspect after three missed beats and -> lost only after the
 * host's lease must have run out (last beat + lease_ttl + grace). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "liveness.h"
#include "log.h"
#include "util.h"

const char *const liveness_state_names[LIVENESS_STATE_COUNT] = {
        [LIVENESS_UP] = "up",
        [LIVENESS_SUSPECT] = "suspect",
        [LIVENESS_LOST] = "lost",
};

void liveness_init(struct liveness *lv, int64_t lease_ttl_us, int64_t grace_us)
{
        memset(lv, 0, sizeof(*lv));
        lv->beat_us = 1000000;
        lv->lease_ttl_us = lease_ttl_us;
        lv->grace_us = grace_us;
}

void liveness_fini(struct liveness *lv)
{
        for (size_t i = 0; i < lv->n_hosts; i++) {
                free(lv->hosts[i]->instances);
                free(lv->hosts[i]);
        }
        free(lv->hosts);
        memset(lv, 0, sizeof(*lv));
}

static const char *host_name(const void *elem)
{
        return (*(struct liveness_host *const *)elem)->name;
}

/* Index of name, or of where it would go (*found false). */
static size_t search(const struct liveness *lv, const char *name, bool *found)
{
        return lsc_sorted_find(lv->hosts, lv->n_hosts, sizeof(*lv->hosts), name, host_name, found);
}

struct liveness_host *liveness_find(const struct liveness *lv, const char *name)
{
        bool found;
        size_t i = search(lv, name, &found);
        return found ? lv->hosts[i] : NULL;
}

struct liveness_host *liveness_get(struct liveness *lv, const char *name)
{
        bool found;
        size_t i = search(lv, name, &found);
        struct liveness_host *h;

        if (found)
                return lv->hosts[i];
        if (lv->n_hosts == lv->cap) {
                size_t cap = lv->cap ? lv->cap * 2 : 64;
                struct liveness_host **n = realloc(lv->hosts, cap * sizeof(*n));
                if (!n)
                        return NULL;
                lv->hosts = n;
                lv->cap = cap;
        }
        h = calloc(1, sizeof(*h));
        if (!h)
                return NULL;
        snprintf(h->name, sizeof(h->name), "%s", name);
        h->state = LIVENESS_LOST;        /* until it beats */
        h->view = -1;
        memmove(lv->hosts + i + 1, lv->hosts + i, (lv->n_hosts - i) * sizeof(*lv->hosts));
        lv->hosts[i] = h;
        lv->n_hosts++;
        return h;
}

int liveness_beat(struct liveness_host *h, const Lsc__Heartbeat *hb, int64_t now_us)
{
        struct liveness_instance *inst = NULL;
        size_t n = hb->n_instances;

        if (n > 0) {
                inst = calloc(n, sizeof(*inst));
                if (!inst)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                const Lsc__Instance *in = hb->instances[i];
                snprintf(inst[i].uuid, sizeof(inst[i].uuid), "%s", in->uuid ? in->uuid : "");
                snprintf(inst[i].name, sizeof(inst[i].name), "%s", in->name ? in->name : "");
                snprintf(inst[i].state, sizeof(inst[i].state), "%s", in->state ? in->state : "");
                inst[i].generation = in->generation;
        }
        free(h->instances);
        h->instances = inst;
        h->n_instances = n;
        h->healthy = hb->has_healthy ? hb->healthy : true;
        snprintf(h->health, sizeof(h->health), "%s", hb->health ? hb->health : "");
        if (hb->util) {
                h->cpu = hb->util->cpu;
                h->memory_used_mib = hb->util->memory_mib;
        }
        h->last_beat_us = now_us;
        if (h->state != LIVENESS_UP)
                log_info("host %s is up (epoch %llu)", h->name, (unsigned long long)h->epoch);
        h->state = LIVENESS_UP;
        return 0;
}

void liveness_beat_load(struct liveness_host *h, const Lsc__Heartbeat *hb, struct load *ld, int64_t wall_s)
{
        if (hb->util && hb->util->has_cpu && h->vcpus)
                load_hist_sample(&h->load, hb->util->cpu * h->vcpus, (double)hb->util->memory_mib, wall_s);
        /* Break-before-make keeps one live instance per identity, so one host speaks
         * for it; a stopped or crashed one uses nothing worth planning with. */
        for (size_t i = 0; i < hb->n_instances; i++) {
                const Lsc__Instance *in = hb->instances[i];

                if (!in->has_cpu || !in->state || strcmp(in->state, "running") != 0)
                        continue;
                if (load_identity_sample(ld, in->uuid, in->cpu, (double)in->memory_mib, wall_s) == -ENOMEM) {
                        log_warn("host %s: load of %s not recorded: out of memory", h->name, in->uuid);
                        return;
                }
        }
}

void liveness_tick(struct liveness *lv, int64_t now_us)
{
        for (size_t i = 0; i < lv->n_hosts; i++) {
                struct liveness_host *h = lv->hosts[i];
                int64_t quiet = now_us - h->last_beat_us;
                enum liveness_state s = h->state;

                if (h->last_beat_us == 0 || quiet > lv->lease_ttl_us + lv->grace_us)
                        s = LIVENESS_LOST;
                else if (quiet > 3 * lv->beat_us)
                        s = LIVENESS_SUSPECT;
                if (s != h->state && h->last_beat_us != 0)
                        log_warn("host %s is %s: no heartbeat for %lld ms", h->name,
                                 liveness_state_names[s], (long long)(quiet / 1000));
                h->state = s;
        }
}
