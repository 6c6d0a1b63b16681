//! Reading a policy file: TOML into raw structs that keep every value's position, then validation
//! into a [`Policy`], collecting every error rather than stopping at the first.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{ErrorKind, LineIndex, PolicyError, PolicyErrors};
use crate::headers::{HeaderTemplate, check_name, is_token};
use crate::inspect::{
    CredentialRule, Inspection, PathGlob, ValueSource, check_placeholder, covers,
};
use crate::model::{
    Action, DnsSettings, HostIndex, Matcher, Mode, Policy, Rule, RuleKind, sha256_hex,
};
use crate::name::{DomainName, HostPattern};
use crate::ports::{PortItem, PortSet, PortsError};

/// Narrowest carve-outs allowed: a carve-out names hosts or a subnet, not a whole private range.
const CARVE_OUT_MIN_PREFIX_V4: u8 = 16;
const CARVE_OUT_MIN_PREFIX_V6: u8 = 48;
/// Longest `defaults.deny_message`, in characters: a few lines for a person, not a page.
pub(crate) const DENY_MESSAGE_MAX: usize = 1000;
/// DNS port used when an upstream is written without one.
const DNS_PORT: u16 = 53;

// The raw structs are also the JSON Schema of the file (`crate::schema`, feature `schema`): their
// doc comments become its descriptions, and every `Spanned` field names its plain type for it.

/// An egressd policy file (docs/policy.md).
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    /// Format version. Must be 1.
    #[cfg_attr(feature = "schema", schemars(with = "i64", extend("const" = 1)))]
    version: Spanned<i64>,
    /// The default action and ports.
    #[serde(default)]
    defaults: RawDefaults,
    /// Destinations that may be reached.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(schema_with = "allow_schema"))]
    allow: Vec<RawRule>,
    /// Destinations that may not, whatever the allow rules say. Without `ports`: every port.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(schema_with = "deny_schema"))]
    deny: Vec<RawRule>,
    /// Opens one special-range network (`cidr`, at most /16 or /48) on explicitly listed ports.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(schema_with = "carve_out_schema"))]
    danger_carve_out: Vec<RawRule>,
    /// Attribution headers the proxy sets: name = value template (`{sandbox_id}`).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "BTreeMap<String, String>"))]
    headers: BTreeMap<String, Spanned<String>>,
    /// DNS settings.
    #[serde(default)]
    dns: RawDns,
    #[serde(default)]
    credential: Vec<RawCredential>,
}

/// What happens to destinations no rule names.
#[derive(Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    /// What happens to a destination no rule names (default "deny").
    action: Option<Action>,
    /// Ports for allow rules without `ports`, and for the default action (default [80, 443]).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::ports"))]
    ports: Option<Spanned<toml::Value>>,
    /// "enforce" (default): refuse what the policy does not allow. "report": let it through and
    /// audit it as would-deny / would-refuse; special ranges and malformed targets stay refused.
    #[cfg_attr(feature = "schema", schemars(with = "Option<Mode>"))]
    mode: Option<Spanned<String>>,
    /// Your own text, shown in the body of every refusal after egressd's lines (who to ask, a
    /// ticket link). Plain text, at most 1000 characters.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::schema::deny_message")
    )]
    deny_message: Option<Spanned<String>>,
    /// Answer a refused CONNECT to any name inside TLS (a leaf from egressd's CA, then the 403),
    /// not only to names an `inspect = true` rule covers. Needs egressd's CA; clients that do not
    /// trust it show a certificate error instead of the refusal. Default false.
    refusals_inside_tls: Option<bool>,
}

