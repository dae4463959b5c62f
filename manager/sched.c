/* Placement over an in-memory view: the host table with its indexes (by id, by kind,
 * by label, by group), the hosts' load forecasts and calendars of deaths, and the
 * decision itself. A decision reads the view and the caller's random state only; it
 * never allocates, logs or does I/O. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "sched.h"

/* Sampling budget per decision: enough that a universe where a tenth of the hosts fit
 * rarely falls back to a scan, small enough that a scan of a small universe is cheaper
 * than sampling it. */
#define SCHED_TRIES(k) (16u * (k) + 16u)
#define SCHED_EMPTY UINT32_MAX

const char *const sched_policy_names[SCHED_POLICY_COUNT] = {
        [SCHED_POLICY_ANTI_AFFINITY] = "anti-affinity",
        [SCHED_POLICY_AFFINITY] = "affinity",
};

const char *const sched_reason_names[SCHED_R_COUNT] = {
        [SCHED_R_NOT_TARGET] = "not-target",
        [SCHED_R_EXCLUDED] = "excluded",
        [SCHED_R_KIND] = "kind",
        [SCHED_R_NOT_UP] = "not-up",
        [SCHED_R_NOT_ACTIVE] = "not-active",
        [SCHED_R_UNHEALTHY] = "unhealthy",
        [SCHED_R_LABEL] = "label",
        [SCHED_R_AFFINITY] = "affinity",
        [SCHED_R_ANTI_AFFINITY] = "anti-affinity",
        [SCHED_R_VCPUS] = "vcpus",
        [SCHED_R_MEMORY] = "memory",
        [SCHED_R_DISK] = "disk",
};

/* A growable array of host indexes. */
struct list {
        uint32_t *v;
        uint32_t n, cap;
};

/* Open addressing, u64 key → u32 value; SCHED_EMPTY marks a free slot. */
struct map {
        uint64_t *keys;
        uint32_t *vals;
        uint32_t cap, n;                /* cap: 0 or a power of two */
};

struct label {
        char *name;                     /* "key=value" */
        struct list hosts;              /* hosts carrying it: a universe to sample from */
};

struct group {
        uint64_t id;
        uint32_t members;
        struct list hosts;              /* hosts holding at least one member */
};

struct sched_view {
        unsigned k;
        bool aware;
        unsigned samples;               /* aware decisions compare this many hosts */
        unsigned fit_pct;               /* aware: best fit under this % of physical vCPUs */
        struct sched_host *hosts;
        uint32_t nhosts, hosts_cap;
        struct sched_forecast *fc;      /* beside hosts, same index: cold for plain decisions */
        uint32_t fc_cap;
        struct map host_ids;
        struct list by_kind[LSC_KIND_COUNT];
        struct label *labels;
        uint32_t nlabels, labels_cap;
        uint32_t *label_slots;          /* open addressing over label ids, by name hash */
        uint32_t label_slots_cap;
        struct group *groups;
        uint32_t ngroups, groups_cap;
        struct map group_ids;
};

/* What one decision resolved from the request before looking at hosts. */
struct ctx {
        const struct sched_request *rq;
        const struct group *group;      /* NULL: no group, or nobody placed in it yet */
        uint32_t gslot;
        uint32_t max_per_host;
        bool affinity_bound;            /* affinity with members somewhere: only their hosts */
};

/* ---- random numbers ---- */

