/* Hosts as heartbeats show them, kept in lscd's memory only (never written per beat):
 * the session epoch, when each was last heard, health, inventory; up -> suspect ->
 * lost from missed beats. Also the agent side of the loop: register and heartbeat. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "load.h"
#include "wire.h"

enum liveness_state { LIVENESS_UP, LIVENESS_SUSPECT, LIVENESS_LOST, LIVENESS_STATE_COUNT };
extern const char *const liveness_state_names[LIVENESS_STATE_COUNT];

struct liveness_instance {
        char uuid[37];
        char name[64];
        uint64_t generation;
        char state[16];
};

struct liveness_host {
        char name[64];
        uint64_t epoch;                  /* 0 until registered with this lscd */
        struct lsc_route route;          /* where the agent's messages come from */
        int64_t last_beat_us;            /* lscd's monotonic clock */
        enum liveness_state state;
        bool registering;                /* a registration is at the store */
        bool healthy;
        char health[256];
        double cpu;                      /* utilisation 0..1 */
        uint64_t memory_used_mib;
        uint32_t vcpus;                  /* physical, from its registration; 0 until then */
        struct load_hist load;           /* measured: CPU in vCPUs busy (cpu x vcpus), memory */
        struct liveness_instance *instances;
        size_t n_instances;
        int64_t view;                    /* index in the scheduler's view, -1 until known */
};

struct liveness {
        struct liveness_host **hosts;    /* sorted by name */
        size_t n_hosts, cap;
        int64_t beat_us;                 /* agents' heartbeat period */
        int64_t lease_ttl_us;
        int64_t grace_us;
};

void liveness_init(struct liveness *lv, int64_t lease_ttl_us, int64_t grace_us);
void liveness_fini(struct liveness *lv);
struct liveness_host *liveness_find(const struct liveness *lv, const char *name);
/* Finds or adds name; NULL when out of memory. */
struct liveness_host *liveness_get(struct liveness *lv, const char *name);
/* Records a heartbeat's content (inventory, health, utilisation) at now_us. */
int liveness_beat(struct liveness_host *h, const Lsc__Heartbeat *hb, int64_t now_us);
/* The heartbeat's measured load into the histories at wall_s: the host's (its CPU
 * share times its vCPUs, once registered) and each running instance's in ld. */
void liveness_beat_load(struct liveness_host *h, const Lsc__Heartbeat *hb, struct load *ld, int64_t wall_s);
/* Moves hosts between up, suspect (3 missed beats) and lost (last beat + lease + grace). */
void liveness_tick(struct liveness *lv, int64_t now_us);
