/* Unit tests for common/addr.c: MAC and IP parsing and formatting, random MACs,
 * and CIDR arithmetic at the edges of the accepted prefixes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"
#include "err.h"

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

static struct lsc_ip ip(const char *s)
{
        struct lsc_ip a;

        assert_int_equal(lsc_ip_parse(s, &a), 0);
        return a;
}

static struct lsc_cidr cidr(const char *s)
{
        struct lsc_cidr c;

        assert_int_equal(lsc_cidr_parse(s, &c), 0);
        return c;
}

/* ---- MAC addresses ---- */

static void mac_in_colon_form_is_parsed(void **state)
{
        struct lsc_mac m;

        assert_int_equal(lsc_mac_parse("02:4c:53:00:00:01", &m), 0);
        assert_memory_equal(m.b, ((uint8_t[6]){0x02, 0x4c, 0x53, 0x00, 0x00, 0x01}), 6);
}

static void mac_in_dash_form_is_parsed(void **state)
{
        struct lsc_mac m;

        assert_int_equal(lsc_mac_parse("02-4C-53-0A-fF-01", &m), 0);
        assert_memory_equal(m.b, ((uint8_t[6]){0x02, 0x4c, 0x53, 0x0a, 0xff, 0x01}), 6);
}

static void mac_formats_as_lowercase_colon_form(void **state)
{
        struct lsc_mac m;
        char buf[LSC_MAC_STR];

        assert_int_equal(lsc_mac_parse("AA-BB-CC-DD-EE-0F", &m), 0);
        lsc_mac_format(&m, buf);
        assert_string_equal(buf, "aa:bb:cc:dd:ee:0f");
}

static void mac_with_mixed_separators_is_rejected(void **state)
{
        struct lsc_mac m;

        assert_int_equal(lsc_mac_parse("02:4c-53:00:00:01", &m), -EINVAL);
        assert_err_mentions("\"02:4c-53:00:00:01\"");
}

static void mac_with_wrong_octet_count_is_rejected(void **state)
{
        struct lsc_mac m;

        assert_int_equal(lsc_mac_parse("02:4c:53:00:00", &m), -EINVAL);
        assert_err_mentions("six hex octets");
        assert_int_equal(lsc_mac_parse("02:4c:53:00:00:01:02", &m), -EINVAL);
        assert_int_equal(lsc_mac_parse("02:4c:53:00:00:01:", &m), -EINVAL);
        assert_int_equal(lsc_mac_parse("", &m), -EINVAL);
}

static void mac_with_single_digit_or_non_hex_octet_is_rejected(void **state)
{
        static const char *const bad[] = {
                "2:4c:53:00:00:01", "02:4c:53:00:00:1", "02:4c:53:00:00:0g",
                "02:4c:53:00:00:+1", " 02:4c:53:00:00:01", "024c53000001", "02::4c:53:00:00",
        };
        struct lsc_mac m;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(lsc_mac_parse(bad[i], &m), -EINVAL);
}

static void multicast_mac_is_rejected(void **state)
{
        struct lsc_mac m;

        assert_int_equal(lsc_mac_parse("01:00:5e:00:00:01", &m), -EINVAL);
        assert_err_mentions("\"01:00:5e:00:00:01\" is multicast");
        assert_int_equal(lsc_mac_parse("ff:ff:ff:ff:ff:ff", &m), -EINVAL);
}

static void all_zero_mac_is_rejected(void **state)
{
        struct lsc_mac m;

        assert_int_equal(lsc_mac_parse("00:00:00:00:00:00", &m), -EINVAL);
        assert_err_mentions("all zero");
}

static void rejected_mac_leaves_the_result_untouched(void **state)
{
        struct lsc_mac m = { { 9, 9, 9, 9, 9, 9 } };

        assert_int_equal(lsc_mac_parse("01:00:5e:00:00:01", &m), -EINVAL);
        assert_memory_equal(m.b, ((uint8_t[6]){9, 9, 9, 9, 9, 9}), 6);
}

/* ---- MAC prefixes ---- */

static void mac_prefix_of_three_octets_is_parsed(void **state)
{
        struct lsc_mac p;
        int len = 0;

        assert_int_equal(lsc_mac_prefix_parse("02:4c:53", &p, &len), 0);
        assert_int_equal(len, 3);
        assert_memory_equal(p.b, ((uint8_t[6]){0x02, 0x4c, 0x53, 0, 0, 0}), 6);
}

