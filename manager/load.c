/* Measured load histories: fixed memory per host and per identity, updated by the
 * heartbeats' samples and read by show (and a load-aware scheduler). No clock of its
 * own: callers pass the wall time, so tests replay days in microseconds. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>
#include "load.h"

const char *const load_metric_names[LOAD_METRIC_COUNT] = {
        [LOAD_CPU] = "cpu",
        [LOAD_MEMORY] = "memory",
};

/* Packed units per metric's unit: milli-vCPUs, MiB. */
static const double scale[LOAD_METRIC_COUNT] = { [LOAD_CPU] = 1000.0, [LOAD_MEMORY] = 1.0 };

/* 11-bit mantissa, 5-bit exponent: below 2048 exact, above it (2048 + m) << (e - 1). */
uint16_t load_pack(double v)
{
        double q;
        long long mr;
        unsigned e = 1;

        if (!(v > 0.0))
                return 0;
        if (v < 2047.5)
                return (uint16_t)llround(v);
        while (e < 32 && v / ldexp(1.0, (int)e - 1) >= 4095.5)
                e++;
        if (e >= 32)
                return UINT16_MAX;
        q = v / ldexp(1.0, (int)e - 1);
        mr = llround(q);
        if (mr >= 4096) {
                e++;
                mr = 2048;
        }
        if (e >= 32)
                return UINT16_MAX;
        return (uint16_t)((e << 11) | (unsigned)(mr - 2048));
}

double load_unpack(uint16_t p)
{
        unsigned e = p >> 11, m = p & 2047u;

        return e == 0 ? (double)m : ldexp(2048.0 + m, (int)e - 1);
}

bool load_hist_known(const struct load_hist *h)
{
        return h->minute != 0;
}

static void close_hour(struct load_hist *h, int32_t hour)
{
        unsigned b = (unsigned)(hour % LOAD_HOURS);

        if (!h->hour_n)
                return;
        for (int k = 0; k < LOAD_METRIC_COUNT; k++) {
                double mean = h->hour_sum[k] / h->hour_n * scale[k];

                if (h->day_seen & (1u << b))
                        mean = load_unpack(h->day[b][k]) + LOAD_DAY_ALPHA * (mean - load_unpack(h->day[b][k]));
                h->day[b][k] = load_pack(mean);
                h->hour_sum[k] = 0;
        }
        h->day_seen |= 1u << b;
        h->hour_n = 0;
}

/* The minute being summed ends: its mean goes into the ring and the hour; minutes
 * skipped without samples leave holes. */
static void close_minute(struct load_hist *h, int32_t next)
{
        int32_t m = h->minute;
        unsigned slot = (unsigned)(m % LOAD_MINUTES);

        if (h->n) {
                for (int k = 0; k < LOAD_METRIC_COUNT; k++) {
                        double mean = h->sum[k] / h->n;

                        h->ring[slot][k] = load_pack(mean * scale[k]);
                        h->hour_sum[k] += (float)mean;
                        h->sum[k] = 0;
                }
                h->ring_valid |= 1ull << slot;
                h->hour_n++;
                h->n = 0;
        }
        if (next / 60 != m / 60)
                close_hour(h, m / 60);
        for (int32_t k = m + 1; k <= next && k <= m + LOAD_MINUTES; k++)
                h->ring_valid &= ~(1ull << (unsigned)(k % LOAD_MINUTES));
        h->minute = next;
}

void load_hist_sample(struct load_hist *h, double cpu_vcpus, double memory_mib, int64_t wall_s)
{
        double v[LOAD_METRIC_COUNT] = { [LOAD_CPU] = cpu_vcpus, [LOAD_MEMORY] = memory_mib };
        int32_t minute = (int32_t)(wall_s / 60);

        if (minute < 1)
                minute = 1;              /* 0 means empty; 1970 is not a real clock anyway */
        if (h->minute && minute > h->minute)
                close_minute(h, minute);
        if (!h->minute)
                h->minute = minute;
        for (int k = 0; k < LOAD_METRIC_COUNT; k++) {
                if (!(v[k] >= 0.0) || isinf(v[k]))
                        v[k] = 0.0;
                h->now[k] = (float)v[k];
                if (h->n < UINT16_MAX)
                        h->sum[k] += (float)v[k];
        }
        if (h->n < UINT16_MAX)
                h->n++;
        h->last_s = wall_s > 0 && wall_s < UINT32_MAX ? (uint32_t)wall_s : h->last_s;
}

int load_hist_summary(const struct load_hist *h, int64_t wall_s, struct load_summary *ret)
{
        struct load_summary s = {0};
        int64_t first = wall_s / 60 - (LOAD_MINUTES - 1);     /* the oldest minute in the hour */
        double sum[LOAD_METRIC_COUNT] = {0};

        if (!load_hist_known(h))
                return -ENODATA;
        for (int k = 0; k < LOAD_METRIC_COUNT; k++)
                s.now[k] = h->now[k];
        s.sampled_at = h->last_s;
        for (unsigned i = 0; i < LOAD_MINUTES; i++) {
                int32_t m;

                if (!(h->ring_valid & (1ull << i)))
                        continue;
                m = h->minute - (int32_t)((h->minute - (int32_t)i + LOAD_MINUTES) % LOAD_MINUTES);
                if (m == h->minute || m < first)
                        continue;
                for (int k = 0; k < LOAD_METRIC_COUNT; k++) {
                        double v = load_unpack(h->ring[i][k]) / scale[k];

                        sum[k] += v;
                        if (v > s.peak_1h[k])
                                s.peak_1h[k] = v;
                }
                s.minutes_1h++;
        }
        if (h->n && h->minute >= first) {
                for (int k = 0; k < LOAD_METRIC_COUNT; k++) {
                        double v = h->sum[k] / h->n;

                        sum[k] += v;
                        if (v > s.peak_1h[k])
                                s.peak_1h[k] = v;
                }
                s.minutes_1h++;
        }
        for (int k = 0; k < LOAD_METRIC_COUNT && s.minutes_1h; k++)
                s.mean_1h[k] = sum[k] / s.minutes_1h;
        *ret = s;
        return 0;
}

