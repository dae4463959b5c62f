/* Mayfly turnover's budget and order: which due deaths may start now. Pure: no I/O,
 * no view, so the mayfly planner (mayfly.c) can take its place or feed it. */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* A mayfly whose death is due. */
struct turnover_cand {
        int64_t expires_s;               /* its deadline (unix seconds) */
        uint32_t group;                  /* its placement group's id, 0: none */
        size_t idx;                      /* the caller's: which server it is */
};

struct turnover_limits {
        uint32_t max;                    /* turnovers at once in the cloud (turnover_budget) */
        uint32_t group_max;              /* ... per placement group (0: as 1) */
};

/* max(1, floor(pct% of identities)): a cloud of three mayflies still turns over. */
uint32_t turnover_budget(uint32_t pct, size_t identities);

/* Sorts cands by deadline (then idx, so a run replays) and moves to the front those
 * that may start now: in deadline order, each while fewer than lim->max turnovers
 * are in flight (*inflight) and fewer than lim->group_max in its group
 * (group_inflight[group], n_groups entries; a group beyond them or 0 is not limited).
 * Counts each one started into *inflight and group_inflight. Returns how many may
 * start: cands[0..n) start, the rest are shifted (they wait, still in deadline order),
 * never dropped. */
size_t turnover_pick(struct turnover_cand *cands, size_t n, const struct turnover_limits *lim,
                     uint32_t *inflight, uint32_t *group_inflight, size_t n_groups);
