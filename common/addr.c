/* MAC and IP addresses: parsing and formatting, random MACs under a locally
 * administered prefix, and the CIDR arithmetic that address pools need.
 * Parse errors record one line naming the input (shown safely) and the accepted form. */
#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "err.h"

#define MAC_MULTICAST 0x01               /* I/G bit of the first octet */
#define MAC_LOCAL     0x02               /* U/L bit of the first octet */


static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Octets of exactly two hex digits separated by one of ':' or '-' (the same throughout);
 * returns how many (1..max), or -1. Hand-written because sscanf("%hhx") would also
 * take signs, spaces, "0x" and single digits. */
static int parse_octets(const char *s, uint8_t *b, int max)
{
        char sep = 0;
        int n = 0;

        for (;;) {
                int hi = hexval(s[0]), lo = hi < 0 ? -1 : hexval(s[1]);
                if (lo < 0 || n == max)
                        return -1;
                b[n++] = (uint8_t)(hi << 4 | lo);
                s += 2;
                if (!*s)
                        return n;
                if (!sep && (*s == ':' || *s == '-'))
                        sep = *s;
                if (*s != sep)
                        return -1;
                s++;
        }
}

int lsc_mac_parse(const char *s, struct lsc_mac *ret)
{
        char shown[LSC_SHOW_BUF];
        struct lsc_mac m;

        if (!s)
                s = "";
        if (parse_octets(s, m.b, 6) != 6)
                return lsc_err_set(-EINVAL, "invalid MAC address \"%s\": use six hex octets "
                                   "like 02:4c:53:00:00:01", lsc_str_show(s, shown));
        if (m.b[0] & MAC_MULTICAST)
                return lsc_err_set(-EINVAL, "MAC address \"%s\" is multicast: the first octet "
                                   "must be even", lsc_str_show(s, shown));
        if (!memcmp(m.b, (uint8_t[6]){0}, 6))
                return lsc_err_set(-EINVAL, "MAC address \"%s\" is all zero", lsc_str_show(s, shown));
        *ret = m;
        return 0;
}

void lsc_mac_format(const struct lsc_mac *m, char buf[LSC_MAC_STR])
{
        snprintf(buf, LSC_MAC_STR, "%02x:%02x:%02x:%02x:%02x:%02x",
                 m->b[0], m->b[1], m->b[2], m->b[3], m->b[4], m->b[5]);
}

int lsc_mac_prefix_parse(const char *s, struct lsc_mac *ret_prefix, int *ret_len)
{
        char shown[LSC_SHOW_BUF];
        struct lsc_mac m = {0};
        int n;

        if (!s)
                s = "";
        /* Parse up to 6 so that a whole MAC gets its own message. */
        n = parse_octets(s, m.b, 6);
        if (n < 0)
                return lsc_err_set(-EINVAL, "invalid MAC prefix \"%s\": use 1-5 hex octets "
                                   "like 02:4c:53", lsc_str_show(s, shown));
        if (n == 6)
                return lsc_err_set(-EINVAL, "MAC prefix \"%s\" has 6 octets: use 1-5, so that "
                                   "some are left to choose", lsc_str_show(s, shown));
        if (m.b[0] & MAC_MULTICAST)
                return lsc_err_set(-EINVAL, "MAC prefix \"%s\" is multicast: the first octet "
                                   "must have bit 0x01 clear (e.g. 02)", lsc_str_show(s, shown));
        if (!(m.b[0] & MAC_LOCAL))
                return lsc_err_set(-EINVAL, "MAC prefix \"%s\" is not locally administered: the "
                                   "first octet must have bit 0x02 set (e.g. 02)", lsc_str_show(s, shown));
        *ret_prefix = m;
        *ret_len = n;
        return 0;
}

void lsc_mac_random(const struct lsc_mac *prefix, int prefix_len, struct lsc_mac *ret)
{
        struct lsc_mac m;
        size_t off = 0;

        /* At least one octet stays random: a full prefix is not a pool. */
        if (prefix_len < 0 || !prefix)
                prefix_len = 0;
        if (prefix_len > 5)
                prefix_len = 5;

        /* Flags 0 blocks only until the pool is first initialised, then never; a short
         * read or EINTR can only happen before that, so retry. Any other failure
         * (ENOSYS before Linux 3.17) leaves no safe source of uniqueness: a MAC chosen
         * without randomness would collide, so stop rather than hand one out. */
        while (off < sizeof(m.b)) {
                ssize_t r = getrandom(m.b + off, sizeof(m.b) - off, 0);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        abort();
                }
                off += (size_t)r;
        }

        if (prefix_len > 0)
                memcpy(m.b, prefix->b, (size_t)prefix_len);
        else
                m.b[0] |= MAC_LOCAL;
        m.b[0] &= (uint8_t)~MAC_MULTICAST;
        *ret = m;
}

static size_t ip_len(int family)
{
        return family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
}

int lsc_ip_parse(const char *s, struct lsc_ip *ret)
{
        char shown[LSC_SHOW_BUF];
        struct lsc_ip ip = {0};

        if (!s)
                s = "";
        if (inet_pton(AF_INET, s, ip.b) == 1)
                ip.family = AF_INET;
        else if (inet_pton(AF_INET6, s, ip.b) == 1)
                ip.family = AF_INET6;
        else
                return lsc_err_set(-EINVAL, "invalid IP address \"%s\": use IPv4 (10.0.0.5) "
                                   "or IPv6 (fd00::5)", lsc_str_show(s, shown));
        *ret = ip;
        return 0;
}

