/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The adversarial matrix: every hostile input of docs/protocol.md, one named
 * case each, in one table.  A case names the layer that must refuse, the
 * specific TALLY_ERROR, a preparation and an attack.  The world it runs in
 * is real: an issuer (tally-issuer), three soft registers it certified, the
 * honest sessions of pairing/, the scripted peer of tests/pairing/script.h
 * for anything an honest peer would never send, and a reassembler.
 *
 * The harness snapshots everything the attack could change right before
 * it: every register (fixture_register_dump), the issuer (audit, revocation
 * list, fraud proofs, accounts) and the reassembler.  After the attack it
 * asserts the error, compares the registers in memory and again after
 * reopening them from disk, and checks that the reassembler still takes a
 * whole message.  Two outcomes assert a specific change instead of none:
 *
 *   OUTCOME_GOSSIP_ADOPTED  a payer applies a newer revocation list before it
 *                           checks the payee (protocol.md §4.2), so refusing a
 *                           revoked payee leaves that list behind;
 *   OUTCOME_FRAUD_PROVED    a double spend reaches the issuer as a bundle that
 *                           verifies; the issuer books it, writes the fraud
 *                           proof the error names and revokes the register.
 *   OUTCOME_EVIDENCE_ENFORCED
 *                           a register's owner, with root over its database
 *                           and its key, feeds the issuer a bundle that
 *                           verifies but spends or defunds beyond the
 *                           register's evidence (protocol.md 5.5); the issuer
 *                           credits the evidence only, writes the proofs the
 *                           case expects (World.judged) and revokes the
 *                           culprit alone.
 */

#include <sqlite3.h>
#include <string.h>

#include "script.h"
#include "tally-frame.h"
#include "tally-hex.h"
#include "tally-issuer.h"
#include "tally-keyfile.h"
#include "tally-session.h"
#include "wallet-fixture.h"

#define NOW         FIXTURE_NOW
#define DAY         ((guint64) 24 * 3600)
/* The issuer's first revocation list is this old at NOW. */
#define ISSUER_BORN (NOW - 10 * DAY)
/* Registers are certified and install their certificate here. */
#define CERTIFIED   (NOW - DAY)
#define VALID_UNTIL (NOW + FIXTURE_YEAR)

#define MAX_PAYMENT          5000
#define BALANCE_CAP          20000
#define MAX_OFFLINE_PAYMENTS 3
#define MAX_OFFLINE_SECONDS  (7 * DAY)
#define ACCOUNT_DEPOSIT      50000
#define PAYER_FUNDS          10000

#define REASSEMBLY_TIMEOUT_MS 5000
#define CLOCK_START_US        ((gint64) 1000 * G_USEC_PER_SEC)
#define PROBE_MTU             20

#define EPH SCRIPT_EPH_BYTES

/* --- the world ---------------------------------------------------------------- */

typedef enum
{
  DEVICE_PAYER,
  DEVICE_PAYEE,
  DEVICE_THIRD,
  N_DEVICES,
} DeviceIndex;

static const char *const device_names[N_DEVICES] = { "payer", "payee", "third" };

typedef struct
{
  TallyRegister *reg;
  char *dir;
} Device;

/* What the issuer must make of a bundle an owner forged or fed, when the
 * bundle verifies (OUTCOME_EVIDENCE_ENFORCED): the proofs it writes against
 * the culprit, in order, and how each audit figure moves. */
typedef struct
{
  DeviceIndex culprit;
  Tally__FraudKind kinds[2];
  guint n_kinds;
  gint64 deficit;   /* the OVERDRAWN proof's, and the audit row's */
  gint64 credited;  /* the culprit's online account grows by this */
  gint64 refused;   /* defunded value never credited */
  gint64 exposure;  /* the audit's fraud exposure grows by this */
  gint64 awaiting;  /* ... and its awaiting falls by this */
  gint64 in_flight; /* ... and in flight grows by this */
} Judgement;

typedef struct
{
  char *root;
  TallyIssuer *issuer;
  FixtureIssuer *rogue; /* another issuer of the same currency */
  Device devices[N_DEVICES];
  GBytes *payer_voucher; /* the voucher the payer was funded with */
  TallyReassembler *reassembler;
  gint64 clock_us; /* the reassembler's clock, monotonic */

  /* What a case prepares: the hostile input and whoever gets it. */
  guint64 now;
  GBytes *input;
  TallySession *payer_session;
  TallySession *payee_session;
  Script script;
  gboolean have_script;
  TallyRegister *target;  /* the register a load or result goes to */
  GPtrArray *fragments;   /* GBytes, for the reassembler */
  GArray *fragment_times; /* gint64 microseconds, one per fragment */
  gint64 fraud_amount;    /* OUTCOME_FRAUD_PROVED: value spent beyond the evidence */
  Judgement judged;       /* OUTCOME_EVIDENCE_ENFORCED: what the issuer must do */

  /* What the attack did. */
  TallySession *attacked;
  TallySessionState attacked_state; /* before the attack */
  gboolean expect_reply;
  GBytes *reply;
  TallyReconcileReport report;
} World;

#define PAYER(w) ((w)->devices[DEVICE_PAYER].reg)
#define PAYEE(w) ((w)->devices[DEVICE_PAYEE].reg)
#define THIRD(w) ((w)->devices[DEVICE_THIRD].reg)

static Tally__Limits
world_limits (void)
{
  Tally__Limits l = TALLY__LIMITS__INIT;
  l.max_payment = MAX_PAYMENT;
  l.balance_cap = BALANCE_CAP;
  l.max_offline_payments = MAX_OFFLINE_PAYMENTS;
  l.max_offline_seconds = MAX_OFFLINE_SECONDS;
  return l;
}

/* A certificate of the world's issuer for @index, valid over the window
 * given; certifying again takes the register's next serial. */
static GBytes *
world_certificate (World *w, DeviceIndex index, guint64 not_before, guint64 not_after)
{
  g_autoptr (GError) error = NULL;
  Tally__Limits limits = world_limits ();
  GBytes *cert =
    tally_issuer_certify (w->issuer, tally_register_get_public_key (w->devices[index].reg),
                          device_names[index], NULL, &limits, not_before, not_after, &error);
  g_assert_no_error (error);
  g_assert_nonnull (cert);
  return cert;
}

/* Sells @amount to @index's register and loads it there. */
static GBytes *
world_fund (World *w, DeviceIndex index, gint64 amount)
{
  g_autoptr (GError) error = NULL;
  TallyRegister *reg = w->devices[index].reg;
  g_autoptr (GBytes) voucher =
    tally_issuer_sell_voucher (w->issuer, tally_register_get_id (reg), amount, CERTIFIED, &error);
  g_assert_no_error (error);
  gsize len;
  const guint8 *data = g_bytes_get_data (voucher, &len);
  g_assert_true (tally_register_load (reg, data, len, CERTIFIED, &error));
  g_assert_no_error (error);
  return g_steal_pointer (&voucher);
}

static void
device_init (World *w, DeviceIndex index)
{
  g_autoptr (GError) error = NULL;
  Device *d = &w->devices[index];
  const char *name = device_names[index];

  d->dir = g_build_filename (w->root, name, NULL);
  d->reg = tally_register_create (d->dir, tally_issuer_get_public_key (w->issuer), &error);
  g_assert_no_error (error);
  g_assert_true (tally_issuer_account_create (w->issuer, name, &error));
  g_assert_no_error (error);
  g_assert_true (tally_issuer_deposit (w->issuer, name, ACCOUNT_DEPOSIT, &error));
  g_assert_no_error (error);

  g_autoptr (GBytes) cert = world_certificate (w, index, CERTIFIED, VALID_UNTIL);
  gsize len;
  const guint8 *data = g_bytes_get_data (cert, &len);
  g_assert_true (tally_register_install_certificate (d->reg, data, len, CERTIFIED, &error));
  g_assert_no_error (error);
}

static void
world_init (World *w)
{
  g_autoptr (GError) error = NULL;

  memset (w, 0, sizeof *w);
  w->root = fixture_tmpdir ();
  g_autofree char *issuer_dir = g_build_filename (w->root, "issuer", NULL);
  w->issuer =
    tally_issuer_create (issuer_dir, "Adversarial Bank", FIXTURE_CURRENCY, ISSUER_BORN, &error);
  g_assert_no_error (error);
  w->rogue = fixture_issuer_new (FIXTURE_CURRENCY);
  for (int i = 0; i < N_DEVICES; i++)
    device_init (w, (DeviceIndex) i);
  w->payer_voucher = world_fund (w, DEVICE_PAYER, PAYER_FUNDS);
  w->reassembler = tally_reassembler_new (TALLY_SESSION_MAX_MESSAGE, REASSEMBLY_TIMEOUT_MS);
  w->clock_us = CLOCK_START_US;
  w->now = NOW;
}

/* Sessions borrow registers: they go before any register closes. */
static void
world_end_sessions (World *w)
{
  g_clear_pointer (&w->payer_session, tally_session_free);
  g_clear_pointer (&w->payee_session, tally_session_free);
  w->attacked = NULL;
  if (w->have_script) {
    script_clear (&w->script);
    w->have_script = FALSE;
  }
}

static void
device_reopen (Device *d)
{
  g_autoptr (GError) error = NULL;
  g_clear_pointer (&d->reg, tally_register_free);
  d->reg = tally_register_open (d->dir, &error);
  g_assert_no_error (error);
}

/* A copy of the payer's register directory, taken with the register closed. */
static char *
world_save_payer (World *w)
{
  Device *d = &w->devices[DEVICE_PAYER];
  char *copy = g_build_filename (w->root, "payer-saved", NULL);
  g_clear_pointer (&d->reg, tally_register_free);
  fixture_copy_dir (d->dir, copy);
  device_reopen (d);
  return copy;
}

/* Rolls the payer's register back to a saved copy: what a cloned or
 * restored device looks like to everyone else. */
static void
world_restore_payer (World *w, const char *copy)
{
  Device *d = &w->devices[DEVICE_PAYER];
  g_clear_pointer (&d->reg, tally_register_free);
  fixture_remove_tree (d->dir);
  fixture_copy_dir (copy, d->dir);
  device_reopen (d);
  g_assert_cmpuint (tally_register_get_counter (d->reg), ==, 0);
}

static void
world_clear (World *w)
{
  world_end_sessions (w);
  g_clear_pointer (&w->reply, g_bytes_unref);
  g_clear_pointer (&w->input, g_bytes_unref);
  g_clear_pointer (&w->fragments, g_ptr_array_unref);
  g_clear_pointer (&w->fragment_times, g_array_unref);
  g_clear_pointer (&w->reassembler, tally_reassembler_free);
  g_clear_pointer (&w->payer_voucher, g_bytes_unref);
  for (int i = 0; i < N_DEVICES; i++) {
    g_clear_pointer (&w->devices[i].reg, tally_register_free);
    g_free (w->devices[i].dir);
  }
  g_clear_pointer (&w->issuer, tally_issuer_free);
  g_clear_pointer (&w->rogue, fixture_issuer_free);
  fixture_remove_tree (w->root);
  g_free (w->root);
}

/* --- forging ------------------------------------------------------------------ */

/* The same envelope with one bit of its signature flipped. */
static GBytes *
forge_signature (GBytes *packed)
{
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (packed);
  g_assert_cmpuint (env->signature.len, ==, TALLY_SIGNATURE_BYTES);
  env->signature.data[9] ^= 0x04;
  return tally_envelope_pack (env);
}

/* The same SessionMessage with one bit of its ciphertext flipped. */
static GBytes *
tamper_ciphertext (GBytes *msg)
{
  g_autoptr (Tally__SessionMessage) m = script_unpack_session (msg);
  ProtobufCBinaryData *ct;
  if (m->msg_case == TALLY__SESSION_MESSAGE__MSG_OFFER) {
    ct = &m->offer->ciphertext;
  } else if (m->msg_case == TALLY__SESSION_MESSAGE__MSG_PAY) {
    ct = &m->pay;
  } else {
    g_assert_cmpint (m->msg_case, ==, TALLY__SESSION_MESSAGE__MSG_RECEIPT);
    ct = &m->receipt;
  }
  g_assert_cmpuint (ct->len, >, 0);
  ct->data[ct->len / 2] ^= 0x01;
  return script_pack_session (m);
}

/* A well-formed SessionMessage of @msg_case whose contents are random. */
static GBytes *
random_message (Tally__SessionMessage__MsgCase msg_case)
{
  guint8 eph[EPH], ct[96];
  randombytes_buf (eph, sizeof eph);
  randombytes_buf (ct, sizeof ct);
  Tally__Hello hello = TALLY__HELLO__INIT;
  Tally__Offer offer = TALLY__OFFER__INIT;
  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = msg_case;
  if (msg_case == TALLY__SESSION_MESSAGE__MSG_HELLO) {
    hello.version = TALLY_PROTOCOL_VERSION;
    hello.ephemeral_public_key.data = eph;
    hello.ephemeral_public_key.len = sizeof eph;
    m.hello = &hello;
  } else if (msg_case == TALLY__SESSION_MESSAGE__MSG_OFFER) {
    offer.ephemeral_public_key.data = eph;
    offer.ephemeral_public_key.len = sizeof eph;
    offer.ciphertext.data = ct;
    offer.ciphertext.len = sizeof ct;
    m.offer = &offer;
  } else if (msg_case == TALLY__SESSION_MESSAGE__MSG_PAY) {
    m.pay.data = ct;
    m.pay.len = sizeof ct;
  } else if (msg_case == TALLY__SESSION_MESSAGE__MSG_REVEAL) {
    m.reveal.data = ct;
    m.reveal.len = sizeof ct;
  } else {
    g_assert_cmpint (msg_case, ==, TALLY__SESSION_MESSAGE__MSG_RECEIPT);
    m.receipt.data = ct;
    m.receipt.len = sizeof ct;
  }
  return script_pack_session (&m);
}

/* --- the peers ------------------------------------------------------------------ */

