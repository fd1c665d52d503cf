/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-app-nearby.h"

#include <glib/gi18n.h>

#include "tally-app-widgets.h"

#define NOT_SUPPORTED "org.tally.Error.NotSupported"

typedef enum
{
  DISCOVERY_OFF,
  DISCOVERY_STARTING,
  DISCOVERY_ON,
  DISCOVERY_UNAVAILABLE, /* tallyd said no; asked again when tallyd comes back */
} DiscoveryState;

struct _TallyAppNearby
{
  GtkListBox *list;
  GtkLabel *state_label;
  TallyAppNearbyPayFunc pay;
  gpointer user_data;
  TallyDBusRegister1 *reg; /* borrowed from the client's object manager */
  GCancellable *cancellable;
  DiscoveryState state;
  gboolean active;
  GHashTable *stalls; /* path -> TallyDBusStall1 (ref) */
};

static const char *
discovery_state_to_string (DiscoveryState state)
{
  switch (state) {
  case DISCOVERY_OFF: return "off";
  case DISCOVERY_STARTING: return "starting";
  case DISCOVERY_ON: return "on";
  case DISCOVERY_UNAVAILABLE: return "unavailable";
  }
  return "unknown";
}

static void
enter_state (TallyAppNearby *nearby, DiscoveryState state)
{
  g_debug ("nearby: %s -> %s", discovery_state_to_string (nearby->state),
           discovery_state_to_string (state));
  nearby->state = state;
}

static gint
compare_rssi (gconstpointer a, gconstpointer b)
{
  gint16 ra = tally_dbus_stall1_get_rssi (*(TallyDBusStall1 *const *) a);
  gint16 rb = tally_dbus_stall1_get_rssi (*(TallyDBusStall1 *const *) b);
  /* Strongest (nearest) first; 0 means no reading. */
  if (ra == 0 || rb == 0)
    return ra == 0 ? (rb == 0 ? 0 : 1) : -1;
  return rb - ra;
}

static void
on_row_activated (GtkListBox *list, GtkListBoxRow *row, TallyAppNearby *nearby)
{
  const char *address = g_object_get_data (G_OBJECT (row), "tally-address");
  if (address != NULL)
    nearby->pay (address, nearby->user_data);
}

static void
rebuild (TallyAppNearby *nearby)
{
  g_autoptr (GPtrArray) sorted = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer value;

  tally_app_clear_list (nearby->list);
  g_hash_table_iter_init (&iter, nearby->stalls);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_ptr_array_add (sorted, value);
  g_ptr_array_sort (sorted, compare_rssi);
  for (guint i = 0; i < sorted->len; i++) {
    TallyDBusStall1 *stall = sorted->pdata[i];
    gint16 rssi = tally_dbus_stall1_get_rssi (stall);
    /* The advertisement carries the request tag only: the name and the
     * amount come with the stall's signed offer, in the confirmation. */
    g_autofree char *title = g_strdup_printf (_ ("Stall %s"), tally_dbus_stall1_get_tag (stall));
    g_autofree char *subtitle = rssi != 0 ? g_strdup_printf (_ ("Signal %d dBm · tap to pay"), rssi)
                                          : g_strdup (_ ("Tap to pay"));
    GtkWidget *row = adw_action_row_new ();

    adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), title);
    adw_preferences_row_set_use_markup (ADW_PREFERENCES_ROW (row), FALSE);
    adw_action_row_set_subtitle (ADW_ACTION_ROW (row), subtitle);
    gtk_list_box_row_set_activatable (GTK_LIST_BOX_ROW (row), TRUE);
    g_object_set_data_full (G_OBJECT (row), "tally-address",
                            g_strdup (tally_dbus_stall1_get_address (stall)), g_free);
    gtk_accessible_update_property (GTK_ACCESSIBLE (row), GTK_ACCESSIBLE_PROPERTY_LABEL, title,
                                    GTK_ACCESSIBLE_PROPERTY_DESCRIPTION, subtitle, -1);
    gtk_list_box_append (nearby->list, row);
  }
  gtk_widget_set_visible (GTK_WIDGET (nearby->list), sorted->len > 0);
  switch (nearby->state) {
  case DISCOVERY_STARTING:
  case DISCOVERY_ON:
    gtk_label_set_text (nearby->state_label, sorted->len > 0 ? _ ("Tap a stall to pay it.")
                                                             : _ ("Looking for stalls nearby…"));
    break;
  case DISCOVERY_OFF: gtk_label_set_text (nearby->state_label, ""); break;
  case DISCOVERY_UNAVAILABLE: break;
  }
}

static void
on_stop_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;

  /* tallyd also ends our discovery when we leave the bus: nothing to do. */
  if (!tally_dbus_register1_call_stop_discovery_finish (TALLY_DBUS_REGISTER1 (source), result,
                                                        &error))
    g_debug ("StopDiscovery: %s", error->message);
}

