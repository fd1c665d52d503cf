/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define TALLY_ERROR (tally_error_quark ())
GQuark tally_error_quark (void);

/*
 * Every error Tally reports, as one list: X (SYMBOL, code, Name) gives
 * TALLY_ERROR_<SYMBOL> = code, its short name "Name" and its D-Bus error
 * name "org.tally.Error.Name".  The numeric values travel in the wire Error
 * message and are stable: append, never renumber.
 */
#define TALLY_ERROR_LIST(X)                                                                        \
  X (FAILED, 1, Failed)                                                                            \
  X (INVALID_ARGUMENT, 2, InvalidArgument)                                                         \
  X (MALFORMED, 3, Malformed)                                                                      \
  X (BAD_SIGNATURE, 4, BadSignature)                                                               \
  X (WRONG_CONTEXT, 5, WrongContext)                                                               \
  X (WRONG_ISSUER, 6, WrongIssuer)                                                                 \
  X (CERT_EXPIRED, 7, CertificateExpired)                                                          \
  X (CERT_NOT_YET_VALID, 8, CertificateNotYetValid)                                                \
  X (REVOKED, 9, Revoked)                                                                          \
  X (REPLAY, 10, Replay)                                                                           \
  X (WRONG_PAYEE, 11, WrongPayee)                                                                  \
  X (WRONG_NONCE, 12, WrongNonce)                                                                  \
  X (AMOUNT_MISMATCH, 13, AmountMismatch)                                                          \
  X (CURRENCY_MISMATCH, 14, CurrencyMismatch)                                                      \
  X (INVALID_AMOUNT, 15, InvalidAmount)                                                            \
  X (OVERFLOW, 16, Overflow)                                                                       \
  X (COUNTER_REUSED, 17, CounterReused)                                                            \
  X (CHAIN_FORK, 18, ChainFork)                                                                    \
  X (LIMIT_PAYMENT, 19, LimitPayment)                                                              \
  X (LIMIT_BALANCE, 20, LimitBalance)                                                              \
  X (LIMIT_COUNT, 21, LimitCount)                                                                  \
  X (LIMIT_TIME, 22, LimitTime)                                                                    \
  X (INSUFFICIENT_FUNDS, 23, InsufficientFunds)                                                    \
  X (VOUCHER_REPLAY, 24, VoucherReplay)                                                            \
  X (FRAME_OVERSIZE, 25, FrameOversize)                                                            \
  X (FRAME_TRUNCATED, 26, FrameTruncated)                                                          \
  X (FRAME_UNKNOWN, 27, FrameUnknown)                                                              \
  X (FRAME_TIMEOUT, 28, FrameTimeout)                                                              \
  X (WRONG_STATE, 29, WrongState)                                                                  \
  X (DECRYPT, 30, Decrypt)                                                                         \
  X (TRANSCRIPT, 31, Transcript)                                                                   \
  X (POLICY, 32, Policy)                                                                           \
  X (STALE_REVOCATION_LIST, 33, StaleRevocationList)                                               \
  X (NO_CERTIFICATE, 34, NoCertificate)                                                            \
  X (STORAGE, 35, Storage)                                                                         \
  X (REJECTED, 36, Rejected)                                                                       \
  X (CANCELLED, 37, Cancelled)                                                                     \
  X (DISCONNECTED, 38, Disconnected)                                                               \
  X (VERSION, 39, Version)                                                                         \
  X (NOT_FOUND, 40, NotFound)                                                                      \
  X (EXISTS, 41, Exists)                                                                           \
  X (WRONG_REGISTER, 42, WrongRegister)                                                            \
  X (TIMEOUT, 43, Timeout)                                                                         \
  X (EXPIRED, 44, Expired)                                                                         \
  X (INCOMPLETE, 45, Incomplete)                                                                   \
  X (NOT_AUTHORIZED, 46, NotAuthorized)                                                            \
  X (ALREADY_PAID, 47, AlreadyPaid)                                                                \
  X (REQUEST_UNNAMED, 48, RequestUnnamed)

#define TALLY_ERROR_ENUM_ENTRY(symbol, code, name) TALLY_ERROR_##symbol = code,

typedef enum
{
  TALLY_ERROR_LIST (TALLY_ERROR_ENUM_ENTRY)
} TallyError;

#undef TALLY_ERROR_ENUM_ENTRY

#define TALLY_ERROR_LAST TALLY_ERROR_REQUEST_UNNAMED

/* Prefix of every D-Bus error name (docs/dbus-api.md). */
#define TALLY_ERROR_NAME_PREFIX "org.tally.Error."

/* Short stable identifier, e.g. "BadSignature"; NULL for an unknown code. */
const char *tally_error_to_string (TallyError code);

/* D-Bus error name, e.g. "org.tally.Error.BadSignature"; NULL for an
 * unknown code. */
const char *tally_error_to_name (TallyError code);

/* Maps any value received from a peer onto a known code (FAILED otherwise). */
TallyError tally_error_from_wire (guint32 code);

/* Code of @error when it is in TALLY_ERROR, else TALLY_ERROR_FAILED. */
TallyError tally_error_code (const GError *error);

G_END_DECLS
