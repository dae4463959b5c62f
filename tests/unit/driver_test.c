/* Unit tests for agent/driver.c, drv_libvirt.c and drv_fake.c. The libvirt driver runs
 * against the real library on test:///default, the in-process test hypervisor: its
 * state is shared by every connection of this process, and its own domain "test" is
 * not lsc's, so every test checks it is never listed or touched. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "driver.h"
#include "err.h"
#include "util.h"

#define URI "test:///default"

#define U1 "6c1d2a52-7f5e-4b7e-9a53-000000000001"
#define U2 "6c1d2a52-7f5e-4b7e-9a53-000000000002"
#define U3 "6c1d2a52-7f5e-4b7e-9a53-000000000003"

/* Held open for the whole run: the test hypervisor lives while one connection does,
 * and this one also looks at it from outside the driver. */
static virConnectPtr observer;
static char state_dir[] = "/tmp/lsc-driver-test-XXXXXX";

static void quiet(void *user, virErrorPtr e)
{
}

static void assert_err_mentions(int err, const char *needle)
{
        const char *msg = lsc_err_msg(err);

        if (!strstr(msg, needle))
                fail_msg("error \"%s\" does not mention \"%s\"", msg, needle);
}

static struct drv_config config(void)
{
        return (struct drv_config){ .uri = URI, .state_dir = state_dir };
}

static struct drv *open_driver(const char *name, const struct drv_config *cfg)
{
        struct drv *d = NULL;
        int r = drv_open(name, cfg, &d);

        if (r < 0)
                fail_msg("drv_open %s: %s", name, lsc_err_msg(r));
        return d;
}

static struct drv *open_libvirt(void)
{
        struct drv_config cfg = config();

        return open_driver("libvirt", &cfg);
}

struct ident {
        struct drv_spec spec;
        struct lsc_mac macs[2];
        struct lsc_ip ips[1];
};

/* An identity with two NICs and one IP, as the manager would send it. */
static const struct drv_spec *ident(struct ident *id, const char *uuid, const char *name, uint64_t g)
{
        memset(id, 0, sizeof(*id));
        assert_int_equal(lsc_mac_parse("02:4c:53:00:00:01", &id->macs[0]), 0);
        assert_int_equal(lsc_mac_parse("02:4c:53:00:00:02", &id->macs[1]), 0);
        id->macs[0].b[5] = (uint8_t)(uuid[35] - '0') * 2 + 1;
        id->macs[1].b[5] = (uint8_t)(uuid[35] - '0') * 2 + 2;
        assert_int_equal(lsc_ip_parse("10.20.0.5", &id->ips[0]), 0);
        id->spec = (struct drv_spec){
                .uuid = uuid, .name = name, .generation = g, .kind = LSC_KIND_VM,
                .vcpus = 2, .memory_mib = 512, .disk_gib = 10,
                .disk_mode = LSC_DISK_EPHEMERAL, .image = "debian-12",
                .macs = id->macs, .n_macs = 2, .ips = id->ips, .n_ips = 1,
                .hostname = "web.example.org",
        };
        return &id->spec;
}

static int instantiate(struct drv *d, const char *uuid, const char *name, uint64_t g)
{
        struct ident id;

        return drv_instantiate(d, ident(&id, uuid, name, g));
}

/* The instances a driver lists, by uuid: NULL when absent. */
static int list(struct drv *d, struct drv_instance **ret)
{
        int n = drv_list(d, ret);

        if (n < 0)
                fail_msg("list: %s", lsc_err_msg(n));
        return n;
}

static const struct drv_instance *find(const struct drv_instance *v, int n, const char *uuid)
{
        for (int i = 0; i < n; i++)
                if (strcmp(v[i].uuid, uuid) == 0)
                        return &v[i];
        return NULL;
}

static virDomainPtr observe(const char *uuid)
{
        return virDomainLookupByUUIDString(observer, uuid);
}

static void assert_test_domain_untouched(void)
{
        virDomainPtr dom = virDomainLookupByName(observer, "test");

        assert_non_null(dom);
        assert_int_equal(virDomainIsActive(dom), 1);
        assert_int_equal(virDomainIsPersistent(dom), 1);
        virDomainFree(dom);
}

static int setup_all(void **state)
{
        if (!mkdtemp(state_dir))
                return -1;
        virSetErrorFunc(NULL, quiet);
        observer = virConnectOpen(URI);
        return observer ? 0 : -1;
}

static int teardown_all(void **state)
{
        char cmd[sizeof(state_dir) + 16];

        virConnectClose(observer);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", state_dir);
        return system(cmd) == 0 ? 0 : -1;
}

static int clear(void **state)
{
        lsc_err_clear();
        return 0;
}

/* Each libvirt test leaves the shared hypervisor as it found it: only "test". */
static int remove_lsc_domains(void **state)
{
        struct drv *d = open_libvirt();
        struct drv_instance *v;
        int n = list(d, &v);

        for (int i = 0; i < n; i++)
                assert_int_equal(drv_destroy(d, v[i].uuid, UINT64_MAX), 0);
        free(v);
        drv_close(&d);
        assert_test_domain_untouched();
        return 0;
}

/* ---- registry and wrappers ---- */

static void lookup_knows_every_driver(void **state)
{
        struct drv *d = NULL;

        assert_ptr_equal(drv_lookup("libvirt"), &drv_libvirt_ops);
        assert_ptr_equal(drv_lookup("container"), &drv_container_ops);
        assert_ptr_equal(drv_lookup("fake"), &drv_fake_ops);
        assert_ptr_equal(drv_lookup("metal"), &drv_metal_ops);
        /* metal without its machine's settings is refused, naming what it needs */
        assert_int_equal(drv_open("metal", NULL, &d), -EINVAL);
        assert_err_mentions(-EINVAL, "bmc_address");
        assert_null(d);
        assert_null(drv_lookup(""));
        assert_null(drv_lookup(NULL));
        assert_null(drv_lookup("metl"));
        assert_int_equal(drv_open("metl", NULL, &d), -ENOENT);
        assert_err_mentions(-ENOENT, "use libvirt, container, fake or metal");
        assert_null(d);
}

