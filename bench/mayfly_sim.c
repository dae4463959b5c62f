/* mayfly-sim: a simulated data centre driven minute by minute through the real
 * manager/sched.c and manager/mayfly.c, to measure how die-off-aware placement and
 * turnover cut hot spots (hosts whose measured load exceeds their physical vCPUs).
 * The parameters are fixed so that runs compare; docs/mayflies.md describes the model.
 * The last line is one JSON object. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "err.h"
#include "mayfly.h"
#include "sched.h"
#include "util.h"
#include "validate.h"

/* ---- the fixed model ---- */
#define HOSTS 500u
#define PHYS_VCPUS 32u
#define ALLOC_RATIO 4u
#define DAYS 14u
#define LIFETIME_S (7 * 86400)
#define PEAK_TARGET 0.85            /* peak total expected load / physical capacity */
#define RAMP_S 86400                /* the population grows over the first day, then holds */
#define TURNOVER_S 180              /* destroy + rebirth: the load is off meanwhile */
#define GROUPS 100u
#define CYCLE_AMPLITUDE 0.5         /* daily cycle: 1 ± 0.5 */
#define NOISE 0.2                   /* per-minute noise: uniform ±20% of the cycled load */
#define DAY_SHARE 70u               /* % of servers peaking at 14:00 ± 2 h; the rest at 02:00 ± 2 h */
#define HISTORY_ALPHA 0.5           /* weight of the newest day in an identity's hourly history */
#define MINUTES_PER_DAY 1440u

static const unsigned mayfly_pcts[] = { 0, 30, 70, 100 };
#define NPCT (sizeof(mayfly_pcts) / sizeof(mayfly_pcts[0]))
#define NROWS (2 * NPCT)

enum srv_state { SRV_WAITING, SRV_RUNNING, SRV_FLIGHT };

struct server {
        /* What the seed fixes, the same in every row. */
        uint32_t size;                  /* vCPUs */
        float frac;                     /* mean load / size */
        uint16_t peak_min;              /* minute of the day of its daily peak */
        bool mayfly;
        uint32_t group;
        int64_t arrive;
        int64_t first_death;            /* mayflies: the first expires_at */
        /* What the run changes. */
        enum srv_state state;
        uint32_t host;
        uint32_t gen;                   /* bindings so far: cookies of stale queue items die */
        bool early_queued;
        int64_t bound_at, expires_at, flight_end;
        uint32_t applied[SCHED_SLOTS];  /* the load profile its binding added to the view */
        /* The identity's bounded history: an hourly profile. */
        float hist[SCHED_SLOTS];
        uint32_t known;                 /* bit per slot with history */
        float acc;
        uint32_t nacc;
};

struct cfg {
        uint32_t hosts, days, samples;
        uint64_t seed;
        unsigned pct;
        bool aware;
};

struct result {
        double hot100, hot90, max_load, stddev, turnovers_per_day;
        uint64_t shifted, early, nofit;
        int64_t max_shift_s;
        uint64_t hot100_day[64];
        float *hour_max, *hour_p99, *hour_mean;  /* per simulated hour, when asked */
};

/* ---- randomness that does not depend on the row ---- */

static uint64_t mix(uint64_t x)
{
        x += 0x9e3779b97f4a7c15ull;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        return x ^ (x >> 31);
}

static uint64_t hash3(uint64_t a, uint64_t b, uint64_t c)
{
        return mix(mix(mix(a) ^ b) ^ c);
}

static double unit(uint64_t x)
{
        return (double)(x >> 11) / 9007199254740992.0;
}

/* ---- the population ---- */

static float cycle_tab[MINUTES_PER_DAY];

static double cycle(uint32_t minute_of_day, uint32_t peak_min)
{
        return cycle_tab[(minute_of_day + MINUTES_PER_DAY - peak_min) % MINUTES_PER_DAY];
}

static void server_draw(struct sched_rng *w, struct server *s)
{
        static const uint32_t sizes[] = { 1, 2, 4, 8 };
        static const uint32_t weights[] = { 30, 30, 25, 15 };
        uint32_t roll = sched_rng_below(w, 100), k = 0;
        double u = unit(sched_rng_next(w));

        while (roll >= weights[k]) {
                roll -= weights[k];
                k++;
        }
        *s = (struct server){ .size = sizes[k] };
        /* Mean share of its size: skewed low, a few servers near full. */
        s->frac = (float)(0.05 + 0.9 * u * u);
        uint32_t base = sched_rng_below(w, 100) < DAY_SHARE ? 14 * 60 : 2 * 60;
        s->peak_min = (uint16_t)((base + MINUTES_PER_DAY - 120 + 10 * sched_rng_below(w, 25)) % MINUTES_PER_DAY);
        s->group = 1 + sched_rng_below(w, GROUPS);
}

static double expected_load(const struct server *s, uint32_t minute_of_day)
{
        double x = s->frac * s->size * cycle(minute_of_day, s->peak_min);

        return x < s->size ? x : s->size;
}

