/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-dbus-objects.h"

#include <string.h>

/* One managed object: a path with one interface (Register1 or Payment1). */
typedef struct
{
  GDBusInterfaceSkeleton *skeleton;
  char *path;
} Managed;

struct _TallyDBusObjects
{
  GDBusConnection *connection;
  GDBusInterfaceSkeleton *skeleton; /* ObjectManager at / */
  GPtrArray *managed;               /* Managed *, oldest first */
};

static const char manager_xml[] = "<node>"
                                  "  <interface name='" TALLY_OBJECT_MANAGER_INTERFACE "'>"
                                  "    <method name='GetManagedObjects'>"
                                  "      <arg name='objects' type='a{oa{sa{sv}}}' direction='out'/>"
                                  "    </method>"
                                  "    <signal name='InterfacesAdded'>"
                                  "      <arg name='object' type='o'/>"
                                  "      <arg name='interfaces' type='a{sa{sv}}'/>"
                                  "    </signal>"
                                  "    <signal name='InterfacesRemoved'>"
                                  "      <arg name='object' type='o'/>"
                                  "      <arg name='interfaces' type='as'/>"
                                  "    </signal>"
                                  "  </interface>"
                                  "</node>";

static GDBusInterfaceInfo *
manager_info (void)
{
  static GDBusInterfaceInfo *info;
  if (g_once_init_enter (&info)) {
    g_autoptr (GError) error = NULL;
    g_autoptr (GDBusNodeInfo) node = g_dbus_node_info_new_for_xml (manager_xml, &error);
    g_assert_no_error (error);
    g_once_init_leave (&info, g_dbus_interface_info_ref (node->interfaces[0]));
  }
  return info;
}

/* --- the skeleton: a plain GDBusInterfaceSkeleton, so that
 * tally_dbus_auth_skeleton_new () can put every call through polkit --- */

typedef struct
{
  GDBusInterfaceSkeleton parent_instance;
  TallyDBusObjects *objects;
} ManagerSkeleton;

typedef struct
{
  GDBusInterfaceSkeletonClass parent_class;
} ManagerSkeletonClass;

static GType manager_skeleton_get_type (void);
G_DEFINE_TYPE (ManagerSkeleton, manager_skeleton, G_TYPE_DBUS_INTERFACE_SKELETON)

/* {interface: {property: value}} of @m. */
static GVariant *
managed_interfaces (const Managed *m)
{
  /* A full reference (transfer full), not a floating one: ours to drop. */
  g_autoptr (GVariant) props = g_dbus_interface_skeleton_get_properties (m->skeleton);
  GVariantBuilder builder;
  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{sa{sv}}"));
  g_variant_builder_add (&builder, "{s@a{sv}}",
                         g_dbus_interface_skeleton_get_info (m->skeleton)->name, props);
  return g_variant_builder_end (&builder);
}

static void
manager_method_call (GDBusConnection *connection,
                     const char *sender,
                     const char *object_path,
                     const char *interface_name,
                     const char *method_name,
                     GVariant *parameters,
                     GDBusMethodInvocation *invocation,
                     gpointer user_data)
{
  ManagerSkeleton *skeleton = user_data;
  TallyDBusObjects *objects = skeleton->objects;

  /* GDBus has checked the name and arguments against manager_info (). */
  g_return_if_fail (strcmp (method_name, "GetManagedObjects") == 0);
  GVariantBuilder builder;
  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{oa{sa{sv}}}"));
  for (guint i = 0; i < objects->managed->len; i++) {
    const Managed *m = objects->managed->pdata[i];
    g_variant_builder_add (&builder, "{o@a{sa{sv}}}", m->path, managed_interfaces (m));
  }
  g_dbus_method_invocation_return_value (
    invocation, g_variant_new ("(@a{oa{sa{sv}}})", g_variant_builder_end (&builder)));
}

static GDBusInterfaceVTable manager_vtable = {
  .method_call = manager_method_call,
  .get_property = NULL,
  .set_property = NULL,
};

static GDBusInterfaceInfo *
manager_skeleton_get_info (GDBusInterfaceSkeleton *skeleton)
{
  return manager_info ();
}

static GDBusInterfaceVTable *
manager_skeleton_get_vtable (GDBusInterfaceSkeleton *skeleton)
{
  return &manager_vtable;
}

static GVariant *
manager_skeleton_get_properties (GDBusInterfaceSkeleton *skeleton)
{
  /* ObjectManager has none. */
  return g_variant_new_array (G_VARIANT_TYPE ("{sv}"), NULL, 0);
}

