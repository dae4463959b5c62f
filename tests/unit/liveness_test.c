/* liveness: hosts move up -> suspect -> lost from missed heartbeats, in memory only. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "liveness.h"

#define S 1000000LL                      /* one second in microseconds */

static void beat(struct liveness_host *h, int64_t now, bool healthy)
{
        Lsc__Heartbeat hb = LSC__HEARTBEAT__INIT;
        Lsc__Instance in = LSC__INSTANCE__INIT, *v[1] = { &in };

        in.uuid = "6f1c1d52-6a3c-4f7e-9d37-1b2a3c4d5e6f";
        in.name = "web1";
        in.has_generation = 1;
        in.generation = 3;
        in.state = "running";
        hb.n_instances = 1;
        hb.instances = v;
        hb.has_healthy = 1;
        hb.healthy = healthy;
        hb.health = healthy ? "" : "driver call instantiate web1 running for 12.0 s";
        assert_int_equal(liveness_beat(h, &hb, now), 0);
}

static void a_host_is_lost_until_it_beats(void **state)
{
        struct liveness lv;
        struct liveness_host *h;

        (void)state;
        liveness_init(&lv, 10 * S, 3 * S);
        h = liveness_get(&lv, "h1");
        assert_non_null(h);
        assert_int_equal(h->state, LIVENESS_LOST);
        assert_int_equal(h->view, -1);
        beat(h, 100 * S, true);
        assert_int_equal(h->state, LIVENESS_UP);
        assert_int_equal(h->n_instances, 1);
        assert_int_equal(h->instances[0].generation, 3);
        liveness_fini(&lv);
}

static void three_missed_beats_make_a_host_suspect_and_the_lease_makes_it_lost(void **state)
{
        struct liveness lv;
        struct liveness_host *h;

        (void)state;
        liveness_init(&lv, 10 * S, 3 * S);
        h = liveness_get(&lv, "h1");
        beat(h, 100 * S, true);
        liveness_tick(&lv, 103 * S);             /* exactly three beats late: still up */
        assert_int_equal(h->state, LIVENESS_UP);
        liveness_tick(&lv, 103 * S + 1);
        assert_int_equal(h->state, LIVENESS_SUSPECT);
        liveness_tick(&lv, 113 * S);             /* lease (10 s) + grace (3 s): not yet past */
        assert_int_equal(h->state, LIVENESS_SUSPECT);
        liveness_tick(&lv, 113 * S + 1);
        assert_int_equal(h->state, LIVENESS_LOST);
        beat(h, 120 * S, true);                  /* it comes back */
        assert_int_equal(h->state, LIVENESS_UP);
        liveness_fini(&lv);
}

static void a_beat_records_health_and_replaces_the_inventory(void **state)
{
        struct liveness lv;
        struct liveness_host *h;
        Lsc__Heartbeat empty = LSC__HEARTBEAT__INIT;

        (void)state;
        liveness_init(&lv, 10 * S, 3 * S);
        h = liveness_get(&lv, "h1");
        beat(h, 1 * S, false);
        assert_false(h->healthy);
        assert_non_null(strstr(h->health, "running for"));
        assert_int_equal(liveness_beat(h, &empty, 2 * S), 0);
        assert_true(h->healthy);                 /* no health field: healthy */
        assert_int_equal(h->n_instances, 0);
        liveness_fini(&lv);
}

static void hosts_are_found_by_name_in_any_order(void **state)
{
        static const char *const names[] = { "m", "c", "x", "a", "q", "b" };
        struct liveness lv;

        (void)state;
        liveness_init(&lv, 10 * S, 3 * S);
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                assert_non_null(liveness_get(&lv, names[i]));
        assert_ptr_equal(liveness_get(&lv, "q"), liveness_find(&lv, "q"));
        assert_int_equal(lv.n_hosts, 6);
        for (size_t i = 1; i < lv.n_hosts; i++)
                assert_true(strcmp(lv.hosts[i - 1]->name, lv.hosts[i]->name) < 0);
        assert_null(liveness_find(&lv, "zz"));
        liveness_fini(&lv);
}

/* A beat's measured load: the host's share of its physical vCPUs once registered,
 * and each running instance that carries figures; stopped ones and ones without
 * figures are not samples. */
static void a_beat_feeds_the_host_and_running_identities_load(void **state)
{
        struct liveness lv;
        struct liveness_host *h;
        struct load ld;
        struct load_summary sum;
        Lsc__Heartbeat hb = LSC__HEARTBEAT__INIT;
        Lsc__Utilisation util = LSC__UTILISATION__INIT;
        Lsc__Instance a = LSC__INSTANCE__INIT, b = LSC__INSTANCE__INIT, c = LSC__INSTANCE__INIT;
        Lsc__Instance *v[3] = { &a, &b, &c };
        const int64_t wall = 1795651200;

        (void)state;
        liveness_init(&lv, 10 * S, 3 * S);
        load_init(&ld);
        h = liveness_get(&lv, "h1");
        a.uuid = "6f1c1d52-6a3c-4f7e-9d37-000000000001";
        a.state = "running";
        a.has_cpu = a.has_memory_mib = 1;
        a.cpu = 1.5;
        a.memory_mib = 2048;
        b.uuid = "6f1c1d52-6a3c-4f7e-9d37-000000000002";
        b.state = "stopped";
        b.has_cpu = 1;
        c.uuid = "6f1c1d52-6a3c-4f7e-9d37-000000000003";
        c.state = "running";                     /* its first beat: no figures yet */
        util.has_cpu = util.has_memory_mib = 1;
        util.cpu = 0.25;
        util.memory_mib = 4096;
        hb.util = &util;
        hb.n_instances = 3;
        hb.instances = v;
        liveness_beat_load(h, &hb, &ld, wall);   /* not registered: vCPUs unknown */
        assert_false(load_hist_known(&h->load));
        h->vcpus = 8;
        liveness_beat_load(h, &hb, &ld, wall + 1);
        assert_int_equal(load_hist_summary(&h->load, wall + 1, &sum), 0);
        assert_true(sum.now[LOAD_CPU] > 1.999 && sum.now[LOAD_CPU] < 2.001);
        assert_true(sum.now[LOAD_MEMORY] == 4096);
        assert_int_equal(ld.n, 1);
        assert_int_equal(load_hist_summary(load_identity_find(&ld, a.uuid), wall + 1, &sum), 0);
        assert_true(sum.now[LOAD_CPU] == 1.5 && sum.now[LOAD_MEMORY] == 2048);
        assert_true(sum.mean_1h[LOAD_CPU] == 1.5);         /* two beats, the same figure */
        assert_null(load_identity_find(&ld, b.uuid));
        assert_null(load_identity_find(&ld, c.uuid));
        load_fini(&ld);
        liveness_fini(&lv);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(a_host_is_lost_until_it_beats),
                cmocka_unit_test(three_missed_beats_make_a_host_suspect_and_the_lease_makes_it_lost),
                cmocka_unit_test(a_beat_records_health_and_replaces_the_inventory),
                cmocka_unit_test(hosts_are_found_by_name_in_any_order),
                cmocka_unit_test(a_beat_feeds_the_host_and_running_identities_load),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
