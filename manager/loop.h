/* lscd's event loop: one thread around zmq_poll that owns every socket. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "auth.h"
#include "fence.h"
#include "liveness.h"
#include "load.h"
#include "reconcile.h"
#include "store.h"

struct loop_config {
        const char *cli_endpoint;        /* where the CLI connects (ipc:// or tcp://) */
        struct store_config store;
        int max_inflight;                /* CLI requests at the store before "busy" */
        const char *agent_endpoint;      /* where agents connect (tcp://); NULL: no agents */
        const char *curve_secret_file;   /* lscd's CurveZMQ secret key (created if absent) */
        const char *authorized_keys_dir; /* HOST.pub files of the enrolled agents */
        int64_t lease_ttl_us;
        int64_t grace_us;
        uint64_t seed;                   /* the scheduler's; a run replays from it */
        const char *dhcp_hosts_file;     /* dnsmasq dhcp-hostsfile kept current; NULL: none */
        int bind_batch;                  /* bench-bind: bindings per store transaction
                                          * (--bind-batch); 0: PLACE_BATCH (1000) */
        /* mayfly turnover (config file keys of the same names) */
        uint32_t turnover_max_pct;       /* turnovers at once: max(1, pct% of identities) */
        uint32_t mayfly_group_max;       /* ... and at most this many per placement group */
        uint32_t mayfly_shutdown_timeout_ms;  /* a dying mayfly's graceful shutdown */
        uint32_t mayfly_postpone_s;      /* no rebirth host: the death moves this far on */
        bool mayfly_no_in_place;         /* never reborn on the host it dies on (else: when
                                          * no other host fits) */
        bool mayfly_aware;               /* die-off-aware placement (sched.h): measured load
                                          * and the calendar of deaths; off: reservations only */
        const struct fence_config *fence; /* metal hosts' BMCs ([bmc HOST]); NULL: none */
};

struct loop {
        struct loop_config cfg;
        void *zctx;
        void *cli;                       /* ROUTER for CLI requests */
        bool cli_bound;
        struct store *store;
        void *agents;                    /* ROUTER for agents (CURVE server) */
        struct auth auth;
        struct liveness liveness;
        struct load load;                /* identities' measured load (hosts': in liveness) */
        int64_t load_expire_us;          /* next sweep of identities silent for a day */
        struct reconcile reconcile;
        struct fence *fence;             /* the BMC fence worker (metal) */
        int64_t started_us;
        int sigfd;
        int inflight;                    /* jobs handed to the store, not yet back */
        uint64_t incarnation;            /* random per start; agents re-register when it changes */
        volatile bool stopping;
};

/* Binds the sockets and starts the store thread. 0 or -errno (detail in lsc_err). */
int loop_init(struct loop *l, const struct loop_config *cfg);
/* Runs until SIGINT/SIGTERM (returns 0) or a fatal store error (returns -errno). */
int loop_run(struct loop *l);
void loop_fini(struct loop *l);

struct store_job;
/* A host registration came back from the store: open its session and ack it. */
void loop_agent_registered(struct loop *l, struct store_job *job);
