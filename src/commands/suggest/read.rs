//! Reading audit logs: plain files, `.gz` files (rotated logs compressed by logrotate), or `-`
//! for stdin; one JSON object a line. Every refusal by the policy becomes an [`Observation`].
//!
//! A line that is not a JSON object stops the run with FILE:LINE, since a log that is not what we
//! think it is would give a wrong policy; the one exception is a last line without its newline, a
//! line egressd is still writing in a live file, which is skipped with a warning. Lines of other
//! kinds (`lifecycle`, anything else) are skipped.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context, anyhow};
use audit::fields as f;
use policy::{DomainName, Host, Target};
use serde_json::{Map, Value};

use super::tally::{Class, Dest, Observation, Tally};
use crate::exit::Failure;

/// The `decision` values of a refusal: enforced, and (report mode) the refusal that would have
/// been made.
const REFUSED: [&str; 3] = ["deny", "would-deny", "would-refuse"];
const ERROR: &str = "error";

/// Reads one audit log into `tally`.
pub fn read(path: &Path, tally: &mut Tally) -> Result<(), Failure> {
    let name = path.display().to_string();
    let input: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = File::open(path)
            .with_context(|| format!("cannot read audit log {name}"))
            .map_err(Failure::bad_input)?;
        if name.ends_with(".gz") {
            Box::new(flate2::read::MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        }
    };
    let mut input = BufReader::new(input);
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let read = input
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read audit log {name}"))
            .map_err(Failure::bad_input)?;
        if read == 0 {
            break;
        }
        let complete = line.ends_with(b"\n");
        if line.trim_ascii().is_empty() {
            continue;
        }
        match serde_json::from_slice::<Value>(&line) {
            Ok(Value::Object(event)) => observe(&event, tally),
            Err(_) if !complete => {
                eprintln!("egressd: {name}:{number}: skipped a truncated last line");
            }
            Ok(_) => return Err(bad_line(&name, number, "a JSON value but not an object")),
            Err(e) => return Err(bad_line(&name, number, &e.to_string())),
        }
    }
    Ok(())
}

fn bad_line(name: &str, number: usize, why: &str) -> Failure {
    Failure::bad_input(anyhow!("{name}:{number}: not a JSON audit event: {why}"))
}

/// Counts one event; a refusal by the policy becomes an observation.
fn observe(event: &Map<String, Value>, tally: &mut Tally) {
    let text = |key: &str| event.get(key).and_then(Value::as_str).unwrap_or("");
    let message = text(f::MESSAGE);
    let (is_request, is_socks, is_dns) = (
        message == audit::Request::MESSAGE,
        message == audit::Socks::MESSAGE,
        message == audit::DnsQuery::MESSAGE,
    );
    // A SOCKS request names its destination as a CONNECT does (`host:port`).
    let (is_request, method) = match is_socks {
        true => (true, text(f::COMMAND)),
        false => (is_request, text(f::METHOD)),
    };
    if !is_request && !is_dns {
        return;
    }
    let time = humantime::parse_rfc3339_weak(text(f::TIMESTAMP)).ok();
    let sandbox = text(f::SANDBOX_ID);
    tally.saw(sandbox, time);
    let decision = text(f::DECISION);
    if decision == ERROR {
        tally.errors += 1;
    }
    if !REFUSED.contains(&decision) {
        return;
    }
    let port_only = text(f::REASON) == "port-not-allowed";
    let class = match text(f::REASON) {
        "default-deny" | "port-not-allowed" => Class::Open,
        "deny-rule" => Class::DenyRule(text(f::RULE).to_owned()),
        "special-range" => Class::SpecialRange,
        "malformed-target" => {
            tally.malformed += 1;
            return;
        }
        _ => {
            tally.other_refusals += 1;
            return;
        }
    };
    let destination = if is_request {
        request_destination(method, text(f::DESTINATION))
    } else {
        dns_destination(text(f::NAME))
    };
    let Some((dest, port)) = destination else {
        tally.malformed += 1;
        return;
    };
    let unresolved = if is_request {
        let status = event.get(f::STATUS).and_then(Value::as_u64).unwrap_or(0);
        matches!(status, 502 | 504) && text(f::RESOLVED).is_empty()
    } else {
        decision != "deny" && matches!(text(f::RCODE), "NXDOMAIN" | "SERVFAIL")
    };
    if let (true, Some(port)) = (port_only, port) {
        tally.port_refused.insert((dest.clone(), port));
    }
    tally.add(Observation {
        dest,
        port,
        class,
        sandbox: sandbox.to_owned(),
        time,
        unresolved,
    });
}

/// The CONNECT authority (`host:port`) or the absolute URL of a request.
fn request_destination(method: &str, destination: &str) -> Option<(Dest, Option<u16>)> {
    let target = if method.eq_ignore_ascii_case("CONNECT") {
        Target::parse_authority(destination).ok()?
    } else {
        Target::parse_loose(destination, 80).ok()?
    };
    let dest = match target.host {
        Host::Name(name) => Dest::Name(name),
        Host::Ip(ip) => Dest::Ip(ip),
        Host::Malformed(_) => return None,
    };
    Some((dest, Some(target.port)))
}

/// The name of a DNS query (written with its trailing dot).
fn dns_destination(name: &str) -> Option<(Dest, Option<u16>)> {
    DomainName::parse(name)
        .ok()
        .map(|name| (Dest::Name(name), None))
}
