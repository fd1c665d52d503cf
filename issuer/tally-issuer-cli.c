/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tally-issuer: command-line front end of the issuer.  Exit status 0 on
 * success, 1 when an operation fails (or "audit" finds the books unbalanced),
 * 2 for usage errors.
 */
#include <locale.h>
#include <stdio.h>
#include <string.h>

#include "tally-build-config.h"
#include "tally-clock.h"
#include "tally-hex.h"
#include "tally-issuer-store.h"
#include "tally-issuer.h"
#include "tally-json.h"

#define EXIT_FAILED 1
#define EXIT_USAGE  2

#define SECONDS_PER_HOUR 3600u
#define SECONDS_PER_DAY  86400u

typedef struct
{
  char *dir;
  char *name;
  char *currency;
  char *store;
  char *out;
  char *account;
  char *display_name;
  char *key_hex;
  char *key_file;
  char *max_payment;
  char *balance_cap;
  int max_payments;
  int max_offline_hours;
  int valid_days;
  char *register_hex;
  char *amount;
  gboolean json;
  int keep_days;
} Options;

static Options opt = {
  .max_payments = 100,
  .max_offline_hours = 72,
  .valid_days = 7,
  .keep_days = TALLY_ISSUER_KEEP_DEFAULT / 86400,
};

typedef struct Command Command;
struct Command
{
  const char *name;
  const char *synopsis;
  const char *summary;
  const char *example;
  const GOptionEntry *entries;
  int min_args; /* positional arguments after the command */
  int max_args;
  int (*run) (const Command *cmd, char **args);
};

/* --- output helpers ------------------------------------------------------------ */

static int G_GNUC_PRINTF (1, 2)
fail (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  fprintf (stderr, "tally-issuer: %s\n", msg);
  return EXIT_FAILED;
}

static int
fail_error (const GError *error)
{
  return fail ("%s", error->message);
}

static int G_GNUC_PRINTF (2, 3)
usage (const Command *cmd, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  fprintf (stderr, "tally-issuer: %s\nTry \"tally-issuer %s%s--help\".\n", msg,
           cmd ? cmd->name : "", cmd ? " " : "");
  return EXIT_USAGE;
}

static gboolean
write_file (const char *path, GBytes *bytes, GError **error)
{
  gsize len;
  const char *data = g_bytes_get_data (bytes, &len);
  return g_file_set_contents_full (path, data, (gssize) len, G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                   error);
}

static char *
format_time (guint64 t)
{
  g_autoptr (GDateTime) dt = g_date_time_new_from_unix_utc ((gint64) t);
  return dt ? g_date_time_format_iso8601 (dt) : g_strdup_printf ("%" G_GUINT64_FORMAT, t);
}

static TallyIssuer *
open_issuer (GError **error)
{
  return tally_issuer_open (opt.dir, error);
}

/* Opens the issuer, then reads @n amount arguments in its currency (no
 * decimals for JPY, three for KWD; NULL texts are skipped).  Without an
 * issuer to open, an argument that is no amount even with the usual two
 * decimals is still reported as the usage error it is.  NULL with *@rc. */
static TallyIssuer *
open_issuer_amounts (const Command *cmd,
                     const char *const *texts,
                     gint64 *const *outs,
                     gsize n,
                     int *rc)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyIssuer) issuer = open_issuer (&error);
  const char *cur = issuer != NULL ? tally_issuer_get_currency (issuer) : NULL;
  for (gsize i = 0; i < n; i++) {
    gint64 unused;
    g_autoptr (GError) amount_error = NULL;
    if (texts[i] != NULL &&
        !tally_amount_parse (texts[i], cur, issuer != NULL ? outs[i] : &unused, &amount_error)) {
      *rc = usage (cmd, "%s", amount_error->message);
      return NULL;
    }
  }
  if (issuer == NULL)
    *rc = fail_error (error);
  return g_steal_pointer (&issuer);
}

/* --- commands ------------------------------------------------------------------- */

static const GOptionEntry init_entries[] = {
  { "name", 0, 0, G_OPTION_ARG_STRING, &opt.name, "Issuer name", "NAME" },
  { "currency", 0, 0, G_OPTION_ARG_STRING, &opt.currency, "Currency code, e.g. EUR", "CUR" },
  { "store", 0, 0, G_OPTION_ARG_STRING, &opt.store,
    "Where the books live: sqlite (DIR/issuer.db, the default) or postgresql:CONNINFO, "
    "recorded in DIR/issuer.conf",
    "STORE" },
  { NULL },
};