/* Draws servers until one more would lift the peak of the total expected load past
 * PEAK_TARGET of the physical capacity. */
static int population_draw(const struct cfg *c, struct server **ret, uint32_t *ret_n, double **ret_u)
{
        double cap = PEAK_TARGET * c->hosts * PHYS_VCPUS;
        double *total = calloc(MINUTES_PER_DAY, sizeof(*total));
        struct server *srv = NULL;
        double *mu = NULL;
        uint32_t n = 0, ncap = 0;
        struct sched_rng w;

        if (!total)
                return -ENOMEM;
        sched_rng_seed(&w, c->seed * 0x100000001b3ull + 17);
        for (;;) {
                struct server s;
                double peak = 0;

                server_draw(&w, &s);
                for (uint32_t m = 0; m < MINUTES_PER_DAY; m++) {
                        double x = total[m] + expected_load(&s, m);

                        if (x > peak)
                                peak = x;
                }
                if (peak > cap)
                        break;
                for (uint32_t m = 0; m < MINUTES_PER_DAY; m++)
                        total[m] += expected_load(&s, m);
                if (n == ncap) {
                        ncap = ncap ? 2 * ncap : 1024;
                        struct server *ns = realloc(srv, ncap * sizeof(*ns));
                        double *nu = realloc(mu, ncap * sizeof(*nu));

                        if (ns)
                                srv = ns;
                        if (nu)
                                mu = nu;
                        if (!ns || !nu) {
                                free(srv);
                                free(mu);
                                free(total);
                                return -ENOMEM;
                        }
                }
                srv[n] = s;
                /* Whether it is a mayfly: one draw for every ratio, so the mayflies of
                 * 30% are among those of 70%. */
                mu[n] = unit(sched_rng_next(&w));
                n++;
        }
        free(total);
        *ret = srv;
        *ret_n = n;
        *ret_u = mu;
        return 0;
}

/* ---- one run ---- */

/* The fleet's mean load per server by hour, as the manager sees it: what an hour not
 * yet seen in one identity's history is likely to look like. */
struct fleet {
        float per_server[SCHED_SLOTS];
        uint32_t known;
};

struct run {
        const struct cfg *c;
        struct mayfly_limits lim;
        struct sched_view *v;
        struct sched_rng rng;
        struct server *srv;
        uint32_t n;
        struct mayfly_heap deaths;
        struct fleet fleet;
        uint32_t *flight;               /* servers in turnover */
        uint32_t nflight;
        uint64_t *flight_groups;
        struct mayfly_due *due;
        uint32_t ndue, due_cap;
        uint32_t *by_host, *host_first, *host_n;  /* servers by host, rebuilt hourly */
        bool *host_early;               /* an early retirement is queued for it */
        double *host_load, *host_hour;
        uint64_t turnovers;
        struct result *res;
};

static uint32_t default_load_m(const struct server *s)
{
        return s->size * 10u * SCHED_LOAD_DEFAULT_PCT;
}

/* The identity's expected load by hour: its history where it has one; in hours not
 * seen yet, the mean of its history shaped by the fleet's daily cycle (flat where the
 * fleet has not seen the hour either); the default share when it has no history. */
static void profile_of(const struct fleet *fl, const struct server *s, uint32_t *ret)
{
        double sum = 0, fsum = 0;
        uint32_t nk = 0;
        bool shaped = true;

        for (uint32_t i = 0; i < SCHED_SLOTS; i++)
                if (s->known & (1u << i)) {
                        sum += s->hist[i];
                        fsum += fl->per_server[i];
                        shaped &= (fl->known >> i) & 1;
                        nk++;
                }
        shaped &= fsum > 0;
        for (uint32_t i = 0; i < SCHED_SLOTS; i++) {
                double x = -1;

                if (s->known & (1u << i))
                        x = s->hist[i];
                else if (nk && shaped && (fl->known >> i) & 1)
                        x = sum / fsum * fl->per_server[i];
                else if (nk)
                        x = sum / nk;
                ret[i] = x < 0 ? default_load_m(s) : (uint32_t)(x * 1000.0 + 0.5);
        }
}

static struct sched_request request_of(const struct server *s, int64_t now, int64_t expires_at,
                                       const uint32_t *profile)
{
        return (struct sched_request){
                .kind = LSC_KIND_VM,
                .need = { s->size, s->size * 2048u, 20 },
                .now = now,
                .expires_at = expires_at,
                .load_profile_m = profile,
        };
}

static int bind(struct run *R, uint32_t i, int64_t now, int64_t expires_at, bool rebirth, uint32_t *ret_host)
{
        struct server *s = &R->srv[i];
        uint32_t profile[SCHED_SLOTS], host;
        struct sched_request rq;
        int r;

        profile_of(&R->fleet, s, profile);
        rq = request_of(s, now, expires_at, profile);
        rq.rebirth = rebirth;
        rq.load_known = s->known == (1u << SCHED_SLOTS) - 1;
        if (rebirth) {
                rq.has_exclude = true;
                rq.exclude_host = s->host;
        }
        r = sched_place(R->v, &rq, &R->rng, &host, NULL);
        if (r < 0)
                return r;
        r = sched_apply(R->v, &rq, host);
        if (r < 0)
                return r;
        memcpy(s->applied, profile, sizeof(profile));
        *ret_host = host;
        return 0;
}

