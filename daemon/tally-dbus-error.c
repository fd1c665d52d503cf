/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-dbus-error.h"

/* Indexed by code - 1; the static assert keeps it in step with TallyError,
 * tests/daemon/test-dbus.c checks every name against tally_error_to_string. */
static const GDBusErrorEntry tally_dbus_errors[] = {
  { TALLY_ERROR_FAILED, TALLY_DBUS_ERROR_PREFIX "Failed" },
  { TALLY_ERROR_INVALID_ARGUMENT, TALLY_DBUS_ERROR_PREFIX "InvalidArgument" },
  { TALLY_ERROR_MALFORMED, TALLY_DBUS_ERROR_PREFIX "Malformed" },
  { TALLY_ERROR_BAD_SIGNATURE, TALLY_DBUS_ERROR_PREFIX "BadSignature" },
  { TALLY_ERROR_WRONG_CONTEXT, TALLY_DBUS_ERROR_PREFIX "WrongContext" },
  { TALLY_ERROR_WRONG_ISSUER, TALLY_DBUS_ERROR_PREFIX "WrongIssuer" },
  { TALLY_ERROR_CERT_EXPIRED, TALLY_DBUS_ERROR_PREFIX "CertificateExpired" },
  { TALLY_ERROR_CERT_NOT_YET_VALID, TALLY_DBUS_ERROR_PREFIX "CertificateNotYetValid" },
  { TALLY_ERROR_REVOKED, TALLY_DBUS_ERROR_PREFIX "Revoked" },
  { TALLY_ERROR_REPLAY, TALLY_DBUS_ERROR_PREFIX "Replay" },
  { TALLY_ERROR_WRONG_PAYEE, TALLY_DBUS_ERROR_PREFIX "WrongPayee" },
  { TALLY_ERROR_WRONG_NONCE, TALLY_DBUS_ERROR_PREFIX "WrongNonce" },
  { TALLY_ERROR_AMOUNT_MISMATCH, TALLY_DBUS_ERROR_PREFIX "AmountMismatch" },
  { TALLY_ERROR_CURRENCY_MISMATCH, TALLY_DBUS_ERROR_PREFIX "CurrencyMismatch" },
  { TALLY_ERROR_INVALID_AMOUNT, TALLY_DBUS_ERROR_PREFIX "InvalidAmount" },
  { TALLY_ERROR_OVERFLOW, TALLY_DBUS_ERROR_PREFIX "Overflow" },
  { TALLY_ERROR_COUNTER_REUSED, TALLY_DBUS_ERROR_PREFIX "CounterReused" },
  { TALLY_ERROR_CHAIN_FORK, TALLY_DBUS_ERROR_PREFIX "ChainFork" },
  { TALLY_ERROR_LIMIT_PAYMENT, TALLY_DBUS_ERROR_PREFIX "LimitPayment" },
  { TALLY_ERROR_LIMIT_BALANCE, TALLY_DBUS_ERROR_PREFIX "LimitBalance" },
  { TALLY_ERROR_LIMIT_COUNT, TALLY_DBUS_ERROR_PREFIX "LimitCount" },
  { TALLY_ERROR_LIMIT_TIME, TALLY_DBUS_ERROR_PREFIX "LimitTime" },
  { TALLY_ERROR_INSUFFICIENT_FUNDS, TALLY_DBUS_ERROR_PREFIX "InsufficientFunds" },
  { TALLY_ERROR_VOUCHER_REPLAY, TALLY_DBUS_ERROR_PREFIX "VoucherReplay" },
  { TALLY_ERROR_FRAME_OVERSIZE, TALLY_DBUS_ERROR_PREFIX "FrameOversize" },
  { TALLY_ERROR_FRAME_TRUNCATED, TALLY_DBUS_ERROR_PREFIX "FrameTruncated" },
  { TALLY_ERROR_FRAME_UNKNOWN, TALLY_DBUS_ERROR_PREFIX "FrameUnknown" },
  { TALLY_ERROR_FRAME_TIMEOUT, TALLY_DBUS_ERROR_PREFIX "FrameTimeout" },
  { TALLY_ERROR_WRONG_STATE, TALLY_DBUS_ERROR_PREFIX "WrongState" },
  { TALLY_ERROR_DECRYPT, TALLY_DBUS_ERROR_PREFIX "Decrypt" },
  { TALLY_ERROR_TRANSCRIPT, TALLY_DBUS_ERROR_PREFIX "Transcript" },
  { TALLY_ERROR_POLICY, TALLY_DBUS_ERROR_PREFIX "Policy" },
  { TALLY_ERROR_STALE_REVOCATION_LIST, TALLY_DBUS_ERROR_PREFIX "StaleRevocationList" },
  { TALLY_ERROR_NO_CERTIFICATE, TALLY_DBUS_ERROR_PREFIX "NoCertificate" },
  { TALLY_ERROR_STORAGE, TALLY_DBUS_ERROR_PREFIX "Storage" },
  { TALLY_ERROR_REJECTED, TALLY_DBUS_ERROR_PREFIX "Rejected" },
  { TALLY_ERROR_CANCELLED, TALLY_DBUS_ERROR_PREFIX "Cancelled" },
  { TALLY_ERROR_DISCONNECTED, TALLY_DBUS_ERROR_PREFIX "Disconnected" },
  { TALLY_ERROR_VERSION, TALLY_DBUS_ERROR_PREFIX "Version" },
  { TALLY_ERROR_NOT_FOUND, TALLY_DBUS_ERROR_PREFIX "NotFound" },
  { TALLY_ERROR_EXISTS, TALLY_DBUS_ERROR_PREFIX "Exists" },
  { TALLY_ERROR_WRONG_REGISTER, TALLY_DBUS_ERROR_PREFIX "WrongRegister" },
  { TALLY_ERROR_TIMEOUT, TALLY_DBUS_ERROR_PREFIX "Timeout" },
  { TALLY_ERROR_EXPIRED, TALLY_DBUS_ERROR_PREFIX "Expired" },
  { TALLY_ERROR_INCOMPLETE, TALLY_DBUS_ERROR_PREFIX "Incomplete" },
  { TALLY_ERROR_NOT_AUTHORIZED, TALLY_DBUS_ERROR_PREFIX "NotAuthorized" },
};

