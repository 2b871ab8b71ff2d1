//! Registration of the protocol sensors (JMX over Jolokia, HTTP, Prometheus, exec, pcap) with the
//! recorder's [`SensorRegistry`]. Owned by the sensors work: the sensors themselves live in
//! `src/sensors/` (built on the `sensors` crate), included here as a submodule so that the module
//! tree of `lib.rs` needs no change.

use crate::sensor::SensorRegistry;

#[path = "sensors/mod.rs"]
pub mod glue;

/// Adds every protocol sensor factory to the registry.
pub fn register(registry: &mut SensorRegistry) {
    glue::register(registry);
}