static int unbind(struct run *R, uint32_t i)
{
        struct server *s = &R->srv[i];
        struct sched_request rq = request_of(s, 0, s->expires_at, s->applied);

        return sched_unapply(R->v, &rq, s->host);
}

static int arrive(struct run *R, uint32_t i, int64_t now)
{
        struct server *s = &R->srv[i];
        int64_t exp = s->mayfly ? s->first_death : 0;
        uint32_t host;
        int r = bind(R, i, now, exp, false, &host);

        if (r == -ENOSPC) {
                R->res->nofit++;
                return 0;
        }
        if (r < 0)
                return r;
        s->state = SRV_RUNNING;
        s->host = host;
        s->bound_at = now;
        s->expires_at = exp;
        s->gen++;
        if (s->mayfly && mayfly_heap_push(&R->deaths, exp, (uint64_t)s->gen << 32 | i) < 0)
                return -ENOMEM;
        return 0;
}

/* Break before make, the rebirth host reserved first: the new binding is placed and
 * applied, then the old one released; the load is off until the rebirth runs. */
static int turnover(struct run *R, uint32_t i, int64_t now)
{
        struct server *s = &R->srv[i];
        int64_t exp = mayfly_expires_at(now, LIFETIME_S, R->lim.jitter_pct,
                                        hash3(R->c->seed, i, s->gen + 1000));
        uint32_t host;
        int r = bind(R, i, now, exp, true, &host);

        if (r < 0)
                return r;
        r = unbind(R, i);
        if (r < 0)
                return r;
        if (s->early_queued)
                R->host_early[s->host] = false;
        s->early_queued = false;
        s->host = host;
        s->state = SRV_FLIGHT;
        s->flight_end = now + TURNOVER_S;
        s->bound_at = now;
        s->expires_at = exp;
        s->gen++;
        R->flight[R->nflight++] = i;
        R->turnovers++;
        return mayfly_heap_push(&R->deaths, exp, (uint64_t)s->gen << 32 | i);
}

static int due_push(struct run *R, int64_t deadline, uint32_t i)
{
        if (R->ndue == R->due_cap) {
                uint32_t cap = R->due_cap ? 2 * R->due_cap : 256;
                struct mayfly_due *d = realloc(R->due, cap * sizeof(*d));

                if (!d)
                        return -ENOMEM;
                R->due = d;
                R->due_cap = cap;
        }
        R->due[R->ndue++] = (struct mayfly_due){
                .deadline = deadline, .group = R->srv[i].group,
                .cookie = (uint64_t)R->srv[i].gen << 32 | i,
        };
        return 0;
}

/* Servers by host, for early retirement. */
static void index_hosts(struct run *R)
{
        uint32_t H = R->c->hosts, pos = 0;

        memset(R->host_n, 0, H * sizeof(*R->host_n));
        for (uint32_t i = 0; i < R->n; i++)
                if (R->srv[i].state == SRV_RUNNING)
                        R->host_n[R->srv[i].host]++;
        for (uint32_t h = 0; h < H; h++) {
                R->host_first[h] = pos;
                pos += R->host_n[h];
                R->host_n[h] = 0;
        }
        for (uint32_t i = 0; i < R->n; i++)
                if (R->srv[i].state == SRV_RUNNING) {
                        uint32_t h = R->srv[i].host;

                        R->by_host[R->host_first[h] + R->host_n[h]++] = i;
                }
}

/* (d): a host whose forecast peak runs hot sheds mayflies in their early window. */
static int early_retire(struct run *R, int64_t now)
{
        struct mayfly_server ms[512];
        uint32_t idx[512], who[512];

        index_hosts(R);
        for (uint32_t h = 0; h < R->c->hosts; h++) {
                const struct sched_forecast *f = sched_host_forecast(R->v, h);
                int64_t peak = sched_host_forecast_peak(R->v, h, now);
                uint64_t excess = mayfly_excess(&R->lim, (uint64_t)peak, f->phys_m);
                uint32_t slot = 0, nm = 0;

                if (!excess || R->host_early[h])
                        continue;
                for (uint32_t k = 1; k < SCHED_SLOTS; k++)
                        if (f->profile_m[k] > f->profile_m[slot])
                                slot = k;
                for (uint32_t k = 0; k < R->host_n[h] && nm < 512; k++) {
                        const struct server *s = &R->srv[R->by_host[R->host_first[h] + k]];

                        if (!s->mayfly || s->early_queued)
                                continue;
                        who[nm] = R->by_host[R->host_first[h] + k];
                        ms[nm++] = (struct mayfly_server){ .bound_at = s->bound_at,
                                                           .expires_at = s->expires_at,
                                                           .load_m = s->applied[slot] };
                }
                size_t np = mayfly_pick_early(&R->lim, ms, nm, now, excess, idx);
                for (size_t k = 0; k < np; k++) {
                        int r = due_push(R, now, who[idx[k]]);

                        if (r < 0)
                                return r;
                        R->srv[who[idx[k]]].early_queued = true;
                        R->host_early[h] = true;
                        R->res->early++;
                }
        }
        return 0;
}

