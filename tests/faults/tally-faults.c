/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tally-faults: randomized scenarios over an issuer, several soft
 * registers and the handshake over an in-process framed wire, with a fault
 * injected into a good share of the steps, and a proof after every
 * scenario that value was conserved and every payment ended in one state
 * both sides agree on.  docs/reliability.md, "Fault injection", describes
 * the faults and the checks; the equation checked is in check_conservation().
 *
 * Every scenario draws its choices from its own generator, seeded from the
 * run's seed and the scenario's index, so "--seed S --only I" replays one.
 */

#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "faults-vfs.h"
#include "faults-wire.h"
#include "tally-hex.h"
#include "tally-issuer-store.h"
#include "tally-issuer.h"
#include "tally-keyfile.h"
#include "tally-register.h"
#include "tally-session.h"
#include "wallet-fixture.h"

#define CURRENCY          "EUR"
#define START             ((guint64) 1700000000)
#define DAY               ((guint64) 24 * 3600)
#define VALIDITY          ((guint64) 10 * 365 * DAY)
#define DEPOSIT           2000000
#define FIRST_LOAD        200000
#define MAX_PAYMENT       100000
#define BALANCE_CAP       50000000
#define MAX_OFFLINE       100000
#define PAYMENT_TIMEOUT_S 60
#define REASSEMBLY_MS     10000
/* Past every request's expiry (3600 s by default) with room to spare. */
#define SETTLE_ADVANCE    (2 * DAY)
#define MAX_REGISTERS     8
#define MAX_STEPS         900
#define DEFAULT_SCENARIOS 100
#define MAX_FAILURE_LINES 10

/* --- figures, shared with the children that run steps to be killed ------------ */

typedef enum
{
  HS_HELLO,
  HS_OFFER,
  HS_REVEAL,
  HS_PAY,
  HS_RECEIPT,
  N_HS,
} HandshakeStep;

static const char *const hs_names[N_HS] = { "hello", "offer", "reveal", "pay", "receipt" };

#define N_WIRE_FAULTS (FAULTS_WIRE_TRUNCATE_FRAGMENT + 1)

typedef struct
{
  guint64 scenarios;
  guint64 steps;
  guint64 payments;
  guint64 onward;
  guint64 paid;
  guint64 not_paid;
  guint64 in_flight;
  guint64 redelivered;
  guint64 reclaimed;
  guint64 rejected;
  guint64 loads;
  guint64 defunds;
  guint64 reconciliations;
  guint64 kill_before;
  guint64 kill_after;
  guint64 kill_unreached;
  guint64 wire[N_WIRE_FAULTS];
  guint64 disconnect[N_HS];
  guint64 timeouts;
  guint64 enospc;
  guint64 enospc_unreached;
  guint64 rollbacks;
  guint64 clones;
  guint64 forks_with_evidence;
  guint64 frauds_detected;
  guint64 late_receipts;
  guint64 overdrawn;
  guint64 redelivery_sessions;
  guint64 unjudged;
  gint64 fraud_exposure;
  gint64 fork_created;
  gint64 refused;
  /* The owner adversary (docs/reliability.md). */
  guint64 owner_balance;
  guint64 owner_rewind;
  guint64 owner_skip;
  guint64 owner_incomplete;
  guint64 owner_forge_defund;
  guint64 owner_forge_pay;
  guint64 owner_hide;
  guint64 owner_caught;
  gint64 owner_made;
  gint64 owner_exposure;
  guint64 owner_unbacked_online; /* scenarios where check 7 failed */
  gint64 owner_unbacked_value;   /* by how much, summed */
  /* A violation found in a child, reported by the parent. */
  char child_failure[1024];
} Figures;

static Figures *figures;

/* --- the world of one scenario ------------------------------------------------- */

typedef struct
{
  char *dir;
  char *name;         /* "r2", "r2-clone" */
  TallyRegister *reg; /* NULL while closed */
  char *account;
  guint8 id[TALLY_ID_BYTES];
  char *id_hex;
  guint origin; /* the register whose id this is: itself, or the cloned one */
  gboolean is_clone;
  gboolean forked;      /* its id has a second lineage */
  guint lineage;        /* 0; 1 after a restore, or for the clone */
  guint64 fork_counter; /* counter where the lineages part */
  char *snapshot;       /* copy of dir, or NULL */
  guint64 snapshot_counter;
  GQueue vouchers;      /* GBytes sold and not known to be applied */
  gint64 ledger_online; /* the account balance the driver expects */
  gboolean received_any;
  gboolean gossip_applied; /* a revocation list committed during the armed call */
  /* The owner adversary: its owner edited its database or signed with its
   * key outside it.  The driver's own record of what it was given. */
  gboolean adversary;
  gint64 sold;      /* vouchers the issuer sold it */
  gint64 forged_in; /* forged permissions to it that it listed as received */
  gint64 hidden;    /* a payment to it that it left out of a bundle */
  gboolean skipped; /* its counter jumped ahead: its bundles have a gap */
  guint8 hidden_hash[TALLY_HASH_BYTES];
} Reg;

typedef enum
{
  ATTEMPT_PAYMENT,
  ATTEMPT_DEFUND,
} AttemptKind;

typedef struct
{
  AttemptKind kind;
  guint payer;
  guint payee;
  guint lineage;
  gint64 amount;
  guint64 counter; /* payer's entry, 0 while none */
  gboolean committed;
  gboolean credited;
  guint step;
} Attempt;

typedef enum
{
  OP_NONE,
  OP_REQUEST,
  OP_SPEND,
  OP_RECEIVE,
  OP_ACKNOWLEDGE,
  OP_LOAD,
  OP_EXPORT,
  OP_APPLY,
  OP_DEFUND,
} Op;

static const char *const op_names[] = {
  "none", "request", "spend", "receive", "acknowledge", "load", "export", "apply", "defund",
};

/* A full disk planned for one call of one step. */
typedef struct
{
  Op op;
  guint writes;
  Reg *reg;      /* set when armed */
  gboolean done; /* armed once already */
  gboolean hit;
  char *dump_before;
} Enospc;

/* A kill planned for one commit point of one register. */
typedef struct
{
  gboolean active;
  char *point;
  Reg *reg;
} Kill;

typedef struct
{
  guint64 seed;
  guint index;
  GRand *rand;
  gboolean verbose;
  GString *log;
  guint64 now;
  guint step;
  char *root;
  char *issuer_dir;
  TallyIssuer *issuer;
  GPtrArray *regs;  /* Reg * */
  GArray *attempts; /* Attempt */
  gint64 deposited;
  char *failure;
  /* The planned fork: a rollback or a clone of one register. */
  gint fork_kind; /* 0 none, 1 rollback, 2 clone */
  guint fork_reg;
  guint fork_copy_step;
  guint fork_step;
  guint fork_bias; /* steps left that prefer the forked lineage as payer */
  /* The planned owner act, on a register other than the forked one. */
  gint owner_kind;
  guint owner_reg;
  guint owner_peer; /* the colluding register */
  guint owner_step;
  guint owner_defund_step;
  gboolean owner_done;
  guint owner_bias;  /* steps left that prefer owner_payer as payer */
  guint owner_payer;
  Kill kill;
  Enospc enospc;
} Scenario;

enum
{
  FORK_NONE,
  FORK_ROLLBACK,
  FORK_CLONE,
};

enum
{
  OWNER_NONE,
  OWNER_BALANCE, /* raises its balance in the database, then spends */
  OWNER_REWIND,  /* rewinds its counter and chain head, then spends */
  OWNER_FORGE,   /* signs beyond its balance with its key, outside the database */
  OWNER_HIDE,    /* leaves a payment to it out of its bundle, then spends it */
};

static void scenario_log (Scenario *sc, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static void
scenario_log (Scenario *sc, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *line = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_autofree char *step =
    sc->step == G_MAXUINT ? g_strdup ("settle") : g_strdup_printf ("%u", sc->step);
  g_string_append_printf (sc->log, "  [%s] %s\n", step, line);
  if (sc->verbose)
    printf ("scenario %u step %s: %s\n", sc->index, step, line);
}

static gboolean violation (Scenario *sc, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

/* Records the first violation of the scenario; returns FALSE for chaining. */
static gboolean
violation (Scenario *sc, const char *fmt, ...)
{
  if (sc->failure != NULL)
    return FALSE;
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *what = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_autofree char *step =
    sc->step == G_MAXUINT ? g_strdup ("settle") : g_strdup_printf ("step %u", sc->step);
  sc->failure = g_strdup_printf ("seed %" G_GUINT64_FORMAT " scenario %u %s: %s", sc->seed,
                                 sc->index, step, what);
  return FALSE;
}

static Reg *
reg_at (Scenario *sc, guint i)
{
  return sc->regs->pdata[i];
}

/* A register whose id forked or whose owner acted against the issuer: no
 * check that holds for honest registers applies to it. */
static gboolean
reg_tainted (const Reg *r)
{
  return r->forked || r->adversary;
}

static guint
reg_index (Scenario *sc, Reg *r)
{
  for (guint i = 0; i < sc->regs->len; i++)
    if (sc->regs->pdata[i] == r)
      return i;
  g_assert_not_reached ();
}

static gboolean
rand_chance (Scenario *sc, gdouble p)
{
  return g_rand_double (sc->rand) < p;
}

static guint
rand_below (Scenario *sc, guint n)
{
  g_assert (n > 0);
  return (guint) g_rand_int_range (sc->rand, 0, (gint32) n);
}

/* --- registers on disk -------------------------------------------------------- */

static void
reg_free (Reg *r)
{
  g_clear_pointer (&r->reg, tally_register_free);
  GBytes *v;
  while ((v = g_queue_pop_head (&r->vouchers)) != NULL)
    g_bytes_unref (v);
  g_free (r->dir);
  g_free (r->name);
  g_free (r->account);
  g_free (r->id_hex);
  g_free (r->snapshot);
  g_free (r);
}

static gboolean
reg_open (Scenario *sc, Reg *r)
{
  g_autoptr (GError) error = NULL;
  if (r->reg != NULL)
    return TRUE;
  r->reg = tally_register_open (r->dir, &error);
  if (r->reg == NULL)
    return violation (sc, "%s does not reopen: %s", r->name, error->message);
  return TRUE;
}

static void
reg_close (Reg *r)
{
  g_clear_pointer (&r->reg, tally_register_free);
}

static gboolean
world_open (Scenario *sc)
{
  g_autoptr (GError) error = NULL;
  if (sc->issuer == NULL) {
    sc->issuer = tally_issuer_open (sc->issuer_dir, &error);
    if (sc->issuer == NULL)
      return violation (sc, "the issuer does not reopen: %s", error->message);
  }
  for (guint i = 0; i < sc->regs->len; i++)
    if (!reg_open (sc, reg_at (sc, i)))
      return FALSE;
  return TRUE;
}

static void
world_close (Scenario *sc)
{
  for (guint i = 0; i < sc->regs->len; i++)
    reg_close (reg_at (sc, i));
  g_clear_pointer (&sc->issuer, tally_issuer_free);
}

/* TRUE when @payee holds a received entry of @payer_id's counter @counter. */
static gboolean
has_received (Scenario *sc, Reg *payee, const char *payer_hex, guint64 counter, gboolean *has)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) history = tally_register_get_history (payee->reg, 0, &error);
  *has = FALSE;
  if (history == NULL)
    return violation (sc, "%s: history: %s", payee->name, error->message);
  for (guint i = 0; i < history->len; i++) {
    const TallyHistoryEntry *e = history->pdata[i];
    if (e->kind == TALLY_ENTRY_RECEIVED && e->counter == counter && e->peer != NULL &&
        g_ascii_strcasecmp (e->peer, payer_hex) == 0)
      *has = TRUE;
  }
  return TRUE;
}

/* A spent row as the register stored it: its state and whether it holds
 * the payee's receipt.  Read beside the register's own connection. */
static gboolean
spent_row (Scenario *sc, Reg *r, guint64 counter, char **state, gboolean *has_receipt)
{
  g_autofree char *path = g_build_filename (r->dir, "register.db", NULL);
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  gboolean ok = FALSE;
  *state = NULL;
  *has_receipt = FALSE;
  if (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2 (db, "SELECT state, receipt IS NOT NULL FROM spent WHERE counter = ?", -1,
                          &st, NULL) != SQLITE_OK) {
    violation (sc, "%s: reading spent entries: %s", r->name, sqlite3_errmsg (db));
    goto out;
  }
  sqlite3_bind_int64 (st, 1, (sqlite3_int64) counter);
  int rc = sqlite3_step (st);
  if (rc == SQLITE_ROW) {
    *state = g_strdup ((const char *) sqlite3_column_text (st, 0));
    *has_receipt = sqlite3_column_int (st, 1) != 0;
  } else if (rc != SQLITE_DONE) {
    violation (sc, "%s: reading spent entries: %s", r->name, sqlite3_errmsg (db));
    goto out;
  }
  ok = TRUE;
out:
  sqlite3_finalize (st);
  sqlite3_close (db);
  return ok;
}

/* --- full disk ----------------------------------------------------------------- */

static void
observe_hook (const char *point, gpointer user_data)
{
  Reg *r = user_data;
  if (strcmp (point, "revocation:after-commit") == 0)
    r->gossip_applied = TRUE;
}

/* A session may store a newer revocation list its peer gossiped before the
 * operation that fails (protocol.md 4.2): that commit is its own and
 * succeeded.  Everything else must be as before. */
static char *
dump_for_compare (Reg *r, const char *dump)
{
  if (!r->gossip_applied)
    return g_strdup (dump);
  g_auto (GStrv) lines = g_strsplit (dump, "\n", -1);
  GString *out = g_string_new (NULL);
  for (guint i = 0; lines[i] != NULL; i++)
    if (!g_str_has_prefix (lines[i], "revocation ") && !g_str_has_prefix (lines[i], "bundle "))
      g_string_append_printf (out, "%s\n", lines[i]);
  return g_string_free (out, FALSE);
}

static void
enospc_arm (Scenario *sc, Op op, Reg *r)
{
  Enospc *e = &sc->enospc;
  if (op == OP_NONE || e->op != op || e->done || e->reg != NULL || sc->failure != NULL)
    return;
  e->dump_before = fixture_register_dump (r->reg, TRUE);
  e->reg = r;
  r->gossip_applied = FALSE;
  tally_register_set_commit_hook (r->reg, observe_hook, r);
  faults_vfs_arm (r->dir, e->writes);
}

/* After the call that was armed: a write refused must fail the call with
 * STORAGE and leave the register as it was, in memory (here) and on disk
 * (enospc_check_disk, once no session holds the register). */
static void
enospc_disarm (Scenario *sc, Op op, Reg *r, gboolean ok, const GError *error)
{
  Enospc *e = &sc->enospc;
  if (op == OP_NONE || e->op != op || e->done || e->reg != r)
    return;
  guint refused = faults_vfs_refused ();
  faults_vfs_disarm ();
  tally_register_set_commit_hook (r->reg, NULL, NULL);
  e->done = TRUE;
  if (refused == 0) {
    e->reg = NULL;
    g_clear_pointer (&e->dump_before, g_free);
    figures->enospc_unreached++;
    scenario_log (sc, "ENOSPC at %s on %s: no write reached", op_names[op], r->name);
    return;
  }
  e->hit = TRUE;
  figures->enospc++;
  scenario_log (sc, "ENOSPC at %s on %s after %u write(s): %s", op_names[op], r->name, e->writes,
                error ? error->message : "no error");
  if (ok) {
    violation (sc, "%s on %s succeeded although the disk refused a write", op_names[op], r->name);
    return;
  }
  if (!g_error_matches (error, TALLY_ERROR, TALLY_ERROR_STORAGE)) {
    violation (sc, "%s on %s with the disk full failed with %s (%s), not Storage", op_names[op],
               r->name, tally_error_to_string (error->code), error->message);
    return;
  }
  g_autofree char *now_dump = fixture_register_dump (r->reg, TRUE);
  g_autofree char *now = dump_for_compare (r, now_dump);
  g_autofree char *before = dump_for_compare (r, e->dump_before);
  if (strcmp (now, before) != 0)
    violation (sc,
               "%s on %s failed with Storage but changed the register in memory:\n"
               "--- before\n%s--- after\n%s",
               op_names[op], r->name, before, now);
}

static void
enospc_check_disk (Scenario *sc)
{
  Enospc *e = &sc->enospc;
  if (!e->hit || e->reg == NULL)
    return;
  Reg *r = e->reg;
  e->reg = NULL;
  reg_close (r);
  if (!reg_open (sc, r))
    return;
  g_autofree char *now_dump = fixture_register_dump (r->reg, TRUE);
  g_autofree char *now = dump_for_compare (r, now_dump);
  g_autofree char *before = dump_for_compare (r, e->dump_before);
  if (sc->failure == NULL && strcmp (now, before) != 0)
    violation (sc,
               "%s on %s failed with Storage but the register reopened changed:\n"
               "--- before\n%s--- after\n%s",
               op_names[e->op], r->name, before, now);
  g_clear_pointer (&e->dump_before, g_free);
}

/* --- kills --------------------------------------------------------------------- */

static void
kill_hook (const char *point, gpointer user_data)
{
  Scenario *sc = user_data;
  if (!sc->kill.active || strcmp (point, sc->kill.point) != 0)
    return;
  if (g_str_has_suffix (point, ":before-commit"))
    figures->kill_before++;
  else
    figures->kill_after++;
  kill (getpid (), SIGKILL);
}

