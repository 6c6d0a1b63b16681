//! `egressd completions` and `egressd man`: shell completion scripts and the man page, both
//! generated from the clap definitions that `--help` prints, so none of the three can drift from
//! the others. Nothing here is written by hand but the page's layout.

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::exit::{Exit, Failure};

/// The files egressd reads and writes, for the man page's FILES section: (file, what).
const FILES: &[(&str, &str)] = &[
    (
        "POLICY.toml",
        "the policy (--policy): read at start and again on SIGHUP; `egressd check` validates it, \
         `egressd check --print-schema` prints its JSON Schema",
    ),
    (
        "the ready file",
        "the readiness JSON (--ready-file), mode 0600, written aside then renamed, removed at exit",
    ),
    (
        "the audit log",
        "one JSON event a line (--audit-log), appended; `egressd suggest` reads it back",
    ),
    (
        "the proxy credential file",
        "the sandbox's proxy secret (--proxy-credential-file), read once at start",
    ),
    (
        "the Unix sockets",
        "--proxy-unix and --dns-unix: created at start (mode --proxy-unix-mode), removed at exit",
    ),
    (
        "the inspection CA",
        "--inspect-ca-cert and --inspect-ca-key: the CA that signs inspected hosts' certificates",
    ),
    (
        "/usr/local/share/man/man1/egressd.1",
        "where `egressd man` output is usually installed",
    ),
];

/// Other pages and documents, for SEE ALSO.
const SEE_ALSO: &str = "\\fBpfctl\\fR(8), \\fBnft\\fR(8), \\fBsandbox\\-exec\\fR(1), \\fBcurl\\fR(1); \
    in egressd's source: docs/launcher.md (the launcher contract), docs/policy.md (the policy \
    reference), docs/report\\-mode.md (from report mode to a policy), docs/pf.md, docs/dns.md, \
    docs/tls.md, docs/threat\\-model.md";

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
    writeln!(out, ".SH NAME\n{}", name_line(command))?;
    for heading in ["SYNOPSIS", "DESCRIPTION"] {
        writeln!(out, ".SH {heading}")?;
        out.extend(body(|w| match heading {
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
    writeln!(out, ".SH \"EXIT STATUS\"")?;
    for exit in Exit::ALL {
        writeln!(out, ".TP\n{}\n{}", exit as u8, roff(exit.meaning()))?;
    }
    writeln!(out, ".SH ENVIRONMENT")?;
    writeln!(
        out,
        "Every flag of \\fBegressd run\\fR can be set through its variable; a flag on the \
         command line wins."
    )?;
    for (var, sub, flag, help) in environment(command) {
        writeln!(
            out,
            ".TP\n\\fB{}\\fR\n\\fB\\-\\-{}\\fR of \\fBegressd {sub}\\fR: {}",
            roff(&var),
            roff(&flag),
            roff(&help)
        )?;
    }
    writeln!(out, ".SH FILES")?;
    for (file, what) in FILES {
        writeln!(out, ".TP\n\\fI{}\\fR\n{}", roff(file), roff(what))?;
    }
    writeln!(out, ".SH \"SEE ALSO\"\n{SEE_ALSO}")?;
    writeln!(out, ".SH VERSION")?;
    out.extend(body(|w| top.render_version_section(w))?);
    Ok(out)
}

/// `egressd \- what it is`: the about line without the name clap's doc comment starts it with.
fn name_line(command: &clap::Command) -> String {
    let about = command
        .get_about()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let about = about
        .strip_prefix(&format!("{BIN}:"))
        .unwrap_or(&about)
        .trim()
        .trim_end_matches('.');
    format!("{BIN} \\- {}", roff(about))
}

/// Every `EGRESSD_*` variable a flag reads: (variable, subcommand, flag, the help's first line).
fn environment(command: &clap::Command) -> Vec<(String, String, String, String)> {
    command
        .get_subcommands()
        .flat_map(|sub| {
            sub.get_arguments().filter_map(|arg| {
                let var = arg.get_env()?.to_string_lossy().into_owned();
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                let first = help.split(". ").next().unwrap_or("").trim_end_matches('.');
                Some((
                    var,
                    sub.get_name().to_owned(),
                    arg.get_long()?.to_owned(),
                    first.to_owned(),
                ))
            })
        })
        .collect()
}

/// Text as roff: backslashes and hyphens escaped, and a line never starts with a control
/// character.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
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
