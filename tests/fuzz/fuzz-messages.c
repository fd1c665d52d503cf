/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * protobuf-c unpacking of every message in proto/tally.proto.
 *
 * Input: byte 0 picks the message type (index into `messages` below,
 * modulo its length; make-seeds writes seeds with the same indices), the
 * rest is the encoded message.
 *
 * Invariants:
 *  - tally_message_unpack refuses with MALFORMED what protobuf-c refuses,
 *    and what protobuf-c takes but cannot read back once packed again
 *    (proto/tally-core.c says why); it accepts everything else;
 * and for a message that tally_message_unpack accepts:
 *  - it packs to get_packed_size() bytes, and those bytes decode again and
 *    pack to the very same bytes (a canonical round trip, what
 *    tally_envelope_copy and every stored envelope rely on);
 *  - a SessionMessage that names a oneof case carries that sub-message
 *    (tally_session_handle dereferences it unchecked).
 */

#include <string.h>

#include "fuzz-common.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv);

/* Append only: seeds name a type by its index. */
static const ProtobufCMessageDescriptor *const messages[] = {
  &tally__session_message__descriptor,
  &tally__hello__descriptor,
  &tally__offer__descriptor,
  &tally__offer_body__descriptor,
  &tally__offer_sealed__descriptor,
  &tally__pay_body__descriptor,
  &tally__pay_sealed__descriptor,
  &tally__receipt_sealed__descriptor,
  &tally__payment_request__descriptor,
  &tally__deposit_permission__descriptor,
  &tally__receipt__descriptor,
  &tally__revocation_list__descriptor,
  &tally__load_voucher__descriptor,
  &tally__register_certificate__descriptor,
  &tally__issuer_key_set__descriptor,
  &tally__reconciliation_bundle__descriptor,
  &tally__reconciliation_result__descriptor,
  &tally__fraud_proof__descriptor,
  &tally__defund_record__descriptor,
  &tally__signed_envelope__descriptor,
  &tally__amount__descriptor,
  &tally__limits__descriptor,
  &tally__spent_entry__descriptor,
  &tally__received_entry__descriptor,
  &tally__error__descriptor,
  &tally__reveal_sealed__descriptor,
};

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init ();
  return 0;
}

static void
check_session_message (const Tally__SessionMessage *m)
{
  switch (m->msg_case) {
  case TALLY__SESSION_MESSAGE__MSG_HELLO: g_assert_nonnull (m->hello); break;
  case TALLY__SESSION_MESSAGE__MSG_OFFER: g_assert_nonnull (m->offer); break;
  case TALLY__SESSION_MESSAGE__MSG_ERROR: g_assert_nonnull (m->error); break;
  case TALLY__SESSION_MESSAGE__MSG_PAY:
  case TALLY__SESSION_MESSAGE__MSG_RECEIPT:
  case TALLY__SESSION_MESSAGE__MSG__NOT_SET: break;
  case _TALLY__SESSION_MESSAGE__MSG__CASE_IS_INT_SIZE: g_assert_not_reached ();
  }
}

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  if (size == 0)
    return 0;
  const ProtobufCMessageDescriptor *desc = messages[data[0] % G_N_ELEMENTS (messages)];
  const guint8 *body = data + 1;
  gsize len = size - 1;

  ProtobufCMessage *msg = protobuf_c_message_unpack (desc, NULL, len, body);

  g_autoptr (GError) error = NULL;
  ProtobufCMessage *ours = tally_message_unpack (desc, body, len, "fuzz", &error);
  if (ours == NULL) {
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
    if (msg != NULL) {
      /* Refused although protobuf-c took it: only because protobuf-c
       * cannot read back what it would write for it, or because a string
       * in it is no text a peer may send (protocol.md 1). */
      g_autoptr (GBytes) packed = tally_message_pack (msg);
      ProtobufCMessage *again = protobuf_c_message_unpack (
        desc, NULL, g_bytes_get_size (packed), g_bytes_get_data (packed, NULL));
      g_autoptr (GError) text_error = NULL;
      if (again != NULL) {
        g_assert_false (tally_message_check_text (msg, "fuzz", &text_error));
        g_assert_error (text_error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
        protobuf_c_message_free_unpacked (again, NULL);
      }
      protobuf_c_message_free_unpacked (msg, NULL);
    }
    return 0;
  }
  g_assert_no_error (error);
  g_assert_nonnull (msg);
  g_assert_true (ours->descriptor == desc);

  if (desc == &tally__session_message__descriptor)
    check_session_message ((const Tally__SessionMessage *) msg);

  gsize packed_size = protobuf_c_message_get_packed_size (msg);
  g_autoptr (GBytes) packed = tally_message_pack (msg);
  g_assert_cmpuint (g_bytes_get_size (packed), ==, packed_size);
  g_autoptr (GBytes) packed_ours = tally_message_pack (ours);
  g_assert_true (g_bytes_equal (packed, packed_ours));

  gsize plen;
  const guint8 *pdata = g_bytes_get_data (packed, &plen);
  ProtobufCMessage *again = protobuf_c_message_unpack (desc, NULL, plen, pdata);
  g_assert_nonnull (again);
  if (desc == &tally__session_message__descriptor)
    check_session_message ((const Tally__SessionMessage *) again);
  g_autoptr (GBytes) repacked = tally_message_pack (again);
  g_assert_true (g_bytes_equal (packed, repacked));

  protobuf_c_message_free_unpacked (again, NULL);
  protobuf_c_message_free_unpacked (ours, NULL);
  protobuf_c_message_free_unpacked (msg, NULL);
  return 0;
}