static void mac_prefix_of_one_and_five_octets_is_accepted(void **state)
{
        struct lsc_mac p;
        int len = 0;

        assert_int_equal(lsc_mac_prefix_parse("06", &p, &len), 0);
        assert_int_equal(len, 1);
        assert_int_equal(lsc_mac_prefix_parse("fe:00:00:00:01", &p, &len), 0);
        assert_int_equal(len, 5);
}

static void mac_prefix_of_six_octets_is_rejected(void **state)
{
        struct lsc_mac p;
        int len = 0;

        assert_int_equal(lsc_mac_prefix_parse("02:4c:53:00:00:01", &p, &len), -EINVAL);
        assert_err_mentions("\"02:4c:53:00:00:01\"");
        assert_err_mentions("1-5");
        assert_int_equal(len, 0);
}

static void empty_or_malformed_mac_prefix_is_rejected(void **state)
{
        struct lsc_mac p;
        int len = 0;

        assert_int_equal(lsc_mac_prefix_parse("", &p, &len), -EINVAL);
        assert_int_equal(lsc_mac_prefix_parse("02:", &p, &len), -EINVAL);
        assert_int_equal(lsc_mac_prefix_parse("2:4c", &p, &len), -EINVAL);
        assert_err_mentions("\"2:4c\"");
}

static void multicast_mac_prefix_is_rejected(void **state)
{
        struct lsc_mac p;
        int len = 0;

        assert_int_equal(lsc_mac_prefix_parse("03:4c", &p, &len), -EINVAL);
        assert_err_mentions("\"03:4c\" is multicast");
}

static void globally_administered_mac_prefix_is_rejected(void **state)
{
        struct lsc_mac p;
        int len = 0;

        assert_int_equal(lsc_mac_prefix_parse("00:4c:53", &p, &len), -EINVAL);
        assert_err_mentions("\"00:4c:53\" is not locally administered");
}

/* ---- random MACs ---- */

static void random_mac_keeps_prefix_and_is_unicast(void **state)
{
        struct lsc_mac p, m;
        int len;

        assert_int_equal(lsc_mac_prefix_parse("02:4c:53", &p, &len), 0);
        for (int i = 0; i < 200; i++) {
                lsc_mac_random(&p, len, &m);
                assert_memory_equal(m.b, p.b, 3);
                assert_int_equal(m.b[0] & 0x01, 0);
        }
}

static void random_mac_without_prefix_is_local_unicast(void **state)
{
        struct lsc_mac m;

        for (int i = 0; i < 200; i++) {
                lsc_mac_random(NULL, 0, &m);
                assert_int_equal(m.b[0] & 0x03, 0x02);
        }
}

static void random_mac_parses_back(void **state)
{
        struct lsc_mac m, back;
        char buf[LSC_MAC_STR];

        for (int i = 0; i < 50; i++) {
                lsc_mac_random(NULL, 0, &m);
                lsc_mac_format(&m, buf);
                assert_int_equal(lsc_mac_parse(buf, &back), 0);
                assert_memory_equal(m.b, back.b, 6);
        }
}

static void random_macs_differ(void **state)
{
        struct lsc_mac p, a, b;
        int len;

        /* One random octet: 64 draws all equal has probability 256^-63. */
        assert_int_equal(lsc_mac_prefix_parse("02:4c:53:00:00", &p, &len), 0);
        lsc_mac_random(&p, len, &a);
        bool differ = false;
        for (int i = 0; i < 64 && !differ; i++) {
                lsc_mac_random(&p, len, &b);
                assert_memory_equal(b.b, p.b, 5);
                differ = a.b[5] != b.b[5];
        }
        assert_true(differ);
}

/* ---- IP addresses ---- */

static void v4_address_is_parsed_and_formatted(void **state)
{
        struct lsc_ip a = ip("10.0.0.5");
        char buf[LSC_IP_STR];

        assert_int_equal(a.family, AF_INET);
        assert_memory_equal(a.b, ((uint8_t[4]){10, 0, 0, 5}), 4);
        lsc_ip_format(&a, buf);
        assert_string_equal(buf, "10.0.0.5");
}

