/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The peer check, written once for the handshake and the register alike.
 */
#include "tally-peer.h"

#include <string.h>

#include "tally-hex.h"

/* The revocation list is the only news a register gets of revoked peers
 * while offline; a policy may refuse to trust one that is too old. */
static gboolean
check_revocation_age (TallyRegister *reg,
                      const TallyAcceptPolicy *policy,
                      guint64 now,
                      GError **error)
{
  if (policy == NULL || policy->max_revocation_age == 0)
    return TRUE;
  if (tally_register_get_revocation_serial (reg) == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STALE_REVOCATION_LIST,
                 "we hold no revocation list and the policy requires one; reconcile first");
    return FALSE;
  }
  guint64 issued = tally_register_get_revocation_issued_at (reg);
  guint64 deadline;
  /* An age limit near the configured cap must not wrap round to the past. */
  if (!g_uint64_checked_add (&deadline, issued, policy->max_revocation_age))
    deadline = G_MAXUINT64;
  if (now > deadline) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STALE_REVOCATION_LIST,
                 "our revocation list of %" G_GUINT64_FORMAT " is older than %" G_GUINT64_FORMAT
                 " s; reconcile first",
                 issued, policy->max_revocation_age);
    return FALSE;
  }
  return TRUE;
}

Tally__RegisterCertificate *
tally_register_check_peer (TallyRegister *reg,
                           const Tally__SignedEnvelope *peer_certificate,
                           const TallyAcceptPolicy *policy,
                           guint64 now,
                           GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  const char *currency = tally_register_get_currency (reg);
  if (currency == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NO_CERTIFICATE,
                 "the register has no certificate yet");
    return NULL;
  }
  /* issuer -> peer certificate, offline. */
  g_autoptr (Tally__RegisterCertificate) peer =
    tally_certificate_verify (peer_certificate, tally_register_get_issuer_key (reg), now, error);
  if (peer == NULL)
    return NULL;

  g_autofree char *who = tally_hex_encode (peer->register_id.data, TALLY_ID_BYTES);
  if (memcmp (peer->register_id.data, tally_register_get_id (reg), TALLY_ID_BYTES) == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_REGISTER, "the peer is this very register");
    return NULL;
  }
  if (tally_register_revokes (reg, peer->register_id.data)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_REVOKED, "peer register %s is revoked", who);
    return NULL;
  }
  /* A register certified for another currency can neither pay nor be paid
   * in ours, whatever the request or permission says. */
  if (strcmp (peer->currency, currency) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_CURRENCY_MISMATCH,
                 "peer register %s holds %s, this register %s", who, peer->currency, currency);
    return NULL;
  }
  if (!check_revocation_age (reg, policy, now, error))
    return NULL;
  return g_steal_pointer (&peer);
}
