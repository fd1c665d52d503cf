-- SPDX-License-Identifier: LGPL-2.1-or-later
--
-- Wireshark dissector for Tally payment sessions over Bluetooth LE.
--
--   wireshark -X lua_script:tools/tally.lua capture.btsnoop
--   tshark -X lua_script:tools/tally.lua -r capture.btsnoop -Y tally
--
-- or copy it to ~/.local/lib/wireshark/plugins/.  docs/btmon.md has the
-- workflow and the field list.
--
-- What it decodes:
--   * Each ATT value written to the rx characteristic (payer -> payee) or
--     notified on the tx characteristic (payee -> payer) is one fragment of
--     docs/framing.md: kind, sequence, total length, data.
--   * Fragments are reassembled per connection and direction (capture
--     interface, controller, connection handle, characteristic) by the rule
--     of docs/framing.md, "Reassembly": with Enhanced ATT a fragment can
--     overtake the ones sent before it, the FIRST included, so each is
--     placed by its sequence number, held while it is up to 7 ahead of the
--     next one due.  The frame that completes a message shows the
--     SessionMessage of proto/tally.proto: Hello and Error in full,
--     Offer/reveal/pay/receipt with their ciphertext left opaque.
--   * Framing errors are flagged in tallyd's words where tallyd's
--     reassembler finds them; the receiver's maximum message and timeout
--     are preferences holding tallyd's values.  Unlike tallyd, which closes
--     the link, a FIRST or ONLY that arrives while a message is in progress
--     (or an ONLY while fragments wait for their FIRST) starts a new message
--     here, so one lost packet costs one message, not the rest of the
--     capture.  A lost fragment that nothing follows shows where the
--     connection ends (HCI Disconnection Complete), as tallyd's channel
--     reports a link closed in the middle of a message; a late one after
--     the timeout shows on the next fragment of its direction.
--   * Log lines that processes such as tallyd and bluetoothd send through
--     the kernel's HCI logging channel (btmon's "= ident: message").
--
-- How it finds our traffic:
--   * btatt hands every attribute value whose UUID it learnt from GATT
--     discovery in the capture to the "bluetooth.uuid" table, where this
--     script registers the rx and tx characteristic UUIDs.
--   * When the capture has no discovery (BlueZ caches the GATT layout and
--     skips it on reconnection, or the capture started late), set the
--     handles by hand: Preferences > Protocols > Tally, or
--     tshark -o tally.rx_handle:0x0012 -o tally.tx_handle:0x0014.
--   * BlueZ notifies BlueZ with Multiple Handle Value Notifications
--     (opcode 0x23), which btatt 4.0 does not know: this script decodes
--     them itself, using the handles it saw in the discovery.
--   * BlueZ talks to BlueZ over Enhanced ATT too: L2CAP channels on PSM
--     0x0027 besides the fixed ATT channel.  Wireshark 4.0 leaves that PSM
--     undecoded, so this script hands it to btatt (preference "eatt").

local tally = Proto("tally", "Tally payment session")

local RX_UUID = "3e9bc08b-8b49-4fc8-ae66-5864293b3bbe"
local TX_UUID = "3e9bc08b-8b49-4fc8-ae66-5864293b3bbf"
local EATT_PSM = 0x0027

-- docs/framing.md
local KIND_FIRST, KIND_MIDDLE, KIND_LAST, KIND_ONLY = 1, 2, 3, 4
local KINDS = { [1] = "FIRST", [2] = "MIDDLE", [3] = "LAST", [4] = "ONLY" }
local SEQ_MODULO = 16
local REORDER_WINDOW = 7         -- TALLY_FRAME_REORDER_WINDOW
local HARD_MAX_MESSAGE = 65535   -- the u16 length field
local TALLYD_MAX_MESSAGE = 8192  -- TALLY_SESSION_MAX_MESSAGE, tallyd's channels
local TALLYD_TIMEOUT_MS = 10000  -- TALLY_FRAME_DEFAULT_TIMEOUT_MS

-- proto/tally.proto, SessionMessage's oneof
local MESSAGE_TYPES = {
  [1] = "hello", [2] = "offer", [3] = "pay", [4] = "receipt", [5] = "error", [6] = "reveal",
}

-- proto/tally-error.h and tally_error_to_string (); append, never renumber.
-- tests/tools checks this table against the C one.
local ERROR_NAMES = {
  [1] = "Failed", [2] = "InvalidArgument", [3] = "Malformed", [4] = "BadSignature",
  [5] = "WrongContext", [6] = "WrongIssuer", [7] = "CertificateExpired",
  [8] = "CertificateNotYetValid", [9] = "Revoked", [10] = "Replay", [11] = "WrongPayee",
  [12] = "WrongNonce", [13] = "AmountMismatch", [14] = "CurrencyMismatch",
  [15] = "InvalidAmount", [16] = "Overflow", [17] = "CounterReused", [18] = "ChainFork",
  [19] = "LimitPayment", [20] = "LimitBalance", [21] = "LimitCount", [22] = "LimitTime",
  [23] = "InsufficientFunds", [24] = "VoucherReplay", [25] = "FrameOversize",
  [26] = "FrameTruncated", [27] = "FrameUnknown", [28] = "FrameTimeout",
  [29] = "WrongState", [30] = "Decrypt", [31] = "Transcript", [32] = "Policy",
  [33] = "StaleRevocationList", [34] = "NoCertificate", [35] = "Storage",
  [36] = "Rejected", [37] = "Cancelled", [38] = "Disconnected", [39] = "Version",
  [40] = "NotFound", [41] = "Exists", [42] = "WrongRegister", [43] = "Timeout", [44] = "Expired",
  [45] = "Incomplete", [46] = "NotAuthorized", [47] = "AlreadyPaid",
  [48] = "RequestUnnamed",
}

