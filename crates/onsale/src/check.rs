//! The checks of the run against the store: admissions in the drawn order, lost places.
//!
//! **The drawn order, recomputed.** The room's draw (`GET /admin/rooms/{id}`: `seed`,
//! `entrants`) and the tokens the buyers hold give every entrant's drawn position, by the
//! documented rule (`docs/api.md`, "Checking a draw"): the entrants' token values sorted
//! byte-wise are the input order, and positions `1..=entrants` shuffled by `rand` 0.9's
//! Fisher–Yates under `ChaCha20Rng::seed_from_u64(seed)` give each its place. It is recomputed
//! here, independently of the service's code, so a service that drew otherwise than it recorded
//! fails the check. The entrants are the buyers whose join answered `"position": null` (the
//! pre-queue); the later joiners are only sent once the draw is seen, so none of them can be
//! taken for an entrant, and the count must equal the recorded `entrants` exactly. (One case
//! would break that count without any fault of the service: a pre-queue join whose answer was
//! lost in a failover and whose retry, after the opening, got the same token back with its drawn
//! position. Chaos is meant for after the opening.)
//!
//! **Admission ticks.** Every token admitted by one admission carries that admission's
//! `activatedAt`, and one admission takes a contiguous range of the line. So, sorted by drawn
//! position, the entrants' admission times never go down: a buyer admitted in tick k has a
//! drawn position inside tick k's range. Later joiners come after every entrant, and among them
//! one whose join was answered before another's was sent is admitted no later.

use std::collections::HashSet;

use rand::seq::SliceRandom as _;
use rand::SeedableRng as _;
use serde::Serialize;

use crate::buyer::Record;

/// The room's recorded draw.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Draw {
    /// The seed.
    pub seed: u64,
    /// How many tokens it ordered.
    pub entrants: u64,
}

/// The outcome of the order check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OrderCheck {
    /// The draw was seen at all.
    pub draw_seen: bool,
    /// Entrants by the buyers' joins (pre-queue answers).
    pub prequeue_tokens: u64,
    /// Entrants by the store's draw.
    pub drawn_entrants: u64,
    /// Entrants whose admission (or skip) was seen.
    pub entrants_admitted: u64,
    /// Later joiners whose admission was seen.
    pub late_admitted: u64,
    /// Admissions out of the drawn order: pairs (adjacent in the drawn order) where the later
    /// position was admitted by an earlier admission.
    pub inversions: u64,
    /// Later joiners admitted before an entrant, or before a joiner who joined after them.
    pub late_inversions: u64,
    /// Distinct admission ticks seen.
    pub ticks: u64,
    /// The first few violations, in words.
    pub examples: Vec<String>,
}

impl OrderCheck {
    /// Admissions exactly in the drawn order.
    pub fn met(&self) -> bool {
        self.draw_seen
            && self.prequeue_tokens == self.drawn_entrants
            && self.inversions == 0
            && self.late_inversions == 0
            && self.entrants_admitted > 0
    }
}

/// Positions `1..=entrants` in the drawn order: element `i` for the `i`-th smallest token.
pub fn drawn_positions(draw: Draw) -> Vec<u64> {
    let mut order: Vec<u64> = (1..=draw.entrants).collect();
    order.shuffle(&mut rand_chacha::ChaCha20Rng::seed_from_u64(draw.seed));
    order
}

/// Checks the admissions the buyers saw against the recorded draw.
pub fn order(records: &[Record], draw: Option<Draw>) -> OrderCheck {
    let mut out = OrderCheck::default();
    let mut entrants: Vec<&Record> = records.iter().filter(|r| r.prequeue && r.token.is_some()).collect();
    out.prequeue_tokens = entrants.len() as u64;
    let Some(draw) = draw else {
        out.examples.push("the room's draw was never seen".into());
        return out;
    };
    out.draw_seen = true;
    out.drawn_entrants = draw.entrants;
    if out.prequeue_tokens != draw.entrants {
        out.examples.push(format!(
            "{} tokens joined in the pre-queue but the draw ordered {}",
            out.prequeue_tokens, draw.entrants
        ));
        return out;
    }
    entrants.sort_by(|a, b| a.token.as_deref().map(str::as_bytes).cmp(&b.token.as_deref().map(str::as_bytes)));
    let positions = drawn_positions(draw);
    let mut admitted: Vec<(u64, time::OffsetDateTime, u64)> =
        entrants.iter().zip(&positions).filter_map(|(r, p)| r.activated_at.map(|at| (*p, at, r.idx))).collect();
    out.entrants_admitted = admitted.len() as u64;
    admitted.sort_by_key(|(p, _, _)| *p);
    for w in admitted.windows(2) {
        if w[1].1 < w[0].1 {
            out.inversions += 1;
            if out.examples.len() < 5 {
                out.examples.push(format!(
                    "drawn position {} admitted at {} but position {} only at {}",
                    w[1].0, w[1].1, w[0].0, w[0].1
                ));
            }
        }
    }
    let last_entrant_tick = admitted.iter().map(|(_, at, _)| *at).max();

    // Later joiners: after every entrant, and in the order of their joins where that order is
    // certain (one answered before the other was sent).
    let mut late: Vec<(std::time::Duration, std::time::Duration, time::OffsetDateTime)> = records
        .iter()
        .filter(|r| !r.prequeue)
        .filter_map(|r| Some((r.join_sent?, r.join_recv?, r.activated_at?)))
        .collect();
    out.late_admitted = late.len() as u64;
    if let (Some(last), Some(first_late)) = (last_entrant_tick, late.iter().map(|l| l.2).min()) {
        if first_late < last {
            out.late_inversions += 1;
            out.examples.push(format!("a later joiner admitted at {first_late}, before an entrant at {last}"));
        }
    }
    late.sort_by_key(|l| l.1);
    let mut prefix_max = Vec::with_capacity(late.len());
    let mut m: Option<time::OffsetDateTime> = None;
    for l in &late {
        m = Some(m.map_or(l.2, |m| m.max(l.2)));
        prefix_max.push(m);
    }
    for l in &late {
        // Joiners whose answer came before this one was sent.
        let before = late.partition_point(|o| o.1 < l.0);
        if let Some(Some(m)) = before.checked_sub(1).and_then(|i| prefix_max.get(i)) {
            if *m > l.2 {
                out.late_inversions += 1;
                if out.examples.len() < 5 {
                    out.examples
                        .push(format!("a later joiner admitted at {} after one who joined later, at {}", m, l.2));
                }
            }
        }
    }
    let ticks: HashSet<time::OffsetDateTime> = records.iter().filter_map(|r| r.activated_at).collect();
    out.ticks = ticks.len() as u64;
    out
}