static const struct drv_ops empty_ops = { .name = "empty" };

static void null_slot_returns_eopnotsupp(void **state)
{
        struct drv empty = { .ops = &empty_ops }, *d = &empty;
        struct drv_capacity cap;
        struct drv_instance *v;
        struct drv_stats st;
        struct ident id;

        assert_int_equal(drv_capacity(d, &cap), -EOPNOTSUPP);
        assert_err_mentions(-EOPNOTSUPP, "does not support capacity");
        assert_int_equal(drv_list(d, &v), -EOPNOTSUPP);
        assert_int_equal(drv_instantiate(d, ident(&id, U1, "web1", 1)), -EOPNOTSUPP);
        assert_err_mentions(-EOPNOTSUPP, "driver empty does not support instantiate");
        assert_int_equal(drv_destroy(d, U1, 1), -EOPNOTSUPP);
        assert_int_equal(drv_shutdown(d, U1, 1, 10), -EOPNOTSUPP);
        assert_int_equal(drv_stats(d, &st), -EOPNOTSUPP);
        assert_int_equal(drv_health(d), -EOPNOTSUPP);
        drv_close(&d);                   /* no close slot: nothing to free, pointer NULLed */
        assert_null(d);
        drv_close(NULL);
}

static void spec_with_bad_uuid_or_name_is_rejected(void **state)
{
        struct ident id;
        struct drv_spec *s = (struct drv_spec *)ident(&id, U1, "web1", 1);

        assert_int_equal(drv_spec_check(s), 0);
        s->uuid = "6C1D2A52-7F5E-4B7E-9A53-000000000001";
        assert_int_equal(drv_spec_check(s), -EINVAL);
        assert_err_mentions(-EINVAL, "invalid uuid");
        s->uuid = U1;
        s->name = "web1'/><x";
        assert_int_equal(drv_spec_check(s), -EINVAL);
        s->name = "web1";
        s->generation = 0;
        assert_int_equal(drv_spec_check(s), -EINVAL);
        assert_err_mentions(-EINVAL, "generation 0");
}

static void cpu_permille_is_the_busy_share_between_samples(void **state)
{
        struct drv_stats a = { .host_cpu_busy_ns = 100, .host_cpu_total_ns = 1000 };
        struct drv_stats b = { .host_cpu_busy_ns = 350, .host_cpu_total_ns = 2000 };

        assert_int_equal(drv_stats_cpu_permille(&a, &b), 250);
        assert_int_equal(drv_stats_cpu_permille(&b, &a), 0);     /* counters went back */
        assert_int_equal(drv_stats_cpu_permille(&a, &a), 0);
}

static void instance_vcpus_are_cpu_time_over_wall_time(void **state)
{
        struct drv_instance_stats ia[2] = { { .uuid = U1, .cpu_time_ns = 1000000000 },
                                            { .uuid = U2, .cpu_time_ns = 5000000000 } };
        struct drv_instance_stats ib[3] = { { .uuid = U2, .cpu_time_ns = 5500000000 },
                                            { .uuid = U1, .cpu_time_ns = 3000000000 },
                                            { .uuid = U3, .cpu_time_ns = 7 } };
        struct drv_stats a = { .sampled_us = 10000000, .n_instances = 2, .instances = ia };
        struct drv_stats b = { .sampled_us = 11000000, .n_instances = 3, .instances = ib };
        double v = -1;

        assert_int_equal(drv_stats_instance_vcpus(&a, &b, 1, &v), 0);       /* U1: 2 s in 1 s */
        assert_true(v > 1.999 && v < 2.001);
        assert_int_equal(drv_stats_instance_vcpus(&a, &b, 0, &v), 0);       /* U2: found by uuid */
        assert_true(v > 0.499 && v < 0.501);
        assert_int_equal(drv_stats_instance_vcpus(&a, &b, 2, &v), -ENODATA); /* U3: new */
        ib[1].cpu_time_ns = 10;                                              /* U1 restarted */
        assert_int_equal(drv_stats_instance_vcpus(&a, &b, 1, &v), -ENODATA);
        b.sampled_us = a.sampled_us;                                         /* no time between */
        assert_int_equal(drv_stats_instance_vcpus(&a, &b, 0, &v), -ENODATA);
}

static void volume_path_is_uuid_qcow2_inside_volume_dir(void **state)
{
        char *p = NULL;

        assert_int_equal(drv_volume_path("/srv/vol", U1, &p), 0);
        assert_string_equal(p, "/srv/vol/" U1 ".qcow2");
        free(p);
        assert_int_equal(drv_volume_path("/srv/vol//", U1, &p), 0);
        assert_string_equal(p, "/srv/vol/" U1 ".qcow2");
        free(p);
        assert_int_equal(drv_volume_path("/", U1, &p), 0);
        assert_string_equal(p, "/" U1 ".qcow2");
        free(p);
}

static void volume_path_without_volume_dir_or_with_bad_input_is_refused(void **state)
{
        char *p = NULL;

        assert_int_equal(drv_volume_path(NULL, U1, &p), -EINVAL);
        assert_err_mentions(-EINVAL, "no volume_dir");
        assert_int_equal(drv_volume_path("srv/vol", U1, &p), -EINVAL);
        assert_err_mentions(-EINVAL, "not an absolute path");
        assert_int_equal(drv_volume_path("/srv/vol", "../../etc/passwd", &p), -EINVAL);
        assert_int_equal(drv_volume_path("/srv/vol", NULL, &p), -EINVAL);
        assert_null(p);
}

