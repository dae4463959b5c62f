/* The libvirt driver: identities become libvirt domains on any URI (test:///default,
 * the in-process test hypervisor; qemu:///system for real VMs). It owns only domains
 * whose XML carries lsc's metadata element, and asks libvirt, never a record, what runs.
 * Process-wide, once: libvirt's default error printer is silenced (errors come back as
 * lsc_err details) and a default SIGPIPE is ignored (a dying libvirtd must not kill us). */
#define _GNU_SOURCE             /* asprintf, pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <grp.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include "driver.h"
#include "err.h"
#include "util.h"
#include "validate.h"

#define LSC_XMLNS "https://lsc.dev/xmlns/instance/1"
#define LSC_XMLNS_PREFIX "lsc"

#define DEFAULT_URI "test:///default"
#define DEFAULT_STATE_DIR "/var/lib/lsc"
#define DEFAULT_IMAGE_DIR "/var/lib/lsc/images"

extern char **environ;

struct drv_libvirt {
        struct drv base;                 /* first: the handle the agent holds */
        pthread_mutex_t lock;            /* guards conn (reopened when it dies) */
        virConnectPtr conn;
        char *uri;
        char *host;                      /* this host's domains only; NULL: every lsc domain */
        char *domain_type;
        char *bridge;
        char *network;
        char *state_dir;
        char *image_dir;
        char *volume_dir;
        char *disk_dir;                  /* state_dir/disks: ephemeral overlays */
        bool diskless;                   /* test: hypervisors open no files */
        struct drv_capacity override;
};

static void domain_freep(virDomainPtr *p)
{
        if (*p)
                virDomainFree(*p);
}
#define _cleanup_domain_ _cleanup_(domain_freep)

/* Drops one reference taken by conn_get; the handle keeps its own. */
static void conn_unrefp(virConnectPtr *p)
{
        if (*p)
                virConnectClose(*p);
}
#define _cleanup_conn_ _cleanup_(conn_unrefp)

/* A virConnectListAllDomains result, freed by count (libvirt does not document a
 * terminating NULL). */
struct domain_list {
        virDomainPtr *v;
        int n;
};

static void domains_freep(struct domain_list *l)
{
        for (int i = 0; i < l->n; i++)
                virDomainFree(l->v[i]);
        free(l->v);
}
#define _cleanup_domains_ _cleanup_(domains_freep)

static struct drv_libvirt *virt_of(struct drv *d)
{
        return (struct drv_libvirt *)d;
}

static void quiet_error(void *user, virErrorPtr err)
{
}

static void virt_init(void)
{
        struct sigaction sa;

        /* virInitialize makes the library safe for threads that race to first use. */
        virInitialize();
        virSetErrorFunc(NULL, quiet_error);
        /* libvirt writes to its daemon's socket without MSG_NOSIGNAL: a libvirtd restart
         * would kill the agent with SIGPIPE instead of failing one call with -EIO.
         * Only a default disposition is changed; a program's own handler stays. */
        if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
                signal(SIGPIPE, SIG_IGN);
}

static pthread_once_t virt_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t define_lock = PTHREAD_MUTEX_INITIALIZER;

/* Records what failed with libvirt's own message and returns -EIO. */
static int virt_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int virt_fail(const char *fmt, ...)
{
        char what[256];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        return lsc_err_set(-EIO, "%s: %s", what, virGetLastErrorMessage());
}

/* The handle's connection with a reference for the caller, reopened when the daemon
 * went away (a libvirtd restart must not need an agent restart). */
static int conn_get(struct drv_libvirt *v, virConnectPtr *ret)
{
        int r = 0;

        pthread_mutex_lock(&v->lock);
        if (v->conn && virConnectIsAlive(v->conn) == 0) {
                virConnectClose(v->conn);
                v->conn = NULL;
        }
        if (!v->conn) {
                v->conn = virConnectOpen(v->uri);
                if (!v->conn)
                        r = virt_fail("cannot connect to %s", v->uri);
        }
        if (v->conn) {
                virConnectRef(v->conn);
                *ret = v->conn;
        }
        pthread_mutex_unlock(&v->lock);
        return r;
}

/* ---- small helpers ---- */

static int dup_opt(const char *s, char **ret)
{
        *ret = NULL;
        if (s && !(*ret = strdup(s)))
                return lsc_err_set(-ENOMEM, "out of memory");
        return 0;
}

static void xml_put(FILE *f, const char *s)
{
        for (; *s; s++) {
                switch (*s) {
                case '&': fputs("&amp;", f); break;
                case '<': fputs("&lt;", f); break;
                case '>': fputs("&gt;", f); break;
                case '\'': fputs("&apos;", f); break;
                case '"': fputs("&quot;", f); break;
                default: fputc(*s, f);
                }
        }
}

/* The value of attr in the first element of xml (libvirt re-quotes what we wrote, so
 * both quote styles are accepted). 0, or -ENOENT. */
static int attr_get(const char *xml, const char *attr, char *buf, size_t len)
{
        size_t alen = strlen(attr);

        for (const char *p = strstr(xml, attr); p; p = strstr(p + 1, attr)) {
                const char *end;
                char q;

                if (p == xml || (p[-1] != ' ' && p[-1] != '\t' && p[-1] != '\n'))
                        continue;
                if (p[alen] != '=' || (p[alen + 1] != '"' && p[alen + 1] != '\''))
                        continue;
                q = p[alen + 1];
                p += alen + 2;
                end = strchr(p, q);
                if (!end || (size_t)(end - p) >= len)
                        return -ENOENT;
                memcpy(buf, p, (size_t)(end - p));
                buf[end - p] = '\0';
                return 0;
        }
        return -ENOENT;
}

/* 1 and the generation when dom is lsc's and this host's, 0 when it is not (no
 * metadata, metadata naming another uuid: a copied XML does not make a domain ours, or
 * another host: several may share one libvirtd), -ENOENT when it vanished meanwhile,
 * -EIO otherwise. A domain whose metadata names no host (an older agent's) is ours. */
