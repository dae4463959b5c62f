/* The container driver: identities become OCI containers run by an OCI runtime (runc by
 * default, crun selectable) on bundles under state_dir/containers, each on its own
 * writable layer over a cached image and in its own network namespace carrying the
 * identity's MACs and IPs. The bundle's config.json, written first, is the truth about
 * what an instance is (its annotations); the runtime says whether it runs. */
#define _GNU_SOURCE             /* asprintf, pipe2, nftw flags */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include <jansson.h>
#include "driver.h"
#include "err.h"
#include "util.h"
#include "validate.h"

#define DEFAULT_RUNTIME "runc"
#define DEFAULT_STATE_DIR "/var/lib/lsc"
#define DEFAULT_IMAGE_DIR "/var/lib/lsc/images"
#define ID_PREFIX "lsc-"                 /* runtime container id: lsc-UUID */
#define NETNS_PREFIX "lscc-"             /* network namespace: lscc-HOST-UUID */
#define NETNS_DIR "/run/netns"
#define CGROUP2_MAGIC 0x63677270
#define CMD_MAX 64                       /* arguments in an image's NAME.cmd */

extern char **environ;

struct drv_container {
        struct drv base;                 /* first: the handle the agent holds */
        pthread_mutex_t image_lock;      /* one unpack of an image at a time */
        char *runtime;                   /* "runc", "crun" or a path */
        bool crun;                       /* the runtime is crun (by its file name) */
        char *runtime_root;              /* the runtime's --root: this host's containers */
        char *host;
        char *bridge;
        char *state_dir, *image_dir;
        char *bundle_dir;                /* state_dir/containers */
        char *cache_dir;                 /* state_dir/images: unpacked tarballs */
        bool overlay;                    /* overlayfs works here; else each layer is a copy */
        bool limits;                     /* linux.resources are written */
        bool cgroup2_ns;                 /* the runtime runs in a mount namespace seeing only
                                          * cgroup v2 (crun on a hybrid host) */
        char note[256];                  /* what this host lacks, for the health line */
        struct drv_capacity override;
};

static struct drv_container *ct_of(struct drv *d)
{
        return (struct drv_container *)d;
}

static void ct_json_freep(json_t **p)
{
        if (*p)
                json_decref(*p);
}
#define _cleanup_json_ _cleanup_(ct_json_freep)

/* ---- running tools ---- */

/* Runs argv (no shell) and waits. stdout goes to *ret_out when asked (malloc'd), else
 * to out_file when given, else to /dev/null; stderr likewise to out_file, else it is
 * kept for the error. A failure is -EIO naming the tool, with its message. A pipe is
 * never handed to a runtime that leaves a container behind: that container would hold
 * it open, and the read to EOF would never end. */
static int run_full(char *const argv[], const char *out_file, char **ret_out)
{
        posix_spawn_file_actions_t fa;
        char err[512];
        size_t elen = 0, olen = 0;
        char *obuf = NULL;
        int epipe[2] = { -1, -1 }, opipe[2] = { -1, -1 }, status, r;
        pid_t pid;

        if (!out_file && pipe2(epipe, O_CLOEXEC) < 0)
                return lsc_err_set(-errno, "pipe: %s", strerror(errno));
        if (ret_out && pipe2(opipe, O_CLOEXEC) < 0) {
                r = -errno;
                if (epipe[0] >= 0) {
                        close(epipe[0]);
                        close(epipe[1]);
                }
                return lsc_err_set(r, "pipe: %s", strerror(-r));
        }
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        if (ret_out)
                posix_spawn_file_actions_adddup2(&fa, opipe[1], 1);
        else if (out_file)
                posix_spawn_file_actions_addopen(&fa, 1, out_file, O_WRONLY | O_CREAT | O_APPEND, 0600);
        else
                posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        if (out_file)
                posix_spawn_file_actions_addopen(&fa, 2, out_file, O_WRONLY | O_CREAT | O_APPEND, 0600);
        else
                posix_spawn_file_actions_adddup2(&fa, epipe[1], 2);
        r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (epipe[1] >= 0)
                close(epipe[1]);
        if (opipe[1] >= 0)
                close(opipe[1]);
        if (r) {
                if (epipe[0] >= 0)
                        close(epipe[0]);
                if (opipe[0] >= 0)
                        close(opipe[0]);
                return lsc_err_set(-r, "cannot run %s: %s", argv[0], strerror(r));
        }
        if (opipe[0] >= 0) {
                size_t cap = 0;

                for (;;) {
                        ssize_t n;

                        if (olen + 4096 + 1 > cap) {
                                char *nb = realloc(obuf, cap = cap ? cap * 2 : 8192);

                                if (!nb)
                                        break;
                                obuf = nb;
                        }
                        n = read(opipe[0], obuf + olen, cap - olen - 1);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0)
                                break;
                        olen += (size_t)n;
                }
                close(opipe[0]);
                if (obuf)
                        obuf[olen] = '\0';
        }
        if (epipe[0] >= 0) {
                for (;;) {
                        char sink[256];
                        bool keep = elen < sizeof(err) - 1;
                        ssize_t n = read(epipe[0], keep ? err + elen : sink,
                                         keep ? sizeof(err) - 1 - elen : sizeof(sink));

                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0)
                                break;
                        if (keep)
                                elen += (size_t)n;
                }
                close(epipe[0]);
        }
        err[elen] = '\0';
        while (elen && (err[elen - 1] == '\n' || err[elen - 1] == ' '))
                err[--elen] = '\0';
        while (waitpid(pid, &status, 0) < 0) {
                if (errno != EINTR) {
                        free(obuf);
                        return lsc_err_set(-errno, "waitpid %s: %s", argv[0], strerror(errno));
                }
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                free(obuf);
                if (out_file) {
                        /* the tail of the log the tool wrote to says why */
                        char tail[384] = "";
                        int fd = open(out_file, O_RDONLY | O_CLOEXEC);

                        if (fd >= 0) {
                                off_t end = lseek(fd, 0, SEEK_END);
                                off_t at = end > (off_t)sizeof(tail) - 1 ? end - (off_t)sizeof(tail) + 1 : 0;
                                ssize_t n = pread(fd, tail, sizeof(tail) - 1, at);

                                tail[n > 0 ? n : 0] = '\0';
                                close(fd);
                        }
                        for (size_t n = strlen(tail); n && (tail[n - 1] == '\n' || tail[n - 1] == ' ');)
                                tail[--n] = '\0';
                        const char *last = strrchr(tail, '\n');
                        return lsc_err_set(-EIO, "%s %s failed: %s", argv[0], argv[1],
                                           *tail ? (last ? last + 1 : tail) : "no message");
                }
                return lsc_err_set(-EIO, "%s %s failed: %s", argv[0], argv[1], elen ? err : "no message");
        }
        if (ret_out)
                *ret_out = obuf ? obuf : strdup("");
        return 0;
}

static int run_tool(char *const argv[])
{
        return run_full(argv, NULL, NULL);
}

/* The runtime's argv: [unshare wrapper] runtime --root R ARGS... NULL, in buf (at most
 * n entries). crun on a hybrid host runs where only cgroup v2 is mounted. */
