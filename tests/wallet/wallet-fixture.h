/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Test support for anything that needs registers: an in-test issuer that
 * signs certificates, vouchers, revocation lists and reconciliation
 * results, registers in temporary directories, and a textual dump of a
 * register's whole observable state for "nothing changed" assertions.
 */

#include <glib.h>

#include "tally-core.h"
#include "tally-register.h"

G_BEGIN_DECLS

/* A fixed "now" for tests: 2023-11-14T22:13:20Z. */
#define FIXTURE_NOW      ((guint64) 1700000000)
#define FIXTURE_CURRENCY "EUR"
#define FIXTURE_YEAR     ((guint64) 365 * 24 * 3600)

/* Limits of fixture_register_new() when none are given. */
#define FIXTURE_MAX_PAYMENT          5000
#define FIXTURE_BALANCE_CAP          100000
#define FIXTURE_MAX_OFFLINE_PAYMENTS 5
#define FIXTURE_MAX_OFFLINE_SECONDS  ((guint64) 7 * 24 * 3600)

typedef struct _FixtureIssuer FixtureIssuer;

FixtureIssuer *fixture_issuer_new (const char *currency);
void fixture_issuer_free (FixtureIssuer *issuer);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FixtureIssuer, fixture_issuer_free)

const guint8 *fixture_issuer_public_key (FixtureIssuer *issuer);
const char *fixture_issuer_currency (FixtureIssuer *issuer);

/* The default limits above. */
Tally__Limits fixture_limits (void);

/* The issuer's packed, self-signed IssuerKeySet. */
GBytes *fixture_issuer_key_set (FixtureIssuer *issuer);

/* Signs @body (any bytes) as @ctx with the issuer key. */
GBytes *fixture_issuer_sign (FixtureIssuer *issuer, Tally__SignatureContext ctx, GBytes *body);

/* A RegisterCertificate for @register_key in the issuer's currency. */
GBytes *fixture_certify (FixtureIssuer *issuer,
                         const guint8 register_key[TALLY_PUBLIC_KEY_BYTES],
                         const Tally__Limits *limits,
                         guint64 not_before,
                         guint64 not_after,
                         guint64 serial);
GBytes *fixture_certify_currency (FixtureIssuer *issuer,
                                  const guint8 register_key[TALLY_PUBLIC_KEY_BYTES],
                                  const char *currency,
                                  const Tally__Limits *limits,
                                  guint64 not_before,
                                  guint64 not_after,
                                  guint64 serial);

/* The same in the issuer's currency, carrying @display_name. */
GBytes *fixture_certify_named (FixtureIssuer *issuer,
                               const guint8 register_key[TALLY_PUBLIC_KEY_BYTES],
                               const char *display_name,
                               const Tally__Limits *limits,
                               guint64 not_before,
                               guint64 not_after,
                               guint64 serial);

GBytes *fixture_voucher (FixtureIssuer *issuer,
                         const guint8 register_id[TALLY_ID_BYTES],
                         guint64 sequence,
                         gint64 amount,
                         const char *currency);

/* Revocation list naming the NULL-terminated 16-byte register ids. */
GBytes *fixture_revocation_list (FixtureIssuer *issuer, guint64 serial, guint64 issued_at, ...)
  G_GNUC_NULL_TERMINATED;

typedef struct
{
  const guint8 *register_id;
  guint64 settled_counter;
  const guint8 *const *settled_received; /* permission hashes, 32 bytes each */
  gsize n_settled_received;
  GBytes *revocation_list;               /* packed envelope or NULL */
  GBytes *renewed_certificate;           /* packed envelope or NULL */
  guint64 reconciled_at;
  gboolean revoked;
  guint64 settled_voucher_sequence;
  GBytes *const *receipts;               /* packed receipt envelopes returned to the payer */
  gsize n_receipts;
  const guint8 *const *reclaimed;        /* permission hashes given back, 32 bytes each */
  gsize n_reclaimed;
} FixtureResult;

GBytes *fixture_result (FixtureIssuer *issuer, const FixtureResult *result);

/* Signs @body as @ctx with a register's key under any context, as a
 * compromised register could (tally_register_sign_any). */
GBytes *fixture_register_sign (TallyRegister *reg, Tally__SignatureContext ctx, GBytes *body);
GBytes *fixture_register_sign_message (TallyRegister *reg,
                                       Tally__SignatureContext ctx,
                                       const ProtobufCMessage *msg);

/* Decodes a packed envelope; fails the test when it is not one. */
Tally__SignedEnvelope *fixture_envelope (GBytes *packed);

/* H(context label, body) of a packed envelope. */
void fixture_body_hash (GBytes *packed, guint8 out[TALLY_HASH_BYTES]);

/* A fresh directory under the test's temporary root; remove with
 * fixture_remove_tree(). */
char *fixture_tmpdir (void);
void fixture_remove_tree (const char *path);
/* Copies the regular files of @from into @to (made 0700), keeping modes. */
void fixture_copy_dir (const char *from, const char *to);

/* Creates a register in @dir, certified (serial 1, valid one year around
 * @now, @limits or the defaults) and with the certificate installed at @now. */
TallyRegister *fixture_register_new (FixtureIssuer *issuer,
                                     const char *dir,
                                     const Tally__Limits *limits,
                                     guint64 now);

/* Loads @amount with voucher @sequence; asserts success. */
void fixture_register_fund (FixtureIssuer *issuer,
                            TallyRegister *reg,
                            guint64 sequence,
                            gint64 amount,
                            guint64 now);

/* A whole payment, asserting every step: request, spend, receive,
 * acknowledge.  Returns the packed permission; *receipt (optional) gets
 * the packed receipt. */
GBytes *fixture_pay (TallyRegister *payer,
                     TallyRegister *payee,
                     gint64 amount,
                     const char *memo,
                     guint64 now,
                     GBytes **receipt);

/* The ways a peer's certificate fails the peer check (wallet/tally-peer.h). */
typedef enum
{
  FIXTURE_PEER_REVOKED,        /* valid, but the holder's revocation list names it */
  FIXTURE_PEER_OTHER_CURRENCY, /* certified for USD, not the issuer's currency */
  FIXTURE_PEER_EXPIRED,        /* not_after one second before now */
  FIXTURE_PEER_NOT_YET_VALID,  /* not_before one second after now */
  FIXTURE_PEER_WRONG_ISSUER,   /* signed by another issuer */
  FIXTURE_PEER_ITSELF,         /* the holder's own certificate */
  FIXTURE_PEER_BAD_DISPLAY_NAME, /* a display name with a control character */
} FixturePeerFault;

/* The TallyError the peer check gives for @fault. */
int fixture_peer_fault_code (FixturePeerFault fault);

/* A packed certificate for @subject's key with @fault at @now, as
 * @holder would receive it from its peer.  For FIXTURE_PEER_REVOKED it
 * also gives @holder a revocation list naming @subject, and for
 * FIXTURE_PEER_ITSELF it is @holder's own certificate. */
GBytes *fixture_peer_certificate (FixtureIssuer *issuer,
                                  TallyRegister *subject,
                                  TallyRegister *holder,
                                  FixturePeerFault fault,
                                  guint64 now);

/* Every observable part of @reg as text: scalars, chain head, certificate,
 * history, payment requests and a hash of the bundle it would export.
 * Random nonce bytes are left out unless @with_nonce_bytes. */
char *fixture_register_dump (TallyRegister *reg, gboolean with_nonce_bytes);

/* Σ loads + Σ received == balance + Σ spent + Σ defund, from the history. */
void fixture_assert_conserved (TallyRegister *reg);

G_END_DECLS
