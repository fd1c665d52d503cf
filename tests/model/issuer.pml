/*
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The issuer's booking (docs/protocol.md section 5) against a register
 * whose owner may sign and send anything, with two honest registers beside
 * it.  docs/reliability.md, "Model of the issuer's booking", says what is
 * modelled, what is abstracted and how to run it (tests/model/run-spin.sh).
 *
 * Rules (the issuer's booking), V = vouchers sold, Rcv = permissions paid
 * to the register whose payee half is booked, S(R,<=c) = signed amounts of
 * the register's booked own entries with counter <= c:
 *  R1 evidence E(R,c) = V(R) + Rcv(R) - S(R,<=c)
 *  R2 a bundle books its received entries first, then its own entries in
 *     counter order
 *  R3 a bundle that, once booked, leaves a gap in 1..its highest own
 *     counter is refused whole
 *  R4 a defund is credited up to max(0, V(R) + Rcv(R) - S(R, every
 *     counter)) computed without it; the rest is refused (never credited)
 *  R5 after the bundle, E(R,n) < 0 (n its highest own counter) is an
 *     OVERDRAWN fraud proof and revokes; so is counter reuse
 *  R6 permissions are booked in full
 *  R7 issued + exposure = online + offline + in flight
 *
 * Properties (assertions; those in invariants() hold after every step):
 *  (a) online[A] <= V(A) + what honest registers paid A (payee half booked)
 *  (b) E(A, highest counter of an accepted bundle of A) < 0 only when A is
 *      revoked and named by a fraud proof
 *  (c) at the end, the reported exposure is the value A made; with every
 *      entry it signed booked at a counter no higher than an accepted
 *      bundle of A reached, A made none or is revoked
 *  (d) an honest defund is credited in full; honest registers are never
 *      revoked or named; at the end the issuer's view of each is its balance
 *  (e) R7 in every state
 *
 * Compile-time variants (each must break a property; tests/model/meson.build):
 *  -DDEFUND_IN_FULL   every defund credited in full (the rule before R4): (a)
 *  -DR4_UPTO_COUNTER  R4 bounded by E(R,c), counting only own entries up to
 *                     the defund's counter: (a)
 *  -DNO_R3            bundles with a gap accepted: (b)
 *  -DNO_R5            no OVERDRAWN proof: (b)
 * and to widen the universe: -DSELF_PAY (the adversary pays itself;
 * breaks (a) through the final reclaim, docs/reliability.md; passes with
 * -DRECLAIM_BOUNDED, a reclaim credited under R4's bound),
 * -DA_PAYS_H1 (it pays either honest register), -DMAXC=3, -DHMAX=2,
 * -DV_H1=..., -DWITNESS='expr' (asserts !expr: spin shows a run reaching
 * expr, to see that a state is reachable).
 */

#define H1 0
#define H2 1
#define A 2
#define NR 3

/* Vouchers the issuer sold to each register before the run. */
#ifndef V_H1
#define V_H1 2
#endif
#ifndef V_H2
#define V_H2 1
#endif
#ifndef V_A
#define V_A 2
#endif
#define ISSUED (V_H1 + V_H2 + V_A)
#define VOF(r) ((r) == H1 -> V_H1 : ((r) == H2 -> V_H2 : V_A))

#ifndef HMAX
#define HMAX 1 /* entries an honest register signs */
#endif
#ifndef AMAX
#define AMAX 3 /* entries the adversary signs */
#endif
#ifndef MAXC
#define MAXC 2 /* highest counter the adversary signs */
#endif
#define NE (2 * HMAX + AMAX) /* entries in the universe */

#define PERM 0
#define DEFUND 1

#define PROOF_REUSE 1
#define PROOF_OVERDRAWN 2

typedef Entry {
  byte owner;   /* the payer, or the register that defunds */
  byte cnt;     /* counter, 1.. */
  byte amt;     /* signed amount, 1..2 */
  byte payee;   /* permissions only */
  bit kind;     /* PERM or DEFUND */
  bit rcpt;     /* the payer holds the payee's receipt */
  bit booked;   /* the issuer booked the entry */
  bit half      /* the issuer booked the payee's half */
};