/* An honest payee session over the payee asking @amount, waiting for Hello. */
static void
waiting_payee (World *w, gint64 amount)
{
  g_autoptr (GError) error = NULL;
  w->payee_session = tally_session_new_payee (PAYEE (w), amount, "adversary", NULL, NOW, &error);
  g_assert_no_error (error);
}

/* A scripted payer that opened the offer of an honest payee session. */
static void
scripted_payer (World *w, gint64 amount)
{
  PayeeRig rig;
  payee_rig_init (&rig, PAYEE (w), amount);
  /* The world owns the script and the session from here on. */
  w->script = rig.s;
  w->have_script = TRUE;
  w->payee_session = g_steal_pointer (&rig.payee);
}

/* ... stopped before the Reveal: the payee session is OFFER_SENT and shows
 * no code. */
static void
scripted_payer_offered (World *w, gint64 amount)
{
  PayeeRig rig;
  payee_rig_init_offered (&rig, PAYEE (w), amount);
  w->script = rig.s;
  w->have_script = TRUE;
  w->payee_session = g_steal_pointer (&rig.payee);
}

/* A scripted payee facing an honest payer session that sent its Hello.
 * Returns the honest request of the payee register it may offer. */
static Tally__PaymentRequest *
scripted_payee (World *w, GBytes **hello)
{
  PayerRig rig;
  payer_rig_init (&rig, PAYER (w), PAYEE (w));
  /* The world owns the script and the session from here on. */
  w->script = rig.s;
  w->have_script = TRUE;
  w->payer_session = g_steal_pointer (&rig.payer);
  *hello = g_steal_pointer (&rig.hello);
  return g_steal_pointer (&rig.request);
}

/* The honest payer register's permission for the offer the script opened. */
static GBytes *
honest_permission (World *w)
{
  g_autoptr (GError) error = NULL;
  GBytes *perm = tally_register_spend (PAYER (w), w->script.offer->payee_certificate,
                                       w->script.offer->request, NOW, &error);
  g_assert_no_error (error);
  return perm;
}

/* The scripted payer's Pay with the payer's certificate, @perm and the
 * transcript signed by the payer register. */
static GBytes *
scripted_pay (World *w, GBytes *perm)
{
  g_autoptr (GBytes) cert = tally_register_get_certificate (PAYER (w));
  return script_pay (&w->script, cert, perm, PAYER (w), NULL);
}

/* The scripted payee's offer of the payee's certificate and @req, with
 * @revocation_list gossiped along (may be NULL). */
static GBytes *
scripted_offer (World *w, GBytes *hello, const Tally__PaymentRequest *req, GBytes *revocation_list)
{
  g_autoptr (GBytes) cert = tally_register_get_certificate (PAYEE (w));
  g_autoptr (Tally__SignedEnvelope) cert_env = fixture_envelope (cert);
  g_autoptr (Tally__SignedEnvelope) list_env =
    revocation_list ? fixture_envelope (revocation_list) : NULL;
  Tally__OfferBody body = TALLY__OFFER_BODY__INIT;
  body.payee_certificate = cert_env;
  body.request = (Tally__PaymentRequest *) req;
  body.revocation_list = list_env;
  body.max_message = TALLY_SESSION_MAX_MESSAGE;
  if (list_env != NULL) {
    g_autoptr (Tally__RevocationList) peek =
      TALLY_UNPACK (Tally__RevocationList, tally__revocation_list, list_env->body.data,
                    list_env->body.len, "revocation list", NULL);
    g_assert_nonnull (peek);
    body.revocation_serial = peek->serial;
  }
  return script_offer_body (&w->script, hello, &body, PAYEE (w), NULL);
}

/* The scripted payee takes the honest payer to PAY_SENT: the payer
 * committed its spend.  Returns the payee register's honest receipt. */
static GBytes *
payer_awaiting_receipt (World *w)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) hello = NULL;
  g_autoptr (Tally__PaymentRequest) req = scripted_payee (w, &hello);
  g_autoptr (GBytes) offer = scripted_offer (w, hello, req, NULL);
  g_autoptr (GBytes) reveal = NULL;
  g_assert_true (tally_session_handle (w->payer_session, g_bytes_get_data (offer, NULL),
                                       g_bytes_get_size (offer), NOW, &reveal, &error));
  g_assert_no_error (error);
  script_take_reveal (&w->script, reveal);
  g_assert_true (w->script.commitment_ok);
  g_autoptr (GBytes) pay = tally_session_confirm (w->payer_session, NOW, &error);
  g_assert_no_error (error);
  script_take_pay (&w->script, pay);
  g_assert_nonnull (w->script.pay->payer_certificate);
  GBytes *receipt = tally_register_receive (PAYEE (w), w->script.pay->payer_certificate,
                                            w->script.pay->permission, NULL, NULL, NOW,
                                            &error);
  g_assert_no_error (error);
  return receipt;
}

/* Honest payer and payee sessions: Hello sent and answered.  Returns the
 * payee's Offer, not yet handled by the payer. */
static GBytes *
honest_offer (World *w, gint64 amount, const TallyAcceptPolicy *payee_policy, guint64 now)
{
  g_autoptr (GError) error = NULL;
  w->payee_session =
    tally_session_new_payee (PAYEE (w), amount, "adversary", payee_policy, now, &error);
  g_assert_no_error (error);
  w->payer_session = tally_session_new_payer (PAYER (w), NULL);
  g_autoptr (GBytes) hello = tally_session_start (w->payer_session, &error);
  g_assert_no_error (error);
  GBytes *offer = NULL;
  g_assert_true (tally_session_handle (w->payee_session, g_bytes_get_data (hello, NULL),
                                       g_bytes_get_size (hello), now, &offer, &error));
  g_assert_no_error (error);
  return offer;
}

/* ... and the payer verified the offer: CONFIRMING; the payee took its
 * Reveal: WAIT_PAY. */
static void
honest_confirming (World *w, gint64 amount, const TallyAcceptPolicy *payee_policy, guint64 now)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) offer = honest_offer (w, amount, payee_policy, now);
  g_autoptr (GBytes) reveal = NULL;
  g_assert_true (tally_session_handle (w->payer_session, g_bytes_get_data (offer, NULL),
                                       g_bytes_get_size (offer), now, &reveal, &error));
  g_assert_no_error (error);
  g_assert_nonnull (reveal);
  g_assert_cmpint (tally_session_get_state (w->payer_session), ==,
                   TALLY_SESSION_STATE_CONFIRMING);
  g_autoptr (GBytes) none = NULL;
  g_assert_true (tally_session_handle (w->payee_session, g_bytes_get_data (reveal, NULL),
                                       g_bytes_get_size (reveal), now, &none, &error));
  g_assert_no_error (error);
  g_assert_null (none);
  g_assert_cmpint (tally_session_get_state (w->payee_session), ==, TALLY_SESSION_STATE_WAIT_PAY);
}

/* ... and the payer confirmed: returns its Pay, not yet handled. */
static GBytes *
honest_pay (World *w, gint64 amount, const TallyAcceptPolicy *payee_policy, guint64 now)
{
  g_autoptr (GError) error = NULL;
  honest_confirming (w, amount, payee_policy, now);
  GBytes *pay = tally_session_confirm (w->payer_session, now, &error);
  g_assert_no_error (error);
  return pay;
}

/* @reg's bundle, exported at @now. */
static GBytes *
export_bundle_at (TallyRegister *reg, guint64 now)
{
  g_autoptr (GError) error = NULL;
  GBytes *bundle = tally_register_export_bundle (reg, now, &error);
  g_assert_no_error (error);
  return bundle;
}

static GBytes *
export_bundle (TallyRegister *reg)
{
  return export_bundle_at (reg, NOW);
}

/* Reconciles @bundle at @now; returns the result, not applied anywhere. */
static GBytes *
reconcile_bundle (World *w, GBytes *bundle, guint64 now, TallyReconcileReport *report)
{
  g_autoptr (GError) error = NULL;
  GBytes *result = tally_issuer_reconcile (w->issuer, g_bytes_get_data (bundle, NULL),
                                           g_bytes_get_size (bundle), now, report, &error);
  g_assert_no_error (error);
  g_assert_nonnull (result);
  return result;
}

/* Reconciles @reg at the issuer without applying the result. */
static GBytes *
reconcile (World *w, TallyRegister *reg)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) bundle = export_bundle (reg);
  GBytes *result = tally_issuer_reconcile (w->issuer, g_bytes_get_data (bundle, NULL),
                                           g_bytes_get_size (bundle), NOW, NULL, &error);
  g_assert_no_error (error);
  return result;
}

/* The issuer revokes @index and @holder stores the list that says so. */
static void
revoke (World *w, DeviceIndex index, DeviceIndex holder)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (
    tally_issuer_revoke (w->issuer, tally_register_get_id (w->devices[index].reg), NOW, &error));
  g_assert_no_error (error);
  g_autoptr (GBytes) list = tally_issuer_get_revocation_list (w->issuer, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (list);
  g_assert_true (tally_register_update_revocation_list (w->devices[holder].reg, env, &error));
  g_assert_no_error (error);
}

/* --- the owner: root over the register's database and key ----------------------- */

/* What the owner of a soft register can do as root (threat-model.md §1):
 * stop it, write @balance into its SQLite database, start it again. */
static void
edit_stored_balance (World *w, DeviceIndex index, gint64 balance)
{
  Device *d = &w->devices[index];
  g_clear_pointer (&d->reg, tally_register_free);
  g_autofree char *path = g_build_filename (d->dir, "register.db", NULL);
  sqlite3 *db = NULL;
  g_assert_cmpint (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE, NULL), ==, SQLITE_OK);
  sqlite3_stmt *st = NULL;
  g_assert_cmpint (
    sqlite3_prepare_v2 (db, "UPDATE register_state SET balance = ? WHERE id = 1", -1, &st, NULL),
    ==, SQLITE_OK);
  sqlite3_bind_int64 (st, 1, balance);
  g_assert_cmpint (sqlite3_step (st), ==, SQLITE_DONE);
  g_assert_cmpint (sqlite3_changes (db), ==, 1);
  sqlite3_finalize (st);
  g_assert_cmpint (sqlite3_close (db), ==, SQLITE_OK);
  device_reopen (d);
  g_assert_cmpint (tally_register_get_balance (d->reg), ==, balance);
}

static Tally__ReconciliationBundle *
bundle_open (GBytes *bundle)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (bundle);
  Tally__ReconciliationBundle *b =
    TALLY_UNPACK (Tally__ReconciliationBundle, tally__reconciliation_bundle, env->body.data,
                  env->body.len, "bundle", &error);
  g_assert_no_error (error);
  g_assert_nonnull (b);
  return b;
}

/* The counter and chain head the owner's next entry signed with the key
 * (tally_register_sign_any, as reading the key file allows) must carry to
 * extend the register's chain. */
typedef struct
{
  guint64 counter;
  guint8 head[TALLY_HASH_BYTES];
} KeyChain;

static void
key_chain_init (TallyRegister *reg, KeyChain *chain)
{
  /* At time 0 the export leaves the register's horizon as it is. */
  g_autoptr (GBytes) bundle = export_bundle_at (reg, 0);
  g_autoptr (Tally__ReconciliationBundle) b = bundle_open (bundle);
  g_assert_cmpuint (b->chain_head.len, ==, TALLY_HASH_BYTES);
  chain->counter = b->counter;
  memcpy (chain->head, b->chain_head.data, TALLY_HASH_BYTES);
}

/* Signs @entry, whose counter and chain_prev come from @chain, and moves
 * @chain past it. */
static GBytes *
key_sign_entry (TallyRegister *reg,
                KeyChain *chain,
                Tally__SignatureContext ctx,
                const ProtobufCMessage *entry)
{
  GBytes *env = fixture_register_sign_message (reg, ctx, entry);
  guint8 entry_hash[TALLY_HASH_BYTES], next[TALLY_HASH_BYTES];
  fixture_body_hash (env, entry_hash);
  tally_chain_next (chain->head, entry_hash, next);
  memcpy (chain->head, next, sizeof next);
  chain->counter++;
  return env;
}

/* A permission for @req carrying @currency and @amount, signed with the
 * payer's key at the next counter, whatever its balance and limits. */
static GBytes *
key_permission (TallyRegister *payer,
                KeyChain *chain,
                const Tally__PaymentRequest *req,
                const char *currency,
                gint64 amount)
{
  guint8 memo[TALLY_HASH_BYTES];
  tally_hash ("memo", req->memo, strlen (req->memo), memo);
  Tally__Amount a = TALLY__AMOUNT__INIT;
  a.currency = (char *) currency;
  a.value = amount;
  Tally__DepositPermission p = TALLY__DEPOSIT_PERMISSION__INIT;
  p.payer_register_id.data = (guint8 *) tally_register_get_id (payer);
  p.payer_register_id.len = TALLY_ID_BYTES;
  p.payee_register_id = req->payee_register_id;
  p.payee_nonce = req->nonce;
  p.amount = &a;
  p.counter = chain->counter + 1;
  p.chain_prev.data = chain->head;
  p.chain_prev.len = TALLY_HASH_BYTES;
  p.created_at = NOW;
  p.memo_hash.data = memo;
  p.memo_hash.len = sizeof memo;
  p.expires_at = req->expires_at;
  return key_sign_entry (payer, chain,
                         TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION, &p.base);
}

/* A permission signed with the payer's own key for @req, but carrying
 * @currency and @amount: a payer register that ignores its own rules. */
static GBytes *
forge_permission (World *w, const Tally__PaymentRequest *req, const char *currency, gint64 amount)
{
  KeyChain chain;
  key_chain_init (PAYER (w), &chain);
  g_assert_cmpuint (chain.counter, ==, 0);
  return key_permission (PAYER (w), &chain, req, currency, amount);
}