/* Deaths due now and early retirements: start what the budget admits, shift the rest. */
static int deaths_run(struct run *R, int64_t now)
{
        struct mayfly_item it;
        struct mayfly_flight fl;
        size_t na;
        int r;

        while (mayfly_heap_peek(&R->deaths, &it) && it.deadline <= now) {
                uint32_t i = (uint32_t)it.cookie;
                struct server *s = &R->srv[i];

                mayfly_heap_pop(&R->deaths, &it);
                if (s->gen != it.cookie >> 32 || s->state == SRV_WAITING || s->early_queued)
                        continue;       /* stale: reborn since, or already queued early */
                if ((r = due_push(R, it.deadline, i)) < 0)
                        return r;
        }
        if (!R->ndue)
                return 0;
        for (uint32_t k = 0; k < R->nflight; k++)
                R->flight_groups[k] = R->srv[R->flight[k]].group;
        fl = (struct mayfly_flight){ .total = R->nflight, .groups = R->flight_groups, .ngroups = R->nflight };
        na = mayfly_admit(&R->lim, R->n, &fl, R->due, R->ndue);
        uint32_t keep = 0;
        for (size_t k = 0; k < R->ndue; k++) {
                uint32_t i = (uint32_t)R->due[k].cookie;
                struct server *s = &R->srv[i];

                if (s->gen != R->due[k].cookie >> 32)
                        continue;       /* reborn since it was queued */
                /* A server still in its last turnover cannot start the next one. */
                if (k < na && s->state == SRV_RUNNING) {
                        r = turnover(R, i, now);
                        if (r == 0)
                                continue;
                        if (r != -ENOSPC)
                                return r;
                        R->res->nofit++;
                }
                if (now - R->due[k].deadline > R->res->max_shift_s)
                        R->res->max_shift_s = now - R->due[k].deadline;
                if (k >= na)
                        R->res->shifted++;
                R->due[keep++] = R->due[k];
        }
        R->ndue = keep;
        return 0;
}

static void flights_land(struct run *R, int64_t now)
{
        for (uint32_t k = 0; k < R->nflight;) {
                struct server *s = &R->srv[R->flight[k]];

                if (s->flight_end <= now) {
                        s->state = SRV_RUNNING;
                        R->flight[k] = R->flight[--R->nflight];
                } else
                        k++;
        }
}

/* Hourly: each identity's history takes in the hour just ended, and each binding's
 * expected load in the view is replaced by the newer profile (unapply, apply). */
static int history_fold(struct run *R, uint32_t slot)
{
        double fleet_sum = 0;
        uint32_t fleet_n = 0;

        for (uint32_t i = 0; i < R->n; i++) {
                struct server *s = &R->srv[i];

                if (s->nacc >= 30) {
                        float mean = s->acc / (float)s->nacc;

                        fleet_sum += mean;
                        fleet_n++;
                        s->hist[slot] = s->known & (1u << slot)
                                ? (float)((1 - HISTORY_ALPHA) * s->hist[slot] + HISTORY_ALPHA * mean) : mean;
                        s->known |= 1u << slot;
                }
                s->acc = 0;
                s->nacc = 0;
        }
        if (fleet_n) {
                float x = (float)(fleet_sum / fleet_n);

                R->fleet.per_server[slot] = R->fleet.known & (1u << slot)
                        ? (float)((1 - HISTORY_ALPHA) * R->fleet.per_server[slot] + HISTORY_ALPHA * x) : x;
                R->fleet.known |= 1u << slot;
        }
        for (uint32_t i = 0; i < R->n; i++) {
                struct server *s = &R->srv[i];

                if (s->state == SRV_WAITING)
                        continue;
                uint32_t profile[SCHED_SLOTS];
                struct sched_request rq;
                int r;

                profile_of(&R->fleet, s, profile);
                if (!memcmp(profile, s->applied, sizeof(profile)))
                        continue;
                if ((r = unbind(R, i)) < 0)
                        return r;
                rq = request_of(s, 0, s->expires_at, profile);
                if ((r = sched_apply(R->v, &rq, s->host)) < 0)
                        return r;
                memcpy(s->applied, profile, sizeof(profile));
        }
        return 0;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return (x > y) - (x < y);
}

