/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Prints the protocol core's test vectors for docs/test-vectors.md:
 *
 *   build/tests/core/gen-vectors > /tmp/v.txt
 */

#include <stdio.h>

#include "vectors.h"

int
main (int argc, char **argv)
{
  if (argc != 1) {
    fprintf (stderr, "usage: %s > vectors.txt\n", argv[0]);
    return 2;
  }
  if (sodium_init () < 0) {
    fprintf (stderr, "%s: libsodium failed to initialise\n", argv[0]);
    return 1;
  }

  g_autoptr (GPtrArray) vectors = vectors_build ();
  g_autofree char *text = vector_list_format (vectors, NULL, NULL);
  if (fputs (text, stdout) == EOF || fflush (stdout) != 0) {
    perror (argv[0]);
    return 1;
  }
  return 0;
}
