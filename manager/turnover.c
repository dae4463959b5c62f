/* Mayfly turnover's budget and order (turnover.h): the earliest deadline first, never
 * more than the budget at once in the cloud or in a group; what does not fit waits. */
#include <stdbool.h>
#include <stdlib.h>
#include "turnover.h"

uint32_t turnover_budget(uint32_t pct, size_t identities)
{
        uint64_t n = (uint64_t)pct * identities / 100;

        if (n < 1)
                return 1;
        return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

static int by_deadline(const void *a, const void *b)
{
        const struct turnover_cand *x = a, *y = b;

        if (x->expires_s != y->expires_s)
                return x->expires_s < y->expires_s ? -1 : 1;
        return (x->idx > y->idx) - (x->idx < y->idx);
}

size_t turnover_pick(struct turnover_cand *cands, size_t n, const struct turnover_limits *lim,
                     uint32_t *inflight, uint32_t *group_inflight, size_t n_groups)
{
        uint32_t group_max = lim->group_max ? lim->group_max : 1;
        size_t k = 0;

        if (n > 1)
                qsort(cands, n, sizeof(*cands), by_deadline);
        for (size_t i = 0; i < n && *inflight < lim->max; i++) {
                uint32_t g = cands[i].group;
                bool limited = g != 0 && g < n_groups;

                if (limited && group_inflight[g] >= group_max)
                        continue;        /* shifted: its group is at its budget */
                if (limited)
                        group_inflight[g]++;
                (*inflight)++;
                /* keep the order: the ones that start go to the front, the others after */
                if (i != k) {
                        struct turnover_cand c = cands[i];
                        for (size_t j = i; j > k; j--)
                                cands[j] = cands[j - 1];
                        cands[k] = c;
                }
                k++;
        }
        return k;
}
