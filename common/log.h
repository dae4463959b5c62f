/* Logging to stderr with levels; the level is checked before formatting. */
#pragma once
#include <stdbool.h>

enum lsc_log_level {
        LSC_LOG_ERROR,
        LSC_LOG_WARN,
        LSC_LOG_INFO,
        LSC_LOG_DEBUG,
        LSC_LOG_LEVEL_COUNT
};

extern enum lsc_log_level lsc_log_threshold;
extern const char *const lsc_log_level_names[LSC_LOG_LEVEL_COUNT];

/* Sets the program name shown in each line ("lscd", "lsc-agent"). */
void lsc_log_init(const char *progname);
/* Parses "error|warn|info|debug"; -EINVAL otherwise. */
int lsc_log_level_parse(const char *s, enum lsc_log_level *ret);

void lsc_log_write(enum lsc_log_level level, const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

#define lsc_log(level, ...)                                                  \
        do {                                                                 \
                if ((level) <= lsc_log_threshold)                            \
                        lsc_log_write((level), __FILE__, __LINE__, __VA_ARGS__); \
        } while (0)
#define log_error(...) lsc_log(LSC_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  lsc_log(LSC_LOG_WARN, __VA_ARGS__)
#define log_info(...)  lsc_log(LSC_LOG_INFO, __VA_ARGS__)
#define log_debug(...) lsc_log(LSC_LOG_DEBUG, __VA_ARGS__)