/* A defund of @amount signed with the register's key at the next counter. */
static GBytes *
key_defund (TallyRegister *reg, KeyChain *chain, gint64 amount, guint64 now)
{
  Tally__Amount a = TALLY__AMOUNT__INIT;
  a.currency = (char *) FIXTURE_CURRENCY;
  a.value = amount;
  Tally__DefundRecord d = TALLY__DEFUND_RECORD__INIT;
  d.register_id.data = (guint8 *) tally_register_get_id (reg);
  d.register_id.len = TALLY_ID_BYTES;
  d.amount = &a;
  d.counter = chain->counter + 1;
  d.chain_prev.data = chain->head;
  d.chain_prev.len = TALLY_HASH_BYTES;
  d.created_at = now;
  return key_sign_entry (reg, chain, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEFUND, &d.base);
}

/* @bundle packed and signed with @reg's key. */
static GBytes *
key_sign_bundle (TallyRegister *reg, const Tally__ReconciliationBundle *bundle)
{
  g_autoptr (GBytes) body = tally_message_pack (&bundle->base);
  return fixture_register_sign (
    reg, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_BUNDLE, body);
}

#define MAX_KEY_ENTRIES 8

/* @bundle, an honest export of @reg, as the owner re-signs it with the
 * key: the @n_spent entries signed with the key appended to its own, its
 * counter and chain head moved to @chain. */
static GBytes *
key_bundle_with (TallyRegister *reg,
                 GBytes *bundle,
                 GBytes *const *spent,
                 gsize n_spent,
                 const KeyChain *chain)
{
  g_autoptr (Tally__ReconciliationBundle) b = bundle_open (bundle);
  g_assert_cmpuint (b->n_spent + n_spent, <=, MAX_KEY_ENTRIES);
  Tally__SpentEntry entries[MAX_KEY_ENTRIES];
  Tally__SpentEntry *list[MAX_KEY_ENTRIES];
  Tally__SignedEnvelope *envs[MAX_KEY_ENTRIES];
  for (gsize i = 0; i < b->n_spent; i++)
    list[i] = b->spent[i];
  for (gsize i = 0; i < n_spent; i++) {
    envs[i] = fixture_envelope (spent[i]);
    tally__spent_entry__init (&entries[i]);
    entries[i].permission = envs[i];
    list[b->n_spent + i] = &entries[i];
  }
  /* A copy that borrows from @b: packed before @b goes. */
  Tally__ReconciliationBundle forged = *b;
  forged.spent = list;
  forged.n_spent = b->n_spent + n_spent;
  forged.counter = chain->counter;
  forged.chain_head.data = (guint8 *) chain->head;
  forged.chain_head.len = TALLY_HASH_BYTES;
  GBytes *signed_bundle = key_sign_bundle (reg, &forged);
  for (gsize i = 0; i < n_spent; i++)
    tally__signed_envelope__free_unpacked (envs[i], NULL);
  return signed_bundle;
}

/* @bundle, an honest export of @reg, re-signed without its received
 * entries: a payee hiding the payments it was made. */
static GBytes *
key_bundle_without_received (TallyRegister *reg, GBytes *bundle)
{
  g_autoptr (Tally__ReconciliationBundle) b = bundle_open (bundle);
  g_assert_cmpuint (b->n_received, >, 0);
  Tally__ReconciliationBundle forged = *b;
  forged.received = NULL;
  forged.n_received = 0;
  return key_sign_bundle (reg, &forged);
}

/* --- attacks -------------------------------------------------------------------- */

static gboolean
deliver (World *w, TallySession *session, GError **error)
{
  g_assert_nonnull (session);
  g_assert_nonnull (w->input);
  w->attacked = session;
  w->attacked_state = tally_session_get_state (session);
  w->expect_reply = w->attacked_state != TALLY_SESSION_STATE_DONE &&
                    w->attacked_state != TALLY_SESSION_STATE_FAILED;
  return tally_session_handle (session, g_bytes_get_data (w->input, NULL),
                               g_bytes_get_size (w->input), w->now, &w->reply, error);
}

/* The honest payee session handles the input. */
static gboolean
attack_payee (World *w, GError **error)
{
  return deliver (w, w->payee_session, error);
}

/* The honest payer session handles the input. */
static gboolean
attack_payer (World *w, GError **error)
{
  return deliver (w, w->payer_session, error);
}

/* The payer's agent confirms the offer it was shown: the register spends. */
static gboolean
attack_confirm (World *w, GError **error)
{
  w->attacked = w->payer_session;
  w->attacked_state = tally_session_get_state (w->payer_session);
  w->expect_reply = FALSE; /* the caller sends its own Error after a refused confirm */
  g_autoptr (GBytes) pay = tally_session_confirm (w->payer_session, w->now, error);
  return pay != NULL;
}

static gboolean
attack_load (World *w, GError **error)
{
  return tally_register_load (w->target, g_bytes_get_data (w->input, NULL),
                              g_bytes_get_size (w->input), w->now, error);
}

static gboolean
attack_apply_result (World *w, GError **error)
{
  return tally_register_apply_result (w->target, g_bytes_get_data (w->input, NULL),
                                      g_bytes_get_size (w->input), w->now, error);
}

static gboolean
attack_reconcile (World *w, GError **error)
{
  g_autoptr (GBytes) result =
    tally_issuer_reconcile (w->issuer, g_bytes_get_data (w->input, NULL),
                            g_bytes_get_size (w->input), w->now, &w->report, error);
  return result != NULL;
}

/* Pushes every fragment at its time; all but the last must be taken
 * without completing a message. */
static gboolean
attack_reassembler (World *w, GError **error)
{
  g_assert_cmpuint (w->fragments->len, >, 0);
  g_assert_cmpuint (w->fragments->len, ==, w->fragment_times->len);
  for (guint i = 0; i < w->fragments->len; i++) {
    gsize len;
    const guint8 *data = g_bytes_get_data (w->fragments->pdata[i], &len);
    gint64 at = g_array_index (w->fragment_times, gint64, i);
    g_autoptr (GBytes) message = NULL;
    w->clock_us = MAX (w->clock_us, at);
    if (i + 1 == w->fragments->len)
      return tally_reassembler_push (w->reassembler, data, len, at, &message, error);
    g_autoptr (GError) local = NULL;
    g_assert_true (tally_reassembler_push (w->reassembler, data, len, at, &message, &local));
    g_assert_no_error (local);
    g_assert_null (message);
  }
  g_assert_not_reached ();
}

/* --- preparations: forged signatures ---------------------------------------------- */

static void
prepare_payer_certificate_forged (World *w)
{
  scripted_payer (w, 700);
  g_autoptr (GBytes) cert = tally_register_get_certificate (PAYER (w));
  g_autoptr (GBytes) forged = forge_signature (cert);
  g_autoptr (GBytes) perm = honest_permission (w);
  w->input = script_pay (&w->script, forged, perm, PAYER (w), NULL);
}

static void
prepare_voucher_forged (World *w)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) voucher =
    tally_issuer_sell_voucher (w->issuer, tally_register_get_id (PAYEE (w)), 500, NOW, &error);
  g_assert_no_error (error);
  w->target = PAYEE (w);
  w->input = forge_signature (voucher);
}

static void
prepare_permission_forged (World *w)
{
  scripted_payer (w, 700);
  g_autoptr (GBytes) perm = honest_permission (w);
  g_autoptr (GBytes) forged = forge_signature (perm);
  w->input = scripted_pay (w, forged);
}

static void
prepare_receipt_forged (World *w)
{
  g_autoptr (GBytes) receipt = payer_awaiting_receipt (w);
  g_autoptr (GBytes) forged = forge_signature (receipt);
  w->input = script_receipt (&w->script, forged);
}

static void
prepare_revocation_list_forged (World *w)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) list = tally_issuer_get_revocation_list (w->issuer, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) forged = forge_signature (list);
  g_autoptr (GBytes) hello = NULL;
  g_autoptr (Tally__PaymentRequest) req = scripted_payee (w, &hello);
  w->input = scripted_offer (w, hello, req, forged);
}

static void
prepare_bundle_forged (World *w)
{
  g_autoptr (GBytes) perm = fixture_pay (PAYER (w), PAYEE (w), 300, "lunch", NOW, NULL);
  g_autoptr (GBytes) bundle = export_bundle (PAYER (w));
  w->input = forge_signature (bundle);
}

static void
prepare_result_forged (World *w)
{
  g_autoptr (GBytes) perm = fixture_pay (PAYER (w), PAYEE (w), 300, "lunch", NOW, NULL);
  g_autoptr (GBytes) result = reconcile (w, PAYER (w));
  w->target = PAYER (w);
  w->input = forge_signature (result);
}

static void
prepare_offer_transcript_forged (World *w)
{
  g_autoptr (GBytes) hello = NULL;
  g_autoptr (Tally__PaymentRequest) req = scripted_payee (w, &hello);
  g_autoptr (GBytes) cert = tally_register_get_certificate (PAYEE (w));
  guint8 pk[TALLY_PUBLIC_KEY_BYTES], sk[TALLY_SECRET_KEY_BYTES];
  crypto_sign_keypair (pk, sk);
  w->input = script_offer (&w->script, hello, cert, req, NULL, sk);
  sodium_memzero (sk, sizeof sk);
}

static void
prepare_pay_transcript_forged (World *w)
{
  scripted_payer (w, 700);
  g_autoptr (GBytes) cert = tally_register_get_certificate (PAYER (w));
  g_autoptr (GBytes) perm = honest_permission (w);
  guint8 pk[TALLY_PUBLIC_KEY_BYTES], sk[TALLY_SECRET_KEY_BYTES];
  crypto_sign_keypair (pk, sk);
  w->input = script_pay (&w->script, cert, perm, NULL, sk);
  sodium_memzero (sk, sizeof sk);
}

/* --- preparations: the wrong issuer ---------------------------------------------- */

static void
prepare_payer_certificate_from_rogue (World *w)
{
  scripted_payer (w, 700);
  g_autoptr (GBytes) cert = fixture_certify (w->rogue, tally_register_get_public_key (PAYER (w)),
                                             NULL, CERTIFIED, VALID_UNTIL, 1);
  g_autoptr (GBytes) perm = honest_permission (w);
  w->input = script_pay (&w->script, cert, perm, PAYER (w), NULL);
}

static void
prepare_voucher_from_rogue (World *w)
{
  w->target = PAYEE (w);
  w->input = fixture_voucher (w->rogue, tally_register_get_id (PAYEE (w)), 1, 500, NULL);
}

static void
prepare_revocation_list_from_rogue (World *w)
{
  g_autoptr (GBytes) list = fixture_revocation_list (w->rogue, 5, NOW, NULL);
  g_autoptr (GBytes) hello = NULL;
  g_autoptr (Tally__PaymentRequest) req = scripted_payee (w, &hello);
  w->input = scripted_offer (w, hello, req, list);
}

/* --- preparations: another currency (one peer check, wallet/tally-peer.c) ---------------- */

/* @index's certificate with its currency changed to @currency and signed
 * again with the world issuer's key, read from its key file: what an issuer
 * serving two currencies under one key would hand out. */
static GBytes *
world_certificate_in (World *w, DeviceIndex index, const char *currency)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) cert = world_certificate (w, index, CERTIFIED, VALID_UNTIL);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (cert);
  g_autoptr (Tally__RegisterCertificate) c =
    TALLY_UNPACK (Tally__RegisterCertificate, tally__register_certificate, env->body.data,
                  env->body.len, "certificate", &error);
  g_assert_no_error (error);
  char *own = c->currency;
  c->currency = (char *) currency;
  g_autoptr (GBytes) body = tally_message_pack (&c->base);
  c->currency = own;

  g_autofree char *key_path = g_build_filename (w->root, "issuer", "issuer.key", NULL);
  guint8 *sk = tally_secret_key_new ();
  g_assert_true (tally_key_file_read (key_path, sk, &error));
  g_assert_no_error (error);
  GBytes *out =
    tally_envelope_sign (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE,
                         g_bytes_get_data (body, NULL), g_bytes_get_size (body), sk);
  tally_secret_key_free (sk);
  return out;
}

static void
prepare_payer_certificate_in_another_currency (World *w)
{
  scripted_payer (w, 700);
  g_autoptr (GBytes) cert = world_certificate_in (w, DEVICE_PAYER, "USD");
  g_autoptr (GBytes) perm = honest_permission (w);
  w->input = script_pay (&w->script, cert, perm, PAYER (w), NULL);
}

static void
prepare_payee_certificate_in_another_currency (World *w)
{
  g_autoptr (GBytes) hello = NULL;
  g_autoptr (Tally__PaymentRequest) req = scripted_payee (w, &hello);
  g_autoptr (GBytes) cert = world_certificate_in (w, DEVICE_PAYEE, "USD");
  w->input = script_offer (&w->script, hello, cert, req, PAYEE (w), NULL);
}

/* --- preparations: certificate validity -------------------------------------------- */

static void
scripted_pay_with_payer_certificate (World *w, guint64 not_before, guint64 not_after)
{
  scripted_payer (w, 700);
  g_autoptr (GBytes) cert = world_certificate (w, DEVICE_PAYER, not_before, not_after);
  g_autoptr (GBytes) perm = honest_permission (w);
  w->input = script_pay (&w->script, cert, perm, PAYER (w), NULL);
}

static void
prepare_payer_certificate_expired (World *w)
{
  scripted_pay_with_payer_certificate (w, NOW - 100 * DAY, NOW - 1);
}

static void
prepare_payer_certificate_not_yet_valid (World *w)
{
  scripted_pay_with_payer_certificate (w, NOW + 1, VALID_UNTIL);
}

static void
scripted_offer_with_payee_certificate (World *w, guint64 not_before, guint64 not_after)
{
  g_autoptr (GBytes) hello = NULL;
  g_autoptr (Tally__PaymentRequest) req = scripted_payee (w, &hello);
  g_autoptr (GBytes) cert = world_certificate (w, DEVICE_PAYEE, not_before, not_after);
  w->input = script_offer (&w->script, hello, cert, req, PAYEE (w), NULL);
}

static void
prepare_payee_certificate_expired (World *w)
{
  scripted_offer_with_payee_certificate (w, NOW - 100 * DAY, NOW - 1);
}

