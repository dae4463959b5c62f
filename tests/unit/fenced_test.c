/* agent/fenced.c and common/pet.c: the deadline as a pure state machine (armed or not,
 * newer or older pets, ended or not, sweeps and re-sweeps), the pet's format, and the
 * daemon itself in a thread against libvirt's in-process test:///default, where a
 * domain lsc did not create (the test driver's own "test") must survive every sweep. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "driver.h"
#include "err.h"
#include "fenced.h"
#include "log.h"
#include "pet.h"
#include "util.h"

#define S (1000000LL)
#define T0 (1000 * S)                    /* an arbitrary "now" on CLOCK_BOOTTIME */

/* ---- the pure deadline ---- */

static enum fenced_action check(const struct fenced_lease *l, int64_t now, int64_t *wake)
{
        int64_t w = -1;
        enum fenced_action a = fenced_lease_check(l, now, &w);

        if (wake)
                *wake = w;
        return a;
}

static void disarmed_until_the_first_pet(void **state)
{
        struct fenced_lease l = {0};
        int64_t wake;

        assert_int_equal(check(&l, T0, &wake), FENCED_IDLE);
        assert_int_equal(wake, 0);
        /* however long nothing comes */
        assert_int_equal(check(&l, T0 + 3600 * S, &wake), FENCED_IDLE);
        assert_int_equal(fenced_lease_pet(&l, T0 + 10 * S, T0), FENCED_PET_ARMED);
        assert_int_equal(check(&l, T0, &wake), FENCED_WAIT);
        assert_int_equal(wake, T0 + 10 * S);
}

static void sweeps_when_the_deadline_passes_without_a_newer_pet(void **state)
{
        struct fenced_lease l = {0};
        int64_t wake;

        fenced_lease_pet(&l, T0 + 10 * S, T0);
        assert_int_equal(check(&l, T0 + 10 * S - 1, &wake), FENCED_WAIT);
        assert_int_equal(check(&l, T0 + 10 * S, &wake), FENCED_SWEEP);
        assert_int_equal(check(&l, T0 + 11 * S, &wake), FENCED_SWEEP);
        fenced_lease_swept(&l, T0 + 11 * S, true);
        /* swept: not again at once, but again later while the lease stays ended */
        assert_int_equal(check(&l, T0 + 11 * S + 1, &wake), FENCED_WAIT);
        assert_int_equal(wake, T0 + 11 * S + FENCED_RESWEEP_US);
        assert_int_equal(check(&l, T0 + 11 * S + FENCED_RESWEEP_US, &wake), FENCED_SWEEP);
}

static void a_failed_sweep_is_retried_sooner(void **state)
{
        struct fenced_lease l = {0};
        int64_t wake;

        fenced_lease_pet(&l, T0, T0 - S);
        assert_int_equal(check(&l, T0, &wake), FENCED_SWEEP);
        fenced_lease_swept(&l, T0, false);
        assert_int_equal(check(&l, T0 + 1, &wake), FENCED_WAIT);
        assert_int_equal(wake, T0 + FENCED_RETRY_US);
        assert_true(FENCED_RETRY_US < FENCED_RESWEEP_US);
}

static void a_newer_pet_moves_the_deadline(void **state)
{
        struct fenced_lease l = {0};
        int64_t wake;

        fenced_lease_pet(&l, T0 + 10 * S, T0);
        assert_int_equal(fenced_lease_pet(&l, T0 + 11 * S, T0 + S), FENCED_PET_EXTENDED);
        /* the old deadline passes: nothing happens */
        assert_int_equal(check(&l, T0 + 10 * S + 500000, &wake), FENCED_WAIT);
        assert_int_equal(wake, T0 + 11 * S);
        assert_int_equal(check(&l, T0 + 11 * S, &wake), FENCED_SWEEP);
}

