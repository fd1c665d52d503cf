/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The adapter's LE Privacy, read from the kernel's Bluetooth management
 * channel (AF_BLUETOOTH, BTPROTO_HCI, HCI_CHANNEL_CONTROL).  BlueZ 5.66
 * shows no privacy property on D-Bus; the kernel's current settings do.
 * MGMT_OP_READ_INFO is one of the commands the kernel answers on an
 * untrusted socket (no CAP_NET_ADMIN), so tallyd needs only AF_BLUETOOTH.
 *
 * With privacy on, the kernel advertises and connects from resolvable
 * private addresses that it rotates; with it off, the controller's public
 * (or static) address is on the air beside every request.
 */

#include <gio/gio.h>

G_BEGIN_DECLS

/* The size of a MGMT_OP_READ_INFO reply's parameters. */
#define TALLY_MGMT_READ_INFO_SIZE 280

#define TALLY_MGMT_SETTING_POWERED (1u << 0)
#define TALLY_MGMT_SETTING_LE      (1u << 9)
#define TALLY_MGMT_SETTING_PRIVACY (1u << 13)

typedef struct
{
  guint8 address[6]; /* as on the air: least significant byte first */
  guint32 supported_settings;
  guint32 current_settings;
} TallyMgmtInfo;

/* What tallyd does when the adapter's privacy is off or unknown
 * ([transport] ble_privacy). */
typedef enum
{
  TALLY_PRIVACY_POLICY_OFF,     /* do not check */
  TALLY_PRIVACY_POLICY_WARN,    /* log one line naming the fix */
  TALLY_PRIVACY_POLICY_REQUIRE, /* refuse to start Bluetooth LE */
} TallyPrivacyPolicy;

typedef enum
{
  TALLY_PRIVACY_STATE_ON,
  TALLY_PRIVACY_STATE_OFF,
  TALLY_PRIVACY_STATE_UNKNOWN, /* the management channel could not tell */
} TallyPrivacyState;

typedef enum
{
  TALLY_PRIVACY_VERDICT_OK,
  TALLY_PRIVACY_VERDICT_WARN,
  TALLY_PRIVACY_VERDICT_REFUSE,
} TallyPrivacyVerdict;

const char *tally_privacy_policy_to_string (TallyPrivacyPolicy policy);
gboolean tally_privacy_policy_from_string (const char *text, TallyPrivacyPolicy *policy);
const char *tally_privacy_state_to_string (TallyPrivacyState state);

/* The decision: OFF never complains; WARN warns unless privacy is ON;
 * REQUIRE refuses unless privacy is ON (unknown is not on). */
TallyPrivacyVerdict tally_privacy_decide (TallyPrivacyPolicy policy, TallyPrivacyState state);

/* Decodes the parameters of a MGMT_OP_READ_INFO reply (after opcode and
 * status).  FALSE with a specific error when @len is too short. */
gboolean tally_mgmt_info_decode (const guint8 *data, gsize len, TallyMgmtInfo *info,
                                 GError **error);

/* Whether the kernel has LE Privacy on for @adapter ("hciN").  Blocks for
 * at most about a second on a local kernel socket.  Returns UNKNOWN with
 * @error saying why (no AF_BLUETOOTH, permission, no such adapter). */
TallyPrivacyState tally_mgmt_read_privacy (const char *adapter, TallyMgmtInfo *info,
                                           GError **error);

G_END_DECLS
