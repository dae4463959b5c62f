/* Thread-local error detail: recorded once where a failure happens, shown once at the top. */
#pragma once

/* Records a human-readable detail and returns err (a negative errno) so that
 * `return lsc_err_set(-EINVAL, "...")` reads as one step. */
int lsc_err_set_at(int err, const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
#define lsc_err_set(err, ...) lsc_err_set_at((err), __FILE__, __LINE__, __VA_ARGS__)

/* The last detail recorded on this thread, or strerror(-err) when none. */
const char *lsc_err_msg(int err);
/* Where the last detail was recorded ("store.c:120"), for debug logs. */
const char *lsc_err_where(void);
void lsc_err_clear(void);

/* A copy of s fit for one message line: at most LSC_SHOW_MAX characters, "..." when
 * cut, control and non-ASCII bytes as '?' so that input cannot forge lines or escapes. */
#define LSC_SHOW_MAX 64
#define LSC_SHOW_BUF (LSC_SHOW_MAX + sizeof("..."))
const char *lsc_str_show(const char *s, char buf[LSC_SHOW_BUF]);
