/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * An in-process link between a payer and a payee, sans-I/O: each message
 * is split by tally-frame at the wire's MTU and reassembled on the other
 * side with an explicit clock, as a TallyChannel does over a real link.
 * Faults are applied when a message is sent, to the whole message or to
 * one of its fragments:
 *
 *   drop       the message, or one fragment of it, never arrives
 *   duplicate  the message, or one fragment of it, arrives twice
 *   reorder    two fragments swap places, or a stale copy of the
 *              previous message arrives after this one
 *   truncate   only a prefix of the fragments arrives, or one fragment
 *              loses its tail
 */

#include <glib.h>

#include "tally-frame.h"

G_BEGIN_DECLS

typedef enum
{
  FAULTS_SIDE_PAYER,
  FAULTS_SIDE_PAYEE,
} FaultsSide;

typedef enum
{
  FAULTS_WIRE_NONE,
  FAULTS_WIRE_DROP_MESSAGE,
  FAULTS_WIRE_DROP_FRAGMENT,
  FAULTS_WIRE_DUPLICATE_MESSAGE,
  FAULTS_WIRE_DUPLICATE_FRAGMENT,
  FAULTS_WIRE_REORDER_FRAGMENTS,
  FAULTS_WIRE_REORDER_STALE_MESSAGE,
  FAULTS_WIRE_TRUNCATE_MESSAGE,
  FAULTS_WIRE_TRUNCATE_FRAGMENT,
} FaultsWireFault;

const char *faults_wire_fault_to_string (FaultsWireFault fault);

typedef struct _FaultsWire FaultsWire;

/* @mtu >= TALLY_FRAME_MIN_MTU. */
FaultsWire *faults_wire_new (gsize mtu, guint timeout_ms);
void faults_wire_free (FaultsWire *wire);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FaultsWire, faults_wire_free)

/*
 * Queues @message from @from towards the other side with @fault.  @pick
 * chooses the fragment or prefix a fragment-level fault applies to (taken
 * modulo what the message offers).  Returns the fault actually applied:
 * NONE when the message offers nothing for it (one fragment cannot be
 * reordered, a first message has no stale predecessor).
 */
FaultsWireFault faults_wire_send (FaultsWire *wire,
                                  FaultsSide from,
                                  GBytes *message,
                                  FaultsWireFault fault,
                                  guint pick);

/*
 * Delivers the next queued fragment towards @to at @now_us.  Returns FALSE
 * when nothing is queued.  Otherwise *message is a whole message that
 * completed (or NULL while more fragments are due), and *error is set when
 * the reassembler refused the fragment: the receiving side's channel
 * closes with that error.
 */
gboolean faults_wire_deliver (FaultsWire *wire,
                              FaultsSide to,
                              gint64 now_us,
                              GBytes **message,
                              GError **error);

/* FRAME_TIMEOUT when a partial message towards @to is too old at @now_us. */
gboolean faults_wire_check (FaultsWire *wire, FaultsSide to, gint64 now_us, GError **error);

/* Forgets everything queued in both directions (the link went away). */
void faults_wire_cut (FaultsWire *wire);

G_END_DECLS
