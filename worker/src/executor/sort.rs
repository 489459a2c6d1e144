//! Sorting secret vectors: [`Netlist::sort`], and the dynamic step that
//! runs it ([`run_sort`]).
//!
//! Construction: shuffle, then quicksort with opened comparisons (Hamada,
//! Kikuchi, Ikarashi, Chida, "Practically efficient multi-party sorting
//! protocols from comparison sort algorithms", ICISC 2012), see
//! `docs/sorting.md`:
//!
//! 1. every element gets a tag, its original index, so that all
//!    `(key, tag)` pairs are distinct and their order is the stable order;
//!    descending sorts the key `-key` (stable too);
//! 2. the key, the tags and every column are shuffled together: by the
//!    protocol's own shuffle where it has one (replicated-3's resharing,
//!    the additive protocol's dealt permutation correlations,
//!    `protocol::additive::shuffle`), else by [`super::shuffle`]: one
//!    Beneš network per party, each routing a uniform permutation of that
//!    party's choice;
//! 3. quicksort runs on the shuffled elements, one level at a time: every
//!    element of every unfinished partition is compared with its
//!    partition's pivot (its first element) in ONE sub-instance, and the
//!    comparison bits are opened. Opening is safe: after a uniform shuffle
//!    of distinct elements, the outcomes of quicksort's comparisons depend
//!    only on a uniformly random permutation, not on the data;
//! 4. the order found (public) is applied locally to every column;
//! 5. ranks (`Op::Rank`), when the gate outputs them: sorted position `i`
//!    holds the secret tag of the element at `i`; the pairs (position,
//!    tag) are shuffled again by the same machinery and the shuffled tags
//!    opened: they are a uniformly random permutation of `0..n` (of the
//!    network's slots), independent of the data and of the order found,
//!    so they reveal nothing; each shuffled position is then placed at
//!    its opened tag, `rank[tag] = position`, a local gather. One more
//!    shuffle of two columns and one opening.
//!
//! The comparison is lexicographic: `[(ka, ta) < (kb, tb)] = [ka < kb] ⊕
//! ([ka == kb] ∧ [ta < tb])`, the key's sign and zero test sharing one
//! conversion to binary, the tags' sign on `ceil(log2 n) + 1` bits.
//!
//! The number of comparisons is random (public, independent of the data),
//! so the sort runs as a dynamic step between the layers: sub-instances
//! built and run through the same [`Protocol`]. Under a protocol that
//! takes material its budget is planned ahead ([`sort_demands`]).

use super::net::Net;
use super::netlist::{GateId, GateOp, Kind, Netlist};
use super::plan::{Instance, PlanError};
use super::run::{JobError, Value, broadcast_ring, run_sub};
use super::shuffle;
use crate::preprocessing::dealer::MAX_BATCH_ITEMS;
use crate::preprocessing::{Demand, PermutationDemand};
use crate::program::ir::{Circuit, ElemType, OutputDecl, Span};
use crate::protocol::Protocol;
use crate::ring;
use crate::sharing::{Secret, Share};

/// Comparisons per chunk of a sort's material budget (a multiple of 64,
/// so a chunk's bit triples fill whole words).
pub const CHUNK_COMPARISONS: usize = 1 << 16;

/// The budget's margin over the expected number of comparisons, in units
/// of `n` (see [`comparison_budget`]).
pub const BUDGET_MARGIN: f64 = 6.0;

impl Netlist {
    /// Sort `columns` (ring vectors, each as long as `key`) by the signed
    /// order of `key`, ascending or `descending`, stable: one sorted gate
    /// per column, in order. A column may be the key itself.
    pub fn sort(
        &mut self,
        key: GateId,
        columns: &[GateId],
        descending: bool,
        span: Span,
    ) -> Result<Vec<GateId>, PlanError> {
        Ok(self.sort_ranked(key, columns, descending, false, span)?.0)
    }

    /// As [`Netlist::sort`]; with `ranks`, one sort gives also the rank of
    /// every element of `key` in that order (its last gate).
    pub fn sort_ranked(
        &mut self,
        key: GateId,
        columns: &[GateId],
        descending: bool,
        ranks: bool,
        span: Span,
    ) -> Result<(Vec<GateId>, Option<GateId>), PlanError> {
        let mut n = self.gate(key).width();
        for c in columns {
            if let Some(len) = self.elementwise(key, *c, span, "sort_by")? {
                n = n.max(len);
            }
        }
        let cols = columns.len();
        let outputs = cols + usize::from(ranks);
        let op = GateOp::Sort { key, columns: columns.to_vec(), descending, ranks };
        let sorted = self.push(op, span, Some(n * outputs), Kind::Ring);
        let mut strided = |c: usize| {
            self.push(GateOp::Strided { a: sorted, start: c * n, step: 1, count: n }, span, Some(n), Kind::Ring)
        };
        let columns = (0..cols).map(&mut strided).collect();
        let rank = ranks.then(|| strided(cols));
        Ok((columns, rank))
    }
}

