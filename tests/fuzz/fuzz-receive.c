/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tally_register_receive with a payer certificate and a deposit permission
 * that start out valid and are then mutated field by field.
 *
 * Input:
 *   u16    amount - 1 of this round's payment request
 *   u8     setup: bits 0-1 memo; bit 2 our policy caps the amount below
 *          it; bit 3 our policy wants a revocation list younger than an
 *          hour; bits 4-5 "now" (FUZZ_NOW, two hours later, two years
 *          later, before the certificate); bit 6 add u32 << 16 to the
 *          amount (operand follows)
 *   u8     the payer: FUZZ_KEY_PAYER, FUZZ_KEY_REVOKED_PAYER or
 *          FUZZ_KEY_STRANGER (certified all the same)
 *   then at most MAX_MUTATIONS records: u8 field, then its operands (see
 *   the Mutation enum; each reads what it needs).
 *
 * Each input makes its own payment requests and takes its counters from a
 * range of its own, so it replays alone as it ran in a long session; only
 * the payee's balance carries over (the payee is made anew every
 * INPUTS_PER_REGISTER inputs).
 *
 * Oracle: the rules of tally_register_receive's contract (tally-register.h,
 * docs/protocol.md), each with the error codes that may report it, are
 * evaluated on the objects actually sent.  Then:
 *  - no rule broken: the payment must be accepted;
 *  - accepted: no rule may be broken, the receipt verifies under the
 *    payee's key and names payer, counter, permission hash, amount and
 *    time; the balance rose by exactly the amount and the newest history
 *    entry is this payment (unless an earlier one bears a later time);
 *    after envelopes with trailing bytes (unknown fields), the cached
 *    certificate and the reconciliation bundle still decode;
 *  - refused: the code is one of the broken rules' codes (never FAILED or
 *    STORAGE), and balance, counter and newest history entry are as they
 *    were.
 * With the "again" mutation the same objects are offered a second time,
 * with "twin" a permission that differs only in nonce (a fresh request for
 * the same amount) and time, both judged the same way.
 */

#include <string.h>

#include "fuzz-common.h"
#include "tally-hex.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv);

#define MAX_MUTATIONS 8
#define MAX_REQUESTS  4
#define PAYEE_CAP     ((gint64) 1 << 40)
/* Every input takes its counters from its own range. */
#define COUNTER_SPAN 256
/* Bounds the payee's database and the model's tables on long runs. */
#define INPUTS_PER_REGISTER 2000

#define SETUP_MEMO       0x03
#define SETUP_POLICY_MAX 0x04
#define SETUP_POLICY_AGE 0x08
#define SETUP_NOW_SHIFT  4
#define SETUP_BIG        0x40

#define CTX_CERT   TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE
#define CTX_PERMIT TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION

typedef enum
{
  MUT_CERT_KEY,         /* u8 length (mod 34), key bytes */
  MUT_CERT_ID,          /* u8 length (mod 18), id bytes */
  MUT_CERT_CURRENCY,    /* u8 choice */
  MUT_CERT_LIMIT,       /* u8 which, u64 value */
  MUT_CERT_VALIDITY,    /* u8 which, u32 signed offset from FUZZ_NOW */
  MUT_CERT_ISSUER_ID,   /* u8 choice */
  MUT_CERT_SIGNATURE,   /* u8 mode, u8 offset */
  MUT_CERT_CONTEXT,     /* u8 context */
  MUT_CERT_RAW,         /* chunk: the certificate body */
  MUT_PERM_PAYER_ID,    /* u8 choice */
  MUT_PERM_PAYEE_ID,    /* u8 choice */
  MUT_PERM_NONCE,       /* u8 choice, [u16 amount - 1] */
  MUT_PERM_AMOUNT,      /* u8 which, u64 value */
  MUT_PERM_COUNTER,     /* u8 choice, u64 value */
  MUT_PERM_CHAIN_PREV,  /* u8 length (mod 40) */
  MUT_PERM_MEMO_HASH,   /* u8 mode */
  MUT_PERM_CREATED_AT,  /* u64 */
  MUT_PERM_SIGNATURE,   /* u8 mode, u8 offset */
  MUT_PERM_CONTEXT,     /* u8 context */
  MUT_PERM_RAW,         /* chunk: the permission body */
  MUT_AGAIN,            /* offer the same objects a second time */
  MUT_CERT_TRAILER,     /* chunk: appended to the packed certificate envelope */
  MUT_PERM_TRAILER,     /* chunk: appended to the packed permission envelope */
  MUT_TWIN,             /* then offer the permission again with a new nonce and time */
  MUT_PERM_EXPIRES_AT,  /* u8 mode, u64 value */
  MUT_COUNT,
} Mutation;

/* A request this payee issued, as the model remembers it. */
typedef struct
{
  guint8 nonce[TALLY_NONCE_BYTES];
  gint64 amount;
  const char *memo;
  guint64 expires_at;
  gboolean consumed;
} Request;

static TallyRegister *payee;
static guint64 inputs;
/* This input's requests. */
static Request *requests[MAX_REQUESTS]; /* this input's, owned by earlier_requests */
static guint n_requests;
/*
 * Every request this process made, by nonce.  The register keeps its
 * unconsumed requests across inputs, and libFuzzer learns their nonces
 * from the comparisons it traces, so the model must remember them too.
 */
static GHashTable *earlier_requests;
/* (payer id || BE64 counter) -> permission hash, of every payment taken. */
static GHashTable *taken;
/* History lists the newest time first: the latest receipt time so far. */
static guint64 latest;
/* The payee's horizon: the newest time it exported a bundle at. */
static guint64 horizon;
static char long_memo[257];

