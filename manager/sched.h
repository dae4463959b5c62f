/* Placement: which host an identity binds to. A pure function over an in-memory view
 * of the hosts; no I/O, no globals, the random state is an argument, so the same view,
 * request and seed always give the same answer (a run replays). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "validate.h"

/* Power-of-k choices: how many feasible hosts one decision samples. */
#define SCHED_K_DEFAULT 2u
#define SCHED_K_MAX 8u
/* Required labels per request (more is a request error, not a slow path). */
#define SCHED_LABELS_MAX 16u

/* The caller's random state: xoshiro256**, seeded through splitmix64. */
struct sched_rng {
        uint64_t s[4];
};
void sched_rng_seed(struct sched_rng *rng, uint64_t seed);
uint64_t sched_rng_next(struct sched_rng *rng);
/* Uniform in [0, n), n > 0, without modulo bias. */
uint32_t sched_rng_below(struct sched_rng *rng, uint32_t n);

struct sched_res {
        uint64_t vcpus;
        uint64_t memory_mib;
        uint64_t disk_gib;
};

/* How many members of group slot `group` this host holds (count > 0 only). */
struct sched_hgroup {
        uint32_t group;
        uint32_t count;
};

/* One host as placement sees it. The caller writes up, active, healthy and alloc
 * directly (they change with heartbeats and config); everything else (kind above all:
 * the view indexes hosts by kind) changes only through the sched_ functions, which
 * keep the view's indexes consistent. */
struct sched_host {
        /* Read by every filter, kept together. */
        enum lsc_kind kind;
        bool up;                        /* liveness up: not suspect, not lost */
        bool active;                    /* admin active: not drained, not in maintenance */
        bool healthy;                   /* the driver answers in time */
        uint32_t nlabels;
        uint32_t ngroups;
        struct sched_res alloc;         /* physical × allocation ratio, computed by the caller */
        struct sched_res used;          /* kept by sched_apply / sched_unapply */
        uint32_t *labels;               /* interned label ids, sorted */
        struct sched_hgroup *groups;    /* sorted by group slot: O(log n) count lookup */
        uint32_t groups_cap;
        /* Cold: for the caller and for messages. */
        uint64_t id;                    /* the caller's id (the database's) */
        char *name;
};

/* What a new host starts with; labels are set with sched_host_set_labels. */
struct sched_host_spec {
        uint64_t id;
        const char *name;
        enum lsc_kind kind;
        bool up, active, healthy;
        struct sched_res alloc;
};

enum sched_policy {
        SCHED_POLICY_ANTI_AFFINITY,     /* a host holds fewer than max_per_host members */
        SCHED_POLICY_AFFINITY,          /* once placed anywhere, only hosts holding members */
        SCHED_POLICY_COUNT
};
extern const char *const sched_policy_names[SCHED_POLICY_COUNT];

/* One decision's question. A zeroed request is valid: a vm needing nothing, no labels,
 * no group, any host. Host fields are view indexes. */
struct sched_request {
        enum lsc_kind kind;
        struct sched_res need;
        const uint32_t *labels;         /* interned ids; all must be on the host */
        size_t nlabels;
        uint64_t group;                 /* the caller's group id; 0: none */
        enum sched_policy policy;
        uint32_t max_per_host;          /* anti-affinity; 0 means 1 */
        const char *group_name;         /* for messages only; may be NULL */
        bool has_exclude;               /* migrate: never the current host */
        uint32_t exclude_host;
        bool has_to;                    /* migrate --to: only this host, still filtered */
        uint32_t to_host;
        /* Die-off awareness: read by sched_place only when the view's awareness is on,
         * and by sched_apply / sched_unapply to keep the hosts' forecasts current. A
         * zeroed block is a request without a known lifetime or load history. */
        int64_t now;                    /* s, the clock of expires_at and the calendars */
        int64_t expires_at;             /* the binding's planned death; 0: lives on */
        uint32_t load_m;                /* expected mean load, milli-vCPUs; 0: the default share */
        const uint32_t *load_profile_m; /* SCHED_SLOTS expected loads by hour, or NULL: flat */
        bool rebirth;                   /* a mayfly's turnover: may take capacity that frees soon */
        bool load_known;                /* the profile comes from a full day of history */
};

/* Why a host is not feasible: one bit each in a host's mask, one counter each in a
 * summary. The order is the order of the checks; a summary counts each host once,
 * under the first check it fails. */