static int
cmd_init (const Command *cmd, char **args)
{
  if (opt.name == NULL || opt.currency == NULL)
    return usage (cmd, "init needs --name and --currency");

  g_autoptr (GError) error = NULL;
  if (opt.store != NULL && !tally_issuer_store_spec_check (opt.store, &error))
    return usage (cmd, "%s", error->message);
  g_autoptr (TallyIssuer) issuer = tally_issuer_create_with_store (
    opt.dir, opt.store, opt.name, opt.currency, tally_now (), &error);
  if (issuer == NULL)
    return fail_error (error);
  g_autofree char *hex = tally_hex_encode (tally_issuer_get_public_key (issuer),
                                           TALLY_PUBLIC_KEY_BYTES);
  printf ("created issuer \"%s\" (%s) in %s\npublic key %s\n", opt.name, opt.currency, opt.dir,
          hex);
  return 0;
}

static const GOptionEntry key_entries[] = {
  { "out", 'o', 0, G_OPTION_ARG_FILENAME, &opt.out, "Also write the signed key set to FILE",
    "FILE" },
  { NULL },
};

static int
cmd_key (const Command *cmd, char **args)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyIssuer) issuer = open_issuer (&error);
  if (issuer == NULL)
    return fail_error (error);
  if (opt.out != NULL) {
    g_autoptr (GBytes) key_set = tally_issuer_get_key_set (issuer);
    if (!write_file (opt.out, key_set, &error))
      return fail_error (error);
  }
  g_autofree char *hex = tally_hex_encode (tally_issuer_get_public_key (issuer),
                                           TALLY_PUBLIC_KEY_BYTES);
  printf ("%s\n", hex);
  return 0;
}

static int
cmd_account_create (const Command *cmd, char **args)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyIssuer) issuer = open_issuer (&error);
  if (issuer == NULL || !tally_issuer_account_create (issuer, args[0], &error))
    return fail_error (error);
  printf ("account \"%s\" created\n", args[0]);
  return 0;
}

static int
cmd_deposit (const Command *cmd, char **args)
{
  g_autoptr (GError) error = NULL;
  gint64 amount, balance;
  int rc;
  g_autoptr (TallyIssuer) issuer = open_issuer_amounts (cmd, (const char *const[]){ args[1] },
                                                        (gint64 *const[]){ &amount }, 1, &rc);
  if (issuer == NULL)
    return rc;
  if (!tally_issuer_deposit (issuer, args[0], amount, &error) ||
      !tally_issuer_account_balance (issuer, args[0], &balance, &error))
    return fail_error (error);
  const char *cur = tally_issuer_get_currency (issuer);
  g_autofree char *a = tally_amount_format (amount, cur);
  g_autofree char *b = tally_amount_format (balance, cur);
  printf ("deposited %s into \"%s\", balance %s\n", a, args[0], b);
  return 0;
}

static int
cmd_balance (const Command *cmd, char **args)
{
  g_autoptr (GError) error = NULL;
  gint64 balance;
  g_autoptr (TallyIssuer) issuer = open_issuer (&error);
  if (issuer == NULL || !tally_issuer_account_balance (issuer, args[0], &balance, &error))
    return fail_error (error);
  g_autofree char *b = tally_amount_format (balance, tally_issuer_get_currency (issuer));
  printf ("%s\n", b);
  return 0;
}

static const GOptionEntry certify_entries[] = {
  { "account", 'a', 0, G_OPTION_ARG_STRING, &opt.account, "Online account behind the register",
    "NAME" },
  { "key", 'k', 0, G_OPTION_ARG_STRING, &opt.key_hex, "Register public key, 64 hex digits", "HEX" },
  { "key-file", 0, 0, G_OPTION_ARG_FILENAME, &opt.key_file,
    "File holding the register public key (32 raw bytes or hex)", "FILE" },
  { "display-name", 0, 0, G_OPTION_ARG_STRING, &opt.display_name,
    "Name payers see, e.g. a stall's trading name (1..64 bytes, no control characters)", "NAME" },
  { "max-payment", 0, 0, G_OPTION_ARG_STRING, &opt.max_payment,
    "Largest single payment, in the issuer's currency (default 50.00, 5000 JPY)", "AMT" },
  { "balance-cap", 0, 0, G_OPTION_ARG_STRING, &opt.balance_cap,
    "Largest register balance (default 500.00, 50000 JPY)", "AMT" },
  { "max-payments", 0, 0, G_OPTION_ARG_INT, &opt.max_payments,
    "Payments between reconciliations (default 100)", "N" },
  { "max-offline-hours", 0, 0, G_OPTION_ARG_INT, &opt.max_offline_hours,
    "Hours between reconciliations (default 72)", "H" },
  { "valid-days", 0, 0, G_OPTION_ARG_INT, &opt.valid_days,
    "Certificate lifetime in days (default 7)", "D" },
  { "out", 'o', 0, G_OPTION_ARG_FILENAME, &opt.out, "Write the certificate to FILE", "FILE" },
  { NULL },
};