static int domain_owned(const struct drv_libvirt *v, virDomainPtr dom, uint64_t *ret_generation)
{
        char uuid[VIR_UUID_STRING_BUFLEN], muuid[DRV_UUID_STR], gen[24], host[LSC_NAME_MAX + 1];
        _cleanup_free_ char *meta = NULL;
        char *end;
        unsigned long long g;

        meta = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, LSC_XMLNS, 0);
        if (!meta) {
                switch (virGetLastErrorCode()) {
                case VIR_ERR_NO_DOMAIN_METADATA: return 0;
                case VIR_ERR_NO_DOMAIN: return -ENOENT;
                default: return virt_fail("cannot read metadata of domain %s", virDomainGetName(dom));
                }
        }
        if (virDomainGetUUIDString(dom, uuid) < 0)
                return virt_fail("cannot read the uuid of domain %s", virDomainGetName(dom));
        if (attr_get(meta, "uuid", muuid, sizeof(muuid)) < 0 || strcmp(muuid, uuid) != 0 ||
            attr_get(meta, "generation", gen, sizeof(gen)) < 0)
                return 0;
        if (v->host && attr_get(meta, "host", host, sizeof(host)) == 0 && strcmp(host, v->host) != 0)
                return 0;
        errno = 0;
        g = strtoull(gen, &end, 10);
        if (errno || *end || end == gen || g == 0)
                return 0;
        *ret_generation = g;
        return 1;
}

static enum drv_state domain_state(virDomainPtr dom)
{
        int state, reason;

        if (virDomainGetState(dom, &state, &reason, 0) < 0)
                return DRV_STATE_STOPPED;
        switch (state) {
        case VIR_DOMAIN_CRASHED:
                return DRV_STATE_CRASHED;
        case VIR_DOMAIN_SHUTOFF:
                return reason == VIR_DOMAIN_SHUTOFF_CRASHED ? DRV_STATE_CRASHED : DRV_STATE_STOPPED;
        case VIR_DOMAIN_NOSTATE:
                return DRV_STATE_STOPPED;
        default:
                /* running, blocked, paused, shutting down, pmsuspended: it holds the identity */
                return DRV_STATE_RUNNING;
        }
}

/* The domain with uuid, or NULL in *ret when there is none. */
static int lookup_uuid(virConnectPtr conn, const char *uuid, virDomainPtr *ret)
{
        virDomainPtr dom = virDomainLookupByUUIDString(conn, uuid);

        if (!dom && virGetLastErrorCode() != VIR_ERR_NO_DOMAIN)
                return virt_fail("cannot look up domain %s", uuid);
        *ret = dom;
        return 0;
}

/* ---- disks ---- */

static int overlay_path(struct drv_libvirt *v, const char *uuid, uint64_t generation, char **ret)
{
        if (asprintf(ret, "%s/%s-g%" PRIu64 ".qcow2", v->disk_dir, uuid, generation) < 0)
                return lsc_err_set(-ENOMEM, "out of memory");
        return 0;
}

/* Removes uuid's overlays of generation <= generation, including those a crash left
 * behind between qemu-img and define. */
static int overlays_remove(struct drv_libvirt *v, const char *uuid, uint64_t generation)
{
        DIR *dir = opendir(v->disk_dir);
        struct dirent *de;
        size_t ulen = strlen(uuid);
        int r = 0;

        if (!dir)
                return errno == ENOENT ? 0 :
                       lsc_err_set(-errno, "cannot open %s: %s", v->disk_dir, strerror(errno));
        while ((de = readdir(dir))) {
                const char *p = de->d_name;
                char *end;
                unsigned long long g;

                if (strncmp(p, uuid, ulen) != 0 || strncmp(p + ulen, "-g", 2) != 0)
                        continue;
                errno = 0;
                g = strtoull(p + ulen + 2, &end, 10);
                if (errno || end == p + ulen + 2 || strncmp(end, ".qcow2", 6) != 0 || g > generation)
                        continue;
                if (unlinkat(dirfd(dir), p, 0) < 0 && errno != ENOENT)
                        r = lsc_err_set(-errno, "cannot remove %s/%s: %s", v->disk_dir, p, strerror(errno));
        }
        closedir(dir);
        return r;
}

/* The base image file for name inside image_dir, or NULL when there is none (the
 * instance then runs diskless). Names only: a path could make any host file a disk. */
static int image_resolve(struct drv_libvirt *v, const char *name, char **ret)
{
        static const char *const suffixes[] = { "", ".qcow2", ".img", ".raw" };
        char buf[LSC_SHOW_BUF];

        *ret = NULL;
        if (!name)
                return 0;
        if (strchr(name, '/') || name[0] == '.')
                return lsc_err_set(-EINVAL, "image \"%s\" must be a file name inside %s",
                                   lsc_str_show(name, buf), v->image_dir);
        for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
                _cleanup_free_ char *path = NULL;
                struct stat st;

                if (asprintf(&path, "%s/%s%s", v->image_dir, name, suffixes[i]) < 0)
                        return lsc_err_set(-ENOMEM, "out of memory");
                if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                        *ret = TAKE_PTR(path);
                        return 0;
                }
        }
        return 0;
}

/* qcow2 or raw, by the qcow2 magic rather than the file name (cloud .img files are
 * often qcow2), and the virtual size the guest sees. */
static int image_probe(const char *path, const char **ret_format, uint64_t *ret_size)
{
        unsigned char h[32];
        struct stat st;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return lsc_err_set(-errno, "cannot open image %s: %s", path, strerror(errno));
        n = pread(fd, h, sizeof(h), 0);
        if (fstat(fd, &st) < 0)
                n = -1;
        close(fd);
        if (n < 0)
                return lsc_err_set(-EIO, "cannot read image %s", path);
        if (n == (ssize_t)sizeof(h) && memcmp(h, "QFI\xfb", 4) == 0) {
                uint64_t size = 0;

                for (int i = 24; i < 32; i++)
                        size = size << 8 | h[i];
                *ret_format = "qcow2";
                *ret_size = size;
        } else {
                *ret_format = "raw";
                *ret_size = (uint64_t)st.st_size;
        }
        return 0;
}

