//! The replicated protocol's online phase: the executor's [`Protocol`] for
//! `replicated-3`.
//!
//! Every round of a layer carries one message to each neighbour. To the
//! previous party: the reshared products (multiplications, the `r·x` of
//! bit injections, the second round of divisions), the reshared ANDs and
//! this party's part 1 of every opened injection mask. To the next party:
//! the inputs party 0 makes for divisions and party 1 makes for
//! arithmetic-to-binary splits. Randomness is drawn from the pairwise keys
//! in one fixed order per layer (see [`Replicated::run_layer`]), so the
//! two holders of every key stay in step.

use super::arithmetic::{InputRole, and_local, mul_local};
use super::keys::Keys;
use super::{PARTIES, conversion, division, next, prev};
use crate::executor::net::Net;
use crate::executor::netlist::{GateId, GateOp, Kind};
use crate::executor::run::{JobError, OwnInputs, Value, broadcast_bits, broadcast_ring, reveal_by_parts};
use crate::executor::shuffle::permute_columns;
use crate::executor::{Instance, Layer};
use crate::gf2::{Bits, Packed, words_for};
use crate::memory::zeroed;
use crate::preprocessing::Demand;
use crate::prg::{Prg, SEED_BYTES, Seed};
use crate::program::ir::{Circuit, PartyIndex};
use crate::protocol::Protocol;
use crate::ring;
use crate::sharing::{Secret, Share};
use crate::transport::Step;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// This party's two parts of a ring value.
type Parts = [Vec<u64>; 2];

/// One party's state in a replicated job.
pub struct Replicated {
    me: PartyIndex,
    /// Public values enter component 0: party 0's part 0, party 2's part 1.
    public_parts: [bool; 2],
    own_seed: Seed,
    keys: Keys,
    /// The job's daBits, used in layer order.
    dabits: DaBits,
    /// Divisions between their two rounds.
    pending: BTreeMap<GateId, PendingDivision>,
    /// The outer instance's `pending`, set aside during a dynamic step.
    outer: Option<BTreeMap<GateId, PendingDivision>>,
}

/// Random bits shared both ways: `bits` (one plane, XOR parts) and
/// `arith` (ring parts) hold the same bit.
struct DaBits {
    bits: [Bits; 2],
    arith: [Share; 2],
    used: usize,
}

/// A division after its first round: the parts of `[A] + [B] − K/d`, of
/// `[c_t]` and of `[r_t]`.
struct PendingDivision {
    base: [Share; 2],
    ct: [Share; 2],
    rt: [Share; 2],
}

impl Replicated {
    pub fn new(me: PartyIndex, parties: usize) -> Result<Replicated, JobError> {
        if parties != PARTIES {
            return Err(JobError::Input {
                input: "(federation)".into(),
                reason: format!("replicated-3 needs exactly 3 parties, the job has {parties}"),
            });
        }
        let own_seed = Seed::random()?;
        let keys = Keys::new(&own_seed);
        Ok(Replicated {
            me,
            public_parts: [me == 0, me == 2],
            own_seed,
            keys,
            // Injections of empty vectors slice these too.
            dabits: DaBits {
                bits: [Bits::zeros(1, 0), Bits::zeros(1, 0)],
                arith: [Share::zeros(0), Share::zeros(0)],
                used: 0,
            },
            pending: BTreeMap::new(),
            outer: None,
        })
    }

    /// The parts of an input of `len` ring elements by `owner`, in gate
    /// order: this party's role decides what it draws and what it sends.
    fn input_ring(
        &mut self,
        owner: usize,
        value: Option<&[u64]>,
        received: Option<Vec<u64>>,
        len: usize,
    ) -> [Vec<u64>; 2] {
        match InputRole::of(self.me, owner) {
            InputRole::Owner => {
                let mask = self.keys.draw(0, len);
                let mut rest = value.expect("the owner's value").to_vec();
                ring::sub_assign(&mut rest, &mask);
                [mask, rest]
            }
            InputRole::Receiver => [received.expect("the owner's message"), zeroed(len)],
            InputRole::Helper => [zeroed(len), self.keys.draw(1, len)],
        }
    }

    /// The same for a bundle of `width` planes over `len` elements (XOR).
    fn input_bits(
        &mut self,
        owner: usize,
        value: Option<&Bits>,
        received: Option<Vec<u64>>,
        width: usize,
        len: usize,
    ) -> [Bits; 2] {
        let words = width * words_for(len);
        let bits = |w: Vec<u64>| Bits::from_words(width, len, w).expect("whole planes");
        match InputRole::of(self.me, owner) {
            InputRole::Owner => {
                let mask = self.keys.draw(0, words);
                let mut rest = value.expect("the owner's value").words().to_vec();
                rest.iter_mut().zip(&mask).for_each(|(r, m)| *r ^= m);
                [bits(mask), bits(rest)]
            }
            InputRole::Receiver => [bits(received.expect("the owner's message")), Bits::zeros(width, len)],
            InputRole::Helper => [Bits::zeros(width, len), bits(self.keys.draw(1, words))],
        }
    }

