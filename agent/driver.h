/* The driver layer: one const vtable per backend ("libvirt", "container", "fake",
 * "metal"), looked up by name. Only drv_*.c touch a hypervisor. Every call blocks:
 * the agent runs them on worker threads, never on the loop thread. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "addr.h"
#include "validate.h"

#define DRV_UUID_STR 37                  /* canonical "xxxxxxxx-xxxx-...", lower case, + NUL */

/* How the driver is set up; borrowed by open() (strings are copied). A zero or NULL
 * field takes the default shown. */
struct drv_metal_config;

struct drv_config {
        const char *uri;                 /* libvirt: "test:///default" (in-process test
                                          * hypervisor); "qemu:///system" for real VMs */
        const char *domain_type;         /* libvirt <domain type>: "test" for test:, "kvm"
                                          * for a local qemu: whose user can open /dev/kvm
                                          * (group kvm or world rw), else "qemu" (TCG) */
        const char *bridge;              /* NICs on this bridge (type='bridge'; container: the
                                          * host ends of the veths) ... */
        const char *network;             /* ... else on this libvirt network ... else
                                          * user-mode networking */
        const char *state_dir;           /* "/var/lib/lsc": ephemeral overlays go in its
                                          * disks/ (the hypervisor's user must traverse it) */
        const char *image_dir;           /* "/var/lib/lsc/images": base images by name */
        const char *host;                /* libvirt: the agent's host name, written into each
                                          * domain's metadata; only domains of this host are
                                          * its (several hosts may share one libvirtd, e.g.
                                          * in tests). NULL: every lsc domain */
        const char *volume_dir;          /* persistent disks (UUID.qcow2), on storage the
                                          * hosts share; NULL: persistent identities are
                                          * refused */
        const char *runtime;             /* container: the OCI runtime, "runc" (default),
                                          * "crun" or a path */
        const char *runtime_root;        /* container: the runtime's --root, where it keeps
                                          * its containers' state; "STATE_DIR/runtime" */
        /* Capacity overrides; 0: the driver's own figure (libvirt: node CPUs, MemTotal,
         * statvfs(state_dir); fake: 8 vCPUs, 16384 MiB, 100 GiB). */
        uint32_t vcpus;
        uint64_t memory_mib;
        uint64_t disk_gib;
        /* Fake only: faults in force from the start (see drv_fake_inject). */
        uint32_t fake_fail_instantiate;  /* the first N instantiates fail ... */
        const char *fake_fail_message;   /* ... with this detail ("injected failure") */
        uint32_t fake_latency_ms;        /* added to every call */
        bool fake_unhealthy;             /* health() says -EIO */
        bool fake_hang;                  /* every call blocks until drv_fake_inject releases it */
        /* Fake only: the share of each running instance's vCPUs kept busy, over the UTC
         * day from fake_load_low at 02:00 to fake_load_high at 14:00 (a cosine); equal:
         * constant. Both 0 and !fake_load_set: one vCPU busy per instance. */
        bool fake_load_set;
        double fake_load_low, fake_load_high;    /* 0..1 */
        /* Metal only: the machine, its BMC and its network boot (drv_metal.h). */
        const struct drv_metal_config *metal;
};

/* One binding of an identity: what instantiate() builds. Pointers are borrowed for
 * the call. uuid becomes the instance's (SMBIOS) UUID, name its name. */
struct drv_spec {
        const char *uuid;                /* canonical form, DRV_UUID_STR - 1 characters */
        const char *name;                /* a DNS label (lsc_validate_name) */
        uint64_t generation;             /* >= 1 */
        enum lsc_kind kind;
        uint32_t vcpus;
        uint64_t memory_mib;
        uint64_t disk_gib;               /* 0: the image's own size */
        enum lsc_disk_mode disk_mode;
        const char *image;               /* a name inside image_dir; not a file -> diskless */
        const struct lsc_mac *macs;      /* one NIC per MAC, in order */
        size_t n_macs;
        const struct lsc_ip *ips;        /* handed to the guest as metadata (DHCP serves them) */
        size_t n_ips;
        const char *hostname;            /* NULL: name */
};

/* What the hypervisor says an instance is doing. A paused or suspended instance counts
 * as running: it still holds the identity. */
