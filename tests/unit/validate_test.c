/* Unit tests for common/validate.c: every rule's boundaries, and that each rejection
 * names the bad value safely. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "err.h"
#include "validate.h"

static int clear_err(void **state)
{
        lsc_err_clear();
        return 0;
}

/* The recorded detail must contain needle: a rejection has to say what was wrong. */
static void assert_err_mentions(const char *needle)
{
        const char *msg = lsc_err_msg(-EINVAL);

        if (!strstr(msg, needle))
                fail_msg("error \"%s\" does not mention \"%s\"", msg, needle);
}

/* A string of n copies of c, in a static buffer large enough for every test here. */
static const char *repeat(char c, size_t n)
{
        static char buf[2048];

        assert_true(n < sizeof(buf));
        memset(buf, c, n);
        buf[n] = '\0';
        return buf;
}

/* ---- name tables ---- */

static void kind_names_parse_to_their_index(void **state)
{
        assert_int_equal(lsc_enum_parse(lsc_kind_names, LSC_KIND_COUNT, "vm"), LSC_KIND_VM);
        assert_int_equal(lsc_enum_parse(lsc_kind_names, LSC_KIND_COUNT, "container"),
                         LSC_KIND_CONTAINER);
        assert_int_equal(lsc_enum_parse(lsc_kind_names, LSC_KIND_COUNT, "metal"), LSC_KIND_METAL);
}

static void disk_mode_names_parse_to_their_index(void **state)
{
        assert_int_equal(lsc_enum_parse(lsc_disk_mode_names, LSC_DISK_MODE_COUNT, "ephemeral"),
                         LSC_DISK_EPHEMERAL);
        assert_int_equal(lsc_enum_parse(lsc_disk_mode_names, LSC_DISK_MODE_COUNT, "persistent"),
                         LSC_DISK_PERSISTENT);
}

static void unknown_kind_is_rejected_listing_the_choices(void **state)
{
        assert_int_equal(lsc_enum_parse(lsc_kind_names, LSC_KIND_COUNT, "lxc"), -EINVAL);
        assert_err_mentions("\"lxc\"");
        assert_err_mentions("vm, container, metal");
}

static void enum_names_match_exactly(void **state)
{
        assert_int_equal(lsc_enum_parse(lsc_kind_names, LSC_KIND_COUNT, "VM"), -EINVAL);
        assert_int_equal(lsc_enum_parse(lsc_kind_names, LSC_KIND_COUNT, "v"), -EINVAL);
        assert_int_equal(lsc_enum_parse(lsc_kind_names, LSC_KIND_COUNT, "vm "), -EINVAL);
        assert_int_equal(lsc_enum_parse(lsc_kind_names, LSC_KIND_COUNT, ""), -EINVAL);
}

/* ---- names ---- */

static void simple_names_are_accepted(void **state)
{
        assert_int_equal(lsc_validate_name("server name", "web-1"), 0);
        assert_int_equal(lsc_validate_name("server name", "a"), 0);
        assert_int_equal(lsc_validate_name("server name", "0"), 0);
        assert_int_equal(lsc_validate_name("pool name", "a--b"), 0);
}

static void name_of_63_chars_is_accepted(void **state)
{
        assert_int_equal(lsc_validate_name("server name", repeat('a', 63)), 0);
}

static void name_of_64_chars_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_name("server name", repeat('a', 64)), -EINVAL);
        assert_err_mentions("server name");
        assert_err_mentions("63");
}

static void empty_name_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_name("server name", ""), -EINVAL);
        assert_err_mentions("server name is empty");
}

static void null_name_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_name("server name", NULL), -EINVAL);
}

static void name_starting_with_dash_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_name("server name", "-web"), -EINVAL);
        assert_err_mentions("\"-web\"");
}

static void name_ending_with_dash_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_name("server name", "web-"), -EINVAL);
        assert_err_mentions("\"web-\"");
}

static void name_with_uppercase_or_underscore_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_name("server name", "Web_1"), -EINVAL);
        assert_string_equal(lsc_err_msg(-EINVAL),
                            "invalid server name \"Web_1\": use 1-63 of a-z, 0-9 and '-', "
                            "not starting or ending with '-'");
}

static void name_with_dot_or_space_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_name("pool name", "a.b"), -EINVAL);
        assert_err_mentions("pool name");
        assert_int_equal(lsc_validate_name("pool name", "a b"), -EINVAL);
}

static void error_masks_control_characters_in_the_value(void **state)
{
        assert_int_equal(lsc_validate_name("server name", "a\nb\x1b[31m\xc3\xa9"), -EINVAL);
        assert_err_mentions("\"a?b?[31m??\"");
        assert_null(strchr(lsc_err_msg(-EINVAL), '\n'));
        assert_null(strchr(lsc_err_msg(-EINVAL), '\x1b'));
}

