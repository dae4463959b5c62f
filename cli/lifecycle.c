/* lsc server start|stop|migrate [--wait]: ask lscd to run, stop or move an identity, and
 * with --wait follow it (pending -> binding -> running, or stopping -> defined) until it
 * gets there. start --dry-run only says where it could go. renew pushes a mayfly's
 * death out. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "cli.h"
#include "err.h"
#include "util.h"
#include "validate.h"

#define TOPIC "server"
#define WAIT_DEFAULT_S 120.0
#define WAIT_POLL_NS 200000000L
#define START_CHUNK 1000               /* servers per start request: lscd's limit */

enum { OPT_WAIT = CLI_OPT_VERB + 0x40, OPT_WAIT_TIMEOUT, OPT_DRY_RUN, OPT_TO, OPT_BY };

enum verb { VERB_START, VERB_STOP, VERB_MIGRATE };

static int get(const struct cli_opts *o, const char *ref, Lsc__Reply **ret)
{
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__Ref r = LSC__REF__INIT;

        r.ref = (char *)ref;
        req.op_case = LSC__REQUEST__OP_SERVER_GET;
        req.server_get = &r;
        return cli_call(o, &req, ret);
}

static double now_s(void)
{
        return (double)lsc_now_us() / 1e6;
}

/* Polls until the server reaches goal (or failed); prints each new state once. */
static int wait_for(const struct cli_opts *o, const char *ref, const char *goal, double limit_s)
{
        double deadline = now_s() + limit_s;
        char last[64] = "";

        for (;;) {
                _cleanup_reply_ Lsc__Reply *reply = NULL;
                const Lsc__Server *s;
                char line[64];
                int r;

                if ((r = get(o, ref, &reply)) < 0)
                        return r;
                if (reply->n_servers < 1)
                        return lsc_err_set(-EBADMSG, "the manager's reply carries no server");
                s = reply->servers[0];
                snprintf(line, sizeof(line), "%s@%s", s->state ? s->state : "?", s->host ? s->host : "");
                if (!o->json && strcmp(line, last) != 0) {
                        printf("%s: %s%s%s%s%s\n", s->spec && s->spec->name ? s->spec->name : ref, s->state,
                               s->host && s->host[0] ? " on " : "", s->host ? s->host : "",
                               s->reason && s->reason[0] ? ": " : "", s->reason ? s->reason : "");
                        fflush(stdout);
                        snprintf(last, sizeof(last), "%s", line);
                }
                if (!strcmp(s->state, goal))
                        return o->json ? cli_print_server(o, s) : 0;
                if (!strcmp(s->state, "failed"))
                        return lsc_err_set(-EIO, "server %s failed: %s", ref, s->reason ? s->reason : "");
                if (now_s() >= deadline)
                        return lsc_err_set(-ETIME, "server %s is still %s after %.0f s%s%s", ref, s->state,
                                           limit_s, s->reason && s->reason[0] ? ": " : "",
                                           s->reason ? s->reason : "");
                nanosleep(&(struct timespec){ .tv_nsec = WAIT_POLL_NS }, NULL);
        }
}

/* start NAME NAME...: one request (one transaction in lscd) per START_CHUNK servers;
 * nothing is sent unless every name is well formed. */
static int start_many(const struct cli_opts *o, int n, char **refs, bool wait, double limit)
{
        double deadline = now_s() + limit;
        int r;

        for (int i = 0; i < n; i++)
                if ((r = cli_server_ref_check(refs[i])) < 0)
                        return r;
        for (int i = 0; i < n; i += START_CHUNK) {
                _cleanup_reply_ Lsc__Reply *reply = NULL;
                Lsc__Request req = LSC__REQUEST__INIT;
                Lsc__ServerStart st = LSC__SERVER_START__INIT;

                st.refs = refs + i;
                st.n_refs = (size_t)(n - i < START_CHUNK ? n - i : START_CHUNK);
                req.op_case = LSC__REQUEST__OP_SERVER_START;
                req.server_start = &st;
                if ((r = cli_call(o, &req, &reply)) < 0)
                        return r;
                if (!wait && (r = cli_print_servers(o, reply->servers, reply->n_servers)) < 0)
                        return r;
        }
        for (int i = 0; wait && i < n; i++) {
                double left = deadline - now_s();
                if ((r = wait_for(o, refs[i], "running", left > 0.2 ? left : 0.2)) < 0)
                        return r;
        }
        return 0;
}

