/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A scripted payer or payee, written from docs/protocol.md §4 and not from
 * pairing/: it keeps the transcript and session keys itself, so tests can
 * put anything in the signed and sealed bodies, and it records every
 * intermediate value (transcript hashes, keys, signatures, each AEAD input
 * and output) so that the published handshake vectors come from it.
 *
 * tests/pairing/test-session.c proves it interoperates with the real
 * sessions; tests/pairing/handshake-vectors.c checks that the real sessions
 * reproduce the vectors it generates.
 */

#include <glib.h>

#include "tally-core.h"
#include "tally-register.h"
#include "tally-session.h"
#include "vectors.h"

G_BEGIN_DECLS

#define SCRIPT_EPH_BYTES   crypto_kx_PUBLICKEYBYTES
#define SCRIPT_KEY_BYTES   crypto_kx_SESSIONKEYBYTES
#define SCRIPT_NONCE_BYTES crypto_aead_chacha20poly1305_IETF_NPUBBYTES
#define SCRIPT_CODE_DIGITS 6

/* One AEAD operation, sealed or opened. */
typedef struct
{
  guint8 nonce[SCRIPT_NONCE_BYTES];
  GBytes *ad;
  GBytes *plain;
  GBytes *ciphertext;
} ScriptAead;

typedef struct
{
  gboolean is_payer;
  guint8 eph_pk[SCRIPT_EPH_BYTES], eph_sk[crypto_kx_SECRETKEYBYTES];
  guint8 peer_eph[SCRIPT_EPH_BYTES];
  guint8 rx[SCRIPT_KEY_BYTES], tx[SCRIPT_KEY_BYTES];
  guint64 rx_seq, tx_seq;
  guint8 t[TALLY_HASH_BYTES]; /* the running transcript */
  guint8 t0[TALLY_HASH_BYTES], t1[TALLY_HASH_BYTES], t2[TALLY_HASH_BYTES], t3[TALLY_HASH_BYTES];
  guint8 t2r[TALLY_HASH_BYTES]; /* T2 with N_a mixed in */
  guint8 offer_sig[TALLY_SIGNATURE_BYTES];
  guint8 pay_sig[TALLY_SIGNATURE_BYTES];
  /* Payer: N_a, random after script_init (set it before script_hello);
   * payee: what the reveal carried. */
  guint8 commit_nonce[TALLY_NONCE_BYTES];
  /* H("handshake-commit", e_a || N_a): payer's as sent, payee's as received. */
  guint8 commitment[TALLY_HASH_BYTES];
  gsize commitment_len;               /* script_hello sends this many bytes of it (32) */
  /* Payer: the request tag script_hello names, request_tag_len bytes of
   * it (0 after script_init: no tag, as payers that predate it). */
  guint8 request_tag[8];
  gsize request_tag_len;
  gboolean commitment_ok;             /* payee: the reveal opened the commitment */
  guint8 code_hash[TALLY_HASH_BYTES]; /* H("comparison-code", T2r) */
  char code[SCRIPT_CODE_DIGITS + 1];
  guint8 cert_hash[TALLY_HASH_BYTES]; /* sent when script_pay gets no certificate */
  gboolean redelivery;                /* script_pay sets PayBody.redelivery */

  GBytes *offer_body; /* OfferBody bytes, built or opened */
  GBytes *pay_body;   /* PayBody bytes, built or opened */
  ScriptAead offer_aead, reveal_aead, pay_aead, receipt_aead;

  Tally__OfferBody *offer;        /* payer: the offer it opened */
  Tally__PayBody *pay;            /* payee: the pay it opened */
  Tally__SignedEnvelope *receipt; /* payer: the receipt it opened */
} Script;

/* A fresh random ephemeral key pair. */
void script_init (Script *s, gboolean is_payer);
/* The ephemeral key pair of crypto_kx_seed_keypair (@seed). */
void script_init_seeded (Script *s, gboolean is_payer, const guint8 seed[crypto_kx_SEEDBYTES]);
void script_clear (Script *s);

GBytes *script_pack_session (Tally__SessionMessage *m);
/* Decodes a SessionMessage; fails the test when it is not one. */
Tally__SessionMessage *script_unpack_session (GBytes *b);

/* Payer, step 1: Hello with revocation serial 0, the first @eph_len
 * bytes of the ephemeral key and the first commitment_len bytes of the
 * commitment to commit_nonce.  Mixes T1. */
GBytes *script_hello (Script *s, guint32 version, gsize eph_len);

/* Payer, step 2: opens an offer, mixes T2.  Does not authenticate the
 * payee: see script_verify_peer(). */
void script_take_offer (Script *s, GBytes *msg);

/* Payer, step 3: the Reveal of @nonce (commit_nonce when NULL); mixes T2r
 * and computes the comparison code. */
GBytes *script_reveal (Script *s, const guint8 *nonce, gsize nonce_len);

/* Payer, step 3: any certificate (NULL: cert_hash stands in), any
 * permission, the transcript signed by @signer (a register's
 * tally_register_sign) or by @raw_sk. */
