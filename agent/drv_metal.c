/* The metal driver: one physical machine reached through its BMC (IPMI, common/ipmi.c).
 * Binding an identity writes its iPXE script and dnsmasq entries into the boot dir, sets
 * the next boot to PXE, powers the machine on, and returns only when the booted initrd
 * calls back (HTTP, this file's listener) with the identity's uuid and generation:
 * running means booted, not powered. What the machine holds is recorded in a file in
 * the state dir, so a restarted agent lists it with its uuid and generation. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "driver.h"
#include "drv_metal.h"
#include "err.h"
#include "log.h"
#include "util.h"

#define RECORD_FILE "metal.record"
#define METAL_IPXE_LOADER "undionly.kpxe"     /* in boot_dir, for firmware that is not iPXE */

/* What the machine holds: at most one identity. */
struct metal_record {
        bool held;
        char uuid[DRV_UUID_STR];
        char name[LSC_NAME_MAX + 1];
        uint64_t generation;
        bool booted;                     /* the callback came for this generation */
};

struct drv_metal {
        struct drv base;                 /* first: the handle the agent holds */
        struct drv_metal_config cfg;     /* strings below are copies */
        char *boot_dir, *boot_url, *boot_kernel, *boot_initrd, *boot_cmdline;
        char *record_path;
        char mac[LSC_MAC_STR];           /* "52:54:00:..." */
        char mac_key[13];                /* "525400..." for file names and dnsmasq tags */
        struct drv_capacity cap;
        struct MHD_Daemon *http;
        pthread_mutex_t lock;
        pthread_cond_t booted;           /* the callback arrived */
        struct metal_record rec;         /* under lock; the file follows it */
        bool last_on;                    /* the last power state the BMC told, under lock */
        bool power_known;                /* last_on has been read */
};

static struct drv_metal *metal_of(struct drv *d)
{
        return (struct drv_metal *)d;
}

static char *dup_or_null(const char *s)
{
        return s ? strdup(s) : NULL;
}

/* ---- files: the record, the iPXE script, dnsmasq's entries ---- */

/* Writes path through a temporary file and rename, so a reader (dnsmasq, TFTP, a
 * restarted agent) sees the old or the new content, never half. */
static int file_replace(const char *path, const char *text, mode_t mode)
{
        _cleanup_free_ char *tmp = NULL;
        size_t len = strlen(text);
        int fd;

        if (asprintf(&tmp, "%s.tmp", path) < 0)
                return lsc_err_set(-ENOMEM, "out of memory");
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0)
                return lsc_err_set(-errno, "cannot write %s: %s", tmp, strerror(errno));
        if (write(fd, text, len) != (ssize_t)len || fsync(fd) < 0) {
                int e = errno ? errno : EIO;
                close(fd);
                unlink(tmp);
                return lsc_err_set(-e, "cannot write %s: %s", tmp, strerror(e));
        }
        close(fd);
        if (rename(tmp, path) < 0) {
                int e = errno;
                unlink(tmp);
                return lsc_err_set(-e, "cannot rename %s: %s", tmp, strerror(e));
        }
        return 0;
}

static int record_save(struct drv_metal *m, const struct metal_record *r)
{
        char text[256];

        if (!r->held) {
                if (unlink(m->record_path) < 0 && errno != ENOENT)
                        return lsc_err_set(-errno, "cannot remove %s: %s", m->record_path, strerror(errno));
                return 0;
        }
        snprintf(text, sizeof(text), "%s %llu %s %d\n", r->uuid, (unsigned long long)r->generation, r->name,
                 r->booted ? 1 : 0);
        return file_replace(m->record_path, text, 0600);
}

static int record_load(struct drv_metal *m)
{
        char uuid[64], name[128];
        unsigned long long g;
        int booted, n;
        FILE *f = fopen(m->record_path, "re");

        memset(&m->rec, 0, sizeof(m->rec));
        if (!f)
                return errno == ENOENT ? 0 : lsc_err_set(-errno, "cannot read %s: %s", m->record_path, strerror(errno));
        n = fscanf(f, "%63s %llu %127s %d", uuid, &g, name, &booted);
        fclose(f);
        if (n != 4 || !drv_uuid_valid(uuid) || g == 0 || strlen(name) > LSC_NAME_MAX)
                return lsc_err_set(-EINVAL, "%s is not a metal record (uuid generation name booted): "
                                   "remove it only once the machine is off", m->record_path);
        m->rec.held = true;
        memcpy(m->rec.uuid, uuid, DRV_UUID_STR);     /* checked: 36 characters */
        memcpy(m->rec.name, name, strlen(name) + 1);
        m->rec.generation = g;
        m->rec.booted = booted != 0;
        return 0;
}

