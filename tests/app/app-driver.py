#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Drives two tally-app windows through the accessibility bus (AT-SPI, with
# pyatspi) the way a person would: the stall asks for an amount, the payer
# pastes the request URI it reads from the stall's screen, compares the
# comparison codes and approves or declines.  Every assertion reads the
# accessibility tree (labels and states), never pixels.  Prints TAP lines;
# tests/app/test-app.sh runs it, checks the daemons behind it and prints
# the TAP plan.
#
#   app-driver.py STALL_PID PAYER_PID STALL_NAME ROUND...
#
# ROUND is approve:AMOUNT, decline:AMOUNT, tampered:AMOUNT (the payer's
# URI asks for 1.00 less), malformed:AMOUNT (its amount gets a leading
# zero) or timeout:AMOUNT:SECONDS (the dialog is left unanswered; SECONDS
# is tallyd's payment timeout), e.g. approve:12.50.

import os
import struct
import sys
import time
import zlib

import pyatspi

# How long to wait for anything on a screen; TALLY_APP_TIMEOUT raises it for
# a slow machine or an app under valgrind.
TIMEOUT = float(os.environ.get('TALLY_APP_TIMEOUT', '30'))
# TALLY_APP_SCREENSHOTS=DIR: save the screens as DIR/PREFIX-NAME.png, read
# from Xvfb's frame buffers (TALLY_APP_FBDIR/Xvfb_screenN, the stall on
# screen 0, the payer on 1).
# The issuer's currency (tests/app sets EUR) and its ISO 4217 exponent: the
# same table as proto/tally-core.c tally_currency_exponent ().
CURRENCY = 'EUR'
CURRENCY_EXPONENTS = {
    'BHD': 3, 'BIF': 0, 'CLF': 4, 'CLP': 0, 'DJF': 0, 'GNF': 0, 'IQD': 3,
    'ISK': 0, 'JOD': 3, 'JPY': 0, 'KMF': 0, 'KRW': 0, 'KWD': 3, 'LYD': 3,
    'OMR': 3, 'PYG': 0, 'RWF': 0, 'TND': 3, 'UGX': 0, 'UYI': 0, 'UYW': 4,
    'VND': 0, 'VUV': 0, 'XAF': 0, 'XOF': 0, 'XPF': 0,
}
EXPONENT = CURRENCY_EXPONENTS.get(CURRENCY, 2)
SHOT_DIR = os.environ.get('TALLY_APP_SCREENSHOTS')
SHOT_PREFIX = os.environ.get('TALLY_APP_GEOMETRY', 'app')
FB_DIR = os.environ.get('TALLY_APP_FBDIR')
tap_n = 0
tap_failed = False


def ok(cond, what):
    global tap_n, tap_failed
    tap_n += 1
    print(('ok %d - %s' if cond else 'not ok %d - %s') % (tap_n, what), flush=True)
    if not cond:
        tap_failed = True
    return cond


def bail(why, app=None):
    print('# ' + why, flush=True)
    if app is not None:
        dump(app)
    print('Bail out! ' + why, flush=True)
    sys.exit(1)


def dump(acc, depth=0):
    try:
        text = label_text(acc)
        print('# %s%s name=%r desc=%r text=%r states=%s' % (
            '  ' * depth, acc.getRoleName(), acc.name, acc.description, text,
            [pyatspi.stateToString(s) for s in acc.getState().getStates()]))
        for child in acc:
            if child is not None:
                dump(child, depth + 1)
    except Exception as e:  # a widget that went away while we looked
        print('# %s(gone: %s)' % ('  ' * depth, e))