enum drv_state { DRV_STATE_RUNNING, DRV_STATE_STOPPED, DRV_STATE_CRASHED, DRV_STATE_COUNT };
extern const char *const drv_state_names[DRV_STATE_COUNT];

/* An lsc-owned instance as the hypervisor has it: the truth, whatever the agent recorded. */
struct drv_instance {
        char uuid[DRV_UUID_STR];
        char name[LSC_NAME_MAX + 1];
        uint64_t generation;
        enum drv_state state;
};

struct drv_capacity {
        uint32_t vcpus;
        uint64_t memory_mib;
        uint64_t disk_gib;
};

struct drv_instance_stats {
        char uuid[DRV_UUID_STR];
        uint64_t cpu_time_ns;            /* cumulative, all vCPUs */
        uint64_t memory_kib;             /* resident on the host when known, else allocated */
};

/* Cumulative counters: utilisation is the difference of two samples
 * (drv_stats_cpu_permille, drv_stats_instance_vcpus). Zero where the backend cannot tell. */
struct drv_stats {
        int64_t sampled_us;              /* lsc_now_us() when the instances' counters were read */
        uint64_t host_cpu_busy_ns;
        uint64_t host_cpu_total_ns;
        uint64_t host_memory_total_kib;
        uint64_t host_memory_free_kib;
        size_t n_instances;
        struct drv_instance_stats *instances;    /* malloc'd; drv_stats_clear frees it */
};

/* The handle open() returns. Each backend embeds it as the first member of its own
 * state, so a handle knows its table. Thread-safety: every backend's handle may be
 * shared by worker threads (libvirt connections are thread-safe, the fake locks), but
 * calls for the same uuid must not run concurrently: the caller serialises per uuid. */
struct drv {
        const struct drv_ops *ops;
};

/* A backend. A NULL slot means unsupported: the drv_* wrappers below then return
 * -EOPNOTSUPP with a detail, so callers never test slots themselves. Every slot returns
 * 0 (or a count) or -errno with an lsc_err_set() detail; a hypervisor failure is -EIO
 * with the hypervisor's own message. */
struct drv_ops {
        const char *name;
        int (*open)(const struct drv_config *cfg, struct drv **ret);
        void (*close)(struct drv *d);
        int (*capacity)(struct drv *d, struct drv_capacity *ret);
        /* lsc-owned instances, running or only defined; *ret is malloc'd (free()).
         * Returns the count. Instances lsc did not create are never listed. */
        int (*list)(struct drv *d, struct drv_instance **ret);
        /* Makes spec's binding run. Idempotent: the same uuid and generation already
         * there is success (started again if it had stopped); an older generation is
         * destroyed first; a newer one is -ESTALE; a name or uuid held by something
         * lsc did not create is -EEXIST. */
        int (*instantiate)(struct drv *d, const struct drv_spec *spec);
        /* Removes every instance of uuid with generation <= generation, with its
         * ephemeral disk (never a persistent one). Nothing there is success; an instance
         * lsc did not create is -EPERM. */
        int (*destroy)(struct drv *d, const char *uuid, uint64_t generation);
        /* As destroy, but asks the guest first (ACPI power button) and destroys only
         * when timeout_ms passes. 0: it shut down by itself (or nothing was there);
         * 1: it had to be destroyed. */
        int (*shutdown)(struct drv *d, const char *uuid, uint64_t generation, uint32_t timeout_ms);
        int (*stats)(struct drv *d, struct drv_stats *ret);
        /* 0: the hypervisor answers; -EIO with the reason otherwise. */
        int (*health)(struct drv *d);
        /* What this host lacks though the driver works (limits not enforced, no
         * overlayfs, ...): one line into buf, empty when nothing. */
        int (*note)(struct drv *d, char *buf, size_t len);
};

extern const struct drv_ops drv_libvirt_ops;
extern const struct drv_ops drv_container_ops;
extern const struct drv_ops drv_fake_ops;
extern const struct drv_ops drv_metal_ops;

/* The table for name, or NULL for an unknown (or not yet built) backend. */
const struct drv_ops *drv_lookup(const char *name);

/* Looks name up and opens it: -ENOENT for an unknown driver. */
int drv_open(const char *name, const struct drv_config *cfg, struct drv **ret);
/* Accepts NULL; NULLs *d. */
void drv_close(struct drv **d);