/// A rule: exactly one of `host` or `cidr`, and optionally `ports` and `comment`.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(extend("oneOf" = [{"required": ["host"]}, {"required": ["cidr"]}])))]
#[serde(deny_unknown_fields)]
struct RawRule {
    /// A name ("github.com") or every name strictly below a suffix ("*.github.com").
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::host"))]
    host: Option<Spanned<String>>,
    /// An IPv4 or IPv6 network ("140.82.112.0/20"); a bare address is a /32 or /128.
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    cidr: Option<Spanned<String>>,
    /// Ports: "any", a number, or a list of numbers and "LOW-HIGH" ranges.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::ports"))]
    ports: Option<Spanned<toml::Value>>,
    /// Terminate TLS to this host (allow host rules only; docs/tls.md).
    #[cfg_attr(feature = "schema", schemars(with = "Option<bool>"))]
    inspect: Option<Spanned<bool>>,
    /// With `inspect`: the HTTP methods each request must use ("GET", ...).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::methods"))]
    methods: Option<Spanned<Vec<Spanned<String>>>>,
    /// With `inspect`: path globs each request must match ("*" matches any run, "/" included).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::paths"))]
    paths: Option<Spanned<Vec<Spanned<String>>>>,
    /// Allow rules only: a wildcard over a public suffix (`*.com`, `*.co.uk`, `*.github.io`) is
    /// refused unless this is true: every name below it belongs to someone else.
    #[cfg_attr(feature = "schema", schemars(with = "Option<bool>"))]
    danger_public_suffix_wildcard: Option<Spanned<bool>>,
    /// Free text for the humans who read the policy; egressd ignores it.
    #[serde(default, rename = "comment")]
    _comment: Option<String>,
}

/// A brokered credential: on requests to `host` (an inspected rule's), the `placeholder` in
/// `header` is replaced with the real value read from `value_file` or `value_env` (docs/tls.md).
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(extend("oneOf" = [{"required": ["value_file"]}, {"required": ["value_env"]}])))]
#[serde(deny_unknown_fields)]
struct RawCredential {
    /// The host (exact or wildcard) of an inspected allow rule.
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    host: Spanned<String>,
    /// The header whose value is swapped ("Authorization").
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    header: Spanned<String>,
    /// The value the sandbox is given and sends: at least 8 visible ASCII characters.
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::schema::placeholder")
    )]
    placeholder: Spanned<String>,
    /// A file egressd reads the real value from, at start and on reload.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<String>", regex(pattern = r"\S"))
    )]
    value_file: Option<Spanned<String>>,
    /// An environment variable of egressd's holding the real value.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<String>", regex(pattern = r"^[^=\x00]+$"))
    )]
    value_env: Option<Spanned<String>>,
    #[serde(default, rename = "comment")]
    _comment: Option<String>,
}

/// DNS settings.
#[derive(Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawDns {
    /// Resolvers for allowed names: "IP", "IP:PORT" or "[IPv6]:PORT" (default port 53).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
    upstreams: Vec<Spanned<String>>,
    /// Names answered locally, never sent upstream: name = list of IP addresses.
    #[serde(default, rename = "static")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::schema::static_records")
    )]
    static_records: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
}

/// `[[allow]]`, `[[deny]]` and `[[danger_carve_out]]` share [`RawRule`]; each table's schema
/// adds what its kind of rule may not hold.
#[cfg(feature = "schema")]
fn allow_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    crate::schema::rules(generator.subschema_for::<RawRule>(), RuleKind::Allow)
}

#[cfg(feature = "schema")]
fn deny_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    crate::schema::rules(generator.subschema_for::<RawRule>(), RuleKind::Deny)
}

#[cfg(feature = "schema")]
fn carve_out_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    crate::schema::rules(generator.subschema_for::<RawRule>(), RuleKind::CarveOut)
}

/// The JSON Schema of the policy file, generated from [`RawPolicy`].
#[cfg(feature = "schema")]
pub(crate) fn schema(generator: schemars::SchemaGenerator) -> schemars::Schema {
    generator.into_root_schema_for::<RawPolicy>()
}

/// Collects errors with positions.
struct Errors<'a> {
    origin: &'a str,
    index: LineIndex<'a>,
    list: Vec<PolicyError>,
}

impl<'a> Errors<'a> {
    fn push(&mut self, span: Range<usize>, kind: ErrorKind) {
        let (line, column) = self.index.position(span.start);
        self.list.push(PolicyError {
            origin: self.origin.to_owned(),
            line,
            column,
            kind,
        });
    }

    fn line(&self, span: &Range<usize>) -> usize {
        self.index.position(span.start).0
    }
}

