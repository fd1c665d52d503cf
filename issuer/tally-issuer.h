/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The issuer: certifies registers, sells load vouchers against online
 * accounts, reconciles register bundles, detects double spending, revokes
 * and publishes a signed revocation list, gives expired permissions in
 * flight back to their payers, and audits that
 *
 *   online accounts + register balances + in flight = everything issued.
 *
 * Storage sits behind TallyIssuerStore (tally-issuer-store.h); SQLite is the
 * built-in store.  "now" arguments are seconds since the Unix epoch.
 */

#include <glib.h>

#include "tally-core.h"

G_BEGIN_DECLS

typedef struct _TallyIssuer TallyIssuer;

typedef struct
{
  gint64 issued;         /* all value ever deposited into the system */
  gint64 online;         /* sum of online account balances */
  gint64 offline;        /* sum of the issuer's view of register balances */
  gint64 in_flight;      /* permissions reported by payers, not yet by payees */
  gint64 fraud_exposure; /* value spent twice, or credited after it was reclaimed */
  gint64 reclaimed;      /* expired permissions returned to payers' accounts */
  guint64 reclaimed_count;
  guint registers;
  guint revoked;
  guint fraud_proofs;
  gboolean balanced;     /* online + offline + in_flight == issued */
} TallyAudit;

typedef struct
{
  guint spent_new;       /* entries newly booked */
  guint received_new;
  guint duplicates;      /* entries already booked (idempotent re-send) */
  guint defunds;
  guint fraud_proofs;
  guint late_receipts; /* payee halves of permissions already reclaimed */
  guint reclaimed;     /* permissions this reconciliation reclaimed, any payer */
  gint64 reclaimed_amount;
  gboolean revoked;
} TallyReconcileReport;

/* Creates keys ("issuer.key", 0600) and "issuer.db" in @dir. EXISTS if present. */
TallyIssuer *tally_issuer_create (const char *dir,
                                  const char *name,
                                  const char *currency,
                                  guint64 now,
                                  GError **error);
TallyIssuer *tally_issuer_open (const char *dir, GError **error);
void tally_issuer_free (TallyIssuer *issuer);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyIssuer, tally_issuer_free)

const guint8 *tally_issuer_get_public_key (TallyIssuer *issuer);
const char *tally_issuer_get_currency (TallyIssuer *issuer);
/* Packed SignedEnvelope of the self-signed IssuerKeySet. */
GBytes *tally_issuer_get_key_set (TallyIssuer *issuer);

gboolean tally_issuer_account_create (TallyIssuer *issuer, const char *name, GError **error);
/* Money enters the system: the account and "issued" both grow. */
gboolean tally_issuer_deposit (TallyIssuer *issuer,
                               const char *account,
                               gint64 amount,
                               GError **error);
gboolean tally_issuer_account_balance (TallyIssuer *issuer,
                                       const char *account,
                                       gint64 *balance,
                                       GError **error);

/* Certifies @register_key for @account; returns the packed certificate.
 * @display_name (NULL or "" for none) is the name payers see, e.g. a
 * stall's trading name; INVALID_ARGUMENT unless tally_display_name_check()
 * accepts it.  The register row keeps it, so the certificates renewed at
 * reconciliation carry it too; certifying again replaces it. */
GBytes *tally_issuer_certify (TallyIssuer *issuer,
                              const guint8 register_key[TALLY_PUBLIC_KEY_BYTES],
                              const char *account,
                              const char *display_name,
                              const Tally__Limits *limits,
                              guint64 not_before,
                              guint64 not_after,
                              GError **error);

/* Debits the register's account and returns a packed voucher with the next
 * sequence for that register. */
GBytes *tally_issuer_sell_voucher (TallyIssuer *issuer,
                                   const guint8 register_id[TALLY_ID_BYTES],
                                   gint64 amount,
                                   guint64 now,
                                   GError **error);

/* Verifies and books a packed bundle envelope; returns the packed result
 * envelope.  Idempotent for entries already booked. */
GBytes *tally_issuer_reconcile (TallyIssuer *issuer,
                                const guint8 *bundle,
                                gsize len,
                                guint64 now,
                                TallyReconcileReport *report,
                                GError **error);

gboolean tally_issuer_revoke (TallyIssuer *issuer,
                              const guint8 register_id[TALLY_ID_BYTES],
                              guint64 now,
                              GError **error);
/* Packed, signed current revocation list (serial 1 from creation on). */
GBytes *tally_issuer_get_revocation_list (TallyIssuer *issuer, GError **error);
/* Packed fraud proof envelopes. */
GPtrArray *tally_issuer_get_fraud_proofs (TallyIssuer *issuer, GError **error);
/* "counter-reused", "chain-fork", "late-receipt"; "unknown" otherwise. */
const char *tally_issuer_fraud_kind_to_string (Tally__FraudKind kind);

gboolean tally_issuer_audit (TallyIssuer *issuer, TallyAudit *audit, GError **error);

G_END_DECLS
