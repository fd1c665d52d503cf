/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "tally-session-keys.h"

#include <string.h>

gboolean
tally_session_keys_derive (TallySessionKeys *k,
                           gboolean client,
                           const guint8 eph_pk[static TALLY_SESSION_EPHEM_BYTES],
                           guint8 eph_sk[crypto_kx_SECRETKEYBYTES],
                           const guint8 peer_eph[static TALLY_SESSION_EPHEM_BYTES],
                           GError **error)
{
  int r;
  if (client)
    r = crypto_kx_client_session_keys (k->rx, k->tx, eph_pk, eph_sk, peer_eph);
  else
    r = crypto_kx_server_session_keys (k->rx, k->tx, eph_pk, eph_sk, peer_eph);
  /* The ephemeral secret has done its only job. */
  sodium_memzero (eph_sk, crypto_kx_SECRETKEYBYTES);
  if (r != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "peer ephemeral key is unusable");
    return FALSE;
  }
  k->have_keys = TRUE;
  return TRUE;
}

void
tally_session_keys_clear (TallySessionKeys *k)
{
  sodium_memzero (k->rx, sizeof k->rx);
  sodium_memzero (k->tx, sizeof k->tx);
  k->have_keys = FALSE;
}

static void
make_nonce (guint64 seq, guint8 nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES])
{
  memset (nonce, 0, crypto_aead_chacha20poly1305_IETF_NPUBBYTES);
  for (int i = 0; i < 8; i++)
    nonce[i] = (guint8) (seq >> (8 * i));
}

GBytes *
tally_session_keys_seal (TallySessionKeys *k, const guint8 *ad, gsize ad_len, GBytes *plain)
{
  gsize len;
  const guint8 *p = g_bytes_get_data (plain, &len);
  guint8 nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
  make_nonce (k->tx_seq++, nonce);

  gsize out_len = len + crypto_aead_chacha20poly1305_IETF_ABYTES;
  guint8 *out = g_malloc (out_len);
  unsigned long long clen = 0;
  crypto_aead_chacha20poly1305_ietf_encrypt (out, &clen, p, len, ad, ad_len, NULL, nonce, k->tx);
  return g_bytes_new_take (out, (gsize) clen);
}

GBytes *
tally_session_keys_open (TallySessionKeys *k,
                         const ProtobufCBinaryData *ct,
                         const guint8 *ad,
                         gsize ad_len,
                         const char *what,
                         GError **error)
{
  if (ct->len < crypto_aead_chacha20poly1305_IETF_ABYTES) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_DECRYPT, "%s: ciphertext too short", what);
    return NULL;
  }
  guint8 nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
  make_nonce (k->rx_seq, nonce);

  gsize plain_len = ct->len - crypto_aead_chacha20poly1305_IETF_ABYTES;
  guint8 *plain = g_malloc (plain_len ? plain_len : 1);
  unsigned long long mlen = 0;
  if (crypto_aead_chacha20poly1305_ietf_decrypt (plain, &mlen, NULL, ct->data, ct->len, ad, ad_len,
                                                 nonce, k->rx) != 0) {
    g_free (plain);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_DECRYPT,
                 "%s: authentication failed (tampered or out of order)", what);
    return NULL;
  }
  k->rx_seq++;
  return g_bytes_new_take (plain, (gsize) mlen);
}