Entry e[NE];
byte ne;

/* Honest registers, as they hold themselves. */
byte bal[2];
byte hcnt[2];
bit closed[2];
byte acnt; /* entries the adversary signed */

/* The issuer. */
short view[NR];   /* its bookkeeping view of each register */
short online[NR]; /* each register's online account */
short inflight;
bit revoked[NR];
byte proofs[NR];  /* PROOF_* kinds naming the register */
byte abundled;    /* highest counter of an accepted adversary bundle */

/* Choices carried from one step of an atomic sequence to the next (zero
 * between actions, so they add no states): the bundle being built, and the
 * entry being signed. */
byte avail_own, avail_carry, avail_rcv, forced, avail_n, listed_n;
byte sel_own, sel_carry, sel_rcv;
byte ch_c, ch_amt, ch_p, ch_rc;

/* Scratch, used only within one d_step: not part of the state. */
hidden byte v_i, v_j, v_c, v_n;
hidden short v_ev, v_cr, v_t, v_x;
hidden byte v_ok;

#define BIT(k) (1 << (k))

/* One step that sets v to any subset of the bits in m (entries < 8). */
#define SUB1(v, m, k) :: ((k) & ~(m)) == 0 -> v = k
#define SUB4(v, m, k) SUB1(v, m, k) SUB1(v, m, k + 1) SUB1(v, m, k + 2) SUB1(v, m, k + 3)
#define SUB16(v, m, k) SUB4(v, m, k) SUB4(v, m, k + 4) SUB4(v, m, k + 8) SUB4(v, m, k + 12)
#define SUB64(v, m, k) SUB16(v, m, k) SUB16(v, m, k + 16) SUB16(v, m, k + 32) SUB16(v, m, k + 48)
#if NE <= 5
#define SUBSET(v, m) if SUB16(v, m, 0) SUB16(v, m, 16) fi
#else
#define SUBSET(v, m) if SUB64(v, m, 0) SUB64(v, m, 64) fi
#endif
#define KEY(k) (e[k].owner * 128 + e[k].cnt * 32 + e[k].kind * 16 + e[k].amt * 4 + e[k].payee)
#define SWAP(f, k) v_t = e[k].f; e[k].f = e[(k) - 1].f; e[(k) - 1].f = v_t

/* ev = E(r, upto) */
inline evidence(r, upto) {
  v_ev = VOF(r);
  v_j = 0;
  do
  :: v_j < ne ->
    if
    :: e[v_j].booked && e[v_j].kind == PERM && e[v_j].payee == r && e[v_j].half ->
      v_ev = v_ev + e[v_j].amt
    :: else
    fi;
    if
    :: e[v_j].booked && e[v_j].owner == r && e[v_j].cnt <= upto -> v_ev = v_ev - e[v_j].amt
    :: else
    fi;
    v_j++
  :: else -> break
  od
}

/* Rcv(A) counting only what honest registers paid. */
inline honest_rcv_a() {
  v_t = 0;
  v_j = 0;
  do
  :: v_j < ne ->
    if
    :: e[v_j].booked && e[v_j].kind == PERM && e[v_j].payee == A && e[v_j].owner != A && e[v_j].half ->
      v_t = v_t + e[v_j].amt
    :: else
    fi;
    v_j++
  :: else -> break
  od
}

inline revoke(r, kind) {
  printf("MSC:   fraud proof %d naming register %d, revoked\n", kind, r);
  revoked[r] = 1;
  proofs[r] = proofs[r] | kind
}

/* The payee's half of entry k: settles an entry in flight. */
inline settle(k) {
  if
  :: !e[k].half ->
    e[k].half = 1;
    inflight = inflight - e[k].amt;
    view[e[k].payee] = view[e[k].payee] + e[k].amt
  :: else
  fi
}

