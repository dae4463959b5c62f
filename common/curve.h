/* CurveZMQ key files: Z85 text, one key per file. Secret keys are created 0600. */
#pragma once
#include <stdbool.h>

#define LSC_Z85_KEY 41                   /* 40 Z85 characters + NUL */

/* Reads the secret key at secret_path, or creates a new keypair there (0600) when the
 * file does not exist; also writes the public key to public_path when given.
 * Returns 0 or -errno with an lsc_err detail; ret_* untouched on failure. */
int lsc_curve_load_or_create(const char *secret_path, const char *public_path,
                             char ret_public[LSC_Z85_KEY], char ret_secret[LSC_Z85_KEY]);
/* Reads one Z85 public key from path (surrounding whitespace allowed). */
int lsc_curve_read_public(const char *path, char ret[LSC_Z85_KEY]);
/* Whether s is 40 characters of Z85 that decode to a 32-byte key. */
bool lsc_curve_key_valid(const char *s);
