/* Unit tests for manager/sched.c: every filter excludes what it should, the choice
 * leans toward free capacity, a seed replays, a full cloud is never overbooked, and
 * die-off awareness reads forecasts and calendars (and, off, changes nothing). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sched.h"
#include "util.h"

#define _cleanup_view_ _cleanup_(sched_view_free)

static struct sched_view *view_new(void)
{
        struct sched_view *v = NULL;

        assert_int_equal(sched_view_new(&v), 0);
        return v;
}

/* An up, active, healthy host named h<i> with id 100 + i. */
static uint32_t host_add(struct sched_view *v, enum lsc_kind kind, uint64_t vcpus, uint64_t mem,
                         uint64_t disk)
{
        char name[32];
        uint32_t n = sched_view_host_count(v), idx = UINT32_MAX;

        snprintf(name, sizeof(name), "h%u", n);
        struct sched_host_spec spec = {
                .id = 100 + n, .name = name, .kind = kind, .up = true, .active = true, .healthy = true,
                .alloc = { vcpus, mem, disk },
        };
        assert_int_equal(sched_host_add(v, &spec, &idx), 0);
        assert_int_equal(idx, n);
        return idx;
}

static uint32_t label(struct sched_view *v, const char *key, const char *value)
{
        uint32_t id = UINT32_MAX;

        assert_int_equal(sched_label_intern(v, key, value, &id), 0);
        return id;
}

static void host_label(struct sched_view *v, uint32_t host, const char *key, const char *value)
{
        const struct sched_host *h = sched_view_host(v, host);
        uint32_t ids[SCHED_LABELS_MAX + 1];

        if (h->nlabels)
                memcpy(ids, h->labels, h->nlabels * sizeof(*ids));
        ids[h->nlabels] = label(v, key, value);
        assert_int_equal(sched_host_set_labels(v, host, ids, h->nlabels + 1), 0);
}

static struct sched_request vm(uint64_t vcpus, uint64_t mem, uint64_t disk)
{
        return (struct sched_request){ .kind = LSC_KIND_VM, .need = { vcpus, mem, disk } };
}

/* Places and applies; returns the host or fails the test. */
static uint32_t place_apply(struct sched_view *v, const struct sched_request *rq, struct sched_rng *rng)
{
        uint32_t h = UINT32_MAX;

        assert_int_equal(sched_place(v, rq, rng, &h, NULL), 0);
        assert_int_equal(sched_apply(v, rq, h), 0);
        return h;
}

/* ---- filters ---- */

static void host_without_room_is_never_chosen(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        struct sched_request rq = vm(4, 4096, 10);
        struct sched_reasons why;
        struct sched_rng rng;
        uint32_t h;

        host_add(v, LSC_KIND_VM, 2, 65536, 1000);       /* too few vCPUs */
        host_add(v, LSC_KIND_VM, 16, 65536, 1000);
        host_add(v, LSC_KIND_VM, 16, 2048, 1000);       /* too little memory */
        host_add(v, LSC_KIND_VM, 16, 65536, 5);         /* too little disk */
        sched_rng_seed(&rng, 1);
        for (int i = 0; i < 1000; i++) {
                assert_int_equal(sched_place(v, &rq, &rng, &h, NULL), 0);
                assert_int_equal(h, 1);
        }
        /* Once host 1 is full, nothing fits. */
        sched_view_host(v, 1)->used.vcpus = 13;
        assert_int_equal(sched_place(v, &rq, &rng, &h, &why), -ENOSPC);
        assert_int_equal(why.count[SCHED_R_VCPUS], 2);
        assert_int_equal(why.count[SCHED_R_MEMORY], 1);
        assert_int_equal(why.count[SCHED_R_DISK], 1);
}

static void kind_mismatch_excludes_host(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        struct sched_request rq = vm(1, 512, 1);
        struct sched_rng rng;
        char buf[256];
        uint32_t h;

        host_add(v, LSC_KIND_VM, 64, 262144, 4000);
        host_add(v, LSC_KIND_CONTAINER, 8, 8192, 100);
        host_add(v, LSC_KIND_METAL, 64, 262144, 4000);
        rq.kind = LSC_KIND_CONTAINER;
        sched_rng_seed(&rng, 2);
        for (int i = 0; i < 200; i++) {
                assert_int_equal(sched_place(v, &rq, &rng, &h, NULL), 0);
                assert_int_equal(h, 1);
        }
        assert_int_equal(sched_host_check(v, &rq, 0), 1 << SCHED_R_KIND);
        assert_true(sched_host_explain(v, &rq, 0, buf, sizeof(buf)) > 0);
        assert_string_equal(buf, "is a vm host, not container");
        assert_int_equal(sched_host_explain(v, &rq, 1, buf, sizeof(buf)), 4);
        assert_string_equal(buf, "fits");
}