static int lifecycle(struct cli_opts *o, int argc, char **argv, enum verb which)
{
        static const struct option options[] = {
                { "wait", no_argument, NULL, OPT_WAIT },
                { "wait-timeout", required_argument, NULL, OPT_WAIT_TIMEOUT },
                { "dry-run", no_argument, NULL, OPT_DRY_RUN },
                { "to", required_argument, NULL, OPT_TO },
                CLI_OPTIONS_GLOBAL,
                {}
        };
        static const char *const verbs[] = { "start", "stop", "migrate" };
        const char *verb = verbs[which], *to = NULL;
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__ServerStart st = LSC__SERVER_START__INIT;
        Lsc__ServerMigrate mig = LSC__SERVER_MIGRATE__INIT;
        Lsc__PlanServer plan = LSC__PLAN_SERVER__INIT;
        Lsc__Ref ref = LSC__REF__INIT;
        double limit = WAIT_DEFAULT_S;
        bool wait = false, dry = false;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, CLI_OPTSTRING, options, NULL)) != -1) {
                switch (c) {
                case OPT_WAIT:
                        wait = true;
                        break;
                case OPT_WAIT_TIMEOUT:
                        if ((r = cli_wait_timeout(TOPIC, optarg, &limit)) != 0)
                                return r;
                        wait = true;
                        break;
                case OPT_DRY_RUN:
                        if (which != VERB_START)
                                return cli_usage(TOPIC, "--dry-run goes with server start");
                        dry = true;
                        break;
                case OPT_TO:
                        if (which != VERB_MIGRATE)
                                return cli_usage(TOPIC, "--to goes with server migrate");
                        if ((r = lsc_validate_name("host name", optarg)) < 0)
                                return r;
                        to = optarg;
                        break;
                default:
                        if ((r = cli_opt_common(o, TOPIC, c, argv, options)) != 0)
                                return r;
                }
        }
        if (which == VERB_START && !dry && argc - optind > 1)
                return start_many(o, argc - optind, argv + optind, wait, limit);
        if ((r = cli_args(TOPIC, verb, argc, argv, 1, "a NAME or UUID")) < 0 ||
            (r = cli_server_ref_check(argv[optind])) < 0)
                return r;
        if (dry && wait)
                return cli_usage(TOPIC, "--dry-run binds nothing: there is nothing to wait for");
        if (dry) {
                plan.ref = argv[optind];
                req.op_case = LSC__REQUEST__OP_PLAN_SERVER;
                req.plan_server = &plan;
                if ((r = cli_call(o, &req, &reply)) < 0)
                        return r;
                return cli_print_plan(o, argv[optind], reply->plan, reply->n_plan);
        }
        if (which == VERB_START) {
                st.ref = argv[optind];
                req.op_case = LSC__REQUEST__OP_SERVER_START;
                req.server_start = &st;
        } else if (which == VERB_STOP) {
                ref.ref = argv[optind];
                req.op_case = LSC__REQUEST__OP_SERVER_STOP;
                req.server_stop = &ref;
        } else {
                mig.ref = argv[optind];
                mig.to = (char *)to;
                req.op_case = LSC__REQUEST__OP_SERVER_MIGRATE;
                req.server_migrate = &mig;
        }
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;
        if (reply->n_servers < 1)
                return lsc_err_set(-EBADMSG, "the manager's reply carries no server");
        if (wait)
                return wait_for(o, argv[optind], which == VERB_STOP ? "defined" : "running", limit);
        return cli_print_server(o, reply->servers[0]);
}

/* renew NAME [--by DURATION]: a running mayfly dies DURATION (default: its lifetime)
 * from now instead; lscd refuses when it is not a running mayfly or was renewed
 * mayfly_renew_max times in this binding. */
int cli_server_renew(struct cli_opts *o, int argc, char **argv)
{
        static const struct option options[] = {
                { "by", required_argument, NULL, OPT_BY },
                CLI_OPTIONS_GLOBAL,
                {}
        };
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__ServerRenew rn = LSC__SERVER_RENEW__INIT;
        uint64_t by = 0;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, CLI_OPTSTRING, options, NULL)) != -1) {
                switch (c) {
                case OPT_BY:
                        if ((r = lsc_duration_parse(optarg, &by)) < 0 || (r = lsc_validate_lifetime_s(by)) < 0)
                                return r;
                        if (by == 0)
                                return cli_usage(TOPIC, "--by 0: give a duration of 1 s or more");
                        break;
                default:
                        if ((r = cli_opt_common(o, TOPIC, c, argv, options)) != 0)
                                return r;
                }
        }
        if ((r = cli_args(TOPIC, "renew", argc, argv, 1, "a NAME or UUID")) < 0 ||
            (r = cli_server_ref_check(argv[optind])) < 0)
                return r;
        rn.ref = argv[optind];
        rn.has_by_s = by > 0;
        rn.by_s = by;
        req.op_case = LSC__REQUEST__OP_SERVER_RENEW;
        req.server_renew = &rn;
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;
        if (reply->n_servers < 1)
                return lsc_err_set(-EBADMSG, "the manager's reply carries no server");
        return cli_print_server(o, reply->servers[0]);
}

int cli_server_start(struct cli_opts *o, int argc, char **argv)
{
        return lifecycle(o, argc, argv, VERB_START);
}

int cli_server_stop(struct cli_opts *o, int argc, char **argv)
{
        return lifecycle(o, argc, argv, VERB_STOP);
}

int cli_server_migrate(struct cli_opts *o, int argc, char **argv)
{
        return lifecycle(o, argc, argv, VERB_MIGRATE);
}