enum sched_reason {
        SCHED_R_NOT_TARGET,             /* another host was asked for (--to) */
        SCHED_R_EXCLUDED,               /* the identity's current host (migrate) */
        SCHED_R_KIND,
        SCHED_R_NOT_UP,
        SCHED_R_NOT_ACTIVE,
        SCHED_R_UNHEALTHY,
        SCHED_R_LABEL,
        SCHED_R_AFFINITY,               /* holds no member of an affinity group that has some */
        SCHED_R_ANTI_AFFINITY,          /* already holds max_per_host members */
        SCHED_R_VCPUS,
        SCHED_R_MEMORY,
        SCHED_R_DISK,
        SCHED_R_COUNT
};
extern const char *const sched_reason_names[SCHED_R_COUNT];

struct sched_reasons {
        uint32_t hosts;                         /* hosts considered */
        uint32_t count[SCHED_R_COUNT];
        uint32_t label[SCHED_LABELS_MAX];       /* SCHED_R_LABEL split by the first missing label */
};

/* ---- Die-off awareness ----
 * Hosts run hot on *measured* load when reservations are overcommitted. The caller
 * gives each host its physical vCPUs and a forecast of its measured load by hour of
 * day (from the history it keeps); sched_apply adds a mayfly's planned death to its
 * host's calendar. An aware decision samples more feasible hosts and projects each
 * one's load over the request's life (forecast + the request's load − the load of
 * deaths due before each hour, hour by hour), relative to its physical size. A new
 * request, whose load is a guess, takes the host that peaks lowest; a rebirth whose
 * load is known takes the fullest host that stays under the fit target, keeping the
 * big holes for big servers, and counts deaths due within SCHED_SOON_S as gone.
 * Loads are milli-vCPUs; times are seconds on the caller's clock (UTC: slot 0 is
 * 00:00-01:00). The forecasts live beside the host table, not in struct sched_host. */
#define SCHED_SLOTS 24u
#define SCHED_SLOT_S 3600
/* The share of need.vcpus a request without load_m is expected to use. */
#define SCHED_LOAD_DEFAULT_PCT 30u
/* Deaths due within this much of now count as freed for a rebirth. */
#define SCHED_SOON_S 3600
#define SCHED_AWARE_SAMPLES_DEFAULT 32u
#define SCHED_AWARE_SAMPLES_MAX 64u
/* A rebirth whose load is known goes to the fullest sampled host that its projected
 * peak keeps at most this % of physical vCPUs (best fit); others to the coolest. */
#define SCHED_AWARE_FIT_PCT_DEFAULT 88u

/* One planned death on a host's calendar. */
struct sched_death {
        int64_t at;
        uint32_t vcpus;
        uint32_t load_m;                /* the dying binding's expected mean load */
};

/* A host's forecast as sched_place sees it; read-only for callers. */
struct sched_forecast {
        uint32_t phys_m;                /* physical vCPUs × 1000; 0: unknown, alloc.vcpus is used */
        uint32_t ndeaths, deaths_cap;
        uint32_t profile_m[SCHED_SLOTS];
        struct sched_death *deaths;     /* sorted by at */
};

struct sched_view;

int sched_view_new(struct sched_view **ret);
/* Frees the view and NULLs the caller's pointer; usable as a cleanup function. */
void sched_view_free(struct sched_view **vp);
/* k for power-of-k choices, 1..SCHED_K_MAX. */
int sched_view_set_k(struct sched_view *v, unsigned k);
uint32_t sched_view_host_count(const struct sched_view *v);
/* NULL past the end. The pointer is valid until the next sched_host_add. */
struct sched_host *sched_view_host(struct sched_view *v, uint32_t host);
const struct sched_host *sched_view_host_const(const struct sched_view *v, uint32_t host);

/* Hosts are never removed (they persist), so an index stays valid for the view's life.
 * -EEXIST when the id is already there. A replay needs the same view: add hosts and
 * set labels in a stable order (by id). */
int sched_host_add(struct sched_view *v, const struct sched_host_spec *spec, uint32_t *ret_host);
/* The index of the host with this id or name, or -ENOENT. */
int sched_host_find(const struct sched_view *v, uint64_t id);
int sched_host_find_name(const struct sched_view *v, const char *name);
/* Replaces the host's labels with these interned ids (duplicates are dropped). */
int sched_host_set_labels(struct sched_view *v, uint32_t host, const uint32_t *ids, size_t n);

