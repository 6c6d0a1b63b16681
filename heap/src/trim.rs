//! The allocator call: `malloc_trim(0)` on glibc, nothing elsewhere.

/// Returns the allocator's free memory to the system: every arena's free pages, not only the top
/// of each (glibc's `malloc_trim(0)`, which `free` never does by itself). True if memory was
/// returned. It walks every arena under its lock, so allocations wait meanwhile: call it rarely,
/// off the request path ([`crate::Burst`] says when). Elsewhere than Linux with glibc: does
/// nothing and returns false (other allocators return memory on their own, or have no call).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_memory() -> bool {
    // SAFETY: `malloc_trim` takes a padding size by value and touches only the allocator's own
    // state, under the allocator's locks (glibc's malloc is thread-safe; the call is documented
    // as safe to make at any time from any thread). It reads and writes no memory of ours, and
    // the global allocator is the system's malloc: this crate sets no `#[global_allocator]`, and
    // neither does the binary.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Does nothing: see the Linux/glibc build.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_memory_freed_below_memory_in_use_and_keeps_what_is_in_use() {
        // Interleaved, so that what is freed lies in holes below live blocks, the memory `free`
        // alone never gives back (64 KiB blocks come from the heap, not from mmap).
        let mut kept = Vec::new();
        let mut freed = Vec::new();
        for i in 0..64u8 {
            kept.push(vec![i | 1; 64 * 1024]);
            freed.push(vec![i | 1; 64 * 1024]);
        }
        drop(freed);
        let released = release_free_memory();
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert!(released, "glibc returned none of 4 MiB freed in holes");
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        assert!(!released);
        assert!(
            kept.iter()
                .enumerate()
                .all(|(i, v)| v.iter().all(|&b| usize::from(b) == (i | 1)))
        );
    }
}