/* Runs argv (no shell) and waits; a failure carries the tool's stderr. */
static int run_tool(char *const argv[])
{
        posix_spawn_file_actions_t fa;
        char err[512];
        size_t len = 0;
        int pipefd[2], status, r;
        pid_t pid;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return lsc_err_set(-errno, "pipe: %s", strerror(errno));
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
        r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        close(pipefd[1]);
        if (r) {
                close(pipefd[0]);
                return lsc_err_set(-r, "cannot run %s: %s%s", argv[0], strerror(r),
                                   r == ENOENT ? " (install qemu-utils)" : "");
        }
        /* Read to EOF so a chatty tool never blocks on a full pipe; keep the start. */
        for (;;) {
                char sink[256];
                bool keep = len < sizeof(err) - 1;
                ssize_t n = read(pipefd[0], keep ? err + len : sink,
                                 keep ? sizeof(err) - 1 - len : sizeof(sink));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                if (keep)
                        len += (size_t)n;
        }
        close(pipefd[0]);
        err[len] = '\0';
        while (len && (err[len - 1] == '\n' || err[len - 1] == ' '))
                err[--len] = '\0';
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return lsc_err_set(-errno, "waitpid %s: %s", argv[0], strerror(errno));
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return lsc_err_set(-EIO, "%s %s failed: %s", argv[0], argv[1], len ? err : "no message");
        return 0;
}

static int mkdir_p1(const char *path, mode_t mode)
{
        if (mkdir(path, mode) < 0 && errno != EEXIST)
                return lsc_err_set(-errno, "cannot create %s: %s", path, strerror(errno));
        return 0;
}

/* A fresh copy-on-write overlay of base for this binding: the base is never written. */
static int overlay_create(struct drv_libvirt *v, const struct drv_spec *spec, const char *base, char **ret)
{
        _cleanup_free_ char *path = NULL;
        const char *format;
        uint64_t size, want = spec->disk_gib << 30;
        char size_s[24];
        int r;

        r = image_probe(base, &format, &size);
        if (r < 0)
                return r;
        if (want > size)
                size = want;             /* never smaller than the base: that would cut it */
        snprintf(size_s, sizeof(size_s), "%" PRIu64, size);
        r = mkdir_p1(v->state_dir, 0755);
        if (r < 0)
                return r;
        r = mkdir_p1(v->disk_dir, 0755);
        if (r < 0)
                return r;
        r = overlay_path(v, spec->uuid, spec->generation, &path);
        if (r < 0)
                return r;
        /* Left by a crash before define: this binding never ran, start it clean. */
        if (unlink(path) < 0 && errno != ENOENT)
                return lsc_err_set(-errno, "cannot remove %s: %s", path, strerror(errno));
        r = run_tool((char *[]){ "qemu-img", "create", "-q", "-f", "qcow2", "-F", (char *)format,
                                 "-b", (char *)base, path, size_s, NULL });
        if (r < 0)
                return r;
        *ret = TAKE_PTR(path);
        return 0;
}

/* Makes path's data and name durable before the volume counts as made: a host crash
 * must not leave a complete-looking volume with holes in it. */
static int fsync_path(const char *path, bool dir)
{
        int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC), r = 0;

        if (fd < 0)
                return lsc_err_set(-errno, "cannot open %s: %s", path, strerror(errno));
        if (fsync(fd) < 0 && !(dir && (errno == EINVAL || errno == EROFS)))
                r = lsc_err_set(-errno, "cannot sync %s: %s", path, strerror(errno));
        close(fd);
        return r;
}

/* The identity's own disk in volume_dir, made on its first binding and then used as
 * it is by every binding on any host; destroy never removes it. A standalone qcow2
 * copy of the image, not an overlay: the lock manager leases only the top file of a
 * disk, so a shared base would rest on nobody ever writing it, and every host would
 * need the same base at the same path forever; a copy depends on nothing but itself.
 * It is made under a name of this host and process and published with link(), which
 * never replaces: when two hosts race, the first volume wins and the other copy goes. */
static int volume_prepare(struct drv_libvirt *v, const struct drv_spec *spec, char **ret)
{
        _cleanup_free_ char *path = NULL, *tmp = NULL, *base = NULL;
        char size_s[24], host[64] = "host";
        struct stat st;
        int r = drv_volume_path(v->volume_dir, spec->uuid, &path);

        if (r < 0)
                return r;
        if (stat(path, &st) == 0) {
                if (!S_ISREG(st.st_mode))
                        return lsc_err_set(-EEXIST, "volume %s of %s is not a regular file", path, spec->uuid);
                *ret = TAKE_PTR(path);
                return 0;
        }
        if (errno != ENOENT)
                return lsc_err_set(-errno, "cannot reach volume %s: %s", path, strerror(errno));
        r = image_resolve(v, spec->image, &base);
        if (r < 0)
                return r;
        if (!base && !spec->disk_gib)
                return lsc_err_set(-EINVAL, "instance %s: a persistent disk needs an image in %s or a size",
                                   spec->uuid, v->image_dir);
        gethostname(host, sizeof(host) - 1);
        if (asprintf(&tmp, "%s.%s.%ld.tmp", path, host, (long)getpid()) < 0)
                return lsc_err_set(-ENOMEM, "out of memory");
        snprintf(size_s, sizeof(size_s), "%" PRIu64, spec->disk_gib << 30);
        unlink(tmp);                     /* a crash of this very process, pid reused */
        if (base) {
                const char *format;
                uint64_t size;

                r = image_probe(base, &format, &size);
                if (r == 0)
                        r = run_tool((char *[]){ "qemu-img", "convert", "-q", "-f", (char *)format,
                                                 "-O", "qcow2", base, tmp, NULL });
                if (r == 0 && (spec->disk_gib << 30) > size)
                        r = run_tool((char *[]){ "qemu-img", "resize", "-q", "-f", "qcow2", tmp, size_s, NULL });
        } else {
                r = run_tool((char *[]){ "qemu-img", "create", "-q", "-f", "qcow2", tmp, size_s, NULL });
        }
        if (r == 0)
                r = fsync_path(tmp, false);
        if (r == 0 && link(tmp, path) < 0 && errno != EEXIST)
                r = lsc_err_set(-errno, "cannot publish volume %s: %s", path, strerror(errno));
        unlink(tmp);
        if (r == 0)
                r = fsync_path(v->volume_dir, true);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(path);
        return 0;
}