static char *const *runtime_argv(struct drv_container *c, char **buf, size_t n, char *const args[])
{
        static char wrap[] = "umount -l /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && "
                             "exec \"$0\" \"$@\"";
        size_t k = 0;

        if (c->cgroup2_ns) {
                buf[k++] = "unshare";
                buf[k++] = "-m";
                buf[k++] = "--propagation";
                buf[k++] = "slave";
                buf[k++] = "sh";
                buf[k++] = "-c";
                buf[k++] = wrap;
        }
        buf[k++] = c->runtime;
        buf[k++] = "--root";
        buf[k++] = c->runtime_root;
        for (size_t i = 0; args[i] && k < n - 1; i++)
                buf[k++] = args[i];
        buf[k] = NULL;
        return buf;
}

static int runtime_run(struct drv_container *c, char *const args[], const char *out_file, char **ret_out)
{
        char *argv[32];

        return run_full(runtime_argv(c, argv, ARRAY_SIZE(argv), args), out_file, ret_out);
}

/* ---- paths and names ---- */

static int mkdir_p1(const char *path, mode_t mode)
{
        if (mkdir(path, mode) < 0 && errno != EEXIST)
                return lsc_err_set(-errno, "cannot create %s: %s", path, strerror(errno));
        return 0;
}

static int dup_opt(const char *s, char **ret)
{
        *ret = NULL;
        if (s && !(*ret = strdup(s)))
                return lsc_err_set(-ENOMEM, "out of memory");
        return 0;
}

static int xasprintf(char **ret, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int xasprintf(char **ret, const char *fmt, ...)
{
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vasprintf(ret, fmt, ap);
        va_end(ap);
        if (n < 0) {
                *ret = NULL;
                return lsc_err_set(-ENOMEM, "out of memory");
        }
        return 0;
}

static int bundle_path(const struct drv_container *c, const char *uuid, uint64_t g, char **ret)
{
        return xasprintf(ret, "%s/%s.%" PRIu64, c->bundle_dir, uuid, g);
}

static void container_id(const char *uuid, char buf[DRV_UUID_STR + 8])
{
        snprintf(buf, DRV_UUID_STR + 8, ID_PREFIX "%s", uuid);
}

static int netns_name(const struct drv_container *c, const char *uuid, char **ret)
{
        return xasprintf(ret, NETNS_PREFIX "%s-%s", c->host ? c->host : "any", uuid);
}

/* The host end of NIC i: "lsc" and 12 hex digits of a hash of host, uuid and i, so
 * two agents on one machine never pick the same, and no existing name is taken
 * (interface names are at most 15 bytes). */
static void veth_name(const struct drv_container *c, const char *uuid, size_t i, char buf[16])
{
        uint64_t h = 1469598103934665603ull;
        char key[LSC_NAME_MAX + DRV_UUID_STR + 32];

        snprintf(key, sizeof(key), "%s/%s/%zu", c->host ? c->host : "", uuid, i);
        for (const char *p = key; *p; p++)
                h = (h ^ (unsigned char)*p) * 1099511628211ull;
        snprintf(buf, 16, "lsc%012" PRIx64, (uint64_t)(h & 0xffffffffffffull));
}

/* ---- removing a bundle ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)ftw;
        if ((flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT)
                return -1;
        return 0;
}

/* rm -rf that never crosses into another file system: a rootfs still mounted over the
 * image makes it fail instead of emptying the image. */
static int rm_rf(const char *path)
{
        struct stat st;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : lsc_err_set(-errno, "cannot reach %s: %s", path, strerror(errno));
        if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0 || lstat(path, &st) == 0)
                return lsc_err_set(-EBUSY, "cannot remove %s: %s", path, strerror(errno ? errno : EBUSY));
        return 0;
}

/* Unmounts the rootfs of a bundle (lazily: a process that still has it open keeps its
 * view), then removes the bundle. */
