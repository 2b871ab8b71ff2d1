//! The exit codes of `docs/exit-codes.md`, shared by every command.

/// Success; every judged monitor accepted.
pub const OK: i32 = 0;
/// A verdict is fail.
pub const FAIL: i32 = 1;
/// A verdict is inconclusive (and none failed).
pub const INCONCLUSIVE: i32 = 2;
/// Bad specification or scenario.
pub const BAD_SPEC: i32 = 3;
/// Unreadable trace: no such directory, not a trace, corrupt or truncated file, newer version.
pub const UNREADABLE_TRACE: i32 = 4;
/// Environment or runtime error (e.g. an output file cannot be written).
pub const RUNTIME: i32 = 5;
/// Bad command-line arguments.
pub const USAGE: i32 = 64;
/// Interrupted (Ctrl-C).
pub const INTERRUPTED: i32 = 130;
