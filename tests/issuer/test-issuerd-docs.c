/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * docs/issuer-api.md's example exchanges, replayed in order against a real
 * tally-issuerd on loopback: each answer's status, the headers shown and
 * the JSON members shown must be what the server sends.
 */
#include <string.h>

#include "issuerd-test-util.h"
#include "tally-hex.h"

#define DOC_ACCOUNT "stall-42"

typedef struct
{
  IssuerdFixture *f;
  GHashTable *vars; /* name -> GBytes */
  TestRegister *reg;
} Replay;

static GBytes *
replay_var (Replay *rp, const char *name)
{
  GBytes *value = g_hash_table_lookup (rp->vars, name);
  if (value != NULL || strcmp (name, "BUNDLE") != 0)
    return value;
  /* Built once the register holds its certificate and its voucher. */
  GBytes *cert = g_hash_table_lookup (rp->vars, "CERTIFICATE");
  GBytes *voucher = g_hash_table_lookup (rp->vars, "VOUCHER");
  g_assert_nonnull (cert);
  g_assert_nonnull (voucher);
  rp->reg->cert = g_bytes_ref (cert);
  g_autoptr (TestBundle) b = test_bundle_new (rp->reg);
  test_bundle_add_voucher (b, voucher);
  g_hash_table_insert (rp->vars, g_strdup (name), test_bundle_sign (b));
  return g_hash_table_lookup (rp->vars, name);
}

static void
replay_set (Replay *rp, const char *name, const char *text)
{
  g_hash_table_insert (rp->vars, g_strdup (name), g_bytes_new (text, strlen (text)));
}

/* @text with every $NAME replaced by its value. */
static char *
replay_expand (Replay *rp, const char *text)
{
  g_autoptr (GString) out = g_string_new (NULL);
  for (const char *p = text; *p;) {
    if (*p != '$' || !g_ascii_isupper (p[1])) {
      g_string_append_c (out, *p++);
      continue;
    }
    const char *end = p + 1;
    while (g_ascii_isupper (*end) || *end == '_')
      end++;
    g_autofree char *name = g_strndup (p + 1, (gsize) (end - p - 1));
    GBytes *value = replay_var (rp, name);
    if (value == NULL)
      g_error ("docs/issuer-api.md uses $%s before any answer sets it", name);
    gsize len;
    const char *data = g_bytes_get_data (value, &len);
    g_string_append_len (out, data, (gssize) len);
    p = end;
  }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

/* "$NAME" alone: its name, else NULL. */
static const char *
replay_placeholder (const char *text)
{
  if (text[0] != '$' || text[1] == '\0')
    return NULL;
  for (const char *p = text + 1; *p; p++)
    if (!g_ascii_isupper (*p) && *p != '_')
      return NULL;
  return text + 1;
}

/* A value the example shows: a placeholder not yet known takes the actual
 * value; anything else must equal it. */
static void
replay_match (Replay *rp, const char *shown, GBytes *actual, const char *what)
{
  const char *name = replay_placeholder (shown);
  if (name != NULL && strcmp (name, "BYTES") == 0) {
    g_assert_cmpuint (g_bytes_get_size (actual), >, 0);
    return;
  }
  if (name != NULL && replay_var (rp, name) == NULL) {
    g_hash_table_insert (rp->vars, g_strdup (name), g_bytes_ref (actual));
    return;
  }
  /* A known value alone may be binary: compared as bytes. */
  if (name != NULL) {
    if (!g_bytes_equal (replay_var (rp, name), actual))
      g_error ("%s: the documented \"%s\" is not what the server issuerd_sent", what, shown);
    return;
  }
  g_autofree char *want = replay_expand (rp, shown);
  g_autoptr (GBytes) want_bytes = g_bytes_new (want, strlen (want));
  if (!g_bytes_equal (want_bytes, actual))
    g_error ("%s: the documented \"%s\" is not what the server issuerd_sent", what, shown);
}

static void
replay_json (Replay *rp, const char *shown, GBytes *actual)
{
  g_autoptr (JsonParser) want = json_parser_new ();
  g_autoptr (JsonParser) got = json_parser_new ();
  g_autoptr (GError) error = NULL;
  gsize len;
  const char *data = g_bytes_get_data (actual, &len);
  g_assert_true (json_parser_load_from_data (want, shown, -1, &error));
  g_assert_true (json_parser_load_from_data (got, data, (gssize) len, &error));
  g_assert_no_error (error);
  JsonObject *w = json_node_get_object (json_parser_get_root (want));
  JsonObject *g = json_node_get_object (json_parser_get_root (got));
  g_autoptr (GList) members = json_object_get_members (w);
  for (GList *m = members; m != NULL; m = m->next) {
    JsonNode *wn = json_object_get_member (w, m->data);
    JsonNode *gn = json_object_get_member (g, m->data);
    if (gn == NULL)
      g_error ("the answer lacks the documented member \"%s\"", (const char *) m->data);
    if (json_node_get_value_type (wn) == G_TYPE_STRING) {
      g_assert_cmpint (json_node_get_value_type (gn), ==, G_TYPE_STRING);
      const char *s = json_node_get_string (gn);
      g_autoptr (GBytes) value = g_bytes_new (s, strlen (s));
      replay_match (rp, json_node_get_string (wn), value, m->data);
    } else if (!json_node_equal (wn, gn)) {
      g_error ("member \"%s\" differs from the documented value", (const char *) m->data);
    }
  }
}

/* One request block: "METHOD PATH", headers, a blank line, a body. */
static IssuerdResponse *
replay_request (Replay *rp, char **lines)
{
  g_auto (GStrv) first = g_strsplit (lines[0], " ", 2);
  g_autofree char *path = replay_expand (rp, first[1]);
  g_autofree char *url = g_strconcat (rp->f->base, path, NULL);
  g_autoptr (SoupMessage) msg = soup_message_new (first[0], url);
  g_assert_nonnull (msg);
  SoupMessageHeaders *headers = soup_message_get_request_headers (msg);
  g_autofree char *type = NULL;
  guint i = 1;
  for (; lines[i] != NULL && *lines[i] != '\0'; i++) {
    g_auto (GStrv) kv = g_strsplit (lines[i], ": ", 2);
    g_autofree char *value = replay_expand (rp, kv[1]);
    if (g_ascii_strcasecmp (kv[0], "Content-Type") == 0)
      type = g_steal_pointer (&value);
    else
      soup_message_headers_replace (headers, kv[0], value);
  }
  if (lines[i] != NULL && lines[i + 1] != NULL) {
    g_autofree char *shown = g_strjoinv ("\n", lines + i + 1);
    const char *name = replay_placeholder (shown);
    g_autoptr (GBytes) body = NULL;
    if (name != NULL)
      body = g_bytes_ref (replay_var (rp, name));
    else {
      g_autofree char *text = replay_expand (rp, shown);
      body = g_bytes_new (text, strlen (text));
    }
    soup_message_set_request_body_from_bytes (msg, type, body);
  }
  return issuerd_send (rp->f, msg);
}

/* One answer block: "HTTP/1.1 STATUS REASON", headers, a blank line, a body. */
static void
replay_response (Replay *rp, char **lines, IssuerdResponse *r)
{
  g_auto (GStrv) first = g_strsplit (lines[0], " ", 3);
  g_assert_cmpuint (r->status, ==, (guint) g_ascii_strtoull (first[1], NULL, 10));
  guint i = 1;
  for (; lines[i] != NULL && *lines[i] != '\0'; i++) {
    g_auto (GStrv) kv = g_strsplit (lines[i], ": ", 2);
    const char *got = soup_message_headers_get_one (r->headers, kv[0]);
    if (got == NULL)
      g_error ("the answer lacks the documented header %s", kv[0]);
    g_autoptr (GBytes) value = g_bytes_new (got, strlen (got));
    replay_match (rp, kv[1], value, kv[0]);
  }
  if (lines[i] == NULL || lines[i + 1] == NULL) {
    g_assert_cmpuint (g_bytes_get_size (r->body), ==, 0);
    return;
  }
  g_autofree char *shown = g_strjoinv ("\n", lines + i + 1);
  if (shown[0] == '{')
    replay_json (rp, shown, r->body);
  else
    replay_match (rp, shown, r->body, "body");
}

/* The ```http blocks of the document, in order. */
static GPtrArray *
doc_http_blocks (void)
{
  const char *root = g_getenv ("TALLY_SOURCE_ROOT");
  g_assert_nonnull (root);
  g_autofree char *path = g_build_filename (root, "docs", "issuer-api.md", NULL);
  g_autofree char *text = NULL;
  g_autoptr (GError) error = NULL;
  g_assert_true (g_file_get_contents (path, &text, NULL, &error));
  g_assert_no_error (error);
  GPtrArray *blocks = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++) {
    if (strcmp (lines[i], "```http") != 0)
      continue;
    g_autoptr (GStrvBuilder) block = g_strv_builder_new ();
    for (i++; lines[i] != NULL && strcmp (lines[i], "```") != 0; i++)
      g_strv_builder_add (block, lines[i]);
    g_assert_nonnull (lines[i]);
    g_ptr_array_add (blocks, g_strv_builder_end (block));
  }
  return blocks;
}

