/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A lost or stolen register (docs/threat-model.md 2, docs/issuer-api.md):
 * its owner reports it, the issuer revokes it at once, and once the
 * register can no longer have made a payment an honest payee would take
 * (the lost-register window), the issuer refunds the register's balance as
 * its own ledger sees it, the view, to the account, once: never more than
 * a defund of it could get, its own untainted evidence (tally-issuer-book.c
 * tally_issuer_evidence_through ()).  What the view holds beyond that, such
 * as a payee's half of a payment above its payer's limit (tainted), stays in
 * the view, frozen: the register is revoked, nothing ever pays it out, and
 * the audit lists it as the register's view.
 *
 * After the refund the register's view is settled against the account,
 * inside whichever transaction moves it:
 *   - value that surfaces later against it (a payee's half of a payment it
 *     made that nobody had booked) is still credited to that payee, and is
 *     taken back from the account, up to what the refund paid out and not
 *     yet taken back, and up to what the account holds (an account is never
 *     negative);
 *   - what cannot be taken back stays as the register's negative view:
 *     exposure, which the audit names against the register;
 *   - value its evidence gains (a reclaim refused to the view) is paid out
 *     to the account as more refund, as far as its untainted evidence backs
 *     it; the rest stays in the view, frozen.
 * The view is its evidence less the refund net of what was taken back
 * (refunded - recovered), so the audit's check of every view against its
 * evidence holds throughout, and no value is created.
 */
#include "tally-issuer-private.h"

/* Never before the report, nor before every certificate it was ever given
 * has expired and every permission signed under one with it. */
guint64
tally_issuer_lost_refund_due (guint64 lost_at, guint64 not_after_ever)
{
  guint64 due;
  if (__builtin_add_overflow (MAX (lost_at, not_after_ever),
                              (guint64) TALLY_ISSUER_PERMISSION_LIFETIME_MAX, &due))
    return G_MAXUINT64;
  return due;
}

gboolean
tally_issuer_mark_lost (TallyIssuer *issuer,
                        const guint8 register_id[static TALLY_ID_BYTES],
                        guint64 now,
                        GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  if (!tally_issuer_store_register_get (issuer->store, register_id, &row, error))
    return FALSE;
  /* The first report starts the window: reporting again must not put the
   * refund off, nor bring it forward. */
  if (row.lost_at != 0)
    return TRUE;
  row.lost_at = MAX (now, 1);
  g_autofree char *hex = tally_issuer_short_hex (register_id);
  g_info ("register %s reported lost; refund due at %" G_GUINT64_FORMAT, hex,
          tally_issuer_lost_refund_due (row.lost_at, row.not_after_ever));
  return tally_issuer_store_register_put (issuer->store, &row, error);
}

static gboolean
account_move (TallyIssuer *issuer, const char *account, gint64 delta, GError **error)
{
  gint64 balance;
  /* Within 0..TALLY_AMOUNT_MAX, as every other credit to an account. */
  return tally_issuer_store_account_get (issuer->store, account, &balance, error) &&
         tally_amount_add (balance, delta, &balance, error) &&
         tally_issuer_store_account_put (issuer->store, account, balance, error);
}

/* What of @row's view may go to its account: no more than a defund of it
 * could get, its own evidence over every entry booked so far (payments to
 * it above their payer's limit are tainted and count for nothing) less
 * what was refunded and not taken back; never below zero. */
static gboolean
refundable (TallyIssuer *issuer, const TallyIssuerRegisterRow *row, gint64 *out, GError **error)
{
  TallyIssuerEvidence ev;
  gint64 backed;
  *out = 0;
  if (!tally_issuer_store_register_evidence (issuer->store, row->id, G_MAXINT64, &ev, error) ||
      !tally_issuer_add_signed (ev.vouchers, ev.received, &backed, error) ||
      !tally_issuer_add_signed (backed, -ev.spent, &backed, error) ||
      !tally_issuer_add_signed (backed, row->recovered - row->refunded, &backed, error))
    return FALSE;
  *out = MAX (MIN (row->view_balance, backed), 0);
  return TRUE;
}