pub(crate) fn parse(text: &str, origin: &str) -> Result<Policy, PolicyErrors> {
    let mut errors = Errors {
        origin,
        index: LineIndex::new(text),
        list: Vec::new(),
    };
    let raw: RawPolicy = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let mut message = e.message().trim().to_owned();
            if message == "missing field `version`" {
                message.push_str("; a policy starts with `version = 1`");
            }
            errors.push(e.span().unwrap_or(0..0), ErrorKind::Toml(message));
            return Err(PolicyErrors(errors.list));
        }
    };
    if *raw.version.get_ref() != 1 {
        errors.push(
            raw.version.span(),
            ErrorKind::Version(*raw.version.get_ref()),
        );
    }
    let default_ports = match &raw.defaults.ports {
        Some(ports) => ports_value(ports, &mut errors).unwrap_or(PortSet::Any),
        None => PortSet::web(),
    };
    let mode = match &raw.defaults.mode {
        None => Mode::Enforce,
        Some(text) => Mode::parse(text.get_ref()).unwrap_or_else(|| {
            errors.push(text.span(), ErrorKind::Mode(text.get_ref().clone()));
            Mode::Enforce
        }),
    };
    let deny_message =
        raw.defaults.deny_message.as_ref().and_then(|text| {
            match deny_message_problem(text.get_ref()) {
                None => Some(text.get_ref().clone()),
                Some(problem) => {
                    errors.push(text.span(), ErrorKind::DenyMessage(problem));
                    None
                }
            }
        });
    let allow = rules(&raw.allow, RuleKind::Allow, &default_ports, &mut errors);
    let deny = rules(&raw.deny, RuleKind::Deny, &PortSet::Any, &mut errors);
    let carve_outs = rules(
        &raw.danger_carve_out,
        RuleKind::CarveOut,
        &PortSet::Any,
        &mut errors,
    );
    let headers = raw
        .headers
        .iter()
        .filter_map(
            |(name, value)| match HeaderTemplate::parse(name, value.get_ref()) {
                Ok(header) => Some(header),
                Err(e) => {
                    errors.push(value.span(), ErrorKind::Header(e));
                    None
                }
            },
        )
        .collect();
    let dns = dns(&raw.dns, &mut errors);
    let credentials = credentials(&raw.credential, &allow, &mut errors);
    if !errors.list.is_empty() {
        errors.list.sort_by_key(|e| (e.line, e.column));
        return Err(PolicyErrors(errors.list));
    }
    Ok(Policy {
        origin: origin.to_owned(),
        digest: sha256_hex(text),
        default_action: raw.defaults.action.unwrap_or(Action::Deny),
        default_ports,
        mode,
        deny_message,
        refusals_inside_tls: raw.defaults.refusals_inside_tls.unwrap_or(false),
        allow_index: HostIndex::build(&allow),
        deny_index: HostIndex::build(&deny),
        allow,
        deny,
        carve_outs,
        headers,
        dns,
        credentials,
    })
}

/// What is wrong with a `deny_message`, if anything: it is shown to people as plain text, so no
/// control characters but newlines and tabs, not empty, and short.
fn deny_message_problem(text: &str) -> Option<&'static str> {
    if text.trim().is_empty() {
        Some("it is empty; leave the key out for none")
    } else if text.chars().count() > DENY_MESSAGE_MAX {
        Some("it is longer than 1000 characters")
    } else if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        Some("it holds a control character (only newlines and tabs are allowed)")
    } else {
        None
    }
}

