/* The agent's write-ahead record: every driver call's intent is durable before the call
 * and its outcome after, and tombstones (the highest generation destroyed per uuid)
 * outlive restarts, so an agent never resurrects a binding the manager has moved on from.
 * One append-only file in the state dir; every function is safe from any thread. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#define AGENT_STATE_FILE "intents.log"
#define AGENT_STATE_UUID_STR 37          /* canonical lower-case uuid + NUL */

enum agent_state_op {
        AGENT_STATE_INSTANTIATE,
        AGENT_STATE_DESTROY,             /* also shutdown: the end of the binding either way */
        AGENT_STATE_OP_COUNT
};
extern const char *const agent_state_op_names[AGENT_STATE_OP_COUNT];

struct agent_state_intent {
        char uuid[AGENT_STATE_UUID_STR];
        enum agent_state_op op;
        uint64_t generation;
        uint64_t epoch;                  /* the host session's; 0 for the agent's own decisions */
};

struct agent_state;

/* Opens (creating when absent) the record in dir, which must exist, and loads it. A torn
 * or damaged record is skipped with a warning; the file is then rewritten compactly.
 * -EBUSY when another process holds the record; -EINVAL when the file is not ours. */
int agent_state_open(const char *dir, struct agent_state **ret);
/* Accepts NULL; NULLs *s. */
void agent_state_close(struct agent_state **s);

/* Makes the intent durable (file and, when the file is new, its directory fsync'd)
 * before returning 0. A destroy raises the tombstone at once: whatever the driver
 * answers, nothing at or below that generation may run here again. An instantiate at
 * or below the tombstone is refused with -ESTALE and recorded nowhere. */
int agent_state_intent(struct agent_state *s, enum agent_state_op op, const char *uuid,
                       uint64_t generation, uint64_t epoch);
/* Records the outcome of the intent with the same (op, uuid, generation, epoch); the
 * intent stops being pending. */
int agent_state_outcome(struct agent_state *s, enum agent_state_op op, const char *uuid,
                        uint64_t generation, uint64_t epoch, bool ok);

/* The highest generation of uuid destroyed here, 0 when none. */
uint64_t agent_state_tombstone(struct agent_state *s, const char *uuid);
/* Intents without an outcome (e.g. interrupted by a crash), in uuid order: a malloc'd
 * array in *ret (free()), the count returned. */
int agent_state_pending(struct agent_state *s, struct agent_state_intent **ret);

/* Rewrites the file with only what matters (tombstones, pending intents). Done at open
 * and automatically as the file grows; exposed for tests. */
int agent_state_compact(struct agent_state *s);