static int run_one(const struct cfg *c, const struct server *pop, const double *mu, uint32_t n,
                   struct result *res)
{
        _cleanup_(sched_view_free) struct sched_view *v = NULL;
        struct run R = { .c = c, .lim = MAYFLY_LIMITS_DEFAULT, .n = n, .res = res };
        uint32_t H = c->hosts, next = 0;
        uint64_t minutes = (uint64_t)c->days * MINUTES_PER_DAY, hot100 = 0, hot90 = 0;
        double sd_sum = 0, max_load = 0;
        double *sorted = NULL;
        int r;

        R.lim.group_max = 2;
        if ((r = sched_view_new(&v)) < 0 ||
            (r = sched_view_set_aware(v, c->aware, c->samples, SCHED_AWARE_FIT_PCT_DEFAULT)) < 0)
                return r;
        R.v = v;
        for (uint32_t h = 0; h < H; h++) {
                char name[16];
                struct sched_host_spec spec = {
                        .id = h + 1, .name = name, .kind = LSC_KIND_VM, .up = true, .active = true,
                        .healthy = true, .alloc = { PHYS_VCPUS * ALLOC_RATIO, 1u << 20, 10000 },
                };
                uint32_t idx;

                snprintf(name, sizeof(name), "h%03u", h);
                if ((r = sched_host_add(v, &spec, &idx)) < 0 ||
                    (r = sched_host_set_load(v, idx, PHYS_VCPUS, NULL)) < 0)
                        return r;
        }
        sched_rng_seed(&R.rng, c->seed);
        R.srv = malloc(n * sizeof(*R.srv));
        R.flight = malloc(n * sizeof(*R.flight));
        R.flight_groups = malloc(n * sizeof(*R.flight_groups));
        R.by_host = malloc(n * sizeof(*R.by_host));
        R.host_first = calloc(H, sizeof(*R.host_first));
        R.host_n = calloc(H, sizeof(*R.host_n));
        R.host_early = calloc(H, sizeof(*R.host_early));
        R.host_load = calloc(H, sizeof(*R.host_load));
        R.host_hour = calloc(H, sizeof(*R.host_hour));
        sorted = malloc(H * sizeof(*sorted));
        r = -ENOMEM;
        if (!R.srv || !R.flight || !R.flight_groups || !R.by_host || !R.host_first || !R.host_n ||
            !R.host_early || !R.host_load || !R.host_hour || !sorted)
                goto out;
        memcpy(R.srv, pop, n * sizeof(*R.srv));
        for (uint32_t i = 0; i < n; i++) {
                struct server *s = &R.srv[i];

                s->arrive = (int64_t)((uint64_t)i * RAMP_S / n);
                s->mayfly = mu[i] * 100 < c->pct;
                /* The cloud was turning over before the sim began: a first death
                 * anywhere in a lifetime from arrival, so deaths are spread from day 0. */
                s->first_death = s->arrive + 1 + (int64_t)(unit(hash3(c->seed, i, 7)) * (LIFETIME_S - 1));
        }

        for (uint64_t m = 0; m < minutes; m++) {
                int64_t now = (int64_t)m * 60;
                uint32_t mod = (uint32_t)(m % MINUTES_PER_DAY);

                if (m && m % 60 == 0) {
                        if ((r = history_fold(&R, (uint32_t)((m / 60 - 1) % SCHED_SLOTS))) < 0)
                                goto out;
                        if (c->aware && (r = early_retire(&R, now)) < 0)
                                goto out;
                }
                while (next < n && R.srv[next].arrive <= now)
                        if ((r = arrive(&R, next++, now)) < 0)
                                goto out;
                flights_land(&R, now);
                if ((r = deaths_run(&R, now)) < 0)
                        goto out;

                memset(R.host_load, 0, H * sizeof(*R.host_load));
                for (uint32_t i = 0; i < next; i++) {
                        struct server *s = &R.srv[i];
                        double x;

                        if (s->state != SRV_RUNNING)
                                continue;
                        x = s->frac * s->size * cycle(mod, s->peak_min) *
                            (1 + NOISE * (2 * unit(hash3(c->seed, i, m)) - 1));
                        if (x > s->size)
                                x = s->size;
                        R.host_load[s->host] += x;
                        s->acc += (float)x;
                        s->nacc++;
                }
                double sum = 0, sq = 0;
                for (uint32_t h = 0; h < H; h++) {
                        double l = R.host_load[h] / PHYS_VCPUS;

                        hot100 += l > 1.0;
                        res->hot100_day[m / MINUTES_PER_DAY] += l > 1.0;
                        hot90 += l > 0.9;
                        if (l > max_load)
                                max_load = l;
                        sum += l;
                        sq += l * l;
                        R.host_hour[h] += R.host_load[h];
                }
                double mean = sum / H, var = sq / H - mean * mean;
                sd_sum += var > 0 ? sqrt(var) : 0;
                if (res->hour_max && (m + 1) % 60 == 0) {
                        uint64_t hour = m / 60;

                        sum = 0;
                        for (uint32_t h = 0; h < H; h++) {
                                sorted[h] = R.host_hour[h] / 60.0 / PHYS_VCPUS;
                                sum += sorted[h];
                                R.host_hour[h] = 0;
                        }
                        qsort(sorted, H, sizeof(*sorted), cmp_double);
                        res->hour_max[hour] = (float)sorted[H - 1];
                        res->hour_p99[hour] = (float)sorted[(H * 99) / 100];
                        res->hour_mean[hour] = (float)(sum / H);
                }
        }
        res->hot100 = (double)hot100;
        res->hot90 = (double)hot90;
        res->max_load = max_load;
        res->stddev = sd_sum / (double)minutes;
        res->turnovers_per_day = (double)R.turnovers / c->days;
        r = 0;
out:
        mayfly_heap_free(&R.deaths);
        free(R.srv);
        free(R.flight);
        free(R.flight_groups);
        free(R.due);
        free(R.by_host);
        free(R.host_first);
        free(R.host_n);
        free(R.host_early);
        free(R.host_load);
        free(R.host_hour);
        free(sorted);
        return r;
}