/* ---- libvirt on test:///default ---- */

static void libvirt_instantiate_runs_domain_with_identity_uuid_and_mac(void **state)
{
        struct drv *d = open_libvirt();
        virConnectPtr other = virConnectOpen(URI);    /* a separate look at the hypervisor */
        virDomainPtr dom;
        char *xml;

        assert_int_equal(instantiate(d, U1, "web1", 1), 0);
        assert_non_null(other);
        dom = virDomainLookupByUUIDString(other, U1);
        assert_non_null(dom);
        assert_int_equal(virDomainIsActive(dom), 1);
        assert_string_equal(virDomainGetName(dom), "web1");
        xml = virDomainGetXMLDesc(dom, 0);
        assert_non_null(xml);
        assert_non_null(strstr(xml, "<uuid>" U1 "</uuid>"));
        assert_non_null(strstr(xml, "<mac address='02:4c:53:00:00:03'/>"));
        assert_non_null(strstr(xml, "<mac address='02:4c:53:00:00:04'/>"));
        assert_non_null(strstr(xml, "<entry name='uuid'>" U1 "</entry>"));   /* SMBIOS */
        assert_non_null(strstr(xml, "https://lsc.dev/xmlns/instance/1"));
        assert_non_null(strstr(xml, "system.hostname=web.example.org"));
        assert_non_null(strstr(xml, "lsc.ip=10.20.0.5"));
        assert_null(strstr(xml, "<disk"));           /* test:/// runs diskless */
        free(xml);
        virDomainFree(dom);
        virConnectClose(other);
        drv_close(&d);
}

static void libvirt_list_shows_only_lsc_domains_with_generation(void **state)
{
        struct drv *d = open_libvirt();
        struct drv_instance *v;
        const struct drv_instance *i;
        int n;

        assert_int_equal(instantiate(d, U1, "web1", 3), 0);
        assert_int_equal(instantiate(d, U2, "web2", 7), 0);
        n = list(d, &v);
        assert_int_equal(n, 2);
        i = find(v, n, U1);
        assert_non_null(i);
        assert_string_equal(i->name, "web1");
        assert_int_equal(i->generation, 3);
        assert_int_equal(i->state, DRV_STATE_RUNNING);
        i = find(v, n, U2);
        assert_non_null(i);
        assert_int_equal(i->generation, 7);
        for (int k = 0; k < n; k++)
                assert_string_not_equal(v[k].name, "test");
        free(v);
        drv_close(&d);
}

static void libvirt_foreign_domain_is_never_touched(void **state)
{
        struct drv *d = open_libvirt();
        virDomainPtr test = virDomainLookupByName(observer, "test");
        char uuid[VIR_UUID_STRING_BUFLEN];
        struct drv_instance *v;

        assert_non_null(test);
        assert_int_equal(virDomainGetUUIDString(test, uuid), 0);
        virDomainFree(test);
        assert_int_equal(list(d, &v), 0);
        free(v);
        assert_int_equal(drv_destroy(d, uuid, UINT64_MAX), -EPERM);
        assert_err_mentions(-EPERM, "not created by lsc");
        assert_int_equal(drv_shutdown(d, uuid, UINT64_MAX, 100), -EPERM);
        assert_int_equal(instantiate(d, uuid, "web1", 1), -EEXIST);     /* its uuid */
        assert_int_equal(instantiate(d, U1, "test", 1), -EEXIST);       /* its name */
        assert_err_mentions(-EEXIST, "lsc did not create");
        assert_null(observe(U1));
        assert_test_domain_untouched();
        drv_close(&d);
}

/* Metadata copied into another domain's XML does not make that domain lsc's. */
static void libvirt_metadata_naming_another_uuid_is_not_ownership(void **state)
{
        static const char xml[] =
                "<domain type='test'><name>copy</name><uuid>" U3 "</uuid>"
                "<metadata><lsc:instance xmlns:lsc='https://lsc.dev/xmlns/instance/1' uuid='" U1 "'"
                " generation='1'/></metadata>"
                "<memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>";
        struct drv *d = open_libvirt();
        virDomainPtr dom = virDomainDefineXML(observer, xml);
        struct drv_instance *v;

        assert_non_null(dom);
        assert_int_equal(list(d, &v), 0);
        free(v);
        assert_int_equal(drv_destroy(d, U3, UINT64_MAX), -EPERM);
        assert_int_equal(virDomainUndefine(dom), 0);
        virDomainFree(dom);
        drv_close(&d);
}

static void libvirt_destroy_removes_generations_up_to_g_and_is_idempotent(void **state)
{
        struct drv *d = open_libvirt();
        virDomainPtr dom;

        assert_int_equal(instantiate(d, U1, "web1", 5), 0);
        assert_int_equal(drv_destroy(d, U1, 4), 0);          /* generation 5 is newer: stays */
        dom = observe(U1);
        assert_non_null(dom);
        assert_int_equal(virDomainIsActive(dom), 1);
        virDomainFree(dom);
        assert_int_equal(drv_destroy(d, U1, 5), 0);
        assert_null(observe(U1));                              /* undefined, not only stopped */
        assert_int_equal(drv_destroy(d, U1, 5), 0);
        assert_int_equal(drv_destroy(d, U2, 9), 0);          /* never there */
        drv_close(&d);
}