static void required_label_filters(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        struct sched_request rq = vm(1, 512, 1);
        struct sched_reasons why;
        struct sched_rng rng;
        uint32_t ids[2], h;
        char buf[256];

        for (int i = 0; i < 100; i++) {
                host_add(v, LSC_KIND_VM, 32, 65536, 1000);
                host_label(v, i, "zone", i % 2 ? "a" : "b");
        }
        host_label(v, 7, "gpu", "1");           /* zone=a */
        host_label(v, 40, "gpu", "1");          /* zone=b */
        sched_rng_seed(&rng, 3);
        ids[0] = label(v, "gpu", "1");
        rq.labels = ids;
        rq.nlabels = 1;
        for (int i = 0; i < 500; i++) {
                assert_int_equal(sched_place(v, &rq, &rng, &h, NULL), 0);
                assert_true(h == 7 || h == 40);
        }
        ids[1] = label(v, "zone", "b");
        rq.nlabels = 2;
        for (int i = 0; i < 100; i++) {
                assert_int_equal(sched_place(v, &rq, &rng, &h, NULL), 0);
                assert_int_equal(h, 40);
        }
        /* A label no host carries: every host is excluded, each counted once, under the
         * first label it lacks. */
        ids[0] = label(v, "ssd", "1");
        assert_int_equal(sched_label_find(v, "ssd", "1"), (int)ids[0]);
        assert_int_equal(sched_label_find(v, "ssd", "2"), -ENOENT);
        assert_int_equal(sched_place(v, &rq, &rng, &h, &why), -ENOSPC);
        assert_int_equal(why.hosts, 100);
        assert_int_equal(why.count[SCHED_R_LABEL], 100);
        assert_int_equal(why.label[0], 100);
        assert_int_equal(why.label[1], 0);
        sched_reasons_format(v, &rq, &why, buf, sizeof(buf));
        assert_string_equal(buf, "no host fits: 100 hosts lack label ssd=1");
        /* Relabelling a host moves it between the label's candidates. */
        uint32_t relabel[] = { ids[0], ids[1] };
        assert_int_equal(sched_host_set_labels(v, 3, relabel, 2), 0);
        assert_int_equal(sched_place(v, &rq, &rng, &h, NULL), 0);
        assert_int_equal(h, 3);
}

static void anti_affinity_spreads_group_up_to_max_per_host(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        struct sched_request rq = vm(1, 1024, 10);
        struct sched_reasons why;
        struct sched_rng rng;
        char buf[256];
        uint32_t h;

        for (int i = 0; i < 4; i++)
                host_add(v, LSC_KIND_VM, 64, 262144, 4000);
        rq.group = 7;
        rq.group_name = "web";
        rq.policy = SCHED_POLICY_ANTI_AFFINITY;
        rq.max_per_host = 2;
        sched_rng_seed(&rng, 4);
        for (int i = 0; i < 8; i++)
                place_apply(v, &rq, &rng);
        for (uint32_t i = 0; i < 4; i++)
                assert_int_equal(sched_group_count(v, 7, i), 2);
        assert_int_equal(sched_place(v, &rq, &rng, &h, &why), -ENOSPC);
        assert_int_equal(why.count[SCHED_R_ANTI_AFFINITY], 4);
        sched_reasons_format(v, &rq, &why, buf, sizeof(buf));
        assert_string_equal(buf, "no host fits: 4 hosts already hold 2 members of group web");
        /* Another group is not limited by this one. */
        rq.group = 8;
        assert_int_equal(sched_place(v, &rq, &rng, &h, NULL), 0);
        /* max_per_host 0 means 1: one member per host. */
        rq.group = 9;
        rq.max_per_host = 0;
        bool used[4] = { 0 };
        for (int i = 0; i < 4; i++) {
                h = place_apply(v, &rq, &rng);
                assert_false(used[h]);
                used[h] = true;
        }
        assert_int_equal(sched_place(v, &rq, &rng, &h, NULL), -ENOSPC);
        /* A member leaving frees its host's slot. */
        assert_int_equal(sched_unapply(v, &rq, 2), 0);
        assert_int_equal(sched_place(v, &rq, &rng, &h, NULL), 0);
        assert_int_equal(h, 2);
}

static void affinity_keeps_group_together(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        struct sched_request rq = vm(4, 4096, 10);
        struct sched_reasons why;
        struct sched_rng rng;
        uint32_t first, h;
        char buf[256];

        for (int i = 0; i < 100; i++)
                host_add(v, LSC_KIND_VM, 20, 262144, 4000);     /* room for 5 members each */
        rq.group = 11;
        rq.group_name = "db";
        rq.policy = SCHED_POLICY_AFFINITY;
        sched_rng_seed(&rng, 5);
        first = place_apply(v, &rq, &rng);
        for (int i = 0; i < 4; i++)
                assert_int_equal(place_apply(v, &rq, &rng), first);
        /* The group's host is full: the group waits rather than splits. */
        assert_int_equal(sched_place(v, &rq, &rng, &h, &why), -ENOSPC);
        assert_int_equal(why.count[SCHED_R_AFFINITY], 99);
        assert_int_equal(why.count[SCHED_R_VCPUS], 1);
        sched_reasons_format(v, &rq, &why, buf, sizeof(buf));
        assert_string_equal(buf, "no host fits: 99 hosts hold no member of group db, "
                                 "1 has fewer than 4 vCPUs free");
        /* Once the group is empty it may start anywhere again. */
        for (int i = 0; i < 5; i++)
                assert_int_equal(sched_unapply(v, &rq, first), 0);
        assert_int_equal(sched_group_count(v, 11, first), 0);
        bool elsewhere = false;
        for (int i = 0; i < 50 && !elsewhere; i++) {
                assert_int_equal(sched_place(v, &rq, &rng, &h, NULL), 0);
                elsewhere = h != first;
        }
        assert_true(elsewhere);
}

