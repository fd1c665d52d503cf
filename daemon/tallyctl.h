/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * tallyctl, the command-line client of tallyd: the state of one run and
 * the helpers its commands share.  tallyctl.c parses the command line and
 * dispatches; tallyctl-register.c holds the commands on the register,
 * tallyctl-follow.c requests a payment and follows payments to their end,
 * tallyctl-pay.c pays as the agent that confirms.
 */

#include <gio/gio.h>

#include "tally-core.h"
#include "tally-dbus-error.h"
#include "tally-dbus-generated.h"
#include "tally-uri.h"

G_BEGIN_DECLS

/*
 * tallyctl's exit status, what scripts branch on (tallyctl --help,
 * docs/dbus-api.md).  exit_code_for () maps an error name to one.
 */
#define EXIT_OK       0 /* success */
#define EXIT_FAIL     1 /* any other failure */
#define EXIT_USAGE    2 /* invalid input: usage, a bad argument, an unreadable or malformed file */
#define EXIT_DECLINED 3 /* the agent or its user said no, or the payment was cancelled */
#define EXIT_TIMEOUT  4 /* a payment or a request timed out or expired */
#define EXIT_ABSENT   5 /* tallyd, or its bus, is not there */
#define EXIT_REFUSED  6 /* the other side of the payment refused it */

/* The table above for --help, one line per status. */
#define EXIT_STATUS_HELP                                                                           \
  "Exit status:\n"                                                                                 \
  "  0  success\n"                                                                                 \
  "  1  any other failure\n"                                                                       \
  "  2  invalid input: usage, a bad argument, an unreadable or malformed file\n"                   \
  "  3  declined: the agent or its user said no, or the payment was cancelled\n"                   \
  "  4  timed out: the payment or the request ran out of time\n"                                   \
  "  5  tallyd is not running (or its bus is not)\n"                                               \
  "  6  refused by the peer: the other register sent an error"

/* D-Bus errors that mean nobody answers for the name. */
#define DBUS_ERROR_NAME_HAS_NO_OWNER "org.freedesktop.DBus.Error.NameHasNoOwner"
#define DBUS_ERROR_SERVICE_UNKNOWN   "org.freedesktop.DBus.Error.ServiceUnknown"

#define REGISTER_PATH        "/org/tally/register"
#define AGENT_MANAGER_PATH   "/org/tally"
#define REGISTER_IFACE       "org.tally.Register1"
#define AGENT_MANAGER_IFACE  "org.tally.AgentManager1"
#define PAYMENT_IFACE        "org.tally.Payment1"
#define PROPERTIES_IFACE     "org.freedesktop.DBus.Properties"

typedef struct _Ctl Ctl;

/* What a command's output can be shaped by. */
typedef enum
{
  CTL_OUTPUT_TERSE = 1 << 0,  /* --terse */
  CTL_OUTPUT_FIELDS = 1 << 1, /* --fields */
} CtlOutput;

typedef struct
{
  const char *name;
  const char *args;
  const char *summary;
  const char *example;
  int (*run) (Ctl *ctl, int argc, char **argv);
  CtlOutput output;
} Command;

/* The options every command takes, before or after its name. */
typedef struct
{
  char *bus;
  char *name;
  gboolean json;
  gboolean terse;
  char *fields; /* comma-separated, as given */
} CtlGlobals;

struct _Ctl
{
  CtlGlobals globals;
  GDBusConnection *bus;
  const char *bus_label;
  const char *name;
  gboolean terse;
  char **fields; /* NULL: every field */
  char *owner; /* unique name of the tallyd we talk to */
  gboolean json;
  const Command *command;

  /* Following a payment (request, pay). */
  GMainLoop *loop;
  int exit_code;
  char *payment_path;
  GVariantDict *payment;
  gboolean code_printed;
  guint props_subscription;
  guint owner_watch;
  gboolean cancel_sent;

  /* Following the payments of a request for several payers. */
  GHashTable *request_payments; /* path -> GVariantDict */
  char *request_address;
  char *request_text; /* RequestUri: with the address, tells our request's objects from others' */
  guint payers;
  guint payers_done;
  guint payers_failed;
  gboolean request_over; /* a payment failed before any payer took it */
  int payers_exit;       /* exit status of the last failed payment */

  /* The agent of pay. */
  gboolean yes;
  TallyRequestUri *request_uri; /* pay tally://...: what the offer must match */
  TallyDBusAgent1 *agent;
  char *agent_path;
  GDBusMethodInvocation *pending_confirm;
  int tty_fd;
  gboolean tty_owned;
  guint tty_watch;
  GString *tty_line;
};

/* --- output (tallyctl-common.c) --- */

/* Appends @value as JSON: byte strings as hex, dictionaries as objects. */
void json_value (GString *out, GVariant *value);
/* Prints one JSON object from an a{sv}. */
void print_json_dict (GVariantDict *dict);
/* Progress lines go to stdout, or stderr when stdout carries JSON. */
void progress (Ctl *ctl, const char *format, ...) G_GNUC_PRINTF (2, 3);
/* The exit status for a failure with D-Bus error @name: @from_peer (a
 * payment's ErrorFromPeer) is a refusal by the other register, tallyd or
 * a bus missing is EXIT_ABSENT.  @in_payment: the error ended a payment,
 * where a malformed message is the peer's doing, not the user's input. */