static int bundle_remove(const char *bundle)
{
        _cleanup_free_ char *rootfs = NULL;
        int r = xasprintf(&rootfs, "%s/rootfs", bundle);

        if (r < 0)
                return r;
        if (umount2(rootfs, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
                return lsc_err_set(-errno, "cannot unmount %s: %s", rootfs, strerror(errno));
        return rm_rf(bundle);
}

/* The host ends of the veths of uuid (deleting one deletes its pair: the kernel frees
 * a dead namespace's devices only later, asynchronously) and the netns. Whatever is
 * not there is skipped. */
static int net_remove(const struct drv_container *c, const char *uuid, size_t n_nics)
{
        _cleanup_free_ char *ns = NULL, *path = NULL;
        int r = netns_name(c, uuid, &ns);

        if (r < 0)
                return r;
        for (size_t i = 0; i < n_nics; i++) {
                char veth[16];

                veth_name(c, uuid, i, veth);
                if (if_nametoindex(veth) && (r = run_tool((char *[]){ "ip", "link", "del", veth, NULL })) < 0 &&
                    if_nametoindex(veth))
                        return r;
        }
        if ((r = xasprintf(&path, NETNS_DIR "/%s", ns)) < 0)
                return r;
        if (access(path, F_OK) == 0 && (r = run_tool((char *[]){ "ip", "netns", "del", ns, NULL })) < 0)
                return r;
        return 0;
}

/* ---- what an instance is: its bundle's annotations ---- */

struct ct_meta {
        char uuid[DRV_UUID_STR];
        char name[LSC_NAME_MAX + 1];
        char host[LSC_NAME_MAX + 1];
        uint64_t generation;
        size_t n_nics;
};

static const char *ann(json_t *a, const char *key)
{
        const char *s = json_string_value(json_object_get(a, key));

        return s ? s : "";
}

/* 1 with meta when bundle/config.json is lsc's, 0 when it is not (or not whole yet:
 * it is written last-to-first under a temporary name), -errno otherwise. */
static int meta_read(const char *bundle, struct ct_meta *ret)
{
        _cleanup_free_ char *path = NULL;
        _cleanup_json_ json_t *root = NULL;
        json_error_t jerr;
        json_t *a;
        char *end;
        int r = xasprintf(&path, "%s/config.json", bundle);

        if (r < 0)
                return r;
        root = json_load_file(path, 0, &jerr);
        if (!root)
                return access(path, F_OK) == 0 ? lsc_err_set(-EIO, "cannot read %s: %s", path, jerr.text) : 0;
        a = json_object_get(root, "annotations");
        if (!json_is_object(a) || !drv_uuid_valid(ann(a, "lsc.uuid")))
                return 0;
        memset(ret, 0, sizeof(*ret));
        snprintf(ret->uuid, sizeof(ret->uuid), "%s", ann(a, "lsc.uuid"));
        snprintf(ret->name, sizeof(ret->name), "%s", ann(a, "lsc.name"));
        snprintf(ret->host, sizeof(ret->host), "%s", ann(a, "lsc.host"));
        errno = 0;
        ret->generation = strtoull(ann(a, "lsc.generation"), &end, 10);
        if (errno || *end || ret->generation == 0)
                return 0;
        ret->n_nics = strtoul(ann(a, "lsc.nics"), NULL, 10);
        return 1;
}

/* The runtime's status of uuid's container: "running", "created", "paused",
 * "stopped", or "" when it has none; the bundle it runs from in ret_bundle. */
static int runtime_status(struct drv_container *c, const char *uuid, char status[16], char **ret_bundle)
{
        _cleanup_free_ char *dir = NULL, *out = NULL;
        _cleanup_json_ json_t *st = NULL;
        char id[DRV_UUID_STR + 8];
        json_error_t jerr;
        int r;

        status[0] = '\0';
        if (ret_bundle)
                *ret_bundle = NULL;
        container_id(uuid, id);
        if ((r = xasprintf(&dir, "%s/%s", c->runtime_root, id)) < 0)
                return r;
        if (access(dir, F_OK) < 0)
                return 0;
        r = runtime_run(c, (char *[]){ "state", id, NULL }, NULL, &out);
        if (r < 0) {
                if (access(dir, F_OK) < 0)
                        return 0;        /* deleted meanwhile */
                return r;
        }
        st = json_loads(out, 0, &jerr);
        if (!st || !json_is_string(json_object_get(st, "status")))
                return lsc_err_set(-EIO, "%s state %s: unreadable answer (%s)", c->runtime, id, jerr.text);
        snprintf(status, 16, "%s", json_string_value(json_object_get(st, "status")));
        if (ret_bundle && json_is_string(json_object_get(st, "bundle")))
                return dup_opt(json_string_value(json_object_get(st, "bundle")), ret_bundle);
        return 0;
}

static enum drv_state status_state(const char *status)
{
        if (strcmp(status, "running") == 0 || strcmp(status, "paused") == 0)
                return DRV_STATE_RUNNING;
        return DRV_STATE_STOPPED;      /* created (never started), stopped, or none */
}

/* ---- listing ---- */

struct ct_bundle {
        struct ct_meta meta;
        char *path;
};

static void bundles_free(struct ct_bundle *b, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(b[i].path);
        free(b);
}

/* Every bundle of this host (uuid NULL) or of uuid. Returns the count. A bundle of
 * another host (one state dir shared by mistake) is left out; one whose config.json
 * is not lsc's is left alone. */
static int bundles_list(struct drv_container *c, const char *uuid, struct ct_bundle **ret)
{
        DIR *d = opendir(c->bundle_dir);
        struct ct_bundle *out = NULL;
        size_t n = 0, alloc = 0;
        struct dirent *e;
        int r = 0;

        *ret = NULL;
        if (!d)
                return errno == ENOENT ? 0 : lsc_err_set(-errno, "cannot list %s: %s", c->bundle_dir, strerror(errno));
        while ((e = readdir(d))) {
                char u[DRV_UUID_STR];
                const char *dot = strchr(e->d_name, '.');
                struct ct_meta m;
                char *path;

                if (!dot || dot - e->d_name != DRV_UUID_STR - 1)
                        continue;
                memcpy(u, e->d_name, DRV_UUID_STR - 1);
                u[DRV_UUID_STR - 1] = '\0';
                if (!drv_uuid_valid(u) || (uuid && strcmp(u, uuid) != 0))
                        continue;
                if ((r = xasprintf(&path, "%s/%s", c->bundle_dir, e->d_name)) < 0)
                        break;
                r = meta_read(path, &m);
                if (r <= 0 || strcmp(m.uuid, u) != 0 || (c->host && strcmp(m.host, c->host) != 0) ||
                    strtoull(dot + 1, NULL, 10) != m.generation) {
                        /* not whole yet (a crash before config.json): leftovers_remove */
                        free(path);
                        if (r < 0)
                                break;
                        r = 0;
                        continue;
                }
                if (n == alloc) {
                        struct ct_bundle *nb = realloc(out, (alloc = alloc ? alloc * 2 : 8) * sizeof(*out));

                        if (!nb) {
                                free(path);
                                r = lsc_err_set(-ENOMEM, "out of memory");
                                break;
                        }
                        out = nb;
                }
                out[n].meta = m;
                out[n].path = path;
                n++;
        }
        closedir(d);
        if (r < 0) {
                bundles_free(out, n);
                return r;
        }
        *ret = out;
        return (int)n;
}

static int ct_list(struct drv *d, struct drv_instance **ret)
{
        struct drv_container *c = ct_of(d);
        struct ct_bundle *b;
        struct drv_instance *out;
        int n = bundles_list(c, NULL, &b);

        if (n < 0)
                return n;
        out = calloc((size_t)n + 1, sizeof(*out));
        if (!out) {
                bundles_free(b, (size_t)n);
                return lsc_err_set(-ENOMEM, "out of memory listing instances");
        }
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *rb = NULL;
                char status[16];
                int r = runtime_status(c, b[i].meta.uuid, status, &rb);

                if (r < 0) {
                        bundles_free(b, (size_t)n);
                        free(out);
                        return r;
                }
                memcpy(out[i].uuid, b[i].meta.uuid, sizeof(out[i].uuid));
                snprintf(out[i].name, sizeof(out[i].name), "%s", b[i].meta.name);
                out[i].generation = b[i].meta.generation;
                /* a container running from another bundle of the same uuid is that one's */
                out[i].state = rb && strcmp(rb, b[i].path) == 0 ? status_state(status) : DRV_STATE_STOPPED;
        }
        bundles_free(b, (size_t)n);
        *ret = out;
        return n;
}

/* ---- destroying ---- */

/* Bundle dirs of uuid at generation <= g that list cannot see: a crash came between
 * mkdir and the config.json. Another host's bundles (a shared state dir) stay. */
static int leftovers_remove(struct drv_container *c, const char *uuid, uint64_t g)
{
        DIR *d = opendir(c->bundle_dir);
        struct dirent *e;
        int r = 0;

        if (!d)
                return 0;
        while (r == 0 && (e = readdir(d))) {
                _cleanup_free_ char *p = NULL;
                struct ct_meta m;

                if (strncmp(e->d_name, uuid, DRV_UUID_STR - 1) != 0 || e->d_name[DRV_UUID_STR - 1] != '.' ||
                    strtoull(e->d_name + DRV_UUID_STR, NULL, 10) > g)
                        continue;
                if ((r = xasprintf(&p, "%s/%s", c->bundle_dir, e->d_name)) < 0)
                        break;
                if (meta_read(p, &m) == 0)
                        r = bundle_remove(p);
        }
        closedir(d);
        return r;
}

/* Kills and deletes uuid's container (if any) when it runs from one of its bundles at
 * generation <= g, then removes those bundles and, when none is left, the network.
 * -EPERM for a container with our id that lsc did not make for this host. */
static int remove_upto(struct drv_container *c, const char *uuid, uint64_t g)
{
        _cleanup_free_ char *rb = NULL;
        struct ct_bundle *b;
        char status[16], id[DRV_UUID_STR + 8];
        uint64_t rb_gen = 0;
        size_t nics = 1, left = 0;
        int n, r;

        if (!drv_uuid_valid(uuid))
                return lsc_err_set(-EINVAL, "invalid uuid to destroy");
        n = bundles_list(c, uuid, &b);
        if (n < 0)
                return n;
        r = runtime_status(c, uuid, status, &rb);
        if (r < 0)
                goto out;
        for (int i = 0; i < n; i++) {
                if (b[i].meta.n_nics > nics)
                        nics = b[i].meta.n_nics;
                if (b[i].meta.generation > g)
                        left++;
                if (rb && strcmp(rb, b[i].path) == 0)
                        rb_gen = b[i].meta.generation;
        }
        container_id(uuid, id);
        if (status[0] && !rb_gen) {
                r = lsc_err_set(-EPERM, "container %s (bundle %s) was not created by lsc for this host: "
                                "left alone", id, rb ? rb : "unknown");
                goto out;
        }
        if (status[0] && rb_gen <= g &&
            (r = runtime_run(c, (char *[]){ "delete", "--force", id, NULL }, NULL, NULL)) < 0) {
                char again[16];

                /* gone by itself meanwhile is success */
                if (runtime_status(c, uuid, again, NULL) < 0 || again[0])
                        goto out;
                r = 0;
        }
        for (int i = 0; i < n; i++)
                if (b[i].meta.generation <= g && (r = bundle_remove(b[i].path)) < 0)
                        goto out;
        if ((r = leftovers_remove(c, uuid, g)) < 0)
                goto out;
        if (!left)
                r = net_remove(c, uuid, nics);
out:
        bundles_free(b, (size_t)n);
        return r;
}

static int ct_destroy(struct drv *d, const char *uuid, uint64_t generation)
{
        return remove_upto(ct_of(d), uuid, generation);
}

static void sleep_ms(unsigned ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* SIGTERM to the container's init, up to timeout_ms for it to end, then destroy. */
static int ct_shutdown(struct drv *d, const char *uuid, uint64_t generation, uint32_t timeout_ms)
{
        struct drv_container *c = ct_of(d);
        int64_t deadline = lsc_now_us() + (int64_t)timeout_ms * 1000;
        _cleanup_free_ char *rb = NULL;
        struct ct_bundle *b;
        char status[16], id[DRV_UUID_STR + 8];
        bool ours = false;
        int forced = 0, n, r;

        if (!drv_uuid_valid(uuid))
                return lsc_err_set(-EINVAL, "invalid uuid to shut down");
        if ((n = bundles_list(c, uuid, &b)) < 0)
                return n;
        r = runtime_status(c, uuid, status, &rb);
        for (int i = 0; r == 0 && i < n; i++)
                if (rb && strcmp(rb, b[i].path) == 0 && b[i].meta.generation <= generation)
                        ours = true;
        bundles_free(b, (size_t)n);
        if (r < 0)
                return r;
        container_id(uuid, id);
        if (ours && strcmp(status, "running") == 0) {
                /* a pid 1 without a TERM handler ignores it: then the timeout decides */
                if (runtime_run(c, (char *[]){ "kill", id, "TERM", NULL }, NULL, NULL) == 0) {
                        for (;;) {
                                if ((r = runtime_status(c, uuid, status, NULL)) < 0)
                                        return r;
                                if (strcmp(status, "running") != 0)
                                        break;
                                if (lsc_now_us() >= deadline) {
                                        forced = 1;
                                        break;
                                }
                                sleep_ms(50);
                        }
                }
        }
        r = remove_upto(c, uuid, generation);
        return r < 0 ? r : forced;
}

/* ---- images ---- */

static bool is_dir(const char *path)
{
        struct stat st;

        return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *path)
{
        struct stat st;

        return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The root filesystem of image name: image_dir/NAME as it is when a directory, else
 * image_dir/NAME.tar[.gz|.xz] unpacked once into state_dir/images/NAME (under a
 * temporary name first, so a crash never leaves a half image that looks whole). */
static int image_rootfs(struct drv_container *c, const char *name, char **ret)
{
        static const char *const suffixes[] = { ".tar", ".tar.gz", ".tgz", ".tar.xz" };
        _cleanup_free_ char *dir = NULL, *cached = NULL, *tarball = NULL, *tmp = NULL;
        char buf[LSC_SHOW_BUF];
        int r;

        if (!name)
                return lsc_err_set(-EINVAL, "a container needs an image (a root filesystem in %s)", c->image_dir);
        if (strchr(name, '/') || name[0] == '.' || strpbrk(name, ":,"))
                return lsc_err_set(-EINVAL, "image \"%s\" must be a plain name inside %s",
                                   lsc_str_show(name, buf), c->image_dir);
        if ((r = xasprintf(&dir, "%s/%s", c->image_dir, name)) < 0)
                return r;
        if (is_dir(dir)) {
                *ret = TAKE_PTR(dir);
                return 0;
        }
        for (size_t i = 0; i < ARRAY_SIZE(suffixes) && !tarball; i++) {
                _cleanup_free_ char *p = NULL;

                if ((r = xasprintf(&p, "%s/%s%s", c->image_dir, name, suffixes[i])) < 0)
                        return r;
                if (is_file(p))
                        tarball = TAKE_PTR(p);
        }
        if (!tarball)
                return lsc_err_set(-ENOENT, "image %s not found: want a directory %s or %s.tar[.gz|.xz] "
                                   "(a root filesystem)", name, dir, dir);
        if ((r = xasprintf(&cached, "%s/%s", c->cache_dir, name)) < 0 ||
            (r = xasprintf(&tmp, "%s/.%s.tmp", c->cache_dir, name)) < 0)
                return r;
        pthread_mutex_lock(&c->image_lock);
        if (!is_dir(cached)) {
                r = mkdir_p1(c->cache_dir, 0700);
                if (r == 0)
                        r = rm_rf(tmp);
                if (r == 0)
                        r = mkdir_p1(tmp, 0755);
                if (r == 0)
                        r = run_tool((char *[]){ "tar", "-xpf", tarball, "-C", tmp, "--numeric-owner", NULL });
                if (r == 0 && rename(tmp, cached) < 0)
                        r = lsc_err_set(-errno, "cannot publish %s: %s", cached, strerror(errno));
                if (r < 0)
                        rm_rf(tmp);
        }
        pthread_mutex_unlock(&c->image_lock);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(cached);
        return 0;
}

/* The command: image_dir/NAME.cmd, one argument a line, else /sbin/init. */
static int image_cmd(struct drv_container *c, const char *name, json_t **ret)
{
        _cleanup_free_ char *path = NULL, *line = NULL;
        json_t *args = json_array();
        size_t cap = 0;
        FILE *f;
        int r;

        if (!args)
                return lsc_err_set(-ENOMEM, "out of memory");
        if ((r = xasprintf(&path, "%s/%s.cmd", c->image_dir, name)) < 0) {
                json_decref(args);
                return r;
        }
        f = fopen(path, "re");
        if (f) {
                ssize_t n;

                while ((n = getline(&line, &cap, f)) >= 0 && json_array_size(args) < CMD_MAX) {
                        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                                line[--n] = '\0';
                        if (n)
                                json_array_append_new(args, json_string(line));
                }
                fclose(f);
        }
        if (!json_array_size(args))
                json_array_append_new(args, json_string("/sbin/init"));
        *ret = args;
        return 0;
}

/* ---- building an instance ---- */

/* Writes path atomically: a reader sees the old file or the whole new one. */
static int write_file(const char *path, const char *text, mode_t mode)
{
        _cleanup_free_ char *tmp = NULL;
        size_t len = strlen(text);
        int fd, r = xasprintf(&tmp, "%s.tmp", path);

        if (r < 0)
                return r;
        /* never through a symlink: inside a rootfs, the image's owner chose the names */
        unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0)
                return lsc_err_set(-errno, "cannot write %s: %s", tmp, strerror(errno));
        if (write(fd, text, len) != (ssize_t)len || fsync(fd) < 0) {
                r = lsc_err_set(-EIO, "cannot write %s: %s", tmp, strerror(errno));
                close(fd);
                unlink(tmp);
                return r;
        }
        close(fd);
        if (rename(tmp, path) < 0) {
                r = lsc_err_set(-errno, "cannot rename %s: %s", tmp, strerror(errno));
                unlink(tmp);
                return r;
        }
        return 0;
}

static json_t *strings(const char *const *v)
{
        json_t *a = json_array();

        for (size_t i = 0; a && v[i]; i++)
                json_array_append_new(a, json_string(v[i]));
        return a;
}

static json_t *mount_new(const char *dst, const char *type, const char *src, const char *const *opts)
{
        return json_pack("{s:s, s:s, s:s, s:o}", "destination", dst, "type", type, "source", src, "options",
                         strings(opts));
}

static int spec_ips(const struct drv_spec *spec, char **ret)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        if (!f)
                return lsc_err_set(-ENOMEM, "out of memory");
        for (size_t i = 0; i < spec->n_ips; i++) {
                char ip[LSC_IP_STR];

                lsc_ip_format(&spec->ips[i], ip);
                fprintf(f, "%s%s", i ? "," : "", ip);
        }
        if (fclose(f) != 0 || !buf) {
                free(buf);
                return lsc_err_set(-ENOMEM, "out of memory");
        }
        *ret = buf;
        return 0;
}

/* config.json for spec: the identity in annotations and the hostname, the command,
 * the namespaces (the network one is ours, made beforehand), and limits where the
 * host enforces them. */
static int config_json(struct drv_container *c, const struct drv_spec *spec, const char *bundle, char **ret)
{
        static const char *const caps[] = {
                "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE", NULL,
        };
        static const char *const masked[] = {
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi", NULL,
        };
        static const char *const ro[] = {
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", NULL,
        };
        const char *hostname = spec->hostname ? spec->hostname : spec->name;
        _cleanup_json_ json_t *root = NULL;
        _cleanup_free_ char *ips = NULL, *ns = NULL, *nspath = NULL, *rootfs = NULL, *cgpath = NULL,
                            *env_uuid = NULL, *env_name = NULL, *env_ips = NULL;
        json_t *args = NULL, *linux_, *mounts, *ann;
        char gen[24], nics[24];
        int r;

        if ((r = spec_ips(spec, &ips)) < 0 || (r = netns_name(c, spec->uuid, &ns)) < 0 ||
            (r = xasprintf(&nspath, NETNS_DIR "/%s", ns)) < 0 || (r = xasprintf(&rootfs, "%s/rootfs", bundle)) < 0 ||
            (r = xasprintf(&cgpath, "/lsc/%s/%s", c->host ? c->host : "any", spec->uuid)) < 0 ||
            (r = xasprintf(&env_uuid, "LSC_UUID=%s", spec->uuid)) < 0 ||
            (r = xasprintf(&env_name, "LSC_NAME=%s", spec->name)) < 0 ||
            (r = xasprintf(&env_ips, "LSC_IPS=%s", ips)) < 0)
                return r;
        if ((r = image_cmd(c, spec->image, &args)) < 0)
                return r;
        snprintf(gen, sizeof(gen), "%" PRIu64, spec->generation);
        snprintf(nics, sizeof(nics), "%zu", spec->n_macs);
        ann = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "lsc.uuid", spec->uuid, "lsc.name", spec->name,
                        "lsc.generation", gen, "lsc.host", c->host ? c->host : "", "lsc.hostname", hostname,
                        "lsc.ips", ips, "lsc.nics", nics);
        mounts = json_pack("[o, o, o, o, o, o]",
                           json_pack("{s:s, s:s, s:s}", "destination", "/proc", "type", "proc", "source", "proc"),
                           mount_new("/dev", "tmpfs", "tmpfs",
                                     (const char *const[]){ "nosuid", "strictatime", "mode=755", "size=65536k", NULL }),
                           mount_new("/dev/pts", "devpts", "devpts",
                                     (const char *const[]){ "nosuid", "noexec", "newinstance", "ptmxmode=0666",
                                                            "mode=0620", NULL }),
                           mount_new("/dev/shm", "tmpfs", "shm",
                                     (const char *const[]){ "nosuid", "noexec", "nodev", "mode=1777", "size=65536k",
                                                            NULL }),
                           mount_new("/dev/mqueue", "mqueue", "mqueue",
                                     (const char *const[]){ "nosuid", "noexec", "nodev", NULL }),
                           mount_new("/sys", "sysfs", "sysfs",
                                     (const char *const[]){ "nosuid", "noexec", "nodev", "ro", NULL }));
        linux_ = json_pack("{s:[{s:s}, {s:s, s:s}, {s:s}, {s:s}, {s:s}], s:s, s:o, s:o}",
                           "namespaces", "type", "pid", "type", "network", "path", nspath, "type", "ipc",
                           "type", "uts", "type", "mount",
                           "cgroupsPath", cgpath, "maskedPaths", strings(masked), "readonlyPaths", strings(ro));
        if (linux_ && c->limits) {
                /* memory in bytes; vcpus as a CFS quota over a 100 ms period */
                json_object_set_new(linux_, "resources",
                                    json_pack("{s:{s:I}, s:{s:I, s:I}}", "memory", "limit",
                                              (json_int_t)(spec->memory_mib << 20), "cpu", "quota",
                                              (json_int_t)spec->vcpus * 100000, "period", (json_int_t)100000));
        }
        root = json_pack("{s:s, s:{s:b, s:{s:i, s:i}, s:o, s:[s, s, s, s], s:s, s:{s:o, s:o, s:o, s:o}, s:b},"
                         " s:{s:s, s:b}, s:s, s:o, s:o, s:o}",
                         "ociVersion", "1.0.2",
                         "process", "terminal", 0, "user", "uid", 0, "gid", 0, "args", args,
                         "env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", env_uuid,
                         env_name, env_ips, "cwd", "/",
                         "capabilities", "bounding", strings(caps), "effective", strings(caps), "permitted",
                         strings(caps), "ambient", json_array(), "noNewPrivileges", 1,
                         "root", "path", rootfs, "readonly", 0,
                         "hostname", hostname, "mounts", mounts, "linux", linux_, "annotations", ann);
        if (!root)
                return lsc_err_set(-ENOMEM, "cannot build config.json for %s", spec->name);
        *ret = json_dumps(root, JSON_INDENT(2));
        if (!*ret)
                return lsc_err_set(-ENOMEM, "out of memory");
        return 0;
}