    /// Which of this party's parts holds component `c`.
    fn part_of(&self, component: usize) -> Option<usize> {
        if component == self.me {
            Some(0)
        } else if component == next(self.me) {
            Some(1)
        } else {
            None
        }
    }

    /// The parts of a value whose component `c` is `value` (known to its
    /// two holders) and the others zero.
    fn known_to_holders(&self, component: usize, value: Vec<u64>) -> [Vec<u64>; 2] {
        let len = value.len();
        match self.part_of(component) {
            Some(0) => [value, zeroed(len)],
            Some(_) => [zeroed(len), value],
            None => [zeroed(len), zeroed(len)],
        }
    }

    /// The daBit round: `[r] = [t] + [r_2] − 2·[t]·[r_2]` (see
    /// [`super::conversion`]).
    async fn finish_dabits(&mut self, net: &mut Net<'_>, t: [Vec<u64>; 2], r2: [Vec<u64>; 2]) -> Result<(), JobError> {
        let m = t[0].len();
        let mut z = self.keys.zero_ring(m);
        mul_local([&t[0], &t[1]], [&r2[0], &r2[1]], &mut z);
        let step = Step::Preprocess(0);
        let received = reshare(net, step, self.me, ring::to_le_bytes(&z)).await?;
        let theirs = ring::from_le_bytes(&received)
            .filter(|v| v.len() == m)
            .ok_or_else(|| net.protocol_error(next(self.me), step, format!("expected {m} daBit products")))?;
        net.mesh.recycle_secret(received);
        let product = [z, theirs];
        self.dabits.arith = [0, 1].map(|j| Share::new(conversion::dabit_arith(&t[j], &r2[j], &product[j])));
        Ok(())
    }
}

/// Send `message` to the previous party and receive the next party's.
/// (The round is with both neighbours; see [`both_ways`].)
async fn reshare(net: &mut Net<'_>, step: Step, me: usize, message: Vec<u8>) -> Result<Vec<u8>, JobError> {
    let sends = both_ways(me, Arc::new(message), Arc::new(Vec::new()));
    let mut received = net.round(step, sends, &[next(me), prev(me)]).await?;
    if !received[prev(me)].is_empty() {
        return Err(net.protocol_error(prev(me), step, "sent a message where none is due"));
    }
    Ok(std::mem::take(&mut received[next(me)]))
}

/// A round's sends: `to_prev` and `to_next`, one message to each
/// neighbour even when one of them is empty. Every party hears from both
/// neighbours in every round, so a party that stalls is named by both:
/// otherwise its successor's wait would hold up the next round's message
/// to the party after, which would blame the healthy successor.
fn both_ways(me: usize, to_prev: Arc<Vec<u8>>, to_next: Arc<Vec<u8>>) -> Vec<(usize, Arc<Vec<u8>>)> {
    vec![(prev(me), to_prev), (next(me), to_next)]
}

/// Little-endian words from `bytes[at..at + 8·len]`, advancing `at`.
fn take_words(bytes: &[u8], at: &mut usize, len: usize) -> Option<Vec<u64>> {
    let end = at.checked_add(8 * len)?;
    let words = ring::from_le_bytes(bytes.get(*at..end)?)?;
    *at = end;
    Some(words)
}

impl Protocol for Replicated {
    fn public_parts(&self) -> &[bool] {
        &self.public_parts
    }

