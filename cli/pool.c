/* lsc pool create|list|show|delete: the address pools that servers' IPs come from. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "addr.h"
#include "cli.h"
#include "err.h"
#include "util.h"
#include "validate.h"

#define TOPIC "pool"

void cli_pool_help(FILE *f)
{
        fputs(
"Usage: lsc [OPTIONS] pool VERB [ARGS] [OPTIONS]\n"
"An address pool is a subnet that lscd allocates servers' IPs from; every address\n"
"is held by at most one server.\n"
"\n"
"Verbs:\n"
"  create NAME --cidr CIDR [--gateway IP]\n"
"        Define a pool. NAME is a DNS label: 1-63 of a-z, 0-9 and '-', not starting\n"
"        or ending with '-'.\n"
"        --cidr CIDR    the subnet, host bits zero: IPv4 with a prefix of /8-/30\n"
"                       (10.0.0.0/24) or IPv6 with /64-/126 (fd00::/64); required\n"
"        --gateway IP   the subnet's router, a host address inside CIDR; it is never\n"
"                       given to a server (default: none)\n"
"  list  List pools: NAME CIDR GATEWAY SIZE ALLOCATED.\n"
"  show NAME\n"
"        Show one pool: its size (usable addresses) and how many are allocated.\n"
"  delete NAME\n"
"        Delete a pool; refused while any of its addresses is allocated.\n"
"create prints the new pool as show does.\n"
"\n", f);
        cli_help_common(f);
}

enum { OPT_CIDR = CLI_OPT_VERB, OPT_GATEWAY };

static int print_one(const struct cli_opts *o, const Lsc__Reply *reply)
{
        if (reply->n_pools < 1 || !reply->pools[0])
                return lsc_err_set(-EBADMSG, "the manager's reply carries no pool");
        return cli_print_pool(o, reply->pools[0]);
}

static int pool_create(struct cli_opts *o, int argc, char **argv)
{
        static const struct option options[] = {
                { "cidr",    required_argument, NULL, OPT_CIDR },
                { "gateway", required_argument, NULL, OPT_GATEWAY },
                CLI_OPTIONS_GLOBAL,
                {}
        };
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__PoolCreate create = LSC__POOL_CREATE__INIT;
        char cidr_s[LSC_CIDR_STR], gw_s[LSC_IP_STR];
        const char *gw_arg = NULL;
        struct lsc_cidr cidr;
        struct lsc_ip gw;
        bool have_cidr = false;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, CLI_OPTSTRING, options, NULL)) != -1) {
                switch (c) {
                case OPT_CIDR:
                        if ((r = lsc_cidr_parse(optarg, &cidr)) < 0)
                                return r;
                        have_cidr = true;
                        break;
                case OPT_GATEWAY:
                        if ((r = lsc_ip_parse(optarg, &gw)) < 0)
                                return r;
                        gw_arg = optarg;
                        break;
                default:
                        if ((r = cli_opt_common(o, TOPIC, c, argv, options)) != 0)
                                return r;
                }
        }
        if ((r = cli_args(TOPIC, "create", argc, argv, 1, "a NAME")) < 0)
                return r;
        if ((r = lsc_validate_name("pool name", argv[optind])) < 0)
                return r;
        if (!have_cidr)
                return cli_usage(TOPIC, "pool create needs --cidr CIDR");
        lsc_cidr_format(&cidr, cidr_s);
        if (gw_arg) {
                if (!lsc_cidr_contains(&cidr, &gw) || lsc_cidr_is_reserved(&cidr, &gw))
                        return lsc_err_set(-EINVAL, "gateway %.64s is not a host address of %s",
                                           gw_arg, cidr_s);
                lsc_ip_format(&gw, gw_s);
                create.gateway = gw_s;
        }

        create.name = argv[optind];
        create.cidr = cidr_s;
        req.op_case = LSC__REQUEST__OP_POOL_CREATE;
        req.pool_create = &create;
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;
        return print_one(o, reply);
}

static int plain_args(struct cli_opts *o, const char *verb, int argc, char **argv, int want)
{
        int r = cli_plain_args(o, TOPIC, verb, argc, argv, want, want ? "a NAME" : "nothing");

        if (r != 0 || !want)
                return r;
        return lsc_validate_name("pool name", argv[optind]);
}

static int pool_list(struct cli_opts *o, int argc, char **argv)
{
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__PoolList list = LSC__POOL_LIST__INIT;
        int r;

        if ((r = plain_args(o, "list", argc, argv, 0)) != 0)
                return r;
        req.op_case = LSC__REQUEST__OP_POOL_LIST;
        req.pool_list = &list;
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;
        return cli_print_pools(o, reply->pools, reply->n_pools);
}

static int pool_show(struct cli_opts *o, int argc, char **argv)
{
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__Ref ref = LSC__REF__INIT;
        int r;

        if ((r = plain_args(o, "show", argc, argv, 1)) != 0)
                return r;
        ref.ref = argv[optind];
        req.op_case = LSC__REQUEST__OP_POOL_GET;
        req.pool_get = &ref;
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;
        return print_one(o, reply);
}

static int pool_delete(struct cli_opts *o, int argc, char **argv)
{
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__Ref ref = LSC__REF__INIT;
        const Lsc__Pool *p;
        int r;

        if ((r = plain_args(o, "delete", argc, argv, 1)) != 0)
                return r;
        ref.ref = argv[optind];
        req.op_case = LSC__REQUEST__OP_POOL_DELETE;
        req.pool_delete = &ref;
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;

        p = reply->n_pools > 0 ? reply->pools[0] : NULL;
        if (o->json)
                return p ? cli_print_pool(o, p) : (printf("null\n"), 0);
        if (p && p->cidr)
                printf("deleted pool %s (%s)\n", ref.ref, p->cidr);
        else
                printf("deleted pool %s\n", ref.ref);
        return 0;
}

int cli_pool(struct cli_opts *o, int argc, char **argv)
{
        static const struct cli_verb verbs[] = {
                { "create", pool_create },
                { "list",   pool_list },
                { "show",   pool_show },
                { "delete", pool_delete },
        };

        return cli_dispatch(o, TOPIC, verbs, ARRAY_SIZE(verbs), argc, argv);
}
