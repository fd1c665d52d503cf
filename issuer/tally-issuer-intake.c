/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Bundle intake: every voucher, permission, defund and receipt a bundle
 * lists is verified and parsed here before it is booked.
 *
 * Verifying runs before the store's transaction (docs/scale.md), so it
 * reads only what never changes: the issuer's key, and registers' keys
 * (tally_issuer_store_register_key ()), which exist for good once
 * certified.  Everything the booking depends on that may change (the
 * vouchers sold, revocations, counters, chain heads, what is already
 * booked, whether a payee is certified yet) is read under the lock.
 */
#include "tally-issuer-private.h"

#include <string.h>

static gboolean
check_id (const ProtobufCBinaryData *field, const guint8 expect[static TALLY_ID_BYTES])
{
  return field->len == TALLY_ID_BYTES && memcmp (field->data, expect, TALLY_ID_BYTES) == 0;
}

static gboolean
check_chain_fields (guint64 counter, const ProtobufCBinaryData *chain_prev, GError **error)
{
  if (counter == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "entry counter must start at 1");
    return FALSE;
  }
  /* The ledger compares counters as signed 64-bit integers. */
  if (counter > G_MAXINT64) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "entry counter %" G_GUINT64_FORMAT " is beyond 2^63 - 1", counter);
    return FALSE;
  }
  return tally_check_bytes (chain_prev, TALLY_HASH_BYTES, "entry chain head", error);
}

/* Fills @b with what every entry of a payer's chain carries; its hash and
 * the chain head after it follow from @env and @chain_prev. */
static void
booking_init (Booking *b,
              const Tally__SignedEnvelope *env,
              TallyIssuerEntryKind kind,
              const guint8 payer[static TALLY_ID_BYTES],
              guint64 counter,
              const guint8 chain_prev[static TALLY_HASH_BYTES],
              gint64 amount)
{
  *b = (Booking) { 0 };
  b->env = env;
  b->kind = kind;
  tally_envelope_body_hash (env, b->hash);
  memcpy (b->payer, payer, TALLY_ID_BYTES);
  b->counter = counter;
  memcpy (b->chain_prev, chain_prev, TALLY_HASH_BYTES);
  tally_chain_next (b->chain_prev, b->hash, b->chain_after);
  b->amount = amount;
}

/* Decodes a permission whose signature has been checked. */
static gboolean
parse_permission (Reconcile *rc, const Tally__SignedEnvelope *env, Booking *b, GError **error)
{
  g_autoptr (Tally__DepositPermission) p =
    TALLY_UNPACK (Tally__DepositPermission, tally__deposit_permission, env->body.data,
                  env->body.len, "permission", error);
  if (p == NULL ||
      !tally_check_bytes (&p->payer_register_id, TALLY_ID_BYTES, "payer register id", error) ||
      !tally_check_bytes (&p->payee_register_id, TALLY_ID_BYTES, "payee register id", error) ||
      !tally_amount_check (p->amount, rc->issuer->currency, error) ||
      !check_chain_fields (p->counter, &p->chain_prev, error))
    return FALSE;
  /* No honest register pays itself (the peer check refuses it), and a
   * payment to oneself would count as received evidence at any counter
   * while it is spent at one: refused, so the evidence stays sound (5.5). */
  if (memcmp (p->payer_register_id.data, p->payee_register_id.data, TALLY_ID_BYTES) == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_REGISTER,
                 "permission pays the register that signed it");
    return FALSE;
  }

  booking_init (b, env, TALLY_ISSUER_ENTRY_PERMISSION, p->payer_register_id.data, p->counter,
                p->chain_prev.data, p->amount->value);
  b->has_payee = TRUE;
  memcpy (b->payee, p->payee_register_id.data, TALLY_ID_BYTES);
  b->expires_at = p->expires_at;
  return TRUE;
}

static gboolean
parse_defund (Reconcile *rc, const Tally__SignedEnvelope *env, Booking *b, GError **error)
{
  g_autoptr (Tally__DefundRecord) d = TALLY_UNPACK (
    Tally__DefundRecord, tally__defund_record, env->body.data, env->body.len, "defund", error);
  if (d == NULL ||
      !tally_check_bytes (&d->register_id, TALLY_ID_BYTES, "defund register id", error) ||
      !tally_amount_check (d->amount, rc->issuer->currency, error) ||
      !check_chain_fields (d->counter, &d->chain_prev, error))
    return FALSE;

  booking_init (b, env, TALLY_ISSUER_ENTRY_DEFUND, d->register_id.data, d->counter,
                d->chain_prev.data, d->amount->value);
  b->payer_half = TRUE;
  return TRUE;
}

