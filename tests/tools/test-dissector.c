/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tools/tally.lua, run by tshark on the captures of scenario.c: every
 * fragment the framing layer made shows its header, every whole message
 * its fields, the way tallyd would read them.
 *
 * Needs tshark (Debian package tshark).  Without it the tests fail, unless
 * TALLY_SKIP_TSHARK=1 makes them skip.
 */
#include <stdlib.h>
#include <glib/gstdio.h>
#include <string.h>

#include "scenario.h"
#include "tally-error.h"

typedef struct
{
  char *dir;
  char *tshark;
  char *script;
} Fixture;

static void
fixture_set_up (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  fx->tshark = g_find_program_in_path ("tshark");
  if (fx->tshark == NULL) {
    if (g_strcmp0 (g_getenv ("TALLY_SKIP_TSHARK"), "1") == 0)
      g_test_skip ("tshark is not installed and TALLY_SKIP_TSHARK=1");
    else
      g_test_fail_printf ("tshark not found: install the Debian package tshark "
                          "(scripts/install-deps.sh --test), or set TALLY_SKIP_TSHARK=1 to skip");
    return;
  }
  const char *source_root = g_getenv ("TALLY_SOURCE_ROOT");
  g_assert_nonnull (source_root);
  fx->script = g_build_filename (source_root, "tools", "tally.lua", NULL);
  g_assert_true (g_file_test (fx->script, G_FILE_TEST_IS_REGULAR));
  fx->dir = g_dir_make_tmp ("tally-dissector-XXXXXX", &error);
  g_assert_no_error (error);
}

static void
fixture_tear_down (Fixture *fx, gconstpointer data)
{
  if (fx->dir != NULL) {
    g_autoptr (GDir) dir = g_dir_open (fx->dir, 0, NULL);
    const char *name;
    while (dir != NULL && (name = g_dir_read_name (dir)) != NULL) {
      g_autofree char *path = g_build_filename (fx->dir, name, NULL);
      g_unlink (path);
    }
    g_rmdir (fx->dir);
  }
  g_free (fx->dir);
  g_free (fx->tshark);
  g_free (fx->script);
}

#define NEED_TSHARK(fx)                                                                            \
  G_STMT_START                                                                                     \
  {                                                                                                \
    if ((fx)->tshark == NULL)                                                                      \
      return;                                                                                      \
  }                                                                                                \
  G_STMT_END

static char *
write_capture (Fixture *fx, const Scenario *scenario, const char *name)
{
  g_autoptr (GError) error = NULL;
  char *path = g_build_filename (fx->dir, name, NULL);

  g_assert_true (scenario_write_btsnoop (scenario, path, &error));
  g_assert_no_error (error);
  return path;
}

/*
 * Runs tshark with the dissector on @capture and returns one GStrv per
 * frame that passes @filter, holding @fields in order ("" when absent).
 * @prefs: "-o" settings, NULL-terminated, or NULL.
 */
static GPtrArray *
run_tshark (Fixture *fx,
            const char *capture,
            gboolean two_pass,
            const char *filter,
            const char *const *prefs,
            const char *const *fields)
{
  g_autoptr (GStrvBuilder) b = g_strv_builder_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  g_autofree char *lua = g_strconcat ("lua_script:", fx->script, NULL);
  int status = 0;
  guint n_fields = g_strv_length ((char **) fields);

  g_strv_builder_add_many (b, fx->tshark, "-n", "-X", lua, "-r", capture, "-Y", filter,
                           "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a",
                           "-E", "aggregator=,", NULL);
  if (two_pass)
    g_strv_builder_add (b, "-2");
  for (gsize i = 0; prefs != NULL && prefs[i] != NULL; i++) {
    g_strv_builder_add (b, "-o");
    g_strv_builder_add (b, prefs[i]);
  }
  for (guint i = 0; i < n_fields; i++) {
    g_strv_builder_add (b, "-e");
    g_strv_builder_add (b, fields[i]);
  }
  g_auto (GStrv) argv = g_strv_builder_end (b);

  g_spawn_sync (NULL, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err, &status, &error);
  g_assert_no_error (error);
  if (!g_spawn_check_wait_status (status, &error)) {
    g_autofree char *cmd = g_strjoinv (" ", argv);
    g_test_message ("%s\n%s", cmd, err);
  }
  g_assert_no_error (error);
  /* A Lua error is reported on stderr while tshark carries on. */
  if (strstr (err, "Lua") != NULL || strstr (err, "lua_script") != NULL)
    g_error ("tshark reported a Lua problem:\n%s", err);

  GPtrArray *rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
  g_auto (GStrv) lines = g_strsplit (out, "\n", -1);
  for (gsize i = 0; lines[i] != NULL; i++) {
    if (lines[i][0] == '\0')
      continue;
    char **row = g_strsplit (lines[i], "\t", -1);
    g_assert_cmpuint (g_strv_length (row), ==, n_fields);
    g_ptr_array_add (rows, row);
  }
  return rows;
}

