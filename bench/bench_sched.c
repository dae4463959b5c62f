/* bench-sched: placement decisions per second over an in-memory view of a large cloud.
 * Builds mixed hosts (sizes, kinds, labels, some down or drained), then places and
 * applies identities one by one, timing each decision; once with die-off awareness off,
 * once on. The last line is JSON. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "err.h"
#include "sched.h"
#include "util.h"
#include "validate.h"

#define ZONES 4
#define ANTI_GROUPS 50
#define AFFINITY_GROUPS 200

struct opts {
        uint64_t hosts, identities, seed, k;
};

struct labels {
        uint32_t zone[ZONES], ssd, gpu;
};

static uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int parse(int argc, char **argv, struct opts *o)
{
        for (int i = 1; i < argc; i += 2) {
                uint64_t *dst = !strcmp(argv[i], "--hosts") ? &o->hosts
                              : !strcmp(argv[i], "--identities") ? &o->identities
                              : !strcmp(argv[i], "--seed") ? &o->seed
                              : !strcmp(argv[i], "--k") ? &o->k : NULL;

                if (!dst || i + 1 >= argc) {
                        fprintf(stderr, "usage: bench-sched [--hosts N] [--identities N] [--seed N] [--k N]\n");
                        return -EINVAL;
                }
                if (lsc_parse_u64(argv[i], argv[i + 1], dst) < 0) {
                        fprintf(stderr, "bench-sched: %s\n", lsc_err_msg(-EINVAL));
                        return -EINVAL;
                }
        }
        if (o->hosts < 1 || o->hosts > INT32_MAX || o->identities < 1 || o->identities > 100000000) {
                fprintf(stderr, "bench-sched: --hosts and --identities must be positive and sane\n");
                return -EINVAL;
        }
        return 0;
}

/* 85% vm, 12% container, 3% metal hosts; vm and container hosts in three sizes with a
 * 4x vCPU overcommit; zones on all, ssd on half, gpu on 2% of vm hosts; a few hosts
 * down, drained or unhealthy, as in any real fleet. */
static int build_hosts(struct sched_view *v, const struct opts *o, struct sched_rng *w,
                       struct labels *L)
{
        char name[32], zone[8];
        int r;

