/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What tally-app shows, without a display: amounts typed and printed,
 * payment request URIs read (docs/protocol.md section 8), payment states and
 * D-Bus errors put into words.  Unit-tested by tests/app/test-app-model.c.
 */

#include <glib.h>

G_BEGIN_DECLS

/* The largest amount, in minor units, that the protocol carries (2^53). */
#define TALLY_APP_AMOUNT_MAX ((gint64) 1 << 53)

typedef enum
{
  TALLY_APP_URI_ERROR_MALFORMED,
  TALLY_APP_URI_ERROR_VERSION,
  TALLY_APP_URI_ERROR_INVALID_AMOUNT,
  TALLY_APP_URI_ERROR_EXPIRED,
} TallyAppUriError;

#define TALLY_APP_URI_ERROR (tally_app_uri_error_quark ())
GQuark tally_app_uri_error_quark (void);

typedef struct
{
  char *address;      /* "to", decoded */
  gint64 amount;      /* minor units, 1..TALLY_APP_AMOUNT_MAX */
  char *currency;     /* "cur" */
  gint64 expires;     /* "exp", Unix seconds */
  char *display_name; /* "name", "" when absent */
} TallyAppRequest;

void tally_app_request_free (TallyAppRequest *request);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyAppRequest, tally_app_request_free)

/* TRUE when @text starts like a request URI ("tally:"). */
gboolean tally_app_request_is_uri (const char *text);
/* Parses a tally://pay? URI; NULL with TALLY_APP_URI_ERROR set when it is
 * not one the payer may act on.  Does not look at the clock. */
TallyAppRequest *tally_app_request_parse (const char *uri, GError **error);
/* Whether the payee's offer matches the request at time @now: FALSE with
 * the reason (translated) in *@reason. */
gboolean tally_app_request_check_offer (const TallyAppRequest *request,
                                        gint64 now,
                                        gint64 amount,
                                        const char *currency,
                                        const char *display_name,
                                        char **reason);

/* Decimals of @currency's minor unit as ISO 4217 lists them: 0 for JPY,
 * 3 for KWD, 4 for CLF, 2 for others and NULL (twin of the core's
 * tally_currency_exponent). */
guint tally_app_currency_exponent (const char *currency);
/* "12.50", "EUR" -> 1250; "1250", "JPY" -> 1250.  Digits, at most the
 * currency's decimals, no sign, 1..max; FALSE on anything else. */
gboolean tally_app_amount_parse (const char *text, const char *currency, gint64 *out);
/* 1250, "EUR" -> "12.50 EUR"; 1250, "JPY" -> "1250 JPY" (no currency:
 * "12.50"). */
char *tally_app_amount_format (gint64 amount, const char *currency);
/* The number alone, in @currency's decimals: "12.50", "1250". */
char *tally_app_amount_format_value (gint64 amount, const char *currency);
/* "123456" -> "123 456"; other text unchanged. */
char *tally_app_code_format (const char *code);

/* Where the register stands until it reconciles with its issuer: the
 * offline payments made of those certified, and the deadline, the earlier
 * of the certificate's expiry and the last reconciliation plus the
 * certified offline time; "" without a certificate (@cert_expiry 0). */
char *tally_app_sync_describe (guint32 offline_payments,
                               guint32 max_offline_payments,
                               guint64 last_reconciliation,
                               guint64 max_offline_seconds,
                               guint64 cert_expiry,
                               gint64 now);

/* The online issuer as the home page shows it, from Register1's SyncState,
 * LastSync and LastSyncError: not set up, not synced yet, synced at a
 * local time, syncing, or the last failure's message (without its D-Bus
 * error name) and that tallyd will try again. */
char *tally_app_online_describe (const char *sync_state,
                                 guint64 last_sync,
                                 const char *last_sync_error);

/* The other side as people read it: its certified name, else the first 8
 * hex digits of its register id, else "unknown". */
char *tally_app_peer_label (const char *name, const char *id);

/* A payment's State property in words, for its role ("payer"/"payee"). */
const char *tally_app_state_describe (const char *role, const char *state);
/* TRUE for "done" and "failed". */
gboolean tally_app_state_is_final (const char *state);
/* A failed payment's D-Bus error name (and message) in words. */
char *tally_app_error_describe (const char *error_name, const char *message);

/* Register1.GetHistory's entries (aa{sv}) as CSV, the columns of
 * tallyctl history --csv: RFC 4180 with CRLF, a header line, time (local),
 * time_utc, kind, state, amount, currency, peer, peer_id, counter, memo,
 * receipt_id; a field that starts like a formula gets a leading "'". */
char *tally_app_history_csv (GVariant *entries, const char *currency);

G_END_DECLS