static void an_older_or_equal_pet_is_ignored(void **state)
{
        struct fenced_lease l = {0};
        int64_t wake;

        fenced_lease_pet(&l, T0 + 10 * S, T0);
        assert_int_equal(fenced_lease_pet(&l, T0 + 5 * S, T0 + S), FENCED_PET_BACKWARDS);
        assert_int_equal(fenced_lease_pet(&l, T0 + 10 * S, T0 + S), FENCED_PET_SAME);
        assert_int_equal(l.deadline_us, T0 + 10 * S);
        assert_int_equal(check(&l, T0 + 10 * S - 1, &wake), FENCED_WAIT);
        assert_int_equal(check(&l, T0 + 10 * S, &wake), FENCED_SWEEP);
        /* and after the deadline, a pet naming an earlier one re-arms nothing */
        fenced_lease_swept(&l, T0 + 10 * S, true);
        assert_int_equal(fenced_lease_pet(&l, T0 + 9 * S, T0 + 10 * S), FENCED_PET_BACKWARDS);
        assert_int_equal(l.swept_for_us, l.deadline_us);
}

static void a_pet_after_the_sweep_rearms(void **state)
{
        struct fenced_lease l = {0};
        int64_t wake;

        fenced_lease_pet(&l, T0, T0 - S);
        assert_int_equal(check(&l, T0, &wake), FENCED_SWEEP);
        fenced_lease_swept(&l, T0, true);
        assert_int_equal(fenced_lease_pet(&l, T0 + 20 * S, T0 + 2 * S), FENCED_PET_REARMED);
        assert_int_equal(check(&l, T0 + 2 * S, &wake), FENCED_WAIT);
        assert_int_equal(wake, T0 + 20 * S);
        /* the re-sweep of the old lease is off: nothing until the new deadline */
        assert_int_equal(check(&l, T0 + FENCED_RESWEEP_US, &wake), FENCED_WAIT);
        assert_int_equal(check(&l, T0 + 20 * S, &wake), FENCED_SWEEP);
}

static void a_pet_already_past_sweeps_at_once(void **state)
{
        struct fenced_lease l = {0};
        int64_t wake;

        /* an agent that wakes after its lease ended may still pet the old deadline */
        assert_int_equal(fenced_lease_pet(&l, T0 - S, T0), FENCED_PET_ARMED);
        assert_int_equal(check(&l, T0, &wake), FENCED_SWEEP);
}

static void a_pet_too_far_ahead_is_ignored(void **state)
{
        struct fenced_lease l = {0};

        assert_int_equal(fenced_lease_pet(&l, T0 + FENCED_AHEAD_MAX_US + 1, T0), FENCED_PET_TOO_FAR);
        assert_int_equal(l.deadline_us, 0);
        fenced_lease_pet(&l, T0 + 10 * S, T0);
        assert_int_equal(fenced_lease_pet(&l, INT64_MAX, T0), FENCED_PET_TOO_FAR);
        assert_int_equal(l.deadline_us, T0 + 10 * S);
}

/* ---- the pet ---- */

static void pet_format_round_trips(void **state)
{
        char buf[LSC_PET_MAX];
        int64_t d = 0;
        int n = lsc_pet_format(buf, sizeof(buf), 123456789012LL);

        assert_true(n > 0);
        assert_memory_equal(buf, "lsc-pet 1 123456789012\n", (size_t)n);
        assert_int_equal(lsc_pet_parse(buf, (size_t)n, &d), 0);
        assert_int_equal(d, 123456789012LL);
        /* without the newline too */
        assert_int_equal(lsc_pet_parse(buf, (size_t)n - 1, &d), 0);
        assert_int_equal(lsc_pet_format(buf, sizeof(buf), 0), -ENOSPC);
        assert_int_equal(lsc_pet_format(buf, 8, 1), -ENOSPC);
}

