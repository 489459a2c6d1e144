//! The additive protocol's online phase: the executor's [`Protocol`] for
//! `additive-semi-honest`, running the step functions of [`super::beaver`],
//! [`super::boolean`], [`super::conversion`] and [`super::division`] with
//! the material of a [`MaterialSource`] (a dealer's stream, OT generation
//! or the pool).

use super::division::{CORRECTION_DIVISOR, Division};
use super::reservoir::Reservoir;
use super::{beaver, boolean, conversion, shuffle};
use crate::executor::net::Net;
use crate::executor::netlist::{GateId, GateOp, Kind};
use crate::executor::plan::and_bits;
use crate::executor::run::{
    JobError, OwnInputs, Value, broadcast_bits, broadcast_ring, preprocessing_failed, reveal_by_parts,
};
use crate::executor::{Instance, Layer};
use crate::gf2::{Bits, Packed, words_for};
use crate::preprocessing::{
    Demand, MaterialSource, MaterialTag, PermutationDemand, PermutationShares, PreprocessingError,
};
use crate::prg::Seed;
use crate::program::ir::{Circuit, PartyIndex};
use crate::protocol::Protocol;
use crate::ring;
use crate::sharing::{self, Secret, Share};
use crate::transport::Step;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One party's state in an additive job.
pub struct Additive<S> {
    source: S,
    /// The one component of a share takes public values at party 0 only.
    public_parts: [bool; 1],
    /// Divisions between their two rounds: this party's shares of `y1`
    /// and `V` (see [`super::division`]).
    pending: BTreeMap<GateId, (Share, Share)>,
    /// The bits of each masked opening's edaBit, from its layer until the
    /// gate that reads them.
    mask_bits: BTreeMap<GateId, Bits>,
    /// Inside a dynamic step: its material budget, and the outer
    /// instance's `pending` and `mask_bits`, set aside.
    dynamic: Option<(Reservoir, Outer)>,
}

/// What an [`Additive`] keeps of the outer instance by gate id.
type Outer = (BTreeMap<GateId, (Share, Share)>, BTreeMap<GateId, Bits>);

impl<S: MaterialSource> Additive<S> {
    pub fn new(source: S, me: PartyIndex) -> Additive<S> {
        Additive {
            source,
            public_parts: [me == 0],
            pending: BTreeMap::new(),
            mask_bits: BTreeMap::new(),
            dynamic: None,
        }
    }
}

impl<S: MaterialSource> Protocol for Additive<S> {
    fn public_parts(&self) -> &[bool] {
        &self.public_parts
    }

    fn local_gate(&mut self, instance: &Instance, id: GateId, _: &[Option<Value>]) -> Option<Value> {
        match instance.netlist.gates[id].op {
            // Read once: the edaBit's bits leave the map with the gate.
            GateOp::MaskBits(open) => Some(Value::SecretBits(vec![
                self.mask_bits.remove(&open).expect("the opening ran in an earlier layer and is read once"),
            ])),
            _ => None,
        }
    }