/* The disk for this binding, or NULL in *ret for a diskless instance. */
static int disk_prepare(struct drv_libvirt *v, const struct drv_spec *spec, char **ret)
{
        _cleanup_free_ char *base = NULL;
        int r;

        *ret = NULL;
        /* Before the diskless shortcut: a host without volume_dir refuses a persistent
         * identity whatever its hypervisor (test: ones get the volume file too). */
        if (spec->disk_mode == LSC_DISK_PERSISTENT)
                return volume_prepare(v, spec, ret);
        if (v->diskless)
                return 0;
        r = image_resolve(v, spec->image, &base);
        if (r < 0)
                return r;
        if (!base)
                return 0;
        return overlay_create(v, spec, base, ret);
}

/* ---- domain XML ---- */

static int domain_xml(struct drv_libvirt *v, const struct drv_spec *spec, const char *disk, char **ret)
{
        const char *hostname = spec->hostname ? spec->hostname : spec->name;
        char *buf = NULL;
        size_t len;
        FILE *f = open_memstream(&buf, &len);

        if (!f)
                return lsc_err_set(-ENOMEM, "out of memory");
        fprintf(f, "<domain type='");
        xml_put(f, v->domain_type);
        /* name, uuid and hostname passed drv_spec_check: no markup in them. */
        fprintf(f, "'>\n  <name>%s</name>\n  <uuid>%s</uuid>\n", spec->name, spec->uuid);
        fprintf(f, "  <metadata>\n    <" LSC_XMLNS_PREFIX ":instance xmlns:" LSC_XMLNS_PREFIX "='" LSC_XMLNS
                "' uuid='%s' generation='%" PRIu64 "' hostname='%s'", spec->uuid, spec->generation, hostname);
        if (v->host)     /* a DNS label (checked at open): no markup */
                fprintf(f, " host='%s'", v->host);
        fprintf(f, ">\n");
        for (size_t i = 0; i < spec->n_ips; i++) {
                char ip[LSC_IP_STR];

                lsc_ip_format(&spec->ips[i], ip);
                fprintf(f, "      <" LSC_XMLNS_PREFIX ":ip>%s</" LSC_XMLNS_PREFIX ":ip>\n", ip);
        }
        fprintf(f, "    </" LSC_XMLNS_PREFIX ":instance>\n  </metadata>\n");
        fprintf(f, "  <memory unit='MiB'>%" PRIu64 "</memory>\n  <vcpu>%u</vcpu>\n",
                spec->memory_mib, spec->vcpus);
        /* The identity's UUID is the machine's SMBIOS UUID; systemd in the guest takes its
         * hostname from the OEM string, so the name follows the identity to any host. */
        fprintf(f, "  <sysinfo type='smbios'>\n    <system>\n"
                "      <entry name='manufacturer'>lsc</entry>\n"
                "      <entry name='product'>logical server</entry>\n"
                "      <entry name='serial'>%s</entry>\n"
                "      <entry name='uuid'>%s</entry>\n    </system>\n"
                "    <oemStrings>\n      <entry>io.systemd.credential:system.hostname=%s</entry>\n",
                spec->uuid, spec->uuid, hostname);
        for (size_t i = 0; i < spec->n_ips; i++) {
                char ip[LSC_IP_STR];

                lsc_ip_format(&spec->ips[i], ip);
                fprintf(f, "      <entry>lsc.ip=%s</entry>\n", ip);
        }
        fprintf(f, "    </oemStrings>\n  </sysinfo>\n");
        fprintf(f, "  <os>\n    <type>hvm</type>\n%s    <smbios mode='sysinfo'/>\n  </os>\n",
                disk ? "    <boot dev='hd'/>\n" : "");
        fprintf(f, "  <features><acpi/><apic/></features>\n  <clock offset='utc'/>\n"
                "  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n"
                "  <on_crash>destroy</on_crash>\n  <devices>\n");
        if (disk) {
                /* Writable and not <shareable/>: with lock_manager = "lockd" libvirt takes an
                 * exclusive lease on the file at start (auto_disk_leases, no <lease> needed),
                 * so no second qemu, here or on another host, can open it. A persistent
                 * volume bypasses the host's page cache (cache='none'): a fenced host that
                 * lives on must not flush old writes over its successor's. */
                fprintf(f, "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'%s/>\n"
                        "      <source file='", spec->disk_mode == LSC_DISK_PERSISTENT ? " cache='none'" : "");
                xml_put(f, disk);
                fprintf(f, "'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n");
        }
        for (size_t i = 0; i < spec->n_macs; i++) {
                char mac[LSC_MAC_STR];

                lsc_mac_format(&spec->macs[i], mac);
                if (v->bridge) {
                        fprintf(f, "    <interface type='bridge'>\n      <source bridge='");
                        xml_put(f, v->bridge);
                        fprintf(f, "'/>\n");
                } else if (v->network) {
                        fprintf(f, "    <interface type='network'>\n      <source network='");
                        xml_put(f, v->network);
                        fprintf(f, "'/>\n");
                } else {
                        fprintf(f, "    <interface type='user'>\n");
                }
                fprintf(f, "      <mac address='%s'/>\n      <model type='virtio'/>\n    </interface>\n", mac);
        }
        fprintf(f, "    <serial type='pty'/>\n    <console type='pty'/>\n  </devices>\n</domain>\n");
        if (fclose(f) != 0 || !buf) {
                free(buf);
                return lsc_err_set(-ENOMEM, "out of memory building the domain XML");
        }
        *ret = buf;
        return 0;
}

/* ---- the operations ---- */

static void virt_close(struct drv *d)
{
        struct drv_libvirt *v = virt_of(d);

        if (v->conn)
                virConnectClose(v->conn);
        pthread_mutex_destroy(&v->lock);
        free(v->uri);
        free(v->host);
        free(v->domain_type);
        free(v->bridge);
        free(v->network);
        free(v->state_dir);
        free(v->image_dir);
        free(v->volume_dir);
        free(v->disk_dir);
        free(v);
}

