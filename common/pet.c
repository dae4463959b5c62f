/* The agent -> lsc-fenced pet: its format and a strict parser (lsc-fenced reads whatever
 * arrives on its socket; anything but a well-formed pet is refused, never guessed at). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "err.h"
#include "pet.h"

#define PET_PREFIX "lsc-pet 1 "

int lsc_pet_format(char *buf, size_t len, int64_t deadline_us)
{
        int n = snprintf(buf, len, PET_PREFIX "%lld\n", (long long)deadline_us);

        if (deadline_us <= 0 || n < 0 || (size_t)n >= len)
                return lsc_err_set(-ENOSPC, "no room for a pet");
        return n;
}

int lsc_pet_parse(const char *buf, size_t len, int64_t *ret_deadline_us)
{
        size_t plen = strlen(PET_PREFIX), i;
        int64_t v = 0;

        if (len > LSC_PET_MAX)
                return lsc_err_set(-EINVAL, "a %zu-byte message: pets are at most %d", len, LSC_PET_MAX);
        if (len < plen || memcmp(buf, PET_PREFIX, plen) != 0)
                return lsc_err_set(-EINVAL, "not a pet: want \"" PET_PREFIX "DEADLINE_US\"");
        if (len > plen && buf[len - 1] == '\n')
                len--;
        if (len == plen || len - plen > 18)
                return lsc_err_set(-EINVAL, "a pet's deadline is 1 to 18 digits");
        for (i = plen; i < len; i++) {
                if (buf[i] < '0' || buf[i] > '9')
                        return lsc_err_set(-EINVAL, "a pet's deadline is a decimal number");
                v = v * 10 + (buf[i] - '0');
        }
        if (v == 0)
                return lsc_err_set(-EINVAL, "a pet's deadline is never 0");
        *ret_deadline_us = v;
        return 0;
}