void lsc_ip_format(const struct lsc_ip *ip, char buf[LSC_IP_STR])
{
        if (!inet_ntop(ip->family, ip->b, buf, LSC_IP_STR))
                snprintf(buf, LSC_IP_STR, "?");
}

bool lsc_ip_equal(const struct lsc_ip *a, const struct lsc_ip *b)
{
        return a->family == b->family && memcmp(a->b, b->b, ip_len(a->family)) == 0;
}

/* The netmask byte at index i for a prefix length. */
static uint8_t mask_byte(int prefix, size_t i)
{
        int bits = prefix - (int)(8 * i);

        if (bits <= 0)
                return 0;
        if (bits >= 8)
                return 0xff;
        return (uint8_t)(0xff << (8 - bits));
}

int lsc_cidr_parse(const char *s, struct lsc_cidr *ret)
{
        char shown[LSC_SHOW_BUF], shown_addr[LSC_SHOW_BUF], addr[INET6_ADDRSTRLEN];
        const char *slash, *p;
        struct lsc_cidr c = {0};
        int min, max;
        bool host_bits = false;

        if (!s)
                s = "";
        slash = strchr(s, '/');
        p = slash ? slash + 1 : NULL;
        /* The prefix: 1-3 decimal digits, nothing else (no sign, space or suffix). */
        if (!slash || (size_t)(slash - s) >= sizeof(addr) || !*p || strlen(p) > 3 ||
            strspn(p, "0123456789") != strlen(p))
                return lsc_err_set(-EINVAL, "invalid CIDR \"%s\": use ADDRESS/PREFIX like "
                                   "10.0.0.0/24 or fd00::/64", lsc_str_show(s, shown));
        memcpy(addr, s, (size_t)(slash - s));
        addr[slash - s] = '\0';
        c.net.family = AF_INET;
        if (inet_pton(AF_INET, addr, c.net.b) != 1) {
                c.net.family = AF_INET6;
                if (inet_pton(AF_INET6, addr, c.net.b) != 1)
                        return lsc_err_set(-EINVAL, "invalid CIDR \"%s\": \"%s\" is not an IPv4 "
                                           "or IPv6 address", lsc_str_show(s, shown), lsc_str_show(addr, shown_addr));
        }
        c.prefix = atoi(p);              /* digits only and at most three: cannot overflow */

        if (c.net.family == AF_INET)
                min = 8, max = 30;
        else
                min = 64, max = 126;
        if (c.prefix < min || c.prefix > max)
                return lsc_err_set(-EINVAL, "CIDR \"%s\": prefix /%d out of range: IPv%d pools "
                                   "need /%d to /%d", lsc_str_show(s, shown), c.prefix,
                                   c.net.family == AF_INET ? 4 : 6, min, max);

        for (size_t i = 0; i < ip_len(c.net.family); i++) {
                uint8_t m = mask_byte(c.prefix, i);
                host_bits |= (c.net.b[i] & ~m) != 0;
                c.net.b[i] &= m;
        }
        if (host_bits) {
                char fixed[LSC_CIDR_STR];
                lsc_cidr_format(&c, fixed);
                return lsc_err_set(-EINVAL, "%s has host bits set; did you mean %s?",
                                   lsc_str_show(s, shown), fixed);
        }
        *ret = c;
        return 0;
}

void lsc_cidr_format(const struct lsc_cidr *c, char buf[LSC_CIDR_STR])
{
        char ip[LSC_IP_STR];

        lsc_ip_format(&c->net, ip);
        snprintf(buf, LSC_CIDR_STR, "%s/%d", ip, c->prefix);
}

bool lsc_cidr_contains(const struct lsc_cidr *c, const struct lsc_ip *ip)
{
        if (ip->family != c->net.family)
                return false;
        for (size_t i = 0; i < ip_len(ip->family); i++) {
                uint8_t m = mask_byte(c->prefix, i);
                if ((ip->b[i] & m) != (c->net.b[i] & m))
                        return false;
        }
        return true;
}

bool lsc_cidr_is_reserved(const struct lsc_cidr *c, const struct lsc_ip *ip)
{
        struct lsc_ip bcast = c->net;

        if (lsc_ip_equal(ip, &c->net))
                return true;
        if (c->net.family != AF_INET)
                return false;            /* IPv6 has no broadcast address */
        for (size_t i = 0; i < 4; i++)
                bcast.b[i] |= (uint8_t)~mask_byte(c->prefix, i);
        return lsc_ip_equal(ip, &bcast);
}

uint64_t lsc_cidr_size(const struct lsc_cidr *c)
{
        const uint64_t cap = 1ull << 62;
        int host = (int)(8 * ip_len(c->net.family)) - c->prefix;

        /* Defensive for hand-built structs: parse never yields these prefixes. */
        if (c->net.family == AF_INET) {
                if (host < 2 || host > 32)
                        return 0;
                return (1ull << host) - 2;   /* network and broadcast */
        }
        if (c->net.family != AF_INET6 || host < 1 || host > 128)
                return 0;
        if (host > 62)
                return cap;
        return (1ull << host) - 1;           /* network (subnet-router anycast) */
}