static void v6_address_is_formatted_in_canonical_form(void **state)
{
        struct lsc_ip a = ip("FD00:0:0:0::5");
        char buf[LSC_IP_STR];

        assert_int_equal(a.family, AF_INET6);
        lsc_ip_format(&a, buf);
        assert_string_equal(buf, "fd00::5");
}

static void malformed_ip_is_rejected(void **state)
{
        static const char *const bad[] = {
                "10.0.0.256", "10.0.0", "10.0.0.1.2", " 10.0.0.1", "10.0.0.1/24",
                "fd00:::1", "fd00::g", "", "localhost",
        };
        struct lsc_ip a;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(lsc_ip_parse(bad[i], &a), -EINVAL);
        assert_int_equal(lsc_ip_parse("10.0.0.256", &a), -EINVAL);
        assert_err_mentions("\"10.0.0.256\"");
}

static void ip_equal_compares_family_and_address(void **state)
{
        struct lsc_ip a = ip("10.0.0.5"), b = ip("10.0.0.5"), c = ip("10.0.0.6");
        struct lsc_ip mapped = ip("::ffff:10.0.0.5");

        assert_true(lsc_ip_equal(&a, &b));
        assert_false(lsc_ip_equal(&a, &c));
        assert_false(lsc_ip_equal(&a, &mapped));
        assert_true(lsc_ip_equal(&mapped, &mapped));
}

/* ---- CIDR ---- */

static void v4_cidr_is_parsed_and_formatted(void **state)
{
        struct lsc_cidr c = cidr("10.0.0.0/24");
        char buf[LSC_CIDR_STR];

        assert_int_equal(c.net.family, AF_INET);
        assert_int_equal(c.prefix, 24);
        lsc_cidr_format(&c, buf);
        assert_string_equal(buf, "10.0.0.0/24");
}

static void v6_cidr_is_parsed_and_formatted(void **state)
{
        struct lsc_cidr c = cidr("FD00:0:0:1::/64");
        char buf[LSC_CIDR_STR];

        assert_int_equal(c.net.family, AF_INET6);
        assert_int_equal(c.prefix, 64);
        lsc_cidr_format(&c, buf);
        assert_string_equal(buf, "fd00:0:0:1::/64");
}

static void cidr_with_host_bits_is_rejected(void **state)
{
        struct lsc_cidr c;

        assert_int_equal(lsc_cidr_parse("10.0.0.5/24", &c), -EINVAL);
        assert_string_equal(lsc_err_msg(-EINVAL),
                            "10.0.0.5/24 has host bits set; did you mean 10.0.0.0/24?");
}

static void v6_cidr_with_host_bits_is_rejected(void **state)
{
        struct lsc_cidr c;

        assert_int_equal(lsc_cidr_parse("fd00::1/64", &c), -EINVAL);
        assert_err_mentions("did you mean fd00::/64?");
        assert_int_equal(lsc_cidr_parse("10.0.1.0/23", &c), -EINVAL);
        assert_err_mentions("did you mean 10.0.0.0/23?");
}

static void v4_prefixes_8_and_30_are_accepted(void **state)
{
        assert_int_equal(cidr("10.0.0.0/8").prefix, 8);
        assert_int_equal(cidr("10.0.0.4/30").prefix, 30);
}

static void v4_prefixes_7_and_31_are_rejected(void **state)
{
        struct lsc_cidr c;

        assert_int_equal(lsc_cidr_parse("10.0.0.0/7", &c), -EINVAL);
        assert_err_mentions("/7");
        assert_int_equal(lsc_cidr_parse("10.0.0.0/31", &c), -EINVAL);
        assert_err_mentions("/8 to /30");
        assert_int_equal(lsc_cidr_parse("10.0.0.0/32", &c), -EINVAL);
        assert_int_equal(lsc_cidr_parse("0.0.0.0/0", &c), -EINVAL);
}

static void v6_prefixes_64_and_126_are_accepted(void **state)
{
        assert_int_equal(cidr("fd00::/64").prefix, 64);
        assert_int_equal(cidr("fd00::4/126").prefix, 126);
}

static void v6_prefixes_63_and_127_are_rejected(void **state)
{
        struct lsc_cidr c;

        assert_int_equal(lsc_cidr_parse("fd00::/63", &c), -EINVAL);
        assert_err_mentions("/64 to /126");
        assert_int_equal(lsc_cidr_parse("fd00::/127", &c), -EINVAL);
        assert_int_equal(lsc_cidr_parse("fd00::/128", &c), -EINVAL);
}

