/* lsc server create|list|show|edit|delete: every argument is checked here before
 * anything is sent, so bad input costs no round trip and changes nothing. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "addr.h"
#include "cli.h"
#include "err.h"
#include "util.h"
#include "validate.h"

#define TOPIC "server"

void cli_server_help(FILE *f)
{
        fputs(
"Usage: lsc [OPTIONS] server VERB [ARGS] [OPTIONS]\n"
"A server is an identity that outlives any machine: UUID, name, size, image, MACs, IPs,\n"
"hostname and labels. lscd binds it to a physical host and keeps it the same there.\n"
"\n"
"Verbs:\n"
"  create NAME --vcpus N --memory MIB [OPTIONS]\n"
"        Define a server. lscd allocates its UUID, a locally administered MAC unless\n"
"        --mac is given, and an IP from a pool unless --ip is given. NAME is a DNS\n"
"        label: 1-63 of a-z, 0-9 and '-', not starting or ending with '-'.\n"
"  list [--page-size N]\n"
"        List every server: NAME UUID KIND VCPUS MEMORY DISK STATE HOST IPS. lsc asks\n"
"        lscd page by page (N rows each: 1-5000, default lscd's) and prints one list.\n"
"  show NAME|UUID\n"
"        Show every attribute of one server.\n"
"  edit NAME|UUID [OPTIONS]\n"
"        Change the attributes given, and only those; at least one is needed.\n"
"  delete NAME|UUID\n"
"        Delete a server and free its MACs and IPs. A server that may be running is\n"
"        stopped first (state stopping, desired deleted) and goes once its host has\n"
"        destroyed the instance.\n"
"  start NAME|UUID... [--wait [--wait-timeout S]] [--dry-run]\n"
"        Run it: pending -> binding (bound to a host lscd picks, generation + 1) ->\n"
"        running (the host's agent confirmed). When nothing fits it stays pending\n"
"        with the reason in show and events, and is bound once room appears.\n"
"        Several servers start in one request (one transaction per 1000): all\n"
"        of them, or none when one is unknown.\n"
"        --dry-run (one server) shows the hosts it would fit on and why the others do not;\n"
"        nothing is bound.\n"
"  stop NAME|UUID [--wait [--wait-timeout S]]\n"
"        Stop it: its host destroys the instance, then it is defined again.\n"
"  migrate NAME|UUID [--to HOST] [--wait [--wait-timeout S]]\n"
"        Cold migration of a running server: destroyed where it runs (acknowledged),\n"
"        bound again with generation + 1 on another host (HOST with --to), started.\n"
"        UUID, MACs, IPs and hostname stay the same; an event records from -> to.\n"
"  renew NAME|UUID [--by DURATION]\n"
"        A running mayfly dies DURATION from now (default: one lifetime) instead of at\n"
"        its expires_at. lscd allows mayfly_renew_max renewals per binding (default 3)\n"
"        and refuses a server that is not a running mayfly. See docs/mayflies-operations.md.\n"
"  --wait follows the server until it gets there (running, or defined for stop),\n"
"  printing each state; it gives up after --wait-timeout seconds (default 120) and\n"
"  exits 1, as it does when the server ends up failed.\n"
"create and edit print the resulting server as show does.\n"
"\n"
"Options of create and edit:\n"
"  --vcpus N            virtual CPUs: 1-1024 (required by create)\n"
"  --memory MIB         memory in MiB: 16-16777216, that is 16 MiB to 16 TiB\n"
"                       (required by create)\n"
"  --disk GIB           disk in GiB: 0-1048576, that is up to 1 PiB; 0 is no disk\n"
"                       (default 10)\n"
"  --disk-mode MODE     ephemeral: rebuilt from the image at each binding; or persistent:\n"
"                       a volume on shared storage that follows the identity\n"
"                       (default ephemeral)\n"
"  --kind KIND          vm, container or metal (default vm)\n"
"  --image REF          the image to boot: 1-1024 printable ASCII characters, no spaces\n"
"                       (default debian-12)\n"
"  --label KEY=VALUE    a label; KEY and VALUE are 1-63 of A-Z, a-z, 0-9, '.', '_' and\n"
"                       '-'. Repeat for more (at most 64). edit adds or overwrites.\n"
"  --require-label KEY=VALUE\n"
"                       place it only on hosts with this label (an agent's labels =);\n"
"                       repeat: all must match. edit replaces the set; 'none' clears it.\n"
"                       Like the size, it changes only while the server holds no host.\n"
"  --mac MAC            a MAC address, aa:bb:cc:dd:ee:ff (unicast, not all zero).\n"
"                       Repeat for more (at most 16). Default: one allocated by lscd.\n"
"                       edit: the MACs given replace all of the server's MACs.\n"
"  --ip IP              an IPv4 or IPv6 address inside a pool, not taken by another\n"
"                       server. Repeat for more (at most 16). Default: the lowest free\n"
"                       address of --pool, or of the only pool when there is one (no IP\n"
"                       when there is no pool; with several pools, --pool is needed).\n"
"                       edit: the IPs given replace all of the server's IPs.\n"
"  --pool NAME          the pool to allocate the IP from (when no --ip is given)\n"
"  --hostname H         the guest's hostname: dot-separated labels of 1-63 of A-Z, a-z,\n"
"                       0-9 and '-', at most 253 characters (default NAME)\n"
"  --lifetime DURATION  make it a mayfly: retired and reborn on another host after this\n"
"                       long. A whole number and one unit s, m, h or d (30s, 168h, 7d),\n"
"                       at most 3650d (default: none, the server lives until deleted).\n"
"                       Its death is set at each binding, lifetime +- lscd's jitter\n"
"                       (expires in show); edit changes it from the next binding\n"
"  --group NAME         join the placement group NAME ('lsc group --help'); it must\n"
"                       exist (default: none). edit: --group none leaves the group.\n"
"                       The group, like vcpus, memory and disk, changes only while the\n"
"                       server holds no host (defined, pending or failed): stop it first.\n"
"Only with edit:\n"
"  --name NEW           rename the server (same rules as NAME)\n"
"  --unlabel KEY        remove the label KEY; repeat for more (at most 64)\n"
"  --lifetime none      stop being a mayfly (its planned death is cancelled at once)\n"
"\n"
"Examples:\n"
"  lsc server create web1 --vcpus 2 --memory 2048 --disk 20 --image debian-12 \\\n"
"      --label tier=web --pool lan\n"
"  lsc server create fly1 --vcpus 1 --memory 512 --lifetime 7d\n"
"  lsc server edit web1 --memory 4096 --label env=prod --unlabel tier\n"
"  lsc --json server show web1\n"
"\n", f);
        cli_help_common(f);
}

static bool is_uuid(const char *s)
{
        static const char *const hex = "0123456789abcdefABCDEF";

        if (strlen(s) != 36)
                return false;
        for (int i = 0; i < 36; i++) {
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i] != '-')
                                return false;
                } else if (!strchr(hex, s[i])) {
                        return false;
                }
        }
        return true;
}

int cli_server_ref_check(const char *s)
{
        return is_uuid(s) ? 0 : lsc_validate_name("server name or UUID", s);
}

enum {
        OPT_VCPUS = CLI_OPT_VERB,
        OPT_MEMORY,
        OPT_DISK,
        OPT_DISK_MODE,
        OPT_KIND,
        OPT_IMAGE,
        OPT_LABEL,
        OPT_REQUIRE,
        OPT_MAC,
        OPT_IP,
        OPT_POOL,
        OPT_HOSTNAME,
        OPT_LIFETIME,
        OPT_GROUP,                       /* placement group */
        OPT_NAME,                        /* edit only */
        OPT_UNLABEL,                     /* edit only */
};

