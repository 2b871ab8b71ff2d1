//! The one integration-test binary (ripgrep style): every end-to-end test lives in a module here.
mod check_cli;
mod demo_cluster;
mod demo_e2e;
mod faults;
mod recorder_common;
mod recorder_experiment_offline;
mod recorder_logs;
mod recorder_network;
mod recorder_teardown;
mod sensors_docker;
mod syscall_faults;
mod trace_cli;
mod trace_compat;
mod trace_sigkill;
