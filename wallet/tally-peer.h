/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The peer check: what a register demands of the other register's
 * certificate before it pays it or takes its payment (docs/protocol.md
 * §2.1).  The handshake (pairing/) runs it before it checks the peer's
 * transcript signature, and the register runs it again in spend and
 * receive before value moves; both get the same answer from this one
 * function.
 */

#include <glib.h>

#include "tally-core.h"
#include "tally-register.h"

G_BEGIN_DECLS

/*
 * Checks @peer_certificate for @reg at @now, in this order:
 *
 *  - NO_CERTIFICATE when @reg has no certificate of its own yet;
 *  - the chain to @reg's issuer and the certificate's own fields
 *    (tally_certificate_verify: WRONG_ISSUER, BAD_SIGNATURE, WRONG_CONTEXT,
 *    MALFORMED, then CERT_NOT_YET_VALID before not_before and
 *    CERT_EXPIRED after not_after);
 *  - WRONG_REGISTER when the peer is @reg itself;
 *  - REVOKED when the revocation list @reg holds names the peer;
 *  - CURRENCY_MISMATCH when the peer is certified for another currency;
 *  - STALE_REVOCATION_LIST when @policy (may be NULL) sets
 *    max_revocation_age and @reg holds no list, or now is past the list's
 *    issued_at + max_revocation_age.  A sum beyond 2^64 - 1 never expires.
 *
 * Returns the decoded certificate, or NULL with @error set.  Changes no
 * state.
 */
Tally__RegisterCertificate *
tally_register_check_peer (TallyRegister *reg,
                           const Tally__SignedEnvelope *peer_certificate,
                           const TallyAcceptPolicy *policy,
                           guint64 now,
                           GError **error);

G_END_DECLS