static void garbage_is_not_a_pet(void **state)
{
        static const char *const bad[] = {
                "", "lsc-pet 1 ", "lsc-pet 1 \n", "lsc-pet 2 100", "lsc-pet 1 -100", "lsc-pet 1 +100",
                "lsc-pet 1 100 ", "lsc-pet 1 100\n\n", "lsc-pet 1 0", "lsc-pet 1 1e9", "lsc-pet 1 0x10",
                "lsc-pet 1 1234567890123456789", "LSC-PET 1 100", "lsc-pet  1 100", "hello",
        };
        char big[200];
        int64_t d = 42;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (lsc_pet_parse(bad[i], strlen(bad[i]), &d) != -EINVAL)
                        fail_msg("\"%s\" was taken for a pet", bad[i]);
        assert_int_equal(d, 42);         /* untouched on failure */
        /* embedded NUL, and a datagram longer than any pet */
        assert_int_equal(lsc_pet_parse("lsc-pet 1 1\0002", 12, &d), -EINVAL);
        memset(big, '1', sizeof(big));
        memcpy(big, "lsc-pet 1 ", 10);
        assert_int_equal(lsc_pet_parse(big, sizeof(big), &d), -EINVAL);
}

/* ---- the daemon, on test:///default ---- */

#define U1 "7d2e3b41-8a6f-4c8d-9b64-000000000001"
#define U2 "7d2e3b41-8a6f-4c8d-9b64-000000000002"

struct daemon {
        char dir[64], sock[96];
        struct fenced_config cfg;
        pthread_t thread;
        int rc;
        int pet_fd;
        struct drv *drv;                 /* the test's own view, through the driver */
        virConnectPtr observer;          /* and through libvirt directly */
};

static void quiet(void *user, virErrorPtr e)
{
}

static void *daemon_main(void *arg)
{
        struct daemon *d = arg;

        d->rc = fenced_run(&d->cfg);
        return NULL;
}

static void send_raw(struct daemon *d, const char *msg, size_t len)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d->sock);
        if (sendto(d->pet_fd, msg, len, 0, (struct sockaddr *)&sa, sizeof(sa)) != (ssize_t)len)
                fail_msg("cannot pet %s: %s", d->sock, strerror(errno));
}

static void pet_in(struct daemon *d, int64_t ms)
{
        char buf[LSC_PET_MAX];
        int n = lsc_pet_format(buf, sizeof(buf), lsc_boot_us() + ms * 1000);

        assert_true(n > 0);
        send_raw(d, buf, (size_t)n);
}

static int instance_count(struct daemon *d)
{
        _cleanup_free_ struct drv_instance *inv = NULL;
        int n = drv_list(d->drv, &inv);

        if (n < 0)
                fail_msg("list: %s", lsc_err_msg(n));
        return n;
}

static void instantiate(struct daemon *d, const char *uuid, const char *name)
{
        struct drv_spec spec = {
                .uuid = uuid, .name = name, .generation = 1, .kind = LSC_KIND_VM,
                .vcpus = 1, .memory_mib = 64, .disk_mode = LSC_DISK_EPHEMERAL,
        };
        int r = drv_instantiate(d->drv, &spec);

        if (r < 0)
                fail_msg("instantiate %s: %s", name, lsc_err_msg(r));
}

/* Milliseconds until the lsc instances are down to n (fails after limit_ms). */
static int64_t ms_until_count(struct daemon *d, int n, int limit_ms)
{
        int64_t t0 = lsc_boot_us();

        while (instance_count(d) != n) {
                if (lsc_boot_us() - t0 > (int64_t)limit_ms * 1000)
                        fail_msg("still %d lsc instances after %d ms, want %d", instance_count(d), limit_ms, n);
                usleep(10000);
        }
        return (lsc_boot_us() - t0) / 1000;
}

static int daemon_setup(void **state)
{
        struct daemon *d = calloc(1, sizeof(*d));
        struct drv_config dc = { .uri = "test:///default" };
        struct stat st;
        int r;

        virSetErrorFunc(NULL, quiet);
        snprintf(d->dir, sizeof(d->dir), "/tmp/lsc-fenced-test-XXXXXX");
        assert_non_null(mkdtemp(d->dir));
        snprintf(d->sock, sizeof(d->sock), "%s/fenced.sock", d->dir);
        dc.state_dir = d->dir;
        d->cfg = (struct fenced_config){ .socket = d->sock, .uri = "test:///default", .state_dir = d->dir };
        /* held open: the test hypervisor lives while one connection does */
        d->observer = virConnectOpen("test:///default");
        assert_non_null(d->observer);
        if ((r = drv_open("libvirt", &dc, &d->drv)) < 0)
                fail_msg("drv_open: %s", lsc_err_msg(r));
        d->pet_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        assert_true(d->pet_fd >= 0);
        assert_int_equal(pthread_create(&d->thread, NULL, daemon_main, d), 0);
        for (int i = 0; stat(d->sock, &st) < 0; i++) {
                assert_true(i < 500);
                usleep(10000);
        }
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0600);
        *state = d;
        return 0;
}