static void drained_or_lost_or_unhealthy_hosts_get_nothing(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        struct sched_request rq = vm(1, 1024, 10);
        struct sched_reasons why;
        struct sched_rng rng;
        char buf[256];
        uint32_t h;

        for (int i = 0; i < 4; i++)
                host_add(v, LSC_KIND_VM, 64, 262144, 4000);
        sched_view_host(v, 1)->up = false;              /* lost or suspect */
        sched_view_host(v, 2)->active = false;          /* drained */
        sched_view_host(v, 3)->healthy = false;         /* hung hypervisor */
        sched_rng_seed(&rng, 6);
        for (int i = 0; i < 500; i++) {
                assert_int_equal(sched_place(v, &rq, &rng, &h, NULL), 0);
                assert_int_equal(h, 0);
        }
        sched_view_host(v, 0)->active = false;
        assert_int_equal(sched_place(v, &rq, &rng, &h, &why), -ENOSPC);
        assert_int_equal(why.count[SCHED_R_NOT_UP], 1);
        assert_int_equal(why.count[SCHED_R_NOT_ACTIVE], 2);
        assert_int_equal(why.count[SCHED_R_UNHEALTHY], 1);
        sched_reasons_format(v, &rq, &why, buf, sizeof(buf));
        assert_string_equal(buf, "no host fits: 2 hosts are drained or in maintenance, "
                                 "1 is not up, 1 is unhealthy");
}

/* ---- the choice ---- */

static void same_seed_replays_same_choices(void **state)
{
        uint32_t a[2000], b[2000], c[2000];
        uint32_t *runs[] = { a, b, c };
        const uint64_t seeds[] = { 42, 42, 43 };

        for (int run = 0; run < 3; run++) {
                _cleanup_view_ struct sched_view *v = view_new();
                struct sched_rng rng;

                for (int i = 0; i < 300; i++)
                        host_add(v, LSC_KIND_VM, 16 + 16 * (i % 4), 65536, 2000);
                sched_rng_seed(&rng, seeds[run]);
                for (int i = 0; i < 2000; i++) {
                        struct sched_request rq = vm(1 + i % 4, 1024 * (1 + i % 3), 20);

                        runs[run][i] = place_apply(v, &rq, &rng);
                }
        }
        assert_memory_equal(a, b, sizeof(a));
        assert_memory_not_equal(a, c, sizeof(a));
}

static void choice_prefers_free_capacity(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        struct sched_request rq = vm(1, 1024, 10);
        const unsigned ks[] = { 1, 2, 4 };
        int emptier[3] = { 0 };
        struct sched_rng rng;
        uint32_t h;

        for (int i = 0; i < 2; i++)
                host_add(v, LSC_KIND_VM, 64, 262144, 4000);
        sched_view_host(v, 0)->used = (struct sched_res){ 48, 196608, 3000 };  /* 75% used */
        sched_view_host(v, 1)->used = (struct sched_res){ 16, 65536, 1000 };   /* 25% used */
        for (int k = 0; k < 3; k++) {
                assert_int_equal(sched_view_set_k(v, ks[k]), 0);
                sched_rng_seed(&rng, 7);
                for (int i = 0; i < 10000; i++) {
                        assert_int_equal(sched_place(v, &rq, &rng, &h, NULL), 0);
                        emptier[k] += h == 1;
                }
        }
        /* k random picks, the freest wins: the emptier host is chosen with
         * probability 1 - 2^-k (1/2, 3/4, 15/16). */
        assert_in_range(emptier[0], 4700, 5300);
        assert_in_range(emptier[1], 7200, 7800);
        assert_in_range(emptier[2], 9200, 9700);
        assert_int_equal(sched_view_set_k(v, 0), -EINVAL);
        assert_int_equal(sched_view_set_k(v, SCHED_K_MAX + 1), -EINVAL);
}

