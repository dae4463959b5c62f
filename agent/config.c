/* lsc-agent's settings: one table of keys shared by the ini file and the command line,
 * each value checked when it is set (so an error names the key and the value), the
 * defaults, and the state dir with the agent's keypair. */
#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "config.h"
#include "err.h"
#include "util.h"

#define DEFAULT_DRIVER "libvirt"
#define DEFAULT_URI "test:///default"
#define TEXT_MAX 1024
#define PATH_LEN_MAX 3800                /* room for the files the agent puts inside */

enum key {
        K_NAME, K_MANAGER, K_MANAGER_KEY, K_STATE_DIR, K_DRIVER, K_URI, K_BRIDGE, K_NETWORK,
        K_IMAGE_DIR, K_VOLUME_DIR, K_VCPUS, K_MEMORY_MIB, K_DISK_GIB, K_ALLOC_RATIO, K_LABELS,
        K_HEARTBEAT_MS, K_DRIVER_SLOW_MS, K_REGISTER_RETRY_MS, K_LOG_LEVEL, K_DESTROY_BUDGET_MS,
        K_FENCED_SOCKET, K_WATCHDOG, K_WATCHDOG_TIMEOUT_S, K_RUNTIME, K_RUNTIME_ROOT,
        K_FAKE_FAIL_INSTANTIATE, K_FAKE_FAIL_MESSAGE, K_FAKE_LATENCY_MS, K_FAKE_UNHEALTHY, K_FAKE_HANG, K_FAKE_LOAD,
        K_CHAOS_DUPLICATE_PCT, K_CHAOS_REPLAY_PCT, K_CHAOS_DELAY_PCT, K_CHAOS_DELAY_MS,
        K_BMC_ADDRESS, K_BMC_PORT, K_BMC_USER, K_BMC_PASSWORD_FILE, K_BMC_TIMEOUT_MS, K_BMC_RETRIES, K_MAC,
        K_BOOT_DIR, K_BOOT_LISTEN, K_BOOT_URL, K_BOOT_KERNEL, K_BOOT_INITRD, K_BOOT_CMDLINE, K_BOOT_TIMEOUT_MS,
        K_COUNT
};

static const char *const key_names[K_COUNT] = {
        [K_NAME] = "name",
        [K_MANAGER] = "manager",
        [K_MANAGER_KEY] = "manager_public_key_file",
        [K_STATE_DIR] = "state_dir",
        [K_DRIVER] = "driver",
        [K_URI] = "uri",
        [K_BRIDGE] = "bridge",
        [K_NETWORK] = "network",
        [K_IMAGE_DIR] = "image_dir",
        [K_VOLUME_DIR] = "volume_dir",
        [K_VCPUS] = "vcpus",
        [K_MEMORY_MIB] = "memory_mib",
        [K_DISK_GIB] = "disk_gib",
        [K_ALLOC_RATIO] = "alloc_ratio",
        [K_LABELS] = "labels",
        [K_HEARTBEAT_MS] = "heartbeat_ms",
        [K_DRIVER_SLOW_MS] = "driver_slow_ms",
        [K_REGISTER_RETRY_MS] = "register_retry_ms",
        [K_LOG_LEVEL] = "log_level",
        [K_DESTROY_BUDGET_MS] = "destroy_budget_ms",
        [K_FENCED_SOCKET] = "fenced_socket",
        [K_WATCHDOG] = "watchdog",
        [K_WATCHDOG_TIMEOUT_S] = "watchdog_timeout_s",
        [K_RUNTIME] = "runtime",
        [K_RUNTIME_ROOT] = "runtime_root",
        [K_FAKE_FAIL_INSTANTIATE] = "fake_fail_instantiate",
        [K_FAKE_FAIL_MESSAGE] = "fake_fail_message",
        [K_FAKE_LATENCY_MS] = "fake_latency_ms",
        [K_FAKE_UNHEALTHY] = "fake_unhealthy",
        [K_FAKE_HANG] = "fake_hang",
        [K_FAKE_LOAD] = "fake_load",
        [K_CHAOS_DUPLICATE_PCT] = "chaos_duplicate_pct",
        [K_CHAOS_REPLAY_PCT] = "chaos_replay_pct",
        [K_CHAOS_DELAY_PCT] = "chaos_delay_pct",
        [K_CHAOS_DELAY_MS] = "chaos_delay_ms",
        [K_BMC_ADDRESS] = "bmc_address",
        [K_BMC_PORT] = "bmc_port",
        [K_BMC_USER] = "bmc_user",
        [K_BMC_PASSWORD_FILE] = "bmc_password_file",
        [K_BMC_TIMEOUT_MS] = "bmc_timeout_ms",
        [K_BMC_RETRIES] = "bmc_retries",
        [K_MAC] = "mac",
        [K_BOOT_DIR] = "boot_dir",
        [K_BOOT_LISTEN] = "boot_listen",
        [K_BOOT_URL] = "boot_url",
        [K_BOOT_KERNEL] = "boot_kernel",
        [K_BOOT_INITRD] = "boot_initrd",
        [K_BOOT_CMDLINE] = "boot_cmdline",
        [K_BOOT_TIMEOUT_MS] = "boot_timeout_ms",
};
_Static_assert(K_COUNT <= 64, "from_cli and metal_set are 64-bit masks");

