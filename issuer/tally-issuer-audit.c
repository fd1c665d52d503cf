/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The audit (protocol.md 5.4, 5.5): the ledger's identity and the registers it names. */
#include "tally-issuer-private.h"

#include <string.h>

gboolean
tally_issuer_audit (TallyIssuer *issuer, TallyAudit *audit, GError **error)
{
  g_return_val_if_fail (issuer != NULL, FALSE);
  g_return_val_if_fail (audit != NULL, FALSE);

  TallyIssuerTotals totals;
  TallyIssuerSums sums;
  if (!tally_issuer_store_begin (issuer->store, error))
    return FALSE;
  gboolean ok = tally_issuer_store_totals_get (issuer->store, &totals, error) &&
                tally_issuer_store_sums (issuer->store, &sums, error);
  if (!tally_issuer_finish (issuer, ok, error))
    return FALSE;

  *audit = (TallyAudit) {
    .issued = totals.issued,
    .online = sums.online,
    .offline = sums.offline,
    .in_flight = sums.in_flight,
    .fraud_exposure = sums.exposure,
    .awaiting = sums.awaiting,
    .refused = sums.refused,
    .reclaimed = totals.reclaimed,
    .reclaimed_count = totals.reclaimed_count,
    .registers = sums.registers,
    .revoked = sums.revoked,
    .fraud_proofs = sums.fraud_proofs,
    .views_unbacked = sums.views_unbacked,
  };
  /* issued + exposure = online + offline + in flight, every term summed
   * from the ledger itself; the running in-flight total must agree. */
  gint64 held, owed;
  audit->identity = !__builtin_add_overflow (sums.online, sums.offline, &held) &&
                    !__builtin_add_overflow (held, sums.in_flight, &held) &&
                    !__builtin_add_overflow (totals.issued, sums.exposure, &owed) && held == owed &&
                    totals.in_flight == sums.in_flight && sums.views_unbacked == 0;
  audit->balanced = audit->identity && sums.exposure == 0 && sums.awaiting == 0;
  return TRUE;
}

static gboolean
exposure_of (TallyIssuer *issuer,
             TallyIssuerRegisterRow *row,
             TallyAuditRegister *out,
             GError **error)
{
  g_autoptr (GPtrArray) proofs = NULL;
  if (!tally_issuer_store_fraud_proof_list (issuer->store, row->id, &proofs, error))
    return FALSE;
  TallyIssuerEvidence ev;
  if (!tally_issuer_store_register_evidence (issuer->store, row->id, 0, &ev, error))
    return FALSE;
  memcpy (out->register_id, row->id, TALLY_ID_BYTES);
  out->account = g_steal_pointer (&row->account);
  out->revoked = row->revoked;
  out->view = row->view_balance;
  /* As the audit sums it (tally-issuer-store-sqlite.c). */
  out->exposure = row->revoked ? MAX (MAX (ev.late, -row->view_balance), 0) : 0;
  out->awaiting = row->revoked ? 0 : MAX (-row->view_balance, 0);
  out->refused = row->refused;
  out->deficit = row->deficit;
  out->lost_at = row->lost_at;
  out->refund_due =
    row->lost_at != 0 ? tally_issuer_lost_refund_due (row->lost_at, row->not_after_ever) : 0;
  out->refunded_at = row->refunded_at;
  out->refunded = row->refunded;
  out->recovered = row->recovered;
  for (guint i = 0; i < proofs->len; i++) {
    const TallyIssuerFraudRow *f = proofs->pdata[i];
    if (f->kind > 0 && f->kind < 32)
      out->proof_kinds |= 1u << f->kind;
    out->proofs++;
  }
  return TRUE;
}

static void
audit_register_free (TallyAuditRegister *r)
{
  g_free (r->account);
  g_free (r);
}

GPtrArray *
tally_issuer_audit_registers (TallyIssuer *issuer, GError **error)
{
  g_return_val_if_fail (issuer != NULL, NULL);

  if (!tally_issuer_store_begin (issuer->store, error))
    return NULL;
  g_autoptr (GPtrArray) rows = NULL;
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func ((GDestroyNotify) audit_register_free);
  gboolean ok = tally_issuer_store_register_list_flagged (issuer->store, &rows, error);
  for (guint i = 0; ok && i < rows->len; i++) {
    TallyAuditRegister *r = g_new0 (TallyAuditRegister, 1);
    g_ptr_array_add (out, r);
    ok = exposure_of (issuer, rows->pdata[i], r, error);
  }
  if (!tally_issuer_finish (issuer, ok, error))
    return NULL;
  return g_steal_pointer (&out);
}
