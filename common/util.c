/* Clocks (monotonic for durations and deadlines, boot time for leases, wall time only
 * for display) and a binary search by string key. */
#include <string.h>
#include <time.h>
#include "util.h"

static int64_t clock_us(clockid_t id)
{
        struct timespec ts;
        clock_gettime(id, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t lsc_now_us(void) { return clock_us(CLOCK_MONOTONIC); }
int64_t lsc_boot_us(void) { return clock_us(CLOCK_BOOTTIME); }
int64_t lsc_wall_us(void) { return clock_us(CLOCK_REALTIME); }

size_t lsc_sorted_find(const void *base, size_t n, size_t size, const char *key,
                       const char *(*key_of)(const void *elem), bool *ret_found)
{
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(key_of((const char *)base + mid * size), key);

                if (c == 0) {
                        *ret_found = true;
                        return mid;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *ret_found = false;
        return lo;
}
