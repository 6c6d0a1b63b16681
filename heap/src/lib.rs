//! Memory back after a burst. glibc's malloc keeps what a burst of connections freed in its
//! arenas, below live allocations, and returns only the top of an arena to the system: after
//! 10,000 connections closed, egressd held 80 MiB it no longer used (docs/benchmarks.md, "Memory
//! after a burst"). [`release_free_memory`] asks the allocator to return it (`malloc_trim(0)` on
//! glibc; a no-op elsewhere), and [`Burst`] says when: once the number of open connections has
//! fallen well below its recent peak and stayed there a few seconds. Never on a request's path:
//! the caller polls [`Burst`] from a task of its own.
//!
//! This crate holds egressd's one `unsafe` call (the FFI call in `trim.rs`); the crate denies
//! `unsafe_code` and allows it on that one function. What it does not do: measure memory, or
//! choose an allocator.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod burst;
mod trim;

pub use burst::Burst;
pub use trim::release_free_memory;
