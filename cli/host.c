/* lsc host list|show: the physical hosts agents registered, with liveness from heartbeats. */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>
#include "cli.h"
#include "err.h"
#include "util.h"
#include "validate.h"

#define TOPIC "host"
#define DRAIN_WAIT_S 300.0
#define DRAIN_POLL_NS 500000000L

enum { OPT_WAIT = CLI_OPT_VERB + 0x40, OPT_WAIT_TIMEOUT };

void cli_host_help(FILE *f)
{
        fputs(
"Usage: lsc [OPTIONS] host VERB [ARGS] [OPTIONS]\n"
"A host is a physical machine whose lsc-agent registered with lscd. Hosts appear on\n"
"their first registration and persist; liveness (up, suspect, lost) and health come\n"
"from the agents' heartbeats and live in lscd's memory.\n"
"\n"
"Verbs:\n"
"  list [--page-size N]\n"
"        List hosts: NAME LIVENESS ADMIN HEALTHY DRIVER VCPUS MEMORY INSTANCES\n"
"        (used/physical; allocatable is physical x the host's allocation ratio).\n"
"        lsc asks lscd page by page (N rows each: 1-5000, default lscd's) and prints\n"
"        one list.\n"
"  show NAME|UUID\n"
"        Show one host: capacity, what bindings use of it, labels, its instances,\n"
"        session epoch and when lscd last heard from it.\n"
"  drain NAME|UUID [--wait [--wait-timeout S]]\n"
"        No new placements there, and every server bound there moves off: destroyed\n"
"        there (acknowledged by its agent), bound again elsewhere (generation + 1),\n"
"        started. --wait shows the instances left until there are none (default\n"
"        timeout 300 s). Draining survives the host's loss and return.\n"
"  undrain NAME|UUID\n"
"        Take placements again.\n"
"  remove NAME|UUID\n"
"        Forget a host nothing is bound to whose agent is stopped (its events stay).\n"
"  confirm-off NAME\n"
"        A lost metal host whose BMC does not answer: you checked by hand that the\n"
"        machine is off (power cord, console). Its servers waiting in fencing are\n"
"        bound again elsewhere. Recorded as the event host.confirm-off with your name.\n"
"\n", f);
        cli_help_common(f);
}

static int plain_args(struct cli_opts *o, const char *verb, int argc, char **argv, int want)
{
        int r = cli_plain_args(o, TOPIC, verb, argc, argv, want, want ? "a NAME or UUID" : "nothing");
        uuid_t u;

        if (r != 0 || !want || uuid_parse(argv[optind], u) == 0)
                return r;
        return lsc_validate_name("host name", argv[optind]);
}

static int host_list(struct cli_opts *o, int argc, char **argv)
{
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__HostList list = LSC__HOST_LIST__INIT;
        int r;

        if ((r = cli_list_args(o, TOPIC, argc, argv, &list.limit)) != 0)
                return r;
        list.has_limit = list.limit > 0;
        req.op_case = LSC__REQUEST__OP_HOST_LIST;
        req.host_list = &list;
        if ((r = cli_call_list(o, &req, &list.after, &reply)) < 0)
                return r;
        return cli_print_hosts(o, reply->hosts, reply->n_hosts);
}

static int host_call(const struct cli_opts *o, Lsc__Request__OpCase op, const char *name, Lsc__Reply **ret)
{
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__Ref ref = LSC__REF__INIT;
        int r;

        ref.ref = (char *)name;
        req.op_case = op;
        switch (op) {
        case LSC__REQUEST__OP_HOST_DRAIN:
                req.host_drain = &ref;
                break;
        case LSC__REQUEST__OP_HOST_UNDRAIN:
                req.host_undrain = &ref;
                break;
        case LSC__REQUEST__OP_HOST_REMOVE:
                req.host_remove = &ref;
                break;
        case LSC__REQUEST__OP_HOST_CONFIRM_OFF:
                req.host_confirm_off = &ref;
                break;
        default:
                req.host_get = &ref;
        }
        if ((r = cli_call(o, &req, ret)) < 0)
                return r;
        if ((*ret)->n_hosts < 1 || !(*ret)->hosts[0])
                return lsc_err_set(-EBADMSG, "the manager's reply carries no host");
        return 0;
}

static int host_show(struct cli_opts *o, int argc, char **argv)
{
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        int r;

        if ((r = plain_args(o, "show", argc, argv, 1)) != 0 ||
            (r = host_call(o, LSC__REQUEST__OP_HOST_GET, argv[optind], &reply)) < 0)
                return r;
        return cli_print_host(o, reply->hosts[0]);
}

