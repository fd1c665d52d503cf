/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tally-app's logic without a display (app/tally-app-model.c): what the
 * owner types as an amount, how amounts, codes and payment states read,
 * and that the app reads the request URIs of docs/test-vectors.md and
 * refuses malformed ones and offers that differ from them.
 */
#include <glib.h>
#include <string.h>

#include "tally-app-model.h"

#define VECTOR_EXP 1767232800

static void
test_amount_entry_accepts_at_most_two_decimals (void)
{
  static const struct
  {
    const char *text;
    gint64 want; /* 0: refused */
  } cases[] = {
    { "12.50", 1250 },
    { "12.5", 1250 },
    { "12", 1200 },
    { " 7.25 ", 725 },
    { "0.01", 1 },
    { "90071992547409.92", (gint64) 1 << 53 },
    { "", 0 },
    { "0", 0 },
    { "0.00", 0 },
    { "12.", 0 },
    { ".5", 0 },
    { "1.234", 0 },
    { "-1", 0 },
    { "+1", 0 },
    { "1,50", 0 },
    { "12 EUR", 0 },
    { "1e3", 0 },
    { "90071992547409.93", 0 },
    { "99999999999999999999", 0 },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    gint64 got = 0;
    gboolean ok = tally_app_amount_parse (cases[i].text, "EUR", &got);
    g_test_message ("\"%s\"", cases[i].text);
    g_assert_cmpint (ok, ==, cases[i].want != 0);
    if (ok)
      g_assert_cmpint (got, ==, cases[i].want);
  }
}

/* The twin of the core's ISO 4217 table: JPY has no decimals, KWD three,
 * CLF four, others two; typed amounts follow the same rule. */
static void
test_amounts_follow_the_currency_exponent (void)
{
  g_autofree char *jpy = tally_app_amount_format (1250, "JPY");
  g_autofree char *kwd = tally_app_amount_format (1250, "KWD");
  g_autofree char *clf = tally_app_amount_format (12345, "CLF");
  g_autofree char *other = tally_app_amount_format (1250, "ABCDEFGH");
  g_autofree char *bare = tally_app_amount_format_value (1250, "JPY");
  g_assert_cmpstr (jpy, ==, "1250 JPY");
  g_assert_cmpstr (kwd, ==, "1.250 KWD");
  g_assert_cmpstr (clf, ==, "1.2345 CLF");
  g_assert_cmpstr (other, ==, "12.50 ABCDEFGH");
  g_assert_cmpstr (bare, ==, "1250");

  static const struct
  {
    const char *text;
    const char *currency;
    gint64 want; /* 0: refused */
  } cases[] = {
    { "1250", "JPY", 1250 },
    { "12.5", "JPY", 0 },
    { "1.250", "KWD", 1250 },
    { "1.25", "KWD", 1250 },
    { "1.2345", "KWD", 0 },
    { "1.2345", "CLF", 12345 },
    { "9007199254740992", "JPY", (gint64) 1 << 53 },
    { "9007199254740993", "JPY", 0 },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    gint64 got = 0;
    g_test_message ("\"%s\" %s", cases[i].text, cases[i].currency);
    gboolean ok = tally_app_amount_parse (cases[i].text, cases[i].currency, &got);
    g_assert_cmpint (ok, ==, cases[i].want != 0);
    if (ok)
      g_assert_cmpint (got, ==, cases[i].want);
  }
  g_assert_cmpuint (tally_app_currency_exponent ("XOF"), ==, 0);
  g_assert_cmpuint (tally_app_currency_exponent ("BHD"), ==, 3);
  g_assert_cmpuint (tally_app_currency_exponent ("UYW"), ==, 4);
  g_assert_cmpuint (tally_app_currency_exponent ("EUR"), ==, 2);
  g_assert_cmpuint (tally_app_currency_exponent (NULL), ==, 2);
}

static void
test_amounts_and_codes_read_as_people_write_them (void)
{
  g_autofree char *a = tally_app_amount_format (1250, "EUR");
  g_autofree char *b = tally_app_amount_format (5, NULL);
  g_autofree char *c = tally_app_amount_format (-725, "EUR");
  g_autofree char *d = tally_app_code_format ("123456");
  g_autofree char *e = tally_app_code_format ("");
  g_assert_cmpstr (a, ==, "12.50 EUR");
  g_assert_cmpstr (b, ==, "0.05");
  g_assert_cmpstr (c, ==, "-7.25 EUR");
  g_assert_cmpstr (d, ==, "123 456");
  g_assert_cmpstr (e, ==, "");
  g_autofree char *named = tally_app_peer_label ("Bob's Bakery", "0a1b2c3d4e5f");
  g_autofree char *unnamed = tally_app_peer_label ("", "0a1b2c3d4e5f");
  g_autofree char *nobody = tally_app_peer_label (NULL, NULL);
  g_assert_cmpstr (named, ==, "Bob's Bakery");
  g_assert_cmpstr (unnamed, ==, "0a1b2c3d");
  g_assert_cmpstr (nobody, ==, "unknown");
}

