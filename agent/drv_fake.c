/* The fake driver: an in-memory hypervisor with the libvirt driver's rules (generations,
 * idempotence) and injectable faults (failures, latency, hangs, ill health), so the
 * agent and the manager can be tested without a hypervisor. One mutex guards it all. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "driver.h"
#include "err.h"
#include "util.h"

const char *const drv_fake_fault_names[DRV_FAKE_FAULT_COUNT] = {
        [DRV_FAKE_FAIL_INSTANTIATE] = "fail_instantiate",
        [DRV_FAKE_LATENCY] = "latency",
        [DRV_FAKE_HANG] = "hang",
        [DRV_FAKE_UNHEALTHY] = "unhealthy",
        [DRV_FAKE_LOAD] = "load",
};

struct fake_instance {
        struct drv_instance pub;
        uint32_t vcpus;
        uint64_t memory_mib;
        int64_t acc_us;                  /* lsc_now_us() up to which cpu_ns counts; 0 while stopped */
        uint64_t cpu_ns;                 /* CPU time used, all vCPUs */
};

struct drv_fake {
        struct drv base;                 /* first: the handle the agent holds */
        pthread_mutex_t lock;
        pthread_cond_t unhang;
        struct drv_capacity cap;
        int64_t opened_us;
        struct fake_instance *inst;
        size_t n, alloc;
        /* faults, under lock */
        uint32_t fail_left;
        char fail_msg[256];
        uint32_t latency_ms;
        bool hang;
        bool unhealthy;
        char unhealthy_msg[256];
        bool load_set;                   /* else one vCPU busy per running instance */
        double load_low, load_high;      /* share of the vCPUs busy over the UTC day */
};

#define FAKE_DEFAULT_VCPUS 8u
#define FAKE_DEFAULT_MEMORY_MIB 16384u
#define FAKE_DEFAULT_DISK_GIB 100u

static struct drv_fake *fake_of(struct drv *d)
{
        return (struct drv_fake *)d;
}

