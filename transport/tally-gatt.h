/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Tally over Bluetooth LE, all of it: a caller that uses one part includes
 * that part's header.
 *
 *   tally-gatt-address.h   "ble", "ble:TAG", "ble:AA:BB:CC:DD:EE:FF"
 *   tally-gatt-advert.h    the advertisement and its legacy budget
 *   tally-gatt-link.h      a TallyLink over two characteristics; UUIDs, ATT MTU
 *   tally-gatt-devices.h   the payee's table of connected devices
 *   tally-gatt-server.h    the payee: GATT server and advertisement
 *   tally-gatt-client.h    the payer: GATT client
 */

#include "tally-gatt-address.h"
#include "tally-gatt-advert.h"
#include "tally-gatt-client.h"
#include "tally-gatt-devices.h"
#include "tally-gatt-link.h"
#include "tally-gatt-server.h"