static void
manager_skeleton_flush (GDBusInterfaceSkeleton *skeleton)
{
  /* Signals go out at once: nothing is queued. */
}

static void
manager_skeleton_class_init (ManagerSkeletonClass *klass)
{
  GDBusInterfaceSkeletonClass *skeleton_class = G_DBUS_INTERFACE_SKELETON_CLASS (klass);
  skeleton_class->get_info = manager_skeleton_get_info;
  skeleton_class->get_vtable = manager_skeleton_get_vtable;
  skeleton_class->get_properties = manager_skeleton_get_properties;
  skeleton_class->flush = manager_skeleton_flush;
}

static void
manager_skeleton_init (ManagerSkeleton *skeleton)
{
}

/* --- the managed objects --- */

static void
managed_free (Managed *m)
{
  g_object_unref (m->skeleton);
  g_free (m->path);
  g_free (m);
}

static void
emit (TallyDBusObjects *objects, const char *signal, GVariant *parameters)
{
  g_autoptr (GError) error = NULL;
  /* tallyd lost the bus and is on its way out: nobody to tell. */
  if (g_dbus_connection_is_closed (objects->connection)) {
    g_variant_unref (g_variant_ref_sink (parameters));
    return;
  }
  if (!g_dbus_connection_emit_signal (objects->connection, NULL, TALLY_OBJECT_MANAGER_PATH,
                                      TALLY_OBJECT_MANAGER_INTERFACE, signal, parameters, &error))
    g_warning ("cannot emit %s: %s", signal, error->message);
}

TallyDBusObjects *
tally_dbus_objects_new (GDBusConnection *connection, TallyDBusAuth *auth, GError **error)
{
  g_return_val_if_fail (G_IS_DBUS_CONNECTION (connection) && auth != NULL, NULL);

  TallyDBusObjects *objects = g_new0 (TallyDBusObjects, 1);
  objects->connection = g_object_ref (connection);
  objects->managed = g_ptr_array_new_with_free_func ((GDestroyNotify) managed_free);
  objects->skeleton = tally_dbus_auth_skeleton_new (auth, manager_skeleton_get_type ());
  /* The authorizing subtype has our instance layout. */
  ((ManagerSkeleton *) objects->skeleton)->objects = objects;
  if (!g_dbus_interface_skeleton_export (objects->skeleton, connection, TALLY_OBJECT_MANAGER_PATH,
                                         error)) {
    tally_dbus_objects_free (objects);
    return NULL;
  }
  return objects;
}

void
tally_dbus_objects_free (TallyDBusObjects *objects)
{
  if (objects == NULL)
    return;
  if (g_dbus_interface_skeleton_get_connection (objects->skeleton) != NULL)
    g_dbus_interface_skeleton_unexport (objects->skeleton);
  g_object_unref (objects->skeleton);
  g_ptr_array_unref (objects->managed);
  g_object_unref (objects->connection);
  g_free (objects);
}

void
tally_dbus_objects_add (TallyDBusObjects *objects, GDBusInterfaceSkeleton *skeleton)
{
  g_return_if_fail (objects != NULL && G_IS_DBUS_INTERFACE_SKELETON (skeleton));
  g_return_if_fail (g_dbus_interface_skeleton_has_connection (skeleton, objects->connection));

  Managed *m = g_new0 (Managed, 1);
  m->skeleton = g_object_ref (skeleton);
  m->path = g_strdup (g_dbus_interface_skeleton_get_object_path (skeleton));
  g_ptr_array_add (objects->managed, m);
  emit (objects, "InterfacesAdded",
        g_variant_new ("(o@a{sa{sv}})", m->path, managed_interfaces (m)));
}

void
tally_dbus_objects_remove (TallyDBusObjects *objects, GDBusInterfaceSkeleton *skeleton)
{
  g_return_if_fail (objects != NULL && G_IS_DBUS_INTERFACE_SKELETON (skeleton));

  for (guint i = 0; i < objects->managed->len; i++) {
    Managed *m = objects->managed->pdata[i];
    if (m->skeleton != skeleton)
      continue;
    const char *names[] = { g_dbus_interface_skeleton_get_info (skeleton)->name, NULL };
    emit (objects, "InterfacesRemoved", g_variant_new ("(o^as)", m->path, names));
    g_ptr_array_remove_index (objects->managed, i);
    return;
  }
}
