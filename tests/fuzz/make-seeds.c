/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Writes the seed corpora of tests/fuzz/corpus/: real messages from the
 * real code paths (registers, sessions, framing) plus hand-made edge
 * cases, one file per seed, named after what it is.
 *
 *   make-seeds OUTDIR      writes OUTDIR/<harness>/<seed>
 *
 * libsodium's randomness is replaced by a fixed ChaCha20 stream and the
 * clock is FUZZ_NOW, so the same build writes the same bytes every time.
 */

#include <errno.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>

#include "fuzz-common.h"
#include "tally-frame.h"
#include "tally-session.h"

/* --- deterministic randomness ------------------------------------------------ */

static guint64 stream_counter;

static const char *
fixed_name (void)
{
  return "tally-fuzz-seeds";
}

static void
fixed_buf (void *const buf, const size_t size)
{
  static const guint8 key[crypto_stream_chacha20_KEYBYTES] = { 0x5e, 0xed };
  guint8 nonce[crypto_stream_chacha20_NONCEBYTES] = { 0 };
  guint64 n = stream_counter++;
  for (gsize i = 0; i < sizeof nonce; i++)
    nonce[i] = (guint8) (n >> (8 * i));
  crypto_stream_chacha20 (buf, size, nonce, key);
}

static uint32_t
fixed_random (void)
{
  uint32_t v;
  fixed_buf (&v, sizeof v);
  return v;
}

static randombytes_implementation fixed_implementation = {
  .implementation_name = fixed_name,
  .random = fixed_random,
  .buf = fixed_buf,
};

/* --- output ------------------------------------------------------------------- */

static const char *out_root;
static guint written;

static void
write_seed (const char *harness, const char *name, const guint8 *data, gsize len)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_build_filename (out_root, harness, NULL);
  if (g_mkdir_with_parents (dir, 0755) != 0) {
    fprintf (stderr, "make-seeds: cannot create %s: %s\n", dir, g_strerror (errno));
    exit (1);
  }
  g_autofree char *path = g_build_filename (dir, name, NULL);
  if (!g_file_set_contents (path, (const char *) data, (gssize) len, &error)) {
    fprintf (stderr, "make-seeds: %s\n", error->message);
    exit (1);
  }
  written++;
}

/* @prefix (one byte) then @bytes. */
static void
write_seed_prefixed (const char *harness, const char *name, guint8 prefix, GBytes *bytes)
{
  g_autoptr (GByteArray) b = g_byte_array_new ();
  g_byte_array_append (b, &prefix, 1);
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  g_byte_array_append (b, data, (guint) len);
  write_seed (harness, name, b->data, b->len);
}

/* --- a real payment, kept for its objects --------------------------------------- */

typedef struct
{
  TallyRegister *payer, *payee;
  GBytes *payer_cert, *payee_cert, *voucher, *revocation_list;
  Tally__PaymentRequest *request;
  GBytes *permission, *receipt, *bundle, *defund;
  /* The five session messages of a payment, and an Error. */
  GBytes *hello, *offer, *reveal, *pay, *receipt_msg, *error_msg;
} World;

static TallyRegister *
registered (const char *name)
{
  Tally__Limits limits = fuzz_limits ();
  return fuzz_register_new (name, &limits);
}

static void
world_build (World *w)
{
  g_autoptr (GError) error = NULL;
  w->payer = registered ("seed-payer");
  w->payee = registered ("seed-payee");
  w->payer_cert = tally_register_get_certificate (w->payer);
  w->payee_cert = tally_register_get_certificate (w->payee);
  w->voucher = fuzz_voucher (tally_register_get_id (w->payer), 1, 100000);
  gsize len;
  const guint8 *data = g_bytes_get_data (w->voucher, &len);
  g_assert_true (tally_register_load (w->payer, data, len, FUZZ_NOW, &error));
  g_assert_no_error (error);

  guint8 revoked[2 * TALLY_ID_BYTES];
  fuzz_key_register_id (FUZZ_KEY_REVOKED_PAYER, revoked);
  fuzz_key_register_id (FUZZ_KEY_STRANGER, revoked + TALLY_ID_BYTES);
  w->revocation_list = fuzz_revocation_list (1, FUZZ_NOW, revoked, 2);
  g_autoptr (Tally__SignedEnvelope) list_env = fuzz_envelope (w->revocation_list);
  g_assert_true (tally_register_update_revocation_list (w->payer, list_env, &error));
  g_assert_no_error (error);

  /* A payment through the register API. */
  w->request = tally_register_new_request (w->payee, 1250, "coffee", FUZZ_NOW, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__SignedEnvelope) payee_cert_env = fuzz_envelope (w->payee_cert);
  g_autoptr (Tally__SignedEnvelope) payer_cert_env = fuzz_envelope (w->payer_cert);
  w->permission = tally_register_spend (w->payer, payee_cert_env, w->request, FUZZ_NOW, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__SignedEnvelope) permission_env = fuzz_envelope (w->permission);
  w->receipt =
    tally_register_receive (w->payee, payer_cert_env, permission_env, NULL, NULL, FUZZ_NOW, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__SignedEnvelope) receipt_env = fuzz_envelope (w->receipt);
  g_assert_true (tally_register_acknowledge (w->payer, receipt_env, &error));
  g_assert_no_error (error);

  /* A payment through the sessions, for the messages on the wire. */
  g_autoptr (TallySession) payee =
    tally_session_new_payee (w->payee, 300, "tea", NULL, FUZZ_NOW, &error);
  g_assert_no_error (error);
  g_autoptr (TallySession) payer = tally_session_new_payer (w->payer, NULL);
  w->hello = tally_session_start (payer, &error);
  g_assert_no_error (error);
  g_assert_true (tally_session_handle (payee, g_bytes_get_data (w->hello, NULL),
                                       g_bytes_get_size (w->hello), FUZZ_NOW, &w->offer, &error));
  g_assert_no_error (error);
  g_assert_true (tally_session_handle (payer, g_bytes_get_data (w->offer, NULL),
                                       g_bytes_get_size (w->offer), FUZZ_NOW, &w->reveal, &error));
  g_assert_no_error (error);
  g_assert_nonnull (w->reveal);
  GBytes *none = NULL;
  g_assert_true (tally_session_handle (payee, g_bytes_get_data (w->reveal, NULL),
                                       g_bytes_get_size (w->reveal), FUZZ_NOW, &none, &error));
  g_assert_no_error (error);
  g_assert_null (none);
  w->pay = tally_session_confirm (payer, FUZZ_NOW, &error);
  g_assert_no_error (error);
  g_assert_true (tally_session_handle (payee, g_bytes_get_data (w->pay, NULL),
                                       g_bytes_get_size (w->pay), FUZZ_NOW, &w->receipt_msg,
                                       &error));
  g_assert_no_error (error);
  g_assert_true (tally_session_handle (payer, g_bytes_get_data (w->receipt_msg, NULL),
                                       g_bytes_get_size (w->receipt_msg), FUZZ_NOW, &none, &error));
  g_assert_no_error (error);
  g_assert_cmpint (tally_session_get_state (payer), ==, TALLY_SESSION_STATE_DONE);

  g_autoptr (TallySession) declined = tally_session_new_payer (w->payer, NULL);
  w->error_msg = tally_session_abort (declined, TALLY_ERROR_REJECTED, "declined");

  w->bundle = tally_register_export_bundle (w->payer, FUZZ_NOW, &error);
  g_assert_no_error (error);
  w->defund = tally_register_defund (w->payee, FUZZ_NOW, &error);
  g_assert_no_error (error);
}

static void
world_clear (World *w)
{
  g_clear_pointer (&w->payer, tally_register_free);
  g_clear_pointer (&w->payee, tally_register_free);
  g_clear_pointer (&w->request, tally__payment_request_free);
  GBytes **all[] = { &w->payer_cert,  &w->payee_cert, &w->voucher, &w->revocation_list,
                     &w->permission,  &w->receipt,    &w->bundle,  &w->defund,
                     &w->hello,       &w->offer,      &w->reveal,  &w->pay,
                     &w->receipt_msg, &w->error_msg };
  for (gsize i = 0; i < G_N_ELEMENTS (all); i++)
    g_clear_pointer (all[i], g_bytes_unref);
}

