/* lsc: global options, help, dispatch to a noun, `ping`; shows an error once and
 * turns it into the exit status (0 done, 1 refused, 2 bad usage, 3 no answer). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "cli.h"
#include "err.h"
#include "log.h"
#include "util.h"
#include "validate.h"

/* Set by cli_usage(): the topic whose --help the error message points to. */
static const char *usage_topic;

void cli_help_common(FILE *f)
{
        fputs(
"Global options (also accepted after the command and its verb):\n"
"  --manager ENDPOINT  the manager to ask: ipc://PATH or tcp://HOST:PORT\n"
"                      (default: $LSC_MANAGER, else " LSC_DEFAULT_MANAGER ")\n"
"  --timeout SECONDS   how long to wait for the answer: more than 0, at most 3600,\n"
"                      fractions allowed (default 10)\n"
"  --json              print JSON (indented by 2) instead of tables and key: value lines\n"
"  -h, --help          print help and exit\n"
"\n"
"Environment:\n"
"  LSC_MANAGER         the manager's endpoint when --manager is not given\n"
"\n"
"Exit status:\n"
"  0  done\n"
"  1  the manager refused (not found, already exists, conflict, database unavailable,\n"
"     internal error, wrong protocol version), answered with a broken reply, or lsc\n"
"     itself failed (e.g. cannot write its output)\n"
"  2  bad usage or an invalid value; nothing was changed\n"
"  3  no answer from the manager within the timeout (is lscd running?)\n", f);
}

static void help_main(FILE *f)
{
        fputs(
"Usage: lsc [OPTIONS] COMMAND [ARGS...]\n"
"The admin CLI of lsc, the logical server cloud: it defines server identities (UUID,\n"
"name, size, image, MACs, IPs, hostname, labels) that lscd, the manager, binds to hosts.\n"
"\n"
"Commands:\n"
"  server create NAME --vcpus N --memory MIB [OPTIONS]   define a server identity\n"
"  server list                                           list every server\n"
"  server show NAME|UUID                                 show one server\n"
"  server edit NAME|UUID [OPTIONS]                       change a server's attributes\n"
"  server delete NAME|UUID                               delete a server, free its addresses\n"
"                                                        (a running one is stopped first)\n"
"  server start NAME|UUID [--wait] [--dry-run]           bind it to a host and run it there\n"
"  server stop NAME|UUID [--wait]                        stop it; it keeps its identity\n"
"  server migrate NAME|UUID [--to HOST] [--wait]         cold-migrate it to another host\n"
"  server renew NAME|UUID [--by DURATION]                push a running mayfly's death out\n"
"  plan server NAME|UUID | --vcpus N --memory MIB        where would it go? binds nothing\n"
"  pool create NAME --cidr CIDR [--gateway IP]           define an IP address pool\n"
"  pool list                                             list pools\n"
"  pool show NAME                                        show one pool\n"
"  pool delete NAME                                      delete an unused pool\n"
"  group create NAME [--policy P] [--max-per-host N]     define a placement group\n"
"  group list | show NAME | delete NAME                  list, show or delete groups\n"
"  host list                                             list hosts (registered agents)\n"
"  host show NAME|UUID                                   show one host\n"
"  events [--server NAME|UUID] [--limit N]               show the most recent changes\n"
"  ping                                                  check that lscd answers\n"
"  help [server|pool|host|group|plan|events]             print help\n"
"\n"
"'lsc server --help', 'lsc pool --help', 'lsc host --help', 'lsc group --help' and\n"
"'lsc plan --help', 'lsc events --help' describe every option with its limits and default.\n"
"\n", f);
        cli_help_common(f);
}

static void help(const char *topic, FILE *f)
{
        if (topic && strcmp(topic, "server") == 0)
                cli_server_help(f);
        else if (topic && strcmp(topic, "pool") == 0)
                cli_pool_help(f);
        else if (topic && strcmp(topic, "events") == 0)
                cli_events_help(f);
        else if (topic && strcmp(topic, "host") == 0)
                cli_host_help(f);
        else if (topic && strcmp(topic, "plan") == 0)
                cli_plan_help(f);
        else if (topic && strcmp(topic, "group") == 0)
                cli_group_help(f);
        else
                help_main(f);
}