/* Books entry k not booked before; with_half: the payee's half is known. */
inline book_new(k, with_half) {
  /* counter reuse: another booked entry of the register at this counter */
  v_j = 0;
  do
  :: v_j < ne ->
    if
    :: e[v_j].booked && e[v_j].owner == e[k].owner && e[v_j].cnt == e[k].cnt ->
      revoke(e[k].owner, PROOF_REUSE)
    :: else
    fi;
    v_j++
  :: else -> break
  od;
  if
  :: e[k].kind == DEFUND ->
#ifdef DEFUND_IN_FULL
    v_cr = e[k].amt;
#else
#ifdef R4_UPTO_COUNTER
    evidence(e[k].owner, e[k].cnt); /* R4 as first written: S(R,<=c) */
#else
    evidence(e[k].owner, 255); /* R4: every booked own entry, without this defund */
#endif
    v_cr = (v_ev > 0 -> v_ev : 0);
    v_cr = (v_cr < e[k].amt -> v_cr : e[k].amt);
#endif
    view[e[k].owner] = view[e[k].owner] - v_cr;
    online[e[k].owner] = online[e[k].owner] + v_cr;
    printf("MSC:   defund %d credited %d of %d\n", k, v_cr, e[k].amt);
    /* (d): an honest register's defund is credited in full */
    assert(e[k].owner == A || v_cr == e[k].amt);
    e[k].booked = 1
  :: else ->
    e[k].booked = 1;
    view[e[k].owner] = view[e[k].owner] - e[k].amt;
    if
    :: with_half ->
      e[k].half = 1;
      view[e[k].payee] = view[e[k].payee] + e[k].amt
    :: else ->
      inflight = inflight + e[k].amt
    fi
  fi
}

/* The bundle of register r: received entries sel_rcv, own entries sel_own
 * with the receipts sel_carry.  R3, R2, R4, R5. */
inline reconcile(r) {
  printf("MSC: bundle of register %d: own entries %x (receipts %x), received %x, relisted up to %d\n", r, sel_own, sel_carry, sel_rcv, listed_n);
  /* n: the bundle's highest own counter; listed_n: that of the entries
   * listed again that were booked before */
  v_n = listed_n;
  v_i = 0;
  do
  :: v_i < ne ->
    if
    :: (sel_own & BIT(v_i)) && e[v_i].cnt > v_n -> v_n = e[v_i].cnt
    :: else
    fi;
    v_i++
  :: else -> break
  od;
  /* R3: every counter 1..n has an entry once the bundle is booked */
  v_ok = 1;
  v_c = 1;
  do
  :: v_c <= v_n ->
    v_x = 0;
    v_i = 0;
    do
    :: v_i < ne ->
      if
      :: e[v_i].owner == r && e[v_i].cnt == v_c && (e[v_i].booked || (sel_own & BIT(v_i))) -> v_x = 1
      :: else
      fi;
      v_i++
    :: else -> break
    od;
    if
    :: v_x == 0 -> v_ok = 0
    :: else
    fi;
    v_c++
  :: else -> break
  od;
#ifdef NO_R3
  v_ok = 1;
#endif
  if
  :: v_ok ->
    /* R2: received entries first */
    v_i = 0;
    do
    :: v_i < ne ->
      if
      :: (sel_rcv & BIT(v_i)) && !e[v_i].booked -> book_new(v_i, 1)
      :: (sel_rcv & BIT(v_i)) && e[v_i].booked -> settle(v_i)
      :: else
      fi;
      v_i++
    :: else -> break
    od;
    /* then own entries in counter order */
    v_c = 1;
    do
    :: v_c <= v_n ->
      v_i = 0;
      do
      :: v_i < ne ->
        if
        :: (sel_own & BIT(v_i)) && e[v_i].cnt == v_c && !e[v_i].booked ->
          book_new(v_i, (sel_carry & BIT(v_i)) != 0)
        :: (sel_own & BIT(v_i)) && e[v_i].cnt == v_c && e[v_i].booked && (sel_carry & BIT(v_i)) ->
          settle(v_i)
        :: else
        fi;
        v_i++
      :: else -> break
      od;
      v_c++
    :: else -> break
    od;
    /* R5 */
    if
#ifndef NO_R5
    :: v_n > 0 ->
#else
    :: false ->
#endif
      evidence(r, v_n);
      if
      :: v_ev < 0 -> revoke(r, PROOF_OVERDRAWN)
      :: else
      fi
    :: else
    fi;
    if
    :: r == A ->
      abundled = (v_n > abundled -> v_n : abundled)
    :: else
    fi
  :: else -> printf("MSC:   refused whole (R3)\n") /* nothing changes */
  fi;
  sel_own = 0;
  sel_carry = 0;
  sel_rcv = 0;
  listed_n = 0
}

