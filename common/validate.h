/* Input validation shared by the CLI (early, for exit status 2) and lscd (authoritative).
 * Each function returns 0 or -EINVAL with an lsc_err_set() detail naming the bad value. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#define LSC_VCPUS_MIN 1u
#define LSC_VCPUS_MAX 1024u
#define LSC_MEMORY_MIB_MIN 16ull
#define LSC_MEMORY_MIB_MAX (16ull * 1024 * 1024)      /* 16 TiB */
#define LSC_DISK_GIB_MAX   (1024ull * 1024)           /* 1 PiB */
#define LSC_LIFETIME_S_MAX (3650ull * 86400)          /* ten years */
#define LSC_LABEL_MAX 63
#define LSC_NAME_MAX 63
#define LSC_HOSTNAME_MAX 253
#define LSC_IMAGE_MAX 1024
#define LSC_GROUP_MAX_PER_HOST_MAX 1000000u   /* placement groups: members per host */

enum lsc_kind { LSC_KIND_VM, LSC_KIND_CONTAINER, LSC_KIND_METAL, LSC_KIND_COUNT };
enum lsc_disk_mode { LSC_DISK_EPHEMERAL, LSC_DISK_PERSISTENT, LSC_DISK_MODE_COUNT };
extern const char *const lsc_kind_names[LSC_KIND_COUNT];
extern const char *const lsc_disk_mode_names[LSC_DISK_MODE_COUNT];

/* Looks s up in a name table of n entries; returns the index or -EINVAL. */
int lsc_enum_parse(const char *const *names, int n, const char *s);

/* A DNS label: [a-z0-9-], 1-63, not starting or ending with '-'. what names the
 * thing in the message ("server name", "pool name"). */
int lsc_validate_name(const char *what, const char *s);
/* A hostname: dot-separated DNS labels, at most 253 characters. */
int lsc_validate_hostname(const char *s);
/* A label key or value: 1-63 of [A-Za-z0-9._-]. */
int lsc_validate_label_part(const char *what, const char *s);
/* "KEY=VALUE" split into its parts (pointers into buf, which is modified). */
int lsc_label_parse(char *buf, const char **ret_key, const char **ret_value);
int lsc_validate_vcpus(uint64_t v);
int lsc_validate_memory_mib(uint64_t v);
int lsc_validate_disk_gib(uint64_t v);
int lsc_validate_image(const char *s);
int lsc_validate_lifetime_s(uint64_t v);

/* A decimal unsigned integer with no sign, space or suffix; what names it. */
int lsc_parse_u64(const char *what, const char *s, uint64_t *ret);
/* "30s", "15m", "168h", "7d": a positive integer and one unit. */
int lsc_duration_parse(const char *s, uint64_t *ret_seconds);
/* Formats seconds as the largest exact unit ("7d", "90m"); buf >= 32 bytes. */
void lsc_duration_format(uint64_t seconds, char *buf, size_t len);