static const FuzzKey payers[] = { FUZZ_KEY_PAYER, FUZZ_KEY_REVOKED_PAYER, FUZZ_KEY_STRANGER };
static const FuzzKey signers[] = {
  FUZZ_KEY_ISSUER, FUZZ_KEY_OTHER_ISSUER, FUZZ_KEY_PAYER, FUZZ_KEY_REVOKED_PAYER, FUZZ_KEY_STRANGER,
};
static const char *const currencies[] = {
  "EUR", "USD", "eur", "EU", "EURO", "ABCDEFGHI", "", "E1R",
};

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init ();
  memset (long_memo, 'm', sizeof long_memo - 1);
  return 0;
}

static void
payee_setup (void)
{
  g_clear_pointer (&payee, tally_register_free);
  g_clear_pointer (&taken, g_hash_table_unref);
  /* A new register knows none of the old one's requests. */
  g_clear_pointer (&earlier_requests, g_hash_table_unref);
  n_requests = 0;
  taken = g_hash_table_new_full (g_bytes_hash, g_bytes_equal, (GDestroyNotify) g_bytes_unref,
                                 (GDestroyNotify) g_bytes_unref);
  latest = 0;
  horizon = 0;

  Tally__Limits limits = fuzz_limits ();
  limits.balance_cap = PAYEE_CAP;
  payee = fuzz_register_new ("payee", &limits);

  guint8 revoked[TALLY_ID_BYTES];
  fuzz_key_register_id (FUZZ_KEY_REVOKED_PAYER, revoked);
  g_autoptr (GBytes) list = fuzz_revocation_list (1, FUZZ_NOW, revoked, 1);
  g_autoptr (Tally__SignedEnvelope) env = fuzz_envelope (list);
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_register_update_revocation_list (payee, env, &error));
  g_assert_no_error (error);
}

static const char *
memo_choice (guint8 setup)
{
  switch (setup & SETUP_MEMO) {
  case 0: return "";
  case 1: return "coffee";
  case 2: return "caf\xc3\xa9 \xe2\x98\x95";
  default: return long_memo;
  }
}

/* --- what the harness sends -------------------------------------------------- */

typedef struct
{
  /* The certificate body. */
  guint8 key[TALLY_PUBLIC_KEY_BYTES + 1];
  gsize key_len;
  guint8 id[TALLY_ID_BYTES + 1];
  gsize id_len;
  const char *currency;
  Tally__Limits limits;
  gboolean has_limits;
  guint64 not_before, not_after;
  guint8 issuer_id[TALLY_ID_BYTES];
  gsize issuer_id_len;
  /* The permission body. */
  guint8 payer_id[TALLY_ID_BYTES];
  gsize payer_id_len;
  guint8 payee_id[TALLY_ID_BYTES];
  gsize payee_id_len;
  guint8 nonce[TALLY_NONCE_BYTES];
  gsize nonce_len;
  gboolean has_amount;
  const char *amount_currency;
  gint64 amount;
  guint64 counter;
  guint8 chain_prev[40];
  gsize chain_prev_len;
  guint8 memo_hash[TALLY_HASH_BYTES + 1];
  gsize memo_hash_len;
  guint64 created_at;
  guint64 expires_at;
  /* The envelopes. */
  FuzzKey cert_signer, perm_signer;
  Tally__SignatureContext cert_ctx, perm_ctx;
  guint8 cert_sig_mode, cert_sig_offset, perm_sig_mode, perm_sig_offset;
  const guint8 *cert_raw, *perm_raw;
  gsize cert_raw_len, perm_raw_len;
  const guint8 *cert_trailer, *perm_trailer;
  gsize cert_trailer_len, perm_trailer_len;
  gboolean again, twin;
  guint64 base; /* this input's counters start above it */
} Spec;

static void
spec_init (Spec *s, FuzzKey payer, const Request *req, guint64 base, guint64 now)
{
  memset (s, 0, sizeof *s);
  s->base = base;
  memcpy (s->key, fuzz_key_public (payer), TALLY_PUBLIC_KEY_BYTES);
  s->key_len = TALLY_PUBLIC_KEY_BYTES;
  fuzz_key_register_id (payer, s->id);
  s->id_len = TALLY_ID_BYTES;
  s->currency = FUZZ_CURRENCY;
  s->limits = fuzz_limits ();
  s->has_limits = TRUE;
  s->not_before = FUZZ_NOW - FUZZ_BEFORE;
  s->not_after = FUZZ_NOW + FUZZ_YEAR;
  fuzz_key_key_id (FUZZ_KEY_ISSUER, s->issuer_id);
  s->issuer_id_len = TALLY_ID_BYTES;

  memcpy (s->payer_id, s->id, TALLY_ID_BYTES);
  s->payer_id_len = TALLY_ID_BYTES;
  memcpy (s->payee_id, tally_register_get_id (payee), TALLY_ID_BYTES);
  s->payee_id_len = TALLY_ID_BYTES;
  memcpy (s->nonce, req->nonce, TALLY_NONCE_BYTES);
  s->nonce_len = TALLY_NONCE_BYTES;
  s->has_amount = TRUE;
  s->amount_currency = FUZZ_CURRENCY;
  s->amount = req->amount;
  s->counter = base + 1;
  memset (s->chain_prev, 0xcc, sizeof s->chain_prev);
  s->chain_prev_len = TALLY_HASH_BYTES;
  tally_hash ("memo", req->memo, strlen (req->memo), s->memo_hash);
  s->memo_hash_len = TALLY_HASH_BYTES;
  s->created_at = now;
  s->expires_at = req->expires_at;

  s->cert_signer = FUZZ_KEY_ISSUER;
  s->perm_signer = payer;
  s->cert_ctx = CTX_CERT;
  s->perm_ctx = CTX_PERMIT;
}

