/* The DHCP hosts file, in dnsmasq's dhcp-hostsfile format. dnsmasq re-reads it on
 * SIGHUP (or at once with --dhcp-hostsdir); writing it atomically means a reader never
 * sees half a file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "dhcp.h"
#include "err.h"

int dhcp_hosts_write(const char *path, Lsc__Server *const *v, size_t n)
{
        char tmp[4096];
        FILE *f;
        int fd, r = 0;

        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return lsc_err_set(-errno, "cannot write %s: %s", tmp, strerror(errno));
        f = fdopen(fd, "w");
        if (!f) {
                close(fd);
                return lsc_err_set(-errno, "cannot write %s: %s", tmp, strerror(errno));
        }
        fprintf(f, "# written by lscd: MAC,IP,hostname of every identity; do not edit\n");
        for (size_t i = 0; i < n; i++) {
                const Lsc__ServerSpec *sp = v[i]->spec;
                if (!sp || sp->n_ips == 0)
                        continue;
                /* metal: the machine's own MAC, written by its agent (docs/drivers.md) */
                if (sp->kind && strcmp(sp->kind, "metal") == 0)
                        continue;
                /* NIC k gets IP k; NICs beyond the IPs share the first */
                for (size_t k = 0; k < sp->n_macs; k++)
                        fprintf(f, "%s,%s,%s\n", sp->macs[k], sp->ips[k < sp->n_ips ? k : 0],
                                sp->hostname && sp->hostname[0] ? sp->hostname : sp->name);
        }
        if (fflush(f) != 0 || fsync(fileno(f)) != 0)
                r = lsc_err_set(-errno, "cannot write %s: %s", tmp, strerror(errno));
        if (fclose(f) != 0 && r == 0)
                r = lsc_err_set(-errno, "cannot write %s: %s", tmp, strerror(errno));
        if (r == 0 && rename(tmp, path) < 0)
                r = lsc_err_set(-errno, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        if (r < 0)
                unlink(tmp);
        return r;
}
