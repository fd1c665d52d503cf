/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The payment request URI (proto/tally-uri.c, docs/protocol.md): the
 * canonical form, and one test per malformed URI with its exact error.
 */

#include <string.h>

#include "tally-core.h"
#include "tally-error.h"
#include "tally-uri.h"

#define EXP 1767232800 /* 2026-01-01T02:00:00Z */
#define BLE_URI                                                                                    \
  "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1250&cur=EUR&exp=1767232800&name=Bob%27s%20Bakery"

static void
test_format_is_canonical (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *uri =
    tally_request_uri_format ("ble:0a1b2c3d", 1250, "EUR", EXP, "Bob's Bakery", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (uri, ==, BLE_URI);

  g_autofree char *bare =
    tally_request_uri_format ("unix:/run/tally/bob.sock", 5, "JPY", EXP, "", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (bare, ==,
                   "tally://pay?v=1&to=unix%3A%2Frun%2Ftally%2Fbob.sock&amount=5&cur=JPY"
                   "&exp=1767232800");
}

static void
test_parse_gives_every_field (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyRequestUri) uri = tally_request_uri_parse (BLE_URI, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (uri->version, ==, 1);
  g_assert_cmpint (uri->transport, ==, TALLY_URI_TRANSPORT_BLE);
  g_assert_cmpstr (uri->address, ==, "ble:0a1b2c3d");
  g_assert_cmpint (uri->amount, ==, 1250);
  g_assert_cmpstr (uri->currency, ==, "EUR");
  g_assert_cmpuint (uri->expires_at, ==, EXP);
  g_assert_cmpstr (uri->display_name, ==, "Bob's Bakery");
  /* The payer names the request by the tag in a ble: address. */
  g_assert_cmpstr (uri->tag, ==, "0a1b2c3d");
}

/* A stream address names one of several open requests by a tag field,
 * written after exp, which the payer's Hello then names. */
static void
test_tag_field_names_the_request_on_a_stream_address (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *text = tally_request_uri_format_tagged ("unix:/run/tally/bob.sock", "0a1b2c3d",
                                                           500, "EUR", EXP, "", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (text, ==,
                   "tally://pay?v=1&to=unix%3A%2Frun%2Ftally%2Fbob.sock&amount=500&cur=EUR"
                   "&exp=1767232800&tag=0a1b2c3d");
  g_autoptr (TallyRequestUri) uri = tally_request_uri_parse (text, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (uri->tag, ==, "0a1b2c3d");
  g_autoptr (TallyRequestUri) bare = tally_request_uri_parse (
    "tally://pay?v=1&to=unix%3A%2Frun%2Ftally%2Fbob.sock&amount=500&cur=EUR&exp=1767232800",
    &error);
  g_assert_no_error (error);
  g_assert_cmpstr (bare->tag, ==, "");
  /* The writer refuses what the reader refuses. */
  g_autofree char *bad =
    tally_request_uri_format_tagged ("ble:0a1b2c3d", "ffffffff", 500, "EUR", EXP, "", &error);
  g_assert_null (bad);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
}

static void
test_parse_round_trips_utf8_names_and_tcp (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *text = tally_request_uri_format ("tcp:[::1]:7000", TALLY_AMOUNT_MAX, "KWD", EXP,
                                                    "Caf\u00e9 \u2615", &error);
  g_assert_no_error (error);
  g_autoptr (TallyRequestUri) uri = tally_request_uri_parse (text, &error);
  g_assert_no_error (error);
  g_assert_cmpint (uri->transport, ==, TALLY_URI_TRANSPORT_TCP);
  g_assert_cmpstr (uri->address, ==, "tcp:[::1]:7000");
  g_assert_cmpint (uri->amount, ==, TALLY_AMOUNT_MAX);
  g_assert_cmpstr (uri->display_name, ==, "Caf\u00e9 \u2615");
}

static void
test_parse_accepts_any_field_order_and_lower_case_hex (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyRequestUri) uri = tally_request_uri_parse (
    "tally://pay?name=Bob%27s%20Bakery&exp=1767232800&cur=EUR&amount=1250&to=ble%3a0a1b2c3d&v=1",
    &error);
  g_assert_no_error (error);
  g_assert_cmpstr (uri->address, ==, "ble:0a1b2c3d");
  g_assert_cmpstr (uri->display_name, ==, "Bob's Bakery");
}

static void
test_parse_without_name_gives_empty_name (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyRequestUri) uri = tally_request_uri_parse (
    "tally://pay?v=1&to=unix%3A%2Ftmp%2Fb.sock&amount=1&cur=EUR&exp=1", &error);
  g_assert_no_error (error);
  g_assert_cmpint (uri->transport, ==, TALLY_URI_TRANSPORT_UNIX);
  g_assert_cmpstr (uri->display_name, ==, "");
}

static void
test_is_uri_recognises_the_scheme (void)
{
  g_assert_true (tally_request_uri_is_uri (BLE_URI));
  g_assert_true (tally_request_uri_is_uri ("TALLY:whatever"));
  g_assert_false (tally_request_uri_is_uri ("unix:/tmp/b.sock"));
  g_assert_false (tally_request_uri_is_uri ("ble:0a1b2c3d"));
}

/* --- malformed URIs: each its own test, with its exact error --- */

typedef struct
{
  const char *path;
  const char *uri;
  TallyError code;
  const char *message;
} Malformed;

static const Malformed malformed[] = {
  { "wrong-scheme", "https://pay?v=1", TALLY_ERROR_MALFORMED, "not a tally: URI" },
  { "upper-case-scheme", "TALLY://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1",
    TALLY_ERROR_MALFORMED, "not a tally: URI" },
  { "not-pay", "tally://receive?v=1", TALLY_ERROR_MALFORMED,
    "a request URI starts with \"tally://pay?\"" },
  { "no-slashes", "tally:pay?v=1", TALLY_ERROR_MALFORMED,
    "a request URI starts with \"tally://pay?\"" },
  { "empty-query", "tally://pay?", TALLY_ERROR_MALFORMED, "field at byte 12 is not key=value" },
  { "trailing-ampersand", "tally://pay?v=1&", TALLY_ERROR_MALFORMED,
    "field at byte 16 is not key=value" },
  { "field-without-value-sign", "tally://pay?v=1&to", TALLY_ERROR_MALFORMED,
    "field at byte 16 is not key=value" },
  { "unknown-field", "tally://pay?v=1&memo=x&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1",
    TALLY_ERROR_MALFORMED, "unknown field \"memo\"" },
  { "repeated-field", "tally://pay?v=1&cur=EUR&cur=USD", TALLY_ERROR_MALFORMED,
    "field \"cur\" appears twice" },
  { "raw-colon", "tally://pay?v=1&to=ble:0a1b2c3d", TALLY_ERROR_MALFORMED,
    "to: byte 0x3A at 22 must be percent-encoded" },
  { "plus-for-space", "tally://pay?v=1&name=Bob+Bakery", TALLY_ERROR_MALFORMED,
    "name: byte 0x2B at 24 must be percent-encoded" },
  { "fragment", "tally://pay?v=1&cur=EUR#x", TALLY_ERROR_MALFORMED,
    "cur: byte 0x23 at 23 must be percent-encoded" },
  { "short-percent", "tally://pay?v=1&name=Bob%2", TALLY_ERROR_MALFORMED,
    "name: '%' at byte 24 is not followed by two hex digits" },
  { "bad-percent-hex", "tally://pay?v=1&name=Bob%G0", TALLY_ERROR_MALFORMED,
    "name: '%' at byte 24 is not followed by two hex digits" },
  { "percent-nul", "tally://pay?v=1&name=Bob%00", TALLY_ERROR_MALFORMED,
    "name: %00 at byte 24 encodes a NUL byte" },
  { "missing-version", "tally://pay?to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1",
    TALLY_ERROR_MALFORMED, "missing field \"v\"" },
  { "future-version", "tally://pay?v=2&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1&extra=1",
    TALLY_ERROR_VERSION, "v: version \"2\" is not supported (this reader knows 1)" },
  { "version-not-canonical", "tally://pay?v=01&to=ble%3A0a1b2c3d", TALLY_ERROR_VERSION,
    "v: version \"01\" is not supported (this reader knows 1)" },
  { "unsupported-version", "tally://pay?v=2&to=ble%3A0a1b2c3d", TALLY_ERROR_VERSION,
    "v: version \"2\" is not supported (this reader knows 1)" },
  { "missing-to", "tally://pay?v=1&amount=1&cur=EUR&exp=1", TALLY_ERROR_MALFORMED,
    "missing field \"to\"" },
  { "missing-amount", "tally://pay?v=1&to=ble%3A0a1b2c3d&cur=EUR&exp=1", TALLY_ERROR_MALFORMED,
    "missing field \"amount\"" },
  { "missing-currency", "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&exp=1", TALLY_ERROR_MALFORMED,
    "missing field \"cur\"" },
  { "missing-expiry", "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR", TALLY_ERROR_MALFORMED,
    "missing field \"exp\"" },
  { "empty-name", "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1&name=",
    TALLY_ERROR_MALFORMED, "name: empty (leave the field out when the payee has no name)" },
  { "decimal-amount", "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=12.50&cur=EUR&exp=1",
    TALLY_ERROR_INVALID_AMOUNT,
    "amount: \"12.50\" is not a decimal integer without sign or leading zero" },
  { "leading-zero-amount", "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=0125&cur=EUR&exp=1",
    TALLY_ERROR_INVALID_AMOUNT,
    "amount: \"0125\" is not a decimal integer without sign or leading zero" },
  { "negative-amount", "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=-1&cur=EUR&exp=1",
    TALLY_ERROR_INVALID_AMOUNT,
    "amount: \"-1\" is not a decimal integer without sign or leading zero" },
  { "zero-amount", "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=0&cur=EUR&exp=1",
    TALLY_ERROR_INVALID_AMOUNT, "amount: 0 is not positive" },
  { "amount-above-maximum",
    "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=9007199254740993&cur=EUR&exp=1", TALLY_ERROR_OVERFLOW,
    "amount: 9007199254740993 exceeds the maximum 9007199254740992" },
  { "lower-case-currency", "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=eur&exp=1",
    TALLY_ERROR_INVALID_AMOUNT, "cur: \"eur\" is not 3 to 8 upper-case letters" },
  /* Bytes the URI's maker chose come back escaped: no terminal escape
   * sequence and no invalid UTF-8 reaches the payer's screen or JSON. */
  { "escape-sequence-in-currency", "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=%1B%5B2J&exp=1",
    TALLY_ERROR_INVALID_AMOUNT, "cur: \"\\033[2J\" is not 3 to 8 upper-case letters" },
  { "invalid-utf8-amount", "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=%FF&cur=EUR&exp=1",
    TALLY_ERROR_INVALID_AMOUNT,
    "amount: \"\\377\" is not a decimal integer without sign or leading zero" },
  { "non-ascii-tcp-host", "tally://pay?v=1&to=tcp%3A%C3%A9%3A1&amount=1&cur=EUR&exp=1",
    TALLY_ERROR_MALFORMED, "to: character U+00E9 is not allowed in a tcp host" },
  { "zero-expiry", "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=0",
    TALLY_ERROR_MALFORMED, "exp: must be after 1970" },
  { "expiry-past-int64",
    "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=9223372036854775808",
    TALLY_ERROR_MALFORMED, "exp: 9223372036854775808 exceeds the maximum 9223372036854775807" },
  { "short-ble-tag", "tally://pay?v=1&to=ble%3A0a1b2c&amount=1&cur=EUR&exp=1",
    TALLY_ERROR_MALFORMED,
    "to: a Bluetooth request tag is 8 lower-case hex digits, not \"0a1b2c\"" },
  { "upper-case-ble-tag", "tally://pay?v=1&to=ble%3A0A1B2C3D&amount=1&cur=EUR&exp=1",
    TALLY_ERROR_MALFORMED,
    "to: a Bluetooth request tag is 8 lower-case hex digits, not \"0A1B2C3D\"" },
  { "relative-unix-path", "tally://pay?v=1&to=unix%3Abob.sock&amount=1&cur=EUR&exp=1",
    TALLY_ERROR_MALFORMED, "to: a unix path must be absolute" },
  { "tcp-without-port", "tally://pay?v=1&to=tcp%3Alocalhost&amount=1&cur=EUR&exp=1",
    TALLY_ERROR_MALFORMED, "to: tcp needs host:port" },
  { "tcp-port-out-of-range", "tally://pay?v=1&to=tcp%3Ahost%3A65536&amount=1&cur=EUR&exp=1",
    TALLY_ERROR_MALFORMED, "to: tcp port \"65536\" is not a number from 1 to 65535" },
  { "unknown-transport", "tally://pay?v=1&to=http%3A%2F%2Fx&amount=1&cur=EUR&exp=1",
    TALLY_ERROR_MALFORMED, "to: \"http://x\" is not a ble:, unix: or tcp: address" },
  { "control-character-in-address", "tally://pay?v=1&to=unix%3A%2Ftmp%2F%0A&amount=1&cur=EUR&exp=1",
    TALLY_ERROR_MALFORMED, "to: character U+000A at byte 10 is not allowed" },
  { "name-not-utf8", "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1&name=%C3",
    TALLY_ERROR_MALFORMED, "name: display name is not valid UTF-8" },
  { "name-with-bidi-override",
    "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1&name=a%E2%80%AEb",
    TALLY_ERROR_MALFORMED, "name: display name holds U+202E, a control or layout character" },
  { "name-too-long",
    "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1&name="
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    TALLY_ERROR_MALFORMED, "name: display name is 65 bytes, at most 64" },
  { "short-tag", "tally://pay?v=1&to=unix%3A%2Fs&amount=1&cur=EUR&exp=1&tag=0a1b2c",
    TALLY_ERROR_MALFORMED, "tag: \"0a1b2c\" is not 8 lower-case hex digits" },
  { "upper-case-tag", "tally://pay?v=1&to=unix%3A%2Fs&amount=1&cur=EUR&exp=1&tag=0A1B2C3D",
    TALLY_ERROR_MALFORMED, "tag: \"0A1B2C3D\" is not 8 lower-case hex digits" },
  { "empty-tag", "tally://pay?v=1&to=unix%3A%2Fs&amount=1&cur=EUR&exp=1&tag=",
    TALLY_ERROR_MALFORMED, "tag: \"\" is not 8 lower-case hex digits" },
  { "tag-contradicting-ble-address",
    "tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1&cur=EUR&exp=1&tag=0a1b2c3e", TALLY_ERROR_MALFORMED,
    "tag: 0a1b2c3e differs from the tag in to" },
};

static void
test_malformed (gconstpointer data)
{
  const Malformed *m = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyRequestUri) uri = tally_request_uri_parse (m->uri, &error);
  g_assert_null (uri);
  g_assert_error (error, TALLY_ERROR, (gint) m->code);
  g_assert_cmpstr (error->message, ==, m->message);
}

static void
test_malformed_too_long (void)
{
  g_autoptr (GString) text = g_string_new ("tally://pay?v=1&name=");
  while (text->len <= TALLY_URI_MAX_LEN)
    g_string_append_c (text, 'a');
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyRequestUri) uri = tally_request_uri_parse (text->str, &error);
  g_assert_null (uri);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
  g_assert_cmpstr (error->message, ==, "URI is 1025 bytes, at most 1024");
}