/* The writable layer: an overlay over the image, or a copy of it where overlayfs is
 * not available. The image itself is never written. */
static int rootfs_make(struct drv_container *c, const char *bundle, const char *image)
{
        _cleanup_free_ char *rootfs = NULL, *upper = NULL, *work = NULL, *opts = NULL;
        int r;

        if ((r = xasprintf(&rootfs, "%s/rootfs", bundle)) < 0 || (r = mkdir_p1(rootfs, 0755)) < 0)
                return r;
        if (!c->overlay) {
                _cleanup_free_ char *src = NULL;

                if ((r = xasprintf(&src, "%s/.", image)) < 0)
                        return r;
                return run_tool((char *[]){ "cp", "-a", "--", src, rootfs, NULL });
        }
        if ((r = xasprintf(&upper, "%s/upper", bundle)) < 0 || (r = mkdir_p1(upper, 0755)) < 0 ||
            (r = xasprintf(&work, "%s/work", bundle)) < 0 || (r = mkdir_p1(work, 0700)) < 0 ||
            (r = xasprintf(&opts, "lowerdir=%s,upperdir=%s,workdir=%s", image, upper, work)) < 0)
                return r;
        if (mount("overlay", rootfs, "overlay", MS_NODEV, opts) < 0)
                return lsc_err_set(-errno, "cannot mount the overlay for %s: %s", rootfs, strerror(errno));
        return 0;
}

