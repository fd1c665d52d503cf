/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Private to the issuer store's files: tally-issuer-store-schema.c keeps
 * the schema that tally-issuer-store-sqlite.c opens.
 */

#include "tally-issuer-store.h"
#include "tally-sqlite.h"

G_BEGIN_DECLS

/* Inside one transaction: with @create, makes an empty database version 1,
 * refuses any other database without a schema_version table, then brings
 * it to the newest version. */
gboolean tally_issuer_store_schema_setup (TallySqlite *db, gboolean create, GError **error);

G_END_DECLS
