/* lsc, the admin CLI: what the per-noun files share (options, the call to the
 * manager, output). Verbs return 0 (or CLI_HELP_SHOWN) or -errno with an
 * lsc_err_set() detail; main.c shows the detail once and maps it to an exit status. */
#pragma once
#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "lsc.pb-c.h"

#ifndef LSC_DEFAULT_MANAGER
#define LSC_DEFAULT_MANAGER "ipc:///run/lsc/lscd.sock"
#endif

#define CLI_TIMEOUT_DEFAULT_S 10.0
#define CLI_TIMEOUT_MAX_S 3600.0
#define CLI_EVENTS_LIMIT_DEFAULT 100u
#define CLI_EVENTS_LIMIT_MAX 10000u
#define CLI_MAX_ADDRS 16                 /* --mac / --ip per server (lscd's limit too) */
#define CLI_MAX_LABELS 64                /* --label / --unlabel per command */
#define CLI_PAGE_SIZE_MAX 5000u          /* rows per list request (lscd's limit too) */

enum cli_exit {
        CLI_EXIT_OK = 0,
        CLI_EXIT_REFUSED = 1,            /* the manager refused, or failed */
        CLI_EXIT_USAGE = 2,              /* bad input: nothing was sent */
        CLI_EXIT_NO_ANSWER = 3,          /* no answer within the timeout */
};

/* A verb's positive return: --help was printed, nothing else to do. */
#define CLI_HELP_SHOWN 1

struct cli_opts {
        const char *manager;             /* endpoint: --manager, LSC_MANAGER or the default */
        double timeout_s;
        bool json;
};

/* Option values shared by every getopt_long loop; verbs number theirs from CLI_OPT_VERB. */
enum {
        CLI_OPT_MANAGER = 0x100,
        CLI_OPT_TIMEOUT,
        CLI_OPT_JSON,
        CLI_OPT_PAGE_SIZE,               /* list verbs only (cli_list_args) */
        CLI_OPT_VERB = 0x200,
};

/* Leading ':' so that a missing value is reported as ':' (we print our own errors). */
#define CLI_OPTSTRING ":h"
#define CLI_OPTIONS_GLOBAL                                               \
        { "manager", required_argument, NULL, CLI_OPT_MANAGER },         \
        { "timeout", required_argument, NULL, CLI_OPT_TIMEOUT },         \
        { "json",    no_argument,       NULL, CLI_OPT_JSON },            \
        { "help",    no_argument,       NULL, 'h' }

/* main.c */
/* Handles what a verb's getopt loop does not: global options, --help (prints the
 * topic's help, returns CLI_HELP_SHOWN), unknown options and missing values
 * (-EINVAL). Returns 0 when the option was a global one. */
int cli_opt_common(struct cli_opts *o, const char *topic, int c, char *const argv[],
                   const struct option *options);
