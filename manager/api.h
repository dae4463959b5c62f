/* CLI requests: validate, hand to the store, answer when the store is done. */
#pragma once
#include "loop.h"
#include "wire.h"

/* Who a store job is for: the loop routes its completion by this (first member of
 * every job->user). */
enum api_origin { API_ORIGIN_CLI, API_ORIGIN_AGENT, API_ORIGIN_RECONCILE };

struct api_ctx {
        enum api_origin origin;
        struct lsc_route route;
        uint64_t seq;
        bool plan;                       /* a server_get whose answer is a plan */
};

/* Handles one received envelope from the CLI socket (takes ownership of env). */
void api_request(struct loop *l, const struct lsc_route *route, Lsc__Envelope *env);
/* Sends the reply of a finished store job to its CLI peer and frees the job. */
void api_complete(struct loop *l, struct store_job *job);