/* The hook fires for any register; only the planned one has it set. */
static void
kill_install (Scenario *sc)
{
  if (sc->kill.active && sc->kill.reg->reg != NULL)
    tally_register_set_commit_hook (sc->kill.reg->reg, kill_hook, sc);
}

/* --- the issuer's books, read through its store -------------------------------- */

static TallyIssuerStore *
books_open (Scenario *sc)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = g_build_filename (sc->issuer_dir, "issuer.db", NULL);
  TallyIssuerStore *store = tally_issuer_store_sqlite_open (path, FALSE, &error);
  if (store == NULL)
    violation (sc, "the issuer's store does not open: %s", error->message);
  return store;
}

/* --- payments ------------------------------------------------------------------ */

typedef struct
{
  FaultsWireFault wire_fault;
  HandshakeStep wire_at; /* the message kind the wire fault hits */
  guint pick;
  gint disconnect_at; /* HandshakeStep after which the link breaks, or -1 */
  gboolean disconnect_delivered;
  gboolean reject;
  /* Where the sessions ended, when this process saw them end. */
  gboolean ended;
  TallySessionState end[2];
} PayPlan;

typedef struct
{
  Scenario *sc;
  PayPlan *plan;
  FaultsWire *wire;
  TallySession *session[2];
  Reg *reg[2];
  gboolean closed[2]; /* the side closed its end after finishing */
  gboolean link_down;
  gboolean fault_used;
  gboolean cut_pending; /* break the link once the peer handled a message */
  gint64 clock_us;
  GPtrArray *errors; /* char *, the errors the sessions ended with */
} Pay;

static gint
message_kind (GBytes *message)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (message, &len);
  g_autoptr (Tally__SessionMessage) m = TALLY_UNPACK (Tally__SessionMessage, tally__session_message,
                                                      data, len, "session message", NULL);
  if (m == NULL)
    return -1;
  switch (m->msg_case) {
  case TALLY__SESSION_MESSAGE__MSG_HELLO: return HS_HELLO;
  case TALLY__SESSION_MESSAGE__MSG_OFFER: return HS_OFFER;
  case TALLY__SESSION_MESSAGE__MSG_REVEAL: return HS_REVEAL;
  case TALLY__SESSION_MESSAGE__MSG_PAY: return HS_PAY;
  case TALLY__SESSION_MESSAGE__MSG_RECEIPT: return HS_RECEIPT;
  case TALLY__SESSION_MESSAGE__MSG_ERROR:
  case TALLY__SESSION_MESSAGE__MSG__NOT_SET:
  case _TALLY__SESSION_MESSAGE__MSG__CASE_IS_INT_SIZE: break;
  }
  return -1;
}

static gboolean
session_finished (TallySession *s)
{
  TallySessionState st = tally_session_get_state (s);
  return st == TALLY_SESSION_STATE_DONE || st == TALLY_SESSION_STATE_FAILED;
}

static const char *
side_name (FaultsSide side)
{
  return side == FAULTS_SIDE_PAYER ? "payer" : "payee";
}

/* Errors a session may end with in these scenarios; anything else means a
 * benign fault made an honest peer look hostile. */
static gboolean
error_expected (const Pay *p, const GError *error)
{
  if (error->domain != TALLY_ERROR)
    return FALSE;
  switch ((TallyError) error->code) {
  case TALLY_ERROR_DISCONNECTED:
  case TALLY_ERROR_TIMEOUT:
  case TALLY_ERROR_FRAME_OVERSIZE:
  case TALLY_ERROR_FRAME_TRUNCATED:
  case TALLY_ERROR_FRAME_UNKNOWN:
  case TALLY_ERROR_FRAME_TIMEOUT:
  case TALLY_ERROR_WRONG_STATE:
  case TALLY_ERROR_REJECTED:
  case TALLY_ERROR_INSUFFICIENT_FUNDS:
  case TALLY_ERROR_LIMIT_BALANCE:
  case TALLY_ERROR_EXPIRED: return TRUE;
  /* The full disk, when it refused a write. */
  case TALLY_ERROR_STORAGE: return p->sc->enospc.hit;
  /* A forked register meets the revocation of its id, or a payee that
   * already holds the other lineage's entry at this counter. */
  case TALLY_ERROR_REVOKED:
  case TALLY_ERROR_COUNTER_REUSED:
  case TALLY_ERROR_CHAIN_FORK: return reg_tainted (p->reg[0]) || reg_tainted (p->reg[1]);
  /* A payee rolled back past the payment that cached the payer's
   * certificate no longer holds it (protocol.md 4.2). */
  case TALLY_ERROR_NOT_FOUND:
  case TALLY_ERROR_REPLAY:
  /* A payee restored from a copy older than the request a pending
   * permission answers no longer knows its nonce. */
  case TALLY_ERROR_WRONG_NONCE: return reg_tainted (p->reg[1]) || reg_tainted (p->reg[0]);
  case TALLY_ERROR_FAILED:
  case TALLY_ERROR_INVALID_ARGUMENT:
  case TALLY_ERROR_MALFORMED:
  case TALLY_ERROR_BAD_SIGNATURE:
  case TALLY_ERROR_WRONG_CONTEXT:
  case TALLY_ERROR_WRONG_ISSUER:
  case TALLY_ERROR_CERT_EXPIRED:
  case TALLY_ERROR_CERT_NOT_YET_VALID:
  case TALLY_ERROR_WRONG_PAYEE:
  case TALLY_ERROR_AMOUNT_MISMATCH:
  case TALLY_ERROR_CURRENCY_MISMATCH:
  case TALLY_ERROR_INVALID_AMOUNT:
  case TALLY_ERROR_OVERFLOW:
  case TALLY_ERROR_LIMIT_PAYMENT:
  case TALLY_ERROR_LIMIT_COUNT:
  case TALLY_ERROR_LIMIT_TIME:
  case TALLY_ERROR_VOUCHER_REPLAY:
  case TALLY_ERROR_DECRYPT:
  case TALLY_ERROR_TRANSCRIPT:
  case TALLY_ERROR_INCOMPLETE:
  case TALLY_ERROR_POLICY:
  case TALLY_ERROR_STALE_REVOCATION_LIST:
  case TALLY_ERROR_NO_CERTIFICATE:
  case TALLY_ERROR_CANCELLED:
  case TALLY_ERROR_VERSION:
  case TALLY_ERROR_EXISTS:
  case TALLY_ERROR_NOT_AUTHORIZED:
  case TALLY_ERROR_ALREADY_PAID:
  case TALLY_ERROR_REQUEST_UNNAMED:
  case TALLY_ERROR_WRONG_REGISTER: return FALSE;
  }
  return FALSE;
}

static void
pay_note_end (Pay *p, FaultsSide side)
{
  const GError *e = tally_session_get_error (p->session[side]);
  if (e == NULL)
    return;
  g_ptr_array_add (p->errors, g_strdup_printf ("%s: %s (%s)", side_name (side),
                                               tally_error_to_string (e->code), e->message));
  if (!error_expected (p, e))
    violation (p->sc, "payment %s -> %s: the %s failed with %s: %s", p->reg[0]->name,
               p->reg[1]->name, side_name (side),
               e->domain == TALLY_ERROR ? tally_error_to_string (e->code) : "foreign", e->message);
}

/* The link went away: each side that has not finished aborts, as the
 * daemon does when its channel closes (daemon/tally-payment.c). */
static void
pay_cut (Pay *p, TallyError code, const char *why)
{
  if (p->link_down)
    return;
  p->link_down = TRUE;
  faults_wire_cut (p->wire);
  for (guint s = 0; s < 2; s++) {
    if (session_finished (p->session[s]))
      continue;
    g_autoptr (GBytes) unsent = tally_session_abort (p->session[s], code, why);
    pay_note_end (p, s);
  }
}

static void
pay_send (Pay *p, FaultsSide from, GBytes *message)
{
  if (p->link_down || message == NULL)
    return;
  gint kind = message_kind (message);
  FaultsWireFault fault = FAULTS_WIRE_NONE;
  if (!p->fault_used && kind == (gint) p->plan->wire_at &&
      p->plan->wire_fault != FAULTS_WIRE_NONE) {
    p->fault_used = TRUE;
    fault = p->plan->wire_fault;
  }
  FaultsWireFault applied = faults_wire_send (p->wire, from, message, fault, p->plan->pick);
  if (applied != FAULTS_WIRE_NONE) {
    figures->wire[applied]++;
    scenario_log (p->sc, "wire: %s on %s", faults_wire_fault_to_string (applied),
                  kind >= 0 ? hs_names[kind] : "error");
  }
  if (kind >= 0 && kind == p->plan->disconnect_at) {
    p->plan->disconnect_at = -1;
    figures->disconnect[kind]++;
    scenario_log (p->sc, "disconnect after %s (%s)", hs_names[kind],
                  p->plan->disconnect_delivered ? "delivered" : "lost");
    if (p->plan->disconnect_delivered)
      p->cut_pending = TRUE;
    else
      pay_cut (p, TALLY_ERROR_DISCONNECTED, "link lost");
  }
}

/* Payer in CONFIRMING: the agent answers. */
static void
pay_confirm (Pay *p)
{
  Scenario *sc = p->sc;
  TallySession *s = p->session[FAULTS_SIDE_PAYER];
  g_autoptr (GError) error = NULL;

  /* As the daemon does: a permission to this payee that never got its
   * receipt goes again first, and nothing new is spent. */
  g_autoptr (GBytes) again = tally_session_redeliver (s, sc->now, &error);
  if (again != NULL) {
    scenario_log (sc, "delivering counter %" G_GUINT64_FORMAT " again",
                  tally_session_get_counter (s));
    pay_send (p, FAULTS_SIDE_PAYER, again);
    return;
  }
  if (!g_error_matches (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND)) {
    g_autoptr (GBytes) wire = tally_session_abort (s, tally_error_code (error), error->message);
    pay_note_end (p, FAULTS_SIDE_PAYER);
    pay_send (p, FAULTS_SIDE_PAYER, wire);
    p->closed[FAULTS_SIDE_PAYER] = TRUE;
    return;
  }
  g_clear_error (&error);
  /* The agent is asked only when something new would be spent. */
  if (p->plan->reject) {
    figures->rejected++;
    g_autoptr (GBytes) wire = tally_session_abort (s, TALLY_ERROR_REJECTED, "the agent said no");
    pay_note_end (p, FAULTS_SIDE_PAYER);
    pay_send (p, FAULTS_SIDE_PAYER, wire);
    p->closed[FAULTS_SIDE_PAYER] = TRUE;
    return;
  }
  enospc_arm (sc, OP_SPEND, p->reg[FAULTS_SIDE_PAYER]);
  g_autoptr (GBytes) pay = tally_session_confirm (s, sc->now, &error);
  enospc_disarm (sc, OP_SPEND, p->reg[FAULTS_SIDE_PAYER], pay != NULL, error);
  if (pay == NULL) {
    /* As the daemon does: tell the payee why. */
    g_autoptr (GBytes) wire = tally_session_abort (s, tally_error_code (error), error->message);
    pay_note_end (p, FAULTS_SIDE_PAYER);
    pay_send (p, FAULTS_SIDE_PAYER, wire);
    p->closed[FAULTS_SIDE_PAYER] = TRUE;
    return;
  }
  pay_send (p, FAULTS_SIDE_PAYER, pay);
}

static void
pay_handle (Pay *p, FaultsSide to, GBytes *message)
{
  Scenario *sc = p->sc;
  TallySession *s = p->session[to];
  g_autoptr (GBytes) reply = NULL;
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (message, &len);

  /* A finished side has closed its channel: nothing reaches it. */
  if (session_finished (s) || p->closed[to])
    return;

  TallySessionState before = tally_session_get_state (s);
  Op op = OP_NONE;
  if (to == FAULTS_SIDE_PAYEE && before == TALLY_SESSION_STATE_WAIT_PAY)
    op = OP_RECEIVE;
  else if (to == FAULTS_SIDE_PAYER && before == TALLY_SESSION_STATE_PAY_SENT)
    op = OP_ACKNOWLEDGE;
  enospc_arm (sc, op, p->reg[to]);
  gboolean ok = tally_session_handle (s, data, len, sc->now, &reply, &error);
  enospc_disarm (sc, op, p->reg[to], ok, error);

  if (!ok) {
    pay_note_end (p, to);
    pay_send (p, to, reply);
    p->closed[to] = TRUE;
  } else {
    pay_send (p, to, reply);
    if (tally_session_get_state (s) == TALLY_SESSION_STATE_DONE)
      p->closed[to] = TRUE;
    else if (tally_session_get_state (s) == TALLY_SESSION_STATE_CONFIRMING)
      pay_confirm (p);
  }
  if (p->cut_pending) {
    p->cut_pending = FALSE;
    pay_cut (p, TALLY_ERROR_DISCONNECTED, "link lost");
  }
}

/* Moves fragments until both sessions finished or nothing moves. */
static void
pay_run (Pay *p)
{
  Scenario *sc = p->sc;
  while (!session_finished (p->session[0]) || !session_finished (p->session[1])) {
    gboolean moved = FALSE;
    for (guint to = 0; to < 2 && !p->link_down; to++) {
      GBytes *message = NULL;
      g_autoptr (GError) error = NULL;
      p->clock_us += 7500; /* one connection interval */
      if (!faults_wire_deliver (p->wire, to, p->clock_us, &message, &error))
        continue;
      moved = TRUE;
      g_autoptr (GBytes) owned = message;
      if (error != NULL) {
        /* The receiving channel closes with the framing error. */
        scenario_log (sc, "%s: framing: %s", side_name (to), error->message);
        if (!session_finished (p->session[to])) {
          g_autoptr (GBytes) unsent =
            tally_session_abort (p->session[to], tally_error_code (error), error->message);
          pay_note_end (p, to);
        }
        pay_cut (p, TALLY_ERROR_DISCONNECTED, "peer closed the connection");
        break;
      }
      if (owned != NULL)
        pay_handle (p, to, owned);
    }
    if (p->link_down || moved)
      continue;

    /* Nothing in flight.  A side that finished closed the link; a side
     * still waiting gives up when its payment times out. */
    if (p->closed[0] || p->closed[1]) {
      pay_cut (p, TALLY_ERROR_DISCONNECTED, "peer closed the connection");
      break;
    }
    figures->timeouts++;
    sc->now += PAYMENT_TIMEOUT_S;
    p->clock_us += (gint64) PAYMENT_TIMEOUT_S * G_USEC_PER_SEC;
    for (guint s = 0; s < 2; s++) {
      g_autoptr (GError) error = NULL;
      TallyError code = TALLY_ERROR_TIMEOUT;
      if (!faults_wire_check (p->wire, s, p->clock_us, &error))
        code = tally_error_code (error);
      if (!session_finished (p->session[s])) {
        g_autoptr (GBytes) unsent = tally_session_abort (p->session[s], code, "payment timed out");
        pay_note_end (p, s);
      }
    }
    pay_cut (p, TALLY_ERROR_TIMEOUT, "payment timed out");
  }
}

static void
plan_payment (Scenario *sc, PayPlan *plan, gboolean faults)
{
  *plan = (PayPlan){ .disconnect_at = -1 };
  plan->pick = g_rand_int (sc->rand);
  plan->reject = rand_chance (sc, 0.03);
  if (!faults)
    return;
  if (rand_chance (sc, 0.6)) {
    plan->wire_fault = 1 + rand_below (sc, N_WIRE_FAULTS - 1);
    plan->wire_at = rand_below (sc, N_HS);
  }
  if (rand_chance (sc, 0.35)) {
    plan->disconnect_at = rand_below (sc, N_HS);
    plan->disconnect_delivered = rand_chance (sc, 0.5);
  }
}

/* One payment from @payer to @payee over the faulty wire.  Runs in the
 * parent or in a child that may be killed; the outcome is read from disk
 * afterwards either way (record_payment). */
static void
run_payment (Scenario *sc, Reg *payer, Reg *payee, gint64 amount, PayPlan *plan, gsize mtu)
{
  g_autoptr (GError) error = NULL;

  enospc_arm (sc, OP_REQUEST, payee);
  g_autoptr (TallySession) payee_s =
    tally_session_new_payee (payee->reg, amount, "faults", NULL, sc->now, &error);
  enospc_disarm (sc, OP_REQUEST, payee, payee_s != NULL, error);
  if (payee_s == NULL) {
    scenario_log (sc, "payee %s: no request: %s", payee->name, error->message);
    if (!g_error_matches (error, TALLY_ERROR, TALLY_ERROR_STORAGE) || !sc->enospc.hit)
      violation (sc, "payee %s cannot make a request: %s", payee->name, error->message);
    return;
  }
  g_autoptr (TallySession) payer_s = tally_session_new_payer (payer->reg, NULL);
  g_autoptr (FaultsWire) wire = faults_wire_new (mtu, REASSEMBLY_MS);
  g_autoptr (GPtrArray) errors = g_ptr_array_new_with_free_func (g_free);
  Pay p = {
    .sc = sc,
    .plan = plan,
    .wire = wire,
    .session = { payer_s, payee_s },
    .reg = { payer, payee },
    .clock_us = (gint64) sc->now * G_USEC_PER_SEC,
    .errors = errors,
  };

  g_autoptr (GBytes) hello = tally_session_start (payer_s, &error);
  if (hello == NULL) {
    violation (sc, "payer %s cannot start: %s", payer->name, error->message);
    return;
  }
  pay_send (&p, FAULTS_SIDE_PAYER, hello);
  pay_run (&p);

  TallySessionState ps = tally_session_get_state (payer_s);
  TallySessionState es = tally_session_get_state (payee_s);
  scenario_log (sc, "payment %s -> %s of %" G_GINT64_FORMAT ": payer %s, payee %s%s%s", payer->name,
                payee->name, amount, tally_session_state_to_string (ps),
                tally_session_state_to_string (es), errors->len ? "; " : "",
                errors->len ? (char *) errors->pdata[0] : "");
  plan->ended = TRUE;
  plan->end[FAULTS_SIDE_PAYER] = ps;
  plan->end[FAULTS_SIDE_PAYEE] = es;
  if (!session_finished (payer_s) || !session_finished (payee_s))
    violation (sc, "payment %s -> %s left a session unfinished (payer %s, payee %s)", payer->name,
               payee->name, tally_session_state_to_string (ps), tally_session_state_to_string (es));
}

