/* What lsc prints: aligned tables and key: value lines for people, JSON (jansson,
 * indent 2) for programs. Everything here comes from the manager, so text shown on a
 * terminal has its control characters masked. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include "cli.h"
#include "err.h"
#include "util.h"
#include "validate.h"

static const Lsc__ServerSpec empty_spec = LSC__SERVER_SPEC__INIT;

static const char *or_dash(const char *s)
{
        return s && *s ? s : "-";
}

static int oom(void)
{
        return lsc_err_set(-ENOMEM, "out of memory");
}

/* ---- time and sizes ---------------------------------------------------- */

void cli_format_time_us(int64_t us, char *buf, size_t len)
{
        int64_t secs = us / 1000000, frac = us % 1000000;
        struct tm tm;
        time_t t;
        char base[32];

        if (frac < 0) {                 /* floor, for instants before 1970 */
                frac += 1000000;
                secs--;
        }
        t = (time_t)secs;
        if (!gmtime_r(&t, &tm) || !strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm)) {
                snprintf(buf, len, "@%" PRId64 "us", us);
                return;
        }
        snprintf(buf, len, "%s.%06" PRId64 "Z", base, frac);
}

static void format_time_s(int64_t s, char *buf, size_t len)
{
        struct tm tm;
        time_t t = (time_t)s;

        if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
                snprintf(buf, len, "@%" PRId64, s);
}

/* Exact larger units where they fit: "2GiB", "1536MiB" (sep between number and unit). */
static void format_mib(uint64_t mib, const char *sep, char *buf, size_t len)
{
        if (mib && mib % (1024 * 1024) == 0)
                snprintf(buf, len, "%" PRIu64 "%sTiB", mib / (1024 * 1024), sep);
        else if (mib && mib % 1024 == 0)
                snprintf(buf, len, "%" PRIu64 "%sGiB", mib / 1024, sep);
        else
                snprintf(buf, len, "%" PRIu64 "%sMiB", mib, sep);
}

static void format_gib(uint64_t gib, const char *sep, char *buf, size_t len)
{
        if (gib && gib % (1024 * 1024) == 0)
                snprintf(buf, len, "%" PRIu64 "%sPiB", gib / (1024 * 1024), sep);
        else if (gib && gib % 1024 == 0)
                snprintf(buf, len, "%" PRIu64 "%sTiB", gib / 1024, sep);
        else
                snprintf(buf, len, "%" PRIu64 "%sGiB", gib, sep);
}

/* v joined by sep, or NULL when out of memory; "" for none. */
static char *join(char *const *v, size_t n, const char *sep)
{
        size_t len = 1, off = 0;
        char *s;

        for (size_t i = 0; i < n; i++)
                len += strlen(v[i] ? v[i] : "") + strlen(sep);
        s = malloc(len);
        if (!s)
                return NULL;
        s[0] = '\0';
        for (size_t i = 0; i < n; i++)
                off += (size_t)snprintf(s + off, len - off, "%s%s", i ? sep : "", v[i] ? v[i] : "");
        return s;
}

static char *join_labels(Lsc__Label *const *labels, size_t n, const char *sep)
{
        size_t len = 1, off = 0;
        char *s;

        for (size_t i = 0; i < n; i++)
                len += strlen(or_dash(labels[i]->key)) + strlen(or_dash(labels[i]->value)) +
                       1 + strlen(sep);
        s = malloc(len);
        if (!s)
                return NULL;
        s[0] = '\0';
        for (size_t i = 0; i < n; i++)
                off += (size_t)snprintf(s + off, len - off, "%s%s=%s", i ? sep : "",
                                        or_dash(labels[i]->key), or_dash(labels[i]->value));
        return s;
}

/* ---- text: tables and key: value lines ------------------------------- */

struct table {
        size_t ncols;
        char **cells;                    /* row-major, the header first */
        size_t n, cap;
};

static void table_done(struct table *t)
{
        for (size_t i = 0; i < t->n; i++)
                free(t->cells[i]);
        free(t->cells);
}