static const char *
cell (GPtrArray *rows, guint row, guint column)
{
  return ((char **) rows->pdata[row])[column];
}

static guint64
cell_uint (GPtrArray *rows, guint row, guint column)
{
  const char *s = cell (rows, row, column);
  char *end = NULL;
  g_assert_cmpstr (s, !=, "");
  guint64 v = g_ascii_strtoull (s, &end, 0);
  g_assert_cmpstr (end, ==, "");
  return v;
}

static char *
hex (const guint8 *data, gsize len)
{
  GString *s = g_string_sized_new (len * 2 + 1);
  for (gsize i = 0; i < len; i++)
    g_string_append_printf (s, "%02x", data[i]);
  return g_string_free (s, FALSE);
}

static const char *
role_name (ScenarioRole role)
{
  switch (role) {
  case SCENARIO_RX:
    return "rx";
  case SCENARIO_TX:
    return "tx";
  }
  g_assert_not_reached ();
}

static const char *
type_name (Tally__SessionMessage__MsgCase type)
{
  switch (type) {
  case TALLY__SESSION_MESSAGE__MSG_HELLO:
    return "hello";
  case TALLY__SESSION_MESSAGE__MSG_OFFER:
    return "offer";
  case TALLY__SESSION_MESSAGE__MSG_REVEAL: return "reveal";
  case TALLY__SESSION_MESSAGE__MSG_PAY:
    return "pay";
  case TALLY__SESSION_MESSAGE__MSG_RECEIPT:
    return "receipt";
  case TALLY__SESSION_MESSAGE__MSG_ERROR:
    return "error";
  case TALLY__SESSION_MESSAGE__MSG__NOT_SET:
  case _TALLY__SESSION_MESSAGE__MSG__CASE_IS_INT_SIZE:
    break;
  }
  g_assert_not_reached ();
}

/* The fragment events of @s, in capture order. */
static GPtrArray *
fragment_events (const Scenario *s)
{
  GPtrArray *out = g_ptr_array_new ();
  for (guint i = 0; i < s->events->len; i++) {
    const ScenarioEvent *e = s->events->pdata[i];
    if (e->kind == SCENARIO_EVENT_FRAGMENT)
      g_ptr_array_add (out, (gpointer) e);
  }
  return out;
}

/* --- fragments ----------------------------------------------------------------- */

enum
{
  FRAG_FRAME,
  FRAG_CHANDLE,
  FRAG_CHARACTERISTIC,
  FRAG_KIND,
  FRAG_SEQ,
  FRAG_TOTAL,
  FRAG_DATA,
};
static const char *const fragment_fields[] = {
  "frame.number", "bthci_acl.chandle", "tally.characteristic", "tally.kind",
  "tally.seq", "tally.total_length", "tally.data", NULL,
};

