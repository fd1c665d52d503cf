/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "vector-doc.h"

#include <string.h>

#include "tally-core.h"
#include "tally-hex.h"

struct _VectorDoc
{
  char *origin;        /* the path, or NULL for text */
  GPtrArray *vectors;  /* Vector, in document order */
  GPtrArray *comments; /* text after "# " of each comment line */
  GString *block;      /* text of the tagged blocks, fences excluded */
  guint n_blocks;
};

/* --- vectors ------------------------------------------------------------------ */

Vector *
vector_new (const char *section, const char *name, const void *data, gsize len)
{
  g_return_val_if_fail (section != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);
  g_return_val_if_fail (data != NULL || len == 0, NULL);

  Vector *v = g_new0 (Vector, 1);
  v->section = g_strdup (section);
  v->name = g_strdup (name);
  v->value = g_bytes_new (data, len);
  return v;
}

void
vector_free (Vector *v)
{
  if (v == NULL)
    return;
  g_free (v->section);
  g_free (v->name);
  g_bytes_unref (v->value);
  g_free (v);
}

GPtrArray *
vector_list_new (void)
{
  return g_ptr_array_new_with_free_func ((GDestroyNotify) vector_free);
}

const Vector *
vector_list_find (const GPtrArray *vectors, const char *name)
{
  g_return_val_if_fail (vectors != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);

  for (guint i = 0; i < vectors->len; i++) {
    const Vector *v = g_ptr_array_index (vectors, i);
    if (strcmp (v->name, name) == 0)
      return v;
  }
  return NULL;
}

GBytes *
vector_list_value (const GPtrArray *vectors, const char *name)
{
  const Vector *v = vector_list_find (vectors, name);
  if (v == NULL)
    g_error ("vector \"%s\" is not there", name);
  return v->value;
}

static char *
bytes_to_hex (GBytes *bytes)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  return tally_hex_encode (data, len);
}

void
vector_assert_bytes_equal (GBytes *got, GBytes *want, const char *what)
{
  if (!g_bytes_equal (got, want)) {
    g_autofree char *g = bytes_to_hex (got);
    g_autofree char *w = bytes_to_hex (want);
    g_error ("%s:\n  got:  %s\n  want: %s", what, g, w);
  }
}

char *
vector_list_format (const GPtrArray *vectors, VectorCommentFunc comment, gpointer user_data)
{
  g_return_val_if_fail (vectors != NULL, NULL);

  GString *s = g_string_new (NULL);
  const char *section = NULL;

  for (guint i = 0; i < vectors->len; i++) {
    const Vector *v = g_ptr_array_index (vectors, i);
    if (g_strcmp0 (section, v->section) != 0) {
      if (section != NULL)
        g_string_append_c (s, '\n');
      g_string_append_printf (s, "## %s\n", v->section);
      section = v->section;
    }
    g_autofree char *hex = bytes_to_hex (v->value);
    if (*hex != '\0')
      g_string_append_printf (s, "%s: %s\n", v->name, hex);
    else
      g_string_append_printf (s, "%s:\n", v->name);
    g_autofree char *text = comment != NULL ? comment (v, user_data) : NULL;
    if (text != NULL)
      g_string_append_printf (s, "# %s\n", text);
  }
  return g_string_free (s, FALSE);
}

VectorComparison
vector_list_compare (const GPtrArray *expected,
                     const GPtrArray *published,
                     const char *expected_label)
{
  VectorComparison c = { 0 };
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  g_autofree char *label = g_strconcat (expected_label, ":", NULL);

  for (guint i = 0; i < published->len; i++) {
    const Vector *v = g_ptr_array_index (published, i);
    if (!g_hash_table_add (seen, v->name)) {
      g_test_message ("published twice: %s", v->name);
      c.duplicate++;
    }
    if (vector_list_find (expected, v->name) == NULL) {
      g_test_message ("published but not generated: %s", v->name);
      c.extra++;
    }
  }
  for (guint i = 0; i < expected->len; i++) {
    const Vector *e = g_ptr_array_index (expected, i);
    const Vector *v = vector_list_find (published, e->name);
    if (v == NULL) {
      g_test_message ("generated but not published: %s", e->name);
      c.missing++;
      continue;
    }
    if (!g_bytes_equal (e->value, v->value)) {
      g_autofree char *want = bytes_to_hex (e->value);
      g_autofree char *got = bytes_to_hex (v->value);
      g_test_message ("%s differs:\n  %-10s %s\n  published: %s", e->name, label, want, got);
      c.changed++;
    }
    if (strcmp (e->section, v->section) != 0) {
      g_test_message ("%s is under \"## %s\", expected \"## %s\"", e->name, v->section,
                      e->section);
      c.moved++;
    }
  }
  return c;
}

/* --- documents ---------------------------------------------------------------- */

static gboolean
valid_name (const char *name)
{
  if (*name == '\0')
    return FALSE;
  for (const char *c = name; *c; c++)
    if (!g_ascii_islower (*c) && !g_ascii_isdigit (*c) && *c != '_' && *c != '.' && *c != '-')
      return FALSE;
  return TRUE;
}

/* Lowercase only, as tally_hex_encode() writes it: the blocks are compared
 * with the generators' output verbatim. */