/* A directory inside a rootfs, made when absent; a symlink there (an image's /etc ->
 * /etc would lead to the host's) is refused. */
static int rootfs_dir(const char *path)
{
        struct stat st;
        int r = mkdir_p1(path, 0755);

        if (r < 0)
                return r;
        if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode))
                return lsc_err_set(-ELOOP, "%s in the image is not a directory (a symlink?): the identity "
                                   "files are not written through it", path);
        return 0;
}

/* The identity as files inside the container: /etc/hostname and /etc/lsc/identity
 * (key=value lines), in the writable layer. */
static int identity_write(const struct drv_spec *spec, const char *bundle)
{
        const char *hostname = spec->hostname ? spec->hostname : spec->name;
        _cleanup_free_ char *etc = NULL, *lscdir = NULL, *path = NULL, *text = NULL, *ips = NULL;
        char *macs = NULL;
        size_t len = 0;
        FILE *f;
        int r;

        if ((r = xasprintf(&etc, "%s/rootfs/etc", bundle)) < 0 || (r = rootfs_dir(etc)) < 0 ||
            (r = xasprintf(&lscdir, "%s/lsc", etc)) < 0 || (r = rootfs_dir(lscdir)) < 0 ||
            (r = xasprintf(&path, "%s/hostname", etc)) < 0 || (r = xasprintf(&text, "%s\n", hostname)) < 0 ||
            (r = write_file(path, text, 0644)) < 0 || (r = spec_ips(spec, &ips)) < 0)
                return r;
        f = open_memstream(&macs, &len);
        if (!f)
                return lsc_err_set(-ENOMEM, "out of memory");
        for (size_t i = 0; i < spec->n_macs; i++) {
                char mac[LSC_MAC_STR];

                lsc_mac_format(&spec->macs[i], mac);
                fprintf(f, "%s%s", i ? "," : "", mac);
        }
        fclose(f);
        free(TAKE_PTR(path));
        free(TAKE_PTR(text));
        r = xasprintf(&path, "%s/identity", lscdir);
        if (r == 0)
                r = xasprintf(&text, "uuid=%s\nname=%s\nhostname=%s\ngeneration=%" PRIu64 "\nmacs=%s\nips=%s\n",
                              spec->uuid, spec->name, hostname, spec->generation, macs ? macs : "", ips);
        free(macs);
        if (r == 0)
                r = write_file(path, text, 0644);
        return r;
}