static void
assert_fragments (const Scenario *s, GPtrArray *rows)
{
  g_autoptr (GPtrArray) expected = fragment_events (s);

  g_assert_cmpuint (rows->len, ==, expected->len);
  for (guint i = 0; i < expected->len; i++) {
    const ScenarioEvent *e = expected->pdata[i];
    gsize len;
    const guint8 *frag = g_bytes_get_data (e->fragment, &len);
    guint kind = frag[0] >> 4;
    gsize data_off = (kind == 1 || kind == 4) ? 3 : 1;
    g_autofree char *data = hex (frag + data_off, len - data_off);

    g_test_message ("fragment %u: frame %s", i, cell (rows, i, FRAG_FRAME));
    g_assert_cmpuint (cell_uint (rows, i, FRAG_CHANDLE), ==, e->connection->chandle);
    g_assert_cmpstr (cell (rows, i, FRAG_CHARACTERISTIC), ==, role_name (e->role));
    g_assert_cmpuint (cell_uint (rows, i, FRAG_KIND), ==, kind);
    g_assert_cmpuint (cell_uint (rows, i, FRAG_SEQ), ==, frag[0] & 0xf);
    if (data_off == 3)
      g_assert_cmpuint (cell_uint (rows, i, FRAG_TOTAL), ==, (guint) (frag[1] << 8 | frag[2]));
    else
      g_assert_cmpstr (cell (rows, i, FRAG_TOTAL), ==, "");
    g_assert_cmpstr (cell (rows, i, FRAG_DATA), ==, data);
  }
}

static void
test_fragments (Fixture *fx, gconstpointer data)
{
  NEED_TSHARK (fx);
  g_autoptr (Scenario) s = scenario_new (SCENARIO_DEFAULT);
  g_autofree char *capture = write_capture (fx, s, "default.btsnoop");

  g_autoptr (GPtrArray) rows = run_tshark (fx, capture, FALSE, "tally.kind", NULL, fragment_fields);
  assert_fragments (s, rows);
}

/* --- messages ------------------------------------------------------------------- */

enum
{
  MSG_FRAME,
  MSG_CHANDLE,
  MSG_CHARACTERISTIC,
  MSG_TYPE,
  MSG_LENGTH,
  MSG_HELLO_VERSION,
  MSG_HELLO_KEY,
  MSG_HELLO_SERIAL,
  MSG_HELLO_COMMITMENT,
  MSG_HELLO_REQUEST_TAG,
  MSG_OFFER_KEY,
  MSG_OFFER_CIPHERTEXT,
  MSG_REVEAL_CIPHERTEXT,
  MSG_PAY_CIPHERTEXT,
  MSG_RECEIPT_CIPHERTEXT,
  MSG_ERROR_CODE,
  MSG_ERROR_NAME,
  MSG_ERROR_MESSAGE,
  MSG_BYTES,
};
static const char *const message_fields[] = {
  "frame.number",
  "bthci_acl.chandle",
  "tally.characteristic",
  "tally.type",
  "tally.message_length",
  "tally.hello.version",
  "tally.hello.ephemeral_public_key",
  "tally.hello.revocation_serial",
  "tally.hello.commitment",
  "tally.hello.request_tag",
  "tally.offer.ephemeral_public_key",
  "tally.offer.ciphertext_length",
  "tally.reveal.ciphertext_length",
  "tally.pay.ciphertext_length",
  "tally.receipt.ciphertext_length",
  "tally.error.code",
  "tally.error.name",
  "tally.error.message",
  "tally.message",
  NULL,
};

