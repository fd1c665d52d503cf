/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The payment request URI a payee shows, as text or as a QR code, so that
 * a payer (a phone, or `tallyctl pay`) knows where to connect, what it will
 * be asked for, and by whom (docs/protocol.md, "Payment request URI"):
 *
 *   tally://pay?v=1&to=ble%3A0a1b2c3d&amount=1250&cur=EUR&exp=1767232800&name=Bob%27s%20Bakery
 *
 * Pure text handling: no I/O, no clock, no main loop.  Every malformed URI
 * fails with a TALLY_ERROR code and a message naming the fault.
 */

#include <glib.h>

G_BEGIN_DECLS

#define TALLY_URI_SCHEME  "tally"
#define TALLY_URI_PREFIX  "tally://pay?"
#define TALLY_URI_VERSION 1
/* Longest URI, in bytes: fits a QR code of version 25 at level M. */
#define TALLY_URI_MAX_LEN 1024
/* Longest decoded "to" value: "unix:" and a sockaddr_un path. */
#define TALLY_URI_ADDRESS_MAX 112

typedef enum
{
  TALLY_URI_TRANSPORT_BLE,  /* "ble:" + the request tag, 8 lower-case hex digits */
  TALLY_URI_TRANSPORT_UNIX, /* "unix:" + an absolute path */
  TALLY_URI_TRANSPORT_TCP,  /* "tcp:" + host ":" port */
} TallyUriTransport;

typedef struct
{
  guint version;               /* TALLY_URI_VERSION */
  TallyUriTransport transport; /* from the prefix of @address */
  char *address;               /* what org.tally.Register1.Pay takes */
  gint64 amount;               /* minor units, 1..TALLY_AMOUNT_MAX */
  char *currency;              /* tally_currency_is_valid () */
  guint64 expires_at;          /* Unix seconds, UTC; > 0 */
  char *display_name;          /* certified name; "" when the payee has none */
  /* The request tag the payer names in its Hello: the "tag" field, else
   * the one in a "ble:" address, else "" (8 lower-case hex digits). */
  char *tag;
} TallyRequestUri;

void tally_request_uri_free (TallyRequestUri *uri);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyRequestUri, tally_request_uri_free)

/* TRUE when @text starts with "tally:" (any case): meant as a request
 * URI, whether or not it parses. */
gboolean tally_request_uri_is_uri (const char *text);

/*
 * The canonical URI of a request: fields in the order v, to, amount, cur,
 * exp, tag, name (tag and name left out when absent or empty); in values every byte outside
 * A-Z a-z 0-9 - . _ ~ is percent-encoded with upper-case hex.  Checks every
 * field as tally_request_uri_parse () would (same codes); @display_name
 * may be NULL.
 */
char *tally_request_uri_format (const char *address,
                                gint64 amount,
                                const char *currency,
                                guint64 expires_at,
                                const char *display_name,
                                GError **error);
/* The same with a "tag" field after "exp" when @tag is not NULL: 8
 * lower-case hex digits naming one of the payee's open requests (MALFORMED
 * otherwise, or when @address is "ble:" with another tag). */
char *tally_request_uri_format_tagged (const char *address,
                                       const char *tag,
                                       gint64 amount,
                                       const char *currency,
                                       guint64 expires_at,
                                       const char *display_name,
                                       GError **error);

/*
 * Parses @text strictly.  MALFORMED for the structure (scheme, "pay?",
 * length, characters, percent-encoding, unknown, repeated or missing
 * fields, a bad "to", "exp" or "name"), VERSION for a version other than
 * 1, INVALID_AMOUNT for a bad amount or currency, OVERFLOW for an amount
 * above TALLY_AMOUNT_MAX.  Does not look at the clock: see
 * tally_request_uri_check_offer ().
 */
TallyRequestUri *tally_request_uri_parse (const char *text, GError **error);

/*
 * What a payer checks before paying on the strength of @uri: @now is
 * before its expiry (EXPIRED), and the payee's offer asks for the same
 * amount (AMOUNT_MISMATCH), currency (CURRENCY_MISMATCH) and comes from the
 * same certified display name (WRONG_PAYEE).
 */
gboolean tally_request_uri_check_offer (const TallyRequestUri *uri,
                                        guint64 now,
                                        gint64 amount,
                                        const char *currency,
                                        const char *display_name,
                                        GError **error);

G_END_DECLS