static void
stop_discovery (TallyAppNearby *nearby)
{
  if (nearby->state == DISCOVERY_ON && nearby->reg != NULL)
    tally_dbus_register1_call_stop_discovery (nearby->reg, NULL, on_stop_done, NULL);
  if (nearby->state != DISCOVERY_UNAVAILABLE)
    enter_state (nearby, DISCOVERY_OFF);
  g_hash_table_remove_all (nearby->stalls);
  rebuild (nearby);
}

static void
on_start_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  TallyAppNearby *nearby;
  gboolean started = tally_dbus_register1_call_start_discovery_finish (
    TALLY_DBUS_REGISTER1 (source), result, &error);

  if (!started && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  nearby = user_data;
  if (!started) {
    g_autofree char *remote = g_dbus_error_get_remote_error (error);

    g_dbus_error_strip_remote_error (error);
    enter_state (nearby, DISCOVERY_UNAVAILABLE);
    if (g_strcmp0 (remote, NOT_SUPPORTED) == 0)
      gtk_label_set_text (nearby->state_label, _ ("Bluetooth discovery is not available."));
    else {
      g_autofree char *text = g_strdup_printf (_ ("Cannot look for stalls: %s"), error->message);
      gtk_label_set_text (nearby->state_label, text);
    }
    return;
  }
  enter_state (nearby, DISCOVERY_ON);
  /* Hidden meanwhile: stop again. */
  if (!nearby->active)
    stop_discovery (nearby);
  rebuild (nearby);
}

static void
start_discovery (TallyAppNearby *nearby)
{
  if (nearby->reg == NULL || nearby->state != DISCOVERY_OFF)
    return;
  enter_state (nearby, DISCOVERY_STARTING);
  rebuild (nearby);
  tally_dbus_register1_call_start_discovery (nearby->reg, nearby->cancellable, on_start_done,
                                             nearby);
}

void
tally_app_nearby_set_active (TallyAppNearby *nearby, gboolean active)
{
  g_return_if_fail (nearby != NULL);

  nearby->active = active;
  if (active)
    start_discovery (nearby);
  else if (nearby->state == DISCOVERY_ON)
    stop_discovery (nearby);
}

void
tally_app_nearby_set_register (TallyAppNearby *nearby, TallyDBusRegister1 *reg)
{
  g_return_if_fail (nearby != NULL);

  if (reg == nearby->reg)
    return;
  /* A new tallyd knows nothing of our discovery; ask it afresh. */
  g_cancellable_cancel (nearby->cancellable);
  g_clear_object (&nearby->cancellable);
  nearby->cancellable = g_cancellable_new ();
  nearby->reg = reg;
  enter_state (nearby, DISCOVERY_OFF);
  g_hash_table_remove_all (nearby->stalls);
  rebuild (nearby);
  if (nearby->active)
    start_discovery (nearby);
}

void
tally_app_nearby_stall_changed (TallyAppNearby *nearby, const char *path, TallyDBusStall1 *stall)
{
  g_return_if_fail (nearby != NULL && path != NULL);

  if (stall == NULL)
    g_hash_table_remove (nearby->stalls, path);
  else if (nearby->state == DISCOVERY_ON || nearby->state == DISCOVERY_STARTING)
    g_hash_table_replace (nearby->stalls, g_strdup (path), g_object_ref (stall));
  rebuild (nearby);
}

TallyAppNearby *
tally_app_nearby_new (GtkBox *box, TallyAppNearbyPayFunc pay, gpointer user_data)
{
  TallyAppNearby *nearby = g_new0 (TallyAppNearby, 1);
  GtkWidget *heading = gtk_label_new (_ ("Stalls nearby"));

  nearby->pay = pay;
  nearby->user_data = user_data;
  nearby->cancellable = g_cancellable_new ();
  nearby->stalls = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  gtk_widget_add_css_class (heading, "heading");
  gtk_widget_set_halign (heading, GTK_ALIGN_START);
  gtk_box_append (box, heading);
  nearby->state_label = tally_app_value_label (_ ("Stalls nearby state"), "dim-label");
  gtk_box_append (box, GTK_WIDGET (nearby->state_label));
  nearby->list = tally_app_boxed_list ();
  gtk_accessible_update_property (GTK_ACCESSIBLE (nearby->list), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  _ ("Stalls nearby"), -1);
  gtk_widget_set_visible (GTK_WIDGET (nearby->list), FALSE);
  g_signal_connect (nearby->list, "row-activated", G_CALLBACK (on_row_activated), nearby);
  gtk_box_append (box, GTK_WIDGET (nearby->list));
  return nearby;
}

void
tally_app_nearby_free (TallyAppNearby *nearby)
{
  if (nearby == NULL)
    return;
  g_signal_handlers_disconnect_by_data (nearby->list, nearby);
  g_cancellable_cancel (nearby->cancellable);
  g_clear_object (&nearby->cancellable);
  if (nearby->state == DISCOVERY_ON && nearby->reg != NULL)
    tally_dbus_register1_call_stop_discovery (nearby->reg, NULL, on_stop_done, NULL);
  g_hash_table_unref (nearby->stalls);
  g_free (nearby);
}
