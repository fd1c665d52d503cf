/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The daemon: one register, the payee listener (a stream address, and
 * Bluetooth LE through BlueZ when [transport] ble=true), the payments, and
 * their D-Bus objects.  tallyd owns a bus name and exports a TallyDaemon on it;
 * tests export one on a private bus.
 *
 *   /                    org.freedesktop.DBus.ObjectManager (register, payments)
 *   /org/tally           org.tally.AgentManager1
 *   /org/tally/register  org.tally.Register1
 *   /org/tally/payment/N org.tally.Payment1
 *   /org/tally/nearby/tag_TAG org.tally.Stall1 (while discovering)
 */

#include <gio/gio.h>

#include "tally-config.h"
#include "tally-dbus-auth.h"
#include "tally-dbus-nearby.h"
#include "tally-register.h"
#include "tally-sync.h"

G_BEGIN_DECLS

/* Payment objects kept for clients to read; older finished ones go. */
#define TALLY_DAEMON_MAX_PAYMENTS 64
/* The largest "Timeout" option, in seconds. */
#define TALLY_DAEMON_MAX_TIMEOUT 300
/* Pay calls of one uid in progress at once. */
#define TALLY_DAEMON_MAX_PAYS_PER_UID 4
/* Payers one RequestPayment may take ("Payers" option). */
#define TALLY_DAEMON_MAX_PAYERS 16
/* Payers in their handshakes with one request at once; more are refused
 * (POLICY).  Each holds a payee session and a nonce in the register. */
#define TALLY_DAEMON_MAX_HANDSHAKES 64
/* Seconds a payer's handshake may wait at wait-pay, its person comparing
 * codes and confirming, before its link is closed.  The steps before
 * (wait-hello, offer-sent) each get [transport] hello_timeout_seconds. */
#define TALLY_DAEMON_CONFIRM_TIMEOUT_SECONDS 30

typedef struct _TallyDaemon TallyDaemon;

/* Opens the register in config->register_dir (creating it with the issuer
 * key on first start) and starts listening for payers. */
TallyDaemon *tally_daemon_new (const TallyConfig *config, GError **error);
void tally_daemon_free (TallyDaemon *daemon);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyDaemon, tally_daemon_free)

/* Exports the objects on @connection; once only.  Every call to them is
 * authorized as [dbus] authorization says (tally-dbus-auth.h). */
gboolean tally_daemon_export (TallyDaemon *daemon, GDBusConnection *connection, GError **error);

/* NULL until exported. */
TallyDBusAuth *tally_daemon_get_auth (TallyDaemon *daemon);

TallyRegister *tally_daemon_get_register (TallyDaemon *daemon);
/* The online sync with [issuer] url; NULL without one. */
TallySync *tally_daemon_get_sync (TallyDaemon *daemon);
const char *tally_daemon_get_listen_address (TallyDaemon *daemon);
/* Seconds a Bluetooth LE central that connects and writes nothing keeps
 * its connection: [transport] hello_timeout_seconds, but at least
 * TALLY_GATT_SERVER_DEFAULT_IDLE_SECONDS, since the clock starts at the
 * connection, before the phone's GATT discovery and notification setup
 * (seconds on some phones). */
guint tally_daemon_get_ble_idle_seconds (TallyDaemon *daemon);
guint tally_daemon_get_timeout (TallyDaemon *daemon);
guint tally_daemon_get_payment_count (TallyDaemon *daemon);

/* Register1.StartDiscovery/StopDiscovery for the caller @sender
 * (tally-dbus-nearby.h): NOT_SUPPORTED without Bluetooth LE. */
gboolean
tally_daemon_start_discovery (TallyDaemon *daemon, const char *sender, guint32 uid, GError **error);
gboolean tally_daemon_stop_discovery (TallyDaemon *daemon, const char *sender, GError **error);
gboolean tally_daemon_is_discovering (TallyDaemon *daemon);
/* NULL until exported. */
TallyDBusNearby *tally_daemon_get_nearby (TallyDaemon *daemon);

/* For the Register1 glue.  Both return the new payment's object path.
 *
 * A request takes up to @payers payments.  Every payer that connects gets
 * its own payee session (its own nonce, same amount and memo), so several
 * may be in their handshakes at once; the request belongs to the first
 * valid Pay, and once @payers are credited the others are told
 * ALREADY_PAID.  A link that does not bring its next message (Hello,
 * Reveal) within [transport] hello_timeout_seconds, or its Pay within
 * TALLY_DAEMON_CONFIRM_TIMEOUT_SECONDS, is closed; it never ends the
 * request.  One Payment1 object per payer to come
 * shows the oldest handshake in progress (or "waiting") and finishes with
 * the credited one (docs/dbus-api.md).  With Bluetooth LE the payee
 * advertises while the request is open, with a random tag per request
 * (the payments' Address, "ble:TAG"). */
char *tally_daemon_request_payment (TallyDaemon *daemon,
                                    guint32 uid,
                                    gint64 amount,
                                    const char *memo,
                                    guint timeout_seconds,
                                    guint payers,
                                    GError **error);
/* An agent of @uid confirms the payment: @sender's own when it registered
 * one (tally_agent_manager_confirm ()).  @address must be allowed by
 * [payment] allowed_targets (POLICY), and @uid may have at most
 * TALLY_DAEMON_MAX_PAYS_PER_UID Pay calls in progress (POLICY).  The Hello
 * names the request @tag (8 lower-case hex digits, or NULL), or the tag
 * of a "ble:TAG" address (INVALID_ARGUMENT when the two differ). */
char *tally_daemon_pay (TallyDaemon *daemon,
                        const char *address,
                        const char *tag,
                        const char *sender,
                        guint32 uid,
                        guint timeout_seconds,
                        GError **error);
/* The register changed outside a payment: refresh Register1. */
void tally_daemon_register_changed (TallyDaemon *daemon);

G_END_DECLS
