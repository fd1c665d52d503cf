/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* An issuer key and certified, loaded registers for the daemon tests. */

#include <glib.h>

#include "tally-core.h"
#include "tally-register.h"

G_BEGIN_DECLS

#define TEST_CURRENCY "EUR"

typedef struct
{
  guint8 public_key[TALLY_PUBLIC_KEY_BYTES];
  guint8 *secret_key; /* sodium-guarded */
  const char *currency; /* TEST_CURRENCY unless a test sets another */
} TestIssuer;

void test_issuer_init (TestIssuer *issuer);
void test_issuer_clear (TestIssuer *issuer);

/* A certificate for @reg, valid from an hour ago for 30 days, with the
 * given per-payment limit and a 1000.00 cap. */
GBytes *test_issuer_certify (TestIssuer *issuer, TallyRegister *reg, gint64 max_payment, guint64 serial);
/* The same, carrying @display_name (NULL for none). */
GBytes *test_issuer_certify_named (TestIssuer *issuer,
                                   TallyRegister *reg,
                                   gint64 max_payment,
                                   guint64 serial,
                                   const char *display_name);
/* The issuer's packed, self-signed IssuerKeySet (tally-issuer key --out). */
GBytes *test_issuer_key_set (TestIssuer *issuer);
GBytes *test_issuer_voucher (TestIssuer *issuer, TallyRegister *reg, guint64 sequence, gint64 amount);

/* Creates a register in @dir, certified with @max_payment and loaded
 * with @balance (no voucher when 0). */
TallyRegister *test_register_new (TestIssuer *issuer, const char *dir, gint64 max_payment, gint64 balance);

/* Removes a temporary directory tree. */
void test_rm_rf (const char *path);

G_END_DECLS