/* Whether qemu, running as its own unprivileged user, can open /dev/kvm: the node can
 * exist yet be root's alone (as on some CI machines), and then type='kvm' fails at start. */
static bool kvm_usable(void)
{
        struct group gr, *res = NULL;
        char buf[1024];
        struct stat st;

        if (stat("/dev/kvm", &st) < 0 || !S_ISCHR(st.st_mode))
                return false;
        if ((st.st_mode & 0006) == 0006)
                return true;
        return (st.st_mode & 0060) == 0060 && getgrnam_r("kvm", &gr, buf, sizeof(buf), &res) == 0 &&
               res && res->gr_gid == st.st_gid;
}

/* test: hypervisors have their own type; local qemu uses KVM when qemu can reach it,
 * else TCG. Other schemes (xen, ...) name their own type. */
static int domain_type_pick(const struct drv_config *cfg, const char *uri, char **ret)
{
        size_t n = strcspn(uri, ":+");
        char scheme[32];

        if (cfg->domain_type)
                return dup_opt(cfg->domain_type, ret);
        snprintf(scheme, sizeof(scheme), "%.*s", (int)(n < sizeof(scheme) ? n : sizeof(scheme) - 1), uri);
        if (strcmp(scheme, "qemu") == 0)
                return dup_opt(strncmp(uri, "qemu:///", 8) == 0 && kvm_usable() ? "kvm" : "qemu", ret);
        return dup_opt(scheme, ret);
}

static int virt_open(const struct drv_config *cfg, struct drv **ret)
{
        struct drv_libvirt *v;
        virConnectPtr conn = NULL;
        int r;

        pthread_once(&virt_once, virt_init);
        v = calloc(1, sizeof(*v));
        if (!v)
                return lsc_err_set(-ENOMEM, "out of memory opening the libvirt driver");
        v->base.ops = &drv_libvirt_ops;
        pthread_mutex_init(&v->lock, NULL);
        r = dup_opt(cfg->uri ? cfg->uri : DEFAULT_URI, &v->uri);
        if (r == 0 && cfg->host && lsc_validate_name("host name", cfg->host) < 0)
                r = -EINVAL;
        if (r == 0)
                r = dup_opt(cfg->host && *cfg->host ? cfg->host : NULL, &v->host);
        if (r == 0)
                r = domain_type_pick(cfg, v->uri, &v->domain_type);
        if (r == 0)
                r = dup_opt(cfg->bridge && *cfg->bridge ? cfg->bridge : NULL, &v->bridge);
        if (r == 0)
                r = dup_opt(cfg->network && *cfg->network ? cfg->network : NULL, &v->network);
        if (r == 0)
                r = dup_opt(cfg->state_dir ? cfg->state_dir : DEFAULT_STATE_DIR, &v->state_dir);
        if (r == 0)
                r = dup_opt(cfg->image_dir ? cfg->image_dir : DEFAULT_IMAGE_DIR, &v->image_dir);
        if (r == 0)
                r = dup_opt(cfg->volume_dir, &v->volume_dir);
        if (r == 0 && asprintf(&v->disk_dir, "%s/disks", v->state_dir) < 0) {
                v->disk_dir = NULL;
                r = lsc_err_set(-ENOMEM, "out of memory");
        }
        if (r < 0) {
                virt_close(&v->base);
                return r;
        }
        v->diskless = strncmp(v->uri, "test:", 5) == 0;
        v->override = (struct drv_capacity){ cfg->vcpus, cfg->memory_mib, cfg->disk_gib };
        /* Connect now so a wrong URI fails at start, not at the first placement. */
        r = conn_get(v, &conn);
        if (r < 0) {
                virt_close(&v->base);
                return r;
        }
        virConnectClose(conn);
        *ret = &v->base;
        return 0;
}

/* The host's memory in KiB: MemTotal from the node's memory stats where the hypervisor
 * gives them, since virNodeGetInfo sums NUMA node sizes, which on ballooned or
 * hot-plugged guests (as on our CI machines) is a fraction of MemTotal and drifts. */
static int memory_total_kib(virConnectPtr conn, const virNodeInfo *info, uint64_t *ret)
{
        virNodeMemoryStatsPtr p;
        int n = 0;

        *ret = info->memory;
        if (virNodeGetMemoryStats(conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, NULL, &n, 0) < 0 || n <= 0)
                return 0;                /* the test driver has none: node info it is */
        p = calloc((size_t)n, sizeof(*p));
        if (!p)
                return lsc_err_set(-ENOMEM, "out of memory");
        if (virNodeGetMemoryStats(conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, p, &n, 0) == 0)
                for (int i = 0; i < n; i++)
                        if (strcmp(p[i].field, VIR_NODE_MEMORY_STATS_TOTAL) == 0 && p[i].value)
                                *ret = p[i].value;
        free(p);
        return 0;
}

static int virt_capacity(struct drv *d, struct drv_capacity *ret)
{
        struct drv_libvirt *v = virt_of(d);
        _cleanup_conn_ virConnectPtr conn = NULL;
        struct drv_capacity cap = v->override;
        virNodeInfo info;
        uint64_t mem_kib;
        int r;

        if (!cap.vcpus || !cap.memory_mib) {
                r = conn_get(v, &conn);
                if (r < 0)
                        return r;
                if (virNodeGetInfo(conn, &info) < 0)
                        return virt_fail("cannot read node info from %s", v->uri);
                r = memory_total_kib(conn, &info, &mem_kib);
                if (r < 0)
                        return r;
                if (!cap.vcpus)
                        cap.vcpus = info.cpus;
                if (!cap.memory_mib)
                        cap.memory_mib = mem_kib / 1024;
        }
        if (!cap.disk_gib) {
                struct statvfs sv;

                if (statvfs(v->state_dir, &sv) < 0)
                        return lsc_err_set(-errno, "cannot measure %s for disk capacity: %s "
                                           "(set disk_gib or create the state dir)",
                                           v->state_dir, strerror(errno));
                cap.disk_gib = (uint64_t)sv.f_blocks * sv.f_frsize >> 30;
        }
        *ret = cap;
        return 0;
}

struct owned {
        virDomainPtr dom;
        struct drv_instance inst;
};

