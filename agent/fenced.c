/* lsc-fenced: the lease deadline as a pure state machine, and the daemon around it: one
 * thread polling the pet socket, a CLOCK_BOOTTIME timerfd (absolute, so it fires on
 * time whoever else is frozen, and at once on resume from a suspend) and a signalfd.
 * It touches only domains the libvirt driver calls lsc's (its metadata element). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>
#include "driver.h"
#include "err.h"
#include "fenced.h"
#include "log.h"
#include "pet.h"
#include "util.h"

#define OPEN_RETRY_US (5LL * 1000000)
#define BEAT_US (10LL * 1000000)         /* a debug line saying how things stand */
#define GARBAGE_LOG_US (1LL * 1000000)   /* at most one warning a second about garbage */
#define PETS_PER_WAKE 64
#define SWEEP_THREADS 16                 /* destroys at once: one takes seconds (qemu's reaping) */

const char *const fenced_pet_names[FENCED_PET_COUNT] = {
        [FENCED_PET_ARMED] = "armed",
        [FENCED_PET_EXTENDED] = "extended",
        [FENCED_PET_REARMED] = "re-armed",
        [FENCED_PET_SAME] = "same",
        [FENCED_PET_BACKWARDS] = "backwards",
        [FENCED_PET_TOO_FAR] = "too far",
};

/* ---- the deadline ---- */

enum fenced_pet fenced_lease_pet(struct fenced_lease *l, int64_t deadline_us, int64_t now_us)
{
        enum fenced_pet v;

        if (deadline_us - now_us > FENCED_AHEAD_MAX_US)
                return FENCED_PET_TOO_FAR;
        if (!l->deadline_us) {
                l->deadline_us = deadline_us;
                return FENCED_PET_ARMED;
        }
        if (deadline_us < l->deadline_us)
                return FENCED_PET_BACKWARDS;
        if (deadline_us == l->deadline_us)
                return FENCED_PET_SAME;
        v = l->swept_for_us == l->deadline_us ? FENCED_PET_REARMED : FENCED_PET_EXTENDED;
        l->deadline_us = deadline_us;
        return v;
}

enum fenced_action fenced_lease_check(const struct fenced_lease *l, int64_t now_us, int64_t *ret_wake_us)
{
        *ret_wake_us = 0;
        if (!l->deadline_us)
                return FENCED_IDLE;
        if (now_us < l->deadline_us) {
                *ret_wake_us = l->deadline_us;
                return FENCED_WAIT;
        }
        /* ended: sweep once for this deadline, then again now and then, for a domain an
         * agent that wakes mid-instantiate may still make */
        if (l->swept_for_us != l->deadline_us || now_us >= l->next_sweep_us)
                return FENCED_SWEEP;
        *ret_wake_us = l->next_sweep_us;
        return FENCED_WAIT;
}

void fenced_lease_swept(struct fenced_lease *l, int64_t now_us, bool ok)
{
        l->swept_for_us = l->deadline_us;
        l->next_sweep_us = now_us + (ok ? FENCED_RESWEEP_US : FENCED_RETRY_US);
}

/* ---- the daemon ---- */

struct fenced {
        const struct fenced_config *cfg;
        int sock, timer, sig;
        ino_t sock_ino;
        struct drv *drv;
        int64_t next_open_us;
        char open_error[256];
        struct fenced_lease lease;
        int64_t last_pet_us, next_beat_us;
        int64_t garbage_logged_us;
        unsigned garbage_quiet;          /* garbage not logged since the last warning */
};

static int64_t ms(int64_t us)
{
        return us / 1000;
}

/* Opens the libvirt driver; failures are logged when they change and retried. */
static int driver_open(struct fenced *f, int64_t now)
{
        struct drv_config dc = { .uri = f->cfg->uri, .host = f->cfg->host, .state_dir = f->cfg->state_dir };
        int r = drv_open("libvirt", &dc, &f->drv);

        if (r < 0) {
                if (strcmp(lsc_err_msg(r), f->open_error) != 0)
                        log_error("cannot open libvirt at %s: %s (trying again every %lld s)", f->cfg->uri,
                                  lsc_err_msg(r), OPEN_RETRY_US / 1000000);
                snprintf(f->open_error, sizeof(f->open_error), "%s", lsc_err_msg(r));
                f->next_open_us = now + OPEN_RETRY_US;
                return r;
        }
        log_info("libvirt at %s open", f->cfg->uri);
        f->open_error[0] = '\0';
        return 0;
}

