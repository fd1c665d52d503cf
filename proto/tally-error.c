/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-error.h"

G_DEFINE_QUARK (tally-error-quark, tally_error)

typedef struct
{
  TallyError code;
  const char *string; /* "BadSignature" */
  const char *name;   /* "org.tally.Error.BadSignature" */
} TallyErrorEntry;

#define TALLY_ERROR_TABLE_ENTRY(symbol, code, name)                                                \
  { TALLY_ERROR_##symbol, #name, TALLY_ERROR_NAME_PREFIX #name },

/* Indexed by code - 1: the codes run 1..TALLY_ERROR_LAST without a gap. */
static const TallyErrorEntry tally_errors[] = { TALLY_ERROR_LIST (TALLY_ERROR_TABLE_ENTRY) };

#undef TALLY_ERROR_TABLE_ENTRY

G_STATIC_ASSERT (G_N_ELEMENTS (tally_errors) == TALLY_ERROR_LAST);

static const TallyErrorEntry *
tally_error_entry (TallyError code)
{
  if ((guint) code < 1 || (guint) code > TALLY_ERROR_LAST)
    return NULL;
  g_assert (tally_errors[code - 1].code == code);
  return &tally_errors[code - 1];
}

const char *
tally_error_to_string (TallyError code)
{
  const TallyErrorEntry *entry = tally_error_entry (code);
  return entry ? entry->string : NULL;
}

const char *
tally_error_to_name (TallyError code)
{
  const TallyErrorEntry *entry = tally_error_entry (code);
  return entry ? entry->name : NULL;
}

TallyError
tally_error_from_wire (guint32 code)
{
  if (code == 0 || code > TALLY_ERROR_LAST)
    return TALLY_ERROR_FAILED;
  return (TallyError) code;
}

TallyError
tally_error_code (const GError *error)
{
  if (error == NULL || error->domain != TALLY_ERROR)
    return TALLY_ERROR_FAILED;
  return tally_error_from_wire ((guint32) error->code);
}