    /// The input round: each party sends its key to the previous party,
    /// its inputs' second components to the next party, and party 0 the
    /// seed and input of the daBits (see [`super::conversion`]); then, if
    /// the job injects bits, the daBit round.
    async fn share_inputs(
        &mut self,
        net: &mut Net<'_>,
        instance: &Instance,
        _: &Circuit,
        inputs: &OwnInputs,
        values: &mut [Option<Value>],
    ) -> Result<(), JobError> {
        let me = self.me;
        let gates = &instance.netlist.gates;
        let input_gates: Vec<(GateId, usize, PartyIndex)> = gates
            .iter()
            .enumerate()
            .filter_map(|(id, gate)| match gate.op {
                GateOp::Input { input, party } => Some((id, input, party)),
                _ => None,
            })
            .collect();
        let dabit_count: usize = instance.layers.iter().flat_map(|l| &l.injects).map(|id| gates[*id].width()).sum();
        let dabit_words = words_for(dabit_count);

        // This party's own inputs, masked from its own key.
        let mut to_next = Vec::new();
        for &(id, input, owner) in input_gates.iter().filter(|(_, _, owner)| *owner == me) {
            let secret = inputs.get(input).expect("checked before setup");
            let value = match gates[id].kind {
                Kind::Ring => {
                    let parts = self.input_ring(owner, Some(secret.expose()), None, secret.len());
                    ring::extend_le_bytes(&mut to_next, &parts[1]);
                    Value::Secret(parts.map(Share::new).into())
                }
                Kind::Bits(_) => {
                    let bools: Vec<bool> = secret.expose().iter().map(|v| *v & 1 == 1).collect();
                    let parts = self.input_bits(owner, Some(&Bits::from_bools(&bools)), None, 1, bools.len());
                    ring::extend_le_bytes(&mut to_next, parts[1].words());
                    Value::SecretBits(parts.into())
                }
            };
            values[id] = Some(value);
        }
        // Party 0's daBit material: r_0 from its key, r_1 from a fresh
        // seed it gives party 1, and the input of t = r_0 XOR r_1.
        let mut dabit_state = None;
        if dabit_count > 0 && me == 0 {
            let sigma = Seed::random()?;
            let r0 = self.keys.draw(0, dabit_words);
            let r1 = Prg::new(&sigma).next_vec(dabit_words);
            let t: Vec<u64> = (0..dabit_count).map(|i| ((r0[i / 64] ^ r1[i / 64]) >> (i % 64)) & 1).collect();
            let t_parts = self.input_ring(0, Some(&t), None, dabit_count);
            to_next.extend_from_slice(sigma.as_bytes());
            ring::extend_le_bytes(&mut to_next, &t_parts[1]);
            dabit_state = Some(([r0, r1], t_parts));
        }

        let mut messages = vec![Vec::new(); PARTIES];
        messages[prev(me)] = self.own_seed.as_bytes().to_vec();
        messages[next(me)] = to_next;
        let sent = Net::per_peer(messages);
        let received = net.exchange(Step::Input, sent.clone()).await?;

        // The next party's key.
        let from_next = &received[next(me)];
        let seed: [u8; SEED_BYTES] = from_next.as_slice().try_into().map_err(|_| {
            net.protocol_error(
                next(me),
                Step::Input,
                format!("expected a {SEED_BYTES}-byte key, got {} bytes", from_next.len()),
            )
        })?;
        self.keys.set_next(&Seed::from_bytes(seed));

        // The previous party's inputs (this party receives them), then the
        // next party's (this party helps), in gate order.
        let from_prev = &received[prev(me)];
        let short = |what: &str| net.protocol_error(prev(me), Step::Input, format!("input message too short ({what})"));
        let mut at = 0;
        for &(id, _, owner) in &input_gates {
            if owner == me {
                continue;
            }
            let gate = &gates[id];
            let len = gate.width();
            let value = match (gate.kind, InputRole::of(me, owner)) {
                (Kind::Ring, InputRole::Receiver) => {
                    let msg = take_words(from_prev, &mut at, len).ok_or_else(|| short("an input"))?;
                    Value::Secret(self.input_ring(owner, None, Some(msg), len).map(Share::new).into())
                }
                (Kind::Bits(_), InputRole::Receiver) => {
                    let msg = take_words(from_prev, &mut at, words_for(len)).ok_or_else(|| short("an input"))?;
                    Value::SecretBits(self.input_bits(owner, None, Some(msg), 1, len).into())
                }
                (Kind::Ring, _) => Value::Secret(self.input_ring(owner, None, None, len).map(Share::new).into()),
                (Kind::Bits(_), _) => Value::SecretBits(self.input_bits(owner, None, None, 1, len).into()),
            };
            values[id] = Some(value);
        }
        if dabit_count == 0 {
            if at != from_prev.len() {
                return Err(net.protocol_error(prev(me), Step::Input, "input message too long"));
            }
            net.wipe(received, sent);
            return Ok(());
        }
        // The daBits' components and t, at every party in the same order.
        let (bits, t) = match dabit_state {
            Some((bits, t)) => (bits, t),
            None if me == 1 => {
                let sigma = from_prev.get(at..at + SEED_BYTES).ok_or_else(|| short("the daBit seed"))?;
                at += SEED_BYTES;
                let r1 = Prg::new(&Seed::from_bytes(sigma.try_into().expect("a seed"))).next_vec(dabit_words);
                let msg = take_words(from_prev, &mut at, dabit_count).ok_or_else(|| short("the daBit input"))?;
                let r2 = self.keys.draw(1, dabit_words);
                ([r1, r2], self.input_ring(0, None, Some(msg), dabit_count))
            }
            None => {
                let r2 = self.keys.draw(0, dabit_words);
                let r0 = self.keys.draw(1, dabit_words);
                ([r2, r0], self.input_ring(0, None, None, dabit_count))
            }
        };
        if at != from_prev.len() {
            return Err(net.protocol_error(prev(me), Step::Input, "input message too long"));
        }
        // r_2 as a ring value, at its holders (parties 1 and 2).
        let r2_bits = match me {
            1 => Some(&bits[1]),
            2 => Some(&bits[0]),
            _ => None,
        };
        let r2: Vec<u64> = (0..dabit_count).map(|i| r2_bits.map_or(0, |w| (w[i / 64] >> (i % 64)) & 1)).collect();
        let r2 = self.known_to_holders(2, r2);
        net.wipe(received, sent);
        let [b0, b1] = bits;
        self.dabits.bits = [b0, b1].map(|w| Bits::from_words(1, dabit_count, w).expect("one plane"));
        self.finish_dabits(net, t, r2).await
    }

