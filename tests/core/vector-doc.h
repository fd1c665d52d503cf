/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The text form of the published test vectors (docs/test-vectors.md), shared
 * by the generators that print them and the tests that read them back.
 * Each set lives in fenced blocks whose info string is its tag:
 *
 *   ```<tag>
 *   ## <section>
 *   <name>: <lowercase hex>
 *   # <comment>
 *   ```
 *
 * Names and sections use [a-z0-9_.-]; blank lines are allowed; a name needs
 * a section before it; anything else in the block is malformed.  Blocks
 * with other tags, untagged blocks and the prose around them are skipped.
 */

#include <glib.h>

G_BEGIN_DECLS

typedef struct
{
  char *section;
  char *name;
  GBytes *value;
} Vector;

Vector *vector_new (const char *section, const char *name, const void *data, gsize len);
void vector_free (Vector *v);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Vector, vector_free)

/* An empty array of Vector that owns its elements. */
GPtrArray *vector_list_new (void);

/* The first vector called @name; NULL when there is none. */
const Vector *vector_list_find (const GPtrArray *vectors, const char *name);

/* The value of @name; fails the test when it is absent. */
GBytes *vector_list_value (const GPtrArray *vectors, const char *name);

/* The text of a comment line to print after @v, without its "# ", or NULL
 * for none. */
typedef char *(*VectorCommentFunc) (const Vector *v, gpointer user_data);

/* What the generators print and the blocks hold between their fences:
 * "## section" when the section changes, with a blank line before all but
 * the first, then "name: hex" ("name:" for an empty value) and the line
 * @comment returns, if any. */
char *vector_list_format (const GPtrArray *vectors, VectorCommentFunc comment, gpointer user_data);

typedef struct
{
  guint missing;   /* expected, not published */
  guint extra;     /* published, not expected */
  guint changed;   /* published with another value */
  guint moved;     /* published under another section */
  guint duplicate; /* published more than once */
} VectorComparison;

/* Compares @published against @expected by name and logs every difference
 * with g_test_message(), calling the expected side @expected_label. */
VectorComparison vector_list_compare (const GPtrArray *expected,
                                      const GPtrArray *published,
                                      const char *expected_label);

/* Fails the test, showing both in hex, unless @got and @want are equal. */
void vector_assert_bytes_equal (GBytes *got, GBytes *want, const char *what);

/* The vectors of every block tagged @fence_tag in a document. */
typedef struct _VectorDoc VectorDoc;

/* MALFORMED, naming the line, when a tagged block holds anything else or
 * is not closed. */
VectorDoc *vector_doc_parse (const char *text, const char *fence_tag, GError **error);

/* vector_doc_parse() of the file at @path; NOT_FOUND when it cannot be
 * read. */
VectorDoc *vector_doc_load (const char *path, const char *fence_tag, GError **error);

void vector_doc_free (VectorDoc *doc);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VectorDoc, vector_doc_free)

/* Vector, in document order; the caller may edit it. */
GPtrArray *vector_doc_get_vectors (VectorDoc *doc);

/* The text after "# " of every comment line, in document order. */
const GPtrArray *vector_doc_get_comments (const VectorDoc *doc);

/* Every line inside the tagged blocks, fences excluded, each ending in
 * '\n'. */
const char *vector_doc_get_block (const VectorDoc *doc);

guint vector_doc_get_n_blocks (const VectorDoc *doc);

/* The published value of @name; fails the test, naming the document, when
 * it is absent. */
GBytes *vector_doc_value (const VectorDoc *doc, const char *name);

G_END_DECLS