#define SPEC_OPTIONS                                                     \
        { "vcpus",     required_argument, NULL, OPT_VCPUS },             \
        { "memory",    required_argument, NULL, OPT_MEMORY },            \
        { "disk",      required_argument, NULL, OPT_DISK },              \
        { "disk-mode", required_argument, NULL, OPT_DISK_MODE },         \
        { "kind",      required_argument, NULL, OPT_KIND },              \
        { "image",     required_argument, NULL, OPT_IMAGE },             \
        { "label",     required_argument, NULL, OPT_LABEL },             \
        { "require-label", required_argument, NULL, OPT_REQUIRE },       \
        { "mac",       required_argument, NULL, OPT_MAC },               \
        { "ip",        required_argument, NULL, OPT_IP },                \
        { "pool",      required_argument, NULL, OPT_POOL },              \
        { "hostname",  required_argument, NULL, OPT_HOSTNAME },          \
        { "lifetime",  required_argument, NULL, OPT_LIFETIME },          \
        { "group",     required_argument, NULL, OPT_GROUP }

/* A ServerSpec being filled from options, with storage for what it points to:
 * the strings are copies (normalised where there is a canonical form). */
struct spec_args {
        Lsc__ServerSpec spec;
        Lsc__Label labels[CLI_MAX_LABELS];
        Lsc__Label *label_p[CLI_MAX_LABELS];
        char label_key[CLI_MAX_LABELS][LSC_LABEL_MAX + 1];
        char label_value[CLI_MAX_LABELS][LSC_LABEL_MAX + 1];
        char mac[CLI_MAX_ADDRS][LSC_MAC_STR];
        char *mac_p[CLI_MAX_ADDRS];
        char ip[CLI_MAX_ADDRS][LSC_IP_STR];
        char *ip_p[CLI_MAX_ADDRS];
        char *unlabel[CLI_MAX_LABELS];
        size_t n_unlabel;
        bool clear_group;                /* edit --group none */
        Lsc__Label req[CLI_MAX_LABELS];  /* --require-label */
        Lsc__Label *req_p[CLI_MAX_LABELS];
        char req_key[CLI_MAX_LABELS][LSC_LABEL_MAX + 1];
        char req_value[CLI_MAX_LABELS][LSC_LABEL_MAX + 1];
        bool clear_require;              /* edit --require-label none */
};

