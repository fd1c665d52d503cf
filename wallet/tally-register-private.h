/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Inspection of register internals that the public API keeps hidden, for
 * tests and diagnostics only.
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
                              guint8 signature[TALLY_SIGNATURE_BYTES]);

/* Current hash-chain head, 32 bytes. */
const guint8 *tally_register_get_chain_head (TallyRegister *reg);

/* Every payment request we issued, as TallyNonceRow *, oldest first. */
GPtrArray *tally_register_list_nonces (TallyRegister *reg, GError **error);

G_END_DECLS
