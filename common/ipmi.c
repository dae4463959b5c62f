/* The IPMI client: one lanplus session per call through libfreeipmi, with the session
 * timeout and a bounded number of retries; libfreeipmi's errors become -errno with
 * the BMC named. Nothing here logs: callers log the detail once. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <freeipmi/freeipmi.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "err.h"
#include "ipmi.h"
#include "util.h"

const char *const lsc_ipmi_power_names[LSC_IPMI_POWER_COUNT] = {
        [LSC_IPMI_POWER_OFF] = "off",
        [LSC_IPMI_POWER_ON] = "on",
        [LSC_IPMI_POWER_CYCLE] = "cycle",
};

/* Cipher suite 3 (HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128): what every BMC offers; asking
 * for it at once spares the cipher suite discovery ipmitool waits 10 s for here. */
#define CIPHER_SUITE 3

const char *lsc_ipmi_bmc_show(const struct lsc_ipmi_bmc *b, char *buf, size_t len)
{
        snprintf(buf, len, "%s:%u", b->host, b->port ? b->port : LSC_IPMI_DEFAULT_PORT);
        return buf;
}

static void free_ctx(ipmi_ctx_t *c)
{
        if (*c) {
                ipmi_ctx_close(*c);
                ipmi_ctx_destroy(*c);
        }
}
#define _cleanup_ipmi_ __attribute__((cleanup(free_ctx)))

static void free_obj(fiid_obj_t *o)
{
        if (*o)
                fiid_obj_destroy(*o);
}
#define _cleanup_fiid_ __attribute__((cleanup(free_obj)))

static int errno_of(int e)
{
        switch (e) {
        case IPMI_ERR_SESSION_TIMEOUT:
        case IPMI_ERR_CONNECTION_TIMEOUT:
        case IPMI_ERR_MESSAGE_TIMEOUT:
        case IPMI_ERR_PASSWORD_VERIFICATION_TIMEOUT:
                return -ETIMEDOUT;
        case IPMI_ERR_USERNAME_INVALID:
        case IPMI_ERR_PASSWORD_INVALID:
        case IPMI_ERR_K_G_INVALID:
        case IPMI_ERR_PRIVILEGE_LEVEL_INSUFFICIENT:
        case IPMI_ERR_PRIVILEGE_LEVEL_CANNOT_BE_OBTAINED:
                return -EACCES;
        case IPMI_ERR_OUT_OF_MEMORY:
                return -ENOMEM;
        case IPMI_ERR_HOSTNAME_INVALID:
        case IPMI_ERR_PARAMETERS:
                return -EINVAL;
        default:
                return -EIO;
        }
}

/* Whether another attempt may help: a timeout or a busy BMC, not a refusal. */
static bool transient(int r)
{
        return r == -ETIMEDOUT || r == -EIO;
}

static int fail(const struct lsc_ipmi_bmc *b, ipmi_ctx_t c, const char *what)
{
        char who[LSC_IPMI_HOST_MAX + 8];
        int e = ipmi_ctx_errnum(c);

        return lsc_err_set(errno_of(e), "BMC %s: %s: %s", lsc_ipmi_bmc_show(b, who, sizeof(who)), what,
                           ipmi_ctx_errormsg(c));
}

static int session_open(const struct lsc_ipmi_bmc *b, ipmi_ctx_t *ret)
{
        _cleanup_ipmi_ ipmi_ctx_t c = ipmi_ctx_create();
        char host[LSC_IPMI_HOST_MAX + 8];
        uint32_t timeout = b->timeout_ms ? b->timeout_ms : LSC_IPMI_DEFAULT_TIMEOUT_MS;

        if (!c)
                return lsc_err_set(-ENOMEM, "out of memory for an IPMI context");
        lsc_ipmi_bmc_show(b, host, sizeof(host));
        /* The privilege workaround: some BMCs (ipmi_sim among them) answer the open
         * session request with a privilege other than the one asked for. A
         * retransmission every timeout/4, so a lost datagram costs a quarter. */
        if (ipmi_ctx_open_outofband_2_0(c, host, b->user, b->password, NULL, 0, IPMI_PRIVILEGE_LEVEL_ADMIN,
                                        CIPHER_SUITE, timeout, timeout / 4 ? timeout / 4 : 1,
                                        IPMI_WORKAROUND_FLAGS_OUTOFBAND_2_0_OPEN_SESSION_PRIVILEGE,
                                        IPMI_FLAGS_DEFAULT) < 0)
                return fail(b, c, "cannot open a session");
        *ret = TAKE_PTR(c);
        return 0;
}

enum op { OP_POWER_GET, OP_POWER_SET, OP_BOOT_PXE };

