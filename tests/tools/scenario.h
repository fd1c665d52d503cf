/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The traffic make-btsnoop writes and test-dissector expects, from one
 * host's point of view: controller hci0 is a payer (GATT client) connected
 * to payees that serve Tally's GATT service.  Messages are real packed
 * SessionMessages, fragmented by tally_frame_split ().
 */

#include <glib.h>

#include "tally-core.h"

G_BEGIN_DECLS

/* The payee's GATT layout: one service, rx and tx characteristics, the CCC
 * descriptor of tx. */
#define SCENARIO_SERVICE_START 0x0010
#define SCENARIO_RX_DECL       0x0011
#define SCENARIO_RX_HANDLE     0x0012
#define SCENARIO_TX_DECL       0x0013
#define SCENARIO_TX_HANDLE     0x0014
#define SCENARIO_TX_CCC        0x0015
#define SCENARIO_SERVICE_END   0x0015

/* ATT MTU 23 on the fixed channel: 20 bytes per fragment (Write Commands
 * and plain notifications leave ATT MTU - 3). */
#define SCENARIO_ATT_MTU  23
/* BlueZ's EATT channels: L2CAP MTU 517, here with a small MPS so that one
 * notification spans several K-frames. */
#define SCENARIO_EATT_MTU 517
#define SCENARIO_EATT_MPS 100
#define SCENARIO_EATT_PSM 0x0027
#define SCENARIO_EATT_LOCAL_CID  0x0040
#define SCENARIO_EATT_REMOTE_CID 0x0050

typedef enum
{
  SCENARIO_DEFAULT,      /* three connections, every message type, a lost fragment */
  SCENARIO_ALL_ERRORS,   /* one Error per TallyError code, and an unknown code */
  SCENARIO_NO_DISCOVERY, /* a connection whose GATT layout the capture never shows */
  SCENARIO_MALFORMED,    /* fragments and messages that break the rules, one rule each */
  SCENARIO_REORDERED,    /* fragments out of order over two ATT bearers, within the window and
                            beyond it, and a timeout */
} ScenarioKind;

typedef enum
{
  SCENARIO_RX, /* payer -> payee: ATT Write Command to the rx characteristic */
  SCENARIO_TX, /* payee -> payer: notification of the tx characteristic */
} ScenarioRole;

typedef struct
{
  guint16 chandle;
  gboolean discovery; /* GATT discovery of the payee's layout */
  gboolean eatt;      /* an EATT channel besides the fixed ATT channel */
  guint8 peer[6];     /* the payee's address, most significant byte first */
} ScenarioConnection;

typedef struct
{
  Tally__SessionMessage__MsgCase type;
  guint16 chandle;
  ScenarioRole role;
  guint32 version;
  guint8 key[32];
  guint64 revocation_serial;
  guint8 commitment[32]; /* Hello.commitment */
  guint8 request_tag[4]; /* Hello.request_tag, request_tag_len bytes of it */
  gsize request_tag_len;
  gsize ciphertext_len;
  guint32 error_code;
  char *error_message;
  GBytes *packed;
} ScenarioMessage;

typedef enum
{
  SCENARIO_EVENT_CONNECT,
  SCENARIO_EVENT_LOG,
  SCENARIO_EVENT_FRAGMENT,
  SCENARIO_EVENT_DISCONNECT,
  SCENARIO_EVENT_PAUSE,
} ScenarioEventKind;

typedef struct
{
  ScenarioEventKind kind;
  /* CONNECT, DISCONNECT, FRAGMENT */
  const ScenarioConnection *connection;
  /* LOG */
  int priority;
  char *ident;
  char *text;
  /* PAUSE: the capture's clock jumps */
  guint pause_ms;
  /* FRAGMENT */
  ScenarioRole role;
  gboolean eatt;        /* over the connection's EATT channel */
  GBytes *fragment;
  int message;          /* index into Scenario.messages, -1 for none */
  int index;            /* position in its message, -1 for a hand-made fragment */
  gboolean completes;   /* the one whose arrival completes its message */
  /* MALFORMED, REORDERED: what a reader must report for this fragment
   * (tallyd's framing error, or part of the complaint about the message),
   * or NULL */
  char *expect_framing_error;
  const char *expect_complaint;
} ScenarioEvent;

typedef struct
{
  ScenarioKind kind;
  GPtrArray *connections; /* ScenarioConnection */
  GPtrArray *messages;    /* ScenarioMessage; only those sent whole */
  GPtrArray *events;      /* ScenarioEvent, in capture order */
} Scenario;

Scenario *scenario_new (ScenarioKind kind);
void scenario_free (Scenario *scenario);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Scenario, scenario_free)

/* "default", "all-errors", "no-discovery", "malformed", "reordered";
 * FALSE for anything else. */
gboolean scenario_kind_from_string (const char *name, ScenarioKind *kind);

/* 128-bit UUID in ATT's byte order (little-endian). */
void scenario_uuid_le (const char *uuid, guint8 out[16]);

/* Writes the scenario as a btsnoop file in the Linux monitor format, the
 * one `btmon -w` writes.  A GFileError when the file cannot be written. */
gboolean scenario_write_btsnoop (const Scenario *scenario, const char *path, GError **error);

G_END_DECLS