def xwd_to_png(xwd_path, png_path, region=None):
    """Xvfb's frame buffer (XWD, 32 bits per pixel) as an RGB PNG, all of it
    or the @region (x, y, width, height) within it."""
    with open(xwd_path, 'rb') as f:
        data = f.read()
    fields = struct.unpack('>25I', data[:100])
    header_size, width, height = fields[0], fields[4], fields[5]
    byte_order, bpp, stride, ncolors = fields[7], fields[11], fields[12], fields[19]
    if bpp != 32:
        bail('%s: %d bits per pixel, want 32' % (xwd_path, bpp))
    start = header_size + ncolors * 12
    x0, y0 = 0, 0
    if region is not None:
        x0, y0 = max(0, region[0]), max(0, region[1])
        width, height = min(region[2], width - x0), min(region[3], height - y0)
    rows = []
    for y in range(y0, y0 + height):
        first = start + y * stride + x0 * 4
        line = data[first:first + width * 4]
        if byte_order == 0:  # LSBFirst: B G R X
            rgb = bytes(b for i in range(0, len(line), 4) for b in (line[i + 2], line[i + 1],
                                                                   line[i]))
        else:  # MSBFirst: X R G B
            rgb = bytes(b for i in range(0, len(line), 4) for b in line[i + 1:i + 4])
        rows.append(b'\0' + rgb)

    def chunk(kind, body):
        return (struct.pack('>I', len(body)) + kind + body +
                struct.pack('>I', zlib.crc32(kind + body) & 0xffffffff))
    png = (b'\x89PNG\r\n\x1a\n' +
           chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)) +
           chunk(b'IDAT', zlib.compress(b''.join(rows), 9)) + chunk(b'IEND', b''))
    with open(png_path, 'wb') as f:
        f.write(png)


def screenshot(screen, name, window=None):
    """Saves Xvfb's @screen, or only the part that @window covers."""
    if not SHOT_DIR:
        return
    time.sleep(0.8)  # the last change drawn
    region = None
    if window is not None:
        e = window.queryComponent().getExtents(pyatspi.DESKTOP_COORDS)
        if e.width > 0 and e.height > 0:
            region = (e.x, e.y, e.width, e.height)
    path = os.path.join(SHOT_DIR, '%s-%s.png' % (SHOT_PREFIX, name))
    xwd_to_png(os.path.join(FB_DIR, 'Xvfb_screen%d' % screen), path, region)
    print('# saved ' + path, flush=True)


def find_app(pid):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        desktop = pyatspi.Registry.getDesktop(0)
        for app in desktop:
            try:
                if app is not None and app.get_process_id() == pid and app.childCount > 0:
                    return app
            except Exception:
                pass
        time.sleep(0.2)
    bail('no accessible application with pid %d on the accessibility bus' % pid)


def walk(acc):
    try:
        yield acc
        for child in acc:
            if child is not None:
                yield from walk(child)
    except Exception:
        return


def showing(acc):
    # GTK 4.8 sets no SHOWING state below the window: VISIBLE is what it
    # has, so the labels the driver reads have names unique in the window.
    try:
        return acc.getState().contains(pyatspi.STATE_VISIBLE)
    except Exception:
        return False


def label_text(acc):
    try:
        t = acc.queryText()
        return t.getText(0, t.characterCount)
    except Exception:
        return acc.name


def same_name(acc, name):
    # libadwaita 1.2's message dialog buttons hold the label twice (one per
    # layout), and their name reads "Approve Approve".
    return acc.name == name or acc.name == name + ' ' + name


def find(root, role=None, name=None, description=None, visible=True):
    for acc in walk(root):
        try:
            if role is not None and acc.getRoleName() != role:
                continue
            if name is not None and not same_name(acc, name):
                continue
            if description is not None and acc.description != description:
                continue
            if visible and not showing(acc):
                continue
            return acc
        except Exception:
            continue
    return None


def eventually(fn, timeout=TIMEOUT):
    """fn ()'s first true value within @timeout seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    return None


def wait_for(what, fn, app, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    bail('timed out waiting for ' + what, app)


def value(app, description):
    """The text of the showing label that the app describes as @description."""
    acc = find(app, role='label', description=description)
    return label_text(acc).strip() if acc is not None else None


def wait_value(app, description, pred, what):
    return wait_for(what, lambda: (lambda v: v if v is not None and pred(v) else None)(
        value(app, description)), app)


def click(app, name, role='push button'):
    button = wait_for('a %s "%s"' % (role, name), lambda: find(app, role=role, name=name), app)
    action = button.queryAction()
    for i in range(action.nActions):
        if action.getName(i) in ('click', 'activate', 'press'):
            action.doAction(i)
            return
    action.doAction(0)


def set_entry(app, label, text):
    entry = wait_for('the entry "%s"' % label, lambda: find(app, name=label, role='text'), app)
    entry.queryEditableText().setTextContents(text)
    got = label_text(entry)
    if got != text:
        bail('the entry "%s" holds %r, not %r' % (label, got, text), app)


def amount_value(text):
    """'52.50 EUR' -> 5250, in the currency's minor unit."""
    number = text.split()[0]
    whole, _, frac = number.partition('.')
    return int(whole) * 10 ** EXPONENT + int((frac + '0' * EXPONENT)[:EXPONENT] or '0')