/* The payee's receipt for the permission in @b, signed by @payee_key. */
static gboolean
check_receipt (Reconcile *rc,
               const Tally__SignedEnvelope *env,
               const guint8 payee_key[static TALLY_PUBLIC_KEY_BYTES],
               const Booking *b,
               GError **error)
{
  if (!tally_envelope_verify (env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT, payee_key,
                              error))
    return FALSE;
  g_autoptr (Tally__Receipt) r = TALLY_UNPACK (Tally__Receipt, tally__receipt, env->body.data,
                                               env->body.len, "receipt", error);
  if (r == NULL)
    return FALSE;
  if (!check_id (&r->payee_register_id, b->payee) || !check_id (&r->payer_register_id, b->payer) ||
      r->payer_counter != b->counter || r->permission_hash.len != TALLY_HASH_BYTES ||
      memcmp (r->permission_hash.data, b->hash, TALLY_HASH_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "receipt is for another permission");
    return FALSE;
  }
  if (!tally_amount_check (r->amount, rc->issuer->currency, error))
    return FALSE;
  if (r->amount->value != b->amount) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_AMOUNT_MISMATCH,
                 "receipt amount differs from the permission");
    return FALSE;
  }
  return TRUE;
}

/* A receipt carried by the payer counts as the payee's half when it verifies
 * under the payee's certified key; anything else is ignored, not fatal: the
 * payee's own bundle will settle the entry. */
static void
count_receipt (Reconcile *rc,
               const Tally__SignedEnvelope *receipt,
               const guint8 payee_key[static TALLY_PUBLIC_KEY_BYTES],
               Booking *b)
{
  g_autoptr (GError) local = NULL;
  if (check_receipt (rc, receipt, payee_key, b, &local)) {
    b->payee_half = TRUE;
    b->receipt = receipt;
    return;
  }
  g_autofree char *hex = tally_issuer_short_hex (b->hash);
  g_info ("receipt for entry %s not counted: %s", hex, local->message);
}

/* Counts @receipt when its payee is certified (count_receipt).  A payee
 * this issuer has not certified yet may be certified before the lock is
 * taken: before it (@defer) the receipt is kept for recheck_receipt ();
 * under it, it is not counted. */
static gboolean
look_at_receipt (Reconcile *rc,
                 const Tally__SignedEnvelope *receipt,
                 Booking *b,
                 gboolean defer,
                 GError **error)
{
  guint8 payee_key[TALLY_PUBLIC_KEY_BYTES];
  g_autoptr (GError) local = NULL;
  if (tally_issuer_store_register_key (rc->issuer->store, b->payee, payee_key, &local)) {
    count_receipt (rc, receipt, payee_key, b);
    return TRUE;
  }
  if (!tally_issuer_is_not_found (local)) {
    g_propagate_error (error, g_steal_pointer (&local));
    return FALSE;
  }
  if (defer) {
    b->unchecked_receipt = receipt;
    return TRUE;
  }
  g_autofree char *hex = tally_issuer_short_hex (b->hash);
  g_info ("receipt for entry %s not counted: %s", hex, local->message);
  return TRUE;
}

/* Under the lock: the receipt of a payee that was unknown before it. */
static gboolean
recheck_receipt (Reconcile *rc, Booking *b, GError **error)
{
  return look_at_receipt (rc, b->unchecked_receipt, b, FALSE, error);
}

static gboolean
verify_spent (Reconcile *rc, const Tally__SpentEntry *spent, Booking *b, GError **error)
{
  if (spent == NULL || spent->permission == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "spent entry without a permission");
    return FALSE;
  }
  const Tally__SignedEnvelope *env = spent->permission;
  if (env->context == TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION) {
    if (!tally_envelope_verify (env, env->context, rc->register_key, error) ||
        !parse_permission (rc, env, b, error))
      return FALSE;
    b->payer_half = TRUE;
  } else if (env->context == TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEFUND) {
    if (!tally_envelope_verify (env, env->context, rc->register_key, error) ||
        !parse_defund (rc, env, b, error))
      return FALSE;
  } else {
    const char *label = tally_context_label (env->context);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_CONTEXT,
                 "spent entry signed as \"%s\", expected a permission or defund",
                 label ? label : "unknown");
    return FALSE;
  }
  if (memcmp (b->payer, rc->register_id, TALLY_ID_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_REGISTER,
                 "spent entry names another register as its payer");
    return FALSE;
  }
  if (b->kind == TALLY_ISSUER_ENTRY_PERMISSION && spent->receipt != NULL)
    return look_at_receipt (rc, spent->receipt, b, TRUE, error);
  return TRUE;
}

