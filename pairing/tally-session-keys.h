/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A session's message keys (docs/protocol.md, "Handshake"): crypto_kx
 * gives one key per direction, payer = client, payee = server.  AEAD is
 * ChaCha20-Poly1305-IETF with the 96-bit little-endian message counter as
 * nonce; each direction has its own key, so counters never collide.
 * Internal to the pairing library.
 */

#include <glib.h>

#include "tally-core.h"

G_BEGIN_DECLS

#define TALLY_SESSION_KEY_BYTES   crypto_kx_SESSIONKEYBYTES
#define TALLY_SESSION_EPHEM_BYTES crypto_kx_PUBLICKEYBYTES

typedef struct
{
  guint8 rx[TALLY_SESSION_KEY_BYTES];
  guint8 tx[TALLY_SESSION_KEY_BYTES];
  guint64 rx_seq, tx_seq;
  gboolean have_keys;
} TallySessionKeys;

/* Derives both keys (@client: the payer's side) and zeroes @eph_sk, whose
 * only job this is. */
gboolean tally_session_keys_derive (TallySessionKeys *keys,
                                    gboolean client,
                                    const guint8 eph_pk[static TALLY_SESSION_EPHEM_BYTES],
                                    guint8 eph_sk[crypto_kx_SECRETKEYBYTES],
                                    const guint8 peer_eph[static TALLY_SESSION_EPHEM_BYTES],
                                    GError **error);
/* Zeroes both keys. */
void tally_session_keys_clear (TallySessionKeys *keys);

/* Encrypts @plain under the next outgoing counter. */
GBytes *tally_session_keys_seal (TallySessionKeys *keys,
                                 const guint8 *ad,
                                 gsize ad_len,
                                 GBytes *plain);
/* Decrypts @ct under the next incoming counter, which advances only when
 * it authenticates; @what names the message in the DECRYPT error. */
GBytes *tally_session_keys_open (TallySessionKeys *keys,
                                 const ProtobufCBinaryData *ct,
                                 const guint8 *ad,
                                 gsize ad_len,
                                 const char *what,
                                 GError **error);

G_END_DECLS
