/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The adapter's LE Privacy as the kernel's management channel reports it,
 * and what tallyd does about it ([transport] ble_privacy). */
#include <string.h>

#include "tally-core.h"
#include "tally-mgmt.h"

/* A READ_INFO reply as the kernel sends it for 00:AA:01:00:00:23, version
 * 12, manufacturer 0x05f1, supported 0x0001bfff, current 0x00002ac1
 * (powered, bondable, LE, advertising, secure connections, privacy). */
static void
fill_reply (guint8 reply[static TALLY_MGMT_READ_INFO_SIZE], guint32 current)
{
  memset (reply, 0, TALLY_MGMT_READ_INFO_SIZE);
  const guint8 head[] = { 0x23, 0x00, 0x00, 0x01, 0xaa, 0x00, /* address, LSB first */
                          0x0c,                               /* version */
                          0xf1, 0x05,                         /* manufacturer */
                          0xff, 0xbf, 0x01, 0x00 };           /* supported */
  memcpy (reply, head, sizeof head);
  reply[13] = (guint8) current;
  reply[14] = (guint8) (current >> 8);
  reply[15] = (guint8) (current >> 16);
  reply[16] = (guint8) (current >> 24);
  memcpy (reply + 20, "stall", 5); /* name */
}

static void
test_read_info_reply_gives_address_and_settings (void)
{
  guint8 reply[TALLY_MGMT_READ_INFO_SIZE];
  TallyMgmtInfo info;
  g_autoptr (GError) error = NULL;

  fill_reply (reply, 0x00002ac1);
  g_assert_true (tally_mgmt_info_decode (reply, sizeof reply, &info, &error));
  g_assert_no_error (error);
  const guint8 address[] = { 0x23, 0x00, 0x00, 0x01, 0xaa, 0x00 };
  g_assert_cmpmem (info.address, 6, address, 6);
  g_assert_cmphex (info.supported_settings, ==, 0x0001bfff);
  g_assert_cmphex (info.current_settings, ==, 0x00002ac1);
  g_assert_true (info.current_settings & TALLY_MGMT_SETTING_PRIVACY);
  g_assert_true (info.current_settings & TALLY_MGMT_SETTING_LE);

  fill_reply (reply, 0x00000ac1); /* the same adapter with privacy off */
  g_assert_true (tally_mgmt_info_decode (reply, sizeof reply, &info, &error));
  g_assert_false (info.current_settings & TALLY_MGMT_SETTING_PRIVACY);
  g_assert_true (info.current_settings & TALLY_MGMT_SETTING_POWERED);
}

static void
test_short_read_info_reply_is_malformed (void)
{
  guint8 reply[TALLY_MGMT_READ_INFO_SIZE];
  fill_reply (reply, 0x00002ac1);
  const gsize lengths[] = { 0, 16, 17, TALLY_MGMT_READ_INFO_SIZE - 1 };

  for (gsize i = 0; i < G_N_ELEMENTS (lengths); i++) {
    TallyMgmtInfo info = { .current_settings = 0x12345678 };
    g_autoptr (GError) error = NULL;
    g_assert_false (tally_mgmt_info_decode (reply, lengths[i], &info, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
    g_assert_nonnull (strstr (error->message, "expected 280"));
    g_assert_cmphex (info.current_settings, ==, 0x12345678); /* untouched */
  }
}

static void
test_privacy_policy_decides_warn_refuse_or_nothing (void)
{
  const struct
  {
    TallyPrivacyPolicy policy;
    TallyPrivacyState state;
    TallyPrivacyVerdict verdict;
  } table[] = {
    { TALLY_PRIVACY_POLICY_OFF, TALLY_PRIVACY_STATE_ON, TALLY_PRIVACY_VERDICT_OK },
    { TALLY_PRIVACY_POLICY_OFF, TALLY_PRIVACY_STATE_OFF, TALLY_PRIVACY_VERDICT_OK },
    { TALLY_PRIVACY_POLICY_OFF, TALLY_PRIVACY_STATE_UNKNOWN, TALLY_PRIVACY_VERDICT_OK },
    { TALLY_PRIVACY_POLICY_WARN, TALLY_PRIVACY_STATE_ON, TALLY_PRIVACY_VERDICT_OK },
    { TALLY_PRIVACY_POLICY_WARN, TALLY_PRIVACY_STATE_OFF, TALLY_PRIVACY_VERDICT_WARN },
    { TALLY_PRIVACY_POLICY_WARN, TALLY_PRIVACY_STATE_UNKNOWN, TALLY_PRIVACY_VERDICT_WARN },
    { TALLY_PRIVACY_POLICY_REQUIRE, TALLY_PRIVACY_STATE_ON, TALLY_PRIVACY_VERDICT_OK },
    { TALLY_PRIVACY_POLICY_REQUIRE, TALLY_PRIVACY_STATE_OFF, TALLY_PRIVACY_VERDICT_REFUSE },
    { TALLY_PRIVACY_POLICY_REQUIRE, TALLY_PRIVACY_STATE_UNKNOWN, TALLY_PRIVACY_VERDICT_REFUSE },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (table); i++)
    g_assert_cmpint (tally_privacy_decide (table[i].policy, table[i].state), ==,
                     table[i].verdict);
}

static void
test_privacy_policy_names_round_trip (void)
{
  const char *names[] = { "warn", "require", "off" };
  for (gsize i = 0; i < G_N_ELEMENTS (names); i++) {
    TallyPrivacyPolicy policy;
    g_assert_true (tally_privacy_policy_from_string (names[i], &policy));
    g_assert_cmpstr (tally_privacy_policy_to_string (policy), ==, names[i]);
  }
  const char *bad[] = { "", "on", "Warn", "require ", "true" };
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    TallyPrivacyPolicy policy = TALLY_PRIVACY_POLICY_WARN;
    g_assert_false (tally_privacy_policy_from_string (bad[i], &policy));
    g_assert_cmpint (policy, ==, TALLY_PRIVACY_POLICY_WARN);
  }
}

static void
test_bad_adapter_name_is_refused_before_any_socket (void)
{
  TallyMgmtInfo info;
  g_autoptr (GError) error = NULL;
  g_assert_cmpint (tally_mgmt_read_privacy ("wlan0", &info, &error), ==,
                   TALLY_PRIVACY_STATE_UNKNOWN);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/mgmt/read-info/address-and-settings",
                   test_read_info_reply_gives_address_and_settings);
  g_test_add_func ("/mgmt/read-info/short-is-malformed", test_short_read_info_reply_is_malformed);
  g_test_add_func ("/mgmt/privacy/policy-decides", test_privacy_policy_decides_warn_refuse_or_nothing);
  g_test_add_func ("/mgmt/privacy/policy-names", test_privacy_policy_names_round_trip);
  g_test_add_func ("/mgmt/privacy/bad-adapter-name", test_bad_adapter_name_is_refused_before_any_socket);
  return g_test_run ();
}
