/* The pet: one datagram from lsc-agent to lsc-fenced on a unix socket, carrying the
 * agent's current lease deadline as an absolute CLOCK_BOOTTIME time in microseconds
 * (lsc_boot_us()). Text, so it can be read in strace and sent by hand in an emergency:
 *     "lsc-pet 1 DEADLINE_US\n"
 * ("1": the format's version). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define LSC_PET_MAX 64                   /* bytes: a longer datagram is garbage */

/* Writes the pet for deadline_us (> 0) into buf; returns its length, or -ENOSPC. */
int lsc_pet_format(char *buf, size_t len, int64_t deadline_us);
/* Parses a datagram of len bytes (not NUL-terminated): 0 and the deadline, or -EINVAL
 * with a detail. Exactly the format above; the newline is optional. */
int lsc_pet_parse(const char *buf, size_t len, int64_t *ret_deadline_us);