static void sleep_ms(uint32_t ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Every call starts here: it waits out a hang, then the latency, and returns holding
 * the lock, as a slow hypervisor would be slow before answering. */
static void fake_enter(struct drv_fake *f)
{
        uint32_t ms;

        pthread_mutex_lock(&f->lock);
        while (f->hang)
                pthread_cond_wait(&f->unhang, &f->lock);
        ms = f->latency_ms;
        if (ms) {
                pthread_mutex_unlock(&f->lock);
                sleep_ms(ms);
                pthread_mutex_lock(&f->lock);
        }
}

static void fake_leave(struct drv_fake *f)
{
        pthread_mutex_unlock(&f->lock);
}

static void copy_msg(char *dst, size_t len, const char *msg, const char *fallback)
{
        snprintf(dst, len, "%s", msg && *msg ? msg : fallback);
}

static void fake_close(struct drv *d);

static int fake_open(const struct drv_config *cfg, struct drv **ret)
{
        struct drv_fake *f = calloc(1, sizeof(*f));

        if (!f)
                return lsc_err_set(-ENOMEM, "out of memory opening the fake driver");
        f->base.ops = &drv_fake_ops;
        pthread_mutex_init(&f->lock, NULL);
        pthread_cond_init(&f->unhang, NULL);
        f->cap = (struct drv_capacity){
                .vcpus = cfg->vcpus ? cfg->vcpus : FAKE_DEFAULT_VCPUS,
                .memory_mib = cfg->memory_mib ? cfg->memory_mib : FAKE_DEFAULT_MEMORY_MIB,
                .disk_gib = cfg->disk_gib ? cfg->disk_gib : FAKE_DEFAULT_DISK_GIB,
        };
        f->opened_us = lsc_now_us();
        f->fail_left = cfg->fake_fail_instantiate;
        copy_msg(f->fail_msg, sizeof(f->fail_msg), cfg->fake_fail_message, "injected failure");
        f->latency_ms = cfg->fake_latency_ms;
        f->hang = cfg->fake_hang;
        f->unhealthy = cfg->fake_unhealthy;
        copy_msg(f->unhealthy_msg, sizeof(f->unhealthy_msg), NULL, "injected ill health");
        if (cfg->fake_load_set &&
            (!(cfg->fake_load_low >= 0.0 && cfg->fake_load_low <= 1.0) ||
             !(cfg->fake_load_high >= cfg->fake_load_low && cfg->fake_load_high <= 1.0))) {
                fake_close(&f->base);
                return lsc_err_set(-EINVAL, "fake load %g-%g: want shares from 0 to 1, low first",
                                   cfg->fake_load_low, cfg->fake_load_high);
        }
        f->load_set = cfg->fake_load_set;
        f->load_low = cfg->fake_load_low;
        f->load_high = cfg->fake_load_high;
        *ret = &f->base;
        return 0;
}

static void fake_close(struct drv *d)
{
        struct drv_fake *f = fake_of(d);

        pthread_cond_destroy(&f->unhang);
        pthread_mutex_destroy(&f->lock);
        free(f->inst);
        free(f);
}

static int fake_capacity(struct drv *d, struct drv_capacity *ret)
{
        struct drv_fake *f = fake_of(d);

        fake_enter(f);
        *ret = f->cap;
        fake_leave(f);
        return 0;
}

static int fake_list(struct drv *d, struct drv_instance **ret)
{
        struct drv_fake *f = fake_of(d);
        struct drv_instance *out;
        int n;

        fake_enter(f);
        out = calloc(f->n ? f->n : 1, sizeof(*out));
        if (!out) {
                fake_leave(f);
                return lsc_err_set(-ENOMEM, "out of memory listing instances");
        }
        for (size_t i = 0; i < f->n; i++)
                out[i] = f->inst[i].pub;
        n = (int)f->n;
        fake_leave(f);
        *ret = out;
        return n;
}

static struct fake_instance *find_uuid(struct drv_fake *f, const char *uuid)
{
        for (size_t i = 0; i < f->n; i++)
                if (strcmp(f->inst[i].pub.uuid, uuid) == 0)
                        return &f->inst[i];
        return NULL;
}

static void remove_instance(struct drv_fake *f, struct fake_instance *fi)
{
        size_t i = (size_t)(fi - f->inst);

        memmove(&f->inst[i], &f->inst[i + 1], (f->n - i - 1) * sizeof(*f->inst));
        f->n--;
}

static void start_instance(struct fake_instance *fi)
{
        fi->pub.state = DRV_STATE_RUNNING;
        fi->acc_us = lsc_now_us();
}

/* vCPUs busy in fi now: the configured share at this hour of the UTC day. */
static double busy_vcpus(const struct drv_fake *f, const struct fake_instance *fi)
{
        double hour, share;

        if (!f->load_set)
                return 1.0;
        hour = (double)(lsc_wall_us() / 1000000 % 86400) / 3600.0;
        share = f->load_low + (f->load_high - f->load_low) * (1.0 - cos(2.0 * M_PI * (hour - 2.0) / 24.0)) / 2.0;
        return share * fi->vcpus;
}

/* Under the lock: CPU time used up to now at the current load. */
static void account(const struct drv_fake *f, struct fake_instance *fi, int64_t now)
{
        if (fi->pub.state != DRV_STATE_RUNNING || !fi->acc_us || now <= fi->acc_us)
                return;
        fi->cpu_ns += (uint64_t)((double)(now - fi->acc_us) * 1000.0 * busy_vcpus(f, fi));
        fi->acc_us = now;
}

/* Under the lock: the generation rules libvirt's driver follows too. */
static int instantiate_locked(struct drv_fake *f, const struct drv_spec *spec)
{
        struct fake_instance *fi;

        if (f->fail_left) {
                f->fail_left--;
                return lsc_err_set(-EIO, "%s", f->fail_msg);
        }
        fi = find_uuid(f, spec->uuid);
        if (fi && fi->pub.generation > spec->generation)
                return lsc_err_set(-ESTALE, "instance %s runs generation %llu, newer than %llu",
                                   spec->uuid, (unsigned long long)fi->pub.generation,
                                   (unsigned long long)spec->generation);
        if (fi && fi->pub.generation == spec->generation) {
                if (fi->pub.state != DRV_STATE_RUNNING)
                        start_instance(fi);
                return 0;
        }
        for (size_t i = 0; i < f->n; i++)
                if (&f->inst[i] != fi && strcmp(f->inst[i].pub.name, spec->name) == 0)
                        return lsc_err_set(-EEXIST, "name %s is taken by instance %s", spec->name,
                                           f->inst[i].pub.uuid);
        if (fi)
                remove_instance(f, fi);
        if (f->n == f->alloc) {
                size_t alloc = f->alloc ? 2 * f->alloc : 16;
                struct fake_instance *p = realloc(f->inst, alloc * sizeof(*p));

                if (!p)
                        return lsc_err_set(-ENOMEM, "out of memory adding instance %s", spec->uuid);
                f->inst = p;
                f->alloc = alloc;
        }
        fi = &f->inst[f->n++];
        memset(fi, 0, sizeof(*fi));
        snprintf(fi->pub.uuid, sizeof(fi->pub.uuid), "%s", spec->uuid);
        snprintf(fi->pub.name, sizeof(fi->pub.name), "%s", spec->name);
        fi->pub.generation = spec->generation;
        fi->vcpus = spec->vcpus;
        fi->memory_mib = spec->memory_mib;
        start_instance(fi);
        return 0;
}

static int fake_instantiate(struct drv *d, const struct drv_spec *spec)
{
        struct drv_fake *f = fake_of(d);
        int r = drv_spec_check(spec);

        if (r < 0)
                return r;
        fake_enter(f);
        r = instantiate_locked(f, spec);
        fake_leave(f);
        return r;
}

static int fake_destroy(struct drv *d, const char *uuid, uint64_t generation)
{
        struct drv_fake *f = fake_of(d);
        struct fake_instance *fi;

        if (!drv_uuid_valid(uuid))
                return lsc_err_set(-EINVAL, "invalid uuid to destroy");
        fake_enter(f);
        fi = find_uuid(f, uuid);
        if (fi && fi->pub.generation <= generation)
                remove_instance(f, fi);
        fake_leave(f);
        return 0;
}

/* The fake guest always heeds the power button. */
static int fake_shutdown(struct drv *d, const char *uuid, uint64_t generation, uint32_t timeout_ms)
{
        return fake_destroy(d, uuid, generation);
}

static int fake_stats(struct drv *d, struct drv_stats *ret)
{
        struct drv_fake *f = fake_of(d);
        struct drv_stats s = {0};
        int64_t now;

        fake_enter(f);
        now = lsc_now_us();
        s.instances = calloc(f->n ? f->n : 1, sizeof(*s.instances));
        if (!s.instances) {
                fake_leave(f);
                return lsc_err_set(-ENOMEM, "out of memory collecting stats");
        }
        /* Each running instance keeps one vCPU busy, or the fake_load share of its vCPUs. */
        s.sampled_us = now;
        s.host_cpu_total_ns = (uint64_t)(now - f->opened_us) * 1000 * f->cap.vcpus;
        s.host_memory_total_kib = f->cap.memory_mib * 1024;
        s.host_memory_free_kib = s.host_memory_total_kib;
        for (size_t i = 0; i < f->n; i++) {
                struct fake_instance *fi = &f->inst[i];
                struct drv_instance_stats *is = &s.instances[s.n_instances++];

                account(f, fi, now);
                snprintf(is->uuid, sizeof(is->uuid), "%s", fi->pub.uuid);
                is->cpu_time_ns = fi->cpu_ns;
                is->memory_kib = fi->pub.state == DRV_STATE_RUNNING ? fi->memory_mib * 1024 : 0;
                s.host_cpu_busy_ns += is->cpu_time_ns;
                if (s.host_memory_free_kib >= is->memory_kib)
                        s.host_memory_free_kib -= is->memory_kib;
        }
        if (s.host_cpu_busy_ns > s.host_cpu_total_ns)
                s.host_cpu_busy_ns = s.host_cpu_total_ns;
        fake_leave(f);
        *ret = s;
        return 0;
}

static int fake_health(struct drv *d)
{
        struct drv_fake *f = fake_of(d);
        int r = 0;

        fake_enter(f);
        if (f->unhealthy)
                r = lsc_err_set(-EIO, "%s", f->unhealthy_msg);
        fake_leave(f);
        return r;
}

int drv_fake_inject(struct drv *d, enum drv_fake_fault fault, uint64_t arg, const char *message)
{
        struct drv_fake *f;

        if (!d || d->ops != &drv_fake_ops)
                return lsc_err_set(-EINVAL, "fault injection needs a fake driver handle");
        if ((unsigned)fault >= DRV_FAKE_FAULT_COUNT)
                return lsc_err_set(-EINVAL, "unknown fault %d", (int)fault);
        f = fake_of(d);
        /* Straight to the lock: the point is to reach a handle whose calls are stuck. */
        pthread_mutex_lock(&f->lock);
        switch (fault) {
        case DRV_FAKE_FAIL_INSTANTIATE:
                f->fail_left = arg > UINT32_MAX ? UINT32_MAX : (uint32_t)arg;
                copy_msg(f->fail_msg, sizeof(f->fail_msg), message, "injected failure");
                break;
        case DRV_FAKE_LATENCY:
                f->latency_ms = arg > UINT32_MAX ? UINT32_MAX : (uint32_t)arg;
                break;
        case DRV_FAKE_HANG:
                f->hang = arg != 0;
                if (!f->hang)
                        pthread_cond_broadcast(&f->unhang);
                break;
        case DRV_FAKE_UNHEALTHY:
                f->unhealthy = arg != 0;
                copy_msg(f->unhealthy_msg, sizeof(f->unhealthy_msg), message, "injected ill health");
                break;
        case DRV_FAKE_LOAD:
                if (arg > 1000) {
                        pthread_mutex_unlock(&f->lock);
                        return lsc_err_set(-EINVAL, "fake load %llu permille: want 0-1000",
                                           (unsigned long long)arg);
                }
                /* the time so far counts at the old load */
                for (size_t i = 0; i < f->n; i++)
                        account(f, &f->inst[i], lsc_now_us());
                f->load_set = true;
                f->load_low = f->load_high = (double)arg / 1000.0;
                break;
        case DRV_FAKE_FAULT_COUNT:
                break;
        }
        pthread_mutex_unlock(&f->lock);
        return 0;
}

int drv_fake_set_state(struct drv *d, const char *uuid, enum drv_state state)
{
        struct drv_fake *f;
        struct fake_instance *fi;
        int r = 0;

        if (!d || d->ops != &drv_fake_ops)
                return lsc_err_set(-EINVAL, "drv_fake_set_state needs a fake driver handle");
        if ((unsigned)state >= DRV_STATE_COUNT || !uuid)
                return lsc_err_set(-EINVAL, "invalid state change");
        f = fake_of(d);
        pthread_mutex_lock(&f->lock);
        fi = find_uuid(f, uuid);
        if (!fi) {
                r = lsc_err_set(-ENOENT, "no fake instance %s", uuid);
        } else if (state == DRV_STATE_RUNNING) {
                if (fi->pub.state != DRV_STATE_RUNNING)
                        start_instance(fi);
        } else {
                account(f, fi, lsc_now_us());
                fi->acc_us = 0;
                fi->pub.state = state;
        }
        pthread_mutex_unlock(&f->lock);
        return r;
}

const struct drv_ops drv_fake_ops = {
        .name = "fake",
        .open = fake_open,
        .close = fake_close,
        .capacity = fake_capacity,
        .list = fake_list,
        .instantiate = fake_instantiate,
        .destroy = fake_destroy,
        .shutdown = fake_shutdown,
        .stats = fake_stats,
        .health = fake_health,
};