def amount_text(value):
    """5250 -> '52.50', with the currency's exponent."""
    sign = '-' if value < 0 else ''
    whole, frac = divmod(abs(value), 10 ** EXPONENT)
    if EXPONENT == 0:
        return '%s%d' % (sign, whole)
    return '%s%d.%0*d' % (sign, whole, EXPONENT, frac)


def digits(text):
    return ''.join(c for c in text if c.isdigit())


def dialog_with(app, button):
    for window in app:
        try:
            if window is not None and window.getRoleName() == 'dialog' and \
                    find(window, role='push button', name=button) is not None:
                return window
        except Exception:
            continue
    return None


def run_round(stall, payer, stall_name, verdict, amount, timeout):
    cents = amount_value(amount)
    stall_before = amount_value(wait_value(stall, 'Balance', lambda v: v[:1].isdigit(),
                                           "the stall's balance"))
    payer_before = amount_value(wait_value(payer, 'Balance', lambda v: v[:1].isdigit(),
                                           "the payer's balance"))

    if verdict == 'approve':
        screenshot(1, 'home')

    # The stall asks for the amount.
    adw_page(stall, 'Receive')
    set_entry(stall, 'Amount', amount)
    set_entry(stall, 'Memo', 'round ' + verdict)
    click_until(stall, 'Request payment',
                lambda: (lambda v: v is not None and v.startswith('tally://pay?'))(
                    value(stall, 'Request URI')))
    uri = wait_value(stall, 'Request URI', lambda v: v.startswith('tally://pay?'),
                     'the request URI on the stall')
    ok(value(stall, 'Requested amount') == amount + ' EUR',
       '%s: the stall shows the amount %s EUR large' % (verdict, amount))
    ok(value(stall, 'Stall name') == stall_name,
       '%s: the stall shows its certified name "%s"' % (verdict, stall_name))
    ok(find(stall, role='image', name='QR code of the payment request') is not None,
       '%s: the stall shows a QR code of the request' % verdict)
    ok('amount=%d' % cents in uri, '%s: the request URI carries amount=%d' % (verdict, cents))
    wait_value(stall, 'Request state', lambda v: v == 'Waiting for the payer',
               'the stall to wait for the payer')
    if verdict == 'approve':
        screenshot(0, 'receive')
    if verdict == 'approve':
        # The customer display, for a screen facing the payer.
        click(stall, 'Customer display')
        shown = wait_value(stall, 'Amount to pay', lambda v: v != '', 'the customer display')
        ok(shown == amount + ' EUR' and
           value(stall, 'Stall name shown to the customer') == stall_name,
           'approve: the customer display shows %s to %s' % (shown, stall_name))

    # The payer pastes the URI read from the stall's screen and pays.
    adw_page(payer, 'Pay')
    # The page asks tallyd to discover stalls; these daemons have only the
    # stream transport, and the page says so.
    nearby = wait_value(payer, 'Stalls nearby state',
                        lambda v: v == 'Bluetooth discovery is not available.',
                        'the Pay page to say discovery is not available')
    ok(nearby == 'Bluetooth discovery is not available.',
       '%s: the Pay page says "%s"' % (verdict, nearby))
    if verdict in ('tampered', 'malformed'):
        run_refused(stall, payer, verdict, amount, uri, stall_before, payer_before)
        return
    set_entry(payer, 'Payment request or address', uri)
    pay(payer)
    dialog = wait_for('the confirmation dialog', lambda: dialog_with(payer, 'Approve'), payer)
    body = [label_text(a) for a in walk(dialog) if a.getRoleName() == 'label']
    ok(any(('Pay %s EUR to %s?' % (amount, stall_name)) == t for t in body),
       '%s: the dialog asks "Pay %s EUR to %s?"' % (verdict, amount, stall_name))
    payer_code = digits(label_text(wait_for(
        'the code in the dialog',
        lambda: find(dialog, role='label', description='Comparison code'), payer)))
    stall_code = digits(wait_value(stall, 'Comparison code to show the payer', lambda v: len(digits(v)) == 6,
                                   'the comparison code on the stall'))
    ok(len(payer_code) == 6 and payer_code == stall_code,
       '%s: both screens show the same comparison code (%s, %s)' % (verdict, payer_code,
                                                                    stall_code))
    if verdict == 'approve':
        # Without a window manager the dialog is not centred: only it.
        screenshot(1, 'confirm', dialog)
        customer_code = digits(wait_value(
            stall, 'Comparison code shown to the customer', lambda v: len(digits(v)) == 6,
            'the comparison code on the customer display'))
        ok(customer_code == payer_code,
           'approve: the customer display shows the same code (%s)' % customer_code)

    if verdict == 'approve':
        click_until(dialog, 'Approve', lambda: dialog_with(payer, 'Approve') is None)
        wait_value(stall, 'Request state', lambda v: v == 'Received', 'the stall to show Received')
        wait_value(stall, 'State shown to the customer', lambda v: v == 'Received',
                   'the customer display to show Received')
        state = wait_value(payer, 'Payment state', lambda v: v.startswith('Paid '),
                           'the payer to show Paid')
        ok(state == 'Paid %s EUR to %s' % (amount, stall_name),
           'approve: the payer shows "%s"' % state)
        stall_after = amount_value(wait_value(
            stall, 'Balance', lambda v: amount_value(v) != stall_before, "the stall's balance"))
        payer_after = amount_value(wait_value(
            payer, 'Balance', lambda v: amount_value(v) != payer_before, "the payer's balance"))
        ok(stall_after == stall_before + cents,
           'approve: the stall\'s balance grew by %s (%d -> %d)' % (amount, stall_before,
                                                                    stall_after))
        ok(payer_after == payer_before - cents,
           'approve: the payer\'s balance fell by %s (%d -> %d)' % (amount, payer_before,
                                                                    payer_after))
        sync = eventually(lambda: (lambda v: v if v and v.startswith('1 of 100 ') else None)(
            value(payer, 'Reconciliation')))
        ok(sync is not None and 'reconcile by ' in sync,
           'approve: the payer\'s home counts the payment: "%s"' % value(payer, 'Reconciliation'))
        online = value(payer, 'Online issuer')
        ok(online == 'No online issuer set up: reconcile with files.',
           'approve: the payer\'s home says it has no online issuer: "%s"' % online)
        adw_page(payer, 'History')
        entry = 'Paid %s EUR \u00b7 %s' % (amount, stall_name)
        ok(eventually(lambda: find(payer, role='label', name=entry)) is not None,
           'approve: the payer\'s history lists "%s"' % entry)
        adw_page(stall, 'History')
        received = 'Received %s EUR \u00b7 ' % amount
        ok(eventually(lambda: any(a.getRoleName() == 'label' and a.name.startswith(received)
                                  for a in walk(stall))),
           'approve: the stall\'s history lists "%s<the payer\'s short id>"' % received)
        screenshot(1, 'history')
        check_receipt(payer, amount, stall_name, payer_code)
    else:
        if verdict == 'decline':
            click_until(dialog, 'Decline', lambda: dialog_with(payer, 'Approve') is None)
            wait_value(payer, 'Payment state', lambda v: v == 'Declined.',
                       'the payer to show Declined.')
        else:
            # Nobody answers: tallyd withdraws the question (Agent1.Cancel).
            deadline = time.monotonic() + timeout + TIMEOUT
            while dialog_with(payer, 'Approve') is not None and time.monotonic() < deadline:
                time.sleep(0.5)
            ok(dialog_with(payer, 'Approve') is None,
               'timeout: the unanswered dialog closed when tallyd withdrew the question')
            state = value(payer, 'Payment state')
            ok(state is not None and state.startswith('Timed out'),
               'timeout: the payer shows "%s"' % state)
        if verdict == 'decline':
            # A payer who says no does not end the stall's request: it
            # waits for another payer until the stall cancels it.
            stall_state = wait_value(stall, 'Request state',
                                     lambda v: v == 'Waiting for the payer',
                                     'the stall to wait for another payer')
            ok(stall_state == 'Waiting for the payer',
               'decline: the stall waits for another payer ("%s")' % stall_state)
            click(stall, 'Cancel')
            stall_state = wait_value(stall, 'Request state', lambda v: v == 'Cancelled.',
                                     'the stall to cancel its request')
            ok(stall_state == 'Cancelled.', 'decline: the stall cancels its request')
        else:
            stall_state = wait_value(stall, 'Request state',
                                     lambda v: v not in ('Waiting for the payer',
                                                         'Payer connected',
                                                         'Compare the code with the payer'),
                                     'the stall to see the payment end')
            ok(stall_state != 'Received', '%s: the stall shows "%s", not Received' % (verdict,
                                                                                      stall_state))
        ok(dialog_with(payer, 'Approve') is None, '%s: the dialog is gone' % verdict)
        time.sleep(1.0)  # anything spent would show by now
        ok(amount_value(value(stall, 'Balance')) == stall_before,
           '%s: the stall\'s balance is unchanged (%d)' % (verdict, stall_before))
        ok(amount_value(value(payer, 'Balance')) == payer_before,
           '%s: the payer\'s balance is unchanged (%d)' % (verdict, payer_before))

    # Ready for the next round: the stall asks anew.
    click(stall, 'New request')
    adw_page(stall, 'Home')
    adw_page(payer, 'Home')