static void cidr_without_prefix_is_rejected(void **state)
{
        struct lsc_cidr c;

        assert_int_equal(lsc_cidr_parse("10.0.0.0", &c), -EINVAL);
        assert_err_mentions("\"10.0.0.0\"");
        assert_err_mentions("ADDRESS/PREFIX");
        assert_int_equal(lsc_cidr_parse("10.0.0.0/", &c), -EINVAL);
}

static void cidr_with_malformed_prefix_is_rejected(void **state)
{
        static const char *const bad[] = {
                "10.0.0.0/24x", "10.0.0.0/+24", "10.0.0.0/-24", "10.0.0.0/ 24",
                "10.0.0.0/24 ", "10.0.0.0/0024", "10.0.0.0/24/24", "/24",
        };
        struct lsc_cidr c;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(lsc_cidr_parse(bad[i], &c), -EINVAL);
}

static void cidr_with_malformed_address_is_rejected(void **state)
{
        struct lsc_cidr c;

        assert_int_equal(lsc_cidr_parse("10.0.0/24", &c), -EINVAL);
        assert_err_mentions("\"10.0.0\" is not an IPv4 or IPv6 address");
}

static void rejected_cidr_leaves_the_result_untouched(void **state)
{
        struct lsc_cidr c = { .prefix = 99 };

        assert_int_equal(lsc_cidr_parse("10.0.0.5/24", &c), -EINVAL);
        assert_int_equal(c.prefix, 99);
}

static void v4_cidr_contains_its_range_only(void **state)
{
        struct lsc_cidr c = cidr("10.0.0.0/24");
        struct lsc_ip first = ip("10.0.0.0"), last = ip("10.0.0.255");
        struct lsc_ip below = ip("9.255.255.255"), above = ip("10.0.1.0");

        assert_true(lsc_cidr_contains(&c, &first));
        assert_true(lsc_cidr_contains(&c, &last));
        assert_false(lsc_cidr_contains(&c, &below));
        assert_false(lsc_cidr_contains(&c, &above));
}

static void cidr_with_odd_prefix_contains_its_range_only(void **state)
{
        struct lsc_cidr c = cidr("10.0.0.0/23");
        struct lsc_ip in = ip("10.0.1.200"), out = ip("10.0.2.0");

        assert_true(lsc_cidr_contains(&c, &in));
        assert_false(lsc_cidr_contains(&c, &out));
}

static void v6_cidr_contains_its_range_only(void **state)
{
        struct lsc_cidr c = cidr("fd00:0:0:1::/64");
        struct lsc_ip in = ip("fd00:0:0:1:ffff:ffff:ffff:ffff"), out = ip("fd00:0:0:2::");

        assert_true(lsc_cidr_contains(&c, &in));
        assert_false(lsc_cidr_contains(&c, &out));
}

static void cidr_does_not_contain_the_other_family(void **state)
{
        struct lsc_cidr v4 = cidr("10.0.0.0/8"), v6 = cidr("::/64");
        struct lsc_ip a4 = ip("10.0.0.1"), a6 = ip("::a00:1");

        assert_false(lsc_cidr_contains(&v4, &a6));
        assert_false(lsc_cidr_contains(&v6, &a4));
}

static void v4_network_and_broadcast_are_reserved(void **state)
{
        struct lsc_cidr c = cidr("10.0.0.0/24");
        struct lsc_ip net = ip("10.0.0.0"), bcast = ip("10.0.0.255");
        struct lsc_ip first = ip("10.0.0.1"), last = ip("10.0.0.254");

        assert_true(lsc_cidr_is_reserved(&c, &net));
        assert_true(lsc_cidr_is_reserved(&c, &bcast));
        assert_false(lsc_cidr_is_reserved(&c, &first));
        assert_false(lsc_cidr_is_reserved(&c, &last));
}

static void v4_broadcast_follows_an_odd_prefix(void **state)
{
        struct lsc_cidr c = cidr("10.0.0.0/23");
        struct lsc_ip bcast = ip("10.0.1.255"), mid = ip("10.0.0.255");

        assert_true(lsc_cidr_is_reserved(&c, &bcast));
        assert_false(lsc_cidr_is_reserved(&c, &mid));
}