/* The body bytes of a packed envelope. */
static GBytes *
body_of (GBytes *packed)
{
  g_autoptr (Tally__SignedEnvelope) env = fuzz_envelope (packed);
  return g_bytes_new (env->body.data, env->body.len);
}

static GBytes *
issuer_key_set (void)
{
  guint8 key_id[TALLY_ID_BYTES];
  fuzz_key_key_id (FUZZ_KEY_ISSUER, key_id);
  Tally__IssuerKeySet k = TALLY__ISSUER_KEY_SET__INIT;
  k.public_key.data = (guint8 *) fuzz_key_public (FUZZ_KEY_ISSUER);
  k.public_key.len = TALLY_PUBLIC_KEY_BYTES;
  k.key_id.data = key_id;
  k.key_id.len = sizeof key_id;
  k.currency = (char *) FUZZ_CURRENCY;
  k.name = (char *) "Fuzz Issuer";
  k.created_at = FUZZ_NOW;
  return fuzz_sign_message (FUZZ_KEY_ISSUER,
                            TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET, &k.base);
}

static GBytes *
reconciliation_result (World *w)
{
  g_autoptr (Tally__SignedEnvelope) list = fuzz_envelope (w->revocation_list);
  g_autoptr (Tally__SignedEnvelope) cert = fuzz_envelope (w->payer_cert);
  guint8 settled[TALLY_HASH_BYTES], bundle_hash[TALLY_HASH_BYTES];
  g_autoptr (Tally__SignedEnvelope) permission = fuzz_envelope (w->permission);
  g_autoptr (Tally__SignedEnvelope) bundle = fuzz_envelope (w->bundle);
  tally_envelope_body_hash (permission, settled);
  tally_envelope_body_hash (bundle, bundle_hash);
  ProtobufCBinaryData settled_received = { sizeof settled, settled };

  Tally__ReconciliationResult r = TALLY__RECONCILIATION_RESULT__INIT;
  r.register_id.data = (guint8 *) tally_register_get_id (w->payer);
  r.register_id.len = TALLY_ID_BYTES;
  r.settled_counter = 1;
  r.n_settled_received = 1;
  r.settled_received = &settled_received;
  r.revocation_list = list;
  r.renewed_certificate = cert;
  r.reconciled_at = FUZZ_NOW;
  r.bundle_hash.data = bundle_hash;
  r.bundle_hash.len = sizeof bundle_hash;
  r.settled_voucher_sequence = 1;
  return fuzz_sign_message (FUZZ_KEY_ISSUER,
                            TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_RESULT,
                            &r.base);
}

/* Two permissions with one counter, as the issuer would prove it. */
static GBytes *
fraud_proof (World *w)
{
  g_autoptr (Tally__SignedEnvelope) first = fuzz_envelope (w->permission);
  g_autoptr (Tally__DepositPermission) p =
    TALLY_UNPACK (Tally__DepositPermission, tally__deposit_permission, first->body.data,
                  first->body.len, "p", NULL);
  g_assert_nonnull (p);
  p->created_at++;
  g_autoptr (GBytes) twin = fuzz_sign_message (
    FUZZ_KEY_PAYER, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION, &p->base);
  g_autoptr (Tally__SignedEnvelope) second = fuzz_envelope (twin);

  Tally__FraudProof f = TALLY__FRAUD_PROOF__INIT;
  f.register_id = p->payer_register_id;
  f.kind = TALLY__FRAUD_KIND__FRAUD_KIND_COUNTER_REUSED;
  f.first = first;
  f.second = second;
  f.detected_at = FUZZ_NOW;
  return fuzz_sign_message (FUZZ_KEY_ISSUER,
                            TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_FRAUD_PROOF, &f.base);
}

/* --- fuzz-messages -------------------------------------------------------------- */

/* Indices of fuzz-messages.c's table. */
enum
{
  M_SESSION_MESSAGE,
  M_HELLO,
  M_OFFER,
  M_OFFER_BODY,
  M_OFFER_SEALED,
  M_PAY_BODY,
  M_PAY_SEALED,
  M_RECEIPT_SEALED,
  M_PAYMENT_REQUEST,
  M_DEPOSIT_PERMISSION,
  M_RECEIPT,
  M_REVOCATION_LIST,
  M_LOAD_VOUCHER,
  M_REGISTER_CERTIFICATE,
  M_ISSUER_KEY_SET,
  M_RECONCILIATION_BUNDLE,
  M_RECONCILIATION_RESULT,
  M_FRAUD_PROOF,
  M_DEFUND_RECORD,
  M_SIGNED_ENVELOPE,
  M_AMOUNT,
  M_LIMITS,
  M_SPENT_ENTRY,
  M_RECEIVED_ENTRY,
  M_ERROR,
  M_REVEAL_SEALED,
  M_COUNT,
};

static void
message_seed (const char *name, guint8 type, const ProtobufCMessage *msg)
{
  g_autoptr (GBytes) packed = tally_message_pack (msg);
  write_seed_prefixed ("fuzz-messages", name, type, packed);
}

