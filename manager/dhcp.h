/* The DHCP hosts file: one dnsmasq dhcp-hostsfile line (MAC,IP,hostname) per NIC of
 * every identity, so a DHCP server hands each identity its IP on whatever host it runs. */
#pragma once
#include <stddef.h>
#include "lsc.pb-c.h"

/* Writes v to path atomically (temporary file, fsync, rename). 0 or -errno. */
int dhcp_hosts_write(const char *path, Lsc__Server *const *v, size_t n);
