/* lsc-agent: the command line and the config file become one checked agent_config,
 * then the loop runs. Exit 0 on a clean stop, 1 on a runtime failure, 2 on bad usage. */
#include <errno.h>
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
"The agent stops on SIGTERM or SIGINT; its instances keep running (until its lease\n"
"ends, when lsc-fenced destroys them unless a restarted agent pets it again).\n");
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
        const char *config_file = NULL;
        bool print_key = false;
        int c, r, status = 2;

        lsc_log_init("lsc-agent");
        agent_config_init(&cfg);
        while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                const char *key = NULL;

                switch (c) {
                case 'n': key = "name"; break;
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
                if (key && (r = agent_config_set(&cfg, key, optarg, true)) < 0) {
                        fprintf(stderr, "lsc-agent: %s\n", lsc_err_msg(r));
                        goto out_usage;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "lsc-agent: unexpected argument \"%s\"\n", argv[optind]);
                goto out_usage;
        }
        if (config_file && (r = agent_config_load(&cfg, config_file)) < 0) {
                fprintf(stderr, "lsc-agent: %s\n", lsc_err_msg(r));
                goto out;
        }
        if ((r = agent_config_finish(&cfg, !print_key)) < 0) {
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
        agent_config_free(&cfg);
        return status;
}