static void
seeds_messages (World *w)
{
  const char *h = "fuzz-messages";

  write_seed_prefixed (h, "session-hello", M_SESSION_MESSAGE, w->hello);
  write_seed_prefixed (h, "session-offer", M_SESSION_MESSAGE, w->offer);
  write_seed_prefixed (h, "session-reveal", M_SESSION_MESSAGE, w->reveal);
  write_seed_prefixed (h, "session-pay", M_SESSION_MESSAGE, w->pay);
  write_seed_prefixed (h, "session-receipt", M_SESSION_MESSAGE, w->receipt_msg);
  write_seed_prefixed (h, "session-error", M_SESSION_MESSAGE, w->error_msg);

  g_autoptr (Tally__SessionMessage) hello = TALLY_UNPACK (
    Tally__SessionMessage, tally__session_message, g_bytes_get_data (w->hello, NULL),
    g_bytes_get_size (w->hello), "hello", NULL);
  g_autoptr (Tally__SessionMessage) offer = TALLY_UNPACK (
    Tally__SessionMessage, tally__session_message, g_bytes_get_data (w->offer, NULL),
    g_bytes_get_size (w->offer), "offer", NULL);
  g_autoptr (Tally__SessionMessage) error = TALLY_UNPACK (
    Tally__SessionMessage, tally__session_message, g_bytes_get_data (w->error_msg, NULL),
    g_bytes_get_size (w->error_msg), "error", NULL);
  g_assert_true (hello != NULL && offer != NULL && error != NULL);
  message_seed ("hello", M_HELLO, &hello->hello->base);
  /* A Hello naming the payee request it answers (docs/protocol.md 4.2). */
  static const guint8 tag[] = { 0x0a, 0x1b, 0x2c, 0x3d };
  hello->hello->request_tag.data = (guint8 *) tag;
  hello->hello->request_tag.len = sizeof tag;
  message_seed ("hello-tagged", M_HELLO, &hello->hello->base);
  g_autoptr (GBytes) tagged = tally_message_pack (&hello->base);
  write_seed_prefixed (h, "session-hello-tagged", M_SESSION_MESSAGE, tagged);
  hello->hello->request_tag.data = NULL;
  hello->hello->request_tag.len = 0;
  message_seed ("offer", M_OFFER, &offer->offer->base);
  message_seed ("error", M_ERROR, &error->error->base);

  /* The sealed bodies, from the same objects the sessions put in them. */
  g_autoptr (Tally__SignedEnvelope) payee_cert = fuzz_envelope (w->payee_cert);
  g_autoptr (Tally__SignedEnvelope) payer_cert = fuzz_envelope (w->payer_cert);
  g_autoptr (Tally__SignedEnvelope) list = fuzz_envelope (w->revocation_list);
  g_autoptr (Tally__SignedEnvelope) permission = fuzz_envelope (w->permission);
  g_autoptr (Tally__SignedEnvelope) receipt = fuzz_envelope (w->receipt);
  guint8 sig[TALLY_SIGNATURE_BYTES];
  memset (sig, 0x5a, sizeof sig);

  Tally__OfferBody ob = TALLY__OFFER_BODY__INIT;
  ob.payee_certificate = payee_cert;
  ob.request = w->request;
  ob.revocation_serial = 1;
  ob.revocation_list = list;
  ob.max_message = TALLY_SESSION_MAX_MESSAGE;
  message_seed ("offer-body", M_OFFER_BODY, &ob.base);
  g_autoptr (GBytes) ob_bytes = tally_message_pack (&ob.base);
  Tally__OfferSealed os = TALLY__OFFER_SEALED__INIT;
  os.body.data = (guint8 *) g_bytes_get_data (ob_bytes, &os.body.len);
  os.signature.data = sig;
  os.signature.len = sizeof sig;
  message_seed ("offer-sealed", M_OFFER_SEALED, &os.base);

  Tally__PayBody pb = TALLY__PAY_BODY__INIT;
  pb.payer_certificate = payer_cert;
  pb.permission = permission;
  pb.revocation_list = list;
  message_seed ("pay-body", M_PAY_BODY, &pb.base);
  guint8 cert_hash[TALLY_HASH_BYTES];
  tally_envelope_body_hash (payer_cert, cert_hash);
  Tally__PayBody pb_cached = TALLY__PAY_BODY__INIT;
  pb_cached.permission = permission;
  pb_cached.payer_certificate_hash.data = cert_hash;
  pb_cached.payer_certificate_hash.len = sizeof cert_hash;
  message_seed ("pay-body-cached-certificate", M_PAY_BODY, &pb_cached.base);
  g_autoptr (GBytes) pb_bytes = tally_message_pack (&pb.base);
  Tally__PaySealed ps = TALLY__PAY_SEALED__INIT;
  ps.body.data = (guint8 *) g_bytes_get_data (pb_bytes, &ps.body.len);
  ps.signature.data = sig;
  ps.signature.len = sizeof sig;
  message_seed ("pay-sealed", M_PAY_SEALED, &ps.base);
  guint8 commit_nonce[TALLY_NONCE_BYTES];
  memset (commit_nonce, 0xa5, sizeof commit_nonce);
  Tally__RevealSealed reveal = TALLY__REVEAL_SEALED__INIT;
  reveal.commit_nonce.data = commit_nonce;
  reveal.commit_nonce.len = sizeof commit_nonce;
  message_seed ("reveal-sealed", M_REVEAL_SEALED, &reveal.base);
  Tally__ReceiptSealed rs = TALLY__RECEIPT_SEALED__INIT;
  rs.receipt = receipt;
  message_seed ("receipt-sealed", M_RECEIPT_SEALED, &rs.base);

  message_seed ("payment-request", M_PAYMENT_REQUEST, &w->request->base);
  struct
  {
    const char *name;
    guint8 type;
    GBytes *envelope;
  } bodies[] = {
    { "deposit-permission", M_DEPOSIT_PERMISSION, w->permission },
    { "receipt", M_RECEIPT, w->receipt },
    { "revocation-list", M_REVOCATION_LIST, w->revocation_list },
    { "load-voucher", M_LOAD_VOUCHER, w->voucher },
    { "register-certificate", M_REGISTER_CERTIFICATE, w->payer_cert },
    { "reconciliation-bundle", M_RECONCILIATION_BUNDLE, w->bundle },
    { "defund-record", M_DEFUND_RECORD, w->defund },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (bodies); i++) {
    g_autoptr (GBytes) body = body_of (bodies[i].envelope);
    write_seed_prefixed (h, bodies[i].name, bodies[i].type, body);
  }
  g_autoptr (GBytes) keys = issuer_key_set ();
  g_autoptr (GBytes) keys_body = body_of (keys);
  write_seed_prefixed (h, "issuer-key-set", M_ISSUER_KEY_SET, keys_body);
  g_autoptr (GBytes) result = reconciliation_result (w);
  g_autoptr (GBytes) result_body = body_of (result);
  write_seed_prefixed (h, "reconciliation-result", M_RECONCILIATION_RESULT, result_body);
  g_autoptr (GBytes) proof = fraud_proof (w);
  g_autoptr (GBytes) proof_body = body_of (proof);
  write_seed_prefixed (h, "fraud-proof", M_FRAUD_PROOF, proof_body);

  write_seed_prefixed (h, "signed-envelope", M_SIGNED_ENVELOPE, w->permission);
  message_seed ("amount", M_AMOUNT, &w->request->amount->base);
  Tally__Limits limits = fuzz_limits ();
  message_seed ("limits", M_LIMITS, &limits.base);
  Tally__SpentEntry se = TALLY__SPENT_ENTRY__INIT;
  se.permission = permission;
  se.receipt = receipt;
  message_seed ("spent-entry", M_SPENT_ENTRY, &se.base);
  Tally__ReceivedEntry re = TALLY__RECEIVED_ENTRY__INIT;
  re.payer_certificate = payer_cert;
  re.permission = permission;
  re.receipt = receipt;
  message_seed ("received-entry", M_RECEIVED_ENTRY, &re.base);

  /* Hand-made: every type empty, and wire-format edge cases. */
  for (guint8 t = 0; t < M_COUNT; t++) {
    g_autofree char *name = g_strdup_printf ("empty-%02u", t);
    write_seed (h, name, &t, 1);
  }
  static const struct
  {
    const char *name;
    guint8 bytes[16];
    gsize len;
  } edges[] = {
    /* field 2 (body) announces 2^32 bytes */
    { "edge-huge-length", { M_SIGNED_ENVELOPE, 0x12, 0x80, 0x80, 0x80, 0x80, 0x10 }, 7 },
    /* a varint that never ends */
    { "edge-endless-varint",
      { M_AMOUNT, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, 13 },
    /* field 1 (context) sent as a length-delimited field */
    { "edge-wrong-wire-type", { M_SIGNED_ENVELOPE, 0x0a, 0x01, 0x05 }, 4 },
    /* an unknown field 15, then a known one */
    { "edge-unknown-field", { M_AMOUNT, 0x78, 0x01, 0x10, 0x2a }, 5 },
    /* oneof hello, then oneof pay: the last one wins */
    { "edge-oneof-twice", { M_SESSION_MESSAGE, 0x0a, 0x02, 0x08, 0x01, 0x1a, 0x01, 0x00 }, 8 },
    /* field 0 is not a field */
    { "edge-field-zero", { M_LIMITS, 0x00, 0x01 }, 3 },
    /* a negative int64 amount: ten-byte varint */
    { "edge-negative-amount",
      { M_AMOUNT, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 }, 12 },
    /* the context enum far outside the known values */
    { "edge-unknown-enum", { M_SIGNED_ENVELOPE, 0x08, 0xff, 0xff, 0xff, 0xff, 0x07 }, 7 },
    /* field 0 behind a two-byte tag: protobuf-c takes it, cannot pack it back */
    { "edge-field-zero-long-tag", { M_SIGNED_ENVELOPE, 0x08, 0x02, 0x80, 0x00, 0x05 }, 6 },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (edges); i++)
    write_seed (h, edges[i].name, edges[i].bytes, edges[i].len);
}

/* --- fuzz-envelope ------------------------------------------------------------- */

#define ENV_RESIGN       0x01
#define ENV_OTHER_ISSUER 0x02
#define ENV_NOW_ZERO     0x04
#define ENV_NOW_MAX      0x08
#define ENV_NOW_LATER    0x0c

static void
seeds_envelope (World *w)
{
  const char *h = "fuzz-envelope";
  g_autoptr (GBytes) keys = issuer_key_set ();
  g_autoptr (GBytes) result = reconciliation_result (w);
  g_autoptr (GBytes) proof = fraud_proof (w);
  struct
  {
    const char *name;
    GBytes *envelope;
  } objects[] = {
    { "certificate", w->payer_cert },     { "revocation-list", w->revocation_list },
    { "voucher", w->voucher },            { "issuer-key-set", keys },
    { "permission", w->permission },      { "receipt", w->receipt },
    { "bundle", w->bundle },              { "result", result },
    { "fraud-proof", proof },             { "defund", w->defund },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (objects); i++) {
    g_autofree char *as_is = g_strdup_printf ("%s", objects[i].name);
    g_autofree char *resigned = g_strdup_printf ("%s-resigned", objects[i].name);
    write_seed_prefixed (h, as_is, 0, objects[i].envelope);
    write_seed_prefixed (h, resigned, ENV_RESIGN, objects[i].envelope);
  }
  write_seed_prefixed (h, "certificate-other-issuer", ENV_RESIGN | ENV_OTHER_ISSUER, w->payer_cert);
  write_seed_prefixed (h, "certificate-at-zero", ENV_NOW_ZERO, w->payer_cert);
  write_seed_prefixed (h, "certificate-at-max", ENV_NOW_MAX, w->payer_cert);
  write_seed_prefixed (h, "certificate-expired", ENV_NOW_LATER, w->payer_cert);

  /* Certificates whose bodies break one rule each, re-signed by the harness. */
  g_autoptr (Tally__SignedEnvelope) cert_env = fuzz_envelope (w->payer_cert);
  static const char *const broken[] = {
    "certificate-empty-window",
    "certificate-zero-limits",
    "certificate-bad-currency",
    "certificate-short-key",
  };
  for (gsize i = 0; i < G_N_ELEMENTS (broken); i++) {
    g_autoptr (Tally__RegisterCertificate) c = TALLY_UNPACK (
      Tally__RegisterCertificate, tally__register_certificate, cert_env->body.data,
      cert_env->body.len, "certificate", NULL);
    g_assert_nonnull (c);
    Tally__RegisterCertificate tweaked = *c;
    Tally__Limits zero = TALLY__LIMITS__INIT;
    switch (i) {
    case 0: tweaked.not_after = tweaked.not_before; break;
    case 1: tweaked.limits = &zero; break;
    case 2: tweaked.currency = (char *) "eur"; break;
    default: tweaked.register_public_key.len = TALLY_PUBLIC_KEY_BYTES - 1; break;
    }
    g_autoptr (GBytes) env = fuzz_sign_message (
      FUZZ_KEY_ISSUER, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE,
      &tweaked.base);
    write_seed_prefixed (h, broken[i], ENV_RESIGN, env);
  }

  /* Envelopes the decoder must refuse or the verifiers must not accept. */
  Tally__SignedEnvelope e = TALLY__SIGNED_ENVELOPE__INIT;
  g_autoptr (GBytes) empty = tally_message_pack (&e.base);
  write_seed_prefixed (h, "empty", 0, empty);
  e.context = 99;
  e.body = cert_env->body;
  e.signature = cert_env->signature;
  g_autoptr (GBytes) unknown = tally_message_pack (&e.base);
  write_seed_prefixed (h, "unknown-context", ENV_RESIGN, unknown);
  e.context = cert_env->context;
  e.signature.len = TALLY_SIGNATURE_BYTES - 1;
  g_autoptr (GBytes) short_sig = tally_message_pack (&e.base);
  write_seed_prefixed (h, "short-signature", 0, short_sig);
  static const guint8 truncated[] = { 0, 0x08, 0x02, 0x12, 0x40, 0x0a };
  write_seed (h, "truncated", truncated, sizeof truncated);

  /* A genuine list with an unknown field numbered 0 behind a two-byte tag,
   * which protobuf-c takes but cannot pack back; and with field 15. */
  static const guint8 field_zero[] = { 0x80, 0x00, 0x05 };
  static const guint8 field_15[] = { 0x78, 0x01 };
  g_autoptr (GByteArray) odd = g_byte_array_new ();
  g_byte_array_append (odd, g_bytes_get_data (w->revocation_list, NULL),
                       (guint) g_bytes_get_size (w->revocation_list));
  g_byte_array_append (odd, field_zero, sizeof field_zero);
  g_autoptr (GBytes) odd_bytes = g_bytes_new (odd->data, odd->len);
  write_seed_prefixed (h, "revocation-list-field-zero", 0, odd_bytes);
  g_byte_array_set_size (odd, (guint) g_bytes_get_size (w->revocation_list));
  g_byte_array_append (odd, field_15, sizeof field_15);
  g_autoptr (GBytes) newer_bytes = g_bytes_new (odd->data, odd->len);
  write_seed_prefixed (h, "revocation-list-unknown-field", 0, newer_bytes);
}

/* --- fuzz-frame ---------------------------------------------------------------- */

/* Indices of fuzz-frame.c's limits table. */
#define FRAME_LIMIT_100     2
#define FRAME_LIMIT_DEFAULT 5
#define FRAME_LIMIT_U16     6

static guint8
mtu_byte (gsize mtu)
{
  for (guint b = 0; b < 256; b++)
    if (TALLY_FRAME_MIN_MTU + b * (TALLY_FRAME_MAX_MTU - TALLY_FRAME_MIN_MTU) / 255 >= mtu)
      return (guint8) b;
  return 255;
}

static void
frame_record (GByteArray *out, guint8 clock, const guint8 *fragment, gsize len)
{
  g_byte_array_append (out, &clock, 1);
  fuzz_append_chunk (out, fragment, len);
}

static void
frame_seed (const char *name, gsize mtu, guint8 limit, const guint8 *msg, gsize len, guint8 clock)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GByteArray) out = g_byte_array_new ();
  guint8 head[2] = { mtu_byte (mtu), limit };
  g_byte_array_append (out, head, sizeof head);
  g_autoptr (GPtrArray) fragments = tally_frame_split (msg, len, mtu, 65535, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < fragments->len; i++)
    frame_record (out, clock, g_bytes_get_data (fragments->pdata[i], NULL),
                  g_bytes_get_size (fragments->pdata[i]));
  write_seed ("fuzz-frame", name, out->data, out->len);
}

