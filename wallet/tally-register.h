/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A balance register (GNU Taler DD 30, approach 3).
 *
 * The register holds one Ed25519 key, the issuer's certificate for it, a
 * balance, a monotonic counter and a hash chain over its outgoing entries.
 * Every operation that changes value commits durably before it returns the
 * signed object that lets value leave the register: a permission after
 * spend, a receipt after receive, a defund record after defund.
 *
 * Backends implement TallyRegisterBackend; the soft backend keeps its state
 * in SQLite (WAL, synchronous=FULL) and its key in a 0600 file.  TPM or
 * secure-element backends plug in behind the same interface.
 *
 * Every function that takes a "now" takes seconds since the Unix epoch, so
 * tests control time.  Every failing call leaves the register unchanged.
 */

#include <glib.h>

#include "tally-core.h"

G_BEGIN_DECLS

typedef struct _TallyRegister TallyRegister;

/* The payee's own acceptance policy, on top of the payer's certified limits. */
typedef struct
{
  /* Refuse payers when our revocation list is older than this (seconds);
   * 0 disables the check. */
  guint64 max_revocation_age;
  /* Refuse single payments above this; 0 means no extra limit. */
  gint64 max_amount;
} TallyAcceptPolicy;

typedef enum
{
  TALLY_ENTRY_LOAD,
  TALLY_ENTRY_SPENT,
  TALLY_ENTRY_RECEIVED,
  TALLY_ENTRY_DEFUND,
} TallyEntryKind;

const char *tally_entry_kind_to_string (TallyEntryKind kind);

typedef enum
{
  TALLY_ENTRY_STATE_PENDING,      /* spent, no receipt yet */
  TALLY_ENTRY_STATE_ACKNOWLEDGED, /* spent and receipt held, or received */
  TALLY_ENTRY_STATE_SETTLED,      /* confirmed by the issuer */
  TALLY_ENTRY_STATE_RECLAIMED,    /* spent, expired unacknowledged: the issuer gave it back online */
} TallyEntryState;

const char *tally_entry_state_to_string (TallyEntryState state);

typedef struct
{
  TallyEntryKind kind;
  TallyEntryState state;
  gint64 amount;                 /* always positive */
  guint64 counter;               /* own counter (spent, defund) or payer's (received) */
  guint64 sequence;              /* voucher sequence (load) */
  guint64 time;
  char *peer;                    /* hex register id of the other side, or NULL */
  char *memo;                    /* payee side only, may be NULL */
  char *peer_name;               /* the peer's certified display name, or NULL */
  /* A payment's (spent, received) receipt id: hex of H("deposit-permission",
   * body), the permission hash its receipt signs; the same on both sides.
   * NULL for loads and defunds. */
  char *receipt_id;
} TallyHistoryEntry;

void tally_history_entry_free (TallyHistoryEntry *entry);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyHistoryEntry, tally_history_entry_free)

/*
 * Crash injection.  The backend calls the hook at every commit point with a
 * name such as "spend:before-commit" or "spend:after-commit"; the names are
 * listed by tally_register_commit_points().  A test hook typically _exit()s
 * in a forked child to prove the state on disk is whole either way.
 */
typedef void (*TallyCommitHook) (const char *point, gpointer user_data);
const char *const *tally_register_commit_points (void);

/* --- lifetime --- */

/* Creates a soft register in @dir (made if missing, mode 0700): a fresh key
 * pair in "register.key" (0600) and "register.db".  EXISTS if one is there. */
TallyRegister *tally_register_create (const char *dir,
                                      const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES],
                                      GError **error);
/* The same with no issuer yet: it holds nothing and takes no certificate,
 * voucher, revocation list or result until tally_register_set_issuer (). */
TallyRegister *tally_register_create_unbound (const char *dir, GError **error);
/* Opens an existing soft register. NOT_FOUND when @dir holds none. */
TallyRegister *tally_register_open (const char *dir, GError **error);
void tally_register_free (TallyRegister *reg);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyRegister, tally_register_free)

void tally_register_set_commit_hook (TallyRegister *reg, TallyCommitHook hook, gpointer user_data);

/* --- identity and state --- */

const guint8 *tally_register_get_public_key (TallyRegister *reg); /* 32 bytes */
const guint8 *tally_register_get_id (TallyRegister *reg);         /* 16 bytes */
/* 32 bytes; all zero while the register has no issuer. */
const guint8 *tally_register_get_issuer_key (TallyRegister *reg);
/* FALSE for a register made by tally_register_create_unbound () until it
 * is given an issuer. */
gboolean tally_register_has_issuer (TallyRegister *reg);
/*
 * Gives an unbound register its issuer: @key_set is the issuer's packed,
 * self-signed IssuerKeySet (tally-issuer key --out).  Whoever calls this
 * decides to trust that issuer; the register only checks that the set is
 * whole.  EXISTS once the register has an issuer (the same or another: an
 * issuer is never replaced), MALFORMED, BAD_SIGNATURE or WRONG_CONTEXT for
 * a bad set.
 */
