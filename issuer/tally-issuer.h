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
 * Storage sits behind TallyIssuerStore (tally-issuer-store.h): SQLite by
 * default, or PostgreSQL (docs/issuer-store.md).  "now" arguments are
 * seconds since the Unix epoch.
 */

#include <glib.h>

#include "tally-core.h"

G_BEGIN_DECLS

typedef struct _TallyIssuer TallyIssuer;

/*
 * The audit (protocol.md 5.4, 5.5).  Every figure is summed from the ledger;
 * the identity
 *
 *   issued + fraud_exposure = online + offline + in_flight
 *
 * holds whatever registers send.  fraud_exposure is value revoked registers
 * spent that their evidence does not back, now held by others.
 */
typedef struct
{
  gint64 issued;         /* all value ever deposited into the system */
  gint64 online;         /* sum of online account balances */
  gint64 offline;        /* registers' views; a revoked register's only when positive */
  gint64 in_flight;      /* permissions reported by payers, not yet by payees */
  gint64 fraud_exposure; /* revoked registers' spending beyond their evidence */
  gint64 awaiting;       /* negative views of registers not revoked: spending whose
                          * backing payments their own bundles have yet to book */
  gint64 refused;        /* defunded value claimed beyond evidence, never credited */
  gint64 reclaimed;      /* expired permissions returned to payers' accounts */
  guint64 reclaimed_count;
  guint registers;
  guint revoked;
  guint fraud_proofs;
  guint views_unbacked; /* registers whose view is not what their evidence sums to */
  gboolean identity;    /* the identity above holds, and every view matches its evidence */
  gboolean balanced;    /* identity, and neither exposure nor anything awaiting */
} TallyAudit;

/* One register the audit names: revoked, refused value, or a negative view. */
typedef struct
{
  guint8 register_id[TALLY_ID_BYTES];
  char *account;
  gboolean revoked;
  gint64 view;
  gint64 exposure;
  gint64 awaiting;
  gint64 refused;
  gint64 deficit;      /* largest deficit an OVERDRAWN proof showed */
  guint proofs;        /* fraud proofs naming it */
  guint32 proof_kinds; /* bit (1 << Tally__FraudKind) for each kind among them */
  guint64 lost_at;     /* when its owner reported it lost; 0: never */
  guint64 refund_due;  /* tally_issuer_lost_refund_due (); 0 when not lost */
  guint64 refunded_at; /* 0: not refunded (yet) */
  gint64 refunded;     /* paid out to its account by the lost-register refund */
  gint64 recovered;    /* taken back from the account for value that surfaced later */
} TallyAuditRegister;

typedef struct
{
  guint spent_new;       /* entries newly booked */
  guint received_new;
  guint duplicates;      /* entries already booked (idempotent re-send) */
  guint defunds;
  guint fraud_proofs;
  guint late_receipts; /* payee halves of permissions already reclaimed */
  gint64 refused;      /* defunded value this bundle claimed beyond its evidence */
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
/* The same with the store @store names (tally_issuer_store_open ()):
 * NULL or "sqlite" for "issuer.db" in @dir, or "postgresql:CONNINFO",
 * which "issuer.conf" (0600) in @dir records as "[issuer] store=...".
 * EXISTS also when that store already holds an issuer. */
TallyIssuer *tally_issuer_create_with_store (const char *dir,
                                             const char *store,
                                             const char *name,
                                             const char *currency,
                                             guint64 now,
                                             GError **error);
/* Opens the store "issuer.conf" in @dir names, "issuer.db" without it. */
TallyIssuer *tally_issuer_open (const char *dir, GError **error);
void tally_issuer_free (TallyIssuer *issuer);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyIssuer, tally_issuer_free)

const guint8 *tally_issuer_get_public_key (TallyIssuer *issuer);
const char *tally_issuer_get_currency (TallyIssuer *issuer);
/* Packed SignedEnvelope of the self-signed IssuerKeySet. */
GBytes *tally_issuer_get_key_set (TallyIssuer *issuer);
/* TRUE on the embedded SQLite store (one writer at a time, one process);
 * FALSE on PostgreSQL, which several processes may share. */
gboolean tally_issuer_is_embedded (TallyIssuer *issuer);

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

/* --- online accounts (tally-issuer-online.c, docs/issuer-api.md) --- */