static void
frame_seed_raw (const char *name, gsize mtu, guint8 limit, const guint8 *records, gsize len)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  guint8 head[2] = { mtu_byte (mtu), limit };
  g_byte_array_append (out, head, sizeof head);
  g_byte_array_append (out, records, (guint) len);
  write_seed ("fuzz-frame", name, out->data, out->len);
}

/* Byte i is i * 7 + 3 + @seed: every offset of a message is recognisable,
 * and messages of different seeds differ. */
static void
frame_pattern (guint8 *buf, gsize len, guint8 seed)
{
  for (gsize i = 0; i < len; i++)
    buf[i] = (guint8) (i * 7 + 3 + seed);
}

static GByteArray *
frame_stream_new (gsize mtu, guint8 limit)
{
  GByteArray *out = g_byte_array_new ();
  guint8 head[2] = { mtu_byte (mtu), limit };
  g_byte_array_append (out, head, sizeof head);
  return out;
}

static GPtrArray *
frame_split (const guint8 *msg, gsize len, gsize mtu)
{
  g_autoptr (GError) error = NULL;
  GPtrArray *fragments = tally_frame_split (msg, len, mtu, 65535, &error);
  g_assert_no_error (error);
  return fragments;
}

static void
frame_append_fragment (GByteArray *out, guint8 clock, GBytes *fragment)
{
  frame_record (out, clock, g_bytes_get_data (fragment, NULL), g_bytes_get_size (fragment));
}

/* Fragments @order[0..n-1] of @fragments, in that order. */
static void
frame_append_order (GByteArray *out, GPtrArray *fragments, const guint *order, gsize n)
{
  for (gsize i = 0; i < n; i++) {
    g_assert_cmpuint (order[i], <, fragments->len);
    frame_append_fragment (out, 0, fragments->pdata[order[i]]);
  }
}

/* A hand-made fragment of @kind and @seq carrying @n bytes of value @seq;
 * a FIRST announces @total. */
static void
frame_append_filled (GByteArray *out, TallyFrameKind kind, guint seq, gsize total, gsize n)
{
  guint8 f[TALLY_FRAME_MAX_MTU];
  gsize len = 0;

  g_assert_cmpuint (n + 3, <=, sizeof f);
  f[len++] = (guint8) (kind << 4 | seq);
  if (kind == TALLY_FRAME_FIRST) {
    f[len++] = (guint8) (total >> 8);
    f[len++] = (guint8) (total & 0xff);
  }
  memset (f + len, (int) seq, n);
  frame_record (out, 0, f, len + n);
}

static void
frame_stream_write (const char *name, GByteArray *out)
{
  write_seed ("fuzz-frame", name, out->data, out->len);
}

/* Uniform in 0..n-1: the top bits of one draw, drawn again while out of
 * range. */
static guint
frame_draw_below (GRand *rng, guint n)
{
  guint bits = g_bit_storage (n);
  guint r;

  do
    r = g_rand_int (rng) >> (32 - bits);
  while (r >= n);
  return r;
}

/* Each arrival is drawn from the missing fragments up to the window ahead
 * of the first missing one: a random order the reassembler must take. */
