/* agent/drv_metal.c against a real BMC (ipmi_sim via tests/lib/ipmi-sim): instantiate
 * sets PXE, powers on and returns only when the boot callback comes (HTTP, sent here
 * with curl); a boot that never calls back fails and powers off; one identity per
 * machine; generations; the record survives a reopen; destroy powers off and removes
 * the boot entries. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"
#include "drv_metal.h"
#include "err.h"
#include "util.h"

#define U1 "11111111-2222-4333-8444-555555555555"
#define U2 "66666666-2222-4333-8444-555555555555"

static char dir[] = "/tmp/lscmt-metal.XXXXXX";
static char sim_dir[300], boot_dir[300], state_dir[300], listen_on[64];
static struct drv_metal_config mc;
static struct drv_config dc;

static void slurp(const char *path, char *buf, size_t len)
{
        FILE *f = fopen(path, "re");
        size_t n = 0;

        if (f) {
                n = fread(buf, 1, len - 1, f);
                fclose(f);
        }
        buf[n] = '\0';
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
        char cmd[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(cmd, sizeof(cmd), fmt, ap);
        va_end(ap);
        return system(cmd);
}

/* A TCP port nothing listens on now: the kernel's pick for port 0. */
static int free_port(void)
{
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = 0;

        if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
            getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
                port = ntohs(sa.sin_port);
        if (fd >= 0)
                close(fd);
        return port;
}

static int setup(void **state)
{
        char buf[64], path[400];

        if (!mkdtemp(dir))
                return -1;
        snprintf(sim_dir, sizeof(sim_dir), "%s/bmc", dir);
        snprintf(boot_dir, sizeof(boot_dir), "%s/boot", dir);
        snprintf(state_dir, sizeof(state_dir), "%s/state", dir);
        mkdir(sim_dir, 0700);
        mkdir(boot_dir, 0755);
        mkdir(state_dir, 0700);
        if (sh("%s/ipmi-sim start %s >/dev/null", LSC_TEST_LIB, sim_dir) != 0)
                return -1;
        snprintf(path, sizeof(path), "%s/port", sim_dir);
        slurp(path, buf, sizeof(buf));
        if (lsc_ipmi_bmc_set(&mc.bmc, "bmc_", "127.0.0.1", (uint32_t)atoi(buf), "admin", "secret") < 0)
                return -1;
        mc.bmc.timeout_ms = 1000;
        mc.bmc.retries = 1;
        lsc_mac_parse("52:54:00:bb:00:01", &mc.mac);
        snprintf(listen_on, sizeof(listen_on), "127.0.0.1:%d", free_port());
        mc.boot_dir = boot_dir;
        mc.boot_listen = listen_on;
        mc.boot_kernel = "vmlinuz";
        mc.boot_initrd = "initrd.img";
        mc.boot_timeout_ms = 20000;
        dc = (struct drv_config){ .state_dir = state_dir, .vcpus = 8, .memory_mib = 16384, .metal = &mc };
        return 0;
}

static int teardown(void **state)
{
        sh("%s/ipmi-sim stop %s", LSC_TEST_LIB, sim_dir);
        return sh("rm -rf %s", dir) == 0 ? 0 : -1;
}

static struct drv_spec spec(const char *uuid, const char *name, uint64_t g)
{
        static struct lsc_ip ip;

        lsc_ip_parse("10.70.0.5", &ip);
        return (struct drv_spec){ .uuid = uuid, .name = name, .generation = g, .kind = LSC_KIND_METAL, .vcpus = 8,
                                  .memory_mib = 16384, .ips = &ip, .n_ips = 1, .hostname = "db.example" };
}

static void sim_file(const char *name, char *buf, size_t len)
{
        char path[400];

        snprintf(path, sizeof(path), "%s/%s", sim_dir, name);
        slurp(path, buf, len);
}

struct call {
        struct drv *d;
        struct drv_spec s;
        int r;
        _Atomic bool done;
};

static void *instantiate_thread(void *arg)
{
        struct call *c = arg;

        c->r = drv_instantiate(c->d, &c->s);
        c->done = true;
        return NULL;
}

static int callback(const char *uuid, uint64_t g)
{
        return sh("curl -s -f -o /dev/null 'http://%s/booted?uuid=%s&generation=%llu'", listen_on, uuid,
                  (unsigned long long)g);
}

static void wait_power(const char *want)
{
        char buf[16];

        for (int i = 0; i < 200; i++) {
                sim_file("power", buf, sizeof(buf));
                if (!strcmp(buf, want))
                        return;
                nanosleep(&(struct timespec){ .tv_nsec = 50000000 }, NULL);
        }
        fail_msg("power never became %s", want);
}

