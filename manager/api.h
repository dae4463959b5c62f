/* CLI requests: validate, hand to the store, answer when the store is done. */
#pragma once
#include "loop.h"
#include "wire.h"

/* Handles one received envelope from the CLI socket (takes ownership of env). */
void api_request(struct loop *l, const struct lsc_route *route, Lsc__Envelope *env);
/* Sends the reply of a finished store job to its CLI peer and frees the job. */
void api_complete(struct loop *l, struct store_job *job);
