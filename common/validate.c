/* Input validation: names, hostnames, labels, sizes, images, numbers and durations.
 * Every rejection records one human line naming the thing, the bad value and what is
 * allowed; the value is shown truncated and with non-printables masked, since it is
 * untrusted and ends up on a terminal or in the journal. */
#include "validate.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "util.h"

const char *const lsc_kind_names[LSC_KIND_COUNT] = {
        [LSC_KIND_VM] = "vm",
        [LSC_KIND_CONTAINER] = "container",
        [LSC_KIND_METAL] = "metal",
};

const char *const lsc_disk_mode_names[LSC_DISK_MODE_COUNT] = {
        [LSC_DISK_EPHEMERAL] = "ephemeral",
        [LSC_DISK_PERSISTENT] = "persistent",
};


static bool is_lower_alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
        return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
        return c >= '0' && c <= '9';
}

int lsc_enum_parse(const char *const *names, int n, const char *s)
{
        char shown[LSC_SHOW_BUF], allowed[256];
        size_t off = 0;

        if (!s)
                s = "";
        for (int i = 0; i < n; i++)
                if (strcmp(names[i], s) == 0)
                        return i;

        allowed[0] = '\0';
        for (int i = 0; i < n && off < sizeof(allowed); i++) {
                int w = snprintf(allowed + off, sizeof(allowed) - off, "%s%s",
                                 i ? ", " : "", names[i]);
                if (w < 0)
                        break;
                off += (size_t)w;
        }
        return lsc_err_set(-EINVAL, "invalid value \"%s\": use one of %s",
                           lsc_str_show(s, shown), allowed);
}

/* A DNS label of [a-z0-9-] (or [A-Za-z0-9-] when upper is set) of length len,
 * not starting or ending with '-'. */
static bool dns_label_ok(const char *s, size_t len, bool upper)
{
        if (len < 1 || len > 63 || s[0] == '-' || s[len - 1] == '-')
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                if (!(upper ? is_alnum(c) : is_lower_alnum(c)) && c != '-')
                        return false;
        }
        return true;
}

int lsc_validate_name(const char *what, const char *s)
{
        char shown[LSC_SHOW_BUF];

        if (!s || !*s)
                return lsc_err_set(-EINVAL, "%s is empty: use 1-%d of a-z, 0-9 and '-'",
                                   what, LSC_NAME_MAX);
        size_t len = strlen(s);
        if (len > LSC_NAME_MAX)
                return lsc_err_set(-EINVAL, "%s \"%s\" is too long (%zu characters): at most %d",
                                   what, lsc_str_show(s, shown), len, LSC_NAME_MAX);
        if (!dns_label_ok(s, len, false))
                return lsc_err_set(-EINVAL, "invalid %s \"%s\": use 1-%d of a-z, 0-9 and '-', "
                                   "not starting or ending with '-'",
                                   what, lsc_str_show(s, shown), LSC_NAME_MAX);
        return 0;
}

int lsc_validate_hostname(const char *s)
{
        char shown[LSC_SHOW_BUF];

        if (!s || !*s)
                return lsc_err_set(-EINVAL, "hostname is empty: use dot-separated labels "
                                   "of A-Z, a-z, 0-9 and '-'");
        size_t len = strlen(s);
        if (len > LSC_HOSTNAME_MAX)
                return lsc_err_set(-EINVAL, "hostname \"%s\" is too long (%zu characters): at most %d",
                                   lsc_str_show(s, shown), len, LSC_HOSTNAME_MAX);
        for (const char *p = s;;) {
                const char *dot = strchr(p, '.');
                size_t n = dot ? (size_t)(dot - p) : strlen(p);
                if (!dns_label_ok(p, n, true))
                        return lsc_err_set(-EINVAL, "invalid hostname \"%s\": use dot-separated "
                                           "labels of 1-63 of A-Z, a-z, 0-9 and '-', "
                                           "not starting or ending with '-'",
                                           lsc_str_show(s, shown));
                if (!dot)
                        break;
                p = dot + 1;
        }
        return 0;
}

int lsc_validate_label_part(const char *what, const char *s)
{
        char shown[LSC_SHOW_BUF];

        if (!s || !*s)
                return lsc_err_set(-EINVAL, "%s is empty: use 1-%d of A-Z, a-z, 0-9, '.', '_' and '-'",
                                   what, LSC_LABEL_MAX);
        size_t len = strlen(s);
        if (len > LSC_LABEL_MAX)
                return lsc_err_set(-EINVAL, "%s \"%s\" is too long (%zu characters): at most %d",
                                   what, lsc_str_show(s, shown), len, LSC_LABEL_MAX);
        for (size_t i = 0; i < len; i++)
                if (!is_alnum(s[i]) && !strchr("._-", s[i]))
                        return lsc_err_set(-EINVAL, "invalid %s \"%s\": use 1-%d of A-Z, a-z, 0-9, "
                                           "'.', '_' and '-'",
                                           what, lsc_str_show(s, shown), LSC_LABEL_MAX);
        return 0;
}

int lsc_label_parse(char *buf, const char **ret_key, const char **ret_value)
{
        char shown[LSC_SHOW_BUF];
        char *eq = strchr(buf, '=');
        int r;

        if (!eq)
                return lsc_err_set(-EINVAL, "invalid label \"%s\": use KEY=VALUE",
                                   lsc_str_show(buf, shown));
        /* Validate before splitting so that a rejected buf is left as the caller gave it. */
        *eq = '\0';
        r = lsc_validate_label_part("label key", buf);
        if (r == 0)
                r = lsc_validate_label_part("label value", eq + 1);
        if (r < 0) {
                *eq = '=';
                return r;
        }
        *ret_key = buf;
        *ret_value = eq + 1;
        return 0;
}