static int boot_path(const struct drv_metal *m, const char *sub, const char *suffix, char **ret)
{
        if (asprintf(ret, "%s/%s%s%s", m->boot_dir, sub, m->mac_key, suffix) < 0)
                return lsc_err_set(-ENOMEM, "out of memory");
        return 0;
}

/* The script iPXE runs (fetched by TFTP as DHCP's boot file name): the kernel with the
 * identity on its command line, and where the booted initrd calls back. */
static int boot_files_write(struct drv_metal *m, const struct drv_spec *spec)
{
        _cleanup_free_ char *script = NULL, *host = NULL, *opts = NULL, *text = NULL;
        char ip[LSC_IP_STR] = "", dhcp[512];
        const char *hostname = spec->hostname ? spec->hostname : spec->name;
        int r;

        if (spec->n_ips)
                lsc_ip_format(&spec->ips[0], ip);
        if ((r = boot_path(m, "lsc-", ".ipxe", &script)) < 0 || (r = boot_path(m, "hosts/", "", &host)) < 0 ||
            (r = boot_path(m, "opts/", "", &opts)) < 0)
                return r;
        if (asprintf(&text,
                     "#!ipxe\n"
                     "# lsc: server %s (%s) generation %llu on the machine with MAC %s\n"
                     "kernel %s initrd=initrd ip=dhcp lsc.uuid=%s lsc.generation=%llu lsc.hostname=%s%s%s "
                     "lsc.callback=%s/booted?uuid=%s&generation=%llu%s%s\n"
                     "initrd --name initrd %s\n"
                     "boot\n",
                     spec->name, spec->uuid, (unsigned long long)spec->generation, m->mac, m->boot_kernel,
                     spec->uuid, (unsigned long long)spec->generation, hostname, ip[0] ? " lsc.ip=" : "", ip,
                     m->boot_url, spec->uuid, (unsigned long long)spec->generation,
                     m->boot_cmdline ? " " : "", m->boot_cmdline ? m->boot_cmdline : "", m->boot_initrd) < 0)
                return lsc_err_set(-ENOMEM, "out of memory");
        if ((r = file_replace(script, text, 0644)) < 0)
                return r;
        /* dnsmasq --dhcp-hostsdir: MAC -> the identity's IP and hostname, tagged so that
         * --dhcp-optsdir gives this machine its own script as boot file */
        snprintf(dhcp, sizeof(dhcp), "%s,set:lsc%s%s%s,%s\n", m->mac, m->mac_key, ip[0] ? "," : "", ip, hostname);
        if ((r = file_replace(host, dhcp, 0644)) < 0)
                return r;
        /* firmware that is not iPXE yet (no option 175) first chains into iPXE */
        snprintf(dhcp, sizeof(dhcp),
                 "tag:lsc%s,tag:ipxe,option:bootfile-name,lsc-%s.ipxe\n"
                 "tag:lsc%s,tag:!ipxe,option:bootfile-name," METAL_IPXE_LOADER "\n",
                 m->mac_key, m->mac_key, m->mac_key);
        return file_replace(opts, dhcp, 0644);
}

static void boot_files_remove(struct drv_metal *m)
{
        static const char *const parts[][2] = { { "lsc-", ".ipxe" }, { "hosts/", "" }, { "opts/", "" } };

        for (size_t i = 0; i < ARRAY_SIZE(parts); i++) {
                _cleanup_free_ char *p = NULL;
                if (boot_path(m, parts[i][0], parts[i][1], &p) == 0 && unlink(p) < 0 && errno != ENOENT)
                        log_warn("machine %s: cannot remove %s: %s", m->mac, p, strerror(errno));
        }
}

/* ---- the boot callback: GET /booted?uuid=U&generation=G ---- */

static enum MHD_Result http_answer(struct MHD_Connection *c, unsigned code, const char *text)
{
        struct MHD_Response *rsp = MHD_create_response_from_buffer(strlen(text), (void *)text,
                                                                   MHD_RESPMEM_MUST_COPY);
        enum MHD_Result r;