/* One sweep's destroys, shared by its threads: each takes the next domain. */
struct sweep_work {
        struct drv *drv;
        const struct drv_instance *inv;
        int n;
        atomic_int next, done, failed;
};

static void *sweep_thread(void *arg)
{
        struct sweep_work *w = arg;
        int i;

        while ((i = atomic_fetch_add(&w->next, 1)) < w->n) {
                const struct drv_instance *d = &w->inv[i];
                /* at most the generation listed: a newer binding made meanwhile is not this lease's */
                int r = drv_destroy(w->drv, d->uuid, d->generation);

                if (r < 0) {
                        atomic_fetch_add(&w->failed, 1);
                        log_error("cannot destroy domain %s (%s) generation %llu: %s", d->name, d->uuid,
                                  (unsigned long long)d->generation, lsc_err_msg(r));
                        continue;
                }
                atomic_fetch_add(&w->done, 1);
                log_warn("destroyed domain %s (%s) generation %llu (was %s)", d->name, d->uuid,
                         (unsigned long long)d->generation, drv_state_names[d->state]);
        }
        return NULL;
}

/* Destroys every lsc domain (and its ephemeral overlay) at once, not one after another:
 * a libvirt destroy waits until qemu is reaped, which takes seconds on a loaded host, and
 * the manager's grace must cover the whole sweep. True when none is left. */
static bool sweep(struct fenced *f, int64_t now)
{
        _cleanup_free_ struct drv_instance *inv = NULL;
        bool first = f->lease.swept_for_us != f->lease.deadline_us;
        int64_t late = now - f->lease.deadline_us;
        struct sweep_work w = { .n = 0 };
        pthread_t th[SWEEP_THREADS];
        int n, nth = 0, done, failed;

        if (!f->drv && driver_open(f, now) < 0)
                return false;
        if ((n = drv_list(f->drv, &inv)) < 0) {
                log_error("lease ended %lld ms ago, but cannot list the domains on %s: %s", (long long)ms(late),
                          f->cfg->uri, lsc_err_msg(n));
                return false;
        }
        if (first)
                log_warn("lease ended %lld ms ago without a newer pet: destroying %d lsc domains on %s",
                         (long long)ms(late), n, f->cfg->uri);
        else if (n)
                log_warn("lease still ended (%lld ms ago): destroying %d lsc domains on %s", (long long)ms(late),
                         n, f->cfg->uri);
        else
                log_debug("lease still ended (%lld ms ago): no lsc domains on %s", (long long)ms(late),
                          f->cfg->uri);
        w.drv = f->drv;
        w.inv = inv;
        w.n = n;
        atomic_init(&w.next, 0);
        atomic_init(&w.done, 0);
        atomic_init(&w.failed, 0);
        /* threads beyond the first are a help, not a need: the calling thread works too */
        for (int i = 0; i < n - 1 && nth < SWEEP_THREADS - 1; i++)
                if (pthread_create(&th[nth], NULL, sweep_thread, &w) == 0)
                        nth++;
        sweep_thread(&w);
        for (int i = 0; i < nth; i++)
                pthread_join(th[i], NULL);
        done = atomic_load(&w.done);
        failed = atomic_load(&w.failed);
        if (n)
                log_warn("fenced: %d domains destroyed, %d failed, %lld ms after the deadline", done, failed,
                         (long long)ms(lsc_boot_us() - f->lease.deadline_us));
        return failed == 0;
}