static gboolean
read_key_file (const char *path, guint8 key[static TALLY_PUBLIC_KEY_BYTES], GError **error)
{
  g_autofree char *data = NULL;
  gsize len;
  if (!g_file_get_contents (path, &data, &len, error))
    return FALSE;
  if (len == TALLY_PUBLIC_KEY_BYTES) {
    memcpy (key, data, TALLY_PUBLIC_KEY_BYTES);
    return TRUE;
  }
  if (memchr (data, '\0', len) == NULL &&
      tally_hex_decode (g_strstrip (data), key, TALLY_PUBLIC_KEY_BYTES, NULL))
    return TRUE;
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
               "%s holds neither 32 key bytes nor 64 hex digits", path);
  return FALSE;
}

static int
cmd_certify (const Command *cmd, char **args)
{
  if (opt.account == NULL || opt.out == NULL)
    return usage (cmd, "certify needs --account and --out");
  if ((opt.key_hex == NULL) == (opt.key_file == NULL))
    return usage (cmd, "certify needs exactly one of --key and --key-file");
  if (opt.max_payments <= 0 || opt.max_offline_hours <= 0 || opt.valid_days <= 0)
    return usage (cmd, "--max-payments, --max-offline-hours and --valid-days must be positive");

  g_autoptr (GError) error = NULL;
  if (opt.display_name != NULL &&
      (*opt.display_name == '\0' || !tally_display_name_check (opt.display_name, &error)))
    return usage (cmd, "--display-name: %s", error ? error->message : "must not be empty");
  guint8 key[TALLY_PUBLIC_KEY_BYTES];
  if (opt.key_hex != NULL ? !tally_hex_decode (opt.key_hex, key, sizeof key, &error)
                          : !read_key_file (opt.key_file, key, &error))
    return usage (cmd, "register key: %s", error->message);

  /* Limits are written in the issuer's currency: "50" for JPY, "50.00" for
   * EUR.  The defaults are 5000 and 50000 minor units. */
  Tally__Limits limits = TALLY__LIMITS__INIT;
  limits.max_payment = 5000;
  limits.balance_cap = 50000;
  int rc;
  g_autoptr (TallyIssuer) issuer =
    open_issuer_amounts (cmd, (const char *const[]){ opt.max_payment, opt.balance_cap },
                         (gint64 *const[]){ &limits.max_payment, &limits.balance_cap }, 2, &rc);
  if (issuer == NULL)
    return rc;
  limits.max_offline_payments = (guint32) opt.max_payments;
  limits.max_offline_seconds = (guint64) opt.max_offline_hours * SECONDS_PER_HOUR;

  guint64 now = tally_now ();
  guint64 not_after = now + (guint64) opt.valid_days * SECONDS_PER_DAY;

  g_autoptr (GBytes) cert =
    tally_issuer_certify (issuer, key, opt.account, opt.display_name, &limits, now, not_after,
                          &error);
  if (cert == NULL || !write_file (opt.out, cert, &error))
    return fail_error (error);

  guint8 id[TALLY_ID_BYTES];
  tally_register_id_from_key (key, id);
  g_autofree char *hex = tally_hex_encode (id, sizeof id);
  g_autofree char *until = format_time (not_after);
  if (opt.display_name != NULL)
    printf ("certified register %s \"%s\" for account \"%s\" until %s\n", hex, opt.display_name,
            opt.account, until);
  else
    printf ("certified register %s for account \"%s\" until %s\n", hex, opt.account, until);
  return 0;
}

static const GOptionEntry voucher_entries[] = {
  { "register", 'r', 0, G_OPTION_ARG_STRING, &opt.register_hex, "Register id, 32 hex digits",
    "HEXID" },
  { "amount", 0, 0, G_OPTION_ARG_STRING, &opt.amount, "Value to load, e.g. 20.00", "AMT" },
  { "out", 'o', 0, G_OPTION_ARG_FILENAME, &opt.out, "Write the voucher to FILE", "FILE" },
  { NULL },
};

static int
cmd_voucher (const Command *cmd, char **args)
{
  if (opt.register_hex == NULL || opt.amount == NULL || opt.out == NULL)
    return usage (cmd, "voucher needs --register, --amount and --out");

  g_autoptr (GError) error = NULL;
  guint8 id[TALLY_ID_BYTES];
  gint64 amount;
  if (!tally_hex_decode (opt.register_hex, id, sizeof id, &error))
    return usage (cmd, "register id: %s", error->message);
  int rc;
  g_autoptr (TallyIssuer) issuer = open_issuer_amounts (cmd, (const char *const[]){ opt.amount },
                                                        (gint64 *const[]){ &amount }, 1, &rc);
  if (issuer == NULL)
    return rc;
  g_autoptr (GBytes) voucher = tally_issuer_sell_voucher (issuer, id, amount, tally_now (), &error);
  if (voucher == NULL || !write_file (opt.out, voucher, &error))
    return fail_error (error);

  g_autofree char *a = tally_amount_format (amount, tally_issuer_get_currency (issuer));
  printf ("voucher for %s to register %s written to %s\n", a, opt.register_hex, opt.out);
  return 0;
}