#define TALLY_ACCOUNT_TOKEN_BYTES 32
#define TALLY_ENROL_DOMAIN        "tally-enrol-v1"

/* Makes a new random bearer token for @account and returns it in @token;
 * only its hash is stored, and it replaces any token the account had.
 * NOT_FOUND for an unknown account. */
gboolean tally_issuer_account_token_new (TallyIssuer *issuer,
                                         const char *account,
                                         guint8 token[static TALLY_ACCOUNT_TOKEN_BYTES],
                                         GError **error);
/* NOT_AUTHORIZED unless @token is @account's current token (compared in
 * constant time).  The same error whether the account exists or not. */
gboolean tally_issuer_account_token_check (TallyIssuer *issuer,
                                           const char *account,
                                           const guint8 *token,
                                           gsize len,
                                           GError **error);
/* The display name registers enrolled for @account get (NULL: none). */
gboolean tally_issuer_account_set_display_name (TallyIssuer *issuer,
                                                const char *account,
                                                const char *display_name,
                                                GError **error);
/* tally_issuer_account_create (), tally_issuer_account_set_display_name ()
 * (@display_name may be NULL) and tally_issuer_account_token_new () in one
 * transaction: the account is made with both, or not at all. */
gboolean tally_issuer_account_create_with_token (TallyIssuer *issuer,
                                                 const char *name,
                                                 const char *display_name,
                                                 guint8 token[static TALLY_ACCOUNT_TOKEN_BYTES],
                                                 GError **error);
/* The statement an enrolling register signs with its own key to prove it
 * holds it:  "tally-enrol-v1" 0x00 || issuer public key (32) ||
 * register public key (32) || account name (UTF-8, to the end). */
GBytes *tally_issuer_enrol_statement (TallyIssuer *issuer,
                                      const guint8 register_key[static TALLY_PUBLIC_KEY_BYTES],
                                      const char *account);
/* Certifies a new register for @account once @proof, an Ed25519 signature
 * by @register_key over tally_issuer_enrol_statement (), verifies; the
 * certificate carries the account's display name.  The same enrolment
 * again (a register whose answer was lost) certifies the same register
 * anew and sets *@renewed (may be NULL).  BAD_SIGNATURE for a wrong
 * proof; REPLAY when the key is enrolled for another account; REVOKED
 * when its register is revoked.  Returns the packed certificate. */
GBytes *tally_issuer_enrol (TallyIssuer *issuer,
                            const char *account,
                            const guint8 register_key[static TALLY_PUBLIC_KEY_BYTES],
                            const guint8 proof[static TALLY_SIGNATURE_BYTES],
                            const Tally__Limits *limits,
                            guint64 now,
                            guint64 not_after,
                            gboolean *renewed,
                            GError **error);

/* Certifies @register_key for @account; returns the packed certificate.
 * @display_name (NULL or "" for none) is the name payers see, e.g. a
 * stall's trading name; INVALID_ARGUMENT unless tally_display_name_check()
 * accepts it.  The register row keeps it, so the certificates renewed at
 * reconciliation carry it too; certifying again replaces it. */
GBytes *tally_issuer_certify (TallyIssuer *issuer,
                              const guint8 register_key[static TALLY_PUBLIC_KEY_BYTES],
                              const char *account,
                              const char *display_name,
                              const Tally__Limits *limits,
                              guint64 not_before,
                              guint64 not_after,
                              GError **error);

/* Debits the register's account and returns a packed voucher with the next
 * sequence for that register. */
GBytes *tally_issuer_sell_voucher (TallyIssuer *issuer,
                                   const guint8 register_id[static TALLY_ID_BYTES],
                                   gint64 amount,
                                   guint64 now,
                                   GError **error);

/* tally_issuer_sell_voucher () for a caller that speaks for @account:
 * NOT_FOUND unless the register is certified for that account (the same
 * answer as for a register that does not exist).
 * @request_id, chosen at random by the caller, makes the purchase safe to
 * retry: the voucher is kept under it in the transaction that sold it, and
 * the same request again returns the same voucher bytes without debiting
 * the account again (@repeated, may be NULL).  REPLAY when the id was used
 * for another register or amount. */
#define TALLY_VOUCHER_REQUEST_ID_BYTES 16
GBytes *tally_issuer_sell_voucher_to_account (
  TallyIssuer *issuer,
  const char *account,
  const guint8 register_id[static TALLY_ID_BYTES],
  gint64 amount,
  const guint8 request_id[static TALLY_VOUCHER_REQUEST_ID_BYTES],
  guint64 now,
  gboolean *repeated,
  GError **error);