    /// Step 2: secret-share every input (PRG-seed compressed: one seed per
    /// input per receiving party). Ring inputs are shared additively, bool
    /// inputs by XOR.
    async fn share_inputs(
        &mut self,
        net: &mut Net<'_>,
        instance: &Instance,
        circuit: &Circuit,
        inputs: &OwnInputs,
        values: &mut [Option<Value>],
    ) -> Result<(), JobError> {
        let input_gates: Vec<(GateId, usize, PartyIndex)> = instance
            .netlist
            .gates
            .iter()
            .enumerate()
            .filter_map(|(id, gate)| match gate.op {
                GateOp::Input { input, party } => Some((id, input, party)),
                _ => None,
            })
            .collect();
        let mut messages = vec![Vec::new(); net.n];
        for (id, input, party) in &input_gates {
            if *party != net.me {
                continue;
            }
            let seeds: Vec<Seed> = net
                .peers()
                .map(|_| Seed::random())
                .collect::<Result<_, _>>()
                .map_err(|e| JobError::Input { input: circuit.inputs[*input].name.clone(), reason: e.to_string() })?;
            for (peer, seed) in net.peers().zip(&seeds) {
                messages[peer].extend_from_slice(seed.as_bytes());
            }
            let secret = inputs.get(*input).expect("checked before setup");
            values[*id] = Some(match instance.netlist.gates[*id].kind {
                Kind::Ring => Value::Secret(vec![sharing::share_with_seeds(secret, &seeds)]),
                Kind::Bits(_) => {
                    let bools: Vec<bool> = secret.expose().iter().map(|v| *v & 1 == 1).collect();
                    let mut mine = Bits::from_bools(&bools);
                    for seed in &seeds {
                        mine.xor_assign(&bits_from_seed(seed, bools.len()));
                    }
                    Value::SecretBits(vec![mine])
                }
            });
        }
        let sent = Net::per_peer(messages);
        let received = net.exchange(Step::Input, sent.clone()).await?;
        for peer in net.peers() {
            let owned: Vec<GateId> = input_gates.iter().filter(|(_, _, p)| *p == peer).map(|(id, _, _)| *id).collect();
            let msg = &received[peer];
            if msg.len() != owned.len() * 16 {
                return Err(net.protocol_error(
                    peer,
                    Step::Input,
                    format!("expected {} input seeds, got {} bytes", owned.len(), msg.len()),
                ));
            }
            for (id, seed) in owned.iter().zip(msg.chunks_exact(16)) {
                let seed = Seed::from_bytes(seed.try_into().expect("16 bytes"));
                let gate = &instance.netlist.gates[*id];
                values[*id] = Some(match gate.kind {
                    Kind::Ring => Value::Secret(vec![sharing::share_from_seed(&seed, gate.width())]),
                    Kind::Bits(_) => Value::SecretBits(vec![bits_from_seed(&seed, gate.width())]),
                });
            }
        }
        // The seeds expand to shares: wipe them.
        net.wipe(received, sent);
        Ok(())
    }

    /// Step 3, one layer: mask, open everything in one round, finish.
    ///
    /// The opening message is `[tag]`, then ring elements (summed when
    /// opened): `[d for every Beaver product][e for every Beaver product]
    /// [c for every division][c for every masked opening]`, then words
    /// (XORed when opened): `[d for every AND][e for every AND][e for every
    /// injection]`, all little-endian `u64`s. The Beaver products are the
    /// layer's multiplications, then its injections of a secret bit into a
    /// secret value (`s·x` with the daBit's arithmetic share `s`).
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
        let first = net.me == 0;
        let mut material = match &mut self.dynamic {
            // A sort's sub-instance: its layer's share of the budget.
            Some((reservoir, _)) => {
                let bits = layer.ands.iter().map(|id| and_bits(&gates[*id])).sum();
                reservoir.layer(&mut self.source, &instance.plan.layers[index], bits).await
            }
            None => {
                let at = instance.material_index[index];
                self.source.next_layer(at, &instance.plan.layers[at]).await
            }
        }
        .map_err(|source| preprocessing_failed(step, source))?;
        let demand = &instance.plan.layers[instance.material_index[index]];
        check_div_material(layer, &demand.div_pairs, &material.div_pairs)
            .and_then(|()| check_binary_material(demand, &material))
            .map_err(|source| JobError::Preprocessing { step, source })?;
        // A kind a layer uses on empty vectors only comes as an empty
        // default: give it its planes, so that zero-element slices match.
        if material.edabits.bits.is_empty() {
            material.edabits.bits = Bits::zeros(64, 0);
        }
        if material.dabits.bits.is_empty() {
            material.dabits.bits = Bits::zeros(1, 0);
        }
        let triples = material.triples.a.len();
        let div_count: usize = material.div_pairs.iter().map(|p| p.r.len()).sum();
        let open_count = material.edabits.r.len();
        let and_words = material.bit_triples.words();
        let inject_words: usize = layer.injects.iter().map(|id| words_for(gates[*id].width())).sum();
        let ring_len = 2 * triples + div_count + open_count;
        let message_len = 8 * (1 + ring_len + 2 * and_words + inject_words);
        let span = tracing::Span::current();
        span.record("material.triples", triples);
        span.record("material.div_pairs", div_count);
        span.record("opened", ring_len + 64 * (2 * and_words + inject_words));
        for peer in net.peers() {
            net.mesh.expect_message(peer, step, message_len);
        }