static const GOptionEntry out_entries[] = {
  { "out", 'o', 0, G_OPTION_ARG_FILENAME, &opt.out, "Write the signed result to FILE", "FILE" },
  { NULL },
};

static int
cmd_reconcile (const Command *cmd, char **args)
{
  if (opt.out == NULL)
    return usage (cmd, "reconcile needs --out");

  g_autoptr (GError) error = NULL;
  g_autofree char *data = NULL;
  gsize len;
  if (!g_file_get_contents (args[0], &data, &len, &error))
    return fail_error (error);

  g_autoptr (TallyIssuer) issuer = open_issuer (&error);
  if (issuer == NULL)
    return fail_error (error);
  TallyReconcileReport report;
  g_autoptr (GBytes) result = tally_issuer_reconcile (issuer, (const guint8 *) data, len,
                                                      tally_now (), &report, &error);
  if (result == NULL || !write_file (opt.out, result, &error))
    return fail_error (error);

  gsize rlen;
  const guint8 *rdata = g_bytes_get_data (result, &rlen);
  g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (rdata, rlen, &error);
  g_autoptr (Tally__ReconciliationResult) res = NULL;
  if (env != NULL)
    res = TALLY_UNPACK (Tally__ReconciliationResult, tally__reconciliation_result, env->body.data,
                        env->body.len, "result", &error);
  if (res == NULL)
    return fail_error (error);

  const char *cur = tally_issuer_get_currency (issuer);
  g_autofree char *hex = tally_hex_encode (res->register_id.data, res->register_id.len);
  g_autofree char *reclaimed = tally_amount_format (report.reclaimed_amount, cur);
  g_autofree char *refused = tally_amount_format (report.refused, cur);
  printf ("register %s reconciled: settled through counter %" G_GUINT64_FORMAT "\n"
          "  spent %u new, received %u new, defunds %u, duplicates %u, fraud proofs %u\n"
          "  reclaimed %u expired permission(s) in flight (%s), late receipts %u\n"
          "  defunded beyond the evidence and refused: %s\n"
          "  result: %zu own permission(s) reclaimed, %zu payee receipt(s) returned\n"
          "  %s\n",
          hex, res->settled_counter, report.spent_new, report.received_new, report.defunds,
          report.duplicates, report.fraud_proofs, report.reclaimed, reclaimed, report.late_receipts,
          refused, res->n_reclaimed, res->n_receipts,
          report.revoked ? "register is REVOKED; no certificate renewed" : "certificate renewed");
  return 0;
}

static int
cmd_revoke (const Command *cmd, char **args)
{
  g_autoptr (GError) error = NULL;
  guint8 id[TALLY_ID_BYTES];
  if (!tally_hex_decode (args[0], id, sizeof id, &error))
    return usage (cmd, "register id: %s", error->message);

  g_autoptr (TallyIssuer) issuer = open_issuer (&error);
  if (issuer == NULL || !tally_issuer_revoke (issuer, id, tally_now (), &error))
    return fail_error (error);
  printf ("register %s revoked\n", args[0]);
  return 0;
}

static int
cmd_lost (const Command *cmd, char **args)
{
  g_autoptr (GError) error = NULL;
  guint8 id[TALLY_ID_BYTES];
  if (!tally_hex_decode (args[1], id, sizeof id, &error))
    return usage (cmd, "register id: %s", error->message);

  g_autoptr (TallyIssuer) issuer = open_issuer (&error);
  guint64 now = tally_now ();
  if (issuer == NULL || !tally_issuer_report_lost (issuer, args[0], id, now, &error))
    return fail_error (error);
  printf ("register %s of \"%s\" reported lost and revoked; its balance is refunded by "
          "\"tally-issuer refund-lost\" once its window has passed\n",
          args[1], args[0]);
  return 0;
}

static int
cmd_refund_lost (const Command *cmd, char **args)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyIssuer) issuer = open_issuer (&error);
  TallyRefundReport r;
  if (issuer == NULL || !tally_issuer_refund_lost (issuer, tally_now (), &r, &error))
    return fail_error (error);
  g_autofree char *amount =
    tally_amount_format (r.refunded_amount, tally_issuer_get_currency (issuer));
  printf ("%u lost register(s) refunded, %s in all; %u waiting for their window", r.refunded,
          amount, r.waiting);
  if (r.waiting > 0) {
    g_autoptr (GDateTime) due =
      g_date_time_new_from_unix_utc ((gint64) MIN (r.next_due, (guint64) G_MAXINT64));
    g_autofree char *when = due != NULL ? g_date_time_format_iso8601 (due) : NULL;
    printf (", the next due at %s", when != NULL ? when : "(far future)");
  }
  printf ("\n");
  if (r.failed > 0) {
    g_printerr ("tally-issuer: %u lost register(s) could not be refunded (see the log above); "
                "they are tried again on the next run\n",
                r.failed);
    return 1;
  }
  return 0;
}

