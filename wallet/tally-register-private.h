/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Register internals that the public API keeps hidden: the inspection
 * functions, for tests and diagnostics only, and what the register's
 * operation files (tally-register.c, -spend.c, -receive.c, -reconcile.c)
 * share.
 */

#include "tally-register-backend.h"
#include "tally-register.h"

G_BEGIN_DECLS

/* Signs under any context, as the owner of a soft register can by reading
 * its key file: tests use it to play a compromised register. */
void tally_register_sign_any (TallyRegister *reg,
                              Tally__SignatureContext ctx,
                              const guint8 *data,
                              gsize len,
                              guint8 signature[static TALLY_SIGNATURE_BYTES]);

/* Current hash-chain head, 32 bytes. */
const guint8 *tally_register_get_chain_head (TallyRegister *reg);

/* Every payment request we issued, as TallyNonceRow *, oldest first. */
GPtrArray *tally_register_list_nonces (TallyRegister *reg, GError **error);

/* --- shared by the register's operation files --- */

struct _TallyRegister
{
  const TallyRegisterBackend *backend;
  gpointer store;
  TallyRegisterState state;
  guint8 id[TALLY_ID_BYTES];
  /* Decoded views of state.certificate and state.revocation_list. */
  Tally__SignedEnvelope *cert_env;
  Tally__RegisterCertificate *cert;
  Tally__RevocationList *revocation;
  TallyCommitHook hook;
  gpointer hook_data;
  guint64 request_lifetime;
};

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (TallyRegisterState, tally_register_state_clear)
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (TallySpentRow, tally_spent_row_clear)
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (TallyNonceRow, tally_nonce_row_clear)

/* The operations that commit, each with its two commit points. */
typedef enum
{
  TALLY_REGISTER_OP_LOAD,
  TALLY_REGISTER_OP_REQUEST,
  TALLY_REGISTER_OP_SPEND,
  TALLY_REGISTER_OP_ACKNOWLEDGE,
  TALLY_REGISTER_OP_RECEIVE,
  TALLY_REGISTER_OP_REVOCATION,
  TALLY_REGISTER_OP_CERTIFICATE,
  TALLY_REGISTER_OP_APPLY,
  TALLY_REGISTER_OP_DEFUND,
  TALLY_REGISTER_OP_EXPORT,
  TALLY_REGISTER_OP_ISSUER,
} TallyRegisterOp;


gboolean tally_id_equals (const ProtobufCBinaryData *field, const guint8 id[static TALLY_ID_BYTES]);

/* Decodes a stored envelope; a storage error names @what. */
Tally__SignedEnvelope *tally_register_stored_envelope (GBytes *bytes,
                                                      const char *what,
                                                      GError **error);

gboolean tally_register_need_certificate (TallyRegister *reg, GError **error);
/* WRONG_STATE while the register trusts no issuer (tally-register-issuer.c). */
gboolean tally_register_need_issuer (TallyRegister *reg, GError **error);
gboolean tally_register_need_open (TallyRegister *reg, GError **error);
gboolean tally_register_check_credit (TallyRegister *reg,
                                      gint64 amount,
                                      gint64 *balance,
                                      GError **error);

GBytes *tally_register_sign_message (TallyRegister *reg,
                                     Tally__SignatureContext ctx,
                                     const ProtobufCMessage *msg,
                                     guint8 entry_hash[TALLY_HASH_BYTES]); /* optional */

/* One write transaction per operation: begin, then abort or commit, then
 * adopt the new state (tally-register.c explains the order). */
gboolean tally_register_begin (TallyRegister *reg, GError **error);
gboolean tally_register_abort (TallyRegister *reg);
gboolean tally_register_commit (TallyRegister *reg, TallyRegisterOp op, GError **error);
/* Writes @next as the whole change of @op, durably: begin, write, commit. */
gboolean tally_register_state_commit (TallyRegister *reg,
                                      TallyRegisterOp op,
                                      const TallyRegisterState *next,
                                      GError **error);
void tally_register_adopt (TallyRegister *reg,
                           TallyRegisterOp op,
                           TallyRegisterState *next,
                           Tally__SignedEnvelope *cert_env,
                           Tally__RegisterCertificate *cert,
                           Tally__RevocationList *revocation);

gboolean tally_register_take_revocation_list (TallyRegister *reg,
                                              TallyRegisterState *next,
                                              const Tally__SignedEnvelope *env,
                                              const Tally__RevocationList *list);

gboolean tally_register_acknowledge_locked (TallyRegister *reg,
                                            const Tally__SignedEnvelope *receipt,
                                            const Tally__Receipt *r,
                                            gboolean *changed,
                                            GError **error);

G_END_DECLS
