/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The published test vectors (docs/test-vectors.md), built from fixed seeds
 * with the real core.  gen-vectors prints them; test-vectors checks the
 * document against them.
 */

#include <glib.h>

#include "tally-core.h"
#include "tally-uri.h"
#include "vector-doc.h"

G_BEGIN_DECLS

/* 2026-01-01T00:00:00Z, the base of every time field. */
#define VECTORS_TIME 1767225600

/* Every seed byte is repeated 32 times. */
#define VECTORS_ISSUER_SEED     0x01
#define VECTORS_REGISTER_A_SEED 0x02 /* the payer */
#define VECTORS_REGISTER_B_SEED 0x03 /* the payee */

/* Info string of the fenced blocks in docs/test-vectors.md that hold them. */
#define VECTORS_FENCE_TAG "core-vectors"

/* A signed object among the vectors: "<name>.envelope", "<name>.body",
 * "<name>.signature", "<name>.signed_message", "<name>.public_key" and
 * "<name>.body_hash" exist for each. */
typedef struct
{
  const char *name;
  Tally__SignatureContext context;
} VectorEnvelope;

const VectorEnvelope *vectors_envelopes (gsize *n_envelopes);

/* Hash cases: "hash.<case>.label", ".input", ".preimage", ".output". */
const char *const *vectors_hash_cases (void);

/* Every vector, in the order gen-vectors prints them (array of Vector);
 * gen-vectors prints vector_list_format() of it, without comments. */
GPtrArray *vectors_build (void);

G_END_DECLS