int load_hist_profile(const struct load_hist *h, enum load_metric metric, double ret[LOAD_HOURS])
{
        int n = 0;

        for (unsigned b = 0; b < LOAD_HOURS; b++) {
                if (h->day_seen & (1u << b)) {
                        ret[b] = load_unpack(h->day[b][metric]) / scale[metric];
                        n++;
                } else {
                        ret[b] = -1.0;
                }
        }
        return n;
}

int load_hist_expected(const struct load_hist *h, enum load_metric metric, int hour, int64_t wall_s,
                       double *ret)
{
        struct load_summary s;
        double prof[LOAD_HOURS], sum = 0;
        int n;

        if ((unsigned)metric >= LOAD_METRIC_COUNT || hour < -1 || hour >= LOAD_HOURS)
                return -EINVAL;
        if (load_hist_summary(h, wall_s, &s) < 0)
                return -ENODATA;
        n = load_hist_profile(h, metric, prof);
        if (hour >= 0 && prof[hour] >= 0) {
                *ret = prof[hour];
                return 0;
        }
        if (hour < 0 && n > 0) {
                for (int b = 0; b < LOAD_HOURS; b++)
                        if (prof[b] >= 0)
                                sum += prof[b];
                *ret = sum / n;
                return 0;
        }
        *ret = s.minutes_1h ? s.mean_1h[metric] : s.now[metric];
        return 0;
}

static uint32_t to_m(double v)
{
        v = round(v * 1000.0);
        return v <= 0 ? 0 : v >= UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

int load_hist_forecast_m(const struct load_hist *h, int64_t wall_s, uint32_t ret[LOAD_HOURS], uint32_t *ret_mean_m)
{
        double prof[LOAD_HOURS], mean;
        int n;

        if (load_hist_expected(h, LOAD_CPU, -1, wall_s, &mean) < 0)
                return -ENODATA;
        n = load_hist_profile(h, LOAD_CPU, prof);
        for (int b = 0; b < LOAD_HOURS; b++)
                ret[b] = to_m(prof[b] >= 0 ? prof[b] : mean);
        *ret_mean_m = to_m(mean);
        return n;
}

/* ---- identities ---- */

/* The canonical "8-4-4-4-12" text to 16 bytes (libuuid's parser, as store.c uses). */
static int key_of(const char *uuid, uint8_t key[16])
{
        if (!uuid || strlen(uuid) != 36 || uuid_parse(uuid, key) != 0)
                return -EINVAL;
        return 0;
}

void load_init(struct load *ld)
{
        memset(ld, 0, sizeof(*ld));
}

void load_fini(struct load *ld)
{
        struct load_identity *e, *tmp;

        HASH_ITER(hh, ld->by_uuid, e, tmp) {
                HASH_DEL(ld->by_uuid, e);
                free(e);
        }
        memset(ld, 0, sizeof(*ld));
}

int load_identity_sample(struct load *ld, const char *uuid, double cpu_vcpus, double memory_mib, int64_t wall_s)
{
        struct load_identity *e;
        uint8_t key[16];

        if (key_of(uuid, key) < 0)
                return -EINVAL;
        HASH_FIND(hh, ld->by_uuid, key, sizeof(key), e);
        if (!e) {
                if (!(e = calloc(1, sizeof(*e))))
                        return -ENOMEM;
                memcpy(e->key, key, sizeof(key));
                HASH_ADD(hh, ld->by_uuid, key, sizeof(e->key), e);
                ld->n++;
        }
        load_hist_sample(&e->hist, cpu_vcpus, memory_mib, wall_s);
        return 0;
}

const struct load_hist *load_identity_find(const struct load *ld, const char *uuid)
{
        struct load_identity *e;
        uint8_t key[16];

        if (key_of(uuid, key) < 0)
                return NULL;
        HASH_FIND(hh, ld->by_uuid, key, sizeof(key), e);
        return e ? &e->hist : NULL;
}

size_t load_expire(struct load *ld, int64_t wall_s)
{
        struct load_identity *e, *tmp;
        size_t n = 0;

        HASH_ITER(hh, ld->by_uuid, e, tmp) {
                if (wall_s - (int64_t)e->hist.last_s <= LOAD_FORGET_S)
                        continue;
                HASH_DEL(ld->by_uuid, e);
                free(e);
                ld->n--;
                n++;
        }
        return n;
}

size_t load_bytes(const struct load *ld)
{
        size_t b = ld->n * sizeof(struct load_identity);

        if (ld->by_uuid)
                b += sizeof(UT_hash_table) + ld->by_uuid->hh.tbl->num_buckets * sizeof(UT_hash_bucket);
        return b;
}