int exit_code_for (const char *name, gboolean from_peer, gboolean in_payment);
/* Prints a D-Bus error name and message; returns exit_code_for () them. */
int report_error (Ctl *ctl, const char *name, const char *message);
/* Prints a failed call's D-Bus error name and message. */
int report_gerror (Ctl *ctl, const GError *error);
/* Prints a usage error and the hint to --help; returns EXIT_USAGE. */
int usage_error (Ctl *ctl, const char *format, ...) G_GNUC_PRINTF (2, 3);
/* Unix seconds as local time with its zone, "never" for 0. */
char *format_time (guint64 t);
/* Seconds as people say them: "3 days", "1 day 2 hours", "90 seconds"
 * is "1 minute 30 seconds". */
char *format_duration (guint64 seconds);

/* --- global options (tallyctl.c) --- */

/* The GOptionEntry array of the global options, writing to @g; after a
 * command, those whose short name @command_entries use are long only. */
GOptionEntry *ctl_global_entries (CtlGlobals *g, const GOptionEntry *command_entries);
/* Takes the global options given after the command over those given
 * before, checks them, and connects to tallyd (EXIT_OK, or the exit code
 * of the failure it reported). */
int ctl_start (Ctl *ctl, CtlGlobals *after);

/* --fields against the @n names a command shows: in *@selected the
 * indices of the fields to show, in order (every field without --fields).
 * FALSE with a usage error naming the known fields, its code in *@rc. */
gboolean select_fields (Ctl *ctl,
                        const char *const *names,
                        gsize n,
                        GArray **selected,
                        int *rc);
/* Appends @value for a --terse row: ':' and '\' escaped with '\', as
 * nmcli does, and line breaks as \n. */
void terse_append (GString *row, const char *value);

/* --- calls (tallyctl-common.c) --- */

GVariant *call (Ctl *ctl,
                const char *path,
                const char *iface,
                const char *method,
                GVariant *args,
                const GVariantType *reply_type,
                GError **error);
GVariantDict *get_all (Ctl *ctl, const char *path, const char *iface, GError **error);
const char *dict_str (GVariantDict *d, const char *key);
char *peer_label (GVariantDict *p);
gint64 dict_x (GVariantDict *d, const char *key);
guint64 dict_t (GVariantDict *d, const char *key);
guint32 dict_u (GVariantDict *d, const char *key);
gboolean dict_b (GVariantDict *d, const char *key);
/* The most tallyctl reads from standard input: far above any bundle. */
#define STDIN_MAX (64u * 1024 * 1024)
/* Reads @path, or standard input for "-"; an unreadable one is invalid
 * input (EXIT_USAGE in *@exit_code). */
gboolean read_file (Ctl *ctl, const char *path, GBytes **out, int *exit_code);
GVariant *bytes_variant (GBytes *bytes);
/* Parses a command's options; argv[0] is the command name. */
gboolean parse_command (Ctl *ctl,
                        const GOptionEntry *entries,
                        int *argc,
                        char ***argv,
                        int *exit_code);
gboolean expect_args (Ctl *ctl, int argc, int n, int *exit_code);

/* --- commands on the register (tallyctl-register.c) --- */

int cmd_info (Ctl *ctl, int argc, char **argv);
int cmd_balance (Ctl *ctl, int argc, char **argv);
int cmd_key (Ctl *ctl, int argc, char **argv);
int cmd_history (Ctl *ctl, int argc, char **argv);
int cmd_load (Ctl *ctl, int argc, char **argv);
int cmd_issuer (Ctl *ctl, int argc, char **argv);
int cmd_certificate (Ctl *ctl, int argc, char **argv);
int cmd_apply (Ctl *ctl, int argc, char **argv);
int cmd_export (Ctl *ctl, int argc, char **argv);
int cmd_sync (Ctl *ctl, int argc, char **argv);
int cmd_enroll (Ctl *ctl, int argc, char **argv);
int cmd_topup (Ctl *ctl, int argc, char **argv);
int cmd_defund (Ctl *ctl, int argc, char **argv);

/* --- stalls nearby (tallyctl-scan.c) --- */

int cmd_scan (Ctl *ctl, int argc, char **argv);

/* --- following payments (tallyctl-follow.c) --- */

void on_owner_vanished (GDBusConnection *bus, const char *name, gpointer user_data);
/* Follows the payment at @path until done or failed. */
int follow_payment (Ctl *ctl, const char *path);
int cmd_request (Ctl *ctl, int argc, char **argv);

/* --- the request URI as a QR code (tallyctl-qr.c) --- */

/* Lines of UTF-8 half blocks, light modules drawn. */
char *qr_terminal (const char *text, GError **error);
gboolean qr_write_svg (const char *text, const char *path, GError **error);
gboolean qr_write_png (const char *text, const char *path, GError **error);

/* --- paying (tallyctl-pay.c) --- */

void stop_prompt (Ctl *ctl);
int cmd_pay (Ctl *ctl, int argc, char **argv);

G_END_DECLS
