/* Unit tests for manager/mayfly.c: the turnover budget and group limit, deaths shifted
 * and never skipped, the deadline queue's order, jitter within its bounds, and early
 * retirement only inside its window. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "mayfly.h"
#include "sched.h"

static void budget_is_at_least_one_and_rounds_down(void **state)
{
        assert_int_equal(mayfly_budget(1, 0), 1);
        assert_int_equal(mayfly_budget(1, 50), 1);
        assert_int_equal(mayfly_budget(1, 199), 1);
        assert_int_equal(mayfly_budget(1, 200), 2);
        assert_int_equal(mayfly_budget(1, 250), 2);
        assert_int_equal(mayfly_budget(0, 100000), 1);
        assert_int_equal(mayfly_budget(10, 1005), 100);
        assert_int_equal(mayfly_budget(33, 99), 32);    /* 32.67 */
        assert_int_equal(mayfly_budget(100, 7), 7);
        assert_int_equal(mayfly_budget(1, 100000), 1000);
        /* No overflow in the product for a huge cloud. */
        assert_true(mayfly_budget(100, UINT64_MAX) == UINT64_MAX);
}

static void limits_are_checked(void **state)
{
        struct mayfly_limits lim = MAYFLY_LIMITS_DEFAULT;

        assert_int_equal(mayfly_limits_check(&lim), 0);
        lim.turnover_max_pct = 101;
        assert_int_equal(mayfly_limits_check(&lim), -EINVAL);
        lim = MAYFLY_LIMITS_DEFAULT;
        lim.cool_pct = lim.hot_pct + 1;
        assert_int_equal(mayfly_limits_check(&lim), -EINVAL);
}

static void admit_respects_budget_and_group_max(void **state)
{
        struct mayfly_limits lim = MAYFLY_LIMITS_DEFAULT;
        const uint64_t in_flight[] = { 7 };
        struct mayfly_flight fl = { .total = 1, .groups = in_flight, .ngroups = 1 };
        struct mayfly_due due[6] = {
                { .deadline = 50, .group = 7, .cookie = 1 },
                { .deadline = 10, .group = 7, .cookie = 2 },
                { .deadline = 30, .group = 0, .cookie = 3 },
                { .deadline = 20, .group = 8, .cookie = 4 },
                { .deadline = 40, .group = 8, .cookie = 5 },
                { .deadline = 60, .group = 0, .cookie = 6 },
        };
        size_t n;

        /* 1% of 500 identities: 5 at once, one already in flight; 2 per group. */
        lim.turnover_max_pct = 1;
        lim.group_max = 2;
        n = mayfly_admit(&lim, 500, &fl, due, 6);
        assert_int_equal(n, 4);
        /* Earliest first, until the budget is spent. */
        assert_int_equal(due[0].cookie, 2);
        assert_int_equal(due[1].cookie, 4);
        assert_int_equal(due[2].cookie, 3);
        assert_int_equal(due[3].cookie, 5);
        /* Shifted, still by deadline. */
        assert_int_equal(due[4].cookie, 1);
        assert_int_equal(due[5].cookie, 6);
        /* Room in the budget: 1 (deadline 50) would be group 7's third, 6 goes. */
        n = mayfly_admit(&lim, 100000, &fl, due, 6);
        assert_int_equal(n, 5);
        assert_int_equal(due[4].cookie, 6);
        assert_int_equal(due[5].cookie, 1);
        /* A cloud of 10 identities: max(1, 0) = 1, and it is taken by the one in flight. */
        n = mayfly_admit(&lim, 10, &fl, due, 6);
        assert_int_equal(n, 0);
        fl = (struct mayfly_flight){ 0 };
        n = mayfly_admit(&lim, 10, &fl, due, 6);
        assert_int_equal(n, 1);
        assert_int_equal(due[0].cookie, 2);
        /* group_max 0: no group limit. */
        lim.group_max = 0;
        fl = (struct mayfly_flight){ .total = 1, .groups = in_flight, .ngroups = 1 };
        n = mayfly_admit(&lim, 100000, &fl, due, 6);
        assert_int_equal(n, 6);
}