static void libvirt_instantiate_twice_at_same_generation_is_a_noop(void **state)
{
        struct drv *d = open_libvirt();
        struct drv_instance *v;
        virDomainPtr dom;
        unsigned id;

        assert_int_equal(instantiate(d, U1, "web1", 2), 0);
        dom = observe(U1);
        id = virDomainGetID(dom);
        virDomainFree(dom);
        assert_int_equal(instantiate(d, U1, "web1", 2), 0);
        dom = observe(U1);
        assert_int_equal(virDomainGetID(dom), id);            /* not restarted */
        virDomainFree(dom);
        assert_int_equal(list(d, &v), 1);
        free(v);
        drv_close(&d);
}

static void libvirt_instantiate_at_higher_generation_replaces_older(void **state)
{
        struct drv *d = open_libvirt();
        struct drv_instance *v;
        virDomainPtr dom;
        unsigned id;

        assert_int_equal(instantiate(d, U1, "web1", 2), 0);
        dom = observe(U1);
        id = virDomainGetID(dom);
        virDomainFree(dom);
        assert_int_equal(instantiate(d, U1, "web1", 3), 0);
        assert_int_equal(list(d, &v), 1);
        assert_int_equal(v[0].generation, 3);
        assert_int_equal(v[0].state, DRV_STATE_RUNNING);
        free(v);
        dom = observe(U1);
        assert_int_not_equal(virDomainGetID(dom), id);        /* a new instance */
        virDomainFree(dom);
        drv_close(&d);
}

static void libvirt_instantiate_below_running_generation_is_refused(void **state)
{
        struct drv *d = open_libvirt();
        struct drv_instance *v;

        assert_int_equal(instantiate(d, U1, "web1", 4), 0);
        assert_int_equal(instantiate(d, U1, "web1", 3), -ESTALE);
        assert_err_mentions(-ESTALE, "generation 4");
        assert_int_equal(list(d, &v), 1);
        assert_int_equal(v[0].generation, 4);
        free(v);
        drv_close(&d);
}

static void libvirt_name_held_by_another_identity_is_refused(void **state)
{
        struct drv *d = open_libvirt();

        assert_int_equal(instantiate(d, U1, "web1", 1), 0);
        assert_int_equal(instantiate(d, U2, "web1", 1), -EEXIST);
        assert_err_mentions(-EEXIST, U1);
        assert_null(observe(U2));
        drv_close(&d);
}

/* The hypervisor's view is the truth: a domain stopped behind the driver's back is
 * reported stopped, and instantiating its binding again starts it. */
static void libvirt_instance_stopped_outside_is_listed_stopped_and_restarted(void **state)
{
        struct drv *d = open_libvirt();
        struct drv_instance *v;
        virDomainPtr dom;

        assert_int_equal(instantiate(d, U1, "web1", 1), 0);
        dom = observe(U1);
        assert_int_equal(virDomainDestroy(dom), 0);
        assert_int_equal(list(d, &v), 1);
        assert_int_equal(v[0].state, DRV_STATE_STOPPED);
        free(v);
        assert_int_equal(instantiate(d, U1, "web1", 1), 0);
        assert_int_equal(virDomainIsActive(dom), 1);
        virDomainFree(dom);
        drv_close(&d);
}

static void libvirt_shutdown_stops_and_removes_the_instance(void **state)
{
        struct drv *d = open_libvirt();

        assert_int_equal(instantiate(d, U1, "web1", 1), 0);
        assert_int_equal(drv_shutdown(d, U1, 1, 2000), 0);    /* the test guest heeds ACPI */
        assert_null(observe(U1));
        assert_int_equal(drv_shutdown(d, U1, 1, 2000), 0);
        drv_close(&d);
}

static const struct drv_spec *persistent(struct ident *id, const char *uuid, const char *name, uint64_t g)
{
        ident(id, uuid, name, g);
        id->spec.disk_mode = LSC_DISK_PERSISTENT;
        id->spec.image = NULL;           /* a blank volume of disk_gib */
        id->spec.disk_gib = 1;
        return &id->spec;
}

static void libvirt_persistent_without_volume_dir_is_refused(void **state)
{
        struct drv *d = open_libvirt();
        struct ident id;

        assert_int_equal(drv_instantiate(d, persistent(&id, U1, "db1", 1)), -EINVAL);
        assert_err_mentions(-EINVAL, "no volume_dir");
        assert_null(observe(U1));
        drv_close(&d);
}

/* Made on the first binding, then the same file (same inode, never rewritten) for the
 * same generation, the next one, and after destroy, which leaves it in place. */
static void libvirt_persistent_volume_is_made_once_and_outlives_destroy(void **state)
{
        char vdir[sizeof(state_dir) + 16], path[sizeof(vdir) + 64];
        struct drv_config cfg = config();
        struct stat st1, st2;
        struct ident id;
        struct drv *d;
        virDomainPtr dom;
        char *xml;

        snprintf(vdir, sizeof(vdir), "%s/volumes", state_dir);
        snprintf(path, sizeof(path), "%s/%s.qcow2", vdir, U1);
        assert_int_equal(mkdir(vdir, 0755), 0);
        cfg.volume_dir = vdir;
        d = open_driver("libvirt", &cfg);
        assert_int_equal(drv_instantiate(d, persistent(&id, U1, "db1", 1)), 0);
        assert_int_equal(stat(path, &st1), 0);
        dom = observe(U1);
        xml = virDomainGetXMLDesc(dom, 0);
        assert_non_null(strstr(xml, path));
        assert_null(strstr(xml, "<shareable"));
        assert_null(strstr(xml, "<readonly"));
        free(xml);
        virDomainFree(dom);
        assert_int_equal(drv_instantiate(d, persistent(&id, U1, "db1", 1)), 0);
        assert_int_equal(drv_instantiate(d, persistent(&id, U1, "db1", 2)), 0);
        assert_int_equal(drv_destroy(d, U1, 2), 0);
        assert_null(observe(U1));
        assert_int_equal(stat(path, &st2), 0);
        assert_int_equal(st2.st_ino, st1.st_ino);
        assert_int_equal(st2.st_mtime, st1.st_mtime);
        assert_int_equal(st2.st_size, st1.st_size);
        drv_close(&d);
        unlink(path);
        rmdir(vdir);
}