static void
assert_message (GPtrArray *rows, guint i, const ScenarioMessage *m)
{
  g_test_message ("message %u: frame %s", i, cell (rows, i, MSG_FRAME));
  g_assert_cmpuint (cell_uint (rows, i, MSG_CHANDLE), ==, m->chandle);
  g_assert_cmpstr (cell (rows, i, MSG_CHARACTERISTIC), ==, role_name (m->role));
  g_assert_cmpstr (cell (rows, i, MSG_TYPE), ==, type_name (m->type));
  g_assert_cmpuint (cell_uint (rows, i, MSG_LENGTH), ==, g_bytes_get_size (m->packed));
  gsize packed_len;
  const guint8 *packed = g_bytes_get_data (m->packed, &packed_len);
  g_autofree char *bytes = hex (packed, packed_len);
  g_assert_cmpstr (cell (rows, i, MSG_BYTES), ==, bytes);

  g_autofree char *key = hex (m->key, sizeof m->key);
  g_autofree char *commitment = hex (m->commitment, sizeof m->commitment);
  g_autofree char *tag = hex (m->request_tag, m->request_tag_len);
  switch (m->type) {
  case TALLY__SESSION_MESSAGE__MSG_HELLO:
    g_assert_cmpuint (cell_uint (rows, i, MSG_HELLO_VERSION), ==, m->version);
    g_assert_cmpstr (cell (rows, i, MSG_HELLO_KEY), ==, key);
    g_assert_cmpuint (cell_uint (rows, i, MSG_HELLO_SERIAL), ==, m->revocation_serial);
    g_assert_cmpstr (cell (rows, i, MSG_HELLO_COMMITMENT), ==, commitment);
    g_assert_cmpstr (cell (rows, i, MSG_HELLO_REQUEST_TAG), ==, tag);
    break;
  case TALLY__SESSION_MESSAGE__MSG_OFFER:
    g_assert_cmpstr (cell (rows, i, MSG_OFFER_KEY), ==, key);
    g_assert_cmpuint (cell_uint (rows, i, MSG_OFFER_CIPHERTEXT), ==, m->ciphertext_len);
    break;
  case TALLY__SESSION_MESSAGE__MSG_REVEAL:
    g_assert_cmpuint (cell_uint (rows, i, MSG_REVEAL_CIPHERTEXT), ==, m->ciphertext_len);
    g_assert_cmpstr (cell (rows, i, MSG_PAY_CIPHERTEXT), ==, "");
    break;
  case TALLY__SESSION_MESSAGE__MSG_PAY:
    g_assert_cmpuint (cell_uint (rows, i, MSG_PAY_CIPHERTEXT), ==, m->ciphertext_len);
    g_assert_cmpstr (cell (rows, i, MSG_REVEAL_CIPHERTEXT), ==, "");
    break;
  case TALLY__SESSION_MESSAGE__MSG_RECEIPT:
    g_assert_cmpuint (cell_uint (rows, i, MSG_RECEIPT_CIPHERTEXT), ==, m->ciphertext_len);
    break;
  case TALLY__SESSION_MESSAGE__MSG_ERROR: {
    const char *name = tally_error_to_string ((TallyError) m->error_code);
    g_autofree char *unknown = g_strdup_printf ("Unknown(%u)", m->error_code);
    g_assert_cmpuint (cell_uint (rows, i, MSG_ERROR_CODE), ==, m->error_code);
    g_assert_cmpstr (cell (rows, i, MSG_ERROR_NAME), ==, name != NULL ? name : unknown);
    g_assert_cmpstr (cell (rows, i, MSG_ERROR_MESSAGE), ==, m->error_message);
    break;
  }
  case TALLY__SESSION_MESSAGE__MSG__NOT_SET:
  case _TALLY__SESSION_MESSAGE__MSG__CASE_IS_INT_SIZE:
    g_assert_not_reached ();
  }
  /* Ciphertext stays opaque: a message shows only its own type's fields. */
  if (m->type != TALLY__SESSION_MESSAGE__MSG_HELLO)
    g_assert_cmpstr (cell (rows, i, MSG_HELLO_KEY), ==, "");
  if (m->type != TALLY__SESSION_MESSAGE__MSG_ERROR)
    g_assert_cmpstr (cell (rows, i, MSG_ERROR_CODE), ==, "");
}

/* Every whole message, in the order the fragment that completed it was
 * captured. */
static void
assert_messages (const Scenario *s, GPtrArray *rows)
{
  g_autoptr (GPtrArray) order = g_ptr_array_new ();

  for (guint i = 0; i < s->events->len; i++) {
    const ScenarioEvent *e = s->events->pdata[i];
    if (e->kind == SCENARIO_EVENT_FRAGMENT && e->completes)
      g_ptr_array_add (order, s->messages->pdata[e->message]);
  }
  g_assert_cmpuint (order->len, ==, s->messages->len);
  g_assert_cmpuint (rows->len, ==, order->len);
  for (guint i = 0; i < order->len; i++)
    assert_message (rows, i, order->pdata[i]);
}