static void spec_args_init(struct spec_args *a)
{
        *a = (struct spec_args){ .spec = LSC__SERVER_SPEC__INIT };
        a->spec.labels = a->label_p;
        a->spec.require_labels = a->req_p;
        a->spec.macs = a->mac_p;
        a->spec.ips = a->ip_p;
}

static bool spec_args_empty(const struct spec_args *a)
{
        const Lsc__ServerSpec *s = &a->spec;

        return !s->name && !s->kind && !s->has_vcpus && !s->has_memory_mib && !s->has_disk_gib &&
               !s->disk_mode && !s->image && !s->n_labels && !s->n_macs && !s->n_ips &&
               !s->pool && !s->hostname && !s->has_lifetime_s && !a->n_unlabel &&
               !s->group && !a->clear_group && !s->n_require_labels && !a->clear_require;
}

/* --require-label KEY=VALUE (or "none", edit: require nothing). */
static int add_require(struct spec_args *a, const char *arg)
{
        _cleanup_free_ char *buf = strdup(arg);
        const char *key, *value;
        size_t n = a->spec.n_require_labels;
        int r;

        if (!buf)
                return lsc_err_set(-ENOMEM, "out of memory");
        if (strcmp(arg, "none") == 0) {
                a->clear_require = true;
                return 0;
        }
        if ((r = lsc_label_parse(buf, &key, &value)) < 0)
                return r;
        if (n == CLI_MAX_LABELS)
                return cli_usage(TOPIC, "too many --require-label options: at most %d", CLI_MAX_LABELS);
        for (size_t i = 0; i < n; i++)
                if (strcmp(a->req_key[i], key) == 0)
                        return cli_usage(TOPIC, "required label key \"%s\" is given twice", key);
        snprintf(a->req_key[n], sizeof(a->req_key[n]), "%s", key);
        snprintf(a->req_value[n], sizeof(a->req_value[n]), "%s", value);
        a->req[n] = (Lsc__Label)LSC__LABEL__INIT;
        a->req[n].key = a->req_key[n];
        a->req[n].value = a->req_value[n];
        a->req_p[n] = &a->req[n];
        a->spec.n_require_labels = n + 1;
        return 0;
}

static int add_label(struct spec_args *a, const char *arg)
{
        _cleanup_free_ char *buf = strdup(arg);
        const char *key, *value;
        size_t n = a->spec.n_labels;
        int r;

        if (!buf)
                return lsc_err_set(-ENOMEM, "out of memory");
        if ((r = lsc_label_parse(buf, &key, &value)) < 0)
                return r;
        if (n == CLI_MAX_LABELS)
                return cli_usage(TOPIC, "too many --label options: at most %d", CLI_MAX_LABELS);
        for (size_t i = 0; i < n; i++)
                if (strcmp(a->label_key[i], key) == 0)
                        return cli_usage(TOPIC, "label key \"%s\" is given twice", key);
        for (size_t i = 0; i < a->n_unlabel; i++)
                if (strcmp(a->unlabel[i], key) == 0)
                        return cli_usage(TOPIC, "label key \"%s\" is both set and removed", key);
        /* lsc_label_parse checked both parts' lengths against LSC_LABEL_MAX */
        snprintf(a->label_key[n], sizeof(a->label_key[n]), "%s", key);
        snprintf(a->label_value[n], sizeof(a->label_value[n]), "%s", value);
        a->labels[n] = (Lsc__Label)LSC__LABEL__INIT;
        a->labels[n].key = a->label_key[n];
        a->labels[n].value = a->label_value[n];
        a->label_p[n] = &a->labels[n];
        a->spec.n_labels = n + 1;
        return 0;
}