        // Operands, broadcast to the gate's width.
        let ring_at = |v: GateId, width: usize| -> std::borrow::Cow<'_, Share> {
            match values[v].as_ref().expect("operand ready") {
                Value::Secret(s) if s[0].len() == width => std::borrow::Cow::Borrowed(&s[0]),
                // A scalar broadcast over a vector: a copy, wiped on drop.
                Value::Secret(s) => std::borrow::Cow::Owned(Share::new(vec![s[0].expose()[0]; width])),
                _ => unreachable!("interactive ring operands are secret"),
            }
        };
        let bits_at = |v: GateId, width: usize| -> Cow<'_, Bits> {
            match values[v].as_ref().expect("operand ready") {
                Value::SecretBits(b) => broadcast_bits(&b[0], width),
                _ => unreachable!("interactive bit operands are secret"),
            }
        };
        let secret_injections: Vec<GateId> = layer
            .injects
            .iter()
            .copied()
            .filter(|id| matches!(gates[*id].op, GateOp::Inject(_, x) if gates[x].secret))
            .collect();
        // The daBits of the layer's injections, by gate, in order.
        let mut dabit_offsets = BTreeMap::new();
        let mut offset = 0;
        for &id in &layer.injects {
            dabit_offsets.insert(id, offset);
            offset += gates[id].width();
        }

        // Mask: the ring section.
        let mut payload = net.mesh.take_buffer(message_len);
        payload.extend_from_slice(&material.tag.0.to_le_bytes());
        for operand in [0, 1] {
            let (mut offset, t) = (0, &material.triples);
            let mask = if operand == 0 { &t.a } else { &t.b };
            for &id in &layer.muls {
                let GateOp::Mul(x, y) = gates[id].op else { unreachable!() };
                let w = gates[id].width();
                let v = if operand == 0 { x } else { y };
                beaver::mask_into(ring_at(v, w).expose(), &mask.expose()[offset..offset + w], &mut payload);
                offset += w;
            }
            for &id in &secret_injections {
                let GateOp::Inject(_, x) = gates[id].op else { unreachable!() };
                let w = gates[id].width();
                let at = dabit_offsets[&id];
                let s = &material.dabits.arith.expose()[at..at + w];
                let v = if operand == 0 {
                    std::borrow::Cow::Borrowed(s)
                } else {
                    std::borrow::Cow::Owned(ring_at(x, w).expose().to_vec())
                };
                beaver::mask_into(&v, &mask.expose()[offset..offset + w], &mut payload);
                offset += w;
            }
        }
        let mut ring_tail = Vec::with_capacity(div_count + open_count);
        for ((division, nodes), pairs) in layer.divs.iter().zip(&material.div_pairs) {
            let mut offset = 0;
            for &id in nodes {
                let GateOp::Div(x, _) = gates[id].op else { unreachable!() };
                let w = gates[id].width();
                division.mask(ring_at(x, w).expose(), &pairs.r.expose()[offset..offset + w], first, &mut ring_tail);
                offset += w;
            }
            if division.divisor == CORRECTION_DIVISOR {
                for id in &layer.corrections {
                    let w = gates[*id].width();
                    let (_, v) = self.pending.get(id).expect("the first round ran in the layer before");
                    division.mask(v.expose(), &pairs.r.expose()[offset..offset + w], first, &mut ring_tail);
                    offset += w;
                }
            }
        }
        let mut offset = 0;
        for &id in &layer.opens {
            let GateOp::MaskedOpen(x) = gates[id].op else { unreachable!() };
            let w = gates[id].width();
            conversion::mask_open(
                ring_at(x, w).expose(),
                &material.edabits.r.expose()[offset..offset + w],
                &mut ring_tail,
            );
            offset += w;
        }
        ring::extend_le_bytes(&mut payload, &ring_tail);
        drop(ring_tail);

        // Mask: the binary section. The ANDs' operands are packed densely
        // (plane after plane, gate after gate) against the layer's triples.
        let mut bit_words = Vec::with_capacity(2 * and_words + inject_words);
        for operand in [0, 1] {
            let t = &material.bit_triples;
            let mask = if operand == 0 { &t.a } else { &t.b };
            let mut packed = Packed::with_capacity(64 * and_words);
            for &id in &layer.ands {
                let GateOp::And(x, y) = gates[id].op else { unreachable!() };
                packed.push(&bits_at(if operand == 0 { x } else { y }, gates[id].width()));
            }
            let mut words = packed.words().to_vec();
            words.resize(and_words, 0);
            boolean::mask_into(&words, mask.words(), &mut bit_words);
            crate::memory::wipe_vec(&mut words);
        }
        for &id in &layer.injects {
            let GateOp::Inject(b, _) = gates[id].op else { unreachable!() };
            let w = gates[id].width();
            let at = dabit_offsets[&id];
            let mut e = bits_at(b, w).into_owned();
            e.xor_assign(&material.dabits.bits.slice(at..at + w));
            bit_words.extend_from_slice(e.words());
        }
        ring::extend_le_bytes(&mut payload, &bit_words);
        drop(bit_words);
        debug_assert_eq!(payload.len(), message_len);

        // Open: one round.
        let payload = Arc::new(payload);
        let received = net.exchange(step, net.to_every_peer(payload.clone())).await?;
        for peer in net.peers() {
            let msg = &received[peer];
            if msg.len() != message_len {
                return Err(net.protocol_error(
                    peer,
                    step,
                    format!("expected {} opened values, got {} bytes", message_len / 8, msg.len()),
                ));
            }
            let theirs = u64::from_le_bytes(msg[..8].try_into().expect("8 bytes"));
            if theirs != material.tag.0 {
                return Err(net.protocol_error(
                    peer,
                    step,
                    format!(
                        "preprocessing material mismatch (ours {}, theirs {}); refusing to use it",
                        material.tag,
                        MaterialTag(theirs)
                    ),
                ));
            }
        }
        let parts: Vec<&[u8]> = std::iter::once(payload.as_slice())
            .chain(net.peers().map(|p| received[p].as_slice()))
            .map(|m| &m[8..])
            .collect();

        let mut done: Vec<(GateId, Value)> = Vec::new();
        // Finish the Beaver products: z = c + d*b + e*a (+ d*e), over c.
        let d_parts: Vec<&[u8]> = parts.iter().map(|m| &m[..8 * triples]).collect();
        let e_parts: Vec<&[u8]> = parts.iter().map(|m| &m[8 * triples..16 * triples]).collect();
        let t = &mut material.triples;
        beaver::combine_opened_in_place(&d_parts, &e_parts, t.a.expose(), t.b.expose(), t.c.expose_mut(), first);
        if let ([id], []) = (&layer.muls[..], &secret_injections[..]) {
            // One gate takes the whole vector: hand it over, no copy.
            done.push((*id, Value::Secret(vec![Share::new(std::mem::take(t.c.expose_mut()))])));
        } else {
            let mut offset = 0;
            for &id in &layer.muls {
                let w = gates[id].width();
                done.push((id, Value::Secret(vec![Share::new(t.c.expose()[offset..offset + w].to_vec())])));
                offset += w;
            }
        }

        // Open the tail of the ring section and the binary section (sums
        // over zeros written, not requested: `memory::zeroed`).
        let mut tail = crate::memory::zeroed(div_count + open_count);
        for m in &parts {
            ring::add_le_bytes(&mut tail, &m[16 * triples..8 * ring_len]);
        }
        let bit_len = 2 * and_words + inject_words;
        let mut opened_bits = crate::memory::zeroed(bit_len);
        for m in &parts {
            for (o, chunk) in opened_bits.iter_mut().zip(m[8 * ring_len..].chunks_exact(8)) {
                *o ^= u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            }
        }

        // Finish the divisions.
        let mut c = &tail[..div_count];
        for ((division, nodes), pairs) in layer.divs.iter().zip(&material.div_pairs) {
            let mut offset = 0;
            for &id in nodes {
                let w = gates[id].width();
                let r = offset..offset + w;
                let (msb, q) = (&pairs.msb.expose()[r.clone()], &pairs.q.expose()[r.clone()]);
                if division.corrected() {
                    let first_round = division.finish_first(&c[..w], msb, q, &pairs.g.expose()[r], first);
                    self.pending.insert(id, first_round);
                } else {
                    done.push((id, Value::Secret(vec![division.finish(&c[..w], msb, q, first)])));
                }
                c = &c[w..];
                offset += w;
            }
            if division.divisor == CORRECTION_DIVISOR {
                for &id in &layer.corrections {
                    let w = gates[id].width();
                    let r = offset..offset + w;
                    let t = division.finish(&c[..w], &pairs.msb.expose()[r.clone()], &pairs.q.expose()[r], first);
                    let (mut y, _) = self.pending.remove(&id).expect("the first round ran in the layer before");
                    Division::correct(&mut y, t.expose(), first);
                    done.push((id, Value::Secret(vec![y])));
                    c = &c[w..];
                    offset += w;
                }
            }
        }

        // Finish the masked openings: `c` is public; the edaBit's bits wait
        // for the gate that reads them.
        let mut c = &tail[div_count..];
        let mut offset = 0;
        for &id in &layer.opens {
            let w = gates[id].width();
            done.push((id, Value::Public(c[..w].to_vec())));
            self.mask_bits.insert(id, material.edabits.bits.slice(offset..offset + w));
            c = &c[w..];
            offset += w;
        }

        // Finish the ANDs: z = c ^ d&b ^ e&a (^ d&e), over c.
        let (d_bits, rest) = opened_bits.split_at(and_words);
        let (e_bits, inject_e) = rest.split_at(and_words);
        let bt = &mut material.bit_triples;
        let mut z = bt.c.words().to_vec();
        boolean::combine(d_bits, e_bits, bt.a.words(), bt.b.words(), &mut z, first);
        let mut offset = 0;
        for &id in &layer.ands {
            let Kind::Bits(width) = gates[id].kind else { unreachable!("an AND of bundles") };
            let len = gates[id].width();
            done.push((id, Value::SecretBits(vec![Packed::unpack(&z, offset, width, len)])));
            offset += width * len;
        }
        crate::memory::wipe_vec(&mut z);

        // Finish the injections: b·x = e·x + (1 - 2e)·s·x.
        let mut e_at = inject_e;
        let mut sx_offset = layer.muls.iter().map(|id| gates[*id].width()).sum::<usize>();
        for &id in &layer.injects {
            let GateOp::Inject(_, x) = gates[id].op else { unreachable!() };
            let w = gates[id].width();
            let words = words_for(w);
            let e = &e_at[..words];
            let out = if gates[x].secret {
                let mut sx = material.triples.c.expose()[sx_offset..sx_offset + w].to_vec();
                conversion::inject_secret(e, ring_at(x, w).expose(), &mut sx);
                sx_offset += w;
                sx
            } else {
                let public = match values[x].as_ref().expect("operand ready") {
                    Value::Public(p) => broadcast_ring(p, w),
                    _ => unreachable!("a public operand"),
                };
                let at = dabit_offsets[&id];
                conversion::inject_public(e, &public, &material.dabits.arith.expose()[at..at + w], first)
            };
            done.push((id, Value::Secret(vec![Share::new(out)])));
            e_at = &e_at[words..];
        }

        for (id, value) in done {
            values[id] = Some(value);
        }

        // The layer's messages are public openings: they go back to the
        // transport's pool unwiped, and the payload only if no send holds
        // it still.
        drop(parts);
        net.hand_back(received, vec![payload], false);
        Ok(())
    }

    /// Step 4: every party sends its share of an output to each of the
    /// output's recipients (words of XOR shares for a bool output).
    async fn reveal_outputs(
        &mut self,
        net: &mut Net<'_>,
        instance: &Instance,
        circuit: &Circuit,
        values: &[Option<Value>],
    ) -> Result<Vec<Option<Secret>>, JobError> {
        let n = net.n;
        reveal_by_parts(net, instance, circuit, values, |_| Some(0), |r| (0..n).filter(|p| *p != r).collect()).await
    }

    fn begin_dynamic(&mut self, first: usize, chunks: &[Demand]) {
        let outer = (std::mem::take(&mut self.pending), std::mem::take(&mut self.mask_bits));
        self.dynamic = Some((Reservoir::new(first, chunks), outer));
    }

    async fn end_dynamic(&mut self) -> Result<(), JobError> {
        let (reservoir, (pending, mask_bits)) = self.dynamic.take().expect("inside a dynamic step");
        (self.pending, self.mask_bits) = (pending, mask_bits);
        let unused = reservoir.drain(&mut self.source).await.map_err(|e| preprocessing_failed(Step::Output, e))?;
        tracing::debug!(unused_chunks = unused, "sort finished");
        Ok(())
    }

    /// With a trusted dealer's permutation correlations ([`super::shuffle`]):
    /// one step per party, each one round from the other parties to the
    /// step's permuter. Material from OT or the pool has none: the
    /// generic Beneš networks shuffle then (`false`).
    async fn shuffle(&mut self, net: &mut Net<'_>, parts: &mut [Share], len: usize) -> Result<bool, JobError> {
        let Some((reservoir, _)) = &mut self.dynamic else { return Ok(false) };
        if !reservoir.next_is_permutation() {
            return Ok(false);
        }
        let step = Step::Input;
        let x = &mut parts[0];
        let columns = x.len() / len.max(1);
        for permuter in 0..net.n {
            let (shape, material) =
                reservoir.permutation(&mut self.source).await.map_err(|e| preprocessing_failed(step, e))?;
            if shape != (PermutationDemand { permuter, len, columns }) {
                return Err(JobError::Preprocessing {
                    step,
                    source: PreprocessingError::Mismatch(format!(
                        "a permutation step {shape:?} where the shuffle of {columns} columns of {len} takes party \
                         {permuter}'s"
                    )),
                });
            }
            *x = match material {
                PermutationShares::Other { a, b } if net.me != permuter => {
                    send_masked(net, step, permuter, x, &a).await?;
                    shuffle::after_step(b)
                }
                PermutationShares::Permuter { perm, delta } if net.me == permuter => {
                    let sum = receive_masked(net, step, x.len()).await?;
                    shuffle::permuted(x, &sum, &perm, &delta, len)
                }
                _ => {
                    return Err(JobError::Preprocessing {
                        step,
                        source: PreprocessingError::Mismatch(format!(
                            "this party's permutation material is for another role in party {permuter}'s step"
                        )),
                    });
                }
            };
        }
        Ok(true)
    }

    /// Each party shares its vector as its inputs are shared: a fresh PRG
    /// seed per peer, one round.
    async fn private_inputs(
        &mut self,
        net: &mut Net<'_>,
        lens: &[usize],
        mine: &Secret,
    ) -> Result<Vec<Value>, JobError> {
        let me = net.me;
        let seeds: Vec<Seed> = net.peers().map(|_| Seed::random()).collect::<Result<_, _>>()?;
        let mut messages = vec![Vec::new(); net.n];
        for (peer, seed) in net.peers().zip(&seeds) {
            messages[peer] = seed.as_bytes().to_vec();
        }
        let sent = Net::per_peer(messages);
        let received = net.exchange(Step::Input, sent.clone()).await?;
        let mut out = Vec::with_capacity(net.n);
        for (p, len) in lens.iter().enumerate() {
            let share = if p == me {
                sharing::share_with_seeds(mine, &seeds)
            } else {
                let seed: [u8; 16] = received[p].as_slice().try_into().map_err(|_| {
                    net.protocol_error(
                        p,
                        Step::Input,
                        format!("expected a 16-byte seed, got {} bytes", received[p].len()),
                    )
                })?;
                sharing::share_from_seed(&Seed::from_bytes(seed), *len)
            };
            out.push(Value::Secret(vec![share]));
        }
        net.wipe(received, sent);
        Ok(out)
    }
}