/* --- steps --------------------------------------------------------------------- */

typedef enum
{
  STEP_PAY,
  STEP_LOAD,
  STEP_RECONCILE,
  STEP_DEFUND,
} StepKind;

typedef struct
{
  StepKind kind;
  Reg *a; /* payer, or the register of a one-register step */
  Reg *b; /* payee */
  gint64 amount;
  GBytes *voucher;
  PayPlan plan;
  gsize mtu;
  gboolean onward;
  /* The payer's pending permission to the payee, which the session will
   * deliver again instead of spending (0: none). */
  guint64 pending_counter;
  gint64 pending_amount;
} Step;

static gboolean
reconcile_one (Scenario *sc, Reg *r, gboolean must_succeed)
{
  g_autoptr (GError) error = NULL;
  TallyReconcileReport report;

  enospc_arm (sc, OP_EXPORT, r);
  g_autoptr (GBytes) bundle = tally_register_export_bundle (r->reg, sc->now, &error);
  enospc_disarm (sc, OP_EXPORT, r, bundle != NULL, error);
  if (bundle == NULL) {
    if (must_succeed || !g_error_matches (error, TALLY_ERROR, TALLY_ERROR_STORAGE) ||
        !sc->enospc.hit)
      return violation (sc, "%s cannot export a bundle: %s", r->name, error->message);
    return FALSE;
  }
  gsize len;
  const guint8 *data = g_bytes_get_data (bundle, &len);
  g_autoptr (GBytes) result =
    tally_issuer_reconcile (sc->issuer, data, len, sc->now, &report, &error);
  if (result == NULL && r->skipped &&
      g_error_matches (error, TALLY_ERROR, TALLY_ERROR_INCOMPLETE)) {
    /* Its entries reach the issuer through their payees only. */
    figures->owner_incomplete++;
    scenario_log (sc, "the issuer refuses %s's bundle: %s", r->name, error->message);
    return FALSE;
  }
  if (result == NULL)
    return violation (sc, "the issuer refuses %s's bundle: %s", r->name, error->message);
  if (report.fraud_proofs > 0)
    scenario_log (sc, "issuer: %u fraud proof(s) from %s's bundle", report.fraud_proofs, r->name);

  data = g_bytes_get_data (result, &len);
  enospc_arm (sc, OP_APPLY, r);
  gboolean ok = tally_register_apply_result (r->reg, data, len, sc->now, &error);
  enospc_disarm (sc, OP_APPLY, r, ok, error);
  if (!ok) {
    if (must_succeed || !g_error_matches (error, TALLY_ERROR, TALLY_ERROR_STORAGE) ||
        !sc->enospc.hit)
      return violation (sc, "%s refuses its result: %s", r->name, error->message);
    return FALSE;
  }
  figures->reconciliations++;
  return TRUE;
}

/* Applies the vouchers sold to @r in order; one applied before is a replay. */
static gboolean
drain_vouchers (Scenario *sc, Reg *r)
{
  GBytes *v;
  while ((v = g_queue_peek_head (&r->vouchers)) != NULL) {
    g_autoptr (GError) error = NULL;
    gsize len;
    const guint8 *data = g_bytes_get_data (v, &len);
    enospc_arm (sc, OP_LOAD, r);
    gboolean ok = tally_register_load (r->reg, data, len, sc->now, &error);
    enospc_disarm (sc, OP_LOAD, r, ok, error);
    if (!ok && !g_error_matches (error, TALLY_ERROR, TALLY_ERROR_VOUCHER_REPLAY)) {
      if (g_error_matches (error, TALLY_ERROR, TALLY_ERROR_STORAGE) && sc->enospc.hit)
        return TRUE; /* tried again once the disk has room */
      return violation (sc, "%s refuses its voucher: %s", r->name, error->message);
    }
    g_bytes_unref (g_queue_pop_head (&r->vouchers));
  }
  return TRUE;
}

static void
run_step (Scenario *sc, Step *st)
{
  g_autoptr (GError) error = NULL;

  kill_install (sc);
  switch (st->kind) {
  case STEP_PAY: run_payment (sc, st->a, st->b, st->amount, &st->plan, st->mtu); break;
  case STEP_LOAD: drain_vouchers (sc, st->a); break;
  case STEP_RECONCILE: reconcile_one (sc, st->a, FALSE); break;
  case STEP_DEFUND: {
    enospc_arm (sc, OP_DEFUND, st->a);
    g_autoptr (GBytes) record = tally_register_defund (st->a->reg, sc->now, &error);
    enospc_disarm (sc, OP_DEFUND, st->a, record != NULL, error);
    if (record == NULL &&
        (!g_error_matches (error, TALLY_ERROR, TALLY_ERROR_STORAGE) || !sc->enospc.hit))
      violation (sc, "%s cannot defund: %s", st->a->name, error->message);
    break;
  }
  }
}

/* Runs @st in a child that kills itself at the planned commit point; the
 * parent reopens everything from disk. */
static void
run_step_killed (Scenario *sc, Step *st)
{
  world_close (sc);
  fflush (stdout);
  pid_t pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0) {
    if (!world_open (sc)) {
      g_strlcpy (figures->child_failure, sc->failure, sizeof figures->child_failure);
      _exit (1);
    }
    run_step (sc, st);
    if (sc->failure != NULL) {
      g_strlcpy (figures->child_failure, sc->failure, sizeof figures->child_failure);
      _exit (1);
    }
    _exit (0);
  }
  int status;
  while (waitpid (pid, &status, 0) < 0)
    g_assert_cmpint (errno, ==, EINTR);
  if (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL) {
    scenario_log (sc, "killed at %s of %s", sc->kill.point, sc->kill.reg->name);
  } else if (WIFEXITED (status) && WEXITSTATUS (status) == 0) {
    figures->kill_unreached++;
    scenario_log (sc, "%s of %s not reached", sc->kill.point, sc->kill.reg->name);
  } else if (WIFEXITED (status) && WEXITSTATUS (status) == 1) {
    g_autofree char *what = g_strdup (figures->child_failure);
    figures->child_failure[0] = '\0';
    if (sc->failure == NULL)
      sc->failure = g_steal_pointer (&what);
  } else {
    violation (sc, "the step's child ended with status 0x%x", status);
  }
  world_open (sc);
}

static const char *
kill_point_for (Scenario *sc, Step *st, Reg **target)
{
  static const char *const pay_payer[] = { "spend", "acknowledge", "revocation" };
  static const char *const pay_payee[] = { "request", "receive", "revocation" };
  static const char *const reconcile[] = { "export", "apply" };
  const char *op = NULL;
  *target = st->a;
  switch (st->kind) {
  case STEP_PAY:
    /* "revocation" (last) only now and then: a session stores a list only
     * when its peer gossips a newer one. */
    if (rand_chance (sc, 0.5)) {
      op = pay_payer[rand_below (sc, G_N_ELEMENTS (pay_payer) - (rand_chance (sc, 0.9) ? 1 : 0))];
    } else {
      *target = st->b;
      op = pay_payee[rand_below (sc, G_N_ELEMENTS (pay_payee) - (rand_chance (sc, 0.9) ? 1 : 0))];
    }
    break;
  case STEP_LOAD: op = "load"; break;
  case STEP_RECONCILE: op = reconcile[rand_below (sc, G_N_ELEMENTS (reconcile))]; break;
  case STEP_DEFUND: op = "defund"; break;
  }
  g_autofree char *point =
    g_strdup_printf ("%s:%s", op, rand_chance (sc, 0.5) ? "before-commit" : "after-commit");
  /* Only points the register names. */
  for (const char *const *p = tally_register_commit_points (); *p != NULL; p++)
    if (strcmp (*p, point) == 0)
      return *p;
  g_error ("commit point %s is not one the register names", point);
}

static Op
enospc_op_for (Scenario *sc, Step *st)
{
  static const Op pay[] = { OP_REQUEST, OP_SPEND, OP_RECEIVE, OP_ACKNOWLEDGE };
  static const Op reconcile[] = { OP_EXPORT, OP_APPLY };
  switch (st->kind) {
  case STEP_PAY: return pay[rand_below (sc, G_N_ELEMENTS (pay))];
  case STEP_LOAD: return OP_LOAD;
  case STEP_RECONCILE: return reconcile[rand_below (sc, G_N_ELEMENTS (reconcile))];
  case STEP_DEFUND: return OP_DEFUND;
  }
  g_assert_not_reached ();
}

static gboolean
reg_usable (Reg *r)
{
  return !tally_register_is_closed (r->reg);
}

/* A payer: a register with enough to pay, preferring the forked lineage
 * while a fork is fresh; for an onward payment one that received value. */
static Reg *
pick_payer (Scenario *sc, gboolean onward)
{
  if (sc->owner_bias > 0) {
    sc->owner_bias--;
    Reg *o = reg_at (sc, sc->owner_payer);
    if (reg_usable (o) && tally_register_get_balance (o->reg) > 1000 && rand_chance (sc, 0.7))
      return o;
  }
  if (sc->fork_bias > 0) {
    sc->fork_bias--;
    Reg *f = reg_at (sc, sc->regs->len - 1);
    if (sc->fork_kind == FORK_ROLLBACK)
      f = reg_at (sc, sc->fork_reg);
    if (reg_usable (f) && tally_register_get_balance (f->reg) > 1000 && rand_chance (sc, 0.7))
      return f;
  }
  g_autoptr (GPtrArray) cands = g_ptr_array_new ();
  for (guint i = 0; i < sc->regs->len; i++) {
    Reg *r = reg_at (sc, i);
    if (reg_usable (r) && tally_register_get_balance (r->reg) > 1000 &&
        (!onward || r->received_any))
      g_ptr_array_add (cands, r);
  }
  if (cands->len == 0)
    return NULL;
  return cands->pdata[rand_below (sc, cands->len)];
}

static Reg *
pick_payee (Scenario *sc, Reg *payer)
{
  g_autoptr (GPtrArray) cands = g_ptr_array_new ();
  for (guint i = 0; i < sc->regs->len; i++) {
    Reg *r = reg_at (sc, i);
    if (r->is_clone || r->origin == payer->origin || !reg_usable (r))
      continue;
    g_ptr_array_add (cands, r);
  }
  if (cands->len == 0)
    return NULL;
  return cands->pdata[rand_below (sc, cands->len)];
}

/* Amounts are unique in a scenario (the attempt number is in the last
 * three digits), so an entry the issuer booked names its attempt. */
static gint64
payment_amount (Scenario *sc, Reg *payer)
{
  gint64 bal = tally_register_get_balance (payer->reg);
  gint64 units = MIN ((bal - 1000) / 1000, 60);
  if (units < 1)
    return 0;
  return (gint64) (1 + rand_below (sc, (guint) units)) * 1000 + sc->attempts->len % 1000;
}

static void
record_payment (Scenario *sc,
                Step *st,
                guint64 counter0,
                gint64 payer_bal0,
                gint64 payee_bal0,
                gboolean had_received0)
{
  Reg *payer = st->a, *payee = st->b;
  if (!reg_open (sc, payer) || !reg_open (sc, payee))
    return;
  guint64 counter1 = tally_register_get_counter (payer->reg);
  gint64 payer_bal1 = tally_register_get_balance (payer->reg);
  gint64 payee_bal1 = tally_register_get_balance (payee->reg);
  gboolean has;
  guint64 watched = st->pending_counter ? st->pending_counter : counter0 + 1;
  if (!has_received (sc, payee, payer->id_hex, watched, &has))
    return;

  /* A session that says DONE speaks for its register: the payee committed
   * the credit before its receipt existed, the payer holds that receipt. */
  for (guint side = 0; st->plan.ended && side < 2; side++)
    if (st->plan.end[side] == TALLY_SESSION_STATE_DONE && !has) {
      violation (sc,
                 "the %s's session is done, but %s holds no credit for counter %" G_GUINT64_FORMAT
                 " of %s",
                 side_name (side), payee->name, watched, payer->name);
      return;
    }

  if (st->pending_counter != 0) {
    /* Delivered again: nothing spent; the payee credits it now or
     * answered with the receipt it stored. */
    gboolean newly = has && !had_received0;
    if (counter1 != counter0 || payer_bal1 != payer_bal0)
      violation (sc, "payer %s spent while delivering counter %" G_GUINT64_FORMAT " again",
                 payer->name, st->pending_counter);
    else if (payee_bal1 != payee_bal0 + (newly ? st->pending_amount : 0))
      violation (sc,
                 "payee %s's balance went from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT
                 " on a permission delivered again (%s)",
                 payee->name, payee_bal0, payee_bal1,
                 newly           ? "credited now"
                 : had_received0 ? "credited before"
                                 : "not credited");
    if (sc->failure != NULL)
      return;
    for (guint i = 0; i < sc->attempts->len; i++) {
      Attempt *a = &g_array_index (sc->attempts, Attempt, i);
      /* The entry may predate a fork: a clone or a restored copy holds
       * what the register spent before the copy. */
      if (a->kind == ATTEMPT_PAYMENT && a->committed &&
          reg_at (sc, a->payer)->origin == payer->origin && a->counter == st->pending_counter &&
          (a->counter <= payer->fork_counter || a->lineage == payer->lineage)) {
        if (a->payee != reg_index (sc, payee) || a->amount != st->pending_amount) {
          violation (sc, "%s delivered counter %" G_GUINT64_FORMAT " again to %s, but it paid %s",
                     payer->name, a->counter, payee->name, reg_at (sc, a->payee)->name);
          return;
        }
        a->credited |= newly;
      }
    }
    g_autofree char *state = NULL;
    gboolean receipt;
    if (!spent_row (sc, payer, st->pending_counter, &state, &receipt))
      return;
    if (has && receipt)
      figures->redelivered++;
    else if (receipt && !has)
      violation (sc, "%s holds a receipt for counter %" G_GUINT64_FORMAT " that %s never credited",
                 payer->name, st->pending_counter, payee->name);
    scenario_log (sc, "outcome: counter %" G_GUINT64_FORMAT " delivered again, %s%s",
                  st->pending_counter,
                  newly ? "credited now"
                  : has ? "credited before"
                        : "not credited",
                  receipt ? ", receipt held" : "");
    return;
  }

  if (counter1 != counter0 && counter1 != counter0 + 1) {
    violation (sc,
               "payer %s's counter went from %" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT
               " in one payment",
               payer->name, counter0, counter1);
    return;
  }
  gboolean committed = counter1 == counter0 + 1;
  gboolean credited = has && !had_received0;
  if (payer_bal1 != payer_bal0 - (committed ? st->amount : 0)) {
    violation (sc,
               "payer %s's balance went from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT
               " (%s, amount %" G_GINT64_FORMAT ")",
               payer->name, payer_bal0, payer_bal1, committed ? "committed" : "not committed",
               st->amount);
    return;
  }
  if (credited && !committed) {
    violation (sc,
               "payee %s credited counter %" G_GUINT64_FORMAT " of %s, which the payer "
               "never committed",
               payee->name, counter0 + 1, payer->name);
    return;
  }
  if (payee_bal1 != payee_bal0 + (credited ? st->amount : 0)) {
    violation (sc,
               "payee %s's balance went from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT
               " (%s, amount %" G_GINT64_FORMAT ")",
               payee->name, payee_bal0, payee_bal1, credited ? "credited" : "not credited",
               st->amount);
    return;
  }
  Attempt a = {
    .kind = ATTEMPT_PAYMENT,
    .payer = reg_index (sc, payer),
    .payee = reg_index (sc, payee),
    .lineage = payer->lineage,
    .amount = st->amount,
    .counter = committed ? counter1 : 0,
    .committed = committed,
    .credited = credited,
    .step = sc->step,
  };
  g_array_append_val (sc->attempts, a);
  if (credited)
    payee->received_any = TRUE;
  scenario_log (sc, "outcome: %s", credited ? "paid" : committed ? "in flight" : "not paid");
}

