/* lsc-agent: the command line and the config file become one checked agent_config,
 * then the loop runs. Exit 0 on a clean stop, 1 on a runtime failure, 2 on bad usage. */
#define _GNU_SOURCE             /* asprintf */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include "config.h"
#include "err.h"
#include "log.h"
#include "loop.h"
#include "watchdog.h"

static void usage(FILE *f)
{
        fprintf(f,
"Usage: lsc-agent --name HOST [OPTIONS]\n"
"The lsc agent of one physical host: registers with the manager, heartbeats, and runs\n"
"the manager's instantiate/destroy commands through a driver.\n"
"\n"
"  --name HOST            this host's name, as enrolled at the manager: a DNS label\n"
"                         (name)\n"
"  --config FILE          an ini file with an [agent] section (keys below)\n"
"  --manager ENDPOINT     the manager, e.g. tcp://10.0.0.1:7100 (manager)\n"
"  --manager-key FILE     the manager's Z85 public key (manager_public_key_file)\n"
"  --state-dir DIR        keys and the intent record (state_dir, default\n"
"                         " AGENT_STATE_DIR_BASE "/HOST)\n"
"  --driver NAME          libvirt (default), container or fake (driver)\n"
"  --uri URI              libvirt URI (uri, default test:///default)\n"
"  --fenced-socket PATH   lsc-fenced's socket, petted with the lease deadline\n"
"                         (fenced_socket; unset: no fencing daemon, a warning)\n"
"  --log-level LEVEL      error, warn, info (default) or debug (log_level)\n"
"  --print-public-key     create the keypair if needed, print the public key, exit\n"
"  --help, --version\n"
"\n"
"Config keys in [agent] besides those: bridge, network, image_dir, volume_dir;\n"
"vcpus, memory_mib, disk_gib (capacity overrides); alloc_ratio (default 1.0);\n"
"labels (k=v,k2=v2); heartbeat_ms (default 1000); driver_slow_ms (a driver call\n"
"running longer makes the host unhealthy, default 10000); register_retry_ms\n"
"(default 3000); destroy_budget_ms (without a newer acknowledged heartbeat, every\n"
"instance is destroyed this long before the lease ends; default 3000, at most half\n"
"the manager's lease is used); watchdog (auto: " WATCHDOG_DEVICE " when it exists, the\n"
"default; none; or a device path: armed at the first lease, petted while the lease runs\n"
"watchdog_timeout_s + 0.5 s longer or the host holds no instance, disarmed on a clean\n"
"stop); watchdog_timeout_s (default 5, shorter than the lease); runtime (runc, the\n"
"default, crun or a path) and runtime_root (default STATE_DIR/runtime), driver\n"
"container only; fake_fail_instantiate, fake_fail_message, fake_latency_ms,\n"
"fake_unhealthy, fake_hang, fake_load (the share of each instance's vCPUs kept busy,\n"
"0 to 1, or a daily LOW-HIGH; driver fake only). Command-line options win.\n"
"\n"
"Driver metal (docs/drivers.md): bmc_address, bmc_port (623), bmc_user,\n"
"bmc_password_file (0600), bmc_timeout_ms (5000), bmc_retries (2), mac, boot_dir,\n"
"boot_listen (IPv4:PORT), boot_url, boot_kernel, boot_initrd, boot_cmdline,\n"
"boot_timeout_ms (50000). A pool: one [machine NAME] section per machine (its keys\n"
"over [agent]'s); without --name the agent runs every machine of the file, each its\n"
"own host with its own keypair in STATE_DIR/NAME (enrol each: --name NAME\n"
"--print-public-key); with --name only that machine.\n"
"\n"
"The agent stops on SIGTERM or SIGINT; its instances keep running (until its lease\n"
"ends, when lsc-fenced destroys them unless a restarted agent pets it again).\n");
}

#define CLI_KEYS_MAX 16

struct cli_key {
        const char *key, *value;
};

/* One host's settings: the command line's keys, then the file ([agent], and
 * [machine NAME] when machine is set, its state dir then a parent), then the checks. */