static void
test_messages (Fixture *fx, gconstpointer data)
{
  NEED_TSHARK (fx);
  g_autoptr (Scenario) s = scenario_new (SCENARIO_DEFAULT);
  g_autofree char *capture = write_capture (fx, s, "default.btsnoop");

  g_autoptr (GPtrArray) rows = run_tshark (fx, capture, FALSE, "tally.type", NULL, message_fields);
  assert_messages (s, rows);
  /* A second pass (the GUI, tshark -2) shows the same. */
  g_autoptr (GPtrArray) again = run_tshark (fx, capture, TRUE, "tally.type", NULL, message_fields);
  assert_messages (s, again);
}

static void
test_lost_fragment (Fixture *fx, gconstpointer data)
{
  NEED_TSHARK (fx);
  g_autoptr (Scenario) s = scenario_new (SCENARIO_DEFAULT);
  g_autofree char *capture = write_capture (fx, s, "default.btsnoop");
  static const char *const error_fields[] = { "frame.number", "bthci_evt.connection_handle",
                                              "tally.framing_error", NULL };
  static const char *const fields[] = { "frame.number", "tally.framing_error",
                                        "_ws.expert.message", NULL };

  /* b's second Hello lost its MIDDLE: its LAST waits for it, one ahead,
   * and b disconnects with the Hello incomplete, as tallyd's channel
   * reports it. */
  g_autoptr (GPtrArray) rows = run_tshark (fx, capture, TRUE,
                                           "bthci_acl.chandle == 0x0041 && tally.kind", NULL,
                                           fields);
  g_autoptr (GPtrArray) errors = run_tshark (fx, capture, FALSE, "tally.framing_error", NULL,
                                             error_fields);
  g_assert_cmpuint (errors->len, ==, 1);
  g_assert_cmpuint (cell_uint (errors, 0, 1), ==, 0x0041);

  guint n = 0, lost = 0;
  gsize total = 0, bytes = 0;
  const char *first_frame = NULL;
  g_autofree char *abandoned = g_strdup_printf (
    "its message was abandoned incomplete in frame %s", cell (errors, 0, 0));
  for (guint i = 0; i < s->events->len; i++) {
    const ScenarioEvent *e = s->events->pdata[i];
    if (e->kind != SCENARIO_EVENT_FRAGMENT || e->connection->chandle != 0x0041)
      continue;
    g_assert_cmpuint (n, <, rows->len);
    g_assert_cmpstr (cell (rows, n, 1), ==, "");
    if (e->message < 0) {
      gsize len;
      const guint8 *frag = g_bytes_get_data (e->fragment, &len);
      if (e->index == 0) {
        total = (gsize) frag[1] << 8 | frag[2];
        bytes += len - 3;
        first_frame = cell (rows, n, 0);
      } else {
        bytes += len - 1;
      }
      g_assert_nonnull (strstr (cell (rows, n, 2), abandoned));
      lost++;
    } else {
      g_assert_null (strstr (cell (rows, n, 2), "abandoned"));
    }
    n++;
  }
  g_assert_cmpuint (n, ==, rows->len);
  /* Every fragment of the Hello but its MIDDLE: the Hello with its
   * commitment takes four at this MTU. */
  g_assert_cmpuint (lost, >=, 2);
  g_assert_nonnull (first_frame);
  g_autofree char *expected = g_strdup_printf (
    "link closed in the middle of a message, payer -> payee (rx): %" G_GSIZE_FORMAT
    " of %" G_GSIZE_FORMAT " bytes in %u fragments received, the FIRST in frame %s",
    bytes, total, lost, first_frame);
  g_assert_cmpstr (cell (errors, 0, 2), ==, expected);
}

/* Every fragment of a whole message points forward to the frame that
 * completed it; that one points back to its FIRST and counts them. */