static int add_unlabel(struct spec_args *a, char *arg)
{
        int r;

        if ((r = lsc_validate_label_part("label key", arg)) < 0)
                return r;
        if (a->n_unlabel == CLI_MAX_LABELS)
                return cli_usage(TOPIC, "too many --unlabel options: at most %d", CLI_MAX_LABELS);
        for (size_t i = 0; i < a->spec.n_labels; i++)
                if (strcmp(a->label_key[i], arg) == 0)
                        return cli_usage(TOPIC, "label key \"%s\" is both set and removed", arg);
        for (size_t i = 0; i < a->n_unlabel; i++)
                if (strcmp(a->unlabel[i], arg) == 0)
                        return 0;       /* removing twice is removing */
        a->unlabel[a->n_unlabel++] = arg;
        return 0;
}

static int add_mac(struct spec_args *a, const char *arg)
{
        size_t n = a->spec.n_macs;
        struct lsc_mac mac;
        int r;

        if ((r = lsc_mac_parse(arg, &mac)) < 0)
                return r;
        if (n == CLI_MAX_ADDRS)
                return cli_usage(TOPIC, "too many --mac options: at most %d", CLI_MAX_ADDRS);
        lsc_mac_format(&mac, a->mac[n]);
        for (size_t i = 0; i < n; i++)
                if (strcmp(a->mac[i], a->mac[n]) == 0)
                        return cli_usage(TOPIC, "MAC address %s is given twice", a->mac[n]);
        a->mac_p[n] = a->mac[n];
        a->spec.n_macs = n + 1;
        return 0;
}

static int add_ip(struct spec_args *a, const char *arg)
{
        size_t n = a->spec.n_ips;
        struct lsc_ip ip;
        int r;

        if ((r = lsc_ip_parse(arg, &ip)) < 0)
                return r;
        if (n == CLI_MAX_ADDRS)
                return cli_usage(TOPIC, "too many --ip options: at most %d", CLI_MAX_ADDRS);
        lsc_ip_format(&ip, a->ip[n]);
        for (size_t i = 0; i < n; i++)
                if (strcmp(a->ip[i], a->ip[n]) == 0)
                        return cli_usage(TOPIC, "IP address %s is given twice", a->ip[n]);
        a->ip_p[n] = a->ip[n];
        a->spec.n_ips = n + 1;
        return 0;
}

static int parse_size(const char *what, const char *arg, int (*check)(uint64_t), uint64_t *ret)
{
        uint64_t v;
        int r;

        if ((r = lsc_parse_u64(what, arg, &v)) < 0 || (r = check(v)) < 0)
                return r;
        *ret = v;
        return 0;
}