static const GOptionEntry prune_entries[] = {
  { "keep-days", 0, 0, G_OPTION_ARG_INT, &opt.keep_days,
    "Keep answers signed within the last DAYS days (default 90)", "DAYS" },
  { NULL },
};

static int
cmd_prune (const Command *cmd, char **args)
{
  if (opt.keep_days <= 0)
    return usage (cmd, "--keep-days must be a positive number of days");
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyIssuer) issuer = open_issuer (&error);
  TallyPruneReport r;
  if (issuer == NULL ||
      !tally_issuer_prune_kept (issuer, tally_now (), (guint64) opt.keep_days * 86400, &r, &error))
    return fail_error (error);
  printf ("%u kept answer(s) older than %d day(s) pruned, %u kept", r.pruned, opt.keep_days,
          r.kept);
  if (r.undated > 0)
    printf (", %u that do not decode left in place", r.undated);
  printf ("\n");
  return 0;
}

static const GOptionEntry revocations_entries[] = {
  { "out", 'o', 0, G_OPTION_ARG_FILENAME, &opt.out, "Write the signed list to FILE", "FILE" },
  { NULL },
};

static int
cmd_revocations (const Command *cmd, char **args)
{
  if (opt.out == NULL)
    return usage (cmd, "revocations needs --out");

  g_autoptr (GError) error = NULL;
  g_autoptr (TallyIssuer) issuer = open_issuer (&error);
  if (issuer == NULL)
    return fail_error (error);
  g_autoptr (GBytes) list = tally_issuer_get_revocation_list (issuer, &error);
  if (list == NULL || !write_file (opt.out, list, &error))
    return fail_error (error);

  gsize len;
  const guint8 *data = g_bytes_get_data (list, &len);
  g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (data, len, &error);
  g_autoptr (Tally__RevocationList) rl = NULL;
  if (env != NULL)
    rl = tally_revocation_list_verify (env, tally_issuer_get_public_key (issuer), &error);
  if (rl == NULL)
    return fail_error (error);
  printf ("revocation list %" G_GUINT64_FORMAT " with %zu revoked register(s) written to %s\n",
          rl->serial, rl->n_revoked_register_ids, opt.out);
  return 0;
}

static const GOptionEntry json_entries[] = {
  { "json", 0, 0, G_OPTION_ARG_NONE, &opt.json, "Print JSON", NULL },
  { NULL },
};

static int
cmd_fraud_proofs (const Command *cmd, char **args)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyIssuer) issuer = open_issuer (&error);
  if (issuer == NULL)
    return fail_error (error);
  g_autoptr (GPtrArray) proofs = tally_issuer_get_fraud_proofs (issuer, &error);
  if (proofs == NULL)
    return fail_error (error);

  g_autoptr (GString) out = g_string_new (opt.json ? "[" : "");
  for (guint i = 0; i < proofs->len; i++) {
    gsize len;
    const guint8 *data = g_bytes_get_data (proofs->pdata[i], &len);
    g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (data, len, &error);
    g_autoptr (Tally__FraudProof) fp = NULL;
    if (env != NULL)
      fp = TALLY_UNPACK (Tally__FraudProof, tally__fraud_proof, env->body.data, env->body.len,
                         "fraud proof", &error);
    if (fp == NULL)
      return fail_error (error);
    g_autofree char *id = tally_hex_encode (fp->register_id.data, fp->register_id.len);
    g_autofree char *when = format_time (fp->detected_at);
    if (opt.json) {
      g_autofree char *proof = tally_hex_encode (data, len);
      g_string_append (out, i ? ",\n  {" : "\n  {");
      g_string_append (out, "\"register_id\": ");
      tally_json_append_string (out, id);
      g_string_append (out, ", \"kind\": ");
      tally_json_append_string (out, tally_issuer_fraud_kind_to_string (fp->kind));
      g_string_append_printf (out, ", \"detected_at\": %" G_GUINT64_FORMAT ", \"proof\": ",
                              fp->detected_at);
      tally_json_append_string (out, proof);
      g_string_append_c (out, '}');
    } else {
      g_string_append_printf (out, "%s  %-14s  %s\n", id,
                              tally_issuer_fraud_kind_to_string (fp->kind), when);
    }
  }
  if (opt.json)
    g_string_append (out, proofs->len ? "\n]\n" : "]\n");
  else if (proofs->len == 0)
    g_string_append (out, "no fraud proofs\n");
  fputs (out->str, stdout);
  return 0;
}