static gboolean
bytes_are (const ProtobufCBinaryData *b, const guint8 *data, gsize len)
{
  return b->len == len && (len == 0 || memcmp (b->data, data, len) == 0);
}

/* A payment request of ours, remembered by the model. */
static const Request *
request_new (gint64 amount, const char *memo)
{
  g_autoptr (GError) error = NULL;
  g_assert_cmpuint (n_requests, <, MAX_REQUESTS);
  g_autoptr (Tally__PaymentRequest) pr =
    tally_register_new_request (payee, amount, memo, FUZZ_NOW, &error);
  g_assert_no_error (error);
  Request *r = g_new0 (Request, 1);
  memcpy (r->nonce, pr->nonce.data, TALLY_NONCE_BYTES);
  r->amount = amount;
  r->memo = memo;
  r->expires_at = pr->expires_at;
  r->consumed = FALSE;
  if (earlier_requests == NULL)
    earlier_requests = g_hash_table_new_full (g_bytes_hash, g_bytes_equal,
                                              (GDestroyNotify) g_bytes_unref, g_free);
  g_hash_table_insert (earlier_requests, g_bytes_new (r->nonce, TALLY_NONCE_BYTES), r);
  requests[n_requests++] = r;
  return r;
}

static Tally__SignatureContext
context_choice (guint8 b)
{
  /* 0 and 13 have no label: they are claimed, never signed. */
  return (Tally__SignatureContext) (b % 14);
}

static void
mutate (Spec *s, FuzzInput *in)
{
  guint8 field = fuzz_input_u8 (in) % MUT_COUNT;
  switch ((Mutation) field) {
  case MUT_CERT_KEY:
    s->key_len = fuzz_input_u8 (in) % (sizeof s->key + 1);
    fuzz_input_fill (in, s->key, s->key_len);
    break;
  case MUT_CERT_ID:
    s->id_len = fuzz_input_u8 (in) % (sizeof s->id + 1);
    fuzz_input_fill (in, s->id, s->id_len);
    break;
  case MUT_CERT_CURRENCY:
    s->currency = currencies[fuzz_input_u8 (in) % G_N_ELEMENTS (currencies)];
    break;
  case MUT_CERT_LIMIT: {
    guint8 which = fuzz_input_u8 (in) % 5;
    guint64 v = fuzz_input_u64 (in);
    switch (which) {
    case 0: s->limits.max_payment = (gint64) v; break;
    case 1: s->limits.balance_cap = (gint64) v; break;
    case 2: s->limits.max_offline_payments = (guint32) v; break;
    case 3: s->limits.max_offline_seconds = v; break;
    default: s->has_limits = FALSE; break;
    }
    break;
  }
  case MUT_CERT_VALIDITY: {
    guint8 which = fuzz_input_u8 (in);
    gint32 offset = (gint32) fuzz_input_u32 (in);
    guint64 t = (guint64) ((gint64) FUZZ_NOW + offset);
    if (which % 2 == 0)
      s->not_before = t;
    else
      s->not_after = t;
    break;
  }
  case MUT_CERT_ISSUER_ID:
    switch (fuzz_input_u8 (in) % 3) {
    case 0: fuzz_key_key_id (FUZZ_KEY_OTHER_ISSUER, s->issuer_id); break;
    case 1: s->issuer_id_len = TALLY_ID_BYTES - 1; break;
    default: s->issuer_id_len = 0; break;
    }
    break;
  case MUT_CERT_SIGNATURE:
    s->cert_sig_mode = fuzz_input_u8 (in);
    s->cert_sig_offset = fuzz_input_u8 (in);
    break;
  case MUT_CERT_CONTEXT: s->cert_ctx = context_choice (fuzz_input_u8 (in)); break;
  case MUT_CERT_RAW: s->cert_raw = fuzz_input_chunk (in, &s->cert_raw_len); break;
  case MUT_PERM_PAYER_ID:
    switch (fuzz_input_u8 (in) % 4) {
    case 0: fuzz_key_register_id (FUZZ_KEY_STRANGER, s->payer_id); break;
    case 1: memcpy (s->payer_id, tally_register_get_id (payee), TALLY_ID_BYTES); break;
    case 2: s->payer_id_len = TALLY_ID_BYTES - 1; break;
    default: s->payer_id_len = 0; break;
    }
    break;
  case MUT_PERM_PAYEE_ID:
    switch (fuzz_input_u8 (in) % 3) {
    case 0: memcpy (s->payee_id, s->id, TALLY_ID_BYTES); break;
    case 1: s->payee_id_len = TALLY_ID_BYTES - 1; break;
    default: s->payee_id[fuzz_input_u8 (in) % TALLY_ID_BYTES] ^= 0x01; break;
    }
    break;
  case MUT_PERM_NONCE: {
    guint8 choice = fuzz_input_u8 (in);
    if (choice < 96 && n_requests + 1 < MAX_REQUESTS) {
      /* Another request of ours, for the amount the input names. */
      const Request *r = request_new ((gint64) fuzz_input_u16 (in) + 1, requests[0]->memo);
      memcpy (s->nonce, r->nonce, TALLY_NONCE_BYTES);
      s->nonce_len = TALLY_NONCE_BYTES;
    } else if (choice < 128) {
      memcpy (s->nonce, requests[0]->nonce, TALLY_NONCE_BYTES);
      s->nonce_len = TALLY_NONCE_BYTES;
    } else if (choice < 192) {
      fuzz_input_fill (in, s->nonce, TALLY_NONCE_BYTES);
      s->nonce_len = TALLY_NONCE_BYTES;
    } else {
      s->nonce_len = choice % TALLY_NONCE_BYTES;
    }
    break;
  }
  case MUT_PERM_AMOUNT: {
    guint8 which = fuzz_input_u8 (in);
    guint64 v = fuzz_input_u64 (in);
    switch (which % 3) {
    case 0: s->amount = (gint64) v; break;
    case 1: s->amount_currency = currencies[v % G_N_ELEMENTS (currencies)]; break;
    default: s->has_amount = FALSE; break;
    }
    break;
  }
  case MUT_PERM_COUNTER: {
    guint8 choice = fuzz_input_u8 (in);
    guint64 v = fuzz_input_u64 (in);
    switch (choice % 4) {
    case 0: s->counter = 0; break;
    case 1: s->counter = v; break;
    case 2: s->counter = s->base + v % COUNTER_SPAN; break;
    default: s->counter = s->base + 1 + v % 4; break;
    }
    break;
  }
  case MUT_PERM_CHAIN_PREV:
    s->chain_prev_len = fuzz_input_u8 (in) % (sizeof s->chain_prev + 1);
    break;
  case MUT_PERM_MEMO_HASH: {
    guint8 mode = fuzz_input_u8 (in);
    if (mode < 128)
      s->memo_hash[mode % TALLY_HASH_BYTES] ^= 0x80;
    else
      s->memo_hash_len = mode % (sizeof s->memo_hash + 1);
    break;
  }
  case MUT_PERM_CREATED_AT: s->created_at = fuzz_input_u64 (in); break;
  case MUT_PERM_EXPIRES_AT:
    if (fuzz_input_u8 (in) < 128)
      s->expires_at += (gint64) (gint8) fuzz_input_u8 (in);
    else
      s->expires_at = fuzz_input_u64 (in);
    break;
  case MUT_PERM_SIGNATURE:
    s->perm_sig_mode = fuzz_input_u8 (in);
    s->perm_sig_offset = fuzz_input_u8 (in);
    break;
  case MUT_PERM_CONTEXT: s->perm_ctx = context_choice (fuzz_input_u8 (in)); break;
  case MUT_PERM_RAW: s->perm_raw = fuzz_input_chunk (in, &s->perm_raw_len); break;
  case MUT_AGAIN: s->again = TRUE; break;
  case MUT_CERT_TRAILER: s->cert_trailer = fuzz_input_chunk (in, &s->cert_trailer_len); break;
  case MUT_PERM_TRAILER: s->perm_trailer = fuzz_input_chunk (in, &s->perm_trailer_len); break;
  case MUT_TWIN: s->twin = TRUE; break;
  case MUT_COUNT: g_assert_not_reached ();
  }
}