static bool topic_has_help(const char *topic)
{
        return topic && (strcmp(topic, "server") == 0 || strcmp(topic, "pool") == 0 ||
                         strcmp(topic, "events") == 0 || strcmp(topic, "host") == 0 ||
                         strcmp(topic, "group") == 0 || strcmp(topic, "plan") == 0);
}

int cli_usage(const char *topic, const char *fmt, ...)
{
        char buf[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        usage_topic = topic ? topic : "";
        return lsc_err_set(-EINVAL, "%s", buf);
}

int cli_wait_timeout(const char *topic, const char *arg, double *ret)
{
        char *end;
        double v = strtod(arg, &end);

        if (*end || end == arg || !(v > 0 && v <= 86400))
                return cli_usage(topic, "--wait-timeout %.32s: use seconds, more than 0 and at most 86400", arg);
        *ret = v;
        return 0;
}

int cli_err_prefix(int r, const char *what)
{
        char buf[512];

        snprintf(buf, sizeof(buf), "%s", lsc_err_msg(r));
        return lsc_err_set(r, "%s: %s", what, buf);
}

int cli_args(const char *topic, const char *verb, int argc, char *const argv[],
             int want, const char *what)
{
        int have = argc - optind;

        if (have < want)
                return cli_usage(topic, "%s%s%s needs %s", topic, verb ? " " : "",
                                 verb ? verb : "", what);
        if (have > want)
                return cli_usage(topic, "%s%s%s: unexpected argument '%.64s'", topic,
                                 verb ? " " : "", verb ? verb : "", argv[optind + want]);
        return 0;
}

int cli_plain_args(struct cli_opts *o, const char *topic, const char *verb, int argc, char **argv,
                   int want, const char *what)
{
        static const struct option options[] = { CLI_OPTIONS_GLOBAL, {} };
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, CLI_OPTSTRING, options, NULL)) != -1)
                if ((r = cli_opt_common(o, topic, c, argv, options)) != 0)
                        return r;
        return cli_args(topic, verb, argc, argv, want, what);
}

int cli_list_args(struct cli_opts *o, const char *topic, int argc, char **argv, uint32_t *ret_page_size)
{
        static const struct option options[] = {
                { "page-size", required_argument, NULL, CLI_OPT_PAGE_SIZE },
                CLI_OPTIONS_GLOBAL,
                {}
        };
        uint64_t size = 0;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, CLI_OPTSTRING, options, NULL)) != -1) {
                if (c == CLI_OPT_PAGE_SIZE) {
                        if ((r = lsc_parse_u64("page size", optarg, &size)) < 0)
                                return r;
                        if (size < 1 || size > CLI_PAGE_SIZE_MAX)
                                return lsc_err_set(-EINVAL, "--page-size %.32s out of range: 1-%u",
                                                   optarg, CLI_PAGE_SIZE_MAX);
                } else if ((r = cli_opt_common(o, topic, c, argv, options)) != 0) {
                        return r;
                }
        }
        if ((r = cli_args(topic, "list", argc, argv, 0, "nothing")) < 0)
                return r;
        *ret_page_size = (uint32_t)size;
        return 0;
}

/* "--name" for a long option's value, "-c" for a short one. */
static void option_name(int val, const struct option *options, char *buf, size_t len)
{
        for (const struct option *p = options; p->name; p++) {
                if (p->val == val) {
                        snprintf(buf, len, "--%s", p->name);
                        return;
                }
        }
        snprintf(buf, len, "-%c", val);
}

