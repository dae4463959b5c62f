/* lsc-agent's event loop: one thread around zmq_poll that owns the manager socket,
 * registers and heartbeats, and hands every driver call to worker threads. */
#pragma once
#include "config.h"
#include "driver.h"

struct agent_loop;

/* Opens the state record, the keypair and the manager socket, and starts the workers.
 * cfg is borrowed and must outlive the loop. 0 or -errno (detail in lsc_err). */
int agent_loop_new(const struct agent_config *cfg, struct agent_loop **ret);
/* Runs until SIGINT/SIGTERM or agent_loop_stop(): 0, or -errno on a fatal error.
 * Stopping leaves every instance running. */
int agent_loop_run(struct agent_loop *l);
/* Asks a running loop to return; from any thread. */
void agent_loop_stop(struct agent_loop *l);
/* The driver handle once the driver is open, else NULL; for tests (fault injection). */
struct drv *agent_loop_driver(struct agent_loop *l);
/* Stops the workers (a driver call still hung after a few seconds is abandoned) and
 * frees everything. Accepts NULL; NULLs *l. */
void agent_loop_destroy(struct agent_loop **l);