/* Verifies and books a packed bundle envelope; returns the packed result
 * envelope.  Idempotent for entries already booked. */
GBytes *tally_issuer_reconcile (TallyIssuer *issuer,
                                const guint8 *bundle,
                                gsize len,
                                guint64 now,
                                TallyReconcileReport *report,
                                GError **error);

/* Like tally_issuer_reconcile (), but the same bundle always gets the same
 * result bytes: the first result is kept, keyed by the hash of the
 * envelope's signed body (however the envelope around it is encoded), in
 * the transaction that booked it, and a bundle seen before is answered
 * from there, once its signatures check, without booking anything.
 * @repeated (may be NULL) tells which happened.  This is what a device
 * that lost a response retries against. */
GBytes *tally_issuer_reconcile_once (TallyIssuer *issuer,
                                     const guint8 *bundle,
                                     gsize len,
                                     guint64 now,
                                     gboolean *repeated,
                                     GError **error);

gboolean tally_issuer_revoke (TallyIssuer *issuer,
                              const guint8 register_id[static TALLY_ID_BYTES],
                              guint64 now,
                              GError **error);
/* The owner of @account reports its register lost or stolen: revoked at
 * once, so the next revocation list carries it to every payee (doing it
 * again changes nothing, and does not move the refund).  NOT_FOUND for
 * another account's register, as for one that does not exist.
 * tally_issuer_refund_lost () refunds its balance once its lost-register
 * window has passed. */
gboolean tally_issuer_report_lost (TallyIssuer *issuer,
                                   const char *account,
                                   const guint8 register_id[static TALLY_ID_BYTES],
                                   guint64 now,
                                   GError **error);
/*
 * The lost-register refund (tally-issuer-refund.c, docs/threat-model.md).
 *
 * The lost-register window: a register reported lost at L gets no
 * certificate after L (a revoked register gets no renewal), so every
 * certificate it holds, the newest or any older one of a longer validity,
 * expires by E, the latest not_after of any certificate the issuer ever
 * issued to it (kept in the register's row), and payees refuse the
 * register from then on, whatever gossip reached them.  A permission it
 * signed before lives at most TALLY_ISSUER_PERMISSION_LIFETIME_MAX (payers
 * refuse longer ones, payees never ask for them: docs/protocol.md 3), so
 * from
 *
 *   refund_due = max (L, E) + TALLY_ISSUER_PERMISSION_LIFETIME_MAX
 *
 * on, no payment of the register is open anywhere: every one is booked or
 * held by a payee that has not reconciled yet.  The window ignores
 * max_offline_seconds: that limit binds only the payer's own register,
 * which a thief with root does not run honestly.
 */
#define TALLY_ISSUER_PERMISSION_LIFETIME_MAX 86400
guint64 tally_issuer_lost_refund_due (guint64 lost_at, guint64 not_after_ever);

typedef struct
{
  guint refunded;         /* registers refunded by this call */
  gint64 refunded_amount; /* what they paid out to their accounts */
  guint waiting;          /* registers reported lost, window not passed yet */
  guint64 next_due;       /* the earliest refund_due among those; 0 for none */
  guint failed;           /* registers whose refund failed (logged), tried again next run */
} TallyRefundReport;

/* For every register reported lost whose window has passed by @now and
 * that was not refunded yet: pays the issuer's view of its balance (never
 * less than zero, never what the register claims) into its account and
 * marks it refunded, in one store transaction a register, so a register is
 * refunded once however often, and however interrupted, this runs.  A
 * register whose refund fails (its account would pass TALLY_AMOUNT_MAX)
 * is skipped, logged and counted in @report's failed, and blocks no
 * other; a storage error stops the run with FALSE.  Value
 * that surfaces against a refunded register later is taken back from the
 * account as it is booked, up to what the refund paid out; the rest is
 * exposure.  @report may be NULL. */
gboolean tally_issuer_refund_lost (TallyIssuer *issuer,
                                   guint64 now,
                                   TallyRefundReport *report,
                                   GError **error);