fn rules(
    raw: &[RawRule],
    kind: RuleKind,
    default_ports: &PortSet,
    errors: &mut Errors<'_>,
) -> Vec<Arc<Rule>> {
    let mut out = Vec::with_capacity(raw.len());
    for (index, rule) in raw.iter().enumerate() {
        let (matcher, span) = match (&rule.host, &rule.cidr, kind) {
            (Some(host), None, RuleKind::CarveOut) => {
                errors.push(host.span(), ErrorKind::CarveOutHost);
                continue;
            }
            (Some(host), None, _) => match HostPattern::parse(host.get_ref()) {
                Ok(pattern) => (Matcher::Host(pattern), host.span()),
                Err(error) => {
                    errors.push(
                        host.span(),
                        ErrorKind::Host {
                            pattern: host.get_ref().clone(),
                            error,
                        },
                    );
                    continue;
                }
            },
            (None, Some(cidr), _) => match cidr_value(cidr, errors) {
                Some(net) => (Matcher::Cidr(net), cidr.span()),
                None => continue,
            },
            (host, cidr, _) => {
                // Point at whichever key is present, or at the rule's ports if neither is.
                let span = host
                    .as_ref()
                    .map(Spanned::span)
                    .or_else(|| cidr.as_ref().map(Spanned::span))
                    .or_else(|| rule.ports.as_ref().map(Spanned::span))
                    .unwrap_or(0..0);
                errors.push(span, ErrorKind::RuleShape);
                continue;
            }
        };
        let ports = match (&rule.ports, kind) {
            (Some(ports), _) => match ports_value(ports, errors) {
                Some(PortSet::Any) if kind == RuleKind::CarveOut => {
                    errors.push(ports.span(), ErrorKind::CarveOutPorts);
                    continue;
                }
                Some(set) => set,
                None => continue,
            },
            (None, RuleKind::CarveOut) => {
                errors.push(span, ErrorKind::CarveOutPorts);
                continue;
            }
            (None, _) => default_ports.clone(),
        };
        if let (RuleKind::CarveOut, Matcher::Cidr(net)) = (kind, &matcher)
            && !carve_out_is_valid(*net, &span, errors)
        {
            continue;
        }
        if !public_suffix_allowed(rule, kind, &matcher, &span, errors) {
            continue;
        }
        let Ok(inspect) = inspection(rule, kind, &matcher, errors) else {
            continue;
        };
        out.push(Arc::new(Rule {
            kind,
            index,
            line: errors.line(&span),
            matcher,
            ports,
            inspect,
        }));
    }
    out
}

/// False (an error recorded) for an `[[allow]]` wildcard whose suffix is a public suffix of the
/// Public Suffix List (compiled in: `psl`) without `danger_public_suffix_wildcard = true`, and for
/// that key on a rule it does not apply to. A suffix the list does not know (`*.test`,
/// `*.internal`) is not refused: the list's implicit `*` rule says nothing about who owns it.
/// Deny rules may use any wildcard: refusing more is never a widening.
fn public_suffix_allowed(
    rule: &RawRule,
    kind: RuleKind,
    matcher: &Matcher,
    span: &Range<usize>,
    errors: &mut Errors<'_>,
) -> bool {
    let suffix = match (kind, matcher) {
        (RuleKind::Allow, Matcher::Host(HostPattern::Below(suffix))) => suffix,
        _ => {
            if let Some(key) = &rule.danger_public_suffix_wildcard {
                errors.push(key.span(), ErrorKind::PublicSuffixKeyMisplaced);
                return false;
            }
            return true;
        }
    };
    let meant = rule
        .danger_public_suffix_wildcard
        .as_ref()
        .is_some_and(|on| *on.get_ref());
    if !meant && is_public_suffix(suffix.as_str()) {
        let suffix = suffix.as_str().to_owned();
        errors.push(span.clone(), ErrorKind::PublicSuffixWildcard { suffix });
        return false;
    }
    true
}

/// True when `name` is itself a public suffix the list names (ICANN or private section).
pub(crate) fn is_public_suffix(name: &str) -> bool {
    psl::suffix(name.as_bytes()).is_some_and(|s| s.is_known() && s.as_bytes() == name.as_bytes())
}

