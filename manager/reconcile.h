/* Drives desired toward observed: pending servers get placed (sched.c) and bound
 * (compare-and-set in the store), bound ones get instantiated by their host's agent,
 * stopping ones destroyed; reports and heartbeat inventories move them on. Runs on
 * the loop thread; every durable change goes through the store first. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "lsc.pb-c.h"
#include <uthash.h>
#include "sched.h"
#include "store.h"
#include "mayfly.h"

struct loop;
struct liveness_host;
struct liveness;

/* The store's states and desires, as the record keeps them (the names are the
 * store's and DESIGN.md's). */
enum reconcile_state {
        RECONCILE_DEFINED,               /* never kept: a record in it was just made */
        RECONCILE_PENDING,
        RECONCILE_BINDING,
        RECONCILE_RUNNING,
        RECONCILE_STOPPING,
        RECONCILE_LOST,
        RECONCILE_FENCING,
        RECONCILE_FAILED,
        RECONCILE_STATE_COUNT            /* also: a state this lscd does not know */
};
extern const char *const reconcile_state_names[RECONCILE_STATE_COUNT];

enum reconcile_desired {
        RECONCILE_WANT_RUNNING,
        RECONCILE_WANT_STOPPED,          /* also: a desire this lscd does not know */
        RECONCILE_WANT_DELETED,
        RECONCILE_DESIRED_COUNT
};
extern const char *const reconcile_desired_names[RECONCILE_DESIRED_COUNT];

/* One per identity that is not merely defined: 100,000 of them at scale, so what the
 * loop reads on every tick, heartbeat and placement is kept as plain members, and the
 * rest of the store's row (the spec an INSTANTIATE carries, the required labels, a
 * migration's hosts) stays packed (an Lsc__Server holding only spec, migrate_from and
 * migrate_to), unpacked where it is needed. A row from the load is whole only for a
 * binding server: the others' specs have name, kind, size and required labels, and
 * the bind that makes them binding again brings the whole row. */
struct reconcile_server {
        char uuid[37];
        uint8_t state;                   /* enum reconcile_state */
        uint8_t desired;                 /* enum reconcile_desired */
        uint8_t kind;                    /* enum lsc_kind, for the scheduler's request */
        uint8_t missing;                 /* heartbeats in a row that did not show it (saturates) */
        bool queued : 1;                 /* in the pending queue */
        bool busy : 1;                   /* a store job about it is in flight */
        bool counted : 1;                /* in running_on[counted_host] */
        bool applied : 1;                /* counted in the view's host usage (at host) */
        bool constrained : 1;            /* required labels or a migration: request_of unpacks row */
        bool early : 1;                  /* picked to retire early, off a hot host */
        uint32_t vcpus;
        uint32_t group;                  /* reconcile_group id of its group, 0: none */
        uint32_t applied_group;          /* the group counted with it in the view */
        int32_t host;                    /* sched view index of its host, -1 unbound */
        int32_t counted_host;
        uint32_t row_len;
        uint64_t generation;
        uint64_t memory_mib, disk_gib;
        int64_t since_us;                /* when it entered its state, for timeouts */
        int64_t sent_us;                 /* when its command was last sent (0: not yet) */
        struct liveness_host *bound;     /* the host the store binds it to, NULL: none */
        /* mayflies */
        int64_t expires_s;               /* its death (unix seconds) in this binding, 0: none */
        int64_t applied_expires_s;       /* the death counted in its host's calendar (view) */
        uint32_t lifetime_s;             /* a mayfly's lifetime, 0: none */
        int64_t turn_retry_us;           /* a death the store found stale: not before this */
        struct liveness_host *turn_to;   /* a turnover under way: the rebirth host, NULL: none */
        int32_t resv_host;               /* view index the rebirth's reservation is counted at, -1 */
        uint32_t resv_group;             /* the group counted with the reservation */
        bool resv_applied;
        char *why;                       /* last no-fit reason written, to avoid repeats; or NULL */
        uint8_t *row;                    /* the packed rest of the store's row, row_len bytes */
        size_t idx;                      /* its place in reconcile.servers */
        UT_hash_handle hh;               /* reconcile.by_uuid */
};

struct reconcile_group {
        char name[64];
        uint64_t id;                     /* the view's group id, 1..: groups[id - 1] */
        bool known;                      /* observed; else only named by a server so far */
        enum sched_policy policy;
        uint32_t max_per_host;
};

