/* Small helpers every module uses: cleanup attributes, TAKE_PTR, array size. */
#pragma once
#include <stdlib.h>
#include <stdint.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Hand ownership out of a _cleanup_ variable. */
#define TAKE_PTR(p) ({ __typeof__(p) _p_ = (p); (p) = NULL; _p_; })

static inline void lsc_freep(void *p) { free(*(void **)p); }
#define _cleanup_free_ _cleanup_(lsc_freep)

#include <stdbool.h>
#include <stddef.h>

/* Binary search of an array sorted by a string key: the index of key, or where it would
 * be inserted (*ret_found false). key_of gives an element's key (elem points into base). */
size_t lsc_sorted_find(const void *base, size_t n, size_t size, const char *key,
                       const char *(*key_of)(const void *elem), bool *ret_found);

/* Monotonic time in microseconds (CLOCK_MONOTONIC); never compare across hosts. */
int64_t lsc_now_us(void);
/* CLOCK_BOOTTIME in microseconds: monotonic too, but it keeps counting while the host
 * is suspended. Leases use it (a suspended host's lease must run out as the manager's
 * clock runs on); system-wide, so two processes of one host may compare it. */
int64_t lsc_boot_us(void);
/* Wall clock in microseconds, for timestamps shown to people only. */
int64_t lsc_wall_us(void);
