//! Integration tests: each module runs the real `egressd` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

mod audit_disk;
mod check;
mod completions;
mod credential;
mod dns;
mod docs;
mod edges;
mod explain;
mod faults;
mod firewall;
mod forwarding;
mod inspect;
mod inspect_h2;
mod inspect_websocket;
mod jobs;
mod launcher;
mod memory;
mod metrics;
mod netns;
mod proxy;
mod refusal;
mod report;
mod roundtrip;
mod run;
mod socks;
mod suggest;
mod tunnel;