/* Rounds of a loop: each round admits what it may, the turnovers started last round
 * finish, the shifted ones are asked for again. Every death starts, in deadline order. */
static void shifted_deaths_are_never_skipped(void **state)
{
        struct mayfly_limits lim = MAYFLY_LIMITS_DEFAULT;
        struct mayfly_due due[40];
        uint64_t started[40], groups[40];
        size_t ndue = 40, nstarted = 0;
        int rounds = 0;

        lim.turnover_max_pct = 1;       /* of 300 identities: 3 at once */
        lim.group_max = 1;
        for (int i = 0; i < 40; i++)
                due[i] = (struct mayfly_due){ .deadline = 1000 - 7 * i, .group = 1 + i % 5,
                                              .cookie = (uint64_t)i };
        while (ndue) {
                struct mayfly_flight fl = { .total = 0, .groups = groups, .ngroups = 0 };
                size_t n = mayfly_admit(&lim, 300, &fl, due, ndue);

                assert_true(n >= 1 && n <= 3);
                for (size_t i = 0; i < n; i++) {
                        for (size_t j = i + 1; j < n; j++)
                                assert_true(due[i].group != due[j].group);
                        started[nstarted++] = due[i].cookie;
                }
                memmove(due, due + n, (ndue - n) * sizeof(*due));
                ndue -= n;
                assert_true(++rounds <= 40);
        }
        assert_int_equal(nstarted, 40);
        /* The deadlines fall as i grows: the first started is the last made. */
        assert_int_equal(started[0], 39);
        for (int i = 0; i < 40; i++) {
                int seen = 0;

                for (int j = 0; j < 40; j++)
                        seen += started[j] == (uint64_t)i;
                assert_int_equal(seen, 1);
        }
}

static void heap_pops_by_deadline_then_push_order(void **state)
{
        struct mayfly_heap h = { 0 };
        struct mayfly_item it;
        struct sched_rng rng;
        int64_t last = INT64_MIN;
        uint64_t last_seq = 0;

        assert_false(mayfly_heap_pop(&h, &it));
        assert_false(mayfly_heap_peek(&h, &it));
        sched_rng_seed(&rng, 77);
        for (uint64_t i = 0; i < 5000; i++)
                assert_int_equal(mayfly_heap_push(&h, (int64_t)sched_rng_below(&rng, 300) - 100, i), 0);
        assert_int_equal(h.n, 5000);
        for (int i = 0; i < 5000; i++) {
                struct mayfly_item top;

                assert_true(mayfly_heap_peek(&h, &top));
                assert_true(mayfly_heap_pop(&h, &it));
                assert_memory_equal(&top, &it, sizeof(it));
                assert_true(it.deadline >= last);
                /* Equal deadlines leave in push order: cookies were pushed in order. */
                if (it.deadline == last)
                        assert_true(it.seq > last_seq && it.cookie == it.seq);
                last = it.deadline;
                last_seq = it.seq;
        }
        assert_false(mayfly_heap_pop(&h, &it));
        mayfly_heap_free(&h);
        assert_null(h.v);
}

static void jitter_stays_within_bounds(void **state)
{
        const uint64_t life = 7 * 86400;
        struct sched_rng rng;
        int64_t lo = INT64_MAX, hi = INT64_MIN;

        assert_int_equal(mayfly_expires_at(1000, life, 0, 12345), 1000 + (int64_t)life);
        assert_int_equal(mayfly_expires_at(1000, life, 10, 0), 1000 + (int64_t)life);
        assert_int_equal(mayfly_expires_at(1000, life, 10, UINT64_MAX), 1000 + (int64_t)(life - life / 10));
        sched_rng_seed(&rng, 5);
        for (int i = 0; i < 100000; i++) {
                int64_t e = mayfly_expires_at(1000, life, 10, sched_rng_next(&rng));

                assert_in_range(e, 1000 + life - life / 10, 1000 + life);
                lo = e < lo ? e : lo;
                hi = e > hi ? e : hi;
        }
        /* It spreads: the draws reach both ends of the window. */
        assert_true(lo < 1000 + (int64_t)(life - life / 10) + 600);
        assert_true(hi > 1000 + (int64_t)life - 600);
        /* Never later than the lifetime, whatever the percentage says. */
        assert_int_equal(mayfly_expires_at(0, 100, 250, UINT64_MAX), 0);
}

