//! `egressd`: the egress-control sidecar's command line. Thin wiring only: parse flags, load the
//! policy, hand off to the crate that does the work, and map the outcome to an exit code.
#![forbid(unsafe_code)]

mod app;
mod cli;
mod commands;
mod exit;
mod input_file;
mod load;
mod logging;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::parse();
    match commands::run(cli) {
        Ok(code) => code.into(),
        Err(failure) => {
            eprintln!("egressd: {:#}", failure.error);
            failure.code.into()
        }
    }
}