local PRIORITIES = {
  [0] = "emergency", [1] = "alert", [2] = "critical", [3] = "error",
  [4] = "warning", [5] = "notice", [6] = "info", [7] = "debug",
}

-- ATT opcodes that carry a fragment, and which way
local ATT_WRITE_REQUEST = 0x12
local ATT_WRITE_COMMAND = 0x52
local ATT_SIGNED_WRITE_COMMAND = 0xd2
local ATT_NOTIFICATION = 0x1b
local ATT_INDICATION = 0x1d
local ATT_MULTIPLE_NOTIFICATION = 0x23
local ATT_READ_BY_TYPE_RESPONSE = 0x09
local ROLE_OF_OPCODE = {
  [ATT_WRITE_REQUEST] = "rx", [ATT_WRITE_COMMAND] = "rx", [ATT_SIGNED_WRITE_COMMAND] = "rx",
  [ATT_NOTIFICATION] = "tx", [ATT_INDICATION] = "tx", [ATT_MULTIPLE_NOTIFICATION] = "tx",
}
local ROLE_TEXT = { rx = "payer -> payee (rx)", tx = "payee -> payer (tx)" }

-- Linux monitor opcode of a user logging packet (src/shared/btsnoop.h)
local MONITOR_USER_LOGGING = 13
-- HCI Disconnection Complete event
local HCI_DISCONNECTION_COMPLETE = 0x05

local f = {
  characteristic = ProtoField.string("tally.characteristic", "Characteristic",
    "rx: written by the payer; tx: notified by the payee"),
  kind = ProtoField.uint8("tally.kind", "Kind", base.DEC, KINDS, 0xf0),
  seq = ProtoField.uint8("tally.seq", "Sequence", base.DEC, nil, 0x0f),
  total_length = ProtoField.uint16("tally.total_length", "Total length", base.DEC, nil, nil,
    "Length of the whole message, announced by FIRST and ONLY"),
  data = ProtoField.bytes("tally.data", "Fragment data"),
  fragment_index = ProtoField.uint32("tally.fragment_index", "Fragment index", base.DEC, nil, nil,
    "Position of this fragment in its message, from 0"),
  reassembled_in = ProtoField.framenum("tally.reassembled_in", "Reassembled in"),
  first_frame = ProtoField.framenum("tally.first_frame", "First fragment in"),
  fragments = ProtoField.uint32("tally.fragments", "Fragments"),
  framing_error = ProtoField.string("tally.framing_error", "Framing error"),
  message_length = ProtoField.uint32("tally.message_length", "Message length"),
  message = ProtoField.bytes("tally.message", "Message", base.NONE,
    "The reassembled SessionMessage"),
  type = ProtoField.string("tally.type", "Message type",
    "SessionMessage field: hello, offer, reveal, pay, receipt or error"),
  hello_version = ProtoField.uint32("tally.hello.version", "Version"),
  hello_key = ProtoField.bytes("tally.hello.ephemeral_public_key", "Ephemeral public key"),
  hello_serial = ProtoField.uint64("tally.hello.revocation_serial", "Revocation serial"),
  hello_commitment = ProtoField.bytes("tally.hello.commitment", "Commitment", base.NONE,
    "H(\"handshake-commit\", e_a || N_a); N_a travels sealed in the reveal"),
  hello_request_tag = ProtoField.bytes("tally.hello.request_tag", "Request tag", base.NONE,
    "The payee's open request this payer answers (advertised tag or URI)"),
  offer_key = ProtoField.bytes("tally.offer.ephemeral_public_key", "Ephemeral public key"),
  offer_ciphertext = ProtoField.bytes("tally.offer.ciphertext", "Ciphertext"),
  offer_ciphertext_length = ProtoField.uint32("tally.offer.ciphertext_length", "Ciphertext length"),
  reveal_ciphertext = ProtoField.bytes("tally.reveal.ciphertext", "Ciphertext"),
  reveal_ciphertext_length = ProtoField.uint32("tally.reveal.ciphertext_length",
    "Ciphertext length"),
  pay_ciphertext = ProtoField.bytes("tally.pay.ciphertext", "Ciphertext"),
  pay_ciphertext_length = ProtoField.uint32("tally.pay.ciphertext_length", "Ciphertext length"),
  receipt_ciphertext = ProtoField.bytes("tally.receipt.ciphertext", "Ciphertext"),
  receipt_ciphertext_length = ProtoField.uint32("tally.receipt.ciphertext_length",
    "Ciphertext length"),
  error_code = ProtoField.uint32("tally.error.code", "Code", base.DEC, ERROR_NAMES),
  error_name = ProtoField.string("tally.error.name", "Name"),
  error_message = ProtoField.string("tally.error.message", "Message"),
  unknown_field = ProtoField.uint32("tally.unknown_field", "Unknown field"),
  log_priority = ProtoField.uint8("tally.log.priority", "Priority", base.DEC, PRIORITIES),
  log_ident = ProtoField.string("tally.log.ident", "Ident"),
  log_message = ProtoField.string("tally.log.message", "Message"),
}
tally.fields = f

local ef = {
  framing = ProtoExpert.new("tally.expert.framing", "Tally framing error",
    expert.group.MALFORMED, expert.severity.ERROR),
  malformed = ProtoExpert.new("tally.expert.malformed", "Malformed SessionMessage",
    expert.group.MALFORMED, expert.severity.ERROR),
  incomplete = ProtoExpert.new("tally.expert.incomplete", "Message abandoned incomplete",
    expert.group.SEQUENCE, expert.severity.WARN),
  error_message = ProtoExpert.new("tally.expert.error", "Tally Error message",
    expert.group.RESPONSE_CODE, expert.severity.NOTE),
}
tally.experts = { ef.framing, ef.malformed, ef.incomplete, ef.error_message }