static void
record_defund (Scenario *sc, Reg *r, guint64 counter0, gint64 bal0)
{
  if (!reg_open (sc, r))
    return;
  guint64 counter1 = tally_register_get_counter (r->reg);
  gboolean closed = tally_register_is_closed (r->reg);
  gint64 bal1 = tally_register_get_balance (r->reg);
  gboolean committed = counter1 == counter0 + 1;
  if (closed != committed || (committed && bal1 != 0) || (!committed && bal1 != bal0) ||
      (counter1 != counter0 && !committed)) {
    violation (sc,
               "defund of %s: counter %" G_GUINT64_FORMAT " -> %" G_GUINT64_FORMAT
               ", balance %" G_GINT64_FORMAT " -> %" G_GINT64_FORMAT ", %s",
               r->name, counter0, counter1, bal0, bal1, closed ? "closed" : "open");
    return;
  }
  if (!committed)
    return;
  Attempt a = {
    .kind = ATTEMPT_DEFUND,
    .payer = reg_index (sc, r),
    .lineage = r->lineage,
    .amount = bal0,
    .counter = counter1,
    .committed = TRUE,
    .step = sc->step,
  };
  g_array_append_val (sc->attempts, a);
  scenario_log (sc, "defunded %s: %" G_GINT64_FORMAT, r->name, bal0);
}

static void
do_step (Scenario *sc)
{
  g_autoptr (GError) error = NULL;
  Step st = { 0 };
  gdouble roll = g_rand_double (sc->rand);

  if (roll < 0.55) {
    st.kind = STEP_PAY;
    st.onward = rand_chance (sc, 0.3);
    st.a = pick_payer (sc, st.onward);
    if (st.a == NULL && st.onward) {
      st.onward = FALSE;
      st.a = pick_payer (sc, FALSE);
    }
    st.b = st.a ? pick_payee (sc, st.a) : NULL;
    if (st.a == NULL || st.b == NULL || (st.amount = payment_amount (sc, st.a)) == 0)
      st.kind = STEP_RECONCILE;
  } else if (roll < 0.70) {
    st.kind = STEP_LOAD;
  } else if (roll < 0.97) {
    st.kind = STEP_RECONCILE;
  } else {
    st.kind = STEP_DEFUND;
  }
  if (st.kind != STEP_PAY) {
    st.a = reg_at (sc, rand_below (sc, sc->regs->len));
    if (st.kind != STEP_RECONCILE && !reg_usable (st.a))
      st.kind = STEP_RECONCILE;
  }
  if (st.kind == STEP_DEFUND) {
    /* Keep enough registers open to pay between. */
    guint open = 0;
    for (guint i = 0; i < sc->regs->len; i++)
      open += reg_usable (reg_at (sc, i)) && !reg_at (sc, i)->is_clone;
    if (open <= 3 || reg_tainted (st.a))
      st.kind = STEP_RECONCILE;
  }

  gboolean faults = rand_chance (sc, 0.6);
  st.mtu = TALLY_FRAME_MIN_MTU + rand_below (sc, 200);
  if (st.kind == STEP_PAY)
    plan_payment (sc, &st.plan, faults);

  /* One process-level fault per step: a kill, or a full disk. */
  sc->kill = (Kill){ 0 };
  sc->enospc = (Enospc){ 0 };
  gdouble fault_roll = g_rand_double (sc->rand);
  if (faults && fault_roll < 0.3) {
    sc->kill.active = TRUE;
    sc->kill.point = (char *) kill_point_for (sc, &st, &sc->kill.reg);
  } else if (faults && fault_roll < 0.45) {
    sc->enospc.op = enospc_op_for (sc, &st);
    sc->enospc.writes = rand_below (sc, 4);
  }

  /* Before the step, what decides its outcome afterwards. */
  guint64 counter0 = tally_register_get_counter (st.a->reg);
  gint64 bal_a0 = tally_register_get_balance (st.a->reg);
  gint64 bal_b0 = st.b ? tally_register_get_balance (st.b->reg) : 0;
  gboolean had0 = FALSE;
  if (st.kind == STEP_PAY) {
    g_autoptr (GBytes) pending = tally_register_get_pending (st.a->reg, st.b->id, sc->now, &error);
    if (pending != NULL) {
      gsize len;
      const guint8 *data = g_bytes_get_data (pending, &len);
      g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (data, len, &error);
      g_autoptr (Tally__DepositPermission) perm =
        env ? TALLY_UNPACK (Tally__DepositPermission, tally__deposit_permission, env->body.data,
                            env->body.len, "permission", &error)
            : NULL;
      if (perm == NULL || perm->amount == NULL) {
        violation (sc, "%s's pending permission does not decode", st.a->name);
        return;
      }
      st.pending_counter = perm->counter;
      st.pending_amount = perm->amount->value;
    } else if (!g_error_matches (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND)) {
      violation (sc, "%s: pending permission: %s", st.a->name, error->message);
      return;
    }
    g_clear_error (&error);
    guint64 watched = st.pending_counter ? st.pending_counter : counter0 + 1;
    if (!has_received (sc, st.b, st.a->id_hex, watched, &had0))
      return;
  }

  switch (st.kind) {
  case STEP_PAY:
    if (st.pending_counter != 0) {
      figures->redelivery_sessions++;
    } else {
      figures->payments++;
      figures->onward += st.onward;
    }
    scenario_log (sc, "pay %s -> %s %" G_GINT64_FORMAT "%s, mtu %zu%s", st.a->name, st.b->name,
                  st.amount, st.onward ? " (onward)" : "", st.mtu,
                  st.pending_counter ? ", a permission is pending" : "");
    break;
  case STEP_LOAD: {
    figures->loads++;
    gint64 amount = 10000 + rand_below (sc, 40) * 1000;
    st.voucher = tally_issuer_sell_voucher (sc->issuer, st.a->id, amount, sc->now, &error);
    if (st.voucher == NULL) {
      /* A revoked register is sold nothing. */
      if (!reg_tainted (st.a))
        violation (sc, "no voucher for %s: %s", st.a->name, error->message);
      return;
    }
    st.a->ledger_online -= amount;
    st.a->sold += amount;
    g_queue_push_tail (&st.a->vouchers, g_bytes_ref (st.voucher));
    scenario_log (sc, "load %s %" G_GINT64_FORMAT, st.a->name, amount);
    break;
  }
  case STEP_RECONCILE: scenario_log (sc, "reconcile %s", st.a->name); break;
  case STEP_DEFUND:
    figures->defunds++;
    scenario_log (sc, "defund %s", st.a->name);
    break;
  }
  if (sc->kill.active)
    scenario_log (sc, "kill planned at %s of %s", sc->kill.point, sc->kill.reg->name);
  if (sc->enospc.op != OP_NONE)
    scenario_log (sc, "ENOSPC planned at %s after %u write(s)", op_names[sc->enospc.op],
                  sc->enospc.writes);

  if (sc->kill.active)
    run_step_killed (sc, &st);
  else
    run_step (sc, &st);
  g_clear_pointer (&st.voucher, g_bytes_unref);
  if (sc->failure != NULL)
    return;
  enospc_check_disk (sc);
  faults_vfs_disarm ();

  switch (st.kind) {
  case STEP_PAY: record_payment (sc, &st, counter0, bal_a0, bal_b0, had0); break;
  case STEP_LOAD:
    /* The device applies what it was sold, again if it must. */
    drain_vouchers (sc, st.a);
    break;
  case STEP_RECONCILE: break;
  case STEP_DEFUND: record_defund (sc, st.a, counter0, bal_a0); break;
  }
}

/* --- rollback and clone ---------------------------------------------------------- */

static void
fork_events (Scenario *sc)
{
  if (sc->fork_kind == FORK_NONE)
    return;
  Reg *r = reg_at (sc, sc->fork_reg);
  if (sc->step == sc->fork_copy_step) {
    reg_close (r);
    r->snapshot = g_strdup_printf ("%s.copy", r->dir);
    fixture_copy_dir (r->dir, r->snapshot);
    reg_open (sc, r);
    r->snapshot_counter = tally_register_get_counter (r->reg);
    scenario_log (sc, "copied %s at counter %" G_GUINT64_FORMAT, r->name, r->snapshot_counter);
    return;
  }
  if (sc->step != sc->fork_step || r->snapshot == NULL)
    return;
  if (tally_register_is_closed (r->reg) && sc->fork_kind == FORK_CLONE)
    return;

  r->forked = TRUE;
  r->fork_counter = r->snapshot_counter;
  sc->fork_bias = 6;
  if (sc->fork_kind == FORK_ROLLBACK) {
    figures->rollbacks++;
    guint64 was = tally_register_get_counter (r->reg);
    reg_close (r);
    fixture_remove_tree (r->dir);
    fixture_copy_dir (r->snapshot, r->dir);
    reg_open (sc, r);
    r->lineage = 1;
    scenario_log (sc, "rolled %s back from counter %" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT,
                  r->name, was, r->snapshot_counter);
    return;
  }
  figures->clones++;
  Reg *c = g_new0 (Reg, 1);
  c->dir = g_strdup_printf ("%s-clone", r->dir);
  c->name = g_strdup_printf ("%s-clone", r->name);
  fixture_copy_dir (r->snapshot, c->dir);
  c->account = g_strdup (r->account);
  memcpy (c->id, r->id, TALLY_ID_BYTES);
  c->id_hex = g_strdup (r->id_hex);
  c->origin = sc->fork_reg;
  c->is_clone = TRUE;
  c->forked = TRUE;
  c->lineage = 1;
  c->fork_counter = r->snapshot_counter;
  g_queue_init (&c->vouchers);
  g_ptr_array_add (sc->regs, c);
  g_assert_cmpuint (sc->regs->len, <=, MAX_REGISTERS);
  reg_open (sc, c);
  scenario_log (sc, "cloned %s from its copy at counter %" G_GUINT64_FORMAT, r->name,
                r->snapshot_counter);
}

/* --- the owner adversary ---------------------------------------------------------- */

/* Runs @sql on @r's database, with @blob bound to ?1 unless NULL, while the
 * register is closed: the owner has root and edits the file. */
static gboolean
owner_edit (Scenario *sc, Reg *r, const char *sql, const guint8 *blob, gsize blob_len)
{
  g_autofree char *path = g_build_filename (r->dir, "register.db", NULL);
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  gboolean ok = FALSE;
  reg_close (r);
  if (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2 (db, sql, -1, &st, NULL) != SQLITE_OK ||
      (blob != NULL &&
       sqlite3_bind_blob (st, 1, blob, (int) blob_len, SQLITE_TRANSIENT) != SQLITE_OK) ||
      sqlite3_step (st) != SQLITE_DONE) {
    violation (sc, "%s: editing its database (%s): %s", r->name, sql, sqlite3_errmsg (db));
    goto out;
  }
  ok = TRUE;
out:
  sqlite3_finalize (st);
  sqlite3_close (db);
  return reg_open (sc, r) && ok;
}

/* The first row of @sql on @r's database, ?1 bound to @arg: column 0 as
 * bytes, column 1 as text (NULL when the query has one column).  FALSE
 * and no violation when there is no row. */
static gboolean
owner_select (Scenario *sc, Reg *r, const char *sql, gint64 arg, GBytes **blob, char **text)
{
  g_autofree char *path = g_build_filename (r->dir, "register.db", NULL);
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  gboolean ok = FALSE;
  *blob = NULL;
  if (text != NULL)
    *text = NULL;
  if (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2 (db, sql, -1, &st, NULL) != SQLITE_OK) {
    violation (sc, "%s: reading its database: %s", r->name, sqlite3_errmsg (db));
    goto out;
  }
  sqlite3_bind_int64 (st, 1, arg);
  if (sqlite3_step (st) == SQLITE_ROW) {
    *blob = g_bytes_new (sqlite3_column_blob (st, 0), (gsize) sqlite3_column_bytes (st, 0));
    if (text != NULL)
      *text = g_strdup ((const char *) sqlite3_column_text (st, 1));
    ok = TRUE;
  }
out:
  sqlite3_finalize (st);
  sqlite3_close (db);
  return ok;
}

static guint8 *
owner_key (Scenario *sc, Reg *r)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = g_build_filename (r->dir, "register.key", NULL);
  guint8 *sk = tally_secret_key_new ();
  if (!tally_key_file_read (path, sk, &error)) {
    tally_secret_key_free (sk);
    violation (sc, "%s: reading its key: %s", r->name, error->message);
    return NULL;
  }
  return sk;
}

static Tally__SignedEnvelope *
owner_envelope (GBytes *bytes)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  return tally_envelope_decode (data, len, NULL);
}

static GBytes *
owner_permission (Scenario *sc,
                  Reg *payer,
                  Reg *payee,
                  const guint8 *sk,
                  gint64 amount,
                  guint64 counter,
                  const guint8 prev[TALLY_HASH_BYTES])
{
  guint8 nonce[TALLY_NONCE_BYTES];
  guint8 memo_hash[TALLY_HASH_BYTES];
  randombytes_buf (nonce, sizeof nonce);
  tally_hash ("memo", "", 0, memo_hash);
  Tally__Amount value = TALLY__AMOUNT__INIT;
  value.currency = (char *) CURRENCY;
  value.value = amount;
  Tally__DepositPermission p = TALLY__DEPOSIT_PERMISSION__INIT;
  p.payer_register_id.data = payer->id;
  p.payer_register_id.len = TALLY_ID_BYTES;
  p.payee_register_id.data = payee->id;
  p.payee_register_id.len = TALLY_ID_BYTES;
  p.payee_nonce.data = nonce;
  p.payee_nonce.len = sizeof nonce;
  p.amount = &value;
  p.counter = counter;
  p.chain_prev.data = (guint8 *) prev;
  p.chain_prev.len = TALLY_HASH_BYTES;
  p.created_at = sc->now;
  p.memo_hash.data = memo_hash;
  p.memo_hash.len = sizeof memo_hash;
  p.expires_at = sc->now + 3600;
  return tally_message_sign (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION, &p.base,
                             sk);
}

static GBytes *
owner_defund_record (Scenario *sc,
                     Reg *r,
                     const guint8 *sk,
                     gint64 amount,
                     guint64 counter,
                     const guint8 prev[TALLY_HASH_BYTES])
{
  Tally__Amount value = TALLY__AMOUNT__INIT;
  value.currency = (char *) CURRENCY;
  value.value = amount;
  Tally__DefundRecord d = TALLY__DEFUND_RECORD__INIT;
  d.register_id.data = r->id;
  d.register_id.len = TALLY_ID_BYTES;
  d.amount = &value;
  d.counter = counter;
  d.chain_prev.data = (guint8 *) prev;
  d.chain_prev.len = TALLY_HASH_BYTES;
  d.created_at = sc->now;
  return tally_message_sign (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEFUND, &d.base, sk);
}

/* The colluding payee's receipt for @permission, signed with its key. */
static GBytes *
owner_receipt (Scenario *sc, const guint8 *sk, const Tally__SignedEnvelope *env)
{
  g_autoptr (Tally__DepositPermission) p =
    TALLY_UNPACK (Tally__DepositPermission, tally__deposit_permission, env->body.data,
                  env->body.len, "permission", NULL);
  g_assert (p != NULL);
  guint8 hash[TALLY_HASH_BYTES];
  tally_envelope_body_hash (env, hash);
  Tally__Receipt r = TALLY__RECEIPT__INIT;
  r.payee_register_id = p->payee_register_id;
  r.payer_register_id = p->payer_register_id;
  r.payer_counter = p->counter;
  r.permission_hash.data = hash;
  r.permission_hash.len = sizeof hash;
  r.amount = p->amount;
  r.received_at = sc->now;
  r.permission_expires_at = p->expires_at;
  return tally_message_sign (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT, &r.base, sk);
}

/*
 * @r's bundle as its register exports it, edited by its owner and signed
 * again with its key: @spent (@n_spent) appended with @counter and @head as the
 * chain it reports, @received appended, and the received entry whose
 * permission hashes to @drop left out (each NULL for none).  *@cert gets
 * the register's certificate when not NULL.
 */
static GBytes *
owner_bundle (Scenario *sc,
              Reg *r,
              const guint8 *sk,
              Tally__SpentEntry **spent,
              guint n_spent,
              guint64 counter,
              const guint8 *head,
              Tally__ReceivedEntry *received,
              const guint8 *drop,
              GBytes **cert)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) bundle = tally_register_export_bundle (r->reg, sc->now, &error);
  if (bundle == NULL) {
    violation (sc, "%s cannot export a bundle for its owner: %s", r->name, error->message);
    return NULL;
  }
  g_autoptr (Tally__SignedEnvelope) env = owner_envelope (bundle);
  g_autoptr (Tally__ReconciliationBundle) b =
    env ? TALLY_UNPACK (Tally__ReconciliationBundle, tally__reconciliation_bundle,
                        env->body.data, env->body.len, "bundle", &error)
        : NULL;
  if (b == NULL) {
    violation (sc, "%s's bundle does not decode", r->name);
    return NULL;
  }
  Tally__ReconciliationBundle copy = *b;
  g_autofree Tally__SpentEntry **sp = g_new0 (Tally__SpentEntry *, b->n_spent + n_spent);
  for (gsize i = 0; i < b->n_spent; i++)
    sp[i] = b->spent[i];
  copy.spent = sp;
  for (guint i = 0; i < n_spent; i++)
    sp[copy.n_spent++] = spent[i];
  if (n_spent > 0) {
    copy.counter = counter;
    copy.chain_head.data = (guint8 *) head;
    copy.chain_head.len = TALLY_HASH_BYTES;
  }
  g_autofree Tally__ReceivedEntry **rc = g_new0 (Tally__ReceivedEntry *, b->n_received + 1);
  copy.n_received = 0;
  for (gsize i = 0; i < b->n_received; i++) {
    guint8 hash[TALLY_HASH_BYTES];
    tally_envelope_body_hash (b->received[i]->permission, hash);
    if (drop == NULL || memcmp (hash, drop, TALLY_HASH_BYTES) != 0)
      rc[copy.n_received++] = b->received[i];
  }
  if (received != NULL)
    rc[copy.n_received++] = received;
  copy.received = rc;
  if (cert != NULL)
    *cert = tally_envelope_pack (b->certificate);
  return tally_message_sign (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_BUNDLE,
                             &copy.base, sk);
}