static void binding_runs_once_the_machine_calls_back(void **state)
{
        struct call c = { .s = spec(U1, "db", 1) };
        struct drv_instance *inv = NULL;
        pthread_t t;
        char buf[4096], path[400];
        int n;

        assert_int_equal(drv_open("metal", &dc, &c.d), 0);
        assert_int_equal(pthread_create(&t, NULL, instantiate_thread, &c), 0);
        wait_power("1\n");
        sim_file("boot", buf, sizeof(buf));
        assert_string_equal(buf, "pxe\n");
        /* powered, not booted: listed, but not running */
        n = drv_list(c.d, &inv);
        assert_int_equal(n, 1);
        assert_string_equal(inv[0].uuid, U1);
        assert_int_equal(inv[0].generation, 1);
        assert_int_equal(inv[0].state, DRV_STATE_STOPPED);
        free(inv);
        snprintf(path, sizeof(path), "%s/lsc-525400bb0001.ipxe", boot_dir);
        slurp(path, buf, sizeof(buf));
        assert_non_null(strstr(buf, "lsc.uuid=" U1));
        assert_non_null(strstr(buf, "lsc.ip=10.70.0.5"));
        assert_non_null(strstr(buf, "lsc.hostname=db.example"));
        /* powered on is not done: instantiate still waits for the machine */
        nanosleep(&(struct timespec){ .tv_nsec = 300000000 }, NULL);
        assert_false(c.done);
        /* a callback for another generation does not count */
        assert_int_not_equal(callback(U1, 2), 0);
        nanosleep(&(struct timespec){ .tv_nsec = 200000000 }, NULL);
        assert_false(c.done);
        assert_int_equal(callback(U1, 1), 0);
        pthread_join(t, NULL);
        assert_int_equal(c.r, 0);
        n = drv_list(c.d, &inv);
        assert_int_equal(n, 1);
        assert_int_equal(inv[0].state, DRV_STATE_RUNNING);
        free(inv);
        /* the same binding again: nothing to do */
        assert_int_equal(drv_instantiate(c.d, &c.s), 0);
        drv_close(&c.d);
}

static void a_reopened_machine_lists_its_identity_and_holds_no_other(void **state)
{
        struct drv *d = NULL;
        struct drv_spec other = spec(U2, "other", 1), old = spec(U1, "db", 1);
        struct drv_instance *inv = NULL;

        /* reopened: the record says what the machine holds */
        assert_int_equal(drv_open("metal", &dc, &d), 0);
        assert_int_equal(drv_list(d, &inv), 1);
        assert_string_equal(inv[0].uuid, U1);
        assert_int_equal(inv[0].state, DRV_STATE_RUNNING);
        free(inv);
        assert_int_equal(drv_instantiate(d, &other), -EBUSY);
        assert_non_null(strstr(lsc_err_msg(-EBUSY), "one identity per machine"));
        old.generation = 0;
        assert_int_equal(drv_instantiate(d, &old), -EINVAL);
        drv_close(&d);
}

static void destroy_powers_off_and_removes_the_boot_entries(void **state)
{
        struct drv *d = NULL;
        struct drv_instance *inv = NULL;
        char path[400];
        struct stat st;

        assert_int_equal(drv_open("metal", &dc, &d), 0);
        assert_int_equal(drv_destroy(d, U2, 9), 0);      /* not held: nothing */
        assert_int_equal(drv_list(d, &inv), 1);
        free(inv);
        assert_int_equal(drv_destroy(d, U1, 1), 0);
        wait_power("0\n");
        assert_int_equal(drv_list(d, &inv), 0);
        free(inv);
        snprintf(path, sizeof(path), "%s/lsc-525400bb0001.ipxe", boot_dir);
        assert_int_equal(stat(path, &st), -1);
        snprintf(path, sizeof(path), "%s/hosts/525400bb0001", boot_dir);
        assert_int_equal(stat(path, &st), -1);
        drv_close(&d);
}

static void a_boot_that_never_calls_back_fails_and_powers_off(void **state)
{
        struct drv_metal_config quick = mc;
        struct drv_config qc = dc;
        struct drv_spec s = spec(U2, "slow", 3);
        struct drv_instance *inv = NULL;
        struct drv *d = NULL;
        int64_t t0;
        char buf[16];
        int r;

        quick.boot_timeout_ms = 1500;
        qc.metal = &quick;
        assert_int_equal(drv_open("metal", &qc, &d), 0);
        t0 = lsc_now_us();
        r = drv_instantiate(d, &s);
        assert_int_equal(r, -ETIMEDOUT);
        assert_non_null(strstr(lsc_err_msg(r), "did not call back within 1 s"));
        assert_true(lsc_now_us() - t0 >= 1400000);
        sim_file("power", buf, sizeof(buf));
        assert_string_equal(buf, "0\n");
        assert_int_equal(drv_list(d, &inv), 0);
        free(inv);
        drv_close(&d);
}

static void a_vm_is_not_for_metal(void **state)
{
        struct drv *d = NULL;
        struct drv_spec s = spec(U2, "vm", 1);

        s.kind = LSC_KIND_VM;
        assert_int_equal(drv_open("metal", &dc, &d), 0);
        assert_int_equal(drv_instantiate(d, &s), -EINVAL);
        drv_close(&d);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(binding_runs_once_the_machine_calls_back),
                cmocka_unit_test(a_reopened_machine_lists_its_identity_and_holds_no_other),
                cmocka_unit_test(destroy_powers_off_and_removes_the_boot_entries),
                cmocka_unit_test(a_boot_that_never_calls_back_fails_and_powers_off),
                cmocka_unit_test(a_vm_is_not_for_metal),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