        if (!rsp)
                return MHD_NO;
        MHD_add_response_header(rsp, "Content-Type", "text/plain");
        r = MHD_queue_response(c, code, rsp);
        MHD_destroy_response(rsp);
        return r;
}

static enum MHD_Result http_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                    const char *version, const char *upload, size_t *upload_len, void **con_cls)
{
        struct drv_metal *m = cls;
        const char *uuid = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "uuid");
        const char *gen = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "generation");
        uint64_t g = 0;
        char *end = NULL;
        bool match;

        if (strcmp(url, "/booted") != 0)
                return http_answer(c, MHD_HTTP_NOT_FOUND, "not found: GET /booted?uuid=U&generation=G\n");
        if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
                return http_answer(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET\n");
        if (gen && *gen) {
                errno = 0;
                g = strtoull(gen, &end, 10);
        }
        if (!drv_uuid_valid(uuid) || !gen || !*gen || *end || errno || g == 0)
                return http_answer(c, MHD_HTTP_BAD_REQUEST, "want uuid (canonical) and generation (1..)\n");
        pthread_mutex_lock(&m->lock);
        match = m->rec.held && !strcmp(m->rec.uuid, uuid) && m->rec.generation == g;
        if (match && !m->rec.booted) {
                m->rec.booted = true;
                if (record_save(m, &m->rec) < 0)
                        log_warn("machine %s: %s", m->mac, lsc_err_msg(-EIO));
                pthread_cond_broadcast(&m->booted);
        }
        pthread_mutex_unlock(&m->lock);
        if (!match) {
                log_warn("machine %s: a boot callback for %s g%llu, which this machine does not hold", m->mac, uuid,
                         (unsigned long long)g);
                return http_answer(c, MHD_HTTP_CONFLICT, "this machine does not hold that identity now\n");
        }
        log_info("machine %s: %s g%llu booted", m->mac, uuid, (unsigned long long)g);
        return http_answer(c, MHD_HTTP_OK, "ok\n");
}

static int http_start(struct drv_metal *m, const char *listen_on)
{
        struct sockaddr_in sa = { .sin_family = AF_INET };
        _cleanup_free_ char *host = strdup(listen_on);
        char *colon = host ? strrchr(host, ':') : NULL;
        unsigned long port;

        if (!host)
                return lsc_err_set(-ENOMEM, "out of memory");
        if (!colon || (port = strtoul(colon + 1, NULL, 10)) == 0 || port > 65535)
                return lsc_err_set(-EINVAL, "invalid boot_listen \"%s\": want IPv4:PORT", listen_on);
        *colon = '\0';
        if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
                return lsc_err_set(-EINVAL, "invalid boot_listen \"%s\": want IPv4:PORT", listen_on);
        sa.sin_port = htons((uint16_t)port);
        m->http = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL,
                                   http_request, m, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_CONNECTION_TIMEOUT,
                                   (unsigned)10, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_END);
        if (!m->http)
                return lsc_err_set(-EADDRINUSE, "cannot listen for boot callbacks on %s (boot_listen)", listen_on);
        return 0;
}

/* ---- the driver ---- */

static void metal_close(struct drv *d)
{
        struct drv_metal *m = metal_of(d);

        if (m->http)
                MHD_stop_daemon(m->http);
        pthread_cond_destroy(&m->booted);
        pthread_mutex_destroy(&m->lock);
        free(m->boot_dir);
        free(m->boot_url);
        free(m->boot_kernel);
        free(m->boot_initrd);
        free(m->boot_cmdline);
        free(m->record_path);
        explicit_bzero(&m->cfg.bmc.password, sizeof(m->cfg.bmc.password));
        free(m);
}

/* dnsmasq's settings for this boot dir: DHCP from the per-machine host and option
 * files (dnsmasq watches those directories), TFTP from the boot dir. The agents of one
 * boot dir all write the same text. The interface and the range are the site's: given
 * on dnsmasq's command line (docs/drivers.md). */