G_STATIC_ASSERT (G_N_ELEMENTS (tally_dbus_errors) == TALLY_ERROR_LAST);

void
tally_dbus_error_register (void)
{
  static gsize quark = 0;

  /* Registering under the quark name of TALLY_ERROR itself, so GErrors
   * keep their domain on both ends of the bus. */
  g_dbus_error_register_error_domain (g_quark_to_string (TALLY_ERROR), &quark, tally_dbus_errors,
                                      G_N_ELEMENTS (tally_dbus_errors));
  g_assert (quark == TALLY_ERROR);
}

const char *
tally_dbus_error_name (TallyError code)
{
  if ((guint) code < 1 || (guint) code > TALLY_ERROR_LAST)
    return NULL;
  g_assert (tally_dbus_errors[code - 1].error_code == (gint) code);
  return tally_dbus_errors[code - 1].dbus_error_name;
}

const char *
tally_dbus_error_name_for (const GError *error)
{
  if (error == NULL || error->domain != TALLY_ERROR)
    return TALLY_DBUS_ERROR_FAILED;
  const char *name = tally_dbus_error_name ((TallyError) error->code);
  return name ? name : TALLY_DBUS_ERROR_FAILED;
}

void
tally_dbus_error_return (GDBusMethodInvocation *invocation, const GError *error)
{
  g_dbus_method_invocation_return_dbus_error (invocation, tally_dbus_error_name_for (error),
                                              error->message);
}

char *
tally_dbus_error_get_message (const GError *error)
{
  g_autoptr (GError) copy = g_error_copy (error);
  g_dbus_error_strip_remote_error (copy);
  return g_strdup (copy->message);
}
