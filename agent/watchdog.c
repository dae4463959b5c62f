/* The hardware watchdog: open arms it, WDIOC_KEEPALIVE (or any write) pets it, 'V'
 * before close disarms it (Documentation/watchdog/watchdog-api.rst). */
#include <errno.h>
#include <fcntl.h>
#include <linux/watchdog.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include "err.h"
#include "log.h"
#include "watchdog.h"

bool watchdog_may_pet(int64_t now_us, int64_t deadline_us, uint32_t timeout_s, bool holds)
{
        if (!holds)
                return true;             /* nothing to fence: a reset would only hurt */
        return deadline_us > 0 && deadline_us - now_us >= (int64_t)timeout_s * 1000000 + WATCHDOG_MARGIN_US;
}

void watchdog_init(struct watchdog *w)
{
        memset(w, 0, sizeof(*w));
        w->fd = -1;
}

int watchdog_arm(struct watchdog *w, const char *path, uint32_t timeout_s)
{
        int t = (int)timeout_s, e;

        if (w->fd >= 0)
                return 0;
        w->fd = open(path, O_WRONLY | O_CLOEXEC);
        if (w->fd < 0)
                return lsc_err_set(-errno, "cannot open the watchdog %s: %s", path, strerror(errno));
        free(w->path);
        w->path = strdup(path);
        w->timeout_s = timeout_s;
        w->ioctls = ioctl(w->fd, WDIOC_SETTIMEOUT, &t) == 0;
        e = errno;
        if (w->ioctls && t != (int)timeout_s) {
                log_warn("the watchdog %s took a timeout of %d s, not %u s", path, t, timeout_s);
                w->timeout_s = t > 0 ? (uint32_t)t : timeout_s;
        } else if (!w->ioctls && e != ENOTTY) {
                /* a device with a fixed timeout: the rule must use the device's */
                int have = 0;
                if (ioctl(w->fd, WDIOC_GETTIMEOUT, &have) == 0 && have > 0) {
                        w->ioctls = true;
                        w->timeout_s = (uint32_t)have;
                        log_warn("the watchdog %s keeps its own timeout of %d s (setting %u s: %s)", path, have,
                                 timeout_s, strerror(e));
                }
        }
        return 0;
}

int watchdog_pet(struct watchdog *w, int64_t now_us)
{
        int dummy = 0;

        if (w->fd < 0)
                return -EBADF;
        if (w->ioctls ? ioctl(w->fd, WDIOC_KEEPALIVE, &dummy) < 0 : write(w->fd, "\0", 1) != 1)
                return lsc_err_set(-errno, "cannot pet the watchdog %s: %s", w->path, strerror(errno));
        w->last_pet_us = now_us;
        return 0;
}

void watchdog_disarm(struct watchdog *w)
{
        if (w->fd >= 0) {
                if (write(w->fd, "V", 1) != 1)
                        log_warn("the watchdog %s refused the magic close: %s (the host may be reset)", w->path,
                                 strerror(errno));
                close(w->fd);
        }
        free(w->path);
        watchdog_init(w);
}