static void error_truncates_a_long_value(void **state)
{
        assert_int_equal(lsc_validate_image(repeat('x', 1500)), -EINVAL);
        assert_err_mentions("...");
        assert_err_mentions("1500");
        assert_null(strstr(lsc_err_msg(-EINVAL), repeat('x', 65)));
}

/* ---- hostnames ---- */

static void dotted_hostname_with_mixed_case_is_accepted(void **state)
{
        assert_int_equal(lsc_validate_hostname("Web-1.Example.com"), 0);
        assert_int_equal(lsc_validate_hostname("localhost"), 0);
        assert_int_equal(lsc_validate_hostname("a.b.c.d"), 0);
}

/* A hostname of n characters: labels of 63 'a's separated by dots, the last shorter. */
static const char *hostname_of(size_t n)
{
        static char buf[512];

        assert_true(n < sizeof(buf) && n % 64 != 0);
        memset(buf, 'a', n);
        for (size_t i = 63; i < n; i += 64)
                buf[i] = '.';
        buf[n] = '\0';
        return buf;
}

static void hostname_of_253_chars_is_accepted(void **state)
{
        assert_int_equal(lsc_validate_hostname(hostname_of(253)), 0);
}

static void hostname_of_254_chars_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_hostname(hostname_of(254)), -EINVAL);
        assert_err_mentions("hostname");
        assert_err_mentions("254 characters");
        assert_err_mentions("253");
}

static void hostname_with_empty_label_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_hostname("a..b"), -EINVAL);
        assert_err_mentions("\"a..b\"");
        assert_int_equal(lsc_validate_hostname(".a"), -EINVAL);
        assert_int_equal(lsc_validate_hostname("a."), -EINVAL);
        assert_int_equal(lsc_validate_hostname("."), -EINVAL);
}

static void empty_hostname_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_hostname(""), -EINVAL);
        assert_err_mentions("hostname is empty");
}

static void hostname_label_of_64_chars_is_rejected(void **state)
{
        char buf[100];

        memcpy(buf, repeat('a', 64), 64);
        strcpy(buf + 64, ".com");
        assert_int_equal(lsc_validate_hostname(buf), -EINVAL);
        strcpy(buf + 63, ".com");
        assert_int_equal(lsc_validate_hostname(buf), 0);
}

static void hostname_label_starting_or_ending_with_dash_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_hostname("web.-example.com"), -EINVAL);
        assert_int_equal(lsc_validate_hostname("web-.example.com"), -EINVAL);
        assert_err_mentions("\"web-.example.com\"");
}

static void hostname_with_underscore_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_hostname("my_host.example.com"), -EINVAL);
        assert_err_mentions("\"my_host.example.com\"");
}

/* ---- labels ---- */

static void label_part_accepts_dots_underscores_and_dashes(void **state)
{
        assert_int_equal(lsc_validate_label_part("label key", "App.Tier_2-x"), 0);
        assert_int_equal(lsc_validate_label_part("label value", "A"), 0);
        assert_int_equal(lsc_validate_label_part("label value", "-._"), 0);
}

static void label_part_of_63_chars_is_accepted_and_64_rejected(void **state)
{
        assert_int_equal(lsc_validate_label_part("label key", repeat('k', 63)), 0);
        assert_int_equal(lsc_validate_label_part("label key", repeat('k', 64)), -EINVAL);
        assert_err_mentions("label key");
        assert_err_mentions("63");
}

static void empty_label_part_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_label_part("label value", ""), -EINVAL);
        assert_err_mentions("label value is empty");
}

static void label_part_with_slash_or_space_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_label_part("label key", "a/b"), -EINVAL);
        assert_err_mentions("\"a/b\"");
        assert_int_equal(lsc_validate_label_part("label key", "a b"), -EINVAL);
}

static void label_parse_splits_key_and_value(void **state)
{
        char buf[] = "tier=web";
        const char *key = NULL, *value = NULL;

        assert_int_equal(lsc_label_parse(buf, &key, &value), 0);
        assert_string_equal(key, "tier");
        assert_string_equal(value, "web");
}

static void label_without_equals_is_rejected(void **state)
{
        char buf[] = "tier";
        const char *key = NULL, *value = NULL;

        assert_int_equal(lsc_label_parse(buf, &key, &value), -EINVAL);
        assert_err_mentions("\"tier\"");
        assert_err_mentions("KEY=VALUE");
        assert_null(key);
        assert_null(value);
}

