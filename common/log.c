/* Logging to stderr: one line per record, level checked by the macro before formatting. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "log.h"

enum lsc_log_level lsc_log_threshold = LSC_LOG_INFO;
const char *const lsc_log_level_names[LSC_LOG_LEVEL_COUNT] = {
        [LSC_LOG_ERROR] = "error",
        [LSC_LOG_WARN] = "warn",
        [LSC_LOG_INFO] = "info",
        [LSC_LOG_DEBUG] = "debug",
};

static const char *progname = "lsc";

void lsc_log_init(const char *name)
{
        progname = name;
}

int lsc_log_level_parse(const char *s, enum lsc_log_level *ret)
{
        for (int i = 0; i < LSC_LOG_LEVEL_COUNT; i++)
                if (strcmp(s, lsc_log_level_names[i]) == 0) {
                        *ret = (enum lsc_log_level)i;
                        return 0;
                }
        return -EINVAL;
}

void lsc_log_write(enum lsc_log_level level, const char *file, int line, const char *fmt, ...)
{
        char msg[2048], stamp[32];
        struct timespec ts;
        struct tm tm;
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        const char *base = strrchr(file, '/');
        /* one fprintf call: stdio locks the stream, so lines from threads do not interleave */
        if (lsc_log_threshold >= LSC_LOG_DEBUG)
                fprintf(stderr, "%s.%03ldZ %s %s: %s (%s:%d)\n", stamp, ts.tv_nsec / 1000000,
                        progname, lsc_log_level_names[level], msg, base ? base + 1 : file, line);
        else
                fprintf(stderr, "%s.%03ldZ %s %s: %s\n", stamp, ts.tv_nsec / 1000000, progname,
                        lsc_log_level_names[level], msg);
}