static void
prepare_payee_certificate_not_yet_valid (World *w)
{
  scripted_offer_with_payee_certificate (w, NOW + 1, VALID_UNTIL);
}

/* --- preparations: revocation ------------------------------------------------------ */

static void
prepare_payer_revoked (World *w)
{
  /* The payer's register never heard of its revocation; the payee has. */
  revoke (w, DEVICE_PAYER, DEVICE_PAYEE);
  scripted_payer (w, 700);
  g_autoptr (GBytes) perm = honest_permission (w);
  w->input = scripted_pay (w, perm);
}

static void
prepare_payee_revoked_by_gossip (World *w)
{
  /* The payee carries the very list that revokes it. */
  revoke (w, DEVICE_PAYEE, DEVICE_PAYEE);
  g_assert_cmpuint (tally_register_get_revocation_serial (PAYER (w)), <,
                    tally_register_get_revocation_serial (PAYEE (w)));
  w->input = honest_offer (w, 700, NULL, NOW);
}

static void
prepare_revocation_list_stale (World *w)
{
  /* The payee's list is the issuer's first, ten days old; its policy
   * accepts one day. */
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) list = tally_issuer_get_revocation_list (w->issuer, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (list);
  g_assert_true (tally_register_update_revocation_list (PAYEE (w), env, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (tally_register_get_revocation_issued_at (PAYEE (w)), ==, ISSUER_BORN);
  const TallyAcceptPolicy policy = { .max_revocation_age = DAY };
  w->input = honest_pay (w, 700, &policy, NOW);
}

/* --- preparations: replays and tampering ----------------------------------------------- */

static void
prepare_permission_replayed (World *w)
{
  g_autoptr (GBytes) old = fixture_pay (PAYER (w), PAYEE (w), 300, "first", NOW, NULL);
  scripted_payer (w, 300);
  w->input = scripted_pay (w, old);
}

static void
prepare_permission_replayed_to_another_payee (World *w)
{
  g_autoptr (GBytes) old = fixture_pay (PAYER (w), THIRD (w), 700, "tea", NOW, NULL);
  scripted_payer (w, 700);
  w->input = scripted_pay (w, old);
}

/* The payer register spends for a request the payer changed. */
static void
scripted_pay_for_changed_request (World *w, const Tally__PaymentRequest *req)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) perm =
    tally_register_spend (PAYER (w), w->script.offer->payee_certificate, req, NOW, &error);
  g_assert_no_error (error);
  w->input = scripted_pay (w, perm);
}

static void
prepare_amount_changed (World *w)
{
  scripted_payer (w, 700);
  Tally__PaymentRequest req = *w->script.offer->request;
  Tally__Amount amount = *req.amount;
  amount.value = 70;
  req.amount = &amount;
  scripted_pay_for_changed_request (w, &req);
}

static void
prepare_nonce_changed (World *w)
{
  scripted_payer (w, 700);
  Tally__PaymentRequest req = *w->script.offer->request;
  guint8 nonce[TALLY_NONCE_BYTES];
  randombytes_buf (nonce, sizeof nonce);
  req.nonce.data = nonce;
  req.nonce.len = sizeof nonce;
  scripted_pay_for_changed_request (w, &req);
}

static void
prepare_currency_changed (World *w)
{
  scripted_payer (w, 700);
  g_autoptr (GBytes) perm = forge_permission (w, w->script.offer->request, "USD", 700);
  w->input = scripted_pay (w, perm);
}

/* --- preparations: double spending ---------------------------------------------------- */

static void
prepare_counter_reused_by_rolled_back_payer (World *w)
{
  /* Copy the register, pay, restore the copy, pay again: the restored
   * register signs a different permission with counter 1. */
  g_autofree char *saved = world_save_payer (w);
  g_autoptr (GBytes) first = fixture_pay (PAYER (w), PAYEE (w), 400, "first", NOW, NULL);
  world_restore_payer (w, saved);
  w->input = honest_pay (w, 500, NULL, NOW);
}

/* The payer pays the payee (counter 1), the issuer books that, then the
 * payer is rolled back and pays the third register (counter 1 again). */
static void
double_spend (World *w)
{
  g_autofree char *saved = world_save_payer (w);
  g_autoptr (GBytes) first = fixture_pay (PAYER (w), PAYEE (w), 400, "first", NOW, NULL);
  g_autoptr (GBytes) result = reconcile (w, PAYER (w));
  world_restore_payer (w, saved);
  g_autoptr (GBytes) second = fixture_pay (PAYER (w), THIRD (w), 300, "second", NOW, NULL);
}

static void
prepare_counter_reused_at_issuer (World *w)
{
  double_spend (w);
  /* 7.00 spent of the 100.00 sold: proven and revoked, yet nothing exists
   * beyond the evidence, so no exposure (protocol.md 5.5). */
  w->fraud_amount = 0;
  w->input = export_bundle (THIRD (w));
}

static void
prepare_chain_forked_at_issuer (World *w)
{
  /* After the second counter 1, the rolled-back chain goes on: its
   * counter 2 extends an entry the issuer never saw. */
  double_spend (w);
  g_autoptr (GBytes) fork = fixture_pay (PAYER (w), PAYEE (w), 200, "fork", NOW, NULL);
  w->fraud_amount = 0;
  w->input = export_bundle (PAYEE (w));
}

static void
prepare_voucher_replayed (World *w)
{
  w->target = PAYER (w);
  w->input = g_bytes_ref (w->payer_voucher);
}

/* --- preparations: limits --------------------------------------------------------------- */

static void
prepare_payer_over_max_payment (World *w)
{
  honest_confirming (w, MAX_PAYMENT + 1, NULL, NOW);
}

static void
prepare_payee_sees_payer_over_max_payment (World *w)
{
  scripted_payer (w, MAX_PAYMENT + 1);
  g_autoptr (GBytes) perm =
    forge_permission (w, w->script.offer->request, FIXTURE_CURRENCY, MAX_PAYMENT + 1);
  w->input = scripted_pay (w, perm);
}

static void
prepare_payee_over_balance_cap (World *w)
{
  g_autoptr (GBytes) voucher = world_fund (w, DEVICE_PAYEE, BALANCE_CAP - 200);
  w->input = honest_pay (w, 700, NULL, NOW);
}

static void
prepare_payer_over_max_offline_payments (World *w)
{
  for (int i = 0; i < MAX_OFFLINE_PAYMENTS; i++) {
    g_autoptr (GBytes) perm = fixture_pay (PAYER (w), PAYEE (w), 100, "again", NOW, NULL);
  }
  honest_confirming (w, 100, NULL, NOW);
}

static void
prepare_payer_over_max_offline_seconds (World *w)
{
  w->now = CERTIFIED + MAX_OFFLINE_SECONDS + 1;
  honest_confirming (w, 100, NULL, w->now);
}

/* --- preparations: expiry and delivery again (protocol 4.4) ------------------------ */

/* A permission the payer committed for an earlier request of the payee,
 * whose Pay message never arrived. */
static GBytes *
undelivered_permission (World *w, gint64 amount)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__PaymentRequest) req =
    tally_register_new_request (PAYEE (w), amount, "", NOW, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) cert = tally_register_get_certificate (PAYEE (w));
  g_autoptr (Tally__SignedEnvelope) cert_env = fixture_envelope (cert);
  GBytes *perm = tally_register_spend (PAYER (w), cert_env, req, NOW, &error);
  g_assert_no_error (error);
  return perm;
}

static void
prepare_payer_confirms_after_request_expired (World *w)
{
  honest_confirming (w, 100, NULL, NOW);
  w->now = NOW + TALLY_REQUEST_LIFETIME_DEFAULT;
}

static void
prepare_redelivered_after_expiry (World *w)
{
  g_autoptr (GBytes) perm = undelivered_permission (w, 300);
  w->now = NOW + TALLY_REQUEST_LIFETIME_DEFAULT;
  scripted_payer (w, 900);
  w->script.redelivery = TRUE;
  w->input = scripted_pay (w, perm);
}

static void
prepare_redelivered_past_payee_horizon (World *w)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) perm = undelivered_permission (w, 300);
  /* The payee reconciled after the expiry, and its clock then fell back. */
  g_autoptr (GBytes) bundle =
    tally_register_export_bundle (PAYEE (w), NOW + TALLY_REQUEST_LIFETIME_DEFAULT, &error);
  g_assert_no_error (error);
  scripted_payer (w, 900);
  w->script.redelivery = TRUE;
  w->input = scripted_pay (w, perm);
}

static void
prepare_permission_for_another_open_request (World *w)
{
  g_autoptr (GBytes) perm = undelivered_permission (w, 300);
  scripted_payer (w, 900);
  w->input = scripted_pay (w, perm);
}

static void
prepare_redelivery_flag_on_offered_request (World *w)
{
  scripted_payer (w, 700);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) perm = tally_register_spend (PAYER (w), w->script.offer->payee_certificate,
                                                  w->script.offer->request, NOW, &error);
  g_assert_no_error (error);
  w->script.redelivery = TRUE;
  w->input = scripted_pay (w, perm);
}

/* --- preparations: the owner minting value (protocol.md 5.5) ----------------------- */

/* 1,000,000.00: what the owner writes into the register, or signs. */
#define MINTED ((gint64) 100000000)
/* The payment a colluding payee hides from its bundles. */
#define HIDDEN 4000

static void
prepare_defund_of_edited_balance (World *w)
{
  g_autoptr (GError) error = NULL;
  edit_stored_balance (w, DEVICE_PAYER, MINTED);
  g_autoptr (GBytes) defund = tally_register_defund (PAYER (w), NOW, &error);
  g_assert_no_error (error);
  w->input = export_bundle (PAYER (w));
  /* The 100.00 the issuer sold it is all the evidence there is. */
  w->judged = (Judgement){ .culprit = DEVICE_PAYER,
                           .kinds = { TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN },
                           .n_kinds = 1,
                           .deficit = MINTED - PAYER_FUNDS,
                           .credited = PAYER_FUNDS,
                           .refused = MINTED - PAYER_FUNDS };
}

static void
prepare_defund_signed_with_key (World *w)
{
  KeyChain chain;
  key_chain_init (PAYER (w), &chain);
  g_autoptr (GBytes) defund = key_defund (PAYER (w), &chain, MINTED, NOW);
  g_autoptr (GBytes) honest = export_bundle (PAYER (w));
  w->input = key_bundle_with (PAYER (w), honest, &defund, 1, &chain);
  w->judged = (Judgement){ .culprit = DEVICE_PAYER,
                           .kinds = { TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN },
                           .n_kinds = 1,
                           .deficit = MINTED - PAYER_FUNDS,
                           .credited = PAYER_FUNDS,
                           .refused = MINTED - PAYER_FUNDS };
}

/* The key signs three payments of the certified maximum, 150.00 from a
 * register holding 100.00, to the owner's other register, which accepts
 * them as any honest payee would and reconciles first. */
static void
prepare_permissions_signed_with_key_beyond_balance (World *w)
{
  g_autoptr (GError) error = NULL;
  enum
  {
    N = 3
  };
  KeyChain chain;
  key_chain_init (PAYER (w), &chain);
  g_autoptr (GBytes) cert = tally_register_get_certificate (PAYER (w));
  g_autoptr (Tally__SignedEnvelope) cert_env = fixture_envelope (cert);
  GBytes *perms[N];
  for (int i = 0; i < N; i++) {
    g_autoptr (Tally__PaymentRequest) req =
      tally_register_new_request (THIRD (w), MAX_PAYMENT, "", NOW, &error);
    g_assert_no_error (error);
    perms[i] = key_permission (PAYER (w), &chain, req, FIXTURE_CURRENCY, MAX_PAYMENT);
    g_autoptr (Tally__SignedEnvelope) perm_env = fixture_envelope (perms[i]);
    g_autoptr (GBytes) receipt =
      tally_register_receive (THIRD (w), cert_env, perm_env, NULL, NULL, NOW, &error);
    g_assert_no_error (error);
  }
  g_assert_cmpint (tally_register_get_balance (THIRD (w)), ==, N * MAX_PAYMENT);
  g_autoptr (GBytes) result = reconcile (w, THIRD (w));
  g_autoptr (GBytes) honest = export_bundle (PAYER (w));
  w->input = key_bundle_with (PAYER (w), honest, perms, N, &chain);
  for (int i = 0; i < N; i++)
    g_bytes_unref (perms[i]);
  /* Awaiting while only the payee had reported; proven and exposure once
   * the payer's own bundle is booked. */
  gint64 beyond = N * MAX_PAYMENT - PAYER_FUNDS;
  w->judged = (Judgement){ .culprit = DEVICE_PAYER,
                           .kinds = { TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN },
                           .n_kinds = 1,
                           .deficit = beyond,
                           .exposure = beyond,
                           .awaiting = beyond };
}

static void
prepare_permission_over_max_payment_signed_with_key (World *w)
{
  g_autoptr (GError) error = NULL;
  KeyChain chain;
  key_chain_init (PAYER (w), &chain);
  g_autoptr (Tally__PaymentRequest) req =
    tally_register_new_request (THIRD (w), MAX_PAYMENT + 1, "", NOW, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) perm =
    key_permission (PAYER (w), &chain, req, FIXTURE_CURRENCY, MAX_PAYMENT + 1);
  g_autoptr (GBytes) honest = export_bundle (PAYER (w));
  w->input = key_bundle_with (PAYER (w), honest, &perm, 1, &chain);
  /* Within the evidence, but no honest register signs it. */
  w->judged = (Judgement){ .culprit = DEVICE_PAYER,
                           .kinds = { TALLY__FRAUD_KIND__FRAUD_KIND_OVER_LIMIT },
                           .n_kinds = 1,
                           .in_flight = MAX_PAYMENT + 1 };
}

/* The register pays (counter 1) and defunds the rest (counter 2); the
 * owner re-signs the bundle without the payment, so that the defund could
 * be credited against the value the payment spent. */