    fn local_gate(&mut self, instance: &Instance, id: GateId, values: &[Option<Value>]) -> Option<Value> {
        let gate = &instance.netlist.gates[id];
        let GateOp::SplitLocal(x) = gate.op else { return None };
        let width = gate.width();
        let parts = values[x].as_ref().expect("operand ready").shares();
        // Component 0 is party 0's part 0 and party 2's part 1.
        let bits = [0, 1].map(|j| {
            let holds = self.part_of(0) == Some(j);
            let x = holds.then(|| broadcast_ring(parts[j].expose(), width));
            conversion::local_bits(x.as_deref(), width)
        });
        Some(Value::SecretBits(bits.into()))
    }

    /// One layer in one round. Randomness is drawn in this order at every
    /// party: the zero-sharings of the multiplications, of the injections'
    /// products and of the divisions' second rounds (gate order each),
    /// then of the ANDs, then the masks of party 0's division inputs and
    /// of party 1's split inputs.
    async fn run_layer(
        &mut self,
        net: &mut Net<'_>,
        instance: &Instance,
        index: usize,
        values: &mut [Option<Value>],
    ) -> Result<(), JobError> {
        let layer: &Layer = &instance.layers[index];
        let gates = &instance.netlist.gates;
        let step = Step::Layer(index as u32 + 1);
        let me = self.me;
        // Operands, borrowed unless a scalar is broadcast.
        let ring_at = |v: GateId, w: usize| -> [Cow<'_, [u64]>; 2] {
            let parts = values[v].as_ref().expect("operand ready").shares();
            [0, 1].map(|j| {
                let p = parts[j].expose();
                if p.len() == w { Cow::Borrowed(p) } else { Cow::Owned(broadcast_ring(p, w)) }
            })
        };
        // Borrowed too: the ANDs' operands are packed from them, not copied
        // first (a copy would be wiped again when dropped).
        let bits_at = |v: GateId, w: usize, j: usize| -> Cow<'_, Bits> {
            broadcast_bits(&values[v].as_ref().expect("operand ready").bit_shares()[j], w)
        };