/* Keys only the container driver reads. */
#define CONTAINER_KEYS ((1ull << K_RUNTIME) | (1ull << K_RUNTIME_ROOT))

/* Keys only the fake driver reads: set with another driver, they are a mistake. */
#define FAKE_KEYS ((1ull << K_FAKE_FAIL_INSTANTIATE) | (1ull << K_FAKE_FAIL_MESSAGE) | \
                   (1ull << K_FAKE_LATENCY_MS) | (1ull << K_FAKE_UNHEALTHY) | (1ull << K_FAKE_HANG) | \
                   (1ull << K_FAKE_LOAD))
/* Keys only the metal driver reads, and those it cannot do without. */
#define KEYS(a, b) ((((1ull << ((b) - (a) + 1)) - 1)) << (a))
#define METAL_KEYS KEYS(K_BMC_ADDRESS, K_BOOT_TIMEOUT_MS)
#define METAL_NEEDED ((1ull << K_BMC_ADDRESS) | (1ull << K_BMC_USER) | (1ull << K_BMC_PASSWORD_FILE) | \
                      (1ull << K_MAC) | (1ull << K_BOOT_DIR) | (1ull << K_BOOT_LISTEN) | \
                      (1ull << K_BOOT_KERNEL) | (1ull << K_BOOT_INITRD))

void agent_config_init(struct agent_config *c)
{
        memset(c, 0, sizeof(*c));
        c->alloc_ratio = 1.0;
        c->heartbeat_ms = 1000;
        c->driver_slow_ms = 10000;
        c->register_retry_ms = 3000;
        c->destroy_budget_ms = 3000;
        c->watchdog_timeout_s = 5;
        c->log_level = LSC_LOG_INFO;
        c->bmc_port = LSC_IPMI_DEFAULT_PORT;
        c->bmc_timeout_ms = LSC_IPMI_DEFAULT_TIMEOUT_MS;
        c->bmc_retries = LSC_IPMI_DEFAULT_RETRIES;
}

void agent_config_free(struct agent_config *c)
{
        free(c->name);
        free(c->manager);
        free(c->manager_key_file);
        free(c->state_dir);
        free(c->driver);
        free(c->uri);
        free(c->bridge);
        free(c->network);
        free(c->image_dir);
        free(c->volume_dir);
        free(c->fake_fail_message);
        free(c->fenced_socket);
        free(c->watchdog);
        free(c->runtime);
        free(c->runtime_root);
        free(c->bmc_address);
        free(c->bmc_user);
        free(c->bmc_password_file);
        free(c->boot_dir);
        free(c->boot_listen);
        free(c->boot_url);
        free(c->boot_kernel);
        free(c->boot_initrd);
        free(c->boot_cmdline);
        explicit_bzero(&c->metal, sizeof(c->metal));
        agent_config_init(c);
}

/* ---- value checks: each returns 0 or -EINVAL with a detail naming key and value ---- */

static int bad(const char *key, const char *value, const char *want)
{
        char shown[LSC_SHOW_BUF];

        return lsc_err_set(-EINVAL, "invalid %s \"%s\": %s", key, lsc_str_show(value, shown), want);
}

static bool printable(const char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
                        return false;
        return true;
}

static bool only_chars(const char *s, const char *extra)
{
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                      strchr(extra, *s)))
                        return false;
        return true;
}

static int check_text(const char *key, const char *v, size_t max)
{
        if (!*v || strlen(v) > max || !printable(v))
                return bad(key, v, "want printable text");
        return 0;
}

static int check_path(const char *key, const char *v, bool absolute)
{
        if (!*v || strlen(v) > PATH_LEN_MAX || !printable(v))
                return bad(key, v, "want a path");
        if (absolute && v[0] != '/')
                return bad(key, v, "want an absolute path");
        return 0;
}

