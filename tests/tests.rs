//! Integration tests: each module runs the real `egressd` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

mod check;
mod dns;
mod docs;
mod edges;
mod explain;
mod faults;
mod firewall;
mod netns;
mod proxy;
mod run;
mod tunnel;
