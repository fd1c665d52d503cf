/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Booking (protocol.md 5.5): each entry a bundle lists moves value between
 * register views, accounts and what is in flight, once; defunds and
 * reclaims are credited only as far as the register's evidence backs them.
 */
#include "tally-issuer-private.h"

#include <string.h>

static void
entry_enter_state (TallyIssuerEntryRow *row, TallyIssuerEntryState state)
{
  g_autofree char *hex = tally_issuer_short_hex (row->hash);
  g_debug ("entry %s (%s, counter %" G_GUINT64_FORMAT "): %s -> %s", hex,
           tally_issuer_entry_kind_to_string (row->kind), row->counter,
           tally_issuer_entry_state_to_string (row->state),
           tally_issuer_entry_state_to_string (state));
  row->state = state;
}

static gboolean
adjust_view (Reconcile *rc, const guint8 register_id[static TALLY_ID_BYTES], gint64 delta, GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  return tally_issuer_store_register_get (rc->issuer->store, register_id, &row, error) &&
         tally_issuer_add_signed (row.view_balance, delta, &row.view_balance, error) &&
         tally_issuer_settle_refunded (rc->issuer, &row, error) &&
         tally_issuer_store_register_put (rc->issuer->store, &row, error);
}

static gboolean
credit_account_of (Reconcile *rc, const guint8 register_id[static TALLY_ID_BYTES], gint64 amount,
                   GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  gint64 balance;
  return tally_issuer_store_register_get (rc->issuer->store, register_id, &row, error) &&
         tally_issuer_store_account_get (rc->issuer->store, row.account, &balance, error) &&
         tally_amount_add (balance, amount, &balance, error) &&
         tally_issuer_store_account_put (rc->issuer->store, row.account, balance, error);
}

static void
count_new (Reconcile *rc, const Booking *b)
{
  switch (b->kind) {
  case TALLY_ISSUER_ENTRY_DEFUND:
    rc->report.defunds++;
    break;
  case TALLY_ISSUER_ENTRY_PERMISSION:
    if (b->payer_half)
      rc->report.spent_new++;
    else
      rc->report.received_new++;
    break;
  }
}

static gboolean
is_expired_at (guint64 expires_at, guint64 horizon)
{
  return expires_at != 0 && expires_at <= horizon;
}

/* The payee's horizon; 0 for a payee this issuer never certified, which can
 * never prove that it did not credit a permission. */
static gboolean
payee_horizon (Reconcile *rc, const guint8 payee[static TALLY_ID_BYTES], guint64 *horizon, GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  g_autoptr (GError) local = NULL;
  *horizon = 0;
  if (tally_issuer_store_register_get (rc->issuer->store, payee, &row, &local)) {
    *horizon = row.horizon;
    return TRUE;
  }
  if (tally_issuer_is_not_found (local))
    return TRUE;
  g_propagate_error (error, g_steal_pointer (&local));
  return FALSE;
}

/*
 * The register's own evidence through @counter (protocol.md 5.5): vouchers
 * sold to it, plus payments to it that are settled, minus the signed
 * amounts of all its own entries booked with a counter up to @counter.  An
 * honest register's balance after its entry at @counter is never more than
 * this, because every payment it had received by then is booked once its
 * bundle is, and it has loaded no voucher the issuer did not sell.  Only
 * the register's signed entries and what the issuer sold it count: this is
 * what an OVERDRAWN proof rests on.
 */
gboolean
tally_issuer_own_evidence_through (Reconcile *rc,
                                   const guint8 register_id[static TALLY_ID_BYTES],
                                   guint64 counter,
                                   gint64 *backed,
                                   GError **error)
{
  TallyIssuerEvidence ev;
  return tally_issuer_store_register_evidence (rc->issuer->store, register_id, counter, &ev,
                                               error) &&
         tally_issuer_add_signed (ev.vouchers, ev.received, backed, error) &&
         tally_issuer_add_signed (*backed, -ev.spent, backed, error);
}

/* What the register's evidence through @counter still backs: its own
 * evidence less what a lost-register refund paid out of it to its account
 * and was not taken back.  The refund is the issuer's act, not the
 * register's: it bounds what is credited, never what is proven. */
