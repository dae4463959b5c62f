/* common/ipmi.c against a real BMC: OpenIPMI's ipmi_sim, started by tests/lib/ipmi-sim
 * on a free UDP port with a chassis script that records every power and boot change in
 * files this test reads back. Also the refusals: a wrong password, a BMC that does not
 * answer, bad settings and a password file others may read. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "ipmi.h"
#include "util.h"

static char dir[] = "/tmp/lscmt-ipmi.XXXXXX";
static uint16_t port;

static void slurp(const char *name, char *buf, size_t len)
{
        char path[256];
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "re");
        assert_non_null(f);
        n = fread(buf, 1, len - 1, f);
        buf[n] = '\0';
        fclose(f);
}

static int sim(const char *cmd)
{
        char line[512];

        snprintf(line, sizeof(line), "%s/ipmi-sim %s %s", LSC_TEST_LIB, cmd, dir);
        return system(line);
}

static int setup(void **state)
{
        char buf[32];

        if (!mkdtemp(dir))
                return -1;
        if (sim("start > /dev/null") != 0)
                return -1;
        slurp("port", buf, sizeof(buf));
        port = (uint16_t)atoi(buf);
        return port ? 0 : -1;
}

static int teardown(void **state)
{
        char line[300];

        sim("stop");
        snprintf(line, sizeof(line), "rm -rf %s", dir);
        return system(line) == 0 ? 0 : -1;
}

static struct lsc_ipmi_bmc bmc(const char *password)
{
        struct lsc_ipmi_bmc b;

        assert_int_equal(lsc_ipmi_bmc_set(&b, "bmc_", "127.0.0.1", port, "admin", password), 0);
        b.timeout_ms = 2000;
        return b;
}

static double ms_since(int64_t t0)
{
        return (double)(lsc_now_us() - t0) / 1000.0;
}

static void power_and_pxe_reach_the_chassis(void **state)
{
        struct lsc_ipmi_bmc b = bmc("secret");
        char buf[4096];
        bool on = true;
        int64_t t0;

        t0 = lsc_now_us();
        assert_int_equal(lsc_ipmi_power_get(&b, &on), 0);
        print_message("power status: %.1f ms\n", ms_since(t0));
        assert_false(on);

        t0 = lsc_now_us();
        assert_int_equal(lsc_ipmi_boot_pxe(&b), 0);
        print_message("boot device PXE: %.1f ms\n", ms_since(t0));
        slurp("boot", buf, sizeof(buf));
        assert_string_equal(buf, "pxe\n");

        t0 = lsc_now_us();
        assert_int_equal(lsc_ipmi_power_set(&b, LSC_IPMI_POWER_ON), 0);
        print_message("power on: %.1f ms\n", ms_since(t0));
        slurp("power", buf, sizeof(buf));
        assert_string_equal(buf, "1\n");
        assert_int_equal(lsc_ipmi_power_get(&b, &on), 0);
        assert_true(on);

        t0 = lsc_now_us();
        assert_int_equal(lsc_ipmi_power_off_confirmed(&b, 5000), 0);
        print_message("power off, confirmed: %.1f ms\n", ms_since(t0));
        slurp("power", buf, sizeof(buf));
        assert_string_equal(buf, "0\n");
        assert_int_equal(lsc_ipmi_power_get(&b, &on), 0);
        assert_false(on);

        /* the chassis heard exactly these changes */
        slurp("calls", buf, sizeof(buf));
        assert_non_null(strstr(buf, "set boot pxe"));
        assert_non_null(strstr(buf, "set power 1"));
        assert_non_null(strstr(buf, "set power 0"));
}

static void a_wrong_password_is_refused_at_once(void **state)
{
        struct lsc_ipmi_bmc b = bmc("wrong");
        bool on;
        int64_t t0 = lsc_now_us();
        int r = lsc_ipmi_power_get(&b, &on);

        assert_int_equal(r, -EACCES);
        assert_non_null(strstr(lsc_err_msg(r), "127.0.0.1:"));
        /* a refusal is not retried: well under one timeout */
        assert_true(ms_since(t0) < 1500);
}

static void a_silent_bmc_times_out_after_its_retries(void **state)
{
        struct lsc_ipmi_bmc b = bmc("secret");
        bool on;
        int64_t t0;
        double took;
        int r;

        b.timeout_ms = 500;
        b.retries = 1;
        assert_int_equal(sim("stop"), 0);
        t0 = lsc_now_us();
        r = lsc_ipmi_power_get(&b, &on);
        took = ms_since(t0);
        print_message("silent BMC: %s after %.0f ms\n", lsc_err_msg(r), took);
        assert_int_equal(r, -ETIMEDOUT);
        /* two attempts of 500 ms each, not more than a little slack */
        assert_true(took >= 900 && took < 3000);
        assert_int_equal(sim("start > /dev/null"), 0);
}

static void bad_settings_name_the_key_and_value(void **state)
{
        struct lsc_ipmi_bmc b;
        int r;

        r = lsc_ipmi_bmc_set(&b, "bmc_", "bad host!", 623, "admin", "x");
        assert_int_equal(r, -EINVAL);
        assert_non_null(strstr(lsc_err_msg(r), "bmc_address \"bad host!\""));
        r = lsc_ipmi_bmc_set(&b, "bmc_", "10.0.0.1", 70000, "admin", "x");
        assert_int_equal(r, -EINVAL);
        assert_non_null(strstr(lsc_err_msg(r), "bmc_port 70000"));
        r = lsc_ipmi_bmc_set(&b, "bmc_", "10.0.0.1", 623, "a-user-name-longer-than-16", "x");
        assert_int_equal(r, -EINVAL);
        assert_non_null(strstr(lsc_err_msg(r), "bmc_user"));
        r = lsc_ipmi_bmc_set(&b, "bmc_", "10.0.0.1", 623, "admin", "a-password-longer-than-20");
        assert_int_equal(r, -EINVAL);
}

static void a_password_file_others_read_is_refused(void **state)
{
        char path[300], pw[LSC_IPMI_PASSWORD_MAX + 1];
        FILE *f;

        snprintf(path, sizeof(path), "%s/pw", dir);
        f = fopen(path, "we");
        assert_non_null(f);
        fputs("secret\n", f);
        fclose(f);
        chmod(path, 0644);
        assert_int_equal(lsc_ipmi_password_read(path, pw), -EPERM);
        chmod(path, 0600);
        assert_int_equal(lsc_ipmi_password_read(path, pw), 0);
        assert_string_equal(pw, "secret");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(power_and_pxe_reach_the_chassis),
                cmocka_unit_test(a_wrong_password_is_refused_at_once),
                cmocka_unit_test(bad_settings_name_the_key_and_value),
                cmocka_unit_test(a_password_file_others_read_is_refused),
                cmocka_unit_test(a_silent_bmc_times_out_after_its_retries),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
