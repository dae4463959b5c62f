/* The driver registry and what every backend shares: lookup by name, the wrappers'
 * "unsupported" answer, spec checks and stats arithmetic. */
#define _GNU_SOURCE             /* asprintf */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "driver.h"
#include "err.h"
#include "util.h"

const char *const drv_state_names[DRV_STATE_COUNT] = {
        [DRV_STATE_RUNNING] = "running",
        [DRV_STATE_STOPPED] = "stopped",
        [DRV_STATE_CRASHED] = "crashed",
};

static const struct drv_ops *const drivers[] = {
        &drv_libvirt_ops,
        &drv_container_ops,
        &drv_fake_ops,
        &drv_metal_ops,
};

const struct drv_ops *drv_lookup(const char *name)
{
        if (!name)
                return NULL;
        for (size_t i = 0; i < ARRAY_SIZE(drivers); i++)
                if (strcmp(drivers[i]->name, name) == 0)
                        return drivers[i];
        return NULL;
}

int drv_open(const char *name, const struct drv_config *cfg, struct drv **ret)
{
        const struct drv_ops *ops = drv_lookup(name);
        static const struct drv_config defaults;
        char buf[LSC_SHOW_BUF];

        if (!ops)
                return lsc_err_set(-ENOENT, "unknown driver \"%s\": use libvirt, container, fake or metal",
                                   lsc_str_show(name ? name : "", buf));
        if (!ops->open)
                return lsc_err_set(-EOPNOTSUPP, "driver %s cannot be opened", ops->name);
        return ops->open(cfg ? cfg : &defaults, ret);
}

void drv_close(struct drv **d)
{
        if (!d || !*d)
                return;
        if ((*d)->ops->close)
                (*d)->ops->close(*d);
        *d = NULL;
}

int drv_unsupported(const struct drv *d, const char *what)
{
        return lsc_err_set(-EOPNOTSUPP, "driver %s does not support %s", d->ops->name, what);
}

void drv_stats_clear(struct drv_stats *s)
{
        free(s->instances);
        memset(s, 0, sizeof(*s));
}

unsigned drv_stats_cpu_permille(const struct drv_stats *before, const struct drv_stats *after)
{
        uint64_t busy, total;

        /* Counters that went backwards belong to a restarted host or a new handle. */
        if (after->host_cpu_total_ns <= before->host_cpu_total_ns ||
            after->host_cpu_busy_ns < before->host_cpu_busy_ns)
                return 0;
        busy = after->host_cpu_busy_ns - before->host_cpu_busy_ns;
        total = after->host_cpu_total_ns - before->host_cpu_total_ns;
        if (busy >= total)
                return 1000;
        return (unsigned)(busy * 1000 / total);
}

int drv_stats_instance_vcpus(const struct drv_stats *before, const struct drv_stats *after, size_t i,
                             double *ret)
{
        const struct drv_instance_stats *a = &after->instances[i], *b = NULL;

        /* the same order from one sample to the next is the usual case */
        if (i < before->n_instances && strcmp(before->instances[i].uuid, a->uuid) == 0)
                b = &before->instances[i];
        for (size_t k = 0; !b && k < before->n_instances; k++)
                if (strcmp(before->instances[k].uuid, a->uuid) == 0)
                        b = &before->instances[k];
        if (!b || after->sampled_us <= before->sampled_us || a->cpu_time_ns < b->cpu_time_ns)
                return -ENODATA;
        *ret = (double)(a->cpu_time_ns - b->cpu_time_ns) / ((double)(after->sampled_us - before->sampled_us) * 1000.0);
        return 0;
}

bool drv_uuid_valid(const char *s)
{
        static const char form[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

        if (!s || strlen(s) != sizeof(form) - 1)
                return false;
        for (size_t i = 0; form[i]; i++) {
                if (form[i] == '-') {
                        if (s[i] != '-')
                                return false;
                } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
                        return false;
                }
        }
        return true;
}

int drv_volume_path(const char *dir, const char *uuid, char **ret)
{
        char buf[LSC_SHOW_BUF];
        size_t n;

        if (!drv_uuid_valid(uuid))
                return lsc_err_set(-EINVAL, "invalid uuid \"%s\" for a volume",
                                   lsc_str_show(uuid ? uuid : "", buf));
        if (!dir)
                return lsc_err_set(-EINVAL, "instance %s has a persistent disk but this host has no "
                                   "volume_dir (shared storage for persistent disks)", uuid);
        if (dir[0] != '/')
                return lsc_err_set(-EINVAL, "volume_dir \"%s\" is not an absolute path",
                                   lsc_str_show(dir, buf));
        n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/')
                n--;
        if (asprintf(ret, "%.*s/%s.qcow2", (int)(n == 1 ? 0 : n), dir, uuid) < 0)
                return lsc_err_set(-ENOMEM, "out of memory");
        return 0;
}

int drv_spec_check(const struct drv_spec *spec)
{
        char buf[LSC_SHOW_BUF];
        int r;

        if (!drv_uuid_valid(spec->uuid))
                return lsc_err_set(-EINVAL, "invalid uuid \"%s\": want the canonical lower-case form",
                                   lsc_str_show(spec->uuid ? spec->uuid : "", buf));
        if (!spec->name)
                return lsc_err_set(-EINVAL, "instance %s has no name", spec->uuid);
        r = lsc_validate_name("server name", spec->name);
        if (r < 0)
                return r;
        if (spec->hostname) {
                r = lsc_validate_hostname(spec->hostname);
                if (r < 0)
                        return r;
        }
        if (spec->generation == 0)
                return lsc_err_set(-EINVAL, "instance %s: generation 0 is never bound", spec->uuid);
        if ((unsigned)spec->kind >= LSC_KIND_COUNT)
                return lsc_err_set(-EINVAL, "instance %s: invalid kind %d", spec->uuid, (int)spec->kind);
        if ((unsigned)spec->disk_mode >= LSC_DISK_MODE_COUNT)
                return lsc_err_set(-EINVAL, "instance %s: invalid disk mode %d", spec->uuid,
                                   (int)spec->disk_mode);
        r = lsc_validate_vcpus(spec->vcpus);
        if (r < 0)
                return r;
        r = lsc_validate_memory_mib(spec->memory_mib);
        if (r < 0)
                return r;
        if (spec->disk_gib) {
                r = lsc_validate_disk_gib(spec->disk_gib);
                if (r < 0)
                        return r;
        }
        if (spec->image) {
                r = lsc_validate_image(spec->image);
                if (r < 0)
                        return r;
        }
        if (spec->n_macs && !spec->macs)
                return lsc_err_set(-EINVAL, "instance %s: %zu MACs but no array", spec->uuid, spec->n_macs);
        if (spec->n_ips && !spec->ips)
                return lsc_err_set(-EINVAL, "instance %s: %zu IPs but no array", spec->uuid, spec->n_ips);
        return 0;
}