def check_receipt(payer, amount, stall_name, code):
    """The newest History row opens the payment's details: amount, the
    payee, time, state, counter, the comparison code both screens showed,
    the receipt id and the signed receipt's hash, each a labelled value."""
    # The row's button: named by the row's title (the row labels it), and
    # described as what it does.  The newest entry comes first.
    button = wait_for('the newest row\'s "Receipt details" button',
                      lambda: find(payer, role='push button', description='Receipt details'), payer)
    ok(button.name.startswith('Receipt details Paid %s EUR' % amount),
       'approve: the newest History row has the details button (%s)' % button.name)
    button.queryAction().doAction(0)
    shown = wait_value(payer, 'Receipt amount', lambda v: v != '', 'the receipt details')
    ok(shown == '%s EUR' % amount, 'approve: the receipt shows the amount (%s)' % shown)
    peer = value(payer, 'Receipt peer') or ''
    ok(peer.startswith(stall_name + ' (') and len(peer) == len(stall_name) + 11,
       'approve: the receipt names the payee and its short id (%s)' % peer)
    when = value(payer, 'Receipt time') or ''
    ok(len(when) == 19 and when[4] == '-' and when[13] == ':',
       'approve: the receipt shows its time (%s)' % when)
    state = value(payer, 'Receipt state')
    ok(state in ('pending', 'acknowledged'), 'approve: the receipt shows its state (%s)' % state)
    counter = value(payer, 'Receipt counter') or ''
    ok(counter.isdigit() and int(counter) >= 1, 'approve: the receipt shows its counter (%s)' %
       counter)
    shown_code = digits(value(payer, 'Receipt comparison code') or '')
    ok(shown_code == code, 'approve: the receipt shows the comparison code both screens showed '
       '(%s, %s)' % (shown_code, code))
    hexdigits = set('0123456789abcdef')
    receipt_id = value(payer, 'Receipt id') or ''
    ok(len(receipt_id) == 64 and set(receipt_id) <= hexdigits,
       'approve: the receipt shows its id (%s)' % receipt_id)
    receipt_hash = value(payer, 'Receipt hash') or ''
    ok(len(receipt_hash) == 64 and set(receipt_hash) <= hexdigits and receipt_hash != receipt_id,
       'approve: the receipt shows the signed receipt\'s hash (%s)' % receipt_hash)
    # The details window's own Close, not the main window's.
    window = wait_for('the window "Receipt details"',
                      lambda: next((w for w in payer if w is not None and
                                    w.name == 'Receipt details'), None), payer)
    close = find(window, role='push button', name='Close')
    ok(close is not None, 'approve: the receipt details have a Close button')
    close.queryAction().doAction(0)
    gone = eventually(lambda: value(payer, 'Receipt amount') is None or None, timeout=5.0)
    ok(gone, 'approve: Close closes the receipt details')


