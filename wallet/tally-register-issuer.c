/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The issuer a register trusts.  A register made without one (a fresh
 * install, before anyone wrote issuer_key) holds the all-zero key, under
 * which nothing verifies, and takes its issuer once, from the owner.
 */
#include <sodium.h>
#include <string.h>

#include "tally-hex.h"
#include "tally-register-private.h"

gboolean
tally_register_has_issuer (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, FALSE);
  return !sodium_is_zero (reg->state.issuer_key, TALLY_PUBLIC_KEY_BYTES);
}

gboolean
tally_register_need_issuer (TallyRegister *reg, GError **error)
{
  if (!tally_register_has_issuer (reg)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE,
                 "the register trusts no issuer yet: give it the issuer's key set first");
    return FALSE;
  }
  return TRUE;
}

gboolean
tally_register_sign_enrolment (TallyRegister *reg,
                               const char *account,
                               guint8 proof[static TALLY_SIGNATURE_BYTES],
                               GError **error)
{
  g_return_val_if_fail (reg != NULL && account != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!tally_register_need_issuer (reg, error))
    return FALSE;
  gsize account_len = strlen (account);
  gboolean valid = account_len > 0 && g_utf8_validate (account, (gssize) account_len, NULL);
  for (const char *p = account; valid && *p != '\0'; p = g_utf8_next_char (p))
    valid = !g_unichar_iscntrl (g_utf8_get_char (p));
  if (!valid) {
    g_set_error_literal (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                         "an account name is UTF-8 text without control characters");
    return FALSE;
  }
  g_autoptr (GByteArray) statement = g_byte_array_new ();
  g_byte_array_append (statement, (const guint8 *) TALLY_ENROL_STATEMENT_DOMAIN,
                       sizeof TALLY_ENROL_STATEMENT_DOMAIN); /* with its 0x00 */
  g_byte_array_append (statement, reg->state.issuer_key, TALLY_PUBLIC_KEY_BYTES);
  g_byte_array_append (statement, tally_register_get_public_key (reg), TALLY_PUBLIC_KEY_BYTES);
  g_byte_array_append (statement, (const guint8 *) account, (guint) account_len);
  reg->backend->sign_enrolment (reg->store, statement->data, statement->len, proof);
  return TRUE;
}

/* An issuer is never replaced: what the register holds is that issuer's. */
static gboolean
check_unbound (TallyRegister *reg, GError **error)
{
  if (!tally_register_has_issuer (reg))
    return TRUE;
  guint8 key_id[TALLY_ID_BYTES];
  tally_key_id_from_key (reg->state.issuer_key, key_id);
  g_autofree char *hex = tally_hex_encode (key_id, sizeof key_id);
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS, "the register already trusts issuer %s",
               hex);
  return FALSE;
}

gboolean
tally_register_set_issuer_key (TallyRegister *reg,
                               const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES],
                               GError **error)
{
  g_return_val_if_fail (reg != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_unbound (reg, error))
    return FALSE;
  if (sodium_is_zero (issuer_key, TALLY_PUBLIC_KEY_BYTES)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "the all-zero key is no issuer's");
    return FALSE;
  }

  g_auto (TallyRegisterState) next = { 0 };
  tally_register_state_copy (&next, &reg->state);
  memcpy (next.issuer_key, issuer_key, TALLY_PUBLIC_KEY_BYTES);
  if (!tally_register_state_commit (reg, TALLY_REGISTER_OP_ISSUER, &next, error))
    return FALSE;
  g_autofree char *hex = tally_hex_encode (issuer_key, TALLY_PUBLIC_KEY_BYTES);
  g_message ("the register now trusts issuer key %s", hex);
  tally_register_adopt (reg, TALLY_REGISTER_OP_ISSUER, &next, NULL, NULL, NULL);
  return TRUE;
}

gboolean
tally_register_set_issuer (TallyRegister *reg,
                           const guint8 *key_set,
                           gsize len,
                           GError **error)
{
  g_return_val_if_fail (reg != NULL, FALSE);
  g_return_val_if_fail (key_set != NULL || len == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_unbound (reg, error))
    return FALSE;
  g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (key_set, len, error);
  if (env == NULL)
    return FALSE;
  g_autoptr (Tally__IssuerKeySet) ks = tally_issuer_key_set_verify (env, error);
  if (ks == NULL)
    return FALSE;
  g_info ("issuer key set of \"%s\" (%s)", ks->name, ks->currency);
  return tally_register_set_issuer_key (reg, ks->public_key.data, error);
}
