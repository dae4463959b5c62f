/* Measured load, in lscd's memory only: per host and per identity a fixed-size history
 * of what the agents' heartbeats say (the last sample, one-minute means for the last
 * hour, and a daily profile of 24 exponentially smoothed hourly means by UTC hour of
 * day). Pure: every function takes the wall time it works at; no I/O, no clock. A
 * restart of lscd forgets it all (docs/load.md). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uthash.h>

#define LOAD_MINUTES 60                  /* the ring: one-minute means of the last hour */
#define LOAD_HOURS 24                    /* the daily profile: one bucket per hour of day */
#define LOAD_DAY_ALPHA 0.25              /* weight of a new hour's mean in its bucket */
#define LOAD_FORGET_S (25 * 3600)        /* an identity silent this long is dropped */

enum load_metric {
        LOAD_CPU,                        /* vCPUs busy */
        LOAD_MEMORY,                     /* MiB in use */
        LOAD_METRIC_COUNT
};
extern const char *const load_metric_names[LOAD_METRIC_COUNT];

/* One history: about 380 bytes whatever its age. Minute means and hourly buckets are
 * kept packed in 16 bits (load_pack: relative error under 1/2000), CPU in milli-vCPUs,
 * memory in MiB. */
struct load_hist {
        int32_t minute;                  /* the wall minute (unix s / 60) being summed; 0: empty */
        uint32_t last_s;                 /* wall second of the last sample */
        float now[LOAD_METRIC_COUNT];    /* the last sample */
        float sum[LOAD_METRIC_COUNT];    /* this minute's samples ... */
        uint16_t n;                      /* ... and how many */
        uint16_t hour_n;                 /* minute means summed for the hour being summed */
        float hour_sum[LOAD_METRIC_COUNT];
        uint64_t ring_valid;             /* bit i: ring[i] holds a minute of the last hour */
        uint32_t day_seen;               /* bit h: day[h] holds a mean */
        uint16_t ring[LOAD_MINUTES][LOAD_METRIC_COUNT];   /* by minute % 60 */
        uint16_t day[LOAD_HOURS][LOAD_METRIC_COUNT];      /* by UTC hour of day */
};

/* 16-bit encoding of a non-negative figure (saturates; NaN and negatives are 0). */
uint16_t load_pack(double v);
double load_unpack(uint16_t p);

/* Adds a sample at wall_s (unix seconds). A sample older than the minute being summed
 * (a wall clock stepped back) counts in that minute. */
void load_hist_sample(struct load_hist *h, double cpu_vcpus, double memory_mib, int64_t wall_s);
/* Whether h holds any sample. */
bool load_hist_known(const struct load_hist *h);

/* What a history says at wall_s: the last sample, and over the last hour (its minute
 * means, the minute being summed included) the mean and the highest minute. */
struct load_summary {
        double now[LOAD_METRIC_COUNT];
        int64_t sampled_at;              /* unix seconds of the last sample */
        double mean_1h[LOAD_METRIC_COUNT];
        double peak_1h[LOAD_METRIC_COUNT];
        unsigned minutes_1h;             /* minutes with samples in the last hour */
};
/* 0, or -ENODATA when h holds no sample (ret untouched). */
int load_hist_summary(const struct load_hist *h, int64_t wall_s, struct load_summary *ret);

/* The daily profile of metric: ret[hour] for hour of day 0-23 (UTC), the smoothed
 * hourly means, -1 for hours never measured. Returns how many hours are measured. */
int load_hist_profile(const struct load_hist *h, enum load_metric metric, double ret[LOAD_HOURS]);
/* What a scheduler can plan with: the expected metric at hour of day `hour` (0-23),
 * or, with hour -1, over the whole day. From the profile where it has that hour (or,
 * for the day, the mean of its measured hours), else the mean of the last hour, else
 * the last sample. -ENODATA when nothing is known. */
int load_hist_expected(const struct load_hist *h, enum load_metric metric, int hour, int64_t wall_s,
                       double *ret);

/* A scheduler's forecast in its units (sched.h on the die-off branch: milli-vCPUs,
 * slot 0 = 00:00-01:00 UTC): ret[hour] the CPU profile, hours not measured yet filled
 * with the day's expected mean, which *ret_mean_m gets too (load_hist_expected with
 * hour -1). Returns how many hours are measured (LOAD_HOURS: a full day of history,
 * the scheduler's load_known), or -ENODATA when nothing is known (ret untouched). */
int load_hist_forecast_m(const struct load_hist *h, int64_t wall_s, uint32_t ret[LOAD_HOURS], uint32_t *ret_mean_m);

/* Identities' histories, keyed by uuid (16 bytes), apart from the records the loop
 * keeps: a history belongs to the identity, so it survives stop, start and re-binding. */
struct load_identity {
        uint8_t key[16];
        struct load_hist hist;
        UT_hash_handle hh;
};

struct load {
        struct load_identity *by_uuid;
        size_t n;
};

void load_init(struct load *ld);
void load_fini(struct load *ld);
/* Records a sample of the identity uuid (canonical text form): -EINVAL for a malformed
 * uuid, -ENOMEM. */
int load_identity_sample(struct load *ld, const char *uuid, double cpu_vcpus, double memory_mib, int64_t wall_s);
/* The identity's history, or NULL when none is known (or uuid is malformed). */
const struct load_hist *load_identity_find(const struct load *ld, const char *uuid);
/* Drops identities with no sample for LOAD_FORGET_S (deleted or long stopped ones):
 * the table stays bounded by the identities that ran in the last day. Returns how many. */
size_t load_expire(struct load *ld, int64_t wall_s);
/* Bytes the table holds (entries and hash buckets), for reports and tests. */
size_t load_bytes(const struct load *ld);
