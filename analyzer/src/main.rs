//! The `analyzer` command line: a thin shell over the analyzer library.

fn main() {}