def run_refused(stall, payer, verdict, amount, uri, stall_before, payer_before):
    """The payer's app refuses a request URI that is not the stall's: nobody
    is asked, nothing is spent."""
    cents = amount_value(amount)
    if verdict == 'tampered':
        # A URI that asks for one unit (1.00) less than the stall will: the
        # offer differs, the app declines it before asking.
        less = cents - 10 ** EXPONENT
        pasted = uri.replace('amount=%d' % cents, 'amount=%d' % less)
        want = 'The payee asks for %s %s, the request said %s %s.' % (amount, CURRENCY,
                                                                      amount_text(less), CURRENCY)
    else:
        # A leading zero in the amount: not a request URI the app acts on.
        pasted = uri.replace('amount=%d' % cents, 'amount=0%d' % cents)
        want = "The request's amount is not valid."
    set_entry(payer, 'Payment request or address', pasted)
    pay(payer)
    asked = eventually(lambda: dialog_with(payer, 'Approve'), timeout=3.0)
    ok(asked is None, '%s: the payer is not asked to confirm' % verdict)
    state = eventually(lambda: (lambda v: v if v == want else None)(value(payer, 'Payment state')))
    ok(state == want, '%s: the payer shows "%s" (%r)' % (verdict, want,
                                                          value(payer, 'Payment state')))
    # Nothing reached the stall (malformed), or the payer declined the
    # offer (tampered), which does not end the request: it still waits.
    stall_state = wait_value(stall, 'Request state', lambda v: v == 'Waiting for the payer',
                             'the stall to wait for a payer')
    ok(stall_state == 'Waiting for the payer', '%s: the stall still waits for a payer' % verdict)
    click(stall, 'Cancel')
    stall_state = wait_value(stall, 'Request state', lambda v: v == 'Cancelled.',
                             'the stall to cancel its request')
    ok(stall_state == 'Cancelled.', '%s: the stall shows "Cancelled." (%s)' % (verdict,
                                                                             stall_state))
    time.sleep(1.0)  # anything spent would show by now
    ok(amount_value(value(stall, 'Balance')) == stall_before and
       amount_value(value(payer, 'Balance')) == payer_before,
       '%s: neither balance moved (%d, %d)' % (verdict, stall_before, payer_before))
    click(stall, 'New request')
    adw_page(stall, 'Home')
    adw_page(payer, 'Home')


