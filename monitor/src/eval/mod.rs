//! The evaluator: instances of compiled machines fed events in trace order, timeouts in trace
//! time, per-key instances, windows, compositions, and the explanations of every decision.
//! The hot path (an event that matches nothing or a guard over borrowed fields) allocates
//! nothing.
//!
//! Submodules, each used only by the ones after it: `window` (window state and aggregates),
//! `ctx` (the generic expression evaluator), `effects` (what a fired handler decides), `fx` (the
//! per-key hasher), `explain` (the outcomes and paths explanations show), `timers` (a leaf's
//! armed timeouts), `leaf` (the instances of one instantiated machine, and its `columns` pass
//! over a batch's columns), `shards` (one keyed leaf split by key over threads), `node`
//! (`and`/`or`/`not` compositions).

mod ctx;
mod effects;
mod explain;
mod fx;
mod leaf;
mod node;
mod shards;
mod timers;
mod window;

#[cfg(test)]
pub(crate) use ctx::matches_generic;
pub(crate) use explain::Outcome;
pub(crate) use leaf::keys::prepare as prepare_groups;
pub(crate) use leaf::Leaf;
pub(crate) use node::{Node, NodePart};

/// The most transitions an instance keeps for its explanation (the oldest are dropped).
const PATH_MAX: usize = 32;
/// The most guard values an explanation shows.
const TRACE_MAX: usize = 24;
