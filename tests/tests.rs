//! Integration tests: each module runs the real `egressd` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

mod check;
mod completions;
mod dns;
mod docs;
mod explain;
mod firewall;
mod netns;
mod proxy;
mod run;
mod suggest;
mod tunnel;