/* An honest register lists everything: all its entries with the receipts
 * it holds, and every permission it received. */
inline honest_bundle(r) {
  v_i = 0;
  do
  :: v_i < ne ->
    if
    :: e[v_i].owner == r ->
      sel_own = sel_own | BIT(v_i);
      if
      :: e[v_i].rcpt -> sel_carry = sel_carry | BIT(v_i)
      :: else
      fi
    :: else
    fi;
    if
    :: e[v_i].kind == PERM && e[v_i].payee == r -> sel_rcv = sel_rcv | BIT(v_i)
    :: else
    fi;
    v_i++
  :: else -> break
  od;
  reconcile(r)
}

#define SIGN_CHOICE \
  if \
  :: ch_c = 1 \
  :: ch_c = 2 \
  :: MAXC >= 3 -> ch_c = 3 \
  fi; \
  if \
  :: ch_amt = 1 \
  :: ch_amt = 2 \
  fi

/* Appends an entry and moves it to its place in a canonical order, so that
 * the same set of entries signed in another order is the same state. */
inline new_entry(o, k, cn, a, py, rc) {
  e[ne].owner = o;
  e[ne].kind = k;
  e[ne].cnt = cn;
  e[ne].amt = a;
  e[ne].payee = py;
  e[ne].rcpt = rc;
  v_i = ne;
  ne++;
  do
  :: v_i > 0 && KEY(v_i - 1) > KEY(v_i) ->
    SWAP(owner, v_i);
    SWAP(cnt, v_i);
    SWAP(amt, v_i);
    SWAP(payee, v_i);
    SWAP(kind, v_i);
    SWAP(rcpt, v_i);
    SWAP(booked, v_i);
    SWAP(half, v_i);
    v_i--
  :: else -> break
  od;
  printf("MSC: sign entry %d (of %d): register %d, kind %d, counter %d, amount %d, payee %d, receipt %d\n", v_i, ne, o, k, cn, a, py, rc)
}

/* Invariants, checked after every step. */
inline invariants() {
  /* (e) R7: issued + exposure = online + offline + in flight */
  v_x = 0;  /* exposure */
  v_t = inflight;
  v_i = 0;
  do
  :: v_i < NR ->
    v_t = v_t + online[v_i];
    if
    :: revoked[v_i] && view[v_i] < 0 -> v_x = v_x - view[v_i]
    :: revoked[v_i] && view[v_i] >= 0 -> v_t = v_t + view[v_i]
    :: !revoked[v_i] -> v_t = v_t + view[v_i]
    fi;
    v_i++
  :: else -> break
  od;
  assert(ISSUED + v_x == v_t);
  /* (a) no online value beyond what evidence backs */
  honest_rcv_a();
  assert(online[A] <= V_A + v_t);
  /* (b) an overspend reported in an accepted bundle of the adversary is an
   * OVERDRAWN or counter-reuse proof naming it, and it is revoked */
  evidence(A, abundled);
  assert(v_ev >= 0 || (revoked[A] && proofs[A] != 0));
  /* (d) honest registers are never revoked nor named */
  assert(!revoked[H1] && !revoked[H2] && proofs[H1] == 0 && proofs[H2] == 0);
#ifdef WITNESS
  /* a state the model must reach, stated as a violation for spin to find */
  assert(!(WITNESS))
#endif
}

/* The end: honest registers reconcile, payees' horizons pass every
 * expiry (reclaim, abstractly), and the value is counted. */