/* "counter-reused,overdrawn" for the kinds set in @kinds. */
static char *
proof_kinds_string (guint32 kinds)
{
  g_autoptr (GString) out = g_string_new (NULL);
  for (guint k = 1; k < 32; k++) {
    if (!(kinds & (1u << k)))
      continue;
    if (out->len > 0)
      g_string_append_c (out, ',');
    g_string_append (out, tally_issuer_fraud_kind_to_string ((Tally__FraudKind) k));
  }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

/* ["counter-reused", "overdrawn"]: the same array GET /v1/operator/audit
 * serves, so one parser reads both. */
static void
proof_kinds_json (GString *out, guint32 kinds)
{
  gboolean first = TRUE;
  g_string_append_c (out, '[');
  for (guint k = 1; k < 32; k++) {
    if (!(kinds & (1u << k)))
      continue;
    g_string_append (out, first ? "" : ", ");
    tally_json_append_string (out, tally_issuer_fraud_kind_to_string ((Tally__FraudKind) k));
    first = FALSE;
  }
  g_string_append_c (out, ']');
}

static void
audit_json (GString *out, const TallyAudit *a, GPtrArray *rows, const char *cur)
{
  /* Amounts are integers in minor units of "currency". */
  g_string_append (out, "{\n  \"currency\": ");
  tally_json_append_string (out, cur);
  g_string_append_printf (
    out,
    ",\n  \"issued\": %" G_GINT64_FORMAT ",\n  \"online\": %" G_GINT64_FORMAT
    ",\n  \"offline\": %" G_GINT64_FORMAT ",\n  \"in_flight\": %" G_GINT64_FORMAT
    ",\n  \"fraud_exposure\": %" G_GINT64_FORMAT ",\n  \"awaiting\": %" G_GINT64_FORMAT
    ",\n  \"refused\": %" G_GINT64_FORMAT ",\n  \"reclaimed\": %" G_GINT64_FORMAT
    ",\n  \"reclaimed_permissions\": %" G_GUINT64_FORMAT
    ",\n  \"registers\": %u,\n  \"revoked\": %u,\n  \"fraud_proofs\": %u"
    ",\n  \"views_unbacked\": %u,\n  \"identity\": %s,\n  \"balanced\": %s",
    a->issued, a->online, a->offline, a->in_flight, a->fraud_exposure, a->awaiting, a->refused,
    a->reclaimed, a->reclaimed_count, a->registers, a->revoked, a->fraud_proofs, a->views_unbacked,
    a->identity ? "true" : "false", a->balanced ? "true" : "false");
  g_string_append (out, ",\n  \"flagged\": [");
  for (guint i = 0; i < rows->len; i++) {
    const TallyAuditRegister *r = rows->pdata[i];
    g_autofree char *id = tally_hex_encode (r->register_id, TALLY_ID_BYTES);
    g_string_append (out, i ? ",\n    {\"register_id\": " : "\n    {\"register_id\": ");
    tally_json_append_string (out, id);
    g_string_append (out, ", \"account\": ");
    tally_json_append_string (out, r->account);
    g_string_append_printf (
      out,
      ", \"revoked\": %s, \"view\": %" G_GINT64_FORMAT ", \"exposure\": %" G_GINT64_FORMAT
      ", \"awaiting\": %" G_GINT64_FORMAT ", \"refused\": %" G_GINT64_FORMAT
      ", \"deficit\": %" G_GINT64_FORMAT ", \"lost_at\": %" G_GUINT64_FORMAT
      ", \"refund_due\": %" G_GUINT64_FORMAT ", \"refunded_at\": %" G_GUINT64_FORMAT
      ", \"refunded\": %" G_GINT64_FORMAT ", \"recovered\": %" G_GINT64_FORMAT
      ", \"fraud_proofs\": %u, \"proof_kinds\": ",
      r->revoked ? "true" : "false", r->view, r->exposure, r->awaiting, r->refused, r->deficit,
      r->lost_at, r->refund_due, r->refunded_at, r->refunded, r->recovered, r->proofs);
    proof_kinds_json (out, r->proof_kinds);
    g_string_append_c (out, '}');
  }
  g_string_append (out, rows->len ? "\n  ]\n}\n" : "]\n}\n");
}

static void
audit_text (GString *out, const TallyAudit *a, GPtrArray *rows, const char *cur)
{
  struct
  {
    const char *label;
    gint64 value;
  } lines[] = {
    { "issued", a->issued },
    { "online", a->online },
    { "offline", a->offline },
    { "in flight", a->in_flight },
    { "fraud exposure", a->fraud_exposure },
    { "awaiting", a->awaiting },
    { "refused", a->refused },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (lines); i++) {
    g_autofree char *v = tally_amount_format (lines[i].value, cur);
    g_string_append_printf (out, "%-15s %s\n", lines[i].label, v);
  }
  /* Not a term of the identity: reclaimed value is inside "online". */
  g_autofree char *reclaimed = tally_amount_format (a->reclaimed, cur);
  g_string_append_printf (out, "%-15s %s in %" G_GUINT64_FORMAT " expired permission(s)\n",
                          "reclaimed", reclaimed, a->reclaimed_count);
  g_string_append_printf (out, "%-15s %u (%u revoked)\n%-15s %u\n", "registers", a->registers,
                          a->revoked, "fraud proofs", a->fraud_proofs);
  g_string_append_printf (out, "%-15s %s\n", "identity",
                          a->identity ? "holds: issued + exposure = online + offline + in flight"
                                      : "FAILS: the ledger does not add up");
  g_string_append_printf (out, "%-15s %s\n", "balanced",
                          a->balanced ? "yes" : "NO: not all value is backed by evidence");
  for (guint i = 0; i < rows->len; i++) {
    const TallyAuditRegister *r = rows->pdata[i];
    g_autofree char *id = tally_hex_encode (r->register_id, TALLY_ID_BYTES);
    g_autofree char *kinds = proof_kinds_string (r->proof_kinds);
    g_autofree char *exp = tally_amount_format (r->exposure, cur);
    g_autofree char *wait = tally_amount_format (r->awaiting, cur);
    g_autofree char *ref = tally_amount_format (r->refused, cur);
    g_string_append_printf (out,
                            "register %s (%s)%s: exposure %s, awaiting %s, refused %s, "
                            "%u fraud proof(s)%s%s\n",
                            id, r->account, r->revoked ? " revoked" : "", exp, wait, ref, r->proofs,
                            *kinds ? ": " : "", kinds);
  }
}

static int
cmd_audit (const Command *cmd, char **args)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyIssuer) issuer = open_issuer (&error);
  TallyAudit a;
  if (issuer == NULL || !tally_issuer_audit (issuer, &a, &error))
    return fail_error (error);
  g_autoptr (GPtrArray) rows = tally_issuer_audit_registers (issuer, &error);
  if (rows == NULL)
    return fail_error (error);
  const char *cur = tally_issuer_get_currency (issuer);

  g_autoptr (GString) out = g_string_new (NULL);
  if (opt.json)
    audit_json (out, &a, rows, cur);
  else
    audit_text (out, &a, rows, cur);
  fputs (out->str, stdout);
  return a.balanced ? 0 : EXIT_FAILED;
}

