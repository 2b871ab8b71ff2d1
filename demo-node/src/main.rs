//! The demo node: one static binary for the images the tests and the demo run.

fn main() {}
