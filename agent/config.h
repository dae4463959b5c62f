/* lsc-agent's settings: the [agent] section of an ini file and the command line (which
 * wins), every value checked on the way in, plus the agent's CurveZMQ keypair. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "curve.h"
#include "driver.h"
#include "drv_metal.h"
#include "log.h"
#include "validate.h"

#define AGENT_STATE_DIR_BASE "/var/lib/lsc-agent"    /* state_dir defaults to BASE/HOST */
#define AGENT_KEY_FILE "agent.key"                   /* in the state dir, 0600 */
#define AGENT_PUB_FILE "agent.pub"
#define AGENT_LABELS_MAX 64

struct agent_label {
        char key[LSC_LABEL_MAX + 1];
        char value[LSC_LABEL_MAX + 1];
};

struct agent_config {
        char *name;                      /* the host: a DNS label, as enrolled at the manager */
        char *manager;                   /* tcp://HOST:PORT or ipc://PATH */
        char *manager_key_file;          /* the manager's Z85 public key */
        char *state_dir;                 /* default AGENT_STATE_DIR_BASE/NAME */
        char *driver;                    /* "libvirt" (default), "container" or "fake" */
        char *uri;                       /* libvirt URI, default test:///default */
        char *bridge, *network, *image_dir, *volume_dir;    /* NULL: the driver's default */
        char *runtime;                   /* container: runc (default), crun or a path */
        char *runtime_root;              /* container: the runtime's --root; NULL:
                                          * STATE_DIR/runtime */
        uint32_t vcpus;                  /* capacity overrides; 0: what the driver reads */
        uint64_t memory_mib, disk_gib;
        double alloc_ratio;              /* allocatable = physical x this, vcpus and memory */
        struct agent_label labels[AGENT_LABELS_MAX];
        size_t n_labels;
        uint32_t heartbeat_ms;           /* default 1000 */
        uint32_t driver_slow_ms;         /* a driver call running longer makes the host
                                          * unhealthy; default 10000 */
        uint32_t register_retry_ms;      /* a Register unanswered or refused is sent again
                                          * after this; default 3000 */
        uint32_t destroy_budget_ms;      /* with no newer ack, every instance is destroyed
                                          * this long before the lease ends; default 3000
                                          * (at most half the manager's lease_ttl is used) */
        char *fenced_socket;             /* lsc-fenced's unix datagram socket, petted with
                                          * the lease deadline; NULL: no fencing daemon */
        char *watchdog;                  /* the watchdog device; NULL: /dev/watchdog when it
                                          * exists ("auto", the default) */
        bool watchdog_off;               /* "none": never arm one (driver metal: the default) */
        bool watchdog_set;               /* the watchdog key was given */
        uint32_t watchdog_timeout_s;     /* default 5; must be shorter than the lease */
        enum lsc_log_level log_level;
        /* fake driver faults, in force from the start */
        uint32_t fake_fail_instantiate;
        char *fake_fail_message;
        uint32_t fake_latency_ms;
        bool fake_unhealthy, fake_hang;
        bool fake_load_set;              /* fake_load: a share 0-1, or a daily LOW-HIGH */
        double fake_load_low, fake_load_high;
        /* test-only faults on the wire to the manager (tests/chaos), all off by default:
         * a sent message is sent twice (duplicate), followed by the one sent before it
         * (replay), or held back chaos_delay_ms (delay), each with its probability in % */
        uint32_t chaos_duplicate_pct, chaos_replay_pct, chaos_delay_pct, chaos_delay_ms;
        /* driver metal: the machine's BMC, its boot NIC and its network boot */
        char *bmc_address, *bmc_user, *bmc_password_file;
        uint32_t bmc_port;               /* default 623 */
        uint32_t bmc_timeout_ms;         /* one IPMI attempt; default 5000 */
        uint32_t bmc_retries;            /* attempts after the first; default 2 */
        struct lsc_mac mac;
        bool has_mac;
        char *boot_dir, *boot_listen, *boot_url, *boot_kernel, *boot_initrd, *boot_cmdline;
        uint32_t boot_timeout_ms;        /* 0: DRV_METAL_DEFAULT_BOOT_TIMEOUT_MS */

        /* filled by agent_config_finish */
        char manager_key[LSC_Z85_KEY];
        uint64_t from_cli;               /* keys set on the command line: the file keeps off */
        bool fake_set;                   /* some fake_* key was given */
        bool container_set;              /* runtime or runtime_root was given */
        uint64_t metal_set;              /* the metal keys given (bits of the key table) */
        struct drv_metal_config metal;   /* driver metal: the checked settings, password read */
};

/* Defaults for everything. */
void agent_config_init(struct agent_config *c);
void agent_config_free(struct agent_config *c);

/* Sets key (an ini name: "manager", "vcpus", "labels", ...) from its text. Values from
 * the command line (from_cli) win: the file's value for such a key is ignored.
 * 0, -ENOENT for an unknown key, -EINVAL for a bad value (detail names the key). */
int agent_config_set(struct agent_config *c, const char *key, const char *value, bool from_cli);
/* Reads the [agent] section of path; the detail says "PATH:LINE: ...". */
int agent_config_load(struct agent_config *c, const char *path);
/* The config file's text, read once (it may be a pipe: --config <(...)); *ret is
 * malloc'd. At most 4 MiB. */
int agent_config_read(const char *path, char **ret);
/* agent_config_load on text read already; name (the path) is for messages. */
int agent_config_load_text(struct agent_config *c, const char *name, const char *text);
/* A metal pool: the [agent] section, then [machine NAME]'s keys over it (the machine's
 * win, the command line's win over both); name becomes NAME unless the command line
 * gave one. Every machine is its own lsc host: its own state dir, keypair, session. */
int agent_config_load_machine(struct agent_config *c, const char *name, const char *text, const char *machine);
/* The NAMEs of the text's [machine NAME] sections, in order, NULL-terminated (free
 * with agent_config_machines_free): their count, 0 when there are none, or -errno. */
int agent_config_machines(const char *name, const char *text, char ***ret);
void agent_config_machines_free(char **names);
/* Checks what must be there (name; manager and its key unless need_manager is false),
 * fills the defaults that depend on others (state_dir), and reads the manager's key. */
int agent_config_finish(struct agent_config *c, bool need_manager);

/* Creates the state dir (and its parents) when absent and loads, or creates on first
 * start, the agent's keypair there. */
int agent_config_keys(const struct agent_config *c, char ret_public[LSC_Z85_KEY],
                      char ret_secret[LSC_Z85_KEY]);
/* The driver's settings, borrowing c's strings. */
void agent_config_driver(const struct agent_config *c, struct drv_config *ret);
/* What the host's identities are: "vm" for libvirt and fake, else the driver's name. */
const char *agent_config_kind(const struct agent_config *c);
