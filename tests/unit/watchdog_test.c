/* agent/watchdog.c: the petting rule, and arm / pet / magic close on a FIFO standing in
 * for /dev/watchdog (it takes no ioctls, so pets are bytes, as any watchdog accepts). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "watchdog.h"

#define S 1000000LL

static void rule_pets_only_while_the_lease_outlasts_the_timeout(void **state)
{
        (void)state;
        /* holding instances: the lease must run timeout + margin longer */
        assert_true(watchdog_may_pet(100 * S, 110 * S, 5, true));
        assert_true(watchdog_may_pet(100 * S, 105 * S + WATCHDOG_MARGIN_US, 5, true));
        assert_false(watchdog_may_pet(100 * S, 105 * S + WATCHDOG_MARGIN_US - 1, 5, true));
        assert_false(watchdog_may_pet(100 * S, 99 * S, 5, true));       /* ended */
        assert_false(watchdog_may_pet(100 * S, 0, 5, true));            /* no lease yet */
        /* nothing held: nothing to fence, a reset would only hurt */
        assert_true(watchdog_may_pet(100 * S, 99 * S, 5, false));
        assert_true(watchdog_may_pet(100 * S, 0, 5, false));
}

static void arm_pet_and_magic_close_on_a_fifo(void **state)
{
        char dir[] = "/tmp/lsc-watchdog-test-XXXXXX", path[64], b[8];
        struct watchdog w;
        int fd;

        (void)state;
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/wd", dir);
        assert_int_equal(mkfifo(path, 0600), 0);
        fd = open(path, O_RDONLY | O_NONBLOCK);
        assert_true(fd >= 0);

        watchdog_init(&w);
        assert_int_equal(watchdog_pet(&w, 1), -EBADF);          /* not armed */
        assert_int_equal(watchdog_arm(&w, path, 7), 0);
        assert_false(w.ioctls);
        assert_int_equal(w.timeout_s, 7);
        assert_int_equal(watchdog_pet(&w, 42), 0);
        assert_int_equal(w.last_pet_us, 42);
        assert_int_equal(watchdog_pet(&w, 43), 0);
        assert_int_equal(read(fd, b, sizeof(b)), 2);
        assert_int_equal(b[0], '\0');
        watchdog_disarm(&w);
        assert_int_equal(w.fd, -1);
        assert_int_equal(read(fd, b, sizeof(b)), 1);
        assert_int_equal(b[0], 'V');
        watchdog_disarm(&w);                                     /* twice is harmless */
        close(fd);
        unlink(path);
        rmdir(dir);
}

static void arm_names_what_failed(void **state)
{
        struct watchdog w;
        int r;

        (void)state;
        watchdog_init(&w);
        r = watchdog_arm(&w, "/nonexistent/watchdog", 5);
        assert_int_equal(r, -ENOENT);
        assert_non_null(strstr(lsc_err_msg(r), "/nonexistent/watchdog"));
        assert_int_equal(w.fd, -1);
        watchdog_disarm(&w);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(rule_pets_only_while_the_lease_outlasts_the_timeout),
                cmocka_unit_test(arm_pet_and_magic_close_on_a_fifo),
                cmocka_unit_test(arm_names_what_failed),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
