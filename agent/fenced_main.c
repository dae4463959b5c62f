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
"Destroys every lsc-created libvirt domain on URI when the lease deadline lsc-agent\n"
"last sent to PATH passes without a newer one, whether the agent is frozen, hung or\n"
"dead. Run one per host, next to the agent and not started by it; domains lsc did not\n"
"create are never touched.\n"
"\n"
"  --socket PATH          the unix datagram socket the agent pets (the agent's\n"
"                         fenced_socket); created 0600, at most 107 bytes\n"
"  --uri URI              the libvirt URI of the agent's instances, e.g. qemu:///system\n"
"                         (not test:///default: that hypervisor lives inside the agent)\n"
"  --host NAME            the agent's host name (its --name): only that host's domains\n"
"                         are destroyed (default: every lsc domain on URI; give it\n"
"                         when several hosts share one libvirtd)\n"
"  --state-dir DIR        the agent's state dir: the ephemeral overlays in its disks/\n"
"                         go with their domains (default: the libvirt driver's)\n"
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
        if (!cfg.socket || !*cfg.socket || !cfg.uri || !*cfg.uri) {
                fprintf(stderr, "lsc-fenced: give --socket PATH and --uri URI\n");
                goto out_usage;
        }
        if (strncmp(cfg.uri, "test:", 5) == 0)
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
