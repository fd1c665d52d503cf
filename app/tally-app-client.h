/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * tally-app's link to tallyd: D-Bus only (docs/dbus-api.md).  It follows
 * the register and every payment through tallyd's ObjectManager at "/"
 * (InterfacesAdded/Removed, PropertiesChanged), and serves org.tally.Agent1
 * so that tallyd asks this app to confirm the payments it makes.
 */

#include <gio/gio.h>

#include "tally-app-dbus.h"

G_BEGIN_DECLS

typedef struct _TallyAppClient TallyAppClient;

typedef struct
{
  /* The register's properties changed, or tallyd came or went (@reg NULL). */
  void (*register_changed) (TallyDBusRegister1 *reg, gpointer user_data);
  /* A payment appeared, changed or left (@payment NULL then). */
  void (*payment_changed) (const char *path, TallyDBusPayment1 *payment, gpointer user_data);
  /* A stall nearby appeared, changed or left (@stall NULL then), while
   * some client discovers (Register1.StartDiscovery). */
  void (*stall_changed) (const char *path, TallyDBusStall1 *stall, gpointer user_data);
  /* tallyd asks to confirm a payment: answer with
   * tally_app_client_answer_confirm (). */
  void (*confirm) (const char *path,
                   gint64 amount,
                   const char *currency,
                   const char *payee,
                   const char *code,
                   const char *payee_name,
                   gpointer user_data);
  /* tallyd withdrew its question (timeout, payment gone). */
  void (*confirm_cancelled) (gpointer user_data);
  /* Connecting failed for good: @message says why. */
  void (*failed) (const char *message, gpointer user_data);
} TallyAppClientCallbacks;

/* Connects to @name on the session or system bus, asynchronously. */
TallyAppClient *tally_app_client_new (gboolean system_bus,
                                      const char *name,
                                      const TallyAppClientCallbacks *callbacks,
                                      gpointer user_data);
void tally_app_client_free (TallyAppClient *client);

/* The register's proxy, NULL while tallyd is not there. */
TallyDBusRegister1 *tally_app_client_get_register (TallyAppClient *client);
/* Every payment on the bus, newest first (a list of TallyDBusPayment1, the
 * caller frees the list and unrefs the elements). */
GList *tally_app_client_list_payments (TallyAppClient *client);
TallyDBusPayment1 *tally_app_client_get_payment (TallyAppClient *client, const char *path);

/* Replies to the pending ConfirmPayment: accept, or refuse with
 * org.tally.Error.Rejected and @reason. */
void tally_app_client_answer_confirm (TallyAppClient *client, gboolean accept, const char *reason);
/* Whether a ConfirmPayment waits for an answer. */
gboolean tally_app_client_confirm_pending (TallyAppClient *client);

G_END_DECLS