/* Hands an owner's bundle to the issuer; the owner keeps the result. */
static gboolean
owner_hand_in (Scenario *sc, Reg *r, GBytes *bundle)
{
  g_autoptr (GError) error = NULL;
  TallyReconcileReport report;
  gsize len;
  const guint8 *data = g_bytes_get_data (bundle, &len);
  g_autoptr (GBytes) result =
    tally_issuer_reconcile (sc->issuer, data, len, sc->now, &report, &error);
  if (result == NULL)
    return violation (sc, "the issuer refuses %s's edited bundle: %s", r->name, error->message);
  scenario_log (sc, "issuer took %s's edited bundle: %u fraud proof(s), refused %" G_GINT64_FORMAT,
                r->name, report.fraud_proofs, report.refused);
  return TRUE;
}

static void
owner_target (Scenario *sc, Reg *payer)
{
  sc->owner_payer = reg_index (sc, payer);
  sc->owner_bias = 6;
}

/* Fault 1: a balance raised in the database, then spent or defunded. */
static gboolean
owner_raise_balance (Scenario *sc, Reg *r)
{
  gint64 raise = 50000 + (gint64) rand_below (sc, 100) * 1000;
  g_autofree char *sql = g_strdup_printf (
    "UPDATE register_state SET balance = balance + %" G_GINT64_FORMAT, raise);
  if (!owner_edit (sc, r, sql, NULL, 0))
    return FALSE;
  r->adversary = TRUE;
  figures->owner_balance++;
  owner_target (sc, r);
  if (rand_chance (sc, 0.5))
    sc->owner_defund_step = sc->step + 1 + rand_below (sc, 8);
  scenario_log (sc, "owner of %s raises its balance by %" G_GINT64_FORMAT "%s", r->name, raise,
                sc->owner_defund_step ? " and will defund" : "");
  return TRUE;
}

/* The chain head after @r's entry at @counter: the next entry's chain_prev. */
static gboolean
owner_head_after (Scenario *sc, Reg *r, guint64 counter, guint8 head[TALLY_HASH_BYTES])
{
  if (counter == 0) {
    tally_chain_genesis (r->id, head);
    return TRUE;
  }
  g_autoptr (GBytes) blob = NULL;
  g_autofree char *kind = NULL;
  if (!owner_select (sc, r, "SELECT envelope, kind FROM spent WHERE counter = ?1",
                     (gint64) counter + 1, &blob, &kind))
    return violation (sc, "%s holds no entry at counter %" G_GUINT64_FORMAT, r->name,
                      counter + 1);
  g_autoptr (Tally__SignedEnvelope) env = owner_envelope (blob);
  g_assert (env != NULL);
  if (strcmp (kind, "permission") == 0) {
    g_autoptr (Tally__DepositPermission) p =
      TALLY_UNPACK (Tally__DepositPermission, tally__deposit_permission, env->body.data,
                    env->body.len, "permission", NULL);
    g_assert (p != NULL && p->chain_prev.len == TALLY_HASH_BYTES);
    memcpy (head, p->chain_prev.data, TALLY_HASH_BYTES);
  } else {
    g_autoptr (Tally__DefundRecord) d = TALLY_UNPACK (
      Tally__DefundRecord, tally__defund_record, env->body.data, env->body.len, "defund", NULL);
    g_assert (d != NULL && d->chain_prev.len == TALLY_HASH_BYTES);
    memcpy (head, d->chain_prev.data, TALLY_HASH_BYTES);
  }
  return TRUE;
}

/* Fault 2, skipping: the counter moved ahead in the database, the chain
 * head left as it is.  The issuer must refuse every bundle that lists an
 * entry above the gap (Incomplete). */
static gboolean
owner_skip (Scenario *sc, Reg *r)
{
  guint64 c = tally_register_get_counter (r->reg);
  guint64 to = c + 1 + rand_below (sc, 3);
  g_autofree char *upd =
    g_strdup_printf ("UPDATE register_state SET counter = %" G_GUINT64_FORMAT, to);
  if (!owner_edit (sc, r, upd, NULL, 0))
    return FALSE;
  r->adversary = TRUE;
  r->skipped = TRUE;
  figures->owner_skip++;
  owner_target (sc, r);
  scenario_log (sc, "owner of %s skips its counter from %" G_GUINT64_FORMAT " to %"
                G_GUINT64_FORMAT, r->name, c, to);
  return TRUE;
}

/* Fault 2: the counter and chain head rewound in the database (the entries
 * past them deleted, the balance left as it is), then spent again. */
static gboolean
owner_rewind (Scenario *sc, Reg *r)
{
  guint64 c = tally_register_get_counter (r->reg);
  if (c == 0 || rand_chance (sc, 0.4))
    return owner_skip (sc, r);
  guint64 to = c - 1 - rand_below (sc, (guint) MIN (c, 3));
  guint8 head[TALLY_HASH_BYTES];
  if (!owner_head_after (sc, r, to, head))
    return FALSE;
  g_autofree char *del =
    g_strdup_printf ("DELETE FROM spent WHERE counter > %" G_GUINT64_FORMAT, to);
  g_autofree char *upd = g_strdup_printf (
    "UPDATE register_state SET counter = %" G_GUINT64_FORMAT ", chain_head = ?1", to);
  if (!owner_edit (sc, r, del, NULL, 0) || !owner_edit (sc, r, upd, head, sizeof head))
    return FALSE;
  r->adversary = TRUE;
  r->forked = TRUE;
  r->lineage = 1;
  r->fork_counter = to;
  figures->owner_rewind++;
  owner_target (sc, r);
  scenario_log (sc, "owner of %s rewinds its counter from %" G_GUINT64_FORMAT " to %"
                G_GUINT64_FORMAT, r->name, c, to);
  return TRUE;
}

/* One forged entry: its envelope and, for a permission, the colluder's receipt. */
typedef struct
{
  GBytes *entry;
  Tally__SignedEnvelope *env;
  Tally__SignedEnvelope *receipt;
  Tally__SpentEntry spent;
} Forged;

static void
forged_clear (Forged *f)
{
  g_clear_pointer (&f->entry, g_bytes_unref);
  g_clear_pointer (&f->env, tally__signed_envelope_free);
  g_clear_pointer (&f->receipt, tally__signed_envelope_free);
}

/* Signs @f after @head at @counter and moves @head past it. */
static void
forged_sign (Scenario *sc,
             Forged *f,
             Reg *r,
             Reg *peer,
             const guint8 *sk,
             const guint8 *peer_sk,
             gint64 amount,
             guint64 counter,
             guint8 head[TALLY_HASH_BYTES])
{
  f->entry = peer != NULL ? owner_permission (sc, r, peer, sk, amount, counter, head)
                          : owner_defund_record (sc, r, sk, amount, counter, head);
  f->env = owner_envelope (f->entry);
  if (peer != NULL) {
    g_autoptr (GBytes) receipt = owner_receipt (sc, peer_sk, f->env);
    f->receipt = owner_envelope (receipt);
  }
  tally__spent_entry__init (&f->spent);
  f->spent.permission = f->env;
  f->spent.receipt = f->receipt;
  guint8 hash[TALLY_HASH_BYTES];
  tally_envelope_body_hash (f->env, hash);
  tally_chain_next (head, hash, head);

  Attempt a = {
    .kind = peer != NULL ? ATTEMPT_PAYMENT : ATTEMPT_DEFUND,
    .payer = reg_index (sc, r),
    .payee = peer != NULL ? reg_index (sc, peer) : 0,
    .lineage = 1,
    .amount = amount,
    .counter = counter,
    .committed = TRUE,
    .credited = peer != NULL,
    .step = sc->step,
  };
  g_array_append_val (sc->attempts, a);
}

/* The colluder lists the forged permission as received, signed with its
 * key, and raises its balance by as much to spend it onward. */
static gboolean
owner_collude (Scenario *sc,
               Reg *peer,
               const guint8 *peer_sk,
               Forged *f,
               GBytes *cert,
               gint64 amount)
{
  g_autoptr (Tally__SignedEnvelope) cert_env = owner_envelope (cert);
  Tally__ReceivedEntry received = TALLY__RECEIVED_ENTRY__INIT;
  received.payer_certificate = cert_env;
  received.permission = f->env;
  received.receipt = f->receipt;
  g_autoptr (GBytes) bundle =
    owner_bundle (sc, peer, peer_sk, NULL, 0, 0, NULL, &received, NULL, NULL);
  g_autofree char *sql = g_strdup_printf (
    "UPDATE register_state SET balance = balance + %" G_GINT64_FORMAT, amount);
  if (bundle == NULL || !owner_hand_in (sc, peer, bundle) || !owner_edit (sc, peer, sql, NULL, 0))
    return FALSE;
  peer->adversary = TRUE;
  peer->forged_in += amount;
  return TRUE;
}

/*
 * Fault 3: entries signed with the register's key outside its database,
 * beyond its balance, from the next counter on, handed to the issuer in a
 * bundle signed with the same key: a defund of more than it holds; or a
 * defund of all it holds and then a permission to @peer, which @peer
 * acknowledges and lists as received.  The register's database still
 * stands at the old counter, so its next entry reuses that counter.
 */
static gboolean
owner_forge_signed (Scenario *sc,
                    Reg *r,
                    Reg *peer,
                    const guint8 *sk,
                    const guint8 *peer_sk,
                    guint8 head[TALLY_HASH_BYTES])
{
  guint64 c = tally_register_get_counter (r->reg);
  gint64 bal = tally_register_get_balance (r->reg);
  gint64 extra = 10000 + (gint64) rand_below (sc, 80) * 1000 + sc->attempts->len % 1000;
  Forged f[2] = { 0 };
  Tally__SpentEntry *spent[2];
  guint n = 0;
  if (peer_sk == NULL) {
    forged_sign (sc, &f[n], r, NULL, sk, NULL, bal + extra, c + 1, head);
    spent[n] = &f[n].spent;
    n++;
  } else {
    if (bal > 0) {
      forged_sign (sc, &f[n], r, NULL, sk, NULL, bal, c + 1 + n, head);
      spent[n] = &f[n].spent;
      n++;
    }
    forged_sign (sc, &f[n], r, peer, sk, peer_sk, extra, c + 1 + n, head);
    spent[n] = &f[n].spent;
    n++;
  }
  g_autoptr (GBytes) cert = NULL;
  g_autoptr (GBytes) bundle = owner_bundle (sc, r, sk, spent, n, c + n, head, NULL, NULL, &cert);
  gboolean ok = bundle != NULL && owner_hand_in (sc, r, bundle) &&
                (peer_sk == NULL || owner_collude (sc, peer, peer_sk, &f[n - 1], cert, extra));
  for (guint i = 0; i < n; i++)
    forged_clear (&f[i]);
  if (!ok)
    return FALSE;

  r->adversary = TRUE;
  r->forked = TRUE;
  r->fork_counter = c;
  if (peer_sk != NULL)
    figures->owner_forge_pay++;
  else
    figures->owner_forge_defund++;
  owner_target (sc, peer_sk != NULL ? peer : r);
  scenario_log (sc,
                "owner of %s signs %s%" G_GINT64_FORMAT " from counter %" G_GUINT64_FORMAT
                " holding %" G_GINT64_FORMAT "%s%s",
                r->name, peer_sk ? "a defund of all and a permission of " : "a defund of ",
                peer_sk ? extra : bal + extra, c + 1, bal, peer_sk ? " to the colluding " : "",
                peer_sk ? peer->name : "");
  return TRUE;
}

static gboolean
owner_forge (Scenario *sc, Reg *r, Reg *peer)
{
  gboolean pay = reg_usable (peer) && !reg_tainted (peer) && rand_chance (sc, 0.6);
  g_autoptr (GBytes) head = NULL;
  if (!owner_select (sc, r, "SELECT chain_head FROM register_state WHERE ?1 = ?1", 0, &head,
                     NULL) ||
      g_bytes_get_size (head) != TALLY_HASH_BYTES)
    return violation (sc, "%s: no chain head", r->name);
  guint8 next[TALLY_HASH_BYTES];
  memcpy (next, g_bytes_get_data (head, NULL), TALLY_HASH_BYTES);
  guint8 *sk = owner_key (sc, r);
  guint8 *peer_sk = pay && sk != NULL ? owner_key (sc, peer) : NULL;
  gboolean ok =
    sk != NULL && (!pay || peer_sk != NULL) && owner_forge_signed (sc, r, peer, sk, peer_sk, next);
  if (sk != NULL)
    tally_secret_key_free (sk);
  if (peer_sk != NULL)
    tally_secret_key_free (peer_sk);
  return ok;
}

/*
 * Fault 4: a payee leaves a payment it credited out of a bundle made after
 * the permission expired, signed with its key, so that the issuer gives
 * the value back to the payer; it keeps the credit and spends it onward.
 */
static gboolean
owner_hide (Scenario *sc, Reg *r)
{
  g_autoptr (GBytes) blob = NULL;
  if (!owner_select (sc, r,
                     "SELECT permission FROM received WHERE state = 'acknowledged' AND ?1 = ?1 "
                     "ORDER BY received_at LIMIT 1",
                     0, &blob, NULL))
    return FALSE; /* nothing to hide yet */
  g_autoptr (Tally__SignedEnvelope) env = owner_envelope (blob);
  g_autoptr (Tally__DepositPermission) p =
    env ? TALLY_UNPACK (Tally__DepositPermission, tally__deposit_permission, env->body.data,
                        env->body.len, "permission", NULL)
        : NULL;
  if (p == NULL || p->amount == NULL || p->expires_at == 0)
    return violation (sc, "%s holds a received permission that does not decode", r->name);
  guint8 hash[TALLY_HASH_BYTES];
  tally_envelope_body_hash (env, hash);
  sc->now = MAX (sc->now, p->expires_at);
  guint8 *sk = owner_key (sc, r);
  if (sk == NULL)
    return FALSE;
  g_autoptr (GBytes) bundle = owner_bundle (sc, r, sk, NULL, 0, 0, NULL, NULL, hash, NULL);
  tally_secret_key_free (sk);
  if (bundle == NULL || !owner_hand_in (sc, r, bundle))
    return FALSE;
  r->adversary = TRUE;
  r->hidden += p->amount->value;
  memcpy (r->hidden_hash, hash, TALLY_HASH_BYTES);
  figures->owner_hide++;
  owner_target (sc, r);
  scenario_log (sc, "owner of %s hides the payment of %" G_GINT64_FORMAT " at counter %"
                G_GUINT64_FORMAT " from its bundle", r->name, p->amount->value, p->counter);
  return TRUE;
}

/* After a raised balance: the register defunds all it holds. */
static void
owner_defund (Scenario *sc, Reg *r)
{
  g_autoptr (GError) error = NULL;
  if (!reg_usable (r))
    return;
  guint64 counter0 = tally_register_get_counter (r->reg);
  gint64 bal0 = tally_register_get_balance (r->reg);
  g_autoptr (GBytes) record = tally_register_defund (r->reg, sc->now, &error);
  if (record == NULL) {
    violation (sc, "%s cannot defund: %s", r->name, error->message);
    return;
  }
  figures->defunds++;
  record_defund (sc, r, counter0, bal0);
}

static void
owner_events (Scenario *sc)
{
  if (sc->owner_kind == OWNER_NONE)
    return;
  Reg *r = reg_at (sc, sc->owner_reg);
  if (sc->owner_defund_step == sc->step)
    owner_defund (sc, r);
  if (sc->owner_done || sc->step < sc->owner_step || sc->failure != NULL)
    return;
  if (!reg_usable (r)) {
    sc->owner_done = TRUE;
    return;
  }
  switch (sc->owner_kind) {
  case OWNER_BALANCE: sc->owner_done = owner_raise_balance (sc, r); break;
  case OWNER_REWIND: sc->owner_done = owner_rewind (sc, r); break;
  case OWNER_FORGE: sc->owner_done = owner_forge (sc, r, reg_at (sc, sc->owner_peer)); break;
  case OWNER_HIDE: sc->owner_done = owner_hide (sc, r); break;
  }
}

/* --- settle and prove ------------------------------------------------------------ */

/* Which lineage wrote the booked entry @e of forked @origin: the attempt
 * with its counter, kind and amount. */
static const Attempt *
attempt_for_entry (Scenario *sc, guint origin, const TallyIssuerEntryRow *e)
{
  for (guint i = 0; i < sc->attempts->len; i++) {
    const Attempt *a = &g_array_index (sc->attempts, Attempt, i);
    if (!a->committed || reg_at (sc, a->payer)->origin != origin || a->counter != e->counter ||
        a->amount != e->amount)
      continue;
    if ((a->kind == ATTEMPT_DEFUND) != (e->kind == TALLY_ISSUER_ENTRY_DEFUND))
      continue;
    return a;
  }
  return NULL;
}

/* Check 5: the issuer holds evidence against a forked id when it booked
 * entries of both lineages past the fork at one counter, or at counters c
 * and c + 1.  Then a fraud proof must name it and it must be revoked. */