        // The ring products: multiplications, injections of a secret value
        // (r·x), divisions' second rounds (c_t·r_t).
        let secret_injections: Vec<GateId> = layer
            .injects
            .iter()
            .copied()
            .filter(|id| matches!(gates[*id].op, GateOp::Inject(_, x) if gates[x].secret))
            .collect();
        let mut dabit_at = BTreeMap::new();
        for &id in &layer.injects {
            dabit_at.insert(id, self.dabits.used);
            self.dabits.used += gates[id].width();
        }
        let dabit_arith = |id: GateId, w: usize, d: &DaBits| -> [Vec<u64>; 2] {
            let at = dabit_at[&id];
            [0, 1].map(|j| d.arith[j].expose()[at..at + w].to_vec())
        };
        // This party's part of each product, per gate, in the order below.
        let mut z: Vec<Vec<u64>> = Vec::new();
        for &id in &layer.muls {
            let GateOp::Mul(a, b) = gates[id].op else { unreachable!() };
            let w = gates[id].width();
            let (x, y) = (ring_at(a, w), ring_at(b, w));
            let mut part = self.keys.zero_ring(w);
            mul_local([&x[0], &x[1]], [&y[0], &y[1]], &mut part);
            z.push(part);
        }
        for &id in &secret_injections {
            let GateOp::Inject(_, x) = gates[id].op else { unreachable!() };
            let w = gates[id].width();
            let (x, r) = (ring_at(x, w), dabit_arith(id, w, &self.dabits));
            let mut part = self.keys.zero_ring(w);
            mul_local([&r[0], &r[1]], [&x[0], &x[1]], &mut part);
            z.push(part);
        }
        for &id in &layer.corrections {
            let w = gates[id].width();
            let p = self.pending.get(&id).expect("the first round ran in the layer before");
            let mut part = self.keys.zero_ring(w);
            mul_local([p.ct[0].expose(), p.ct[1].expose()], [p.rt[0].expose(), p.rt[1].expose()], &mut part);
            z.push(part);
        }
        // The ANDs, packed densely over the layer.
        let mut left = [0, 1].map(|_| Packed::with_capacity(0));
        let mut right = [0, 1].map(|_| Packed::with_capacity(0));
        for &id in &layer.ands {
            let GateOp::And(a, b) = gates[id].op else { unreachable!() };
            let w = gates[id].width();
            for (j, (l, r)) in left.iter_mut().zip(right.iter_mut()).enumerate() {
                l.push(&bits_at(a, w, j));
                r.push(&bits_at(b, w, j));
            }
        }
        let and_words = left[0].words().len();
        let mut and_z = self.keys.zero_words(and_words);
        and_local([left[0].words(), left[1].words()], [right[0].words(), right[1].words()], &mut and_z);
        drop((left, right));
        // The injections' masked bits e = b XOR r: this party sends its
        // part 1, which the previous party lacks.
        let mut e_parts = [Vec::new(), Vec::new()];
        for &id in &layer.injects {
            let GateOp::Inject(b, _) = gates[id].op else { unreachable!() };
            let w = gates[id].width();
            let at = dabit_at[&id];
            for (j, e) in e_parts.iter_mut().enumerate() {
                let mut bits = bits_at(b, w, j).into_owned();
                bits.xor_assign(&self.dabits.bits[j].slice(at..at + w));
                e.extend_from_slice(bits.words());
            }
        }
        // Division inputs (party 0) and split inputs (party 1), to next.
        let mut to_next = Vec::new();
        let mut div_parts: Vec<(GateId, Parts, Parts)> = Vec::new();
        for (division, nodes) in &layer.divs {
            for &id in nodes {
                let GateOp::Div(x, _) = gates[id].op else { unreachable!() };
                let w = gates[id].width();
                let (a, ct) = if me == 0 {
                    let x = ring_at(x, w);
                    let (a, ct) = division::owner_values(division, &x[0], &x[1]);
                    (Some(a), Some(ct))
                } else {
                    (None, None)
                };
                // The receiver (party 1) takes its parts after the round.
                if InputRole::of(me, 0) == InputRole::Receiver {
                    div_parts.push((id, [Vec::new(), Vec::new()], [Vec::new(), Vec::new()]));
                    continue;
                }
                let a_parts = self.input_ring(0, a.as_deref(), None, w);
                let ct_parts = self.input_ring(0, ct.as_deref(), None, w);
                if me == 0 {
                    ring::extend_le_bytes(&mut to_next, &a_parts[1]);
                    ring::extend_le_bytes(&mut to_next, &ct_parts[1]);
                }
                div_parts.push((id, a_parts, ct_parts));
            }
        }
        let mut split_parts: Vec<(GateId, [Bits; 2])> = Vec::new();
        for &id in &layer.splits {
            let GateOp::SplitInput(x) = gates[id].op else { unreachable!() };
            let w = gates[id].width();
            let v = (me == 1).then(|| {
                let x = ring_at(x, w);
                conversion::input_bits(&x[0], &x[1])
            });
            if InputRole::of(me, 1) == InputRole::Receiver {
                split_parts.push((id, [Bits::zeros(64, 0), Bits::zeros(64, 0)]));
                continue;
            }
            let parts = self.input_bits(1, v.as_ref(), None, 64, w);
            if me == 1 {
                ring::extend_le_bytes(&mut to_next, parts[1].words());
            }
            split_parts.push((id, parts));
        }

        // One round.
        let z_len: usize = z.iter().map(Vec::len).sum();
        let mut to_prev = net.mesh.take_buffer(8 * (z_len + and_z.len() + e_parts[1].len()));
        z.iter().for_each(|part| ring::extend_le_bytes(&mut to_prev, part));
        ring::extend_le_bytes(&mut to_prev, &and_z);
        ring::extend_le_bytes(&mut to_prev, &e_parts[1]);
        let from_next_len = to_prev.len();
        let div_elems: usize = div_parts.iter().map(|(id, ..)| gates[*id].width()).sum();
        let split_words: usize = split_parts.iter().map(|(id, _)| 64 * words_for(gates[*id].width())).sum();
        let from_prev_len = 8 * match prev(me) {
            0 => 2 * div_elems,
            1 => split_words,
            _ => 0,
        };
        let payload = Arc::new(to_prev);
        let sends = both_ways(me, payload.clone(), Arc::new(to_next));
        let received = net.round(step, sends, &[next(me), prev(me)]).await?;
        let (from_next, from_prev) = (&received[next(me)], &received[prev(me)]);
        if from_next.len() != from_next_len {
            return Err(net.protocol_error(
                next(me),
                step,
                format!("expected {} reshared values, got {} bytes", from_next_len / 8, from_next.len()),
            ));
        }
        if from_prev.len() != from_prev_len {
            return Err(net.protocol_error(
                prev(me),
                step,
                format!("expected {} input values, got {} bytes", from_prev_len / 8, from_prev.len()),
            ));
        }