static int run_once(const struct lsc_ipmi_bmc *b, enum op op, enum lsc_ipmi_power what, bool *ret_on)
{
        _cleanup_ipmi_ ipmi_ctx_t c = NULL;
        _cleanup_fiid_ fiid_obj_t obj = NULL;
        static const uint8_t control[LSC_IPMI_POWER_COUNT] = {
                [LSC_IPMI_POWER_OFF] = IPMI_CHASSIS_CONTROL_POWER_DOWN,
                [LSC_IPMI_POWER_ON] = IPMI_CHASSIS_CONTROL_POWER_UP,
                [LSC_IPMI_POWER_CYCLE] = IPMI_CHASSIS_CONTROL_POWER_CYCLE,
        };
        uint64_t on = 0;
        int r;

        if ((r = session_open(b, &c)) < 0)
                return r;
        switch (op) {
        case OP_POWER_GET:
                if (!(obj = fiid_obj_create(tmpl_cmd_get_chassis_status_rs)))
                        return lsc_err_set(-ENOMEM, "out of memory for an IPMI response");
                if (ipmi_cmd_get_chassis_status(c, obj) < 0)
                        return fail(b, c, "get chassis status");
                if (FIID_OBJ_GET(obj, "current_power_state.power_is_on", &on) < 0)
                        return lsc_err_set(-EIO, "BMC %s: no power state in the chassis status: %s", b->host,
                                           fiid_obj_errormsg(obj));
                *ret_on = on != 0;
                return 0;
        case OP_POWER_SET:
                if (!(obj = fiid_obj_create(tmpl_cmd_chassis_control_rs)))
                        return lsc_err_set(-ENOMEM, "out of memory for an IPMI response");
                if (ipmi_cmd_chassis_control(c, control[what], obj) < 0)
                        return fail(b, c, what == LSC_IPMI_POWER_ON    ? "power on"
                                          : what == LSC_IPMI_POWER_OFF ? "power off"
                                                                       : "power cycle");
                return 0;
        case OP_BOOT_PXE:
                if (!(obj = fiid_obj_create(tmpl_cmd_set_system_boot_options_rs)))
                        return lsc_err_set(-ENOMEM, "out of memory for an IPMI response");
                if (ipmi_cmd_set_system_boot_options_boot_flags(
                            c, IPMI_SYSTEM_BOOT_OPTIONS_PARAMETER_VALID_UNLOCKED,
                            IPMI_SYSTEM_BOOT_OPTION_BOOT_FLAG_BOOT_TYPE_PC_COMPATIBLE,
                            IPMI_SYSTEM_BOOT_OPTION_BOOT_FLAG_VALID_FOR_NEXT_BOOT,
                            IPMI_SYSTEM_BOOT_OPTION_BOOT_FLAG_VALID, IPMI_SYSTEM_BOOT_OPTION_DISABLE,
                            IPMI_SYSTEM_BOOT_OPTION_DISABLE, IPMI_SYSTEM_BOOT_OPTION_BOOT_FLAG_BOOT_DEVICE_FORCE_PXE,
                            IPMI_SYSTEM_BOOT_OPTION_DISABLE, IPMI_SYSTEM_BOOT_OPTION_DISABLE,
                            IPMI_SYSTEM_BOOT_OPTION_BOOT_FLAG_CONSOLE_REDIRECTION_DEFAULT,
                            IPMI_SYSTEM_BOOT_OPTION_DISABLE, IPMI_SYSTEM_BOOT_OPTION_DISABLE,
                            IPMI_SYSTEM_BOOT_OPTION_DISABLE,
                            IPMI_SYSTEM_BOOT_OPTION_BOOT_FLAG_FIRMWARE_BIOS_VERBOSITY_DEFAULT,
                            IPMI_SYSTEM_BOOT_OPTION_DISABLE,
                            IPMI_SYSTEM_BOOT_OPTION_BOOT_FLAGS_SET_MUX_TO_RECOMENDED_AT_END_OF_POST, 0, 0, obj) < 0)
                        return fail(b, c, "set the next boot device to PXE");
                return 0;
        }
        return lsc_err_set(-EINVAL, "unknown IPMI operation %d", (int)op);
}

static int run(const struct lsc_ipmi_bmc *b, enum op op, enum lsc_ipmi_power what, bool *ret_on)
{
        int r = -EIO;

        if (!b->host[0])
                return lsc_err_set(-EINVAL, "a BMC without an address");
        for (uint32_t i = 0; i <= b->retries; i++) {
                if ((r = run_once(b, op, what, ret_on)) == 0 || !transient(r))
                        return r;
        }
        return r;                /* the last attempt's detail stands */
}