static void pet_log(struct fenced *f, enum fenced_pet v, int64_t deadline, int64_t now)
{
        switch (v) {
        case FENCED_PET_ARMED:
                log_info("armed by the first pet: lease deadline in %lld ms", (long long)ms(deadline - now));
                break;
        case FENCED_PET_REARMED:
                log_info("re-armed by a pet: lease deadline in %lld ms", (long long)ms(deadline - now));
                break;
        case FENCED_PET_EXTENDED:
        case FENCED_PET_SAME:
                log_debug("pet: lease deadline in %lld ms", (long long)ms(deadline - now));
                break;
        case FENCED_PET_BACKWARDS:
                log_warn("a pet moves the deadline %lld ms back: ignored",
                         (long long)ms(f->lease.deadline_us - deadline));
                break;
        case FENCED_PET_TOO_FAR:
                log_warn("a pet sets the deadline %lld s ahead, more than any lease: ignored",
                         (long long)((deadline - now) / 1000000));
                break;
        case FENCED_PET_COUNT:
                break;
        }
}

static void garbage(struct fenced *f, int64_t now, int err)
{
        if (now - f->garbage_logged_us < GARBAGE_LOG_US) {
                f->garbage_quiet++;
                return;
        }
        if (f->garbage_quiet)
                log_warn("ignored a message on %s: %s (and %u more since the last warning)", f->cfg->socket,
                         lsc_err_msg(err), f->garbage_quiet);
        else
                log_warn("ignored a message on %s: %s", f->cfg->socket, lsc_err_msg(err));
        f->garbage_logged_us = now;
        f->garbage_quiet = 0;
}

static void pets_read(struct fenced *f)
{
        for (int i = 0; i < PETS_PER_WAKE; i++) {
                char buf[LSC_PET_MAX + 1];
                int64_t deadline, now;
                /* MSG_TRUNC: the datagram's real length, so a long one is seen as such */
                ssize_t n = recv(f->sock, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
                int r;

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                log_error("cannot read %s: %s", f->cfg->socket, strerror(errno));
                        return;
                }
                now = lsc_boot_us();
                if ((r = lsc_pet_parse(buf, (size_t)n, &deadline)) < 0) {
                        garbage(f, now, r);
                        continue;
                }
                pet_log(f, fenced_lease_pet(&f->lease, deadline, now), deadline, now);
                f->last_pet_us = now;
        }
}

static void beat(struct fenced *f, int64_t now)
{
        const struct fenced_lease *l = &f->lease;

        if (!l->deadline_us)
                log_debug("disarmed: no pet yet on %s", f->cfg->socket);
        else if (now < l->deadline_us)
                log_debug("armed: lease deadline in %lld ms, last pet %lld ms ago",
                          (long long)ms(l->deadline_us - now), (long long)ms(now - f->last_pet_us));
        else
                log_debug("lease ended %lld ms ago, last pet %lld ms ago", (long long)ms(now - l->deadline_us),
                          (long long)ms(now - f->last_pet_us));
}

/* The timerfd at an absolute CLOCK_BOOTTIME time (> 0). */
static void timer_at(struct fenced *f, int64_t at_us)
{
        struct itimerspec its = {
                .it_value = { .tv_sec = at_us / 1000000, .tv_nsec = (at_us % 1000000) * 1000 },
        };

        if (timerfd_settime(f->timer, TFD_TIMER_ABSTIME, &its, NULL) < 0)
                log_error("timerfd_settime: %s", strerror(errno));
}

static int64_t earliest(int64_t a, int64_t b)
{
        return !a ? b : !b ? a : a < b ? a : b;
}

/* Binds the socket, refusing to take one another lsc-fenced answers on. */
static int socket_open(struct fenced *f)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const char *path = f->cfg->socket;
        struct stat st;
        mode_t old;
        int probe, r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return lsc_err_set(-ENAMETOOLONG, "socket path %s is longer than %zu bytes", path,
                                   sizeof(sa.sun_path) - 1);
        memcpy(sa.sun_path, path, strlen(path) + 1);
        if (lstat(path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode))
                        return lsc_err_set(-EEXIST, "%s exists and is not a socket: left alone", path);
                probe = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
                if (probe < 0)
                        return lsc_err_set(-errno, "socket: %s", strerror(errno));
                r = connect(probe, (struct sockaddr *)&sa, sizeof(sa));
                close(probe);
                if (r == 0)
                        return lsc_err_set(-EADDRINUSE, "another process (an lsc-fenced?) listens on %s", path);
                if (unlink(path) < 0 && errno != ENOENT)
                        return lsc_err_set(-errno, "cannot remove the stale socket %s: %s", path, strerror(errno));
        }
        f->sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (f->sock < 0)
                return lsc_err_set(-errno, "socket: %s", strerror(errno));
        /* whoever can pet can postpone fencing: the agent's user (root) only */
        old = umask(0177);
        r = bind(f->sock, (struct sockaddr *)&sa, sizeof(sa));
        umask(old);
        if (r < 0)
                return lsc_err_set(-errno, "cannot bind %s: %s", path, strerror(errno));
        if (stat(path, &st) == 0)
                f->sock_ino = st.st_ino;
        return 0;
}