        for (int z = 0; z < ZONES; z++) {
                snprintf(zone, sizeof(zone), "z%d", z);
                r = sched_label_intern(v, "zone", zone, &L->zone[z]);
                if (r < 0)
                        return r;
        }
        if ((r = sched_label_intern(v, "ssd", "1", &L->ssd)) < 0 ||
            (r = sched_label_intern(v, "gpu", "1", &L->gpu)) < 0)
                return r;
        for (uint64_t i = 0; i < o->hosts; i++) {
                uint32_t roll = sched_rng_below(w, 100), size = 1 + sched_rng_below(w, 3);
                struct sched_host_spec spec = { .id = i + 1, .name = name, .up = true, .active = true,
                                                .healthy = true };
                uint32_t labels[3], n = 0, idx;

                snprintf(name, sizeof(name), "host%05llu", (unsigned long long)i);
                if (roll < 3) {
                        spec.kind = LSC_KIND_METAL;
                        spec.alloc = (struct sched_res){ 64, 262144, 2000 };
                } else {
                        spec.kind = roll < 15 ? LSC_KIND_CONTAINER : LSC_KIND_VM;
                        spec.alloc = (struct sched_res){ 16 * 4 * size, 131072 * size, 2000 * size };
                }
                roll = sched_rng_below(w, 1000);
                spec.up = roll >= 5;
                spec.active = roll < 5 || roll >= 10;
                spec.healthy = roll < 10 || roll >= 12;
                r = sched_host_add(v, &spec, &idx);
                if (r < 0)
                        return r;
                labels[n++] = L->zone[sched_rng_below(w, ZONES)];
                if (sched_rng_below(w, 2))
                        labels[n++] = L->ssd;
                if (spec.kind == LSC_KIND_VM && sched_rng_below(w, 100) < 2)
                        labels[n++] = L->gpu;
                r = sched_host_set_labels(v, idx, labels, n);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* 87% vm, 12.5% container, 0.5% metal; small sizes dominate; one in ten asks for a
 * zone, a few for ssd or gpu; a quarter join an anti-affinity group, some an
 * affinity group. */
static void next_request(struct sched_rng *w, const struct labels *L, struct sched_request *rq,
                         uint32_t *labels)
{
        static const uint64_t vcpus[] = { 1, 1, 2, 2, 2, 4, 4, 8 };
        static const uint64_t mem[] = { 1024, 2048, 2048, 4096, 4096, 8192, 8192, 16384 };
        static const uint64_t disk[] = { 10, 20, 20, 40, 40, 80, 80, 160 };
        uint32_t roll = sched_rng_below(w, 1000), size = sched_rng_below(w, 8);

        *rq = (struct sched_request){ .labels = labels };
        if (roll < 5) {
                rq->kind = LSC_KIND_METAL;
                rq->need = (struct sched_res){ 32, 131072, 500 };
        } else {
                rq->kind = roll < 130 ? LSC_KIND_CONTAINER : LSC_KIND_VM;
                rq->need = (struct sched_res){ vcpus[size], mem[size], disk[size] };
        }
        roll = sched_rng_below(w, 1000);
        if (roll < 100)
                labels[rq->nlabels++] = L->zone[sched_rng_below(w, ZONES)];
        else if (roll < 130)
                labels[rq->nlabels++] = L->ssd;
        else if (roll < 135 && rq->kind == LSC_KIND_VM)
                labels[rq->nlabels++] = L->gpu;
        roll = sched_rng_below(w, 100);
        if (roll < 25) {
                uint32_t g = sched_rng_below(w, ANTI_GROUPS);

                rq->group = 1 + g;
                rq->policy = SCHED_POLICY_ANTI_AFFINITY;
                rq->max_per_host = 1 + g % 3;
        } else if (roll < 27 && rq->kind == LSC_KIND_VM) {
                /* An affinity group of mixed kinds could never be together. */
                rq->group = 1 + ANTI_GROUPS + sched_rng_below(w, AFFINITY_GROUPS);
                rq->policy = SCHED_POLICY_AFFINITY;
                rq->need = (struct sched_res){ 1, 1024, 10 };
                rq->nlabels = 0;        /* members asking for different zones could never be together */
        }
}

static int cmp_u32(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

        return (x > y) - (x < y);
}

/* What one pass measured. */
struct pass {
        uint64_t nofit, total_ns, wall_ns;
        double p50, p99, max;
        struct sched_res alloc, used;
        char why[512];
};

/* Die-off awareness's inputs, as lscd would feed them: each host's physical vCPUs (a
 * quarter of its allocatable ones) and a load forecast with a daily peak; requests
 * with a clock, a lifetime for most, an expected load, and some rebirths. */
static int aware_inputs(struct sched_view *v, struct sched_rng *w)
{
        for (uint32_t i = 0; i < sched_view_host_count(v); i++) {
                const struct sched_host *h = sched_view_host_const(v, i);
                uint32_t phys = (uint32_t)(h->alloc.vcpus / 4), prof[SCHED_SLOTS];
                uint32_t base = phys * (200 + sched_rng_below(w, 400));
                int r;

                for (uint32_t s = 0; s < SCHED_SLOTS; s++)
                        prof[s] = base + (s >= 9 && s <= 17 ? base / 2 : 0);
                if ((r = sched_host_set_load(v, i, phys, prof)) < 0)
                        return r;
        }
        return 0;
}

static void aware_request(struct sched_rng *w, uint64_t i, struct sched_request *rq)
{
        rq->now = 1700000000 + (int64_t)i;
        if (sched_rng_below(w, 100) < 60)
                rq->expires_at = rq->now + 7 * 86400 - sched_rng_below(w, 60480);
        rq->load_m = (uint32_t)rq->need.vcpus * (100 + sched_rng_below(w, 800));
        rq->rebirth = sched_rng_below(w, 100) < 10;
        rq->load_known = rq->rebirth;
}

static int run_pass(const struct opts *o, bool aware, struct pass *ret)
{
        _cleanup_(sched_view_free) struct sched_view *v = NULL;
        struct sched_rng rng, work;
        struct labels L;
        uint64_t t0, t1;
        uint32_t *lat;
        int r;

        *ret = (struct pass){ 0 };
        if ((r = sched_view_new(&v)) < 0 || (r = sched_view_set_k(v, (unsigned)o->k)) < 0 ||
            (r = sched_view_set_aware(v, aware, SCHED_AWARE_SAMPLES_DEFAULT, SCHED_AWARE_FIT_PCT_DEFAULT)) < 0)
                return r;
        sched_rng_seed(&work, o->seed ^ 0x5eedull);
        sched_rng_seed(&rng, o->seed);
        t0 = now_ns();
        r = build_hosts(v, o, &work, &L);
        if (r == 0 && aware)
                r = aware_inputs(v, &work);
        if (r < 0)
                return r;
        t1 = now_ns();
        printf("%s: built %llu hosts in %.1f ms\n", aware ? "aware" : "plain",
               (unsigned long long)o->hosts, (t1 - t0) / 1e6);

        lat = malloc(o->identities * sizeof(*lat));
        if (!lat)
                return -ENOMEM;
        uint64_t start = now_ns();
        for (uint64_t i = 0; i < o->identities; i++) {
                struct sched_request rq;
                struct sched_reasons reasons;
                uint32_t labels[SCHED_LABELS_MAX], host;

                next_request(&work, &L, &rq, labels);
                if (aware)
                        aware_request(&work, i, &rq);
                t0 = now_ns();
                r = sched_place(v, &rq, &rng, &host, &reasons);
                t1 = now_ns();
                lat[i] = (uint32_t)(t1 - t0 > UINT32_MAX ? UINT32_MAX : t1 - t0);
                ret->total_ns += t1 - t0;
                if (r == -ENOSPC) {
                        if (!ret->nofit++)
                                sched_reasons_format(v, &rq, &reasons, ret->why, sizeof(ret->why));
                        continue;
                }
                if (r == 0)
                        r = sched_apply(v, &rq, host);
                if (r < 0) {
                        fprintf(stderr, "bench-sched: decision %llu: %s\n", (unsigned long long)i,
                                lsc_err_msg(r));
                        free(lat);
                        return r;
                }
        }
        ret->wall_ns = now_ns() - start;
        for (uint32_t i = 0; i < sched_view_host_count(v); i++) {
                const struct sched_host *h = sched_view_host_const(v, i);

                ret->alloc.vcpus += h->alloc.vcpus;
                ret->alloc.memory_mib += h->alloc.memory_mib;
                ret->used.vcpus += h->used.vcpus;
                ret->used.memory_mib += h->used.memory_mib;
        }
        qsort(lat, o->identities, sizeof(*lat), cmp_u32);
        ret->p50 = lat[o->identities / 2] / 1e3;
        ret->p99 = lat[(o->identities * 99) / 100] / 1e3;
        ret->max = lat[o->identities - 1] / 1e3;
        free(lat);
        return 0;
}

static void pass_print(const struct opts *o, const char *what, const struct pass *p)
{
        printf("%s: placed %llu of %llu identities on %llu hosts (k=%llu, seed %llu); %llu found no host\n",
               what, (unsigned long long)(o->identities - p->nofit), (unsigned long long)o->identities,
               (unsigned long long)o->hosts, (unsigned long long)o->k, (unsigned long long)o->seed,
               (unsigned long long)p->nofit);
        if (p->nofit)
                printf("%s: first no-fit: %s\n", what, p->why);
        printf("%s: fill: %.1f%% of vCPUs, %.1f%% of memory\n", what, 100.0 * p->used.vcpus / p->alloc.vcpus,
               100.0 * p->used.memory_mib / p->alloc.memory_mib);
        printf("%s: %.1f ms in total (place + apply): %llu decisions/s; decisions alone %.1f ms "
               "(%.0f/s)\n", what, p->wall_ns / 1e6, (unsigned long long)(o->identities / (p->wall_ns / 1e9)),
               p->total_ns / 1e6, o->identities / (p->total_ns / 1e9));
        printf("%s: latency per decision: p50 %.2f us, p99 %.2f us, max %.2f us\n", what, p->p50, p->p99,
               p->max);
}

int main(int argc, char **argv)
{
        struct opts o = { .hosts = 10000, .identities = 100000, .seed = 1, .k = SCHED_K_DEFAULT };
        struct pass plain, aware;
        int r;

        if (parse(argc, argv, &o) < 0)
                return 2;
        /* Plain first: the figure issue 3's goal is about, awareness off. Then the same
         * hosts and requests with die-off awareness on (SCHED_AWARE_SAMPLES_DEFAULT
         * hosts compared per decision). */
        if ((r = run_pass(&o, false, &plain)) < 0 || (pass_print(&o, "plain", &plain), 0) ||
            (r = run_pass(&o, true, &aware)) < 0) {
                fprintf(stderr, "bench-sched: %s\n", lsc_err_msg(r));
                return 1;
        }
        pass_print(&o, "aware", &aware);
        printf("{\"hosts\":%llu,\"identities\":%llu,\"decisions_per_s\":%llu,\"p50_us\":%.2f,"
               "\"p99_us\":%.2f,\"aware_decisions_per_s\":%llu,\"aware_p50_us\":%.2f,\"aware_p99_us\":%.2f}\n",
               (unsigned long long)o.hosts, (unsigned long long)o.identities,
               (unsigned long long)(o.identities / (plain.wall_ns / 1e9)), plain.p50, plain.p99,
               (unsigned long long)(o.identities / (aware.wall_ns / 1e9)), aware.p50, aware.p99);
        return 0;
}