/* The network namespace with one veth pair per MAC: ethN inside with the MAC, the
 * IPs on eth0 (host prefixes: /32, /128) and a default route through it; the host end
 * up, on the bridge when one is configured. Nothing else on the host is touched. */
static int net_make(struct drv_container *c, const struct drv_spec *spec)
{
        _cleanup_free_ char *ns = NULL;
        int r = netns_name(c, spec->uuid, &ns);

        if (r < 0)
                return r;
        if ((r = run_tool((char *[]){ "ip", "netns", "add", ns, NULL })) < 0)
                return r;
        if ((r = run_tool((char *[]){ "ip", "-n", ns, "link", "set", "lo", "up", NULL })) < 0)
                return r;
        for (size_t i = 0; i < spec->n_macs; i++) {
                char veth[16], mac[LSC_MAC_STR], eth[24];

                veth_name(c, spec->uuid, i, veth);
                lsc_mac_format(&spec->macs[i], mac);
                snprintf(eth, sizeof(eth), "eth%zu", i);
                if ((r = run_tool((char *[]){ "ip", "link", "add", veth, "type", "veth", "peer", "name", eth,
                                              "address", mac, "netns", ns, NULL })) < 0)
                        return r;
                if (c->bridge &&
                    (r = run_tool((char *[]){ "ip", "link", "set", veth, "master", c->bridge, NULL })) < 0)
                        return r;
                if ((r = run_tool((char *[]){ "ip", "link", "set", veth, "up", NULL })) < 0 ||
                    (r = run_tool((char *[]){ "ip", "-n", ns, "link", "set", eth, "up", NULL })) < 0)
                        return r;
        }
        for (size_t i = 0; i < spec->n_ips && spec->n_macs; i++) {
                char ip[LSC_IP_STR + 5];

                lsc_ip_format(&spec->ips[i], ip);
                strcat(ip, spec->ips[i].family == AF_INET ? "/32" : "/128");
                if ((r = run_tool((char *[]){ "ip", "-n", ns, "addr", "add", ip, "dev", "eth0",
                                              spec->ips[i].family == AF_INET6 ? "nodad" : NULL, NULL })) < 0)
                        return r;
        }
        for (int fam = 4; fam <= 6 && spec->n_macs; fam += 2) {
                bool has = false;

                for (size_t i = 0; i < spec->n_ips; i++)
                        has |= spec->ips[i].family == (fam == 4 ? AF_INET : AF_INET6);
                if (has && (r = run_tool((char *[]){ "ip", fam == 4 ? "-4" : "-6", "-n", ns, "route", "add",
                                                     "default", "dev", "eth0", NULL })) < 0)
                        return r;
        }
        return 0;
}

/* Makes a fresh instance from nothing: config.json first (so a crash at any later
 * step leaves a bundle that list shows, and destroy removes), then the layer, the
 * identity files, the network, and the container, created and started. */
static int instance_make(struct drv_container *c, const struct drv_spec *spec)
{
        _cleanup_free_ char *bundle = NULL, *image = NULL, *config = NULL, *path = NULL, *log = NULL;
        char id[DRV_UUID_STR + 8];
        int r;

        if ((r = image_rootfs(c, spec->image, &image)) < 0)
                return r;
        if ((r = mkdir_p1(c->state_dir, 0755)) < 0 || (r = mkdir_p1(c->bundle_dir, 0700)) < 0 ||
            (r = mkdir_p1(c->runtime_root, 0700)) < 0)
                return r;
        if ((r = bundle_path(c, spec->uuid, spec->generation, &bundle)) < 0 || (r = mkdir_p1(bundle, 0700)) < 0)
                return r;
        if ((r = config_json(c, spec, bundle, &config)) < 0 || (r = xasprintf(&path, "%s/config.json", bundle)) < 0 ||
            (r = write_file(path, config, 0600)) < 0)
                return r;
        if ((r = rootfs_make(c, bundle, image)) < 0 || (r = identity_write(spec, bundle)) < 0 ||
            (r = net_make(c, spec)) < 0)
                return r;
        container_id(spec->uuid, id);
        if ((r = xasprintf(&log, "%s/output.log", bundle)) < 0)
                return r;
        /* the container's stdout and stderr go to output.log, with the runtime's own */
        if ((r = runtime_run(c, (char *[]){ "create", "--bundle", bundle, id, NULL }, log, NULL)) < 0)
                return r;
        return runtime_run(c, (char *[]){ "start", id, NULL }, NULL, NULL);
}