/// Places lost: staying buyers whose token was skipped, expired unadmitted or vanished, or whose
/// shown position grew.
pub fn lost(records: &[Record]) -> (u64, Vec<String>) {
    let mut n = 0;
    let mut examples = Vec::new();
    for r in records.iter().filter(|r| !r.abandoner) {
        let why = r.lost.clone().or_else(|| r.position_grew.then(|| "its position grew".to_owned()));
        if let Some(why) = why {
            n += 1;
            if examples.len() < 5 {
                examples.push(format!("buyer {}: {why}", r.idx));
            }
        }
    }
    (n, examples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drawn_order_is_a_permutation_fixed_by_the_seed() {
        let a = drawn_positions(Draw { seed: 7, entrants: 1000 });
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=1000).collect::<Vec<_>>());
        assert_eq!(a, drawn_positions(Draw { seed: 7, entrants: 1000 }));
        assert_ne!(a, drawn_positions(Draw { seed: 8, entrants: 1000 }));
    }

    fn at(secs: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(secs)
    }

    /// Entrants admitted in ticks that follow the recomputed order pass; swapping two
    /// buyers' ticks across a tick boundary is caught.
    #[test]
    fn an_admission_out_of_the_drawn_order_is_caught() {
        let draw = Draw { seed: 42, entrants: 6 };
        let mut tokens: Vec<String> = (0..6).map(|i| format!("tok-{i}")).collect();
        tokens.sort();
        let positions = drawn_positions(draw);
        let mut records: Vec<Record> = tokens
            .iter()
            .zip(&positions)
            .enumerate()
            .map(|(i, (t, p))| Record {
                idx: i as u64,
                token: Some(t.clone()),
                prequeue: true,
                // Two per tick, in drawn order.
                activated_at: Some(at(((*p as i64) - 1) / 2)),
                ..Record::default()
            })
            .collect();
        let ok = order(&records, Some(draw));
        assert!(ok.met(), "{ok:?}");
        assert_eq!(ok.ticks, 3);

        let first = positions.iter().position(|p| *p == 1).unwrap();
        let last = positions.iter().position(|p| *p == 6).unwrap();
        records[first].activated_at = Some(at(2));
        records[last].activated_at = Some(at(0));
        let bad = order(&records, Some(draw));
        assert!(!bad.met());
        assert!(bad.inversions > 0, "{bad:?}");
    }

    #[test]
    fn a_wrong_entrant_count_fails() {
        let records = vec![Record { token: Some("a".into()), prequeue: true, ..Record::default() }];
        assert!(!order(&records, Some(Draw { seed: 1, entrants: 2 })).met());
        assert!(!order(&records, None).met());
    }

    #[test]
    fn a_later_joiner_admitted_before_an_earlier_one_is_caught() {
        let d = std::time::Duration::from_millis;
        let entrant =
            Record { token: Some("a".into()), prequeue: true, activated_at: Some(at(0)), ..Record::default() };
        let early =
            Record { join_sent: Some(d(0)), join_recv: Some(d(10)), activated_at: Some(at(5)), ..Record::default() };
        let later =
            Record { join_sent: Some(d(20)), join_recv: Some(d(30)), activated_at: Some(at(1)), ..Record::default() };
        let draw = Some(Draw { seed: 3, entrants: 1 });
        assert!(!order(&[entrant.clone(), early.clone(), later.clone()], draw).met());
        let fine = Record { activated_at: Some(at(5)), ..later };
        assert!(order(&[entrant, early, fine], draw).met());
    }

    #[test]
    fn only_staying_buyers_lose_places() {
        let records = vec![
            Record { abandoner: true, lost: Some("skipped".into()), ..Record::default() },
            Record { lost: Some("skipped".into()), ..Record::default() },
            Record { position_grew: true, ..Record::default() },
        ];
        assert_eq!(lost(&records).0, 2);
    }
}