static void libvirt_capacity_reads_node_info(void **state)
{
        struct drv *d = open_libvirt();
        struct drv_config cfg = config();
        struct drv_capacity cap;
        struct statvfs sv;
        virNodeInfo info;

        assert_int_equal(virNodeGetInfo(observer, &info), 0);
        assert_int_equal(statvfs(state_dir, &sv), 0);
        assert_int_equal(drv_capacity(d, &cap), 0);
        assert_int_equal(cap.vcpus, info.cpus);
        assert_int_equal(cap.memory_mib, info.memory / 1024);
        assert_int_equal(cap.disk_gib, (uint64_t)sv.f_blocks * sv.f_frsize >> 30);
        drv_close(&d);

        cfg.vcpus = 3;
        cfg.disk_gib = 40;
        d = open_driver("libvirt", &cfg);
        assert_int_equal(drv_capacity(d, &cap), 0);
        assert_int_equal(cap.vcpus, 3);
        assert_int_equal(cap.memory_mib, info.memory / 1024);
        assert_int_equal(cap.disk_gib, 40);
        drv_close(&d);
}

static void libvirt_second_handle_sees_the_same_state(void **state)
{
        struct drv *a = open_libvirt(), *b = open_libvirt();
        struct drv_instance *v;

        assert_int_equal(instantiate(a, U1, "web1", 6), 0);
        assert_int_equal(list(b, &v), 1);
        assert_string_equal(v[0].uuid, U1);
        assert_int_equal(v[0].generation, 6);
        free(v);
        assert_int_equal(instantiate(b, U1, "web1", 6), 0);   /* already there for b too */
        assert_int_equal(drv_destroy(b, U1, 6), 0);
        assert_int_equal(list(a, &v), 0);
        free(v);
        drv_close(&a);
        drv_close(&b);
}

/* Two hosts on one libvirtd (as in tests, or a lab): each sees, destroys and lists
 * only its own domains. */
static void libvirt_host_sees_only_its_own_domains(void **state)
{
        struct drv_config ca = config(), cb = config();
        struct drv *a, *b, *any;
        struct drv_instance *v;
        virDomainPtr dom;

        ca.host = "ha";
        cb.host = "hb";
        a = open_driver("libvirt", &ca);
        b = open_driver("libvirt", &cb);
        assert_int_equal(instantiate(a, U1, "web1", 3), 0);
        assert_int_equal(list(b, &v), 0);                     /* a's, not b's */
        free(v);
        assert_int_equal(drv_destroy(b, U1, 3), -EPERM);     /* not b's: left alone */
        dom = observe(U1);
        assert_non_null(dom);
        assert_int_equal(virDomainIsActive(dom), 1);
        virDomainFree(dom);
        assert_int_equal(list(a, &v), 1);
        free(v);
        any = open_libvirt();                                 /* no host: every lsc domain */
        assert_int_equal(list(any, &v), 1);
        free(v);
        assert_int_equal(drv_destroy(a, U1, 3), 0);
        assert_null(observe(U1));
        drv_close(&any);
        drv_close(&a);
        drv_close(&b);
}

struct worker {
        struct drv *d;
        char uuid[DRV_UUID_STR];
        char name[16];
        int r;
};

static void *instantiate_and_destroy(void *arg)
{
        struct worker *w = arg;

        w->r = instantiate(w->d, w->uuid, w->name, 1);
        if (w->r == 0)
                w->r = drv_destroy(w->d, w->uuid, 1);
        return NULL;
}

