/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The payment request URI (proto/tally-uri.c, docs/protocol.md §8): the
 * one decoder a payer runs on text a stranger shows it.
 *
 * Input: the URI text itself (bytes; a NUL ends it, as for a C string).
 *
 * Invariants:
 *  - tally_request_uri_parse refuses with MALFORMED, VERSION,
 *    INVALID_AMOUNT or OVERFLOW, or returns fields that keep every promise
 *    of tally-uri.h (version 1, amount in 1..TALLY_AMOUNT_MAX, a valid
 *    currency, expiry > 0, an address of the transport it names, a
 *    request tag that is "" or 8 lower-case hex digits, the one in a
 *    ble: address);
 *  - what parses formats again (tally_request_uri_format_tagged, with the
 *    tag of a stream address), that canonical
 *    text is at most TALLY_URI_MAX_LEN bytes, parses to the same fields,
 *    and formats to the same text (the canonical form is a fixed point);
 *  - tally_request_uri_check_offer accepts the URI's own terms before its
 *    expiry, and refuses a different amount with AMOUNT_MISMATCH.
 */

#include <string.h>

#include "fuzz-common.h"
#include "tally-uri.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv);

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init ();
  return 0;
}

static void
check_refusal (const GError *error)
{
  if (error == NULL || error->domain != TALLY_ERROR)
    g_error ("parse failed without a TALLY_ERROR");
  if (error->code == TALLY_ERROR_MALFORMED || error->code == TALLY_ERROR_VERSION ||
      error->code == TALLY_ERROR_INVALID_AMOUNT || error->code == TALLY_ERROR_OVERFLOW)
    return;
  g_error ("parse refused with an undocumented code %d: %s", error->code, error->message);
}

static const char *
transport_prefix (TallyUriTransport transport)
{
  switch (transport) {
  case TALLY_URI_TRANSPORT_BLE:
    return "ble:";
  case TALLY_URI_TRANSPORT_UNIX:
    return "unix:";
  case TALLY_URI_TRANSPORT_TCP:
    return "tcp:";
  }
  g_error ("unknown transport %d", (int) transport);
}

static void
check_promises (const TallyRequestUri *uri)
{
  if (uri->version != TALLY_URI_VERSION)
    g_error ("parsed version %u", uri->version);
  if (uri->amount <= 0 || uri->amount > TALLY_AMOUNT_MAX)
    g_error ("parsed amount %" G_GINT64_FORMAT " out of range", uri->amount);
  if (!tally_currency_is_valid (uri->currency))
    g_error ("parsed currency \"%s\" is not valid", uri->currency);
  if (uri->expires_at == 0)
    g_error ("parsed expiry 0");
  if (uri->address == NULL || !g_str_has_prefix (uri->address, transport_prefix (uri->transport)))
    g_error ("address \"%s\" does not match its transport", uri->address ? uri->address : "(null)");
  if (uri->display_name == NULL)
    g_error ("display name is NULL, not \"\"");
  if (uri->tag == NULL || (uri->tag[0] != '\0' && strlen (uri->tag) != 8) ||
      strspn (uri->tag, "0123456789abcdef") != strlen (uri->tag))
    g_error ("tag \"%s\" is neither empty nor 8 lower-case hex digits", uri->tag ? uri->tag : "");
  if (uri->transport == TALLY_URI_TRANSPORT_BLE && strcmp (uri->tag, uri->address + 4) != 0)
    g_error ("tag %s is not the one in %s", uri->tag, uri->address);
}

static void
check_same (const TallyRequestUri *a, const TallyRequestUri *b)
{
  if (a->transport != b->transport || a->amount != b->amount || a->expires_at != b->expires_at ||
      g_strcmp0 (a->address, b->address) != 0 || g_strcmp0 (a->currency, b->currency) != 0 ||
      g_strcmp0 (a->display_name, b->display_name) != 0 || g_strcmp0 (a->tag, b->tag) != 0)
    g_error ("the canonical URI parses to other fields");
}

static char *
format (const TallyRequestUri *uri)
{
  g_autoptr (GError) error = NULL;
  /* A ble: address holds its tag: the field would only repeat it. */
  const char *tag =
    uri->transport != TALLY_URI_TRANSPORT_BLE && uri->tag[0] != '\0' ? uri->tag : NULL;
  char *text = tally_request_uri_format_tagged (uri->address, tag, uri->amount, uri->currency,
                                                uri->expires_at, uri->display_name, &error);
  if (text == NULL)
    g_error ("a parsed URI does not format again: %s", error->message);
  if (strlen (text) > TALLY_URI_MAX_LEN)
    g_error ("canonical URI of %zu bytes", strlen (text));
  return text;
}

static void
check_offer (const TallyRequestUri *uri)
{
  g_autoptr (GError) error = NULL;
  guint64 before = uri->expires_at - 1;
  const char *name = uri->display_name[0] != '\0' ? uri->display_name : NULL;

  if (!tally_request_uri_check_offer (uri, before, uri->amount, uri->currency, name, &error))
    g_error ("the URI's own terms are refused: %s", error->message);
  gint64 other = uri->amount == 1 ? 2 : uri->amount - 1;
  if (tally_request_uri_check_offer (uri, before, other, uri->currency, name, &error) ||
      !g_error_matches (error, TALLY_ERROR, TALLY_ERROR_AMOUNT_MISMATCH))
    g_error ("another amount is not AMOUNT_MISMATCH");
}

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  g_autofree char *text = g_strndup ((const char *) data, size);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyRequestUri) uri = tally_request_uri_parse (text, &error);

  if (uri == NULL) {
    check_refusal (error);
    return 0;
  }
  check_promises (uri);

  g_autofree char *canonical = format (uri);
  g_autoptr (TallyRequestUri) again = tally_request_uri_parse (canonical, &error);
  if (again == NULL)
    g_error ("canonical URI \"%s\" does not parse: %s", canonical, error->message);
  check_same (uri, again);
  g_autofree char *twice = format (again);
  if (strcmp (canonical, twice) != 0)
    g_error ("formatting is not a fixed point: \"%s\" then \"%s\"", canonical, twice);
  check_offer (uri);
  return 0;
}