/* --- dispatch ------------------------------------------------------------------- */

static const GOptionEntry no_entries[] = { { NULL } };

static const Command commands[] = {
  { "init", "--name NAME --currency CUR [--store STORE]", "Create the issuer keys and database",
    "tally-issuer init --name \"Example Bank\" --currency EUR "
    "--store \"postgresql:host=/run/postgresql dbname=tally\"",
    init_entries, 0, 0, cmd_init },
  { "key", "[--out FILE]", "Print the issuer public key; --out writes the signed key set",
    "tally-issuer key --out issuer-keys.bin", key_entries, 0, 0, cmd_key },
  { "account-create", "NAME", "Open an online account", "tally-issuer account-create alice",
    no_entries, 1, 1, cmd_account_create },
  { "deposit", "NAME AMOUNT", "Pay money into an online account",
    "tally-issuer deposit alice 100.00", no_entries, 2, 2, cmd_deposit },
  { "balance", "NAME", "Print an online account's balance", "tally-issuer balance alice",
    no_entries, 1, 1, cmd_balance },
  { "certify", "--account NAME --key HEX|--key-file FILE [--display-name NAME] --out FILE",
    "Certify a register key for an account",
    "tally-issuer certify --account bob --key-file bob.pub --display-name \"Bob's Bakery\" "
    "--max-payment 20.00 --out bob.cert",
    certify_entries, 0, 0, cmd_certify },
  { "voucher", "--register HEXID --amount AMT --out FILE",
    "Sell a load voucher for a register, debiting its account",
    "tally-issuer voucher --register 0123456789abcdef0123456789abcdef --amount 20.00 --out "
    "load.bin",
    voucher_entries, 0, 0, cmd_voucher },
  { "reconcile", "BUNDLE --out RESULT",
    "Book a register's bundle, reclaim expired permissions in flight, write the signed result",
    "tally-issuer reconcile bundle.bin --out result.bin", out_entries, 1, 1, cmd_reconcile },
  { "revoke", "HEXID", "Revoke a register and publish a new revocation list",
    "tally-issuer revoke 0123456789abcdef0123456789abcdef", no_entries, 1, 1, cmd_revoke },
  { "lost", "NAME HEXID",
    "Report account NAME's register lost or stolen: revoke it now, refund it later",
    "tally-issuer lost alice 0123456789abcdef0123456789abcdef", no_entries, 2, 2, cmd_lost },
  { "refund-lost", "", "Refund every lost register whose window has passed to its account, once",
    "tally-issuer refund-lost", no_entries, 0, 0, cmd_refund_lost },
  { "prune", "[--keep-days DAYS]",
    "Delete the answers kept for retried bundles and voucher purchases once older than DAYS",
    "tally-issuer prune --keep-days 90", prune_entries, 0, 0, cmd_prune },
  { "revocations", "--out FILE", "Write the current signed revocation list",
    "tally-issuer revocations --out revoked.bin", revocations_entries, 0, 0, cmd_revocations },
  { "fraud-proofs", "[--json]",
    "List the fraud proofs found so far (counter-reused, chain-fork, late-receipt, overdrawn)",
    "tally-issuer fraud-proofs --json", json_entries, 0, 0, cmd_fraud_proofs },
  { "audit", "[--json]",
    "Check issued + exposure = online + offline + in flight from the ledger; list registers "
    "with exposure, refused defunds or fraud proofs (exit status 1 unless all value is backed)",
    "tally-issuer audit --json", json_entries, 0, 0, cmd_audit },
};