        // Finish.
        let mut at = 0;
        let mut z = z.into_iter();
        let mut take_product = || -> Parts {
            let mine = z.next().expect("one part per product");
            let theirs = take_words(from_next, &mut at, mine.len()).expect("length checked");
            [mine, theirs]
        };
        let mut products = Vec::new();
        for _ in 0..layer.muls.len() + secret_injections.len() + layer.corrections.len() {
            products.push(take_product());
        }
        let mut products = products.into_iter();
        let mut take_product = || products.next().expect("one per product");
        let mut their_and = take_words(from_next, &mut at, and_z.len()).expect("length checked");
        let mut their_e = take_words(from_next, &mut at, e_parts[1].len()).expect("length checked");
        let mut done: Vec<(GateId, Value)> = Vec::new();
        for &id in &layer.muls {
            let parts = take_product();
            done.push((id, Value::Secret(parts.map(Share::new).into())));
        }
        let mut rx_of = BTreeMap::new();
        for &id in &secret_injections {
            rx_of.insert(id, take_product());
        }
        for &id in &layer.corrections {
            let GateOp::Div(_, division) = &gates[id].op else { unreachable!() };
            let product = take_product();
            let p = self.pending.remove(&id).expect("the first round ran in the layer before");
            let PendingDivision { mut base, ct, rt } = p;
            for j in 0..2 {
                division::finish(division, base[j].expose_mut(), ct[j].expose(), rt[j].expose(), &product[j]);
            }
            done.push((id, Value::Secret(base.into())));
        }
        let mut offset = 0;
        for &id in &layer.ands {
            let Kind::Bits(width) = gates[id].kind else { unreachable!("an AND of bundles") };
            let len = gates[id].width();
            let parts = [Packed::unpack(&and_z, offset, width, len), Packed::unpack(&their_and, offset, width, len)];
            done.push((id, Value::SecretBits(parts.into())));
            offset += width * len;
        }
        let mut e_at = 0;
        for &id in &layer.injects {
            let GateOp::Inject(_, x) = gates[id].op else { unreachable!() };
            let w = gates[id].width();
            let words = words_for(w);
            let e: Vec<u64> = (e_at..e_at + words).map(|k| e_parts[0][k] ^ e_parts[1][k] ^ their_e[k]).collect();
            e_at += words;
            let parts: [Vec<u64>; 2] = if gates[x].secret {
                let x = ring_at(x, w);
                let rx = rx_of.remove(&id).expect("its product");
                [0, 1].map(|j| conversion::inject(&e, &x[j], &rx[j]))
            } else {
                let public = broadcast_ring(values[x].as_ref().expect("operand ready").public(), w);
                let r = dabit_arith(id, w, &self.dabits);
                [0, 1].map(|j| {
                    let mut rx = r[j].clone();
                    ring::mul_assign(&mut rx, &public);
                    let x = if self.public_parts[j] { public.clone() } else { zeroed(w) };
                    conversion::inject(&e, &x, &rx)
                })
            };
            done.push((id, Value::Secret(parts.map(Share::new).into())));
        }
        let mut at = 0;
        for (id, a_parts, ct_parts) in div_parts {
            let w = gates[id].width();
            let (GateOp::Div(x, division), true) = (&gates[id].op, true) else { unreachable!() };
            let (a, ct) = if me == 1 {
                let a = take_words(from_prev, &mut at, w).expect("length checked");
                let ct = take_words(from_prev, &mut at, w).expect("length checked");
                ([a, zeroed(w)], [ct, zeroed(w)])
            } else {
                (a_parts, ct_parts)
            };
            // B and r_t from r = x_2, at its holders.
            let r = self.part_of(2).map(|j| ring_at(*x, w)[j].clone());
            let (b, rt) = match &r {
                Some(r) => division::mask_values(division, r),
                None => (zeroed(w), zeroed(w)),
            };
            let (b, rt) = (self.known_to_holders(2, b), self.known_to_holders(2, rt));
            let base = [0, 1].map(|j| {
                let mut y = a[j].clone();
                ring::sub_assign(&mut y, &b[j]);
                if self.public_parts[j] {
                    let k = division.offset() / division.divisor;
                    y.iter_mut().for_each(|y| *y = y.wrapping_sub(k));
                }
                Share::new(y)
            });
            self.pending.insert(id, PendingDivision { base, ct: ct.map(Share::new), rt: rt.map(Share::new) });
        }
        for (id, parts) in split_parts {
            let parts = if me == 2 {
                let w = gates[id].width();
                let words = take_words(from_prev, &mut at, 64 * words_for(w)).expect("length checked");
                [Bits::from_words(64, w, words).expect("whole planes"), Bits::zeros(64, w)]
            } else {
                parts
            };
            done.push((id, Value::SecretBits(parts.into())));
        }
        for (id, value) in done {
            values[id] = Some(value);
        }
        // The ANDs' and openings' words were shares.
        let [mut e0, mut e1] = e_parts;
        for words in [&mut and_z, &mut their_and, &mut their_e, &mut e0, &mut e1] {
            crate::memory::wipe_vec(words);
        }
        // Large buffers go back to the transport's pool rather than to the
        // allocator: the next layer's messages reuse their pages. Every
        // message of a layer holds shares (reshared products, inputs), so
        // each is wiped on the way.
        net.wipe(received, vec![payload]);
        Ok(())
    }

    /// Step 4: a recipient lacks one component, which the next party
    /// holds as its part 1 and sends.
    async fn reveal_outputs(
        &mut self,
        net: &mut Net<'_>,
        instance: &Instance,
        circuit: &Circuit,
        values: &[Option<Value>],
    ) -> Result<Vec<Option<Secret>>, JobError> {
        let me = self.me;
        reveal_by_parts(net, instance, circuit, values, |r| (r == prev(me)).then_some(1), |r| vec![next(r)]).await
    }

    fn begin_dynamic(&mut self, _: usize, _: &[Demand]) {
        self.outer = Some(std::mem::take(&mut self.pending));
    }

    async fn end_dynamic(&mut self) -> Result<(), JobError> {
        self.pending = self.outer.take().expect("inside a dynamic step");
        Ok(())
    }

    /// The resharing shuffle (in the style of Asharov, Hamada, Ikarashi,
    /// Kikuchi, Nof, Pinkas, Tsuchida, "Efficient secure three-party sorting
    /// with applications to data analysis and heavy hitters", CCS 2022):
    /// for each key `k_t`, its two holders `A = t − 1` and `B = t` turn
    /// their parts into a two-out-of-two sharing (`A`: `x_{t−1} + x_t`,
    /// `B`: `x_{t+1}`), both permute it by a permutation drawn from `k_t`,
    /// and reshare: the fresh `y_t` from `k_t`, `y_{t−1}` from `k_{t−1}`
    /// (held by `A` and `C = t + 1`), and `y_{t+1} = y − y_{t−1} − y_t`
    /// sent by `A` to `B` masked, then by `B` to `C`. Each party misses one
    /// of the three permutations, so to it the composition is uniform;
    /// every message is masked by a component it does not hold. Two rounds
    /// per permutation, `len` elements per column per message.
    async fn shuffle(&mut self, net: &mut Net<'_>, parts: &mut [Share], len: usize) -> Result<bool, JobError> {
        let me = self.me;
        let total = parts[0].len();
        for t in 0..PARTIES {
            let (a, b, c) = (prev(t), t, next(t));
            let permutation = |keys: &mut Keys, part: usize| {
                let words = keys.draw(part, 2);
                let mut seed = [0u8; SEED_BYTES];
                seed[..8].copy_from_slice(&words[0].to_le_bytes());
                seed[8..].copy_from_slice(&words[1].to_le_bytes());
                permutation_from(&Seed::from_bytes(seed), len)
            };
            let permute = |v: &[u64], pi: &[u32]| permute_columns(v, pi, len);
            // Round 1: A to B. Round 2: B to C.
            let mut first = vec![Vec::new(); PARTIES];
            let (mut kept, mut pending) = (None, None);
            if me == a {
                let pi = permutation(&mut self.keys, 1);
                let mut u = parts[0].expose().to_vec();
                ring::add_assign(&mut u, parts[1].expose());
                let mut w = permute(&u, &pi);
                crate::memory::wipe_vec(&mut u);
                let y_t = self.keys.draw(1, total);
                let y_before = self.keys.draw(0, total);
                ring::sub_assign(&mut w, &y_t);
                ring::sub_assign(&mut w, &y_before);
                ring::extend_le_bytes(&mut first[b], &w);
                crate::memory::wipe_vec(&mut w);
                kept = Some([y_before, y_t]);
            } else if me == b {
                let pi = permutation(&mut self.keys, 0);
                let v = permute(parts[1].expose(), &pi);
                let y_t = self.keys.draw(0, total);
                pending = Some((y_t, v));
            } else {
                let y_before = self.keys.draw(1, total);
                pending = Some((y_before, Vec::new()));
            }
            let sent = Net::per_peer(first);
            let received = net.exchange(Step::Input, sent.clone()).await?;
            let mut second = vec![Vec::new(); PARTIES];
            if me == b {
                let (y_t, mut v) = pending.take().expect("B's state");
                let mut at = 0;
                let w = take_words(&received[a], &mut at, total)
                    .filter(|_| at == received[a].len())
                    .ok_or_else(|| net.protocol_error(a, Step::Input, format!("expected {total} shuffled elements")))?;
                ring::add_assign(&mut v, &w);
                ring::extend_le_bytes(&mut second[c], &v);
                kept = Some([y_t, v]);
            }
            net.wipe(received, sent);
            let sent = Net::per_peer(second);
            let received = net.exchange(Step::Input, sent.clone()).await?;
            if me == c {
                let (y_before, _) = pending.take().expect("C's state");
                let mut at = 0;
                let y_after = take_words(&received[b], &mut at, total)
                    .filter(|_| at == received[b].len())
                    .ok_or_else(|| net.protocol_error(b, Step::Input, format!("expected {total} shuffled elements")))?;
                kept = Some([y_after, y_before]);
            }
            net.wipe(received, sent);
            let [p0, p1] = kept.expect("every party's new parts");
            parts[0] = Share::new(p0);
            parts[1] = Share::new(p1);
        }
        Ok(true)
    }

    /// Each party inputs its vector as in the input round (masked with its
    /// own key, the rest to the next party); the keys are not exchanged
    /// again.
    async fn private_inputs(
        &mut self,
        net: &mut Net<'_>,
        lens: &[usize],
        mine: &Secret,
    ) -> Result<Vec<Value>, JobError> {
        let me = self.me;
        let own = self.input_ring(me, Some(mine.expose()), None, mine.len());
        let mut messages = vec![Vec::new(); PARTIES];
        ring::extend_le_bytes(&mut messages[next(me)], &own[1]);
        let sent = Net::per_peer(messages);
        let received = net.exchange(Step::Input, sent.clone()).await?;
        let mut out: Vec<Option<Value>> = (0..PARTIES).map(|_| None).collect();
        out[me] = Some(Value::Secret(own.map(Share::new).into()));
        // In a fixed order at every party, so the key streams stay in step.
        for owner in (0..PARTIES).filter(|p| *p != me) {
            let len = lens[owner];
            let parts = match InputRole::of(me, owner) {
                InputRole::Receiver => {
                    let msg = &received[owner];
                    let mut at = 0;
                    let words = take_words(msg, &mut at, len).filter(|_| at == msg.len()).ok_or_else(|| {
                        net.protocol_error(
                            owner,
                            Step::Input,
                            format!("expected {len} input elements, got {} bytes", msg.len()),
                        )
                    })?;
                    self.input_ring(owner, None, Some(words), len)
                }
                _ => self.input_ring(owner, None, None, len),
            };
            out[owner] = Some(Value::Secret(parts.map(Share::new).into()));
        }
        net.wipe(received, sent);
        Ok(out.into_iter().map(|v| v.expect("every party's input")).collect())
    }
}