gboolean
tally_issuer_evidence_through (Reconcile *rc,
                               const guint8 register_id[static TALLY_ID_BYTES],
                               guint64 counter,
                               gint64 *backed,
                               GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  /* A lost register's refund (net of what was taken back) left its
   * evidence for its account: it backs nothing a second time. */
  return tally_issuer_own_evidence_through (rc, register_id, counter, backed, error) &&
         tally_issuer_store_register_get (rc->issuer->store, register_id, &row, error) &&
         tally_issuer_add_signed (*backed, row.recovered - row.refunded, backed, error);
}

/* @amount of a reclaim the evidence does not back goes back to the
 * register's view and is counted as refused. */
static gboolean
refuse_to (Reconcile *rc, const guint8 register_id[static TALLY_ID_BYTES], gint64 amount, GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  g_autofree char *hex = tally_issuer_short_hex (register_id);
  g_info ("register %s: %" G_GINT64_FORMAT " of a reclaim not backed by evidence is refused", hex,
          amount);
  rc->report.refused += amount;
  return tally_issuer_store_register_get (rc->issuer->store, register_id, &row, error) &&
         tally_issuer_add_signed (row.view_balance, amount, &row.view_balance, error) &&
         tally_issuer_add_signed (row.refused, amount, &row.refused, error) &&
         tally_issuer_settle_refunded (rc->issuer, &row, error) &&
         tally_issuer_store_register_put (rc->issuer->store, &row, error);
}

/*
 * Reclaim (protocol.md 5): the payee reconciled a bundle made at or after
 * the permission's expiry that did not list it, and an honest payee refuses
 * it from then on, so the value goes back to the payer's online account as
 * a defund's would.  Only IN_FLIGHT leaves for RECLAIMED, and nothing leaves
 * RECLAIMED, so the credit happens once however often the entry is listed.
 */
gboolean
tally_issuer_reclaim (Reconcile *rc, TallyIssuerEntryRow *row, GError **error)
{
  g_return_val_if_fail (row->state == TALLY_ISSUER_ENTRY_IN_FLIGHT, FALSE);
  g_return_val_if_fail (row->kind == TALLY_ISSUER_ENTRY_PERMISSION, FALSE);

  /* Like a defund (5.5): the refund goes online only as far as the payer's
   * evidence before this permission backs it; what it does not back stays
   * in the payer's view, where it came from, and is refused. */
  gint64 backed;
  if (!tally_issuer_evidence_through (rc, row->register_id, row->counter, &backed, error) ||
      !tally_issuer_add_signed (backed, row->amount, &backed, error))
    return FALSE;
  row->credited = CLAMP (backed, 0, row->amount);
  gint64 refused = row->amount - row->credited;

  TallyIssuerTotals *t = &rc->totals;
  if (!tally_issuer_add_signed (t->in_flight, -row->amount, &t->in_flight, error) ||
      !tally_issuer_add_signed (t->reclaimed, row->credited, &t->reclaimed, error) ||
      !credit_account_of (rc, row->register_id, row->credited, error) ||
      (refused > 0 && !refuse_to (rc, row->register_id, refused, error)))
    return FALSE;
  t->reclaimed_count++;
  entry_enter_state (row, TALLY_ISSUER_ENTRY_RECLAIMED);
  if (!tally_issuer_store_entry_update (rc->issuer->store, row, error))
    return FALSE;
  rc->report.reclaimed++;
  rc->report.reclaimed_amount += row->credited;
  return TRUE;
}

/*
 * A defund is credited only up to the register's evidence over every entry
 * of it booked so far, whatever the counter: whatever a rolled-back,
 * edited or cloned register claims beyond that is refused and never reaches
 * an account.  Bounding by the entries below the defund's counter only
 * would let a clone's defund at an old counter be credited against value a
 * later defund already took.  An honest register closes at its defund, so
 * nothing of its is ever booked above one.  Called before the defund's own
 * row is booked and after every permission the bundle lists (defunds are
 * booked last, and a bundle with a gap is refused whole).  A revoked
 * register may still defund what its evidence backs: the value is its
 * account holder's.
 */
