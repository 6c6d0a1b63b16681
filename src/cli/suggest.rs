//! `egressd suggest`'s flags.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct SuggestArgs {
    /// Audit logs to read (JSON lines; `-` is stdin; a name ending in .gz is read as gzip).
    /// Rotated files are read like any other: pass them all.
    #[arg(required = true, value_name = "AUDIT.jsonl")]
    pub audit: Vec<PathBuf>,
    /// The policy in force: the output is the whole next policy (this policy's text with the new
    /// rules appended), and nothing it already allows is suggested again. Without it, the output
    /// holds only what was refused, and says what it left out.
    #[arg(long, value_name = "CURRENT.toml")]
    pub policy: Option<PathBuf>,
    /// Leave out destinations refused fewer than N times.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub min_count: u64,
    /// Opt in to wildcards: one `*.DOMAIN` rule for N or more names below one registrable domain
    /// (from the Public Suffix List) refused on the same ports. A wildcard allows every other name
    /// below the domain too; its comment says so. 0 (the default) suggests exact names only.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub group: usize,
}
