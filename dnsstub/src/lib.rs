//! egressd's DNS stub: REFUSED for every name the policy does not allow. Not built yet: this crate
//! holds only what the workspace needs to build.
#![forbid(unsafe_code)]