static void
frame_random_order (GRand *rng, guint n, guint *order)
{
  g_autofree gboolean *arrived = g_new0 (gboolean, n);
  guint missing = 0;

  for (guint i = 0; i < n; i++) {
    guint candidates[TALLY_FRAME_REORDER_WINDOW + 1] = { 0 };
    guint n_candidates = 0;

    for (guint j = missing; j < n && j <= missing + TALLY_FRAME_REORDER_WINDOW; j++)
      if (!arrived[j])
        candidates[n_candidates++] = j;
    g_assert_cmpuint (n_candidates, >, 0);
    order[i] = candidates[frame_draw_below (rng, n_candidates)];
    arrived[order[i]] = TRUE;
    while (missing < n && arrived[missing])
      missing++;
  }
}

/* Fragments out of order (docs/framing.md, Reassembly): orders the window
 * allows, and one seed per reordering error. */
static void
seeds_frame_reorder (void)
{
  const guint block = TALLY_FRAME_REORDER_WINDOW + 1;

  /* docs/framing.md's example: 00 01 .. 31 at MTU 18, arriving 2, 3, 0, 1. */
  guint8 doc[50];
  for (gsize i = 0; i < sizeof doc; i++)
    doc[i] = (guint8) i;
  g_autoptr (GPtrArray) doc_fragments = frame_split (doc, sizeof doc, 18);
  static const guint doc_order[] = { 2, 3, 0, 1 };
  g_autoptr (GByteArray) documented = frame_stream_new (18, FRAME_LIMIT_DEFAULT);
  frame_append_order (documented, doc_fragments, doc_order, G_N_ELEMENTS (doc_order));
  frame_stream_write ("reorder-documented-example", documented);

  /* 160 bytes in 10 fragments: the FIRST as late as the window allows, and
   * after the seven fragments it lets through. */
  guint8 m160[160];
  frame_pattern (m160, sizeof m160, 0);
  g_autoptr (GPtrArray) f160 = frame_split (m160, sizeof m160, 18);
  g_assert_cmpuint (f160->len, ==, 10);
  static const guint edge_order[] = { 7, 6, 5, 4, 3, 2, 1, 0, 9, 8 };
  g_autoptr (GByteArray) edge = frame_stream_new (18, FRAME_LIMIT_DEFAULT);
  frame_append_order (edge, f160, edge_order, G_N_ELEMENTS (edge_order));
  frame_stream_write ("reorder-window-edge", edge);
  static const guint seven_order[] = { 1, 2, 3, 4, 5, 6, 7, 0, 8, 9 };
  g_autoptr (GByteArray) seven = frame_stream_new (18, FRAME_LIMIT_DEFAULT);
  frame_append_order (seven, f160, seven_order, G_N_ELEMENTS (seven_order));
  frame_stream_write ("reorder-first-last-of-seven", seven);

  /* 40 fragments: 0..2 reversed, then blocks of eight reversed, each block
   * across a wrap of the sequence number. */
  guint8 m666[15 + 38 * 17 + 5];
  frame_pattern (m666, sizeof m666, 1);
  g_autoptr (GPtrArray) f666 = frame_split (m666, sizeof m666, 18);
  g_assert_cmpuint (f666->len, ==, 40);
  guint wrap_order[40];
  guint n = 0;
  for (guint start = 0; start < f666->len;) {
    guint end = MIN (start == 0 ? 3 : start + block, f666->len);
    for (guint i = end; i > start; i--)
      wrap_order[n++] = i - 1;
    start = end;
  }
  g_autoptr (GByteArray) wrap = frame_stream_new (18, FRAME_LIMIT_DEFAULT);
  frame_append_order (wrap, f666, wrap_order, n);
  frame_stream_write ("reorder-blocks-reversed-wrap", wrap);

  /* 32 fragments at MTU 23 in a random order within the window. */
  guint8 m687[23 - 3 + 30 * 22 + 7];
  frame_pattern (m687, sizeof m687, 2);
  g_autoptr (GPtrArray) f687 = frame_split (m687, sizeof m687, 23);
  g_assert_cmpuint (f687->len, ==, 32);
  static const guint32 rand_seed = 0x7a11e5;
  g_autoptr (GRand) rng = g_rand_new_with_seed_array (&rand_seed, 1);
  guint random_order[32];
  frame_random_order (rng, f687->len, random_order);
  g_autoptr (GByteArray) shuffled = frame_stream_new (23, FRAME_LIMIT_DEFAULT);
  frame_append_order (shuffled, f687, random_order, f687->len);
  frame_stream_write ("reorder-random-mtu23", shuffled);

  /* Fragment 9 right after the FIRST, 8 beyond the window: FRAME_TRUNCATED;
   * then a whole message, reversed, on the emptied reassembler. */
  guint8 m160b[160], m40[40];
  frame_pattern (m160b, sizeof m160b, 3);
  frame_pattern (m40, sizeof m40, 4);
  g_autoptr (GPtrArray) f160b = frame_split (m160b, sizeof m160b, 18);
  g_autoptr (GPtrArray) f40 = frame_split (m40, sizeof m40, 18);
  g_assert_cmpuint (f40->len, ==, 3);
  static const guint beyond_order[] = { 0, 9 };
  static const guint reversed3[] = { 2, 1, 0 };
  g_autoptr (GByteArray) beyond = frame_stream_new (18, FRAME_LIMIT_DEFAULT);
  frame_append_order (beyond, f160b, beyond_order, G_N_ELEMENTS (beyond_order));
  frame_append_order (beyond, f40, reversed3, G_N_ELEMENTS (reversed3));
  frame_stream_write ("reorder-beyond-window-then-message", beyond);

  /* One reassembly error each, with hand-made fragments. */
  g_autoptr (GByteArray) duplicate = frame_stream_new (18, FRAME_LIMIT_DEFAULT);
  frame_append_filled (duplicate, TALLY_FRAME_FIRST, 0, 100, 15);
  frame_append_filled (duplicate, TALLY_FRAME_MIDDLE, 3, 0, 17);
  frame_append_filled (duplicate, TALLY_FRAME_MIDDLE, 3, 0, 17);
  frame_stream_write ("reorder-duplicate-held", duplicate);

  g_autoptr (GByteArray) after_last = frame_stream_new (18, FRAME_LIMIT_DEFAULT);
  frame_append_filled (after_last, TALLY_FRAME_FIRST, 0, 100, 15);
  frame_append_filled (after_last, TALLY_FRAME_LAST, 3, 0, 5);
  frame_append_filled (after_last, TALLY_FRAME_MIDDLE, 4, 0, 17);
  frame_stream_write ("reorder-after-held-last", after_last);

  g_autoptr (GByteArray) last_before = frame_stream_new (18, FRAME_LIMIT_DEFAULT);
  frame_append_filled (last_before, TALLY_FRAME_FIRST, 0, 100, 15);
  frame_append_filled (last_before, TALLY_FRAME_MIDDLE, 4, 0, 17);
  frame_append_filled (last_before, TALLY_FRAME_LAST, 2, 0, 5);
  frame_stream_write ("reorder-last-before-held", last_before);

  g_autoptr (GByteArray) last_short = frame_stream_new (18, FRAME_LIMIT_DEFAULT);
  frame_append_filled (last_short, TALLY_FRAME_FIRST, 0, 40, 15);
  frame_append_filled (last_short, TALLY_FRAME_LAST, 2, 0, 5);
  frame_append_filled (last_short, TALLY_FRAME_MIDDLE, 1, 0, 17);
  frame_stream_write ("reorder-held-last-short", last_short);

  g_autoptr (GByteArray) only_held = frame_stream_new (18, FRAME_LIMIT_DEFAULT);
  frame_append_filled (only_held, TALLY_FRAME_MIDDLE, 1, 0, 17);
  static const guint8 only[] = { 0x40, 0x00, 0x01, 'x' };
  frame_record (only_held, 0, only, sizeof only);
  frame_stream_write ("reorder-only-while-held", only_held);

  g_autoptr (GByteArray) first_less = frame_stream_new (18, FRAME_LIMIT_DEFAULT);
  frame_append_filled (first_less, TALLY_FRAME_MIDDLE, 2, 0, 17);
  frame_append_filled (first_less, TALLY_FRAME_MIDDLE, 1, 0, 17);
  frame_append_filled (first_less, TALLY_FRAME_FIRST, 0, 40, 15);
  frame_stream_write ("reorder-first-less-than-held", first_less);

  g_autoptr (GByteArray) over_limit = frame_stream_new (18, FRAME_LIMIT_100);
  for (guint seq = 1; seq <= 6; seq++)
    frame_append_filled (over_limit, TALLY_FRAME_MIDDLE, seq, 0, 17);
  frame_stream_write ("reorder-held-over-limit", over_limit);

  /* A fragment held for a FIRST that comes after the timeout; then the
   * message in order. */
  guint8 m40b[40];
  frame_pattern (m40b, sizeof m40b, 5);
  g_autoptr (GPtrArray) f40b = frame_split (m40b, sizeof m40b, 18);
  g_assert_cmpuint (f40b->len, ==, 3);
  g_autoptr (GByteArray) held_timeout = frame_stream_new (18, FRAME_LIMIT_DEFAULT);
  frame_append_filled (held_timeout, TALLY_FRAME_MIDDLE, 2, 0, 17);
  frame_append_fragment (held_timeout, 0xff, f40b->pdata[0]);
  frame_append_fragment (held_timeout, 0, f40b->pdata[1]);
  frame_append_fragment (held_timeout, 0, f40b->pdata[2]);
  frame_stream_write ("reorder-held-before-first-timeout", held_timeout);

  guint8 m60[60];
  frame_pattern (m60, sizeof m60, 6);
  g_autoptr (GPtrArray) f60 = frame_split (m60, sizeof m60, 18);
  static const guint reversed4[] = { 3, 2, 1, 0 };
  g_assert_cmpuint (f60->len, ==, G_N_ELEMENTS (reversed4));
  g_autoptr (GByteArray) last_first = frame_stream_new (18, FRAME_LIMIT_DEFAULT);
  frame_append_order (last_first, f60, reversed4, G_N_ELEMENTS (reversed4));
  frame_stream_write ("reorder-last-first", last_first);
}