/// A rule's `inspect`, `methods` and `paths`: only on `[[allow]]` host rules, and the request
/// rules only with `inspect = true`. `Err` when an error was recorded.
fn inspection(
    rule: &RawRule,
    kind: RuleKind,
    matcher: &Matcher,
    errors: &mut Errors<'_>,
) -> Result<Option<Inspection>, ()> {
    let present: Vec<(&'static str, Range<usize>)> = [
        ("inspect", rule.inspect.as_ref().map(Spanned::span)),
        ("methods", rule.methods.as_ref().map(Spanned::span)),
        ("paths", rule.paths.as_ref().map(Spanned::span)),
    ]
    .into_iter()
    .filter_map(|(key, span)| span.map(|span| (key, span)))
    .collect();
    let Some((key, span)) = present.first().cloned() else {
        return Ok(None);
    };
    if kind != RuleKind::Allow {
        errors.push(
            span,
            ErrorKind::InspectNotAllow {
                key,
                table: kind.table(),
            },
        );
        return Err(());
    }
    if let Matcher::Cidr(_) = matcher {
        errors.push(span, ErrorKind::InspectCidr { key });
        return Err(());
    }
    if !rule.inspect.as_ref().is_some_and(|on| *on.get_ref()) {
        let mut failed = false;
        for (key, span) in present.into_iter().filter(|(key, _)| *key != "inspect") {
            errors.push(span, ErrorKind::RequestRuleWithoutInspect { key });
            failed = true;
        }
        return if failed { Err(()) } else { Ok(None) };
    }
    let before = errors.list.len();
    let mut inspection = Inspection::default();
    if let Some(methods) = &rule.methods {
        if methods.get_ref().is_empty() {
            let (key, what) = ("methods", "method");
            errors.push(methods.span(), ErrorKind::EmptyList { key, what });
        }
        for method in methods.get_ref() {
            let text = method.get_ref();
            if is_token(text) && !text.bytes().any(|b| b.is_ascii_lowercase()) {
                inspection.methods.push(text.clone());
            } else {
                errors.push(method.span(), ErrorKind::Method(text.clone()));
            }
        }
    }
    if let Some(paths) = &rule.paths {
        if paths.get_ref().is_empty() {
            let (key, what) = ("paths", "path");
            errors.push(paths.span(), ErrorKind::EmptyList { key, what });
        }
        for path in paths.get_ref() {
            match PathGlob::parse(path.get_ref()) {
                Ok(glob) => inspection.paths.push(glob),
                Err(error) => errors.push(
                    path.span(),
                    ErrorKind::PathGlob {
                        glob: path.get_ref().clone(),
                        error,
                    },
                ),
            }
        }
    }
    if errors.list.len() > before {
        return Err(());
    }
    Ok(Some(inspection))
}

/// The `[[credential]]` list: each host covered by an inspected allow rule, a header the policy
/// may set, a usable placeholder, and exactly one value source.
fn credentials(
    raw: &[RawCredential],
    allow: &[Arc<Rule>],
    errors: &mut Errors<'_>,
) -> Vec<Arc<CredentialRule>> {
    let mut out: Vec<Arc<CredentialRule>> = Vec::with_capacity(raw.len());
    for (index, credential) in raw.iter().enumerate() {
        let before = errors.list.len();
        let host_text = credential.host.get_ref();
        let host = match HostPattern::parse(host_text) {
            Ok(pattern) => Some(pattern),
            Err(error) => {
                let pattern = host_text.clone();
                errors.push(credential.host.span(), ErrorKind::Host { pattern, error });
                None
            }
        };
        if let Some(host) = &host {
            let inspected = allow
                .iter()
                .any(|rule| match (&rule.matcher, &rule.inspect) {
                    (Matcher::Host(pattern), Some(_)) => covers(pattern, host),
                    _ => false,
                });
            if !inspected {
                errors.push(
                    credential.host.span(),
                    ErrorKind::CredentialNotInspected(host_text.clone()),
                );
            }
        }
        let header = credential.header.get_ref();
        if let Err(e) = check_name(header) {
            errors.push(credential.header.span(), ErrorKind::CredentialHeader(e));
        }
        if let Err(e) = check_placeholder(credential.placeholder.get_ref()) {
            errors.push(credential.placeholder.span(), ErrorKind::Placeholder(e));
        }
        let source = match (&credential.value_file, &credential.value_env) {
            (Some(file), None) if file.get_ref().trim().is_empty() => {
                errors.push(file.span(), ErrorKind::CredentialFile);
                None
            }
            (Some(file), None) => Some(ValueSource::File(file.get_ref().clone())),
            (None, Some(env)) => {
                let name = env.get_ref();
                if name.is_empty() || name.contains(['=', '\0']) {
                    errors.push(env.span(), ErrorKind::CredentialEnv(name.clone()));
                    None
                } else {
                    Some(ValueSource::Env(name.clone()))
                }
            }
            (file, env) => {
                let span = file
                    .as_ref()
                    .or(env.as_ref())
                    .map_or(credential.host.span(), Spanned::span);
                errors.push(span, ErrorKind::CredentialSource);
                None
            }
        };
        let line = errors.line(&credential.host.span());
        if let Some(first) = out
            .iter()
            .find(|c| Some(&c.host) == host.as_ref() && c.header.eq_ignore_ascii_case(header))
        {
            errors.push(
                credential.host.span(),
                ErrorKind::CredentialDuplicate {
                    host: host_text.clone(),
                    header: header.clone(),
                    line: first.line,
                },
            );
        }
        match (host, source) {
            (Some(host), Some(source)) if errors.list.len() == before => {
                out.push(Arc::new(CredentialRule {
                    index,
                    line,
                    host,
                    header: header.clone(),
                    placeholder: credential.placeholder.get_ref().clone(),
                    source,
                }));
            }
            _ => {}
        }
    }
    out
}

