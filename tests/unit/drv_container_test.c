/* Unit tests for agent/drv_container.c with the real OCI runtime (runc, and crun where
 * installed) on a busybox-static root filesystem. The process first enters a network
 * namespace of its own, so the host ends of the veths and the test bridge never
 * appear on the machine's; the containers' namespaces are named after the test hosts
 * (lscct-...). Skipped, saying why, only when runc or busybox-static is missing:
 * tests/run installs both. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver.h"
#include "err.h"
#include "util.h"

#define U1 "5c1d2a52-7f5e-4b7e-9a53-000000000001"
#define U2 "5c1d2a52-7f5e-4b7e-9a53-000000000002"
#define BRIDGE "lscctbr0"
#define BUSYBOX "/bin/busybox"

static char base[] = "/var/tmp/lscct-drv-XXXXXX";
static char images[4200], dir1[4200], dir2[4200];
/* host names of this process: they name the network namespaces, which are the
 * machine's, so two runs at once (two build dirs) never meet */
static char host1[32], host2[32];
#define HOST1 host1
#define HOST2 host2
static const char *skip_why;

static void assert_err_mentions(int err, const char *needle)
{
        const char *msg = lsc_err_msg(err);

        if (!strstr(msg, needle))
                fail_msg("error \"%s\" does not mention \"%s\"", msg, needle);
}

static void need_runtime(void)
{
        if (skip_why) {
                print_message("skipped: %s\n", skip_why);
                skip();
        }
}

