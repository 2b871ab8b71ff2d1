//! The exit codes of both recorder commands (docs/exit-codes.md is the contract). Every error
//! type of the recorder maps to one of these through its `exit_code()`.

pub const ACCEPT: i32 = 0;
pub const FAIL: i32 = 1;
pub const INCONCLUSIVE: i32 = 2;
pub const BAD_SCENARIO: i32 = 3;
pub const TRACE: i32 = 4;
pub const ENV: i32 = 5;
pub const HALTED: i32 = 6;
pub const USAGE: i32 = 64;
pub const INTERRUPTED: i32 = 130;