static void fenced_close(struct fenced *f)
{
        struct stat st;

        /* the path goes only while it is still ours (a successor may have taken it) */
        if (f->sock >= 0 && f->sock_ino && stat(f->cfg->socket, &st) == 0 && st.st_ino == f->sock_ino)
                unlink(f->cfg->socket);
        if (f->sock >= 0)
                close(f->sock);
        if (f->timer >= 0)
                close(f->timer);
        if (f->sig >= 0)
                close(f->sig);
        drv_close(&f->drv);
}

static int fenced_setup(struct fenced *f)
{
        sigset_t mask;
        int r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return lsc_err_set(-errno, "sigprocmask: %s", strerror(errno));
        signal(SIGPIPE, SIG_IGN);
        if ((f->sig = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) < 0)
                return lsc_err_set(-errno, "signalfd: %s", strerror(errno));
        if ((f->timer = timerfd_create(CLOCK_BOOTTIME, TFD_CLOEXEC | TFD_NONBLOCK)) < 0)
                return lsc_err_set(-errno, "timerfd_create: %s", strerror(errno));
        if ((r = socket_open(f)) < 0)
                return r;
        return 0;
}

int fenced_run(const struct fenced_config *cfg)
{
        struct fenced f = { .cfg = cfg, .sock = -1, .timer = -1, .sig = -1 };
        int r;

        if ((r = fenced_setup(&f)) < 0) {
                fenced_close(&f);
                return r;
        }
        log_info("lsc-fenced %s: pets on %s, destroys lsc domains on %s when the lease ends; disarmed until "
                 "the first pet", LSC_VERSION, cfg->socket, cfg->uri);
        driver_open(&f, lsc_boot_us());
        for (;;) {
                struct pollfd p[3] = {
                        { .fd = f.sock, .events = POLLIN },
                        { .fd = f.timer, .events = POLLIN },
                        { .fd = f.sig, .events = POLLIN },
                };
                int64_t now = lsc_boot_us(), wake;
                uint64_t ticks;

                if (fenced_lease_check(&f.lease, now, &wake) == FENCED_SWEEP) {
                        bool ok = sweep(&f, now);

                        fenced_lease_swept(&f.lease, lsc_boot_us(), ok);
                        continue;        /* pets that came meanwhile are read before anything else */
                }
                if (!f.drv && now >= f.next_open_us)
                        driver_open(&f, now);
                if (now >= f.next_beat_us) {
                        beat(&f, now);
                        f.next_beat_us = now + BEAT_US;
                }
                wake = earliest(wake, f.next_beat_us);
                if (!f.drv)
                        wake = earliest(wake, f.next_open_us);
                timer_at(&f, wake);
                if (poll(p, 3, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        r = lsc_err_set(-errno, "poll: %s", strerror(errno));
                        break;
                }
                if (p[2].revents & POLLIN) {
                        struct signalfd_siginfo si;

                        if (read(f.sig, &si, sizeof(si)) == (ssize_t)sizeof(si))
                                log_info("signal %u: stopping", si.ssi_signo);
                        if (f.lease.deadline_us && lsc_boot_us() < f.lease.deadline_us)
                                log_warn("stopping while armed: nothing destroys this host's lsc domains when "
                                         "the lease ends, until lsc-fenced runs again and is petted");
                        r = 0;
                        break;
                }
                if ((p[1].revents & POLLIN) && read(f.timer, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
                        log_error("timerfd: %s", strerror(errno));
                if (p[0].revents & POLLIN)
                        pets_read(&f);
        }
        fenced_close(&f);
        return r;
}