static void owned_free(struct owned *o, size_t n)
{
        for (size_t i = 0; i < n; i++)
                virDomainFree(o[i].dom);
        free(o);
}

/* Every lsc domain with its identity and state; the rest stays untouched. Returns the
 * count; *ret holds a reference to each domain (owned_free). */
static int owned_list(const struct drv_libvirt *v, virConnectPtr conn, const char *uri, struct owned **ret)
{
        _cleanup_domains_ struct domain_list l = {0};
        virDomainPtr *doms;
        struct owned *out;
        size_t k = 0;
        int n = virConnectListAllDomains(conn, &l.v, 0);

        if (n < 0)
                return virt_fail("cannot list domains on %s", uri);
        l.n = n;
        doms = l.v;
        out = calloc((size_t)n + 1, sizeof(*out));
        if (!out)
                return lsc_err_set(-ENOMEM, "out of memory listing domains");
        for (int i = 0; i < n; i++) {
                uint64_t g;
                int r = domain_owned(v, doms[i], &g);

                if (r == 0 || r == -ENOENT)
                        continue;
                if (r < 0) {
                        owned_free(out, k);
                        return r;
                }
                if (virDomainGetUUIDString(doms[i], out[k].inst.uuid) < 0) {
                        r = virt_fail("cannot read the uuid of domain %s", virDomainGetName(doms[i]));
                        owned_free(out, k);
                        return r;
                }
                snprintf(out[k].inst.name, sizeof(out[k].inst.name), "%s", virDomainGetName(doms[i]));
                out[k].inst.generation = g;
                out[k].inst.state = domain_state(doms[i]);
                /* A reference of its own: doms frees the listing's. */
                virDomainRef(doms[i]);
                out[k].dom = doms[i];
                k++;
        }
        *ret = out;
        return (int)k;
}

static int virt_list(struct drv *d, struct drv_instance **ret)
{
        struct drv_libvirt *v = virt_of(d);
        _cleanup_conn_ virConnectPtr conn = NULL;
        struct owned *o;
        struct drv_instance *out;
        int r = conn_get(v, &conn), n;

        if (r < 0)
                return r;
        n = owned_list(v, conn, v->uri, &o);
        if (n < 0)
                return n;
        out = calloc((size_t)n + 1, sizeof(*out));
        if (!out) {
                owned_free(o, (size_t)n);
                return lsc_err_set(-ENOMEM, "out of memory listing instances");
        }
        for (int i = 0; i < n; i++)
                out[i] = o[i].inst;
        owned_free(o, (size_t)n);
        *ret = out;
        return n;
}

/* Stops and undefines dom. Gone already is success: destroy races the guest's own
 * power-off. */
static int domain_remove(virDomainPtr dom)
{
        const char *name = virDomainGetName(dom);

        if (virDomainIsActive(dom) == 1 && virDomainDestroy(dom) < 0 &&
            virGetLastErrorCode() != VIR_ERR_OPERATION_INVALID && virGetLastErrorCode() != VIR_ERR_NO_DOMAIN)
                return virt_fail("cannot destroy domain %s", name);
        /* No NVRAM flag: lsc defines none, and the test driver rejects the flag. */
        if (virDomainIsPersistent(dom) == 1 &&
            virDomainUndefineFlags(dom, VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                                        VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA) < 0 &&
            virGetLastErrorCode() != VIR_ERR_NO_DOMAIN)
                return virt_fail("cannot undefine domain %s", name);
        return 0;
}

/* The domain of uuid if lsc owns it at generation <= generation: *ret NULL when there
 * is nothing to remove, -EPERM for a domain lsc did not create. */
static int removable_lookup(const struct drv_libvirt *v, virConnectPtr conn, const char *uuid, uint64_t generation,
                            virDomainPtr *ret)
{
        _cleanup_domain_ virDomainPtr dom = NULL;
        uint64_t g;
        int r;

        *ret = NULL;
        if (!drv_uuid_valid(uuid))
                return lsc_err_set(-EINVAL, "invalid uuid to destroy");
        r = lookup_uuid(conn, uuid, &dom);
        if (r < 0 || !dom)
                return r;
        r = domain_owned(v, dom, &g);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (r == 0)
                return lsc_err_set(-EPERM, "domain %s (%s) was not created by lsc for this host: left alone",
                                   virDomainGetName(dom), uuid);
        if (g <= generation)
                *ret = TAKE_PTR(dom);
        return 0;
}

static int virt_destroy(struct drv *d, const char *uuid, uint64_t generation)
{
        struct drv_libvirt *v = virt_of(d);
        _cleanup_conn_ virConnectPtr conn = NULL;
        _cleanup_domain_ virDomainPtr dom = NULL;
        int r = conn_get(v, &conn);

        if (r == 0)
                r = removable_lookup(v, conn, uuid, generation, &dom);
        if (r == 0 && dom)
                r = domain_remove(dom);
        if (r < 0)
                return r;
        return overlays_remove(v, uuid, generation);
}

