//! The `recorder` command line: a thin shell over the recorder library.

fn main() {}