/* Labels are interned "key=value" pairs: hosts and requests hold small integer ids. */
int sched_label_intern(struct sched_view *v, const char *key, const char *value, uint32_t *ret_id);
/* The id of key=value, or -ENOENT when no host or request ever used it. */
int sched_label_find(const struct sched_view *v, const char *key, const char *value);
/* "key=value", or NULL for an unknown id. */
const char *sched_label_name(const struct sched_view *v, uint32_t id);

/* Members of the group on a host: O(log groups on that host). */
uint32_t sched_group_count(const struct sched_view *v, uint64_t group, uint32_t host);

/* Chooses a host for rq: filters, then takes the freest of k random feasible hosts
 * (awareness on: compares `samples` of them by projected load, see above).
 * Samples random hosts instead of scanning, so a decision costs O(k) in the common
 * case; scans only when sampling finds too few. 0 and *ret_host; -ENOSPC when no host
 * fits, with *ret_reasons (may be NULL) filled; -EINVAL for a malformed request. */
int sched_place(const struct sched_view *v, const struct sched_request *rq, struct sched_rng *rng,
                uint32_t *ret_host, struct sched_reasons *ret_reasons);

/* Awareness on or off (off: sched_place is exactly the reservation-only power-of-k).
 * samples: feasible hosts one aware decision compares, 1..SCHED_AWARE_SAMPLES_MAX;
 * fit_pct: the best-fit target for rebirths of known load (0: always the coolest). */
int sched_view_set_aware(struct sched_view *v, bool on, unsigned samples, unsigned fit_pct);
bool sched_view_aware(const struct sched_view *v);
/* Replaces a host's physical vCPUs and load forecast (SCHED_SLOTS milli-vCPU values by
 * hour of day; NULL: leave the forecast). The calendar of deaths is kept by apply. */
int sched_host_set_load(struct sched_view *v, uint32_t host, uint32_t phys_vcpus,
                        const uint32_t *profile_m);
const struct sched_forecast *sched_host_forecast(const struct sched_view *v, uint32_t host);
/* The highest projected load (milli-vCPUs) of the host over [now, now + 24 h): its
 * forecast less the deaths due by each hour. -EINVAL for no such host. */
int64_t sched_host_forecast_peak(const struct sched_view *v, uint32_t host, int64_t now);
/* The request's expected load in hour slot s, milli-vCPUs. */
uint32_t sched_request_load(const struct sched_request *rq, uint32_t slot);

/* Keeps the view current after a binding: used += need, group count += 1. Does not
 * check capacity: the view mirrors the bindings that exist, and the store's
 * compare-and-set is what refuses overbooking. -ENOMEM, -EOVERFLOW or -EINVAL (no such
 * host) leave the view unchanged. */
int sched_apply(struct sched_view *v, const struct sched_request *rq, uint32_t host);
/* Both also add (remove) the request's expected load to (from) the host's forecast,
 * saturating at 0, and its expires_at, when set, to (from) the host's calendar. */
/* Undoes sched_apply; -EINVAL (view unchanged) when the host does not hold that much. */
int sched_unapply(struct sched_view *v, const struct sched_request *rq, uint32_t host);

/* Bit (1 << enum sched_reason) for every check the host fails; 0 when it fits;
 * -EINVAL for a malformed request. */
int sched_host_check(const struct sched_view *v, const struct sched_request *rq, uint32_t host);
/* The feasible hosts in index order: returns how many there are, filling at most cap. */
int sched_feasible_list(const struct sched_view *v, const struct sched_request *rq,
                        uint32_t *ret_hosts, size_t cap);

/* One line for a person. Both return the length snprintf would (so a short buffer is
 * visible) or -EINVAL.
 *   sched_reasons_format: "no host fits: 3 hosts lack label gpu=1, 5 have less than
 *                          8192 MiB free, 2 are not up"
 *   sched_host_explain:   "fits" or "is not up; has 2048 MiB free, needs 8192" */
int sched_reasons_format(const struct sched_view *v, const struct sched_request *rq,
                         const struct sched_reasons *r, char *buf, size_t len);
int sched_host_explain(const struct sched_view *v, const struct sched_request *rq, uint32_t host,
                       char *buf, size_t len);