/// The shape of one sort: what is shuffled and how.
struct Layout {
    /// Elements.
    n: usize,
    /// The network has `2^k >= n` slots.
    k: u32,
    /// The columns other than the key, once each, in order.
    others: Vec<GateId>,
    /// Whether the network has padding (when `n` is not a power of
    /// two, the padding's positions are opened after the shuffle).
    flag: bool,
    /// Whether the gate outputs ranks too (step 5).
    ranks: bool,
}

impl Layout {
    fn of(netlist: &Netlist, id: GateId) -> (Layout, GateId, Vec<GateId>, bool) {
        let GateOp::Sort { key, columns, descending, ranks } = &netlist.gates[id].op else {
            unreachable!("a sort gate");
        };
        let outputs = columns.len() + usize::from(*ranks);
        let n = netlist.gates[id].width().checked_div(outputs).unwrap_or_else(|| netlist.gates[*key].width());
        let mut others: Vec<GateId> = Vec::new();
        for c in columns {
            if c != key && !others.contains(c) {
                others.push(*c);
            }
        }
        let slots = n.next_power_of_two();
        let k = slots.trailing_zeros();
        (Layout { n, k, others, flag: slots != n, ranks: *ranks }, *key, columns.clone(), *descending)
    }

    /// The ranks' shuffle (step 5): two columns, the positions and the
    /// tags, over the same elements.
    fn ranking(&self) -> Layout {
        Layout { others: Vec::new(), ranks: false, ..*self }
    }

    fn slots(&self) -> usize {
        1 << self.k
    }

    /// Shuffled columns: the key, the tags, the others.
    fn shuffled(&self) -> usize {
        2 + self.others.len()
    }

    /// Whether the shuffle takes dealt permutation correlations
    /// ([`super::plan::Lowering::dealt_shuffles`]), which one batch holds:
    /// a step of at most `MAX_BATCH_ITEMS` elements; a larger sort takes
    /// the networks.
    fn dealt(&self, lowering: &super::plan::Lowering) -> bool {
        lowering.dealt_shuffles() && self.n.saturating_mul(self.shuffled()) <= MAX_BATCH_ITEMS
    }

    /// Bits `ceil(log2 n) + 1` of a tag difference (`|ta − tb| < n`).
    fn tag_bits(&self) -> usize {
        self.n.next_power_of_two().trailing_zeros() as usize + 1
    }
}

/// The expected number of quicksort comparisons on `n` distinct elements
/// in random order, `2(n+1)H_n − 4n`, plus `BUDGET_MARGIN · n`, rounded up
/// to a multiple of 64. The number of comparisons `C_n` has standard
/// deviation `≈ 0.65 n` and a right tail that decays faster than
/// exponentially in `(C_n − E C_n) / n` (Rösler's limit law); see
/// `docs/sorting.md` for the measured probability of exceeding it.
pub fn comparison_budget(n: usize) -> usize {
    if n < 2 {
        return 0;
    }
    let nf = n as f64;
    let harmonic: f64 = (1..=n).map(|i| 1.0 / i as f64).sum();
    let expected = 2.0 * (nf + 1.0) * harmonic - 4.0 * nf;
    let budget = (expected + BUDGET_MARGIN * nf).ceil() as usize;
    budget.div_ceil(64) * 64
}

/// One level's comparisons of `w` pairs `(a, b)`: externals `ka − kb`
/// and `ta − tb` (secret; the differences are local, so the driver forms
/// them as it reads the elements), the opened bit `[(ka, ta) < (kb, tb)]`.
fn level_netlist(template: &Netlist, w: usize, tag_bits: usize) -> (Netlist, GateId) {
    let span = Span::default();
    let mut net = Netlist { lowering: template.lowering, parties: template.parties, ..Netlist::default() };
    let ext: Vec<GateId> =
        (0..2).map(|index| net.push(GateOp::External { index, secret: true }, span, Some(w), Kind::Ring)).collect();
    let less = net.lexicographic_less(ext[0], ext[1], tag_bits, span);
    (net, less)
}

/// Each element's difference from its partition's pivot (the partition's
/// first element), partition after partition, per component: `v` holds
/// the elements in the quicksort's arrangement, so this reads in order.
fn pivot_differences(v: &[Share], partitions: &[(usize, usize)], w: usize) -> Vec<Share> {
    v.iter()
        .map(|part| {
            let p = part.expose();
            let mut d = Vec::with_capacity(w);
            for &(start, len) in partitions {
                let pivot = p[start];
                d.extend(p[start + 1..start + len].iter().map(|x| x.wrapping_sub(pivot)));
            }
            Share::new(d)
        })
        .collect()
}