static void
test_payment_states_read_for_each_side (void)
{
  g_assert_cmpstr (tally_app_state_describe ("payee", "waiting"), ==, "Waiting for the payer");
  g_assert_cmpstr (tally_app_state_describe ("payee", "offer-sent"), ==, "Payer connected");
  g_assert_cmpstr (tally_app_state_describe ("payer", "confirming"), ==,
                   "Waiting for your confirmation");
  g_assert_cmpstr (tally_app_state_describe ("payee", "done"), ==, "Received");
  g_assert_cmpstr (tally_app_state_describe ("payer", "done"), ==, "Paid");
  g_assert_true (tally_app_state_is_final ("done"));
  g_assert_true (tally_app_state_is_final ("failed"));
  g_assert_false (tally_app_state_is_final ("wait-pay"));
  g_autofree char *declined = tally_app_error_describe ("org.tally.Error.Rejected", "x");
  g_autofree char *other = tally_app_error_describe ("org.tally.Error.Storage", "disk full");
  g_assert_cmpstr (declined, ==, "Declined.");
  g_assert_cmpstr (other, ==, "Failed: disk full");
}

static void
test_request_uri_vectors_parse (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyAppRequest) ble = tally_app_request_parse (
    "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1250&cur=EUR&exp=1767232800&name=Bob%27s%20Bakery",
    &error);
  g_assert_no_error (error);
  g_assert_cmpstr (ble->address, ==, "ble:0a1b2c3d");
  g_assert_cmpint (ble->amount, ==, 1250);
  g_assert_cmpstr (ble->currency, ==, "EUR");
  g_assert_cmpint (ble->expires, ==, VECTOR_EXP);
  g_assert_cmpstr (ble->display_name, ==, "Bob's Bakery");

  g_autoptr (TallyAppRequest) unix_ = tally_app_request_parse (
    "tally://pay?v=1&to=unix%3A%2Frun%2Ftally%2Fbob.sock&amount=500&cur=EUR&exp=1767232800",
    &error);
  g_assert_no_error (error);
  g_assert_cmpstr (unix_->address, ==, "unix:/run/tally/bob.sock");
  g_assert_cmpstr (unix_->display_name, ==, "");

  g_autoptr (TallyAppRequest) tcp = tally_app_request_parse (
    "tally://pay?v=1&to=tcp%3A%5B%3A%3A1%5D%3A7000&amount=9007199254740992&cur=JPY"
    "&exp=1767232800&name=Caf%C3%A9%20Lumen",
    &error);
  g_assert_no_error (error);
  g_assert_cmpstr (tcp->address, ==, "tcp:[::1]:7000");
  g_assert_cmpint (tcp->amount, ==, (gint64) 1 << 53);
  g_assert_cmpstr (tcp->display_name, ==, "Caf\u00e9 Lumen");
}

static void
test_malformed_request_uris_are_refused (void)
{
  static const struct
  {
    const char *uri;
    TallyAppUriError code;
  } cases[] = {
    { "https://pay?v=1", TALLY_APP_URI_ERROR_MALFORMED },
    { "tally://pay?", TALLY_APP_URI_ERROR_MALFORMED },
    { "tally://pay?v=2&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1", TALLY_APP_URI_ERROR_VERSION },
    { "tally://pay?to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1", TALLY_APP_URI_ERROR_MALFORMED },
    { "tally://pay?v=1&v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1",
      TALLY_APP_URI_ERROR_MALFORMED },
    { "tally://pay?v=1&to=ble:0a1b2c3d&amount=1&cur=EUR&exp=1", TALLY_APP_URI_ERROR_MALFORMED },
    { "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1&x=1",
      TALLY_APP_URI_ERROR_MALFORMED },
    { "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=0&cur=EUR&exp=1",
      TALLY_APP_URI_ERROR_INVALID_AMOUNT },
    { "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=01&cur=EUR&exp=1",
      TALLY_APP_URI_ERROR_INVALID_AMOUNT },
    { "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=9007199254740993&cur=EUR&exp=1",
      TALLY_APP_URI_ERROR_INVALID_AMOUNT },
    { "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=eur&exp=1",
      TALLY_APP_URI_ERROR_INVALID_AMOUNT },
    { "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=0", TALLY_APP_URI_ERROR_MALFORMED },
    { "tally://pay?v=1&to=ble%3A0A1B2C3D&amount=1&cur=EUR&exp=1", TALLY_APP_URI_ERROR_MALFORMED },
    { "tally://pay?v=1&to=unix%3Arel.sock&amount=1&cur=EUR&exp=1", TALLY_APP_URI_ERROR_MALFORMED },
    { "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1&name=",
      TALLY_APP_URI_ERROR_MALFORMED },
    { "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1&name=a%0Ab",
      TALLY_APP_URI_ERROR_MALFORMED },
    { "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1&name=%E2%80%AEx",
      TALLY_APP_URI_ERROR_MALFORMED },
    { "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1&name=a%00",
      TALLY_APP_URI_ERROR_MALFORMED },
    { "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1&name=a%2",
      TALLY_APP_URI_ERROR_MALFORMED },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GError) error = NULL;
    g_test_message ("%s", cases[i].uri);
    g_autoptr (TallyAppRequest) r = tally_app_request_parse (cases[i].uri, &error);
    g_assert_null (r);
    g_assert_error (error, TALLY_APP_URI_ERROR, (gint) cases[i].code);
  }
  g_autofree char *long_uri = g_strnfill (1100, 'a');
  memcpy (long_uri, "tally://pay?v=1&", 16);
  g_autoptr (GError) error = NULL;
  g_assert_null (tally_app_request_parse (long_uri, &error));
  g_assert_error (error, TALLY_APP_URI_ERROR, TALLY_APP_URI_ERROR_MALFORMED);
}