int lsc_validate_vcpus(uint64_t v)
{
        if (v < LSC_VCPUS_MIN || v > LSC_VCPUS_MAX)
                return lsc_err_set(-EINVAL, "vcpus %" PRIu64 " out of range: %u-%u",
                                   v, LSC_VCPUS_MIN, LSC_VCPUS_MAX);
        return 0;
}

int lsc_validate_memory_mib(uint64_t v)
{
        if (v < LSC_MEMORY_MIB_MIN || v > LSC_MEMORY_MIB_MAX)
                return lsc_err_set(-EINVAL, "memory %" PRIu64 " MiB out of range: "
                                   "%llu-%llu MiB (16 MiB to 16 TiB)",
                                   v, LSC_MEMORY_MIB_MIN, LSC_MEMORY_MIB_MAX);
        return 0;
}

int lsc_validate_disk_gib(uint64_t v)
{
        if (v > LSC_DISK_GIB_MAX)
                return lsc_err_set(-EINVAL, "disk %" PRIu64 " GiB out of range: "
                                   "0-%llu GiB (up to 1 PiB)", v, LSC_DISK_GIB_MAX);
        return 0;
}

int lsc_validate_image(const char *s)
{
        char shown[LSC_SHOW_BUF];

        if (!s || !*s)
                return lsc_err_set(-EINVAL, "image is empty: use 1-%d printable ASCII characters "
                                   "without spaces", LSC_IMAGE_MAX);
        size_t len = strlen(s);
        if (len > LSC_IMAGE_MAX)
                return lsc_err_set(-EINVAL, "image \"%s\" is too long (%zu characters): at most %d",
                                   lsc_str_show(s, shown), len, LSC_IMAGE_MAX);
        for (size_t i = 0; i < len; i++)
                if (s[i] <= 0x20 || s[i] >= 0x7f)
                        return lsc_err_set(-EINVAL, "invalid image \"%s\": use 1-%d printable ASCII "
                                           "characters without spaces",
                                           lsc_str_show(s, shown), LSC_IMAGE_MAX);
        return 0;
}

int lsc_validate_lifetime_s(uint64_t v)
{
        /* 0 is "no lifetime": not a mayfly. */
        if (v > LSC_LIFETIME_S_MAX)
                return lsc_err_set(-EINVAL, "lifetime %" PRIu64 " s out of range: "
                                   "1-%llu s (ten years), or 0 for none",
                                   v, LSC_LIFETIME_S_MAX);
        return 0;
}

int lsc_parse_u64(const char *what, const char *s, uint64_t *ret)
{
        char shown[LSC_SHOW_BUF];
        char *end;

        if (!s || !*s)
                return lsc_err_set(-EINVAL, "%s is empty: use a decimal number", what);
        /* strtoull would accept leading space, a sign (negating!) and "0x" on its own. */
        for (const char *p = s; *p; p++)
                if (!is_digit(*p))
                        return lsc_err_set(-EINVAL, "invalid %s \"%s\": use a decimal number",
                                           what, lsc_str_show(s, shown));
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno == ERANGE || *end)
                return lsc_err_set(-EINVAL, "%s \"%s\" is too large: at most %" PRIu64,
                                   what, lsc_str_show(s, shown), UINT64_MAX);
        *ret = v;
        return 0;
}

/* Seconds per unit letter, or 0 for a letter that is not a unit. */
static uint64_t duration_unit(char c)
{
        switch (c) {
        case 's': return 1;
        case 'm': return 60;
        case 'h': return 3600;
        case 'd': return 86400;
        default: return 0;
        }
}

int lsc_duration_parse(const char *s, uint64_t *ret_seconds)
{
        char shown[LSC_SHOW_BUF], num[24];
        uint64_t n, unit, secs;
        size_t digits;

        if (!s)
                s = "";
        digits = strspn(s, "0123456789");
        unit = digits ? duration_unit(s[digits]) : 0;
        if (!unit || s[digits + 1])
                return lsc_err_set(-EINVAL, "invalid duration \"%s\": use a positive whole number "
                                   "and one unit s, m, h or d (\"30s\", \"168h\", \"7d\")",
                                   lsc_str_show(s, shown));

        /* The digits alone, so that strtoull's overflow check covers the number; more
         * digits than UINT64_MAX has (20) overflow whatever they are. */
        errno = 0;
        n = 0;
        if (digits < sizeof(num)) {
                memcpy(num, s, digits);
                num[digits] = '\0';
                n = strtoull(num, NULL, 10);
        }
        if (digits >= sizeof(num) || errno == ERANGE || __builtin_mul_overflow(n, unit, &secs))
                return lsc_err_set(-EINVAL, "duration \"%s\" is too large: it overflows "
                                   "64 bits of seconds", lsc_str_show(s, shown));
        if (secs == 0)
                return lsc_err_set(-EINVAL, "duration \"%s\" is zero: use a positive duration",
                                   lsc_str_show(s, shown));
        *ret_seconds = secs;
        return 0;
}

void lsc_duration_format(uint64_t seconds, char *buf, size_t len)
{
        static const struct { uint64_t secs; char unit; } units[] = {
                { 86400, 'd' }, { 3600, 'h' }, { 60, 'm' },
        };
        uint64_t n = seconds;
        char unit = 's';

        if (seconds) {
                for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
                        if (seconds % units[i].secs == 0) {
                                n = seconds / units[i].secs;
                                unit = units[i].unit;
                                break;
                        }
                }
        }
        snprintf(buf, len, "%" PRIu64 "%c", n, unit);
}