static void
seeds_frame (World *w)
{
  guint8 big[TALLY_FRAME_DEFAULT_MAX_MESSAGE];
  frame_pattern (big, sizeof big, 0);

  frame_seed ("hello-mtu20", 20, FRAME_LIMIT_DEFAULT, g_bytes_get_data (w->hello, NULL),
              g_bytes_get_size (w->hello), 0);
  frame_seed ("offer-mtu23", 23, FRAME_LIMIT_DEFAULT, g_bytes_get_data (w->offer, NULL),
              g_bytes_get_size (w->offer), 1);
  frame_seed ("pay-mtu185", 185, FRAME_LIMIT_DEFAULT, g_bytes_get_data (w->pay, NULL),
              g_bytes_get_size (w->pay), 0);
  frame_seed ("receipt-mtu512", 512, FRAME_LIMIT_DEFAULT, g_bytes_get_data (w->receipt_msg, NULL),
              g_bytes_get_size (w->receipt_msg), 0);
  frame_seed ("one-byte", 20, FRAME_LIMIT_DEFAULT, big, 1, 0);
  frame_seed ("only-full", 20, FRAME_LIMIT_DEFAULT, big, 17, 0);
  frame_seed ("first-last", 20, FRAME_LIMIT_DEFAULT, big, 18, 0);
  frame_seed ("seventeen-fragments", 20, FRAME_LIMIT_DEFAULT, big, 17 + 16 * 19, 0);
  frame_seed ("max-message-mtu512", 512, FRAME_LIMIT_DEFAULT, big, sizeof big, 0);
  frame_seed ("over-limit", 100, FRAME_LIMIT_100, big, 101, 0);
  frame_seed ("slow", 20, FRAME_LIMIT_DEFAULT, big, 60, 0x60);

  /* Hand-made fragment streams: [clock][u16 length][fragment]. */
  static const guint8 unknown_kind[] = { 0, 0, 4, 0x50, 0, 1, 0xaa };
  frame_seed_raw ("unknown-kind", 20, FRAME_LIMIT_DEFAULT, unknown_kind, sizeof unknown_kind);
  static const guint8 zero_length[] = { 0, 0, 3, 0x40, 0, 0 };
  frame_seed_raw ("zero-length", 20, FRAME_LIMIT_DEFAULT, zero_length, sizeof zero_length);
  static const guint8 empty_fragment[] = { 0, 0, 0 };
  frame_seed_raw ("empty-fragment", 20, FRAME_LIMIT_DEFAULT, empty_fragment,
                  sizeof empty_fragment);
  static const guint8 middle_first[] = { 0, 0, 3, 0x21, 0xaa, 0xbb };
  frame_seed_raw ("middle-without-first", 20, FRAME_LIMIT_DEFAULT, middle_first,
                  sizeof middle_first);
  static const guint8 gap[] = { 0, 0, 5, 0x10, 0, 6, 1, 2, 0, 0, 3, 0x32, 3, 4 };
  frame_seed_raw ("sequence-gap", 20, FRAME_LIMIT_DEFAULT, gap, sizeof gap);
  static const guint8 short_last[] = { 0, 0, 5, 0x10, 0, 6, 1, 2, 0, 0, 2, 0x31, 3 };
  frame_seed_raw ("short-last", 20, FRAME_LIMIT_DEFAULT, short_last, sizeof short_last);
  static const guint8 long_last[] = { 0, 0, 5, 0x10, 0, 3, 1, 2, 0, 0, 3, 0x31, 3, 4 };
  frame_seed_raw ("long-last", 20, FRAME_LIMIT_DEFAULT, long_last, sizeof long_last);
  static const guint8 restart[] = { 0, 0, 5, 0x10, 0, 6, 1, 2, 0, 0, 4, 0x40, 0, 1, 9 };
  frame_seed_raw ("first-during-message", 20, FRAME_LIMIT_DEFAULT, restart, sizeof restart);
  static const guint8 huge[] = { 0, 0, 5, 0x10, 0xff, 0xff, 1, 2 };
  frame_seed_raw ("announces-65535", 20, FRAME_LIMIT_U16, huge, sizeof huge);
  static const guint8 timeout[] = { 0, 0, 5, 0x10, 0, 6, 1, 2, 0x7f, 0, 3, 0x31, 3, 4,
                                    0xff, 0, 5, 0x10, 0, 4, 1, 2, 0, 0, 3, 0x31, 3, 4 };
  frame_seed_raw ("timeout-then-message", 20, FRAME_LIMIT_DEFAULT, timeout, sizeof timeout);
  static const guint8 only_short[] = { 0, 0, 4, 0x40, 0, 5, 1 };
  frame_seed_raw ("only-shorter-than-announced", 20, FRAME_LIMIT_DEFAULT, only_short,
                  sizeof only_short);
  seeds_frame_reorder ();
}

/* --- fuzz-session -------------------------------------------------------------- */

/* Operations of fuzz-session.c. */
#define S_DELIVER  0x00
#define S_REPLACE  0x04
#define S_MUTATE   0x05
#define S_TRUNCATE 0x06
#define S_REPLAY   0x07
#define S_CLOCK    0x08
#define S_DECLINE  0x10
#define S_ABORT    0x20
#define S_LAST     0x40

static void
session_seed (const char *name, const guint8 *program, gsize len)
{
  write_seed ("fuzz-session", name, program, len);
}