gboolean
tally_issuer_settle_refunded (TallyIssuer *issuer, TallyIssuerRegisterRow *row, GError **error)
{
  if (row->refunded_at == 0 || row->view_balance == 0)
    return TRUE;
  g_autofree char *hex = tally_issuer_short_hex (row->id);
  if (row->view_balance > 0) {
    gint64 more;
    if (!refundable (issuer, row, &more, error))
      return FALSE;
    if (more < row->view_balance)
      g_info ("register %s (refunded): %" G_GINT64_FORMAT " of its view not backed by its "
              "untainted evidence stays frozen",
              hex, row->view_balance - more);
    if (more == 0)
      return TRUE;
    g_info ("register %s (refunded): %" G_GINT64_FORMAT " more evidence paid out to \"%s\"", hex,
            more, row->account);
    row->view_balance -= more;
    return tally_issuer_add_signed (row->refunded, more, &row->refunded, error) &&
           account_move (issuer, row->account, more, error);
  }
  gint64 balance;
  if (!tally_issuer_store_account_get (issuer->store, row->account, &balance, error))
    return FALSE;
  gint64 open = row->refunded - row->recovered;
  gint64 take = MIN (MIN (-row->view_balance, open), balance);
  if (take <= 0)
    return TRUE;
  g_info ("register %s (refunded): %" G_GINT64_FORMAT " surfaced later, %" G_GINT64_FORMAT
          " taken back from \"%s\"",
          hex, -row->view_balance, take, row->account);
  row->view_balance += take;
  row->recovered += take;
  return account_move (issuer, row->account, -take, error);
}

/* Refunds @register_id if its window has passed; counts it in @report. */
static gboolean
refund_one (TallyIssuer *issuer,
            const guint8 register_id[static TALLY_ID_BYTES],
            guint64 now,
            TallyRefundReport *report,
            GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  if (!tally_issuer_store_register_get (issuer->store, register_id, &row, error))
    return FALSE;
  /* Listed in an earlier transaction: another process may have refunded it
   * since. */
  if (row.lost_at == 0 || row.refunded_at != 0)
    return TRUE;
  guint64 due = tally_issuer_lost_refund_due (row.lost_at, row.not_after_ever);
  if (now < due) {
    report->waiting++;
    report->next_due = report->next_due == 0 ? due : MIN (report->next_due, due);
    return TRUE;
  }
  /* The issuer's own view, never what the register claims: a negative
   * view (spending beyond its evidence) refunds nothing and stays
   * exposure; value its untainted evidence does not back stays in the
   * view, frozen. */
  gint64 amount;
  if (!refundable (issuer, &row, &amount, error))
    return FALSE;
  row.view_balance -= amount;
  row.refunded = amount;
  row.refunded_at = MAX (now, 1);
  g_autofree char *hex = tally_issuer_short_hex (register_id);
  g_info ("register %s: lost at %" G_GUINT64_FORMAT ", %" G_GINT64_FORMAT
          " refunded to \"%s\", %" G_GINT64_FORMAT " of its view frozen",
          hex, row.lost_at, amount, row.account, MAX (row.view_balance, 0));
  report->refunded++;
  report->refunded_amount += amount;
  return account_move (issuer, row.account, amount, error) &&
         tally_issuer_store_register_put (issuer->store, &row, error);
}

gboolean
tally_issuer_refund_lost (TallyIssuer *issuer,
                          guint64 now,
                          TallyRefundReport *report,
                          GError **error)
{
  g_return_val_if_fail (issuer != NULL, FALSE);

  TallyRefundReport local = { 0 };
  if (!tally_issuer_store_begin (issuer->store, error))
    return FALSE;
  g_autoptr (GPtrArray) ids = NULL;
  gboolean ok = tally_issuer_store_register_list_lost (issuer->store, &ids, error);
  if (!tally_issuer_finish (issuer, ok, error))
    return FALSE;
  /* One transaction a register: one that cannot be refunded (its account
   * would pass TALLY_AMOUNT_MAX, say) is skipped, logged and counted, and
   * blocks no other; the store failing stops the run, and what was
   * committed before stays refunded once. */
  for (guint i = 0; i < ids->len; i++) {
    const guint8 *id = g_bytes_get_data (ids->pdata[i], NULL);
    TallyRefundReport one = local;
    g_autoptr (GError) local_error = NULL;
    if (!tally_issuer_store_begin (issuer->store, error))
      return FALSE;
    ok = refund_one (issuer, id, now, &one, &local_error);
    if (tally_issuer_finish (issuer, ok, &local_error)) {
      local = one;
      continue;
    }
    if (g_error_matches (local_error, TALLY_ERROR, TALLY_ERROR_STORAGE)) {
      g_propagate_error (error, g_steal_pointer (&local_error));
      return FALSE;
    }
    g_autofree char *hex = tally_issuer_short_hex (id);
    /* Counted in @report: the caller (CLI, tally-issuerd) tells the
     * operator. */
    g_message ("register %s: not refunded, skipped until the next run: %s", hex,
               local_error != NULL ? local_error->message : "unknown error");
    local.failed++;
  }
  if (report != NULL)
    *report = local;
  return TRUE;
}