static int dnsmasq_conf_write(const struct drv_metal *m)
{
        _cleanup_free_ char *path = NULL, *text = NULL;

        if (asprintf(&path, "%s/dnsmasq.conf", m->boot_dir) < 0 ||
            asprintf(&text,
                     "# written by lsc-agent (driver metal); run as\n"
                     "#   dnsmasq --conf-file=%s --interface=IF --dhcp-range=NET,static,MASK\n"
                     "dhcp-hostsdir=%s/hosts\n"
                     "dhcp-optsdir=%s/opts\n"
                     "dhcp-match=set:ipxe,175\n"
                     "enable-tftp\n"
                     "tftp-root=%s\n",
                     path, m->boot_dir, m->boot_dir, m->boot_dir) < 0)
                return lsc_err_set(-ENOMEM, "out of memory");
        return file_replace(path, text, 0644);
}

static int mkdir_in(const char *dir, const char *sub)
{
        _cleanup_free_ char *p = NULL;

        if (asprintf(&p, "%s/%s", dir, sub) < 0)
                return lsc_err_set(-ENOMEM, "out of memory");
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
                return lsc_err_set(-errno, "cannot create %s: %s", p, strerror(errno));
        return 0;
}

static int metal_open(const struct drv_config *cfg, struct drv **ret)
{
        const struct drv_metal_config *mc = cfg->metal;
        pthread_condattr_t ca;
        struct drv_metal *m;
        struct drv *d;
        int r;

        if (!mc || !mc->boot_dir || !mc->boot_listen || !mc->boot_kernel || !mc->boot_initrd || !mc->bmc.host[0])
                return lsc_err_set(-EINVAL, "driver metal needs bmc_address, bmc_user, bmc_password_file, mac, "
                                   "boot_dir, boot_listen, boot_kernel and boot_initrd");
        if (!cfg->state_dir)
                return lsc_err_set(-EINVAL, "driver metal needs a state_dir for its record");
        if (!(m = calloc(1, sizeof(*m))))
                return lsc_err_set(-ENOMEM, "out of memory opening the metal driver");
        m->base.ops = &drv_metal_ops;
        d = &m->base;
        pthread_mutex_init(&m->lock, NULL);
        /* the boot deadline is on CLOCK_MONOTONIC: a wall clock step must not cut it */
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&m->booted, &ca);
        pthread_condattr_destroy(&ca);
        m->cfg = *mc;
        m->boot_dir = strdup(mc->boot_dir);
        m->boot_kernel = strdup(mc->boot_kernel);
        m->boot_initrd = strdup(mc->boot_initrd);
        m->boot_cmdline = dup_or_null(mc->boot_cmdline);
        if (mc->boot_url)
                m->boot_url = strdup(mc->boot_url);
        else if (asprintf(&m->boot_url, "http://%s", mc->boot_listen) < 0)
                m->boot_url = NULL;
        if (!m->boot_dir || !m->boot_kernel || !m->boot_initrd || !m->boot_url || (mc->boot_cmdline && !m->boot_cmdline) ||
            asprintf(&m->record_path, "%s/%s", cfg->state_dir, RECORD_FILE) < 0) {
                m->record_path = NULL;
                r = lsc_err_set(-ENOMEM, "out of memory opening the metal driver");
                goto fail;
        }
        if (!m->cfg.boot_timeout_ms)
                m->cfg.boot_timeout_ms = DRV_METAL_DEFAULT_BOOT_TIMEOUT_MS;
        lsc_mac_format(&mc->mac, m->mac);
        for (int i = 0, k = 0; i < 6; i++, k += 2)
                snprintf(m->mac_key + k, 3, "%02x", mc->mac.b[i]);
        /* a machine has what it has: capacity is configured, there is no default */
        m->cap = (struct drv_capacity){ .vcpus = cfg->vcpus, .memory_mib = cfg->memory_mib, .disk_gib = cfg->disk_gib };
        if (!m->cap.vcpus || !m->cap.memory_mib) {
                r = lsc_err_set(-EINVAL, "driver metal needs the machine's vcpus and memory_mib");
                goto fail;
        }
        if ((r = mkdir_in(m->boot_dir, "hosts")) < 0 || (r = mkdir_in(m->boot_dir, "opts")) < 0 ||
            (r = dnsmasq_conf_write(m)) < 0 ||
            (r = record_load(m)) < 0 || (r = http_start(m, mc->boot_listen)) < 0)
                goto fail;
        *ret = d;
        return 0;
fail:
        metal_close(d);
        return r;
}

