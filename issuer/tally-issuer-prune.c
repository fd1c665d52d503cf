/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Pruning what the issuer keeps only so that a retry gets the same answer
 * (docs/issuer-api.md): the results of tally_issuer_reconcile_once (meta
 * rows "reconciled:HASH") and the vouchers sold under a request id
 * ("voucher-request:HASH").  Each row is dated by the signed object it
 * holds: a result's reconciled_at, a voucher's issued_at.  A row that does
 * not decode is kept and reported, never guessed at.
 */
#include "tally-issuer-private.h"

/* The time the kept envelope @value was signed at; FALSE when it does not
 * decode as @what. */
static gboolean
kept_at (const char *what, GBytes *value, guint64 *at)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) env = tally_issuer_decode_stored (value, &error);
  if (env == NULL)
    return FALSE;
  if (g_str_equal (what, TALLY_ISSUER_KEPT_RESULT_PREFIX)) {
    Tally__ReconciliationResult *r =
      tally__reconciliation_result__unpack (NULL, env->body.len, env->body.data);
    if (r == NULL)
      return FALSE;
    *at = r->reconciled_at;
    tally__reconciliation_result__free_unpacked (r, NULL);
    return TRUE;
  }
  Tally__LoadVoucher *v = tally__load_voucher__unpack (NULL, env->body.len, env->body.data);
  if (v == NULL)
    return FALSE;
  *at = v->issued_at;
  tally__load_voucher__free_unpacked (v, NULL);
  return TRUE;
}

/* Rows read and pruned per store transaction: a long prune holds the
 * store (and every reconciliation waiting on it) for one batch at a time,
 * and never loads every kept row at once. */
#define PRUNE_BATCH 500

/* One batch of @prefix's rows after *@after, in its own transaction;
 * *@after moves to the last key read, *@done when no row is left. */
static gboolean
prune_batch (TallyIssuer *issuer,
             const char *prefix,
             guint64 before,
             char **after,
             gboolean *done,
             TallyPruneReport *report,
             GError **error)
{
  g_autoptr (GPtrArray) keys = NULL;
  g_autoptr (GPtrArray) values = NULL;
  if (!tally_issuer_store_meta_list (issuer->store, prefix, *after, PRUNE_BATCH, &keys, &values,
                                     error))
    return FALSE;
  *done = keys->len < PRUNE_BATCH;
  if (keys->len > 0) {
    g_free (*after);
    *after = g_strdup (keys->pdata[keys->len - 1]);
  }
  for (guint i = 0; i < keys->len; i++) {
    guint64 at;
    if (!kept_at (prefix, values->pdata[i], &at)) {
      g_warning ("kept row \"%s\" does not decode; left in place", (const char *) keys->pdata[i]);
      report->undated++;
      continue;
    }
    if (at >= before) {
      report->kept++;
      continue;
    }
    if (!tally_issuer_store_meta_delete (issuer->store, keys->pdata[i], error))
      return FALSE;
    report->pruned++;
  }
  return TRUE;
}

gboolean
tally_issuer_prune_kept (TallyIssuer *issuer,
                         guint64 now,
                         guint64 keep_seconds,
                         TallyPruneReport *report,
                         GError **error)
{
  g_return_val_if_fail (issuer != NULL, FALSE);
  g_return_val_if_fail (keep_seconds > 0, FALSE);

  TallyPruneReport local = { 0 };
  guint64 before = now > keep_seconds ? now - keep_seconds : 0;
  static const char *const prefixes[] = { TALLY_ISSUER_KEPT_RESULT_PREFIX,
                                          TALLY_ISSUER_KEPT_VOUCHER_PREFIX };
  for (gsize p = 0; p < G_N_ELEMENTS (prefixes); p++) {
    g_autofree char *after = g_strdup ("");
    gboolean done = FALSE;
    while (!done) {
      /* Counted only once its batch is committed. */
      TallyPruneReport batch = local;
      if (!tally_issuer_store_begin (issuer->store, error))
        return FALSE;
      gboolean ok = prune_batch (issuer, prefixes[p], before, &after, &done, &batch, error);
      if (!tally_issuer_finish (issuer, ok, error))
        return FALSE;
      local = batch;
    }
  }
  g_info ("pruned %u kept answer(s) signed before %" G_GUINT64_FORMAT "; %u kept, %u undated",
          local.pruned, before, local.kept, local.undated);
  if (report != NULL)
    *report = local;
  return TRUE;
}