/* Signature modes: 0 as signed, 1-5 signed by signers[mode - 1], 6 one
 * bit flipped, 7 one byte short, else as signed. */
static GBytes *
envelope_build (GBytes *body, FuzzKey signer, Tally__SignatureContext ctx, guint8 mode,
                guint8 offset, FuzzKey *actual_signer, gboolean *intact)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);
  *actual_signer = signer;
  *intact = TRUE;
  if (mode >= 1 && mode <= G_N_ELEMENTS (signers))
    *actual_signer = signers[mode - 1];
  /* A context without a label cannot be signed: sign the usual one and
   * claim the other. */
  Tally__SignatureContext sign_ctx = tally_context_label (ctx) != NULL ? ctx : CTX_CERT;
  guint8 sig[TALLY_SIGNATURE_BYTES];
  tally_sign_detached (sign_ctx, data, len, fuzz_key_secret (*actual_signer), sig);

  Tally__SignedEnvelope env = TALLY__SIGNED_ENVELOPE__INIT;
  env.context = ctx;
  env.body.data = (guint8 *) data;
  env.body.len = len;
  env.signature.data = sig;
  env.signature.len = sizeof sig;
  if (mode == 6) {
    sig[offset % TALLY_SIGNATURE_BYTES] ^= (guint8) (1u << (offset % 8));
    *intact = FALSE;
  } else if (mode == 7) {
    env.signature.len--;
    *intact = FALSE;
  }
  return tally_envelope_pack (&env);
}

/* @packed with @trailer appended (unknown fields, garbage, or fields that
 * override earlier ones), decoded; NULL when the decoder refuses it.
 * *intact becomes FALSE when the trailer changed what was signed. */
static Tally__SignedEnvelope *
envelope_with_trailer (GBytes *packed, const guint8 *trailer, gsize trailer_len,
                       gboolean *intact, GError **error)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_byte_array_append (out, g_bytes_get_data (packed, NULL), (guint) g_bytes_get_size (packed));
  if (trailer != NULL)
    g_byte_array_append (out, trailer, (guint) trailer_len);
  Tally__SignedEnvelope *env = tally_envelope_decode (out->data, out->len, error);
  if (env == NULL)
    return NULL;
  g_autoptr (Tally__SignedEnvelope) plain = fuzz_envelope (packed);
  if (env->context != plain->context ||
      !bytes_are (&env->body, plain->body.data, plain->body.len) ||
      !bytes_are (&env->signature, plain->signature.data, plain->signature.len))
    *intact = FALSE;
  return env;
}