/* Permissions in counter order, then defunds in counter order: a defund is
 * judged against every other entry the bundle lists (an honest register
 * closes at its defund, so nothing of its follows one). */
static gint
compare_booking_counter (gconstpointer a, gconstpointer b)
{
  const Booking *x = a, *y = b;
  gboolean dx = x->kind == TALLY_ISSUER_ENTRY_DEFUND, dy = y->kind == TALLY_ISSUER_ENTRY_DEFUND;
  if (dx != dy)
    return dx ? 1 : -1;
  return x->counter < y->counter ? -1 : x->counter > y->counter ? 1 : 0;
}

static gboolean
verify_spent_all (Reconcile *rc, const Tally__ReconciliationBundle *bundle, GError **error)
{
  for (gsize i = 0; i < bundle->n_spent; i++) {
    Booking b;
    if (!verify_spent (rc, bundle->spent[i], &b, error)) {
      g_prefix_error (error, "spent entry %zu: ", i);
      return FALSE;
    }
    g_array_append_val (rc->spent, b);
  }
  /* In counter order, so each entry meets its predecessor's chain head
   * (an entry booked before its predecessor is checked by its successor
   * test in detect_fraud), defunds last. */
  g_array_sort (rc->spent, compare_booking_counter);
  return TRUE;
}

gboolean
tally_issuer_book_spent (Reconcile *rc, GError **error)
{
  GArray *bookings = rc->spent;
  for (guint i = 0; i < bookings->len; i++) {
    Booking *b = &g_array_index (bookings, Booking, i);
    if (b->unchecked_receipt != NULL && !recheck_receipt (rc, b, error))
      return FALSE;
  }
  for (guint i = 0; i < bookings->len; i++)
    if (!tally_issuer_book (rc, &g_array_index (bookings, Booking, i), error))
      return FALSE;
  return TRUE;
}

static gboolean
verify_received (Reconcile *rc, const Tally__ReceivedEntry *r, Booking *b, GError **error)
{
  if (r == NULL || r->payer_certificate == NULL || r->permission == NULL || r->receipt == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "received entry needs a certificate, a permission and a receipt");
    return FALSE;
  }
  g_autoptr (Tally__RegisterCertificate) cert =
    tally_certificate_verify_any_time (r->payer_certificate, rc->issuer->public_key, error);
  if (cert == NULL)
    return FALSE;
  if (strcmp (cert->currency, rc->issuer->currency) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_CURRENCY_MISMATCH,
                 "payer certificate is for %s", cert->currency);
    return FALSE;
  }

  if (!tally_envelope_verify (r->permission,
                              TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION,
                              cert->register_public_key.data, error) ||
      !parse_permission (rc, r->permission, b, error))
    return FALSE;
  if (memcmp (b->payer, cert->register_id.data, TALLY_ID_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_REGISTER,
                 "permission names a payer other than its certificate");
    return FALSE;
  }
  if (memcmp (b->payee, rc->register_id, TALLY_ID_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_PAYEE,
                 "received permission pays another register");
    return FALSE;
  }
  /* Certified once, a register stays: known here, known under the lock. */
  guint8 payer_key[TALLY_PUBLIC_KEY_BYTES];
  if (!tally_issuer_store_register_key (rc->issuer->store, b->payer, payer_key, error)) {
    g_prefix_error (error, "payer: ");
    return FALSE;
  }
  if (!check_receipt (rc, r->receipt, rc->register_key, b, error))
    return FALSE;
  b->payee_half = TRUE;
  b->receipt = r->receipt;
  return TRUE;
}

static gboolean
verify_received_all (Reconcile *rc, const Tally__ReconciliationBundle *bundle, GError **error)
{
  for (gsize i = 0; i < bundle->n_received; i++) {
    Booking b;
    if (!verify_received (rc, bundle->received[i], &b, error)) {
      g_prefix_error (error, "received entry %zu: ", i);
      return FALSE;
    }
    g_array_append_val (rc->received, b);
  }
  return TRUE;
}