static void
seeds_session (World *w)
{
  /* amount 1250 (u16 1249), setup, steps */
  static const guint8 honest[] = { 0x04, 0xe1, 0x01, S_DELIVER, S_DELIVER, S_DELIVER, S_DELIVER };
  session_seed ("honest", honest, sizeof honest);
  static const guint8 honest_long_memo[] = { 0x00, 0x00, 0x03, 0, 0, 0, 0 };
  session_seed ("honest-long-memo", honest_long_memo, sizeof honest_long_memo);
  static const guint8 honest_renewed[] = { 0x00, 0x63, 0x22, 0, 0, 0, 0 };
  session_seed ("honest-renewed-certificate", honest_renewed, sizeof honest_renewed);
  /* The Hello names the payee's request; then another one. */
  static const guint8 honest_tagged[] = { 0x00, 0x63, 0x41, 0, 0, 0, 0 };
  session_seed ("honest-tagged", honest_tagged, sizeof honest_tagged);
  static const guint8 other_tag[] = { 0x00, 0x63, 0xc1, 0, 0, 0, 0 };
  session_seed ("other-tag", other_tag, sizeof other_tag);
  static const guint8 clock[] = { 0x00, 0x10, 0x00, S_DELIVER | S_CLOCK, 5, 0, 0, 0 };
  session_seed ("honest-later", clock, sizeof clock);
  static const guint8 expired[] = { 0x00, 0x10, 0x00, 0, S_DELIVER | S_CLOCK, 0xff, 0, 0 };
  session_seed ("clock-past-certificate", expired, sizeof expired);
  static const guint8 decline[] = { 0x00, 0x10, 0x00, 0, S_DELIVER | S_DECLINE, 0, 0 };
  session_seed ("payer-declines", decline, sizeof decline);
  static const guint8 payee_aborts[] = { 0x00, 0x10, 0x00, S_ABORT, 36, 0, 0, 0 };
  session_seed ("payee-aborts", payee_aborts, sizeof payee_aborts);
  static const guint8 mutate_offer[] = { 0x00, 0x10, 0x00, 0, S_MUTATE, 0x00, 0x40, 0x01, 0, 0 };
  session_seed ("offer-bit-flipped", mutate_offer, sizeof mutate_offer);
  /* The payee's third step gets the payer's Reveal and Pay together. */
  static const guint8 truncate_pay[] = {
    0x00, 0x10, 0x00, 0, 0, S_TRUNCATE | S_LAST, 0x00, 0x30, 0
  };
  session_seed ("pay-truncated", truncate_pay, sizeof truncate_pay);
  static const guint8 mutate_reveal[] = { 0x00, 0x10, 0x00, 0, 0, S_MUTATE, 0x00, 0x08, 0x01, 0 };
  session_seed ("reveal-bit-flipped", mutate_reveal, sizeof mutate_reveal);
  static const guint8 truncate_reveal[] = { 0x00, 0x10, 0x00, 0, 0, S_TRUNCATE, 0x00, 0x10, 0 };
  session_seed ("reveal-truncated", truncate_reveal, sizeof truncate_reveal);
  /* The payee gets the Reveal and Pay again once done. */
  static const guint8 reveal_twice[] = { 0x00, 0x10, 0x00, 0, 0, 0, 0, 0 };
  session_seed ("reveal-and-pay-twice", reveal_twice, sizeof reveal_twice);
  static const guint8 replay_hello[] = { 0x00, 0x10, 0x00, 0, 0, S_REPLAY, 0 };
  session_seed ("hello-twice", replay_hello, sizeof replay_hello);
  static const guint8 replay_receipt[] = { 0x00, 0x10, 0x00, 0, 0, 0, 0, 0, S_REPLAY };
  session_seed ("receipt-twice", replay_receipt, sizeof replay_receipt);
  static const guint8 payee_policy[] = { 0x00, 0x10, 0x04, 0, 0, 0, 0 };
  session_seed ("payee-policy-refuses", payee_policy, sizeof payee_policy);
  static const guint8 payer_policy[] = { 0x00, 0x10, 0x08, 0, 0, 0, 0 };
  session_seed ("payer-policy-refuses", payer_policy, sizeof payer_policy);
  static const guint8 stale[] = { 0x00, 0x10, 0x10, S_CLOCK, 30, 0, 0, 0 };
  session_seed ("payee-revocation-list-stale", stale, sizeof stale);

  /* Another session's messages, delivered in place of this one's. */
  g_autoptr (GByteArray) foreign = g_byte_array_new ();
  static const guint8 head[] = { 0x00, 0x10, 0x00, S_REPLACE };
  g_byte_array_append (foreign, head, sizeof head);
  fuzz_append_chunk (foreign, g_bytes_get_data (w->hello, NULL), g_bytes_get_size (w->hello));
  session_seed ("foreign-hello", foreign->data, foreign->len);

  g_autoptr (GByteArray) foreign_offer = g_byte_array_new ();
  static const guint8 head_offer[] = { 0x00, 0x10, 0x00, S_DELIVER, S_REPLACE };
  g_byte_array_append (foreign_offer, head_offer, sizeof head_offer);
  fuzz_append_chunk (foreign_offer, g_bytes_get_data (w->offer, NULL), g_bytes_get_size (w->offer));
  session_seed ("foreign-offer", foreign_offer->data, foreign_offer->len);

  /* Another session's reveal: it opens under none of this session's keys. */
  g_autoptr (GByteArray) foreign_reveal = g_byte_array_new ();
  static const guint8 head_reveal[] = { 0x00, 0x10, 0x00, S_DELIVER, S_DELIVER, S_REPLACE };
  g_byte_array_append (foreign_reveal, head_reveal, sizeof head_reveal);
  fuzz_append_chunk (foreign_reveal, g_bytes_get_data (w->reveal, NULL),
                     g_bytes_get_size (w->reveal));
  session_seed ("foreign-reveal", foreign_reveal->data, foreign_reveal->len);

  /* A Pay where the Reveal should be: the payee never showed a code. */
  g_autoptr (GByteArray) foreign_pay = g_byte_array_new ();
  static const guint8 head_pay[] = { 0x00, 0x10, 0x00, S_DELIVER, S_DELIVER, S_REPLACE };
  g_byte_array_append (foreign_pay, head_pay, sizeof head_pay);
  fuzz_append_chunk (foreign_pay, g_bytes_get_data (w->pay, NULL), g_bytes_get_size (w->pay));
  session_seed ("foreign-pay", foreign_pay->data, foreign_pay->len);

  g_autoptr (GByteArray) peer_error = g_byte_array_new ();
  static const guint8 head_error[] = { 0x00, 0x10, 0x00, S_DELIVER, S_REPLACE };
  g_byte_array_append (peer_error, head_error, sizeof head_error);
  fuzz_append_chunk (peer_error, g_bytes_get_data (w->error_msg, NULL),
                     g_bytes_get_size (w->error_msg));
  session_seed ("error-to-payer", peer_error->data, peer_error->len);

  static const guint8 garbage[] = { 0x00, 0x10, 0x00, S_REPLACE, 0x00, 0x03, 0x0a, 0x01, 0xff };
  session_seed ("garbage-to-payee", garbage, sizeof garbage);
}

/* --- fuzz-receive --------------------------------------------------------------- */

/* Mutations of fuzz-receive.c, in its order. */
enum
{
  R_CERT_KEY,
  R_CERT_ID,
  R_CERT_CURRENCY,
  R_CERT_LIMIT,
  R_CERT_VALIDITY,
  R_CERT_ISSUER_ID,
  R_CERT_SIGNATURE,
  R_CERT_CONTEXT,
  R_CERT_RAW,
  R_PERM_PAYER_ID,
  R_PERM_PAYEE_ID,
  R_PERM_NONCE,
  R_PERM_AMOUNT,
  R_PERM_COUNTER,
  R_PERM_CHAIN_PREV,
  R_PERM_MEMO_HASH,
  R_PERM_CREATED_AT,
  R_PERM_SIGNATURE,
  R_PERM_CONTEXT,
  R_PERM_RAW,
  R_AGAIN,
  R_CERT_TRAILER,
  R_PERM_TRAILER,
  R_TWIN,
};

static void
receive_seed (const char *name, const guint8 *program, gsize len)
{
  write_seed ("fuzz-receive", name, program, len);
}