static void
assert_links (const Scenario *s, GPtrArray *rows)
{
  g_autoptr (GPtrArray) expected = fragment_events (s);

  g_assert_cmpuint (rows->len, ==, expected->len);
  for (guint i = 0; i < expected->len; i++) {
    const ScenarioEvent *e = expected->pdata[i];
    if (e->index >= 0 && e->expect_framing_error == NULL)
      g_assert_cmpuint (cell_uint (rows, i, 4), ==, (guint) e->index);
    if (!e->completes)
      continue;
    guint64 last_frame = cell_uint (rows, i, 0);
    guint n = 0;
    guint64 first_frame = e->index == 0 ? last_frame : 0;
    for (guint j = 0; j < i; j++) {
      const ScenarioEvent *f = expected->pdata[j];
      if (f->message != e->message)
        continue;
      g_assert_cmpuint (cell_uint (rows, j, 1), ==, last_frame);
      if (f->index == 0)
        first_frame = cell_uint (rows, j, 0);
      n++;
    }
    g_assert_cmpuint (cell_uint (rows, i, 3), ==, n + 1);
    g_assert_cmpuint (first_frame, !=, 0);
    if (n > 0)
      g_assert_cmpuint (cell_uint (rows, i, 2), ==, first_frame);
    else
      g_assert_cmpstr (cell (rows, i, 2), ==, "");
  }
}

static const char *const link_fields[] = { "frame.number", "tally.reassembled_in",
                                           "tally.first_frame", "tally.fragments",
                                           "tally.fragment_index", NULL };

static void
test_fragment_links (Fixture *fx, gconstpointer data)
{
  NEED_TSHARK (fx);
  g_autoptr (Scenario) s = scenario_new (SCENARIO_DEFAULT);
  g_autofree char *capture = write_capture (fx, s, "default.btsnoop");

  g_autoptr (GPtrArray) rows = run_tshark (fx, capture, TRUE, "tally.kind", NULL, link_fields);
  assert_links (s, rows);
}

/* --- fragments out of order ----------------------------------------------------- */

static void
test_reordered_messages (Fixture *fx, gconstpointer data)
{
  NEED_TSHARK (fx);
  g_autoptr (Scenario) s = scenario_new (SCENARIO_REORDERED);
  g_autofree char *capture = write_capture (fx, s, "reordered.btsnoop");

  /* Every fragment shows the header tally_frame_split () gave it... */
  g_autoptr (GPtrArray) fragments = run_tshark (fx, capture, FALSE, "tally.kind", NULL,
                                                fragment_fields);
  assert_fragments (s, fragments);
  /* ...its index, and the frame that completed its message... */
  g_autoptr (GPtrArray) links = run_tshark (fx, capture, TRUE, "tally.kind", NULL, link_fields);
  assert_links (s, links);
  /* ...where the message shows byte for byte, with its fields. */
  g_autoptr (GPtrArray) rows = run_tshark (fx, capture, FALSE, "tally.type", NULL, message_fields);
  assert_messages (s, rows);
  g_autoptr (GPtrArray) again = run_tshark (fx, capture, TRUE, "tally.type", NULL, message_fields);
  assert_messages (s, again);
}

static void
test_reordered_errors (Fixture *fx, gconstpointer data)
{
  NEED_TSHARK (fx);
  g_autoptr (Scenario) s = scenario_new (SCENARIO_REORDERED);
  g_autofree char *capture = write_capture (fx, s, "reordered.btsnoop");
  static const char *const fields[] = { "frame.number", "tally.framing_error",
                                        "_ws.expert.message", NULL };
  g_autoptr (GPtrArray) expected = fragment_events (s);
  guint errors = 0;
  gboolean beyond = FALSE;

  g_autoptr (GPtrArray) rows = run_tshark (fx, capture, FALSE, "tally.kind", NULL, fields);
  g_assert_cmpuint (rows->len, ==, expected->len);
  for (guint i = 0; i < expected->len; i++) {
    const ScenarioEvent *e = expected->pdata[i];
    g_test_message ("fragment %u: frame %s: %s", i, cell (rows, i, 0), cell (rows, i, 2));
    g_assert_cmpstr (cell (rows, i, 1), ==,
                     e->expect_framing_error != NULL ? e->expect_framing_error : "");
    if (e->expect_framing_error == NULL)
      continue;
    /* As an expert info too, which Wireshark lists. */
    g_assert_nonnull (strstr (cell (rows, i, 2), e->expect_framing_error));
    if (g_strcmp0 (e->expect_framing_error, "fragment 1: sequence 9, expected 1..8") == 0)
      beyond = TRUE;
    errors++;
  }
  /* The fragment beyond the window, and the timeout. */
  g_assert_true (beyond);
  g_assert_cmpuint (errors, ==, 2);
}