gboolean
tally_issuer_book_received (Reconcile *rc, GError **error)
{
  for (guint i = 0; i < rc->received->len; i++) {
    const Booking *b = &g_array_index (rc->received, Booking, i);
    if (!tally_issuer_book (rc, b, error)) {
      g_prefix_error (error, "received entry %u: ", i);
      return FALSE;
    }
    tally_issuer_add_hash_once (rc->settled_received, b->hash);
  }
  return TRUE;
}

/* Vouchers move no value at reconciliation (it moved when sold), but each
 * must be one we issued to this register: signed by us, before the lock;
 * sold, under it (tally_issuer_check_vouchers). */
static gboolean
verify_voucher (Reconcile *rc, const Tally__SignedEnvelope *env, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (Tally__LoadVoucher) v = tally_voucher_verify (env, rc->issuer->public_key, &local);
  if (v == NULL) {
    /* A forged signature is named as one, as for every other entry. */
    TallyError code = g_error_matches (local, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE)
                        ? TALLY_ERROR_BAD_SIGNATURE
                        : TALLY_ERROR_MALFORMED;
    g_set_error (error, TALLY_ERROR, code, "voucher not issued here: %s", local->message);
    return FALSE;
  }
  if (!check_id (&v->register_id, rc->register_id)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "voucher %" G_GUINT64_FORMAT " was issued to another register", v->sequence);
    return FALSE;
  }
  g_array_append_val (rc->vouchers, v->sequence);
  rc->settled_voucher_sequence = MAX (rc->settled_voucher_sequence, v->sequence);
  return TRUE;
}

static gboolean
verify_vouchers (Reconcile *rc, const Tally__ReconciliationBundle *bundle, GError **error)
{
  for (gsize i = 0; i < bundle->n_vouchers; i++) {
    if (!verify_voucher (rc, bundle->vouchers[i], error)) {
      g_prefix_error (error, "voucher %zu: ", i);
      return FALSE;
    }
  }
  return TRUE;
}

gboolean
tally_issuer_verify_entries (Reconcile *rc,
                             const Tally__ReconciliationBundle *bundle,
                             GError **error)
{
  return verify_vouchers (rc, bundle, error) && verify_received_all (rc, bundle, error) &&
         verify_spent_all (rc, bundle, error);
}

static gboolean
check_voucher_sold (Reconcile *rc,
                    const Tally__SignedEnvelope *env,
                    guint64 sequence,
                    GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (GBytes) stored_bytes = NULL;
  if (!tally_issuer_store_voucher_get (rc->issuer->store, rc->register_id, sequence, &stored_bytes,
                                       &local)) {
    if (!tally_issuer_is_not_found (local)) {
      g_propagate_error (error, g_steal_pointer (&local));
      return FALSE;
    }
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "voucher %" G_GUINT64_FORMAT " was never sold", sequence);
    return FALSE;
  }
  g_autoptr (Tally__SignedEnvelope) stored = tally_issuer_decode_stored (stored_bytes, error);
  if (stored == NULL)
    return FALSE;
  if (stored->body.len != env->body.len ||
      memcmp (stored->body.data, env->body.data, env->body.len) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "voucher %" G_GUINT64_FORMAT " differs from the one sold", sequence);
    return FALSE;
  }
  return TRUE;
}

gboolean
tally_issuer_check_vouchers (Reconcile *rc,
                             const Tally__ReconciliationBundle *bundle,
                             GError **error)
{
  /* tally_issuer_verify_entries () verified this bundle and kept one
   * sequence per voucher; anything else is a caller's mistake, reported as
   * an error so that the reconciliation fails with one rather than none. */
  if (rc->vouchers->len != bundle->n_vouchers) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_FAILED,
                 "internal error: %u vouchers verified, the bundle has %zu", rc->vouchers->len,
                 bundle->n_vouchers);
    return FALSE;
  }
  for (gsize i = 0; i < bundle->n_vouchers; i++) {
    if (!check_voucher_sold (rc, bundle->vouchers[i], g_array_index (rc->vouchers, guint64, i),
                             error)) {
      g_prefix_error (error, "voucher %zu: ", i);
      return FALSE;
    }
  }
  return TRUE;
}