static gboolean
check_forks (Scenario *sc, TallyIssuerStore *books, GHashTable *expected_fraud)
{
  g_autoptr (GError) error = NULL;
  for (guint o = 0; o < sc->regs->len; o++) {
    Reg *r = reg_at (sc, o);
    if (r->is_clone || !r->forked)
      continue;
    guint64 top = 0;
    for (guint i = 0; i < sc->attempts->len; i++) {
      const Attempt *a = &g_array_index (sc->attempts, Attempt, i);
      if (reg_at (sc, a->payer)->origin == o)
        top = MAX (top, a->counter);
    }
    /* lineages[c] bit l: lineage l has a booked entry at counter c. */
    g_autofree guint *lineages = g_new0 (guint, top + 2);
    for (guint64 c = 1; c <= top; c++) {
      g_autoptr (GPtrArray) rows = NULL;
      if (!tally_issuer_store_entries_by_counter (books, r->id, c, &rows, &error))
        return violation (sc, "entries of %s: %s", r->name, error->message);
      for (guint i = 0; i < rows->len; i++) {
        const TallyIssuerEntryRow *e = rows->pdata[i];
        const Attempt *a = attempt_for_entry (sc, o, e);
        if (a == NULL)
          return violation (sc,
                            "the issuer booked an entry of %s at counter %" G_GUINT64_FORMAT
                            " of %" G_GINT64_FORMAT " that no step made",
                            r->name, c, e->amount);
        lineages[c] |= 1u << (c > r->fork_counter ? a->lineage : 0);
      }
    }
    gboolean evidence = FALSE;
    for (guint64 c = r->fork_counter + 1; c <= top && !evidence; c++) {
      evidence = lineages[c] == 3 ||
                 (lineages[c] && lineages[c + 1] && (lineages[c] | lineages[c + 1]) == 3 &&
                  lineages[c] != lineages[c + 1]);
    }
    scenario_log (sc, "fork of %s at counter %" G_GUINT64_FORMAT ": %s", r->name, r->fork_counter,
                  evidence ? "evidence booked" : "no conflicting entries booked");
    if (evidence) {
      figures->forks_with_evidence++;
      g_hash_table_add (expected_fraud, g_strdup (r->id_hex));
    }
  }
  return TRUE;
}

/* What the issuer's own API reports, read before its store is opened
 * beside it (the store holds its lock while the checks read it). */
typedef struct
{
  GPtrArray *proofs;
  TallyAudit audit;
  gint64 online[MAX_REGISTERS];
  GHashTable *spent_twice; /* hex ids a counter-reused or chain-fork proof names */
  GPtrArray *flagged;      /* TallyAuditRegister, tally_issuer_audit_registers() */
} Reported;

static gboolean
check_fraud_proofs (Scenario *sc,
                    TallyIssuerStore *books,
                    const Reported *rep,
                    GHashTable *expected_fraud)
{
  g_autoptr (GError) error = NULL;
  GPtrArray *proofs = rep->proofs;
  GHashTable *accused = rep->spent_twice;
  for (guint i = 0; i < proofs->len; i++) {
    gsize len;
    const guint8 *data = g_bytes_get_data (proofs->pdata[i], &len);
    g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (data, len, &error);
    if (env == NULL ||
        !tally_envelope_verify (env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_FRAUD_PROOF,
                                tally_issuer_get_public_key (sc->issuer), &error))
      return violation (sc, "fraud proof %u does not verify: %s", i, error->message);
    g_autoptr (Tally__FraudProof) fp = TALLY_UNPACK (
      Tally__FraudProof, tally__fraud_proof, env->body.data, env->body.len, "fraud proof", &error);
    if (fp == NULL || fp->register_id.len != TALLY_ID_BYTES)
      return violation (sc, "fraud proof %u is malformed", i);
    g_autofree char *hex = tally_hex_encode (fp->register_id.data, TALLY_ID_BYTES);
    if (fp->kind == TALLY__FRAUD_KIND__FRAUD_KIND_LATE_RECEIPT ||
        fp->kind == TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN) {
      /* A payee that signed a receipt its own later bundle denied, or a
       * register that spent beyond its evidence: only a register rolled
       * back (or cloned) can. */
      Reg *named = NULL;
      for (guint r = 0; r < sc->regs->len; r++)
        if (strcmp (reg_at (sc, r)->id_hex, hex) == 0)
          named = reg_at (sc, r);
      if (named == NULL || !reg_tainted (named))
        return violation (sc, "%s proof %u accuses %s, which never forked",
                          tally_issuer_fraud_kind_to_string (fp->kind), i,
                          named ? named->name : hex);
      if (fp->kind == TALLY__FRAUD_KIND__FRAUD_KIND_LATE_RECEIPT)
        figures->late_receipts++;
      else
        figures->overdrawn++;
      continue;
    }
    if (fp->kind != TALLY__FRAUD_KIND__FRAUD_KIND_COUNTER_REUSED &&
        fp->kind != TALLY__FRAUD_KIND__FRAUD_KIND_CHAIN_FORK)
      return violation (sc, "fraud proof %u against %s of kind %d", i, hex, fp->kind);
    if (!g_hash_table_contains (expected_fraud, hex)) {
      for (guint r = 0; r < sc->regs->len; r++)
        if (strcmp (reg_at (sc, r)->id_hex, hex) == 0)
          return violation (sc,
                            "fraud proof %u accuses %s (%s), which holds no evidence of a "
                            "fork",
                            i, reg_at (sc, r)->name, reg_at (sc, r)->forked ? "forked" : "honest");
      return violation (sc, "fraud proof %u accuses an unknown register %s", i, hex);
    }
    g_hash_table_add (accused, g_steal_pointer (&hex));
  }

  GHashTableIter it;
  gpointer key;
  g_hash_table_iter_init (&it, expected_fraud);
  while (g_hash_table_iter_next (&it, &key, NULL)) {
    const char *hex = key;
    guint8 id[TALLY_ID_BYTES];
    tally_hex_decode (hex, id, sizeof id, NULL);
    if (!g_hash_table_contains (accused, hex))
      return violation (sc,
                        "register %s forked and spent on both lineages, but no fraud proof "
                        "names it",
                        hex);
    g_auto (TallyIssuerRegisterRow) row = { 0 };
    if (!tally_issuer_store_register_get (books, id, &row, &error))
      return violation (sc, "issuer row of %s: %s", hex, error->message);
    if (!row.revoked)
      return violation (sc, "register %s is proven a fraud but not revoked", hex);
    /* Every honest register learnt it in its last result. */
    for (guint r = 0; r < sc->regs->len; r++) {
      Reg *h = reg_at (sc, r);
      if (!reg_tainted (h) && !tally_register_revokes (h->reg, id))
        return violation (sc, "%s's revocation list does not name the fraudulent %s", h->name, hex);
    }
    figures->frauds_detected++;
  }
  return TRUE;
}

/* The permission hashes of every received entry in @r's database. */
static gboolean
received_hashes (Scenario *sc, Reg *r, GPtrArray *out)
{
  g_autofree char *path = g_build_filename (r->dir, "register.db", NULL);
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  gboolean ok = FALSE;
  if (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2 (db, "SELECT permission_hash FROM received", -1, &st, NULL) != SQLITE_OK) {
    violation (sc, "%s: reading received entries: %s", r->name, sqlite3_errmsg (db));
    goto out;
  }
  int rc;
  while ((rc = sqlite3_step (st)) == SQLITE_ROW) {
    if (sqlite3_column_bytes (st, 0) != TALLY_HASH_BYTES) {
      violation (sc, "%s: a received entry's hash has %d bytes", r->name,
                 sqlite3_column_bytes (st, 0));
      goto out;
    }
    g_ptr_array_add (out, g_bytes_new (sqlite3_column_blob (st, 0), TALLY_HASH_BYTES));
  }
  if (rc != SQLITE_DONE) {
    violation (sc, "%s: reading received entries: %s", r->name, sqlite3_errmsg (db));
    goto out;
  }
  ok = TRUE;
out:
  sqlite3_finalize (st);
  sqlite3_close (db);
  return ok;
}

/* Check 4: no permission is held as received twice, anywhere, and the
 * issuer booked every one an honest payee holds as settled to that payee. */
static gboolean
check_no_double_credit (Scenario *sc, TallyIssuerStore *books)
{
  g_autoptr (GHashTable) seen =
    g_hash_table_new_full (g_bytes_hash, g_bytes_equal, (GDestroyNotify) g_bytes_unref, NULL);
  for (guint i = 0; i < sc->regs->len; i++) {
    Reg *r = reg_at (sc, i);
    g_autoptr (GPtrArray) hashes = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
    if (!received_hashes (sc, r, hashes))
      return FALSE;
    for (guint k = 0; k < hashes->len; k++) {
      GBytes *h = hashes->pdata[k];
      g_autofree char *hex = tally_hex_encode (g_bytes_get_data (h, NULL), TALLY_HASH_BYTES);
      /* Copies of one register (a clone, a restored copy) share what
       * they received before the copy: one payee, one credit. */
      Reg *first = g_hash_table_lookup (seen, h);
      if (first != NULL && first->origin != r->origin)
        return violation (sc, "permission %s is credited twice: by %s and by %s", hex, first->name,
                          r->name);
      if (first == NULL)
        g_hash_table_insert (seen, g_bytes_ref (h), r);
      if (reg_tainted (r))
        continue;
      g_autoptr (GError) error = NULL;
      g_auto (TallyIssuerEntryRow) e = { 0 };
      if (!tally_issuer_store_entry_get_by_hash (books, g_bytes_get_data (h, NULL), &e, &error))
        return violation (sc, "%s holds permission %s, which the issuer never booked: %s", r->name,
                          hex, error->message);
      if (e.state != TALLY_ISSUER_ENTRY_SETTLED || !e.payee_reported ||
          memcmp (e.payee_id, r->id, TALLY_ID_BYTES) != 0)
        return violation (sc, "%s holds permission %s, booked by the issuer as %s%s", r->name, hex,
                          tally_issuer_entry_state_to_string (e.state),
                          e.payee_reported ? "" : " without the payee's half");
    }
  }
  return TRUE;
}

/* Check 6: every attempt ended in one state that payer, payee and issuer
 * agree on, once everything expired and every register reconciled:
 *   paid      the payee holds the received entry, the issuer settled it,
 *             and the payer holds the receipt (its own, delivered again,
 *             or returned by the issuer);
 *   not paid  the payer never committed, or the issuer reclaimed the
 *             permission (the payer's entry is RECLAIMED and its account
 *             got the value back) and the payee never credited it.
 * Nothing stays in flight but payments to a payee whose owner skipped its
 * counter (@stuck).  Adds reclaimed value to the honest payers' ledgers and
 * returns the reclaimed total. */
static gboolean
check_attempts (Scenario *sc, TallyIssuerStore *books, gint64 *reclaimed, gint64 *stuck)
{
  *reclaimed = 0;
  *stuck = 0;
  for (guint i = 0; i < sc->attempts->len; i++) {
    const Attempt *a = &g_array_index (sc->attempts, Attempt, i);
    Reg *payer = reg_at (sc, a->payer);
    const char *what = a->kind == ATTEMPT_DEFUND ? "defund" : "payment";
    if (a->kind == ATTEMPT_PAYMENT && !a->committed)
      figures->not_paid++;
    if (!a->committed)
      continue;

    g_autoptr (GError) error = NULL;
    g_autoptr (GPtrArray) rows = NULL;
    if (!tally_issuer_store_entries_by_counter (books, payer->id, a->counter, &rows, &error))
      return violation (sc, "entries of %s: %s", payer->name, error->message);
    const TallyIssuerEntryRow *e = NULL;
    for (guint k = 0; k < rows->len; k++) {
      const TallyIssuerEntryRow *row = rows->pdata[k];
      if (row->amount == a->amount &&
          (row->kind == TALLY_ISSUER_ENTRY_DEFUND) == (a->kind == ATTEMPT_DEFUND))
        e = row;
    }
    /* An entry of a lineage a rollback discarded reaches the issuer only
     * through its payee or a reconciliation before the restore. */
    gboolean discarded = a->lineage != payer->lineage;
    if (e == NULL) {
      if (discarded || payer->skipped) {
        figures->unjudged += a->kind == ATTEMPT_PAYMENT;
        continue;
      }
      return violation (sc,
                        "%s of step %u (%s counter %" G_GUINT64_FORMAT ", %" G_GINT64_FORMAT
                        ") never reached the issuer",
                        what, a->step, payer->name, a->counter, a->amount);
    }
    if (a->kind == ATTEMPT_DEFUND) {
      if (e->state != TALLY_ISSUER_ENTRY_SETTLED)
        return violation (sc, "defund of step %u is %s at the issuer", a->step,
                          tally_issuer_entry_state_to_string (e->state));
      continue;
    }

    switch (e->state) {
    case TALLY_ISSUER_ENTRY_IN_FLIGHT:
      /* A payee whose every bundle is refused never moves its horizon:
       * what was paid to it stays in flight, as for a payee that never
       * reconciles. */
      if (reg_at (sc, a->payee)->skipped) {
        *stuck += a->amount;
        figures->unjudged++;
        continue;
      }
      figures->in_flight++;
      return violation (sc,
                        "payment of step %u (%s counter %" G_GUINT64_FORMAT ") is still in "
                        "flight after every register reconciled past its expiry",
                        a->step, payer->name, a->counter);
    case TALLY_ISSUER_ENTRY_RECLAIMED:
      /* A refund goes online only as far as the payer's evidence backs it
       * (protocol.md 5.1): in full for every honest payer. */
      if (e->credited != a->amount && !reg_tainted (payer))
        return violation (sc,
                          "the refund of step %u to %s is %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT,
                          a->step, payer->name, e->credited, a->amount);
      *reclaimed += e->credited;
      break;
    case TALLY_ISSUER_ENTRY_SETTLED: break;
    }

    Reg *payee = reg_at (sc, a->payee);
    gboolean paid = e->state == TALLY_ISSUER_ENTRY_SETTLED;
    if (!paid && !reg_tainted (payer) && !discarded)
      payer->ledger_online += a->amount;
    /* A payee rolled back may have lost what it was credited, and then
     * signed a receipt its later bundle denies: the issuer refunds the
     * payer and proves a late receipt while the payer keeps that receipt.
     * A discarded lineage has no register left to agree. */
    if (reg_tainted (payee) || discarded) {
      figures->unjudged++;
      continue;
    }
    if (!reg_tainted (payer)) {
      g_autofree char *state = NULL;
      gboolean receipt;
      if (!spent_row (sc, payer, a->counter, &state, &receipt))
        return FALSE;
      if (paid && (!receipt || g_strcmp0 (state, "reclaimed") == 0))
        return violation (sc, "payment of step %u was paid, but payer %s holds it as %s%s", a->step,
                          payer->name, state ? state : "nothing",
                          receipt ? "" : " without the receipt");
      if (!paid && (receipt || g_strcmp0 (state, "reclaimed") != 0))
        return violation (sc, "payment of step %u was reclaimed, but payer %s holds it as %s%s",
                          a->step, payer->name, state ? state : "nothing",
                          receipt ? " with a receipt" : "");
    }
    if (paid != a->credited)
      return violation (sc, "payment of step %u was %s by %s but is %s at the issuer", a->step,
                        a->credited ? "credited" : "never credited", payee->name,
                        tally_issuer_entry_state_to_string (e->state));
    if (paid)
      figures->paid++;
    else
      figures->reclaimed++;
  }
  return TRUE;
}

/*
 * Checks 1-3.  With H the registers whose id never forked and whose owner
 * did not act, F the others (forked ids and the owner adversary's
 * registers), bal(r) a register's balance read from its database, online(a) the
 * issuer's account balance and view(f) the issuer's view of a register:
 *
 *   (1) the audit's identity holds (issued + exposure = online + offline +
 *       in flight, each summed from the ledger) and "issued" is what was
 *       deposited;
 *   (2) Σ_{r∈H} bal(r) + Σ_{r∈H} ledger(r) + Σ_{f∈F} (view(f) + online(f))
 *         + in_flight = deposited,  with in_flight = 0 but for payments to
 *       a register whose owner skipped its counter (check_attempts),
 *       where ledger(r) is the account balance the driver computes itself
 *       (deposit − vouchers sold + defunds committed + permissions
 *       reclaimed) and must equal online(r), and the audit's in flight is
 *       that in_flight and its reclaimed total what check_attempts() found
 *       reclaimed;
 *   (3) view(r) = bal(r) for every r ∈ H.
 *
 * The value a fork created, Σ_{copies c of f} bal(c) − view(f), is no
 * part of (2): it is reported next to the issuer's fraud exposure.
 *
 *   (4) what forks spent beyond their evidence, Σ_{f∈F} max(0, −view(f)),
 *       is in the audit's exposure, and exposure comes with fraud proofs.
 */