/// A shuffle step at a party other than the permuter: send it `x_j + a_j`
/// ([`shuffle::masked`]).
async fn send_masked(net: &mut Net<'_>, step: Step, permuter: usize, x: &Share, a: &Share) -> Result<(), JobError> {
    let mut m = shuffle::masked(x, a);
    let sent = vec![(permuter, Arc::new(ring::to_le_bytes(&m)))];
    crate::memory::wipe_vec(&mut m);
    let received = net.round(step, sent.clone(), &[]).await?;
    net.wipe(received, sent.into_iter().map(|(_, m)| m).collect());
    Ok(())
}

/// A shuffle step at the permuter: `Σ m_j` over every other party's
/// message of `len` elements.
async fn receive_masked(net: &mut Net<'_>, step: Step, len: usize) -> Result<Share, JobError> {
    let from: Vec<usize> = net.peers().collect();
    let received = net.round(step, Vec::new(), &from).await?;
    let mut sum = crate::memory::zeroed(len);
    for p in &from {
        if received[*p].len() != 8 * len {
            return Err(net.protocol_error(
                *p,
                step,
                format!("expected {len} masked elements for the shuffle, got {} bytes", received[*p].len()),
            ));
        }
        ring::add_le_bytes(&mut sum, &received[*p]);
    }
    net.wipe(received, Vec::new());
    Ok(Share::new(sum))
}