static int check_endpoint(const char *key, const char *v)
{
        if (strncmp(v, "tcp://", 6) == 0) {
                const char *host = v + 6, *colon = strrchr(host, ':');
                uint64_t port;
                char *end;

                if (!colon || colon == host || !colon[1] ||
                    strspn(colon + 1, "0123456789") != strlen(colon + 1))
                        return bad(key, v, "use tcp://HOST:PORT or ipc://PATH");
                port = strtoull(colon + 1, &end, 10);
                if (port == 0 || port > 65535 || strlen(colon + 1) > 5)
                        return bad(key, v, "the port must be 1-65535");
                for (const char *p = host; p < colon; p++)
                        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                              (*p >= '0' && *p <= '9') || strchr(".-_:[]", *p)))
                                return bad(key, v, "use tcp://HOST:PORT or ipc://PATH");
                return 0;
        }
        if (strncmp(v, "ipc://", 6) == 0) {
                if (!v[6] || strlen(v + 6) >= 108 || !printable(v))
                        return bad(key, v, "the ipc path must be 1-107 bytes");
                return 0;
        }
        return bad(key, v, "use tcp://HOST:PORT or ipc://PATH");
}

static int parse_range(const char *key, const char *v, uint64_t min, uint64_t max, uint64_t *ret)
{
        uint64_t n = 0;
        char want[96];

        if (lsc_parse_u64(key, v, &n) < 0 || n < min || n > max) {
                snprintf(want, sizeof(want), "want a whole number from %llu to %llu",
                         (unsigned long long)min, (unsigned long long)max);
                return bad(key, v, want);
        }
        *ret = n;
        return 0;
}

static int parse_u32(const char *key, const char *v, uint32_t min, uint32_t max, uint32_t *ret)
{
        uint64_t n = 0;
        int r = parse_range(key, v, min, max, &n);

        if (r == 0)
                *ret = (uint32_t)n;
        return r;
}