static gboolean
check_conservation (Scenario *sc,
                    TallyIssuerStore *books,
                    const Reported *rep,
                    gint64 reclaimed,
                    gint64 in_flight)
{
  g_autoptr (GError) error = NULL;
  const TallyAudit audit = rep->audit;
  if (!audit.identity || audit.balanced != (audit.fraud_exposure == 0 && audit.awaiting == 0))
    return violation (sc,
                      "the audit's identity fails: online %" G_GINT64_FORMAT
                      " + offline %" G_GINT64_FORMAT " + in flight %" G_GINT64_FORMAT
                      " != issued %" G_GINT64_FORMAT " + exposure %" G_GINT64_FORMAT
                      " (views unbacked %u)",
                      audit.online, audit.offline, audit.in_flight, audit.issued,
                      audit.fraud_exposure, audit.views_unbacked);
  if (audit.issued != sc->deposited)
    return violation (
      sc, "the issuer reports %" G_GINT64_FORMAT " issued, %" G_GINT64_FORMAT " was deposited",
      audit.issued, sc->deposited);
  if (audit.in_flight != in_flight)
    return violation (sc,
                      "the issuer holds %" G_GINT64_FORMAT " in flight once everything "
                      "expired and reconciled",
                      audit.in_flight);
  if (audit.reclaimed != reclaimed)
    return violation (
      sc, "the issuer reports %" G_GINT64_FORMAT " reclaimed, the attempts %" G_GINT64_FORMAT,
      audit.reclaimed, reclaimed);

  gint64 total = in_flight, unbacked = 0;
  for (guint i = 0; i < sc->regs->len; i++) {
    Reg *r = reg_at (sc, i);
    if (r->is_clone)
      continue;
    g_auto (TallyIssuerRegisterRow) row = { 0 };
    gint64 online = rep->online[i];
    if (!tally_issuer_store_register_get (books, r->id, &row, &error))
      return violation (sc, "issuer's books for %s: %s", r->name, error->message);
    gint64 bal = tally_register_get_balance (r->reg);
    if (reg_tainted (r)) {
      gint64 held = bal;
      for (guint k = 0; k < sc->regs->len; k++)
        if (k != i && reg_at (sc, k)->origin == i)
          held += tally_register_get_balance (reg_at (sc, k)->reg);
      if (r->forked)
        figures->fork_created += held - row.view_balance;
      scenario_log (sc,
                    "%s forked: copies hold %" G_GINT64_FORMAT ", issuer's view %" G_GINT64_FORMAT,
                    r->name, held, row.view_balance);
      total += row.view_balance + online;
      unbacked += MAX (-row.view_balance, 0);
      continue;
    }
    if (row.view_balance != bal)
      return violation (
        sc, "the issuer's view of %s is %" G_GINT64_FORMAT ", the register holds %" G_GINT64_FORMAT,
        r->name, row.view_balance, bal);
    if (online != r->ledger_online)
      return violation (
        sc, "account of %s holds %" G_GINT64_FORMAT ", the steps leave %" G_GINT64_FORMAT, r->name,
        online, r->ledger_online);
    total += bal + r->ledger_online;
  }
  if (total != sc->deposited)
    return violation (
      sc, "registers + accounts + in flight = %" G_GINT64_FORMAT ", deposited %" G_GINT64_FORMAT,
      total, sc->deposited);
  figures->fraud_exposure += audit.fraud_exposure;
  figures->refused += audit.refused;
  /* A double spend need not cost: a copy may spend within what the
   * evidence backs.  What it spent beyond that must show as exposure. */
  if ((audit.fraud_exposure > 0 && audit.fraud_proofs == 0) ||
      (g_hash_table_size (rep->spent_twice) > 0 && audit.fraud_proofs == 0) ||
      audit.fraud_exposure < unbacked)
    return violation (
      sc,
      "fraud exposure %" G_GINT64_FORMAT " with %u fraud proof(s), %u of "
      "them for spending twice; forks spent %" G_GINT64_FORMAT " beyond their evidence",
      audit.fraud_exposure, audit.fraud_proofs, g_hash_table_size (rep->spent_twice), unbacked);
  return TRUE;
}

/* Attempts by counter, for backed_online(). */
static gint
attempt_by_counter (gconstpointer a, gconstpointer b)
{
  const Attempt *x = *(const Attempt *const *) a, *y = *(const Attempt *const *) b;
  return x->counter < y->counter ? -1 : x->counter > y->counter;
}

/*
 * The most @r's account may receive from its own entries: each defund,
 * and each permission no honest payee holds (the issuer may give it back),
 * is backed by what @in leaves after the entries @r signed below it.
 * Entries of a lineage its owner discarded count below only when a payee
 * credited them, since only then must they have reached the issuer.
 */
static gint64
backed_online (Scenario *sc, guint origin, gint64 in)
{
  g_autoptr (GPtrArray) own = g_ptr_array_new ();
  for (guint k = 0; k < sc->attempts->len; k++) {
    Attempt *a = &g_array_index (sc->attempts, Attempt, k);
    if (a->committed && reg_at (sc, a->payer)->origin == origin)
      g_ptr_array_add (own, a);
  }
  g_ptr_array_sort (own, attempt_by_counter);
  gint64 below = 0, backed = 0;
  for (guint k = 0; k < own->len; k++) {
    const Attempt *a = own->pdata[k];
    gboolean honest_payee = a->kind == ATTEMPT_PAYMENT && a->credited &&
                            !reg_tainted (reg_at (sc, a->payee));
    if (!honest_payee)
      backed += CLAMP (in - below, 0, a->amount);
    if (a->credited || a->kind == ATTEMPT_DEFUND || a->lineage == reg_at (sc, a->payer)->lineage)
      below += a->amount;
  }
  return backed;
}

/* Whether the issuer settled @a.  Asked only for a payment to a forked
 * payee: such a payee may have credited it and then lost the credit to a
 * rollback, and the issuer reclaimed it to the payer's account instead. */
static gboolean
attempt_settled (Scenario *sc, TallyIssuerStore *books, const Attempt *a, gboolean *settled)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) rows = NULL;
  Reg *payer = reg_at (sc, a->payer);
  *settled = FALSE;
  if (!tally_issuer_store_entries_by_counter (books, payer->id, a->counter, &rows, &error))
    return violation (sc, "entries of %s: %s", payer->name, error->message);
  for (guint k = 0; k < rows->len; k++) {
    const TallyIssuerEntryRow *e = rows->pdata[k];
    if (e->amount == a->amount && e->kind == TALLY_ISSUER_ENTRY_PERMISSION)
      *settled = e->state == TALLY_ISSUER_ENTRY_SETTLED;
  }
  return TRUE;
}

/* The issuer's audit row of @r, or NULL when it flags nothing about it. */
static const TallyAuditRegister *
flagged_row (const Reported *rep, const Reg *r)
{
  for (guint i = 0; i < rep->flagged->len; i++) {
    const TallyAuditRegister *row = rep->flagged->pdata[i];
    if (memcmp (row->register_id, r->id, TALLY_ID_BYTES) == 0)
      return row;
  }
  return NULL;
}

/*
 * Checks 7-9, for each register a whose owner acted (fault 1-4), from the
 * driver's own records: the attempts, what it was sold, what it forged or
 * hid, and the account balance the issuer reports.
 *
 *   in(a)     = vouchers sold to a + payments to a its payee side credited
 *               (a forged permission it listed as received among them) − the
 *               payment it hid, when the issuer gave that back to its payer;
 *   gain(a)   = online(a) − (deposit − vouchers sold to a): what its account
 *               received from defunds and reclaimed permissions;
 *   out(a)    = payments from a that their payee credited (forged ones
 *               included; to a payee rolled back or cloned, only those the
 *               issuer settled, since such a payee may have lost the credit
 *               and the issuer reclaimed the payment) + gain(a);
 *   signed(a) = every amount a's key signed (committed attempts, forged);
 *   made(a)   = max(0, out(a) − in(a), refunded(a)): what a spent beyond
 *               what it was sold and honestly paid, which is now held by
 *               its payees or its account, or the payment it hid and holds
 *               while the payer was refunded.
 *
 *   (7) gain(a) ≤ in(a), and gain(a) ≤ backed_online(a): no online value
 *       beyond what evidence backs, in total and entry by entry;
 *   (8) signed(a) > in(a) or a hidden payment given back: a fraud proof
 *       names a and the issuer revoked it;
 *   (9) the issuer's exposure for a (audit row) = made(a); and the audit's
 *       exposure = Σ_a made(a) + the exposure of the registers forked.
 */
static gboolean
check_owner (Scenario *sc, TallyIssuerStore *books, const Reported *rep)
{
  g_autoptr (GError) error = NULL;
  gint64 made_total = 0, other = 0;
  for (guint i = 0; i < rep->flagged->len; i++) {
    const TallyAuditRegister *row = rep->flagged->pdata[i];
    gboolean adversary = FALSE;
    for (guint k = 0; k < sc->regs->len; k++)
      adversary |= reg_at (sc, k)->adversary && !reg_at (sc, k)->is_clone &&
                   memcmp (reg_at (sc, k)->id, row->register_id, TALLY_ID_BYTES) == 0;
    if (!adversary)
      other += row->exposure;
  }
  for (guint i = 0; i < sc->regs->len; i++) {
    Reg *r = reg_at (sc, i);
    if (!r->adversary || r->is_clone)
      continue;
    gint64 hidden = 0, refunded = 0;
    if (r->hidden > 0) {
      g_auto (TallyIssuerEntryRow) e = { 0 };
      if (!tally_issuer_store_entry_get_by_hash (books, r->hidden_hash, &e, &error))
        return violation (sc, "the payment %s hid: %s", r->name, error->message);
      /* What exists twice is what its payer got back online: all of it for
       * an honest payer (checked above), what the evidence of a forked one
       * backs (protocol.md 5.1), which only the issuer's entry tells. */
      if (e.state == TALLY_ISSUER_ENTRY_RECLAIMED) {
        hidden = r->hidden;
        refunded = e.credited;
      }
    }
    gint64 in = r->sold - hidden, out = 0, signed_out = 0;
    for (guint k = 0; k < sc->attempts->len; k++) {
      const Attempt *a = &g_array_index (sc->attempts, Attempt, k);
      if (!a->committed)
        continue;
      if (reg_at (sc, a->payer)->origin == i) {
        gboolean paid = a->kind == ATTEMPT_PAYMENT && a->credited;
        if (paid && reg_at (sc, a->payee)->forked &&
            !attempt_settled (sc, books, a, &paid))
          return FALSE;
        signed_out += a->amount;
        out += paid ? a->amount : 0;
      } else if (a->kind == ATTEMPT_PAYMENT && a->credited && reg_at (sc, a->payee)->origin == i) {
        in += a->amount;
      }
    }
    gint64 gain = rep->online[i] - (DEPOSIT - r->sold);
    out += gain;
    gint64 made = MAX (MAX (out - in, refunded), 0);
    const TallyAuditRegister *row = flagged_row (rep, r);
    g_auto (TallyIssuerRegisterRow) books_row = { 0 };
    if (!tally_issuer_store_register_get (books, r->id, &books_row, &error))
      return violation (sc, "issuer's books for %s: %s", r->name, error->message);
    scenario_log (sc,
                  "owner of %s: in %" G_GINT64_FORMAT ", signed %" G_GINT64_FORMAT
                  ", out %" G_GINT64_FORMAT " (account gained %" G_GINT64_FORMAT
                  "), made %" G_GINT64_FORMAT "; issuer: exposure %" G_GINT64_FORMAT
                  ", %u proof(s), %s",
                  r->name, in, signed_out, out, gain, made, row ? row->exposure : 0,
                  row ? row->proofs : 0, books_row.revoked ? "revoked" : "not revoked");
    gint64 backed = backed_online (sc, i, in);
    if (gain > in || gain > backed) {
      figures->owner_unbacked_online++;
      figures->owner_unbacked_value += gain - MIN (in, backed);
    }
    if (gain > in || gain > backed)
      return violation (sc,
                        "owner of %s: its account gained %" G_GINT64_FORMAT
                        ", its evidence is %" G_GINT64_FORMAT ", of which its defunds and "
                        "permissions no honest payee holds are backed by %" G_GINT64_FORMAT,
                        r->name, gain, in, backed);
    gboolean act = signed_out > in || hidden > 0;
    if (act && (row == NULL || row->proofs == 0 || !books_row.revoked))
      return violation (sc,
                        "owner of %s signed %" G_GINT64_FORMAT " holding %" G_GINT64_FORMAT
                        " (hid %" G_GINT64_FORMAT "), but %s",
                        r->name, signed_out, in, hidden,
                        books_row.revoked ? "no fraud proof names it" : "it is not revoked");
    figures->owner_caught += act;
    gint64 exposure = row ? row->exposure : 0;
    figures->owner_made += made;
    figures->owner_exposure += exposure;
    if (exposure != made)
      return violation (sc,
                        "owner of %s made %" G_GINT64_FORMAT
                        ", the issuer reports %" G_GINT64_FORMAT " of exposure for it",
                        r->name, made, exposure);
    made_total += made;
  }
  if (rep->audit.fraud_exposure != made_total + other)
    return violation (sc,
                      "the audit reports %" G_GINT64_FORMAT " of exposure; owners made %"
                      G_GINT64_FORMAT " and forks account for %" G_GINT64_FORMAT,
                      rep->audit.fraud_exposure, made_total, other);
  return TRUE;
}

static void
settle (Scenario *sc)
{
  g_autoptr (GError) error = NULL;
  sc->step = G_MAXUINT;
  sc->kill = (Kill){ 0 };
  sc->enospc = (Enospc){ 0 };
  sc->now += SETTLE_ADVANCE;
  for (guint i = 0; i < sc->regs->len; i++)
    if (!drain_vouchers (sc, reg_at (sc, i)))
      return;
  /* Every register before and after every other, twice. */
  for (guint round = 0; round < 2; round++) {
    for (guint i = 0; i < sc->regs->len; i++) {
      sc->now += 1;
      if (!reconcile_one (sc, reg_at (sc, i), TRUE) && sc->failure != NULL)
        return;
    }
  }
  /* Defunds committed by registers that never forked reach the account. */
  for (guint i = 0; i < sc->attempts->len; i++) {
    const Attempt *a = &g_array_index (sc->attempts, Attempt, i);
    if (a->kind == ATTEMPT_DEFUND && !reg_tainted (reg_at (sc, a->payer)))
      reg_at (sc, a->payer)->ledger_online += a->amount;
  }

  Reported rep = { 0 };
  rep.proofs = tally_issuer_get_fraud_proofs (sc->issuer, &error);
  if (rep.proofs == NULL || !tally_issuer_audit (sc->issuer, &rep.audit, &error)) {
    violation (sc, "the issuer's reports: %s", error->message);
    g_clear_pointer (&rep.proofs, g_ptr_array_unref);
    return;
  }
  for (guint i = 0; i < sc->regs->len; i++)
    if (!reg_at (sc, i)->is_clone &&
        !tally_issuer_account_balance (sc->issuer, reg_at (sc, i)->account, &rep.online[i],
                                       &error)) {
      violation (sc, "account of %s: %s", reg_at (sc, i)->name, error->message);
      g_ptr_array_unref (rep.proofs);
      return;
    }
  g_autoptr (GPtrArray) proofs = rep.proofs;
  g_autoptr (GPtrArray) flagged = tally_issuer_audit_registers (sc->issuer, &error);
  if (flagged == NULL) {
    violation (sc, "the issuer's audit of registers: %s", error->message);
    return;
  }
  rep.flagged = flagged;
  g_autoptr (GHashTable) spent_twice =
    g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  rep.spent_twice = spent_twice;

  g_autoptr (TallyIssuerStore) books = books_open (sc);
  if (books == NULL)
    return;
  if (!tally_issuer_store_begin (books, &error)) {
    violation (sc, "the issuer's store: %s", error->message);
    return;
  }
  g_autoptr (GHashTable) expected_fraud =
    g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  gint64 reclaimed = 0, stuck = 0;
  (void) (check_forks (sc, books, expected_fraud) &&
          check_fraud_proofs (sc, books, &rep, expected_fraud) &&
          check_no_double_credit (sc, books) &&
          check_attempts (sc, books, &reclaimed, &stuck) && check_owner (sc, books, &rep) &&
          check_conservation (sc, books, &rep, reclaimed, stuck));
  tally_issuer_store_rollback (books);
}

/* --- one scenario ---------------------------------------------------------------- */

static gboolean
setup (Scenario *sc, guint n_regs)
{
  g_autoptr (GError) error = NULL;
  sc->issuer_dir = g_build_filename (sc->root, "issuer", NULL);
  sc->issuer = tally_issuer_create (sc->issuer_dir, "Fault Bank", CURRENCY, sc->now - DAY, &error);
  if (sc->issuer == NULL)
    return violation (sc, "issuer: %s", error->message);

  Tally__Limits limits = TALLY__LIMITS__INIT;
  limits.max_payment = MAX_PAYMENT;
  limits.balance_cap = BALANCE_CAP;
  limits.max_offline_payments = MAX_OFFLINE;
  limits.max_offline_seconds = VALIDITY;

  for (guint i = 0; i < n_regs; i++) {
    Reg *r = g_new0 (Reg, 1);
    g_queue_init (&r->vouchers);
    r->name = g_strdup_printf ("r%u", i);
    r->dir = g_build_filename (sc->root, r->name, NULL);
    r->account = g_strdup_printf ("account-%u", i);
    r->origin = i;
    g_ptr_array_add (sc->regs, r);

    r->reg = tally_register_create (r->dir, tally_issuer_get_public_key (sc->issuer), &error);
    if (r->reg == NULL)
      return violation (sc, "register %s: %s", r->name, error->message);
    memcpy (r->id, tally_register_get_id (r->reg), TALLY_ID_BYTES);
    r->id_hex = tally_register_get_id_hex (r->reg);
    if (!tally_issuer_account_create (sc->issuer, r->account, &error) ||
        !tally_issuer_deposit (sc->issuer, r->account, DEPOSIT, &error))
      return violation (sc, "account %s: %s", r->account, error->message);
    sc->deposited += DEPOSIT;
    r->ledger_online = DEPOSIT;
    g_autoptr (GBytes) cert =
      tally_issuer_certify (sc->issuer, tally_register_get_public_key (r->reg), r->account, NULL, &limits,
                            sc->now - DAY, sc->now + VALIDITY, &error);
    if (cert == NULL)
      return violation (sc, "certify %s: %s", r->name, error->message);
    gsize len;
    const guint8 *data = g_bytes_get_data (cert, &len);
    if (!tally_register_install_certificate (r->reg, data, len, sc->now, &error))
      return violation (sc, "install certificate on %s: %s", r->name, error->message);
    g_autoptr (GBytes) voucher =
      tally_issuer_sell_voucher (sc->issuer, r->id, FIRST_LOAD, sc->now, &error);
    if (voucher == NULL)
      return violation (sc, "voucher for %s: %s", r->name, error->message);
    r->ledger_online -= FIRST_LOAD;
    r->sold = FIRST_LOAD;
    data = g_bytes_get_data (voucher, &len);
    if (!tally_register_load (r->reg, data, len, sc->now, &error))
      return violation (sc, "load %s: %s", r->name, error->message);
  }
  return TRUE;
}