fn cidr_value(cidr: &Spanned<String>, errors: &mut Errors<'_>) -> Option<IpNet> {
    let text = cidr.get_ref().trim();
    // A bare address is a /32 or /128.
    let net = text
        .parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from));
    match net {
        Some(net) if net.trunc() != net => {
            errors.push(
                cidr.span(),
                ErrorKind::CidrHostBits {
                    text: text.to_owned(),
                    network: net.trunc().to_string(),
                },
            );
            None
        }
        Some(net) => Some(net),
        None => {
            errors.push(
                cidr.span(),
                ErrorKind::Cidr {
                    text: text.to_owned(),
                },
            );
            None
        }
    }
}

fn carve_out_is_valid(net: IpNet, span: &Range<usize>, errors: &mut Errors<'_>) -> bool {
    let (min, family) = match net {
        IpNet::V4(_) => (CARVE_OUT_MIN_PREFIX_V4, "IPv4"),
        IpNet::V6(_) => (CARVE_OUT_MIN_PREFIX_V6, "IPv6"),
    };
    if net.prefix_len() < min {
        errors.push(
            span.clone(),
            ErrorKind::CarveOutTooBroad {
                net: net.to_string(),
                max: min,
                family,
            },
        );
        return false;
    }
    // Two networks overlap exactly when one contains the other's first address.
    let overlaps = crate::ranges::SPECIAL_RANGES
        .iter()
        .any(|r| r.net.contains(&net.network()) || net.contains(&r.net.network()));
    if !overlaps {
        errors.push(span.clone(), ErrorKind::CarveOutUseless(net.to_string()));
    }
    overlaps
}

fn ports_value(value: &Spanned<toml::Value>, errors: &mut Errors<'_>) -> Option<PortSet> {
    let result = match value.get_ref() {
        toml::Value::String(s) if s == "any" => Ok(PortSet::Any),
        toml::Value::Integer(n) => PortSet::from_items([PortItem::Number(*n)]),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                toml::Value::Integer(n) => Ok(PortItem::Number(*n)),
                toml::Value::String(s) => Ok(PortItem::Text(s)),
                _ => Err(PortsError::Shape),
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(PortSet::from_items),
        toml::Value::String(s) => PortSet::from_items([PortItem::Text(s)]),
        _ => Err(PortsError::Shape),
    };
    result
        .map_err(|e| errors.push(value.span(), ErrorKind::Ports(e)))
        .ok()
}

fn dns(raw: &RawDns, errors: &mut Errors<'_>) -> DnsSettings {
    let mut settings = DnsSettings::default();
    for upstream in &raw.upstreams {
        let text = upstream.get_ref().trim();
        let addr = text.parse::<SocketAddr>().ok().or_else(|| {
            text.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, DNS_PORT))
        });
        match addr {
            Some(addr) if addr.port() != 0 => settings.upstreams.push(addr),
            _ => errors.push(upstream.span(), ErrorKind::Upstream(text.to_owned())),
        }
    }
    for (name, addrs) in &raw.static_records {
        let parsed = DomainName::parse(name);
        if addrs.get_ref().is_empty() {
            errors.push(addrs.span(), ErrorKind::StaticEmpty(name.clone()));
        }
        let mut ips = Vec::new();
        for addr in addrs.get_ref() {
            match addr.get_ref().trim().parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => errors.push(addr.span(), ErrorKind::StaticAddr(addr.get_ref().clone())),
            }
        }
        match parsed {
            Ok(domain) => {
                settings.static_records.insert(domain, ips);
            }
            Err(error) => errors.push(
                addrs.span(),
                ErrorKind::StaticName {
                    name: name.clone(),
                    error,
                },
            ),
        }
    }
    settings
}