gboolean tally_register_set_issuer (TallyRegister *reg,
                                    const guint8 *key_set,
                                    gsize len,
                                    GError **error);
/* The same from a trusted raw key (tallyd.conf's issuer_key). */
gboolean tally_register_set_issuer_key (TallyRegister *reg,
                                        const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES],
                                        GError **error);
char *tally_register_get_id_hex (TallyRegister *reg);

/* The statement a register signs to enrol with its issuer for @account
 * (docs/issuer-api.md, "Enrolment: proof of possession"). */
#define TALLY_ENROL_STATEMENT_DOMAIN "tally-enrol-v1"
/* The proof of possession: the register key's Ed25519 signature over
 * exactly "tally-enrol-v1" 0x00 || issuer public key || register public
 * key || @account (UTF-8, to the end), and nothing else.  WRONG_STATE
 * while the register trusts no issuer; INVALID_ARGUMENT for an empty
 * account or one that is not UTF-8 without control characters. */
gboolean tally_register_sign_enrolment (TallyRegister *reg,
                                        const char *account,
                                        guint8 proof[static TALLY_SIGNATURE_BYTES],
                                        GError **error);

/* Installs the issuer's certificate for this register's key (WRONG_REGISTER
 * for another key's, WRONG_ISSUER, CERT_EXPIRED...).  A newer serial
 * replaces the current one; an older one is refused with REPLAY. */
gboolean tally_register_install_certificate (TallyRegister *reg,
                                             const guint8 *cert,
                                             gsize len,
                                             guint64 now,
                                             GError **error);
/* Packed SignedEnvelope of the certificate, or NULL before one is installed. */
GBytes *tally_register_get_certificate (TallyRegister *reg);
/* Decoded certificate, owned by the register; NULL before one is installed. */
const Tally__RegisterCertificate *tally_register_get_certificate_info (TallyRegister *reg);

gint64 tally_register_get_balance (TallyRegister *reg);
/* Currency of the certificate; NULL before one is installed. */
const char *tally_register_get_currency (TallyRegister *reg);
guint64 tally_register_get_counter (TallyRegister *reg);
guint32 tally_register_get_offline_payments (TallyRegister *reg);
guint64 tally_register_get_last_reconciliation (TallyRegister *reg);
/* TRUE once a defund zeroed the register for good. */
gboolean tally_register_is_closed (TallyRegister *reg);
/* TRUE once a reconciliation result said the issuer revoked this register:
 * payees that hold the revocation list refuse it from then on. */
gboolean tally_register_is_revoked (TallyRegister *reg);

/* Revocation list gossip.  Serial 0 means none held. */
guint64 tally_register_get_revocation_serial (TallyRegister *reg);
guint64 tally_register_get_revocation_issued_at (TallyRegister *reg);
GBytes *tally_register_get_revocation_list (TallyRegister *reg); /* packed envelope or NULL */
/* TRUE when the revocation list we hold names @register_id. */
gboolean tally_register_revokes (TallyRegister *reg, const guint8 register_id[static TALLY_ID_BYTES]);
/* Stores @list when it verifies and is newer; an older or equal one is
 * ignored (TRUE).  Errors only for a bad list. */
gboolean tally_register_update_revocation_list (TallyRegister *reg,
                                                const Tally__SignedEnvelope *list,
                                                GError **error);

/* --- value --- */

/* How long a payment request, and the permission answering it, stays
 * acceptable (seconds).  Until then a permission that lost its receipt
 * may be delivered again; after it, and once the payee has reconciled,
 * the issuer gives it back to the payer (docs/protocol.md 4.4). */
#define TALLY_REQUEST_LIFETIME_DEFAULT 3600
/* A payer refuses requests that would keep its value in flight longer. */
#define TALLY_REQUEST_LIFETIME_MAX 86400

/* Lifetime of the requests this register makes from now on, 1 s to
 * TALLY_REQUEST_LIFETIME_MAX; not stored. */
void tally_register_set_request_lifetime (TallyRegister *reg, guint64 seconds);

/* Created_at of the newest bundle exported: no permission expiring at or
 * before it is accepted any more. */
guint64 tally_register_get_horizon (TallyRegister *reg);

/* Applies an issuer voucher once.  VOUCHER_REPLAY for a sequence at or below
 * the last applied one, WRONG_REGISTER, LIMIT_BALANCE past the cap. */
gboolean tally_register_load (TallyRegister *reg,
                              const guint8 *voucher,
                              gsize len,
                              guint64 now,
                              GError **error);

/* Payee: a request with a fresh single-use nonce, stored durably before it
 * is returned.  Returns a new PaymentRequest (free with
 * tally__payment_request__free_unpacked, or g_autoptr). */
Tally__PaymentRequest *tally_register_new_request (TallyRegister *reg,
                                                   gint64 amount,
                                                   const char *memo,
                                                   guint64 now,
                                                   GError **error);
/* The same in two steps, so that a payee stores the request (one durable
 * commit) only once a payer asks for it: prepare checks everything and
 * draws the nonce, storing nothing; store writes the nonce row.  A
 * prepared request that was never stored can be credited by nothing. */