static void no_fit_reasons_count_each_filter(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        struct sched_request rq = vm(8, 8192, 100);
        uint32_t gpu = label(v, "gpu", "1");
        struct sched_reasons why;
        struct sched_rng rng;
        char buf[512];
        uint32_t h;
        int n;

        /* Each host fails one filter, or (host 12) several: counted once, first failure. */
        host_add(v, LSC_KIND_CONTAINER, 64, 262144, 4000);      /* 0: kind */
        for (int i = 1; i <= 13; i++)
                host_add(v, LSC_KIND_VM, 64, 262144, 4000);
        for (int i = 1; i <= 13; i++)
                host_label(v, i, "gpu", "1");
        sched_view_host(v, 1)->up = false;
        sched_view_host(v, 2)->up = false;
        sched_view_host(v, 3)->active = false;
        sched_view_host(v, 4)->healthy = false;
        assert_int_equal(sched_host_set_labels(v, 5, NULL, 0), 0);     /* label */
        assert_int_equal(sched_host_set_labels(v, 6, NULL, 0), 0);
        assert_int_equal(sched_host_set_labels(v, 7, NULL, 0), 0);
        sched_view_host(v, 8)->used.vcpus = 60;                         /* vcpus */
        for (int i = 9; i <= 11; i++)
                sched_view_host(v, i)->used.memory_mib = 260000;        /* memory */
        sched_view_host(v, 12)->up = false;                             /* not up and full */
        sched_view_host(v, 12)->used.memory_mib = 260000;
        sched_view_host(v, 13)->used.disk_gib = 3950;                   /* disk */
        rq.labels = &gpu;
        rq.nlabels = 1;
        sched_rng_seed(&rng, 8);
        assert_int_equal(sched_place(v, &rq, &rng, &h, &why), -ENOSPC);
        assert_int_equal(why.hosts, 14);
        assert_int_equal(why.count[SCHED_R_KIND], 1);
        assert_int_equal(why.count[SCHED_R_NOT_UP], 3);
        assert_int_equal(why.count[SCHED_R_NOT_ACTIVE], 1);
        assert_int_equal(why.count[SCHED_R_UNHEALTHY], 1);
        assert_int_equal(why.count[SCHED_R_LABEL], 3);
        assert_int_equal(why.label[0], 3);
        assert_int_equal(why.count[SCHED_R_VCPUS], 1);
        assert_int_equal(why.count[SCHED_R_MEMORY], 3);
        assert_int_equal(why.count[SCHED_R_DISK], 1);
        n = sched_reasons_format(v, &rq, &why, buf, sizeof(buf));
        assert_int_equal(n, (int)strlen(buf));
        assert_string_equal(buf, "no host fits: 3 hosts are not up, 3 lack label gpu=1, "
                                 "3 have less than 8192 MiB free, 1 is not a vm host, "
                                 "1 is drained or in maintenance, 1 is unhealthy, "
                                 "1 has fewer than 8 vCPUs free, 1 has less than 100 GiB of disk free");
        /* A short buffer is cut, NUL-terminated, and the full length is still returned. */
        char small[16];
        assert_int_equal(sched_reasons_format(v, &rq, &why, small, sizeof(small)), n);
        assert_string_equal(small, "no host fits: 3");
        /* The per-host explanation lists every failure, with the numbers. */
        sched_host_explain(v, &rq, 12, buf, sizeof(buf));
        assert_string_equal(buf, "is not up; has 2144 MiB free, needs 8192");
        assert_int_equal(sched_host_check(v, &rq, 12), (1 << SCHED_R_NOT_UP) | (1 << SCHED_R_MEMORY));
        sched_host_explain(v, &rq, 5, buf, sizeof(buf));
        assert_string_equal(buf, "lacks label gpu=1");
        /* No host at all. */
        _cleanup_view_ struct sched_view *empty = view_new();
        struct sched_request any = vm(1, 16, 0);
        assert_int_equal(sched_place(empty, &any, &rng, &h, &why), -ENOSPC);
        sched_reasons_format(empty, &any, &why, buf, sizeof(buf));
        assert_string_equal(buf, "no host fits: there are no hosts");
}

static void filling_a_cloud_never_overbooks(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        struct sched_rng rng, sizes;
        uint32_t hosts = 200, placed = 0, misses = 0, h;
        uint32_t feasible[256];

        for (uint32_t i = 0; i < hosts; i++)
                host_add(v, LSC_KIND_VM, 8 << (i % 3), 16384 << (i % 4), 200 << (i % 2));
        sched_rng_seed(&rng, 9);
        sched_rng_seed(&sizes, 10);
        /* Until fifty requests in a row find no room. */
        while (misses < 50) {
                struct sched_request rq = vm(1 + sched_rng_below(&sizes, 8),
                                             512 * (1 + sched_rng_below(&sizes, 32)),
                                             10 * (1 + sched_rng_below(&sizes, 10)));
                int r = sched_place(v, &rq, &rng, &h, NULL);

                if (r == -ENOSPC) {
                        /* No-fit must be true, not a sampling miss. */
                        assert_int_equal(sched_feasible_list(v, &rq, feasible, 256), 0);
                        misses++;
                        continue;
                }
                assert_int_equal(r, 0);
                assert_int_equal(sched_host_check(v, &rq, h), 0);
                assert_int_equal(sched_apply(v, &rq, h), 0);
                placed++;
                misses = 0;
        }
        assert_true(placed > 500);
        for (uint32_t i = 0; i < hosts; i++) {
                const struct sched_host *x = sched_view_host_const(v, i);

                assert_true(x->used.vcpus <= x->alloc.vcpus);
                assert_true(x->used.memory_mib <= x->alloc.memory_mib);
                assert_true(x->used.disk_gib <= x->alloc.disk_gib);
        }
}

static void migrate_excludes_current_host(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        struct sched_request rq = vm(2, 2048, 20);
        struct sched_reasons why;
        struct sched_rng rng;
        char buf[256];
        uint32_t h;

        for (int i = 0; i < 3; i++)
                host_add(v, LSC_KIND_VM, 64, 262144, 4000);
        sched_view_host(v, 0)->used = (struct sched_res){ 60, 0, 0 };  /* the freest is 1 */
        rq.has_exclude = true;
        rq.exclude_host = 1;
        sched_rng_seed(&rng, 11);
        for (int i = 0; i < 500; i++) {
                assert_int_equal(sched_place(v, &rq, &rng, &h, NULL), 0);
                assert_int_not_equal(h, 1);
        }
        sched_view_host(v, 2)->up = false;
        sched_view_host(v, 0)->used.vcpus = 63;
        assert_int_equal(sched_place(v, &rq, &rng, &h, &why), -ENOSPC);
        assert_int_equal(why.count[SCHED_R_EXCLUDED], 1);
        sched_reasons_format(v, &rq, &why, buf, sizeof(buf));
        assert_string_equal(buf, "no host fits: 1 host is the current host, 1 is not up, "
                                 "1 has fewer than 2 vCPUs free");
}

