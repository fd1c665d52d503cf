/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A scripted bluetoothd on a private bus, after BlueZ's unit/test-gatt.c:
 * a test is a list of steps, each a D-Bus call our code must make next
 * (checked and answered by the test) or something bluetoothd does on its
 * own (a signal, a call into our GATT application).  A call out of order
 * fails the test, naming the step that expected something else.
 *
 * The stand-in owns org.bluez on its own connection and answers only on
 * the objects a test exports; everything it receives queues until the
 * test takes it, so nothing is answered behind the script's back.
 */

#include <gio/gio.h>
#include <gio/gunixfdlist.h>

G_BEGIN_DECLS

#define FAKE_BLUEZ_NAME         "org.bluez"
#define FAKE_ADAPTER_IFACE      "org.bluez.Adapter1"
#define FAKE_DEVICE_IFACE       "org.bluez.Device1"
#define FAKE_GATT_MANAGER_IFACE "org.bluez.GattManager1"
#define FAKE_ADV_MANAGER_IFACE  "org.bluez.LEAdvertisingManager1"
#define FAKE_CHRC_IFACE         "org.bluez.GattCharacteristic1"
#define FAKE_OM_IFACE           "org.freedesktop.DBus.ObjectManager"
#define FAKE_PROPS_IFACE        "org.freedesktop.DBus.Properties"

typedef struct _FakeBluez FakeBluez;

/* Takes org.bluez on @bus, with "/" (ObjectManager) exported. */
FakeBluez *fake_bluez_new (GTestDBus *bus);
/* Fails when something the script never took is still queued; calls held
 * unanswered get an error reply. */
void fake_bluez_free (FakeBluez *fake);

/* A fresh connection to the private bus for the code under test. */
GDBusConnection *fake_bluez_connect (FakeBluez *fake);

/* Exports @iface ("org.bluez.Adapter1", ...) at @path; a path may carry
 * several interfaces.  Properties reads come to the script as calls. */
void fake_bluez_export (FakeBluez *fake, const char *path, const char *iface);

/* How long a step waits for its call before failing; 20 s by default. */
void fake_bluez_set_wait (FakeBluez *fake, guint seconds);

/* The next thing our code did must be the call @iface.@method on @path;
 * its invocation is returned for the script to answer (or hold).  A
 * different call, a signal or nothing within the wait fails the test. */
#define fake_bluez_expect_call(fake, path, iface, method)                                          \
  fake_bluez_expect_call_at ((fake), G_STRLOC, (path), (iface), (method))
GDBusMethodInvocation *fake_bluez_expect_call_at (FakeBluez *fake,
                                                  const char *where,
                                                  const char *path,
                                                  const char *iface,
                                                  const char *method);
/* The same, answered at once with @reply (NULL: no values; floating
 * references are sunk).  Returns the call's parameters. */
#define fake_bluez_expect_reply(fake, path, iface, method, reply)                                  \
  fake_bluez_expect_reply_at ((fake), G_STRLOC, (path), (iface), (method), (reply))
GVariant *fake_bluez_expect_reply_at (FakeBluez *fake,
                                      const char *where,
                                      const char *path,
                                      const char *iface,
                                      const char *method,
                                      GVariant *reply);
/* Answered at once with the D-Bus error @name. */
#define fake_bluez_expect_error(fake, path, iface, method, name)                                   \
  fake_bluez_expect_error_at ((fake), G_STRLOC, (path), (iface), (method), (name))
GVariant *fake_bluez_expect_error_at (FakeBluez *fake,
                                      const char *where,
                                      const char *path,
                                      const char *iface,
                                      const char *method,
                                      const char *name);
/* bluetoothd never answers @invocation (it is answered with an error when
 * the stand-in goes). */
void fake_bluez_hold (FakeBluez *fake, GDBusMethodInvocation *invocation);

/* The next thing our code did must be a PropertiesChanged of
 * GattCharacteristic1 on @path (a GATT application notifying); its
 * changed properties are returned. */
#define fake_bluez_expect_value_changed(fake, path)                                                \
  fake_bluez_expect_value_changed_at ((fake), G_STRLOC, (path))
GVariant *fake_bluez_expect_value_changed_at (FakeBluez *fake, const char *where, const char *path);

/* Nothing from our code for @ms milliseconds. */
#define fake_bluez_expect_quiet(fake, ms) fake_bluez_expect_quiet_at ((fake), G_STRLOC, (ms))
void fake_bluez_expect_quiet_at (FakeBluez *fake, const char *where, guint ms);
/* Nothing for @ms milliseconds after the newest call the fake saw: a
 * back-off measured from the call that failed, however slowly the test
 * itself got here. */
#define fake_bluez_expect_quiet_since_last(fake, ms)                                              \
  fake_bluez_expect_quiet_since_last_at ((fake), G_STRLOC, (ms))
void fake_bluez_expect_quiet_since_last_at (FakeBluez *fake, const char *where, guint ms);

/* bluetoothd's own signals: @text is GVariant text, a{sv} of the changed
 * properties or of the added interface's properties. */
void
fake_bluez_emit_changed (FakeBluez *fake, const char *path, const char *iface, const char *text);
void fake_bluez_emit_added (FakeBluez *fake, const char *path, const char *iface, const char *text);
void fake_bluez_emit_removed (FakeBluez *fake, const char *path, const char *iface);

/* bluetoothd calling into a GATT application at @dest, the main context
 * running until the answer; @fds_in may be NULL, @fds_out too. */
GVariant *fake_bluez_call (FakeBluez *fake,
                           const char *dest,
                           const char *path,
                           const char *iface,
                           const char *method,
                           GVariant *params,
                           GUnixFDList **fds_out,
                           GError **error);

/* The main context runs until @cond holds; fails the test after the wait. */
#define FAKE_RUN_UNTIL(fake, cond)                                                                 \
  G_STMT_START                                                                                     \
  {                                                                                                \
    gint64 until_ = g_get_monotonic_time () + fake_bluez_get_wait_us (fake);                       \
    while (!(cond) && g_get_monotonic_time () < until_)                                            \
      fake_bluez_iterate (fake);                                                                   \
    if (!(cond))                                                                                   \
      g_error ("%s: %s did not happen", G_STRLOC, #cond);                                          \
  }                                                                                                \
  G_STMT_END
gint64 fake_bluez_get_wait_us (FakeBluez *fake);
/* One iteration of the thread-default main context, at most 100 ms. */
void fake_bluez_iterate (FakeBluez *fake);

G_END_DECLS