/// `[tag < n]` for the network's shuffled tags (external 0, `slots`
/// elements): the padding is what has a tag of `n` or more.
fn padding_netlist(template: &Netlist, layout: &Layout) -> (Netlist, GateId) {
    let span = Span::default();
    let slots = layout.slots();
    let mut net = Netlist { lowering: template.lowering, parties: template.parties, ..Netlist::default() };
    let tags = net.push(GateOp::External { index: 0, secret: true }, span, Some(slots), Kind::Ring);
    let n = net.constant(layout.n as u64, span);
    let d = net.ring2(GateOp::Sub, tags, n, span);
    // |tag − n| <= 2^k.
    let real = net.sign_small(d, layout.k as usize + 2, span);
    (net, real)
}

/// The edaBits and bit triples a netlist's interactive gates consume.
fn binary_cost(net: &Netlist) -> (usize, usize) {
    let mut edabits = 0;
    let mut and_bits = 0;
    for gate in net.gates.iter().filter(|g| g.interactive) {
        match gate.op {
            GateOp::MaskedOpen(_) => edabits += gate.width(),
            GateOp::And(..) => and_bits += super::plan::and_bits(gate),
            _ => {}
        }
    }
    (edabits, and_bits)
}

/// What one comparison consumes under a protocol with material: edaBits
/// and bit triples (both linear in the number of comparisons).
fn comparison_cost(template: &Netlist, tag_bits: usize) -> (usize, usize) {
    binary_cost(&level_netlist(template, 1, tag_bits).0)
}

/// A sort's material budget as plan entries: the shuffle's permutation
/// steps (one per party) under a trusted dealer, or else its triples
/// exactly (one entry per stage of each party's network), then the comparisons'
/// edaBits and bit triples for [`comparison_budget`] comparisons, in
/// chunks of [`CHUNK_COMPARISONS`]; with ranks, then the ranks' shuffle of
/// two columns (dealt or networks as for the sort's, without a padding
/// opening: the ranks' opening is the tags themselves). Empty for a
/// protocol without material or a sort that needs none.
pub fn sort_demands(netlist: &Netlist, id: GateId) -> Vec<Demand> {
    let (mut sort, ranks) = budget_parts(netlist, id);
    sort.extend(ranks);
    sort
}

/// A shuffle's material: its permutation steps, or its networks' triples.
fn shuffle_demands(netlist: &Netlist, layout: &Layout, demands: &mut Vec<Demand>) {
    if layout.dealt(&netlist.lowering) {
        for permuter in 0..netlist.parties {
            let step = PermutationDemand { permuter, len: layout.n, columns: layout.shuffled() };
            demands.push(Demand { permutation: Some(step), ..Demand::default() });
        }
    } else {
        let per_stage = layout.shuffled() * layout.slots() / 2;
        for _ in 0..netlist.parties * shuffle::stages(layout.k) {
            demands.push(Demand { triples: per_stage, ..Demand::default() });
        }
    }
}

/// [`sort_demands`] in two parts: the sort's (shuffle, padding,
/// comparisons) and the ranks' (their shuffle; empty without ranks). The
/// ranks' part is a dynamic step of its own (step 5, after the
/// comparisons), so that its permutation steps come first in its budget.
pub fn budget_parts(netlist: &Netlist, id: GateId) -> (Vec<Demand>, Vec<Demand>) {
    let (layout, key, _, _) = Layout::of(netlist, id);
    if !netlist.lowering.protocol.uses_preprocessing() || !netlist.gates[key].secret || layout.n < 2 {
        return (Vec::new(), Vec::new());
    }
    let mut demands = Vec::new();
    shuffle_demands(netlist, &layout, &mut demands);
    if layout.flag && !layout.dealt(&netlist.lowering) {
        // The padding's opening: its layers' bit triples rounded to words.
        let (edabits, and_bits) = binary_cost(&padding_netlist(netlist, &layout).0);
        demands.push(Demand { edabits, bit_triple_words: and_bits.div_ceil(64), ..Demand::default() });
    }
    let (edabits, and_bits) = comparison_cost(netlist, layout.tag_bits());
    let mut left = comparison_budget(layout.n);
    while left > 0 {
        let c = left.min(CHUNK_COMPARISONS);
        demands.push(Demand { edabits: c * edabits, bit_triple_words: c * and_bits / 64, ..Demand::default() });
        left -= c;
    }
    let mut ranks = Vec::new();
    if layout.ranks {
        shuffle_demands(netlist, &layout.ranking(), &mut ranks);
    }
    (demands, ranks)
}

/// The rounds of one sort of `n >= 2` elements with a secret key, with
/// `others` columns besides the key: `shuffle + padding + levels ·
/// per_level` (`+ ranks` when the sort outputs ranks), where `levels` is the height of quicksort's recursion (the
/// levels with a partition of two or more elements; random, expected about
/// `4.311 ln n`, Devroye 1986, and at least `floor(log2 n)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortRounds {
    /// The shuffle: `replicated-3`'s resharing, 2 per party; dealt
    /// permutation correlations, 1 per party; the generic networks, 1 for
    /// the switch settings and `2⌈log2 n⌉ − 1` per party.
    pub shuffle: usize,
    /// Opening which slots are padding (generic networks, `n` not a power
    /// of two): the `[tag < n]` circuit's layers and the opening.
    pub padding: usize,
    /// One quicksort level: the comparison's layers and the opening.
    pub per_level: usize,
    /// Ranks, when the sort outputs them: the second shuffle, of two
    /// columns (as `shuffle`: 2 per party, 1 per party when dealt — the
    /// two columns may fit a batch where the sort's did not — or the
    /// networks' `1 + parties · (2⌈log2 n⌉ − 1)`), and 1 to open the
    /// shuffled tags.
    pub ranks: usize,
}