static void to_host_restricts_choice(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        struct sched_request rq = vm(2, 2048, 20);
        struct sched_reasons why;
        struct sched_rng rng;
        char buf[256];
        uint32_t h;

        for (int i = 0; i < 5; i++)
                host_add(v, LSC_KIND_VM, 64, 262144, 4000);
        sched_view_host(v, 3)->used = (struct sched_res){ 60, 0, 0 };  /* the fullest */
        rq.has_to = true;
        rq.to_host = 3;
        sched_rng_seed(&rng, 12);
        for (int i = 0; i < 100; i++) {
                assert_int_equal(sched_place(v, &rq, &rng, &h, NULL), 0);
                assert_int_equal(h, 3);
        }
        /* Still filtered: --to a host that is down or full places nothing. */
        sched_view_host(v, 3)->up = false;
        sched_view_host(v, 3)->used.vcpus = 63;
        assert_int_equal(sched_place(v, &rq, &rng, &h, &why), -ENOSPC);
        assert_int_equal(why.hosts, 1);
        sched_reasons_format(v, &rq, &why, buf, sizeof(buf));
        assert_string_equal(buf, "host h3 does not fit: is not up; has 1 vCPUs free, needs 2");
        assert_int_equal(sched_host_check(v, &rq, 0), 1 << SCHED_R_NOT_TARGET);
        /* --to the current host is refused by the exclusion. */
        sched_view_host(v, 3)->up = true;
        sched_view_host(v, 3)->used.vcpus = 0;
        rq.has_exclude = true;
        rq.exclude_host = 3;
        assert_int_equal(sched_place(v, &rq, &rng, &h, NULL), -ENOSPC);
}

/* ---- the view's bookkeeping ---- */

static void feasible_list_returns_every_fitting_host(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        struct sched_request rq = vm(4, 4096, 10);
        uint32_t out[8];

        for (int i = 0; i < 6; i++)
                host_add(v, LSC_KIND_VM, i % 2 ? 64 : 2, 65536, 1000);
        assert_int_equal(sched_feasible_list(v, &rq, out, 8), 3);
        assert_int_equal(out[0], 1);
        assert_int_equal(out[1], 3);
        assert_int_equal(out[2], 5);
        assert_int_equal(sched_feasible_list(v, &rq, out, 1), 3);      /* counts past cap */
        assert_int_equal(out[0], 1);
}

static void apply_and_unapply_keep_the_view_exact(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        struct sched_request rq = vm(3, 3000, 30);
        const struct sched_host *h;

        host_add(v, LSC_KIND_VM, 64, 65536, 1000);
        h = sched_view_host_const(v, 0);
        rq.group = 5;
        for (int i = 0; i < 3; i++)
                assert_int_equal(sched_apply(v, &rq, 0), 0);
        assert_int_equal(h->used.vcpus, 9);
        assert_int_equal(h->used.memory_mib, 9000);
        assert_int_equal(sched_group_count(v, 5, 0), 3);
        assert_int_equal(sched_group_count(v, 6, 0), 0);
        for (int i = 0; i < 3; i++)
                assert_int_equal(sched_unapply(v, &rq, 0), 0);
        assert_int_equal(h->used.vcpus, 0);
        assert_int_equal(h->used.disk_gib, 0);
        assert_int_equal(h->ngroups, 0);
        /* Releasing what is not held changes nothing. */
        assert_int_equal(sched_unapply(v, &rq, 0), -EINVAL);
        assert_int_equal(h->used.vcpus, 0);
        assert_int_equal(sched_apply(v, &rq, 9), -EINVAL);
}

static void hosts_are_found_by_id_and_name(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        struct sched_host_spec dup = { .id = 101, .name = "again", .kind = LSC_KIND_VM };
        uint32_t idx;

        for (int i = 0; i < 100; i++)
                host_add(v, LSC_KIND_VM, 1, 1, 1);
        assert_int_equal(sched_host_find(v, 100 + 57), 57);
        assert_int_equal(sched_host_find(v, 99), -ENOENT);
        assert_int_equal(sched_host_find_name(v, "h42"), 42);
        assert_int_equal(sched_host_find_name(v, "nope"), -ENOENT);
        assert_int_equal(sched_host_add(v, &dup, &idx), -EEXIST);
        assert_string_equal(sched_view_host(v, 9)->name, "h9");
}

