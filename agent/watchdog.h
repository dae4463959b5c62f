/* The host's hardware watchdog (Linux's /dev/watchdog API), the last line of fencing:
 * when neither the agent nor lsc-fenced can act (a hung kernel path, both frozen), the
 * watchdog resets the host, as sanlock's wdmd and Pacemaker's SBD do. The agent arms it
 * at its first lease and pets it only while that lease runs at least the watchdog's
 * timeout (plus a margin) longer, or while the host holds no instance: a host that stops
 * petting is reset no later than its lease deadline, before the manager re-binds its
 * identities (deadline + grace). A clean stop disarms it (the magic close). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#define WATCHDOG_DEVICE "/dev/watchdog"
#define WATCHDOG_MARGIN_US 500000        /* a watchdog's own timer is not exact */

struct watchdog {
        int fd;                          /* -1: not armed */
        char *path;
        uint32_t timeout_s;              /* what it was set to (or, when the device takes no
                                          * ioctls, what the config says) */
        bool ioctls;                     /* false: a plain file or FIFO (tests): pets are bytes */
        int64_t last_pet_us;             /* CLOCK_BOOTTIME, 0: none yet */
};

/* The rule (pure): may the agent pet at now (CLOCK_BOOTTIME µs), with its lease until
 * deadline_us (0: none yet), a watchdog timeout of timeout_s, and instances held or
 * being made? */
bool watchdog_may_pet(int64_t now_us, int64_t deadline_us, uint32_t timeout_s, bool holds);

void watchdog_init(struct watchdog *w);
/* Opens path (which arms a watchdog device) and sets its timeout: 0, or -errno with a
 * detail. A device that refuses WDIOC_SETTIMEOUT keeps its own timeout, read back with
 * WDIOC_GETTIMEOUT: the rule then uses that. */
int watchdog_arm(struct watchdog *w, const char *path, uint32_t timeout_s);
/* One keep-alive: 0 or -errno with a detail. */
int watchdog_pet(struct watchdog *w, int64_t now_us);
/* The magic close ('V', then close): a watchdog driver without nowayout stops. */
void watchdog_disarm(struct watchdog *w);