/* One option of create or edit: 0 when taken, 1 when not ours, or -errno. */
static int spec_option(struct spec_args *a, int c, char *arg, bool edit)
{
        Lsc__ServerSpec *s = &a->spec;
        uint64_t v;
        int r;

        switch (c) {
        case OPT_VCPUS:
                if ((r = parse_size("vcpus", arg, lsc_validate_vcpus, &v)) < 0)
                        return r;
                s->has_vcpus = 1;
                s->vcpus = (uint32_t)v;
                return 0;
        case OPT_MEMORY:
                if ((r = parse_size("memory", arg, lsc_validate_memory_mib, &s->memory_mib)) < 0)
                        return r;
                s->has_memory_mib = 1;
                return 0;
        case OPT_DISK:
                if ((r = parse_size("disk", arg, lsc_validate_disk_gib, &s->disk_gib)) < 0)
                        return r;
                s->has_disk_gib = 1;
                return 0;
        case OPT_DISK_MODE:
                if ((r = lsc_enum_parse(lsc_disk_mode_names, LSC_DISK_MODE_COUNT, arg)) < 0)
                        return cli_err_prefix(r, "--disk-mode");
                s->disk_mode = arg;
                return 0;
        case OPT_KIND:
                if ((r = lsc_enum_parse(lsc_kind_names, LSC_KIND_COUNT, arg)) < 0)
                        return cli_err_prefix(r, "--kind");
                s->kind = arg;
                return 0;
        case OPT_IMAGE:
                if ((r = lsc_validate_image(arg)) < 0)
                        return r;
                s->image = arg;
                return 0;
        case OPT_LABEL:
                return add_label(a, arg);
        case OPT_REQUIRE:
                return add_require(a, arg);
        case OPT_MAC:
                return add_mac(a, arg);
        case OPT_IP:
                return add_ip(a, arg);
        case OPT_POOL:
                if ((r = lsc_validate_name("pool name", arg)) < 0)
                        return r;
                s->pool = arg;
                return 0;
        case OPT_HOSTNAME:
                if ((r = lsc_validate_hostname(arg)) < 0)
                        return r;
                s->hostname = arg;
                return 0;
        case OPT_LIFETIME:
                /* "none" ends a mayfly (edit); on create it is the default spelled out */
                if (strcmp(arg, "none") == 0) {
                        v = 0;
                } else if ((r = lsc_duration_parse(arg, &v)) < 0 ||
                           (r = lsc_validate_lifetime_s(v)) < 0) {
                        return r;
                }
                s->has_lifetime_s = 1;
                s->lifetime_s = v;
                return 0;
        case OPT_GROUP:
                /* "none": no group (create: the default spelled out; edit: leave it) */
                if (strcmp(arg, "none") == 0) {
                        s->group = NULL;
                        a->clear_group = edit;
                        return 0;
                }
                if ((r = lsc_validate_name("group name", arg)) < 0)
                        return r;
                s->group = arg;
                a->clear_group = false;
                return 0;
        case OPT_NAME:
                if (!edit)
                        return 1;
                if ((r = lsc_validate_name("server name", arg)) < 0)
                        return r;
                s->name = arg;
                return 0;
        case OPT_UNLABEL:
                return edit ? add_unlabel(a, arg) : 1;
        default:
                return 1;
        }
}

/* The one server a create/show/edit reply carries, printed as show does. */
static int print_one(const struct cli_opts *o, const Lsc__Reply *reply)
{
        if (reply->n_servers < 1 || !reply->servers[0])
                return lsc_err_set(-EBADMSG, "the manager's reply carries no server");
        return cli_print_server(o, reply->servers[0]);
}

static int server_create(struct cli_opts *o, int argc, char **argv)
{
        static const struct option options[] = { SPEC_OPTIONS, CLI_OPTIONS_GLOBAL, {} };
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__ServerCreate create = LSC__SERVER_CREATE__INIT;
        struct spec_args a;
        int c, r;

        spec_args_init(&a);
        optind = 0;
        while ((c = getopt_long(argc, argv, CLI_OPTSTRING, options, NULL)) != -1) {
                r = spec_option(&a, c, optarg, false);
                if (r == 1)
                        r = cli_opt_common(o, TOPIC, c, argv, options);
                if (r != 0)
                        return r;
        }
        if ((r = cli_args(TOPIC, "create", argc, argv, 1, "a NAME")) < 0)
                return r;
        if ((r = lsc_validate_name("server name", argv[optind])) < 0)
                return r;
        if (!a.spec.has_vcpus)
                return cli_usage(TOPIC, "server create needs --vcpus N (1-1024)");
        if (!a.spec.has_memory_mib)
                return cli_usage(TOPIC, "server create needs --memory MIB (16-16777216)");
        a.spec.name = argv[optind];

        create.spec = &a.spec;
        req.op_case = LSC__REQUEST__OP_SERVER_CREATE;
        req.server_create = &create;
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;
        return print_one(o, reply);
}

