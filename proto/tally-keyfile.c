/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <sys/stat.h>
#include <unistd.h>

gboolean
tally_key_file_write (const char *path,
                      const guint8 secret_key[static TALLY_SECRET_KEY_BYTES],
                      GError **error)
{
  g_autofree char *tmp = g_strconcat (path, ".tmp", NULL);
  int fd = g_open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "cannot create %s: %s", tmp,
                 g_strerror (e));
    return FALSE;
  }
  gboolean ok = fchmod (fd, 0600) == 0 &&
                write (fd, secret_key, TALLY_SECRET_KEY_BYTES) == TALLY_SECRET_KEY_BYTES &&
                fsync (fd) == 0;
  int e = errno;
  close (fd);
  if (!ok || g_rename (tmp, path) != 0) {
    e = ok ? errno : e;
    g_unlink (tmp);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "cannot write %s: %s", path,
                 g_strerror (e));
    return FALSE;
  }
  return TRUE;
}

/* The 64-byte secret holds seed || public key; a file whose halves
 * disagree would sign with one key and claim another. */
static gboolean
secret_key_is_consistent (const guint8 secret_key[static TALLY_SECRET_KEY_BYTES])
{
  guint8 pk[crypto_sign_PUBLICKEYBYTES];
  guint8 sk[crypto_sign_SECRETKEYBYTES];
  crypto_sign_seed_keypair (pk, sk, secret_key);
  gboolean ok = sodium_memcmp (sk, secret_key, sizeof sk) == 0;
  sodium_memzero (sk, sizeof sk);
  return ok;
}

gboolean
tally_key_file_read (const char *path, guint8 secret_key[static TALLY_SECRET_KEY_BYTES], GError **error)
{
  int fd = g_open (path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    g_set_error (error, TALLY_ERROR, e == ENOENT ? TALLY_ERROR_NOT_FOUND : TALLY_ERROR_STORAGE,
                 "cannot open key file %s: %s", path, g_strerror (e));
    return FALSE;
  }
  struct stat st;
  if (fstat (fd, &st) != 0) {
    int e = errno;
    close (fd);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "cannot stat key file %s: %s", path,
                 g_strerror (e));
    return FALSE;
  }
  if ((st.st_mode & 0077) != 0) {
    close (fd);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE,
                 "key file %s is readable by others; chmod 600 it", path);
    return FALSE;
  }
  ssize_t n = read (fd, secret_key, TALLY_SECRET_KEY_BYTES);
  guint8 extra;
  ssize_t more = read (fd, &extra, 1);
  close (fd);
  if (n != TALLY_SECRET_KEY_BYTES || more != 0) {
    sodium_memzero (secret_key, TALLY_SECRET_KEY_BYTES);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "key file %s is not %d bytes", path,
                 TALLY_SECRET_KEY_BYTES);
    return FALSE;
  }
  if (!secret_key_is_consistent (secret_key)) {
    sodium_memzero (secret_key, TALLY_SECRET_KEY_BYTES);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "key file %s is corrupt", path);
    return FALSE;
  }
  return TRUE;
}