/* Runs a shell command; its first line of output in out (when given). */
static int sh(char *out, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sh(char *out, size_t len, const char *fmt, ...)
{
        char cmd[8192];
        va_list ap;
        FILE *p;
        int rc;

        va_start(ap, fmt);
        vsnprintf(cmd, sizeof(cmd), fmt, ap);
        va_end(ap);
        p = popen(cmd, "r");
        if (!p)
                return -1;
        if (out) {
                out[0] = '\0';
                if (!fgets(out, (int)len, p))
                        out[0] = '\0';
                out[strcspn(out, "\n")] = '\0';
        }
        while (fgetc(p) != EOF)
                ;
        rc = pclose(p);
        return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static struct drv_config config(const char *host, const char *dir)
{
        return (struct drv_config){ .host = host, .state_dir = dir, .image_dir = images };
}

static struct drv *open_ct(const struct drv_config *cfg)
{
        struct drv *d = NULL;
        int r = drv_open("container", cfg, &d);

        if (r < 0)
                fail_msg("drv_open container: %s", lsc_err_msg(r));
        return d;
}

struct ident {
        struct drv_spec spec;
        struct lsc_mac macs[2];
        struct lsc_ip ips[2];
};

/* A container identity with two NICs and an IPv4 and an IPv6 address. */
static const struct drv_spec *ident(struct ident *id, const char *uuid, const char *name, uint64_t g)
{
        memset(id, 0, sizeof(*id));
        assert_int_equal(lsc_mac_parse("02:4c:53:00:00:01", &id->macs[0]), 0);
        assert_int_equal(lsc_mac_parse("02:4c:53:00:00:02", &id->macs[1]), 0);
        id->macs[0].b[5] = (uint8_t)(uuid[35] - '0') * 2 + 1;
        id->macs[1].b[5] = (uint8_t)(uuid[35] - '0') * 2 + 2;
        assert_int_equal(lsc_ip_parse("10.20.0.5", &id->ips[0]), 0);
        assert_int_equal(lsc_ip_parse("fd00:20::5", &id->ips[1]), 0);
        id->ips[0].b[3] = (uint8_t)(uuid[35] - '0' + 4);
        id->spec = (struct drv_spec){
                .uuid = uuid, .name = name, .generation = g, .kind = LSC_KIND_CONTAINER,
                .vcpus = 1, .memory_mib = 128, .disk_mode = LSC_DISK_EPHEMERAL, .image = "bb",
                .macs = id->macs, .n_macs = 2, .ips = id->ips, .n_ips = 2, .hostname = "web1",
        };
        return &id->spec;
}

static int instantiate(struct drv *d, const char *uuid, const char *name, uint64_t g)
{
        struct ident id;

        return drv_instantiate(d, ident(&id, uuid, name, g));
}

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

static void assert_listed(struct drv *d, const char *uuid, uint64_t g, enum drv_state st)
{
        struct drv_instance *v;
        int n = list(d, &v);
        const struct drv_instance *i = find(v, n, uuid);

        if (!i)
                fail_msg("%s is not listed", uuid);
        assert_int_equal(i->generation, g);
        if (i->state != st)
                fail_msg("%s is %s, expected %s", uuid, drv_state_names[i->state], drv_state_names[st]);
        free(v);
}

static void assert_not_listed(struct drv *d, const char *uuid)
{
        struct drv_instance *v;
        int n = list(d, &v);

        assert_null(find(v, n, uuid));
        free(v);
}

/* `runc exec` in uuid's container of the test host whose state dir is dir. */
static int in_container(char *out, size_t len, const char *dir, const char *uuid, const char *cmd)
{
        return sh(out, len, "runc --root %s/runtime exec lsc-%s %s 2>&1", dir, uuid, cmd);
}

static int image_write(void)
{
        /* a busybox rootfs whose init ends on SIGTERM, and one that ignores it */
        if (sh(NULL, 0,
               "set -e; d=%s; mkdir -p $d/bb/bin $d/bb/etc $d/bb/proc $d/bb/sys $d/bb/dev $d/bb/tmp; "
               "cp " BUSYBOX " $d/bb/bin/busybox; "
               "for c in sh sleep hostname ip cat ls touch; do ln -sf busybox $d/bb/bin/$c; done; "
               "printf '%%s\\n' /bin/sh -c 'trap \"exit 0\" TERM; while :; do sleep 0.1; done' >$d/bb.cmd; "
               "cp -a $d/bb $d/stubborn; "
               "printf '%%s\\n' /bin/sh -c 'trap \"\" TERM; while :; do sleep 0.1; done' >$d/stubborn.cmd; "
               "tar -C $d/bb -cf $d/bbtar.tar .; cp $d/bb.cmd $d/bbtar.cmd; "
               "cp -a $d/bb $d/evil; rmdir $d/evil/etc; ln -s %s/target $d/evil/etc; mkdir $d/target; "
               "cp $d/bb.cmd $d/evil.cmd",
               images, images) != 0)
                return -1;
        return 0;
}

static int setup_all(void **state)
{
        char out[256];

        if (sh(out, sizeof(out), "command -v runc") != 0)
                skip_why = "runc is not installed (apt-get install runc; tests/run does)";
        else if (access(BUSYBOX, X_OK) != 0)
                skip_why = "busybox-static is not installed (apt-get install busybox-static)";
        else if (geteuid() != 0)
                skip_why = "containers need root";
        if (skip_why)
                return 0;
        snprintf(host1, sizeof(host1), "lscct-%ld-1", (long)getpid());
        snprintf(host2, sizeof(host2), "lscct-%ld-2", (long)getpid());
        if (!mkdtemp(base))
                return -1;
        snprintf(images, sizeof(images), "%s/images", base);
        snprintf(dir1, sizeof(dir1), "%s/h1", base);
        snprintf(dir2, sizeof(dir2), "%s/h2", base);
        if (mkdir(images, 0755) < 0 || image_write() < 0)
                return -1;
        /* our own network namespace: veth host ends and the bridge live here only */
        if (unshare(CLONE_NEWNET) < 0)
                return -1;
        return sh(NULL, 0, "ip link set lo up && ip link add " BRIDGE " type bridge && ip link set " BRIDGE " up");
}

static int teardown_all(void **state)
{
        if (skip_why)
                return 0;
        /* whatever a failed test left */
        for (int h = 0; h < 2; h++) {
                struct drv_config cfg = config(h ? HOST2 : HOST1, h ? dir2 : dir1);
                struct drv *d = NULL;
                struct drv_instance *v;
                int n;

                if (drv_open("container", &cfg, &d) < 0)
                        continue;
                n = drv_list(d, &v);
                for (int i = 0; i < n; i++)
                        drv_destroy(d, v[i].uuid, UINT64_MAX);
                if (n >= 0)
                        free(v);
                drv_close(&d);
        }
        return sh(NULL, 0, "rm -rf %s", base) == 0 ? 0 : -1;
}

static int clear(void **state)
{
        lsc_err_clear();
        return 0;
}

/* ---- the tests ---- */

static void container_runs_with_identity_mac_ip_and_hostname(void **state)
{
        struct drv_config cfg = config(HOST1, dir1);
        struct drv *d;
        char out[512];

        need_runtime();
        d = open_ct(&cfg);
        assert_int_equal(instantiate(d, U1, "web1", 1), 0);
        assert_listed(d, U1, 1, DRV_STATE_RUNNING);
        /* the network identity, in the namespace named after host and uuid */
        assert_int_equal(sh(out, sizeof(out), "ip -n lscc-%s-" U1 " -br link show eth0", HOST1), 0);
        assert_non_null(strstr(out, "02:4c:53:00:00:03"));
        assert_int_equal(sh(out, sizeof(out), "ip -n lscc-%s-" U1 " -br link show eth1", HOST1), 0);
        assert_non_null(strstr(out, "02:4c:53:00:00:04"));
        assert_int_equal(sh(out, sizeof(out), "ip -n lscc-%s-" U1 " -4 -o addr show dev eth0", HOST1), 0);
        assert_non_null(strstr(out, "10.20.0.5/32"));
        assert_int_equal(sh(out, sizeof(out), "ip -n lscc-%s-" U1 " -6 -o addr show dev eth0 scope global", HOST1),
                         0);
        assert_non_null(strstr(out, "fd00:20::5/128"));
        assert_int_equal(sh(out, sizeof(out), "ip -n lscc-%s-" U1 " -4 route show default", HOST1), 0);
        assert_non_null(strstr(out, "dev eth0"));
        /* ...and from inside the container */
        assert_int_equal(in_container(out, sizeof(out), dir1, U1, "ip -o -4 addr show dev eth0"), 0);
        assert_non_null(strstr(out, "10.20.0.5/32"));
        assert_int_equal(in_container(out, sizeof(out), dir1, U1, "hostname"), 0);
        assert_string_equal(out, "web1");
        assert_int_equal(in_container(out, sizeof(out), dir1, U1, "cat /etc/lsc/identity"), 0);
        assert_string_equal(out, "uuid=" U1);
        /* a write lands in the instance's layer, never in the shared image */
        assert_int_equal(in_container(out, sizeof(out), dir1, U1, "touch /etc/written"), 0);
        assert_int_not_equal(access(images, F_OK), -1);
        assert_int_not_equal(sh(NULL, 0, "test -e %s/bb/etc/written", images), 0);
        assert_int_not_equal(sh(NULL, 0, "test -e %s/bb/etc/lsc", images), 0);
        assert_int_equal(drv_destroy(d, U1, 1), 0);
        drv_close(&d);
}

static void destroy_removes_container_layer_and_network_and_is_idempotent(void **state)
{
        struct drv_config cfg = config(HOST1, dir1);
        struct drv *d;

        need_runtime();
        d = open_ct(&cfg);
        assert_int_equal(instantiate(d, U1, "web1", 3), 0);
        /* below the running generation: nothing happens */
        assert_int_equal(drv_destroy(d, U1, 2), 0);
        assert_listed(d, U1, 3, DRV_STATE_RUNNING);
        assert_int_equal(drv_destroy(d, U1, 3), 0);
        assert_not_listed(d, U1);
        assert_int_not_equal(sh(NULL, 0, "test -e /run/netns/lscc-%s-" U1, HOST1), 0);
        assert_int_not_equal(sh(NULL, 0, "test -e %s/containers/" U1 ".3", dir1), 0);
        assert_int_not_equal(sh(NULL, 0, "test -e %s/runtime/lsc-" U1, dir1), 0);
        /* no host end is left in this process's namespace (the bridge stays) */
        assert_int_not_equal(sh(NULL, 0, "ip -br link | grep -q '^lsc[0-9a-f]\\{12\\}'"), 0);
        assert_int_not_equal(sh(NULL, 0, "grep -q '%s/containers/" U1 "' /proc/self/mountinfo", dir1), 0);
        assert_int_equal(drv_destroy(d, U1, 3), 0);
        assert_int_equal(drv_destroy(d, U2, 1), 0);
        drv_close(&d);
}

static void instantiate_follows_the_generation_rules(void **state)
{
        struct drv_config cfg = config(HOST1, dir1);
        struct drv *d;
        char pid1[64], pid2[64];

        need_runtime();
        d = open_ct(&cfg);
        assert_int_equal(instantiate(d, U1, "web1", 2), 0);
        assert_int_equal(sh(pid1, sizeof(pid1), "runc --root %s/runtime state lsc-" U1 " | grep '\"pid\"'", dir1), 0);
        /* the same binding again is a no-op: the same process */
        assert_int_equal(instantiate(d, U1, "web1", 2), 0);
        assert_int_equal(sh(pid2, sizeof(pid2), "runc --root %s/runtime state lsc-" U1 " | grep '\"pid\"'", dir1), 0);
        assert_string_equal(pid1, pid2);
        /* an older one is stale */
        assert_int_equal(instantiate(d, U1, "web1", 1), -ESTALE);
        assert_listed(d, U1, 2, DRV_STATE_RUNNING);
        /* a newer one replaces it */
        assert_int_equal(instantiate(d, U1, "web1", 5), 0);
        assert_listed(d, U1, 5, DRV_STATE_RUNNING);
        assert_int_not_equal(sh(NULL, 0, "test -e %s/containers/" U1 ".2", dir1), 0);
        assert_int_equal(drv_destroy(d, U1, UINT64_MAX), 0);
        drv_close(&d);
}

static void half_made_instance_is_listed_and_made_whole_or_removed(void **state)
{
        struct drv_config cfg = config(HOST1, dir1);
        struct drv *d;

        need_runtime();
        d = open_ct(&cfg);
        /* the container gone behind the agent's back (a crash before start, a reboot):
         * the bundle says what it was, as stopped */
        assert_int_equal(instantiate(d, U1, "web1", 1), 0);
        assert_int_equal(sh(NULL, 0, "runc --root %s/runtime delete --force lsc-" U1, dir1), 0);
        assert_listed(d, U1, 1, DRV_STATE_STOPPED);
        assert_int_equal(instantiate(d, U1, "web1", 1), 0);
        assert_listed(d, U1, 1, DRV_STATE_RUNNING);
        /* created but never started (a crash between create and start) */
        assert_int_equal(sh(NULL, 0, "runc --root %s/runtime kill lsc-" U1 " KILL; sleep 0.3; "
                               "runc --root %s/runtime delete --force lsc-" U1 "; "
                               "runc --root %s/runtime create --bundle %s/containers/" U1 ".1 lsc-" U1
                               " </dev/null >/dev/null 2>&1", dir1, dir1, dir1, dir1), 0);
        assert_listed(d, U1, 1, DRV_STATE_STOPPED);
        assert_int_equal(instantiate(d, U1, "web1", 1), 0);
        assert_listed(d, U1, 1, DRV_STATE_RUNNING);
        /* a bundle dir a crash left before its config.json: destroy takes it too */
        assert_int_equal(sh(NULL, 0, "mkdir %s/containers/" U2 ".4", dir1), 0);
        assert_not_listed(d, U2);
        assert_int_equal(drv_destroy(d, U2, 4), 0);
        assert_int_not_equal(sh(NULL, 0, "test -e %s/containers/" U2 ".4", dir1), 0);
        assert_int_equal(drv_destroy(d, U1, 1), 0);
        drv_close(&d);
}

static void each_host_lists_only_its_own_containers(void **state)
{
        struct drv_config c1 = config(HOST1, dir1), c2 = config(HOST2, dir2);
        struct drv *d1, *d2;

        need_runtime();
        d1 = open_ct(&c1);
        d2 = open_ct(&c2);
        assert_int_equal(instantiate(d1, U1, "web1", 1), 0);
        assert_int_equal(instantiate(d2, U2, "web2", 1), 0);
        assert_listed(d1, U1, 1, DRV_STATE_RUNNING);
        assert_not_listed(d1, U2);
        assert_listed(d2, U2, 1, DRV_STATE_RUNNING);
        assert_not_listed(d2, U1);
        /* a handle of another host name on host 1's state dir owns nothing there */
        {
                struct drv_config other = config(HOST2, dir1);
                struct drv *o = open_ct(&other);

                assert_not_listed(o, U1);
                assert_int_equal(drv_destroy(o, U1, UINT64_MAX), -EPERM);
                assert_err_mentions(-EPERM, "not created by lsc");
                drv_close(&o);
        }
        assert_listed(d1, U1, 1, DRV_STATE_RUNNING);
        assert_int_equal(drv_destroy(d1, U1, 1), 0);
        assert_int_equal(drv_destroy(d2, U2, 1), 0);
        drv_close(&d1);
        drv_close(&d2);
}

static void shutdown_asks_with_sigterm_then_kills_after_the_timeout(void **state)
{
        struct drv_config cfg = config(HOST1, dir1);
        struct ident id;
        struct drv *d;
        int64_t t0;

        need_runtime();
        d = open_ct(&cfg);
        assert_int_equal(instantiate(d, U1, "web1", 1), 0);
        t0 = lsc_now_us();
        assert_int_equal(drv_shutdown(d, U1, 1, 5000), 0);
        assert_true(lsc_now_us() - t0 < 4000000);
        assert_not_listed(d, U1);
        /* an init that ignores SIGTERM is killed at the timeout */
        ident(&id, U1, "web1", 2);
        id.spec.image = "stubborn";
        assert_int_equal(drv_instantiate(d, &id.spec), 0);
        t0 = lsc_now_us();
        assert_int_equal(drv_shutdown(d, U1, 2, 400), 1);
        assert_true(lsc_now_us() - t0 >= 400000);
        assert_not_listed(d, U1);
        assert_int_equal(drv_shutdown(d, U1, 2, 400), 0);
        drv_close(&d);
}

static void host_ends_join_the_configured_bridge(void **state)
{
        struct drv_config cfg = config(HOST1, dir1);
        struct drv *d;
        char out[64];

        need_runtime();
        cfg.bridge = BRIDGE;
        d = open_ct(&cfg);
        assert_int_equal(instantiate(d, U1, "web1", 1), 0);
        assert_int_equal(sh(out, sizeof(out), "ip -br link show master " BRIDGE " | grep -c '^lsc'"), 0);
        assert_string_equal(out, "2");
        assert_int_equal(drv_destroy(d, U1, 1), 0);
        assert_int_equal(sh(out, sizeof(out), "ip -br link show master " BRIDGE " | grep -c '^lsc'"), 1);
        assert_string_equal(out, "0");
        drv_close(&d);
}

static void tarball_image_is_unpacked_once_into_the_cache(void **state)
{
        struct drv_config cfg = config(HOST1, dir1);
        struct ident id;
        struct drv *d;
        char ino1[64], ino2[64];

        need_runtime();
        d = open_ct(&cfg);
        ident(&id, U1, "web1", 1);
        id.spec.image = "bbtar";
        assert_int_equal(drv_instantiate(d, &id.spec), 0);
        assert_listed(d, U1, 1, DRV_STATE_RUNNING);
        assert_int_equal(sh(ino1, sizeof(ino1), "stat -c %%i %s/images/bbtar/bin/busybox", dir1), 0);
        assert_int_equal(drv_destroy(d, U1, 1), 0);
        id.spec.generation = 2;
        assert_int_equal(drv_instantiate(d, &id.spec), 0);
        assert_int_equal(sh(ino2, sizeof(ino2), "stat -c %%i %s/images/bbtar/bin/busybox", dir1), 0);
        assert_string_equal(ino1, ino2);
        assert_int_equal(drv_destroy(d, U1, 2), 0);
        drv_close(&d);
}

static void bad_specs_and_settings_are_refused_with_the_reason(void **state)
{
        struct drv_config cfg = config(HOST1, dir1);
        struct ident id;
        struct drv *d = NULL;

        need_runtime();
        cfg.runtime = "/nonexistent/runc";
        assert_int_equal(drv_open("container", &cfg, &d), -ENOENT);
        assert_err_mentions(-ENOENT, "runtime \"/nonexistent/runc\"");
        assert_null(d);
        cfg = config(HOST1, dir1);
        cfg.bridge = "lscctnobr";
        assert_int_equal(drv_open("container", &cfg, &d), -ENOENT);
        assert_err_mentions(-ENOENT, "bridge \"lscctnobr\"");
        cfg = config(HOST1, dir1);
        cfg.runtime_root = "relative/root";
        assert_int_equal(drv_open("container", &cfg, &d), -EINVAL);
        assert_err_mentions(-EINVAL, "runtime_root");
        cfg = config(HOST1, dir1);
        d = open_ct(&cfg);
        ident(&id, U1, "web1", 1);
        id.spec.kind = LSC_KIND_VM;
        assert_int_equal(drv_instantiate(d, &id.spec), -EOPNOTSUPP);
        assert_err_mentions(-EOPNOTSUPP, "kind container, not vm");
        ident(&id, U1, "web1", 1);
        id.spec.disk_mode = LSC_DISK_PERSISTENT;
        assert_int_equal(drv_instantiate(d, &id.spec), -EOPNOTSUPP);
        assert_err_mentions(-EOPNOTSUPP, "no persistent disks");
        ident(&id, U1, "web1", 1);
        id.spec.image = NULL;
        assert_int_equal(drv_instantiate(d, &id.spec), -EINVAL);
        assert_err_mentions(-EINVAL, "needs an image");
        id.spec.image = "missing";
        assert_int_equal(drv_instantiate(d, &id.spec), -ENOENT);
        assert_err_mentions(-ENOENT, "image missing not found");
        /* an image whose /etc points outside: nothing is written through it */
        id.spec.image = "evil";
        assert_int_equal(drv_instantiate(d, &id.spec), -ELOOP);
        assert_err_mentions(-ELOOP, "not a directory");
        assert_int_not_equal(sh(NULL, 0, "ls -A %s/target | grep -q .", images), 0);
        /* nothing half-made is left by a refusal */
        assert_not_listed(d, U1);
        assert_int_not_equal(sh(NULL, 0, "test -e /run/netns/lscc-%s-" U1, HOST1), 0);
        drv_close(&d);
}

static void capacity_stats_and_health_read_the_host(void **state)
{
        struct drv_config cfg = config(HOST1, dir1);
        struct drv_capacity cap;
        struct drv_stats st = {0};
        struct drv *d;
        char note[256];

        need_runtime();
        d = open_ct(&cfg);
        assert_int_equal(drv_capacity(d, &cap), 0);
        assert_int_equal(cap.vcpus, (uint32_t)sysconf(_SC_NPROCESSORS_ONLN));
        assert_true(cap.memory_mib > 0 && cap.disk_gib > 0);
        assert_int_equal(drv_health(d), 0);
        assert_int_equal(drv_note(d, note, sizeof(note)), 0);
        assert_int_equal(instantiate(d, U1, "web1", 1), 0);
        assert_int_equal(drv_stats(d, &st), 0);
        assert_int_equal(st.n_instances, 1);
        assert_string_equal(st.instances[0].uuid, U1);
        /* read from its cgroup (v1 cpuacct and memory here, v2 elsewhere) */
        assert_true(st.instances[0].cpu_time_ns > 0);
        assert_true(st.instances[0].memory_kib > 0);
        assert_true(st.host_cpu_total_ns > 0 && st.host_memory_total_kib > 0);
        drv_stats_clear(&st);
        assert_int_equal(drv_destroy(d, U1, 1), 0);
        drv_close(&d);
        cfg.vcpus = 3;
        cfg.memory_mib = 1000;
        cfg.disk_gib = 7;
        d = open_ct(&cfg);
        assert_int_equal(drv_capacity(d, &cap), 0);
        assert_int_equal(cap.vcpus, 3);
        assert_int_equal(cap.memory_mib, 1000);
        assert_int_equal(cap.disk_gib, 7);
        drv_close(&d);
}

/* crun: on a hybrid-cgroup host it runs in a cgroup-v2-only mount namespace, without
 * limits, and the note says so. */
static void crun_runs_containers_and_notes_what_the_host_lacks(void **state)
{
        struct drv_config cfg = config(HOST1, dir1);
        struct drv *d;
        char note[256], out[256];

        need_runtime();
        if (sh(NULL, 0, "command -v crun") != 0) {
                print_message("skipped: crun is not installed\n");
                skip();
        }
        cfg.runtime = "crun";
        cfg.runtime_root = NULL;
        d = open_ct(&cfg);
        assert_int_equal(drv_note(d, note, sizeof(note)), 0);
        if (sh(NULL, 0, "test \"$(stat -f -c %%T /sys/fs/cgroup)\" != cgroup2fs && "
                        "test \"$(stat -f -c %%T /sys/fs/cgroup/unified)\" = cgroup2fs") == 0)
                assert_non_null(strstr(note, "crun on hybrid cgroups"));
        assert_int_equal(instantiate(d, U2, "web2", 1), 0);
        assert_listed(d, U2, 1, DRV_STATE_RUNNING);
        assert_int_equal(sh(out, sizeof(out), "ip -n lscc-%s-" U2 " -4 -o addr show dev eth0", HOST1), 0);
        assert_non_null(strstr(out, "10.20.0.6/32"));
        assert_int_equal(drv_shutdown(d, U2, 1, 3000), 0);
        assert_not_listed(d, U2);
        drv_close(&d);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(container_runs_with_identity_mac_ip_and_hostname, clear),
                cmocka_unit_test_setup(destroy_removes_container_layer_and_network_and_is_idempotent, clear),
                cmocka_unit_test_setup(instantiate_follows_the_generation_rules, clear),
                cmocka_unit_test_setup(half_made_instance_is_listed_and_made_whole_or_removed, clear),
                cmocka_unit_test_setup(each_host_lists_only_its_own_containers, clear),
                cmocka_unit_test_setup(shutdown_asks_with_sigterm_then_kills_after_the_timeout, clear),
                cmocka_unit_test_setup(host_ends_join_the_configured_bridge, clear),
                cmocka_unit_test_setup(tarball_image_is_unpacked_once_into_the_cache, clear),
                cmocka_unit_test_setup(bad_specs_and_settings_are_refused_with_the_reason, clear),
                cmocka_unit_test_setup(capacity_stats_and_health_read_the_host, clear),
                cmocka_unit_test_setup(crun_runs_containers_and_notes_what_the_host_lacks, clear),
        };

        return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
