/* lsc-fenced: a tiny per-host process, started on its own and not by lsc-agent, that
 * destroys every lsc-created domain on its libvirt URI (or container of its state dir) once the lease deadline the agent
 * last petted it with has passed, so a frozen, deadlocked or dead agent cannot leave a
 * second copy of an identity running after the manager re-binds it. The deadline logic
 * is pure (fenced_lease_*, tested alone); fenced_run is the daemon around it. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#define FENCED_AHEAD_MAX_US (3600LL * 1000000)   /* a deadline further ahead is refused:
                                                  * leases are minutes at most */
#define FENCED_RESWEEP_US (5LL * 1000000)        /* while the lease stays ended */
#define FENCED_RETRY_US (1LL * 1000000)          /* after a sweep that left something */

/* Times are CLOCK_BOOTTIME microseconds (lsc_boot_us()), as in the pets. */
struct fenced_lease {
        int64_t deadline_us;             /* 0: disarmed (no pet yet) */
        int64_t swept_for_us;            /* the deadline the last sweep acted on, 0: none */
        int64_t next_sweep_us;           /* after a sweep: when to look again while ended */
};

enum fenced_pet {
        FENCED_PET_ARMED,                /* the first pet */
        FENCED_PET_EXTENDED,             /* a later deadline */
        FENCED_PET_REARMED,              /* a later deadline after a sweep */
        FENCED_PET_SAME,                 /* the deadline it has: nothing changes */
        FENCED_PET_BACKWARDS,            /* an earlier deadline: ignored */
        FENCED_PET_TOO_FAR,              /* more than FENCED_AHEAD_MAX_US ahead: ignored */
        FENCED_PET_COUNT
};
extern const char *const fenced_pet_names[FENCED_PET_COUNT];

enum fenced_action {
        FENCED_IDLE,                     /* disarmed: only a pet changes anything */
        FENCED_WAIT,                     /* look again at the wake time */
        FENCED_SWEEP,                    /* destroy every lsc domain now */
        FENCED_ACTION_COUNT
};

/* Takes a pet's deadline, received at now; the verdict says what changed. */
enum fenced_pet fenced_lease_pet(struct fenced_lease *l, int64_t deadline_us, int64_t now_us);
/* What to do at now; *ret_wake_us is when to look again for FENCED_WAIT (0 otherwise).
 * After FENCED_SWEEP the caller sweeps and calls fenced_lease_swept. */
enum fenced_action fenced_lease_check(const struct fenced_lease *l, int64_t now_us, int64_t *ret_wake_us);
/* A sweep ended at now; ok false: a domain could not be destroyed, so sooner again. */
void fenced_lease_swept(struct fenced_lease *l, int64_t now_us, bool ok);

struct fenced_config {
        const char *socket;              /* the unix datagram socket the agent pets */
        const char *driver;              /* the agent's driver: "libvirt" (NULL) or "container" */
        const char *uri;                 /* libvirt URI: the agent's */
        const char *runtime;             /* container: the agent's runtime and runtime_root */
        const char *runtime_root;        /* (NULL: the driver's defaults) */
        const char *host;                /* the agent's host name: only its domains are
                                          * destroyed; NULL: every lsc domain on uri */
        const char *state_dir;           /* the agent's state dir: the ephemeral overlays in
                                          * its disks/ go with their domains; NULL: the
                                          * driver's default */
};

/* Binds the socket (0600; refused when another lsc-fenced holds it) and runs until
 * SIGTERM or SIGINT: 0, or -errno with a detail when it cannot start. */
int fenced_run(const struct fenced_config *cfg);