int lsc_ipmi_power_get(const struct lsc_ipmi_bmc *b, bool *ret_on)
{
        bool on = false;
        int r = run(b, OP_POWER_GET, LSC_IPMI_POWER_OFF, &on);

        if (r == 0)
                *ret_on = on;
        return r;
}

int lsc_ipmi_power_set(const struct lsc_ipmi_bmc *b, enum lsc_ipmi_power what)
{
        if ((unsigned)what >= LSC_IPMI_POWER_COUNT)
                return lsc_err_set(-EINVAL, "unknown power action %d", (int)what);
        return run(b, OP_POWER_SET, what, NULL);
}

int lsc_ipmi_boot_pxe(const struct lsc_ipmi_bmc *b)
{
        return run(b, OP_BOOT_PXE, LSC_IPMI_POWER_OFF, NULL);
}

int lsc_ipmi_power_off_confirmed(const struct lsc_ipmi_bmc *b, uint32_t confirm_ms)
{
        int64_t deadline = lsc_now_us() + (int64_t)confirm_ms * 1000;
        char who[LSC_IPMI_HOST_MAX + 8];
        bool on = true;
        int r;

        if ((r = lsc_ipmi_power_set(b, LSC_IPMI_POWER_OFF)) < 0)
                return r;
        for (;;) {
                if ((r = lsc_ipmi_power_get(b, &on)) < 0)
                        return r;
                if (!on)
                        return 0;
                if (lsc_now_us() >= deadline)
                        return lsc_err_set(-ETIMEDOUT, "BMC %s still says power on %u ms after power off",
                                           lsc_ipmi_bmc_show(b, who, sizeof(who)), confirm_ms);
                nanosleep(&(struct timespec){ .tv_nsec = 200 * 1000000L }, NULL);
        }
}

int lsc_ipmi_bmc_set(struct lsc_ipmi_bmc *ret, const char *what, const char *host, uint32_t port,
                     const char *user, const char *password)
{
        struct lsc_ipmi_bmc b = { .port = (uint16_t)port, .retries = LSC_IPMI_DEFAULT_RETRIES };
        char shown[LSC_SHOW_BUF];

        if (!host || !*host || strlen(host) > LSC_IPMI_HOST_MAX || strspn(host, "abcdefghijklmnopqrstuvwxyz"
                                                                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]")
                                                                    != strlen(host))
                return lsc_err_set(-EINVAL, "invalid %saddress \"%s\": want an IP address or a DNS name", what,
                                   lsc_str_show(host ? host : "", shown));
        if (port == 0 || port > 65535)
                return lsc_err_set(-EINVAL, "invalid %sport %u: want 1-65535", what, port);
        if (!user || !*user || strlen(user) > LSC_IPMI_USER_MAX)
                return lsc_err_set(-EINVAL, "invalid %suser \"%s\": want 1-%d bytes", what,
                                   lsc_str_show(user ? user : "", shown), LSC_IPMI_USER_MAX);
        if (!password || strlen(password) > LSC_IPMI_PASSWORD_MAX)
                return lsc_err_set(-EINVAL, "invalid %spassword: at most %d bytes", what, LSC_IPMI_PASSWORD_MAX);
        snprintf(b.host, sizeof(b.host), "%s", host);
        snprintf(b.user, sizeof(b.user), "%s", user);
        snprintf(b.password, sizeof(b.password), "%s", password);
        *ret = b;
        return 0;
}

int lsc_ipmi_password_read(const char *path, char ret[LSC_IPMI_PASSWORD_MAX + 1])
{
        char buf[LSC_IPMI_PASSWORD_MAX + 3];
        struct stat st;
        ssize_t n;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return lsc_err_set(-errno, "cannot read the BMC password file %s: %s", path, strerror(errno));
        if (fstat(fd, &st) < 0 || (st.st_mode & 0077)) {
                close(fd);
                return lsc_err_set(-EPERM, "the BMC password file %s may be read by others: chmod 600 it",
                                   path);
        }
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n < 0)
                return lsc_err_set(-EIO, "cannot read the BMC password file %s", path);
        buf[n] = '\0';
        if (n > 0 && buf[n - 1] == '\n')
                buf[--n] = '\0';
        if (n > 0 && buf[n - 1] == '\r')
                buf[--n] = '\0';
        if ((size_t)n > LSC_IPMI_PASSWORD_MAX || strchr(buf, '\n'))
                return lsc_err_set(-EINVAL, "the BMC password in %s is longer than %d bytes", path,
                                   LSC_IPMI_PASSWORD_MAX);
        memcpy(ret, buf, (size_t)n + 1);
        return 0;
}