/* Records "driver X does not support Y" and returns -EOPNOTSUPP. */
int drv_unsupported(const struct drv *d, const char *what);

static inline int drv_capacity(struct drv *d, struct drv_capacity *ret)
{
        return d->ops->capacity ? d->ops->capacity(d, ret) : drv_unsupported(d, "capacity");
}
static inline int drv_list(struct drv *d, struct drv_instance **ret)
{
        return d->ops->list ? d->ops->list(d, ret) : drv_unsupported(d, "list");
}
static inline int drv_instantiate(struct drv *d, const struct drv_spec *spec)
{
        return d->ops->instantiate ? d->ops->instantiate(d, spec) : drv_unsupported(d, "instantiate");
}
static inline int drv_destroy(struct drv *d, const char *uuid, uint64_t generation)
{
        return d->ops->destroy ? d->ops->destroy(d, uuid, generation) : drv_unsupported(d, "destroy");
}
static inline int drv_shutdown(struct drv *d, const char *uuid, uint64_t generation, uint32_t timeout_ms)
{
        return d->ops->shutdown ? d->ops->shutdown(d, uuid, generation, timeout_ms)
                                : drv_unsupported(d, "shutdown");
}
static inline int drv_stats(struct drv *d, struct drv_stats *ret)
{
        return d->ops->stats ? d->ops->stats(d, ret) : drv_unsupported(d, "stats");
}
static inline int drv_health(struct drv *d)
{
        return d->ops->health ? d->ops->health(d) : drv_unsupported(d, "health");
}

/* An empty line for a backend without notes. */
static inline int drv_note(struct drv *d, char *buf, size_t len)
{
        if (len)
                buf[0] = '\0';
        return d->ops->note ? d->ops->note(d, buf, len) : 0;
}

/* Frees ret->instances and zeroes *s; accepts a zeroed struct. */
void drv_stats_clear(struct drv_stats *s);
/* Host CPU use between two samples in permille (0-1000); 0 when they cannot tell. */
unsigned drv_stats_cpu_permille(const struct drv_stats *before, const struct drv_stats *after);
/* vCPUs busy for after->instances[i] since before (CPU time delta / wall delta), or
 * -ENODATA when before has no sample of that uuid, or the counters cannot tell (a
 * restarted instance, no time between the samples). */
int drv_stats_instance_vcpus(const struct drv_stats *before, const struct drv_stats *after, size_t i,
                             double *ret);

/* Checks what every backend needs of a spec (uuid form, name, generation, sizes):
 * 0 or -EINVAL with a detail. */
int drv_spec_check(const struct drv_spec *spec);
/* Whether s is a canonical lower-case UUID string. */
bool drv_uuid_valid(const char *s);
/* The persistent volume of uuid: "DIR/UUID.qcow2" (DIR absolute, trailing slashes
 * dropped). -EINVAL with a detail when dir is NULL (no volume_dir), relative, or uuid
 * is not canonical. */
int drv_volume_path(const char *dir, const char *uuid, char **ret);

/* ---- fake: an in-memory hypervisor with fault injection, for tests ---- */

enum drv_fake_fault {
        DRV_FAKE_FAIL_INSTANTIATE,       /* arg: the next N instantiates fail (-EIO, message) */
        DRV_FAKE_LATENCY,                /* arg: ms added to every call (0 clears) */
        DRV_FAKE_HANG,                   /* arg 1: every call blocks; arg 0 releases them */
        DRV_FAKE_UNHEALTHY,              /* arg 1: health() is -EIO with message; 0 heals */
        DRV_FAKE_LOAD,                   /* arg: permille of each instance's vCPUs busy from
                                          * now on (constant; replaces fake_load) */
        DRV_FAKE_FAULT_COUNT
};
extern const char *const drv_fake_fault_names[DRV_FAKE_FAULT_COUNT];

/* Sets a fault on a fake handle (takes effect for calls that start afterwards; a
 * release wakes calls already hung). -EINVAL when d is not a fake handle. Never
 * delayed by the faults themselves. message may be NULL. */
int drv_fake_inject(struct drv *d, enum drv_fake_fault fault, uint64_t arg, const char *message);
/* Changes an instance behind the agent's back, as a guest crash or an admin would:
 * -ENOENT when uuid is not there. */
int drv_fake_set_state(struct drv *d, const char *uuid, enum drv_state state);
