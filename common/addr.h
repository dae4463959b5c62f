/* MAC and IP (v4 and v6) addresses: parsing, formatting, CIDR arithmetic, random MACs. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <netinet/in.h>

struct lsc_mac { uint8_t b[6]; };

#define LSC_MAC_STR 18                   /* "02:4c:53:00:00:01" + NUL */
#define LSC_IP_STR  INET6_ADDRSTRLEN
#define LSC_CIDR_STR (INET6_ADDRSTRLEN + 4)

/* "aa:bb:cc:dd:ee:ff" (or with '-'); rejects multicast and all-zero. Returns 0 or -EINVAL. */
int lsc_mac_parse(const char *s, struct lsc_mac *ret);
void lsc_mac_format(const struct lsc_mac *m, char buf[LSC_MAC_STR]);
/* A prefix of 1-5 octets ("02:4c:53"); the first octet must be unicast and
 * locally administered. */
int lsc_mac_prefix_parse(const char *s, struct lsc_mac *ret_prefix, int *ret_len);
/* prefix (prefix_len octets) followed by random octets from getrandom(). */
void lsc_mac_random(const struct lsc_mac *prefix, int prefix_len, struct lsc_mac *ret);

struct lsc_ip {
        int family;                      /* AF_INET or AF_INET6 */
        uint8_t b[16];                   /* network order; 4 bytes used for v4 */
};
struct lsc_cidr {
        struct lsc_ip net;               /* host bits zero */
        int prefix;
};

int lsc_ip_parse(const char *s, struct lsc_ip *ret);
void lsc_ip_format(const struct lsc_ip *ip, char buf[LSC_IP_STR]);
bool lsc_ip_equal(const struct lsc_ip *a, const struct lsc_ip *b);
/* "10.0.0.0/24", "fd00::/64"; host bits must be zero (says so otherwise).
 * IPv4 prefixes 8-30 and IPv6 64-126 are accepted: smaller pools are useless,
 * larger ones are not address pools. */
int lsc_cidr_parse(const char *s, struct lsc_cidr *ret);
void lsc_cidr_format(const struct lsc_cidr *c, char buf[LSC_CIDR_STR]);
bool lsc_cidr_contains(const struct lsc_cidr *c, const struct lsc_ip *ip);
/* Whether ip is the network or (v4) broadcast address: never handed out. */
bool lsc_cidr_is_reserved(const struct lsc_cidr *c, const struct lsc_ip *ip);
/* Usable host addresses (network and broadcast excluded; capped at 2^62). */
uint64_t lsc_cidr_size(const struct lsc_cidr *c);