impl SortRounds {
    pub fn of(lowering: super::plan::Lowering, parties: usize, n: usize, others: usize) -> SortRounds {
        let slots = n.next_power_of_two();
        let layout = Layout { n, k: slots.trailing_zeros(), others: vec![0; others], flag: slots != n, ranks: false };
        let template = Netlist { lowering, parties, ..Netlist::default() };
        let depth = |net: &Netlist| net.gates.iter().map(|g| g.depth).max().unwrap_or(0);
        let resharing = !lowering.protocol.uses_preprocessing();
        let networks = !resharing && !layout.dealt(&lowering);
        let shuffle = |layout: &Layout| {
            if resharing {
                2 * parties
            } else if layout.dealt(&lowering) {
                parties
            } else {
                1 + parties * shuffle::stages(layout.k)
            }
        };
        SortRounds {
            shuffle: shuffle(&layout),
            padding: if layout.flag && networks { depth(&padding_netlist(&template, &layout).0) + 1 } else { 0 },
            per_level: depth(&level_netlist(&template, 1, layout.tag_bits()).0) + 1,
            ranks: shuffle(&layout.ranking()) + 1,
        }
    }
}

/// This party's components of `v` over `width` elements: a secret's own,
/// a public value in the components it enters (zeros elsewhere).
fn components(v: &Value, public_parts: &[bool], width: usize) -> Vec<Vec<u64>> {
    match v {
        Value::Secret(parts) => parts.iter().map(|p| broadcast_ring(p.expose(), width)).collect(),
        Value::Public(p) => public_parts
            .iter()
            .map(|e| if *e { broadcast_ring(p, width) } else { crate::memory::zeroed(width) })
            .collect(),
        _ => unreachable!("a ring value"),
    }
}

/// `v[i] = v[arrangement[i]]` for every `i` (a permutation of `v`'s
/// positions), through `scratch`.
fn rearrange<T: Copy>(v: &mut [T], arrangement: &[u32], scratch: &mut Vec<T>) {
    scratch.clear();
    scratch.extend(arrangement.iter().map(|i| v[*i as usize]));
    v.copy_from_slice(scratch);
}

fn gather<T: AsRef<[u64]>>(parts: &[T], indices: &[u32]) -> Vec<Share> {
    parts.iter().map(|p| Share::new(indices.iter().map(|i| p.as_ref()[*i as usize]).collect())).collect()
}

/// A circuit that reveals `count` sub-instance outputs (nodes `0..count`)
/// to every party.
fn reveal_to_all(parties: usize, count: usize) -> Circuit {
    Circuit {
        frac_bits: 0,
        parties: vec![String::new(); parties],
        inputs: Vec::new(),
        nodes: Vec::new(),
        outputs: (0..count)
            .map(|value| OutputDecl {
                name: "sort".into(),
                value,
                elem: ElemType::Int,
                recipients: (0..parties).collect(),
                span: Span::default(),
            })
            .collect(),
        checks: Vec::new(),
    }
}

/// What one sort did (public).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SortStats {
    pub comparisons: usize,
    pub levels: usize,
}

