/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Shared by the libFuzzer harnesses and make-seeds: fixed Ed25519 keys (so
 * a committed seed signed by "the issuer" verifies in every run), objects
 * the issuer signs, registers in a tmpfs directory that lives as long as
 * the process, a reader that turns fuzz bytes into choices, and logging
 * that makes every g_warning or g_critical a crash.
 */

#include <glib.h>

#include "tally-core.h"
#include "tally-register.h"

G_BEGIN_DECLS

/* 2023-11-14T22:13:20Z, as in the other suites. */
#define FUZZ_NOW      ((guint64) 1700000000)
#define FUZZ_YEAR     ((guint64) 365 * 24 * 3600)
#define FUZZ_CURRENCY "EUR"

/* Certificates of fuzz_certify() are valid from FUZZ_NOW - FUZZ_BEFORE. */
#define FUZZ_BEFORE ((guint64) 1000)

/* Every key is crypto_sign_seed_keypair over 32 copies of one byte. */
typedef enum
{
  FUZZ_KEY_ISSUER,        /* the issuer every register trusts */
  FUZZ_KEY_OTHER_ISSUER,  /* an issuer nobody trusts */
  FUZZ_KEY_PAYER,         /* a certified payer */
  FUZZ_KEY_REVOKED_PAYER, /* a certified payer on the revocation list */
  FUZZ_KEY_STRANGER,      /* a key nobody certified */
  FUZZ_KEY_COUNT,
} FuzzKey;

/* Calls sodium_init, derives the keys and installs the log writer.
 * Idempotent. */
void fuzz_init (void);

const guint8 *fuzz_key_public (FuzzKey key);
const guint8 *fuzz_key_secret (FuzzKey key);
/* tally_register_id_from_key (public key). */
void fuzz_key_register_id (FuzzKey key, guint8 id[TALLY_ID_BYTES]);
/* tally_key_id_from_key (public key). */
void fuzz_key_key_id (FuzzKey key, guint8 id[TALLY_ID_BYTES]);

/* A packed SignedEnvelope of @body under @ctx, signed by @key. */
GBytes *fuzz_sign (FuzzKey key, Tally__SignatureContext ctx, const guint8 *body, gsize len);
GBytes *fuzz_sign_message (FuzzKey key, Tally__SignatureContext ctx, const ProtobufCMessage *msg);

/* Limits wide enough that only a test that means to hits one. */
Tally__Limits fuzz_limits (void);

/* A RegisterCertificate for @subject signed by FUZZ_KEY_ISSUER; @limits
 * NULL means fuzz_limits(). */
GBytes *fuzz_certify (const guint8 subject[TALLY_PUBLIC_KEY_BYTES],
                      const Tally__Limits *limits,
                      guint64 not_before,
                      guint64 not_after,
                      guint64 serial);
GBytes *fuzz_voucher (const guint8 register_id[TALLY_ID_BYTES], guint64 sequence, gint64 amount);
/* Names @n_ids register ids of 16 bytes each, packed back to back. */
GBytes *fuzz_revocation_list (guint64 serial, guint64 issued_at, const guint8 *ids, gsize n_ids);

/* Decodes a packed envelope the harness built itself; aborts otherwise. */
Tally__SignedEnvelope *fuzz_envelope (GBytes *packed);

/*
 * A register in @name under the process's state directory (tmpfs when
 * /dev/shm is writable, else $TMPDIR; $TALLY_FUZZ_STATE_DIR overrides),
 * replacing any register of that name, certified by FUZZ_KEY_ISSUER from
 * FUZZ_NOW - FUZZ_BEFORE for a year.  The directory goes when the process
 * exits.
 */
TallyRegister *fuzz_register_new (const char *name, const Tally__Limits *limits);
/* Loads @amount with voucher @sequence; aborts when the register refuses. */
void fuzz_register_fund (TallyRegister *reg, guint64 sequence, gint64 amount);

/* --- reading choices out of fuzz bytes ------------------------------------ */

/* Past the end every read returns zeros, so any input is a whole program. */
typedef struct
{
  const guint8 *data;
  gsize len;
} FuzzInput;

gboolean fuzz_input_done (const FuzzInput *in);
guint8 fuzz_input_u8 (FuzzInput *in);
/* Big-endian. */
guint16 fuzz_input_u16 (FuzzInput *in);
guint32 fuzz_input_u32 (FuzzInput *in);
guint64 fuzz_input_u64 (FuzzInput *in);
/* Copies up to @n bytes into @out and zero-fills the rest; returns how
 * many came from the input. */
gsize fuzz_input_fill (FuzzInput *in, guint8 *out, gsize n);
/* A u16 length, then that many bytes (fewer when the input ends). */
const guint8 *fuzz_input_chunk (FuzzInput *in, gsize *len);

/* Appends a u16 length and @len bytes: the inverse of fuzz_input_chunk. */
void fuzz_append_chunk (GByteArray *out, const guint8 *data, gsize len);

G_END_DECLS
