/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Private to the soft register backend: the SQL that
 * tally-register-soft-schema.c holds for tally-register-soft.c.
 */

#include <glib.h>

G_BEGIN_DECLS

/* tally_register_soft_migrations[i] takes the schema from version i to
 * i + 1.  Append only. */
extern const char *const tally_register_soft_migrations[];
extern const guint tally_register_soft_n_migrations;

typedef enum
{
  STMT_STATE_READ,
  STMT_STATE_INSERT,
  STMT_STATE_WRITE,
  STMT_SPENT_INSERT,
  STMT_SPENT_LOOKUP,
  STMT_SPENT_SET_RECEIPT,
  STMT_SPENT_SETTLE_THROUGH,
  STMT_SPENT_UNSETTLED,
  STMT_SPENT_SET_STATE,
  STMT_SPENT_PENDING,
  STMT_RECEIVED_INSERT,
  STMT_RECEIVED_FIND,
  STMT_RECEIVED_SETTLE,
  STMT_RECEIVED_UNSETTLED,
  STMT_RECEIVED_RECEIPT,
  STMT_NONCE_INSERT,
  STMT_NONCE_LOOKUP,
  STMT_NONCE_CONSUME,
  STMT_NONCE_LIST,
  STMT_NONCE_PRUNE,
  STMT_LOAD_INSERT,
  STMT_LOADS_SETTLE,
  STMT_LOADS_UNSETTLED,
  STMT_HISTORY,
  STMT_CERTIFICATE_PUT,
  STMT_CERTIFICATE_GET,
  STMT_PEER_PUT,
  STMT_PEER_GET,
  N_STMTS
} StmtId;

extern const char *const tally_register_soft_stmt_sql[N_STMTS];

G_END_DECLS