/* What getopt could not match: unknown, ambiguous, or a value given to a flag. */
static int bad_option(const char *topic, char *const argv[], const struct option *options)
{
        const char *tok = optind > 0 ? argv[optind - 1] : "";
        char matches[256] = "";
        size_t off = 0;
        int n = 0;
        int len;

        if (optopt > 0 && optopt < 0x100 && optopt != 'h')
                return cli_usage(topic, "unknown option '-%c'", optopt);
        if (strncmp(tok, "--", 2) != 0)
                return cli_usage(topic, "unknown option '%.64s'", tok);
        len = (int)strcspn(tok, "=");
        if (optopt)
                return cli_usage(topic, "option '%.*s' takes no value", len > 64 ? 64 : len, tok);
        for (const struct option *p = options; p->name; p++) {
                if (strncmp(p->name, tok + 2, (size_t)len - 2) == 0 && off < sizeof(matches)) {
                        int w = snprintf(matches + off, sizeof(matches) - off, "%s--%s",
                                         n ? ", " : "", p->name);
                        if (w > 0)
                                off += (size_t)w;
                        n++;
                }
        }
        if (n > 1)
                return cli_usage(topic, "option '%.*s' is ambiguous: %s", len, tok, matches);
        return cli_usage(topic, "unknown option '%.*s'", len > 64 ? 64 : len, tok);
}

static int set_timeout(struct cli_opts *o, const char *s)
{
        char *end;
        double t;

        /* strtod alone would take "inf", "nan", hex and leading space */
        if (!*s || strspn(s, "0123456789.") != strlen(s))
                return cli_usage(NULL, "invalid --timeout '%.64s': use a number of seconds "
                                 "(0.5, 10, 60)", s);
        errno = 0;
        t = strtod(s, &end);
        if (*end || errno || !(t > 0 && t <= CLI_TIMEOUT_MAX_S))
                return cli_usage(NULL, "invalid --timeout '%.64s': use more than 0 and at most "
                                 "%g seconds", s, CLI_TIMEOUT_MAX_S);
        o->timeout_s = t;
        return 0;
}

int cli_opt_common(struct cli_opts *o, const char *topic, int c, char *const argv[],
                   const struct option *options)
{
        char name[80];

        switch (c) {
        case CLI_OPT_MANAGER:
                o->manager = optarg;
                return 0;
        case CLI_OPT_TIMEOUT:
                return set_timeout(o, optarg);
        case CLI_OPT_JSON:
                o->json = true;
                return 0;
        case 'h':
                help(topic, stdout);
                return CLI_HELP_SHOWN;
        case ':':
                option_name(optopt, options, name, sizeof(name));
                return cli_usage(topic, "option '%s' needs a value", name);
        case '?':
                return bad_option(topic, argv, options);
        default:
                return cli_usage(topic, "unexpected option (%d)", c);
        }
}

int cli_dispatch(struct cli_opts *o, const char *topic, const struct cli_verb *verbs,
                 size_t n, int argc, char **argv)
{
        static const struct option options[] = { CLI_OPTIONS_GLOBAL, {} };
        char names[256] = "";
        size_t off = 0;
        const char *verb;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "+" CLI_OPTSTRING, options, NULL)) != -1)
                if ((r = cli_opt_common(o, topic, c, argv, options)) != 0)
                        return r;

        for (size_t i = 0; i < n && off < sizeof(names); i++) {
                int w = snprintf(names + off, sizeof(names) - off, "%s%s",
                                 i ? ", " : "", verbs[i].name);
                if (w > 0)
                        off += (size_t)w;
        }
        if (optind >= argc)
                return cli_usage(topic, "%s needs a verb: %s", topic, names);
        verb = argv[optind];
        if (strcmp(verb, "help") == 0) {
                help(topic, stdout);
                return CLI_HELP_SHOWN;
        }
        for (size_t i = 0; i < n; i++)
                if (strcmp(verbs[i].name, verb) == 0)
                        return verbs[i].run(o, argc - optind, argv + optind);
        return cli_usage(topic, "unknown %s verb '%.64s': use one of %s", topic, verb, names);
}

