//! Window state: the samples of `count`/`sum`/`mean`/`min`/`max`/percentile windows over the
//! last N events or a time span, the keyed samples of `latest(E) by K` windows, eviction in
//! trace time, and the aggregate each window reads as.

use crate::ast::Agg;
use crate::ir::WindowC;
use crate::value::V;
use serde_json::Value as J;
use std::collections::VecDeque;

#[derive(Debug, Clone, Default)]
pub(super) struct WinState {
    samples: VecDeque<(i64, f64)>,
    sum: f64,
    cap: usize,
    span_ns: Option<i64>,
    /// A `latest(E) by K` window: its samples (time, key, value), oldest first ...
    keyed: VecDeque<(i64, Box<str>, J)>,
    /// ... and the map from each key to its latest value, rebuilt when they change.
    map: J,
}

impl WinState {
    pub(super) fn new(cap: usize, span_ns: Option<i64>) -> WinState {
        WinState {
            samples: VecDeque::new(),
            sum: 0.0,
            cap,
            span_ns,
            keyed: VecDeque::new(),
            map: J::Object(Default::default()),
        }
    }
    fn rebuild_map(&mut self) {
        let mut m = serde_json::Map::new();
        for (_, k, v) in &self.keyed {
            m.insert(k.to_string(), v.clone());
        }
        self.map = J::Object(m);
    }
    /// A `latest ... by` sample: `key`'s value is now `v`.
    pub(super) fn push_keyed(&mut self, ts: i64, key: &str, v: J) {
        if self.span_ns.is_none() && self.keyed.len() >= self.cap {
            self.keyed.pop_front();
        }
        self.keyed.push_back((ts, key.into(), v));
        self.rebuild_map();
    }
    pub(super) fn evict(&mut self, now: i64) {
        if let (Some(d), Some((t, _, _))) = (self.span_ns, self.keyed.front()) {
            if *t <= now - d {
                while self.keyed.front().is_some_and(|(t, _, _)| *t <= now - d) {
                    self.keyed.pop_front();
                }
                self.rebuild_map();
            }
        }
        if let Some(d) = self.span_ns {
            while let Some(&(t, v)) = self.samples.front() {
                if t > now - d {
                    break;
                }
                self.samples.pop_front();
                self.sum -= v;
            }
            if self.samples.is_empty() {
                self.sum = 0.0;
            }
        }
    }
    pub(super) fn push(&mut self, ts: i64, v: f64) {
        if self.span_ns.is_none() && self.samples.len() >= self.cap {
            if let Some((_, old)) = self.samples.pop_front() {
                self.sum -= old;
            }
        }
        self.samples.push_back((ts, v));
        self.sum += v;
    }
}

pub(super) fn win_value<'a>(d: &WindowC, w: &'a WinState) -> V<'a> {
    let n = w.samples.len();
    match d.agg {
        Agg::Latest => V::J(&w.map),
        Agg::Count => V::Int(w.sum.round() as i64),
        Agg::Sum => V::Float(w.sum),
        _ if n == 0 => V::Null,
        Agg::Mean => V::Float(w.sum / n as f64),
        Agg::Min => V::Float(w.samples.iter().map(|s| s.1).fold(f64::INFINITY, f64::min)),
        Agg::Max => V::Float(
            w.samples
                .iter()
                .map(|s| s.1)
                .fold(f64::NEG_INFINITY, f64::max),
        ),
        Agg::Percentile(p) => V::Float(percentile(w.samples.iter().map(|s| s.1), p)),
    }
}

/// The nearest-rank percentile (`p` in hundredths of a percent) of a non-empty set of samples:
/// the smallest sample with at least `p` % of the samples at or below it.
fn percentile(samples: impl Iterator<Item = f64>, p: u16) -> f64 {
    let mut v: Vec<f64> = samples.collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    // rank = ceil(p/10000 * n), in integers
    let rank = (u64::from(p) * n as u64).div_ceil(10_000) as usize;
    v[rank.clamp(1, n) - 1]
}
