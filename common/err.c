/* Thread-local error detail, so a failure is described where it happens and shown once. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "err.h"

static _Thread_local char err_msg[512];
static _Thread_local char err_where[128];

int lsc_err_set_at(int err, const char *file, int line, const char *fmt, ...)
{
        va_list ap;
        const char *base = strrchr(file, '/');

        va_start(ap, fmt);
        vsnprintf(err_msg, sizeof(err_msg), fmt, ap);
        va_end(ap);
        snprintf(err_where, sizeof(err_where), "%s:%d", base ? base + 1 : file, line);
        return err;
}

const char *lsc_err_msg(int err)
{
        if (err_msg[0])
                return err_msg;
        return strerror(err < 0 ? -err : err);
}

const char *lsc_err_where(void)
{
        return err_where;
}

void lsc_err_clear(void)
{
        err_msg[0] = '\0';
        err_where[0] = '\0';
}

const char *lsc_str_show(const char *s, char buf[LSC_SHOW_BUF])
{
        size_t i;

        for (i = 0; s[i] && i < LSC_SHOW_MAX; i++)
                buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
        if (s[i])
                memcpy(buf + i, "...", 4);
        else
                buf[i] = '\0';
        return buf;
}
