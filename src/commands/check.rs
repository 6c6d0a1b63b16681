//! `egressd check`: validate a policy, or print the built-in one or the policy file's JSON Schema.

use crate::cli::CheckArgs;
use crate::exit::{Exit, Failure};
use crate::load;

pub fn run(args: &CheckArgs) -> Result<Exit, Failure> {
    if args.print_default {
        print!("{}", policy::BUILTIN_POLICY);
        return Ok(Exit::Ok);
    }
    if args.print_schema {
        print!("{}", policy::json_schema());
        return Ok(Exit::Ok);
    }
    let policy = load::policy(args.policy.as_deref())?;
    println!(
        "{}: ok: {} allow, {} deny, {} carve-out rules; default {} on ports {}; {} mode; sha256 {}",
        policy.origin(),
        policy.allow_rules().len(),
        policy.deny_rules().len(),
        policy.carve_outs().len(),
        policy.default_action(),
        policy.default_ports(),
        policy.mode(),
        policy.digest(),
    );
    Ok(Exit::Ok)
}
