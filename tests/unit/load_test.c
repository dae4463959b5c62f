/* manager/load.c: the histories of measured load, driven through days of wall time
 * in microseconds (the module has no clock of its own). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "load.h"

#define U1 "6c1d2a52-7f5e-4b7e-9a53-000000000001"
#define U2 "6c1d2a52-7f5e-4b7e-9a53-000000000002"
#define T0 1795651200LL                  /* 2026-11-26T00:00:00Z: hour of day 0 */

static void assert_near(double v, double want, double tol)
{
        if (!(fabs(v - want) <= tol))
                fail_msg("got %.6f, want %.6f +- %g", v, want, tol);
}

/* One sample a second from `from` for `seconds`, cpu and memory constant. */
static void feed(struct load_hist *h, int64_t from, int seconds, double cpu, double mem)
{
        for (int i = 0; i < seconds; i++)
                load_hist_sample(h, cpu, mem, from + i);
}

static void packing_keeps_three_significant_digits_and_saturates(void **state)
{
        static const double v[] = { 0, 1, 17, 2047, 2048, 2049, 4095, 4096, 12345, 999999, 1.5e9, 3.3e12 };

        for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++) {
                double back = load_unpack(load_pack(v[i]));

                if (v[i] < 2048)
                        assert_near(back, v[i], 0.0);
                else
                        assert_near(back, v[i], v[i] / 4000.0);
        }
        assert_int_equal(load_pack(-3), 0);
        assert_int_equal(load_pack(NAN), 0);
        assert_int_equal(load_pack(1e300), UINT16_MAX);
        assert_true(load_unpack(UINT16_MAX) > 4e12);
        /* monotonic: a bigger figure never packs smaller */
        for (double x = 1; x < 1e12; x *= 1.37)
                assert_true(load_pack(x * 1.37) >= load_pack(x));
}

static void an_empty_history_knows_nothing(void **state)
{
        struct load_hist h = {0};
        struct load_summary s;
        double prof[LOAD_HOURS], v;

        assert_false(load_hist_known(&h));
        assert_int_equal(load_hist_summary(&h, T0, &s), -ENODATA);
        assert_int_equal(load_hist_profile(&h, LOAD_CPU, prof), 0);
        for (int b = 0; b < LOAD_HOURS; b++)
                assert_near(prof[b], -1, 0);
        assert_int_equal(load_hist_expected(&h, LOAD_CPU, -1, T0, &v), -ENODATA);
}

static void minute_means_give_the_hours_mean_and_peak(void **state)
{
        struct load_hist h = {0};
        struct load_summary s;

        feed(&h, T0, 60, 1.0, 100);              /* minute 0 at 1 vCPU */
        feed(&h, T0 + 60, 60, 3.0, 300);         /* minute 1 at 3 */
        feed(&h, T0 + 120, 30, 2.0, 200);        /* half of minute 2 at 2 */
        assert_int_equal(load_hist_summary(&h, T0 + 150, &s), 0);
        assert_near(s.now[LOAD_CPU], 2.0, 1e-6);
        assert_near(s.now[LOAD_MEMORY], 200, 1e-6);
        assert_int_equal(s.sampled_at, T0 + 149);
        assert_int_equal(s.minutes_1h, 3);
        assert_near(s.mean_1h[LOAD_CPU], 2.0, 0.002);
        assert_near(s.peak_1h[LOAD_CPU], 3.0, 0.002);
        assert_near(s.peak_1h[LOAD_MEMORY], 300, 0.5);
        /* samples within a minute are averaged, not the last one kept */
        load_hist_sample(&h, 8.0, 200, T0 + 150);
        assert_int_equal(load_hist_summary(&h, T0 + 150, &s), 0);
        assert_near(s.mean_1h[LOAD_CPU], (1.0 + 3.0 + (30 * 2.0 + 8.0) / 31) / 3, 0.002);
        assert_near(s.now[LOAD_CPU], 8.0, 1e-6);
}

/* 90 minutes of samples: the ring holds the last 60; older minutes leave the hour. */
static void the_ring_wraps_and_keeps_only_the_last_hour(void **state)
{
        struct load_hist h = {0};
        struct load_summary s;

        for (int m = 0; m < 90; m++)
                feed(&h, T0 + m * 60, 60, m < 30 ? 9.0 : 1.0 + m / 100.0, 50);
        assert_int_equal(load_hist_summary(&h, T0 + 90 * 60 - 1, &s), 0);
        assert_int_equal(s.minutes_1h, 60);
        assert_near(s.peak_1h[LOAD_CPU], 1.89, 0.002);      /* the 9s of minutes 0-29 are gone */
        assert_near(s.mean_1h[LOAD_CPU], 1.0 + (30 + 89) / 2.0 / 100.0, 0.002);
        /* 20 silent minutes later, 40 of those minutes remain in the hour */
        assert_int_equal(load_hist_summary(&h, T0 + 110 * 60, &s), 0);
        assert_int_equal(s.minutes_1h, 39);
        assert_near(s.peak_1h[LOAD_CPU], 1.89, 0.002);
        /* a sample after a silence longer than the hour: only itself */
        load_hist_sample(&h, 0.5, 10, T0 + 300 * 60);
        assert_int_equal(load_hist_summary(&h, T0 + 300 * 60, &s), 0);
        assert_int_equal(s.minutes_1h, 1);
        assert_near(s.peak_1h[LOAD_CPU], 0.5, 0.001);
        /* the last sample stays the last sample however old */
        assert_int_equal(load_hist_summary(&h, T0 + 900 * 60, &s), 0);
        assert_int_equal(s.minutes_1h, 0);
        assert_near(s.now[LOAD_CPU], 0.5, 1e-6);
}