static void
prepare_bundle_hiding_payment_below_defund (World *w)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) perm = fixture_pay (PAYER (w), PAYEE (w), 3000, "hidden", NOW, NULL);
  g_autoptr (GBytes) defund = tally_register_defund (PAYER (w), NOW, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) honest = export_bundle (PAYER (w));
  g_autoptr (Tally__ReconciliationBundle) b = bundle_open (honest);
  g_assert_cmpuint (b->n_spent, ==, 2);
  Tally__ReconciliationBundle forged = *b;
  forged.spent = &b->spent[1];
  forged.n_spent = 1;
  w->input = key_sign_bundle (PAYER (w), &forged);
}

/* The payee credits a payment and keeps the receipt to itself, so the
 * payer holds it pending; its bundle made after the permission expired
 * leaves the payment out, and the payer's next bundle has it reclaimed
 * (protocol.md 5.1).  Returns that time. */
static guint64
hide_payment_until_reclaimed (World *w)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) perm = undelivered_permission (w, HIDDEN);
  g_autoptr (GBytes) cert = tally_register_get_certificate (PAYER (w));
  g_autoptr (Tally__SignedEnvelope) cert_env = fixture_envelope (cert);
  g_autoptr (Tally__SignedEnvelope) perm_env = fixture_envelope (perm);
  g_autoptr (GBytes) receipt =
    tally_register_receive (PAYEE (w), cert_env, perm_env, NULL, NULL, NOW, &error);
  g_assert_no_error (error);

  guint64 expired = NOW + TALLY_REQUEST_LIFETIME_DEFAULT;
  g_autoptr (GBytes) honest = export_bundle_at (PAYEE (w), expired);
  g_autoptr (GBytes) hiding = key_bundle_without_received (PAYEE (w), honest);
  TallyReconcileReport report;
  g_autoptr (GBytes) r1 = reconcile_bundle (w, hiding, expired, &report);
  g_autoptr (GBytes) payer_bundle = export_bundle_at (PAYER (w), expired);
  g_autoptr (GBytes) r2 = reconcile_bundle (w, payer_bundle, expired, &report);
  g_assert_cmpuint (report.reclaimed, ==, 1);
  g_assert_cmpint (report.reclaimed_amount, ==, HIDDEN);
  return expired;
}

static void
prepare_payee_spends_payment_it_hid (World *w)
{
  guint64 t = hide_payment_until_reclaimed (w);
  /* Spent onward, and the third register reports it. */
  g_autoptr (GBytes) onward = fixture_pay (PAYEE (w), THIRD (w), HIDDEN, "onward", t + 10, NULL);
  g_autoptr (GBytes) third = export_bundle_at (THIRD (w), t + 20);
  TallyReconcileReport report;
  g_autoptr (GBytes) result = reconcile_bundle (w, third, t + 20, &report);
  /* The payee's next bundle hides the payment again. */
  w->now = t + 30;
  g_autoptr (GBytes) honest = export_bundle_at (PAYEE (w), w->now);
  w->input = key_bundle_without_received (PAYEE (w), honest);
  w->judged = (Judgement){ .culprit = DEVICE_PAYEE,
                           .kinds = { TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN },
                           .n_kinds = 1,
                           .deficit = HIDDEN,
                           .exposure = HIDDEN,
                           .awaiting = HIDDEN };
}

static void
prepare_hidden_payment_surfaces (World *w)
{
  guint64 t = hide_payment_until_reclaimed (w);
  /* The payee's honest next bundle lists the payment after all. */
  w->now = t + 30;
  w->input = export_bundle_at (PAYEE (w), w->now);
  /* The payer keeps the value it was given back; the payee's copy is
   * exposure, never evidence. */
  w->judged = (Judgement){ .culprit = DEVICE_PAYEE,
                           .kinds = { TALLY__FRAUD_KIND__FRAUD_KIND_LATE_RECEIPT },
                           .n_kinds = 1,
                           .exposure = HIDDEN };
}

/* The register and a copy of its directory each defund the whole balance;
 * the first was credited in full. */
static void
prepare_copy_defunds_again (World *w)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *saved = world_save_payer (w);
  g_autoptr (GBytes) first = tally_register_defund (PAYER (w), NOW, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) result = reconcile (w, PAYER (w));
  world_restore_payer (w, saved);
  w->now = NOW + 1;
  g_autoptr (GBytes) second = tally_register_defund (PAYER (w), w->now, &error);
  g_assert_no_error (error);
  w->input = export_bundle_at (PAYER (w), w->now);
  /* The first defund at counter 1 already spent the evidence. */
  w->judged = (Judgement){ .culprit = DEVICE_PAYER,
                           .kinds = { TALLY__FRAUD_KIND__FRAUD_KIND_COUNTER_REUSED,
                                      TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN },
                           .n_kinds = 2,
                           .deficit = PAYER_FUNDS,
                           .refused = PAYER_FUNDS };
}

/* --- preparations: frames ---------------------------------------------------------------- */

/* The payer's certificate in fragments of the smallest MTU. */
static GPtrArray *
certificate_fragments (World *w)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) cert = tally_register_get_certificate (PAYER (w));
  GPtrArray *frags =
    tally_frame_split (g_bytes_get_data (cert, NULL), g_bytes_get_size (cert),
                       TALLY_FRAME_MIN_MTU, TALLY_SESSION_MAX_MESSAGE, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (frags->len, >=, 4);
  return frags;
}

static void
add_fragment (World *w, GBytes *fragment, gint64 at)
{
  if (w->fragments == NULL) {
    w->fragments = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
    w->fragment_times = g_array_new (FALSE, FALSE, sizeof (gint64));
  }
  g_ptr_array_add (w->fragments, g_bytes_ref (fragment));
  g_array_append_val (w->fragment_times, at);
}

/* The first fragment of a real message, then @last at the same time. */
static void
after_first_fragment (World *w, GBytes *last)
{
  g_autoptr (GPtrArray) frags = certificate_fragments (w);
  add_fragment (w, frags->pdata[0], w->clock_us + 1);
  add_fragment (w, last, w->clock_us + 2);
}

static void
prepare_frame_oversize (World *w)
{
  /* FIRST announcing one byte more than the session's largest message. */
  gsize total = TALLY_SESSION_MAX_MESSAGE + 1;
  guint8 frag[TALLY_FRAME_MIN_MTU] = { TALLY_FRAME_FIRST << 4, (guint8) (total >> 8),
                                       (guint8) total };
  g_autoptr (GBytes) first = g_bytes_new (frag, sizeof frag);
  add_fragment (w, first, w->clock_us + 1);
}

static void
prepare_frame_truncated (World *w)
{
  /* LAST where the second fragment belongs: the message ends early. */
  g_autoptr (GPtrArray) frags = certificate_fragments (w);
  gsize len;
  const guint8 *second = g_bytes_get_data (frags->pdata[1], &len);
  g_autofree guint8 *last = g_memdup2 (second, len);
  last[0] = (guint8) ((TALLY_FRAME_LAST << 4) | (second[0] & 0x0f));
  g_autoptr (GBytes) last_bytes = g_bytes_new (last, len);
  after_first_fragment (w, last_bytes);
}

/* FIRST, then the fragment one beyond the reordering window: fragment 1 is
 * due, fragments up to 1 + TALLY_FRAME_REORDER_WINDOW would be held. */
static void
prepare_frame_sequence_gap (World *w)
{
  g_autoptr (GPtrArray) frags = certificate_fragments (w);
  g_assert_cmpuint (frags->len, >, TALLY_FRAME_REORDER_WINDOW + 2);
  after_first_fragment (w, frags->pdata[TALLY_FRAME_REORDER_WINDOW + 2]);
}

static void
prepare_frame_zero_length (World *w)
{
  g_autoptr (GBytes) empty = g_bytes_new (NULL, 0);
  after_first_fragment (w, empty);
}

static void
prepare_frame_unknown_kind (World *w)
{
  static const guint8 frag[] = { 0x51, 0xde, 0xad, 0xbe, 0xef };
  g_autoptr (GBytes) unknown = g_bytes_new_static (frag, sizeof frag);
  after_first_fragment (w, unknown);
}

static void
prepare_frame_slow_sender (World *w)
{
  g_autoptr (GPtrArray) frags = certificate_fragments (w);
  gint64 start = w->clock_us + 1;
  add_fragment (w, frags->pdata[0], start);
  add_fragment (w, frags->pdata[1], start + (gint64) REASSEMBLY_TIMEOUT_MS * 1000 + 1);
}

/* --- preparations: messages out of order ------------------------------------------------- */

static void
prepare_payee_gets_offer_before_hello (World *w)
{
  waiting_payee (w, 100);
  w->input = random_message (TALLY__SESSION_MESSAGE__MSG_OFFER);
}

static void
prepare_payee_gets_pay_before_hello (World *w)
{
  waiting_payee (w, 100);
  w->input = random_message (TALLY__SESSION_MESSAGE__MSG_PAY);
}

static void
prepare_payee_gets_receipt (World *w)
{
  waiting_payee (w, 100);
  w->input = random_message (TALLY__SESSION_MESSAGE__MSG_RECEIPT);
}

static void
prepare_payee_gets_second_hello (World *w)
{
  scripted_payer (w, 100);
  w->input = random_message (TALLY__SESSION_MESSAGE__MSG_HELLO);
}

static void
prepare_payee_gets_pay_after_done (World *w)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) pay = honest_pay (w, 700, NULL, NOW);
  g_autoptr (GBytes) receipt = NULL;
  g_assert_true (tally_session_handle (w->payee_session, g_bytes_get_data (pay, NULL),
                                       g_bytes_get_size (pay), NOW, &receipt, &error));
  g_assert_no_error (error);
  g_assert_cmpint (tally_session_get_state (w->payee_session), ==, TALLY_SESSION_STATE_DONE);
  w->input = g_steal_pointer (&pay);
}

static void
prepare_payee_gets_reveal_before_offer (World *w)
{
  waiting_payee (w, 100);
  w->input = random_message (TALLY__SESSION_MESSAGE__MSG_REVEAL);
}

static void
prepare_payee_gets_second_reveal (World *w)
{
  scripted_payer (w, 100);
  w->input = random_message (TALLY__SESSION_MESSAGE__MSG_REVEAL);
}

static void
prepare_payee_gets_pay_without_reveal (World *w)
{
  scripted_payer_offered (w, 700);
  g_autoptr (GBytes) perm = honest_permission (w);
  w->input = scripted_pay (w, perm);
}

static void
payer_waiting_for_offer (World *w)
{
  g_autoptr (GBytes) offer = honest_offer (w, 100, NULL, NOW);
}

static void
prepare_payer_gets_hello (World *w)
{
  payer_waiting_for_offer (w);
  w->input = random_message (TALLY__SESSION_MESSAGE__MSG_HELLO);
}

static void
prepare_payer_gets_pay (World *w)
{
  payer_waiting_for_offer (w);
  w->input = random_message (TALLY__SESSION_MESSAGE__MSG_PAY);
}

static void
prepare_payer_gets_reveal (World *w)
{
  payer_waiting_for_offer (w);
  w->input = random_message (TALLY__SESSION_MESSAGE__MSG_REVEAL);
}

static void
prepare_payer_gets_receipt_before_paying (World *w)
{
  honest_confirming (w, 100, NULL, NOW);
  w->input = random_message (TALLY__SESSION_MESSAGE__MSG_RECEIPT);
}

static void
prepare_payer_gets_offer_twice (World *w)
{
  g_autoptr (GError) error = NULL;
  w->input = honest_offer (w, 100, NULL, NOW);
  g_autoptr (GBytes) none = NULL;
  g_assert_true (tally_session_handle (w->payer_session, g_bytes_get_data (w->input, NULL),
                                       g_bytes_get_size (w->input), NOW, &none, &error));
  g_assert_no_error (error);
}

/* --- preparations: transcripts and ciphertexts --------------------------------------------- */

static void
prepare_pay_transcript_mixes_another_offer_signature (World *w)
{
  /* Sealed under the right T2, but T3 mixes an offer signature the payee
   * never made. */
  scripted_payer (w, 700);
  w->script.offer_sig[0] ^= 0x01;
  g_autoptr (GBytes) perm = honest_permission (w);
  w->input = scripted_pay (w, perm);
}

static void
prepare_reveal_of_another_nonce (World *w)
{
  /* What a payer steering the payee's code after the offer would send. */
  scripted_payer_offered (w, 700);
  guint8 other[TALLY_NONCE_BYTES];
  memcpy (other, w->script.commit_nonce, sizeof other);
  other[TALLY_NONCE_BYTES - 1] ^= 0x80;
  w->input = script_reveal (&w->script, other, sizeof other);
}

static void
prepare_offer_bound_to_another_hello (World *w)
{
  /* Same ephemeral key, so the same session keys, but the transcript mixes
   * a Hello the payer never sent.  T1 is in the offer's associated data. */
  g_autoptr (GBytes) hello = NULL;
  g_autoptr (Tally__PaymentRequest) req = scripted_payee (w, &hello);
  g_autoptr (Tally__SessionMessage) m = script_unpack_session (hello);
  g_assert_cmpint (m->msg_case, ==, TALLY__SESSION_MESSAGE__MSG_HELLO);
  m->hello->revocation_serial += 42;
  g_autoptr (GBytes) other = script_pack_session (m);
  g_autoptr (GBytes) cert = tally_register_get_certificate (PAYEE (w));
  w->input = script_offer (&w->script, other, cert, req, PAYEE (w), NULL);
}

static void
prepare_pay_ciphertext_tampered (World *w)
{
  scripted_payer (w, 700);
  g_autoptr (GBytes) perm = honest_permission (w);
  g_autoptr (GBytes) pay = scripted_pay (w, perm);
  w->input = tamper_ciphertext (pay);
}

static void
prepare_offer_ciphertext_tampered (World *w)
{
  g_autoptr (GBytes) hello = NULL;
  g_autoptr (Tally__PaymentRequest) req = scripted_payee (w, &hello);
  g_autoptr (GBytes) offer = scripted_offer (w, hello, req, NULL);
  w->input = tamper_ciphertext (offer);
}

