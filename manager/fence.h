/* lscd's fence worker (STONITH for metal): when a metal host is lost, nothing on it can
 * reach its BMC, so lscd powers the machine off itself and reads the power state back
 * before the identity is bound again. The BMC credentials come from lscd's own config
 * ([bmc HOST] sections), never from agents: an agent cannot make lscd power off a
 * machine that is not its own. IPMI runs on the worker's thread; the loop only queues
 * requests and reads results when the worker's eventfd says some are ready. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "ipmi.h"
#include "validate.h"

#define FENCE_RETRY_US 5000000           /* a failed power-off is tried again this much later */

struct fence_bmc {
        char host[LSC_NAME_MAX + 1];     /* the lsc host (the machine) it powers */
        char *address, *user, *password_file;
        uint32_t port, timeout_ms, retries;
        struct lsc_ipmi_bmc bmc;         /* filled by fence_config_finish */
};

struct fence_config {
        struct fence_bmc *bmcs;
        size_t n;
        uint32_t confirm_ms;             /* power off -> confirmed off; default 10000 */
};

/* Sets key of [bmc HOST] (address, port, user, password_file, timeout_ms, retries):
 * 0, or -EINVAL / -ENOENT with a detail naming section, key and value. */
int fence_config_set(struct fence_config *c, const char *host, const char *key, const char *value);
/* Checks every section is complete and reads the password files. */
int fence_config_finish(struct fence_config *c);
void fence_config_free(struct fence_config *c);

struct fence_result {
        char host[LSC_NAME_MAX + 1];
        int error;                       /* 0: power off confirmed; else -errno */
        char detail[256];
        int64_t took_us;
};

struct fence;

/* Starts the worker thread. cfg is copied. */
int fence_new(const struct fence_config *cfg, struct fence **ret);
/* Stops the worker (an IPMI call in progress finishes first) and frees; NULLs *f. */
void fence_destroy(struct fence **f);
/* The fd the loop polls for POLLIN: results are ready. */
int fence_fd(const struct fence *f);
/* Whether lscd knows host's BMC. */
bool fence_knows(const struct fence *f, const char *host);
/* Asks for host's power-off: 0 queued (or already queued, running, or retried too
 * recently: nothing to do), -ENOENT when lscd knows no BMC for host. */
int fence_request(struct fence *f, const char *host, int64_t now_us);
/* Takes at most max finished results: their count. */
size_t fence_results(struct fence *f, struct fence_result *out, size_t max);
