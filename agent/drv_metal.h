/* The metal driver's settings: one physical machine behind its BMC, booted from the
 * network with the identity on its kernel command line. See docs/drivers.md. */
#pragma once
#include <stdint.h>
#include "addr.h"
#include "ipmi.h"

/* Below lscd's bind timeout (60 s): a binding lscd gave up on must not boot later. Real
 * servers POST for minutes: raise both together (docs/drivers.md). */
#define DRV_METAL_DEFAULT_BOOT_TIMEOUT_MS 50000u

struct drv_metal_config {
        struct lsc_ipmi_bmc bmc;         /* address, port, user, password, timeout, retries */
        struct lsc_mac mac;              /* the machine's boot NIC: the hardware's own */
        const char *boot_dir;            /* absolute: iPXE scripts, dnsmasq's host and option
                                          * files (dhcp-hostsdir, dhcp-optsdir), served by TFTP */
        const char *boot_listen;         /* IP:PORT the boot callback listens on */
        const char *boot_url;            /* what the machine calls back, e.g.
                                          * http://10.0.0.5:8800; NULL: http://boot_listen */
        const char *boot_kernel;         /* as iPXE fetches them: a URL or a TFTP file name */
        const char *boot_initrd;
        const char *boot_cmdline;        /* added to the kernel command line; NULL: nothing */
        uint32_t boot_timeout_ms;        /* power on to callback; 0: the default above */
};