static int ct_instantiate(struct drv *d, const struct drv_spec *spec)
{
        struct drv_container *c = ct_of(d);
        _cleanup_free_ char *rb = NULL;
        struct ct_bundle *b;
        char status[16], id[DRV_UUID_STR + 8];
        uint64_t running_g = 0;
        int n, r = drv_spec_check(spec);

        if (r < 0)
                return r;
        if (spec->kind != LSC_KIND_CONTAINER)
                return lsc_err_set(-EOPNOTSUPP, "the container driver runs kind container, not %s",
                                   lsc_kind_names[spec->kind]);
        /* refused rather than run on a layer that would vanish at the next binding */
        if (spec->disk_mode == LSC_DISK_PERSISTENT)
                return lsc_err_set(-EOPNOTSUPP, "instance %s: the container driver has no persistent disks yet "
                                   "(each binding starts from the image)", spec->uuid);
        if ((n = bundles_list(c, spec->uuid, &b)) < 0)
                return n;
        r = runtime_status(c, spec->uuid, status, &rb);
        for (int i = 0; r == 0 && i < n; i++) {
                if (b[i].meta.generation > spec->generation)
                        r = lsc_err_set(-ESTALE, "instance %s has generation %" PRIu64 ", newer than %" PRIu64,
                                        spec->uuid, b[i].meta.generation, spec->generation);
                if (rb && strcmp(rb, b[i].path) == 0)
                        running_g = b[i].meta.generation;
        }
        bundles_free(b, (size_t)n);
        if (r < 0)
                return r;
        container_id(spec->uuid, id);
        if (status[0] && !running_g)
                return lsc_err_set(-EEXIST, "container %s exists (bundle %s) and lsc did not create it",
                                   id, rb ? rb : "unknown");
        /* already this binding: make sure it runs (a crash came between create and
         * start). A stopped one cannot start twice, and after a reboot its layer and
         * namespace are gone: it is made again below, from the image. */
        if (running_g == spec->generation && status_state(status) == DRV_STATE_RUNNING)
                return 0;
        if (running_g == spec->generation && strcmp(status, "created") == 0)
                return runtime_run(c, (char *[]){ "start", id, NULL }, NULL, NULL);
        /* older generations, and whatever a crash left of this one, go first: this
         * binding never ran here, so it starts clean */
        if ((r = remove_upto(c, spec->uuid, spec->generation)) < 0)
                return r;
        r = instance_make(c, spec);
        if (r < 0) {
                /* leave nothing half-made; the detail above is the one that matters */
                char keep[512];

                snprintf(keep, sizeof(keep), "%s", lsc_err_msg(r));
                remove_upto(c, spec->uuid, spec->generation);
                return lsc_err_set(r, "%s", keep);
        }
        return 0;
}

/* ---- capacity, stats, health ---- */

static uint64_t meminfo_kib(const char *key)
{
        FILE *f = fopen("/proc/meminfo", "re");
        char line[256];
        size_t klen = strlen(key);
        uint64_t v = 0;

        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
                        v = strtoull(line + klen + 1, NULL, 10);
                        break;
                }
        fclose(f);
        return v;
}

static int ct_capacity(struct drv *d, struct drv_capacity *ret)
{
        struct drv_container *c = ct_of(d);
        struct drv_capacity cap = c->override;

        if (!cap.vcpus) {
                long n = sysconf(_SC_NPROCESSORS_ONLN);
                cap.vcpus = n > 0 ? (uint32_t)n : 1;
        }
        if (!cap.memory_mib)
                cap.memory_mib = meminfo_kib("MemTotal") / 1024;
        if (!cap.disk_gib) {
                struct statvfs sv;

                if (statvfs(c->state_dir, &sv) < 0)
                        return lsc_err_set(-errno, "cannot measure %s for disk capacity: %s "
                                           "(set disk_gib or create the state dir)", c->state_dir, strerror(errno));
                cap.disk_gib = (uint64_t)sv.f_blocks * sv.f_frsize >> 30;
        }
        *ret = cap;
        return 0;
}

static uint64_t file_u64(const char *path, const char *key)
{
        FILE *f = fopen(path, "re");
        char line[256];
        uint64_t v = 0;

        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f)) {
                if (!key) {
                        v = strtoull(line, NULL, 10);
                        break;
                }
                if (strncmp(line, key, strlen(key)) == 0 && line[strlen(key)] == ' ') {
                        v = strtoull(line + strlen(key) + 1, NULL, 10);
                        break;
                }
        }
        fclose(f);
        return v;
}

/* CPU and memory of uuid's cgroup: v2 (cpu.stat, memory.current) at /sys/fs/cgroup or,
 * on a hybrid host, at its unified/ (crun puts it there), else v1 (cpuacct, memory);
 * zero where none is there. */
static void instance_stats(const struct drv_container *c, const char *uuid, struct drv_instance_stats *s)
{
        static const char *const v2[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/unified" };
        const char *host = c->host ? c->host : "any";
        char p[512];

        for (size_t i = 0; i < ARRAY_SIZE(v2) && !s->cpu_time_ns; i++) {
                snprintf(p, sizeof(p), "%s/lsc/%s/%s/cpu.stat", v2[i], host, uuid);
                s->cpu_time_ns = file_u64(p, "usage_usec") * 1000;
                snprintf(p, sizeof(p), "%s/lsc/%s/%s/memory.current", v2[i], host, uuid);
                s->memory_kib = file_u64(p, NULL) / 1024;
        }
        if (!s->cpu_time_ns) {
                snprintf(p, sizeof(p), "/sys/fs/cgroup/cpuacct/lsc/%s/%s/cpuacct.usage", host, uuid);
                s->cpu_time_ns = file_u64(p, NULL);
        }
        if (!s->memory_kib) {
                snprintf(p, sizeof(p), "/sys/fs/cgroup/memory/lsc/%s/%s/memory.usage_in_bytes", host, uuid);
                s->memory_kib = file_u64(p, NULL) / 1024;
        }
}

static int ct_stats(struct drv *d, struct drv_stats *ret)
{
        struct drv_container *c = ct_of(d);
        struct drv_instance *inv = NULL;
        struct drv_stats s = {0};
        FILE *f;
        int n = ct_list(d, &inv);

        if (n < 0)
                return n;
        s.instances = calloc((size_t)n + 1, sizeof(*s.instances));
        if (!s.instances) {
                free(inv);
                return lsc_err_set(-ENOMEM, "out of memory collecting stats");
        }
        for (int i = 0; i < n; i++) {
                if (inv[i].state != DRV_STATE_RUNNING)
                        continue;
                memcpy(s.instances[s.n_instances].uuid, inv[i].uuid, DRV_UUID_STR);
                instance_stats(c, inv[i].uuid, &s.instances[s.n_instances]);
                s.n_instances++;
        }
        free(inv);
        /* /proc/stat's first line, in USER_HZ ticks: user nice system idle iowait irq softirq steal */
        f = fopen("/proc/stat", "re");
        if (f) {
                unsigned long long t[8] = {0};
                long hz = sysconf(_SC_CLK_TCK);

                if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &t[0], &t[1], &t[2], &t[3], &t[4],
                           &t[5], &t[6], &t[7]) == 8 && hz > 0) {
                        uint64_t busy = t[0] + t[1] + t[2] + t[5] + t[6] + t[7], idle = t[3] + t[4];

                        s.host_cpu_busy_ns = busy * (1000000000ull / (uint64_t)hz);
                        s.host_cpu_total_ns = (busy + idle) * (1000000000ull / (uint64_t)hz);
                }
                fclose(f);
        }
        s.host_memory_total_kib = meminfo_kib("MemTotal");
        s.host_memory_free_kib = meminfo_kib("MemAvailable");
        *ret = s;
        return 0;
}

static int ct_health(struct drv *d)
{
        struct drv_container *c = ct_of(d);
        char *args[] = { c->runtime, "--version", NULL };
        int r = run_tool(args);

        if (r < 0)
                return lsc_err_set(-EIO, "OCI runtime %s does not run: %s", c->runtime, lsc_err_msg(r));
        if (access(NETNS_DIR, F_OK) < 0 && mkdir_p1(NETNS_DIR, 0755) < 0)
                return lsc_err_set(-EIO, "cannot create " NETNS_DIR " for the containers' network namespaces");
        return 0;
}