static int build(struct agent_config *cfg, const struct cli_key *keys, size_t n_keys, const char *file,
                 const char *text, const char *machine, bool need_manager)
{
        int r;

        agent_config_init(cfg);
        for (size_t i = 0; i < n_keys; i++)
                if ((r = agent_config_set(cfg, keys[i].key, keys[i].value, true)) < 0)
                        return r;
        if (machine) {
                if ((r = agent_config_load_machine(cfg, file, text, machine)) < 0)
                        return r;
                if (cfg->state_dir) {
                        char *dir = NULL;
                        if (asprintf(&dir, "%s/%s", cfg->state_dir, cfg->name) < 0)
                                return lsc_err_set(-ENOMEM, "out of memory");
                        free(cfg->state_dir);
                        cfg->state_dir = dir;
                }
        } else if (text && (r = agent_config_load_text(cfg, file, text)) < 0) {
                return r;
        }
        return agent_config_finish(cfg, need_manager);
}

struct pool_host {
        struct agent_config cfg;
        struct agent_loop *loop;
        pthread_t thread;
        bool started;
        int result;
        int done_fd;                     /* eventfd: a loop ended */
};

static void *pool_host_main(void *arg)
{
        struct pool_host *p = arg;
        uint64_t one = 1;

        p->result = agent_loop_run(p->loop);
        if (p->result < 0)
                log_error("host %s: %s", p->cfg.name, lsc_err_msg(p->result));
        if (write(p->done_fd, &one, sizeof(one)) < 0)
                log_debug("pool: %s", strerror(errno));
        return NULL;
}

/* A metal pool: one agent loop (one host session) per machine, each on its own
 * thread; the first to stop (a signal reaches one of them) stops them all. */