static void label_with_empty_key_or_value_is_rejected(void **state)
{
        char empty_value[] = "tier=", empty_key[] = "=web";
        const char *key = NULL, *value = NULL;

        assert_int_equal(lsc_label_parse(empty_value, &key, &value), -EINVAL);
        assert_err_mentions("label value");
        assert_int_equal(lsc_label_parse(empty_key, &key, &value), -EINVAL);
        assert_err_mentions("label key");
        assert_null(key);
        assert_null(value);
}

static void label_with_second_equals_is_rejected(void **state)
{
        char buf[] = "a=b=c";
        const char *key = NULL, *value = NULL;

        assert_int_equal(lsc_label_parse(buf, &key, &value), -EINVAL);
        assert_err_mentions("\"b=c\"");
}

static void rejected_label_leaves_the_buffer_intact(void **state)
{
        char buf[] = "tier=w eb";
        const char *key = NULL, *value = NULL;

        assert_int_equal(lsc_label_parse(buf, &key, &value), -EINVAL);
        assert_string_equal(buf, "tier=w eb");
}

/* ---- sizes ---- */

static void vcpus_1_and_1024_are_accepted(void **state)
{
        assert_int_equal(lsc_validate_vcpus(1), 0);
        assert_int_equal(lsc_validate_vcpus(1024), 0);
}

static void vcpus_0_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_vcpus(0), -EINVAL);
        assert_string_equal(lsc_err_msg(-EINVAL), "vcpus 0 out of range: 1-1024");
}

static void vcpus_1025_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_vcpus(1025), -EINVAL);
        assert_err_mentions("vcpus 1025");
        assert_int_equal(lsc_validate_vcpus(UINT64_MAX), -EINVAL);
}

static void memory_16_mib_and_16_tib_are_accepted(void **state)
{
        assert_int_equal(lsc_validate_memory_mib(16), 0);
        assert_int_equal(lsc_validate_memory_mib(16ull * 1024 * 1024), 0);
}

static void memory_below_16_mib_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_memory_mib(15), -EINVAL);
        assert_err_mentions("memory 15 MiB");
        assert_int_equal(lsc_validate_memory_mib(0), -EINVAL);
}

static void memory_above_16_tib_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_memory_mib(16ull * 1024 * 1024 + 1), -EINVAL);
        assert_err_mentions("16777217");
}

static void disk_0_and_1_pib_are_accepted(void **state)
{
        assert_int_equal(lsc_validate_disk_gib(0), 0);
        assert_int_equal(lsc_validate_disk_gib(1024ull * 1024), 0);
}

static void disk_above_1_pib_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_disk_gib(1024ull * 1024 + 1), -EINVAL);
        assert_err_mentions("disk 1048577 GiB");
}

static void lifetime_0_means_none_and_is_accepted(void **state)
{
        assert_int_equal(lsc_validate_lifetime_s(0), 0);
}

static void lifetime_1_s_and_ten_years_are_accepted(void **state)
{
        assert_int_equal(lsc_validate_lifetime_s(1), 0);
        assert_int_equal(lsc_validate_lifetime_s(LSC_LIFETIME_S_MAX), 0);
}

static void lifetime_above_ten_years_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_lifetime_s(LSC_LIFETIME_S_MAX + 1), -EINVAL);
        assert_err_mentions("lifetime 315360001");
}

/* ---- images ---- */

static void image_references_are_accepted(void **state)
{
        assert_int_equal(lsc_validate_image("debian-12"), 0);
        assert_int_equal(lsc_validate_image("registry.example.com:5000/app:1.2@sha256:0f"), 0);
        assert_int_equal(lsc_validate_image("/var/lib/lsc/images/base.qcow2"), 0);
}

static void image_of_1024_chars_is_accepted_and_1025_rejected(void **state)
{
        assert_int_equal(lsc_validate_image(repeat('i', 1024)), 0);
        assert_int_equal(lsc_validate_image(repeat('i', 1025)), -EINVAL);
        assert_err_mentions("1024");
}

static void empty_image_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_image(""), -EINVAL);
        assert_err_mentions("image is empty");
}

static void image_with_space_or_control_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_image("debian 12"), -EINVAL);
        assert_err_mentions("\"debian 12\"");
        assert_int_equal(lsc_validate_image("debian\t12"), -EINVAL);
        assert_err_mentions("\"debian?12\"");
        assert_int_equal(lsc_validate_image("debian\x7f"), -EINVAL);
}

static void image_with_non_ascii_is_rejected(void **state)
{
        assert_int_equal(lsc_validate_image("d\xc3\xa9""bian"), -EINVAL);
        assert_err_mentions("\"d??bian\"");
}

