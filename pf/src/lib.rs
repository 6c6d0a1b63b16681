//! Host firewall rules (macOS pf anchors, Linux nftables) generated from a policy. Not built yet:
//! this crate holds only what the workspace needs to build.
#![forbid(unsafe_code)]
