/* agent/state.c: the write-ahead record. Intents are on disk before outcomes, tombstones
 * refuse old generations, and both survive a "restart" (close and open again), even
 * when the last record was torn by a crash. */
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
#include <unistd.h>

#include "err.h"
#include "state.h"
#include "util.h"

#define U1 "0b6f3a2e-1c4d-4e5f-8a9b-000000000001"
#define U2 "0b6f3a2e-1c4d-4e5f-8a9b-000000000002"
#define U3 "0b6f3a2e-1c4d-4e5f-8a9b-000000000003"

struct fixture {
        char dir[64];
        char path[128];
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));

        snprintf(f->dir, sizeof(f->dir), "/tmp/lsc-agent-state-test-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, AGENT_STATE_FILE);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        char cmd[160];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static struct agent_state *open_ok(struct fixture *f)
{
        struct agent_state *s = NULL;
        int r = agent_state_open(f->dir, &s);

        if (r < 0)
                fail_msg("agent_state_open: %s", lsc_err_msg(r));
        return s;
}

/* The record file as it is on disk now. */
static char *slurp(const char *path)
{
        FILE *fp = fopen(path, "re");
        char *buf = calloc(1, 1 << 16);
        size_t n;

        assert_non_null(fp);
        n = fread(buf, 1, (1 << 16) - 1, fp);
        buf[n] = '\0';
        fclose(fp);
        return buf;
}

static void append_n(const char *path, const char *bytes, size_t len)
{
        int fd = open(path, O_WRONLY | O_APPEND);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, bytes, len), (ssize_t)len);
        close(fd);
}

static void append_raw(const char *path, const char *bytes)
{
        append_n(path, bytes, strlen(bytes));
}

static void intent_is_on_disk_before_its_outcome(void **state)
{
        struct fixture *f = *state;
        struct agent_state *s = open_ok(f);
        _cleanup_free_ char *after_intent = NULL, *after_outcome = NULL;
        _cleanup_free_ struct agent_state_intent *p = NULL;
        char *i_rec, *o_rec;

        assert_int_equal(agent_state_intent(s, AGENT_STATE_INSTANTIATE, U1, 3, 7), 0);
        after_intent = slurp(f->path);
        assert_non_null(strstr(after_intent, "I " U1 " instantiate 3 7 "));
        assert_null(strstr(after_intent, "O " U1));
        assert_int_equal(agent_state_pending(s, &p), 1);
        assert_string_equal(p[0].uuid, U1);
        assert_int_equal(p[0].op, AGENT_STATE_INSTANTIATE);
        assert_int_equal(p[0].generation, 3);
        assert_int_equal(p[0].epoch, 7);
        free(TAKE_PTR(p));

        assert_int_equal(agent_state_outcome(s, AGENT_STATE_INSTANTIATE, U1, 3, 7, true), 0);
        after_outcome = slurp(f->path);
        i_rec = strstr(after_outcome, "I " U1);
        o_rec = strstr(after_outcome, "O " U1 " instantiate 3 7 ok ");
        assert_non_null(i_rec);
        assert_non_null(o_rec);
        assert_true(i_rec < o_rec);
        assert_int_equal(agent_state_pending(s, &p), 0);
        agent_state_close(&s);
        assert_null(s);
}

static void instantiate_at_or_below_a_tombstone_is_refused(void **state)
{
        struct fixture *f = *state;
        struct agent_state *s = open_ok(f);
        _cleanup_free_ char *before = NULL, *after = NULL;

        assert_int_equal(agent_state_intent(s, AGENT_STATE_INSTANTIATE, U1, 2, 1), 0);
        assert_int_equal(agent_state_outcome(s, AGENT_STATE_INSTANTIATE, U1, 2, 1, true), 0);
        /* the tombstone is up from the destroy's intent on, whatever the driver says */
        assert_int_equal(agent_state_intent(s, AGENT_STATE_DESTROY, U1, 3, 1), 0);
        assert_int_equal(agent_state_tombstone(s, U1), 3);
        assert_int_equal(agent_state_outcome(s, AGENT_STATE_DESTROY, U1, 3, 1, false), 0);
        assert_int_equal(agent_state_tombstone(s, U1), 3);

        before = slurp(f->path);
        assert_int_equal(agent_state_intent(s, AGENT_STATE_INSTANTIATE, U1, 3, 1), -ESTALE);
        assert_non_null(strstr(lsc_err_msg(-ESTALE), "tombstone"));
        assert_int_equal(agent_state_intent(s, AGENT_STATE_INSTANTIATE, U1, 1, 1), -ESTALE);
        after = slurp(f->path);
        assert_string_equal(before, after);      /* a refusal records nothing */

        /* a later generation, another identity, and a lower destroy are all fine */
        assert_int_equal(agent_state_intent(s, AGENT_STATE_INSTANTIATE, U1, 4, 1), 0);
        assert_int_equal(agent_state_intent(s, AGENT_STATE_INSTANTIATE, U2, 1, 1), 0);
        assert_int_equal(agent_state_intent(s, AGENT_STATE_DESTROY, U1, 2, 1), 0);
        assert_int_equal(agent_state_tombstone(s, U1), 3);       /* never lowered */
        assert_int_equal(agent_state_tombstone(s, U2), 0);
        agent_state_close(&s);
}