static const char *const owner_names[] = { "none", "balance", "rewind", "forge", "hide" };

/* One owner act in a fifth of the scenarios, on a register the planned
 * fork leaves alone, in the second half of the steps. */
static void
plan_owner (Scenario *sc, guint n_regs, guint n_steps)
{
  gdouble roll = g_rand_double (sc->rand);
  sc->owner_kind = roll < 0.05   ? OWNER_BALANCE
                   : roll < 0.10 ? OWNER_REWIND
                   : roll < 0.15 ? OWNER_FORGE
                   : roll < 0.20 ? OWNER_HIDE
                                 : OWNER_NONE;
  if (n_steps < 12)
    sc->owner_kind = OWNER_NONE;
  if (sc->owner_kind == OWNER_NONE)
    return;
  sc->owner_reg = rand_below (sc, n_regs);
  if (sc->fork_kind != FORK_NONE && sc->owner_reg == sc->fork_reg)
    sc->owner_reg = (sc->owner_reg + 1) % n_regs;
  do
    sc->owner_peer = rand_below (sc, n_regs);
  while (sc->owner_peer == sc->owner_reg ||
         (sc->fork_kind != FORK_NONE && sc->owner_peer == sc->fork_reg));
  sc->owner_step = n_steps / 3 + rand_below (sc, n_steps / 2);
}

static guint32
scenario_seed_part (guint64 seed, guint index, guint part)
{
  guint64 x = seed ^ ((guint64) index * G_GUINT64_CONSTANT (0x9E3779B97F4A7C15)) ^ part;
  x ^= x >> 33;
  x *= G_GUINT64_CONSTANT (0xff51afd7ed558ccd);
  x ^= x >> 33;
  return (guint32) x;
}

static char *
run_scenario (guint64 seed, guint index, guint steps_override, gboolean verbose, gboolean keep)
{
  guint32 parts[4];
  for (guint i = 0; i < G_N_ELEMENTS (parts); i++)
    parts[i] = scenario_seed_part (seed, index, i);

  g_autoptr (GError) error = NULL;
  Scenario sc = {
    .seed = seed,
    .index = index,
    .rand = g_rand_new_with_seed_array (parts, G_N_ELEMENTS (parts)),
    .verbose = verbose,
    .log = g_string_new (NULL),
    .now = START,
    .regs = g_ptr_array_new_with_free_func ((GDestroyNotify) reg_free),
    .attempts = g_array_new (FALSE, TRUE, sizeof (Attempt)),
  };
  sc.root = g_dir_make_tmp ("tally-faults-XXXXXX", &error);
  g_assert_no_error (error);

  guint n_regs = 3 + rand_below (&sc, 3);
  guint n_steps = steps_override ? steps_override : 20 + rand_below (&sc, 41);
  gdouble fork_roll = g_rand_double (sc.rand);
  sc.fork_kind = fork_roll < 0.25 ? FORK_ROLLBACK : fork_roll < 0.40 ? FORK_CLONE : FORK_NONE;
  if (n_steps < 10)
    sc.fork_kind = FORK_NONE;
  if (sc.fork_kind != FORK_NONE) {
    sc.fork_reg = rand_below (&sc, n_regs);
    sc.fork_copy_step = 1 + rand_below (&sc, n_steps / 2);
    /* The forked lineage needs steps left to spend in. */
    if (n_steps < sc.fork_copy_step + 7)
      sc.fork_kind = FORK_NONE;
    else
      sc.fork_step = sc.fork_copy_step + 2 + rand_below (&sc, n_steps - sc.fork_copy_step - 6);
  }
  plan_owner (&sc, n_regs, n_steps);
  scenario_log (&sc, "%u registers, %u steps, fork: %s, owner: %s", n_regs, n_steps,
                sc.fork_kind == FORK_ROLLBACK ? "rollback"
                : sc.fork_kind == FORK_CLONE  ? "clone"
                                              : "none",
                owner_names[sc.owner_kind]);

  if (setup (&sc, n_regs)) {
    for (sc.step = 1; sc.step <= n_steps && sc.failure == NULL; sc.step++) {
      figures->steps++;
      sc.now += 1 + rand_below (&sc, 120);
      fork_events (&sc);
      if (sc.failure == NULL)
        owner_events (&sc);
      if (sc.failure == NULL)
        do_step (&sc);
    }
    if (sc.failure == NULL)
      settle (&sc);
  }
  figures->scenarios++;

  char *failure = NULL;
  if (sc.failure != NULL)
    failure = g_strdup_printf ("%s\n  scenario log (%s):\n%s", sc.failure, sc.root, sc.log->str);
  world_close (&sc);
  faults_vfs_disarm ();
  g_ptr_array_unref (sc.regs);
  if (!keep || failure == NULL) {
    fixture_remove_tree (sc.root);
  }
  g_free (sc.root);
  g_free (sc.issuer_dir);
  g_free (sc.failure);
  g_array_unref (sc.attempts);
  g_string_free (sc.log, TRUE);
  g_rand_free (sc.rand);
  return failure;
}

/* --- the program ----------------------------------------------------------------- */

static void
print_summary (guint64 seed, gdouble seconds, guint failures)
{
  Figures *f = figures;
  printf ("\nsummary (seed %" G_GUINT64_FORMAT ", %.1f s)\n", seed, seconds);
  printf ("  scenarios                %" G_GUINT64_FORMAT "\n", f->scenarios);
  printf ("  steps                    %" G_GUINT64_FORMAT "\n", f->steps);
  printf ("  payments attempted       %" G_GUINT64_FORMAT " (onward %" G_GUINT64_FORMAT
          ", rejected by the agent %" G_GUINT64_FORMAT ")\n",
          f->payments, f->onward, f->rejected);
  printf ("    paid                   %" G_GUINT64_FORMAT "\n", f->paid);
  printf ("    not paid, nothing spent %" G_GUINT64_FORMAT "\n", f->not_paid);
  printf ("    not paid, reclaimed    %" G_GUINT64_FORMAT "\n", f->reclaimed);
  printf ("    a party rolled back    %" G_GUINT64_FORMAT " (agreement not checked)\n",
          f->unjudged);
  printf ("    left in flight         %" G_GUINT64_FORMAT "\n", f->in_flight);
  printf ("    redelivered            %" G_GUINT64_FORMAT " (of %" G_GUINT64_FORMAT
          " sessions that found a pending permission)\n",
          f->redelivered, f->redelivery_sessions);
  printf ("  loads / defunds / reconciliations  %" G_GUINT64_FORMAT " / %" G_GUINT64_FORMAT
          " / %" G_GUINT64_FORMAT "\n",
          f->loads, f->defunds, f->reconciliations);
  printf ("  faults injected\n");
  printf ("    kill-before-commit     %" G_GUINT64_FORMAT "\n", f->kill_before);
  printf ("    kill-after-commit      %" G_GUINT64_FORMAT "\n", f->kill_after);
  printf ("    (kill point not reached %" G_GUINT64_FORMAT ")\n", f->kill_unreached);
  printf ("    drop                   %" G_GUINT64_FORMAT " (message %" G_GUINT64_FORMAT
          ", fragment %" G_GUINT64_FORMAT ")\n",
          f->wire[FAULTS_WIRE_DROP_MESSAGE] + f->wire[FAULTS_WIRE_DROP_FRAGMENT],
          f->wire[FAULTS_WIRE_DROP_MESSAGE], f->wire[FAULTS_WIRE_DROP_FRAGMENT]);
  printf ("    duplicate              %" G_GUINT64_FORMAT " (message %" G_GUINT64_FORMAT
          ", fragment %" G_GUINT64_FORMAT ")\n",
          f->wire[FAULTS_WIRE_DUPLICATE_MESSAGE] + f->wire[FAULTS_WIRE_DUPLICATE_FRAGMENT],
          f->wire[FAULTS_WIRE_DUPLICATE_MESSAGE], f->wire[FAULTS_WIRE_DUPLICATE_FRAGMENT]);
  printf ("    reorder                %" G_GUINT64_FORMAT " (fragments %" G_GUINT64_FORMAT
          ", stale message %" G_GUINT64_FORMAT ")\n",
          f->wire[FAULTS_WIRE_REORDER_FRAGMENTS] + f->wire[FAULTS_WIRE_REORDER_STALE_MESSAGE],
          f->wire[FAULTS_WIRE_REORDER_FRAGMENTS], f->wire[FAULTS_WIRE_REORDER_STALE_MESSAGE]);
  printf ("    truncate               %" G_GUINT64_FORMAT " (message %" G_GUINT64_FORMAT
          ", fragment %" G_GUINT64_FORMAT ")\n",
          f->wire[FAULTS_WIRE_TRUNCATE_MESSAGE] + f->wire[FAULTS_WIRE_TRUNCATE_FRAGMENT],
          f->wire[FAULTS_WIRE_TRUNCATE_MESSAGE], f->wire[FAULTS_WIRE_TRUNCATE_FRAGMENT]);
  for (guint i = 0; i < N_HS; i++)
    printf ("    disconnect-%-11s %" G_GUINT64_FORMAT "\n", hs_names[i], f->disconnect[i]);
  printf ("    ENOSPC                 %" G_GUINT64_FORMAT " (no write reached %" G_GUINT64_FORMAT
          ")\n",
          f->enospc, f->enospc_unreached);
  printf ("    rollback               %" G_GUINT64_FORMAT "\n", f->rollbacks);
  printf ("    clone                  %" G_GUINT64_FORMAT "\n", f->clones);
  printf ("  payment timeouts         %" G_GUINT64_FORMAT "\n", f->timeouts);
  printf ("  forks with booked evidence %" G_GUINT64_FORMAT ", frauds detected %" G_GUINT64_FORMAT
          "\n",
          f->forks_with_evidence, f->frauds_detected);
  printf ("  late-receipt proofs against rolled-back payees %" G_GUINT64_FORMAT "\n",
          f->late_receipts);
  printf ("  overdrawn proofs against forked or owner registers %" G_GUINT64_FORMAT "\n",
          f->overdrawn);
  printf ("  fraud exposure reported %" G_GINT64_FORMAT ", value forks created %" G_GINT64_FORMAT
          ", defunds refused %" G_GINT64_FORMAT "\n",
          f->fraud_exposure, f->fork_created, f->refused);
  printf ("  owner adversary\n");
  printf ("    balance raised         %" G_GUINT64_FORMAT "\n", f->owner_balance);
  printf ("    counter rewound        %" G_GUINT64_FORMAT "\n", f->owner_rewind);
  printf ("    counter skipped        %" G_GUINT64_FORMAT " (bundles refused as incomplete %"
          G_GUINT64_FORMAT ")\n",
          f->owner_skip, f->owner_incomplete);
  printf ("    defund signed beyond the balance %" G_GUINT64_FORMAT "\n", f->owner_forge_defund);
  printf ("    permission signed beyond the balance, to a colluder %" G_GUINT64_FORMAT "\n",
          f->owner_forge_pay);
  printf ("    received payment hidden %" G_GUINT64_FORMAT "\n", f->owner_hide);
  printf ("    acts that overspent or hid, caught and revoked %" G_GUINT64_FORMAT "\n",
          f->owner_caught);
  printf ("    value owners made %" G_GINT64_FORMAT ", exposure reported for them %" G_GINT64_FORMAT
          "\n",
          f->owner_made, f->owner_exposure);
  printf ("    accounts credited beyond the evidence (check 7) %" G_GUINT64_FORMAT
          " scenario(s), by %" G_GINT64_FORMAT "\n",
          f->owner_unbacked_online, f->owner_unbacked_value);
  printf ("  violations               %u\n", failures);
}

int
main (int argc, char **argv)
{
  gint scenarios = -1;
  gint64 seed_arg = -1;
  gint only = -1;
  gint steps = 0;
  gboolean verbose = FALSE;
  gboolean keep = FALSE;
  g_autoptr (GError) error = NULL;
  GOptionEntry entries[] = {
    { "scenarios", 'n', 0, G_OPTION_ARG_INT, &scenarios,
      "Scenarios to run (default " G_STRINGIFY (
        DEFAULT_SCENARIOS) "); $TALLY_FAULT_SCENARIOS overrides it",
      "N" },
    { "seed", 's', 0, G_OPTION_ARG_INT64, &seed_arg, "Seed of the run (default: random)", "S" },
    { "only", 'i', 0, G_OPTION_ARG_INT, &only, "Run only the scenario with this index", "INDEX" },
    { "steps", 0, 0, G_OPTION_ARG_INT, &steps,
      "Steps per scenario (default: 20 to 60 at random, at most " G_STRINGIFY (MAX_STEPS) ")",
      "N" },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "Print every step", NULL },
    { "keep", 0, 0, G_OPTION_ARG_NONE, &keep, "Keep the directories of a failed scenario", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- randomized fault injection");
  g_option_context_set_summary (
    ctx, "Runs randomized scenarios over an issuer, 3 to 5 soft registers and the payment\n"
         "handshake over an in-process framed wire, injecting faults: a process killed\n"
         "(SIGKILL) before or after a commit, messages and fragments dropped, duplicated,\n"
         "reordered or truncated, disconnects after each handshake message, a full disk\n"
         "(ENOSPC) at a commit, a register rolled back or cloned from an old copy, and\n"
         "an owner who edits its register's database, signs with its key beyond the\n"
         "balance, pays an accomplice or hides a payment it received.\n"
         "After each scenario every register reconciles and the run checks that value is\n"
         "conserved, nothing was credited twice, every fork and every owner's act that\n"
         "spent beyond the evidence is proven, no account gained more than evidence\n"
         "backs, exposure equals the value made, and every payment ended paid or not\n"
         "paid.  A failure prints the command that replays it.  Directories are made\n"
         "under $TMPDIR.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    fprintf (stderr, "%s\n", error->message);
    return 2;
  }
  /* The environment wins, so a slow run (valgrind) of the regular suite
   * can take fewer scenarios than its command line names. */
  const char *env = g_getenv ("TALLY_FAULT_SCENARIOS");
  if (env != NULL && *env != '\0')
    scenarios = (gint) g_ascii_strtoll (env, NULL, 10);
  else if (scenarios < 0)
    scenarios = DEFAULT_SCENARIOS;
  if (scenarios < 1 || steps < 0 || steps > MAX_STEPS) {
    fprintf (stderr, "tally-faults: --scenarios must be at least 1 and --steps at most %d\n",
             MAX_STEPS);
    return 2;
  }
  guint64 seed =
    seed_arg >= 0 ? (guint64) seed_arg : ((guint64) g_random_int () << 32 | g_random_int ()) >> 1;
  printf ("tally-faults: seed %" G_GUINT64_FORMAT "\n", seed);
  fflush (stdout);

  figures = mmap (NULL, sizeof *figures, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  g_assert (figures != MAP_FAILED);
  memset (figures, 0, sizeof *figures);
  faults_vfs_install ();

  g_autoptr (GTimer) timer = g_timer_new ();
  guint failures = 0;
  guint first = only >= 0 ? (guint) only : 0;
  guint last = only >= 0 ? (guint) only + 1 : (guint) scenarios;
  for (guint i = first; i < last; i++) {
    g_autofree char *failure = run_scenario (seed, i, (guint) steps, verbose, keep);
    if (failure != NULL) {
      failures++;
      if (failures <= MAX_FAILURE_LINES) {
        g_autofree char *steps_arg = steps ? g_strdup_printf (" --steps %d", steps) : g_strdup ("");
        printf ("VIOLATION %s\n  replay: %s --seed %" G_GUINT64_FORMAT " --only %u%s --verbose\n",
                failure, g_get_prgname (), seed, i, steps_arg);
      }
    }
    if (!verbose && (i + 1) % 1000 == 0) {
      printf ("  %u scenarios, %u violation(s), %.0f s\n", i + 1, failures,
              g_timer_elapsed (timer, NULL));
      fflush (stdout);
    }
  }
  print_summary (seed, g_timer_elapsed (timer, NULL), failures);
  printf ("%u passed, %u failed\n", (guint) figures->scenarios - failures, failures);
  return failures > 0 ? 1 : 0;
}