-- Strings, so that handles can be given in hex (0x0012) as Wireshark shows them.
tally.prefs.rx_handle = Pref.string("rx characteristic handle", "",
  "Value handle of the rx characteristic, e.g. 0x0012, for captures without GATT discovery (empty: off)")
tally.prefs.tx_handle = Pref.string("tx characteristic handle", "",
  "Value handle of the tx characteristic, e.g. 0x0014, for captures without GATT discovery (empty: off)")
tally.prefs.eatt = Pref.bool("Decode EATT (PSM 0x0027) as ATT", true,
  "Hand L2CAP channels on PSM 0x0027 to the ATT dissector when nothing else claims them")
tally.prefs.log = Pref.bool("Decode monitor log lines", true,
  "Show the ident and message of HCI monitor user logging packets (tallyd, bluetoothd)")
tally.prefs.max_message = Pref.uint("Receiver's maximum message (bytes)", TALLYD_MAX_MESSAGE,
  "Longest message the receiver takes: tallyd's is 8192; at most 65535")
tally.prefs.timeout_ms = Pref.uint("Reassembly timeout (ms)", TALLYD_TIMEOUT_MS,
  "A message still incomplete this long after its first fragment arrived fails: tallyd's is 10000 (0: never)")

local fx = {
  adapter = Field.new("hci_mon.adapter_id"),
  monitor_opcode = Field.new("hci_mon.opcode"),
  interface = Field.new("frame.interface_id"),
  chandle = Field.new("bthci_acl.chandle"),
  att_opcode = Field.new("btatt.opcode"),
  att_handle = Field.new("btatt.handle"),
  att = Field.new("btatt"),
  event_code = Field.new("bthci_evt.code"),
  event_handle = Field.new("bthci_evt.connection_handle"),
}

-- State of the first pass; revisits (the GUI, tshark -2) read `results`.
local streams      -- stream key -> message in progress
local results      -- frame number -> { [n] = what the n-th fragment of that frame gave }
local learned      -- "interface:adapter:chandle" -> { [handle] = "rx" | "tx" }
local learned_any  -- "interface:adapter" -> { [handle] = "rx" | "tx" }
local closed       -- frame number of a disconnection -> messages it cut short
-- Within one dissection of one frame
local call_frame, call_n, frame_handled = -1, 0, false

local function reset()
  streams, results, learned, learned_any, closed = {}, {}, {}, {}, {}
  call_frame, call_n, frame_handled = -1, 0, false
end
tally.init = reset
reset()