static int ct_note(struct drv *d, char *buf, size_t len)
{
        snprintf(buf, len, "%s", ct_of(d)->note);
        return 0;
}

/* ---- opening: what this host can do ---- */

static void note_add(struct drv_container *c, const char *what)
{
        size_t n = strlen(c->note);

        snprintf(c->note + n, sizeof(c->note) - n, "%s%s", n ? "; " : "", what);
}

/* Whether overlayfs mounts here (upper and work on the state dir's file system):
 * not on every kernel, not over some file systems, and not without CAP_SYS_ADMIN. */
static bool overlay_works(const struct drv_container *c)
{
        _cleanup_free_ char *base = NULL;
        char l[4200], u[4200], w[4200], m[4200], opts[13000];
        bool ok;

        if (xasprintf(&base, "%s/.overlay-probe", c->bundle_dir) < 0)
                return false;
        rm_rf(base);
        snprintf(l, sizeof(l), "%s/l", base);
        snprintf(u, sizeof(u), "%s/u", base);
        snprintf(w, sizeof(w), "%s/w", base);
        snprintf(m, sizeof(m), "%s/m", base);
        if (mkdir_p1(base, 0700) < 0 || mkdir_p1(l, 0755) < 0 || mkdir_p1(u, 0755) < 0 || mkdir_p1(w, 0700) < 0 ||
            mkdir_p1(m, 0755) < 0)
                return false;
        snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s", l, u, w);
        ok = mount("overlay", m, "overlay", 0, opts) == 0;
        if (ok)
                umount2(m, MNT_DETACH);
        rm_rf(base);
        return ok;
}

static bool has_cap(int cap)
{
        FILE *f = fopen("/proc/self/status", "re");
        char line[256];
        uint64_t eff = 0;

        if (!f)
                return false;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, "CapEff:", 7) == 0)
                        eff = strtoull(line + 7, NULL, 16);
        fclose(f);
        return (eff >> cap) & 1;
}

/* Hybrid: cgroup v1 controllers at /sys/fs/cgroup with v2 beside them at unified. */
static bool cgroups_hybrid(void)
{
        struct statfs sf;

        return statfs("/sys/fs/cgroup", &sf) == 0 && sf.f_type != CGROUP2_MAGIC &&
               statfs("/sys/fs/cgroup/unified", &sf) == 0 && sf.f_type == CGROUP2_MAGIC;
}

static void ct_close(struct drv *d)
{
        struct drv_container *c = ct_of(d);

        pthread_mutex_destroy(&c->image_lock);
        free(c->runtime);
        free(c->runtime_root);
        free(c->host);
        free(c->bridge);
        free(c->state_dir);
        free(c->image_dir);
        free(c->bundle_dir);
        free(c->cache_dir);
        free(c);
}

static int ct_open(const struct drv_config *cfg, struct drv **ret)
{
        struct drv_container *c = calloc(1, sizeof(*c));
        const char *base;
        char buf[LSC_SHOW_BUF];
        int r = 0;

        if (!c)
                return lsc_err_set(-ENOMEM, "out of memory opening the container driver");
        c->base.ops = &drv_container_ops;
        pthread_mutex_init(&c->image_lock, NULL);
        if (cfg->host && lsc_validate_name("host name", cfg->host) < 0)
                r = -EINVAL;
        if (r == 0)
                r = dup_opt(cfg->host && *cfg->host ? cfg->host : NULL, &c->host);
        if (r == 0)
                r = dup_opt(cfg->runtime && *cfg->runtime ? cfg->runtime : DEFAULT_RUNTIME, &c->runtime);
        if (r == 0)
                r = dup_opt(cfg->bridge && *cfg->bridge ? cfg->bridge : NULL, &c->bridge);
        if (r == 0)
                r = dup_opt(cfg->state_dir ? cfg->state_dir : DEFAULT_STATE_DIR, &c->state_dir);
        if (r == 0)
                r = dup_opt(cfg->image_dir ? cfg->image_dir : DEFAULT_IMAGE_DIR, &c->image_dir);
        if (r == 0 && cfg->runtime_root)
                r = dup_opt(cfg->runtime_root, &c->runtime_root);
        else if (r == 0)
                r = xasprintf(&c->runtime_root, "%s/runtime", c->state_dir);
        if (r == 0)
                r = xasprintf(&c->bundle_dir, "%s/containers", c->state_dir);
        if (r == 0)
                r = xasprintf(&c->cache_dir, "%s/images", c->state_dir);
        if (r < 0)
                goto fail;
        if (c->runtime_root[0] != '/') {
                r = lsc_err_set(-EINVAL, "invalid runtime_root \"%s\": want an absolute path",
                                lsc_str_show(c->runtime_root, buf));
                goto fail;
        }
        if (strpbrk(c->image_dir, ":,") || strpbrk(c->state_dir, ":,")) {
                r = lsc_err_set(-EINVAL, "image_dir %s and state_dir %s must not contain ':' or ',' "
                                "(overlayfs options)", c->image_dir, c->state_dir);
                goto fail;
        }
        base = strrchr(c->runtime, '/') ? strrchr(c->runtime, '/') + 1 : c->runtime;
        c->crun = strcmp(base, "crun") == 0;
        if ((r = run_tool((char *[]){ c->runtime, "--version", NULL })) < 0) {
                r = lsc_err_set(-ENOENT, "invalid runtime \"%s\": it does not run (%s); install runc or "
                                "crun, or give its path", lsc_str_show(c->runtime, buf), lsc_err_msg(r));
                goto fail;
        }
        /* by netlink, not /sys: sysfs shows the namespace that mounted it */
        if (c->bridge) {
                if (!if_nametoindex(c->bridge)) {
                        r = lsc_err_set(-ENOENT, "invalid bridge \"%s\": no such bridge on this host",
                                        lsc_str_show(c->bridge, buf));
                        goto fail;
                }
        }
        if ((r = mkdir_p1(c->state_dir, 0755)) < 0 || (r = mkdir_p1(c->bundle_dir, 0700)) < 0 ||
            (r = mkdir_p1(c->runtime_root, 0700)) < 0)
                goto fail;
        c->overlay = overlay_works(c);
        if (!c->overlay)
                note_add(c, "overlayfs unavailable: each container gets a full copy of its image");
        c->limits = true;
        if (c->crun && cgroups_hybrid()) {
                /* crun 1.8 refuses hybrid cgroups; in a mount namespace that sees only v2
                 * it runs, but cannot apply limits there */
                c->cgroup2_ns = true;
                c->limits = false;
                note_add(c, "crun on hybrid cgroups: run in a cgroup-v2-only mount namespace, CPU and "
                         "memory limits not enforced");
        }
        if (!has_cap(CAP_SYS_RESOURCE))
                note_add(c, "no CAP_SYS_RESOURCE: resource limits cannot be raised");
        c->override = (struct drv_capacity){ cfg->vcpus, cfg->memory_mib, cfg->disk_gib };
        *ret = &c->base;
        return 0;
fail:
        ct_close(&c->base);
        return r;
}

const struct drv_ops drv_container_ops = {
        .name = "container",
        .open = ct_open,
        .close = ct_close,
        .capacity = ct_capacity,
        .list = ct_list,
        .instantiate = ct_instantiate,
        .destroy = ct_destroy,
        .shutdown = ct_shutdown,
        .stats = ct_stats,
        .health = ct_health,
        .note = ct_note,
};