/* ---- output ---- */

struct stat {
        double mean, sd;
};

static struct stat stat_of(const double *x, unsigned n)
{
        struct stat s = { 0, 0 };

        for (unsigned i = 0; i < n; i++)
                s.mean += x[i];
        s.mean /= n;
        for (unsigned i = 0; i < n; i++)
                s.sd += (x[i] - s.mean) * (x[i] - s.mean);
        s.sd = n > 1 ? sqrt(s.sd / (n - 1)) : 0;
        return s;
}

static void svg_line(FILE *f, const float *y, uint32_t n, double ymax, const char *color, const char *dash)
{
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='1.2'%s%s%s points='", color,
                dash ? " stroke-dasharray='" : "", dash ? dash : "", dash ? "'" : "");
        for (uint32_t i = 0; i < n; i++)
                fprintf(f, "%.1f,%.1f ", 60 + 860.0 * i / (n - 1), 40 + 360 * (1 - y[i] / ymax));
        fprintf(f, "'/>\n");
}

static int svg_write(const char *path, const struct cfg *c, const struct result *aware,
                     const struct result *plain)
{
        uint32_t n = c->days * 24;
        double ymax = 1.25;
        FILE *f;

        /* Room for the highest line, in steps of 25%. */
        for (uint32_t i = 0; i < n; i++)
                while (plain->hour_max[i] > ymax || aware->hour_max[i] > ymax)
                        ymax += 0.25;
        f = fopen(path, "w");
        if (!f)
                return lsc_err_set(-errno, "cannot write %s: %s", path, strerror(errno));
        fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='960' height='470' "
                   "font-family='sans-serif' font-size='12'>\n<rect width='960' height='470' fill='white'/>\n");
        fprintf(f, "<text x='480' y='22' text-anchor='middle' font-size='14'>Host load per hour, %u%% "
                   "mayflies, seed %llu (hourly mean of each host; share of its physical vCPUs)</text>\n",
                c->pct, (unsigned long long)c->seed);
        for (int k = 0; k <= (int)(ymax / 0.25 + 0.5); k++) {
                double yv = 0.25 * k, y = 40 + 360 * (1 - yv / ymax);

                fprintf(f, "<line x1='60' x2='920' y1='%.1f' y2='%.1f' stroke='%s'/>"
                           "<text x='54' y='%.1f' text-anchor='end'>%.0f%%</text>\n",
                        y, y, fabs(yv - 1.0) < 1e-9 ? "#c00" : "#ddd", y + 4, yv * 100);
        }
        for (uint32_t d = 0; d <= c->days; d++) {
                double x = 60 + 860.0 * d * 24 / (n - 1);

                fprintf(f, "<line x1='%.1f' x2='%.1f' y1='400' y2='405' stroke='black'/>"
                           "<text x='%.1f' y='420' text-anchor='middle'>%u</text>\n", x, x, x, d);
        }
        fprintf(f, "<text x='490' y='440' text-anchor='middle'>day</text>\n");
        svg_line(f, plain->hour_max, n, ymax, "#d62728", NULL);
        svg_line(f, plain->hour_p99, n, ymax, "#d62728", "4,3");
        svg_line(f, plain->hour_mean, n, ymax, "#999", NULL);
        svg_line(f, aware->hour_max, n, ymax, "#1f77b4", NULL);
        svg_line(f, aware->hour_p99, n, ymax, "#1f77b4", "4,3");
        fprintf(f, "<text x='70' y='458' fill='#d62728'>unaware: max (solid), p99 (dashed)</text>"
                   "<text x='340' y='458' fill='#1f77b4'>aware: max (solid), p99 (dashed)</text>"
                   "<text x='600' y='458' fill='#999'>mean of all hosts</text>\n</svg>\n");
        if (fclose(f) != 0)
                return lsc_err_set(-EIO, "cannot write %s", path);
        return 0;
}