static int parse_bool(const char *key, const char *v, bool *ret)
{
        static const char *const yes[] = { "true", "yes", "on", "1" }, *const no[] = { "false", "no", "off", "0" };

        for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
                if (strcmp(v, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcmp(v, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return bad(key, v, "want true or false");
}

static int parse_ratio(const char *key, const char *v, double *ret)
{
        char *end;
        double d;

        errno = 0;
        d = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(d) || d <= 0.0 || d > 100.0)
                return bad(key, v, "want a number above 0 and at most 100, e.g. 1.5");
        *ret = d;
        return 0;
}

/* One share of the vCPUs, 0-1. */
static bool share_parse(const char *v, const char **ret_end, double *ret)
{
        char *end;
        double d;

        if (!(*v >= '0' && *v <= '9') && *v != '.')
                return false;
        errno = 0;
        d = strtod(v, &end);
        if (errno || end == v || !isfinite(d) || d < 0.0 || d > 1.0)
                return false;
        *ret_end = end;
        *ret = d;
        return true;
}

/* "SHARE" (constant) or "LOW-HIGH" (over the UTC day: LOW at 02:00, HIGH at 14:00). */
static int parse_load(struct agent_config *c, const char *key, const char *v)
{
        const char *end;
        double low, high;

        if (!share_parse(v, &end, &low))
                return bad(key, v, "want the share of each instance's vCPUs kept busy, 0 to 1 (e.g. 0.5), "
                                   "or a daily LOW-HIGH such as 0.1-0.8");
        high = low;
        if (*end == '-' && !share_parse(end + 1, &end, &high))
                return bad(key, v, "want a daily LOW-HIGH with both from 0 to 1, such as 0.1-0.8");
        if (*end)
                return bad(key, v, "want a share such as 0.5 or a daily LOW-HIGH such as 0.1-0.8, nothing after it");
        if (high < low)
                return bad(key, v, "the daily LOW-HIGH must have LOW at most HIGH");
        c->fake_load_set = true;
        c->fake_load_low = low;
        c->fake_load_high = high;
        return 0;
}

/* "k=v,k2=v2" (spaces around items allowed); all or nothing. */
static int parse_labels(struct agent_config *c, const char *key, const char *v)
{
        struct agent_label labels[AGENT_LABELS_MAX];
        _cleanup_free_ char *buf = strdup(v);
        char *save = NULL, *item;
        size_t n = 0;

        if (!buf)
                return lsc_err_set(-ENOMEM, "out of memory");
        if (strstr(v, ",,") || v[0] == ',' || (*v && v[strlen(v) - 1] == ','))
                return bad(key, v, "an empty label between commas");
        for (item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
                const char *k, *val;
                char *end;

                while (*item == ' ' || *item == '\t')
                        item++;
                end = item + strlen(item);
                while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
                        *--end = '\0';
                if (n == AGENT_LABELS_MAX)
                        return bad(key, v, "at most 64 labels");
                if (lsc_label_parse(item, &k, &val) < 0)
                        return -EINVAL;          /* its detail names the label */
                for (size_t i = 0; i < n; i++)
                        if (strcmp(labels[i].key, k) == 0)
                                return bad(key, v, "a label key appears twice");
                snprintf(labels[n].key, sizeof(labels[n].key), "%s", k);
                snprintf(labels[n].value, sizeof(labels[n].value), "%s", val);
                n++;
        }
        memcpy(c->labels, labels, n * sizeof(*labels));
        c->n_labels = n;
        return 0;
}

static int set_str(char **dst, const char *v)
{
        char *s = NULL;

        if (v && !(s = strdup(v)))
                return lsc_err_set(-ENOMEM, "out of memory");
        free(*dst);
        *dst = s;
        return 0;
}

static int set_key(struct agent_config *c, enum key k, const char *v)
{
        const char *key = key_names[k];
        uint64_t n = 0;
        int r;

        switch (k) {
        case K_NAME:
                if ((r = lsc_validate_name("host name", v)) < 0)
                        return r;
                return set_str(&c->name, v);
        case K_MANAGER:
                return (r = check_endpoint(key, v)) < 0 ? r : set_str(&c->manager, v);
        case K_MANAGER_KEY:
                return (r = check_path(key, v, false)) < 0 ? r : set_str(&c->manager_key_file, v);
        case K_STATE_DIR:
                return (r = check_path(key, v, true)) < 0 ? r : set_str(&c->state_dir, v);
        case K_IMAGE_DIR:
        case K_VOLUME_DIR: {
                char **dst = k == K_IMAGE_DIR ? &c->image_dir : &c->volume_dir;
                if (!*v)
                        return set_str(dst, NULL);      /* empty: the driver's default */
                return (r = check_path(key, v, true)) < 0 ? r : set_str(dst, v);
        }
        case K_DRIVER:
                if (!drv_lookup(v))
                        return bad(key, v, "use libvirt, container, fake or metal");
                return set_str(&c->driver, v);
        case K_URI:
                return (r = check_text(key, v, TEXT_MAX)) < 0 ? r : set_str(&c->uri, v);
        case K_BRIDGE:
                if (!*v)
                        return set_str(&c->bridge, NULL);
                if (strlen(v) > 15 || !only_chars(v, "._-"))
                        return bad(key, v, "want an interface name (1-15 of A-Z a-z 0-9 . _ -)");
                return set_str(&c->bridge, v);
        case K_NETWORK:
                if (!*v)
                        return set_str(&c->network, NULL);
                if (strlen(v) > 63 || !only_chars(v, "._-"))
                        return bad(key, v, "want a libvirt network name (1-63 of A-Z a-z 0-9 . _ -)");
                return set_str(&c->network, v);
        case K_VCPUS:
                if (lsc_parse_u64(key, v, &n) < 0 || lsc_validate_vcpus(n) < 0)
                        return -EINVAL;
                c->vcpus = (uint32_t)n;
                return 0;
        case K_MEMORY_MIB:
                if (lsc_parse_u64(key, v, &n) < 0 || lsc_validate_memory_mib(n) < 0)
                        return -EINVAL;
                c->memory_mib = n;
                return 0;
        case K_DISK_GIB:
                if (lsc_parse_u64(key, v, &n) < 0 || n == 0 || lsc_validate_disk_gib(n) < 0)
                        return n == 0 ? bad(key, v, "want at least 1") : -EINVAL;
                c->disk_gib = n;
                return 0;
        case K_ALLOC_RATIO:
                return parse_ratio(key, v, &c->alloc_ratio);
        case K_LABELS:
                return parse_labels(c, key, v);
        case K_HEARTBEAT_MS:
                return parse_u32(key, v, 50, 60000, &c->heartbeat_ms);
        case K_DRIVER_SLOW_MS:
                return parse_u32(key, v, 100, 3600000, &c->driver_slow_ms);
        case K_REGISTER_RETRY_MS:
                return parse_u32(key, v, 100, 600000, &c->register_retry_ms);
        case K_DESTROY_BUDGET_MS:
                return parse_u32(key, v, 0, 600000, &c->destroy_budget_ms);
        case K_FENCED_SOCKET:
                if (!*v)
                        return set_str(&c->fenced_socket, NULL);       /* empty: no lsc-fenced */
                if ((r = check_path(key, v, true)) < 0)
                        return r;
                if (strlen(v) >= 108)
                        return bad(key, v, "a unix socket path is at most 107 bytes");
                return set_str(&c->fenced_socket, v);
        case K_WATCHDOG:
                c->watchdog_set = true;
                c->watchdog_off = strcmp(v, "none") == 0;
                if (c->watchdog_off || strcmp(v, "auto") == 0)
                        return set_str(&c->watchdog, NULL);
                if ((r = check_path(key, v, true)) < 0)
                        return r;
                return set_str(&c->watchdog, v);
        case K_RUNTIME:
                /* a name looked up in PATH, or a path; the driver runs it at open */
                if (strcmp(v, "runc") == 0 || strcmp(v, "crun") == 0)
                        return set_str(&c->runtime, v);
                if ((r = check_path(key, v, true)) < 0)
                        return bad(key, v, "use runc, crun or the absolute path of an OCI runtime");
                return set_str(&c->runtime, v);
        case K_RUNTIME_ROOT:
                if (!*v)
                        return set_str(&c->runtime_root, NULL);
                return (r = check_path(key, v, true)) < 0 ? r : set_str(&c->runtime_root, v);
        case K_WATCHDOG_TIMEOUT_S:
                return parse_u32(key, v, 1, 600, &c->watchdog_timeout_s);
        case K_LOG_LEVEL:
                if (lsc_log_level_parse(v, &c->log_level) < 0)
                        return bad(key, v, "use error, warn, info or debug");
                return 0;
        case K_FAKE_FAIL_INSTANTIATE:
                return parse_u32(key, v, 0, 1000000, &c->fake_fail_instantiate);
        case K_FAKE_FAIL_MESSAGE:
                return (r = check_text(key, v, 200)) < 0 ? r : set_str(&c->fake_fail_message, v);
        case K_FAKE_LATENCY_MS:
                return parse_u32(key, v, 0, 3600000, &c->fake_latency_ms);
        case K_FAKE_UNHEALTHY:
                return parse_bool(key, v, &c->fake_unhealthy);
        case K_FAKE_HANG:
                return parse_bool(key, v, &c->fake_hang);
        case K_FAKE_LOAD:
                return parse_load(c, key, v);
        case K_CHAOS_DUPLICATE_PCT:
                return parse_u32(key, v, 0, 100, &c->chaos_duplicate_pct);
        case K_CHAOS_REPLAY_PCT:
                return parse_u32(key, v, 0, 100, &c->chaos_replay_pct);
        case K_CHAOS_DELAY_PCT:
                return parse_u32(key, v, 0, 100, &c->chaos_delay_pct);
        case K_CHAOS_DELAY_MS:
                return parse_u32(key, v, 0, 60000, &c->chaos_delay_ms);
        case K_BMC_ADDRESS:
                if (!*v || strlen(v) > LSC_IPMI_HOST_MAX || !only_chars(v, ".-:"))
                        return bad(key, v, "want the BMC's IP address or DNS name");
                return set_str(&c->bmc_address, v);
        case K_BMC_PORT:
                return parse_u32(key, v, 1, 65535, &c->bmc_port);
        case K_BMC_USER:
                if (!*v || strlen(v) > LSC_IPMI_USER_MAX || !printable(v))
                        return bad(key, v, "want an IPMI user name of 1-16 printable bytes");
                return set_str(&c->bmc_user, v);
        case K_BMC_PASSWORD_FILE:
                return (r = check_path(key, v, true)) < 0 ? r : set_str(&c->bmc_password_file, v);
        case K_BMC_TIMEOUT_MS:
                return parse_u32(key, v, 100, 600000, &c->bmc_timeout_ms);
        case K_BMC_RETRIES:
                return parse_u32(key, v, 0, 20, &c->bmc_retries);
        case K_MAC:
                if (lsc_mac_parse(v, &c->mac) < 0)
                        return bad(key, v, "want the boot NIC's MAC, e.g. 52:54:00:12:34:56");
                c->has_mac = true;
                return 0;
        case K_BOOT_DIR:
                return (r = check_path(key, v, true)) < 0 ? r : set_str(&c->boot_dir, v);
        case K_BOOT_LISTEN: {
                const char *colon = strrchr(v, ':');
                struct in_addr a;
                char ip[INET_ADDRSTRLEN];
                uint64_t port = 0;

                if (!colon || (size_t)(colon - v) >= sizeof(ip) || lsc_parse_u64(key, colon + 1, &port) < 0 ||
                    port == 0 || port > 65535)
                        return bad(key, v, "want IPv4:PORT, e.g. 10.0.0.5:8800");
                memcpy(ip, v, (size_t)(colon - v));
                ip[colon - v] = '\0';
                if (inet_pton(AF_INET, ip, &a) != 1)
                        return bad(key, v, "want IPv4:PORT, e.g. 10.0.0.5:8800");
                return set_str(&c->boot_listen, v);
        }
        case K_BOOT_URL:
                if (strncmp(v, "http://", 7) != 0 || strlen(v) > TEXT_MAX || !printable(v) || strpbrk(v, " \"'"))
                        return bad(key, v, "want http://HOST[:PORT] without spaces or quotes");
                return set_str(&c->boot_url, v);
        case K_BOOT_KERNEL:
        case K_BOOT_INITRD: {
                char **dst = k == K_BOOT_KERNEL ? &c->boot_kernel : &c->boot_initrd;
                if (!*v || strlen(v) > TEXT_MAX || !printable(v) || strpbrk(v, " \"'"))
                        return bad(key, v, "want a URL or a file name in boot_dir, without spaces or quotes");
                return set_str(dst, v);
        }
        case K_BOOT_CMDLINE:
                if (!*v)
                        return set_str(&c->boot_cmdline, NULL);
                if (strlen(v) > TEXT_MAX || !printable(v))
                        return bad(key, v, "want printable kernel arguments");
                return set_str(&c->boot_cmdline, v);
        case K_BOOT_TIMEOUT_MS:
                return parse_u32(key, v, 1000, 3600000, &c->boot_timeout_ms);
        case K_COUNT:
                break;
        }
        return lsc_err_set(-ENOENT, "unknown key %s", key);
}

/* ---- the public face ---- */

int agent_config_set(struct agent_config *c, const char *key, const char *value, bool from_cli)
{
        char shown[LSC_SHOW_BUF];
        int r;

        if (!key || !value)
                return lsc_err_set(-EINVAL, "no key or no value");
        for (int k = 0; k < K_COUNT; k++) {
                if (strcmp(key, key_names[k]) != 0)
                        continue;
                if (!from_cli && (c->from_cli & (1ull << k)))
                        return 0;        /* the command line said otherwise: it wins */
                if ((r = set_key(c, (enum key)k, value)) < 0)
                        return r;
                if (from_cli)
                        c->from_cli |= 1ull << k;
                if ((1ull << k) & FAKE_KEYS)
                        c->fake_set = true;
                if ((1ull << k) & CONTAINER_KEYS)
                        c->container_set = true;
                if ((1ull << k) & METAL_KEYS)
                        c->metal_set |= 1ull << k;
                return 0;
        }
        return lsc_err_set(-ENOENT, "unknown key \"%s\" in [agent]", lsc_str_show(key, shown));
}

struct load_ctx {
        struct agent_config *c;
        const char *machine;             /* pass 2: the [machine NAME] to read; NULL: [agent] */
        char **names;                    /* agent_config_machines: the sections seen */
        size_t n_names;
        char err[512];                   /* the first error: ini_parse reports its line */
};

/* "machine NAME" -> NAME, else NULL. */
static const char *machine_of(const char *section)
{
        return strncmp(section, "machine ", 8) == 0 ? section + 8 : NULL;
}

static int ini_entry(void *user, const char *section, const char *name, const char *value)
{
        struct load_ctx *x = user;
        const char *m = machine_of(section);
        char shown[LSC_SHOW_BUF];
        int r;

        if (m && x->names) {             /* listing the machines: nothing is set */
                for (size_t i = 0; i < x->n_names; i++)
                        if (!strcmp(x->names[i], m))
                                return 1;
                char **v = realloc(x->names, (x->n_names + 2) * sizeof(*v));
                if (!v || !(v[x->n_names] = strdup(m))) {
                        if (v)
                                x->names = v;
                        snprintf(x->err, sizeof(x->err), "out of memory");
                        return 0;
                }
                x->names = v;
                x->names[++x->n_names] = NULL;
                return 1;
        }
        if (x->names)
                return 1;
        if (m && !x->machine)
                return 1;                /* pass 1 reads [agent] only */
        if (x->machine && (!m || strcmp(m, x->machine) != 0))
                return 1;                /* pass 2 reads only this machine's section */
        if (!m && strcmp(section, "agent") != 0) {
                if (!x->err[0])
                        snprintf(x->err, sizeof(x->err), "unknown section [%s]: lsc-agent reads [agent] "
                                 "and [machine NAME]", lsc_str_show(section, shown));
                return 0;
        }
        r = agent_config_set(x->c, name, value, false);
        if (r < 0 && !x->err[0])
                snprintf(x->err, sizeof(x->err), "%s", lsc_err_msg(r));
        return r == 0;
}

#define CONFIG_TEXT_MAX (4u << 20)

int agent_config_read(const char *path, char **ret)
{
        FILE *f = fopen(path, "re");
        char *text = NULL;
        size_t len = 0, cap = 0, n;

        if (!f)
                return lsc_err_set(-errno, "cannot read config file %s: %s", path, strerror(errno));
        do {
                if (cap - len < 4096) {
                        char *t = cap + 65536 <= CONFIG_TEXT_MAX ? realloc(text, cap + 65536) : NULL;
                        if (!t) {
                                free(text);
                                fclose(f);
                                return lsc_err_set(-EFBIG, "config file %s: too large or out of memory", path);
                        }
                        text = t;
                        cap += 65536;
                }
                n = fread(text + len, 1, cap - len - 1, f);
                len += n;
        } while (n > 0);
        if (ferror(f)) {
                free(text);
                fclose(f);
                return lsc_err_set(-EIO, "cannot read config file %s", path);
        }
        fclose(f);
        text[len] = '\0';
        *ret = text;
        return 0;
}

/* One pass over the file's text (read once: it may be a pipe); errors say NAME:LINE. */
static int load_pass(struct load_ctx *x, const char *name, const char *text)
{
        int line = ini_parse_string(text, ini_entry, x);

        if (line < 0)
                return lsc_err_set(-ENOMEM, "%s: out of memory", name);
        if (line > 0)
                return lsc_err_set(-EINVAL, "%s:%d: %s", name, line, x->err[0] ? x->err : "syntax error");
        return 0;
}

int agent_config_load_text(struct agent_config *c, const char *name, const char *text)
{
        struct load_ctx x = { .c = c };

        return load_pass(&x, name, text);
}

int agent_config_load(struct agent_config *c, const char *path)
{
        _cleanup_free_ char *text = NULL;
        int r = agent_config_read(path, &text);

        return r < 0 ? r : agent_config_load_text(c, path, text);
}

int agent_config_load_machine(struct agent_config *c, const char *name, const char *text, const char *machine)
{
        struct load_ctx x = { .c = c };
        struct load_ctx y = { .c = c, .machine = machine };
        int r;

        if ((r = lsc_validate_name("machine name in [machine NAME]", machine)) < 0 ||
            (r = load_pass(&x, name, text)) < 0 || (r = load_pass(&y, name, text)) < 0)
                return r;
        /* the section names the host, unless the command line said otherwise */
        return agent_config_set(c, "name", machine, false);
}

int agent_config_machines(const char *name, const char *text, char ***ret)
{
        struct load_ctx x = { .names = calloc(1, sizeof(char *)) };
        int r;

        if (!x.names)
                return lsc_err_set(-ENOMEM, "out of memory");
        if ((r = load_pass(&x, name, text)) < 0) {
                agent_config_machines_free(x.names);
                return r;
        }
        *ret = x.names;
        return (int)x.n_names;
}

void agent_config_machines_free(char **names)
{
        for (size_t i = 0; names && names[i]; i++)
                free(names[i]);
        free(names);
}

/* Driver metal: every key it needs is there, and the BMC's password is read now, so a
 * bad file stops the agent at start rather than at the first binding. */
static int metal_finish(struct agent_config *c)
{
        char password[LSC_IPMI_PASSWORD_MAX + 1];
        struct drv_metal_config *m = &c->metal;
        int r;

        if (strcmp(c->driver, "metal") != 0) {
                for (int k = 0; k < K_COUNT; k++)
                        if (c->metal_set & (1ull << k))
                                return lsc_err_set(-EINVAL, "%s is for driver metal, not %s", key_names[k], c->driver);
                return 0;
        }
        for (int k = 0; k < K_COUNT; k++)
                if ((METAL_NEEDED & (1ull << k)) && !(c->metal_set & (1ull << k)))
                        return lsc_err_set(-EINVAL, "driver metal needs %s in [agent]", key_names[k]);
        if (!c->vcpus || !c->memory_mib)
                return lsc_err_set(-EINVAL, "driver metal needs the machine's vcpus and memory_mib in [agent]");
        /* this box's watchdog resets this box, not the machines: off unless asked for */
        if (!(c->from_cli & (1ull << K_WATCHDOG)) && !c->watchdog_set)
                c->watchdog_off = true;
        if ((r = lsc_ipmi_password_read(c->bmc_password_file, password)) < 0)
                return r;
        memset(m, 0, sizeof(*m));
        r = lsc_ipmi_bmc_set(&m->bmc, "bmc_", c->bmc_address, c->bmc_port, c->bmc_user, password);
        explicit_bzero(password, sizeof(password));
        if (r < 0)
                return r;
        m->bmc.timeout_ms = c->bmc_timeout_ms;
        m->bmc.retries = c->bmc_retries;
        m->mac = c->mac;
        m->boot_dir = c->boot_dir;
        m->boot_listen = c->boot_listen;
        m->boot_url = c->boot_url;
        m->boot_kernel = c->boot_kernel;
        m->boot_initrd = c->boot_initrd;
        m->boot_cmdline = c->boot_cmdline;
        m->boot_timeout_ms = c->boot_timeout_ms;
        return 0;
}

int agent_config_finish(struct agent_config *c, bool need_manager)
{
        int r;

        if (!c->name)
                return lsc_err_set(-EINVAL, "no host name: give --name HOST");
        if (!c->state_dir) {
                size_t len = strlen(AGENT_STATE_DIR_BASE) + strlen(c->name) + 2;
                if (!(c->state_dir = malloc(len)))
                        return lsc_err_set(-ENOMEM, "out of memory");
                snprintf(c->state_dir, len, "%s/%s", AGENT_STATE_DIR_BASE, c->name);
        }
        if (!c->driver && (r = set_str(&c->driver, DEFAULT_DRIVER)) < 0)
                return r;
        if (!c->uri && (r = set_str(&c->uri, DEFAULT_URI)) < 0)
                return r;
        if (c->fake_set && strcmp(c->driver, "fake") != 0)
                return lsc_err_set(-EINVAL, "fake_* settings are for driver fake, not %s", c->driver);
        if (c->container_set && strcmp(c->driver, "container") != 0)
                return lsc_err_set(-EINVAL, "runtime and runtime_root are for driver container, not %s",
                                   c->driver);
        if ((r = metal_finish(c)) < 0)
                return r;
        if (!need_manager)
                return 0;
        if (!c->manager)
                return lsc_err_set(-EINVAL, "no manager endpoint: give --manager ENDPOINT or "
                                   "manager = tcp://HOST:PORT in [agent]");
        if (!c->manager_key_file)
                return lsc_err_set(-EINVAL, "no manager public key: give --manager-key FILE or "
                                   "manager_public_key_file = FILE in [agent]");
        return lsc_curve_read_public(c->manager_key_file, c->manager_key);
}

/* mkdir -p: parents as 0755, the state dir itself 0711 (the hypervisor's user may
 * have to reach disks inside it, but nobody needs to list it). */
static int mkdir_p(const char *path)
{
        _cleanup_free_ char *p = strdup(path);
        struct stat st;

        if (!p)
                return lsc_err_set(-ENOMEM, "out of memory");
        for (char *s = p + 1;; s++) {
                bool last = *s == '\0';

                if (*s != '/' && !last)
                        continue;
                *s = '\0';
                if (mkdir(p, last ? 0711 : 0755) < 0 && errno != EEXIST)
                        return lsc_err_set(-errno, "cannot create %s: %s", p, strerror(errno));
                if (last)
                        break;
                *s = '/';
        }
        if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
                return lsc_err_set(-ENOTDIR, "the state dir %s is not a directory", path);
        return 0;
}

int agent_config_keys(const struct agent_config *c, char ret_public[LSC_Z85_KEY],
                      char ret_secret[LSC_Z85_KEY])
{
        char sec[4096], pub[4096];
        int r;

        if ((r = mkdir_p(c->state_dir)) < 0)
                return r;
        snprintf(sec, sizeof(sec), "%s/%s", c->state_dir, AGENT_KEY_FILE);
        snprintf(pub, sizeof(pub), "%s/%s", c->state_dir, AGENT_PUB_FILE);
        return lsc_curve_load_or_create(sec, pub, ret_public, ret_secret);
}

void agent_config_driver(const struct agent_config *c, struct drv_config *ret)
{
        *ret = (struct drv_config){
                .uri = c->uri,
                .host = c->name,
                .bridge = c->bridge,
                .network = c->network,
                .state_dir = c->state_dir,
                .image_dir = c->image_dir,
                .volume_dir = c->volume_dir,
                .runtime = c->runtime,
                .runtime_root = c->runtime_root,
                .vcpus = c->vcpus,
                .memory_mib = c->memory_mib,
                .disk_gib = c->disk_gib,
                .fake_fail_instantiate = c->fake_fail_instantiate,
                .fake_fail_message = c->fake_fail_message,
                .fake_latency_ms = c->fake_latency_ms,
                .fake_unhealthy = c->fake_unhealthy,
                .fake_hang = c->fake_hang,
                .fake_load_set = c->fake_load_set,
                .fake_load_low = c->fake_load_low,
                .fake_load_high = c->fake_load_high,
                .metal = c->driver && strcmp(c->driver, "metal") == 0 ? &c->metal : NULL,
        };
}

const char *agent_config_kind(const struct agent_config *c)
{
        if (c->driver && (strcmp(c->driver, "container") == 0 || strcmp(c->driver, "metal") == 0))
                return c->driver;
        return "vm";
}