/* The documented rule: one handle may serve several worker threads at once. */
static void libvirt_one_handle_serves_several_threads(void **state)
{
        struct drv *d = open_libvirt();
        struct worker w[4];
        pthread_t t[4];
        struct drv_instance *v;

        for (int i = 0; i < 4; i++) {
                w[i] = (struct worker){ .d = d };
                memcpy(w[i].uuid, "6c1d2a52-7f5e-4b7e-9a53-000000000100", DRV_UUID_STR);
                w[i].uuid[35] = (char)('0' + i);
                snprintf(w[i].name, sizeof(w[i].name), "par%d", i);
                assert_int_equal(pthread_create(&t[i], NULL, instantiate_and_destroy, &w[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
                assert_int_equal(pthread_join(t[i], NULL), 0);
                assert_int_equal(w[i].r, 0);
        }
        assert_int_equal(list(d, &v), 0);
        free(v);
        drv_close(&d);
}

static void libvirt_stats_report_instances_and_host(void **state)
{
        struct drv *d = open_libvirt();
        struct drv_stats st;

        assert_int_equal(instantiate(d, U1, "web1", 1), 0);
        assert_int_equal(drv_stats(d, &st), 0);
        assert_int_equal(st.n_instances, 1);
        assert_string_equal(st.instances[0].uuid, U1);
        assert_int_equal(st.instances[0].memory_kib, 512 * 1024);
        assert_true(st.host_cpu_total_ns > 0);
        assert_true(st.host_cpu_busy_ns <= st.host_cpu_total_ns);
        assert_true(st.host_memory_total_kib > 0);
        drv_stats_clear(&st);
        assert_null(st.instances);
        drv_close(&d);
}

/* vCPUs busy of uuid between two samples of d, taken ms apart. */
static double measured_vcpus(struct drv *d, const char *uuid, unsigned ms)
{
        struct drv_stats a, b;
        double v = -1;
        size_t i;

        assert_int_equal(drv_stats(d, &a), 0);
        usleep(ms * 1000);
        assert_int_equal(drv_stats(d, &b), 0);
        for (i = 0; i < b.n_instances && strcmp(b.instances[i].uuid, uuid) != 0; i++)
                ;
        assert_true(i < b.n_instances);
        assert_int_equal(drv_stats_instance_vcpus(&a, &b, i, &v), 0);
        drv_stats_clear(&a);
        drv_stats_clear(&b);
        return v;
}

/* One bulk call: this host's lsc domains, never another host's nor a foreign one. The
 * test driver's bulk records carry only state.*, so CPU time and memory come from
 * virDomainGetInfo, whose cpuTime there is the wall clock: one vCPU busy per domain. */
static void libvirt_stats_cover_this_hosts_lsc_domains_only(void **state)
{
        struct drv_config ca = config(), cb = config();
        struct drv *a, *b;
        struct drv_stats st;
        virDomainPtr dom;
        double v;

        ca.host = "ha";
        cb.host = "hb";
        a = open_driver("libvirt", &ca);
        b = open_driver("libvirt", &cb);
        assert_int_equal(instantiate(a, U1, "web1", 1), 0);
        assert_int_equal(instantiate(b, U2, "web2", 1), 0);
        assert_int_equal(drv_stats(a, &st), 0);
        assert_int_equal(st.n_instances, 1);
        assert_string_equal(st.instances[0].uuid, U1);
        assert_int_equal(st.instances[0].memory_kib, 512 * 1024);
        assert_true(st.sampled_us > 0);
        drv_stats_clear(&st);
        assert_int_equal(drv_stats(b, &st), 0);
        assert_int_equal(st.n_instances, 1);
        assert_string_equal(st.instances[0].uuid, U2);
        drv_stats_clear(&st);
        v = measured_vcpus(a, U1, 200);
        assert_true(v > 0.8 && v < 1.2);
        dom = observe(U1);                                      /* stopped outside: no memory in use */
        assert_int_equal(virDomainDestroy(dom), 0);
        virDomainFree(dom);
        assert_int_equal(drv_stats(a, &st), 0);
        assert_int_equal(st.n_instances, 1);
        assert_int_equal(st.instances[0].memory_kib, 0);
        drv_stats_clear(&st);
        assert_int_equal(drv_destroy(b, U2, 1), 0);
        assert_int_equal(drv_stats(b, &st), 0);                 /* nothing left: no bulk call */
        assert_int_equal(st.n_instances, 0);
        drv_stats_clear(&st);
        drv_close(&a);
        drv_close(&b);
        assert_test_domain_untouched();
}

static void libvirt_health_is_ok_on_a_live_connection(void **state)
{
        struct drv *d = open_libvirt();

        assert_int_equal(drv_health(d), 0);
        drv_close(&d);
}

static void libvirt_unknown_uri_fails_open_with_libvirts_message(void **state)
{
        struct drv_config cfg = config();
        struct drv *d = NULL;

        cfg.uri = "nosuch:///nowhere";
        assert_int_equal(drv_open("libvirt", &cfg, &d), -EIO);
        assert_null(d);
        assert_err_mentions(-EIO, "nosuch:///nowhere");
        /* libvirt's own words follow ours */
        assert_true(strlen(lsc_err_msg(-EIO)) > strlen("cannot connect to nosuch:///nowhere: "));
}

static void libvirt_refuses_kinds_it_cannot_run(void **state)
{
        struct drv *d = open_libvirt();
        struct ident id;
        struct drv_spec *s = (struct drv_spec *)ident(&id, U1, "web1", 1);

        s->kind = LSC_KIND_CONTAINER;
        assert_int_equal(drv_instantiate(d, s), -EOPNOTSUPP);
        s->kind = LSC_KIND_VM;
        s->uuid = "not-a-uuid";
        assert_int_equal(drv_instantiate(d, s), -EINVAL);
        assert_null(observe(U1));
        drv_close(&d);
}

/* ---- fake ---- */

static struct drv *open_fake(void)
{
        struct drv_config cfg = {0};

        return open_driver("fake", &cfg);
}

static void fake_follows_the_generation_rules(void **state)
{
        struct drv *d = open_fake();
        struct drv_instance *v;

        assert_int_equal(instantiate(d, U1, "web1", 2), 0);
        assert_int_equal(instantiate(d, U1, "web1", 2), 0);
        assert_int_equal(list(d, &v), 1);
        free(v);
        assert_int_equal(instantiate(d, U1, "web1", 1), -ESTALE);
        assert_int_equal(instantiate(d, U1, "web1", 3), 0);
        assert_int_equal(list(d, &v), 1);
        assert_int_equal(v[0].generation, 3);
        free(v);
        assert_int_equal(instantiate(d, U2, "web1", 1), -EEXIST);
        assert_int_equal(drv_destroy(d, U1, 2), 0);
        assert_int_equal(list(d, &v), 1);
        free(v);
        assert_int_equal(drv_destroy(d, U1, 3), 0);
        assert_int_equal(drv_destroy(d, U1, 3), 0);
        assert_int_equal(list(d, &v), 0);
        free(v);
        drv_close(&d);
}

static void fake_injected_failure_fails_next_n_instantiates_with_message(void **state)
{
        struct drv *d = open_fake();

        assert_int_equal(drv_fake_inject(d, DRV_FAKE_FAIL_INSTANTIATE, 2, "disk full on /srv"), 0);
        assert_int_equal(instantiate(d, U1, "web1", 1), -EIO);
        assert_err_mentions(-EIO, "disk full on /srv");
        assert_int_equal(instantiate(d, U1, "web1", 1), -EIO);
        assert_int_equal(instantiate(d, U1, "web1", 1), 0);
        drv_close(&d);
}

static void fake_faults_from_config_apply_from_open(void **state)
{
        struct drv_config cfg = {
                .fake_fail_instantiate = 1, .fake_fail_message = "no space", .fake_unhealthy = true,
        };
        struct drv *d = open_driver("fake", &cfg);

        assert_int_equal(instantiate(d, U1, "web1", 1), -EIO);
        assert_err_mentions(-EIO, "no space");
        assert_int_equal(instantiate(d, U1, "web1", 1), 0);
        assert_int_equal(drv_health(d), -EIO);
        drv_close(&d);
}

static void fake_load_keeps_its_share_of_the_vcpus_busy(void **state)
{
        struct drv_config cfg = { .fake_load_set = true, .fake_load_low = 0.5, .fake_load_high = 0.5 };
        struct drv *d = open_driver("fake", &cfg);
        struct drv_stats st;
        double v;

        assert_int_equal(instantiate(d, U1, "web1", 1), 0);     /* 2 vCPUs, 512 MiB */
        v = measured_vcpus(d, U1, 300);
        assert_true(v > 0.9 && v < 1.1);
        assert_int_equal(drv_fake_inject(d, DRV_FAKE_LOAD, 1000, NULL), 0);
        v = measured_vcpus(d, U1, 300);
        assert_true(v > 1.9 && v < 2.1);
        assert_int_equal(drv_fake_inject(d, DRV_FAKE_LOAD, 0, NULL), 0);
        v = measured_vcpus(d, U1, 200);
        assert_true(v >= 0.0 && v < 0.1);
        assert_int_equal(drv_fake_inject(d, DRV_FAKE_LOAD, 1001, NULL), -EINVAL);
        assert_err_mentions(-EINVAL, "1001");
        assert_int_equal(drv_stats(d, &st), 0);
        assert_int_equal(st.instances[0].memory_kib, 512 * 1024);
        drv_stats_clear(&st);
        drv_close(&d);
}

/* Daily 0.25-0.75 of 4 vCPUs: between 1 and 3 busy whatever the hour; without
 * fake_load one vCPU. */
static void fake_daily_load_stays_between_low_and_high(void **state)
{
        struct drv_config cfg = { .fake_load_set = true, .fake_load_low = 0.25, .fake_load_high = 0.75 };
        struct drv *d = open_driver("fake", &cfg);
        struct ident id;
        double v;

        ident(&id, U1, "web1", 1);
        id.spec.vcpus = 4;
        assert_int_equal(drv_instantiate(d, &id.spec), 0);
        v = measured_vcpus(d, U1, 300);
        assert_true(v > 0.9 && v < 3.1);
        drv_close(&d);
        d = open_fake();
        assert_int_equal(drv_instantiate(d, &id.spec), 0);
        v = measured_vcpus(d, U1, 300);
        assert_true(v > 0.9 && v < 1.1);
        drv_close(&d);
}

static void fake_load_out_of_range_fails_open(void **state)
{
        struct drv_config cfg = { .fake_load_set = true, .fake_load_low = 0.5, .fake_load_high = 1.5 };
        struct drv *d = NULL;

        assert_int_equal(drv_open("fake", &cfg, &d), -EINVAL);
        assert_null(d);
        assert_err_mentions(-EINVAL, "fake load");
        cfg.fake_load_low = 0.8;
        cfg.fake_load_high = 0.2;                               /* low above high */
        assert_int_equal(drv_open("fake", &cfg, &d), -EINVAL);
        assert_null(d);
}

static void fake_latency_delays_every_call(void **state)
{
        struct drv *d = open_fake();
        struct drv_capacity cap;
        int64_t t0;

        assert_int_equal(drv_fake_inject(d, DRV_FAKE_LATENCY, 100, NULL), 0);
        t0 = lsc_now_us();
        assert_int_equal(drv_capacity(d, &cap), 0);
        assert_true(lsc_now_us() - t0 >= 100000);
        assert_int_equal(drv_fake_inject(d, DRV_FAKE_LATENCY, 0, NULL), 0);
        t0 = lsc_now_us();
        assert_int_equal(drv_health(d), 0);
        assert_true(lsc_now_us() - t0 < 100000);
        drv_close(&d);
}

struct hung_call {
        struct drv *d;
        atomic_int done;
        int r;
};

static void *call_health(void *arg)
{
        struct hung_call *c = arg;

        c->r = drv_health(c->d);
        atomic_store(&c->done, 1);
        return NULL;
}

static void fake_hang_blocks_calls_until_released(void **state)
{
        struct hung_call c = { .d = open_fake() };
        pthread_t t;

        assert_int_equal(drv_fake_inject(c.d, DRV_FAKE_HANG, 1, NULL), 0);
        assert_int_equal(pthread_create(&t, NULL, call_health, &c), 0);
        usleep(150000);
        assert_int_equal(atomic_load(&c.done), 0);
        assert_int_equal(drv_fake_inject(c.d, DRV_FAKE_HANG, 0, NULL), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(atomic_load(&c.done), 1);
        assert_int_equal(c.r, 0);
        drv_close(&c.d);
}

static void fake_unhealthy_reports_eio_with_detail(void **state)
{
        struct drv *d = open_fake();

        assert_int_equal(drv_health(d), 0);
        assert_int_equal(drv_fake_inject(d, DRV_FAKE_UNHEALTHY, 1, "hypervisor socket gone"), 0);
        assert_int_equal(drv_health(d), -EIO);
        assert_err_mentions(-EIO, "hypervisor socket gone");
        assert_int_equal(drv_fake_inject(d, DRV_FAKE_UNHEALTHY, 0, NULL), 0);
        assert_int_equal(drv_health(d), 0);
        drv_close(&d);
}

static void fake_capacity_has_defaults_and_overrides(void **state)
{
        struct drv_config cfg = { .vcpus = 64, .memory_mib = 262144 };
        struct drv *d = open_fake();
        struct drv_capacity cap;

        assert_int_equal(drv_capacity(d, &cap), 0);
        assert_int_equal(cap.vcpus, 8);
        assert_int_equal(cap.memory_mib, 16384);
        assert_int_equal(cap.disk_gib, 100);
        drv_close(&d);
        d = open_driver("fake", &cfg);
        assert_int_equal(drv_capacity(d, &cap), 0);
        assert_int_equal(cap.vcpus, 64);
        assert_int_equal(cap.memory_mib, 262144);
        assert_int_equal(cap.disk_gib, 100);
        drv_close(&d);
}

static void fake_state_changed_outside_is_what_list_reports(void **state)
{
        struct drv *d = open_fake();
        struct drv_instance *v;
        struct drv_stats st;

        assert_int_equal(instantiate(d, U1, "web1", 1), 0);
        assert_int_equal(drv_fake_set_state(d, U1, DRV_STATE_CRASHED), 0);
        assert_int_equal(list(d, &v), 1);
        assert_int_equal(v[0].state, DRV_STATE_CRASHED);
        free(v);
        assert_int_equal(drv_stats(d, &st), 0);
        assert_int_equal(st.n_instances, 1);
        assert_int_equal(st.instances[0].memory_kib, 0);
        drv_stats_clear(&st);
        assert_int_equal(instantiate(d, U1, "web1", 1), 0);
        assert_int_equal(list(d, &v), 1);
        assert_int_equal(v[0].state, DRV_STATE_RUNNING);
        free(v);
        assert_int_equal(drv_fake_set_state(d, U2, DRV_STATE_STOPPED), -ENOENT);
        drv_close(&d);
}

static void fake_inject_refuses_other_handles(void **state)
{
        struct drv *d = open_libvirt();

        assert_int_equal(drv_fake_inject(d, DRV_FAKE_UNHEALTHY, 1, NULL), -EINVAL);
        assert_int_equal(drv_health(d), 0);
        drv_close(&d);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(lookup_knows_every_driver, clear),
                cmocka_unit_test_setup(null_slot_returns_eopnotsupp, clear),
                cmocka_unit_test_setup(spec_with_bad_uuid_or_name_is_rejected, clear),
                cmocka_unit_test_setup(cpu_permille_is_the_busy_share_between_samples, clear),
                cmocka_unit_test_setup(instance_vcpus_are_cpu_time_over_wall_time, clear),
                cmocka_unit_test_setup(volume_path_is_uuid_qcow2_inside_volume_dir, clear),
                cmocka_unit_test_setup(libvirt_host_sees_only_its_own_domains, clear),
                cmocka_unit_test_setup(volume_path_without_volume_dir_or_with_bad_input_is_refused, clear),
#define LV(t) cmocka_unit_test_setup_teardown(t, clear, remove_lsc_domains)
                LV(libvirt_instantiate_runs_domain_with_identity_uuid_and_mac),
                LV(libvirt_list_shows_only_lsc_domains_with_generation),
                LV(libvirt_foreign_domain_is_never_touched),
                LV(libvirt_metadata_naming_another_uuid_is_not_ownership),
                LV(libvirt_destroy_removes_generations_up_to_g_and_is_idempotent),
                LV(libvirt_instantiate_twice_at_same_generation_is_a_noop),
                LV(libvirt_instantiate_at_higher_generation_replaces_older),
                LV(libvirt_instantiate_below_running_generation_is_refused),
                LV(libvirt_name_held_by_another_identity_is_refused),
                LV(libvirt_instance_stopped_outside_is_listed_stopped_and_restarted),
                LV(libvirt_shutdown_stops_and_removes_the_instance),
                LV(libvirt_persistent_without_volume_dir_is_refused),
                LV(libvirt_persistent_volume_is_made_once_and_outlives_destroy),
                LV(libvirt_capacity_reads_node_info),
                LV(libvirt_second_handle_sees_the_same_state),
                LV(libvirt_one_handle_serves_several_threads),
                LV(libvirt_stats_report_instances_and_host),
                LV(libvirt_stats_cover_this_hosts_lsc_domains_only),
                LV(libvirt_health_is_ok_on_a_live_connection),
                LV(libvirt_unknown_uri_fails_open_with_libvirts_message),
                LV(libvirt_refuses_kinds_it_cannot_run),
#undef LV
                cmocka_unit_test_setup(fake_follows_the_generation_rules, clear),
                cmocka_unit_test_setup(fake_injected_failure_fails_next_n_instantiates_with_message, clear),
                cmocka_unit_test_setup(fake_faults_from_config_apply_from_open, clear),
                cmocka_unit_test_setup(fake_latency_delays_every_call, clear),
                cmocka_unit_test_setup(fake_load_keeps_its_share_of_the_vcpus_busy, clear),
                cmocka_unit_test_setup(fake_daily_load_stays_between_low_and_high, clear),
                cmocka_unit_test_setup(fake_load_out_of_range_fails_open, clear),
                cmocka_unit_test_setup(fake_hang_blocks_calls_until_released, clear),
                cmocka_unit_test_setup(fake_unhealthy_reports_eio_with_detail, clear),
                cmocka_unit_test_setup(fake_capacity_has_defaults_and_overrides, clear),
                cmocka_unit_test_setup(fake_state_changed_outside_is_what_list_reports, clear),
                cmocka_unit_test_setup(fake_inject_refuses_other_handles, clear),
        };

        return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