static void sleep_ms(unsigned ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static int virt_shutdown(struct drv *d, const char *uuid, uint64_t generation, uint32_t timeout_ms)
{
        struct drv_libvirt *v = virt_of(d);
        _cleanup_conn_ virConnectPtr conn = NULL;
        _cleanup_domain_ virDomainPtr dom = NULL;
        int64_t deadline = lsc_now_us() + (int64_t)timeout_ms * 1000;
        int forced = 0, r = conn_get(v, &conn);

        if (r == 0)
                r = removable_lookup(v, conn, uuid, generation, &dom);
        if (r < 0)
                return r;
        if (dom && virDomainIsActive(dom) == 1) {
                /* Flags 0: the hypervisor's default, ACPI for qemu without a guest agent. */
                if (virDomainShutdown(dom) < 0 && virGetLastErrorCode() != VIR_ERR_OPERATION_INVALID &&
                    virGetLastErrorCode() != VIR_ERR_NO_DOMAIN)
                        return virt_fail("cannot shut down domain %s", virDomainGetName(dom));
                while (virDomainIsActive(dom) == 1) {
                        if (lsc_now_us() >= deadline) {
                                forced = 1;
                                break;
                        }
                        sleep_ms(50);
                }
        }
        if (dom) {
                r = domain_remove(dom);
                if (r < 0)
                        return r;
        }
        r = overlays_remove(v, uuid, generation);
        return r < 0 ? r : forced;
}

/* A domain named name that is not the identity's own: -EEXIST, since libvirt names are
 * unique per host and lsc must not take over or replace someone else's. */
static int name_check(const struct drv_libvirt *v, virConnectPtr conn, const struct drv_spec *spec)
{
        _cleanup_domain_ virDomainPtr dom = virDomainLookupByName(conn, spec->name);
        char uuid[VIR_UUID_STRING_BUFLEN];
        uint64_t g;
        int r;

        if (!dom)
                return virGetLastErrorCode() == VIR_ERR_NO_DOMAIN ? 0 :
                       virt_fail("cannot look up domain %s", spec->name);
        if (virDomainGetUUIDString(dom, uuid) == 0 && strcmp(uuid, spec->uuid) == 0)
                return 0;
        r = domain_owned(v, dom, &g);
        if (r < 0)
                return r == -ENOENT ? 0 : r;
        if (r == 1)
                return lsc_err_set(-EEXIST, "name %s is taken by lsc instance %s (generation %" PRIu64 ")",
                                   spec->name, uuid, g);
        return lsc_err_set(-EEXIST, "name %s is taken by domain %s, which lsc did not create",
                           spec->name, uuid);
}

/* Persistent definition: the hypervisor's view, metadata included, survives an agent
 * restart, and the metadata is written with the domain in one step. */
static int define_start(virConnectPtr conn, struct drv_libvirt *v, const struct drv_spec *spec,
                        const char *disk)
{
        _cleanup_domain_ virDomainPtr dom = NULL;
        _cleanup_free_ char *xml = NULL;
        int r = domain_xml(v, spec, disk, &xml);

        if (r < 0)
                return r;
        /* libvirt's schema validation (libxml2 RNG) is not safe when two defines run
         * at once in one process (seen with test:///: "Unable to parse RNG"): one at
         * a time; a define is quick next to starting the domain */
        pthread_mutex_lock(&define_lock);
        dom = virDomainDefineXMLFlags(conn, xml, VIR_DOMAIN_DEFINE_VALIDATE);
        pthread_mutex_unlock(&define_lock);
        if (!dom)
                return virt_fail("cannot define domain %s", spec->name);
        if (virDomainCreate(dom) < 0) {
                r = virt_fail("cannot start domain %s", spec->name);
                /* Leave nothing half-made; the detail above is the one that matters. */
                virDomainUndefineFlags(dom, VIR_DOMAIN_UNDEFINE_MANAGED_SAVE);
                return r;
        }
        return 0;
}

static int virt_instantiate(struct drv *d, const struct drv_spec *spec)
{
        struct drv_libvirt *v = virt_of(d);
        _cleanup_conn_ virConnectPtr conn = NULL;
        _cleanup_domain_ virDomainPtr dom = NULL;
        _cleanup_free_ char *disk = NULL;
        uint64_t g;
        int r = drv_spec_check(spec);

        if (r < 0)
                return r;
        if (spec->kind != LSC_KIND_VM)
                return lsc_err_set(-EOPNOTSUPP, "the libvirt driver runs kind vm, not %s",
                                   lsc_kind_names[spec->kind]);
        r = conn_get(v, &conn);
        if (r < 0)
                return r;
        r = lookup_uuid(conn, spec->uuid, &dom);
        if (r < 0)
                return r;
        if (dom) {
                r = domain_owned(v, dom, &g);
                if (r < 0 && r != -ENOENT)
                        return r;
                if (r == 0)
                        return lsc_err_set(-EEXIST, "domain %s has uuid %s and lsc did not create it",
                                           virDomainGetName(dom), spec->uuid);
                if (r == 1 && g > spec->generation)
                        return lsc_err_set(-ESTALE, "instance %s runs generation %" PRIu64
                                           ", newer than %" PRIu64, spec->uuid, g, spec->generation);
                if (r == 1 && g == spec->generation) {
                        /* Already this binding: make sure it runs (a crash may have come
                         * between define and start, or the guest powered off). */
                        if (virDomainIsActive(dom) != 1 && virDomainCreate(dom) < 0)
                                return virt_fail("cannot start domain %s", spec->name);
                        return 0;
                }
                if (r == 1) {
                        r = domain_remove(dom);
                        if (r < 0)
                                return r;
                }
        }
        r = overlays_remove(v, spec->uuid, spec->generation - 1);
        if (r < 0)
                return r;
        r = name_check(v, conn, spec);
        if (r < 0)
                return r;
        r = disk_prepare(v, spec, &disk);
        if (r < 0)
                return r;
        r = define_start(conn, v, spec, disk);
        if (r < 0 && disk && spec->disk_mode == LSC_DISK_EPHEMERAL)
                unlink(disk);
        return r;
}

static bool field_is(const char *field, const char *want)
{
        return strcmp(field, want) == 0;
}

/* Host CPU and memory counters; a hypervisor that cannot say leaves them 0. */
static void host_stats(virConnectPtr conn, struct drv_stats *s)
{
        int n = 0;

        if (virNodeGetCPUStats(conn, VIR_NODE_CPU_STATS_ALL_CPUS, NULL, &n, 0) == 0 && n > 0) {
                virNodeCPUStatsPtr p = calloc((size_t)n, sizeof(*p));

                if (p && virNodeGetCPUStats(conn, VIR_NODE_CPU_STATS_ALL_CPUS, p, &n, 0) == 0) {
                        for (int i = 0; i < n; i++) {
                                bool idle = field_is(p[i].field, VIR_NODE_CPU_STATS_IDLE) ||
                                            field_is(p[i].field, VIR_NODE_CPU_STATS_IOWAIT);
                                bool busy = field_is(p[i].field, VIR_NODE_CPU_STATS_KERNEL) ||
                                            field_is(p[i].field, VIR_NODE_CPU_STATS_USER) ||
                                            field_is(p[i].field, VIR_NODE_CPU_STATS_INTR);

                                if (busy)
                                        s->host_cpu_busy_ns += p[i].value;
                                if (busy || idle)
                                        s->host_cpu_total_ns += p[i].value;
                        }
                }
                free(p);
        }
        n = 0;
        if (virNodeGetMemoryStats(conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, NULL, &n, 0) == 0 && n > 0) {
                virNodeMemoryStatsPtr p = calloc((size_t)n, sizeof(*p));

                if (p && virNodeGetMemoryStats(conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, p, &n, 0) == 0) {
                        for (int i = 0; i < n; i++) {
                                if (field_is(p[i].field, VIR_NODE_MEMORY_STATS_TOTAL))
                                        s->host_memory_total_kib = p[i].value;
                                else if (field_is(p[i].field, VIR_NODE_MEMORY_STATS_FREE))
                                        s->host_memory_free_kib = p[i].value;
                        }
                }
                free(p);
        }
        if (!s->host_memory_total_kib) {
                virNodeInfo info;
                unsigned long long free_b = virNodeGetFreeMemory(conn);

                if (virNodeGetInfo(conn, &info) == 0)
                        s->host_memory_total_kib = info.memory;
                s->host_memory_free_kib = free_b / 1024;
        }
}

static void records_freep(virDomainStatsRecordPtr **p)
{
        if (*p)
                virDomainStatsRecordListFree(*p);
}

/* One instance's counters from its bulk record: 1 when the record had CPU time (qemu
 * gives cpu.time, balloon.rss and balloon.current), 0 when the driver left them out
 * (libvirt's test driver gives only state.*): the caller asks virDomainGetInfo then. */
static int record_read(const virDomainStatsRecord *rec, struct drv_instance_stats *is, bool *ret_off)
{
        unsigned long long v;
        int state;
        bool cpu = false;

        if (virTypedParamsGetInt(rec->params, rec->nparams, "state.state", &state) == 1)
                *ret_off = state == VIR_DOMAIN_SHUTOFF;
        if (virTypedParamsGetULLong(rec->params, rec->nparams, "cpu.time", &v) == 1) {
                is->cpu_time_ns = v;
                cpu = true;
        }
        if (virTypedParamsGetULLong(rec->params, rec->nparams, "balloon.rss", &v) == 1 ||
            virTypedParamsGetULLong(rec->params, rec->nparams, "balloon.current", &v) == 1)
                is->memory_kib = v;
        return cpu && is->memory_kib;
}

/* One bulk call per beat for this host's lsc domains (virDomainListGetStats), so a
 * host with many instances costs one round trip to libvirtd, not one per domain. */
static int virt_stats(struct drv *d, struct drv_stats *ret)
{
        struct drv_libvirt *v = virt_of(d);
        _cleanup_conn_ virConnectPtr conn = NULL;
        _cleanup_free_ virDomainPtr *doms = NULL;
        virDomainStatsRecordPtr *recs __attribute__((cleanup(records_freep))) = NULL;
        struct drv_stats s = {0};
        struct owned *o;
        int n, m = 0, r = conn_get(v, &conn);

        if (r < 0)
                return r;
        n = owned_list(v, conn, v->uri, &o);
        if (n < 0)
                return n;
        s.instances = calloc((size_t)n + 1, sizeof(*s.instances));
        doms = calloc((size_t)n + 1, sizeof(*doms));          /* NULL-terminated */
        if (!s.instances || !doms) {
                free(s.instances);
                owned_free(o, (size_t)n);
                return lsc_err_set(-ENOMEM, "out of memory collecting stats");
        }
        for (int i = 0; i < n; i++)
                doms[i] = o[i].dom;
        if (n > 0) {
                m = virDomainListGetStats(doms, VIR_DOMAIN_STATS_STATE | VIR_DOMAIN_STATS_CPU_TOTAL |
                                                VIR_DOMAIN_STATS_BALLOON, &recs, 0);
                if (m < 0) {
                        r = virt_fail("cannot read domain statistics on %s", v->uri);
                        free(s.instances);
                        owned_free(o, (size_t)n);
                        return r;
                }
        }
        s.sampled_us = lsc_now_us();
        for (int i = 0; i < m; i++) {
                struct drv_instance_stats *is = &s.instances[s.n_instances];
                char uuid[VIR_UUID_STRING_BUFLEN];
                bool off = false;
                virDomainInfo info;

                if (virDomainGetUUIDString(recs[i]->dom, uuid) < 0)
                        continue;
                memset(is, 0, sizeof(*is));
                snprintf(is->uuid, sizeof(is->uuid), "%s", uuid);
                if (record_read(recs[i], is, &off) == 0) {
                        /* One that vanished since the listing simply is not reported. */
                        if (virDomainGetInfo(recs[i]->dom, &info) < 0)
                                continue;
                        if (!is->cpu_time_ns)
                                is->cpu_time_ns = info.cpuTime;
                        if (!is->memory_kib)
                                is->memory_kib = info.memory;
                        off = info.state == VIR_DOMAIN_SHUTOFF;
                }
                if (off)
                        is->memory_kib = 0;
                s.n_instances++;
        }
        owned_free(o, (size_t)n);
        host_stats(conn, &s);
        *ret = s;
        return 0;
}

static int virt_health(struct drv *d)
{
        struct drv_libvirt *v = virt_of(d);
        _cleanup_conn_ virConnectPtr conn = NULL;
        unsigned long version;
        int r = conn_get(v, &conn);

        if (r < 0)
                return r;
        /* IsAlive only knows what the last call saw: a round trip finds a dead daemon. */
        if (virConnectGetLibVersion(conn, &version) < 0)
                return virt_fail("libvirt at %s does not answer", v->uri);
        if (virConnectIsAlive(conn) != 1)
                return lsc_err_set(-EIO, "libvirt connection to %s is not alive", v->uri);
        return 0;
}

const struct drv_ops drv_libvirt_ops = {
        .name = "libvirt",
        .open = virt_open,
        .close = virt_close,
        .capacity = virt_capacity,
        .list = virt_list,
        .instantiate = virt_instantiate,
        .destroy = virt_destroy,
        .shutdown = virt_shutdown,
        .stats = virt_stats,
        .health = virt_health,
};