static void
test_offer_that_differs_from_the_request_is_refused (void)
{
  g_autoptr (TallyAppRequest) r = tally_app_request_parse (
    "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1250&cur=EUR&exp=1767232800&name=Bob%27s%20Bakery",
    NULL);
  g_assert_nonnull (r);
  char *reason = NULL;

  g_assert_true (
    tally_app_request_check_offer (r, VECTOR_EXP - 1, 1250, "EUR", "Bob's Bakery", &reason));
  g_assert_null (reason);
  g_assert_false (
    tally_app_request_check_offer (r, VECTOR_EXP, 1250, "EUR", "Bob's Bakery", &reason));
  g_assert_cmpstr (reason, ==, "The payment request has expired.");
  g_clear_pointer (&reason, g_free);
  g_assert_false (tally_app_request_check_offer (r, 0, 1250, "USD", "Bob's Bakery", &reason));
  g_assert_cmpstr (reason, ==, "The payee asks for USD, the request said EUR.");
  g_clear_pointer (&reason, g_free);
  g_assert_false (tally_app_request_check_offer (r, 0, 1251, "EUR", "Bob's Bakery", &reason));
  g_assert_cmpstr (reason, ==, "The payee asks for 12.51 EUR, the request said 12.50 EUR.");
  g_clear_pointer (&reason, g_free);
  g_assert_false (tally_app_request_check_offer (r, 0, 1250, "EUR", "Bob's Bakery Ltd", &reason));
  g_assert_nonnull (strstr (reason, "Bob's Bakery Ltd"));
  g_clear_pointer (&reason, g_free);
  g_assert_false (tally_app_request_check_offer (r, 0, 1250, "EUR", NULL, &reason));
  g_clear_pointer (&reason, g_free);
}

/* The home page tells how far the register is from its reconciliation
 * deadline: the earlier of the certificate's end and the offline time. */
static void
test_sync_state_names_the_earlier_deadline (void)
{
  g_autofree char *none = tally_app_sync_describe (0, 0, 0, 0, 0, 1767225600);
  g_autofree char *cert = tally_app_sync_describe (1, 100, 0, 259200, 1767312000, 1767225600);
  g_autofree char *offline =
    tally_app_sync_describe (2, 100, 1767225600, 3600, 1767312000, 1767225600);
  g_autofree char *late =
    tally_app_sync_describe (2, 100, 1767225600, 3600, 1767312000, 1767229200);
  g_assert_cmpstr (none, ==, "");
  g_assert_cmpstr (cert, ==, "1 of 100 offline payments \u00b7 reconcile by 2026-01-02 00:00");
  g_assert_cmpstr (offline, ==, "2 of 100 offline payments \u00b7 reconcile by 2026-01-01 01:00");
  g_assert_cmpstr (late, ==,
                   "2 of 100 offline payments \u00b7 reconcile now: the deadline passed on "
                   "2026-01-01 01:00");
}

/* The home page says whether the register syncs online, when it last did,
 * and why the last sync failed, in words rather than D-Bus error names. */
