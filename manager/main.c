/* lscd: parses the command line and the config file, then runs the loop. */
#include <errno.h>
#include <stddef.h>
#include <getopt.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "addr.h"
#include "curve.h"
#include "err.h"
#include "log.h"
#include "fence.h"
#include "loop.h"
#include "util.h"
#include "validate.h"

#define DEFAULT_LISTEN "ipc:///run/lsc/lscd.sock"
#define DEFAULT_MAC_PREFIX "02:4c:53"

struct opts {
        char *config;
        char *db;
        char *listen;
        char *mac_prefix;
        char *log_level;
        char *agent_listen;
        char *curve_key;
        char *authorized_keys;
        char *dhcp_hosts;
        uint64_t job_budget_ms;
        uint64_t lease_ttl_ms;
        uint64_t grace_ms;
        uint64_t seed;
        bool has_seed, has_grace;
        uint64_t bind_batch;             /* bench-bind: --bind-batch */
        struct fence_config fence;       /* [bmc HOST] sections */
        struct mayfly_opts {             /* config file only; see docs/mayflies-operations.md */
                uint64_t jitter_pct, renew_max, turnover_max_pct, group_max, shutdown_timeout_ms,
                         postpone_s, in_place, aware;
        } mayfly;
};

/* The [manager] keys of mayfly turnover: name, where, default, range. */
static const struct {
        const char *key;
        size_t off;
        uint64_t def, min, max;
} mayfly_keys[] = {
        { "mayfly_jitter_pct", offsetof(struct mayfly_opts, jitter_pct), 10, 0, 50 },
        { "mayfly_renew_max", offsetof(struct mayfly_opts, renew_max), 3, 0, 1000 },
        { "turnover_max_pct", offsetof(struct mayfly_opts, turnover_max_pct), 10, 0, 100 },
        { "mayfly_group_max", offsetof(struct mayfly_opts, group_max), 1, 1, 1000000 },
        { "mayfly_shutdown_timeout_ms", offsetof(struct mayfly_opts, shutdown_timeout_ms), 30000, 0, 3600000 },
        { "mayfly_postpone_s", offsetof(struct mayfly_opts, postpone_s), 30, 1, 86400 },
        { "mayfly_in_place", offsetof(struct mayfly_opts, in_place), 1, 0, 1 },
        { "mayfly_aware", offsetof(struct mayfly_opts, aware), 1, 0, 1 },
};

static void usage(FILE *f)
{
        fprintf(f,
"Usage: lscd [OPTIONS]\n"
"The lsc manager: keeps server identities in PostgreSQL and answers the lsc CLI.\n"
"\n"
"  --db CONNINFO        PostgreSQL connection string (libpq), e.g.\n"
"                       \"host=127.0.0.1 port=5432 dbname=lsc user=lsc\"\n"
"  --listen ENDPOINT    where the CLI connects (default " DEFAULT_LISTEN ")\n"
"  --mac-prefix PREFIX  1-5 octets that allocated MACs start with; the first octet must\n"
"                       be unicast and locally administered (default " DEFAULT_MAC_PREFIX ")\n"
"  --db-wait-ms N       how long a request waits for an unreachable database before\n"
"                       it is refused (default 5000)\n"
"  --agent-listen EP    where agents connect over CurveZMQ, e.g. tcp://0.0.0.0:7100;\n"
"                       without it lscd accepts no agents\n"
"  --curve-key FILE     lscd's CurveZMQ secret key, created (0600) if absent; agents\n"
"                       need its public key (lscd --print-public-key)\n"
"  --authorized-keys DIR  enrolled agents: one file HOST.pub per host with its Z85\n"
"                       public key; a key may speak only for its host; re-read when\n"
"                       an unknown key knocks\n"
"  --lease-ttl-ms N     an agent's lease after an acknowledged heartbeat (default 10000)\n"
"  --grace-ms N         added to the lease before a silent host is lost (default 3000)\n"
"  --print-public-key   print the public key of --curve-key (creating it) and exit\n"
"  --seed N             the scheduler's random seed, so a run replays (default: random)\n"
"  --dhcp-hosts FILE    keep FILE a dnsmasq dhcp-hostsfile (MAC,IP,hostname of every\n"
"                       identity): see docs/network.md\n"
"  --bind-batch N       at most N bindings per store transaction, 1-10000 (default\n"
"                       1000; 1 is the naive one-transaction-per-binding mode that\n"
"                       bench-bind compares against)\n"
"  --log-level LEVEL    error, warn, info (default) or debug\n"
"  --config FILE        an ini file with a [manager] section: db, listen, mac_prefix,\n"
"                       db_wait_ms, log_level, agent_listen, curve_key,\n"
"                       authorized_keys, lease_ttl_ms, grace_ms, dhcp_hosts, and the\n"
"                       mayfly keys mayfly_jitter_pct (10), mayfly_renew_max (3),\n"
"                       turnover_max_pct (10), mayfly_group_max (1),\n"
"                       mayfly_shutdown_timeout_ms (30000), mayfly_postpone_s (30),\n"
"                       mayfly_in_place (1), mayfly_aware (1: die-off-aware placement);\n"
"                       command-line options win. One [bmc HOST] section per metal\n"
"                       machine for the fence worker: address, port (623), user,\n"
"                       password_file (0600), timeout_ms (5000), retries (2)\n"
"  --help, --version\n"
"\n"
"lscd applies pending schema migrations at start and refuses a database whose schema\n"
"is newer than it knows. It stops on SIGTERM or SIGINT.\n");
}