static void early_retirement_stays_in_its_window(void **state)
{
        struct mayfly_limits lim = MAYFLY_LIMITS_DEFAULT;
        const int64_t day = 86400, now = 100 * day;
        /* Lives of 10 days: a 20% window opens 2 days before death. */
        struct mayfly_server s[5] = {
                { .bound_at = now - 9 * day, .expires_at = now + 1 * day, .load_m = 3000 },  /* in */
                { .bound_at = now - 7 * day, .expires_at = now + 3 * day, .load_m = 9000 },  /* too young */
                { .bound_at = now - 8 * day, .expires_at = now + 2 * day, .load_m = 1000 },  /* just in */
                { .bound_at = now - 10 * day, .expires_at = now, .load_m = 5000 },           /* due: not early */
                { .bound_at = now - 9 * day, .expires_at = now + 1 * day, .load_m = 2000 },  /* in */
        };
        uint32_t idx[5];
        size_t n;

        lim.early_pct = 20;
        assert_int_equal(mayfly_early_from(now - 9 * day, now + day, 20), now - day);
        assert_int_equal(mayfly_early_from(0, 1000, 0), 1000);
        /* The smallest in the window that covers alone. */
        n = mayfly_pick_early(&lim, s, 5, now, 1500, idx);
        assert_int_equal(n, 1);
        assert_int_equal(idx[0], 4);
        /* None covers alone: the largest first, until covered. */
        n = mayfly_pick_early(&lim, s, 5, now, 4500, idx);
        assert_int_equal(n, 2);
        assert_int_equal(idx[0], 0);
        assert_int_equal(idx[1], 4);
        /* More than the window holds: all of it, never the young or the due. */
        n = mayfly_pick_early(&lim, s, 5, now, 100000, idx);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < n; i++)
                assert_true(idx[i] == 0 || idx[i] == 2 || idx[i] == 4);
        assert_int_equal(mayfly_pick_early(&lim, s, 5, now, 0, idx), 0);
        /* A narrower window leaves out the one that had just entered. */
        lim.early_pct = 15;
        n = mayfly_pick_early(&lim, s, 5, now, 100000, idx);
        assert_int_equal(n, 2);
        /* No window: nothing retires early. */
        lim.early_pct = 0;
        assert_int_equal(mayfly_pick_early(&lim, s, 5, now, 100000, idx), 0);
}

static void a_host_is_hot_above_hot_and_sheds_down_to_cool(void **state)
{
        struct mayfly_limits lim = MAYFLY_LIMITS_DEFAULT;

        lim.hot_pct = 90;
        lim.cool_pct = 85;
        assert_int_equal(mayfly_excess(&lim, 28800, 32000), 0);        /* exactly 90% */
        assert_int_equal(mayfly_excess(&lim, 28801, 32000), 28801 - 27200);
        assert_int_equal(mayfly_excess(&lim, 40000, 32000), 40000 - 27200);
        assert_int_equal(mayfly_excess(&lim, 0, 0), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(budget_is_at_least_one_and_rounds_down),
                cmocka_unit_test(limits_are_checked),
                cmocka_unit_test(admit_respects_budget_and_group_max),
                cmocka_unit_test(shifted_deaths_are_never_skipped),
                cmocka_unit_test(heap_pops_by_deadline_then_push_order),
                cmocka_unit_test(jitter_stays_within_bounds),
                cmocka_unit_test(early_retirement_stays_in_its_window),
                cmocka_unit_test(a_host_is_hot_above_hot_and_sheds_down_to_cool),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
