/* lsc events: the durable record of every change (what, which identity, when, by whom). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "cli.h"
#include "err.h"
#include "util.h"
#include "validate.h"

#define TOPIC "events"

void cli_events_help(FILE *f)
{
        fprintf(f,
"Usage: lsc [OPTIONS] events [list] [--server NAME|UUID] [--limit N]\n"
"Show the most recent events, oldest first: every change lscd makes is recorded in\n"
"the same transaction as the change, with what happened, to which server, when and\n"
"by whom (the actor: cli:USER@HOST for changes made with lsc).\n"
"\n"
"  --server NAME|UUID  only the events of this server\n"
"  --limit N           at most N events: 1-%u (default %u)\n"
"\n"
"Columns: ID AT ACTOR KIND SERVER DETAIL; AT is ISO 8601 UTC with microseconds.\n"
"With --json: an array of objects with the keys id, at, actor, kind, server, uuid\n"
"and detail (a JSON object).\n"
"\n", CLI_EVENTS_LIMIT_MAX, CLI_EVENTS_LIMIT_DEFAULT);
        cli_help_common(f);
}

enum { OPT_SERVER = CLI_OPT_VERB, OPT_LIMIT };

int cli_events(struct cli_opts *o, int argc, char **argv)
{
        static const struct option options[] = {
                { "server", required_argument, NULL, OPT_SERVER },
                { "limit",  required_argument, NULL, OPT_LIMIT },
                CLI_OPTIONS_GLOBAL,
                {}
        };
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__EventList list = LSC__EVENT_LIST__INIT;
        uint64_t limit = CLI_EVENTS_LIMIT_DEFAULT;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, CLI_OPTSTRING, options, NULL)) != -1) {
                switch (c) {
                case OPT_SERVER:
                        if ((r = cli_server_ref_check(optarg)) < 0)
                                return r;
                        list.server = optarg;
                        break;
                case OPT_LIMIT:
                        if ((r = lsc_parse_u64("limit", optarg, &limit)) < 0)
                                return r;
                        if (limit < 1 || limit > CLI_EVENTS_LIMIT_MAX)
                                return lsc_err_set(-EINVAL, "--limit %.32s out of range: 1-%u",
                                                   optarg, CLI_EVENTS_LIMIT_MAX);
                        break;
                default:
                        if ((r = cli_opt_common(o, TOPIC, c, argv, options)) != 0)
                                return r;
                }
        }
        /* "lsc events list" reads like the other nouns' list */
        if (optind < argc && strcmp(argv[optind], "list") == 0)
                optind++;
        if ((r = cli_args(TOPIC, NULL, argc, argv, 0, "nothing")) < 0)
                return r;

        list.has_limit = 1;
        list.limit = (uint32_t)limit;
        req.op_case = LSC__REQUEST__OP_EVENT_LIST;
        req.event_list = &list;
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;
        return cli_print_events(o, reply->events, reply->n_events);
}