struct reconcile {
        struct liveness *live;           /* the loop's: host names to view indexes */
        struct reconcile_group *groups;
        size_t n_groups;
        struct sched_view *view;
        struct sched_rng rng;
        struct reconcile_server **servers;   /* in no order, for walking them all */
        struct reconcile_server *by_uuid;    /* the same, hashed by uuid (uthash) */
        size_t n_servers, cap_servers;
        char (*queue)[37];               /* pending uuids, oldest first */
        size_t n_queue, cap_queue;
        bool loaded, load_inflight, bind_inflight;
        int64_t next_place_us;
        int64_t bind_timeout_us;
        uint64_t bound, refused, no_fit;  /* counters */
        uint64_t next_host_id;
        uint32_t req_ids[SCHED_LABELS_MAX];  /* request_of's required labels (one request at a time) */
        uint32_t *running_on;            /* per view host: servers running there */
        size_t n_running_on;
        const char *dhcp_hosts;          /* the dnsmasq hosts file to keep current, or NULL */
        bool dhcp_dirty, dhcp_inflight;
        Lsc__Transition **tx;            /* state changes waiting for the next batch */
        size_t n_tx, cap_tx;
        bool tx_inflight;                /* a batch is at the store */
        /* mayfly turnover (manager/mayfly.c decides which due deaths start) */
        int64_t next_turnover_us;
        uint64_t turnovers_started, turnovers_postponed, turnovers_shifted;
        uint64_t *flight_groups;         /* scratch: the group of each turnover in flight */
        size_t cap_flight_groups;
        struct mayfly_due *due;          /* scratch: the due deaths (mayfly_admit orders them) */
        size_t cap_due;
        /* die-off awareness (sched.h): the forecasts' inputs */
        const struct load *load;         /* the loop's identities' measured load */
        int64_t next_forecast_us;        /* hosts' forecasts refreshed from their history */
        int64_t next_early_us;           /* hot hosts looked for (early retirements) */
        uint64_t turnovers_early;
        uint32_t req_profile[SCHED_SLOTS];   /* request_load's profile (one request at a time) */
};

int reconcile_init(struct reconcile *rc, struct liveness *live, uint64_t seed);
void reconcile_fini(struct reconcile *rc);

/* The loop calls these. */
/* Asks for the view at once: the store thread runs the load as soon as it is connected. */
void reconcile_start(struct loop *l);
void reconcile_tick(struct loop *l, int64_t now_us);
/* After each round of events: the state changes gathered go to the store as one batch. */
void reconcile_flush(struct loop *l);
/* A finished internal store job (load, bind, transition); takes the job. */
void reconcile_job_done(struct loop *l, struct store_job *job);
/* Servers a CLI request changed (start, stop, delete, edit): track them. */
void reconcile_observe(struct loop *l, Lsc__Server *const *v, size_t n);
void reconcile_host_registered(struct loop *l, struct liveness_host *h, const Lsc__Host *row);
void reconcile_heartbeat(struct loop *l, struct liveness_host *h);
void reconcile_report(struct loop *l, struct liveness_host *h, const Lsc__Report *rp);
/* Groups a CLI reply (or the load) carries: remember their policies. */
void reconcile_observe_groups(struct loop *l, Lsc__Group *const *v, size_t n);
/* Fills reply->plan (malloc'd, freed with the reply) with every host of the view and
 * whether sv would fit there, and why not. Nothing changes. */
int reconcile_plan(struct loop *l, const Lsc__Server *sv, Lsc__Reply *reply);
/* lsc plan turnover: the next `hours` of mayfly deaths (each shifted by the turnover
 * budget), where sched_place would put each rebirth given the view as it stands (a
 * copy of the random state: nothing is applied or changed), and every host's projected
 * busy vCPUs per hour (the hottest first when not all fit). */
int reconcile_plan_turnover(struct loop *l, uint32_t hours, Lsc__Reply *reply);
/* Host rows a CLI request changed (drain, undrain): the view follows their admin state. */
void reconcile_observe_hosts(struct loop *l, Lsc__Host *const *v, size_t n);
/* Liveness or health of h changed: keep the view's filters current. */
void reconcile_host_state(struct loop *l, struct liveness_host *h);
/* Metal fencing: the fence worker's results (its fd was readable): a confirmed
 * power-off releases the host's servers in fencing. */
void reconcile_fence_results(struct loop *l);
/* How many servers wait in fencing on host. */
size_t reconcile_fencing_on(const struct loop *l, const char *host);
/* An operator confirmed host off by hand (the store recorded the event): its servers in
 * fencing may be bound again. */
void reconcile_confirmed_off(struct loop *l, const char *host, const char *actor);