static void
seeds_receive (World *w)
{
  /* amount 1250, setup (memo "coffee"), payer */
  static const guint8 valid[] = { 0x04, 0xe1, 0x01, 0x00 };
  receive_seed ("valid", valid, sizeof valid);
  static const guint8 valid_long_memo[] = { 0x00, 0x00, 0x03, 0x00 };
  receive_seed ("valid-long-memo", valid_long_memo, sizeof valid_long_memo);
  static const guint8 big[] = { 0x00, 0x00, 0x40, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00 };
  receive_seed ("big-amount", big, sizeof big);
  static const guint8 revoked[] = { 0x00, 0x10, 0x00, 0x01 };
  receive_seed ("revoked-payer", revoked, sizeof revoked);
  static const guint8 stranger[] = { 0x00, 0x10, 0x00, 0x02 };
  receive_seed ("other-payer", stranger, sizeof stranger);
  static const guint8 policy[] = { 0x00, 0x10, 0x04, 0x00 };
  receive_seed ("policy-amount", policy, sizeof policy);
  static const guint8 stale[] = { 0x00, 0x10, 0x18, 0x00 };
  receive_seed ("policy-stale-list", stale, sizeof stale);
  static const guint8 expired[] = { 0x00, 0x10, 0x20, 0x00 };
  receive_seed ("certificate-expired", expired, sizeof expired);
  static const guint8 early[] = { 0x00, 0x10, 0x30, 0x00 };
  receive_seed ("certificate-not-yet-valid", early, sizeof early);
  static const guint8 again[] = { 0x00, 0x10, 0x00, 0x00, R_AGAIN };
  receive_seed ("twice", again, sizeof again);

  static const struct
  {
    const char *name;
    guint8 ops[12];
    gsize len;
  } mutations[] = {
    { "cert-key-short", { R_CERT_KEY, 31, 1, 2, 3 }, 5 },
    { "cert-id-wrong", { R_CERT_ID, 16, 9, 9, 9 }, 5 },
    { "cert-currency", { R_CERT_CURRENCY, 1 }, 2 },
    { "cert-max-payment", { R_CERT_LIMIT, 0, 0, 0, 0, 0, 0, 0, 0, 100 }, 10 },
    { "cert-no-limits", { R_CERT_LIMIT, 4 }, 2 },
    { "cert-not-after", { R_CERT_VALIDITY, 1, 0xff, 0xff, 0xff, 0x00 }, 6 },
    { "cert-issuer-id", { R_CERT_ISSUER_ID, 0 }, 2 },
    { "cert-other-issuer", { R_CERT_SIGNATURE, 2, 0 }, 3 },
    { "cert-signature-bit", { R_CERT_SIGNATURE, 6, 17 }, 3 },
    { "cert-context", { R_CERT_CONTEXT, 4 }, 2 },
    { "cert-raw", { R_CERT_RAW, 0, 2, 0x0a, 0x00 }, 5 },
    { "perm-payer-id", { R_PERM_PAYER_ID, 0 }, 2 },
    { "perm-payee-id", { R_PERM_PAYEE_ID, 2, 5 }, 3 },
    { "perm-nonce-random", { R_PERM_NONCE, 150, 1, 2, 3 }, 5 },
    { "perm-nonce-short", { R_PERM_NONCE, 200 }, 2 },
    /* another request of ours, for the same amount (17) or another (16) */
    { "perm-nonce-other-request", { R_PERM_NONCE, 10, 0x00, 0x10 }, 4 },
    { "perm-nonce-other-amount", { R_PERM_NONCE, 10, 0x00, 0x0f }, 4 },
    { "twin-permission", { R_TWIN }, 1 },
    { "perm-amount", { R_PERM_AMOUNT, 0, 0, 0, 0, 0, 0, 0, 0, 7 }, 10 },
    { "perm-currency", { R_PERM_AMOUNT, 1, 0, 0, 0, 0, 0, 0, 0, 1 }, 10 },
    { "perm-counter-zero", { R_PERM_COUNTER, 0 }, 2 },
    { "perm-chain-prev", { R_PERM_CHAIN_PREV, 31 }, 2 },
    { "perm-memo-hash", { R_PERM_MEMO_HASH, 3 }, 2 },
    { "perm-created-at", { R_PERM_CREATED_AT, 0xff }, 2 },
    { "perm-signed-by-issuer", { R_PERM_SIGNATURE, 1, 0 }, 3 },
    { "perm-signature-short", { R_PERM_SIGNATURE, 7, 0 }, 3 },
    { "perm-context", { R_PERM_CONTEXT, 5 }, 2 },
    { "perm-raw", { R_PERM_RAW, 0, 2, 0x28, 0x01 }, 5 },
    /* field 15, varint 1: an unknown field the register stores */
    { "cert-unknown-field", { R_CERT_TRAILER, 0, 2, 0x78, 0x01 }, 5 },
    { "perm-unknown-field", { R_PERM_TRAILER, 0, 2, 0x78, 0x01 }, 5 },
    /* field 0 behind a two-byte tag: protobuf-c cannot pack it back */
    { "cert-field-zero", { R_CERT_TRAILER, 0, 3, 0x80, 0x00, 0x05 }, 6 },
    { "perm-field-zero", { R_PERM_TRAILER, 0, 3, 0x80, 0x00, 0x05 }, 6 },
    /* field 2 again: a second body replaces the signed one */
    { "perm-second-body", { R_PERM_TRAILER, 0, 3, 0x12, 0x01, 0x00 }, 6 },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (mutations); i++) {
    g_autoptr (GByteArray) p = g_byte_array_new ();
    static const guint8 head[] = { 0x00, 0x10, 0x00, 0x00 };
    g_byte_array_append (p, head, sizeof head);
    g_byte_array_append (p, mutations[i].ops, (guint) mutations[i].len);
    receive_seed (mutations[i].name, p->data, p->len);
  }

  /* 2000 asked, the permission answers another request of ours for 1999. */
  static const guint8 large_mismatch[] = { 0x07, 0xcf, 0x00, 0x00, R_PERM_NONCE, 10, 0x07, 0xce };
  receive_seed ("perm-nonce-other-amount-large", large_mismatch, sizeof large_mismatch);

  /* A real permission body, as raw bytes: the harness re-signs it as the
   * payer, so it fails only on what it names (another payee). */
  g_autoptr (GBytes) body = body_of (w->permission);
  g_autoptr (GByteArray) real = g_byte_array_new ();
  static const guint8 head[] = { 0x00, 0x10, 0x00, 0x00, R_PERM_RAW };
  g_byte_array_append (real, head, sizeof head);
  fuzz_append_chunk (real, g_bytes_get_data (body, NULL), g_bytes_get_size (body));
  receive_seed ("perm-raw-real", real->data, real->len);
}

/* Request URIs: the three transports in canonical form, one written by
 * hand in another field order with lower-case escapes, and near misses
 * that each break one rule (docs/protocol.md §8). */
static void
seeds_uri (void)
{
  static const struct
  {
    const char *name;
    const char *text;
  } uris[] = {
    { "ble", "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1250&cur=EUR&exp=1767232800"
             "&name=Bob%27s%20Bakery" },
    { "unix", "tally://pay?v=1&to=unix%3A%2Frun%2Ftally%2Fbob.sock&amount=500&cur=EUR"
              "&exp=1767232800" },
    { "tcp", "tally://pay?v=1&to=tcp%3A%5B%3A%3A1%5D%3A7000&amount=9007199254740992&cur=JPY"
             "&exp=1767232800&name=Caf%C3%A9%20Lumen" },
    { "reordered", "tally://pay?name=Bob%27s%20Bakery&exp=1767232800&cur=EUR&amount=1250"
                   "&to=ble%3a0a1b2c3d&v=1" },
    { "version-2", "tally://pay?v=2&to=ble%3A0a1b2c3d&amount=1250&cur=EUR&exp=1767232800" },
    { "amount-zero", "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=0&cur=EUR&exp=1767232800" },
    { "amount-over", "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=9007199254740993&cur=EUR"
                     "&exp=1767232800" },
    { "repeated", "tally://pay?v=1&v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1" },
    { "bad-escape", "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1&name=%G0" },
    { "nul-escape", "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1&name=a%00b" },
    { "unix-tagged", "tally://pay?v=1&to=unix%3A%2Frun%2Ftally%2Fbob.sock&amount=500&cur=EUR"
                     "&exp=1767232800&tag=0a1b2c3d" },
    { "tag-against-ble", "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1&tag=0a1b2c3e" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (uris); i++)
    write_seed ("fuzz-uri", uris[i].name, (const guint8 *) uris[i].text, strlen (uris[i].text));
}

int
main (int argc, char **argv)
{
  if (argc != 2) {
    fprintf (stderr, "usage: %s OUTDIR\n", argv[0]);
    return 2;
  }
  out_root = argv[1];
  randombytes_set_implementation (&fixed_implementation);
  fuzz_init ();

  World w = { 0 };
  world_build (&w);
  seeds_messages (&w);
  seeds_envelope (&w);
  seeds_frame (&w);
  seeds_session (&w);
  seeds_receive (&w);
  seeds_uri ();
  world_clear (&w);
  printf ("make-seeds: %u seeds in %s\n", written, out_root);
  return 0;
}