static void malformed_request_is_rejected(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        struct sched_request rq = vm(1, 16, 0);
        struct sched_rng rng;
        uint32_t bad = 99, h;

        host_add(v, LSC_KIND_VM, 1, 1024, 0);
        sched_rng_seed(&rng, 13);
        rq.kind = LSC_KIND_COUNT;
        assert_int_equal(sched_place(v, &rq, &rng, &h, NULL), -EINVAL);
        rq = vm(1, 16, 0);
        rq.labels = &bad;
        rq.nlabels = 1;
        assert_int_equal(sched_place(v, &rq, &rng, &h, NULL), -EINVAL);
        rq = vm(1, 16, 0);
        rq.has_to = true;
        rq.to_host = 1;
        assert_int_equal(sched_place(v, &rq, &rng, &h, NULL), -EINVAL);
        rq = vm(1, 16, 0);
        assert_int_equal(sched_place(v, &rq, &rng, &h, NULL), 0);       /* disk 0 fits disk 0 */
        uint32_t id;
        assert_int_equal(sched_label_intern(v, "bad key", "1", &id), -EINVAL);
}

/* ---- die-off awareness ---- */

#define HOUR 3600
#define T0 (10 * 86400 + 8 * HOUR)      /* day 10, 08:00 */

static void flat(uint32_t *p, uint32_t m)
{
        for (uint32_t i = 0; i < SCHED_SLOTS; i++)
                p[i] = m;
}

/* Counts how often each of the first 4 hosts is chosen over n decisions. */
static void tally(struct sched_view *v, const struct sched_request *rq, uint64_t seed, int n, int *count)
{
        struct sched_rng rng;
        uint32_t h;

        memset(count, 0, 4 * sizeof(*count));
        sched_rng_seed(&rng, seed);
        for (int i = 0; i < n; i++) {
                assert_int_equal(sched_place(v, rq, &rng, &h, NULL), 0);
                assert_in_range(h, 0, 3);
                count[h]++;
        }
}

static void aware_placement_avoids_host_hot_over_the_lifetime(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        uint32_t p0[SCHED_SLOTS], p1[SCHED_SLOTS];
        struct sched_request rq = vm(4, 4096, 10);
        int count[4];

        host_add(v, LSC_KIND_VM, 128, 1 << 20, 10000);
        host_add(v, LSC_KIND_VM, 128, 1 << 20, 10000);
        sched_view_host(v, 1)->used.vcpus = 40;         /* reservations favour host 0 */
        flat(p0, 10000);
        p0[14] = 31000;                                 /* host 0 runs hot at 14:00 */
        flat(p1, 16000);
        assert_int_equal(sched_host_set_load(v, 0, 32, p0), 0);
        assert_int_equal(sched_host_set_load(v, 1, 32, p1), 0);
        rq.now = T0;
        rq.load_m = 2000;

        /* Off: reservations only, the hot hour is invisible. */
        tally(v, &rq, 11, 1000, count);
        assert_in_range(count[0], 650, 850);
        /* 64 samples of two hosts: each is among them but once in 2^63. */
        assert_true(count[1] > 0);
        /* On, a life that spans 14:00: never the host that runs hot then. */
        assert_int_equal(sched_view_set_aware(v, true, 64, SCHED_AWARE_FIT_PCT_DEFAULT), 0);
        assert_true(sched_view_aware(v));
        rq.expires_at = T0 + 2 * 86400;
        tally(v, &rq, 11, 1000, count);
        assert_int_equal(count[1], 1000);
        /* A life that ends at 11:00 never sees the hot hour: host 0 is the cooler. */
        rq.expires_at = T0 + 3 * HOUR;
        tally(v, &rq, 11, 1000, count);
        assert_int_equal(count[0], 1000);
        /* A server without lifetime lives through every 14:00. */
        rq.expires_at = 0;
        tally(v, &rq, 11, 1000, count);
        assert_int_equal(count[1], 1000);
}

static void deaths_before_the_peak_cool_a_host(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        uint32_t p0[SCHED_SLOTS], p1[SCHED_SLOTS];
        struct sched_request fly = vm(8, 8192, 10), rq = vm(2, 2048, 10);
        int count[4];

        host_add(v, LSC_KIND_VM, 128, 1 << 20, 10000);
        host_add(v, LSC_KIND_VM, 128, 1 << 20, 10000);
        flat(p0, 8000);
        p0[14] = 24000;
        flat(p1, 26000);
        assert_int_equal(sched_host_set_load(v, 0, 32, p0), 0);
        assert_int_equal(sched_host_set_load(v, 1, 32, p1), 0);
        assert_int_equal(sched_view_set_aware(v, true, 64, SCHED_AWARE_FIT_PCT_DEFAULT), 0);
        /* A mayfly of 14 vCPUs of load on host 0, dying at 12:00: host 0 peaks at 38
         * at 14:00 on its forecast, at 24 once the calendar is counted. */
        fly.load_m = 14000;
        fly.now = T0;
        fly.expires_at = T0 + 4 * HOUR;
        assert_int_equal(sched_apply(v, &fly, 0), 0);
        assert_int_equal(sched_view_host_const(v, 0)->used.vcpus, 8);
        assert_int_equal(sched_host_forecast(v, 0)->profile_m[14], 38000);
        assert_int_equal(sched_host_forecast(v, 0)->ndeaths, 1);
        assert_int_equal(sched_host_forecast_peak(v, 0, T0), 24000);
        rq.now = T0;
        rq.load_m = 1000;
        rq.expires_at = T0 + 86400;
        tally(v, &rq, 5, 500, count);
        assert_int_equal(count[0], 500);
        /* The same load without a death: host 0 is the hotter. */
        assert_int_equal(sched_unapply(v, &fly, 0), 0);
        assert_int_equal(sched_host_forecast(v, 0)->ndeaths, 0);
        fly.expires_at = 0;
        assert_int_equal(sched_apply(v, &fly, 0), 0);
        assert_int_equal(sched_host_forecast(v, 0)->ndeaths, 0);
        assert_int_equal(sched_host_forecast_peak(v, 0, T0), 38000);
        tally(v, &rq, 5, 500, count);
        assert_int_equal(count[1], 500);
}