static uint64_t splitmix64(uint64_t *x)
{
        uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

void sched_rng_seed(struct sched_rng *rng, uint64_t seed)
{
        for (int i = 0; i < 4; i++)
                rng->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
        return (x << k) | (x >> (64 - k));
}

uint64_t sched_rng_next(struct sched_rng *rng)
{
        uint64_t *s = rng->s;
        uint64_t result = rotl(s[1] * 5, 7) * 9;
        uint64_t t = s[1] << 17;

        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return result;
}

/* Lemire's multiply-shift with rejection: no division in the common case. */
uint32_t sched_rng_below(struct sched_rng *rng, uint32_t n)
{
        uint64_t m = (uint64_t)(uint32_t)(sched_rng_next(rng) >> 32) * n;

        if ((uint32_t)m < n) {
                uint32_t threshold = -n % n;

                while ((uint32_t)m < threshold)
                        m = (uint64_t)(uint32_t)(sched_rng_next(rng) >> 32) * n;
        }
        return (uint32_t)(m >> 32);
}

/* ---- small containers ---- */

static int grow(void **p, uint32_t *cap, uint32_t need, size_t size)
{
        uint32_t c = *cap ? *cap : 4;
        void *q;

        if (need <= *cap)
                return 0;
        while (c < need) {
                if (c > UINT32_MAX / 2)
                        return -ENOMEM;
                c *= 2;
        }
        q = realloc(*p, (size_t)c * size);
        if (!q)
                return -ENOMEM;
        *p = q;
        *cap = c;
        return 0;
}

static int list_reserve(struct list *l, uint32_t more)
{
        return grow((void **)&l->v, &l->cap, l->n + more, sizeof(*l->v));
}

/* Only after list_reserve: cannot fail. */
static void list_push(struct list *l, uint32_t x)
{
        l->v[l->n++] = x;
}

static void list_remove(struct list *l, uint32_t x)
{
        for (uint32_t i = 0; i < l->n; i++)
                if (l->v[i] == x) {
                        l->v[i] = l->v[--l->n];
                        return;
                }
}

static uint64_t mix64(uint64_t x)
{
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdull;
        x ^= x >> 33;
        return x;
}

static int map_get(const struct map *m, uint64_t key)
{
        if (!m->cap)
                return -ENOENT;
        for (uint32_t i = mix64(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
                if (m->vals[i] == SCHED_EMPTY)
                        return -ENOENT;
                if (m->keys[i] == key)
                        return (int)m->vals[i];
        }
}

static void map_insert(uint64_t *keys, uint32_t *vals, uint32_t cap, uint64_t key, uint32_t val)
{
        uint32_t i = mix64(key) & (cap - 1);

        while (vals[i] != SCHED_EMPTY)
                i = (i + 1) & (cap - 1);
        keys[i] = key;
        vals[i] = val;
}

/* The key must be absent. Keeps the load at most one half so probes stay short. */
static int map_put(struct map *m, uint64_t key, uint32_t val)
{
        if ((m->n + 1) * 2 > m->cap) {
                uint32_t cap = m->cap ? m->cap * 2 : 64;
                uint64_t *keys = malloc(sizeof(*keys) * cap);
                uint32_t *vals = malloc(sizeof(*vals) * cap);

                if (!keys || !vals) {
                        free(keys);
                        free(vals);
                        return -ENOMEM;
                }
                memset(vals, 0xff, sizeof(*vals) * cap);
                for (uint32_t i = 0; i < m->cap; i++)
                        if (m->vals[i] != SCHED_EMPTY)
                                map_insert(keys, vals, cap, m->keys[i], m->vals[i]);
                free(m->keys);
                free(m->vals);
                m->keys = keys;
                m->vals = vals;
                m->cap = cap;
        }
        map_insert(m->keys, m->vals, m->cap, key, val);
        m->n++;
        return 0;
}

/* ---- the view ---- */

int sched_view_new(struct sched_view **ret)
{
        struct sched_view *v = calloc(1, sizeof(*v));

        if (!v)
                return -ENOMEM;
        v->k = SCHED_K_DEFAULT;
        v->samples = SCHED_AWARE_SAMPLES_DEFAULT;
        v->fit_pct = SCHED_AWARE_FIT_PCT_DEFAULT;
        *ret = v;
        return 0;
}

void sched_view_free(struct sched_view **vp)
{
        struct sched_view *v = *vp;

        if (!v)
                return;
        for (uint32_t i = 0; i < v->nhosts; i++) {
                free(v->hosts[i].labels);
                free(v->hosts[i].groups);
                free(v->hosts[i].name);
                free(v->fc[i].deaths);
        }
        free(v->hosts);
        free(v->fc);
        free(v->host_ids.keys);
        free(v->host_ids.vals);
        for (int k = 0; k < LSC_KIND_COUNT; k++)
                free(v->by_kind[k].v);
        for (uint32_t i = 0; i < v->nlabels; i++) {
                free(v->labels[i].name);
                free(v->labels[i].hosts.v);
        }
        free(v->labels);
        free(v->label_slots);
        for (uint32_t i = 0; i < v->ngroups; i++)
                free(v->groups[i].hosts.v);
        free(v->groups);
        free(v->group_ids.keys);
        free(v->group_ids.vals);
        free(v);
        *vp = NULL;
}

int sched_view_set_k(struct sched_view *v, unsigned k)
{
        if (k < 1 || k > SCHED_K_MAX)
                return lsc_err_set(-EINVAL, "power-of-k choices: k must be 1-%u, not %u",
                                   SCHED_K_MAX, k);
        v->k = k;
        return 0;
}

uint32_t sched_view_host_count(const struct sched_view *v)
{
        return v->nhosts;
}

struct sched_host *sched_view_host(struct sched_view *v, uint32_t host)
{
        return host < v->nhosts ? &v->hosts[host] : NULL;
}

const struct sched_host *sched_view_host_const(const struct sched_view *v, uint32_t host)
{
        return host < v->nhosts ? &v->hosts[host] : NULL;
}

int sched_host_add(struct sched_view *v, const struct sched_host_spec *spec, uint32_t *ret_host)
{
        struct list *kind;
        struct sched_host *h;
        char *name;
        int r;

        if ((unsigned)spec->kind >= LSC_KIND_COUNT || !spec->name)
                return lsc_err_set(-EINVAL, "host needs a name and a kind");
        if (v->nhosts == INT32_MAX)
                return -ENOMEM;
        if (map_get(&v->host_ids, spec->id) >= 0)
                return lsc_err_set(-EEXIST, "host id %llu is already in the view",
                                   (unsigned long long)spec->id);
        kind = &v->by_kind[spec->kind];
        r = grow((void **)&v->hosts, &v->hosts_cap, v->nhosts + 1, sizeof(*v->hosts));
        if (r == 0)
                r = grow((void **)&v->fc, &v->fc_cap, v->nhosts + 1, sizeof(*v->fc));
        if (r == 0)
                r = list_reserve(kind, 1);
        if (r < 0)
                return r;
        name = strdup(spec->name);
        if (!name)
                return -ENOMEM;
        r = map_put(&v->host_ids, spec->id, v->nhosts);
        if (r < 0) {
                free(name);
                return r;
        }
        h = &v->hosts[v->nhosts];
        *h = (struct sched_host){
                .kind = spec->kind,
                .up = spec->up,
                .active = spec->active,
                .healthy = spec->healthy,
                .alloc = spec->alloc,
                .id = spec->id,
                .name = name,
        };
        v->fc[v->nhosts] = (struct sched_forecast){ 0 };
        list_push(kind, v->nhosts);
        *ret_host = v->nhosts++;
        return 0;
}

int sched_host_find(const struct sched_view *v, uint64_t id)
{
        return map_get(&v->host_ids, id);
}

/* Linear: for the CLI's --to NAME, not for decisions. */
int sched_host_find_name(const struct sched_view *v, const char *name)
{
        for (uint32_t i = 0; i < v->nhosts; i++)
                if (strcmp(v->hosts[i].name, name) == 0)
                        return (int)i;
        return -ENOENT;
}

static int cmp_u32(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

        return (x > y) - (x < y);
}

int sched_host_set_labels(struct sched_view *v, uint32_t host, const uint32_t *ids, size_t n)
{
        struct sched_host *h;
        uint32_t *sorted = NULL;
        size_t m = 0;

        if (host >= v->nhosts)
                return lsc_err_set(-EINVAL, "no host %u in the view", host);
        h = &v->hosts[host];
        for (size_t i = 0; i < n; i++)
                if (ids[i] >= v->nlabels)
                        return lsc_err_set(-EINVAL, "unknown label id %u", ids[i]);
        if (n) {
                sorted = malloc(n * sizeof(*sorted));
                if (!sorted)
                        return -ENOMEM;
                memcpy(sorted, ids, n * sizeof(*sorted));
                qsort(sorted, n, sizeof(*sorted), cmp_u32);
                for (size_t i = 0; i < n; i++)
                        if (m == 0 || sorted[m - 1] != sorted[i])
                                sorted[m++] = sorted[i];
        }
        /* Reserve every posting list first so that nothing below can fail half-way. */
        for (size_t i = 0; i < m; i++)
                if (list_reserve(&v->labels[sorted[i]].hosts, 1) < 0) {
                        free(sorted);
                        return -ENOMEM;
                }
        for (uint32_t i = 0; i < h->nlabels; i++)
                list_remove(&v->labels[h->labels[i]].hosts, host);
        for (size_t i = 0; i < m; i++)
                list_push(&v->labels[sorted[i]].hosts, host);
        free(h->labels);
        h->labels = sorted;
        h->nlabels = (uint32_t)m;
        return 0;
}

/* ---- labels ---- */

/* FNV-1a: labels are short, and the hash of "key" "=" "value" read in pieces equals
 * the hash of the stored "key=value", so lookups need not build the string. */
#define FNV_BASIS 0xcbf29ce484222325ull
static uint64_t fnv(uint64_t x, const char *s)
{
        for (; *s; s++)
                x = (x ^ (unsigned char)*s) * 0x100000001b3ull;
        return x;
}

static uint64_t hash_label(const char *key, const char *value)
{
        return fnv(fnv(fnv(FNV_BASIS, key), "="), value);
}

static bool label_is(const char *name, const char *key, const char *value)
{
        size_t kl = strlen(key);

        return strncmp(name, key, kl) == 0 && name[kl] == '=' && strcmp(name + kl + 1, value) == 0;
}

/* The slot holding key=value, or the free slot where it would go. */
static uint32_t label_slot(const struct sched_view *v, const char *key, const char *value)
{
        uint32_t mask = v->label_slots_cap - 1;
        uint32_t i = hash_label(key, value) & mask;

        while (v->label_slots[i] != SCHED_EMPTY && !label_is(v->labels[v->label_slots[i]].name, key, value))
                i = (i + 1) & mask;
        return i;
}

int sched_label_find(const struct sched_view *v, const char *key, const char *value)
{
        uint32_t i;

        if (!v->label_slots_cap)
                return -ENOENT;
        i = label_slot(v, key, value);
        return v->label_slots[i] == SCHED_EMPTY ? -ENOENT : (int)v->label_slots[i];
}

static int label_slots_grow(struct sched_view *v)
{
        uint32_t cap = v->label_slots_cap ? v->label_slots_cap * 2 : 64;
        uint32_t *slots = malloc(sizeof(*slots) * cap);

        if (!slots)
                return -ENOMEM;
        memset(slots, 0xff, sizeof(*slots) * cap);
        for (uint32_t id = 0; id < v->nlabels; id++) {
                uint32_t i = fnv(FNV_BASIS, v->labels[id].name) & (cap - 1);

                while (slots[i] != SCHED_EMPTY)
                        i = (i + 1) & (cap - 1);
                slots[i] = id;
        }
        free(v->label_slots);
        v->label_slots = slots;
        v->label_slots_cap = cap;
        return 0;
}

int sched_label_intern(struct sched_view *v, const char *key, const char *value, uint32_t *ret_id)
{
        uint32_t slot;
        char *name;
        int r;

        r = lsc_validate_label_part("label key", key);
        if (r == 0)
                r = lsc_validate_label_part("label value", value);
        if (r < 0)
                return r;
        r = sched_label_find(v, key, value);
        if (r >= 0) {
                *ret_id = (uint32_t)r;
                return 0;
        }
        if ((v->nlabels + 1) * 2 > v->label_slots_cap && label_slots_grow(v) < 0)
                return -ENOMEM;
        r = grow((void **)&v->labels, &v->labels_cap, v->nlabels + 1, sizeof(*v->labels));
        if (r < 0)
                return r;
        size_t n = strlen(key) + strlen(value) + 2;
        name = malloc(n);
        if (!name)
                return -ENOMEM;
        snprintf(name, n, "%s=%s", key, value);
        slot = label_slot(v, key, value);
        v->labels[v->nlabels] = (struct label){ .name = name };
        v->label_slots[slot] = v->nlabels;
        *ret_id = v->nlabels++;
        return 0;
}

const char *sched_label_name(const struct sched_view *v, uint32_t id)
{
        return id < v->nlabels ? v->labels[id].name : NULL;
}

/* ---- groups ---- */

static const struct group *group_get(const struct sched_view *v, uint64_t id, uint32_t *ret_slot)
{
        int r = map_get(&v->group_ids, id);

        if (r < 0)
                return NULL;
        *ret_slot = (uint32_t)r;
        return &v->groups[r];
}

static int group_ensure(struct sched_view *v, uint64_t id, uint32_t *ret_slot)
{
        int r = map_get(&v->group_ids, id);

        if (r >= 0) {
                *ret_slot = (uint32_t)r;
                return 0;
        }
        r = grow((void **)&v->groups, &v->groups_cap, v->ngroups + 1, sizeof(*v->groups));
        if (r == 0)
                r = map_put(&v->group_ids, id, v->ngroups);
        if (r < 0)
                return r;
        v->groups[v->ngroups] = (struct group){ .id = id };
        *ret_slot = v->ngroups++;
        return 0;
}

/* Index of the host's entry for slot, or of where it would be inserted. */
static uint32_t hgroup_pos(const struct sched_host *h, uint32_t slot)
{
        uint32_t lo = 0, hi = h->ngroups;

        while (lo < hi) {
                uint32_t mid = (lo + hi) / 2;

                if (h->groups[mid].group < slot)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static uint32_t hgroup_count(const struct sched_host *h, uint32_t slot)
{
        uint32_t i;

        if (!h->ngroups)
                return 0;
        i = hgroup_pos(h, slot);
        return i < h->ngroups && h->groups[i].group == slot ? h->groups[i].count : 0;
}

uint32_t sched_group_count(const struct sched_view *v, uint64_t group, uint32_t host)
{
        uint32_t slot;

        if (host >= v->nhosts || !group_get(v, group, &slot))
                return 0;
        return hgroup_count(&v->hosts[host], slot);
}

/* ---- the filter ---- */

static int request_check(const struct sched_view *v, const struct sched_request *rq)
{
        if ((unsigned)rq->kind >= LSC_KIND_COUNT)
                return lsc_err_set(-EINVAL, "request has no valid kind");
        if (rq->group && (unsigned)rq->policy >= SCHED_POLICY_COUNT)
                return lsc_err_set(-EINVAL, "request has no valid group policy");
        if (rq->nlabels > SCHED_LABELS_MAX)
                return lsc_err_set(-EINVAL, "a request may require at most %u labels", SCHED_LABELS_MAX);
        if (rq->nlabels && !rq->labels)
                return lsc_err_set(-EINVAL, "request labels missing");
        for (size_t i = 0; i < rq->nlabels; i++)
                if (rq->labels[i] >= v->nlabels)
                        return lsc_err_set(-EINVAL, "unknown label id %u", rq->labels[i]);
        if (rq->has_to && rq->to_host >= v->nhosts)
                return lsc_err_set(-EINVAL, "no host %u in the view", rq->to_host);
        if (rq->has_exclude && rq->exclude_host >= v->nhosts)
                return lsc_err_set(-EINVAL, "no host %u in the view", rq->exclude_host);
        return 0;
}

static int ctx_init(const struct sched_view *v, const struct sched_request *rq, struct ctx *c)
{
        int r = request_check(v, rq);

        if (r < 0)
                return r;
        *c = (struct ctx){ .rq = rq };
        if (rq->group) {
                c->group = group_get(v, rq->group, &c->gslot);
                c->max_per_host = rq->max_per_host ? rq->max_per_host : 1;
                c->affinity_bound = rq->policy == SCHED_POLICY_AFFINITY && c->group && c->group->hosts.n;
        }
        return 0;
}

static bool has_label(const struct sched_host *h, uint32_t id)
{
        /* A handful of labels per host: a linear pass beats a binary search. */
        for (uint32_t i = 0; i < h->nlabels && h->labels[i] <= id; i++)
                if (h->labels[i] == id)
                        return true;
        return false;
}

static uint64_t free_of(uint64_t alloc, uint64_t used)
{
        return alloc > used ? alloc - used : 0;     /* a lowered ratio can leave used > alloc */
}

#define FAIL(reason) do {                               \
                mask |= 1u << (reason);                 \
                if (first)                              \
                        return mask;                    \
        } while (0)

/* The checks, in the order of enum sched_reason. first: stop at the first failure
 * (decisions and summaries); otherwise collect them all (explanations). *ret_label is
 * the index in rq->labels of the first missing label. */
static uint32_t check(const struct sched_view *v, const struct ctx *c, uint32_t host, bool first,
                      uint32_t *ret_label)
{
        const struct sched_request *rq = c->rq;
        const struct sched_host *h = &v->hosts[host];
        uint32_t mask = 0;

        if (rq->has_to && host != rq->to_host)
                FAIL(SCHED_R_NOT_TARGET);
        if (rq->has_exclude && host == rq->exclude_host)
                FAIL(SCHED_R_EXCLUDED);
        if (h->kind != rq->kind)
                FAIL(SCHED_R_KIND);
        if (!h->up)
                FAIL(SCHED_R_NOT_UP);
        if (!h->active)
                FAIL(SCHED_R_NOT_ACTIVE);
        if (!h->healthy)
                FAIL(SCHED_R_UNHEALTHY);
        for (size_t i = 0; i < rq->nlabels; i++)
                if (!has_label(h, rq->labels[i])) {
                        if (ret_label)
                                *ret_label = (uint32_t)i;
                        FAIL(SCHED_R_LABEL);
                        break;
                }
        if (c->group) {
                uint32_t n = hgroup_count(h, c->gslot);

                if (c->affinity_bound && n == 0)
                        FAIL(SCHED_R_AFFINITY);
                if (rq->policy == SCHED_POLICY_ANTI_AFFINITY && n >= c->max_per_host)
                        FAIL(SCHED_R_ANTI_AFFINITY);
        }
        /* a machine holds one identity whatever its size: a bound one takes all of it */
        if (rq->need.vcpus > free_of(h->alloc.vcpus, h->used.vcpus) || (h->kind == LSC_KIND_METAL && h->used.vcpus))
                FAIL(SCHED_R_VCPUS);
        if (rq->need.memory_mib > free_of(h->alloc.memory_mib, h->used.memory_mib))
                FAIL(SCHED_R_MEMORY);
        if (rq->need.disk_gib > free_of(h->alloc.disk_gib, h->used.disk_gib))
                FAIL(SCHED_R_DISK);
        return mask;
}

#undef FAIL

static inline bool fits(const struct sched_view *v, const struct ctx *c, uint32_t host)
{
        return check(v, c, host, true, NULL) == 0;
}

/* Free share left after placing the request, of the scarcest resource: a host is as
 * roomy as its tightest dimension, whatever its size. */
static double score(const struct sched_host *h, const struct sched_res *need)
{
        const uint64_t alloc[3] = { h->alloc.vcpus, h->alloc.memory_mib, h->alloc.disk_gib };
        const uint64_t used[3] = { h->used.vcpus, h->used.memory_mib, h->used.disk_gib };
        const uint64_t want[3] = { need->vcpus, need->memory_mib, need->disk_gib };
        double s = 1.0;

        for (int i = 0; i < 3; i++) {
                if (!alloc[i])
                        continue;
                double f = (double)(free_of(alloc[i], used[i]) - want[i]) / (double)alloc[i];
                if (f < s)
                        s = f;
        }
        return s;
}

/* The smallest index list that holds every feasible host: the hosts of the kind, of
 * the rarest required label, or of an affinity group that already has members. */
static const uint32_t *universe(const struct sched_view *v, const struct ctx *c, uint32_t *ret_n)
{
        const struct sched_request *rq = c->rq;
        const struct list *best = &v->by_kind[rq->kind];

        if (rq->has_to) {
                *ret_n = 1;
                return &rq->to_host;
        }
        for (size_t i = 0; i < rq->nlabels; i++)
                if (v->labels[rq->labels[i]].hosts.n < best->n)
                        best = &v->labels[rq->labels[i]].hosts;
        if (c->affinity_bound && c->group->hosts.n < best->n)
                best = &c->group->hosts;
        *ret_n = best->n;
        return best->v;
}

/* Counts every host once under the first check it fails; only on the no-fit path. */
static void reasons_fill(const struct sched_view *v, const struct ctx *c, struct sched_reasons *r)
{
        const struct sched_request *rq = c->rq;
        uint32_t from = 0, to = v->nhosts;

        memset(r, 0, sizeof(*r));
        if (rq->has_to) {
                from = rq->to_host;
                to = from + 1;
                r->count[SCHED_R_NOT_TARGET] = v->nhosts - 1;
        }
        for (uint32_t i = from; i < to; i++) {
                uint32_t label = 0;
                uint32_t mask = check(v, c, i, true, &label);

                if (!mask)
                        continue;       /* fits now (cannot happen on the no-fit path) */
                int reason = __builtin_ctz(mask);
                r->count[reason]++;
                if (reason == SCHED_R_LABEL)
                        r->label[label]++;
        }
        r->hosts = to - from;
}

/* Up to want candidates, each uniform over the feasible hosts and drawn with
 * replacement; 0 when no host fits. distinct (aware decisions): a scan keeps one
 * reservoir of want distinct hosts instead, one draw per feasible host rather than
 * want: the same uniform choice of hosts for a fraction of the draws. */
static uint32_t collect(const struct sched_view *v, const struct ctx *c, struct sched_rng *rng,
                        uint32_t want, bool distinct, uint32_t *cand)
{
        uint32_t n, nc = 0, tries = SCHED_TRIES(want);
        const uint32_t *hosts = universe(v, c, &n);

        /* Sampling: uniform over the universe, so the feasible ones found are uniform
         * over the feasible hosts. */
        if (n > tries)
                for (uint32_t t = 0; t < tries && nc < want; t++) {
                        uint32_t h = hosts[sched_rng_below(rng, n)];

                        if (fits(v, c, h))
                                cand[nc++] = h;
                }
        /* Too few feasible hosts to find by chance: scan. Aware decisions keep one
         * reservoir of `want` distinct hosts (one draw per feasible host). */
        if (nc < want && distinct) {
                uint32_t seen = 0;

                for (uint32_t i = 0; i < n; i++) {
                        uint32_t j;

                        if (!fits(v, c, hosts[i]))
                                continue;
                        j = seen < want ? seen : sched_rng_below(rng, seen + 1);
                        if (j < want)
                                cand[j] = hosts[i];
                        seen++;
                }
                nc = seen < want ? seen : want;
        } else if (nc < want) {
                /* Plain decisions keep `want` independent one-host reservoirs, so each
                 * candidate is uniform over the feasible hosts and drawn with
                 * replacement, exactly as sampling draws them. Costs `want` draws per
                 * feasible host, and scans happen when few hosts are feasible. */
                uint32_t seen = 0;

                for (uint32_t i = 0; i < n; i++) {
                        if (!fits(v, c, hosts[i]))
                                continue;
                        seen++;
                        for (uint32_t j = 0; j < want; j++)
                                if (seen == 1 || sched_rng_below(rng, seen) == 0)
                                        cand[j] = hosts[i];
                }
                nc = seen ? want : 0;
        }
        return nc;
}

/* ---- die-off awareness ---- */

/* How much the life-long mean counts beside the peak: the peak decides whether a host
 * runs hot, the mean how long it stays near it. */
#define SCHED_MEAN_WEIGHT 0.2

static uint32_t slot_of(int64_t t)
{
        int64_t h = t / SCHED_SLOT_S - (t % SCHED_SLOT_S < 0);

        return (uint32_t)(((h % (int64_t)SCHED_SLOTS) + SCHED_SLOTS) % SCHED_SLOTS);
}

uint32_t sched_request_load(const struct sched_request *rq, uint32_t slot)
{
        uint64_t d;

        if (rq->load_profile_m)
                return rq->load_profile_m[slot % SCHED_SLOTS];
        if (rq->load_m)
                return rq->load_m;
        d = rq->need.vcpus * 10u * SCHED_LOAD_DEFAULT_PCT;
        return d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
}

/* What a death takes off its host's forecast: the least the binding is expected to
 * use at any hour. Never more, so a calendar cannot make a host look cooler than it
 * will be. */
static uint32_t request_min(const struct sched_request *rq)
{
        uint32_t m = UINT32_MAX;

        for (uint32_t i = 0; i < SCHED_SLOTS; i++)
                if (sched_request_load(rq, i) < m)
                        m = sched_request_load(rq, i);
        return m;
}

/* The host's projected load hour by hour over [now, min(end, now + 24 h)): forecast,
 * plus add[slot] (the request's load; NULL: none), less the deaths due by each hour, where
 * deaths due by freed_by count as gone from the start. A day is enough: the
 * forecast repeats daily and deaths only take load away, so the first day holds the
 * peak of any longer life. Returns the peak; *ret_mean gets the mean. */
static int64_t project(const struct sched_forecast *f, int64_t now, int64_t end, int64_t freed_by,
                       const uint32_t *add, int64_t *ret_mean)
{
        int64_t freed = 0, peak = 0, sum = 0;
        uint32_t d = 0, n = 0, slot = slot_of(now);

        for (uint32_t i = 0; i < SCHED_SLOTS; i++, slot = slot + 1 == SCHED_SLOTS ? 0 : slot + 1) {
                int64_t t = now + (int64_t)i * SCHED_SLOT_S;
                int64_t by = t > freed_by ? t : freed_by;
                int64_t x;

                if (i && t >= end)
                        break;
                while (d < f->ndeaths && f->deaths[d].at <= by)
                        freed += f->deaths[d++].load_m;
                x = (int64_t)f->profile_m[slot] - freed + (add ? add[slot] : 0);
                if (x < 0)
                        x = 0;
                if (x > peak)
                        peak = x;
                sum += x;
                n++;
        }
        *ret_mean = sum / n;
        return peak;
}

static uint64_t phys_of(const struct sched_view *v, uint32_t host)
{
        uint64_t cap = v->fc[host].phys_m ? v->fc[host].phys_m : v->hosts[host].alloc.vcpus * 1000u;

        return cap ? cap : 1;
}

struct aware_pick {
        double peak;                    /* projected peak with the request, share of physical */
        double score;                   /* peak and mean over the life: lower is cooler */
        double free;                    /* reservation left, as the unaware choice scores it */
        bool fits;                      /* peak at most the fit target */
};

/* add: the request's load by slot, worked out once per decision. */
static struct aware_pick aware_pick(const struct sched_view *v, const struct sched_request *rq,
                                    const uint32_t *add, uint32_t host)
{
        int64_t end = rq->expires_at > rq->now ? rq->expires_at : INT64_MAX;
        int64_t freed_by = rq->rebirth ? rq->now + SCHED_SOON_S : rq->now;
        int64_t mean, peak = project(&v->fc[host], rq->now, end, freed_by, add, &mean);
        double phys = (double)phys_of(v, host);
        struct aware_pick p = {
                .peak = (double)peak / phys,
                .score = ((double)peak + SCHED_MEAN_WEIGHT * (double)mean) / phys,
                .free = score(&v->hosts[host], &rq->need),
        };

        p.fits = rq->rebirth && rq->load_known && p.peak * 100 <= v->fit_pct;
        return p;
}

/* Among hosts that stay under the fit target over the request's life, the fullest
 * (best fit): the coolest-first rule spreads headroom thin, until a big busy server
 * finds no host with room for its peak. Above the target, the coolest. Ties (empty
 * hosts) go to the freest reservation. */
static bool aware_better(const struct aware_pick *p, const struct aware_pick *b)
{
        if (p->fits != b->fits)
                return p->fits;
        if (p->fits && p->peak != b->peak)
                return p->peak > b->peak;
        if (!p->fits && p->score != b->score)
                return p->score < b->score;
        return p->free > b->free;
}

int sched_view_set_aware(struct sched_view *v, bool on, unsigned samples, unsigned fit_pct)
{
        if (samples < 1 || samples > SCHED_AWARE_SAMPLES_MAX)
                return lsc_err_set(-EINVAL, "aware placement: samples must be 1-%u, not %u",
                                   SCHED_AWARE_SAMPLES_MAX, samples);
        if (fit_pct > 1000)
                return lsc_err_set(-EINVAL, "aware placement: fit target %u%% is not sane", fit_pct);
        v->aware = on;
        v->samples = samples;
        v->fit_pct = fit_pct;
        return 0;
}

bool sched_view_aware(const struct sched_view *v)
{
        return v->aware;
}

int sched_host_set_load(struct sched_view *v, uint32_t host, uint32_t phys_vcpus,
                        const uint32_t *profile_m)
{
        if (host >= v->nhosts)
                return lsc_err_set(-EINVAL, "no host %u in the view", host);
        if (phys_vcpus > UINT32_MAX / 1000u)
                return lsc_err_set(-EINVAL, "host %s: %u physical vCPUs is not sane",
                                   v->hosts[host].name, phys_vcpus);
        v->fc[host].phys_m = phys_vcpus * 1000u;
        if (profile_m)
                memcpy(v->fc[host].profile_m, profile_m, sizeof(v->fc[host].profile_m));
        return 0;
}

const struct sched_forecast *sched_host_forecast(const struct sched_view *v, uint32_t host)
{
        return host < v->nhosts ? &v->fc[host] : NULL;
}

int64_t sched_host_forecast_peak(const struct sched_view *v, uint32_t host, int64_t now)
{
        int64_t mean;

        if (host >= v->nhosts)
                return lsc_err_set(-EINVAL, "no host %u in the view", host);
        return project(&v->fc[host], now, INT64_MAX, now, NULL, &mean);
}

int sched_place(const struct sched_view *v, const struct sched_request *rq, struct sched_rng *rng,
                uint32_t *ret_host, struct sched_reasons *ret_reasons)
{
        uint32_t cand[SCHED_AWARE_SAMPLES_MAX > SCHED_K_MAX ? SCHED_AWARE_SAMPLES_MAX : SCHED_K_MAX];
        uint32_t nc, best;
        struct ctx c;
        int r;

        r = ctx_init(v, rq, &c);
        if (r < 0)
                return r;
        nc = collect(v, &c, rng, v->aware ? v->samples : v->k, v->aware, cand);
        if (nc == 0) {
                if (ret_reasons)
                        reasons_fill(v, &c, ret_reasons);
                return -ENOSPC;
        }
        best = cand[0];
        if (!v->aware) {
                double best_score = score(&v->hosts[best], &rq->need);

                for (uint32_t i = 1; i < nc; i++) {
                        double s = score(&v->hosts[cand[i]], &rq->need);

                        if (s > best_score) {
                                best = cand[i];
                                best_score = s;
                        }
                }
        } else {
                /* Best fit under the target, else the coolest: see aware_better. */
                uint32_t add[SCHED_SLOTS];

                for (uint32_t i = 0; i < SCHED_SLOTS; i++)
                        add[i] = sched_request_load(rq, i);
                struct aware_pick b = aware_pick(v, rq, add, best);

                for (uint32_t i = 1; i < nc; i++) {
                        struct aware_pick p = aware_pick(v, rq, add, cand[i]);

                        if (aware_better(&p, &b)) {
                                best = cand[i];
                                b = p;
                        }
                }
        }
        *ret_host = best;
        return 0;
}

int sched_host_check(const struct sched_view *v, const struct sched_request *rq, uint32_t host)
{
        struct ctx c;
        int r = ctx_init(v, rq, &c);

        if (r < 0)
                return r;
        if (host >= v->nhosts)
                return lsc_err_set(-EINVAL, "no host %u in the view", host);
        return (int)check(v, &c, host, false, NULL);
}

int sched_feasible_list(const struct sched_view *v, const struct sched_request *rq,
                        uint32_t *ret_hosts, size_t cap)
{
        struct ctx c;
        uint32_t n = 0;
        int r = ctx_init(v, rq, &c);

        if (r < 0)
                return r;
        for (uint32_t i = 0; i < v->nhosts; i++)
                if (fits(v, &c, i)) {
                        if (n < cap)
                                ret_hosts[n] = i;
                        n++;
                }
        return (int)n;
}

/* ---- keeping the view current ---- */

/* The forecast follows the bindings: the request's expected load by hour, and its
 * death when it has one. Saturating: callers refresh forecasts from measured history,
 * so a release may take away more than is left. */
static void forecast_add(struct sched_forecast *f, const struct sched_request *rq)
{
        for (uint32_t i = 0; i < SCHED_SLOTS; i++) {
                uint64_t x = (uint64_t)f->profile_m[i] + sched_request_load(rq, i);

                f->profile_m[i] = x > UINT32_MAX ? UINT32_MAX : (uint32_t)x;
        }
        if (rq->expires_at) {
                uint32_t lo = 0, hi = f->ndeaths;

                while (lo < hi) {       /* after equal times: stable */
                        uint32_t mid = (lo + hi) / 2;

                        if (f->deaths[mid].at <= rq->expires_at)
                                lo = mid + 1;
                        else
                                hi = mid;
                }
                memmove(&f->deaths[lo + 1], &f->deaths[lo], (f->ndeaths - lo) * sizeof(*f->deaths));
                f->deaths[lo] = (struct sched_death){
                        .at = rq->expires_at,
                        .vcpus = rq->need.vcpus > UINT32_MAX ? UINT32_MAX : (uint32_t)rq->need.vcpus,
                        .load_m = request_min(rq),
                };
                f->ndeaths++;
        }
}

static void forecast_remove(struct sched_forecast *f, const struct sched_request *rq)
{
        for (uint32_t i = 0; i < SCHED_SLOTS; i++) {
                uint32_t x = sched_request_load(rq, i);

                f->profile_m[i] = f->profile_m[i] > x ? f->profile_m[i] - x : 0;
        }
        if (!rq->expires_at)
                return;
        for (uint32_t i = 0; i < f->ndeaths; i++)
                if (f->deaths[i].at == rq->expires_at && f->deaths[i].vcpus == rq->need.vcpus) {
                        memmove(&f->deaths[i], &f->deaths[i + 1],
                                (f->ndeaths - i - 1) * sizeof(*f->deaths));
                        f->ndeaths--;
                        return;
                }
}

static bool res_add_overflows(const struct sched_res *a, const struct sched_res *b)
{
        return a->vcpus + b->vcpus < a->vcpus || a->memory_mib + b->memory_mib < a->memory_mib ||
               a->disk_gib + b->disk_gib < a->disk_gib;
}

int sched_apply(struct sched_view *v, const struct sched_request *rq, uint32_t host)
{
        struct sched_host *h;
        struct group *g = NULL;
        uint32_t slot = 0, pos = 0;
        bool new_here = false;
        int r;

        if (host >= v->nhosts)
                return lsc_err_set(-EINVAL, "no host %u in the view", host);
        h = &v->hosts[host];
        if (res_add_overflows(&h->used, &rq->need))
                return lsc_err_set(-EOVERFLOW, "host %s: used capacity overflows", h->name);
        if (rq->expires_at) {
                r = grow((void **)&v->fc[host].deaths, &v->fc[host].deaths_cap,
                         v->fc[host].ndeaths + 1, sizeof(*v->fc[host].deaths));
                if (r < 0)
                        return r;
        }
        if (rq->group) {
                r = group_ensure(v, rq->group, &slot);
                if (r < 0)
                        return r;
                g = &v->groups[slot];
                pos = hgroup_pos(h, slot);
                new_here = pos == h->ngroups || h->groups[pos].group != slot;
                if (new_here) {
                        r = grow((void **)&h->groups, &h->groups_cap, h->ngroups + 1, sizeof(*h->groups));
                        if (r == 0)
                                r = list_reserve(&g->hosts, 1);
                        if (r < 0)
                                return r;
                }
        }
        h->used.vcpus += rq->need.vcpus;
        h->used.memory_mib += rq->need.memory_mib;
        h->used.disk_gib += rq->need.disk_gib;
        forecast_add(&v->fc[host], rq);
        if (g) {
                if (new_here) {
                        memmove(&h->groups[pos + 1], &h->groups[pos],
                                (h->ngroups - pos) * sizeof(*h->groups));
                        h->groups[pos] = (struct sched_hgroup){ .group = slot, .count = 0 };
                        h->ngroups++;
                        list_push(&g->hosts, host);
                }
                h->groups[pos].count++;
                g->members++;
        }
        return 0;
}

int sched_unapply(struct sched_view *v, const struct sched_request *rq, uint32_t host)
{
        struct sched_host *h;
        struct group *g = NULL;
        uint32_t slot = 0, pos = 0;

        if (host >= v->nhosts)
                return lsc_err_set(-EINVAL, "no host %u in the view", host);
        h = &v->hosts[host];
        if (h->used.vcpus < rq->need.vcpus || h->used.memory_mib < rq->need.memory_mib ||
            h->used.disk_gib < rq->need.disk_gib)
                return lsc_err_set(-EINVAL, "host %s does not hold what is being released", h->name);
        if (rq->group) {
                if (!group_get(v, rq->group, &slot) || hgroup_count(h, slot) == 0)
                        return lsc_err_set(-EINVAL, "host %s holds no member of group %llu", h->name,
                                           (unsigned long long)rq->group);
                g = &v->groups[slot];
                pos = hgroup_pos(h, slot);
        }
        h->used.vcpus -= rq->need.vcpus;
        h->used.memory_mib -= rq->need.memory_mib;
        h->used.disk_gib -= rq->need.disk_gib;
        forecast_remove(&v->fc[host], rq);
        if (g) {
                g->members--;
                if (--h->groups[pos].count == 0) {
                        memmove(&h->groups[pos], &h->groups[pos + 1],
                                (h->ngroups - pos - 1) * sizeof(*h->groups));
                        h->ngroups--;
                        list_remove(&g->hosts, host);
                }
        }
        return 0;
}

/* ---- messages ---- */

/* snprintf that keeps going past a full buffer, counting what it would have written. */
struct out {
        char *buf;
        size_t len, pos;
};

__attribute__((format(printf, 2, 3)))
static void out_printf(struct out *o, const char *fmt, ...)
{
        va_list ap;
        size_t room = o->pos < o->len ? o->len - o->pos : 0;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(room ? o->buf + o->pos : NULL, room, fmt, ap);
        va_end(ap);
        if (n > 0)
                o->pos += (size_t)n;
}

static int out_done(struct out *o)
{
        if (o->len && o->pos >= o->len)
                o->buf[o->len - 1] = '\0';
        else if (o->len)
                o->buf[o->pos] = '\0';
        return o->pos > INT32_MAX ? INT32_MAX : (int)o->pos;
}

static void group_phrase(struct out *o, const struct sched_request *rq)
{
        if (rq->group_name)
                out_printf(o, "group %s", rq->group_name);
        else
                out_printf(o, "group %llu", (unsigned long long)rq->group);
}

/* One reason as a predicate: "is not up" / "are not up". label indexes rq->labels. */
static void reason_phrase(struct out *o, const struct sched_view *v, const struct sched_request *rq,
                          int reason, uint32_t label, bool plural)
{
        const char *is = plural ? "are" : "is", *has = plural ? "have" : "has";
        uint32_t max = rq->max_per_host ? rq->max_per_host : 1;

        switch (reason) {
        case SCHED_R_NOT_TARGET:
                out_printf(o, "%s not the requested host", is);
                break;
        case SCHED_R_EXCLUDED:
                out_printf(o, "%s the current host", is);
                break;
        case SCHED_R_KIND:
                out_printf(o, plural ? "are not %s hosts" : "is not a %s host", lsc_kind_names[rq->kind]);
                break;
        case SCHED_R_NOT_UP:
                out_printf(o, "%s not up", is);
                break;
        case SCHED_R_NOT_ACTIVE:
                out_printf(o, "%s drained or in maintenance", is);
                break;
        case SCHED_R_UNHEALTHY:
                out_printf(o, "%s unhealthy", is);
                break;
        case SCHED_R_LABEL:
                out_printf(o, "%s label %s", plural ? "lack" : "lacks",
                           sched_label_name(v, rq->labels[label]));
                break;
        case SCHED_R_AFFINITY:
                out_printf(o, "%s no member of ", plural ? "hold" : "holds");
                group_phrase(o, rq);
                break;
        case SCHED_R_ANTI_AFFINITY:
                out_printf(o, "already %s %u member%s of ", plural ? "hold" : "holds", max,
                           max == 1 ? "" : "s");
                group_phrase(o, rq);
                break;
        case SCHED_R_VCPUS:
                out_printf(o, "%s fewer than %llu vCPU%s free", has,
                           (unsigned long long)rq->need.vcpus, rq->need.vcpus == 1 ? "" : "s");
                break;
        case SCHED_R_MEMORY:
                out_printf(o, "%s less than %llu MiB free", has, (unsigned long long)rq->need.memory_mib);
                break;
        case SCHED_R_DISK:
                out_printf(o, "%s less than %llu GiB of disk free", has,
                           (unsigned long long)rq->need.disk_gib);
                break;
        }
}

int sched_host_explain(const struct sched_view *v, const struct sched_request *rq, uint32_t host,
                       char *buf, size_t len)
{
        struct out o = { buf, len, 0 };
        const struct sched_host *h;
        const char *sep = "";
        struct ctx c;
        int r = ctx_init(v, rq, &c);

        if (r < 0)
                return r;
        if (host >= v->nhosts)
                return lsc_err_set(-EINVAL, "no host %u in the view", host);
        h = &v->hosts[host];
        uint32_t mask = check(v, &c, host, false, NULL);
        if (!mask) {
                out_printf(&o, "fits");
                return out_done(&o);
        }
        for (int i = 0; i < SCHED_R_COUNT; i++) {
                if (!(mask & (1u << i)))
                        continue;
                out_printf(&o, "%s", sep);
                sep = "; ";
                switch (i) {
                case SCHED_R_KIND:
                        out_printf(&o, "is a %s host, not %s", lsc_kind_names[h->kind],
                                   lsc_kind_names[rq->kind]);
                        break;
                case SCHED_R_LABEL: {
                        const char *lsep = "";

                        out_printf(&o, "lacks label");
                        for (size_t l = 0; l < rq->nlabels; l++)
                                if (!has_label(h, rq->labels[l])) {
                                        out_printf(&o, "%s %s", lsep, sched_label_name(v, rq->labels[l]));
                                        lsep = ",";
                                }
                        break;
                }
                case SCHED_R_ANTI_AFFINITY:
                        out_printf(&o, "already holds %u of ", hgroup_count(h, c.gslot));
                        group_phrase(&o, rq);
                        out_printf(&o, " (anti-affinity, at most %u per host)", c.max_per_host);
                        break;
                case SCHED_R_VCPUS:
                        out_printf(&o, "has %llu vCPUs free, needs %llu",
                                   (unsigned long long)free_of(h->alloc.vcpus, h->used.vcpus),
                                   (unsigned long long)rq->need.vcpus);
                        break;
                case SCHED_R_MEMORY:
                        out_printf(&o, "has %llu MiB free, needs %llu",
                                   (unsigned long long)free_of(h->alloc.memory_mib, h->used.memory_mib),
                                   (unsigned long long)rq->need.memory_mib);
                        break;
                case SCHED_R_DISK:
                        out_printf(&o, "has %llu GiB of disk free, needs %llu",
                                   (unsigned long long)free_of(h->alloc.disk_gib, h->used.disk_gib),
                                   (unsigned long long)rq->need.disk_gib);
                        break;
                default:
                        reason_phrase(&o, v, rq, i, 0, false);
                        break;
                }
        }
        return out_done(&o);
}

int sched_reasons_format(const struct sched_view *v, const struct sched_request *rq,
                         const struct sched_reasons *r, char *buf, size_t len)
{
        struct item {
                uint32_t n;
                int reason;
                uint32_t label;
        } items[SCHED_R_COUNT + SCHED_LABELS_MAX];
        struct out o = { buf, len, 0 };
        size_t ni = 0;
        int e = request_check(v, rq);

        if (e < 0)
                return e;
        if (rq->has_to) {
                /* One host was asked for: say everything wrong with it, not a count. */
                char why[512];

                sched_host_explain(v, rq, rq->to_host, why, sizeof(why));
                out_printf(&o, "host %s does not fit: %s", v->hosts[rq->to_host].name, why);
                return out_done(&o);
        }
        if (r->hosts == 0) {
                out_printf(&o, "no host fits: there are no hosts");
                return out_done(&o);
        }
        for (int i = 0; i < SCHED_R_COUNT; i++) {
                if (i == SCHED_R_NOT_TARGET)
                        continue;
                if (i == SCHED_R_LABEL) {
                        for (size_t l = 0; l < rq->nlabels; l++)
                                if (r->label[l])
                                        items[ni++] = (struct item){ r->label[l], i, (uint32_t)l };
                } else if (r->count[i])
                        items[ni++] = (struct item){ r->count[i], i, 0 };
        }
        /* Biggest cause first: that is the one worth acting on. Stable, so ties keep
         * the order of the checks. */
        for (size_t i = 1; i < ni; i++)
                for (size_t j = i; j > 0 && items[j].n > items[j - 1].n; j--) {
                        struct item t = items[j];
                        items[j] = items[j - 1];
                        items[j - 1] = t;
                }
        out_printf(&o, "no host fits");
        for (size_t i = 0; i < ni; i++) {
                if (i == 0)
                        out_printf(&o, ": %u host%s ", items[i].n, items[i].n == 1 ? "" : "s");
                else
                        out_printf(&o, ", %u ", items[i].n);
                reason_phrase(&o, v, rq, items[i].reason, items[i].label, items[i].n != 1);
        }
        return out_done(&o);
}