/* Records a usage error: the detail, and that "Try 'lsc TOPIC --help'." follows. */
int cli_usage(const char *topic, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* --wait-timeout S: seconds, more than 0 and at most a day; 0, or cli_usage's status. */
int cli_wait_timeout(const char *topic, const char *arg, double *ret);
/* Checks that exactly `want` arguments remain after the options; names them in errors. */
int cli_args(const char *topic, const char *verb, int argc, char *const argv[],
             int want, const char *what);
/* For verbs that take only global options: parses them, then checks that exactly `want`
 * arguments remain (cli_args). 0, CLI_HELP_SHOWN or -errno. */
int cli_plain_args(struct cli_opts *o, const char *topic, const char *verb, int argc, char **argv,
                   int want, const char *what);
/* For list verbs: global options and --page-size N (0 in *ret_page_size when not
 * given: lscd's default), no arguments. 0, CLI_HELP_SHOWN or -errno. */
int cli_list_args(struct cli_opts *o, const char *topic, int argc, char **argv, uint32_t *ret_page_size);
/* Prefixes the current error detail with "what: " (for messages that do not name it). */
int cli_err_prefix(int r, const char *what);
/* Dispatches argv[0] among verbs (argv[0] is the noun). */
struct cli_verb {
        const char *name;
        int (*run)(struct cli_opts *o, int argc, char **argv);
};
int cli_dispatch(struct cli_opts *o, const char *topic, const struct cli_verb *verbs,
                 size_t n, int argc, char **argv);

/* request.c */
/* Sends req to the manager and waits at most o->timeout_s for its reply. 0 with
 * *ret_reply (free with lsc__reply__free_unpacked(r, NULL)) when the status is OK;
 * else -ETIMEDOUT (no answer), -EINVAL (ERR_INVALID), another -errno for a refusal
 * or a broken reply, with the manager's text as the detail. */
int cli_call(const struct cli_opts *o, Lsc__Request *req, Lsc__Reply **ret_reply);
static inline void cli_reply_freep(Lsc__Reply **r)
{
        if (*r)
                lsc__reply__free_unpacked(*r, NULL);
}
#define _cleanup_reply_ __attribute__((cleanup(cli_reply_freep)))
/* A list request (server_list, host_list), page after page: asks again with *after
 * (the list message's field, in req) = the reply's next until next is empty, and hands
 * back one reply holding every page's servers and hosts in order. As cli_call else. */
int cli_call_list(const struct cli_opts *o, Lsc__Request *req, char **after, Lsc__Reply **ret_reply);

/* output.c */
int cli_print_server(const struct cli_opts *o, const Lsc__Server *s);
/* As cli_print_server, with the measured load that lscd adds to a show's answer (or
 * says it has none). */
int cli_print_server_shown(const struct cli_opts *o, const Lsc__Server *s);
int cli_print_servers(const struct cli_opts *o, Lsc__Server *const *v, size_t n);
int cli_print_pool(const struct cli_opts *o, const Lsc__Pool *p);
int cli_print_pools(const struct cli_opts *o, Lsc__Pool *const *v, size_t n);
int cli_print_events(const struct cli_opts *o, Lsc__Event *const *v, size_t n);
int cli_print_host(const struct cli_opts *o, const Lsc__Host *h);
/* A plan: the hosts what would fit on, and for each other one why not. */
int cli_print_plan(const struct cli_opts *o, const char *what, Lsc__PlanHost *const *v, size_t n);
int cli_print_hosts(const struct cli_opts *o, Lsc__Host *const *v, size_t n);
int cli_print_group(const struct cli_opts *o, const Lsc__Group *g);
int cli_print_groups(const struct cli_opts *o, Lsc__Group *const *v, size_t n);
/* "2024-05-01T12:00:00.123456Z"; buf >= 32 bytes. */
void cli_format_time_us(int64_t us, char *buf, size_t len);

/* server.c, pool.c, events.c: one per noun. argv[0] is the noun. */
int cli_server(struct cli_opts *o, int argc, char **argv);
int cli_pool(struct cli_opts *o, int argc, char **argv);
int cli_events(struct cli_opts *o, int argc, char **argv);
int cli_host(struct cli_opts *o, int argc, char **argv);
/* lifecycle.c: server start|stop [--wait] */
int cli_server_start(struct cli_opts *o, int argc, char **argv);
int cli_server_stop(struct cli_opts *o, int argc, char **argv);
int cli_server_migrate(struct cli_opts *o, int argc, char **argv);
int cli_server_renew(struct cli_opts *o, int argc, char **argv);
/* plan.c: lsc plan server ... */
int cli_plan(struct cli_opts *o, int argc, char **argv);
void cli_plan_help(FILE *f);
void cli_host_help(FILE *f);
int cli_group(struct cli_opts *o, int argc, char **argv);
void cli_group_help(FILE *f);
void cli_server_help(FILE *f);
void cli_pool_help(FILE *f);
void cli_events_help(FILE *f);
/* A server reference: its name (a DNS label) or its UUID. 0 or -EINVAL. */
int cli_server_ref_check(const char *s);
/* The help paragraph on global options, environment and exit statuses. */
void cli_help_common(FILE *f);