/* Polls the host until nothing is bound to it; prints each change of what is left. */
static int drain_wait(const struct cli_opts *o, const char *name, double limit_s)
{
        int64_t deadline = lsc_now_us() + (int64_t)(limit_s * 1e6);
        size_t last = SIZE_MAX;

        for (;;) {
                _cleanup_reply_ Lsc__Reply *reply = NULL;
                const Lsc__Host *h;
                int r;

                if ((r = host_call(o, LSC__REQUEST__OP_HOST_GET, name, &reply)) < 0)
                        return r;
                h = reply->hosts[0];
                if (h->n_instances == 0) {
                        if (!o->json)
                                printf("%s: drained, nothing bound to it\n", h->name);
                        return o->json ? cli_print_host(o, h) : 0;
                }
                if (!o->json && h->n_instances != last) {
                        printf("%s: %zu server%s left:", h->name, h->n_instances, h->n_instances == 1 ? "" : "s");
                        for (size_t i = 0; i < h->n_instances && i < 10; i++)
                                printf(" %s", h->instances[i]);
                        printf("%s\n", h->n_instances > 10 ? " ..." : "");
                        fflush(stdout);
                        last = h->n_instances;
                }
                if (lsc_now_us() >= deadline)
                        return lsc_err_set(-ETIME, "host %s still has %zu server%s bound after %.0f s", h->name,
                                           h->n_instances, h->n_instances == 1 ? "" : "s", limit_s);
                nanosleep(&(struct timespec){ .tv_nsec = DRAIN_POLL_NS }, NULL);
        }
}

static int host_drain(struct cli_opts *o, int argc, char **argv)
{
        static const struct option options[] = {
                { "wait", no_argument, NULL, OPT_WAIT },
                { "wait-timeout", required_argument, NULL, OPT_WAIT_TIMEOUT },
                CLI_OPTIONS_GLOBAL,
                {}
        };
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        double limit = DRAIN_WAIT_S;
        bool wait = false;
        uuid_t u;
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
                default:
                        if ((r = cli_opt_common(o, TOPIC, c, argv, options)) != 0)
                                return r;
                }
        }
        if ((r = cli_args(TOPIC, "drain", argc, argv, 1, "a NAME or UUID")) != 0)
                return r;
        if (uuid_parse(argv[optind], u) != 0 && (r = lsc_validate_name("host name", argv[optind])) < 0)
                return r;
        if ((r = host_call(o, LSC__REQUEST__OP_HOST_DRAIN, argv[optind], &reply)) < 0)
                return r;
        if (!wait) {
                if (!o->json)
                        printf("%s: drained; %zu server%s moving off\n", reply->hosts[0]->name, reply->n_servers,
                               reply->n_servers == 1 ? "" : "s");
                return o->json ? cli_print_host(o, reply->hosts[0]) : 0;
        }
        return drain_wait(o, argv[optind], limit);
}

static int host_admin(struct cli_opts *o, int argc, char **argv, const char *verb, Lsc__Request__OpCase op)
{
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        int r;

        if ((r = plain_args(o, verb, argc, argv, 1)) != 0)
                return r;
        if ((r = host_call(o, op, argv[optind], &reply)) < 0)
                return r;
        if (!o->json) {
                printf("%s: %s\n", reply->hosts[0]->name,
                       op == LSC__REQUEST__OP_HOST_REMOVE        ? "removed"
                       : op == LSC__REQUEST__OP_HOST_CONFIRM_OFF ? "confirmed off; its servers in fencing are released"
                                                                 : reply->hosts[0]->admin);
                return 0;
        }
        return cli_print_host(o, reply->hosts[0]);
}

static int host_undrain(struct cli_opts *o, int argc, char **argv)
{
        return host_admin(o, argc, argv, "undrain", LSC__REQUEST__OP_HOST_UNDRAIN);
}

static int host_remove(struct cli_opts *o, int argc, char **argv)
{
        return host_admin(o, argc, argv, "remove", LSC__REQUEST__OP_HOST_REMOVE);
}

static int host_confirm_off(struct cli_opts *o, int argc, char **argv)
{
        return host_admin(o, argc, argv, "confirm-off", LSC__REQUEST__OP_HOST_CONFIRM_OFF);
}

int cli_host(struct cli_opts *o, int argc, char **argv)
{
        static const struct cli_verb verbs[] = {
                { "list", host_list },
                { "show", host_show },
                { "drain", host_drain },
                { "undrain", host_undrain },
                { "remove", host_remove },
                { "confirm-off", host_confirm_off },
        };

        return cli_dispatch(o, TOPIC, verbs, ARRAY_SIZE(verbs), argc, argv);
}
