/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "tally-config.h"

static void
test_ble_is_off_by_default_on_hci0 (void)
{
  g_autoptr (TallyConfig) config = tally_config_new ();

  g_assert_false (config->ble);
  g_assert_cmpstr (config->adapter, ==, "hci0");
}

static void
test_ble_and_adapter_are_read (void)
{
  g_autoptr (TallyConfig) config = tally_config_new ();
  g_autoptr (GError) error = NULL;

  g_assert_true (tally_config_load_data (config, "[transport]\nble=true\nadapter=hci12\n", &error));
  g_assert_no_error (error);
  g_assert_true (config->ble);
  g_assert_cmpstr (config->adapter, ==, "hci12");

  g_assert_true (tally_config_load_data (config, "[transport]\nble=false\n", &error));
  g_assert_no_error (error);
  g_assert_false (config->ble);
}

static void
test_ble_refuses_bad_values (void)
{
  const char *bad[] = {
    "[transport]\nble=yes\n",
    "[transport]\nble=\n",
    "[transport]\nadapter=hci\n",
    "[transport]\nadapter=/org/bluez/hci0\n",
    "[transport]\nadapter=hci0x\n",
    "[transport]\nadapter=wlan0\n",
    "[transport]\nble_privacy=on\n",
    "[transport]\nble_privacy=\n",
  };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (TallyConfig) config = tally_config_new ();
    g_autoptr (GError) error = NULL;

    g_assert_false (tally_config_load_data (config, bad[i], &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull (strstr (error->message, "[transport]"));
    /* A refused file leaves the defaults. */
    g_assert_false (config->ble);
    g_assert_cmpstr (config->adapter, ==, "hci0");
    g_assert_cmpint (config->ble_privacy, ==, TALLY_PRIVACY_POLICY_WARN);
  }
}

static void
test_ble_privacy_defaults_to_warn_and_is_read (void)
{
  g_autoptr (TallyConfig) config = tally_config_new ();
  g_autoptr (GError) error = NULL;

  g_assert_cmpint (config->ble_privacy, ==, TALLY_PRIVACY_POLICY_WARN);
  g_assert_true (tally_config_load_data (config, "[transport]\nble_privacy=require\n", &error));
  g_assert_no_error (error);
  g_assert_cmpint (config->ble_privacy, ==, TALLY_PRIVACY_POLICY_REQUIRE);
  g_assert_true (tally_config_load_data (config, "[transport]\nble_privacy=off\n", &error));
  g_assert_cmpint (config->ble_privacy, ==, TALLY_PRIVACY_POLICY_OFF);
}

static void
test_ble_keys_are_in_help (void)
{
  const char *help = tally_config_describe ();

  g_assert_nonnull (strstr (help, "ble=true|false"));
  g_assert_nonnull (strstr (help, "adapter=hciN"));
  g_assert_nonnull (strstr (help, "ble_privacy=warn|require|off"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/config/ble/off-by-default-on-hci0", test_ble_is_off_by_default_on_hci0);
  g_test_add_func ("/config/ble/reads-ble-and-adapter", test_ble_and_adapter_are_read);
  g_test_add_func ("/config/ble/refuses-bad-values", test_ble_refuses_bad_values);
  g_test_add_func ("/config/ble/privacy-warn-by-default", test_ble_privacy_defaults_to_warn_and_is_read);
  g_test_add_func ("/config/ble/keys-in-help", test_ble_keys_are_in_help);
  return g_test_run ();
}