static void
test_doc_examples_replay (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  Replay rp = {
    .f = f,
    .vars = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_bytes_unref),
    .reg = reg,
  };
  guint8 proof[TALLY_SIGNATURE_BYTES];
  test_enrol_proof (f->issuer, reg, DOC_ACCOUNT, proof);
  g_autofree char *key = tally_hex_encode (reg->pk, sizeof reg->pk);
  g_autofree char *sig = tally_hex_encode (proof, sizeof proof);
  g_autofree char *id = tally_hex_encode (reg->id, sizeof reg->id);
  replay_set (&rp, "OPERATOR_TOKEN", f->operator_hex);
  replay_set (&rp, "REGISTER_KEY", key);
  replay_set (&rp, "ENROL_PROOF", sig);
  replay_set (&rp, "REGISTER_ID", id);

  g_autoptr (GPtrArray) blocks = doc_http_blocks ();
  g_assert_cmpuint (blocks->len, >=, 2);
  g_assert_cmpuint (blocks->len % 2, ==, 0);
  for (guint i = 0; i < blocks->len; i += 2) {
    char **req = blocks->pdata[i];
    char **res = blocks->pdata[i + 1];
    g_test_message ("example %u: %s", i / 2 + 1, req[0]);
    g_assert_false (g_str_has_prefix (req[0], "HTTP/"));
    g_assert_true (g_str_has_prefix (res[0], "HTTP/1.1 "));
    g_autoptr (IssuerdResponse) r = replay_request (&rp, req);
    replay_response (&rp, res, r);
  }
  /* The examples left the books as they say. */
  TallyAudit a = issuerd_audit (f);
  g_assert_true (a.balanced);
  g_assert_cmpint (a.offline, ==, 2500);
  g_hash_table_unref (rp.vars);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (sodium_init (), >=, 0);
  g_test_add ("/issuerd/docs/examples-replay", IssuerdFixture, "no accounts", issuerd_fixture_setup,
              test_doc_examples_replay, issuerd_fixture_teardown);
  return g_test_run ();
}
