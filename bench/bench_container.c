/* bench-container: instantiate, list and destroy cycles of the container driver with a
 * real OCI runtime on a busybox-static root filesystem, in a network namespace of its
 * own (root). Prints the mean of each step; the last line is JSON. */
#define _GNU_SOURCE             /* unshare */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "driver.h"
#include "err.h"
#include "util.h"

#define UUID "5c1d2a52-7f5e-4b7e-9a53-0000000000be"

/* A busybox root filesystem whose init ends on SIGTERM, in DIR/images/bb. */
static int image_make(const char *dir)
{
        char cmd[4096];

        snprintf(cmd, sizeof(cmd),
                 "set -e; d=%s/images; mkdir -p $d/bb/bin; cp /bin/busybox $d/bb/bin/; "
                 "ln -s busybox $d/bb/bin/sh; ln -s busybox $d/bb/bin/sleep; "
                 "printf '%%s\\n' /bin/sh -c 'trap \"exit 0\" TERM; while :; do sleep 1; done' >$d/bb.cmd",
                 dir);
        return system(cmd);
}

static void remove_dir(const char *dir)
{
        char cmd[256];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
                fprintf(stderr, "bench-container: cannot remove %s\n", dir);
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
                { "runtime", required_argument, NULL, 'r' },
                { "cycles", required_argument, NULL, 'n' },
                {}
        };
        char dir[] = "/var/tmp/bench-container-XXXXXX", state[64], images[64];
        const char *runtime = "runc";
        int64_t t_inst = 0, t_list = 0, t_destroy = 0;
        struct drv *d = NULL;
        struct lsc_mac mac;
        struct lsc_ip ip;
        int cycles = 10, c, r = 0;

        while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                if (c == 'r')
                        runtime = optarg;
                else if (c == 'n' && atoi(optarg) > 0)
                        cycles = atoi(optarg);
                else {
                        fprintf(stderr, "Usage: bench-container [--runtime runc|crun|PATH] [--cycles N]\n");
                        return 2;
                }
        }
        if (!mkdtemp(dir) || unshare(CLONE_NEWNET) < 0) {
                fprintf(stderr, "bench-container: %s (run as root)\n", strerror(errno));
                return 1;
        }
        snprintf(state, sizeof(state), "%s/state", dir);
        snprintf(images, sizeof(images), "%s/images", dir);
        if (image_make(dir) != 0) {
                fprintf(stderr, "bench-container: cannot make the image (busybox-static installed?)\n");
                return 1;
        }
        lsc_mac_parse("02:4c:53:00:00:be", &mac);
        lsc_ip_parse("10.99.0.190", &ip);
        struct drv_config cfg = { .host = "bench", .state_dir = state, .image_dir = images, .runtime = runtime };
        if ((r = drv_open("container", &cfg, &d)) < 0) {
                fprintf(stderr, "bench-container: %s\n", lsc_err_msg(r));
                remove_dir(dir);
                return 1;
        }
        for (int i = 1; i <= cycles && r == 0; i++) {
                struct drv_spec spec = {
                        .uuid = UUID, .name = "bench", .generation = (uint64_t)i, .kind = LSC_KIND_CONTAINER,
                        .vcpus = 1, .memory_mib = 64, .image = "bb", .macs = &mac, .n_macs = 1, .ips = &ip,
                        .n_ips = 1,
                };
                struct drv_instance *inv = NULL;
                int64_t t0 = lsc_now_us(), t1, t2;

                if ((r = drv_instantiate(d, &spec)) < 0)
                        break;
                t1 = lsc_now_us();
                if ((r = drv_list(d, &inv)) < 0)
                        break;
                free(inv);
                r = 0;
                t2 = lsc_now_us();
                if ((r = drv_destroy(d, UUID, (uint64_t)i)) < 0)
                        break;
                t_inst += t1 - t0;
                t_list += t2 - t1;
                t_destroy += lsc_now_us() - t2;
        }
        if (r < 0)
                fprintf(stderr, "bench-container: %s\n", lsc_err_msg(r));
        drv_destroy(d, UUID, UINT64_MAX);
        drv_close(&d);
        remove_dir(dir);
        if (r < 0)
                return 1;
        printf("%s: instantiate %.1f ms, list (1 instance) %.1f ms, destroy %.1f ms (mean of %d cycles)\n",
               runtime, t_inst / 1e3 / cycles, t_list / 1e3 / cycles, t_destroy / 1e3 / cycles, cycles);
        printf("{\"runtime\":\"%s\",\"cycles\":%d,\"instantiate_ms\":%.1f,\"list_ms\":%.1f,\"destroy_ms\":%.1f}\n",
               runtime, cycles, t_inst / 1e3 / cycles, t_list / 1e3 / cycles, t_destroy / 1e3 / cycles);
        return 0;
}