/// Check a layer's division pairs against what the layer will use: one
/// group per divisor with the planned count, and `g` exactly for the
/// divisions that take the correction round. Material made for the other
/// construction is an error here, never a wrong result.
fn check_div_material(
    layer: &Layer,
    planned: &[(u64, usize)],
    pairs: &[crate::preprocessing::DivPairShares],
) -> Result<(), PreprocessingError> {
    let mismatch = |what: String| PreprocessingError::Mismatch(what);
    if pairs.len() != layer.divs.len() || planned.len() != layer.divs.len() {
        return Err(mismatch(format!("{} divisor groups, the layer uses {}", pairs.len(), layer.divs.len())));
    }
    for (((division, _), &(_, count)), p) in layer.divs.iter().zip(planned).zip(pairs) {
        let d = division.divisor;
        if p.divisor != d || [&p.r, &p.msb, &p.q].iter().any(|s| s.len() != count) {
            return Err(mismatch(format!(
                "the division pairs for {} do not match the {count} planned for {d}",
                p.divisor
            )));
        }
        let expected_g = if division.corrected() { count } else { 0 };
        if p.g.len() != expected_g {
            return Err(mismatch(format!(
                "division pairs for {d} with {} correction values, expected {expected_g} (material made for another \
                 preprocessing mode?)",
                p.g.len()
            )));
        }
    }
    Ok(())
}