/// Run sort gate `id` of `instance` for this party: the shuffle, quicksort
/// level by level, the local reordering, and the ranks if the gate
/// outputs them. Returns the gate's value (the sorted columns, then the
/// ranks, concatenated).
pub async fn run_sort<P: Protocol>(
    protocol: &mut P,
    net: &mut Net<'_>,
    instance: &Instance,
    id: GateId,
    values: &[Option<Value>],
) -> Result<(Value, SortStats), JobError> {
    let netlist = &instance.netlist;
    let (layout, key, columns, descending) = Layout::of(netlist, id);
    let public_parts = protocol.public_parts().to_vec();
    let n = layout.n;
    let value_of = |g: GateId| values[g].as_ref().expect("a sort's operands are ready");
    let mut stats = SortStats::default();

    // A public key (secret columns): the order is public, apply it.
    if let Value::Public(k) = value_of(key) {
        let k = broadcast_ring(k, n);
        let order: Vec<u32> = if descending {
            let mut o: Vec<u32> = (0..n as u32).collect();
            o.sort_by_key(|&i| std::cmp::Reverse(ring::to_signed(k[i as usize])));
            o
        } else {
            let mut o: Vec<u32> = (0..n as u32).collect();
            o.sort_by_key(|&i| ring::to_signed(k[i as usize]));
            o
        };
        let mut parts: Vec<Vec<Share>> =
            columns.iter().map(|c| gather(&components(value_of(*c), &public_parts, n), &order)).collect();
        if layout.ranks {
            let mut ranks = vec![0u64; n];
            for (position, i) in order.iter().enumerate() {
                ranks[*i as usize] = position as u64;
            }
            parts.push(public_shares(ranks, &public_parts));
        }
        return Ok((concat(parts, public_parts.len()), stats));
    }
    if n < 2 {
        let mut parts: Vec<Vec<Share>> = columns
            .iter()
            .map(|c| components(value_of(*c), &public_parts, n).into_iter().map(Share::new).collect())
            .collect();
        if layout.ranks {
            parts.push(public_shares(vec![0; n], &public_parts));
        }
        return Ok((concat(parts, public_parts.len()), stats));
    }

    // 1. The columns to shuffle: the key (or its negation), the tags,
    // the others.
    let mut key_parts = components(value_of(key), &public_parts, n);
    if descending {
        key_parts.iter_mut().for_each(|p| ring::neg_assign(p));
    }
    let tags = Value::Public((0..n as u64).collect());
    let mut columns_in = vec![key_parts, components(&tags, &public_parts, n)];
    for c in &layout.others {
        columns_in.push(components(value_of(*c), &public_parts, n));
    }

    // 2. The shuffle: the protocol's own, or the generic networks.
    let mut joined: Vec<Share> = (0..public_parts.len())
        .map(|j| Share::new(columns_in.iter().flat_map(|c| c[j].iter().copied()).collect()))
        .collect();
    let (shuffled, real, stride) = if protocol.shuffle(net, &mut joined, n).await? {
        drop(columns_in);
        (joined, (0..n as u32).collect(), n)
    } else {
        drop(joined);
        benes_shuffle(protocol, net, netlist, &layout, columns_in, true).await?
    };
    let column = |c: usize| -> Vec<Vec<u64>> {
        let at: Vec<u32> = real.iter().map(|x| x + (c * stride) as u32).collect();
        gather(&shuffled.iter().map(Share::expose).collect::<Vec<_>>(), &at)
            .into_iter()
            .map(Share::into_inner)
            .collect()
    };
    let keys: Vec<Share> = column(0).into_iter().map(Share::new).collect();
    let tags: Vec<Share> = column(1).into_iter().map(Share::new).collect();

    // 4. Quicksort, a level at a time: `order` holds the elements (indices
    // into the shuffled columns) with every partition contiguous, its
    // pivot first, and `keys` and `tags` hold them in that arrangement
    // (moved within a partition as it splits), so that a level reads its
    // elements and pivots in order.
    let mut order: Vec<u32> = (0..n as u32).collect();
    let (mut keys, mut tags) = (keys, tags);
    let mut partitions: Vec<(usize, usize)> = vec![(0, n)];
    let mut arrangement: Vec<u32> = Vec::new();
    let (mut moved, mut moved_order) = (Vec::new(), Vec::new());
    while !partitions.is_empty() {
        let w: usize = partitions.iter().map(|&(_, len)| len - 1).sum();
        let (level, less) = level_netlist(netlist, w, layout.tag_bits());
        let level = Instance::from_netlist(level, vec![less], &[less]);
        let mut level_values: Vec<Option<Value>> = (0..level.netlist.gates.len()).map(|_| None).collect();
        level_values[0] = Some(Value::Secret(pivot_differences(&keys, &partitions, w)));
        level_values[1] = Some(Value::Secret(pivot_differences(&tags, &partitions, w)));
        run_sub(protocol, net, &level, &mut level_values).await?;
        let opened = protocol.reveal_outputs(net, &level, &reveal_to_all(net.n, 1), &level_values).await?;
        let less = opened.into_iter().next().flatten().expect("opened to every party");
        let less = less.expose();
        stats.comparisons += w;
        stats.levels += 1;
        let mut next = Vec::new();
        let mut at = 0;
        for &(start, len) in &partitions {
            // The partition's new arrangement (offsets from `start`): the
            // elements below the pivot, the pivot, the rest, each in their
            // current order.
            let bits = &less[at..at + len - 1];
            at += len - 1;
            arrangement.clear();
            arrangement.extend((1..len as u32).filter(|i| bits[*i as usize - 1] == 1));
            let b = arrangement.len();
            arrangement.push(0);
            arrangement.extend((1..len as u32).filter(|i| bits[*i as usize - 1] != 1));
            let range = start..start + len;
            rearrange(&mut order[range.clone()], &arrangement, &mut moved_order);
            for part in keys.iter_mut().chain(tags.iter_mut()) {
                rearrange(&mut part.expose_mut()[range.clone()], &arrangement, &mut moved);
            }
            if b >= 2 {
                next.push((start, b));
            }
            let above = len - b - 1;
            if above >= 2 {
                next.push((start + b + 1, above));
            }
        }
        partitions = next;
    }
    // It held pieces of shares.
    crate::memory::wipe_vec(&mut moved);

    // 5. Every column in the order found.
    let mut out = Vec::with_capacity(columns.len());
    for c in &columns {
        let mut parts = if *c == key {
            keys.clone()
        } else {
            let at = 2 + layout.others.iter().position(|o| o == c).expect("a shuffled column");
            gather(&column(at), &order)
        };
        if *c == key && descending {
            parts.iter_mut().for_each(|p| ring::neg_assign(p.expose_mut()));
        }
        out.push(parts);
    }

    // 6. Ranks: the tags in the order found (sorted position `i` holds
    // the tag of the element ranked `i`), then step 5 of the module's
    // construction.
    if layout.ranks {
        let sorted_tags: Vec<Vec<u64>> = tags.iter().map(|t| t.expose().to_vec()).collect();
        drop((keys, tags));
        out.push(rank_step(protocol, net, instance, id, &layout, sorted_tags).await?);
    }
    Ok((concat(out, public_parts.len()), stats))
}

