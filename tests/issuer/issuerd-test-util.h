/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * tally-issuerd in this process on 127.0.0.1 and an ephemeral port, an
 * operator token, and a SoupSession to drive it; the accounts "alice" and
 * "bob" (10000 each) unless the fixture data is non-NULL.
 */

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include "issuer-test-util.h"
#include "tally-issuer-http.h"

G_BEGIN_DECLS

typedef struct
{
  char *tmp;
  char *dir;
  TallyIssuer *issuer;
  TallyIssuerHttp *http;
  SoupSession *session;
  char *base;
  guint8 operator_token[TALLY_ACCOUNT_TOKEN_BYTES];
  char *operator_hex;
  char *alice_token; /* hex */
  char *bob_token;
} IssuerdFixture;

typedef struct
{
  guint status;
  GBytes *body;
  SoupMessageHeaders *headers;
} IssuerdResponse;

/* The server's clock: TEST_NOW + 60. */
guint64 issuerd_test_clock (gpointer user_data);

void issuerd_fixture_setup (IssuerdFixture *f, gconstpointer data);
void issuerd_fixture_teardown (IssuerdFixture *f, gconstpointer data);

/* Sends @msg to the fixture's server and waits for the whole answer. */
IssuerdResponse *issuerd_send (IssuerdFixture *f, SoupMessage *msg);
/* @token (hex), @body and @if_none_match may be NULL. */
IssuerdResponse *issuerd_request (IssuerdFixture *f,
                                  const char *method,
                                  const char *path,
                                  const char *token,
                                  const char *content_type,
                                  GBytes *body,
                                  const char *if_none_match);
IssuerdResponse *
issuerd_post_json (IssuerdFixture *f, const char *path, const char *token, const char *json);
IssuerdResponse *issuerd_post_protobuf (IssuerdFixture *f, const char *path, GBytes *body);
void issuerd_response_free (IssuerdResponse *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (IssuerdResponse, issuerd_response_free)

/* The JSON object of an answer (asserting its type). */
JsonObject *issuerd_response_object (IssuerdResponse *r);
/* A refusal: the status, and the Tally error in the body and X-Tally-Error. */
void issuerd_assert_refused (IssuerdResponse *r, guint status, TallyError code);
void issuerd_assert_protobuf (IssuerdResponse *r, guint status);

TallyAudit issuerd_audit (IssuerdFixture *f);
void issuerd_assert_audit_equal (const TallyAudit *a, const TallyAudit *b);
gint64 issuerd_balance (IssuerdFixture *f, const char *name);
/* Through the operator endpoints; returns the account's token (hex). */
char *issuerd_create_account (IssuerdFixture *f,
                              const char *name,
                              const char *display_name,
                              gint64 deposit);

G_END_DECLS