static void
test_format_refuses_what_parse_refuses (void)
{
  g_autoptr (GError) error = NULL;
  g_assert_null (tally_request_uri_format ("ble:0a1b2c3d", 0, "EUR", EXP, NULL, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT);
  g_clear_error (&error);
  g_assert_null (tally_request_uri_format ("ble", 1, "EUR", EXP, NULL, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
  g_clear_error (&error);
  g_assert_null (tally_request_uri_format ("ble:0a1b2c3d", 1, "EUR", EXP, "a\nb", &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
  g_clear_error (&error);
  g_assert_null (tally_request_uri_format ("ble:0a1b2c3d", 1, "EUR", 0, NULL, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
}

/* --- the payer's check of the offer against the URI --- */

static void
test_offer_matching_the_request_passes (void)
{
  g_autoptr (TallyRequestUri) uri = tally_request_uri_parse (BLE_URI, NULL);
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_request_uri_check_offer (uri, EXP - 1, 1250, "EUR", "Bob's Bakery", &error));
  g_assert_no_error (error);
}

static void
test_offer_after_expiry_is_refused (void)
{
  g_autoptr (TallyRequestUri) uri = tally_request_uri_parse (BLE_URI, NULL);
  g_autoptr (GError) error = NULL;
  g_assert_false (tally_request_uri_check_offer (uri, EXP, 1250, "EUR", "Bob's Bakery", &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_EXPIRED);
  g_assert_cmpstr (error->message, ==, "the request expired 0 s ago");
}

static void
test_offer_with_another_amount_is_refused (void)
{
  g_autoptr (TallyRequestUri) uri = tally_request_uri_parse (BLE_URI, NULL);
  g_autoptr (GError) error = NULL;
  g_assert_false (
    tally_request_uri_check_offer (uri, EXP - 1, 12500, "EUR", "Bob's Bakery", &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_AMOUNT_MISMATCH);
  g_assert_cmpstr (error->message, ==, "the payee asks for 125.00 EUR, the request said 12.50 EUR");
}

static void
test_offer_in_another_currency_is_refused (void)
{
  g_autoptr (TallyRequestUri) uri = tally_request_uri_parse (BLE_URI, NULL);
  g_autoptr (GError) error = NULL;
  g_assert_false (
    tally_request_uri_check_offer (uri, EXP - 1, 1250, "USD", "Bob's Bakery", &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_CURRENCY_MISMATCH);
  g_assert_cmpstr (error->message, ==, "the payee asks for USD, the request said EUR");
}

static void
test_offer_from_another_name_is_refused (void)
{
  g_autoptr (TallyRequestUri) uri = tally_request_uri_parse (BLE_URI, NULL);
  g_autoptr (GError) error = NULL;
  g_assert_false (tally_request_uri_check_offer (uri, EXP - 1, 1250, "EUR", "Bob", &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_PAYEE);
  g_assert_cmpstr (error->message, ==,
                   "the payee is certified as \"Bob\", the request named \"Bob's Bakery\"");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/core/uri/format-is-canonical", test_format_is_canonical);
  g_test_add_func ("/core/uri/parse-gives-every-field", test_parse_gives_every_field);
  g_test_add_func ("/core/uri/tag-field-names-the-request-on-a-stream-address",
                   test_tag_field_names_the_request_on_a_stream_address);
  g_test_add_func ("/core/uri/parse-round-trips-utf8-names-and-tcp",
                   test_parse_round_trips_utf8_names_and_tcp);
  g_test_add_func ("/core/uri/parse-accepts-any-field-order-and-lower-case-hex",
                   test_parse_accepts_any_field_order_and_lower_case_hex);
  g_test_add_func ("/core/uri/parse-without-name-gives-empty-name",
                   test_parse_without_name_gives_empty_name);
  g_test_add_func ("/core/uri/is-uri-recognises-the-scheme", test_is_uri_recognises_the_scheme);
  for (gsize i = 0; i < G_N_ELEMENTS (malformed); i++) {
    g_autofree char *path = g_strdup_printf ("/core/uri/malformed/%s", malformed[i].path);
    g_test_add_data_func (path, &malformed[i], test_malformed);
  }
  g_test_add_func ("/core/uri/malformed/too-long", test_malformed_too_long);
  g_test_add_func ("/core/uri/format-refuses-what-parse-refuses",
                   test_format_refuses_what_parse_refuses);
  g_test_add_func ("/core/uri/offer-matching-the-request-passes",
                   test_offer_matching_the_request_passes);
  g_test_add_func ("/core/uri/offer-after-expiry-is-refused", test_offer_after_expiry_is_refused);
  g_test_add_func ("/core/uri/offer-with-another-amount-is-refused",
                   test_offer_with_another_amount_is_refused);
  g_test_add_func ("/core/uri/offer-in-another-currency-is-refused",
                   test_offer_in_another_currency_is_refused);
  g_test_add_func ("/core/uri/offer-from-another-name-is-refused",
                   test_offer_from_another_name_is_refused);
  return g_test_run ();
}