/* ---- numbers ---- */

static void u64_decimal_is_parsed(void **state)
{
        uint64_t v = 7;

        assert_int_equal(lsc_parse_u64("vcpus", "0", &v), 0);
        assert_true(v == 0);
        assert_int_equal(lsc_parse_u64("vcpus", "42", &v), 0);
        assert_true(v == 42);
        assert_int_equal(lsc_parse_u64("vcpus", "18446744073709551615", &v), 0);
        assert_true(v == UINT64_MAX);
}

static void u64_overflow_is_rejected(void **state)
{
        uint64_t v = 7;

        assert_int_equal(lsc_parse_u64("memory", "18446744073709551616", &v), -EINVAL);
        assert_err_mentions("memory \"18446744073709551616\"");
        assert_int_equal(lsc_parse_u64("memory", "99999999999999999999999999", &v), -EINVAL);
        assert_true(v == 7);
}

static void u64_with_sign_space_or_suffix_is_rejected(void **state)
{
        static const char *const bad[] = {
                "-1", "+1", " 1", "1 ", "1k", "0x10", "1.0", "1e3", "\n1",
        };
        uint64_t v = 7;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(lsc_parse_u64("vcpus", bad[i], &v), -EINVAL);
                assert_err_mentions("invalid vcpus");
        }
        assert_true(v == 7);
}

static void empty_u64_is_rejected(void **state)
{
        uint64_t v = 7;

        assert_int_equal(lsc_parse_u64("disk", "", &v), -EINVAL);
        assert_err_mentions("disk is empty");
        assert_true(v == 7);
}

/* ---- durations ---- */

static void duration_in_each_unit_is_parsed(void **state)
{
        uint64_t s = 0;

        assert_int_equal(lsc_duration_parse("30s", &s), 0);
        assert_true(s == 30);
        assert_int_equal(lsc_duration_parse("15m", &s), 0);
        assert_true(s == 900);
        assert_int_equal(lsc_duration_parse("168h", &s), 0);
        assert_true(s == 604800);
        assert_int_equal(lsc_duration_parse("7d", &s), 0);
        assert_true(s == 604800);
}

static void largest_duration_in_seconds_is_parsed(void **state)
{
        uint64_t s = 0;

        assert_int_equal(lsc_duration_parse("18446744073709551615s", &s), 0);
        assert_true(s == UINT64_MAX);
}

static void duration_without_unit_is_rejected(void **state)
{
        uint64_t s = 7;

        assert_int_equal(lsc_duration_parse("10", &s), -EINVAL);
        assert_err_mentions("\"10\"");
        assert_err_mentions("s, m, h or d");
        assert_true(s == 7);
}

static void duration_without_number_is_rejected(void **state)
{
        uint64_t s = 7;

        assert_int_equal(lsc_duration_parse("h", &s), -EINVAL);
        assert_int_equal(lsc_duration_parse("", &s), -EINVAL);
        assert_true(s == 7);
}

static void zero_duration_is_rejected(void **state)
{
        uint64_t s = 7;

        assert_int_equal(lsc_duration_parse("0s", &s), -EINVAL);
        assert_err_mentions("\"0s\" is zero");
        assert_int_equal(lsc_duration_parse("00d", &s), -EINVAL);
        assert_true(s == 7);
}

static void fractional_duration_is_rejected(void **state)
{
        uint64_t s = 7;

        assert_int_equal(lsc_duration_parse("1.5h", &s), -EINVAL);
        assert_err_mentions("\"1.5h\"");
        assert_true(s == 7);
}

static void signed_or_spaced_duration_is_rejected(void **state)
{
        static const char *const bad[] = { "-1h", "+1h", " 1h", "1h ", "1 h", "\t1h" };
        uint64_t s = 7;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(lsc_duration_parse(bad[i], &s), -EINVAL);
        assert_true(s == 7);
}

static void duration_with_two_units_or_unknown_unit_is_rejected(void **state)
{
        static const char *const bad[] = { "1hh", "1h30m", "1w", "1H", "1ms", "1y" };
        uint64_t s = 7;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(lsc_duration_parse(bad[i], &s), -EINVAL);
        assert_true(s == 7);
}

static void overflowing_duration_is_rejected(void **state)
{
        uint64_t s = 7;

        assert_int_equal(lsc_duration_parse("18446744073709551616s", &s), -EINVAL);
        assert_err_mentions("too large");
        assert_int_equal(lsc_duration_parse("213503982334602d", &s), -EINVAL);
        assert_int_equal(lsc_duration_parse("99999999999999999999999999999999h", &s), -EINVAL);
        assert_true(s == 7);
}