/* Adds one cell (a copy, control characters masked as '?'). */
static int table_add(struct table *t, const char *cell)
{
        char *c;

        if (t->n == t->cap) {
                size_t cap = t->cap ? 2 * t->cap : 64;
                char **v = realloc(t->cells, cap * sizeof(*v));
                if (!v)
                        return oom();
                t->cells = v;
                t->cap = cap;
        }
        c = strdup(cell && *cell ? cell : "-");
        if (!c)
                return oom();
        for (char *p = c; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        *p = '?';
        t->cells[t->n++] = c;
        return 0;
}

static int table_addf(struct table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int table_addf(struct table *t, const char *fmt, ...)
{
        char buf[128];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        return table_add(t, buf);
}

static void table_print(const struct table *t)
{
        size_t w[16] = { 0 };

        for (size_t i = 0; i < t->n; i++) {
                size_t l = strlen(t->cells[i]);
                if (l > w[i % t->ncols])
                        w[i % t->ncols] = l;
        }
        for (size_t i = 0; i < t->n; i++) {
                size_t col = i % t->ncols;
                if (col + 1 == t->ncols)
                        printf("%s\n", t->cells[i]);
                else
                        printf("%-*s   ", (int)w[col], t->cells[i]);
        }
}

/* One "key:   value" line, value masked like table cells. */
static void kv(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void kv(const char *key, const char *fmt, ...)
{
        char val[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(val, sizeof(val), fmt, ap);
        va_end(ap);
        for (char *p = val; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        *p = '?';
        printf("%-12s %s\n", key, val[0] ? val : "-");
}

/* ---- measured load ------------------------------------------------------- */

/* The daily profile on one line: an eighth-block per UTC hour 00-23, scaled to the
 * day's highest bucket; '.' for hours not measured yet. */
static void sparkline(const Lsc__Measured *m, char *buf, size_t len, double *ret_peak)
{
        static const char *const bars[] = { "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█" };
        double peak = 0;
        size_t at = 0;

        for (size_t i = 0; i < m->n_profile_vcpus; i++)
                if (m->profile_vcpus[i] > peak)
                        peak = m->profile_vcpus[i];
        buf[0] = '\0';
        for (size_t i = 0; i < m->n_profile_vcpus && at + 4 < len; i++) {
                double v = m->profile_vcpus[i];
                const char *c = v < 0 ? "." : bars[peak > 0 ? (int)(v / peak * 7.0 + 0.5) : 0];

                at += (size_t)snprintf(buf + at, len - at, "%s", c);
        }
        *ret_peak = peak;
}

/* Measured load lines; of_vcpus: a host's physical vCPUs (a share is shown), 0 for a server. */
static void measured_text(const Lsc__Measured *m, uint32_t of_vcpus)
{
        char t[40], pct[48] = "", line[160];
        double peak;
        int n = 0;

        if (!m) {
                kv("load:", "not measured (by this lscd)");
                return;
        }
        format_time_s(m->sampled_at, t, sizeof(t));
        if (of_vcpus)
                snprintf(pct, sizeof(pct), " of %u (%.0f%%)", of_vcpus, m->cpu_vcpus * 100.0 / of_vcpus);
        kv("load:", "%.2f vCPUs busy%s, %" PRIu64 " MiB in use (at %s)", m->cpu_vcpus, pct, m->memory_mib, t);
        if (m->has_cpu_mean_1h)
                kv("last hour:", "mean %.2f, peak %.2f vCPUs; memory peak %" PRIu64 " MiB", m->cpu_mean_1h,
                   m->cpu_peak_1h, m->memory_peak_1h_mib);
        if (!m->n_profile_vcpus)
                return;
        for (size_t i = 0; i < m->n_profile_vcpus; i++)
                n += m->profile_vcpus[i] >= 0;
        sparkline(m, line, sizeof(line), &peak);
        if (n)
                kv("daily:", "%s  (UTC 00-23, %d hour%s measured, top %.2f vCPUs; expected %.2f)", line, n,
                   n == 1 ? "" : "s", peak, m->cpu_expected);
        else
                kv("daily:", "no whole hour measured yet");
}

static int server_text(const Lsc__Server *s, bool with_load)
{
        const Lsc__ServerSpec *sp = s->spec ? s->spec : &empty_spec;
        _cleanup_free_ char *macs = join(sp->macs, sp->n_macs, ", ");
        _cleanup_free_ char *ips = join(sp->ips, sp->n_ips, ", ");
        _cleanup_free_ char *labels = join_labels(sp->labels, sp->n_labels, ", ");
        char mem[32], disk[32], life[32], t[40];

        if (!macs || !ips || !labels)
                return oom();
        format_mib(sp->memory_mib, " ", mem, sizeof(mem));
        format_gib(sp->disk_gib, " ", disk, sizeof(disk));

        kv("name:", "%s", or_dash(sp->name));
        kv("uuid:", "%s", or_dash(s->uuid));
        kv("kind:", "%s", or_dash(sp->kind));
        kv("vcpus:", "%u", sp->vcpus);
        if (sp->memory_mib % 1024 == 0 && sp->memory_mib)
                kv("memory:", "%" PRIu64 " MiB (%s)", sp->memory_mib, mem);
        else
                kv("memory:", "%s", mem);
        kv("disk:", "%s", sp->disk_gib ? disk : "none");
        kv("disk mode:", "%s", or_dash(sp->disk_mode));
        kv("image:", "%s", or_dash(sp->image));
        kv("macs:", "%s", or_dash(macs));
        kv("ips:", "%s", or_dash(ips));
        kv("hostname:", "%s", or_dash(sp->hostname));
        kv("labels:", "%s", or_dash(labels));
        kv("pool:", "%s", or_dash(sp->pool));
        kv("group:", "%s", or_dash(s->group));
        if (sp->lifetime_s) {
                lsc_duration_format(sp->lifetime_s, life, sizeof(life));
                kv("lifetime:", "%s (a mayfly)", life);
        } else {
                kv("lifetime:", "none");
        }
        if (s->expires_at) {
                format_time_s(s->expires_at, t, sizeof(t));
                kv("expires:", "%s", t);
        } else {
                kv("expires:", "never");
        }
        if (sp->lifetime_s || s->turnovers || s->postponed)
                kv("turnovers:", "%" PRIu64 " so far; death postponed %" PRIu64 " time%s (no rebirth host); "
                   "renewed %u time%s in this binding", s->turnovers, s->postponed, s->postponed == 1 ? "" : "s",
                   s->renewals, s->renewals == 1 ? "" : "s");
        if (s->turnover_to && s->turnover_to[0])
                kv("turnover:", "under way: reborn on %s (reserved)", s->turnover_to);
        kv("desired:", "%s", or_dash(s->desired));
        if (sp->n_require_labels) {
                _cleanup_free_ char *req = join_labels(sp->require_labels, sp->n_require_labels, ", ");
                if (!req)
                        return oom();
                kv("requires:", "hosts labelled %s", req);
        }
        kv("state:", "%s", or_dash(s->state));
        if (s->reason && s->reason[0])
                kv("reason:", "%s", s->reason);
        if (s->failures)
                kv("failures:", "%u failed binding%s in a row", s->failures, s->failures == 1 ? "" : "s");
        kv("host:", "%s", or_dash(s->host));
        kv("generation:", "%" PRIu64, s->generation);
        if (with_load)
                measured_text(s->measured, 0);
        format_time_s(s->created_at, t, sizeof(t));
        kv("created:", "%s", s->created_at ? t : "-");
        format_time_s(s->updated_at, t, sizeof(t));
        kv("updated:", "%s", s->updated_at ? t : "-");
        if (sp->kind && strcmp(sp->kind, "metal") == 0)
                kv("note:", "metal boots over the network with the machine's own MACs; "
                   "the identity keeps its IPs, hostname and disk");
        return 0;
}

static int servers_table(Lsc__Server *const *v, size_t n)
{
        static const char *const head[] = {
                "NAME", "UUID", "KIND", "VCPUS", "MEMORY", "DISK", "STATE", "HOST", "IPS",
        };
        _cleanup_(table_done) struct table t = { .ncols = ARRAY_SIZE(head) };
        int r = 0;

        for (size_t i = 0; i < ARRAY_SIZE(head) && r == 0; i++)
                r = table_add(&t, head[i]);
        for (size_t i = 0; i < n && r == 0; i++) {
                const Lsc__Server *s = v[i];
                const Lsc__ServerSpec *sp = s->spec ? s->spec : &empty_spec;
                _cleanup_free_ char *ips = join(sp->ips, sp->n_ips, ",");
                char mem[32], disk[32];

                if (!ips)
                        return oom();
                format_mib(sp->memory_mib, "", mem, sizeof(mem));
                format_gib(sp->disk_gib, "", disk, sizeof(disk));
                if ((r = table_add(&t, sp->name)) < 0 ||
                    (r = table_add(&t, s->uuid)) < 0 ||
                    (r = table_add(&t, sp->kind)) < 0 ||
                    (r = table_addf(&t, "%u", sp->vcpus)) < 0 ||
                    (r = table_add(&t, mem)) < 0 ||
                    (r = table_add(&t, sp->disk_gib ? disk : "-")) < 0 ||
                    (r = table_add(&t, s->state)) < 0 ||
                    (r = table_add(&t, s->host)) < 0)
                        return r;
                r = table_add(&t, ips);
        }
        if (r < 0)
                return r;
        table_print(&t);
        return 0;
}

/* ---- JSON ---------------------------------------------------------------- */

/* jansson's own cleanup helper */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* A JSON string, or null for NULL/empty. jansson wants UTF-8: anything else is
 * shown with its bad bytes as '?' rather than dropped. */
static json_t *jstr(const char *s)
{
        json_t *j;
        char *copy;

        if (!s || !*s)
                return json_null();
        j = json_string(s);
        if (j)
                return j;
        copy = strdup(s);
        if (!copy)
                return NULL;
        for (char *p = copy; *p; p++)
                if ((unsigned char)*p >= 0x80)
                        *p = '?';
        j = json_string(copy);
        free(copy);
        return j;
}

/* Sets key to v (stolen); counts a NULL v (out of memory) as a failure. */
static int jset(json_t *o, const char *key, json_t *v)
{
        return v && json_object_set_new(o, key, v) == 0 ? 0 : -1;
}

static json_t *jstrings(char *const *v, size_t n)
{
        json_t *a = json_array();

        for (size_t i = 0; a && i < n; i++) {
                json_t *e = jstr(v[i]);
                if (!e || json_array_append_new(a, e) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

static json_t *jtime_s(int64_t s)
{
        char buf[40];

        if (!s)
                return json_null();
        format_time_s(s, buf, sizeof(buf));
        return json_string(buf);
}

static json_t *measured_json(const Lsc__Measured *m, uint32_t of_vcpus)
{
        json_t *o, *prof;
        int bad;

        if (!m)
                return json_null();
        o = json_object();
        prof = json_array();
        bad = !o || !prof;
        for (size_t i = 0; !bad && i < m->n_profile_vcpus; i++)
                bad |= json_array_append_new(prof, m->profile_vcpus[i] >= 0 ? json_real(m->profile_vcpus[i])
                                                                            : json_null()) < 0;
        if (bad) {
                json_decref(o);
                json_decref(prof);
                return NULL;
        }
        bad |= jset(o, "cpu_vcpus", json_real(m->cpu_vcpus));
        if (of_vcpus)
                bad |= jset(o, "cpu_pct", json_real(m->cpu_vcpus * 100.0 / of_vcpus));
        bad |= jset(o, "memory_mib", json_integer((json_int_t)m->memory_mib));
        bad |= jset(o, "sampled_at", jtime_s(m->sampled_at));
        bad |= jset(o, "cpu_mean_1h", m->has_cpu_mean_1h ? json_real(m->cpu_mean_1h) : json_null());
        bad |= jset(o, "cpu_peak_1h", m->has_cpu_peak_1h ? json_real(m->cpu_peak_1h) : json_null());
        bad |= jset(o, "memory_peak_1h_mib", m->has_memory_peak_1h_mib
                                                     ? json_integer((json_int_t)m->memory_peak_1h_mib)
                                                     : json_null());
        if (m->n_profile_vcpus) {
                bad |= jset(o, "cpu_expected", m->has_cpu_expected ? json_real(m->cpu_expected) : json_null());
                bad |= jset(o, "profile_vcpus", prof);
        } else {
                json_decref(prof);
        }
        if (bad) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static json_t *server_json(const Lsc__Server *s, bool with_load)
{
        const Lsc__ServerSpec *sp = s->spec ? s->spec : &empty_spec;
        json_t *o = json_object(), *labels = json_object();
        int bad = !o || !labels;

        for (size_t i = 0; !bad && i < sp->n_labels; i++)
                bad |= jset(labels, sp->labels[i]->key ? sp->labels[i]->key : "",
                            jstr(sp->labels[i]->value));
        if (bad) {
                json_decref(o);
                json_decref(labels);
                return NULL;
        }
        bad |= jset(o, "uuid", jstr(s->uuid));
        bad |= jset(o, "name", jstr(sp->name));
        bad |= jset(o, "kind", jstr(sp->kind));
        bad |= jset(o, "vcpus", json_integer(sp->vcpus));
        bad |= jset(o, "memory_mib", json_integer((json_int_t)sp->memory_mib));
        bad |= jset(o, "disk_gib", json_integer((json_int_t)sp->disk_gib));
        bad |= jset(o, "disk_mode", jstr(sp->disk_mode));
        bad |= jset(o, "image", jstr(sp->image));
        bad |= jset(o, "macs", jstrings(sp->macs, sp->n_macs));
        bad |= jset(o, "ips", jstrings(sp->ips, sp->n_ips));
        bad |= jset(o, "hostname", jstr(sp->hostname));
        bad |= jset(o, "labels", labels);
        bad |= jset(o, "pool", jstr(sp->pool));
        bad |= jset(o, "group", jstr(s->group));
        bad |= jset(o, "lifetime_s", sp->lifetime_s ? json_integer((json_int_t)sp->lifetime_s)
                                                    : json_null());
        bad |= jset(o, "expires_at", jtime_s(s->expires_at));
        bad |= jset(o, "turnovers", json_integer((json_int_t)s->turnovers));
        bad |= jset(o, "postponed", json_integer((json_int_t)s->postponed));
        bad |= jset(o, "renewals", json_integer(s->renewals));
        bad |= jset(o, "turnover_to", s->turnover_to && s->turnover_to[0] ? jstr(s->turnover_to) : json_null());
        bad |= jset(o, "desired", jstr(s->desired));
        {
                json_t *req = json_object();
                bad |= !req;
                for (size_t i = 0; !bad && i < sp->n_require_labels; i++)
                        bad |= jset(req, sp->require_labels[i]->key ? sp->require_labels[i]->key : "",
                                    jstr(sp->require_labels[i]->value));
                bad |= jset(o, "require_labels", req);
        }
        bad |= jset(o, "state", jstr(s->state));
        bad |= jset(o, "reason", jstr(s->reason));
        bad |= jset(o, "failures", json_integer(s->failures));
        bad |= jset(o, "host", jstr(s->host));
        bad |= jset(o, "generation", json_integer((json_int_t)s->generation));
        bad |= jset(o, "created_at", jtime_s(s->created_at));
        bad |= jset(o, "updated_at", jtime_s(s->updated_at));
        /* lscd measures only for show: a list has no room for it */
        if (with_load)
                bad |= jset(o, "measured", measured_json(s->measured, 0));
        if (bad) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static json_t *pool_json(const Lsc__Pool *p)
{
        json_t *o = json_object();
        int bad = !o;

        if (bad)
                return NULL;
        bad |= jset(o, "name", jstr(p->name));
        bad |= jset(o, "cidr", jstr(p->cidr));
        bad |= jset(o, "gateway", jstr(p->gateway));
        bad |= jset(o, "size", json_integer((json_int_t)p->size));
        bad |= jset(o, "allocated", json_integer((json_int_t)p->allocated));
        if (bad) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static json_t *event_json(const Lsc__Event *e)
{
        json_t *o = json_object(), *detail = NULL;
        char at[40];
        int bad = !o;

        if (bad)
                return NULL;
        if (e->detail && e->detail[0]) {
                /* detail is JSON text written by lscd; show it as text if it is not */
                detail = json_loads(e->detail, JSON_DECODE_ANY, NULL);
                if (!detail)
                        detail = jstr(e->detail);
        } else {
                detail = json_null();
        }
        cli_format_time_us(e->at_us, at, sizeof(at));
        bad |= jset(o, "id", json_integer(e->id));
        bad |= jset(o, "at", json_string(at));
        bad |= jset(o, "actor", jstr(e->actor));
        bad |= jset(o, "kind", jstr(e->kind));
        bad |= jset(o, "server", jstr(e->server));
        bad |= jset(o, "uuid", jstr(e->uuid));
        bad |= jset(o, "detail", detail);
        if (bad) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static int json_print(json_t *j)
{
        if (!j)
                return oom();
        if (json_dumpf(j, stdout, JSON_INDENT(2)) < 0)
                return lsc_err_set(-EIO, "cannot write JSON");
        fputc('\n', stdout);
        return 0;
}

/* An array of f(v[i]). */
static json_t *json_list(void *const *v, size_t n, json_t *(*f)(const void *))
{
        json_t *a = json_array();

        for (size_t i = 0; a && i < n; i++) {
                json_t *e = f(v[i]);
                if (!e || json_array_append_new(a, e) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

static json_t *server_json_v(const void *p) { return server_json(p, false); }
static json_t *pool_json_v(const void *p) { return pool_json(p); }
static json_t *event_json_v(const void *p) { return event_json(p); }

/* ---- the entry points ---------------------------------------------------- */

static int print_server(const struct cli_opts *o, const Lsc__Server *s, bool with_load)
{
        if (o->json) {
                _cleanup_json_ json_t *j = server_json(s, with_load);
                return json_print(j);
        }
        return server_text(s, with_load);
}

int cli_print_server(const struct cli_opts *o, const Lsc__Server *s)
{
        return print_server(o, s, false);
}

int cli_print_server_shown(const struct cli_opts *o, const Lsc__Server *s)
{
        return print_server(o, s, true);
}

int cli_print_servers(const struct cli_opts *o, Lsc__Server *const *v, size_t n)
{
        if (o->json) {
                _cleanup_json_ json_t *j = json_list((void *const *)v, n, server_json_v);
                return json_print(j);
        }
        return servers_table(v, n);
}

int cli_print_pool(const struct cli_opts *o, const Lsc__Pool *p)
{
        if (o->json) {
                _cleanup_json_ json_t *j = pool_json(p);
                return json_print(j);
        }
        kv("name:", "%s", or_dash(p->name));
        kv("cidr:", "%s", or_dash(p->cidr));
        kv("gateway:", "%s", or_dash(p->gateway));
        kv("size:", "%" PRIu64, p->size);
        kv("allocated:", "%" PRIu64, p->allocated);
        return 0;
}

int cli_print_pools(const struct cli_opts *o, Lsc__Pool *const *v, size_t n)
{
        static const char *const head[] = { "NAME", "CIDR", "GATEWAY", "SIZE", "ALLOCATED" };
        _cleanup_(table_done) struct table t = { .ncols = ARRAY_SIZE(head) };
        int r = 0;

        if (o->json) {
                _cleanup_json_ json_t *j = json_list((void *const *)v, n, pool_json_v);
                return json_print(j);
        }
        for (size_t i = 0; i < ARRAY_SIZE(head) && r == 0; i++)
                r = table_add(&t, head[i]);
        for (size_t i = 0; i < n && r == 0; i++) {
                if ((r = table_add(&t, v[i]->name)) < 0 ||
                    (r = table_add(&t, v[i]->cidr)) < 0 ||
                    (r = table_add(&t, v[i]->gateway)) < 0 ||
                    (r = table_addf(&t, "%" PRIu64, v[i]->size)) < 0)
                        return r;
                r = table_addf(&t, "%" PRIu64, v[i]->allocated);
        }
        if (r < 0)
                return r;
        table_print(&t);
        return 0;
}

int cli_print_events(const struct cli_opts *o, Lsc__Event *const *v, size_t n)
{
        static const char *const head[] = { "ID", "AT", "ACTOR", "KIND", "SERVER", "DETAIL" };
        _cleanup_(table_done) struct table t = { .ncols = ARRAY_SIZE(head) };
        int r = 0;

        if (o->json) {
                _cleanup_json_ json_t *j = json_list((void *const *)v, n, event_json_v);
                return json_print(j);
        }
        for (size_t i = 0; i < ARRAY_SIZE(head) && r == 0; i++)
                r = table_add(&t, head[i]);
        for (size_t i = 0; i < n && r == 0; i++) {
                char at[40];

                cli_format_time_us(v[i]->at_us, at, sizeof(at));
                if ((r = table_addf(&t, "%" PRId64, v[i]->id)) < 0 ||
                    (r = table_add(&t, at)) < 0 ||
                    (r = table_add(&t, v[i]->actor)) < 0 ||
                    (r = table_add(&t, v[i]->kind)) < 0 ||
                    (r = table_add(&t, v[i]->server)) < 0)
                        return r;
                r = table_add(&t, v[i]->detail);
        }
        if (r < 0)
                return r;
        table_print(&t);
        return 0;
}

/* ---- hosts --------------------------------------------------------------- */

static const Lsc__Capacity empty_capacity = LSC__CAPACITY__INIT;

static json_t *host_json(const Lsc__Host *h)
{
        const Lsc__Capacity *cap = h->capacity ? h->capacity : &empty_capacity;
        const Lsc__Capacity *used = h->used ? h->used : &empty_capacity;
        json_t *o = json_object(), *labels = json_object();
        int bad = !o || !labels;

        for (size_t i = 0; !bad && i < h->n_labels; i++)
                bad |= jset(labels, h->labels[i]->key ? h->labels[i]->key : "", jstr(h->labels[i]->value));
        if (bad) {
                json_decref(o);
                json_decref(labels);
                return NULL;
        }
        bad |= jset(o, "uuid", jstr(h->uuid));
        bad |= jset(o, "name", jstr(h->name));
        bad |= jset(o, "liveness", jstr(h->liveness));
        bad |= jset(o, "admin", jstr(h->admin));
        bad |= jset(o, "driver", jstr(h->driver));
        bad |= jset(o, "kind", jstr(h->kind));
        bad |= jset(o, "labels", labels);
        bad |= jset(o, "vcpus", json_integer(cap->vcpus));
        bad |= jset(o, "memory_mib", json_integer((json_int_t)cap->memory_mib));
        bad |= jset(o, "disk_gib", json_integer((json_int_t)cap->disk_gib));
        bad |= jset(o, "alloc_ratio", json_real(h->alloc_ratio));
        bad |= jset(o, "used_vcpus", json_integer(used->vcpus));
        bad |= jset(o, "used_memory_mib", json_integer((json_int_t)used->memory_mib));
        bad |= jset(o, "used_disk_gib", json_integer((json_int_t)used->disk_gib));
        bad |= jset(o, "instances", jstrings(h->instances, h->n_instances));
        bad |= jset(o, "healthy", json_boolean(h->healthy));
        bad |= jset(o, "health", jstr(h->health));
        bad |= jset(o, "epoch", json_integer((json_int_t)h->epoch));
        bad |= jset(o, "last_seen_ms_ago", h->last_seen_ms_ago >= 0 ? json_integer(h->last_seen_ms_ago)
                                                                      : json_null());
        bad |= jset(o, "created_at", jtime_s(h->created_at));
        bad |= jset(o, "measured", measured_json(h->measured, cap->vcpus));
        if (bad) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static json_t *host_json_v(const void *p) { return host_json(p); }

int cli_print_host(const struct cli_opts *o, const Lsc__Host *h)
{
        const Lsc__Capacity *cap = h->capacity ? h->capacity : &empty_capacity;
        const Lsc__Capacity *used = h->used ? h->used : &empty_capacity;
        _cleanup_free_ char *labels = NULL, *instances = NULL;
        char created[40];

        if (o->json) {
                _cleanup_json_ json_t *j = host_json(h);
                return json_print(j);
        }
        labels = join_labels(h->labels, h->n_labels, ", ");
        instances = join(h->instances, h->n_instances, ", ");
        if (!labels || !instances)
                return oom();
        format_time_s(h->created_at, created, sizeof(created));
        kv("name:", "%s", or_dash(h->name));
        kv("uuid:", "%s", or_dash(h->uuid));
        kv("liveness:", "%s", or_dash(h->liveness));
        kv("admin:", "%s", or_dash(h->admin));
        kv("healthy:", "%s%s%s", h->healthy ? "yes" : "no", h->health && h->health[0] ? ": " : "",
           h->health ? h->health : "");
        kv("driver:", "%s (%s)", or_dash(h->driver), or_dash(h->kind));
        kv("labels:", "%s", labels[0] ? labels : "-");
        kv("vcpus:", "%u used of %u x %.2f", used->vcpus, cap->vcpus, h->alloc_ratio);
        kv("memory:", "%" PRIu64 " MiB used of %" PRIu64 " MiB x %.2f", used->memory_mib,
           cap->memory_mib, h->alloc_ratio);
        kv("disk:", "%" PRIu64 " GiB used of %" PRIu64 " GiB", used->disk_gib, cap->disk_gib);
        kv("instances:", "%s", instances[0] ? instances : "-");
        measured_text(h->measured, cap->vcpus);
        kv("epoch:", "%" PRIu64, h->epoch);
        if (h->last_seen_ms_ago >= 0)
                kv("last seen:", "%.1f s ago", (double)h->last_seen_ms_ago / 1000.0);
        else
                kv("last seen:", "never (by this lscd)");
        kv("created:", "%s", created);
        return 0;
}

int cli_print_hosts(const struct cli_opts *o, Lsc__Host *const *v, size_t n)
{
        static const char *const head[] = { "NAME", "LIVENESS", "ADMIN", "HEALTHY", "DRIVER",
                                            "VCPUS", "MEMORY", "INSTANCES", "LOAD" };
        _cleanup_(table_done) struct table t = { .ncols = ARRAY_SIZE(head) };
        int r = 0;

        if (o->json) {
                _cleanup_json_ json_t *j = json_list((void *const *)v, n, host_json_v);
                return json_print(j);
        }
        for (size_t i = 0; i < ARRAY_SIZE(head) && r == 0; i++)
                r = table_add(&t, head[i]);
        for (size_t i = 0; i < n && r == 0; i++) {
                const Lsc__Host *h = v[i];
                const Lsc__Capacity *cap = h->capacity ? h->capacity : &empty_capacity;
                const Lsc__Capacity *used = h->used ? h->used : &empty_capacity;

                if ((r = table_add(&t, h->name)) < 0 || (r = table_add(&t, h->liveness)) < 0 ||
                    (r = table_add(&t, h->admin)) < 0 || (r = table_add(&t, h->healthy ? "yes" : "no")) < 0 ||
                    (r = table_add(&t, h->driver)) < 0 ||
                    (r = table_addf(&t, "%u/%u", used->vcpus, cap->vcpus)) < 0 ||
                    (r = table_addf(&t, "%" PRIu64 "/%" PRIu64 "MiB", used->memory_mib, cap->memory_mib)) < 0)
                        return r;
                if ((r = table_addf(&t, "%zu", h->n_instances)) < 0)
                        return r;
                /* measured vCPUs busy over physical ones */
                r = h->measured ? table_addf(&t, "%.1f/%u", h->measured->cpu_vcpus, cap->vcpus) : table_add(&t, "-");
        }
        if (r < 0)
                return r;
        table_print(&t);
        return 0;
}

/* ---- placement groups ---------------------------------------------------- */

static json_t *group_json(const Lsc__Group *g)
{
        json_t *o = json_object();
        int bad = !o;

        if (bad)
                return NULL;
        bad |= jset(o, "name", jstr(g->name));
        bad |= jset(o, "policy", jstr(g->policy));
        /* affinity has no per-host limit */
        bad |= jset(o, "max_per_host", g->has_max_per_host ? json_integer(g->max_per_host) : json_null());
        bad |= jset(o, "members", jstrings(g->members, g->n_members));
        bad |= jset(o, "created_at", jtime_s(g->created_at));
        if (bad) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static json_t *group_json_v(const void *p) { return group_json(p); }

int cli_print_group(const struct cli_opts *o, const Lsc__Group *g)
{
        _cleanup_free_ char *members = NULL;
        char created[40];

        if (o->json) {
                _cleanup_json_ json_t *j = group_json(g);
                return json_print(j);
        }
        members = join(g->members, g->n_members, ", ");
        if (!members)
                return oom();
        format_time_s(g->created_at, created, sizeof(created));
        kv("name:", "%s", or_dash(g->name));
        kv("policy:", "%s", or_dash(g->policy));
        if (g->has_max_per_host)
                kv("max/host:", "%u", g->max_per_host);
        else
                kv("max/host:", "no limit");
        kv("members:", "%s", members[0] ? members : "-");
        kv("created:", "%s", g->created_at ? created : "-");
        return 0;
}

int cli_print_groups(const struct cli_opts *o, Lsc__Group *const *v, size_t n)
{
        static const char *const head[] = { "NAME", "POLICY", "MAX/HOST", "MEMBERS" };
        _cleanup_(table_done) struct table t = { .ncols = ARRAY_SIZE(head) };
        int r = 0;

        if (o->json) {
                _cleanup_json_ json_t *j = json_list((void *const *)v, n, group_json_v);
                return json_print(j);
        }
        for (size_t i = 0; i < ARRAY_SIZE(head) && r == 0; i++)
                r = table_add(&t, head[i]);
        for (size_t i = 0; i < n && r == 0; i++) {
                if ((r = table_add(&t, v[i]->name)) < 0 || (r = table_add(&t, v[i]->policy)) < 0)
                        return r;
                if (v[i]->has_max_per_host)
                        r = table_addf(&t, "%u", v[i]->max_per_host);
                else
                        r = table_add(&t, "-");
                if (r == 0)
                        r = table_addf(&t, "%zu", v[i]->n_members);
        }
        if (r < 0)
                return r;
        table_print(&t);
        return 0;
}

/* ---- plans --------------------------------------------------------------- */

int cli_print_plan(const struct cli_opts *o, const char *what, Lsc__PlanHost *const *v, size_t n)
{
        size_t fits = 0;

        for (size_t i = 0; i < n; i++)
                fits += v[i]->fits;
        if (o->json) {
                _cleanup_json_ json_t *j = json_object();
                json_t *yes = json_array(), *no = json_array();
                int bad = !j || !yes || !no;

                for (size_t i = 0; !bad && i < n; i++) {
                        if (v[i]->fits) {
                                bad |= json_array_append_new(yes, jstr(v[i]->host)) < 0;
                        } else {
                                json_t *e = json_object();
                                bad |= !e || jset(e, "host", jstr(v[i]->host)) || jset(e, "why", jstr(v[i]->why));
                                bad |= json_array_append_new(no, e) < 0;
                        }
                }
                bad |= jset(j, "server", jstr(what)) || jset(j, "feasible", yes) || jset(j, "not_feasible", no);
                if (bad)
                        return oom();
                return json_print(j);
        }
        if (fits == 0)
                printf("%s fits on no host: it would stay pending until one has room\n", what);
        else
                printf("%s would go to one of %zu host%s (chosen at random, weighted by free capacity):\n",
                       what, fits, fits == 1 ? "" : "s");
        for (size_t i = 0; i < n; i++)
                if (v[i]->fits)
                        printf("  %s\n", or_dash(v[i]->host));
        if (fits < n)
                printf("not there:\n");
        for (size_t i = 0; i < n; i++)
                if (!v[i]->fits)
                        printf("  %s: %s\n", or_dash(v[i]->host), or_dash(v[i]->why));
        printf("nothing was bound\n");
        return 0;
}
