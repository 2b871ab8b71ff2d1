//! The analyzer library: the `info`, `events` and `check` commands and their reporters. The `analyzer` binary is a thin shell over it.