static GBytes *
cert_body (const Spec *s)
{
  if (s->cert_raw != NULL)
    return g_bytes_new (s->cert_raw, s->cert_raw_len);
  Tally__Limits limits = s->limits;
  Tally__RegisterCertificate c = TALLY__REGISTER_CERTIFICATE__INIT;
  c.register_public_key.data = (guint8 *) s->key;
  c.register_public_key.len = s->key_len;
  c.register_id.data = (guint8 *) s->id;
  c.register_id.len = s->id_len;
  c.currency = (char *) s->currency;
  c.limits = s->has_limits ? &limits : NULL;
  c.not_before = s->not_before;
  c.not_after = s->not_after;
  c.issuer_key_id.data = (guint8 *) s->issuer_id;
  c.issuer_key_id.len = s->issuer_id_len;
  c.serial = 1;
  return tally_message_pack (&c.base);
}

static GBytes *
perm_body (const Spec *s)
{
  if (s->perm_raw != NULL)
    return g_bytes_new (s->perm_raw, s->perm_raw_len);
  Tally__Amount a = TALLY__AMOUNT__INIT;
  a.currency = (char *) s->amount_currency;
  a.value = s->amount;
  Tally__DepositPermission p = TALLY__DEPOSIT_PERMISSION__INIT;
  p.payer_register_id.data = (guint8 *) s->payer_id;
  p.payer_register_id.len = s->payer_id_len;
  p.payee_register_id.data = (guint8 *) s->payee_id;
  p.payee_register_id.len = s->payee_id_len;
  p.payee_nonce.data = (guint8 *) s->nonce;
  p.payee_nonce.len = s->nonce_len;
  p.amount = s->has_amount ? &a : NULL;
  p.counter = s->counter;
  p.chain_prev.data = (guint8 *) s->chain_prev;
  p.chain_prev.len = s->chain_prev_len;
  p.created_at = s->created_at;
  p.memo_hash.data = (guint8 *) s->memo_hash;
  p.memo_hash.len = s->memo_hash_len;
  p.expires_at = s->expires_at;
  return tally_message_pack (&p.base);
}

/* --- the model ---------------------------------------------------------------- */

typedef struct
{
  Tally__SignedEnvelope *cert_env, *perm_env;
  FuzzKey cert_signer, perm_signer;
  gboolean cert_sig_intact, perm_sig_intact;
  const TallyAcceptPolicy *policy;
  guint64 now;
  gboolean trailer; /* an envelope carried bytes after its fields */
} Offer;

#define CODE(c) ((guint64) 1 << (c))

static GBytes *
taken_key (const guint8 payer_id[TALLY_ID_BYTES], guint64 counter)
{
  guint8 k[TALLY_ID_BYTES + 8];
  memcpy (k, payer_id, TALLY_ID_BYTES);
  for (int i = 0; i < 8; i++)
    k[TALLY_ID_BYTES + i] = (guint8) (counter >> (56 - 8 * i));
  return g_bytes_new (k, sizeof k);
}

static Request *
request_find (const ProtobufCBinaryData *nonce)
{
  if (nonce->len != TALLY_NONCE_BYTES)
    return NULL;
  if (earlier_requests == NULL)
    return NULL;
  g_autoptr (GBytes) key = g_bytes_new (nonce->data, TALLY_NONCE_BYTES);
  return g_hash_table_lookup (earlier_requests, key);
}

static gboolean
limits_valid (const Tally__Limits *l)
{
  return l != NULL && l->max_payment > 0 && l->max_payment <= TALLY_AMOUNT_MAX &&
         l->balance_cap > 0 && l->balance_cap <= TALLY_AMOUNT_MAX &&
         l->max_offline_payments > 0 && l->max_offline_seconds > 0;
}

/* Every rule of the contract that @o breaks, as the codes that may report
 * it; 0 when the payment must be accepted. */
