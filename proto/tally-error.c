/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-error.h"

G_DEFINE_QUARK (tally-error-quark, tally_error)

const char *
tally_error_to_string (TallyError code)
{
  switch (code) {
  case TALLY_ERROR_FAILED: return "Failed";
  case TALLY_ERROR_INVALID_ARGUMENT: return "InvalidArgument";
  case TALLY_ERROR_MALFORMED: return "Malformed";
  case TALLY_ERROR_BAD_SIGNATURE: return "BadSignature";
  case TALLY_ERROR_WRONG_CONTEXT: return "WrongContext";
  case TALLY_ERROR_WRONG_ISSUER: return "WrongIssuer";
  case TALLY_ERROR_CERT_EXPIRED: return "CertificateExpired";
  case TALLY_ERROR_CERT_NOT_YET_VALID: return "CertificateNotYetValid";
  case TALLY_ERROR_REVOKED: return "Revoked";
  case TALLY_ERROR_REPLAY: return "Replay";
  case TALLY_ERROR_WRONG_PAYEE: return "WrongPayee";
  case TALLY_ERROR_WRONG_NONCE: return "WrongNonce";
  case TALLY_ERROR_AMOUNT_MISMATCH: return "AmountMismatch";
  case TALLY_ERROR_CURRENCY_MISMATCH: return "CurrencyMismatch";
  case TALLY_ERROR_INVALID_AMOUNT: return "InvalidAmount";
  case TALLY_ERROR_OVERFLOW: return "Overflow";
  case TALLY_ERROR_COUNTER_REUSED: return "CounterReused";
  case TALLY_ERROR_CHAIN_FORK: return "ChainFork";
  case TALLY_ERROR_LIMIT_PAYMENT: return "LimitPayment";
  case TALLY_ERROR_LIMIT_BALANCE: return "LimitBalance";
  case TALLY_ERROR_LIMIT_COUNT: return "LimitCount";
  case TALLY_ERROR_LIMIT_TIME: return "LimitTime";
  case TALLY_ERROR_INSUFFICIENT_FUNDS: return "InsufficientFunds";
  case TALLY_ERROR_VOUCHER_REPLAY: return "VoucherReplay";
  case TALLY_ERROR_FRAME_OVERSIZE: return "FrameOversize";
  case TALLY_ERROR_FRAME_TRUNCATED: return "FrameTruncated";
  case TALLY_ERROR_FRAME_UNKNOWN: return "FrameUnknown";
  case TALLY_ERROR_FRAME_TIMEOUT: return "FrameTimeout";
  case TALLY_ERROR_WRONG_STATE: return "WrongState";
  case TALLY_ERROR_DECRYPT: return "Decrypt";
  case TALLY_ERROR_TRANSCRIPT: return "Transcript";
  case TALLY_ERROR_POLICY: return "Policy";
  case TALLY_ERROR_STALE_REVOCATION_LIST: return "StaleRevocationList";
  case TALLY_ERROR_NO_CERTIFICATE: return "NoCertificate";
  case TALLY_ERROR_STORAGE: return "Storage";
  case TALLY_ERROR_REJECTED: return "Rejected";
  case TALLY_ERROR_CANCELLED: return "Cancelled";
  case TALLY_ERROR_DISCONNECTED: return "Disconnected";
  case TALLY_ERROR_VERSION: return "Version";
  case TALLY_ERROR_NOT_FOUND: return "NotFound";
  case TALLY_ERROR_EXISTS: return "Exists";
  case TALLY_ERROR_WRONG_REGISTER: return "WrongRegister";
  case TALLY_ERROR_TIMEOUT: return "Timeout";
  case TALLY_ERROR_EXPIRED: return "Expired";
  case TALLY_ERROR_INCOMPLETE: return "Incomplete";
  case TALLY_ERROR_NOT_AUTHORIZED: return "NotAuthorized";
  }
  return NULL;
}

TallyError
tally_error_from_wire (guint32 code)
{
  if (code == 0 || code > TALLY_ERROR_LAST)
    return TALLY_ERROR_FAILED;
  return (TallyError) code;
}

TallyError
tally_error_code (const GError *error)
{
  if (error == NULL || error->domain != TALLY_ERROR)
    return TALLY_ERROR_FAILED;
  return tally_error_from_wire ((guint32) error->code);
}