static void
test_every_error_name (Fixture *fx, gconstpointer data)
{
  NEED_TSHARK (fx);
  g_autoptr (Scenario) s = scenario_new (SCENARIO_ALL_ERRORS);
  g_autofree char *capture = write_capture (fx, s, "errors.btsnoop");

  g_autoptr (GPtrArray) rows = run_tshark (fx, capture, FALSE, "tally.type", NULL, message_fields);
  /* Each code's name as tally_error_to_string () gives it, and a code the
   * table lacks as Unknown(N). */
  g_assert_cmpuint (s->messages->len, ==, TALLY_ERROR_LAST + 1);
  assert_messages (s, rows);
}

static void
test_handles_without_discovery (Fixture *fx, gconstpointer data)
{
  NEED_TSHARK (fx);
  g_autoptr (Scenario) s = scenario_new (SCENARIO_NO_DISCOVERY);
  g_autofree char *capture = write_capture (fx, s, "cached.btsnoop");
  g_autofree char *rx = g_strdup_printf ("tally.rx_handle:0x%04x", SCENARIO_RX_HANDLE);
  g_autofree char *tx = g_strdup_printf ("tally.tx_handle:0x%04x", SCENARIO_TX_HANDLE);
  const char *const prefs[] = { rx, tx, NULL };

  /* Nothing in the capture says which handles are ours... */
  g_autoptr (GPtrArray) none = run_tshark (fx, capture, FALSE, "tally.kind", NULL, fragment_fields);
  g_assert_cmpuint (none->len, ==, 0);

  /* ...until the preferences do. */
  g_autoptr (GPtrArray) fragments = run_tshark (fx, capture, FALSE, "tally.kind", prefs,
                                                fragment_fields);
  assert_fragments (s, fragments);
  g_autoptr (GPtrArray) messages = run_tshark (fx, capture, FALSE, "tally.type", prefs,
                                               message_fields);
  assert_messages (s, messages);
}

static void
test_log_lines (Fixture *fx, gconstpointer data)
{
  NEED_TSHARK (fx);
  g_autoptr (Scenario) s = scenario_new (SCENARIO_DEFAULT);
  g_autofree char *capture = write_capture (fx, s, "default.btsnoop");
  static const char *const fields[] = { "tally.log.priority", "tally.log.ident",
                                        "tally.log.message", "hci_mon.adapter_id", NULL };

  g_autoptr (GPtrArray) rows = run_tshark (fx, capture, FALSE, "tally.log.ident", NULL, fields);
  guint n = 0;
  for (guint i = 0; i < s->events->len; i++) {
    const ScenarioEvent *e = s->events->pdata[i];
    if (e->kind != SCENARIO_EVENT_LOG)
      continue;
    g_assert_cmpuint (n, <, rows->len);
    g_assert_cmpuint (cell_uint (rows, n, 0), ==, (guint) e->priority);
    g_assert_cmpstr (cell (rows, n, 1), ==, e->ident);
    g_assert_cmpstr (cell (rows, n, 2), ==, e->text);
    g_assert_cmpuint (cell_uint (rows, n, 3), ==, 0xffff);
    n++;
  }
  g_assert_cmpuint (n, >, 0);
  g_assert_cmpuint (rows->len, ==, n);
}

static void
test_malformed (Fixture *fx, gconstpointer data)
{
  NEED_TSHARK (fx);
  g_autoptr (Scenario) s = scenario_new (SCENARIO_MALFORMED);
  g_autofree char *capture = write_capture (fx, s, "malformed.btsnoop");
  static const char *const fields[] = { "frame.number", "tally.framing_error",
                                        "_ws.expert.message", NULL };
  g_autoptr (GPtrArray) expected = fragment_events (s);

  g_autoptr (GPtrArray) rows = run_tshark (fx, capture, FALSE, "tally", NULL, fields);
  g_assert_cmpuint (rows->len, ==, expected->len);
  for (guint i = 0; i < expected->len; i++) {
    const ScenarioEvent *e = expected->pdata[i];
    g_test_message ("fragment %u: frame %s: %s", i, cell (rows, i, 0), cell (rows, i, 2));
    g_assert_cmpstr (cell (rows, i, 1), ==,
                     e->expect_framing_error != NULL ? e->expect_framing_error : "");
    if (e->expect_complaint != NULL)
      g_assert_nonnull (strstr (cell (rows, i, 2), e->expect_complaint));
  }
}