static guint64
broken_rules (const Offer *o)
{
  guint64 codes = 0;
  guint8 issuer_id[TALLY_ID_BYTES];
  fuzz_key_key_id (FUZZ_KEY_ISSUER, issuer_id);

  /* issuer -> certificate */
  const Tally__SignedEnvelope *ce = o->cert_env;
  g_autoptr (Tally__RegisterCertificate) cert =
    TALLY_UNPACK (Tally__RegisterCertificate, tally__register_certificate, ce->body.data,
                  ce->body.len, "c", NULL);
  if (ce->context != CTX_CERT)
    codes |= CODE (TALLY_ERROR_WRONG_CONTEXT);
  if (o->cert_signer != FUZZ_KEY_ISSUER || !o->cert_sig_intact || ce->context != CTX_CERT)
    codes |= CODE (TALLY_ERROR_BAD_SIGNATURE);
  gboolean cert_key = FALSE;
  if (cert == NULL) {
    codes |= CODE (TALLY_ERROR_MALFORMED);
  } else {
    if (!bytes_are (&cert->issuer_key_id, issuer_id, TALLY_ID_BYTES))
      codes |= CODE (TALLY_ERROR_WRONG_ISSUER) | CODE (TALLY_ERROR_MALFORMED);
    cert_key = cert->register_public_key.len == TALLY_PUBLIC_KEY_BYTES;
    guint8 id[TALLY_ID_BYTES];
    if (cert_key)
      tally_register_id_from_key (cert->register_public_key.data, id);
    if (!cert_key || !bytes_are (&cert->register_id, id, TALLY_ID_BYTES))
      codes |= CODE (TALLY_ERROR_MALFORMED);
    if (!tally_currency_is_valid (cert->currency) || !limits_valid (cert->limits) ||
        cert->not_before >= cert->not_after)
      codes |= CODE (TALLY_ERROR_MALFORMED);
    if (o->now < cert->not_before)
      codes |= CODE (TALLY_ERROR_CERT_NOT_YET_VALID);
    if (o->now > cert->not_after)
      codes |= CODE (TALLY_ERROR_CERT_EXPIRED);
    guint8 revoked[TALLY_ID_BYTES];
    fuzz_key_register_id (FUZZ_KEY_REVOKED_PAYER, revoked);
    if (bytes_are (&cert->register_id, revoked, TALLY_ID_BYTES))
      codes |= CODE (TALLY_ERROR_REVOKED);
    /* A payer certified for another currency cannot pay in ours. */
    if (g_strcmp0 (cert->currency, FUZZ_CURRENCY) != 0)
      codes |= CODE (TALLY_ERROR_CURRENCY_MISMATCH);
  }
  guint64 age = o->now > FUZZ_NOW ? o->now - FUZZ_NOW : 0;
  if (o->policy->max_revocation_age > 0 && age > o->policy->max_revocation_age)
    codes |= CODE (TALLY_ERROR_STALE_REVOCATION_LIST);

  /* certificate -> permission */
  const Tally__SignedEnvelope *pe = o->perm_env;
  if (pe->context != CTX_PERMIT)
    codes |= CODE (TALLY_ERROR_WRONG_CONTEXT);
  if (!cert_key || !o->perm_sig_intact || pe->context != CTX_PERMIT ||
      memcmp (fuzz_key_public (o->perm_signer), cert->register_public_key.data,
              TALLY_PUBLIC_KEY_BYTES) != 0)
    codes |= CODE (TALLY_ERROR_BAD_SIGNATURE);
  g_autoptr (Tally__DepositPermission) p = TALLY_UNPACK (
    Tally__DepositPermission, tally__deposit_permission, pe->body.data, pe->body.len, "p", NULL);
  if (p == NULL)
    return codes | CODE (TALLY_ERROR_MALFORMED);

  if (cert == NULL || cert->register_id.len != TALLY_ID_BYTES ||
      !bytes_are (&p->payer_register_id, cert->register_id.data, TALLY_ID_BYTES))
    codes |= CODE (TALLY_ERROR_WRONG_REGISTER);
  if (!bytes_are (&p->payee_register_id, tally_register_get_id (payee), TALLY_ID_BYTES))
    codes |= CODE (TALLY_ERROR_WRONG_PAYEE);

  /* duplicates */
  if (p->payer_register_id.len == TALLY_ID_BYTES) {
    g_autoptr (GBytes) key = taken_key (p->payer_register_id.data, p->counter);
    GBytes *hash = g_hash_table_lookup (taken, key);
    if (hash != NULL) {
      guint8 h[TALLY_HASH_BYTES];
      tally_envelope_body_hash (pe, h);
      codes |= memcmp (g_bytes_get_data (hash, NULL), h, TALLY_HASH_BYTES) == 0
                 ? CODE (TALLY_ERROR_REPLAY)
                 : CODE (TALLY_ERROR_COUNTER_REUSED);
    }
  }
  if (p->counter == 0 || p->chain_prev.len != TALLY_HASH_BYTES ||
      p->memo_hash.len != TALLY_HASH_BYTES)
    codes |= CODE (TALLY_ERROR_MALFORMED);

  /* our nonce, and the request it belongs to */
  const Request *req = request_find (&p->payee_nonce);
  if (req == NULL)
    codes |= CODE (TALLY_ERROR_WRONG_NONCE);
  else if (req->consumed)
    codes |= CODE (TALLY_ERROR_REPLAY);
  /* protocol 4.4: the request's expiry, not yet passed nor reconciled past */
  if (req != NULL && p->expires_at != req->expires_at)
    codes |= CODE (TALLY_ERROR_MALFORMED);
  if (req != NULL && (o->now >= p->expires_at || p->expires_at <= horizon))
    codes |= CODE (TALLY_ERROR_EXPIRED);

  GError *amount_error = NULL;
  if (!tally_amount_check (p->amount, FUZZ_CURRENCY, &amount_error)) {
    codes |= CODE (amount_error->code);
    g_error_free (amount_error);
    return codes;
  }
  gint64 amount = p->amount->value;
  if (req != NULL) {
    if (amount != req->amount)
      codes |= CODE (TALLY_ERROR_AMOUNT_MISMATCH);
    guint8 memo_hash[TALLY_HASH_BYTES];
    tally_hash ("memo", req->memo, strlen (req->memo), memo_hash);
    if (!bytes_are (&p->memo_hash, memo_hash, TALLY_HASH_BYTES))
      codes |= CODE (TALLY_ERROR_MALFORMED);
  }

  /* limits: the payer's, our policy, our cap */
  if (cert != NULL && cert->limits != NULL && amount > cert->limits->max_payment)
    codes |= CODE (TALLY_ERROR_LIMIT_PAYMENT);
  if (o->policy->max_amount > 0 && amount > o->policy->max_amount)
    codes |= CODE (TALLY_ERROR_POLICY);
  if (tally_register_get_balance (payee) + amount > PAYEE_CAP)
    codes |= CODE (TALLY_ERROR_LIMIT_BALANCE) | CODE (TALLY_ERROR_OVERFLOW);
  return codes;
}