/* The hour's mean goes into its bucket when the next hour's first minute ends; the
 * same hour a day later moves the bucket LOAD_DAY_ALPHA of the way. */
static void hourly_buckets_are_smoothed_day_over_day(void **state)
{
        struct load_hist h = {0};
        double prof[LOAD_HOURS], v;
        int64_t day2 = T0 + 86400;

        feed(&h, T0 + 3 * 3600, 3600, 2.0, 1000);         /* 03:00-04:00 at 2 vCPUs */
        feed(&h, T0 + 4 * 3600, 61, 6.0, 1000);          /* 04:00: closes hour 3 */
        assert_int_equal(load_hist_profile(&h, LOAD_CPU, prof), 1);
        assert_near(prof[3], 2.0, 0.002);
        assert_near(prof[4], -1, 0);
        assert_int_equal(load_hist_profile(&h, LOAD_MEMORY, prof), 1);
        assert_near(prof[3], 1000, 0.5);
        feed(&h, day2 + 3 * 3600, 3600, 4.0, 1000);      /* the next day's 03:00 at 4 */
        feed(&h, day2 + 4 * 3600, 61, 6.0, 1000);
        assert_int_equal(load_hist_profile(&h, LOAD_CPU, prof), 2);   /* hour 4 of day 1 too */
        assert_near(prof[3], 2.0 + LOAD_DAY_ALPHA * (4.0 - 2.0), 0.003);
        assert_near(prof[4], 6.0, 0.003);
        /* what a scheduler asks: at an hour, over the day */
        assert_int_equal(load_hist_expected(&h, LOAD_CPU, 3, day2 + 4 * 3600 + 61, &v), 0);
        assert_near(v, 2.5, 0.003);
        assert_int_equal(load_hist_expected(&h, LOAD_CPU, -1, day2 + 4 * 3600 + 61, &v), 0);
        assert_near(v, (2.5 + 6.0) / 2, 0.003);
        /* an hour not in the profile: the last hour's mean (03:02-03:59 at 4, 04:00
         * and 04:01 at 6) */
        assert_int_equal(load_hist_expected(&h, LOAD_CPU, 12, day2 + 4 * 3600 + 61, &v), 0);
        assert_near(v, (58 * 4.0 + 2 * 6.0) / 60, 0.003);
        assert_int_equal(load_hist_expected(&h, LOAD_CPU, 24, day2, &v), -EINVAL);
        assert_int_equal(load_hist_expected(&h, LOAD_CPU, -2, day2, &v), -EINVAL);
}

/* What a scheduler's forecast takes: milli-vCPUs, every hour filled. */
static void the_forecast_is_in_milli_vcpus_with_gaps_filled_by_the_mean(void **state)
{
        struct load_hist h = {0};
        uint32_t prof[LOAD_HOURS], mean = 7;

        assert_int_equal(load_hist_forecast_m(&h, T0, prof, &mean), -ENODATA);
        assert_int_equal(mean, 7);
        feed(&h, T0, 120, 0.25, 10);             /* two minutes, no whole hour */
        assert_int_equal(load_hist_forecast_m(&h, T0 + 120, prof, &mean), 0);
        assert_int_equal(mean, 250);
        for (int b = 0; b < LOAD_HOURS; b++)
                assert_int_equal(prof[b], 250);
        feed(&h, T0 + 3600, 3600, 1.5, 10);      /* hour 1 at 1.5 */
        feed(&h, T0 + 7200, 3600, 0.5, 10);      /* hour 2 at 0.5 */
        feed(&h, T0 + 10800, 61, 0.5, 10);
        assert_int_equal(load_hist_forecast_m(&h, T0 + 10861, prof, &mean), 3);   /* hours 0, 1, 2 */
        assert_int_equal(prof[1], 1500);
        assert_int_equal(prof[2], 500);
        assert_true(prof[0] >= 249 && prof[0] <= 251);
        assert_true(mean >= 749 && mean <= 751);  /* (0.25 + 1.5 + 0.5) / 3 */
        assert_int_equal(prof[12], mean);
        assert_int_equal(prof[23], mean);
}