static int metal_capacity(struct drv *d, struct drv_capacity *ret)
{
        *ret = metal_of(d)->cap;
        return 0;
}

/* The power state for a listing: what health() (every probe) or the last change read
 * from the BMC, so a probe costs one IPMI call, not two; asked for when not known yet.
 * Unknown counts as on: a BMC that does not answer must not make an identity look
 * crashed. */
static bool power_now(struct drv_metal *m)
{
        bool on = true, known;
        int r;

        pthread_mutex_lock(&m->lock);
        known = m->power_known;
        on = m->last_on;
        pthread_mutex_unlock(&m->lock);
        if (known)
                return on;
        if ((r = lsc_ipmi_power_get(&m->cfg.bmc, &on)) < 0) {
                log_debug("machine %s: %s", m->mac, lsc_err_msg(r));
                return true;
        }
        pthread_mutex_lock(&m->lock);
        m->last_on = on;
        m->power_known = true;
        pthread_mutex_unlock(&m->lock);
        return on;
}

static int metal_list(struct drv *d, struct drv_instance **ret)
{
        struct drv_metal *m = metal_of(d);
        struct drv_instance *out = calloc(1, sizeof(*out));
        struct metal_record rec;
        bool on;

        if (!out)
                return lsc_err_set(-ENOMEM, "out of memory listing instances");
        pthread_mutex_lock(&m->lock);
        rec = m->rec;
        pthread_mutex_unlock(&m->lock);
        if (!rec.held) {
                *ret = out;
                return 0;
        }
        on = power_now(m);
        snprintf(out->uuid, sizeof(out->uuid), "%s", rec.uuid);
        snprintf(out->name, sizeof(out->name), "%s", rec.name);
        out->generation = rec.generation;
        /* running means booted: powered but not called back yet is still starting */
        if (!rec.booted)
                out->state = DRV_STATE_STOPPED;
        else
                out->state = on ? DRV_STATE_RUNNING : DRV_STATE_CRASHED;
        *ret = out;
        return 1;
}

/* Power off, confirmed, then forget what the machine held. Under no lock: the BMC is slow. */
static int power_off_forget(struct drv_metal *m, const char *uuid, uint64_t generation)
{
        struct metal_record none = {0};
        int r = lsc_ipmi_power_off_confirmed(&m->cfg.bmc, m->cfg.bmc.timeout_ms ? m->cfg.bmc.timeout_ms * 2 : 10000);

        if (r < 0)
                return r;
        pthread_mutex_lock(&m->lock);
        m->last_on = false;
        m->power_known = true;
        if (m->rec.held && !strcmp(m->rec.uuid, uuid) && m->rec.generation <= generation) {
                if ((r = record_save(m, &none)) == 0)
                        m->rec = none;
        }
        pthread_mutex_unlock(&m->lock);
        if (r == 0)
                boot_files_remove(m);
        return r;
}

