/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Declarations the issuer's own source files share; not part of its API
 * (tally-issuer.h).  Every function here runs inside the one store
 * transaction of a public call, but tally_issuer_verify_entries (), which
 * runs before it.
 */

#include "tally-issuer-store.h"
#include "tally-issuer.h"

G_BEGIN_DECLS

struct _TallyIssuer
{
  char *dir;
  TallyIssuerStore *store;
  guint8 *secret_key; /* guarded sodium memory, no access but to sign */
  guint8 public_key[TALLY_PUBLIC_KEY_BYTES];
  guint8 key_id[TALLY_ID_BYTES];
  char *name;
  char *currency;
  GBytes *key_set;
  gboolean embedded;          /* the SQLite store: one writer at a time */
  TallyIssuerCommitHook hook; /* tests only: crash injection */
  gpointer hook_data;
};

/* One reconciliation: the bundle's register and what booking it produced. */
typedef struct
{
  TallyIssuer *issuer;
  guint64 now;
  guint8 register_id[TALLY_ID_BYTES]; /* the register whose bundle this is */
  guint8 register_key[TALLY_PUBLIC_KEY_BYTES]; /* its key, which never changes */
  TallyIssuerTotals totals;
  TallyReconcileReport report;
  gboolean revocations_changed;
  GPtrArray *new_proofs;            /* TallyIssuerFraudRow */
  GPtrArray *settled_received;      /* GBytes, permission hashes */
  guint64 settled_voucher_sequence; /* highest voucher the bundle showed */
  GArray *vouchers;                 /* guint64, each voucher's sequence, in bundle order */
  GArray *received;                 /* Booking, the bundle's received entries, in its order */
  GArray *spent;                    /* Booking, the bundle's own entries, in booking order */
  GPtrArray *reclaimed;             /* GBytes, hashes of own permissions reclaimed */
  GPtrArray *receipts;              /* Tally__SignedEnvelope, payees' receipts to return */
} Reconcile;

/* One entry of a payer's chain as this bundle reports it. */
typedef struct
{
  const Tally__SignedEnvelope *env;
  TallyIssuerEntryKind kind;
  guint8 hash[TALLY_HASH_BYTES];
  guint8 payer[TALLY_ID_BYTES];
  gboolean has_payee;
  guint8 payee[TALLY_ID_BYTES];
  guint64 counter;
  guint8 chain_prev[TALLY_HASH_BYTES];
  guint8 chain_after[TALLY_HASH_BYTES];
  gint64 amount;
  guint64 expires_at;                   /* 0: the permission never expires */
  gboolean payer_half;                  /* reported by the payer in its own bundle */
  gboolean payee_half;                  /* the payee's receipt is known */
  const Tally__SignedEnvelope *receipt; /* that receipt, when payee_half */
  /* A receipt the payer carried for a payee not certified when the bundle
   * was verified: looked at again under the lock. */
  const Tally__SignedEnvelope *unchecked_receipt;
} Booking;

/* Shared steps (tally-issuer.c). */
G_GNUC_INTERNAL
GBytes *
tally_issuer_sign (TallyIssuer *issuer, Tally__SignatureContext ctx, const ProtobufCMessage *msg);
G_GNUC_INTERNAL
gboolean tally_issuer_finish (TallyIssuer *issuer, gboolean ok, GError **error);
G_GNUC_INTERNAL
gboolean tally_issuer_check_amount (const char *currency, gint64 amount, GError **error);
G_GNUC_INTERNAL
gboolean tally_issuer_add_signed (gint64 a, gint64 b, gint64 *out, GError **error);
G_GNUC_INTERNAL
gboolean tally_issuer_is_not_found (const GError *error);
G_GNUC_INTERNAL
char *tally_issuer_short_hex (const guint8 *data);
G_GNUC_INTERNAL
ProtobufCBinaryData *tally_issuer_binary_from_bytes (GPtrArray *bytes);
G_GNUC_INTERNAL
Tally__SignedEnvelope *tally_issuer_decode_stored (GBytes *bytes, GError **error);

/* Certificates (tally-issuer-certify.c).  Raises @row's not_after_ever to
 * @not_after: the caller puts @row in the transaction it signs in. */
G_GNUC_INTERNAL
GBytes *tally_issuer_sign_certificate (TallyIssuer *issuer,
                                       TallyIssuerRegisterRow *row,
                                       guint64 not_before,
                                       guint64 not_after);

/* Fraud proofs and revocation (tally-issuer-fraud.c). */
G_GNUC_INTERNAL
gboolean tally_issuer_latest_revocation_list (TallyIssuer *issuer,
                                              guint64 *serial,
                                              GBytes **env,
                                              GError **error);
G_GNUC_INTERNAL
gboolean tally_issuer_publish_revocation_list (TallyIssuer *issuer, guint64 now, GError **error);
G_GNUC_INTERNAL
gboolean tally_issuer_revoke_proven (Reconcile *rc,
                                     const guint8 register_id[static TALLY_ID_BYTES],
                                     GError **error);
G_GNUC_INTERNAL
gboolean tally_issuer_record_fraud_deficit (Reconcile *rc,
                                            const guint8 register_id[static TALLY_ID_BYTES],
                                            Tally__FraudKind kind,
                                            const Tally__SignedEnvelope *first,
                                            const Tally__SignedEnvelope *second,
                                            gint64 deficit,
                                            GError **error);
G_GNUC_INTERNAL
gboolean tally_issuer_record_fraud (Reconcile *rc,
                                    const guint8 register_id[static TALLY_ID_BYTES],
                                    Tally__FraudKind kind,
                                    const Tally__SignedEnvelope *first,
                                    const Tally__SignedEnvelope *second,
                                    GError **error);
