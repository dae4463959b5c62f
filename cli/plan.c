/* lsc plan server: where would a server go? Answered from lscd's view of the hosts; for
 * an existing server or for one described by options. Nothing is bound. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "cli.h"
#include "err.h"
#include "util.h"
#include "validate.h"

#define TOPIC "plan"

void cli_plan_help(FILE *f)
{
        fputs(
"Usage: lsc [OPTIONS] plan server NAME|UUID\n"
"       lsc [OPTIONS] plan server --vcpus N --memory MIB [--disk GIB] [--kind KIND]\n"
"                                 [--group NAME]\n"
"       lsc [OPTIONS] plan turnover [--hours N]\n"
"Shows where a server would be placed, without binding anything: the hosts it fits on\n"
"(the scheduler picks one of them at random, weighted by free capacity) and, for\n"
"every other host, one line saying why not (not up, drained, unhealthy, too little\n"
"free vCPU, memory or disk, wrong kind, group rule). 'lsc server start NAME --dry-run'\n"
"is the same for an existing server.\n"
"  --vcpus N       1-1024 (required without NAME)\n"
"  --memory MIB    16-16777216 (required without NAME)\n"
"  --disk GIB      0-1048576 (default 10)\n"
"  --kind KIND     vm (default), container or metal\n"
"  --group NAME    as a member of this placement group\n"
"plan turnover shows the mayflies' deaths over the next N hours (--hours, default 168,\n"
"at most 8760): when each is due, when the turnover budget lets it start, and the host\n"
"the scheduler would pick for its rebirth now (the live scheduler's code; nothing is\n"
"applied); then each host's projected busy vCPUs per hour (its measured forecast less\n"
"the deaths, plus the rebirths), the hottest first. --json has every hour.\n"
"\n", f);
        cli_help_common(f);
}

enum { OPT_VCPUS = CLI_OPT_VERB, OPT_MEMORY, OPT_DISK, OPT_KIND, OPT_GROUP, OPT_HOURS };

static int plan_server(struct cli_opts *o, int argc, char **argv)
{
        static const struct option options[] = {
                { "vcpus", required_argument, NULL, OPT_VCPUS },
                { "memory", required_argument, NULL, OPT_MEMORY },
                { "disk", required_argument, NULL, OPT_DISK },
                { "kind", required_argument, NULL, OPT_KIND },
                { "group", required_argument, NULL, OPT_GROUP },
                CLI_OPTIONS_GLOBAL,
                {}
        };
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__PlanServer plan = LSC__PLAN_SERVER__INIT;
        Lsc__ServerSpec spec = LSC__SERVER_SPEC__INIT;
        bool any = false;
        uint64_t v;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, CLI_OPTSTRING, options, NULL)) != -1) {
                switch (c) {
                case OPT_VCPUS:
                        if ((r = lsc_parse_u64("--vcpus", optarg, &v)) < 0 || (r = lsc_validate_vcpus(v)) < 0)
                                return r;
                        spec.has_vcpus = 1;
                        spec.vcpus = (uint32_t)v;
                        any = true;
                        break;
                case OPT_MEMORY:
                        if ((r = lsc_parse_u64("--memory", optarg, &v)) < 0 ||
                            (r = lsc_validate_memory_mib(v)) < 0)
                                return r;
                        spec.has_memory_mib = 1;
                        spec.memory_mib = v;
                        any = true;
                        break;
                case OPT_DISK:
                        if ((r = lsc_parse_u64("--disk", optarg, &v)) < 0 || (r = lsc_validate_disk_gib(v)) < 0)
                                return r;
                        spec.has_disk_gib = 1;
                        spec.disk_gib = v;
                        any = true;
                        break;
                case OPT_KIND:
                        if (lsc_enum_parse(lsc_kind_names, LSC_KIND_COUNT, optarg) < 0)
                                return cli_usage(TOPIC, "unknown kind '%.32s': use vm, container or metal", optarg);
                        spec.kind = optarg;
                        any = true;
                        break;
                case OPT_GROUP:
                        if ((r = lsc_validate_name("group name", optarg)) < 0)
                                return r;
                        spec.group = optarg;
                        any = true;
                        break;
                default:
                        if ((r = cli_opt_common(o, TOPIC, c, argv, options)) != 0)
                                return r;
                }
        }
        if (optind < argc) {
                if (any)
                        return cli_usage(TOPIC, "give a server NAME or options describing one, not both");
                if ((r = cli_args(TOPIC, "server", argc, argv, 1, "a NAME or UUID")) < 0 ||
                    (r = cli_server_ref_check(argv[optind])) < 0)
                        return r;
                plan.ref = argv[optind];
        } else {
                if (!spec.has_vcpus || !spec.has_memory_mib)
                        return cli_usage(TOPIC, "plan server needs a NAME, or --vcpus and --memory");
                if (!spec.has_disk_gib) {
                        spec.has_disk_gib = 1;
                        spec.disk_gib = 10;
                }
                plan.spec = &spec;
        }
        req.op_case = LSC__REQUEST__OP_PLAN_SERVER;
        req.plan_server = &plan;
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;
        return cli_print_plan(o, plan.ref ? plan.ref : "a server of that size", reply->plan, reply->n_plan);
}

static int plan_turnover(struct cli_opts *o, int argc, char **argv)
{
        static const struct option options[] = {
                { "hours", required_argument, NULL, OPT_HOURS },
                CLI_OPTIONS_GLOBAL,
                {}
        };
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__PlanTurnover plan = LSC__PLAN_TURNOVER__INIT;
        uint64_t v;
        int c, r;

        plan.has_hours = 1;
        plan.hours = 168;
        optind = 0;
        while ((c = getopt_long(argc, argv, CLI_OPTSTRING, options, NULL)) != -1) {
                switch (c) {
                case OPT_HOURS:
                        if ((r = lsc_parse_u64("--hours", optarg, &v)) < 0)
                                return r;
                        if (v < 1 || v > 8760)
                                return cli_usage(TOPIC, "--hours %llu: want 1-8760 (a year at most)",
                                                 (unsigned long long)v);
                        plan.hours = (uint32_t)v;
                        break;
                default:
                        if ((r = cli_opt_common(o, TOPIC, c, argv, options)) != 0)
                                return r;
                }
        }
        if ((r = cli_args(TOPIC, "turnover", argc, argv, 0, "")) < 0)
                return r;
        req.op_case = LSC__REQUEST__OP_PLAN_TURNOVER;
        req.plan_turnover = &plan;
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;
        return cli_print_plan_turnover(o, plan.hours, reply);
}

int cli_plan(struct cli_opts *o, int argc, char **argv)
{
        static const struct cli_verb verbs[] = {
                { "server", plan_server },
                { "turnover", plan_turnover },
        };

        return cli_dispatch(o, TOPIC, verbs, ARRAY_SIZE(verbs), argc, argv);
}