/// A public value as shares: in the components it enters.
fn public_shares(v: Vec<u64>, public_parts: &[bool]) -> Vec<Share> {
    let n = v.len();
    components(&Value::Public(v), public_parts, n).into_iter().map(Share::new).collect()
}

fn internal(reason: String) -> JobError {
    JobError::Protocol { party: "(every party)".into(), step: crate::transport::Step::Output, reason }
}

/// The ranks from the tags in sorted order (`sorted_tags`, this party's
/// components): the pairs (position, tag) shuffled again — the
/// protocol's own shuffle, else the networks — and the shuffled tags
/// opened to every party. Opening them is safe: the second shuffle is
/// uniform and independent of everything before it, so the opened tags
/// are a uniformly random permutation of `0..n` (with the networks, of
/// their `2^k` slots, the padding's tags being `n..2^k`), independent of
/// the data and of the order quicksort found; the positions stay secret.
/// Each shuffled position then goes to its opened tag: `rank[tag] =
/// position`. Under a protocol with material, the second shuffle is a
/// dynamic step of its own: its budget ([`super::plan::SortBudget`]'s
/// `ranks`) follows the comparisons' chunks, whose unused part is drawn
/// and discarded first.
async fn rank_step<P: Protocol>(
    protocol: &mut P,
    net: &mut Net<'_>,
    instance: &Instance,
    id: GateId,
    layout: &Layout,
    sorted_tags: Vec<Vec<u64>>,
) -> Result<Vec<Share>, JobError> {
    let netlist = &instance.netlist;
    let n = layout.n;
    let public_parts = protocol.public_parts().to_vec();
    let budget = instance.sort_budgets.get(&id).ok_or_else(|| internal("a sort without a budget".into()))?;
    if !budget.ranks.is_empty() {
        protocol.end_dynamic().await?;
        protocol.begin_dynamic(budget.first + budget.chunks.len(), &budget.ranks);
    }

    let positions = components(&Value::Public((0..n as u64).collect()), &public_parts, n);
    let columns_in = vec![positions, sorted_tags];
    let mut joined: Vec<Share> = (0..public_parts.len())
        .map(|j| Share::new(columns_in.iter().flat_map(|c| c[j].iter().copied()).collect()))
        .collect();
    let (shuffled, stride) = if protocol.shuffle(net, &mut joined, n).await? {
        drop(columns_in);
        (joined, n)
    } else {
        drop(joined);
        // No padding opening: the tags' opening below shows the padding.
        let (shuffled, _, stride) = benes_shuffle(protocol, net, netlist, &layout.ranking(), columns_in, false).await?;
        (shuffled, stride)
    };

    // Open the shuffled tags (column 1).
    let mut opening = Netlist { lowering: netlist.lowering, parties: netlist.parties, ..Netlist::default() };
    let tags_gate =
        opening.push(GateOp::External { index: 0, secret: true }, Span::default(), Some(stride), Kind::Ring);
    let opening = Instance::from_netlist(opening, vec![tags_gate], &[tags_gate]);
    let tags: Vec<Share> = shuffled.iter().map(|s| Share::new(s.expose()[stride..2 * stride].to_vec())).collect();
    let values = vec![Some(Value::Secret(tags))];
    let opened = protocol.reveal_outputs(net, &opening, &reveal_to_all(net.n, 1), &values).await?;
    let opened = opened.into_iter().next().flatten().expect("opened to every party");

    // `at[t]`: the slot whose tag is `t`. The opened tags must be a
    // permutation of the slots.
    let mut at = vec![u32::MAX; stride];
    for (slot, tag) in opened.expose().iter().enumerate() {
        match at.get_mut(*tag as usize) {
            Some(a) if *a == u32::MAX => *a = slot as u32,
            _ => {
                return Err(internal(format!(
                    "the ranks' shuffle of {n} elements opened tags that are not a permutation"
                )));
            }
        }
    }
    at.truncate(n);
    let positions: Vec<Vec<u64>> = shuffled.iter().map(|s| s.expose()[..stride].to_vec()).collect();
    Ok(gather(&positions, &at))
}

