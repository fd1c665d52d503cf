/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "faults-vfs.h"

#include <sqlite3.h>
#include <string.h>

typedef struct
{
  sqlite3_file base;   /* methods: the shim's */
  const char *name;    /* SQLite keeps it valid until xClose; NULL for temp files */
  sqlite3_file real[]; /* the default VFS's file, szOsFile bytes */
} ShimFile;

static sqlite3_vfs shim_vfs;
static sqlite3_vfs *real_vfs;
static char *armed_dir;
static guint armed_left;
static guint refused;

static gboolean
below_armed_dir (const char *name)
{
  if (armed_dir == NULL || name == NULL)
    return FALSE;
  gsize n = strlen (armed_dir);
  return strncmp (name, armed_dir, n) == 0 && name[n] == '/';
}

static gboolean
write_allowed (ShimFile *f)
{
  if (!below_armed_dir (f->name))
    return TRUE;
  if (armed_left > 0) {
    armed_left--;
    return TRUE;
  }
  refused++;
  return FALSE;
}

static int
shim_close (sqlite3_file *file)
{
  ShimFile *f = (ShimFile *) file;
  return f->real->pMethods->xClose (f->real);
}

static int
shim_read (sqlite3_file *file, void *buf, int amount, sqlite3_int64 offset)
{
  ShimFile *f = (ShimFile *) file;
  return f->real->pMethods->xRead (f->real, buf, amount, offset);
}

static int
shim_write (sqlite3_file *file, const void *buf, int amount, sqlite3_int64 offset)
{
  ShimFile *f = (ShimFile *) file;
  if (!write_allowed (f))
    return SQLITE_FULL;
  return f->real->pMethods->xWrite (f->real, buf, amount, offset);
}

static int
shim_truncate (sqlite3_file *file, sqlite3_int64 size)
{
  ShimFile *f = (ShimFile *) file;
  return f->real->pMethods->xTruncate (f->real, size);
}

static int
shim_sync (sqlite3_file *file, int flags)
{
  ShimFile *f = (ShimFile *) file;
  return f->real->pMethods->xSync (f->real, flags);
}

static int
shim_file_size (sqlite3_file *file, sqlite3_int64 *size)
{
  ShimFile *f = (ShimFile *) file;
  return f->real->pMethods->xFileSize (f->real, size);
}

static int
shim_lock (sqlite3_file *file, int lock)
{
  ShimFile *f = (ShimFile *) file;
  return f->real->pMethods->xLock (f->real, lock);
}

static int
shim_unlock (sqlite3_file *file, int lock)
{
  ShimFile *f = (ShimFile *) file;
  return f->real->pMethods->xUnlock (f->real, lock);
}

static int
shim_check_reserved_lock (sqlite3_file *file, int *out)
{
  ShimFile *f = (ShimFile *) file;
  return f->real->pMethods->xCheckReservedLock (f->real, out);
}

static int
shim_file_control (sqlite3_file *file, int op, void *arg)
{
  ShimFile *f = (ShimFile *) file;
  return f->real->pMethods->xFileControl (f->real, op, arg);
}

static int
shim_sector_size (sqlite3_file *file)
{
  ShimFile *f = (ShimFile *) file;
  return f->real->pMethods->xSectorSize (f->real);
}

static int
shim_device_characteristics (sqlite3_file *file)
{
  ShimFile *f = (ShimFile *) file;
  return f->real->pMethods->xDeviceCharacteristics (f->real);
}

static int
shim_shm_map (sqlite3_file *file, int page, int page_size, int extend, void volatile **out)
{
  ShimFile *f = (ShimFile *) file;
  return f->real->pMethods->xShmMap (f->real, page, page_size, extend, out);
}

static int
shim_shm_lock (sqlite3_file *file, int offset, int n, int flags)
{
  ShimFile *f = (ShimFile *) file;
  return f->real->pMethods->xShmLock (f->real, offset, n, flags);
}

static void
shim_shm_barrier (sqlite3_file *file)
{
  ShimFile *f = (ShimFile *) file;
  f->real->pMethods->xShmBarrier (f->real);
}

static int
shim_shm_unmap (sqlite3_file *file, int delete_flag)
{
  ShimFile *f = (ShimFile *) file;
  return f->real->pMethods->xShmUnmap (f->real, delete_flag);
}

static int
shim_fetch (sqlite3_file *file, sqlite3_int64 offset, int amount, void **out)
{
  ShimFile *f = (ShimFile *) file;
  return f->real->pMethods->xFetch (f->real, offset, amount, out);
}

static int
shim_unfetch (sqlite3_file *file, sqlite3_int64 offset, void *page)
{
  ShimFile *f = (ShimFile *) file;
  return f->real->pMethods->xUnfetch (f->real, offset, page);
}

/* Version 3 methods; the shared-memory and mmap slots are filled only
 * when the real file has them (see shim_open). */
static sqlite3_io_methods shim_methods_v3 = {
  .iVersion = 3,
  .xClose = shim_close,
  .xRead = shim_read,
  .xWrite = shim_write,
  .xTruncate = shim_truncate,
  .xSync = shim_sync,
  .xFileSize = shim_file_size,
  .xLock = shim_lock,
  .xUnlock = shim_unlock,
  .xCheckReservedLock = shim_check_reserved_lock,
  .xFileControl = shim_file_control,
  .xSectorSize = shim_sector_size,
  .xDeviceCharacteristics = shim_device_characteristics,
  .xShmMap = shim_shm_map,
  .xShmLock = shim_shm_lock,
  .xShmBarrier = shim_shm_barrier,
  .xShmUnmap = shim_shm_unmap,
  .xFetch = shim_fetch,
  .xUnfetch = shim_unfetch,
};