static void restart_keeps_tombstones_and_pending_intents(void **state)
{
        struct fixture *f = *state;
        struct agent_state *s = open_ok(f);
        _cleanup_free_ struct agent_state_intent *p = NULL;

        assert_int_equal(agent_state_intent(s, AGENT_STATE_DESTROY, U1, 5, 2), 0);
        assert_int_equal(agent_state_outcome(s, AGENT_STATE_DESTROY, U1, 5, 2, true), 0);
        assert_int_equal(agent_state_intent(s, AGENT_STATE_INSTANTIATE, U2, 1, 2), 0);   /* "crash" */
        assert_int_equal(agent_state_intent(s, AGENT_STATE_DESTROY, U3, 9, 2), 0);       /* "crash" */
        agent_state_close(&s);

        s = open_ok(f);
        assert_int_equal(agent_state_tombstone(s, U1), 5);
        assert_int_equal(agent_state_tombstone(s, U3), 9);
        assert_int_equal(agent_state_intent(s, AGENT_STATE_INSTANTIATE, U1, 5, 3), -ESTALE);
        assert_int_equal(agent_state_pending(s, &p), 2);
        assert_string_equal(p[0].uuid, U2);
        assert_int_equal(p[0].op, AGENT_STATE_INSTANTIATE);
        assert_int_equal(p[0].generation, 1);
        assert_int_equal(p[0].epoch, 2);
        assert_string_equal(p[1].uuid, U3);
        assert_int_equal(p[1].op, AGENT_STATE_DESTROY);
        free(TAKE_PTR(p));

        /* resolved after the restart, and still resolved after the next */
        assert_int_equal(agent_state_outcome(s, AGENT_STATE_INSTANTIATE, U2, 1, 2, false), 0);
        assert_int_equal(agent_state_outcome(s, AGENT_STATE_DESTROY, U3, 9, 2, true), 0);
        agent_state_close(&s);
        s = open_ok(f);
        assert_int_equal(agent_state_pending(s, &p), 0);
        assert_int_equal(agent_state_tombstone(s, U3), 9);
        agent_state_close(&s);
}

static void torn_last_record_is_ignored(void **state)
{
        struct fixture *f = *state;
        struct agent_state *s = open_ok(f);
        _cleanup_free_ struct agent_state_intent *p = NULL;
        _cleanup_free_ char *text = NULL;

        assert_int_equal(agent_state_intent(s, AGENT_STATE_DESTROY, U1, 4, 1), 0);
        assert_int_equal(agent_state_outcome(s, AGENT_STATE_DESTROY, U1, 4, 1, true), 0);
        agent_state_close(&s);
        /* a crash in the middle of an append: no end of line, no checksum */
        append_raw(f->path, "I " U2 " instanti");

        s = open_ok(f);
        assert_int_equal(agent_state_tombstone(s, U1), 4);
        assert_int_equal(agent_state_pending(s, &p), 0);
        free(TAKE_PTR(p));
        /* appends after the torn tail start on a clean line */
        assert_int_equal(agent_state_intent(s, AGENT_STATE_INSTANTIATE, U2, 1, 1), 0);
        agent_state_close(&s);
        text = slurp(f->path);
        assert_null(strstr(text, "instanti\n"));
        assert_null(strstr(text, "instantiI"));

        s = open_ok(f);
        assert_int_equal(agent_state_pending(s, &p), 1);
        assert_string_equal(p[0].uuid, U2);
        agent_state_close(&s);
}

