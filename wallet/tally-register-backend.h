/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Storage and key backends of a TallyRegister.
 *
 * The register's operation files (tally-register.c, -spend.c, -receive.c,
 * -reconcile.c) hold every protocol decision; a backend stores rows,
 * holds the register key and signs with it.  All row operations run inside
 * a transaction opened with begin(); the caller commits once per register
 * operation.  Every failure is TALLY_ERROR_STORAGE unless noted.
 */

#include <glib.h>

#include "tally-core.h"
#include "tally-register.h"

G_BEGIN_DECLS

/* The persisted scalar state of a register: one row. */
typedef struct
{
  guint8 public_key[TALLY_PUBLIC_KEY_BYTES];
  guint8 issuer_key[TALLY_PUBLIC_KEY_BYTES];
  GBytes *certificate; /* packed envelope, NULL before the first one */
  gint64 balance;
  guint64 counter;
  guint8 chain_head[TALLY_HASH_BYTES];
  guint32 offline_payments;
  guint64 last_reconciliation;
  guint64 last_voucher_sequence;
  GBytes *revocation_list; /* packed envelope or NULL */
  guint64 revocation_serial;
  guint64 revocation_issued_at;
  guint64 last_result_at;
  gboolean closed;
  gboolean revoked;
  /* Created_at of the newest bundle exported: no permission expiring at or
   * before it is accepted any more (docs/protocol.md 4.4). */
  guint64 horizon;
} TallyRegisterState;

/* State of a fresh register: counter 0, chain at genesis, nothing held.
 * Implemented by tally-register.c; backends call it from create(). */
void tally_register_state_init (TallyRegisterState *state,
                                const guint8 public_key[static TALLY_PUBLIC_KEY_BYTES],
                                const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES]);
void tally_register_state_copy (TallyRegisterState *dst, const TallyRegisterState *src);
void tally_register_state_clear (TallyRegisterState *state);

/* An outgoing entry: a deposit permission (TALLY_ENTRY_SPENT) or a defund
 * record (TALLY_ENTRY_DEFUND), keyed by our counter. */
typedef struct
{
  guint64 counter;
  TallyEntryKind kind;
  GBytes *envelope;
  gboolean has_payee; /* FALSE for a defund */
  guint8 payee_id[TALLY_ID_BYTES];
  guint8 payee_key[TALLY_PUBLIC_KEY_BYTES];
  gint64 amount;
  guint64 created_at;
  GBytes *receipt; /* NULL until acknowledged */
  TallyEntryState state;
  guint64 expires_at; /* of the permission; 0 for a defund */
  /* H("register-certificate", body) of our certificate when the
   * permission was made: the one it travels with, which its payee caches. */
  gboolean has_certificate_hash;
  guint8 certificate_hash[TALLY_HASH_BYTES];
  char *payee_name; /* the payee's certified display name, or NULL */
} TallySpentRow;

/* An incoming payment, keyed by (payer id, payer counter). */
typedef struct
{
  guint8 payer_id[TALLY_ID_BYTES];
  guint64 payer_counter;
  GBytes *permission;
  GBytes *payer_certificate;
  GBytes *receipt;
  gint64 amount;
  char *memo;
  guint64 received_at;
  guint8 permission_hash[TALLY_HASH_BYTES];
  guint8 nonce[TALLY_NONCE_BYTES];
  TallyEntryState state;
} TallyReceivedRow;

/* A payment request we issued as payee. */
typedef struct
{
  guint8 nonce[TALLY_NONCE_BYTES];
  gint64 amount;
  char *currency;
  char *memo;
  guint64 created_at;
  gboolean consumed;
  guint64 consumed_at;
  guint64 expires_at;
} TallyNonceRow;

/* An applied load voucher. */
typedef struct
{
  guint64 sequence;
  GBytes *envelope;
  gint64 amount;
  guint64 applied_at;
  TallyEntryState state;
} TallyLoadRow;

void tally_spent_row_clear (TallySpentRow *row);
void tally_spent_row_free (TallySpentRow *row);
void tally_received_row_free (TallyReceivedRow *row);
void tally_nonce_row_clear (TallyNonceRow *row);
void tally_nonce_row_free (TallyNonceRow *row);
void tally_load_row_free (TallyLoadRow *row);

typedef struct _TallyRegisterBackend TallyRegisterBackend;

struct _TallyRegisterBackend
{
  const char *name;

  /* --- lifetime --- */