inline settle_all() {
  honest_bundle(H1);
  honest_bundle(H2);
  invariants();
  v_i = 0;
  do
  :: v_i < ne ->
    if
    :: e[v_i].booked && e[v_i].kind == PERM && !e[v_i].half ->
      inflight = inflight - e[v_i].amt;
#ifdef RECLAIM_BOUNDED
      /* as R4: credited up to the evidence without this permission; the
       * rest goes back to the payer's view */
#ifdef RECLAIM_UPTO_COUNTER
      /* the issuer's rule (protocol.md 5.1): the payer's entries up to the
       * permission's own counter, which an honest payer's balance before
       * its payment always covers */
      evidence(e[v_i].owner, e[v_i].cnt);
#else
      evidence(e[v_i].owner, 255);
#endif
      v_cr = v_ev + e[v_i].amt;
      v_cr = (v_cr > 0 -> v_cr : 0);
      v_cr = (v_cr < e[v_i].amt -> v_cr : e[v_i].amt);
      online[e[v_i].owner] = online[e[v_i].owner] + v_cr;
      view[e[v_i].owner] = view[e[v_i].owner] + e[v_i].amt - v_cr;
      printf("MSC:   reclaim %d credited %d of %d\n", v_i, v_cr, e[v_i].amt)
#else
      online[e[v_i].owner] = online[e[v_i].owner] + e[v_i].amt
#endif
    :: else
    fi;
    v_i++
  :: else -> break
  od;
  assert(inflight == 0);
  invariants();
  /* (d) the issuer's view of an honest register is what it holds */
  assert(view[H1] == bal[H1] && view[H2] == bal[H2]);
  /* (c) value the adversary made: what it paid honest registers and took
   * online beyond its vouchers and what honest registers paid it */
  v_x = 0;
  v_i = 0;
  do
  :: v_i < ne ->
    if
    :: e[v_i].owner == A && e[v_i].kind == PERM && e[v_i].payee != A -> v_x = v_x + e[v_i].amt
    :: else
    fi;
    v_i++
  :: else -> break
  od;
  honest_rcv_a();
  v_cr = online[A] + v_x - V_A - v_t;
  v_cr = (v_cr > 0 -> v_cr : 0);
  v_x = (revoked[A] && view[A] < 0 -> -view[A] : 0); /* reported exposure */
  assert(v_x == (revoked[A] -> v_cr : 0));
  /* with every entry it signed booked at a counter no higher than an
   * accepted bundle of it reached, an adversary that made value is revoked */
  v_ok = 1;
  v_i = 0;
  do
  :: v_i < ne ->
    if
    :: e[v_i].owner == A && (!e[v_i].booked || e[v_i].cnt > abundled) -> v_ok = 0
    :: else
    fi;
    v_i++
  :: else -> break
  od;
  assert(!v_ok || v_cr == 0 || (revoked[A] && proofs[A] != 0))
}

inline honest_pay(r) {
  (ne < NE && !closed[r] && hcnt[r] < HMAX && bal[r] >= 1) ->
  if
  :: ch_amt = 1
  :: bal[r] >= 2 -> ch_amt = 2
  fi;
  if
  :: !closed[1 - r] -> ch_p = 1 - r; ch_rc = 1 /* an honest payee's receipt */
  :: ch_p = A; ch_rc = 1                       /* the adversary's receipt */
  :: ch_p = A; ch_rc = 0                       /* withheld */
  fi;
  d_step {
    bal[r] = bal[r] - ch_amt;
    hcnt[r]++;
    if
    :: ch_p == A
    :: else -> bal[ch_p] = bal[ch_p] + ch_amt
    fi;
    new_entry(r, PERM, hcnt[r], ch_amt, ch_p, ch_rc);
    ch_amt = 0;
    ch_p = 0;
    ch_rc = 0;
    invariants()
  }
}

inline honest_defund(r) {
  (ne < NE && !closed[r] && hcnt[r] < HMAX && bal[r] >= 1) ->
  d_step {
    hcnt[r]++;
    new_entry(r, DEFUND, hcnt[r], bal[r], 0, 0);
    bal[r] = 0;
    closed[r] = 1;
    invariants()
  }
}