G_GNUC_INTERNAL
gboolean tally_issuer_entries_at (Reconcile *rc,
                                  const guint8 register_id[static TALLY_ID_BYTES],
                                  guint64 counter,
                                  GPtrArray **rows,
                                  GError **error);
G_GNUC_INTERNAL
gboolean
tally_issuer_detect_fraud (Reconcile *rc, const Booking *b, gboolean *fraud, GError **error);
G_GNUC_INTERNAL
gboolean tally_issuer_prove_late_receipt (Reconcile *rc,
                                          const guint8 payee[static TALLY_ID_BYTES],
                                          const Tally__SignedEnvelope *receipt,
                                          GError **error);
G_GNUC_INTERNAL
gboolean tally_issuer_over_limit (Reconcile *rc,
                                  const guint8 payer[static TALLY_ID_BYTES],
                                  gint64 amount,
                                  gboolean *over,
                                  GError **error);
G_GNUC_INTERNAL
gboolean tally_issuer_prove_and_revoke (Reconcile *rc,
                                        const guint8 register_id[static TALLY_ID_BYTES],
                                        Tally__FraudKind kind,
                                        const Tally__SignedEnvelope *first,
                                        const Tally__SignedEnvelope *second,
                                        GError **error);
G_GNUC_INTERNAL
gboolean tally_issuer_taint_payee_half (Reconcile *rc,
                                        const Booking *b,
                                        TallyIssuerEntryRow *row,
                                        GError **error);

/* Meta key prefixes of answers kept for retries (tally-issuer-prune.c). */
#define TALLY_ISSUER_KEPT_RESULT_PREFIX  "reconciled:"
#define TALLY_ISSUER_KEPT_VOUCHER_PREFIX "voucher-request:"

/* The lost-register refund (tally-issuer-refund.c). */
G_GNUC_INTERNAL
gboolean tally_issuer_mark_lost (TallyIssuer *issuer,
                                 const guint8 register_id[static TALLY_ID_BYTES],
                                 guint64 now,
                                 GError **error);
/* Settles a refunded register's view against its account (what its
 * untainted evidence backs is paid out, what surfaced later is taken back,
 * the rest stays in the view, frozen): called on @row, read for the
 * change, after its view moved and before it is put. */
G_GNUC_INTERNAL
gboolean
tally_issuer_settle_refunded (TallyIssuer *issuer, TallyIssuerRegisterRow *row, GError **error);

/* Booking entries into the ledger (tally-issuer-book.c). */
G_GNUC_INTERNAL
gboolean tally_issuer_own_evidence_through (Reconcile *rc,
                                            const guint8 register_id[static TALLY_ID_BYTES],
                                            guint64 counter,
                                            gint64 *backed,
                                            GError **error);
G_GNUC_INTERNAL
gboolean tally_issuer_evidence_through (Reconcile *rc,
                                        const guint8 register_id[static TALLY_ID_BYTES],
                                        guint64 counter,
                                        gint64 *backed,
                                        GError **error);
G_GNUC_INTERNAL
gboolean tally_issuer_reclaim (Reconcile *rc, TallyIssuerEntryRow *row, GError **error);
G_GNUC_INTERNAL
gboolean tally_issuer_book (Reconcile *rc, const Booking *b, GError **error);

/* Bundle intake: verifying and parsing what a bundle lists
 * (tally-issuer-intake.c).  tally_issuer_verify_entries () runs before the
 * transaction, on what never changes: it checks every signature and fills
 * rc's vouchers, received and spent; the others book them inside it. */
G_GNUC_INTERNAL
gboolean tally_issuer_verify_entries (Reconcile *rc,
                                      const Tally__ReconciliationBundle *bundle,
                                      GError **error);
G_GNUC_INTERNAL
gboolean tally_issuer_book_spent (Reconcile *rc, GError **error);
G_GNUC_INTERNAL
gboolean tally_issuer_book_received (Reconcile *rc, GError **error);
G_GNUC_INTERNAL
gboolean tally_issuer_check_vouchers (Reconcile *rc,
                                      const Tally__ReconciliationBundle *bundle,
                                      GError **error);

/* Reconciliation (tally-issuer-reconcile.c). */
G_GNUC_INTERNAL
gboolean tally_issuer_add_hash_once (GPtrArray *hashes, const guint8 hash[static TALLY_HASH_BYTES]);

/* Certifying (tally-issuer-certify.c), inside a transaction. */
G_GNUC_INTERNAL
gboolean tally_issuer_check_limits (const char *currency,
                                    const Tally__Limits *limits,
                                    guint64 not_before,
                                    guint64 not_after,
                                    GError **error);
/* @register_id's row when @account owns it.  NOT_FOUND, the same answer,
 * for a register that does not exist and for another account's: an
 * account's holder learns nothing about other accounts' registers. */
G_GNUC_INTERNAL
gboolean tally_issuer_account_register_get (TallyIssuer *issuer,
                                            const char *account,
                                            const guint8 register_id[static TALLY_ID_BYTES],
                                            TallyIssuerRegisterRow *row,
                                            GError **error);
/* tally_issuer_account_create () inside the caller's transaction. */
G_GNUC_INTERNAL
gboolean tally_issuer_account_create_locked (TallyIssuer *issuer, const char *name, GError **error);
G_GNUC_INTERNAL
GBytes *tally_issuer_certify_locked (TallyIssuer *issuer,
                                     const guint8 register_key[static TALLY_PUBLIC_KEY_BYTES],
                                     const char *account,
                                     const char *display_name,
                                     const Tally__Limits *limits,
                                     guint64 not_before,
                                     guint64 not_after,
                                     GError **error);

G_END_DECLS