static void damaged_records_are_skipped(void **state)
{
        struct fixture *f = *state;
        struct agent_state *s = open_ok(f);

        assert_int_equal(agent_state_intent(s, AGENT_STATE_DESTROY, U1, 2, 1), 0);
        agent_state_close(&s);
        /* a whole line with a wrong checksum, one that is not ours, then a good one */
        append_raw(f->path, "T " U2 " 7 00000000\n");
        append_raw(f->path, "garbage that is not a record\n");
        append_n(f->path, "\0\0\0\n", 4);    /* what a crash can leave in a grown file */
        s = open_ok(f);
        assert_int_equal(agent_state_tombstone(s, U1), 2);
        assert_int_equal(agent_state_tombstone(s, U2), 0);
        agent_state_close(&s);
}

static void foreign_file_is_refused_not_overwritten(void **state)
{
        struct fixture *f = *state;
        struct agent_state *s = NULL;
        FILE *fp = fopen(f->path, "we");
        _cleanup_free_ char *text = NULL;

        assert_non_null(fp);
        fputs("something else entirely\n", fp);
        fclose(fp);
        assert_int_equal(agent_state_open(f->dir, &s), -EINVAL);
        assert_null(s);
        text = slurp(f->path);
        assert_string_equal(text, "something else entirely\n");
}

static void second_opener_is_refused(void **state)
{
        struct fixture *f = *state;
        struct agent_state *s = open_ok(f), *s2 = NULL;

        assert_int_equal(agent_state_open(f->dir, &s2), -EBUSY);
        assert_null(s2);
        agent_state_close(&s);
        s2 = open_ok(f);
        agent_state_close(&s2);
}

static void compaction_keeps_what_matters(void **state)
{
        struct fixture *f = *state;
        struct agent_state *s = open_ok(f);
        _cleanup_free_ struct agent_state_intent *p = NULL;
        _cleanup_free_ char *text = NULL;
        char uuid[40];

        /* enough churn (4400 records) to trigger the automatic rewrite once */
        for (int i = 0; i < 2200; i++) {
                snprintf(uuid, sizeof(uuid), "0b6f3a2e-1c4d-4e5f-8a9b-%012d", i % 50);
                assert_int_equal(agent_state_intent(s, AGENT_STATE_INSTANTIATE, uuid, (uint64_t)i + 1, 1), 0);
                assert_int_equal(agent_state_outcome(s, AGENT_STATE_INSTANTIATE, uuid, (uint64_t)i + 1, 1, true), 0);
        }
        text = slurp(f->path);
        assert_true(strlen(text) < 100000);     /* 4400 records would be about 400 kB */
        free(TAKE_PTR(text));
        assert_int_equal(agent_state_intent(s, AGENT_STATE_DESTROY, U1, 8, 1), 0);
        assert_int_equal(agent_state_intent(s, AGENT_STATE_INSTANTIATE, U2, 3, 1), 0);
        assert_int_equal(agent_state_compact(s), 0);
        text = slurp(f->path);
        assert_true(strlen(text) < 1024);       /* finished work is gone */
        agent_state_close(&s);

        s = open_ok(f);
        assert_int_equal(agent_state_tombstone(s, U1), 8);
        assert_int_equal(agent_state_pending(s, &p), 2);
        assert_string_equal(p[0].uuid, U1);
        assert_string_equal(p[1].uuid, U2);
        agent_state_close(&s);
}

static void bad_arguments_are_refused(void **state)
{
        struct fixture *f = *state;
        struct agent_state *s = open_ok(f);

        assert_int_equal(agent_state_intent(s, AGENT_STATE_INSTANTIATE, "not-a-uuid", 1, 1), -EINVAL);
        assert_int_equal(agent_state_intent(s, AGENT_STATE_INSTANTIATE, U1, 0, 1), -EINVAL);
        assert_int_equal(agent_state_intent(s, AGENT_STATE_OP_COUNT, U1, 1, 1), -EINVAL);
        assert_int_equal(agent_state_open("/nonexistent/lsc-agent-state", &(struct agent_state *){ NULL }), -ENOENT);
        agent_state_close(&s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(intent_is_on_disk_before_its_outcome, setup, teardown),
                cmocka_unit_test_setup_teardown(instantiate_at_or_below_a_tombstone_is_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(restart_keeps_tombstones_and_pending_intents, setup, teardown),
                cmocka_unit_test_setup_teardown(torn_last_record_is_ignored, setup, teardown),
                cmocka_unit_test_setup_teardown(damaged_records_are_skipped, setup, teardown),
                cmocka_unit_test_setup_teardown(foreign_file_is_refused_not_overwritten, setup, teardown),
                cmocka_unit_test_setup_teardown(second_opener_is_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(compaction_keeps_what_matters, setup, teardown),
                cmocka_unit_test_setup_teardown(bad_arguments_are_refused, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