static void v6_reserves_only_the_network_address(void **state)
{
        struct lsc_cidr c = cidr("fd00::/64");
        struct lsc_ip net = ip("fd00::"), last = ip("fd00::ffff:ffff:ffff:ffff");

        assert_true(lsc_cidr_is_reserved(&c, &net));
        assert_false(lsc_cidr_is_reserved(&c, &last));
}

static void v4_cidr_size_excludes_network_and_broadcast(void **state)
{
        struct lsc_cidr c24 = cidr("10.0.0.0/24"), c30 = cidr("10.0.0.0/30");
        struct lsc_cidr c8 = cidr("10.0.0.0/8");

        assert_true(lsc_cidr_size(&c24) == 254);
        assert_true(lsc_cidr_size(&c30) == 2);
        assert_true(lsc_cidr_size(&c8) == (1ull << 24) - 2);
}

static void v6_cidr_size_excludes_network_address(void **state)
{
        struct lsc_cidr c126 = cidr("fd00::/126"), c66 = cidr("fd00::/66");

        assert_true(lsc_cidr_size(&c126) == 3);
        assert_true(lsc_cidr_size(&c66) == (1ull << 62) - 1);
}

static void v6_cidr_size_is_capped_at_2_to_the_62(void **state)
{
        struct lsc_cidr c64 = cidr("fd00::/64"), c65 = cidr("fd00::/65");

        assert_true(lsc_cidr_size(&c64) == 1ull << 62);
        assert_true(lsc_cidr_size(&c65) == 1ull << 62);
}

#define T(f) cmocka_unit_test_setup(f, clear_err)

int main(void)
{
        const struct CMUnitTest tests[] = {
                T(mac_in_colon_form_is_parsed),
                T(mac_in_dash_form_is_parsed),
                T(mac_formats_as_lowercase_colon_form),
                T(mac_with_mixed_separators_is_rejected),
                T(mac_with_wrong_octet_count_is_rejected),
                T(mac_with_single_digit_or_non_hex_octet_is_rejected),
                T(multicast_mac_is_rejected),
                T(all_zero_mac_is_rejected),
                T(rejected_mac_leaves_the_result_untouched),
                T(mac_prefix_of_three_octets_is_parsed),
                T(mac_prefix_of_one_and_five_octets_is_accepted),
                T(mac_prefix_of_six_octets_is_rejected),
                T(empty_or_malformed_mac_prefix_is_rejected),
                T(multicast_mac_prefix_is_rejected),
                T(globally_administered_mac_prefix_is_rejected),
                T(random_mac_keeps_prefix_and_is_unicast),
                T(random_mac_without_prefix_is_local_unicast),
                T(random_mac_parses_back),
                T(random_macs_differ),
                T(v4_address_is_parsed_and_formatted),
                T(v6_address_is_formatted_in_canonical_form),
                T(malformed_ip_is_rejected),
                T(ip_equal_compares_family_and_address),
                T(v4_cidr_is_parsed_and_formatted),
                T(v6_cidr_is_parsed_and_formatted),
                T(cidr_with_host_bits_is_rejected),
                T(v6_cidr_with_host_bits_is_rejected),
                T(v4_prefixes_8_and_30_are_accepted),
                T(v4_prefixes_7_and_31_are_rejected),
                T(v6_prefixes_64_and_126_are_accepted),
                T(v6_prefixes_63_and_127_are_rejected),
                T(cidr_without_prefix_is_rejected),
                T(cidr_with_malformed_prefix_is_rejected),
                T(cidr_with_malformed_address_is_rejected),
                T(rejected_cidr_leaves_the_result_untouched),
                T(v4_cidr_contains_its_range_only),
                T(cidr_with_odd_prefix_contains_its_range_only),
                T(v6_cidr_contains_its_range_only),
                T(cidr_does_not_contain_the_other_family),
                T(v4_network_and_broadcast_are_reserved),
                T(v4_broadcast_follows_an_odd_prefix),
                T(v6_reserves_only_the_network_address),
                T(v4_cidr_size_excludes_network_and_broadcast),
                T(v6_cidr_size_excludes_network_address),
                T(v6_cidr_size_is_capped_at_2_to_the_62),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