active proctype world() {
  /* Vouchers sold and applied: the issuer's view and the registers agree. */
  d_step {
    view[H1] = V_H1;
    view[H2] = V_H2;
    view[A] = V_A;
    bal[H1] = V_H1;
    bal[H2] = V_H2
  };
  do
  /* An honest register pays the other honest register, or the adversary
   * (which may withhold its receipt), never beyond its balance. */
  :: atomic { honest_pay(H1) }
  :: atomic { honest_pay(H2) }
  /* An honest register defunds its whole balance and closes. */
  :: atomic { honest_defund(H1) }
  :: atomic { honest_defund(H2) }
  /* An honest register reconciles. */
  :: d_step { honest_bundle(H1); invariants() }
  :: d_step { honest_bundle(H2); invariants() }
  /* The adversary signs a permission to an honest register with any
   * counter and amount: beyond its balance, reusing a counter (a clone or
   * a rollback), skipping counters.  The payee accepts it in good faith. */
  :: atomic {
#ifdef A_PAYS_H1
      (ne < NE && acnt < AMAX && (!closed[H1] || !closed[H2])) ->
      SIGN_CHOICE;
      if
      :: !closed[H1] -> ch_p = H1
      :: !closed[H2] -> ch_p = H2
      fi;
#else
      (ne < NE && acnt < AMAX && !closed[H2]) ->
      SIGN_CHOICE;
      ch_p = H2;
#endif
      d_step {
        bal[ch_p] = bal[ch_p] + ch_amt;
        new_entry(A, PERM, ch_c, ch_amt, ch_p, 1);
        acnt++;
        ch_c = 0;
        ch_amt = 0;
        ch_p = 0;
        invariants()
      }
    }
  /* The adversary sends a bundle: any subset of its entries, with or
   * without the receipts it holds, and any subset of what it received.
   * An entry no one else sees (a defund; a permission to itself) makes a
   * difference only once listed, so it is signed as the bundle is made. */
  :: atomic {
      if
      :: skip
      :: (ne < NE && acnt < AMAX) ->
        SIGN_CHOICE;
#ifdef SELF_PAY
        if
        :: ch_p = NR
        :: ch_p = A
        fi;
#else
        ch_p = NR;
#endif
        d_step {
          if
          :: ch_p == NR -> new_entry(A, DEFUND, ch_c, ch_amt, 0, 0)
          :: else -> new_entry(A, PERM, ch_c, ch_amt, A, 1)
          fi;
          forced = BIT(v_i);
          acnt++;
          ch_c = 0;
          ch_amt = 0;
          ch_p = 0
        }
      fi;
      d_step {
        v_i = 0;
        do
        :: v_i < ne ->
          if
          :: e[v_i].owner == A ->
            /* Listing again an entry booked before changes nothing but the
             * bundle's highest counter, unless it brings the receipt. */
            if
            :: forced & BIT(v_i)
            :: !(forced & BIT(v_i)) && (!e[v_i].booked || (e[v_i].rcpt && !e[v_i].half)) ->
              avail_own = avail_own | BIT(v_i)
            :: else -> avail_n = avail_n | BIT(e[v_i].cnt)
            fi;
            if
            :: e[v_i].rcpt && !e[v_i].half -> avail_carry = avail_carry | BIT(v_i)
            :: else
            fi
          :: e[v_i].owner != A && e[v_i].kind == PERM && e[v_i].payee == A && !e[v_i].half ->
            avail_rcv = avail_rcv | BIT(v_i)
          :: else
          fi;
          v_i++
        :: else -> break
        od
      };
      SUBSET(sel_own, avail_own);
      sel_own = sel_own | forced;
      if
      :: listed_n = 0
      :: avail_n & BIT(1) -> listed_n = 1
      :: avail_n & BIT(2) -> listed_n = 2
      :: avail_n & BIT(3) -> listed_n = 3
      fi;
      SUBSET(sel_carry, avail_carry & sel_own);
      SUBSET(sel_rcv, avail_rcv);
      d_step {
        avail_own = 0;
        avail_carry = 0;
        avail_rcv = 0;
        forced = 0;
        avail_n = 0;
        reconcile(A);
        invariants()
      }
    }
  :: d_step { settle_all() }; break
  od
}