static void
prepare_receipt_ciphertext_tampered (World *w)
{
  g_autoptr (GBytes) receipt = payer_awaiting_receipt (w);
  g_autoptr (GBytes) msg = script_receipt (&w->script, receipt);
  w->input = tamper_ciphertext (msg);
}

/* --- preparations: malformed input ----------------------------------------------------------- */

static void
prepare_unsupported_version (World *w)
{
  waiting_payee (w, 100);
  Script s;
  script_init (&s, TRUE);
  w->input = script_hello (&s, TALLY_PROTOCOL_VERSION + 1, EPH);
  script_clear (&s);
}

static void
prepare_hello_without_commitment (World *w)
{
  waiting_payee (w, 100);
  Script s;
  script_init (&s, TRUE);
  s.commitment_len = 0;
  w->input = script_hello (&s, TALLY_PROTOCOL_VERSION, EPH);
  script_clear (&s);
}

static void
prepare_garbage_bytes (World *w)
{
  static const guint8 junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
  waiting_payee (w, 100);
  w->input = g_bytes_new_static (junk, sizeof junk);
}

static void
prepare_empty_message (World *w)
{
  waiting_payee (w, 100);
  w->input = g_bytes_new (NULL, 0);
}

static void
prepare_uncached_certificate_hash (World *w)
{
  /* The payer names its certificate by hash; this payee never saw it. */
  scripted_payer (w, 700);
  g_autoptr (GBytes) cert = tally_register_get_certificate (PAYER (w));
  fixture_body_hash (cert, w->script.cert_hash);
  g_autoptr (GBytes) perm = honest_permission (w);
  w->input = script_pay (&w->script, NULL, perm, PAYER (w), NULL);
}

/* --- preparations: text from the peer ------------------------------------------------ */

/* An offer the payee signed honestly, whose request carries @memo. */
static void
scripted_offer_with_memo (World *w, const char *memo)
{
  g_autoptr (GBytes) hello = NULL;
  g_autoptr (Tally__PaymentRequest) req = scripted_payee (w, &hello);
  g_autoptr (GBytes) cert = tally_register_get_certificate (PAYEE (w));
  char *honest = req->memo;
  req->memo = (char *) memo;
  w->input = script_offer (&w->script, hello, cert, req, PAYEE (w), NULL);
  req->memo = honest;
}

static void
prepare_memo_not_utf8 (World *w)
{
  scripted_offer_with_memo (w, "\xff\xfe\x41");
}

static void
prepare_memo_with_control_character (World *w)
{
  scripted_offer_with_memo (w, "tea\x1b[2Jpaid");
}

static void
prepare_memo_with_bidi_override (World *w)
{
  /* U+202E RIGHT-TO-LEFT OVERRIDE */
  scripted_offer_with_memo (w, "tea \xe2\x80\xae" "00.21");
}

static void
prepare_error_message_not_utf8 (World *w)
{
  g_autoptr (GBytes) hello = NULL;
  g_autoptr (Tally__PaymentRequest) req = scripted_payee (w, &hello);
  Tally__Error e = TALLY__ERROR__INIT;
  e.code = TALLY_ERROR_REJECTED;
  e.message = (char *) "\xff\xfe\x41";
  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_ERROR;
  m.error = &e;
  w->input = script_pack_session (&m);
}

/* --- the matrix ------------------------------------------------------------------------------ */

typedef enum
{
  LAYER_FRAME,    /* transport/tally-frame.c: the reassembler */
  LAYER_SESSION,  /* pairing/: a session handles a message or its agent confirms */
  LAYER_REGISTER, /* wallet/: a register applies a voucher or a result */
  LAYER_ISSUER,   /* issuer/: a bundle is reconciled */
} Layer;

static const char *
layer_to_string (Layer layer)
{
  switch (layer) {
  case LAYER_FRAME: return "frame";
  case LAYER_SESSION: return "session";
  case LAYER_REGISTER: return "register";
  case LAYER_ISSUER: return "issuer";
  }
  return "unknown";
}

typedef enum
{
  OUTCOME_REFUSED,
  OUTCOME_GOSSIP_ADOPTED,
  OUTCOME_FRAUD_PROVED,
  OUTCOME_EVIDENCE_ENFORCED,
} Outcome;

typedef struct
{
  const char *name;
  Layer layer;
  TallyError code;
  Outcome outcome;
  void (*prepare) (World *w);
  gboolean (*attack) (World *w, GError **error);
} Case;

