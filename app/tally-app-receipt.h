/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A payment's details, opened from a History row: amount, the other side
 * (certified name and short id), time, state, counter, and the receipt:
 * its id from GetHistory (the permission hash the payee's receipt signs)
 * and, while tallyd still shows the payment's Payment1 object, the
 * comparison code both screens showed and the SHA-256 of the signed
 * receipt.  Every value is a label that screen readers find by its
 * description ("Receipt amount", ...).
 */

#include <adwaita.h>

G_BEGIN_DECLS

typedef struct
{
  const char *kind;         /* "Paid", "Received", ... */
  const char *amount;       /* "12.50 EUR" */
  const char *peer;         /* "Café Lumen (1a2b3c4d)", "" without one */
  const char *time;         /* local time */
  const char *state;        /* "acknowledged", ... */
  guint64 counter;          /* 0: none */
  const char *memo;         /* "" without one */
  const char *receipt_id;   /* 64 hex digits, "" without one */
  const char *code;         /* "123 456", "" when tallyd no longer shows the payment */
  const char *receipt_hash; /* SHA-256 of Payment1.Receipt, "" likewise */
} TallyAppReceipt;

/* A modal window over @parent; it frees itself when closed. */
GtkWindow *tally_app_receipt_show (GtkWindow *parent, const TallyAppReceipt *receipt);

G_END_DECLS
