//! Fuzz target: the event-log reader. The first byte picks a mode: even, the rest of the input is
//! the whole `events.arrows` file (framing, checksums, tails, v1 streams); odd, the rest is a list
//! of `u16`-length-prefixed payloads framed with valid checksums, so the Arrow IPC decoding of a
//! record that passes its checksum is fuzzed too. The trace is opened and read in full, and with
//! bit 1 of the mode also finalized (with bit 2: `--repair`). Must give events or an error, never
//! panic or allocate without bound. Crashes go to `../regressions/event_log/`, replayed by
//! `trace/tests/fuzz_regressions.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trace::testing::framed_log;

/// The trace crate turns arrow's and parquet's panics on malformed data into errors
/// (`catch_unwind`); libFuzzer's panic hook would abort on those caught panics, so the default
/// hook is put back. A panic that escapes the target still aborts (libfuzzer-sys does that).
static HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| drop(std::panic::take_hook()));
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let bytes = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        framed_log(rest)
    };
    if std::fs::write(dir.path().join("manifest.json"), br#"{"format_version":2}"#).is_err()
        || std::fs::write(dir.path().join("events.arrows"), &bytes).is_err()
    {
        return;
    }
    if let Ok(t) = trace::Trace::open(dir.path()) {
        if let Ok(s) = t.events(&trace::ReadOptions::default()) {
            for b in s {
                let Ok(b) = b else { break };
                for e in b.iter() {
                    std::hint::black_box(e);
                }
            }
        }
    }
    if mode & 2 != 0 {
        let opts = trace::finalize::FinalizeOptions {
            repair: mode & 4 != 0,
        };
        if trace::finalize::finalize_with(dir.path(), opts).is_ok() {
            if let Ok(t) = trace::Trace::open(dir.path()) {
                if let Ok(s) = t.events(&trace::ReadOptions::default()) {
                    for b in s {
                        let _ = std::hint::black_box(b.map(|b| b.len()));
                    }
                }
            }
        }
    }
});