static const GOptionEntry dir_entries[] = {
  { "dir", 'd', 0, G_OPTION_ARG_FILENAME, &opt.dir,
    "Issuer directory (default $TALLY_ISSUER_DIR or ./issuer)", "DIR" },
  { NULL },
};

static char *
commands_summary (void)
{
  GString *s = g_string_new ("Commands:\n");
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    g_string_append_printf (s, "  %-16s %s\n", commands[i].name, commands[i].summary);
  g_string_append (s, "\nRun \"tally-issuer COMMAND --help\" for the options of a command.");
  return g_string_free (s, FALSE);
}

static char *
commands_examples (void)
{
  GString *s = g_string_new ("Examples:\n");
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    g_string_append_printf (s, "  %s\n", commands[i].example);
  g_string_append (s, "\nAmounts are decimal major units, e.g. 12.50.  Exit status: 0 success, "
                      "1 failure or unbalanced audit, 2 usage error.\n");
  return g_string_free (s, FALSE);
}

static int
run_command (const Command *cmd, int argc, char **argv)
{
  g_autofree char *prgname = g_strdup_printf ("tally-issuer %s", cmd->name);
  g_set_prgname (prgname);

  g_autoptr (GOptionContext) ctx = g_option_context_new (cmd->synopsis);
  g_autofree char *description = g_strdup_printf ("Example:\n  %s\n", cmd->example);
  g_option_context_set_summary (ctx, cmd->summary);
  g_option_context_set_description (ctx, description);
  g_option_context_add_main_entries (ctx, cmd->entries, NULL);
  g_option_context_add_main_entries (ctx, dir_entries, NULL);

  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return usage (cmd, "%s", error->message);

  int nargs = argc - 1;
  if (nargs < cmd->min_args || nargs > cmd->max_args)
    return usage (cmd, "usage: tally-issuer %s %s", cmd->name, cmd->synopsis);
  if (opt.dir == NULL) {
    const char *env = g_getenv ("TALLY_ISSUER_DIR");
    opt.dir = g_strdup (env != NULL && *env != '\0' ? env : "issuer");
  }
  return cmd->run (cmd, argv + 1);
}

int
main (int argc, char **argv)
{
  setlocale (LC_ALL, "");
  g_set_prgname ("tally-issuer");
  if (sodium_init () < 0)
    return fail ("libsodium cannot initialise");

  gboolean version = FALSE;
  const GOptionEntry version_entries[] = {
    { "version", 'V', 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("COMMAND [ARGS…]");
  g_autofree char *summary = commands_summary ();
  g_autofree char *examples = commands_examples ();
  g_option_context_set_summary (ctx, summary);
  g_option_context_set_description (ctx, examples);
  g_option_context_add_main_entries (ctx, dir_entries, NULL);
  g_option_context_add_main_entries (ctx, version_entries, NULL);
  /* Stop at the command name; the command parses the rest. */
  g_option_context_set_strict_posix (ctx, TRUE);

  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return usage (NULL, "%s", error->message);
  if (version) {
    printf ("tally-issuer %s\n", TALLY_VERSION);
    return 0;
  }
  if (argc < 2) {
    g_autofree char *help = g_option_context_get_help (ctx, TRUE, NULL);
    fprintf (stderr, "tally-issuer: missing command\n\n%s", help);
    return EXIT_USAGE;
  }

  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (argv[1], commands[i].name) == 0)
      return run_command (&commands[i], argc - 1, argv + 1);
  return usage (NULL, "unknown command \"%s\"", argv[1]);
}