static sqlite3_io_methods shim_methods_v1 = {
  .iVersion = 1,
  .xClose = shim_close,
  .xRead = shim_read,
  .xWrite = shim_write,
  .xTruncate = shim_truncate,
  .xSync = shim_sync,
  .xFileSize = shim_file_size,
  .xLock = shim_lock,
  .xUnlock = shim_unlock,
  .xCheckReservedLock = shim_check_reserved_lock,
  .xFileControl = shim_file_control,
  .xSectorSize = shim_sector_size,
  .xDeviceCharacteristics = shim_device_characteristics,
};

static int
shim_open (sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags)
{
  ShimFile *f = (ShimFile *) file;
  (void) vfs;
  memset (f, 0, sizeof *f);
  int rc = real_vfs->xOpen (real_vfs, name, f->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    /* SQLite calls xClose only when pMethods is set. */
    f->base.pMethods = NULL;
    return rc;
  }
  /* Matched against the armed directory at every write, not here: the
   * register keeps its database open across armings. */
  f->name = name;
  f->base.pMethods = f->real->pMethods->iVersion >= 3 ? &shim_methods_v3 : &shim_methods_v1;
  return SQLITE_OK;
}

static int
shim_delete (sqlite3_vfs *vfs, const char *name, int sync_dir)
{
  (void) vfs;
  return real_vfs->xDelete (real_vfs, name, sync_dir);
}

static int
shim_access (sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
  (void) vfs;
  return real_vfs->xAccess (real_vfs, name, flags, out);
}

static int
shim_full_pathname (sqlite3_vfs *vfs, const char *name, int n, char *out)
{
  (void) vfs;
  return real_vfs->xFullPathname (real_vfs, name, n, out);
}

static void *
shim_dl_open (sqlite3_vfs *vfs, const char *name)
{
  (void) vfs;
  return real_vfs->xDlOpen (real_vfs, name);
}

static void
shim_dl_error (sqlite3_vfs *vfs, int n, char *out)
{
  (void) vfs;
  real_vfs->xDlError (real_vfs, n, out);
}

static void (*shim_dl_sym (sqlite3_vfs *vfs, void *handle, const char *symbol)) (void)
{
  (void) vfs;
  return real_vfs->xDlSym (real_vfs, handle, symbol);
}

static void
shim_dl_close (sqlite3_vfs *vfs, void *handle)
{
  (void) vfs;
  real_vfs->xDlClose (real_vfs, handle);
}

static int
shim_randomness (sqlite3_vfs *vfs, int n, char *out)
{
  (void) vfs;
  return real_vfs->xRandomness (real_vfs, n, out);
}

static int
shim_sleep (sqlite3_vfs *vfs, int us)
{
  (void) vfs;
  return real_vfs->xSleep (real_vfs, us);
}

static int
shim_current_time (sqlite3_vfs *vfs, double *out)
{
  (void) vfs;
  return real_vfs->xCurrentTime (real_vfs, out);
}

static int
shim_get_last_error (sqlite3_vfs *vfs, int n, char *out)
{
  (void) vfs;
  return real_vfs->xGetLastError (real_vfs, n, out);
}

static int
shim_current_time_int64 (sqlite3_vfs *vfs, sqlite3_int64 *out)
{
  (void) vfs;
  return real_vfs->xCurrentTimeInt64 (real_vfs, out);
}

void
faults_vfs_install (void)
{
  if (real_vfs != NULL)
    return;
  g_assert_cmpint (sqlite3_initialize (), ==, SQLITE_OK);
  real_vfs = sqlite3_vfs_find (NULL);
  g_assert_nonnull (real_vfs);
  g_assert_cmpint (real_vfs->iVersion, >=, 2);

  shim_vfs = (sqlite3_vfs){
    .iVersion = 2,
    .szOsFile = (int) sizeof (ShimFile) + real_vfs->szOsFile,
    .mxPathname = real_vfs->mxPathname,
    .zName = "tally-faults",
    .xOpen = shim_open,
    .xDelete = shim_delete,
    .xAccess = shim_access,
    .xFullPathname = shim_full_pathname,
    .xDlOpen = shim_dl_open,
    .xDlError = shim_dl_error,
    .xDlSym = shim_dl_sym,
    .xDlClose = shim_dl_close,
    .xRandomness = shim_randomness,
    .xSleep = shim_sleep,
    .xCurrentTime = shim_current_time,
    .xGetLastError = shim_get_last_error,
    .xCurrentTimeInt64 = shim_current_time_int64,
  };
  g_assert_cmpint (sqlite3_vfs_register (&shim_vfs, 1), ==, SQLITE_OK);
}

void
faults_vfs_arm (const char *dir, guint writes_left)
{
  g_return_if_fail (real_vfs != NULL);
  g_return_if_fail (dir != NULL);
  g_free (armed_dir);
  armed_dir = g_strdup (dir);
  armed_left = writes_left;
  refused = 0;
}

void
faults_vfs_disarm (void)
{
  g_clear_pointer (&armed_dir, g_free);
  armed_left = 0;
}

guint
faults_vfs_refused (void)
{
  return refused;
}