static void
test_online_state_reads_as_words (void)
{
  g_autofree char *off = tally_app_online_describe ("off", 0, "");
  g_autofree char *fresh = tally_app_online_describe ("idle", 0, "");
  g_autofree char *synced = tally_app_online_describe ("idle", 1767225600, "");
  g_autofree char *syncing = tally_app_online_describe ("syncing", 1767225600, "");
  g_autofree char *failed = tally_app_online_describe (
    "failed", 1767225600, "org.tally.Error.Disconnected: issuer unreachable at http://[::1]:9/");
  g_autofree char *bare = tally_app_online_describe ("failed", 0, "");
  g_assert_cmpstr (off, ==, "No online issuer set up: reconcile with files.");
  g_assert_cmpstr (fresh, ==, "Online issuer set up; not synced yet.");
  g_assert_cmpstr (synced, ==, "Synced with the issuer on 2026-01-01 00:00.");
  g_assert_cmpstr (syncing, ==, "Syncing with the issuer\u2026");
  g_assert_cmpstr (failed, ==,
                   "The last sync failed (issuer unreachable at http://[::1]:9/); tallyd will "
                   "try again.");
  g_assert_cmpstr (bare, ==, "The last sync failed (no reason given); tallyd will try again.");
}

static GVariant *
history_entry (const char *kind,
               gint64 amount,
               guint64 time,
               const char *peer,
               const char *name,
               const char *memo)
{
  GVariantDict d;
  g_variant_dict_init (&d, NULL);
  g_variant_dict_insert (&d, "Kind", "s", kind);
  g_variant_dict_insert (&d, "State", "s", "pending");
  g_variant_dict_insert (&d, "Amount", "x", amount);
  g_variant_dict_insert (&d, "Time", "t", time);
  g_variant_dict_insert (&d, "Counter", "t", (guint64) 3);
  g_variant_dict_insert (&d, "Sequence", "t", (guint64) 7);
  if (peer != NULL)
    g_variant_dict_insert (&d, "Peer", "s", peer);
  if (name != NULL)
    g_variant_dict_insert (&d, "PeerName", "s", name);
  if (memo != NULL)
    g_variant_dict_insert (&d, "Memo", "s", memo);
  return g_variant_dict_end (&d);
}

/* The export is tallyctl history --csv's format, and a name or memo from
 * another register cannot become a spreadsheet formula or break a line. */
static void
test_history_csv_quotes_and_defuses_other_peoples_text (void)
{
  GVariantBuilder b;
  g_variant_builder_init (&b, G_VARIANT_TYPE ("aa{sv}"));
  g_variant_builder_add_value (&b, history_entry ("received", 1250, 1767225600,
                                                  "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
                                                  "=HYPERLINK(\"x\")", "beans, \"fresh\""));
  g_variant_builder_add_value (&b, history_entry ("load", 4000, 1767222000, NULL, NULL, NULL));
  g_autoptr (GVariant) entries = g_variant_ref_sink (g_variant_builder_end (&b));
  g_autofree char *csv = tally_app_history_csv (entries, "EUR");
  g_assert_cmpstr (
    csv, ==,
    "time,time_utc,kind,state,amount,currency,peer,peer_id,counter,memo,receipt_id\r\n"
    "2026-01-01 00:00:00,2026-01-01T00:00:00Z,received,pending,12.50,EUR,"
    "\"'=HYPERLINK(\"\"x\"\") (0a1b2c3d)\",0a1b2c3d4e5f60718293a4b5c6d7e8f9,3,"
    "\"beans, \"\"fresh\"\"\",\r\n"
    "2025-12-31 23:00:00,2025-12-31T23:00:00Z,load,pending,40.00,EUR,,,7,,\r\n");
}

int
main (int argc, char **argv)
{
  g_setenv ("LANGUAGE", "C", TRUE);
  g_setenv ("TZ", "UTC", TRUE);
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/app/amount-entry-accepts-at-most-two-decimals",
                   test_amount_entry_accepts_at_most_two_decimals);
  g_test_add_func ("/app/amounts-follow-the-currency-exponent",
                   test_amounts_follow_the_currency_exponent);
  g_test_add_func ("/app/amounts-and-codes-read-as-people-write-them",
                   test_amounts_and_codes_read_as_people_write_them);
  g_test_add_func ("/app/payment-states-read-for-each-side",
                   test_payment_states_read_for_each_side);
  g_test_add_func ("/app/request-uri-vectors-parse", test_request_uri_vectors_parse);
  g_test_add_func ("/app/malformed-request-uris-are-refused",
                   test_malformed_request_uris_are_refused);
  g_test_add_func ("/app/offer-that-differs-from-the-request-is-refused",
                   test_offer_that_differs_from_the_request_is_refused);
  g_test_add_func ("/app/online-state-reads-as-words", test_online_state_reads_as_words);
  g_test_add_func ("/app/sync-state-names-the-earlier-deadline",
                   test_sync_state_names_the_earlier_deadline);
  g_test_add_func ("/app/history-csv-quotes-and-defuses-other-peoples-text",
                   test_history_csv_quotes_and_defuses_other_peoples_text);
  return g_test_run ();
}