static int metal_instantiate(struct drv *d, const struct drv_spec *spec)
{
        struct drv_metal *m = metal_of(d);
        struct metal_record rec = { .held = true, .generation = spec->generation };
        struct timespec until;
        bool on = false, booted;
        int r = drv_spec_check(spec);

        if (r < 0)
                return r;
        if (spec->kind != LSC_KIND_METAL)
                return lsc_err_set(-EINVAL, "instance %s is a %s: a metal host runs metal identities", spec->uuid,
                                   lsc_kind_names[spec->kind]);
        pthread_mutex_lock(&m->lock);
        rec.booted = m->rec.held && !strcmp(m->rec.uuid, spec->uuid) && m->rec.generation == spec->generation &&
                     m->rec.booted;
        if (m->rec.held && strcmp(m->rec.uuid, spec->uuid) != 0)
                r = lsc_err_set(-EBUSY, "machine %s holds %s (%s) g%llu: one identity per machine", m->mac,
                                m->rec.name, m->rec.uuid, (unsigned long long)m->rec.generation);
        else if (m->rec.held && m->rec.generation > spec->generation)
                r = lsc_err_set(-ESTALE, "instance %s runs generation %llu, newer than %llu", spec->uuid,
                                (unsigned long long)m->rec.generation, (unsigned long long)spec->generation);
        pthread_mutex_unlock(&m->lock);
        if (r < 0)
                return r;
        /* the same generation, booted and powered: nothing to do (idempotent) */
        if (rec.booted && lsc_ipmi_power_get(&m->cfg.bmc, &on) == 0 && on)
                return 0;
        if (m->rec.held && m->rec.generation < spec->generation &&
            (r = power_off_forget(m, spec->uuid, spec->generation - 1)) < 0)
                return r;
        snprintf(rec.uuid, sizeof(rec.uuid), "%s", spec->uuid);
        snprintf(rec.name, sizeof(rec.name), "%s", spec->name);
        rec.booted = false;
        /* recorded before power goes on: a crash from here on still lists the identity,
         * so the manager destroys (powers off) what it did not want */
        pthread_mutex_lock(&m->lock);
        if ((r = record_save(m, &rec)) == 0)
                m->rec = rec;
        pthread_mutex_unlock(&m->lock);
        if (r < 0 || (r = boot_files_write(m, spec)) < 0 || (r = lsc_ipmi_boot_pxe(&m->cfg.bmc)) < 0 ||
            (r = lsc_ipmi_power_get(&m->cfg.bmc, &on)) < 0 ||
            (r = lsc_ipmi_power_set(&m->cfg.bmc, on ? LSC_IPMI_POWER_CYCLE : LSC_IPMI_POWER_ON)) < 0)
                return r;
        pthread_mutex_lock(&m->lock);
        m->last_on = m->power_known = true;
        pthread_mutex_unlock(&m->lock);
        log_info("machine %s: PXE boot of %s (%s) g%llu, power %s; waiting up to %u s for its callback", m->mac,
                 spec->name, spec->uuid, (unsigned long long)spec->generation, on ? "cycled" : "on",
                 m->cfg.boot_timeout_ms / 1000);
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += m->cfg.boot_timeout_ms / 1000;
        until.tv_nsec += (long)(m->cfg.boot_timeout_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&m->lock);
        while (!(booted = m->rec.booted) && m->rec.held && !strcmp(m->rec.uuid, spec->uuid))
                if (pthread_cond_timedwait(&m->booted, &m->lock, &until) == ETIMEDOUT) {
                        booted = m->rec.booted;
                        break;
                }
        pthread_mutex_unlock(&m->lock);
        if (booted)
                return 0;
        /* a boot that never called back: off again, so the next binding starts clean */
        if ((r = power_off_forget(m, spec->uuid, spec->generation)) < 0)
                log_warn("machine %s: power off after a failed boot: %s", m->mac, lsc_err_msg(r));
        return lsc_err_set(-ETIMEDOUT, "machine %s did not call back within %u s of power on", m->mac,
                           m->cfg.boot_timeout_ms / 1000);
}

static int metal_destroy(struct drv *d, const char *uuid, uint64_t generation)
{
        struct drv_metal *m = metal_of(d);
        bool mine;

        if (!drv_uuid_valid(uuid))
                return lsc_err_set(-EINVAL, "invalid uuid to destroy");
        pthread_mutex_lock(&m->lock);
        mine = m->rec.held && !strcmp(m->rec.uuid, uuid) && m->rec.generation <= generation;
        pthread_mutex_unlock(&m->lock);
        if (!mine)
                return 0;
        return power_off_forget(m, uuid, generation);
}

/* A soft shutdown needs the OS's cooperation that a BMC cannot observe apart from
 * power: destroy is a power off, and it counts as "had to be destroyed". */
static int metal_shutdown(struct drv *d, const char *uuid, uint64_t generation, uint32_t timeout_ms)
{
        int r = metal_destroy(d, uuid, generation);

        return r < 0 ? r : 1;
}

static int metal_health(struct drv *d)
{
        struct drv_metal *m = metal_of(d);
        bool on;
        int r = lsc_ipmi_power_get(&m->cfg.bmc, &on);

        if (r < 0)
                return lsc_err_set(-EIO, "%s", lsc_err_msg(r));
        pthread_mutex_lock(&m->lock);
        m->last_on = on;
        m->power_known = true;
        pthread_mutex_unlock(&m->lock);
        return 0;
}

const struct drv_ops drv_metal_ops = {
        .name = "metal",
        .open = metal_open,
        .close = metal_close,
        .capacity = metal_capacity,
        .list = metal_list,
        .instantiate = metal_instantiate,
        .destroy = metal_destroy,
        .shutdown = metal_shutdown,
        .health = metal_health,
};