static int server_edit(struct cli_opts *o, int argc, char **argv)
{
        static const struct option options[] = {
                SPEC_OPTIONS,
                { "name",    required_argument, NULL, OPT_NAME },
                { "unlabel", required_argument, NULL, OPT_UNLABEL },
                CLI_OPTIONS_GLOBAL,
                {}
        };
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__ServerEdit edit = LSC__SERVER_EDIT__INIT;
        struct spec_args a;
        int c, r;

        spec_args_init(&a);
        optind = 0;
        while ((c = getopt_long(argc, argv, CLI_OPTSTRING, options, NULL)) != -1) {
                r = spec_option(&a, c, optarg, true);
                if (r == 1)
                        r = cli_opt_common(o, TOPIC, c, argv, options);
                if (r != 0)
                        return r;
        }
        if ((r = cli_args(TOPIC, "edit", argc, argv, 1, "a NAME or UUID")) < 0)
                return r;
        if ((r = cli_server_ref_check(argv[optind])) < 0)
                return r;
        if (spec_args_empty(&a))
                return cli_usage(TOPIC, "server edit: nothing to change (give at least one option)");

        edit.ref = argv[optind];
        edit.spec = &a.spec;
        edit.unlabel = a.unlabel;
        edit.n_unlabel = a.n_unlabel;
        if (a.spec.n_labels)
                edit.has_set_labels = edit.set_labels = 1;
        if (a.spec.n_macs)
                edit.has_set_macs = edit.set_macs = 1;
        if (a.spec.n_ips)
                edit.has_set_ips = edit.set_ips = 1;
        if (a.clear_group)
                edit.has_clear_group = edit.clear_group = 1;
        if (a.clear_require && a.spec.n_require_labels)
                return cli_usage(TOPIC, "--require-label none goes alone");
        if (a.spec.n_require_labels || a.clear_require)
                edit.has_set_require = edit.set_require = 1;
        req.op_case = LSC__REQUEST__OP_SERVER_EDIT;
        req.server_edit = &edit;
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;
        return print_one(o, reply);
}

/* Parses the options of a verb that takes only global ones, and `want` arguments. */
static int plain_args(struct cli_opts *o, const char *verb, int argc, char **argv,
                      int want, const char *what)
{
        return cli_plain_args(o, TOPIC, verb, argc, argv, want, what);
}

static int server_list(struct cli_opts *o, int argc, char **argv)
{
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__ServerList list = LSC__SERVER_LIST__INIT;
        int r;

        if ((r = cli_list_args(o, TOPIC, argc, argv, &list.limit)) != 0)
                return r;
        list.has_limit = list.limit > 0;
        req.op_case = LSC__REQUEST__OP_SERVER_LIST;
        req.server_list = &list;
        if ((r = cli_call_list(o, &req, &list.after, &reply)) < 0)
                return r;
        return cli_print_servers(o, reply->servers, reply->n_servers);
}

static int server_show(struct cli_opts *o, int argc, char **argv)
{
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__Ref ref = LSC__REF__INIT;
        int r;

        if ((r = plain_args(o, "show", argc, argv, 1, "a NAME or UUID")) != 0)
                return r;
        if ((r = cli_server_ref_check(argv[optind])) < 0)
                return r;
        ref.ref = argv[optind];
        req.op_case = LSC__REQUEST__OP_SERVER_GET;
        req.server_get = &ref;
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;
        if (reply->n_servers < 1 || !reply->servers[0])
                return lsc_err_set(-EBADMSG, "the manager's reply carries no server");
        return cli_print_server_shown(o, reply->servers[0]);
}

static int server_delete(struct cli_opts *o, int argc, char **argv)
{
        _cleanup_reply_ Lsc__Reply *reply = NULL;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__Ref ref = LSC__REF__INIT;
        const Lsc__Server *s;
        int r;

        if ((r = plain_args(o, "delete", argc, argv, 1, "a NAME or UUID")) != 0)
                return r;
        if ((r = cli_server_ref_check(argv[optind])) < 0)
                return r;
        ref.ref = argv[optind];
        req.op_case = LSC__REQUEST__OP_SERVER_DELETE;
        req.server_delete = &ref;
        if ((r = cli_call(o, &req, &reply)) < 0)
                return r;

        s = reply->n_servers > 0 ? reply->servers[0] : NULL;
        if (o->json)
                return s ? cli_print_server(o, s) : (printf("null\n"), 0);
        if (s && s->spec && s->spec->name && s->state && strcmp(s->state, "stopping") == 0)
                printf("deleting server %s (%s): its host stops it first\n", s->spec->name,
                       s->uuid ? s->uuid : "?");
        else if (s && s->spec && s->spec->name)
                printf("deleted server %s (%s)\n", s->spec->name, s->uuid ? s->uuid : "?");
        else
                printf("deleted server %s\n", ref.ref);
        return 0;
}

int cli_server(struct cli_opts *o, int argc, char **argv)
{
        static const struct cli_verb verbs[] = {
                { "create", server_create },
                { "list",   server_list },
                { "show",   server_show },
                { "edit",   server_edit },
                { "delete", server_delete },
                { "start",  cli_server_start },
                { "stop",   cli_server_stop },
                { "migrate", cli_server_migrate },
                { "renew",  cli_server_renew },
        };

        return cli_dispatch(o, TOPIC, verbs, ARRAY_SIZE(verbs), argc, argv);
}
