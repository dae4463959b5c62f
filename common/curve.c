/* CurveZMQ key files. The secret never leaves its 0600 file; the public key is what
 * an operator copies into the manager's authorised-keys directory. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>
#include "curve.h"
#include "err.h"

bool lsc_curve_key_valid(const char *s)
{
        uint8_t bin[32];

        return s && strlen(s) == 40 && zmq_z85_decode(bin, s) != NULL;
}

/* The first 40 non-space characters of path, checked. */
static int read_key(const char *path, const char *what, char ret[LSC_Z85_KEY])
{
        char buf[128], *p;
        FILE *f = fopen(path, "re");
        size_t n;

        if (!f)
                return lsc_err_set(-errno, "cannot read %s %s: %s", what, path, strerror(errno));
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        for (p = buf; *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r'; p++)
                ;
        n = strcspn(p, " \t\r\n");
        p[n] = '\0';
        if (!lsc_curve_key_valid(p))
                return lsc_err_set(-EINVAL, "%s %s does not hold a Z85 CurveZMQ key (40 characters)",
                                   what, path);
        memcpy(ret, p, LSC_Z85_KEY);
        return 0;
}

int lsc_curve_read_public(const char *path, char ret[LSC_Z85_KEY])
{
        return read_key(path, "public key", ret);
}

static int write_file(const char *path, const char *text, mode_t mode)
{
        char tmp[4096];
        int fd, r = 0;

        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0)
                return lsc_err_set(-errno, "cannot write %s: %s", tmp, strerror(errno));
        if (write(fd, text, strlen(text)) != (ssize_t)strlen(text) || fsync(fd) < 0)
                r = lsc_err_set(-errno, "cannot write %s: %s", tmp, strerror(errno));
        close(fd);
        if (r == 0 && rename(tmp, path) < 0)
                r = lsc_err_set(-errno, "cannot rename %s: %s", tmp, strerror(errno));
        if (r < 0)
                unlink(tmp);
        return r;
}

int lsc_curve_load_or_create(const char *secret_path, const char *public_path,
                             char ret_public[LSC_Z85_KEY], char ret_secret[LSC_Z85_KEY])
{
        char pub[LSC_Z85_KEY], sec[LSC_Z85_KEY], line[LSC_Z85_KEY + 1];
        int r;

        if (access(secret_path, F_OK) == 0) {
                struct stat st;
                if (stat(secret_path, &st) == 0 && (st.st_mode & 0077))
                        return lsc_err_set(-EPERM, "secret key %s is readable by others (mode %o): "
                                           "chmod 600 it", secret_path, st.st_mode & 0777);
                if ((r = read_key(secret_path, "secret key", sec)) < 0)
                        return r;
                if (zmq_curve_public(pub, sec) < 0)
                        return lsc_err_set(-EINVAL, "secret key %s is not a CurveZMQ key", secret_path);
        } else {
                if (zmq_curve_keypair(pub, sec) < 0)
                        return lsc_err_set(-ENOTSUP, "this libzmq has no CURVE support");
                snprintf(line, sizeof(line), "%s\n", sec);
                if ((r = write_file(secret_path, line, 0600)) < 0)
                        return r;
        }
        if (public_path) {
                snprintf(line, sizeof(line), "%s\n", pub);
                if ((r = write_file(public_path, line, 0644)) < 0)
                        return r;
        }
        memcpy(ret_public, pub, LSC_Z85_KEY);
        memcpy(ret_secret, sec, LSC_Z85_KEY);
        return 0;
}