def click_until(app, name, effect, tries=5):
    """Clicks the button @name until effect () holds.  GTK 4.8 ignores the
    click action of a button that is not realized yet, which a page just
    switched to may not be: then the click is made again."""
    for attempt in range(tries):
        if effect():  # the last click took effect after all
            return
        if attempt > 0:
            print('# clicking "%s" again: the last click did nothing' % name, flush=True)
        click(app, name)
        if eventually(effect, timeout=3.0):
            return
    bail('clicking "%s" did nothing, %d times' % (name, tries), app)


def pay(payer):
    """Clicks Pay: the Payment state label changes, or the dialog opens."""
    before = value(payer, 'Payment state')
    click_until(payer, 'Pay', lambda: dialog_with(payer, 'Approve') is not None or
                value(payer, 'Payment state') != before)


def adw_page(app, name):
    """Switches the window's view to the page @name through its switcher."""
    tab = wait_for('the page tab "%s"' % name, lambda: find(app, role='page tab', name=name), app)
    action = tab.queryAction()
    action.doAction(0)
    time.sleep(0.3)  # a frame, for the page's widgets to be realized


def main():
    if len(sys.argv) < 5:
        print(__doc__ or 'usage: app-driver.py STALL_PID PAYER_PID STALL_NAME ROUND...')
        sys.exit(2)
    stall = find_app(int(sys.argv[1]))
    payer = find_app(int(sys.argv[2]))
    stall_name = sys.argv[3]
    for spec in sys.argv[4:]:
        verdict, _, rest = spec.partition(':')
        amount, _, timeout = rest.partition(':')
        if verdict not in ('approve', 'decline', 'tampered', 'malformed', 'timeout'):
            bail('unknown round ' + spec)
        run_round(stall, payer, stall_name, verdict, amount, float(timeout or 0))
    sys.exit(1 if tap_failed else 0)


if __name__ == '__main__':
    main()