#define REFUSED(name, layer, code, prepare, attack)                                               \
  { name, LAYER_##layer, TALLY_ERROR_##code, OUTCOME_REFUSED, prepare, attack }

/* An owner's bundle the issuer books: @code is what an honest register
 * would have refused the spending with. */
#define ENFORCED(name, code, prepare)                                                             \
  { name, LAYER_ISSUER, TALLY_ERROR_##code, OUTCOME_EVIDENCE_ENFORCED, prepare, attack_reconcile }

static const Case cases[] = {
  /* Forged signatures, one per signed message. */
  REFUSED ("payee-refuses-payer-certificate-with-forged-issuer-signature", SESSION, BAD_SIGNATURE,
           prepare_payer_certificate_forged, attack_payee),
  REFUSED ("register-refuses-voucher-with-forged-issuer-signature", REGISTER, BAD_SIGNATURE,
           prepare_voucher_forged, attack_load),
  REFUSED ("payee-refuses-permission-with-forged-payer-signature", SESSION, BAD_SIGNATURE,
           prepare_permission_forged, attack_payee),
  REFUSED ("payer-refuses-receipt-with-forged-payee-signature", SESSION, BAD_SIGNATURE,
           prepare_receipt_forged, attack_payer),
  REFUSED ("payer-refuses-gossiped-revocation-list-with-forged-signature", SESSION, BAD_SIGNATURE,
           prepare_revocation_list_forged, attack_payer),
  REFUSED ("issuer-refuses-bundle-with-forged-register-signature", ISSUER, BAD_SIGNATURE,
           prepare_bundle_forged, attack_reconcile),
  REFUSED ("register-refuses-result-with-forged-issuer-signature", REGISTER, BAD_SIGNATURE,
           prepare_result_forged, attack_apply_result),
  REFUSED ("payer-refuses-offer-transcript-signed-by-another-key", SESSION, TRANSCRIPT,
           prepare_offer_transcript_forged, attack_payer),
  REFUSED ("payee-refuses-pay-transcript-signed-by-another-key", SESSION, TRANSCRIPT,
           prepare_pay_transcript_forged, attack_payee),

  /* Another issuer. */
  REFUSED ("payee-refuses-payer-certificate-from-another-issuer", SESSION, WRONG_ISSUER,
           prepare_payer_certificate_from_rogue, attack_payee),
  REFUSED ("register-refuses-voucher-from-another-issuer", REGISTER, WRONG_ISSUER,
           prepare_voucher_from_rogue, attack_load),
  REFUSED ("payer-refuses-gossiped-revocation-list-from-another-issuer", SESSION, WRONG_ISSUER,
           prepare_revocation_list_from_rogue, attack_payer),

  /* Another currency under the same issuer key: the session once skipped
   * the register's currency check (wallet/tally-peer.c is now the one). */
  REFUSED ("payee-refuses-payer-certificate-in-another-currency", SESSION, CURRENCY_MISMATCH,
           prepare_payer_certificate_in_another_currency, attack_payee),
  REFUSED ("payer-refuses-payee-certificate-in-another-currency", SESSION, CURRENCY_MISMATCH,
           prepare_payee_certificate_in_another_currency, attack_payer),

  /* Certificate validity, both sides. */
  REFUSED ("payee-refuses-expired-payer-certificate", SESSION, CERT_EXPIRED,
           prepare_payer_certificate_expired, attack_payee),
  REFUSED ("payee-refuses-payer-certificate-not-yet-valid", SESSION, CERT_NOT_YET_VALID,
           prepare_payer_certificate_not_yet_valid, attack_payee),
  REFUSED ("payer-refuses-expired-payee-certificate", SESSION, CERT_EXPIRED,
           prepare_payee_certificate_expired, attack_payer),
  REFUSED ("payer-refuses-payee-certificate-not-yet-valid", SESSION, CERT_NOT_YET_VALID,
           prepare_payee_certificate_not_yet_valid, attack_payer),

  /* Revocation. */
  REFUSED ("payee-refuses-revoked-payer", SESSION, REVOKED, prepare_payer_revoked, attack_payee),
  { "payer-refuses-payee-revoked-by-the-list-it-gossips", LAYER_SESSION, TALLY_ERROR_REVOKED,
    OUTCOME_GOSSIP_ADOPTED, prepare_payee_revoked_by_gossip, attack_payer },
  REFUSED ("payee-refuses-payer-while-own-revocation-list-is-older-than-policy", SESSION,
           STALE_REVOCATION_LIST, prepare_revocation_list_stale, attack_payee),

  /* Replays. */
  REFUSED ("payee-refuses-permission-replayed-to-the-same-payee", SESSION, REPLAY,
           prepare_permission_replayed, attack_payee),
  REFUSED ("payee-refuses-permission-replayed-to-another-payee", SESSION, WRONG_PAYEE,
           prepare_permission_replayed_to_another_payee, attack_payee),
  REFUSED ("register-refuses-replayed-voucher", REGISTER, VOUCHER_REPLAY, prepare_voucher_replayed,
           attack_load),

  /* Tampering with what the payee asked for, one field at a time. */
  REFUSED ("payee-refuses-permission-with-changed-amount", SESSION, AMOUNT_MISMATCH,
           prepare_amount_changed, attack_payee),
  REFUSED ("payee-refuses-permission-with-changed-currency", SESSION, CURRENCY_MISMATCH,
           prepare_currency_changed, attack_payee),
  REFUSED ("payee-refuses-permission-with-changed-nonce", SESSION, WRONG_NONCE,
           prepare_nonce_changed, attack_payee),

  /* Double spending. */
  REFUSED ("payee-refuses-counter-reused-by-rolled-back-payer", SESSION, COUNTER_REUSED,
           prepare_counter_reused_by_rolled_back_payer, attack_payee),
  { "issuer-proves-counter-reused-by-rolled-back-payer-and-revokes", LAYER_ISSUER,
    TALLY_ERROR_COUNTER_REUSED, OUTCOME_FRAUD_PROVED, prepare_counter_reused_at_issuer,
    attack_reconcile },
  { "issuer-proves-forked-chain-and-revokes", LAYER_ISSUER, TALLY_ERROR_CHAIN_FORK,
    OUTCOME_FRAUD_PROVED, prepare_chain_forked_at_issuer, attack_reconcile },

  /* The owner with root and the key (threat-model.md §1, protocol.md 5.5). */
  ENFORCED ("issuer-credits-defund-of-edited-balance-only-up-to-evidence-and-revokes",
            INSUFFICIENT_FUNDS, prepare_defund_of_edited_balance),
  ENFORCED ("issuer-credits-defund-signed-with-the-key-only-up-to-evidence-and-revokes",
            INSUFFICIENT_FUNDS, prepare_defund_signed_with_key),
  ENFORCED ("issuer-proves-payments-signed-with-the-key-beyond-the-balance-and-revokes",
            INSUFFICIENT_FUNDS, prepare_permissions_signed_with_key_beyond_balance),
  ENFORCED ("issuer-proves-payment-over-max-payment-signed-with-the-key-and-revokes",
            LIMIT_PAYMENT, prepare_permission_over_max_payment_signed_with_key),
  REFUSED ("issuer-refuses-bundle-hiding-a-payment-below-its-defund", ISSUER, INCOMPLETE,
           prepare_bundle_hiding_payment_below_defund, attack_reconcile),
  ENFORCED ("issuer-proves-payee-spending-a-payment-it-hid-until-reclaimed-and-revokes",
            INSUFFICIENT_FUNDS, prepare_payee_spends_payment_it_hid),
  ENFORCED ("issuer-proves-late-receipt-when-a-hidden-payment-surfaces-and-revokes", EXPIRED,
            prepare_hidden_payment_surfaces),
  ENFORCED ("issuer-credits-defunds-of-a-register-and-its-copy-once-and-revokes", COUNTER_REUSED,
            prepare_copy_defunds_again),

  /* Limits. */
  REFUSED ("payer-refuses-payment-over-certified-max-payment", SESSION, LIMIT_PAYMENT,
           prepare_payer_over_max_payment, attack_confirm),
  REFUSED ("payee-refuses-payment-over-payer-certified-max-payment", SESSION, LIMIT_PAYMENT,
           prepare_payee_sees_payer_over_max_payment, attack_payee),
  REFUSED ("payee-refuses-payment-over-own-balance-cap", SESSION, LIMIT_BALANCE,
           prepare_payee_over_balance_cap, attack_payee),
  REFUSED ("payer-refuses-payment-beyond-max-offline-payments", SESSION, LIMIT_COUNT,
           prepare_payer_over_max_offline_payments, attack_confirm),
  REFUSED ("payer-refuses-payment-beyond-max-offline-seconds", SESSION, LIMIT_TIME,
           prepare_payer_over_max_offline_seconds, attack_confirm),

  /* Expiry and delivery again. */
  REFUSED ("payer-refuses-to-pay-request-that-expired-while-confirming", SESSION, EXPIRED,
           prepare_payer_confirms_after_request_expired, attack_confirm),
  REFUSED ("payee-refuses-permission-delivered-again-after-it-expired", SESSION, EXPIRED,
           prepare_redelivered_after_expiry, attack_payee),
  REFUSED ("payee-refuses-permission-expiring-before-its-last-bundle", SESSION, EXPIRED,
           prepare_redelivered_past_payee_horizon, attack_payee),
  REFUSED ("payee-refuses-new-permission-for-another-open-request", SESSION, WRONG_NONCE,
           prepare_permission_for_another_open_request, attack_payee),
  REFUSED ("payee-refuses-redelivery-flag-on-the-offered-request", SESSION, MALFORMED,
           prepare_redelivery_flag_on_offered_request, attack_payee),

  /* Frames. */
  REFUSED ("reassembler-refuses-oversize-announce", FRAME, FRAME_OVERSIZE, prepare_frame_oversize,
           attack_reassembler),
  REFUSED ("reassembler-refuses-message-ending-early", FRAME, FRAME_TRUNCATED,
           prepare_frame_truncated, attack_reassembler),
  REFUSED ("reassembler-refuses-sequence-gap", FRAME, FRAME_TRUNCATED, prepare_frame_sequence_gap,
           attack_reassembler),
  REFUSED ("reassembler-refuses-zero-length-fragment", FRAME, FRAME_TRUNCATED,
           prepare_frame_zero_length, attack_reassembler),
  REFUSED ("reassembler-refuses-unknown-fragment-kind", FRAME, FRAME_UNKNOWN,
           prepare_frame_unknown_kind, attack_reassembler),
  REFUSED ("reassembler-drops-slow-sender-past-timeout", FRAME, FRAME_TIMEOUT,
           prepare_frame_slow_sender, attack_reassembler),

  /* Messages out of order. */
  REFUSED ("payee-refuses-offer-while-waiting-for-hello", SESSION, WRONG_STATE,
           prepare_payee_gets_offer_before_hello, attack_payee),
  REFUSED ("payee-refuses-pay-before-hello", SESSION, WRONG_STATE,
           prepare_payee_gets_pay_before_hello, attack_payee),
  REFUSED ("payee-refuses-receipt", SESSION, WRONG_STATE, prepare_payee_gets_receipt,
           attack_payee),
  REFUSED ("payee-refuses-second-hello", SESSION, WRONG_STATE, prepare_payee_gets_second_hello,
           attack_payee),
  REFUSED ("payee-refuses-pay-replayed-into-finished-session", SESSION, WRONG_STATE,
           prepare_payee_gets_pay_after_done, attack_payee),
  REFUSED ("payee-refuses-reveal-before-offer", SESSION, WRONG_STATE,
           prepare_payee_gets_reveal_before_offer, attack_payee),
  REFUSED ("payee-refuses-second-reveal", SESSION, WRONG_STATE, prepare_payee_gets_second_reveal,
           attack_payee),
  REFUSED ("payee-refuses-pay-without-reveal", SESSION, WRONG_STATE,
           prepare_payee_gets_pay_without_reveal, attack_payee),
  REFUSED ("payer-refuses-reveal", SESSION, WRONG_STATE, prepare_payer_gets_reveal, attack_payer),
  REFUSED ("payer-refuses-hello", SESSION, WRONG_STATE, prepare_payer_gets_hello, attack_payer),
  REFUSED ("payer-refuses-pay", SESSION, WRONG_STATE, prepare_payer_gets_pay, attack_payer),
  REFUSED ("payer-refuses-receipt-before-paying", SESSION, WRONG_STATE,
           prepare_payer_gets_receipt_before_paying, attack_payer),
  REFUSED ("payer-refuses-offer-twice", SESSION, WRONG_STATE, prepare_payer_gets_offer_twice,
           attack_payer),

  /* Transcripts. */
  REFUSED ("payee-refuses-pay-transcript-mixing-another-offer-signature", SESSION, TRANSCRIPT,
           prepare_pay_transcript_mixes_another_offer_signature, attack_payee),
  REFUSED ("payer-refuses-offer-bound-to-a-hello-it-never-sent", SESSION, DECRYPT,
           prepare_offer_bound_to_another_hello, attack_payer),
  REFUSED ("payee-refuses-reveal-that-does-not-open-the-commitment", SESSION, TRANSCRIPT,
           prepare_reveal_of_another_nonce, attack_payee),

  /* Ciphertexts. */
  REFUSED ("payee-refuses-tampered-pay-ciphertext", SESSION, DECRYPT,
           prepare_pay_ciphertext_tampered, attack_payee),
  REFUSED ("payer-refuses-tampered-offer-ciphertext", SESSION, DECRYPT,
           prepare_offer_ciphertext_tampered, attack_payer),
  REFUSED ("payer-refuses-tampered-receipt-ciphertext", SESSION, DECRYPT,
           prepare_receipt_ciphertext_tampered, attack_payer),

  /* Malformed input. */
  REFUSED ("payee-refuses-unsupported-version", SESSION, VERSION, prepare_unsupported_version,
           attack_payee),
  REFUSED ("payee-refuses-hello-without-commitment", SESSION, MALFORMED,
           prepare_hello_without_commitment, attack_payee),
  REFUSED ("payee-refuses-garbage-bytes", SESSION, MALFORMED, prepare_garbage_bytes, attack_payee),
  REFUSED ("payee-refuses-empty-message", SESSION, MALFORMED, prepare_empty_message, attack_payee),
  REFUSED ("payer-refuses-offer-with-memo-not-utf8", SESSION, MALFORMED, prepare_memo_not_utf8,
           attack_payer),
  REFUSED ("payer-refuses-offer-with-control-character-in-memo", SESSION, MALFORMED,
           prepare_memo_with_control_character, attack_payer),
  REFUSED ("payer-refuses-offer-with-bidi-override-in-memo", SESSION, MALFORMED,
           prepare_memo_with_bidi_override, attack_payer),
  REFUSED ("payer-refuses-error-message-not-utf8", SESSION, MALFORMED,
           prepare_error_message_not_utf8, attack_payer),
  REFUSED ("payee-refuses-uncached-certificate-hash", SESSION, NOT_FOUND,
           prepare_uncached_certificate_hash, attack_payee),
};

/* --- snapshots ------------------------------------------------------------------------------- */

static char *
digest_hex (GBytes *bytes)
{
  if (bytes == NULL)
    return g_strdup ("none");
  guint8 h[TALLY_HASH_BYTES];
  tally_hash ("adversarial-digest", g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes), h);
  return tally_hex_encode (h, sizeof h);
}

/* fixture_register_dump() and one more line: the bundle's body with its
 * revocation serial cleared, so that OUTCOME_GOSSIP_ADOPTED still compares
 * every entry after a new list moved the serial. */
static char *
register_state (TallyRegister *reg)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dump = fixture_register_dump (reg, TRUE);
  g_autoptr (GBytes) bundle = tally_register_export_bundle (reg, 0, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (bundle);
  g_autoptr (Tally__ReconciliationBundle) b =
    TALLY_UNPACK (Tally__ReconciliationBundle, tally__reconciliation_bundle, env->body.data,
                  env->body.len, "bundle", &error);
  g_assert_no_error (error);
  b->revocation_serial = 0;
  g_autoptr (GBytes) entries = tally_message_pack (&b->base);
  g_autofree char *entries_digest = digest_hex (entries);
  return g_strdup_printf ("%sentries %s\n", dump, entries_digest);
}

typedef struct
{
  char *registers[N_DEVICES];
  char *issuer;
  TallyAudit audit;
  GBytes *revocation_list;
  GPtrArray *fraud_proofs;
  GPtrArray *audit_rows; /* TallyAuditRegister */
  gint64 accounts[N_DEVICES];
  gboolean reassembler_busy;
} Snapshot;

static void
snapshot_take (World *w, Snapshot *s)
{
  g_autoptr (GError) error = NULL;

  memset (s, 0, sizeof *s);
  for (int i = 0; i < N_DEVICES; i++)
    s->registers[i] = register_state (w->devices[i].reg);

  g_assert_true (tally_issuer_audit (w->issuer, &s->audit, &error));
  g_assert_no_error (error);
  s->revocation_list = tally_issuer_get_revocation_list (w->issuer, &error);
  g_assert_no_error (error);
  s->fraud_proofs = tally_issuer_get_fraud_proofs (w->issuer, &error);
  g_assert_no_error (error);
  s->audit_rows = tally_issuer_audit_registers (w->issuer, &error);
  g_assert_no_error (error);

  const TallyAudit *a = &s->audit;
  GString *text = g_string_new (NULL);
  g_string_append_printf (text,
                          "issued %" G_GINT64_FORMAT " online %" G_GINT64_FORMAT
                          " offline %" G_GINT64_FORMAT " in flight %" G_GINT64_FORMAT
                          " fraud exposure %" G_GINT64_FORMAT "\n"
                          "registers %u revoked %u fraud proofs %u balanced %d\n",
                          a->issued, a->online, a->offline, a->in_flight, a->fraud_exposure,
                          a->registers, a->revoked, a->fraud_proofs, a->balanced);
  g_autofree char *list = digest_hex (s->revocation_list);
  g_string_append_printf (text, "revocation list %s\n", list);
  for (guint i = 0; i < s->fraud_proofs->len; i++) {
    g_autofree char *proof = digest_hex (s->fraud_proofs->pdata[i]);
    g_string_append_printf (text, "fraud proof %s\n", proof);
  }
  for (int i = 0; i < N_DEVICES; i++) {
    gint64 balance;
    g_assert_true (tally_issuer_account_balance (w->issuer, device_names[i], &balance, &error));
    g_assert_no_error (error);
    s->accounts[i] = balance;
    g_string_append_printf (text, "account %s %" G_GINT64_FORMAT "\n", device_names[i], balance);
  }
  s->issuer = g_string_free (text, FALSE);

  s->reassembler_busy = tally_reassembler_is_busy (w->reassembler);
}

static void
snapshot_clear (Snapshot *s)
{
  for (int i = 0; i < N_DEVICES; i++)
    g_free (s->registers[i]);
  g_free (s->issuer);
  g_clear_pointer (&s->revocation_list, g_bytes_unref);
  g_clear_pointer (&s->fraud_proofs, g_ptr_array_unref);
  g_clear_pointer (&s->audit_rows, g_ptr_array_unref);
}

/* @text without the lines that start with one of @prefixes. */
static char *
without_lines (const char *text, const char *const *prefixes)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  GString *out = g_string_new (NULL);
  for (guint i = 0; lines[i] != NULL; i++) {
    gboolean drop = FALSE;
    for (guint j = 0; prefixes[j] != NULL && !drop; j++)
      drop = g_str_has_prefix (lines[i], prefixes[j]);
    if (!drop)
      g_string_append_printf (out, "%s\n", lines[i]);
  }
  return g_string_free (out, FALSE);
}

/* --- the harness ------------------------------------------------------------------------------ */

static gboolean
session_is_active (TallySessionState state)
{
  return state != TALLY_SESSION_STATE_DONE && state != TALLY_SESSION_STATE_FAILED;
}

/* The attacked session failed, and told its peer why with the same code. */
static void
check_session (World *w, const Case *c)
{
  g_assert_nonnull (w->attacked);
  TallySessionState state = tally_session_get_state (w->attacked);
  if (session_is_active (w->attacked_state))
    g_assert_cmpint (state, ==, TALLY_SESSION_STATE_FAILED);
  else
    g_assert_cmpint (state, ==, w->attacked_state);

  if (!w->expect_reply) {
    g_assert_null (w->reply);
    return;
  }
  g_assert_nonnull (w->reply);
  g_autoptr (Tally__SessionMessage) m = script_unpack_session (w->reply);
  g_assert_cmpint (m->msg_case, ==, TALLY__SESSION_MESSAGE__MSG_ERROR);
  g_assert_cmpuint (m->error->code, ==, (guint) c->code);
}

/* The reassembler takes a whole message after the attack: nothing of the
 * hostile fragments is left in it. */
static void
check_reassembler_takes_message (World *w)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) cert = tally_register_get_certificate (PAYER (w));
  g_autoptr (GPtrArray) frags =
    tally_frame_split (g_bytes_get_data (cert, NULL), g_bytes_get_size (cert), PROBE_MTU,
                       TALLY_SESSION_MAX_MESSAGE, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) message = NULL;
  for (guint i = 0; i < frags->len; i++) {
    g_assert_null (message);
    gsize len;
    const guint8 *data = g_bytes_get_data (frags->pdata[i], &len);
    g_assert_true (
      tally_reassembler_push (w->reassembler, data, len, ++w->clock_us, &message, &error));
    g_assert_no_error (error);
  }
  g_assert_nonnull (message);
  g_assert_true (g_bytes_equal (message, cert));
}

/* The kind of proof the issuer writes for the error an honest payee, or
 * an honest register about to spend, would have given. */
static Tally__FraudKind
fraud_kind_of (TallyError code)
{
  switch ((int) code) {
  case TALLY_ERROR_COUNTER_REUSED: return TALLY__FRAUD_KIND__FRAUD_KIND_COUNTER_REUSED;
  case TALLY_ERROR_CHAIN_FORK: return TALLY__FRAUD_KIND__FRAUD_KIND_CHAIN_FORK;
  case TALLY_ERROR_EXPIRED: return TALLY__FRAUD_KIND__FRAUD_KIND_LATE_RECEIPT;
  case TALLY_ERROR_INSUFFICIENT_FUNDS: return TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN;
  case TALLY_ERROR_LIMIT_PAYMENT: return TALLY__FRAUD_KIND__FRAUD_KIND_OVER_LIMIT;
  default: g_assert_not_reached ();
  }
}

/* The proofs in @after that @before did not have, in the issuer's order. */
static GPtrArray *
new_fraud_proofs (const Snapshot *before, const Snapshot *after)
{
  GPtrArray *found = g_ptr_array_new ();
  for (guint i = 0; i < after->fraud_proofs->len; i++) {
    gboolean known = FALSE;
    for (guint j = 0; j < before->fraud_proofs->len && !known; j++)
      known = g_bytes_equal (after->fraud_proofs->pdata[i], before->fraud_proofs->pdata[j]);
    if (!known)
      g_ptr_array_add (found, after->fraud_proofs->pdata[i]);
  }
  g_assert_cmpuint (after->fraud_proofs->len, ==, before->fraud_proofs->len + found->len);
  return found;
}

/* The one proof in @after that @before did not have. */
static GBytes *
new_fraud_proof (const Snapshot *before, const Snapshot *after)
{
  g_autoptr (GPtrArray) found = new_fraud_proofs (before, after);
  g_assert_cmpuint (found->len, ==, 1);
  return found->pdata[0];
}

/* The issuer proved the fraud @c names against the payer, with two entries
 * the payer signed, revoked it, published a list that says so, and counted
 * the forked entry as exposure; its books still balance. */