/*
 * Answers kept only for retries (docs/issuer-api.md): the result of every
 * bundle tally_issuer_reconcile_once () booked, and every voucher
 * tally_issuer_sell_voucher_to_account () sold under a request id.
 * tally_issuer_prune_kept () deletes those signed more than @keep_seconds
 * before @now, 500 rows a transaction.  A bundle sent again after that is
 * booked again as duplicates (nothing moves twice) and gets a new result; a
 * request id seen again after that buys a new voucher, so a client must not
 * retry a purchase for that long.  TALLY_ISSUER_KEEP_DEFAULT is 90 days,
 * far beyond a device's certificate validity (7 days by default), within
 * which it syncs, and so retries, or stops paying.
 */
#define TALLY_ISSUER_KEEP_DEFAULT (90 * 86400)

typedef struct
{
  guint pruned;  /* rows deleted */
  guint kept;    /* rows younger than the cut */
  guint undated; /* rows whose envelope does not decode: kept */
} TallyPruneReport;

gboolean tally_issuer_prune_kept (TallyIssuer *issuer,
                                  guint64 now,
                                  guint64 keep_seconds,
                                  TallyPruneReport *report,
                                  GError **error);

/* Packed, signed current revocation list (serial 1 from creation on). */
GBytes *tally_issuer_get_revocation_list (TallyIssuer *issuer, GError **error);
/* Packed fraud proof envelopes. */
GPtrArray *tally_issuer_get_fraud_proofs (TallyIssuer *issuer, GError **error);
/* "counter-reused", "chain-fork", "late-receipt", "overdrawn"; "unknown" otherwise. */
const char *tally_issuer_fraud_kind_to_string (Tally__FraudKind kind);

gboolean tally_issuer_audit (TallyIssuer *issuer, TallyAudit *audit, GError **error);
/* TallyAuditRegister rows in register id order; each traced to its proofs. */
GPtrArray *tally_issuer_audit_registers (TallyIssuer *issuer, GError **error);

/*
 * Crash injection, for tests only.  A reconciliation and a voucher sale call
 * the hook at every step that touches the store: before the transaction
 * (a reconciliation also once every signature of its bundle verified, still
 * before the transaction), after each group of writes, after the commit
 * and, from the HTTP service, once the answer is sent.  The names ("reconcile:begin", ...,
 * "voucher:answered") are listed by tally_issuer_commit_points().  A test
 * hook kills the process there (tally-issuerd: TALLY_ISSUER_CRASH_AT) to
 * prove that a retry books nothing twice and loses nothing.
 */
typedef enum
{
  TALLY_ISSUER_POINT_RECONCILE_BEGIN,
  TALLY_ISSUER_POINT_RECONCILE_VERIFIED,
  TALLY_ISSUER_POINT_RECONCILE_RECEIVED_BOOKED,
  TALLY_ISSUER_POINT_RECONCILE_SPENT_BOOKED,
  TALLY_ISSUER_POINT_RECONCILE_HORIZON_RAISED,
  TALLY_ISSUER_POINT_RECONCILE_TOTALS_WRITTEN,
  TALLY_ISSUER_POINT_RECONCILE_REGISTER_WRITTEN,
  TALLY_ISSUER_POINT_RECONCILE_RESULT_KEPT,
  TALLY_ISSUER_POINT_RECONCILE_COMMITTED,
  TALLY_ISSUER_POINT_RECONCILE_ANSWERED,
  TALLY_ISSUER_POINT_VOUCHER_BEGIN,
  TALLY_ISSUER_POINT_VOUCHER_SOLD,
  TALLY_ISSUER_POINT_VOUCHER_REQUEST_KEPT,
  TALLY_ISSUER_POINT_VOUCHER_COMMITTED,
  TALLY_ISSUER_POINT_VOUCHER_ANSWERED,
} TallyIssuerCommitPoint;

typedef void (*TallyIssuerCommitHook) (const char *point, gpointer user_data);

/* Every point's name in enum order, NULL-terminated. */
const char *const *tally_issuer_commit_points (void);
const char *tally_issuer_commit_point_to_string (TallyIssuerCommitPoint point);
/* @hook NULL: none (the default). */
void
tally_issuer_set_commit_hook (TallyIssuer *issuer, TallyIssuerCommitHook hook, gpointer user_data);
/* Calls the hook, if any, at @point. */
void tally_issuer_commit_point (TallyIssuer *issuer, TallyIssuerCommitPoint point);

G_END_DECLS