static int usage(void)
{
        fprintf(stderr, "usage: mayfly-sim [--seeds FIRST-LAST | --seed N] [--quick] [--samples N] [--svg FILE]\n"
                        "  the fixed model: 500 hosts, 14 days, seeds 1-5 (docs/mayflies.md)\n"
                        "  --quick  50 hosts, 3 days, seed 1 unless given: a smoke test\n"
                        "  --samples N  hosts an aware decision compares (default %u)\n",
                SCHED_AWARE_SAMPLES_DEFAULT);
        return 2;
}

int main(int argc, char **argv)
{
        uint64_t first = 1, last = 5;
        const char *svg = NULL;
        bool quick = false, seeds_given = false;
        struct cfg base = { .hosts = HOSTS, .days = DAYS, .samples = SCHED_AWARE_SAMPLES_DEFAULT };
        uint64_t samples = SCHED_AWARE_SAMPLES_DEFAULT, pct;
        int only = -1;
        static double col[NROWS][7][64];
        struct result plot[2] = { { 0 } };
        clock_t cpu0 = clock();
        int r;

        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--quick"))
                        quick = true;
                else if (!strcmp(argv[i], "--samples") && i + 1 < argc) {
                        if (lsc_parse_u64("--samples", argv[++i], &samples) < 0 || samples < 1 ||
                            samples > SCHED_AWARE_SAMPLES_MAX)
                                return usage();
                        base.samples = (uint32_t)samples;
                } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
                        if (lsc_parse_u64("--only", argv[++i], &pct) < 0 || pct > 100)
                                return usage();
                        only = (int)pct;
                } else if (!strcmp(argv[i], "--svg") && i + 1 < argc)
                        svg = argv[++i];
                else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
                        if (lsc_parse_u64("--seed", argv[++i], &first) < 0)
                                return usage();
                        last = first;
                        seeds_given = true;
                } else if (!strcmp(argv[i], "--seeds") && i + 1 < argc) {
                        char *dash = strchr(argv[++i], '-');

                        if (!dash)
                                return usage();
                        *dash = '\0';
                        if (lsc_parse_u64("--seeds", argv[i], &first) < 0 ||
                            lsc_parse_u64("--seeds", dash + 1, &last) < 0 || last < first)
                                return usage();
                        seeds_given = true;
                } else
                        return usage();
        }
        if (quick) {
                base.hosts = 50;
                base.days = 3;
                if (!seeds_given)
                        first = last = 1;
        }
        if (last - first >= 64) {
                fprintf(stderr, "mayfly-sim: at most 64 seeds\n");
                return 2;
        }
        for (uint32_t m = 0; m < MINUTES_PER_DAY; m++)
                cycle_tab[m] = (float)(1 + CYCLE_AMPLITUDE * cos(2 * M_PI * m / MINUTES_PER_DAY));
        if (svg)
                for (int k = 0; k < 2; k++) {
                        uint32_t hours = base.days * 24;

                        plot[k].hour_max = calloc(hours, sizeof(float));
                        plot[k].hour_p99 = calloc(hours, sizeof(float));
                        plot[k].hour_mean = calloc(hours, sizeof(float));
                        if (!plot[k].hour_max || !plot[k].hour_p99 || !plot[k].hour_mean) {
                                fprintf(stderr, "mayfly-sim: out of memory\n");
                                return 1;
                        }
                }
        unsigned nseeds = (unsigned)(last - first + 1);
        printf("mayfly-sim: %u hosts x %u vCPUs (allocation ratio %u), %u days at 1-minute steps, "
               "lifetime 7 days, seeds %llu-%llu\n", base.hosts, PHYS_VCPUS, ALLOC_RATIO, base.days,
               (unsigned long long)first, (unsigned long long)last);
        for (uint64_t seed = first; seed <= last; seed++) {
                struct server *pop;
                double *mu;
                uint32_t n;
                struct cfg c = base;

                c.seed = seed;
                if ((r = population_draw(&c, &pop, &n, &mu)) < 0) {
                        fprintf(stderr, "mayfly-sim: %s\n", lsc_err_msg(r));
                        return 1;
                }
                printf("seed %llu: %u servers\n", (unsigned long long)seed, n);
                for (unsigned row = 0; row < NROWS; row++) {
                        struct result res = { 0 };
                        bool plotted = svg && seed == first && mayfly_pcts[row / 2] == 70;

                        if (only >= 0 && mayfly_pcts[row / 2] != (unsigned)only)
                                continue;

                        c.pct = mayfly_pcts[row / 2];
                        c.aware = row % 2;
                        if (plotted) {
                                res.hour_max = plot[c.aware].hour_max;
                                res.hour_p99 = plot[c.aware].hour_p99;
                                res.hour_mean = plot[c.aware].hour_mean;
                        }
                        r = run_one(&c, pop, mu, n, &res);
                        if (r < 0) {
                                fprintf(stderr, "mayfly-sim: seed %llu, %u%% %s: %s\n",
                                        (unsigned long long)seed, c.pct, c.aware ? "aware" : "unaware",
                                        lsc_err_msg(r));
                                return 1;
                        }
                        unsigned si = (unsigned)(seed - first);
                        col[row][0][si] = res.hot100;
                        col[row][1][si] = res.hot90;
                        col[row][2][si] = res.max_load * 100;
                        col[row][3][si] = res.stddev * 100;
                        col[row][4][si] = res.turnovers_per_day;
                        col[row][5][si] = (double)res.shifted;
                        col[row][6][si] = (double)res.early;
                        fprintf(stderr, "  seed %llu %3u%% %-7s hot>100%% %7.0f  hot>90%% %7.0f  max %5.1f%%  "
                                "early %llu  shifted %llu (max %lld s)  no fit %llu\n",
                                (unsigned long long)seed, c.pct, c.aware ? "aware" : "unaware", res.hot100,
                                res.hot90, res.max_load * 100, (unsigned long long)res.early,
                                (unsigned long long)res.shifted, (long long)res.max_shift_s,
                                (unsigned long long)res.nofit);
                        fprintf(stderr, "    hot>100%% by day:");
                        for (uint32_t d = 0; d < c.days; d++)
                                fprintf(stderr, " %llu", (unsigned long long)res.hot100_day[d]);
                        fprintf(stderr, "\n");
                }
                free(pop);
                free(mu);
        }
        if (svg) {
                struct cfg c = base;

                c.seed = first;
                c.pct = 70;
                if ((r = svg_write(svg, &c, &plot[1], &plot[0])) < 0) {
                        fprintf(stderr, "mayfly-sim: %s\n", lsc_err_msg(r));
                        return 1;
                }
                for (int k = 0; k < 2; k++) {
                        free(plot[k].hour_max);
                        free(plot[k].hour_p99);
                        free(plot[k].hour_mean);
                }
        }

        struct stat st[NROWS][7];
        for (unsigned row = 0; row < NROWS; row++)
                for (int k = 0; k < 7; k++)
                        st[row][k] = stat_of(col[row][k], nseeds);
        printf("\nmean ± sd over %u seed%s; hot: host-minutes with measured load above 100%% / 90%% "
               "of physical vCPUs\n", nseeds, nseeds == 1 ? "" : "s");
        printf("| mayflies | aware | hot >100%% | hot >90%% | max load %% | stddev %% | turnovers/day "
               "| shifted/run | early/run |\n|---|---|---|---|---|---|---|---|---|\n");
        for (unsigned row = 0; row < NROWS; row++)
                printf("| %u%% | %s | %.0f ± %.0f | %.0f ± %.0f | %.1f ± %.1f | %.2f ± %.2f | %.0f ± %.0f "
                       "| %.0f | %.0f |\n", mayfly_pcts[row / 2], row % 2 ? "on" : "off",
                       st[row][0].mean, st[row][0].sd, st[row][1].mean, st[row][1].sd, st[row][2].mean,
                       st[row][2].sd, st[row][3].mean, st[row][3].sd, st[row][4].mean, st[row][4].sd,
                       st[row][5].mean, st[row][6].mean);
        /* The 70% aware row against 0% (same switch, and today's scheduler) and against
         * 70% unaware, on hot >100% host-minutes. */
        double a70 = st[5][0].mean, u70 = st[4][0].mean, a0 = st[1][0].mean, u0 = st[0][0].mean;
        double cut0 = a0 > 0 ? 100 * (1 - a70 / a0) : 0, cut0u = u0 > 0 ? 100 * (1 - a70 / u0) : 0;
        double cutu = u70 > 0 ? 100 * (1 - a70 / u70) : 0;
        printf("\n70%% mayflies, aware: hot >100%% host-minutes %.1f%% below 0%% aware (goal 90), %.1f%% "
               "below 0%% unaware, %.1f%% below 70%% unaware (goal 50)\n", cut0, cut0u, cutu);
        printf("cpu time %.1f s\n", (double)(clock() - cpu0) / CLOCKS_PER_SEC);
        printf("{\"seeds\":[%llu,%llu],\"hosts\":%u,\"days\":%u,\"rows\":[", (unsigned long long)first,
               (unsigned long long)last, base.hosts, base.days);
        for (unsigned row = 0; row < NROWS; row++)
                printf("%s{\"mayfly_pct\":%u,\"aware\":%s,\"hot_minutes_100\":%.1f,\"hot_minutes_90\":%.1f,"
                       "\"max_load\":%.4f,\"stddev_load\":%.4f,\"turnovers_per_day\":%.1f,"
                       "\"hot_minutes_100_sd\":%.1f}", row ? "," : "", mayfly_pcts[row / 2],
                       row % 2 ? "true" : "false", st[row][0].mean, st[row][1].mean, st[row][2].mean / 100,
                       st[row][3].mean / 100, st[row][4].mean, st[row][0].sd);
        printf("],\"cut_vs_no_mayflies_pct\":%.1f,\"cut_vs_no_mayflies_unaware_pct\":%.1f,"
               "\"cut_vs_unaware_pct\":%.1f}\n", cut0, cut0u, cutu);
        return 0;
}
