/* lsc-fenced: the command line, then fenced_run. Exit 0 on a clean stop, 1 when it
 * cannot start, 2 on bad usage. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include "err.h"
#include "fenced.h"
#include "log.h"

static void usage(FILE *f)
{
        fprintf(f,
"Usage: lsc-fenced --socket PATH --uri URI [OPTIONS]\n"
"       lsc-fenced --socket PATH --driver container --host NAME --state-dir DIR [OPTIONS]\n"
"Destroys every lsc-created libvirt domain on URI (or every lsc container of the\n"
"agent's state dir) when the lease deadline lsc-agent\n"
"last sent to PATH passes without a newer one, whether the agent is frozen, hung or\n"
"dead. Run one per host, next to the agent and not started by it; domains lsc did not\n"
"create are never touched.\n"
"\n"
"  --socket PATH          the unix datagram socket the agent pets (the agent's\n"
"                         fenced_socket); created 0600, at most 107 bytes\n"
"  --driver NAME          the agent's driver: libvirt (default) or container\n"
"  --uri URI              the libvirt URI of the agent's instances, e.g. qemu:///system\n"
"                         (not test:///default: that hypervisor lives inside the agent)\n"
"  --host NAME            the agent's host name (its --name): only that host's domains\n"
"                         are destroyed (default: every lsc domain on URI; give it\n"
"                         when several hosts share one libvirtd)\n"
"  --state-dir DIR        the agent's state dir: the ephemeral overlays in its disks/\n"
"                         go with their domains (default: the libvirt driver's)\n"
"  --runtime RUNTIME      container: the agent's runtime (runc, the default, crun or\n"
"                         a path)\n"
"  --runtime-root DIR     container: the agent's runtime_root (default\n"
"                         STATE_DIR/runtime)\n"
"  --log-level LEVEL      error, warn, info (default) or debug\n"
"  --help, --version\n"
"\n"
"Disarmed until the first pet; a pet that moves the deadline back is ignored. After\n"
"destroying it stays up, re-armed by the next pet. Stops on SIGTERM or SIGINT.\n");
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
                { "socket", required_argument, NULL, 's' },
                { "uri", required_argument, NULL, 'u' },
                { "driver", required_argument, NULL, 'D' },
                { "runtime", required_argument, NULL, 'R' },
                { "runtime-root", required_argument, NULL, 'r' },
                { "host", required_argument, NULL, 'H' },
                { "state-dir", required_argument, NULL, 'd' },
                { "log-level", required_argument, NULL, 'L' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {}
        };
        struct fenced_config cfg = {0};
        int c, r;

        lsc_log_init("lsc-fenced");
        while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                switch (c) {
                case 's': cfg.socket = optarg; break;
                case 'u': cfg.uri = optarg; break;
                case 'D': cfg.driver = optarg; break;
                case 'R': cfg.runtime = optarg; break;
                case 'r': cfg.runtime_root = optarg; break;
                case 'H': cfg.host = optarg; break;
                case 'd': cfg.state_dir = optarg; break;
                case 'L':
                        if (lsc_log_level_parse(optarg, &lsc_log_threshold) < 0) {
                                fprintf(stderr, "lsc-fenced: invalid log level \"%s\": use error, warn, info or "
                                        "debug\n", optarg);
                                goto out_usage;
                        }
                        break;
                case 'h': usage(stdout); return 0;
                case 'V': printf("lsc-fenced %s\n", LSC_VERSION); return 0;
                default: goto out_usage;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "lsc-fenced: unexpected argument \"%s\"\n", argv[optind]);
                goto out_usage;
        }
        if (cfg.driver && strcmp(cfg.driver, "libvirt") != 0 && strcmp(cfg.driver, "container") != 0) {
                fprintf(stderr, "lsc-fenced: invalid driver \"%s\": use libvirt or container\n", cfg.driver);
                goto out_usage;
        }
        if (cfg.driver && strcmp(cfg.driver, "container") == 0) {
                if (!cfg.socket || !*cfg.socket || !cfg.host || !*cfg.host || !cfg.state_dir || !*cfg.state_dir) {
                        fprintf(stderr, "lsc-fenced: with --driver container give --socket PATH, --host NAME "
                                "and --state-dir DIR (the agent's)\n");
                        goto out_usage;
                }
        } else if (!cfg.socket || !*cfg.socket || !cfg.uri || !*cfg.uri) {
                fprintf(stderr, "lsc-fenced: give --socket PATH and --uri URI\n");
                goto out_usage;
        }
        if ((cfg.runtime || cfg.runtime_root) && !(cfg.driver && strcmp(cfg.driver, "container") == 0)) {
                fprintf(stderr, "lsc-fenced: --runtime and --runtime-root are for --driver container\n");
                goto out_usage;
        }
        if (cfg.uri && strncmp(cfg.uri, "test:", 5) == 0)
                log_warn("%s is libvirt's in-process test hypervisor: this process sees only its own, "
                         "never an agent's domains", cfg.uri);
        if ((r = fenced_run(&cfg)) < 0) {
                log_error("%s", lsc_err_msg(r));
                return 1;
        }
        return 0;
out_usage:
        fprintf(stderr, "Try 'lsc-fenced --help'.\n");
        return 2;
}
