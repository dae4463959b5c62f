/* lsc group create|list|show|delete: placement groups, the rules that keep servers
 * apart (anti-affinity) or together (affinity) when lscd binds them to hosts. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "cli.h"
#include "err.h"
#include "util.h"
#include "validate.h"

#define TOPIC "group"

/* The manager's names (sched_policy_names); the default first. */
static const char *const policy_names[] = { "anti-affinity", "affinity" };

void cli_group_help(FILE *f)
{
        fputs(
"Usage: lsc [OPTIONS] group VERB [ARGS] [OPTIONS]\n"
"A placement group is a rule about where its members may run together. Servers join\n"
"one with 'lsc server create|edit ... --group NAME' and leave it with\n"
"'lsc server edit NAME --group none'.\n"
"\n"
"Verbs:\n"
"  create NAME [--policy anti-affinity|affinity] [--max-per-host N]\n"
"        Define a group. NAME is a DNS label: 1-63 of a-z, 0-9 and '-', not starting\n"
"        or ending with '-'; \"none\" is reserved.\n"
"        --policy anti-affinity  at most N members on any one host (the default)\n"
"        --policy affinity       once a member runs somewhere, the others go only to\n"
"                                hosts that already hold a member\n"
"        --max-per-host N        anti-affinity only: 1-1000000 members per host\n"
"                                (default 1, one member per host)\n"
"  list  List groups: NAME POLICY MAX/HOST MEMBERS (a count).\n"
"  show NAME\n"
"        Show one group and its members (server names).\n"
"  delete NAME\n"
"        Delete a group; refused while any server is a member.\n"
"create prints the new group as show does.\n"
"\n"
"A server's group is a rule for its placement (start, migrate, rebirth, re-binding\n"
"after a host is lost). A server joins or leaves a group only while it holds no host\n"
"(defined, pending or failed): 'lsc server edit NAME --group G' on a running server\n"
"is refused; stop it first.\n"
"\n"
"Examples:\n"
"  lsc group create web --max-per-host 2\n"
"  lsc group create cache --policy affinity\n"
"  lsc server create web1 --vcpus 2 --memory 2048 --group web\n"
"\n", f);
        cli_help_common(f);
}

enum { OPT_POLICY = CLI_OPT_VERB, OPT_MAX_PER_HOST };

static int print_one(const struct cli_opts *o, const Lsc__Reply *reply)
{
        if (reply->n_groups < 1 || !reply->groups[0])
                return lsc_err_set(-EBADMSG, "the manager's reply carries no group");
        return cli_print_group(o, reply->groups[0]);
}

static int group_name_check(const char *name)
{
        int r;

        if ((r = lsc_validate_name("group name", name)) < 0)
                return r;
        if (strcmp(name, "none") == 0)
                return cli_usage(TOPIC, "group name \"none\" is reserved: it means no group");
        return 0;
}

static int group_create(struct cli_opts *o, int argc, char **argv)
{
        static const struct option options[] = {
                { "policy",       required_argument, NULL, OPT_POLICY },
                { "max-per-host", required_argument, NULL, OPT_MAX_PER_HOST },
                CLI_OPTIONS_GLOBAL,
                {}
        };
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__GroupCreate create = LSC__GROUP_CREATE__INIT;
        int policy = 0, c, r;
        uint64_t max;

        optind = 0;
        while ((c = getopt_long(argc, argv, CLI_OPTSTRING, options, NULL)) != -1) {
                switch (c) {
                case OPT_POLICY:
                        if ((policy = lsc_enum_parse(policy_names, (int)ARRAY_SIZE(policy_names), optarg)) < 0)
                                return cli_err_prefix(policy, "--policy");
                        create.policy = (char *)policy_names[policy];
                        break;
                case OPT_MAX_PER_HOST:
                        if ((r = lsc_parse_u64("--max-per-host", optarg, &max)) < 0)
                                return r;
                        if (max < 1 || max > LSC_GROUP_MAX_PER_HOST_MAX)
                                return cli_usage(TOPIC, "--max-per-host %.32s out of range: 1-%u",
                                                 optarg, LSC_GROUP_MAX_PER_HOST_MAX);
                        create.has_max_per_host = 1;
                        create.max_per_host = (uint32_t)max;
                        break;
                default:
                        if ((r = cli_opt_common(o, TOPIC, c, argv, options)) != 0)
                                return r;
                }
        }
        if ((r = cli_args(TOPIC, "create", argc, argv, 1, "a NAME")) < 0)
                return r;
        if ((r = group_name_check(argv[optind])) < 0)
                return r;
        if (create.has_max_per_host && policy != 0)
                return cli_usage(TOPIC, "--max-per-host applies to anti-affinity groups only");

        create.name = argv[optind];
        req.op_case = LSC__REQUEST__OP_GROUP_CREATE;
        req.group_create = &create;
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;
        return print_one(o, reply);
}

static int plain_args(struct cli_opts *o, const char *verb, int argc, char **argv, int want)
{
        int r = cli_plain_args(o, TOPIC, verb, argc, argv, want, want ? "a NAME" : "nothing");

        if (r != 0 || !want)
                return r;
        return lsc_validate_name("group name", argv[optind]);
}

static int group_list(struct cli_opts *o, int argc, char **argv)
{
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__GroupList list = LSC__GROUP_LIST__INIT;
        int r;

        if ((r = plain_args(o, "list", argc, argv, 0)) != 0)
                return r;
        req.op_case = LSC__REQUEST__OP_GROUP_LIST;
        req.group_list = &list;
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;
        return cli_print_groups(o, reply->groups, reply->n_groups);
}

static int group_show(struct cli_opts *o, int argc, char **argv)
{
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__Ref ref = LSC__REF__INIT;
        int r;

        if ((r = plain_args(o, "show", argc, argv, 1)) != 0)
                return r;
        ref.ref = argv[optind];
        req.op_case = LSC__REQUEST__OP_GROUP_GET;
        req.group_get = &ref;
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;
        return print_one(o, reply);
}

static int group_delete(struct cli_opts *o, int argc, char **argv)
{
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__Ref ref = LSC__REF__INIT;
        const Lsc__Group *g;
        int r;

        if ((r = plain_args(o, "delete", argc, argv, 1)) != 0)
                return r;
        ref.ref = argv[optind];
        req.op_case = LSC__REQUEST__OP_GROUP_DELETE;
        req.group_delete = &ref;
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;

        g = reply->n_groups > 0 ? reply->groups[0] : NULL;
        if (o->json)
                return g ? cli_print_group(o, g) : (printf("null\n"), 0);
        if (g && g->policy)
                printf("deleted group %s (%s)\n", ref.ref, g->policy);
        else
                printf("deleted group %s\n", ref.ref);
        return 0;
}

int cli_group(struct cli_opts *o, int argc, char **argv)
{
        static const struct cli_verb verbs[] = {
                { "create", group_create },
                { "list",   group_list },
                { "show",   group_show },
                { "delete", group_delete },
        };

        return cli_dispatch(o, TOPIC, verbs, ARRAY_SIZE(verbs), argc, argv);
}