static int run_pool(char **machines, size_t n, const struct cli_key *keys, size_t n_keys, const char *file,
                    const char *text, bool print_key)
{
        struct pool_host *hosts = calloc(n, sizeof(*hosts));
        int done_fd = eventfd(0, EFD_CLOEXEC), r = 0, bad = 0;
        sigset_t mask;
        uint64_t v;

        if (!hosts || done_fd < 0) {
                free(hosts);
                if (done_fd >= 0)
                        close(done_fd);
                fprintf(stderr, "lsc-agent: out of memory\n");
                return 1;
        }
        for (size_t i = 0; i < n && r == 0; i++) {
                if ((r = build(&hosts[i].cfg, keys, n_keys, file, text, machines[i], !print_key)) < 0) {
                        fprintf(stderr, "lsc-agent: [machine %s]: %s\n", machines[i], lsc_err_msg(r));
                        bad = 2;         /* bad settings, as for one host */
                }
                hosts[i].done_fd = done_fd;
        }
        if (r == 0 && print_key) {
                for (size_t i = 0; i < n && r == 0; i++) {
                        char pub[LSC_Z85_KEY], sec[LSC_Z85_KEY];
                        if ((r = agent_config_keys(&hosts[i].cfg, pub, sec)) < 0)
                                fprintf(stderr, "lsc-agent: %s\n", lsc_err_msg(r));
                        else
                                printf("%s %s\n", hosts[i].cfg.name, pub);
                }
        } else if (r == 0) {
                lsc_log_threshold = hosts[0].cfg.log_level;
                log_info("metal pool: %zu machines in %s", n, file);
                /* every loop takes SIGINT and SIGTERM on its signalfd: blocked here first */
                sigemptyset(&mask);
                sigaddset(&mask, SIGINT);
                sigaddset(&mask, SIGTERM);
                pthread_sigmask(SIG_BLOCK, &mask, NULL);
                for (size_t i = 0; i < n && r == 0; i++) {
                        if ((r = agent_loop_new(&hosts[i].cfg, &hosts[i].loop)) < 0) {
                                log_error("host %s: %s", hosts[i].cfg.name, lsc_err_msg(r));
                                break;
                        }
                        if (pthread_create(&hosts[i].thread, NULL, pool_host_main, &hosts[i]) != 0) {
                                r = lsc_err_set(-EAGAIN, "cannot start a thread for host %s", hosts[i].cfg.name);
                                log_error("%s", lsc_err_msg(r));
                                break;
                        }
                        hosts[i].started = true;
                }
                if (r == 0 && read(done_fd, &v, sizeof(v)) < 0)
                        log_debug("pool: %s", strerror(errno));
                for (size_t i = 0; i < n; i++)
                        if (hosts[i].started)
                                agent_loop_stop(hosts[i].loop);
                for (size_t i = 0; i < n; i++) {
                        if (hosts[i].started) {
                                pthread_join(hosts[i].thread, NULL);
                                if (hosts[i].result < 0)
                                        r = hosts[i].result;
                        }
                        agent_loop_destroy(&hosts[i].loop);
                }
        }
        for (size_t i = 0; i < n; i++)
                agent_config_free(&hosts[i].cfg);
        free(hosts);
        close(done_fd);
        return bad ? bad : r < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
                { "name", required_argument, NULL, 'n' },
                { "config", required_argument, NULL, 'c' },
                { "manager", required_argument, NULL, 'm' },
                { "manager-key", required_argument, NULL, 'k' },
                { "state-dir", required_argument, NULL, 's' },
                { "driver", required_argument, NULL, 'd' },
                { "uri", required_argument, NULL, 'u' },
                { "fenced-socket", required_argument, NULL, 'F' },
                { "log-level", required_argument, NULL, 'L' },
                { "print-public-key", no_argument, NULL, 'P' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {}
        };
        struct agent_config cfg;
        struct agent_loop *l = NULL;
        struct cli_key keys[CLI_KEYS_MAX];
        size_t n_keys = 0;
        const char *config_file = NULL, *name = NULL;
        char **machines = NULL, *text = NULL;
        bool print_key = false, is_machine = false;
        int c, r = 0, n = 0, status = 2;

        lsc_log_init("lsc-agent");
        agent_config_init(&cfg);
        while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                const char *key = NULL;

                switch (c) {
                case 'n': key = "name"; name = optarg; break;
                case 'm': key = "manager"; break;
                case 'k': key = "manager_public_key_file"; break;
                case 's': key = "state_dir"; break;
                case 'd': key = "driver"; break;
                case 'u': key = "uri"; break;
                case 'F': key = "fenced_socket"; break;
                case 'L': key = "log_level"; break;
                case 'c': config_file = optarg; break;
                case 'P': print_key = true; break;
                case 'h': usage(stdout); status = 0; goto out;
                case 'V': printf("lsc-agent %s\n", LSC_VERSION); status = 0; goto out;
                default: goto out_usage;
                }
                /* checked at once, so a bad option is a usage error */
                if (key && (r = agent_config_set(&cfg, key, optarg, true)) < 0) {
                        fprintf(stderr, "lsc-agent: %s\n", lsc_err_msg(r));
                        goto out_usage;
                }
                if (key && n_keys < CLI_KEYS_MAX)
                        keys[n_keys++] = (struct cli_key){ key, optarg };
        }
        if (optind < argc) {
                fprintf(stderr, "lsc-agent: unexpected argument \"%s\"\n", argv[optind]);
                goto out_usage;
        }
        if (config_file && ((r = agent_config_read(config_file, &text)) < 0 ||
                            (n = agent_config_machines(config_file, text, &machines)) < 0)) {
                fprintf(stderr, "lsc-agent: %s\n", lsc_err_msg(r < 0 ? r : n));
                goto out;
        }
        if (machines && machines[0] && !name) {
                status = run_pool(machines, (size_t)n, keys, n_keys, config_file, text, print_key);
                goto out;
        }
        for (size_t i = 0; machines && machines[i] && name; i++)
                is_machine |= !strcmp(machines[i], name);
        agent_config_free(&cfg);
        if ((r = build(&cfg, keys, n_keys, config_file, text, is_machine ? name : NULL, !print_key)) < 0) {
                fprintf(stderr, "lsc-agent: %s\n", lsc_err_msg(r));
                goto out;
        }
        lsc_log_threshold = cfg.log_level;

        if (print_key) {
                char pub[LSC_Z85_KEY], sec[LSC_Z85_KEY];

                if ((r = agent_config_keys(&cfg, pub, sec)) < 0) {
                        fprintf(stderr, "lsc-agent: %s\n", lsc_err_msg(r));
                        status = 1;
                        goto out;
                }
                printf("%s\n", pub);
                status = 0;
                goto out;
        }

        r = agent_loop_new(&cfg, &l);
        if (r >= 0)
                r = agent_loop_run(l);
        if (r < 0)
                log_error("%s", lsc_err_msg(r));
        agent_loop_destroy(&l);
        status = r < 0 ? 1 : 0;
        goto out;
out_usage:
        fprintf(stderr, "Try 'lsc-agent --help'.\n");
out:
        agent_config_machines_free(machines);
        free(text);
        agent_config_free(&cfg);
        return status;
}