local function last_value(extractor)
  local all = { extractor() }
  if #all == 0 then
    return nil
  end
  return all[#all].value
end

local function numeric(v)
  if v == nil then
    return 0
  end
  if type(v) == "userdata" then
    return v:tonumber()
  end
  return tonumber(v) or 0
end

local function link_keys()
  local interface = numeric(last_value(fx.interface))
  local adapter = numeric(last_value(fx.adapter))
  local chandle = numeric(last_value(fx.chandle))
  local link = string.format("%d:%d", interface, adapter)
  return link, string.format("%s:%d", link, chandle)
end

local function next_call(pinfo)
  if pinfo.number ~= call_frame then
    call_frame, call_n = pinfo.number, 0
  end
  call_n = call_n + 1
  return call_n
end

-- Protocol Buffers wire format -------------------------------------------------

local function read_varint(tvb, off, limit)
  local value = UInt64(0)
  local shift = 0
  while off < limit do
    local b = tvb(off, 1):uint()
    off = off + 1
    if shift < 64 then
      value = value:bor(UInt64(b % 128):lshift(shift))
    end
    if b < 128 then
      return value, off
    end
    shift = shift + 7
    if shift > 63 then
      return nil, off
    end
  end
  return nil, off
end

-- The fields between @off and @limit: { number, wire_type, start, value_off,
-- value_len, varint }; nil and a reason when they do not parse.
local function read_fields(tvb, off, limit)
  local fields = {}
  while off < limit do
    local start = off
    local key
    key, off = read_varint(tvb, off, limit)
    if key == nil then
      return nil, string.format("truncated field key at byte %d", start)
    end
    local number = key:rshift(3):tonumber()
    local wire_type = key:band(UInt64(7)):tonumber()
    local field = { number = number, wire_type = wire_type, start = start }
    if wire_type == 0 then
      field.varint, off = read_varint(tvb, off, limit)
      if field.varint == nil then
        return nil, string.format("field %d: varint truncated or longer than 10 bytes", number)
      end
      field.value_off, field.value_len = start, off - start
    elseif wire_type == 2 then
      local len
      len, off = read_varint(tvb, off, limit)
      if len == nil or len > UInt64(limit - off) then
        return nil, string.format("field %d: length runs past the message", number)
      end
      field.value_off, field.value_len = off, len:tonumber()
      off = off + field.value_len
    elseif wire_type == 1 or wire_type == 5 then
      local size = wire_type == 1 and 8 or 4
      if off + size > limit then
        return nil, string.format("field %d: truncated fixed-size value", number)
      end
      field.value_off, field.value_len = off, size
      off = off + size
    else
      return nil, string.format("field %d: unsupported wire type %d", number, wire_type)
    end
    field.end_off = off
    fields[#fields + 1] = field
  end
  return fields
end

local function field_range(tvb, field)
  return tvb(field.start, field.end_off - field.start)
end

local function value_range(tvb, field)
  if field.value_len == 0 then
    return tvb(field.value_off, 0)
  end
  return tvb(field.value_off, field.value_len)
end

local function add_unknown(tree, tvb, field)
  tree:add(f.unknown_field, field_range(tvb, field), field.number)
end

local function expect_wire(pinfo, tree, tvb, field, wire_type, what)
  if field.wire_type ~= wire_type then
    tree:add_proto_expert_info(ef.malformed,
      string.format("%s has wire type %d, expected %d", what, field.wire_type, wire_type))
    return false
  end
  return true
end

-- SessionMessage ----------------------------------------------------------------

local function dissect_hello(tvb, pinfo, tree, off, limit)
  local fields, why = read_fields(tvb, off, limit)
  if fields == nil then
    tree:add_proto_expert_info(ef.malformed, "Hello: " .. why)
    return "Hello (malformed)"
  end
  local version
  for _, field in ipairs(fields) do
    if field.number == 1 and expect_wire(pinfo, tree, tvb, field, 0, "Hello.version") then
      version = field.varint:tonumber()
      tree:add(f.hello_version, field_range(tvb, field), version)
    elseif field.number == 2 and expect_wire(pinfo, tree, tvb, field, 2, "Hello.ephemeral_public_key") then
      tree:add(f.hello_key, value_range(tvb, field))
    elseif field.number == 3 and expect_wire(pinfo, tree, tvb, field, 0, "Hello.revocation_serial") then
      tree:add(f.hello_serial, field_range(tvb, field), field.varint)
    elseif field.number == 4 and expect_wire(pinfo, tree, tvb, field, 2, "Hello.commitment") then
      tree:add(f.hello_commitment, value_range(tvb, field))
    elseif field.number == 5 and expect_wire(pinfo, tree, tvb, field, 2, "Hello.request_tag") then
      tree:add(f.hello_request_tag, value_range(tvb, field))
    elseif field.number > 5 then
      add_unknown(tree, tvb, field)
    end
  end
  return string.format("Hello v%s", version ~= nil and tostring(version) or "?")
end

local function dissect_offer(tvb, pinfo, tree, off, limit)
  local fields, why = read_fields(tvb, off, limit)
  if fields == nil then
    tree:add_proto_expert_info(ef.malformed, "Offer: " .. why)
    return "Offer (malformed)"
  end
  local ciphertext_len = 0
  for _, field in ipairs(fields) do
    if field.number == 1 and expect_wire(pinfo, tree, tvb, field, 2, "Offer.ephemeral_public_key") then
      tree:add(f.offer_key, value_range(tvb, field))
    elseif field.number == 2 and expect_wire(pinfo, tree, tvb, field, 2, "Offer.ciphertext") then
      ciphertext_len = field.value_len
      tree:add(f.offer_ciphertext_length, field_range(tvb, field), ciphertext_len)
      tree:add(f.offer_ciphertext, value_range(tvb, field))
    elseif field.number > 2 then
      add_unknown(tree, tvb, field)
    end
  end
  return string.format("Offer, %d bytes of ciphertext", ciphertext_len)
end

local function dissect_error(tvb, pinfo, tree, off, limit)
  local fields, why = read_fields(tvb, off, limit)
  if fields == nil then
    tree:add_proto_expert_info(ef.malformed, "Error: " .. why)
    return "Error (malformed)"
  end
  local code, message = 0, ""
  for _, field in ipairs(fields) do
    if field.number == 1 and expect_wire(pinfo, tree, tvb, field, 0, "Error.code") then
      code = field.varint:tonumber()
      tree:add(f.error_code, field_range(tvb, field), code)
    elseif field.number == 2 and expect_wire(pinfo, tree, tvb, field, 2, "Error.message") then
      message = value_range(tvb, field):string(ENC_UTF_8)
      tree:add(f.error_message, value_range(tvb, field), message)
    elseif field.number > 2 then
      add_unknown(tree, tvb, field)
    end
  end
  local name = ERROR_NAMES[code] or string.format("Unknown(%d)", code)
  tree:add(f.error_name, name):set_generated()
  tree:add_proto_expert_info(ef.error_message, string.format("Error %d %s: %s", code, name, message))
  return string.format("Error %s: %s", name, message)
end

local function dissect_session_message(tvb, pinfo, tree)
  local len = tvb:len()
  tree:add(f.message_length, tvb(), len):set_generated()
  local fields, why = read_fields(tvb, 0, len)
  if fields == nil then
    tree:add_proto_expert_info(ef.malformed, "SessionMessage: " .. why)
    return "malformed SessionMessage"
  end
  local summary
  for _, field in ipairs(fields) do
    local name = MESSAGE_TYPES[field.number]
    if name == nil then
      add_unknown(tree, tvb, field)
    elseif expect_wire(pinfo, tree, tvb, field, 2, "SessionMessage." .. name) then
      local sub = tree:add(tally, field_range(tvb, field), name)
      sub:add(f.type, field_range(tvb, field), name)
      local off, limit = field.value_off, field.value_off + field.value_len
      if field.number == 1 then
        summary = dissect_hello(tvb, pinfo, sub, off, limit)
      elseif field.number == 2 then
        summary = dissect_offer(tvb, pinfo, sub, off, limit)
      elseif field.number == 3 then
        sub:add(f.pay_ciphertext_length, field_range(tvb, field), field.value_len)
        sub:add(f.pay_ciphertext, value_range(tvb, field))
        summary = string.format("pay, %d bytes of ciphertext", field.value_len)
      elseif field.number == 4 then
        sub:add(f.receipt_ciphertext_length, field_range(tvb, field), field.value_len)
        sub:add(f.receipt_ciphertext, value_range(tvb, field))
        summary = string.format("receipt, %d bytes of ciphertext", field.value_len)
      elseif field.number == 6 then
        sub:add(f.reveal_ciphertext_length, field_range(tvb, field), field.value_len)
        sub:add(f.reveal_ciphertext, value_range(tvb, field))
        summary = string.format("reveal, %d bytes of ciphertext", field.value_len)
      else
        summary = dissect_error(tvb, pinfo, sub, off, limit)
      end
      sub:append_text(": " .. summary)
    end
  end
  if summary == nil then
    tree:add_proto_expert_info(ef.malformed, "SessionMessage carries none of its fields")
    return "empty SessionMessage"
  end
  return summary
end

-- Fragments and reassembly ---------------------------------------------------------

local function max_message()
  return math.min(tally.prefs.max_message, HARD_MAX_MESSAGE)
end

-- Microseconds, as tallyd's monotonic clock counts them.
local function now_us(pinfo)
  return math.floor(pinfo.abs_ts * 1000000 + 0.5)
end

-- A message in progress: `placed` fragments are in `buf` (the FIRST among
-- them once `total` is set); `held[seq]` are fragments that overtook
-- others, up to REORDER_WINDOW ahead of the next one due.
local function stream_new(pinfo)
  return { placed = 0, held = {}, held_count = 0, held_bytes = 0, held_max_index = 0,
           have_last = false, last_index = 0, total = nil, buf = ByteArray.new(),
           received = 0, first_frame = nil, start_us = now_us(pinfo), results = {} }
end

local function abandon(stream_key, pinfo)
  local s = streams[stream_key]
  if s ~= nil then
    for _, earlier in ipairs(s.results) do
      earlier.abandoned_in = pinfo.number
    end
    streams[stream_key] = nil
  end
end

-- tally_reassembler_check (): FRAME_TIMEOUT's message, or nil.
local function timed_out(s, pinfo)
  local timeout_ms = tally.prefs.timeout_ms
  if s == nil or timeout_ms == 0 then
    return nil
  end
  local elapsed = now_us(pinfo) - s.start_us
  if elapsed <= timeout_ms * 1000 then
    return nil
  end
  if s.total == nil then
    return string.format("message without its FIRST after %d ms: %d bytes in %d fragments held, limit %d ms",
      math.floor(elapsed / 1000), s.held_bytes, s.held_count, timeout_ms)
  end
  return string.format("message of %d bytes incomplete after %d ms: %d bytes in %d fragments received, limit %d ms",
    s.total, math.floor(elapsed / 1000), s.received + s.held_bytes, s.placed + s.held_count, timeout_ms)
end

-- Appends the fragment due next; returns an error, or nil.  A LAST
-- completes the message: r.message.
local function place(s, r, kind, data)
  if kind == KIND_LAST and s.received + data:len() < s.total then
    return string.format("fragment %d: LAST ends the message after %d of %d announced bytes",
      s.placed, s.received + data:len(), s.total)
  end
  s.buf = s.buf .. data
  s.received = s.received + data:len()
  s.placed = s.placed + 1
  if kind == KIND_LAST then
    r.message, r.first_frame, r.fragments = s.buf, s.first_frame, s.placed
    s.complete = true
  end
  return nil
end

-- Places the held fragments the last placement made due, in index order.
local function drain(s, r)
  while not s.complete and s.held_count > 0 do
    local slot = s.held[s.placed % SEQ_MODULO]
    if slot == nil then
      break
    end
    s.held[s.placed % SEQ_MODULO] = nil
    s.held_count = s.held_count - 1
    s.held_bytes = s.held_bytes - slot.data:len()
    local why = place(s, r, slot.kind, slot.data)
    if why ~= nil then
      return why
    end
  end
  return nil
end

-- One fragment on its first dissection: what tally_reassembler_push () does
-- with it, in its order of checks, and what to show.  @unreadable: why the
-- fragment cannot be read (empty, unknown kind, short header), or nil.
local function reassemble(stream_key, pinfo, kind, seq, total, data, unreadable)
  local r = { }
  local s = streams[stream_key]
  local function fail(reason)
    r.error = reason
    abandon(stream_key, pinfo)
    return r
  end

  -- A stale message fails on its own.  tallyd's timer fails it at its
  -- deadline and closes the link; here the fragment that shows it late
  -- reports it, then counts afresh.
  r.timeout = timed_out(s, pinfo)
  if r.timeout ~= nil then
    abandon(stream_key, pinfo)
    s = nil
  end
  if unreadable ~= nil then
    if kind ~= KIND_FIRST and kind ~= KIND_ONLY then
      unreadable = string.format("fragment %d: %s", s and s.placed or 0, unreadable)
    end
    return fail(unreadable)
  end

  if kind == KIND_FIRST or kind == KIND_ONLY then
    if s ~= nil and s.total ~= nil then
      r.abandoned = string.format("message of %d bytes from frame %d abandoned after %d bytes",
        s.total, s.first_frame, s.received + s.held_bytes)
      abandon(stream_key, pinfo)
      s = nil
    elseif s ~= nil and kind == KIND_ONLY then
      -- Held fragments belong to a multi-fragment message, which an ONLY is not.
      r.abandoned = string.format("%d fragments held since frame %d abandoned, their FIRST never came",
        s.held_count, s.results[1].frame)
      abandon(stream_key, pinfo)
      s = nil
    end
    r.index = 0
    if seq ~= 0 then
      return fail(string.format("fragment 0: sequence %d, expected 0", seq))
    end
    if total == 0 then
      return fail(string.format("fragment 0: %s announces a length of 0", KINDS[kind]))
    end
    if total > max_message() then
      return fail(string.format("fragment 0: %s announces %d bytes, limit %d", KINDS[kind], total,
        max_message()))
    end
    if data:len() > total then
      return fail(string.format("fragment 0: %s carries %d bytes of data, more than the %d announced",
        KINDS[kind], data:len(), total))
    end
    if kind == KIND_ONLY then
      if data:len() < total then
        return fail(string.format("fragment 0: ONLY carries %d bytes, %d announced", data:len(), total))
      end
      r.message, r.first_frame, r.fragments = data, pinfo.number, 1
      return r
    end
    if s ~= nil and s.held_bytes > total - data:len() then
      return fail(string.format("fragment 0: FIRST announces %d bytes and carries %d, but %d later fragments brought %d already",
        total, data:len(), s.held_count, s.held_bytes))
    end
    if s == nil then
      s = stream_new(pinfo)
      streams[stream_key] = s
    end
    r.frame = pinfo.number
    s.results[#s.results + 1] = r
    s.total, s.buf, s.received, s.placed, s.first_frame = total, data, data:len(), 1, pinfo.number
    local why = drain(s, r)
    if why ~= nil then
      return fail(why)
    end
  else
    -- MIDDLE or LAST
    local placed = s and s.placed or 0
    local ahead = (seq - placed) % SEQ_MODULO
    local index = placed + ahead
    r.index = index
    if ahead > REORDER_WINDOW then
      -- Behind the next one due, or too far ahead to tell from behind.
      r.index = nil
      return fail(string.format("fragment %d: sequence %d, expected %d..%d", placed, seq,
        placed % SEQ_MODULO, (placed + REORDER_WINDOW) % SEQ_MODULO))
    end
    if index == 0 then
      return fail(string.format("fragment 0: %s without a FIRST", KINDS[kind]))
    end
    if s ~= nil and s.held[seq] ~= nil then
      return fail(string.format("fragment %d: sequence %d arrived twice", index, seq))
    end
    if s ~= nil and s.have_last and index > s.last_index then
      return fail(string.format("fragment %d: %s after the LAST, fragment %d", index, KINDS[kind],
        s.last_index))
    end
    if kind == KIND_LAST and s ~= nil and s.have_last then
      return fail(string.format("fragment %d: a second LAST, fragment %d is one", index, s.last_index))
    end
    if kind == KIND_LAST and s ~= nil and s.held_count > 0 and s.held_max_index > index then
      return fail(string.format("fragment %d: LAST, but fragment %d arrived already", index,
        s.held_max_index))
    end
    if s == nil or s.total == nil then
      local held_bytes = s and s.held_bytes or 0
      if data:len() > max_message() - held_bytes then
        return fail(string.format("fragment %d: %s carries %d bytes, with the %d held before the FIRST more than the limit %d",
          index, KINDS[kind], data:len(), held_bytes, max_message()))
      end
    elseif data:len() > s.total - s.received - s.held_bytes then
      return fail(string.format("fragment %d: %s carries %d bytes, only %d of the %d announced remain",
        index, KINDS[kind], data:len(), s.total - s.received - s.held_bytes, s.total))
    end

    if s == nil then
      s = stream_new(pinfo)
      streams[stream_key] = s
    end
    r.frame = pinfo.number
    s.results[#s.results + 1] = r
    if ahead == 0 then
      local why = place(s, r, kind, data) or drain(s, r)
      if why ~= nil then
        return fail(why)
      end
    else
      r.held = string.format("held %d ahead of fragment %d", ahead, placed)
      s.held[seq] = { kind = kind, data = data }
      if s.held_count == 0 or index > s.held_max_index then
        s.held_max_index = index
      end
      s.held_count = s.held_count + 1
      s.held_bytes = s.held_bytes + data:len()
      if kind == KIND_LAST then
        s.have_last, s.last_index = true, index
      end
    end
  end

  if s.complete then
    for _, earlier in ipairs(s.results) do
      earlier.reassembled_in = pinfo.number
    end
    streams[stream_key] = nil
  end
  return r
end

-- One ATT value of the rx or tx characteristic.  Returns the bytes used.
local function dissect_fragment(tvb, pinfo, tree, role)
  local len = tvb:len()
  local n = next_call(pinfo)
  local stream_key = string.format("%s:%s", select(2, link_keys()), role)
  frame_handled = true
  pinfo.cols.protocol = "Tally"

  local subtree = tree:add(tally, tvb(), "Tally fragment, " .. ROLE_TEXT[role])
  subtree:add(f.characteristic, role):set_generated()

  -- A fragment too broken to read ends the message in progress, as in
  -- tally-frame.c.
  local kind, seq, total, data_off, unreadable = nil, 0, 0, 1, nil
  if len == 0 then
    unreadable = "empty, shorter than its 1-byte header"
  else
    local header = tvb(0, 1):uint()
    kind, seq = math.floor(header / 16), header % 16
    subtree:add(f.kind, tvb(0, 1))
    subtree:add(f.seq, tvb(0, 1))
    if KINDS[kind] == nil then
      unreadable = string.format("unknown kind 0x%x in header byte 0x%02x", kind, header)
    elseif kind == KIND_FIRST or kind == KIND_ONLY then
      if len < 3 then
        unreadable = string.format("fragment 0: %s of %d bytes is shorter than its 3-byte header",
          KINDS[kind], len)
      else
        total = tvb(1, 2):uint()
        subtree:add(f.total_length, tvb(1, 2))
        data_off = 3
      end
    end
  end
  local data = ByteArray.new()
  if unreadable == nil and len > data_off then
    subtree:add(f.data, tvb(data_off, len - data_off))
    data = tvb(data_off, len - data_off):bytes()
  end

  local per_frame = results[pinfo.number]
  local r = per_frame and per_frame[n]
  if r == nil then
    if pinfo.visited then
      -- Not seen on the first pass (a preference changed since): show
      -- the header only.
      if KINDS[kind] ~= nil then
        subtree:append_text(string.format(", %s %d", KINDS[kind], seq))
      end
      if unreadable ~= nil then
        subtree:add_proto_expert_info(ef.framing, unreadable)
        subtree:add(f.framing_error, unreadable):set_generated()
      end
      return len
    end
    r = reassemble(stream_key, pinfo, kind, seq, total, data, unreadable)
    per_frame = per_frame or {}
    per_frame[n] = r
    results[pinfo.number] = per_frame
  end

  if KINDS[kind] ~= nil then
    subtree:append_text(string.format(", %s %d", KINDS[kind], seq))
  end
  if r.index ~= nil then
    subtree:add(f.fragment_index, r.index):set_generated()
  end
  if r.timeout ~= nil then
    subtree:add_proto_expert_info(ef.framing, r.timeout)
    subtree:add(f.framing_error, r.timeout):set_generated()
    pinfo.cols.info:append(" [Tally: " .. r.timeout .. "]")
  end
  if r.abandoned ~= nil then
    subtree:add_proto_expert_info(ef.incomplete, r.abandoned)
  end
  if r.error ~= nil then
    subtree:add_proto_expert_info(ef.framing, r.error)
    subtree:add(f.framing_error, r.error):set_generated()
    pinfo.cols.info:append(" [Tally: " .. r.error .. "]")
    return len
  end
  if r.abandoned_in ~= nil then
    subtree:add_proto_expert_info(ef.incomplete,
      string.format("its message was abandoned incomplete in frame %d", r.abandoned_in))
  end
  if r.held ~= nil then
    subtree:append_text(", " .. r.held)
  end

  if r.message == nil then
    if r.reassembled_in ~= nil then
      subtree:add(f.reassembled_in, r.reassembled_in):set_generated()
    end
    pinfo.cols.info:append(string.format(" [Tally %s %d]", KINDS[kind], seq))
    return len
  end

  if r.fragments > 1 then
    subtree:add(f.first_frame, r.first_frame):set_generated()
  end
  subtree:add(f.fragments, r.fragments):set_generated()
  local mtvb = r.message:tvb("Tally message")
  local msgtree = tree:add(tally, mtvb(), "Tally SessionMessage, " .. ROLE_TEXT[role])
  msgtree:add(f.message, mtvb()):set_generated()
  local summary = dissect_session_message(mtvb, pinfo, msgtree)
  msgtree:append_text(": " .. summary)
  pinfo.cols.info:append(" [Tally " .. summary .. "]")
  return len
end

-- Called by btatt with the value of an attribute whose UUID or handle is
-- ours; the ATT opcode tells which way it goes.
function tally.dissector(tvb, pinfo, tree)
  local opcode = numeric(last_value(fx.att_opcode))
  local role = ROLE_OF_OPCODE[opcode]
  if role == nil then
    return 0
  end
  local handle = last_value(fx.att_handle)
  if handle ~= nil and not pinfo.visited then
    local link, conn = link_keys()
    learned[conn] = learned[conn] or {}
    learned[conn][numeric(handle)] = role
    learned_any[link] = learned_any[link] or {}
    learned_any[link][numeric(handle)] = role
  end
  return dissect_fragment(tvb, pinfo, tree, role)
end

-- Registrations -----------------------------------------------------------------

local uuid_table = DissectorTable.get("bluetooth.uuid")
uuid_table:add(RX_UUID, tally)
uuid_table:add(TX_UUID, tally)

local handle_table = DissectorTable.get("btatt.handle")
local psm_table = DissectorTable.get("btl2cap.psm")
local registered_handles = {}
local eatt_added = false

-- A handle preference as a number: "0x0012" or "18"; nil when unset or not
-- a valid attribute handle.
local function pref_handle(text)
  local handle = tonumber(text or "")
  if handle == nil or handle < 1 or handle > 0xffff or handle % 1 ~= 0 then
    return nil
  end
  return handle
end

local function apply_prefs()
  for _, handle in ipairs(registered_handles) do
    handle_table:remove(handle, tally)
  end
  registered_handles = {}
  for _, text in ipairs({ tally.prefs.rx_handle, tally.prefs.tx_handle }) do
    local handle = pref_handle(text)
    if handle ~= nil then
      handle_table:add(handle, tally)
      registered_handles[#registered_handles + 1] = handle
    end
  end

  if tally.prefs.eatt and not eatt_added and psm_table:get_dissector(EATT_PSM) == nil then
    local btatt = Dissector.get("btatt")
    if btatt ~= nil then
      psm_table:add(EATT_PSM, btatt)
      eatt_added = true
    end
  elseif not tally.prefs.eatt and eatt_added then
    psm_table:remove(EATT_PSM, Dissector.get("btatt"))
    eatt_added = false
  end
end

function tally.prefs_changed()
  apply_prefs()
end
apply_prefs()

-- After every other dissector of a frame --------------------------------------------

local post = Proto("tally_post", "Tally (late work)")

local function uuid_from_le(tvb, off)
  local hex = {}
  for i = 15, 0, -1 do
    hex[#hex + 1] = string.format("%02x", tvb(off + i, 1):uint())
  end
  local s = table.concat(hex)
  return string.format("%s-%s-%s-%s-%s", s:sub(1, 8), s:sub(9, 12), s:sub(13, 16), s:sub(17, 20),
    s:sub(21, 32))
end

-- Characteristic declarations in a Read By Type Response: the value
-- handles of rx and tx, for Multiple Handle Value Notifications.
local function learn_declarations(att)
  local len = att:len()
  if len < 2 or att(1, 1):uint() ~= 21 then
    return
  end
  local link, conn = link_keys()
  local off = 2
  while off + 21 <= len do
    local value_handle = att(off + 3, 2):le_uint()
    local uuid = uuid_from_le(att, off + 5)
    local role = (uuid == RX_UUID and "rx") or (uuid == TX_UUID and "tx") or nil
    if role ~= nil then
      learned[conn] = learned[conn] or {}
      learned[conn][value_handle] = role
      learned_any[link] = learned_any[link] or {}
      learned_any[link][value_handle] = role
    end
    off = off + 21
  end
end

local function role_of_handle(handle)
  local link, conn = link_keys()
  local role = (learned[conn] and learned[conn][handle]) or (learned_any[link] and learned_any[link][handle])
  if role ~= nil then
    return role
  end
  if handle == pref_handle(tally.prefs.rx_handle) then
    return "rx"
  end
  if handle == pref_handle(tally.prefs.tx_handle) then
    return "tx"
  end
  return nil
end

-- ATT opcode 0x23: { handle u16, length u16, value } repeated.
local function dissect_multiple_notification(att, pinfo, tree)
  local off, len = 1, att:len()
  while off + 4 <= len do
    local handle = att(off, 2):le_uint()
    local value_len = att(off + 2, 2):le_uint()
    if off + 4 + value_len > len then
      return
    end
    if role_of_handle(handle) == "tx" then
      -- btatt 4.0 shows this opcode as "<unknown>".
      local info = tostring(pinfo.cols.info)
      local at = info:find("<unknown>", 1, true)
      if at ~= nil then
        pinfo.cols.info = info:sub(1, at - 1) ..
          string.format("Multiple Handle Value Notification, Handle: 0x%04x", handle) ..
          info:sub(at + #"<unknown>")
      end
      tree:add(tally, att(off, 4), string.format(
        "ATT Multiple Handle Value Notification tuple: handle 0x%04x, %d bytes", handle, value_len))
      dissect_fragment(att(off + 4, value_len):tvb(), pinfo, tree, "tx")
    end
    off = off + 4 + value_len
  end
end

local function dissect_log_line(tvb, pinfo, tree)
  if tvb:len() < 3 then
    return
  end
  local priority = tvb(0, 1):uint()
  local ident_len = tvb(1, 1):uint()
  if 2 + ident_len >= tvb:len() then
    return
  end
  local ident = ""
  if ident_len > 0 then
    ident = tvb(2, ident_len):stringz()
  end
  local message_off = 2 + ident_len
  local message_range = tvb(message_off)
  local message = message_range:stringz()
  local sub = tree:add(tally, tvb(), "Monitor log line")
  sub:add(f.log_priority, tvb(0, 1))
  if ident_len > 0 then
    sub:add(f.log_ident, tvb(2, ident_len), ident)
  end
  sub:add(f.log_message, message_range, message)
  sub:append_text(string.format(": %s: %s", ident, message))
  pinfo.cols.info = string.format("= %s: %s", ident, message)
end

-- A connection that ends in the middle of a message: tallyd's channel
-- reports FRAME_TRUNCATED ("closed the link in the middle of a message").
local function dissect_disconnection(pinfo, tree)
  local handle = last_value(fx.event_handle)
  if handle == nil then
    return
  end
  local reasons = closed[pinfo.number]
  if reasons == nil then
    if pinfo.visited then
      return
    end
    reasons = {}
    local conn = string.format("%s:%d", link_keys(), numeric(handle))
    for _, role in ipairs({ "rx", "tx" }) do
      local key = conn .. ":" .. role
      local s = streams[key]
      if s ~= nil then
        if s.total ~= nil then
          reasons[#reasons + 1] = string.format(
            "link closed in the middle of a message, %s: %d of %d bytes in %d fragments received, the FIRST in frame %d",
            ROLE_TEXT[role], s.received + s.held_bytes, s.total, s.placed + s.held_count, s.first_frame)
        else
          reasons[#reasons + 1] = string.format(
            "link closed in the middle of a message, %s: %d fragments held since frame %d, no FIRST",
            ROLE_TEXT[role], s.held_count, s.results[1].frame)
        end
        abandon(key, pinfo)
      end
    end
    closed[pinfo.number] = reasons
  end
  for _, reason in ipairs(reasons) do
    local sub = tree:add(tally, "Tally: " .. reason)
    sub:add_proto_expert_info(ef.framing, reason)
    sub:add(f.framing_error, reason):set_generated()
    pinfo.cols.info:append(" [Tally: " .. reason .. "]")
  end
end

function post.dissector(tvb, pinfo, tree)
  if tally.prefs.log and numeric(last_value(fx.monitor_opcode)) == MONITOR_USER_LOGGING then
    dissect_log_line(tvb, pinfo, tree)
  end
  if numeric(last_value(fx.event_code)) == HCI_DISCONNECTION_COMPLETE then
    dissect_disconnection(pinfo, tree)
  end

  local att_infos = { fx.att() }
  if #att_infos > 0 then
    local opcode = numeric(last_value(fx.att_opcode))
    local att = att_infos[#att_infos].range:tvb()
    if opcode == ATT_READ_BY_TYPE_RESPONSE and not pinfo.visited then
      learn_declarations(att)
    elseif opcode == ATT_MULTIPLE_NOTIFICATION and not frame_handled then
      dissect_multiple_notification(att, pinfo, tree)
    end
  end

  -- The next frame's dissection starts afresh.
  call_frame, call_n, frame_handled = -1, 0, false
end

register_postdissector(post)