static gboolean
defund_credit (Reconcile *rc, const Booking *b, gint64 *credited, GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  gint64 backed = 0;
  if (!tally_issuer_store_register_get (rc->issuer->store, b->payer, &row, error) ||
      !tally_issuer_evidence_through (rc, b->payer, G_MAXINT64, &backed, error))
    return FALSE;
  *credited = CLAMP (backed, 0, b->amount);
  gint64 refused = b->amount - *credited;
  if (refused == 0)
    return TRUE;

  g_autofree char *hex = tally_issuer_short_hex (b->payer);
  g_info ("register %s: defund at counter %" G_GUINT64_FORMAT " credited %" G_GINT64_FORMAT
          " of %" G_GINT64_FORMAT ": the rest is not backed by evidence",
          hex, b->counter, *credited, b->amount);
  rc->report.refused += refused;
  return tally_issuer_add_signed (row.refused, refused, &row.refused, error) &&
         tally_issuer_store_register_put (rc->issuer->store, &row, error);
}

/* The proofs a new entry brings before it is booked: a double-spending
 * payer, and a payee whose receipt comes after its own horizon passed the
 * permission's expiry. */
static gboolean
check_new_entry (Reconcile *rc, const Booking *b, GError **error)
{
  gboolean fraud;
  if (!tally_issuer_detect_fraud (rc, b, &fraud, error))
    return FALSE;
  /* The payee accepted in good faith: the entry is still booked below.
   * The payer is revoked; what it spent beyond its evidence shows as its
   * negative view, which the audit counts as exposure. */
  if (fraud && !tally_issuer_revoke_proven (rc, b->payer, error))
    return FALSE;
  /* The payee's half of a permission not booked before but expired at or
   * before the payee's horizon: nothing was given back, so it books as
   * paid, but the payee register is proven rolled back (5.3). */
  if (b->payee_half) {
    guint64 horizon;
    if (!payee_horizon (rc, b->payee, &horizon, error))
      return FALSE;
    if (is_expired_at (b->expires_at, horizon) &&
        !tally_issuer_prove_late_receipt (rc, b->payee, b->receipt, error))
      return FALSE;
  }
  return TRUE;
}

static void
entry_row_from_booking (Reconcile *rc, const Booking *b, TallyIssuerEntryRow *row)
{
  memcpy (row->hash, b->hash, TALLY_HASH_BYTES);
  memcpy (row->register_id, b->payer, TALLY_ID_BYTES);
  row->counter = b->counter;
  row->kind = b->kind;
  row->has_payee = b->has_payee;
  if (b->has_payee)
    memcpy (row->payee_id, b->payee, TALLY_ID_BYTES);
  row->amount = b->amount;
  row->payer_reported = b->payer_half;
  row->payee_reported = b->payee_half;
  memcpy (row->chain_prev, b->chain_prev, TALLY_HASH_BYTES);
  memcpy (row->chain_after, b->chain_after, TALLY_HASH_BYTES);
  row->envelope = tally_envelope_pack (b->env);
  row->booked_at = rc->now;
  row->expires_at = b->expires_at;
  if (b->payee_half)
    row->receipt = tally_envelope_pack (b->receipt);
}

/* A defund settles at once: what the evidence backs leaves the view for
 * the account. */
static gboolean
book_defund_value (Reconcile *rc, const Booking *b, TallyIssuerEntryRow *row, GError **error)
{
  if (!defund_credit (rc, b, &row->credited, error) ||
      !adjust_view (rc, b->payer, -row->credited, error) ||
      !credit_account_of (rc, b->payer, row->credited, error))
    return FALSE;
  row->state = TALLY_ISSUER_ENTRY_SETTLED;
  return TRUE;
}

/* A permission leaves the payer's view; with the payee's half it settles
 * into the payee's view, without it it is in flight. */
static gboolean
book_permission_value (Reconcile *rc, const Booking *b, TallyIssuerEntryRow *row, GError **error)
{
  gboolean over;
  if (!adjust_view (rc, b->payer, -b->amount, error) ||
      !tally_issuer_over_limit (rc, b->payer, b->amount, &over, error) ||
      (over &&
       !tally_issuer_prove_and_revoke (rc, b->payer, TALLY__FRAUD_KIND__FRAUD_KIND_OVER_LIMIT,
                                       b->env, b->payee_half ? b->receipt : NULL, error)) ||
      (over && b->payee_half && !tally_issuer_taint_payee_half (rc, b, row, error)))
    return FALSE;
  if (b->payee_half) {
    if (!adjust_view (rc, b->payee, b->amount, error))
      return FALSE;
    row->state = TALLY_ISSUER_ENTRY_SETTLED;
  } else {
    if (!tally_issuer_add_signed (rc->totals.in_flight, b->amount, &rc->totals.in_flight, error))
      return FALSE;
    row->state = TALLY_ISSUER_ENTRY_IN_FLIGHT;
  }
  return TRUE;
}