/* --- one offer ------------------------------------------------------------------ */

typedef struct
{
  gint64 balance;
  guint64 counter;
  gboolean has_newest;
  TallyHistoryEntry newest;
} Snapshot;

static void
snapshot_take (Snapshot *snap)
{
  g_autoptr (GError) error = NULL;
  memset (snap, 0, sizeof *snap);
  snap->balance = tally_register_get_balance (payee);
  snap->counter = tally_register_get_counter (payee);
  g_autoptr (GPtrArray) history = tally_register_get_history (payee, 1, &error);
  g_assert_no_error (error);
  if (history->len > 0) {
    TallyHistoryEntry *e = history->pdata[0];
    snap->has_newest = TRUE;
    snap->newest = *e;
    snap->newest.peer = g_strdup (e->peer);
    snap->newest.memo = g_strdup (e->memo);
  }
}

static void
snapshot_clear (Snapshot *snap)
{
  g_free (snap->newest.peer);
  g_free (snap->newest.memo);
}

static void
assert_same_entry (const TallyHistoryEntry *a, const TallyHistoryEntry *b)
{
  g_assert_cmpint (a->kind, ==, b->kind);
  g_assert_cmpint (a->state, ==, b->state);
  g_assert_cmpint (a->amount, ==, b->amount);
  g_assert_cmpuint (a->counter, ==, b->counter);
  g_assert_cmpuint (a->sequence, ==, b->sequence);
  g_assert_cmpuint (a->time, ==, b->time);
  g_assert_cmpstr (a->peer, ==, b->peer);
  g_assert_cmpstr (a->memo, ==, b->memo);
}

static void
assert_unchanged (const Snapshot *before)
{
  Snapshot now;
  snapshot_take (&now);
  g_assert_cmpint (now.balance, ==, before->balance);
  g_assert_cmpuint (now.counter, ==, before->counter);
  g_assert_cmpint (now.has_newest, ==, before->has_newest);
  if (now.has_newest)
    assert_same_entry (&now.newest, &before->newest);
  snapshot_clear (&now);
}

static void
assert_receipt (GBytes *receipt, const Offer *o, const Snapshot *before)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__DepositPermission) p =
    TALLY_UNPACK (Tally__DepositPermission, tally__deposit_permission, o->perm_env->body.data,
                  o->perm_env->body.len, "p", NULL);
  g_assert_nonnull (p);

  g_autoptr (Tally__SignedEnvelope) env = fuzz_envelope (receipt);
  g_assert_true (tally_envelope_verify (env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT,
                                        tally_register_get_public_key (payee), &error));
  g_assert_no_error (error);
  g_autoptr (Tally__Receipt) r =
    TALLY_UNPACK (Tally__Receipt, tally__receipt, env->body.data, env->body.len, "r", &error);
  g_assert_no_error (error);
  g_assert_true (bytes_are (&r->payee_register_id, tally_register_get_id (payee), TALLY_ID_BYTES));
  g_assert_true (bytes_are (&r->payer_register_id, p->payer_register_id.data, TALLY_ID_BYTES));
  g_assert_cmpuint (r->payer_counter, ==, p->counter);
  guint8 h[TALLY_HASH_BYTES];
  tally_hash ("deposit-permission", o->perm_env->body.data, o->perm_env->body.len, h);
  g_assert_true (bytes_are (&r->permission_hash, h, TALLY_HASH_BYTES));
  g_assert_nonnull (r->amount);
  g_assert_cmpstr (r->amount->currency, ==, FUZZ_CURRENCY);
  g_assert_cmpint (r->amount->value, ==, p->amount->value);
  g_assert_cmpuint (r->received_at, ==, o->now);

  Snapshot after;
  snapshot_take (&after);
  g_assert_cmpint (after.balance, ==, before->balance + p->amount->value);
  g_assert_cmpuint (after.counter, ==, before->counter);
  g_assert_true (after.has_newest);
  if (o->now >= latest) {
    g_assert_cmpint (after.newest.kind, ==, TALLY_ENTRY_RECEIVED);
    g_assert_cmpint (after.newest.amount, ==, p->amount->value);
    g_assert_cmpuint (after.newest.counter, ==, p->counter);
    g_assert_cmpuint (after.newest.time, ==, o->now);
    g_autofree char *payer_hex = tally_hex_encode (p->payer_register_id.data, TALLY_ID_BYTES);
    g_assert_cmpstr (after.newest.peer, ==, payer_hex);
    latest = o->now;
  }
  snapshot_clear (&after);

  /* What the register stored must decode again: the certificate it cached
   * and the whole bundle it will export. */
  if (o->trailer) {
    guint8 cert_hash[TALLY_HASH_BYTES];
    tally_envelope_body_hash (o->cert_env, cert_hash);
    g_autoptr (Tally__SignedEnvelope) cached =
      tally_register_lookup_certificate (payee, cert_hash, &error);
    g_assert_no_error (error);
    g_assert_nonnull (cached);
    g_autoptr (GBytes) bundle = tally_register_export_bundle (payee, o->now, &error);
    g_assert_no_error (error);
    g_assert_nonnull (bundle);
    horizon = MAX (horizon, o->now);
  }

  /* The model learns what the register now holds. */
  Request *req = request_find (&p->payee_nonce);
  g_assert_nonnull (req);
  req->consumed = TRUE;
  g_hash_table_replace (taken, taken_key (p->payer_register_id.data, p->counter),
                        g_bytes_new (h, sizeof h));
}

