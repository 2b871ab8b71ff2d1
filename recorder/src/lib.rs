//! The recorder library: scenario files, the compose lifecycle, Docker sensors, fault injection and
//! the recording loop. The `recorder` binary is a thin shell over it.
//!
//! Module map: [`scenario`] (the TOML scenario and its validation), [`compose`] (the compose CLI and
//! container discovery through bollard), [`sensors`] (every sensor: the trait and registry, the
//! Docker events, logs and stats sensors, the JMX, HTTP, Prometheus, exec and pcap sensors),
//! [`sink`] (the event channel every sensor writes into), [`faults`] (fault injection from the
//! host), [`plan`] (what a plan runs with and reports), [`experiment`] (an experiment run live),
//! [`run`] (the run loop tying it all together, and `recorder cleanup`), [`halt`] (halt conditions
//! judged live), [`replay`] (`run --replay`), [`otlp`] (the OTLP receiver of a run and its compose
//! override), [`exit`] (the exit codes).
//!
//! The modules depend one way: [`run`] uses the others; [`experiment`] and [`halt`] use
//! [`plan`], [`scenario`] and [`faults`]; [`plan`] uses [`faults`]; [`scenario`] uses
//! [`compose`] and [`faults`]; [`faults`] uses [`sink`] only; [`sensors`] uses [`sink`].

pub mod compose;
pub mod exit;
pub mod experiment;
pub mod faults;
pub mod halt;
pub mod otlp;
pub mod plan;
pub mod replay;
pub mod run;
pub mod scenario;
pub mod sensors;
pub mod sink;

pub use sink::EventSink;