static int set_str(char **dst, const char *v)
{
        char *s = strdup(v);
        if (!s)
                return -ENOMEM;
        free(*dst);
        *dst = s;
        return 0;
}

/* inih callback: 1 on success, 0 on an unknown key (inih then reports the line). */
static int config_entry(void *user, const char *section, const char *name, const char *value)
{
        struct opts *o = user;

        if (strncmp(section, "bmc ", 4) == 0) {
                int r = fence_config_set(&o->fence, section + 4, name, value);
                if (r < 0)
                        fprintf(stderr, "lscd: %s\n", lsc_err_msg(r));
                return r == 0;
        }
        if (strcmp(section, "manager") != 0) {
                fprintf(stderr, "lscd: unknown config section [%s]\n", section);
                return 0;
        }
        struct { const char *key; char **dst; } strs[] = {
                { "agent_listen", &o->agent_listen }, { "curve_key", &o->curve_key },
                { "authorized_keys", &o->authorized_keys }, { "dhcp_hosts", &o->dhcp_hosts },
        };
        struct { const char *key; uint64_t *dst; } nums[] = {
                { "lease_ttl_ms", &o->lease_ttl_ms }, { "grace_ms", &o->grace_ms },
        };
        for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
                if (strcmp(name, strs[i].key) == 0)
                        return *strs[i].dst ? 1 : set_str(strs[i].dst, value) == 0;
        for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
                if (strcmp(name, nums[i].key) == 0) {
                        bool grace = nums[i].dst == &o->grace_ms;
                        if (*nums[i].dst || (grace && o->has_grace))
                                return 1;       /* given on the command line: that wins */
                        if (lsc_parse_u64(name, value, nums[i].dst) < 0) {
                                fprintf(stderr, "lscd: %s\n", lsc_err_msg(-EINVAL));
                                return 0;
                        }
                        o->has_grace |= grace;
                        return 1;
                }
        for (size_t i = 0; i < sizeof(mayfly_keys) / sizeof(mayfly_keys[0]); i++)
                if (strcmp(name, mayfly_keys[i].key) == 0) {
                        uint64_t *dst = (uint64_t *)((char *)&o->mayfly + mayfly_keys[i].off), v;
                        if (lsc_parse_u64(name, value, &v) < 0 || v < mayfly_keys[i].min ||
                            v > mayfly_keys[i].max) {
                                fprintf(stderr, "lscd: %s = %s: give a whole number from %llu to %llu\n",
                                        name, value, (unsigned long long)mayfly_keys[i].min,
                                        (unsigned long long)mayfly_keys[i].max);
                                return 0;
                        }
                        *dst = v;
                        return 1;
                }
        if (strcmp(name, "db") == 0 && !o->db)
                return set_str(&o->db, value) == 0;
        if (strcmp(name, "listen") == 0 && !o->listen)
                return set_str(&o->listen, value) == 0;
        if (strcmp(name, "mac_prefix") == 0 && !o->mac_prefix)
                return set_str(&o->mac_prefix, value) == 0;
        if (strcmp(name, "log_level") == 0 && !o->log_level)
                return set_str(&o->log_level, value) == 0;
        if (strcmp(name, "db_wait_ms") == 0) {
                if (o->job_budget_ms)
                        return 1;
                if (lsc_parse_u64("db_wait_ms", value, &o->job_budget_ms) < 0) {
                        fprintf(stderr, "lscd: %s\n", lsc_err_msg(-EINVAL));
                        return 0;
                }
                return 1;
        }
        if (strcmp(name, "db") == 0 || strcmp(name, "listen") == 0 || strcmp(name, "mac_prefix") == 0 ||
            strcmp(name, "log_level") == 0)
                return 1;       /* given on the command line: that wins */
        fprintf(stderr, "lscd: unknown config key \"%s\" in [manager]\n", name);
        return 0;
}