  /* Makes @dir (0700), generates the register key and stores a fresh
   * register bound to @issuer_key.  EXISTS when @dir already holds one. */
  gpointer (*create) (const char *dir,
                      const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES],
                      GError **error);
  /* NOT_FOUND when @dir holds no register. */
  gpointer (*open) (const char *dir, GError **error);
  void (*close) (gpointer store);

  /* --- key --- */

  /* Makes the register key usable and returns its public half. */
  gboolean (*load_key) (gpointer store, guint8 public_key[static TALLY_PUBLIC_KEY_BYTES], GError **error);
  /* Packed SignedEnvelope over @body. */
  GBytes *(*sign_envelope) (gpointer store,
                            Tally__SignatureContext ctx,
                            const guint8 *body,
                            gsize body_len);
  void (*sign_detached) (gpointer store,
                         Tally__SignatureContext ctx,
                         const guint8 *data,
                         gsize len,
                         guint8 signature[static TALLY_SIGNATURE_BYTES]);
  /* Ed25519 over @statement as it is: only ever the enrolment statement
   * tally_register_sign_enrolment () built ("tally-enrol-v1" 0x00 ...),
   * which no context label of sign_detached () can produce. */
  void (*sign_enrolment) (gpointer store,
                          const guint8 *statement,
                          gsize len,
                          guint8 signature[static TALLY_SIGNATURE_BYTES]);

  /* --- transactions --- */

  /* @write: take the write lock now rather than at the first write. */
  gboolean (*begin) (gpointer store, gboolean write, GError **error);
  gboolean (*commit) (gpointer store, GError **error);
  /* Harmless when no transaction is open. */
  void (*rollback) (gpointer store);

  /* --- rows --- */

  gboolean (*state_read) (gpointer store, TallyRegisterState *state, GError **error);
  gboolean (*state_write) (gpointer store, const TallyRegisterState *state, GError **error);

  gboolean (*spent_insert) (gpointer store, const TallySpentRow *row, GError **error);
  /* *found is FALSE (and @row untouched) when no entry has @counter. */
  gboolean (*spent_lookup) (gpointer store,
                            guint64 counter,
                            TallySpentRow *row,
                            gboolean *found,
                            GError **error);
  gboolean (*spent_set_receipt) (gpointer store,
                                 guint64 counter,
                                 GBytes *receipt,
                                 TallyEntryState state,
                                 GError **error);
  /* Settles every defund and every acknowledged permission up to @counter;
   * a permission without a receipt stays pending. */
  gboolean (*spent_settle_through) (gpointer store, guint64 counter, GError **error);
  /* TallySpentRow *, counter order: pending and acknowledged entries. */
  GPtrArray *(*spent_list_unsettled) (gpointer store, GError **error);
  gboolean (*spent_set_state) (gpointer store,
                               guint64 counter,
                               TallyEntryState state,
                               GError **error);
  /* The oldest pending permission to @payee_id that expires after @now;
   * *found is FALSE when there is none. */
  gboolean (*spent_find_pending) (gpointer store,
                                  const guint8 payee_id[static TALLY_ID_BYTES],
                                  guint64 now,
                                  TallySpentRow *row,
                                  gboolean *found,
                                  GError **error);

  gboolean (*received_insert) (gpointer store, const TallyReceivedRow *row, GError **error);
  /* *same_permission when @permission_hash is stored; *counter_used when
   * another permission of @payer_id with @payer_counter is. */
  gboolean (*received_find) (gpointer store,
                             const guint8 payer_id[static TALLY_ID_BYTES],
                             guint64 payer_counter,
                             const guint8 permission_hash[static TALLY_HASH_BYTES],
                             gboolean *same_permission,
                             gboolean *counter_used,
                             GError **error);
  gboolean (*received_settle) (gpointer store,
                               const guint8 permission_hash[static TALLY_HASH_BYTES],
                               GError **error);
  /* TallyReceivedRow *, arrival order. */
  GPtrArray *(*received_list_unsettled) (gpointer store, GError **error);
  /* Our receipt for the permission with @permission_hash; NOT_FOUND when
   * it was never received. */
  GBytes *(*received_get_receipt) (gpointer store,
                                   const guint8 permission_hash[static TALLY_HASH_BYTES],
                                   GError **error);

  gboolean (*nonce_insert) (gpointer store, const TallyNonceRow *row, GError **error);
  gboolean (*nonce_lookup) (gpointer store,
                            const guint8 nonce[static TALLY_NONCE_BYTES],
                            TallyNonceRow *row,
                            gboolean *found,
                            GError **error);
  gboolean (*nonce_consume) (gpointer store,
                             const guint8 nonce[static TALLY_NONCE_BYTES],
                             guint64 now,
                             GError **error);
  /* TallyNonceRow *, creation order. */
  GPtrArray *(*nonce_list) (gpointer store, GError **error);
  /* Drops the requests never credited whose expiry is at or before @now:
   * nothing can be credited against them any more.  Credited ones stay,
   * so that a permission delivered again is still known. */
  gboolean (*nonces_prune) (gpointer store, guint64 now, GError **error);

  gboolean (*load_insert) (gpointer store, const TallyLoadRow *row, GError **error);
  /* Loads whose voucher sequence is at most @sequence become settled. */
  gboolean (*loads_settle_through) (gpointer store, guint64 sequence, GError **error);
  /* TallyLoadRow *, sequence order. */
  GPtrArray *(*loads_list_unsettled) (gpointer store, GError **error);

  /* Certificate cache by H("register-certificate", body); keeping an
   * existing entry is not an error. */
  gboolean (*certificate_put) (gpointer store,
                               const guint8 hash[static TALLY_HASH_BYTES],
                               GBytes *envelope,
                               guint64 not_after,
                               GError **error);
  /* NOT_FOUND when not cached. */
  GBytes *(*certificate_get) (gpointer store, const guint8 hash[static TALLY_HASH_BYTES], GError **error);
  /* Which of our certificates a peer is known to hold. */
  gboolean (*peer_put) (gpointer store,
                        const guint8 peer_id[static TALLY_ID_BYTES],
                        const guint8 our_certificate[static TALLY_HASH_BYTES],
                        GError **error);
  gboolean (*peer_get) (gpointer store,
                        const guint8 peer_id[static TALLY_ID_BYTES],
                        guint8 our_certificate[static TALLY_HASH_BYTES],
                        gboolean *found,
                        GError **error);

  /* TallyHistoryEntry *, newest first; @limit 0 means all. */
  GPtrArray *(*history) (gpointer store, guint limit, GError **error);
};

extern const TallyRegisterBackend tally_register_soft_backend;

G_END_DECLS