/// The words of `PRG(seed)` as a one-plane bundle of `len` elements: an
/// XOR share of a bool input.
fn bits_from_seed(seed: &Seed, len: usize) -> Bits {
    let words = crate::prg::Prg::new(seed).next_vec(words_for(len));
    Bits::from_words(1, len, words).expect("one plane of words")
}

/// Check a layer's binary material against the plan: exactly the planned
/// amount of each kind.
fn check_binary_material(
    demand: &crate::preprocessing::Demand,
    material: &crate::preprocessing::LayerMaterial,
) -> Result<(), PreprocessingError> {
    let t = &material.bit_triples;
    let (e, d) = (&material.edabits, &material.dabits);
    let words = demand.bit_triple_words;
    let bits_ok = [&t.a, &t.b, &t.c].iter().all(|b| b.width() == 1 && b.words().len() == words)
        || (words == 0 && t.a.is_empty() && t.b.is_empty() && t.c.is_empty());
    let eda_ok =
        e.r.len() == demand.edabits && e.bits.len() == demand.edabits && (demand.edabits == 0 || e.bits.width() == 64);
    let da_ok =
        d.arith.len() == demand.dabits && d.bits.len() == demand.dabits && (demand.dabits == 0 || d.bits.width() == 1);
    if bits_ok && eda_ok && da_ok {
        Ok(())
    } else {
        Err(PreprocessingError::Mismatch(format!(
            "binary material does not match the plan ({} bit-triple words, {} edaBits, {} daBits planned; {} words, {} \
             edaBits, {} daBits provided)",
            words,
            demand.edabits,
            demand.dabits,
            t.a.words().len(),
            e.r.len(),
            d.arith.len()
        )))
    }
}