static void opts_free(struct opts *o)
{
        free(o->config);
        free(o->db);
        free(o->listen);
        free(o->mac_prefix);
        free(o->log_level);
        free(o->agent_listen);
        free(o->curve_key);
        free(o->authorized_keys);
        free(o->dhcp_hosts);
        fence_config_free(&o->fence);
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
                { "db", required_argument, NULL, 'd' },
                { "listen", required_argument, NULL, 'l' },
                { "mac-prefix", required_argument, NULL, 'm' },
                { "db-wait-ms", required_argument, NULL, 'w' },
                { "log-level", required_argument, NULL, 'L' },
                { "config", required_argument, NULL, 'c' },
                { "agent-listen", required_argument, NULL, 'A' },
                { "curve-key", required_argument, NULL, 'K' },
                { "authorized-keys", required_argument, NULL, 'Z' },
                { "lease-ttl-ms", required_argument, NULL, 'T' },
                { "grace-ms", required_argument, NULL, 'G' },
                { "print-public-key", no_argument, NULL, 'P' },
                { "seed", required_argument, NULL, 'S' },
                { "dhcp-hosts", required_argument, NULL, 'D' },
                { "bind-batch", required_argument, NULL, 'B' },   /* bench-bind */
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {}
        };
        struct opts o = {};
        struct loop_config cfg = {};
        enum lsc_log_level level = LSC_LOG_INFO;
        struct loop l;
        int c, r, status = 1;
        bool print_key = false;

        lsc_log_init("lscd");
        for (size_t i = 0; i < sizeof(mayfly_keys) / sizeof(mayfly_keys[0]); i++)
                *(uint64_t *)((char *)&o.mayfly + mayfly_keys[i].off) = mayfly_keys[i].def;
        while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                switch (c) {
                case 'd': set_str(&o.db, optarg); break;
                case 'l': set_str(&o.listen, optarg); break;
                case 'm': set_str(&o.mac_prefix, optarg); break;
                case 'L': set_str(&o.log_level, optarg); break;
                case 'c': set_str(&o.config, optarg); break;
                case 'A': set_str(&o.agent_listen, optarg); break;
                case 'K': set_str(&o.curve_key, optarg); break;
                case 'Z': set_str(&o.authorized_keys, optarg); break;
                case 'P': print_key = true; break;
                case 'D': set_str(&o.dhcp_hosts, optarg); break;
                case 'S':
                        if (lsc_parse_u64("--seed", optarg, &o.seed) < 0) {
                                fprintf(stderr, "lscd: %s\n", lsc_err_msg(-EINVAL));
                                goto out_usage;
                        }
                        o.has_seed = true;
                        break;
                case 'B':       /* bench-bind: --bind-batch */
                        if (lsc_parse_u64("--bind-batch", optarg, &o.bind_batch) < 0 ||
                            o.bind_batch < 1 || o.bind_batch > 10000) {
                                fprintf(stderr, "lscd: --bind-batch %s out of range: 1-10000\n", optarg);
                                goto out_usage;
                        }
                        break;
                case 'T':
                case 'G':
                        if (lsc_parse_u64(c == 'T' ? "--lease-ttl-ms" : "--grace-ms", optarg,
                                          c == 'T' ? &o.lease_ttl_ms : &o.grace_ms) < 0) {
                                fprintf(stderr, "lscd: %s\n", lsc_err_msg(-EINVAL));
                                goto out_usage;
                        }
                        o.has_grace |= c == 'G';
                        break;
                case 'w':
                        if (lsc_parse_u64("--db-wait-ms", optarg, &o.job_budget_ms) < 0) {
                                fprintf(stderr, "lscd: %s\n", lsc_err_msg(-EINVAL));
                                goto out_usage;
                        }
                        break;
                case 'h': usage(stdout); opts_free(&o); return 0;
                case 'V': printf("lscd %s\n", LSC_VERSION); opts_free(&o); return 0;
                default: goto out_usage;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "lscd: unexpected argument \"%s\"\n", argv[optind]);
                goto out_usage;
        }
        if (o.config) {
                r = ini_parse(o.config, config_entry, &o);
                if (r != 0) {
                        if (r < 0)
                                fprintf(stderr, "lscd: cannot read config file %s\n", o.config);
                        else
                                fprintf(stderr, "lscd: %s: error on line %d\n", o.config, r);
                        goto out;
                }
        }
        if (o.log_level && lsc_log_level_parse(o.log_level, &level) < 0) {
                fprintf(stderr, "lscd: unknown log level \"%s\": use error, warn, info or debug\n", o.log_level);
                goto out_usage;
        }
        lsc_log_threshold = level;
        if (print_key) {
                char pub[LSC_Z85_KEY], sec[LSC_Z85_KEY];
                if (!o.curve_key) {
                        fprintf(stderr, "lscd: --print-public-key needs --curve-key FILE\n");
                        goto out_usage;
                }
                if (lsc_curve_load_or_create(o.curve_key, NULL, pub, sec) < 0) {
                        fprintf(stderr, "lscd: %s\n", lsc_err_msg(-EIO));
                        goto out;
                }
                printf("%s\n", pub);
                status = 0;
                goto out;
        }
        if (o.lease_ttl_ms && (o.lease_ttl_ms < 1000 || o.lease_ttl_ms > 600000)) {
                fprintf(stderr, "lscd: --lease-ttl-ms %llu out of range: 1000-600000\n",
                        (unsigned long long)o.lease_ttl_ms);
                goto out_usage;
        }
        if (o.grace_ms > 600000) {
                fprintf(stderr, "lscd: --grace-ms %llu out of range: 0-600000\n",
                        (unsigned long long)o.grace_ms);
                goto out_usage;
        }
        if (o.agent_listen && (!o.curve_key || !o.authorized_keys)) {
                fprintf(stderr, "lscd: --agent-listen needs --curve-key FILE and --authorized-keys DIR\n");
                goto out_usage;
        }
        if (!o.db) {
                fprintf(stderr, "lscd: no database: give --db CONNINFO or db= in the config file\n");
                goto out_usage;
        }
        if (lsc_mac_prefix_parse(o.mac_prefix ? o.mac_prefix : DEFAULT_MAC_PREFIX, &cfg.store.mac_prefix,
                                 &cfg.store.mac_prefix_len) < 0) {
                fprintf(stderr, "lscd: %s\n", lsc_err_msg(-EINVAL));
                goto out_usage;
        }
        cfg.cli_endpoint = o.listen ? o.listen : DEFAULT_LISTEN;
        cfg.store.conninfo = o.db;
        cfg.store.job_budget_us = (int64_t)(o.job_budget_ms ? o.job_budget_ms : 5000) * 1000;
        cfg.agent_endpoint = o.agent_listen;
        cfg.curve_secret_file = o.curve_key;
        cfg.authorized_keys_dir = o.authorized_keys;
        cfg.lease_ttl_us = (int64_t)(o.lease_ttl_ms ? o.lease_ttl_ms : 10000) * 1000;
        cfg.grace_us = (int64_t)(o.has_grace ? o.grace_ms : 3000) * 1000;   /* 0 is allowed */
        cfg.seed = o.has_seed ? o.seed : (uint64_t)lsc_wall_us();
        cfg.dhcp_hosts_file = o.dhcp_hosts;
        cfg.bind_batch = (int)o.bind_batch;     /* bench-bind; 0: the default */
        if (fence_config_finish(&o.fence) < 0) {
                fprintf(stderr, "lscd: %s: %s\n", o.config ? o.config : "config", lsc_err_msg(-EINVAL));
                goto out;
        }
        cfg.fence = &o.fence;
        cfg.store.mayfly_jitter_pct = (uint32_t)o.mayfly.jitter_pct;
        cfg.store.mayfly_renew_max = (uint32_t)o.mayfly.renew_max;
        cfg.turnover_max_pct = (uint32_t)o.mayfly.turnover_max_pct;
        cfg.mayfly_group_max = (uint32_t)o.mayfly.group_max;
        cfg.mayfly_shutdown_timeout_ms = (uint32_t)o.mayfly.shutdown_timeout_ms;
        cfg.mayfly_postpone_s = (uint32_t)o.mayfly.postpone_s;
        cfg.mayfly_no_in_place = o.mayfly.in_place == 0;
        cfg.mayfly_aware = o.mayfly.aware != 0;

        r = loop_init(&l, &cfg);
        if (r >= 0)
                r = loop_run(&l);
        if (r < 0)
                log_error("%s", lsc_err_msg(r));
        loop_fini(&l);
        status = r < 0 ? 1 : 0;
        goto out;
out_usage:
        fprintf(stderr, "Try 'lscd --help'.\n");
        status = 2;
out:
        opts_free(&o);
        return status;
}