Tally__PaymentRequest *tally_register_prepare_request (TallyRegister *reg,
                                                       gint64 amount,
                                                       const char *memo,
                                                       guint64 now,
                                                       GError **error);
/* Storing also drops the requests that expired by @request's created_at
 * and were never credited; credited ones stay, so a replay is refused. */
gboolean tally_register_store_request (TallyRegister *reg,
                                       const Tally__PaymentRequest *request,
                                       GError **error);

/* Payer: checks the payee certificate (issuer, validity, our revocation
 * list), the request (amount, currency, payee id, expiry: EXPIRED when
 * past, POLICY beyond TALLY_REQUEST_LIFETIME_MAX), our limits (per-payment,
 * offline count and time) and our balance, then debits, advances counter
 * and chain, commits, and returns the packed permission envelope. */
GBytes *tally_register_spend (TallyRegister *reg,
                              const Tally__SignedEnvelope *payee_certificate,
                              const Tally__PaymentRequest *request,
                              guint64 now,
                              GError **error);

/* Payer: our oldest permission to @payee_id that has no receipt, is not
 * expired at @now and was not given back: the one to deliver again.
 * NOT_FOUND when there is none. */
GBytes *tally_register_get_pending (TallyRegister *reg,
                                    const guint8 payee_id[static TALLY_ID_BYTES],
                                    guint64 now,
                                    GError **error);

/* Payer: stores the payee's receipt for our permission at @counter.
 * BAD_SIGNATURE, NOT_FOUND, MALFORMED when it does not match. Idempotent. */
gboolean tally_register_acknowledge (TallyRegister *reg,
                                     const Tally__SignedEnvelope *receipt,
                                     GError **error);

/* Payee: verifies issuer -> certificate -> permission offline (expiry,
 * revocation, payer limits, our nonce, amount and currency of the request
 * the nonce belongs to, duplicates, our balance cap and @policy), credits,
 * consumes the nonce, commits, and returns the packed receipt envelope.
 * A permission expired at @now, or at or before our horizon, is EXPIRED;
 * one received before is REPLAY.  With @request_nonce, the permission must
 * answer that request, the one offered in the session (WRONG_NONCE
 * otherwise); NULL accepts any open request of ours. */
GBytes *tally_register_receive (TallyRegister *reg,
                                const Tally__SignedEnvelope *payer_certificate,
                                const Tally__SignedEnvelope *permission,
                                const guint8 request_nonce[TALLY_NONCE_BYTES],
                                const TallyAcceptPolicy *policy,
                                guint64 now,
                                GError **error);

/* Payee: the same for a permission delivered again because its receipt
 * may have been lost.  When we received exactly this permission before, it
 * returns that receipt and changes nothing; otherwise it receives it as
 * above. */
GBytes *tally_register_receive_again (TallyRegister *reg,
                                      const Tally__SignedEnvelope *payer_certificate,
                                      const Tally__SignedEnvelope *permission,
                                      const TallyAcceptPolicy *policy,
                                      guint64 now,
                                      GError **error);

/* Payer: TRUE when @peer_id acknowledged a payment made with our current
 * certificate, so the payee has it cached and its hash can stand in. */
gboolean tally_register_peer_has_certificate (TallyRegister *reg,
                                              const guint8 peer_id[static TALLY_ID_BYTES]);

/* Payee: a payer certificate cached when a payment was received, by its
 * H("register-certificate", body).  NOT_FOUND when not cached. */
Tally__SignedEnvelope *tally_register_lookup_certificate (TallyRegister *reg,
                                                          const guint8 hash[static TALLY_HASH_BYTES],
                                                          GError **error);

/* Signs a handshake transcript hash with the register key: only the
 * HANDSHAKE_OFFER and HANDSHAKE_PAY contexts. */
void tally_register_sign (TallyRegister *reg,
                          Tally__SignatureContext ctx,
                          const guint8 *data,
                          gsize len,
                          guint8 signature[static TALLY_SIGNATURE_BYTES]);

/* --- reconciliation --- */

/* Packed SignedEnvelope of a ReconciliationBundle with every unsettled
 * entry, pending permissions included.  Commits the horizon (the larger
 * of @now and the current one) before the bundle exists. */
GBytes *tally_register_export_bundle (TallyRegister *reg, guint64 now, GError **error);

/* Applies the issuer's signed result: stores the payees' receipts it
 * returns, marks the permissions it gave back RECLAIMED, settles entries,
 * stores the revocation list and renewed certificate, resets the offline
 * counters. */
gboolean tally_register_apply_result (TallyRegister *reg,
                                      const guint8 *result,
                                      gsize len,
                                      guint64 now,
                                      GError **error);

/* Moves the whole balance back online: commits a signed DefundRecord taking
 * the next counter, zeroes and closes the register, returns the record. */
GBytes *tally_register_defund (TallyRegister *reg, guint64 now, GError **error);

/* Newest first; at most @limit entries (0: all). */
GPtrArray *tally_register_get_history (TallyRegister *reg, guint limit, GError **error);

G_END_DECLS