static GBytes *
decode_hex (const char *hex)
{
  gsize n = strlen (hex);
  if (n % 2 != 0)
    return NULL;
  for (gsize i = 0; i < n; i++)
    if (!g_ascii_isxdigit (hex[i]) || g_ascii_isupper (hex[i]))
      return NULL;
  guint8 *out = g_malloc (n / 2 + 1);
  size_t got = 0;
  if (sodium_hex2bin (out, n / 2, hex, n, NULL, &got, NULL) != 0 || got != n / 2) {
    g_free (out);
    return NULL;
  }
  return g_bytes_new_take (out, got);
}

void
vector_doc_free (VectorDoc *doc)
{
  if (doc == NULL)
    return;
  g_free (doc->origin);
  g_ptr_array_unref (doc->vectors);
  g_ptr_array_unref (doc->comments);
  g_string_free (doc->block, TRUE);
  g_free (doc);
}

/* One non-blank line inside a tagged block: updates @section or adds to
 * @doc. */
static gboolean
parse_line (VectorDoc *doc, const char *line, guint lineno, char **section, GError **error)
{
  if (g_str_has_prefix (line, "## ")) {
    g_free (*section);
    *section = g_strdup (line + 3);
    if (!valid_name (*section)) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "line %u: bad section \"%s\"",
                   lineno, *section);
      return FALSE;
    }
    return TRUE;
  }
  if (g_str_has_prefix (line, "# ")) {
    g_ptr_array_add (doc->comments, g_strdup (line + 2));
    return TRUE;
  }

  const char *colon = strchr (line, ':');
  if (colon == NULL || (colon[1] != '\0' && (colon[1] != ' ' || colon[2] == '\0'))) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "line %u: expected \"name: hex\", got \"%s\"", lineno, line);
    return FALSE;
  }
  g_autofree char *name = g_strndup (line, (gsize) (colon - line));
  const char *hex = colon[1] == '\0' ? "" : colon + 2;
  if (!valid_name (name) || *section == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "line %u: bad vector name \"%s\" or no section before it", lineno, name);
    return FALSE;
  }
  GBytes *value = decode_hex (hex);
  if (value == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "line %u: %s: bad hex", lineno, name);
    return FALSE;
  }
  Vector *v = g_new0 (Vector, 1);
  v->section = g_strdup (*section);
  v->name = g_steal_pointer (&name);
  v->value = value;
  g_ptr_array_add (doc->vectors, v);
  return TRUE;
}

VectorDoc *
vector_doc_parse (const char *text, const char *fence_tag, GError **error)
{
  g_return_val_if_fail (text != NULL, NULL);
  g_return_val_if_fail (fence_tag != NULL && *fence_tag != '\0', NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  g_autoptr (VectorDoc) doc = g_new0 (VectorDoc, 1);
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  g_autofree char *section = NULL;
  gboolean in_ours = FALSE, in_other = FALSE;

  doc->vectors = vector_list_new ();
  doc->comments = g_ptr_array_new_with_free_func (g_free);
  doc->block = g_string_new (NULL);

  for (guint i = 0; lines[i] != NULL; i++) {
    const char *line = lines[i];

    if (g_str_has_prefix (line, "```")) {
      if (in_ours) {
        in_ours = FALSE;
      } else if (in_other) {
        in_other = FALSE;
      } else if (strcmp (line + 3, fence_tag) == 0) {
        in_ours = TRUE;
        doc->n_blocks++;
        g_clear_pointer (&section, g_free);
      } else {
        in_other = TRUE;
      }
      continue;
    }
    if (!in_ours)
      continue;

    g_string_append (doc->block, line);
    g_string_append_c (doc->block, '\n');
    if (*line != '\0' && !parse_line (doc, line, i + 1, &section, error))
      return NULL;
  }
  if (in_ours) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "unterminated %s block", fence_tag);
    return NULL;
  }
  return g_steal_pointer (&doc);
}

VectorDoc *
vector_doc_load (const char *path, const char *fence_tag, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  g_autofree char *text = NULL;
  g_autoptr (GError) local = NULL;

  if (!g_file_get_contents (path, &text, NULL, &local)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "%s", local->message);
    return NULL;
  }
  VectorDoc *doc = vector_doc_parse (text, fence_tag, &local);
  if (doc == NULL) {
    g_propagate_prefixed_error (error, g_steal_pointer (&local), "%s: ", path);
    return NULL;
  }
  doc->origin = g_strdup (path);
  return doc;
}

GPtrArray *
vector_doc_get_vectors (VectorDoc *doc)
{
  g_return_val_if_fail (doc != NULL, NULL);
  return doc->vectors;
}

const GPtrArray *
vector_doc_get_comments (const VectorDoc *doc)
{
  g_return_val_if_fail (doc != NULL, NULL);
  return doc->comments;
}

const char *
vector_doc_get_block (const VectorDoc *doc)
{
  g_return_val_if_fail (doc != NULL, NULL);
  return doc->block->str;
}

guint
vector_doc_get_n_blocks (const VectorDoc *doc)
{
  g_return_val_if_fail (doc != NULL, 0);
  return doc->n_blocks;
}

GBytes *
vector_doc_value (const VectorDoc *doc, const char *name)
{
  g_return_val_if_fail (doc != NULL, NULL);

  const Vector *v = vector_list_find (doc->vectors, name);
  if (v == NULL)
    g_error ("%s: vector \"%s\" is not published", doc->origin ? doc->origin : "document", name);
  return v->value;
}