GBytes *script_pay (Script *s,
                    GBytes *certificate,
                    GBytes *permission,
                    TallyRegister *signer,
                    const guint8 *raw_sk);

/* Payer, step 4: opens the receipt. */
void script_take_receipt (Script *s, GBytes *msg);

/* Payee, step 2: an offer carrying @certificate and @req only, signed
 * over the transcript by @signer or @raw_sk. */
GBytes *script_offer (Script *s,
                      GBytes *hello_msg,
                      GBytes *certificate,
                      const Tally__PaymentRequest *req,
                      TallyRegister *signer,
                      const guint8 *raw_sk);

/* Payee, step 2, with every OfferBody field chosen by the caller. */
GBytes *script_offer_body (Script *s,
                           GBytes *hello_msg,
                           const Tally__OfferBody *body,
                           TallyRegister *signer,
                           const guint8 *raw_sk);

/* Payee, step 3: opens the reveal, checks it against the Hello's
 * commitment (commitment_ok), mixes T2r, computes the comparison code. */
void script_take_reveal (Script *s, GBytes *msg);

/* Payee, step 5: opens the pay message and mixes T3.  Does not
 * authenticate the payer: see script_verify_peer(). */
void script_take_pay (Script *s, GBytes *msg);

/* Payee, step 4: seals @receipt (a packed envelope) for the payer. */
GBytes *script_receipt (Script *s, GBytes *receipt);

/* The peer's transcript signature under @public_key: the offer's over T2
 * for a payer, the pay's over T3 for a payee.  TRANSCRIPT when it fails. */
gboolean script_verify_peer (Script *s,
                             const guint8 public_key[TALLY_PUBLIC_KEY_BYTES],
                             GError **error);

/* --- the scripted peer against an honest session --------------------------- */

/* A scripted payer that has opened the offer of an honest payee session over
 * @payee, which asks @amount with the memo "tea" at FIXTURE_NOW, and whose
 * reveal that session took (it is WAIT_PAY). */
typedef struct
{
  Script s;
  TallySession *payee;
} PayeeRig;

void payee_rig_init (PayeeRig *r, TallyRegister *payee, gint64 amount);
/* The same, stopped before the reveal: the payee session is OFFER_SENT. */
void payee_rig_init_offered (PayeeRig *r, TallyRegister *payee, gint64 amount);
void payee_rig_clear (PayeeRig *r);

/* An honest payer session over @payer that sent its Hello, and an honest
 * request of @payee (900, memo "cake", FIXTURE_NOW) for a scripted payee to
 * offer. */
typedef struct
{
  Script s;
  TallySession *payer;
  GBytes *hello;
  Tally__PaymentRequest *request; /* an honest request from the payee register */
} PayerRig;

void payer_rig_init (PayerRig *r, TallyRegister *payer, TallyRegister *payee);
void payer_rig_clear (PayerRig *r);

/* --- the handshake vectors (docs/test-vectors.md, "Handshake") ------------- */

#define SCRIPT_VECTORS_FENCE_TAG "handshake-vectors"

/* Every seed byte is repeated 32 times. */
#define SCRIPT_VECTORS_PAYER_EPHEMERAL_SEED 0x04
#define SCRIPT_VECTORS_PAYEE_EPHEMERAL_SEED 0x05
#define SCRIPT_VECTORS_NONCE_BYTE           0x06
/* The payer's N_a. */
#define SCRIPT_VECTORS_COMMIT_NONCE_BYTE 0x07

#define SCRIPT_VECTORS_AMOUNT   1250
#define SCRIPT_VECTORS_CURRENCY "EUR"
#define SCRIPT_VECTORS_MEMO     "coffee"
/* Display names: the payer's is the core vectors' certificate's. */
#define SCRIPT_VECTORS_PAYER_NAME "Caf\u00e9 Lumen"
#define SCRIPT_VECTORS_PAYEE_NAME "Bob's Bakery"
/* Request created, Hello and Offer exchanged. */
#define SCRIPT_VECTORS_OFFER_TIME ((guint64) VECTORS_TIME)
/* The payer's agent confirms: the permission's created_at. */
#define SCRIPT_VECTORS_PAY_TIME ((guint64) VECTORS_TIME + 5)
/* The payee credits: the receipt's received_at. */
#define SCRIPT_VECTORS_RECEIPT_TIME ((guint64) VECTORS_TIME + 6)
/* OfferBody.max_message of the payee. */
#define SCRIPT_VECTORS_MAX_MESSAGE 8192

/* One whole payment between a scripted payer and a scripted payee from the
 * fixed inputs: every vector in the order gen-handshake-vectors prints
 * them (array of Vector, see tests/core/vector-doc.h). */
GPtrArray *script_vectors_build (void);

/* vector_list_format() of @vectors with one "# comparison code: ..."
 * comment line after the comparison code. */
char *script_vectors_format (const GPtrArray *vectors);

G_END_DECLS