static void
check_fraud_proved (World *w, const Case *c, const Snapshot *before, const Snapshot *after)
{
  g_autoptr (GError) error = NULL;
  const guint8 *issuer_key = tally_issuer_get_public_key (w->issuer);
  const guint8 *payer_id = tally_register_get_id (PAYER (w));
  const guint8 *payer_key = tally_register_get_public_key (PAYER (w));

  g_assert_cmpuint (w->report.fraud_proofs, ==, 1);

  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (new_fraud_proof (before, after));
  g_assert_true (tally_envelope_verify (env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_FRAUD_PROOF,
                                        issuer_key, &error));
  g_assert_no_error (error);
  g_autoptr (Tally__FraudProof) proof = TALLY_UNPACK (
    Tally__FraudProof, tally__fraud_proof, env->body.data, env->body.len, "fraud proof", &error);
  g_assert_no_error (error);
  g_assert_cmpint (proof->kind, ==, fraud_kind_of (c->code));
  g_assert_cmpmem (proof->register_id.data, proof->register_id.len, payer_id, TALLY_ID_BYTES);
  g_assert_nonnull (proof->first);
  g_assert_nonnull (proof->second);
  g_assert_false (proof->first->body.len == proof->second->body.len &&
                  memcmp (proof->first->body.data, proof->second->body.data,
                          proof->first->body.len) == 0);
  g_assert_true (tally_envelope_verify (
    proof->first, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION, payer_key,
    &error));
  g_assert_true (tally_envelope_verify (
    proof->second, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION, payer_key,
    &error));
  g_assert_no_error (error);

  g_autoptr (Tally__SignedEnvelope) old_env = fixture_envelope (before->revocation_list);
  g_autoptr (Tally__SignedEnvelope) new_env = fixture_envelope (after->revocation_list);
  g_autoptr (Tally__RevocationList) old_list =
    tally_revocation_list_verify (old_env, issuer_key, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__RevocationList) new_list =
    tally_revocation_list_verify (new_env, issuer_key, &error);
  g_assert_no_error (error);
  g_assert_false (tally_revocation_list_contains (old_list, payer_id));
  g_assert_true (tally_revocation_list_contains (new_list, payer_id));
  g_assert_cmpuint (new_list->serial, ==, old_list->serial + 1);

  const TallyAudit *a = &before->audit, *b = &after->audit;
  g_assert_true (a->balanced);
  g_assert_true (b->balanced);
  g_assert_cmpint (b->issued, ==, a->issued);
  g_assert_cmpint (b->online, ==, a->online);
  g_assert_cmpint (b->offline, ==, a->offline);
  g_assert_cmpint (b->in_flight, ==, a->in_flight);
  g_assert_cmpint (b->fraud_exposure, ==, a->fraud_exposure + w->fraud_amount);
  g_assert_cmpuint (b->registers, ==, a->registers);
  g_assert_cmpuint (b->revoked, ==, a->revoked + 1);
  g_assert_cmpuint (b->fraud_proofs, ==, a->fraud_proofs + 1);
}

/* @reg's row in the audit's list of flagged registers, or NULL. */
static const TallyAuditRegister *
audit_row_of (GPtrArray *rows, TallyRegister *reg)
{
  for (guint i = 0; i < rows->len; i++) {
    const TallyAuditRegister *row = rows->pdata[i];
    if (memcmp (row->register_id, tally_register_get_id (reg), TALLY_ID_BYTES) == 0)
      return row;
  }
  return NULL;
}

/* @env verifies under @key in the context it names. */
static void
assert_signed_by (const Tally__SignedEnvelope *env, const guint8 *key)
{
  g_autoptr (GError) error = NULL;
  g_assert_nonnull (env);
  g_assert_true (tally_envelope_verify (env, env->context, key, &error));
  g_assert_no_error (error);
}

/* Each new proof is the issuer's, names the culprit, is of the kind
 * expected, and holds what the culprit signed. */
static void
check_judged_proofs (World *w, const Snapshot *before, const Snapshot *after)
{
  g_autoptr (GError) error = NULL;
  const Judgement *j = &w->judged;
  TallyRegister *culprit = w->devices[j->culprit].reg;
  const guint8 *issuer_key = tally_issuer_get_public_key (w->issuer);
  const guint8 *key = tally_register_get_public_key (culprit);

  g_autoptr (GPtrArray) proofs = new_fraud_proofs (before, after);
  g_assert_cmpuint (proofs->len, ==, j->n_kinds);
  g_assert_cmpuint (w->report.fraud_proofs, ==, j->n_kinds);
  for (guint i = 0; i < proofs->len; i++) {
    g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (proofs->pdata[i]);
    g_assert_true (tally_envelope_verify (
      env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_FRAUD_PROOF, issuer_key, &error));
    g_assert_no_error (error);
    g_autoptr (Tally__FraudProof) proof = TALLY_UNPACK (
      Tally__FraudProof, tally__fraud_proof, env->body.data, env->body.len, "fraud proof", &error);
    g_assert_no_error (error);
    g_test_message ("proof %u: %s", i, tally_issuer_fraud_kind_to_string (proof->kind));
    g_assert_cmpint (proof->kind, ==, j->kinds[i]);
    g_assert_cmpmem (proof->register_id.data, proof->register_id.len,
                     tally_register_get_id (culprit), TALLY_ID_BYTES);
    assert_signed_by (proof->first, key);
    if (proof->kind == TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN) {
      /* The issuer's statement over the bundle it judged. */
      g_assert_cmpint (proof->deficit, ==, j->deficit);
      g_autoptr (Tally__SignedEnvelope) judged = fixture_envelope (w->input);
      g_assert_cmpmem (proof->first->body.data, proof->first->body.len, judged->body.data,
                       judged->body.len);
    } else {
      g_assert_cmpint (proof->deficit, ==, 0);
    }
    if (proof->kind != TALLY__FRAUD_KIND__FRAUD_KIND_OVER_LIMIT)
      assert_signed_by (proof->second, key);
    else
      g_assert_null (proof->second); /* no payee reported a receipt */
  }
}

/* An owner fed the issuer a bundle beyond its evidence (protocol.md 5.5):
 * the issuer credited the evidence only, refused the rest, proved the fraud
 * and revoked the culprit alone; every other account is as it was and the
 * audit's identity holds with the exposure the fraud left. */
static void
check_evidence_enforced (World *w, const Case *c, const Snapshot *before, const Snapshot *after)
{
  g_autoptr (GError) error = NULL;
  const Judgement *j = &w->judged;
  TallyRegister *culprit = w->devices[j->culprit].reg;
  const guint8 *issuer_key = tally_issuer_get_public_key (w->issuer);

  g_assert_cmpuint (j->n_kinds, >, 0);
  gboolean named = FALSE;
  for (guint i = 0; i < j->n_kinds; i++)
    named = named || j->kinds[i] == fraud_kind_of (c->code);
  g_assert_true (named);
  check_judged_proofs (w, before, after);
  g_assert_cmpint (w->report.refused, ==, j->refused);
  g_assert_true (w->report.revoked);

  g_autoptr (Tally__SignedEnvelope) old_env = fixture_envelope (before->revocation_list);
  g_autoptr (Tally__SignedEnvelope) new_env = fixture_envelope (after->revocation_list);
  g_autoptr (Tally__RevocationList) old_list =
    tally_revocation_list_verify (old_env, issuer_key, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__RevocationList) new_list =
    tally_revocation_list_verify (new_env, issuer_key, &error);
  g_assert_no_error (error);
  g_assert_false (tally_revocation_list_contains (old_list, tally_register_get_id (culprit)));
  g_assert_true (tally_revocation_list_contains (new_list, tally_register_get_id (culprit)));
  g_assert_cmpuint (new_list->n_revoked_register_ids, ==, old_list->n_revoked_register_ids + 1);
  g_assert_cmpuint (new_list->serial, ==, old_list->serial + 1);

  for (int i = 0; i < N_DEVICES; i++)
    g_assert_cmpint (after->accounts[i], ==,
                     before->accounts[i] + (i == (int) j->culprit ? j->credited : 0));

  const TallyAudit *a = &before->audit, *b = &after->audit;
  g_assert_true (a->identity);
  g_assert_true (b->identity);
  g_assert_cmpuint (b->views_unbacked, ==, 0);
  g_assert_cmpint (b->issued, ==, a->issued);
  g_assert_cmpint (b->online, ==, a->online + j->credited);
  g_assert_cmpint (b->in_flight, ==, a->in_flight + j->in_flight);
  g_assert_cmpint (b->fraud_exposure, ==, a->fraud_exposure + j->exposure);
  g_assert_cmpint (b->awaiting, ==, a->awaiting - j->awaiting);
  g_assert_cmpint (b->refused, ==, a->refused + j->refused);
  g_assert_cmpint (b->issued + b->fraud_exposure, ==, b->online + b->offline + b->in_flight);
  g_assert_cmpint (b->balanced, ==, b->fraud_exposure == 0 && b->awaiting == 0);
  g_assert_cmpuint (b->registers, ==, a->registers);
  g_assert_cmpuint (b->revoked, ==, a->revoked + 1);
  g_assert_cmpuint (b->fraud_proofs, ==, a->fraud_proofs + j->n_kinds);

  /* The audit names the culprit, with the figures that trace it. */
  const TallyAuditRegister *was = audit_row_of (before->audit_rows, culprit);
  const TallyAuditRegister *row = audit_row_of (after->audit_rows, culprit);
  g_assert_nonnull (row);
  g_assert_true (row->revoked);
  g_assert_cmpint (row->exposure, ==, (was ? was->exposure : 0) + j->exposure);
  g_assert_cmpint (row->refused, ==, (was ? was->refused : 0) + j->refused);
  g_assert_cmpint (row->deficit, ==, MAX (was ? was->deficit : 0, j->deficit));
  g_assert_cmpuint (row->proofs, ==, (was ? was->proofs : 0) + j->n_kinds);
  for (guint i = 0; i < j->n_kinds; i++)
    g_assert_true (row->proof_kinds & (1u << j->kinds[i]));
}

/* The payer kept the newer list it was sent, which names the payee; every
 * other part of every register is as it was. */
static void
check_gossip_adopted (World *w, const Snapshot *before, const Snapshot *after)
{
  static const char *const moved[] = { "revocation serial", "bundle ", NULL };
  g_autofree char *payer_before = without_lines (before->registers[DEVICE_PAYER], moved);
  g_autofree char *payer_after = without_lines (after->registers[DEVICE_PAYER], moved);
  g_assert_cmpstr (payer_after, ==, payer_before);
  g_assert_cmpstr (after->registers[DEVICE_PAYER], !=, before->registers[DEVICE_PAYER]);
  g_assert_cmpuint (tally_register_get_revocation_serial (PAYER (w)), ==,
                    tally_register_get_revocation_serial (PAYEE (w)));
  for (int i = 0; i < N_DEVICES; i++)
    if (i != DEVICE_PAYER)
      g_assert_cmpstr (after->registers[i], ==, before->registers[i]);
  g_assert_cmpstr (after->issuer, ==, before->issuer);
}

static void
run_case (gconstpointer data)
{
  const Case *c = data;
  g_autoptr (GError) error = NULL;
  World w;
  Snapshot before, after, reopened;

  g_test_message ("layer %s, expects %s", layer_to_string (c->layer),
                  tally_error_to_string (c->code));
  world_init (&w);
  c->prepare (&w);
  snapshot_take (&w, &before);

  gboolean ok = c->attack (&w, &error);

  switch (c->outcome) {
  case OUTCOME_REFUSED:
  case OUTCOME_GOSSIP_ADOPTED:
    g_assert_false (ok);
    g_assert_error (error, TALLY_ERROR, (gint) c->code);
    break;
  case OUTCOME_FRAUD_PROVED:
  case OUTCOME_EVIDENCE_ENFORCED:
    g_assert_no_error (error);
    g_assert_true (ok);
    break;
  }

  switch (c->layer) {
  case LAYER_SESSION:
    check_session (&w, c);
    break;
  case LAYER_FRAME:
    g_assert_nonnull (w.fragments);
    break;
  case LAYER_REGISTER:
    g_assert_nonnull (w.target);
    break;
  case LAYER_ISSUER:
    break;
  }

  /* In memory, then as the registers find themselves on disk. */
  snapshot_take (&w, &after);
  world_end_sessions (&w);
  for (int i = 0; i < N_DEVICES; i++)
    device_reopen (&w.devices[i]);
  snapshot_take (&w, &reopened);
  for (int i = 0; i < N_DEVICES; i++)
    g_assert_cmpstr (reopened.registers[i], ==, after.registers[i]);

  g_assert_false (before.reassembler_busy);
  g_assert_false (after.reassembler_busy);
  check_reassembler_takes_message (&w);

  switch (c->outcome) {
  case OUTCOME_REFUSED:
    for (int i = 0; i < N_DEVICES; i++)
      g_assert_cmpstr (after.registers[i], ==, before.registers[i]);
    g_assert_cmpstr (after.issuer, ==, before.issuer);
    break;
  case OUTCOME_GOSSIP_ADOPTED:
    check_gossip_adopted (&w, &before, &after);
    break;
  case OUTCOME_FRAUD_PROVED:
    for (int i = 0; i < N_DEVICES; i++)
      g_assert_cmpstr (after.registers[i], ==, before.registers[i]);
    check_fraud_proved (&w, c, &before, &after);
    break;
  case OUTCOME_EVIDENCE_ENFORCED:
    for (int i = 0; i < N_DEVICES; i++)
      g_assert_cmpstr (after.registers[i], ==, before.registers[i]);
    check_evidence_enforced (&w, c, &before, &after);
    break;
  }

  snapshot_clear (&before);
  snapshot_clear (&after);
  snapshot_clear (&reopened);
  world_clear (&w);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *path = g_strconcat ("/adversarial/", cases[i].name, NULL);
    g_test_add_data_func (path, &cases[i], run_case);
  }
  return g_test_run ();
}