static void
offer_once (const Offer *o)
{
  g_autoptr (GError) error = NULL;
  guint64 broken = broken_rules (o);
  Snapshot before;
  snapshot_take (&before);

  g_autoptr (GBytes) receipt =
    tally_register_receive (payee, o->cert_env, o->perm_env, NULL, o->policy, o->now, &error);
  if (receipt != NULL) {
    g_assert_no_error (error);
    if (broken != 0)
      g_error ("accepted a payment that breaks rules 0x%" G_GINT64_MODIFIER "x", broken);
    assert_receipt (receipt, o, &before);
  } else {
    g_assert_nonnull (error);
    g_assert_true (error->domain == TALLY_ERROR);
    if (broken == 0)
      g_error ("refused a valid payment: %s", error->message);
    if (error->code <= 0 || error->code > TALLY_ERROR_LAST || (broken & CODE (error->code)) == 0)
      g_error ("refused with code %d (%s), expected one of 0x%" G_GINT64_MODIFIER "x",
               error->code, error->message, broken);
    assert_unchanged (&before);
  }
  snapshot_clear (&before);
}

static const guint64 now_choices[] = {
  FUZZ_NOW, FUZZ_NOW + 2 * 3600, FUZZ_NOW + 2 * FUZZ_YEAR, FUZZ_NOW - 2 * FUZZ_BEFORE,
};

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  g_autoptr (GError) error = NULL;
  if (payee == NULL || ++inputs % INPUTS_PER_REGISTER == 0)
    payee_setup ();

  FuzzInput in = { data, size };
  gint64 amount = (gint64) fuzz_input_u16 (&in) + 1;
  guint8 setup = fuzz_input_u8 (&in);
  if ((setup & SETUP_BIG) != 0)
    amount += (gint64) fuzz_input_u32 (&in) << 16;
  FuzzKey payer = payers[fuzz_input_u8 (&in) % G_N_ELEMENTS (payers)];
  guint64 now = now_choices[(setup >> SETUP_NOW_SHIFT) & 3];
  TallyAcceptPolicy policy = { 0 };
  if ((setup & SETUP_POLICY_MAX) != 0)
    policy.max_amount = amount > 1 ? amount - 1 : 1;
  if ((setup & SETUP_POLICY_AGE) != 0)
    policy.max_revocation_age = 3600;

  /* This input's request; mutations may add more, the twin takes one. */
  n_requests = 0;
  const Request *req = request_new (amount, memo_choice (setup));

  Spec spec;
  spec_init (&spec, payer, req, inputs * COUNTER_SPAN, now);
  for (guint i = 0; i < MAX_MUTATIONS && !fuzz_input_done (&in); i++)
    mutate (&spec, &in);

  g_autoptr (GBytes) cbody = cert_body (&spec);
  g_autoptr (GBytes) pbody = perm_body (&spec);
  Offer o = { .policy = &policy, .now = now };
  g_autoptr (GBytes) cert = envelope_build (cbody, spec.cert_signer, spec.cert_ctx,
                                            spec.cert_sig_mode % 16, spec.cert_sig_offset,
                                            &o.cert_signer, &o.cert_sig_intact);
  g_autoptr (GBytes) perm = envelope_build (pbody, spec.perm_signer, spec.perm_ctx,
                                            spec.perm_sig_mode % 16, spec.perm_sig_offset,
                                            &o.perm_signer, &o.perm_sig_intact);
  g_autoptr (Tally__SignedEnvelope) cert_env = envelope_with_trailer (
    cert, spec.cert_trailer, spec.cert_trailer_len, &o.cert_sig_intact, &error);
  g_autoptr (Tally__SignedEnvelope) perm_env =
    cert_env != NULL ? envelope_with_trailer (perm, spec.perm_trailer, spec.perm_trailer_len,
                                              &o.perm_sig_intact, &error)
                     : NULL;
  if (cert_env == NULL || perm_env == NULL) {
    /* Only a trailer can spoil an envelope the harness packed. */
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
    g_assert_true (spec.cert_trailer != NULL || spec.perm_trailer != NULL);
    return 0;
  }
  o.cert_env = cert_env;
  o.perm_env = perm_env;
  o.trailer = spec.cert_trailer != NULL || spec.perm_trailer != NULL;

  offer_once (&o);
  if (spec.again)
    offer_once (&o);
  if (!spec.twin)
    return 0;

  /* The same counter on another permission, for a fresh request of the
   * same amount: a double spend once the first was taken. */
  const Request *second =
    request_new (spec.amount > 0 && spec.amount <= TALLY_AMOUNT_MAX ? spec.amount : 1,
                 requests[0]->memo);
  memcpy (spec.nonce, second->nonce, TALLY_NONCE_BYTES);
  spec.nonce_len = TALLY_NONCE_BYTES;
  spec.created_at++;
  g_autoptr (GBytes) twin_body = perm_body (&spec);
  Offer twin = o;
  g_autoptr (GBytes) twin_perm = envelope_build (twin_body, spec.perm_signer, spec.perm_ctx,
                                                 spec.perm_sig_mode % 16, spec.perm_sig_offset,
                                                 &twin.perm_signer, &twin.perm_sig_intact);
  g_autoptr (Tally__SignedEnvelope) twin_env = envelope_with_trailer (
    twin_perm, spec.perm_trailer, spec.perm_trailer_len, &twin.perm_sig_intact, &error);
  if (twin_env == NULL) {
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
    return 0;
  }
  twin.perm_env = twin_env;
  offer_once (&twin);
  return 0;
}
