/* The turnover planner: the budget of turnovers at once (cloud and group), the queue
 * of deaths by deadline, the jitter that spreads them, and early retirement from hot
 * hosts. Pure decisions over the caller's records; see mayfly.h for the loop. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "mayfly.h"

int mayfly_limits_check(const struct mayfly_limits *lim)
{
        if (lim->turnover_max_pct > 100 || lim->jitter_pct > 100 || lim->early_pct > 100)
                return lsc_err_set(-EINVAL, "mayfly limits: turnover_max, jitter and early are "
                                   "percentages (0-100)");
        if (lim->cool_pct > lim->hot_pct)
                return lsc_err_set(-EINVAL, "mayfly limits: cool (%u%%) must not exceed hot (%u%%)",
                                   lim->cool_pct, lim->hot_pct);
        return 0;
}

uint64_t mayfly_budget(uint32_t turnover_max_pct, uint64_t identities)
{
        /* Integer arithmetic: the floor is exact, and 100k identities at 1% is 1000. */
        uint64_t b = identities / 100 * turnover_max_pct + identities % 100 * turnover_max_pct / 100;

        return b ? b : 1;
}

int64_t mayfly_expires_at(int64_t bound_at, uint64_t lifetime_s, uint32_t jitter_pct, uint64_t draw)
{
        uint64_t span = (unsigned __int128)lifetime_s * (jitter_pct > 100 ? 100 : jitter_pct) / 100;
        /* Uniform in [0, span] from the draw's top bits: multiply-shift, no modulo bias
         * worth the name at these sizes. */
        uint64_t early = (uint64_t)(((unsigned __int128)(draw >> 11) * (span + 1)) >> 53);

        return bound_at + (int64_t)(lifetime_s - early);
}

/* ---- which deaths start now ---- */

static int cmp_due(const void *a, const void *b)
{
        const struct mayfly_due *x = a, *y = b;

        if (x->deadline != y->deadline)
                return x->deadline < y->deadline ? -1 : 1;
        return (x->cookie > y->cookie) - (x->cookie < y->cookie);
}

static uint64_t group_load(const struct mayfly_flight *fl, const struct mayfly_due *admitted, size_t na,
                           uint64_t group)
{
        uint64_t n = 0;

        for (size_t i = 0; i < fl->ngroups; i++)
                n += fl->groups[i] == group;
        for (size_t i = 0; i < na; i++)
                n += admitted[i].group == group;
        return n;
}

size_t mayfly_admit(const struct mayfly_limits *lim, uint64_t identities, const struct mayfly_flight *fl,
                    struct mayfly_due *due, size_t ndue)
{
        uint64_t budget = mayfly_budget(lim->turnover_max_pct, identities);
        size_t na = 0;

        if (ndue > 1)
                qsort(due, ndue, sizeof(*due), cmp_due);
        for (size_t i = 0; i < ndue && fl->total + na < budget; i++) {
                struct mayfly_due d = due[i];

                if (d.group && lim->group_max && group_load(fl, due, na, d.group) >= lim->group_max)
                        continue;
                /* Rotate it to the end of the admitted prefix: both parts keep their order. */
                memmove(&due[na + 1], &due[na], (i - na) * sizeof(*due));
                due[na++] = d;
        }
        return na;
}

/* ---- the deadline-ordered queue ---- */

static bool item_before(const struct mayfly_item *a, const struct mayfly_item *b)
{
        return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

void mayfly_heap_free(struct mayfly_heap *h)
{
        free(h->v);
        *h = (struct mayfly_heap){ 0 };
}

int mayfly_heap_push(struct mayfly_heap *h, int64_t deadline, uint64_t cookie)
{
        struct mayfly_item it = { .deadline = deadline, .seq = h->seq, .cookie = cookie };
        size_t i;

        if (h->n == h->cap) {
                size_t cap = h->cap ? h->cap * 2 : 64;
                struct mayfly_item *v = realloc(h->v, cap * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                h->v = v;
                h->cap = cap;
        }
        h->seq++;
        for (i = h->n++; i > 0; i = (i - 1) / 2) {
                size_t parent = (i - 1) / 2;

                if (!item_before(&it, &h->v[parent]))
                        break;
                h->v[i] = h->v[parent];
        }
        h->v[i] = it;
        return 0;
}

bool mayfly_heap_peek(const struct mayfly_heap *h, struct mayfly_item *ret)
{
        if (!h->n)
                return false;
        *ret = h->v[0];
        return true;
}

bool mayfly_heap_pop(struct mayfly_heap *h, struct mayfly_item *ret)
{
        struct mayfly_item last;
        size_t i = 0;

        if (!h->n)
                return false;
        *ret = h->v[0];
        last = h->v[--h->n];
        for (;;) {
                size_t c = 2 * i + 1;

                if (c >= h->n)
                        break;
                if (c + 1 < h->n && item_before(&h->v[c + 1], &h->v[c]))
                        c++;
                if (!item_before(&h->v[c], &last))
                        break;
                h->v[i] = h->v[c];
                i = c;
        }
        if (h->n)
                h->v[i] = last;
        return true;
}

/* ---- moving load off hot hosts at death ---- */

int64_t mayfly_early_from(int64_t bound_at, int64_t expires_at, uint32_t early_pct)
{
        int64_t life = expires_at > bound_at ? expires_at - bound_at : 0;

        return expires_at - (int64_t)((unsigned __int128)life * (early_pct > 100 ? 100 : early_pct) / 100);
}

uint64_t mayfly_excess(const struct mayfly_limits *lim, uint64_t peak_m, uint64_t phys_m)
{
        uint64_t cool = (unsigned __int128)phys_m * lim->cool_pct / 100;

        if ((unsigned __int128)peak_m * 100 <= (unsigned __int128)phys_m * lim->hot_pct)
                return 0;
        return peak_m > cool ? peak_m - cool : 0;
}

size_t mayfly_pick_early(const struct mayfly_limits *lim, const struct mayfly_server *s, size_t n,
                         int64_t now, uint64_t excess_m, uint32_t *ret_idx)
{
        size_t ne = 0, one = SIZE_MAX, picked = 0;
        uint64_t shed = 0;

        if (!excess_m)
                return 0;
        for (size_t i = 0; i < n; i++)
                if (now < s[i].expires_at && now >= mayfly_early_from(s[i].bound_at, s[i].expires_at,
                                                                      lim->early_pct))
                        ret_idx[ne++] = (uint32_t)i;
        /* The smallest that covers alone: one turnover, the least load moved. */
        for (size_t i = 0; i < ne; i++)
                if (s[ret_idx[i]].load_m >= excess_m &&
                    (one == SIZE_MAX || s[ret_idx[i]].load_m < s[ret_idx[one]].load_m))
                        one = i;
        if (one != SIZE_MAX) {
                ret_idx[0] = ret_idx[one];
                return 1;
        }
        /* Else the largest first: insertion sort, a host holds a few dozen. */
        for (size_t i = 1; i < ne; i++)
                for (size_t j = i; j > 0 && s[ret_idx[j]].load_m > s[ret_idx[j - 1]].load_m; j--) {
                        uint32_t t = ret_idx[j];

                        ret_idx[j] = ret_idx[j - 1];
                        ret_idx[j - 1] = t;
                }
        while (picked < ne && shed < excess_m)
                shed += s[ret_idx[picked++]].load_m;
        return picked;
}
