//! Any policy text: parsed or refused with positioned errors, never a panic; a parsed policy
//! decides any target without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policy::{Policy, Target};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (policy_text, target) = text
        .split_once('\u{1}')
        .unwrap_or((text, "example.com:443"));
    match Policy::parse(policy_text, "fuzz.toml") {
        Ok(policy) => {
            let decision = policy.decide(&Target::new(target, 443));
            let _ = policy.check_resolved(&decision, "10.0.0.1".parse().expect("valid"), 443);
        }
        Err(errors) => {
            for e in &errors.0 {
                assert!(e.line >= 1 && e.column >= 1);
            }
        }
    }
});