/// A uniformly random permutation of `0..n` from a seed both holders of a
/// key draw (Fisher–Yates; Lemire's multiply-shift index, bias below
/// `n / 2^64`).
fn permutation_from(seed: &Seed, n: usize) -> Vec<u32> {
    Prg::new(seed).permutation(n)
}

#[cfg(test)]
mod shuffle_tests {
    use super::*;

    /// The permutations a key's holders draw are permutations, and uniform
    /// over the 24 orders of 4 elements (chi-square with 23 degrees of
    /// freedom; its 99.99th percentile is about 57, the threshold is
    /// generous).
    #[test]
    fn drawn_permutations_are_uniform() {
        let mut counts = [0u64; 24];
        for _ in 0..24_000 {
            let p = permutation_from(&Seed::random().unwrap(), 4);
            let mut seen = p.clone();
            seen.sort();
            assert_eq!(seen, vec![0, 1, 2, 3]);
            let mut code = 0;
            for i in 0..4 {
                code = code * (4 - i) + p[i + 1..].iter().filter(|x| **x < p[i]).count();
            }
            counts[code] += 1;
        }
        let chi: f64 = counts.iter().map(|c| (*c as f64 - 1000.0).powi(2) / 1000.0).sum();
        assert!(chi < 80.0, "chi-square {chi}: {counts:?}");
    }
}
