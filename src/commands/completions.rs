//! `egressd completions` and `egressd man`: shell completion scripts and the man page, both
//! generated from the clap definitions that `--help` prints, so none of the three can drift from
//! the others. Nothing here is written by hand but the page's layout.

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::exit::{Exit, Failure};

const BIN: &str = "egressd";

pub fn completions(args: &CompletionsArgs) -> Result<Exit, Failure> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, BIN, &mut out);
    emit(&out)
}

/// One page, egressd(1): the top-level sections, then one section per subcommand with its
/// synopsis, description and options (clap_mangen's own layout is one page per subcommand; one
/// page is one file to install and one `man egressd` to read).
pub fn man() -> Result<Exit, Failure> {
    let mut command = Cli::command().disable_help_subcommand(true);
    // Building fills in the bin names ("egressd run") that the synopses print.
    command.build();
    // Rendering writes into a Vec, which cannot fail.
    #[allow(clippy::expect_used)]
    let page = render(&command).expect("rendering into memory");
    emit(&page)
}

fn render(command: &clap::Command) -> std::io::Result<Vec<u8>> {
    let top = clap_mangen::Man::new(command.clone());
    let mut out = Vec::new();
    top.render_title(&mut out)?;
    for heading in ["NAME", "SYNOPSIS", "DESCRIPTION"] {
        writeln!(out, ".SH {heading}")?;
        out.extend(body(|w| match heading {
            "NAME" => top.render_name_section(w),
            "SYNOPSIS" => top.render_synopsis_section(w),
            _ => top.render_description_section(w),
        })?);
    }
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = clap_mangen::Man::new(sub.clone());
        let name = format!("{BIN} {}", sub.get_name()).to_uppercase();
        writeln!(out, ".SH \"{name}\"")?;
        out.extend(body(|w| man.render_synopsis_section(w))?);
        writeln!(out, ".PP")?;
        out.extend(body(|w| man.render_description_section(w))?);
        writeln!(out, ".SS OPTIONS")?;
        out.extend(body(|w| man.render_options_section(w))?);
    }
    writeln!(out, ".SH VERSION")?;
    out.extend(body(|w| top.render_version_section(w))?);
    Ok(out)
}

/// A section rendered by clap_mangen without its `.SH` heading (and without the apostrophe
/// preamble every fragment starts with, written once with the title), so it can be placed under
/// a heading of ours.
fn body(render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> std::io::Result<Vec<u8>> {
    let mut fragment = Vec::new();
    render(&mut fragment)?;
    let text = String::from_utf8_lossy(&fragment);
    let mut out = Vec::new();
    for line in text
        .lines()
        .skip_while(|l| l.starts_with(".ie ") || l.starts_with(".el ") || l.starts_with(".SH "))
    {
        writeln!(out, "{line}")?;
    }
    Ok(out)
}

fn emit(bytes: &[u8]) -> Result<Exit, Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
        .map_err(Failure::bad_input)?;
    Ok(Exit::Ok)
}
