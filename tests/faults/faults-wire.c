/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "faults-wire.h"

typedef struct
{
  GQueue fragments; /* GBytes, in arrival order */
  TallyReassembler *reassembler;
  GBytes *last_message; /* the previous message, for stale copies */
} Direction;

struct _FaultsWire
{
  gsize mtu;
  Direction dir[2]; /* indexed by the receiving side */
};

const char *
faults_wire_fault_to_string (FaultsWireFault fault)
{
  switch (fault) {
  case FAULTS_WIRE_NONE: return "none";
  case FAULTS_WIRE_DROP_MESSAGE: return "drop-message";
  case FAULTS_WIRE_DROP_FRAGMENT: return "drop-fragment";
  case FAULTS_WIRE_DUPLICATE_MESSAGE: return "duplicate-message";
  case FAULTS_WIRE_DUPLICATE_FRAGMENT: return "duplicate-fragment";
  case FAULTS_WIRE_REORDER_FRAGMENTS: return "reorder-fragments";
  case FAULTS_WIRE_REORDER_STALE_MESSAGE: return "reorder-stale-message";
  case FAULTS_WIRE_TRUNCATE_MESSAGE: return "truncate-message";
  case FAULTS_WIRE_TRUNCATE_FRAGMENT: return "truncate-fragment";
  }
  return "unknown";
}

FaultsWire *
faults_wire_new (gsize mtu, guint timeout_ms)
{
  g_return_val_if_fail (mtu >= TALLY_FRAME_MIN_MTU && mtu <= TALLY_FRAME_MAX_MTU, NULL);

  FaultsWire *wire = g_new0 (FaultsWire, 1);
  wire->mtu = mtu;
  for (guint i = 0; i < G_N_ELEMENTS (wire->dir); i++) {
    g_queue_init (&wire->dir[i].fragments);
    wire->dir[i].reassembler = tally_reassembler_new (TALLY_FRAME_DEFAULT_MAX_MESSAGE, timeout_ms);
  }
  return wire;
}

static void
direction_clear (Direction *d)
{
  GBytes *frag;
  while ((frag = g_queue_pop_head (&d->fragments)) != NULL)
    g_bytes_unref (frag);
}

void
faults_wire_free (FaultsWire *wire)
{
  if (wire == NULL)
    return;
  for (guint i = 0; i < G_N_ELEMENTS (wire->dir); i++) {
    direction_clear (&wire->dir[i]);
    tally_reassembler_free (wire->dir[i].reassembler);
    g_clear_pointer (&wire->dir[i].last_message, g_bytes_unref);
  }
  g_free (wire);
}

static GPtrArray *
split (FaultsWire *wire, GBytes *message)
{
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (message, &len);
  GPtrArray *frags =
    tally_frame_split (data, len, wire->mtu, TALLY_FRAME_DEFAULT_MAX_MESSAGE, &error);
  g_assert_no_error (error);
  return frags;
}

static void
enqueue_all (Direction *d, GPtrArray *frags)
{
  for (guint i = 0; i < frags->len; i++)
    g_queue_push_tail (&d->fragments, g_bytes_ref (frags->pdata[i]));
}

FaultsWireFault
faults_wire_send (FaultsWire *wire,
                  FaultsSide from,
                  GBytes *message,
                  FaultsWireFault fault,
                  guint pick)
{
  g_return_val_if_fail (wire != NULL && message != NULL, FAULTS_WIRE_NONE);

  Direction *d = &wire->dir[from == FAULTS_SIDE_PAYER ? FAULTS_SIDE_PAYEE : FAULTS_SIDE_PAYER];
  g_autoptr (GPtrArray) frags = split (wire, message);
  g_autoptr (GBytes) stale = d->last_message ? g_bytes_ref (d->last_message) : NULL;
  g_clear_pointer (&d->last_message, g_bytes_unref);
  d->last_message = g_bytes_ref (message);

  switch (fault) {
  case FAULTS_WIRE_NONE: break;
  case FAULTS_WIRE_DROP_MESSAGE: return fault;
  case FAULTS_WIRE_DROP_FRAGMENT:
    if (frags->len < 2) {
      /* Dropping the only fragment is dropping the message. */
      return FAULTS_WIRE_DROP_MESSAGE;
    }
    g_ptr_array_remove_index (frags, pick % frags->len);
    enqueue_all (d, frags);
    return fault;
  case FAULTS_WIRE_DUPLICATE_MESSAGE:
    enqueue_all (d, frags);
    enqueue_all (d, frags);
    return fault;
  case FAULTS_WIRE_DUPLICATE_FRAGMENT: {
    guint i = pick % frags->len;
    g_ptr_array_insert (frags, i, g_bytes_ref (frags->pdata[i]));
    enqueue_all (d, frags);
    return fault;
  }
  case FAULTS_WIRE_REORDER_FRAGMENTS: {
    if (frags->len < 2)
      break;
    guint i = pick % (frags->len - 1);
    gpointer tmp = frags->pdata[i];
    frags->pdata[i] = frags->pdata[i + 1];
    frags->pdata[i + 1] = tmp;
    enqueue_all (d, frags);
    return fault;
  }
  case FAULTS_WIRE_REORDER_STALE_MESSAGE: {
    if (stale == NULL)
      break;
    enqueue_all (d, frags);
    g_autoptr (GPtrArray) old = split (wire, stale);
    enqueue_all (d, old);
    return fault;
  }
  case FAULTS_WIRE_TRUNCATE_MESSAGE:
    if (frags->len < 2) {
      /* No fragment at all of a one-fragment message: a drop. */
      return FAULTS_WIRE_DROP_MESSAGE;
    }
    g_ptr_array_set_size (frags, 1 + pick % (frags->len - 1));
    enqueue_all (d, frags);
    return fault;
  case FAULTS_WIRE_TRUNCATE_FRAGMENT: {
    guint i = pick % frags->len;
    gsize len;
    const guint8 *data = g_bytes_get_data (frags->pdata[i], &len);
    /* Keep at least the kind byte; lose at least one byte. */
    gsize keep = len > 1 ? 1 + (pick / frags->len) % (len - 1) : 0;
    GBytes *cut = g_bytes_new (data, keep);
    g_bytes_unref (frags->pdata[i]);
    frags->pdata[i] = cut;
    if (keep == 0)
      g_ptr_array_remove_index (frags, i);
    enqueue_all (d, frags);
    return fault;
  }
  }
  enqueue_all (d, frags);
  return FAULTS_WIRE_NONE;
}

gboolean
faults_wire_deliver (FaultsWire *wire,
                     FaultsSide to,
                     gint64 now_us,
                     GBytes **message,
                     GError **error)
{
  g_return_val_if_fail (wire != NULL && message != NULL, FALSE);

  Direction *d = &wire->dir[to];
  *message = NULL;
  g_autoptr (GBytes) frag = g_queue_pop_head (&d->fragments);
  if (frag == NULL)
    return FALSE;
  gsize len;
  const guint8 *data = g_bytes_get_data (frag, &len);
  tally_reassembler_push (d->reassembler, data, len, now_us, message, error);
  return TRUE;
}

gboolean
faults_wire_check (FaultsWire *wire, FaultsSide to, gint64 now_us, GError **error)
{
  g_return_val_if_fail (wire != NULL, FALSE);
  return tally_reassembler_check (wire->dir[to].reassembler, now_us, error);
}

void
faults_wire_cut (FaultsWire *wire)
{
  g_return_if_fail (wire != NULL);
  for (guint i = 0; i < G_N_ELEMENTS (wire->dir); i++)
    direction_clear (&wire->dir[i]);
}
