//! Fuzz target: any bytes (as lossy UTF-8) through the spec parser and checker. Must return a
//! spec or diagnostics, never panic, overflow the stack, or run away in time or memory.
//! Every crash found goes to `../regressions/spec_check/`, replayed by `tests/hardening.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::{compile, SourceFile};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = compile(&[SourceFile::new("fuzz.spec", text.as_ref())], &|_, _| None);
});
