/* A BMC over IPMI 2.0 lanplus (libfreeipmi): power state, power on/off/cycle, next boot
 * from PXE. Every call opens its own session, retries, and blocks for seconds when the
 * BMC is slow or gone: call it from a worker thread, never from a loop thread. Used by
 * the metal driver (agent) and lscd's fence worker. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LSC_IPMI_USER_MAX 16             /* IPMI 2.0 user names: at most 16 bytes */
#define LSC_IPMI_PASSWORD_MAX 20         /* and passwords at most 20 */
#define LSC_IPMI_HOST_MAX 255
#define LSC_IPMI_DEFAULT_PORT 623
#define LSC_IPMI_DEFAULT_TIMEOUT_MS 5000
#define LSC_IPMI_DEFAULT_RETRIES 2

/* One BMC and how patiently to talk to it. A zero timeout_ms takes the default;
 * retries counts attempts after the first. */
struct lsc_ipmi_bmc {
        char host[LSC_IPMI_HOST_MAX + 1];        /* an address or a DNS name */
        uint16_t port;                           /* 0: 623 */
        char user[LSC_IPMI_USER_MAX + 1];
        char password[LSC_IPMI_PASSWORD_MAX + 1];
        uint32_t timeout_ms;                     /* one attempt: the session's timeout */
        uint32_t retries;
};

enum lsc_ipmi_power {
        LSC_IPMI_POWER_OFF,
        LSC_IPMI_POWER_ON,
        LSC_IPMI_POWER_CYCLE,            /* off then on; a machine that is off just goes on */
        LSC_IPMI_POWER_COUNT
};
extern const char *const lsc_ipmi_power_names[LSC_IPMI_POWER_COUNT];

/* Whether the machine has power: 0 with *ret_on set, or -errno with a detail naming
 * the BMC: -ETIMEDOUT (no answer), -EACCES (user, password or privilege refused),
 * -EIO (anything else the BMC or libfreeipmi said). */
int lsc_ipmi_power_get(const struct lsc_ipmi_bmc *b, bool *ret_on);
/* Asks for a power change (chassis control); the BMC may apply it later. */
int lsc_ipmi_power_set(const struct lsc_ipmi_bmc *b, enum lsc_ipmi_power what);
/* The next boot (only the next) comes from the network: PXE. */
int lsc_ipmi_boot_pxe(const struct lsc_ipmi_bmc *b);
/* Powers the machine off and reads the state back until the BMC says off, for at most
 * confirm_ms: 0 once off is confirmed (also when it was off already), -ETIMEDOUT when
 * it still says on, or the BMC's error. What fencing (STONITH) waits for. */
int lsc_ipmi_power_off_confirmed(const struct lsc_ipmi_bmc *b, uint32_t confirm_ms);

/* Checks and copies a BMC's settings; the detail names what is wrong with which value
 * ("bmc_user \"...\": at most 16 bytes"). what prefixes the key names ("bmc_"). */
int lsc_ipmi_bmc_set(struct lsc_ipmi_bmc *ret, const char *what, const char *host, uint32_t port,
                     const char *user, const char *password);
/* Reads a password file (one line; a trailing newline is dropped): 0 or -errno with a
 * detail naming the file. A file others may read is refused (-EPERM). */
int lsc_ipmi_password_read(const char *path, char ret[LSC_IPMI_PASSWORD_MAX + 1]);
/* "HOST:PORT", for log lines. */
const char *lsc_ipmi_bmc_show(const struct lsc_ipmi_bmc *b, char *buf, size_t len);
