/* The store: all SQL, on its own thread with its own libpq connection.
 * The loop submits jobs and polls store_socket(); finished jobs come back there.
 * Nothing here blocks the caller on PostgreSQL. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "addr.h"
#include "lsc.pb-c.h"

struct store;

struct store_config {
        const char *conninfo;            /* libpq connection string */
        struct lsc_mac mac_prefix;       /* MACs are allocated as prefix + random */
        int mac_prefix_len;              /* octets of mac_prefix used (1-5) */
        int64_t job_budget_us;           /* how long a job may wait for the database */
        uint32_t mayfly_jitter_pct;      /* a mayfly's expires_at: lifetime +- this % (0-50) */
        uint32_t mayfly_renew_max;       /* renewals allowed per binding (0: none) */
};

enum store_job_kind {
        STORE_JOB_REQUEST,               /* a CLI request: request in, reply out */
        STORE_JOB_KIND_COUNT
};

/* One unit of work. The submitter allocates it and owns it again when it comes back. */
struct store_job {
        enum store_job_kind kind;
        /* in */
        Lsc__Request *request;           /* unpacked, owned by the job (freed by store_job_free) */
        char *actor;                     /* who asked: written into the event rows */
        void *user;                      /* the submitter's context (e.g. the CLI route);
                                          * malloc'd, freed by store_job_free */
        bool unpaged;                    /* lscd's own: server and host lists come whole,
                                          * not in pages (the reply never crosses the wire) */
        /* out: filled by the store thread */
        Lsc__Reply *reply;               /* always set when the job comes back */
};

/* Starts the store thread. It connects (retrying in the background while
 * PostgreSQL is away) and applies pending migrations before the first job.
 * zctx is the loop's zmq context (inproc needs the same one). */
int store_new(void *zctx, const struct store_config *cfg, struct store **ret);
/* Stops the thread after the job in progress; jobs still queued or not yet
 * collected are freed unanswered. Accepts NULL, NULLs *s. */
void store_destroy(struct store **s);

/* The socket to poll for ZMQ_POLLIN: finished jobs and store status. */
void *store_socket(struct store *s);

/* Hands job to the store thread (ownership passes). 0 or -errno. */
int store_submit(struct store *s, struct store_job *job);

/* After POLLIN on store_socket(): one finished job (caller owns it), or NULL with
 * *ret_fatal set when the store hit an unrecoverable error (e.g. the database
 * schema is newer than this binary); the detail is in lsc_err_msg(). */
struct store_job *store_recv(struct store *s, int *ret_fatal);

void store_job_free(struct store_job *job);

/* Checks a request's values without touching the database (the same checks
 * store_run makes first): 0, or -EINVAL with an lsc_err detail. Any thread. */
int store_check(const Lsc__Request *req);

/* Whether the store thread is connected and the schema is current (for status). */
bool store_ready(struct store *s);

/* The synchronous core, used by the store thread and by tests: connect, migrate,
 * and run one job on the caller's thread. */
struct store_conn;
int store_conn_open(const struct store_config *cfg, struct store_conn **ret);
void store_conn_close(struct store_conn **c);
/* Applies pending migrations in one transaction. -EPROTO when the database is
 * newer than this binary, -ENOTCONN when unreachable. */
int store_migrate(struct store_conn *c);
/* Runs job->request, filling job->reply. Never fails: errors become reply statuses. */
void store_run(struct store_conn *c, struct store_job *job, int64_t deadline_us);