/// The generic shuffle ([`super::shuffle`]): the columns padded to the
/// network's `2^k` slots (zeros, and a flag column marking the padding),
/// every party's switch settings in one round, its network after the
/// previous party's, then the flags opened to drop the padding. Returns
/// the shuffled columns (`slots` apart), the real elements' slots, and
/// `slots`. Without `drop_padding` the padding stays (every slot is
/// returned as real): the caller finds it otherwise.
async fn benes_shuffle<P: Protocol>(
    protocol: &mut P,
    net: &mut Net<'_>,
    netlist: &Netlist,
    layout: &Layout,
    columns_in: Vec<Vec<Vec<u64>>>,
    drop_padding: bool,
) -> Result<(Vec<Share>, Vec<u32>, usize), JobError> {
    let n = layout.n;
    let public_parts = protocol.public_parts().to_vec();
    let slots = layout.slots();
    let width = layout.shuffled() * slots;
    let mut joined: Vec<Vec<u64>> = (0..public_parts.len()).map(|_| Vec::with_capacity(width)).collect();
    for (c, column) in columns_in.into_iter().enumerate() {
        for (j, mut part) in column.into_iter().enumerate() {
            // Padding: zeros, except the tags, which go on past `n` (a
            // public value, entering once): the padding is what has a tag
            // of at least `n`.
            if c == 1 && public_parts[j] {
                part.extend(n as u64..slots as u64);
            } else {
                part.resize(slots, 0);
            }
            joined[j].extend_from_slice(&part);
            crate::memory::wipe_vec(&mut part);
        }
    }

    // Every party's switch settings in one round, then the networks one
    // after the other.
    let stages = shuffle::stages(layout.k);
    let switches = stages * slots / 2;
    let mine = shuffle::route(layout.k, &shuffle::random_permutation(slots)?);
    let settings = protocol.private_inputs(net, &vec![switches; net.n], &Secret::new(mine)).await?;
    let span = Span::default();
    let mut sub = Netlist { lowering: netlist.lowering, parties: netlist.parties, ..Netlist::default() };
    let input = sub.push(GateOp::External { index: 0, secret: true }, span, Some(width), Kind::Ring);
    let mut u = input;
    let mut setting_gates = Vec::with_capacity(net.n);
    for p in 0..net.n {
        let bits = sub.push(GateOp::External { index: 1 + p, secret: true }, span, Some(switches), Kind::Ring);
        setting_gates.push(bits);
        let half = slots / 2;
        for t in 0..stages {
            let stride = shuffle::stride(layout.k, t);
            let b = sub.push(
                GateOp::Strided { a: bits, start: t * half, step: 1, count: half },
                span,
                Some(half),
                Kind::Ring,
            );
            let b = sub.push(GateOp::Concat(vec![b; layout.shuffled()]), span, Some(width / 2), Kind::Ring);
            let lo = sub.push(GateOp::Pairs { a: u, stride, upper: false }, span, Some(width / 2), Kind::Ring);
            let hi = sub.push(GateOp::Pairs { a: u, stride, upper: true }, span, Some(width / 2), Kind::Ring);
            let d = sub.ring2(GateOp::Sub, hi, lo, span);
            let m = sub.ring2(GateOp::Mul, b, d, span);
            let lo = sub.ring2(GateOp::Add, lo, m, span);
            let hi = sub.ring2(GateOp::Sub, hi, m, span);
            u = sub.push(GateOp::Unpair { lo, hi, stride }, span, Some(width), Kind::Ring);
        }
    }
    let shuffle = Instance::from_netlist(sub, vec![u], &[u]);
    let mut sub_values: Vec<Option<Value>> = (0..shuffle.netlist.gates.len()).map(|_| None).collect();
    sub_values[input] = Some(Value::Secret(joined.into_iter().map(Share::new).collect()));
    for (g, setting) in setting_gates.iter().zip(settings) {
        sub_values[*g] = Some(setting);
    }
    run_sub(protocol, net, &shuffle, &mut sub_values).await?;

    let Some(Value::Secret(shuffled)) = sub_values[u].take() else { unreachable!("the shuffled columns") };
    drop(sub_values);

    // Drop the padding: open `[tag < n]` (its positions after a uniform
    // shuffle are a uniformly random set, independent of the data).
    let real: Vec<u32> = if layout.flag && drop_padding {
        let (padding, real_bit) = padding_netlist(netlist, layout);
        let padding = Instance::from_netlist(padding, vec![real_bit], &[real_bit]);
        let mut values: Vec<Option<Value>> = (0..padding.netlist.gates.len()).map(|_| None).collect();
        let tags: Vec<Share> = shuffled.iter().map(|s| Share::new(s.expose()[slots..2 * slots].to_vec())).collect();
        values[0] = Some(Value::Secret(tags));
        run_sub(protocol, net, &padding, &mut values).await?;
        let opened = protocol.reveal_outputs(net, &padding, &reveal_to_all(net.n, 1), &values).await?;
        let bits = opened.into_iter().next().flatten().expect("opened to every party");
        let real: Vec<u32> = (0..slots as u32).filter(|x| bits.expose()[*x as usize] == 1).collect();
        if real.len() != n {
            return Err(JobError::Protocol {
                party: "(every party)".into(),
                step: crate::transport::Step::Output,
                reason: format!("the sort's shuffle kept {} of {n} elements", real.len()),
            });
        }
        real
    } else {
        (0..if drop_padding { n } else { slots } as u32).collect()
    };
    Ok((shuffled, real, slots))
}