/* A wall clock stepped back: the sample counts in the minute being summed. */
static void a_clock_stepped_back_does_not_corrupt_the_ring(void **state)
{
        struct load_hist h = {0};
        struct load_summary s;

        feed(&h, T0 + 600, 10, 1.0, 10);
        load_hist_sample(&h, 3.0, 10, T0 + 100);
        assert_int_equal(load_hist_summary(&h, T0 + 600, &s), 0);
        assert_int_equal(s.minutes_1h, 1);
        assert_near(s.mean_1h[LOAD_CPU], (10 * 1.0 + 3.0) / 11, 0.002);
        /* negative and NaN figures count as 0 */
        load_hist_sample(&h, -5, NAN, T0 + 601);
        assert_int_equal(load_hist_summary(&h, T0 + 601, &s), 0);
        assert_near(s.now[LOAD_CPU], 0, 0);
        assert_near(s.now[LOAD_MEMORY], 0, 0);
}

static void identities_are_kept_by_uuid_and_unknown_ones_are_absent(void **state)
{
        struct load ld;
        const struct load_hist *h;
        struct load_summary s;

        load_init(&ld);
        assert_null(load_identity_find(&ld, U1));
        assert_int_equal(load_identity_sample(&ld, U1, 1.5, 512, T0), 0);
        assert_int_equal(load_identity_sample(&ld, U2, 0.25, 128, T0), 0);
        assert_int_equal(load_identity_sample(&ld, U1, 2.5, 512, T0 + 1), 0);
        assert_int_equal(ld.n, 2);
        h = load_identity_find(&ld, U1);
        assert_non_null(h);
        assert_int_equal(load_hist_summary(h, T0 + 1, &s), 0);
        assert_near(s.now[LOAD_CPU], 2.5, 1e-6);
        assert_near(s.mean_1h[LOAD_CPU], 2.0, 0.002);
        /* the same uuid in capitals is the same identity */
        assert_true(load_identity_find(&ld, "6C1D2A52-7F5E-4B7E-9A53-000000000001") == h);
        assert_null(load_identity_find(&ld, "6c1d2a52-7f5e-4b7e-9a53-000000000003"));
        assert_int_equal(load_identity_sample(&ld, "not-a-uuid", 1, 1, T0), -EINVAL);
        assert_int_equal(load_identity_sample(&ld, "6c1d2a52x7f5e-4b7e-9a53-000000000001", 1, 1, T0), -EINVAL);
        assert_int_equal(load_identity_sample(&ld, "6c1d2a52-7f5e-4b7e-9a53-00000000000g", 1, 1, T0), -EINVAL);
        assert_int_equal(load_identity_sample(&ld, NULL, 1, 1, T0), -EINVAL);
        assert_null(load_identity_find(&ld, NULL));
        assert_int_equal(ld.n, 2);
        load_fini(&ld);
        assert_int_equal(ld.n, 0);
}

/* Fixed memory: a day of samples costs what one sample costs; silent identities go. */
static void memory_is_fixed_per_identity_and_silent_ones_expire(void **state)
{
        struct load ld;
        char uuid[40];
        size_t one, many;

        load_init(&ld);
        assert_int_equal(load_identity_sample(&ld, U1, 1, 1, T0), 0);
        one = load_bytes(&ld);
        for (int64_t t = T0; t < T0 + 86400; t += 10)
                assert_int_equal(load_identity_sample(&ld, U1, 1, 1, t), 0);
        assert_int_equal(load_bytes(&ld), one);
        assert_true(sizeof(struct load_identity) <= 512);
        for (int i = 0; i < 1000; i++) {
                snprintf(uuid, sizeof(uuid), "6c1d2a52-7f5e-4b7e-9a53-%012d", i + 10);
                assert_int_equal(load_identity_sample(&ld, uuid, 1, 1, T0 + (i < 400 ? 0 : 86400)), 0);
        }
        many = load_bytes(&ld);
        assert_int_equal(ld.n, 1001);
        /* entries plus hash buckets: under 600 bytes an identity */
        assert_true(many / ld.n < 600);
        /* a day and more later: the 400 silent since T0 go, U1 (T0 + 86390) and the rest stay */
        assert_int_equal(load_expire(&ld, T0 + LOAD_FORGET_S + 1), 400);
        assert_int_equal(ld.n, 601);
        assert_null(load_identity_find(&ld, "6c1d2a52-7f5e-4b7e-9a53-000000000010"));
        assert_non_null(load_identity_find(&ld, "6c1d2a52-7f5e-4b7e-9a53-000000000500"));
        assert_non_null(load_identity_find(&ld, U1));
        load_fini(&ld);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(packing_keeps_three_significant_digits_and_saturates),
                cmocka_unit_test(an_empty_history_knows_nothing),
                cmocka_unit_test(minute_means_give_the_hours_mean_and_peak),
                cmocka_unit_test(the_ring_wraps_and_keeps_only_the_last_hour),
                cmocka_unit_test(hourly_buckets_are_smoothed_day_over_day),
                cmocka_unit_test(the_forecast_is_in_milli_vcpus_with_gaps_filled_by_the_mean),
                cmocka_unit_test(a_clock_stepped_back_does_not_corrupt_the_ring),
                cmocka_unit_test(identities_are_kept_by_uuid_and_unknown_ones_are_absent),
                cmocka_unit_test(memory_is_fixed_per_identity_and_silent_ones_expire),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
