//! egressd's HTTP forward proxy (CONNECT tunnels and absolute-form requests), enforcing the policy
//! crate's decisions. Not built yet: this crate holds only what the workspace needs to build.
#![forbid(unsafe_code)]