static void duration_formats_in_largest_exact_unit(void **state)
{
        char buf[32];

        lsc_duration_format(604800, buf, sizeof(buf));
        assert_string_equal(buf, "7d");
        lsc_duration_format(5400, buf, sizeof(buf));
        assert_string_equal(buf, "90m");
        lsc_duration_format(3600, buf, sizeof(buf));
        assert_string_equal(buf, "1h");
        lsc_duration_format(90061, buf, sizeof(buf));
        assert_string_equal(buf, "90061s");
        lsc_duration_format(0, buf, sizeof(buf));
        assert_string_equal(buf, "0s");
        lsc_duration_format(UINT64_MAX, buf, sizeof(buf));
        assert_string_equal(buf, "18446744073709551615s");
}

static void formatted_duration_parses_back(void **state)
{
        static const uint64_t secs[] = { 1, 59, 60, 61, 3600, 86400, 90000, 31536000 };
        char buf[32];
        uint64_t s;

        for (size_t i = 0; i < sizeof(secs) / sizeof(secs[0]); i++) {
                lsc_duration_format(secs[i], buf, sizeof(buf));
                assert_int_equal(lsc_duration_parse(buf, &s), 0);
                assert_true(s == secs[i]);
        }
}

#define T(f) cmocka_unit_test_setup(f, clear_err)

int main(void)
{
        const struct CMUnitTest tests[] = {
                T(kind_names_parse_to_their_index),
                T(disk_mode_names_parse_to_their_index),
                T(unknown_kind_is_rejected_listing_the_choices),
                T(enum_names_match_exactly),
                T(simple_names_are_accepted),
                T(name_of_63_chars_is_accepted),
                T(name_of_64_chars_is_rejected),
                T(empty_name_is_rejected),
                T(null_name_is_rejected),
                T(name_starting_with_dash_is_rejected),
                T(name_ending_with_dash_is_rejected),
                T(name_with_uppercase_or_underscore_is_rejected),
                T(name_with_dot_or_space_is_rejected),
                T(error_masks_control_characters_in_the_value),
                T(error_truncates_a_long_value),
                T(dotted_hostname_with_mixed_case_is_accepted),
                T(hostname_of_253_chars_is_accepted),
                T(hostname_of_254_chars_is_rejected),
                T(hostname_with_empty_label_is_rejected),
                T(empty_hostname_is_rejected),
                T(hostname_label_of_64_chars_is_rejected),
                T(hostname_label_starting_or_ending_with_dash_is_rejected),
                T(hostname_with_underscore_is_rejected),
                T(label_part_accepts_dots_underscores_and_dashes),
                T(label_part_of_63_chars_is_accepted_and_64_rejected),
                T(empty_label_part_is_rejected),
                T(label_part_with_slash_or_space_is_rejected),
                T(label_parse_splits_key_and_value),
                T(label_without_equals_is_rejected),
                T(label_with_empty_key_or_value_is_rejected),
                T(label_with_second_equals_is_rejected),
                T(rejected_label_leaves_the_buffer_intact),
                T(vcpus_1_and_1024_are_accepted),
                T(vcpus_0_is_rejected),
                T(vcpus_1025_is_rejected),
                T(memory_16_mib_and_16_tib_are_accepted),
                T(memory_below_16_mib_is_rejected),
                T(memory_above_16_tib_is_rejected),
                T(disk_0_and_1_pib_are_accepted),
                T(disk_above_1_pib_is_rejected),
                T(lifetime_0_means_none_and_is_accepted),
                T(lifetime_1_s_and_ten_years_are_accepted),
                T(lifetime_above_ten_years_is_rejected),
                T(image_references_are_accepted),
                T(image_of_1024_chars_is_accepted_and_1025_rejected),
                T(empty_image_is_rejected),
                T(image_with_space_or_control_is_rejected),
                T(image_with_non_ascii_is_rejected),
                T(u64_decimal_is_parsed),
                T(u64_overflow_is_rejected),
                T(u64_with_sign_space_or_suffix_is_rejected),
                T(empty_u64_is_rejected),
                T(duration_in_each_unit_is_parsed),
                T(largest_duration_in_seconds_is_parsed),
                T(duration_without_unit_is_rejected),
                T(duration_without_number_is_rejected),
                T(zero_duration_is_rejected),
                T(fractional_duration_is_rejected),
                T(signed_or_spaced_duration_is_rejected),
                T(duration_with_two_units_or_unknown_unit_is_rejected),
                T(overflowing_duration_is_rejected),
                T(duration_formats_in_largest_exact_unit),
                T(formatted_duration_parses_back),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
