/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The request URI as a QR code (tallyctl request --qr, --qr-png, --qr-svg):
 * libqrencode builds the matrix; the terminal gets two modules per
 * character cell in UTF-8 half blocks, the files one square per module.
 * Every rendering keeps the four-module quiet zone a scanner needs.
 */

#include "tallyctl.h"

#include <errno.h>
#include <png.h>
#include <qrencode.h>
#include <stdio.h>
#include <string.h>

#define QUIET  4 /* modules of margin on each side */
#define PIXELS 8 /* image pixels per module */

typedef struct
{
  QRcode *code;
  int size; /* with the quiet zone */
} Qr;

static gboolean
qr_encode (const char *text, Qr *qr, GError **error)
{
  /* Level M: a crumpled or glaring phone screen still reads. */
  qr->code = QRcode_encodeString8bit (text, 0, QR_ECLEVEL_M);
  if (qr->code == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_FAILED, "cannot encode the QR code: %s",
                 g_strerror (errno));
    return FALSE;
  }
  qr->size = qr->code->width + 2 * QUIET;
  return TRUE;
}

/* TRUE for a dark module at (@x, @y) of the code with its quiet zone. */
static gboolean
qr_dark (const Qr *qr, int x, int y)
{
  int w = qr->code->width;
  x -= QUIET;
  y -= QUIET;
  if (x < 0 || y < 0 || x >= w || y >= w)
    return FALSE;
  return (qr->code->data[y * w + x] & 1) != 0;
}

char *
qr_terminal (const char *text, GError **error)
{
  Qr qr;
  if (!qr_encode (text, &qr, error))
    return NULL;
  /* Light modules are drawn, dark ones left blank, two rows per line:
   * reads on the usual dark terminal background, quiet zone included. */
  static const char *const cells[4] = { " ", "\u2584", "\u2580", "\u2588" };
  GString *out = g_string_new (NULL);
  for (int y = 0; y < qr.size; y += 2) {
    for (int x = 0; x < qr.size; x++) {
      gboolean top = !qr_dark (&qr, x, y);
      gboolean bottom = y + 1 < qr.size && !qr_dark (&qr, x, y + 1);
      g_string_append (out, cells[top * 2 + bottom]);
    }
    g_string_append_c (out, '\n');
  }
  QRcode_free (qr.code);
  return g_string_free (out, FALSE);
}

gboolean
qr_write_svg (const char *text, const char *path, GError **error)
{
  Qr qr;
  if (!qr_encode (text, &qr, error))
    return FALSE;
  GString *svg = g_string_new (NULL);
  g_string_append_printf (
    svg,
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" "
    "width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
    "shape-rendering=\"crispEdges\">\n"
    "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n<path fill=\"#000\" d=\"",
    qr.size * PIXELS, qr.size * PIXELS, qr.size, qr.size, qr.size, qr.size);
  for (int y = 0; y < qr.size; y++)
    for (int x = 0; x < qr.size; x++)
      if (qr_dark (&qr, x, y))
        g_string_append_printf (svg, "M%d %dh1v1h-1z", x, y);
  g_string_append (svg, "\"/>\n</svg>\n");
  QRcode_free (qr.code);
  gboolean ok = g_file_set_contents (path, svg->str, (gssize) svg->len, error);
  g_string_free (svg, TRUE);
  return ok;
}

/* libpng reports errors by longjmp: nothing here owns memory across it. */
static gboolean
png_write_all (png_structp png, png_infop info, FILE *f, const Qr *qr, png_byte *row)
{
  if (setjmp (png_jmpbuf (png)))
    return FALSE;
  png_uint_32 side = (png_uint_32) (qr->size * PIXELS);
  png_init_io (png, f);
  png_set_IHDR (png, info, side, side, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info (png, info);
  for (int y = 0; y < qr->size; y++) {
    for (int x = 0; x < qr->size; x++)
      memset (row + x * PIXELS, qr_dark (qr, x, y) ? 0x00 : 0xff, PIXELS);
    for (int k = 0; k < PIXELS; k++)
      png_write_row (png, row);
  }
  png_write_end (png, NULL);
  return TRUE;
}

gboolean
qr_write_png (const char *text, const char *path, GError **error)
{
  Qr qr;
  if (!qr_encode (text, &qr, error))
    return FALSE;
  FILE *f = fopen (path, "wb");
  if (f == NULL) {
    int saved = errno;
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved), "%s: %s", path,
                 g_strerror (saved));
    QRcode_free (qr.code);
    return FALSE;
  }
  png_structp png = png_create_write_struct (PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png ? png_create_info_struct (png) : NULL;
  g_autofree png_byte *row = g_malloc ((gsize) (qr.size * PIXELS));
  gboolean ok = info != NULL && png_write_all (png, info, f, &qr, row);
  png_destroy_write_struct (&png, &info);
  QRcode_free (qr.code);
  if (fclose (f) != 0)
    ok = FALSE;
  if (!ok)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_FAILED, "%s: cannot write the PNG", path);
  return ok;
}
