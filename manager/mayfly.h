/* The turnover planner: which mayfly deaths may start now and which wait, the
 * deadline-ordered queue they wait in, the jitter of expires_at, and which mayflies of
 * a hot host retire early. Pure: no I/O, no globals, no clock; the caller passes now
 * (seconds, the clock of expires_at) and its random draws, so lscd's reconcile loop and
 * bench/mayfly_sim.c run the same decisions.
 *
 * A caller with per-server records (uuid, group, host, bound_at, expires_at, size):
 *   1. at binding: expires_at = mayfly_expires_at(now, lifetime_s, lim.jitter_pct, draw);
 *      push (expires_at, server) on a mayfly_heap;
 *   2. each tick: pop every item with deadline <= now into a mayfly_due array, add the
 *      early retirements of hot hosts (mayfly_pick_early, deadline now), call
 *      mayfly_admit with the turnovers in flight; start due[0..n); push due[n..) back
 *      with their deadlines: shifted, never skipped;
 *   3. a turnover leaves "in flight" when its rebirth runs (or fails back to pending). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mayfly_limits {
        uint32_t turnover_max_pct;      /* turnovers at once: this % of identities, at least 1 */
        uint32_t group_max;             /* turnovers at once per group; 0: no group limit */
        uint32_t jitter_pct;            /* expires_at falls up to this % of the lifetime early */
        uint32_t early_pct;             /* a hot host's mayfly may retire this % of its life early */
        uint32_t hot_pct;               /* a host is hot when its forecast peak exceeds this % ... */
        uint32_t cool_pct;              /* ... and early retirements aim to bring it below this % */
};
#define MAYFLY_LIMITS_DEFAULT                                                   \
        ((struct mayfly_limits){ .turnover_max_pct = 1, .group_max = 1, .jitter_pct = 10, \
                                 .early_pct = 20, .hot_pct = 90, .cool_pct = 85 })

/* -EINVAL (with the detail) when a percentage is out of range or cool_pct > hot_pct. */
int mayfly_limits_check(const struct mayfly_limits *lim);

/* How many turnovers may run at once: max(1, ⌊turnover_max_pct/100 × identities⌋). */
uint64_t mayfly_budget(uint32_t turnover_max_pct, uint64_t identities);

/* expires_at for a binding made at bound_at: the lifetime less a jitter uniform in
 * [0, jitter_pct % of the lifetime], from draw (any 64-bit random number). Never later
 * than bound_at + lifetime_s: the lifetime is a maximum. */
int64_t mayfly_expires_at(int64_t bound_at, uint64_t lifetime_s, uint32_t jitter_pct, uint64_t draw);

/* ---- which deaths start now ---- */

struct mayfly_due {
        int64_t deadline;               /* expires_at; now for an early retirement */
        uint64_t group;                 /* the caller's group id; 0: none */
        uint64_t cookie;                /* the caller's: an index or a handle */
};

/* The turnovers in flight, as the budget counts them. */
struct mayfly_flight {
        uint64_t total;
        const uint64_t *groups;         /* the group of each one in flight (0s may be left out) */
        size_t ngroups;
};

/* Orders due by deadline (then cookie), then moves to the front, earliest first, those
 * that may start now: within the cloud's budget and each group's group_max, counting
 * those in flight and those admitted before them. Returns n: due[0..n) may start;
 * due[n..) are shifted, still in deadline order: keep them and ask again, they go
 * first when room frees. */
size_t mayfly_admit(const struct mayfly_limits *lim, uint64_t identities, const struct mayfly_flight *fl,
                    struct mayfly_due *due, size_t ndue);

/* ---- the deadline-ordered queue ---- */

struct mayfly_item {
        int64_t deadline;
        uint64_t seq;                   /* push order: equal deadlines leave first in, first out */
        uint64_t cookie;
};

/* A binary min-heap by (deadline, seq). Zeroed is empty; items cannot be removed
 * from the middle: on pop, skip the ones whose cookie no longer stands for a
 * waiting turnover (the server was deleted or retired early). */
struct mayfly_heap {
        struct mayfly_item *v;
        size_t n, cap;
        uint64_t seq;
};

void mayfly_heap_free(struct mayfly_heap *h);
/* 0, or -ENOMEM with the heap unchanged. */
int mayfly_heap_push(struct mayfly_heap *h, int64_t deadline, uint64_t cookie);
/* false when empty. */
bool mayfly_heap_peek(const struct mayfly_heap *h, struct mayfly_item *ret);
bool mayfly_heap_pop(struct mayfly_heap *h, struct mayfly_item *ret);

/* ---- moving load off hot hosts at death ---- */

/* One mayfly bound to a hot host. */
struct mayfly_server {
        int64_t bound_at, expires_at;
        uint32_t load_m;                /* its expected load at the host's peak, milli-vCPUs */
};

/* When a mayfly enters its early window: expires_at less early_pct % of its life. */
int64_t mayfly_early_from(int64_t bound_at, int64_t expires_at, uint32_t early_pct);

/* How much load (milli-vCPUs) a host whose forecast peaks at peak_m must shed: 0 unless
 * the peak exceeds hot_pct % of phys_m, then down to cool_pct %. */
uint64_t mayfly_excess(const struct mayfly_limits *lim, uint64_t peak_m, uint64_t phys_m);

/* Which of a hot host's mayflies retire now to shed excess_m: only those in their
 * early window (early_from <= now < expires_at), as few as possible: the smallest
 * that covers the excess alone, else the largest first until it is covered (or the
 * window runs out of mayflies). Writes their indexes in s to ret_idx (room for n) and
 * returns how many. */
size_t mayfly_pick_early(const struct mayfly_limits *lim, const struct mayfly_server *s, size_t n,
                         int64_t now, uint64_t excess_m, uint32_t *ret_idx);