static int cmd_ping(struct cli_opts *o, int argc, char **argv)
{
        static const struct option options[] = { CLI_OPTIONS_GLOBAL, {} };
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__Ping ping = LSC__PING__INIT;
        int64_t t0;
        double ms;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, CLI_OPTSTRING, options, NULL)) != -1)
                if ((r = cli_opt_common(o, "ping", c, argv, options)) != 0)
                        return r;
        if ((r = cli_args("ping", NULL, argc, argv, 0, "nothing")) < 0)
                return r;

        req.op_case = LSC__REQUEST__OP_PING;
        req.ping = &ping;
        t0 = lsc_now_us();
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;
        ms = (double)(lsc_now_us() - t0) / 1000.0;

        if (o->json) {
                json_t *j = json_pack("{s:s, s:f}", "manager", o->manager, "ms", ms);
                if (!j)
                        return lsc_err_set(-ENOMEM, "out of memory");
                json_dumpf(j, stdout, JSON_INDENT(2));
                fputc('\n', stdout);
                json_decref(j);
        } else {
                printf("lscd answered in %.1f ms\n", ms);
        }
        return 0;
}

static int cmd_help(struct cli_opts *o, int argc, char **argv)
{
        if (argc > 2)
                return cli_usage(NULL, "help: unexpected argument '%.64s'", argv[2]);
        if (argc == 2 && !topic_has_help(argv[1]) && strcmp(argv[1], "ping") != 0)
                return cli_usage(NULL, "help: unknown command '%.64s'", argv[1]);
        help(argc == 2 ? argv[1] : NULL, stdout);
        return CLI_HELP_SHOWN;
}

static const struct cli_verb nouns[] = {
        { "server", cli_server },
        { "pool",   cli_pool },
        { "host",   cli_host },
        { "plan",   cli_plan },
        { "group",  cli_group },
        { "events", cli_events },
        { "ping",   cmd_ping },
        { "help",   cmd_help },
};

static int run(struct cli_opts *o, int argc, char **argv)
{
        static const struct option options[] = { CLI_OPTIONS_GLOBAL, {} };
        int c, r;

        /* '+': stop at the command; what follows is the command's to parse */
        optind = 0;
        while ((c = getopt_long(argc, argv, "+" CLI_OPTSTRING, options, NULL)) != -1)
                if ((r = cli_opt_common(o, NULL, c, argv, options)) != 0)
                        return r;
        if (optind >= argc)
                return cli_usage(NULL, "missing command: server, pool, host, group, plan, events, ping or help");
        for (size_t i = 0; i < ARRAY_SIZE(nouns); i++)
                if (strcmp(nouns[i].name, argv[optind]) == 0)
                        return nouns[i].run(o, argc - optind, argv + optind);
        return cli_usage(NULL, "unknown command '%.64s': use server, pool, host, group, plan, events, ping or help",
                         argv[optind]);
}

static int exit_status(int r)
{
        switch (r) {
        case -EINVAL:
                return CLI_EXIT_USAGE;
        case -ETIMEDOUT:
                return CLI_EXIT_NO_ANSWER;
        default:
                return CLI_EXIT_REFUSED;
        }
}

int main(int argc, char **argv)
{
        const char *env = getenv("LSC_MANAGER");
        struct cli_opts o = {
                .manager = env && *env ? env : LSC_DEFAULT_MANAGER,
                .timeout_s = CLI_TIMEOUT_DEFAULT_S,
        };
        int r;

        lsc_log_init("lsc");
        lsc_err_clear();
        r = run(&o, argc, argv);
        if (r >= 0) {
                if (fflush(stdout) != 0 || ferror(stdout)) {
                        fprintf(stderr, "lsc: cannot write the output: %s\n", strerror(errno));
                        return CLI_EXIT_REFUSED;
                }
                return CLI_EXIT_OK;
        }
        fprintf(stderr, "lsc: %s\n", lsc_err_msg(r));
        if (usage_topic)
                fprintf(stderr, "Try 'lsc%s%s --help'.\n", topic_has_help(usage_topic) ? " " : "",
                        topic_has_help(usage_topic) ? usage_topic : "");
        return exit_status(r);
}