static int daemon_teardown(void **state)
{
        struct daemon *d = *state;
        struct stat st;
        char cmd[128];

        pthread_kill(d->thread, SIGTERM);
        pthread_join(d->thread, NULL);
        assert_int_equal(d->rc, 0);
        /* it removes its socket on the way out */
        assert_int_equal(stat(d->sock, &st), -1);
        drv_destroy(d->drv, U1, 100);
        drv_destroy(d->drv, U2, 100);
        drv_close(&d->drv);
        virConnectClose(d->observer);
        close(d->pet_fd);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
        assert_int_equal(system(cmd), 0);
        free(d);
        return 0;
}

static void daemon_destroys_lsc_domains_at_the_deadline_only(void **state)
{
        struct daemon *d = *state;
        virDomainPtr foreign;
        int64_t waited;

        instantiate(d, U1, "fence-a");
        instantiate(d, U2, "fence-b");
        assert_int_equal(instance_count(d), 2);
        /* disarmed: nothing happens, whatever time passes */
        usleep(300000);
        assert_int_equal(instance_count(d), 2);

        /* garbage first: logged and ignored, the daemon lives on */
        send_raw(d, "hello", 5);
        send_raw(d, "lsc-pet 1 0", 11);
        pet_in(d, 400);
        usleep(200000);
        assert_int_equal(instance_count(d), 2);
        /* a pet moving the deadline back changes nothing; one moving it on does */
        pet_in(d, 100);
        pet_in(d, 700);
        usleep(450000);                  /* past the first deadline */
        assert_int_equal(instance_count(d), 2);
        waited = ms_until_count(d, 0, 3000);
        if (waited > 1500)
                fail_msg("the domains went %lld ms after the check, want about 250", (long long)waited);

        /* the test driver's own domain is not lsc's */
        foreign = virDomainLookupByName(d->observer, "test");
        assert_non_null(foreign);
        assert_int_equal(virDomainIsActive(foreign), 1);
        virDomainFree(foreign);
}

static void daemon_rearms_after_a_sweep(void **state)
{
        struct daemon *d = *state;

        instantiate(d, U1, "fence-a");
        pet_in(d, 100);
        ms_until_count(d, 0, 3000);
        /* re-armed by a later pet: an instance made now lives until the new deadline */
        pet_in(d, 800);
        instantiate(d, U1, "fence-a");
        usleep(300000);
        assert_int_equal(instance_count(d), 1);
        ms_until_count(d, 0, 3000);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(disarmed_until_the_first_pet),
                cmocka_unit_test(sweeps_when_the_deadline_passes_without_a_newer_pet),
                cmocka_unit_test(a_failed_sweep_is_retried_sooner),
                cmocka_unit_test(a_newer_pet_moves_the_deadline),
                cmocka_unit_test(an_older_or_equal_pet_is_ignored),
                cmocka_unit_test(a_pet_after_the_sweep_rearms),
                cmocka_unit_test(a_pet_already_past_sweeps_at_once),
                cmocka_unit_test(a_pet_too_far_ahead_is_ignored),
                cmocka_unit_test(pet_format_round_trips),
                cmocka_unit_test(garbage_is_not_a_pet),
                cmocka_unit_test_setup_teardown(daemon_destroys_lsc_domains_at_the_deadline_only, daemon_setup,
                                                daemon_teardown),
                cmocka_unit_test_setup_teardown(daemon_rearms_after_a_sweep, daemon_setup, daemon_teardown),
        };

        lsc_log_threshold = getenv("LSC_TEST_DEBUG") ? LSC_LOG_DEBUG : LSC_LOG_ERROR;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
