/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define TALLY_ERROR (tally_error_quark ())
GQuark tally_error_quark (void);

/*
 * Every error Tally reports.  The numeric values travel in the wire Error
 * message and are stable: append, never renumber.  daemon/ maps each to a
 * D-Bus error name with tally_error_to_name().
 */
typedef enum
{
  TALLY_ERROR_FAILED = 1,
  TALLY_ERROR_INVALID_ARGUMENT = 2,
  TALLY_ERROR_MALFORMED = 3,
  TALLY_ERROR_BAD_SIGNATURE = 4,
  TALLY_ERROR_WRONG_CONTEXT = 5,
  TALLY_ERROR_WRONG_ISSUER = 6,
  TALLY_ERROR_CERT_EXPIRED = 7,
  TALLY_ERROR_CERT_NOT_YET_VALID = 8,
  TALLY_ERROR_REVOKED = 9,
  TALLY_ERROR_REPLAY = 10,
  TALLY_ERROR_WRONG_PAYEE = 11,
  TALLY_ERROR_WRONG_NONCE = 12,
  TALLY_ERROR_AMOUNT_MISMATCH = 13,
  TALLY_ERROR_CURRENCY_MISMATCH = 14,
  TALLY_ERROR_INVALID_AMOUNT = 15,
  TALLY_ERROR_OVERFLOW = 16,
  TALLY_ERROR_COUNTER_REUSED = 17,
  TALLY_ERROR_CHAIN_FORK = 18,
  TALLY_ERROR_LIMIT_PAYMENT = 19,
  TALLY_ERROR_LIMIT_BALANCE = 20,
  TALLY_ERROR_LIMIT_COUNT = 21,
  TALLY_ERROR_LIMIT_TIME = 22,
  TALLY_ERROR_INSUFFICIENT_FUNDS = 23,
  TALLY_ERROR_VOUCHER_REPLAY = 24,
  TALLY_ERROR_FRAME_OVERSIZE = 25,
  TALLY_ERROR_FRAME_TRUNCATED = 26,
  TALLY_ERROR_FRAME_UNKNOWN = 27,
  TALLY_ERROR_FRAME_TIMEOUT = 28,
  TALLY_ERROR_WRONG_STATE = 29,
  TALLY_ERROR_DECRYPT = 30,
  TALLY_ERROR_TRANSCRIPT = 31,
  TALLY_ERROR_POLICY = 32,
  TALLY_ERROR_STALE_REVOCATION_LIST = 33,
  TALLY_ERROR_NO_CERTIFICATE = 34,
  TALLY_ERROR_STORAGE = 35,
  TALLY_ERROR_REJECTED = 36,
  TALLY_ERROR_CANCELLED = 37,
  TALLY_ERROR_DISCONNECTED = 38,
  TALLY_ERROR_VERSION = 39,
  TALLY_ERROR_NOT_FOUND = 40,
  TALLY_ERROR_EXISTS = 41,
  TALLY_ERROR_WRONG_REGISTER = 42,
  TALLY_ERROR_TIMEOUT = 43,
  TALLY_ERROR_EXPIRED = 44,
  TALLY_ERROR_INCOMPLETE = 45,
} TallyError;

#define TALLY_ERROR_LAST TALLY_ERROR_INCOMPLETE

/* Short stable identifier, e.g. "BadSignature"; NULL for an unknown code. */
const char *tally_error_to_string (TallyError code);

/* Maps any value received from a peer onto a known code (FAILED otherwise). */
TallyError tally_error_from_wire (guint32 code);

/* Code of @error when it is in TALLY_ERROR, else TALLY_ERROR_FAILED. */
TallyError tally_error_code (const GError *error);

G_END_DECLS
