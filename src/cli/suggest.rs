//! `egressd suggest`'s flags.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct SuggestArgs {
    /// Audit logs to read (JSON lines; `-` is stdin; a name ending in .gz is read as gzip).
    /// Rotated files are read like any other: pass them all.
    #[arg(required = true, value_name = "AUDIT.jsonl")]
    pub audit: Vec<PathBuf>,
    /// The policy in force: the output is this policy's text with the new rules appended, and
    /// nothing it already allows is suggested again.
    #[arg(long, value_name = "CURRENT.toml")]
    pub policy: Option<PathBuf>,
    /// Leave out destinations refused fewer than N times.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub min_count: u64,
    /// Suggest one `*.DOMAIN` wildcard for N or more names below one registrable domain (from the
    /// Public Suffix List); 0 never groups.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub group: usize,
}