static void
test_no_script_errors (Fixture *fx, gconstpointer data)
{
  NEED_TSHARK (fx);
  static const char *const fields[] = { "frame.number", NULL };
  const ScenarioKind kinds[] = { SCENARIO_DEFAULT, SCENARIO_ALL_ERRORS, SCENARIO_NO_DISCOVERY,
                                 SCENARIO_MALFORMED, SCENARIO_REORDERED };

  for (gsize k = 0; k < G_N_ELEMENTS (kinds); k++) {
    g_autoptr (Scenario) s = scenario_new (kinds[k]);
    g_autofree char *name = g_strdup_printf ("scenario-%" G_GSIZE_FORMAT ".btsnoop", k);
    g_autofree char *capture = write_capture (fx, s, name);
    for (int two_pass = 0; two_pass <= 1; two_pass++) {
      g_autoptr (GPtrArray) rows = run_tshark (fx, capture, two_pass, "_ws.lua.error", NULL,
                                               fields);
      g_assert_cmpuint (rows->len, ==, 0);
    }
  }
}

static void
test_make_btsnoop (Fixture *fx, gconstpointer data)
{
  NEED_TSHARK (fx);
  const char *build_root = g_getenv ("TALLY_BUILD_ROOT");
  g_assert_nonnull (build_root);
  g_autofree char *tool = g_build_filename (build_root, "tests", "tools", "make-btsnoop", NULL);
  g_autofree char *out = g_build_filename (fx->dir, "cli.btsnoop", NULL);
  g_autoptr (GError) error = NULL;
  int status = 0;

  const char *argv[] = { tool, "--scenario", "all-errors", out, NULL };
  g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, NULL, NULL, &status,
                &error);
  g_assert_no_error (error);
  g_spawn_check_wait_status (status, &error);
  g_assert_no_error (error);

  g_autoptr (Scenario) s = scenario_new (SCENARIO_ALL_ERRORS);
  g_autofree char *direct = write_capture (fx, s, "direct.btsnoop");
  g_autofree char *a = NULL;
  g_autofree char *b = NULL;
  gsize a_len, b_len;
  g_assert_true (g_file_get_contents (out, &a, &a_len, NULL));
  g_assert_true (g_file_get_contents (direct, &b, &b_len, NULL));
  g_assert_cmpmem (a, a_len, b, b_len);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, func) g_test_add (path, Fixture, NULL, fixture_set_up, func, fixture_tear_down)
  ADD ("/dissector/fragments/show-the-framing-layers-headers", test_fragments);
  ADD ("/dissector/messages/reassemble-per-connection-and-direction", test_messages);
  ADD ("/dissector/fragments/flag-a-lost-fragment-like-tallyd", test_lost_fragment);
  ADD ("/dissector/fragments/point-to-their-message", test_fragment_links);
  ADD ("/dissector/reordering/places-fragments-by-sequence-within-the-window",
       test_reordered_messages);
  ADD ("/dissector/reordering/flags-beyond-the-window-and-timeout-like-tallyd",
       test_reordered_errors);
  ADD ("/dissector/errors/name-every-tally-error-code", test_every_error_name);
  ADD ("/dissector/handles/come-from-preferences-without-discovery",
       test_handles_without_discovery);
  ADD ("/dissector/log/shows-tallyd-monitor-lines", test_log_lines);
  ADD ("/dissector/malformed/reports-each-broken-rule", test_malformed);
  ADD ("/dissector/malformed/never-raises-a-script-error", test_no_script_errors);
  ADD ("/dissector/make-btsnoop/writes-the-scenario", test_make_btsnoop);
#undef ADD

  return g_test_run ();
}
