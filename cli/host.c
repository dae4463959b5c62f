/* lsc host list|show: the physical hosts agents registered, with liveness from heartbeats. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <uuid/uuid.h>
#include "cli.h"
#include "err.h"
#include "util.h"
#include "validate.h"

#define TOPIC "host"

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

static int host_show(struct cli_opts *o, int argc, char **argv)
{
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__Ref ref = LSC__REF__INIT;
        int r;

        if ((r = plain_args(o, "show", argc, argv, 1)) != 0)
                return r;
        ref.ref = argv[optind];
        req.op_case = LSC__REQUEST__OP_HOST_GET;
        req.host_get = &ref;
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;
        if (reply->n_hosts < 1 || !reply->hosts[0])
                return lsc_err_set(-EBADMSG, "the manager's reply carries no host");
        return cli_print_host(o, reply->hosts[0]);
}

int cli_host(struct cli_opts *o, int argc, char **argv)
{
        static const struct cli_verb verbs[] = {
                { "list", host_list },
                { "show", host_show },
        };

        return cli_dispatch(o, TOPIC, verbs, ARRAY_SIZE(verbs), argc, argv);
}
