/* Smoke test of bench/mayfly_sim.c: its quick mode runs, and its last line is one
 * JSON object with every row (0/30/70/100% mayflies, awareness off and on) and the
 * cuts. Not timed: the figures themselves are for docs/mayflies.md. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *sim_path;

static char *run_sim(const char *args, int *ret_status)
{
        char cmd[4096], line[65536];
        char *last = NULL;
        FILE *p;

        snprintf(cmd, sizeof(cmd), "'%s' %s 2>/dev/null", sim_path, args);
        p = popen(cmd, "r");
        assert_non_null(p);
        while (fgets(line, sizeof(line), p)) {
                free(last);
                last = strdup(line);
                assert_non_null(last);
        }
        *ret_status = pclose(p);
        return last;
}

static void quick_run_prints_every_row_as_json(void **state)
{
        static const int pcts[] = { 0, 30, 70, 100 };
        static const char *const keys[] = { "hot_minutes_100", "hot_minutes_90", "max_load",
                                            "stddev_load", "turnovers_per_day" };
        json_error_t err;
        json_t *root, *rows;
        int status;
        char *last = run_sim("--quick", &status);

        assert_int_equal(status, 0);
        assert_non_null(last);
        root = json_loads(last, 0, &err);
        if (!root)
                fail_msg("last line is not JSON (%s): %s", err.text, last);
        rows = json_object_get(root, "rows");
        assert_true(json_is_array(rows));
        assert_int_equal(json_array_size(rows), 8);
        for (size_t i = 0; i < 8; i++) {
                json_t *row = json_array_get(rows, i);
                json_t *aware = json_object_get(row, "aware");

                assert_int_equal(json_integer_value(json_object_get(row, "mayfly_pct")), pcts[i / 2]);
                assert_true(json_is_boolean(aware));
                assert_int_equal(json_is_true(aware), (int)(i % 2));
                for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
                        json_t *x = json_object_get(row, keys[k]);

                        if (!json_is_number(x))
                                fail_msg("row %zu: %s missing or not a number", i, keys[k]);
                        assert_true(json_number_value(x) >= 0);
                }
                /* Rows without mayflies turn nothing over; rows with them do. */
                assert_int_equal(json_number_value(json_object_get(row, "turnovers_per_day")) > 0,
                                 pcts[i / 2] > 0);
                /* The host load of a populated cloud is never zero. */
                assert_true(json_number_value(json_object_get(row, "max_load")) > 0.5);
        }
        assert_true(json_is_number(json_object_get(root, "cut_vs_no_mayflies_pct")));
        assert_true(json_is_number(json_object_get(root, "cut_vs_unaware_pct")));
        json_decref(root);
        free(last);
}

static void bad_flags_are_refused(void **state)
{
        int status;
        char *last = run_sim("--seeds 5-1", &status);

        assert_int_not_equal(status, 0);
        free(last);
        last = run_sim("--samples 0", &status);
        assert_int_not_equal(status, 0);
        free(last);
}

int main(int argc, char **argv)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(quick_run_prints_every_row_as_json),
                cmocka_unit_test(bad_flags_are_refused),
        };

        if (argc != 2) {
                fprintf(stderr, "usage: mayfly_sim_test PATH-TO-mayfly-sim\n");
                return 2;
        }
        sim_path = argv[1];
        return cmocka_run_group_tests(tests, NULL, NULL);
}
