/* turnover.c: the budget, deadline order, and shifting (never skipping) deaths. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "turnover.h"

static void budget_is_at_least_one(void **state)
{
        (void)state;
        assert_int_equal(turnover_budget(10, 3), 1);     /* 0.3 rounds down, then max(1, .) */
        assert_int_equal(turnover_budget(0, 1000), 1);
        assert_int_equal(turnover_budget(10, 0), 1);
}

static void budget_is_a_share_of_identities(void **state)
{
        (void)state;
        assert_int_equal(turnover_budget(10, 100), 10);
        assert_int_equal(turnover_budget(10, 109), 10);  /* floor */
        assert_int_equal(turnover_budget(100, 3), 3);
        assert_int_equal(turnover_budget(25, 100000), 25000);
}

static void earliest_deadline_goes_first(void **state)
{
        struct turnover_cand c[] = { { 300, 0, 0 }, { 100, 0, 1 }, { 200, 0, 2 } };
        struct turnover_limits lim = { .max = 1, .group_max = 1 };
        uint32_t inflight = 0;

        (void)state;
        assert_int_equal(turnover_pick(c, 3, &lim, &inflight, NULL, 0), 1);
        assert_int_equal(c[0].idx, 1);
        assert_int_equal(inflight, 1);
        /* the others are shifted, not dropped, still in deadline order */
        assert_int_equal(c[1].idx, 2);
        assert_int_equal(c[2].idx, 0);
}

static void nothing_starts_while_the_budget_is_in_flight(void **state)
{
        struct turnover_cand c[] = { { 100, 0, 0 }, { 200, 0, 1 } };
        struct turnover_limits lim = { .max = 2, .group_max = 1 };
        uint32_t inflight = 2;

        (void)state;
        assert_int_equal(turnover_pick(c, 2, &lim, &inflight, NULL, 0), 0);
        assert_int_equal(inflight, 2);
        inflight = 1;
        assert_int_equal(turnover_pick(c, 2, &lim, &inflight, NULL, 0), 1);
        assert_int_equal(c[0].idx, 0);
}

static void a_full_group_shifts_its_deaths_but_not_others(void **state)
{
        /* groups 1 and 2; group 1 already has one turnover in flight */
        struct turnover_cand c[] = { { 100, 1, 0 }, { 150, 1, 1 }, { 200, 2, 2 }, { 250, 2, 3 }, { 300, 0, 4 },
                                     { 400, 0, 5 } };
        struct turnover_limits lim = { .max = 10, .group_max = 1 };
        uint32_t inflight = 1, groups[3] = { 0, 1, 0 };

        (void)state;
        assert_int_equal(turnover_pick(c, 6, &lim, &inflight, groups, 3), 3);
        assert_int_equal(c[0].idx, 2);                   /* group 2's first */
        assert_int_equal(c[1].idx, 4);                   /* no group: not limited */
        assert_int_equal(c[2].idx, 5);
        assert_int_equal(groups[1], 1);
        assert_int_equal(groups[2], 1);
        assert_int_equal(inflight, 4);
        /* shifted: group 1's two and group 2's second, in deadline order */
        assert_int_equal(c[3].idx, 0);
        assert_int_equal(c[4].idx, 1);
        assert_int_equal(c[5].idx, 3);
}

static void group_max_allows_several(void **state)
{
        struct turnover_cand c[] = { { 100, 1, 0 }, { 200, 1, 1 }, { 300, 1, 2 } };
        struct turnover_limits lim = { .max = 10, .group_max = 2 };
        uint32_t inflight = 0, groups[2] = { 0, 0 };

        (void)state;
        assert_int_equal(turnover_pick(c, 3, &lim, &inflight, groups, 2), 2);
        assert_int_equal(c[2].idx, 2);
}

static void equal_deadlines_replay_in_index_order(void **state)
{
        struct turnover_cand c[] = { { 100, 0, 7 }, { 100, 0, 3 }, { 100, 0, 5 } };
        struct turnover_limits lim = { .max = 3, .group_max = 1 };
        uint32_t inflight = 0;

        (void)state;
        assert_int_equal(turnover_pick(c, 3, &lim, &inflight, NULL, 0), 3);
        assert_int_equal(c[0].idx, 3);
        assert_int_equal(c[1].idx, 5);
        assert_int_equal(c[2].idx, 7);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(budget_is_at_least_one),
                cmocka_unit_test(budget_is_a_share_of_identities),
                cmocka_unit_test(earliest_deadline_goes_first),
                cmocka_unit_test(nothing_starts_while_the_budget_is_in_flight),
                cmocka_unit_test(a_full_group_shifts_its_deaths_but_not_others),
                cmocka_unit_test(group_max_allows_several),
                cmocka_unit_test(equal_deadlines_replay_in_index_order),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
