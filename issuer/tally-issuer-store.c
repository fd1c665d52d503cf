/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-issuer-store.h"

#include <string.h>

void
tally_issuer_register_row_clear (TallyIssuerRegisterRow *row)
{
  g_clear_pointer (&row->account, g_free);
  g_clear_pointer (&row->display_name, g_free);
  memset (row, 0, sizeof *row);
}

void
tally_issuer_register_row_free (TallyIssuerRegisterRow *row)
{
  if (row == NULL)
    return;
  tally_issuer_register_row_clear (row);
  g_free (row);
}

const char *
tally_issuer_entry_kind_to_string (TallyIssuerEntryKind kind)
{
  switch (kind) {
  case TALLY_ISSUER_ENTRY_PERMISSION: return "permission";
  case TALLY_ISSUER_ENTRY_DEFUND: return "defund";
  }
  return "unknown";
}

const char *
tally_issuer_entry_state_to_string (TallyIssuerEntryState state)
{
  switch (state) {
  case TALLY_ISSUER_ENTRY_IN_FLIGHT: return "in-flight";
  case TALLY_ISSUER_ENTRY_SETTLED: return "settled";
  case TALLY_ISSUER_ENTRY_RECLAIMED: return "reclaimed";
  }
  return "unknown";
}

void
tally_issuer_entry_row_clear (TallyIssuerEntryRow *row)
{
  g_clear_pointer (&row->envelope, g_bytes_unref);
  g_clear_pointer (&row->receipt, g_bytes_unref);
  memset (row, 0, sizeof *row);
}

void
tally_issuer_entry_row_free (TallyIssuerEntryRow *row)
{
  if (row == NULL)
    return;
  tally_issuer_entry_row_clear (row);
  g_free (row);
}

void
tally_issuer_fraud_row_free (TallyIssuerFraudRow *row)
{
  if (row == NULL)
    return;
  g_clear_pointer (&row->envelope, g_bytes_unref);
  g_free (row);
}