static gboolean
book_new (Reconcile *rc, const Booking *b, GError **error)
{
  if (!check_new_entry (rc, b, error))
    return FALSE;

  g_auto (TallyIssuerEntryRow) row = { 0 };
  entry_row_from_booking (rc, b, &row);

  switch (b->kind) {
  case TALLY_ISSUER_ENTRY_DEFUND:
    if (!book_defund_value (rc, b, &row, error))
      return FALSE;
    break;
  case TALLY_ISSUER_ENTRY_PERMISSION:
    if (!book_permission_value (rc, b, &row, error))
      return FALSE;
    break;
  }

  g_autofree char *hex = tally_issuer_short_hex (row.hash);
  g_debug ("entry %s (%s, counter %" G_GUINT64_FORMAT ") booked %s", hex,
           tally_issuer_entry_kind_to_string (row.kind), row.counter,
           tally_issuer_entry_state_to_string (row.state));
  if (!tally_issuer_store_entry_insert (rc->issuer->store, &row, error))
    return FALSE;
  count_new (rc, b);

  /* The payee may have reconciled past the expiry before the payer. */
  if (row.state == TALLY_ISSUER_ENTRY_IN_FLIGHT) {
    guint64 horizon;
    if (!payee_horizon (rc, b->payee, &horizon, error))
      return FALSE;
    if (is_expired_at (row.expires_at, horizon) && !tally_issuer_reclaim (rc, &row, error))
      return FALSE;
  }
  return TRUE;
}

/* An entry booked before is a duplicate; it may still bring the half that
 * was missing, which settles an entry in flight. */
static gboolean
book_again (Reconcile *rc, const Booking *b, TallyIssuerEntryRow *row, GError **error)
{
  gboolean added = FALSE;

  rc->report.duplicates++;
  if (b->payer_half && !row->payer_reported) {
    row->payer_reported = TRUE;
    added = TRUE;
  }
  if (b->payee_half && !row->payee_reported) {
    gboolean over;
    row->payee_reported = TRUE;
    added = TRUE;
    if (!tally_issuer_over_limit (rc, row->register_id, row->amount, &over, error) ||
        (over && !tally_issuer_taint_payee_half (rc, b, row, error)))
      return FALSE;
    switch (row->state) {
    case TALLY_ISSUER_ENTRY_IN_FLIGHT:
      if (!tally_issuer_add_signed (rc->totals.in_flight, -row->amount, &rc->totals.in_flight,
                                    error) ||
          !adjust_view (rc, row->payee_id, row->amount, error))
        return FALSE;
      entry_enter_state (row, TALLY_ISSUER_ENTRY_SETTLED);
      break;
    case TALLY_ISSUER_ENTRY_SETTLED:
      break;
    case TALLY_ISSUER_ENTRY_RECLAIMED:
      /* Not credited twice: the payer holds the value online already and
       * the payee's register holds it beyond the issuer's view.  Once the
       * payee spends it, its view goes negative: exposure (5.5). */
      if (!tally_issuer_prove_late_receipt (rc, row->payee_id, b->receipt, error))
        return FALSE;
      break;
    }
  }
  /* Kept so that a payer listing the entry without one gets it back. */
  if (b->payee_half && row->receipt == NULL) {
    row->receipt = tally_envelope_pack (b->receipt);
    added = TRUE;
  }
  return !added || tally_issuer_store_entry_update (rc->issuer->store, row, error);
}

gboolean
tally_issuer_book (Reconcile *rc, const Booking *b, GError **error)
{
  g_auto (TallyIssuerEntryRow) row = { 0 };
  g_autoptr (GError) local = NULL;

  if (tally_issuer_store_entry_get_by_hash (rc->issuer->store, b->hash, &row, &local))
    return book_again (rc, b, &row, error);
  if (!tally_issuer_is_not_found (local)) {
    g_propagate_error (error, g_steal_pointer (&local));
    return FALSE;
  }
  return book_new (rc, b, error);
}
