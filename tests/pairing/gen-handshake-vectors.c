/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Prints the handshake vectors for the "Handshake" section of
 * docs/test-vectors.md:
 *
 *   build/tests/pairing/gen-handshake-vectors > /tmp/hv.txt
 */

#include <stdio.h>

#include "script.h"

int
main (int argc, char **argv)
{
  if (argc != 1) {
    fprintf (stderr, "usage: %s > handshake-vectors.txt\n", argv[0]);
    return 2;
  }
  if (sodium_init () < 0) {
    fprintf (stderr, "%s: libsodium failed to initialise\n", argv[0]);
    return 1;
  }

  g_autoptr (GPtrArray) vectors = script_vectors_build ();
  g_autofree char *text = script_vectors_format (vectors);
  if (fputs (text, stdout) == EOF || fflush (stdout) != 0) {
    perror (argv[0]);
    return 1;
  }
  return 0;
}