static void rebirth_takes_capacity_that_frees_soon(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        uint32_t p0[SCHED_SLOTS], p1[SCHED_SLOTS];
        struct sched_request fly = vm(8, 8192, 10), rq = vm(2, 2048, 10);
        int count[4];

        host_add(v, LSC_KIND_VM, 128, 1 << 20, 10000);
        host_add(v, LSC_KIND_VM, 128, 1 << 20, 10000);
        flat(p0, 8000);
        flat(p1, 18000);
        assert_int_equal(sched_host_set_load(v, 0, 32, p0), 0);
        assert_int_equal(sched_host_set_load(v, 1, 32, p1), 0);
        assert_int_equal(sched_view_set_aware(v, true, 64, SCHED_AWARE_FIT_PCT_DEFAULT), 0);
        /* Host 0 carries 14 more until a death in half an hour. */
        fly.load_m = 14000;
        fly.now = T0;
        fly.expires_at = T0 + SCHED_SOON_S / 2;
        assert_int_equal(sched_apply(v, &fly, 0), 0);
        rq.now = T0;
        rq.load_m = 1000;
        rq.expires_at = T0 + 7 * 86400;
        tally(v, &rq, 3, 500, count);
        assert_int_equal(count[1], 500);        /* a new server: host 0 is hot now */
        rq.rebirth = true;
        tally(v, &rq, 3, 500, count);
        assert_int_equal(count[0], 500);        /* a rebirth takes the place of the death */
        /* A death later than soon does not count for the rebirth either. */
        assert_int_equal(sched_unapply(v, &fly, 0), 0);
        fly.expires_at = T0 + 2 * SCHED_SOON_S;
        assert_int_equal(sched_apply(v, &fly, 0), 0);
        tally(v, &rq, 3, 500, count);
        assert_int_equal(count[1], 500);
}

static void rebirth_of_known_load_takes_the_best_fit_under_the_target(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        const uint32_t level[3] = { 10000, 20000, 27000 };
        struct sched_request rq = vm(2, 2048, 10);
        uint32_t p[SCHED_SLOTS];
        int count[4];

        for (uint32_t i = 0; i < 3; i++) {
                host_add(v, LSC_KIND_VM, 128, 1 << 20, 10000);
                flat(p, level[i]);
                assert_int_equal(sched_host_set_load(v, i, 32, p), 0);
        }
        assert_int_equal(sched_view_set_aware(v, true, 64, 88), 0);
        rq.now = T0;
        rq.expires_at = T0 + 7 * 86400;
        rq.load_m = 2000;
        rq.rebirth = true;
        rq.load_known = true;
        /* 37.5%, 68.8% and 90.6% with it: the fullest under 88% is host 1. */
        tally(v, &rq, 9, 300, count);
        assert_int_equal(count[1], 300);
        /* With a target above 90.6%, host 2. */
        assert_int_equal(sched_view_set_aware(v, true, 64, 95), 0);
        tally(v, &rq, 9, 300, count);
        assert_int_equal(count[2], 300);
        /* A load that is a guess, or no target: the coolest. */
        rq.load_known = false;
        tally(v, &rq, 9, 300, count);
        assert_int_equal(count[0], 300);
        rq.load_known = true;
        assert_int_equal(sched_view_set_aware(v, true, 64, 0), 0);
        tally(v, &rq, 9, 300, count);
        assert_int_equal(count[0], 300);
}

/* Recorded from sched.c before die-off awareness existed (commit 8d4ae56): 100 hosts,
 * seed 2026, 48 decisions. */
static const uint32_t old_choices[48] = {
        28, 89, 81, 83, 86, 31, 73, 47, 21, 74, 7, 67, 13, 91, 82, 52,
        20, 23, 2, 44, 32, 51, 19, 14, 58, 15, 89, 71, 17, 68, 40, 32,
        35, 62, 62, 46, 65, 0, 34, 71, 50, 8, 98, 79, 80, 37, 72, 7,
};

static void awareness_off_gives_exactly_the_old_choice(void **state)
{
        for (int variant = 0; variant < 2; variant++) {
                _cleanup_view_ struct sched_view *v = view_new();
                struct sched_rng rng;
                uint32_t p[SCHED_SLOTS];

                for (int i = 0; i < 100; i++) {
                        host_add(v, LSC_KIND_VM, 16 + 16 * (i % 3), 65536, 2000);
                        if (variant) {
                                flat(p, 1000u * (uint32_t)(i % 7));
                                assert_int_equal(sched_host_set_load(v, (uint32_t)i, 8, p), 0);
                        }
                }
                if (variant) {
                        /* Awareness was on once: off again is the old scheduler. */
                        assert_int_equal(sched_view_set_aware(v, true, 32, 88), 0);
                        assert_int_equal(sched_view_set_aware(v, false, 32, 88), 0);
                        assert_false(sched_view_aware(v));
                }
                sched_rng_seed(&rng, 2026);
                for (int i = 0; i < 48; i++) {
                        struct sched_request rq = vm(1 + i % 4, 1024, 20);

                        if (variant) {
                                rq.now = T0;
                                rq.expires_at = T0 + 3600 * (1 + i);
                                rq.load_m = 500;
                                rq.rebirth = i % 2;
                        }
                        assert_int_equal(place_apply(v, &rq, &rng), old_choices[i]);
                }
        }
}