fn concat(columns: Vec<Vec<Share>>, components: usize) -> Value {
    let mut out: Vec<Vec<u64>> = vec![Vec::new(); components];
    for column in columns {
        for (j, part) in column.into_iter().enumerate() {
            out[j].extend_from_slice(part.expose());
        }
    }
    Value::Secret(out.into_iter().map(Share::new).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::plan::{Lowering, Quotients};
    use crate::protocol::ProtocolName;

    /// A sort gate with ranks of `n` secret elements, `others` columns
    /// besides the key.
    fn ranked(lowering: Lowering, parties: usize, n: usize, others: usize) -> (Netlist, GateId) {
        let span = Span::default();
        let mut net = Netlist { lowering, parties, ..Netlist::default() };
        let external =
            |net: &mut Netlist, index| net.push(GateOp::External { index, secret: true }, span, Some(n), Kind::Ring);
        let key = external(&mut net, 0);
        let mut columns = vec![key];
        for i in 0..others {
            columns.push(external(&mut net, 1 + i));
        }
        let (_, rank) = net.sort_ranked(key, &columns, false, true, span).expect("a sort");
        let GateOp::Strided { a, .. } = net.gates[rank.expect("ranks")].op else { unreachable!("a column") };
        (net, a)
    }

    #[test]
    fn the_ranks_budget_is_one_more_shuffle_of_two_columns() {
        let dealt = Lowering::additive(Quotients::Exact);
        let generated = Lowering::additive(Quotients::Linear);
        let permutations =
            |demands: &[Demand]| -> Vec<PermutationDemand> { demands.iter().filter_map(|d| d.permutation).collect() };
        let steps =
            |len, columns| (0..3).map(|permuter| PermutationDemand { permuter, len, columns }).collect::<Vec<_>>();

        // Dealt: the sort's steps of three columns, the ranks' of two.
        let (net, id) = ranked(dealt, 3, 1000, 1);
        let (sort, ranks) = budget_parts(&net, id);
        assert_eq!(permutations(&sort), steps(1000, 3));
        assert_eq!(ranks.iter().filter(|d| d.permutation.is_some()).count(), ranks.len());
        assert_eq!(permutations(&ranks), steps(1000, 2));
        assert_eq!(sort_demands(&net, id).len(), sort.len() + ranks.len());
        let rounds = SortRounds::of(dealt, 3, 1000, 1);
        assert_eq!((rounds.shuffle, rounds.ranks), (3, 4));

        // Networks: the ranks' triples for two columns over 1024 slots,
        // no padding opening (the opened tags show it).
        let (net, id) = ranked(generated, 3, 1000, 1);
        let (_, ranks) = budget_parts(&net, id);
        let stages = shuffle::stages(10);
        assert_eq!(ranks, vec![Demand { triples: 1024, ..Demand::default() }; 3 * stages]);
        let rounds = SortRounds::of(generated, 3, 1000, 1);
        assert_eq!(rounds.ranks, 1 + 3 * stages + 1);
        assert_eq!(rounds.shuffle + 1, rounds.ranks);

        // Two columns fit a dealer's batch where the sort's three do not:
        // the sort takes the networks, its ranks dealt steps.
        let n = MAX_BATCH_ITEMS / 3 + 1;
        let (net, id) = ranked(dealt, 3, n, 1);
        let (sort, ranks) = budget_parts(&net, id);
        assert!(permutations(&sort).is_empty() && sort[0].triples > 0);
        assert_eq!(permutations(&ranks), steps(n, 2));
        let rounds = SortRounds::of(dealt, 3, n, 1);
        assert_eq!(rounds.ranks, 3 + 1);
        assert!(rounds.shuffle > 3);

        // Resharing: no material; two rounds per party, and the opening.
        let rep3 = Lowering { protocol: ProtocolName::Replicated3, quotients: Quotients::Exact };
        let (net, id) = ranked(rep3, 3, 1000, 1);
        assert_eq!(budget_parts(&net, id), (Vec::new(), Vec::new()));
        assert_eq!(SortRounds::of(rep3, 3, 1000, 1).ranks, 7);

        // A sort without ranks has no ranks' part.
        let mut net = Netlist { lowering: dealt, parties: 3, ..Netlist::default() };
        let key = net.push(GateOp::External { index: 0, secret: true }, Span::default(), Some(100), Kind::Ring);
        let sorted = net.sort(key, &[key], false, Span::default()).expect("a sort");
        let GateOp::Strided { a, .. } = net.gates[sorted[0]].op else { unreachable!("a column") };
        assert!(budget_parts(&net, a).1.is_empty());
    }
}
