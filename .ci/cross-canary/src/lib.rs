//! The canary of `.ci/cross-check`: this branch is compiled only for targets other than Linux, and
//! it does not type-check. A cross-check that passed it would not be checking those branches.

/// Planted: a string where a number is due.
#[cfg(not(target_os = "linux"))]
pub fn planted() -> u32 {
    "egressd-cross-canary"
}

/// The Linux twin, which compiles.
#[cfg(target_os = "linux")]
pub fn planted() -> u32 {
    0
}