static void calendar_follows_apply_and_unapply(void **state)
{
        _cleanup_view_ struct sched_view *v = view_new();
        const struct sched_forecast *f;
        struct sched_request a = vm(2, 1024, 10), b = vm(4, 1024, 10), c = vm(1, 1024, 10);
        uint32_t prof[SCHED_SLOTS];

        host_add(v, LSC_KIND_VM, 128, 1 << 20, 10000);
        f = sched_host_forecast(v, 0);
        assert_null(sched_host_forecast(v, 1));
        assert_int_equal(f->phys_m, 0);
        /* A profile: its least hour is what its death takes off. */
        flat(prof, 3000);
        prof[3] = 1500;
        a.load_profile_m = prof;
        a.expires_at = T0 + 5 * HOUR;
        b.expires_at = T0 + 2 * HOUR;           /* no load given: 30% of 4 vCPUs */
        c.expires_at = T0 + 5 * HOUR;
        c.load_m = 700;
        assert_int_equal(sched_apply(v, &a, 0), 0);
        assert_int_equal(sched_apply(v, &b, 0), 0);
        assert_int_equal(sched_apply(v, &c, 0), 0);
        assert_int_equal(f->ndeaths, 3);
        assert_true(f->deaths[0].at == T0 + 2 * HOUR && f->deaths[0].vcpus == 4);
        assert_int_equal(f->deaths[0].load_m, 4 * 10 * SCHED_LOAD_DEFAULT_PCT);
        assert_true(f->deaths[1].at == T0 + 5 * HOUR && f->deaths[1].load_m == 1500);
        assert_true(f->deaths[2].at == T0 + 5 * HOUR && f->deaths[2].load_m == 700);
        assert_int_equal(f->profile_m[0], 3000 + 1200 + 700);
        assert_int_equal(f->profile_m[3], 1500 + 1200 + 700);
        assert_int_equal(sched_host_forecast_peak(v, 0, T0), 4900);
        assert_int_equal(sched_unapply(v, &a, 0), 0);
        assert_int_equal(f->ndeaths, 2);
        assert_int_equal(f->deaths[1].load_m, 700);
        assert_int_equal(f->profile_m[0], 1900);
        /* A refreshed forecast lower than a binding's load: release saturates at 0. */
        flat(prof, 100);
        assert_int_equal(sched_host_set_load(v, 0, 32, prof), 0);
        assert_int_equal(f->phys_m, 32000);
        assert_int_equal(sched_unapply(v, &b, 0), 0);
        assert_int_equal(f->profile_m[5], 0);
        assert_int_equal(f->ndeaths, 1);
        assert_int_equal(sched_host_set_load(v, 0, 16, NULL), 0);    /* phys only */
        assert_int_equal(f->phys_m, 16000);
        assert_int_equal(f->profile_m[5], 0);
        assert_int_equal(sched_host_set_load(v, 1, 16, NULL), -EINVAL);
        assert_int_equal(sched_host_forecast_peak(v, 1, T0), -EINVAL);
        assert_int_equal(sched_view_set_aware(v, true, 0, 88), -EINVAL);
        assert_int_equal(sched_view_set_aware(v, true, SCHED_AWARE_SAMPLES_MAX + 1, 88), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(host_without_room_is_never_chosen),
                cmocka_unit_test(kind_mismatch_excludes_host),
                cmocka_unit_test(required_label_filters),
                cmocka_unit_test(anti_affinity_spreads_group_up_to_max_per_host),
                cmocka_unit_test(affinity_keeps_group_together),
                cmocka_unit_test(drained_or_lost_or_unhealthy_hosts_get_nothing),
                cmocka_unit_test(same_seed_replays_same_choices),
                cmocka_unit_test(choice_prefers_free_capacity),
                cmocka_unit_test(no_fit_reasons_count_each_filter),
                cmocka_unit_test(filling_a_cloud_never_overbooks),
                cmocka_unit_test(migrate_excludes_current_host),
                cmocka_unit_test(to_host_restricts_choice),
                cmocka_unit_test(feasible_list_returns_every_fitting_host),
                cmocka_unit_test(apply_and_unapply_keep_the_view_exact),
                cmocka_unit_test(hosts_are_found_by_id_and_name),
                cmocka_unit_test(malformed_request_is_rejected),
                cmocka_unit_test(aware_placement_avoids_host_hot_over_the_lifetime),
                cmocka_unit_test(deaths_before_the_peak_cool_a_host),
                cmocka_unit_test(rebirth_takes_capacity_that_frees_soon),
                cmocka_unit_test(rebirth_of_known_load_takes_the_best_fit_under_the_target),
                cmocka_unit_test(awareness_off_gives_exactly_the_old_choice),
                cmocka_unit_test(calendar_follows_apply_and_unapply),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
