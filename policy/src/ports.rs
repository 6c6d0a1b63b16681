//! Port sets: `"any"`, or a list of ports and inclusive ranges.

use std::fmt;
use std::ops::RangeInclusive;

/// The ports a rule applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortSet {
    /// Every port 1-65535.
    Any,
    /// These ranges, sorted and merged; never empty.
    Ranges(Vec<RangeInclusive<u16>>),
}

/// Why a ports value is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortsError {
    /// `ports = []`.
    #[error("the port list is empty; list ports, or write \"any\"")]
    Empty,
    /// Port 0 or above 65535.
    #[error("port {0} is out of range; ports are 1-65535")]
    OutOfRange(i64),
    /// A string that is not `any` or `LOW-HIGH`.
    #[error("{0:?} is not a port range; write a number, \"LOW-HIGH\" or \"any\"")]
    BadRange(String),
    /// `"9000-8000"`.
    #[error("range {0:?} ends before it starts")]
    Backwards(String),
    /// Neither a list nor `"any"`.
    #[error("expected \"any\" or a list of ports such as [80, 443, \"8000-8100\"]")]
    Shape,
    /// `"any"` inside a list.
    #[error("\"any\" cannot appear inside a list; write ports = \"any\"")]
    AnyInList,
}

/// One entry of a written port list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortItem<'a> {
    /// A number as written.
    Number(i64),
    /// A string as written (`"8000-8100"`, or a mistaken `"any"`).
    Text(&'a str),
}

impl PortSet {
    /// The default port set of a policy that names none: HTTP and HTTPS.
    pub fn web() -> Self {
        Self::Ranges(vec![80..=80, 443..=443])
    }

    /// Builds a set from written items, merging overlaps.
    pub fn from_items<'a>(
        items: impl IntoIterator<Item = PortItem<'a>>,
    ) -> Result<Self, PortsError> {
        let mut ranges = Vec::new();
        for item in items {
            ranges.push(match item {
                PortItem::Number(n) => {
                    let port = port_number(n)?;
                    port..=port
                }
                PortItem::Text("any") => return Err(PortsError::AnyInList),
                PortItem::Text(text) => parse_range(text)?,
            });
        }
        if ranges.is_empty() {
            return Err(PortsError::Empty);
        }
        ranges.sort_by_key(|r| *r.start());
        let mut merged: Vec<RangeInclusive<u16>> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if u32::from(*r.start()) <= u32::from(*last.end()) + 1 => {
                    *last = *last.start()..=(*last.end()).max(*r.end());
                }
                _ => merged.push(r),
            }
        }
        if merged.as_slice() == [1..=u16::MAX] {
            return Ok(Self::Any);
        }
        Ok(Self::Ranges(merged))
    }

    /// True when `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        match self {
            Self::Any => true,
            Self::Ranges(ranges) => ranges.iter().any(|r| r.contains(&port)),
        }
    }

    /// The sorted, merged ranges; `Any` is `1..=65535`.
    pub fn ranges(&self) -> Vec<RangeInclusive<u16>> {
        match self {
            Self::Any => vec![1..=u16::MAX],
            Self::Ranges(ranges) => ranges.clone(),
        }
    }
}

fn port_number(n: i64) -> Result<u16, PortsError> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or(PortsError::OutOfRange(n))
}

fn parse_range(text: &str) -> Result<RangeInclusive<u16>, PortsError> {
    let bad = || PortsError::BadRange(text.to_owned());
    let (low, high) = text.split_once('-').ok_or_else(bad)?;
    let parse = |s: &str| -> Result<u16, PortsError> {
        let n: i64 = s.trim().parse().map_err(|_| bad())?;
        port_number(n)
    };
    let (low, high) = (parse(low)?, parse(high)?);
    if low > high {
        return Err(PortsError::Backwards(text.to_owned()));
    }
    Ok(low..=high)
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::Ranges(ranges) => {
                for (i, r) in ranges.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    if r.start() == r.end() {
                        write!(f, "{}", r.start())?;
                    } else {
                        write!(f, "{}-{}", r.start(), r.end())?;
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PortItem::{Number, Text};

    #[test]
    fn builds_and_merges() {
        let set = PortSet::from_items([
            Number(443),
            Text("8000-8100"),
            Number(80),
            Text("8050-8200"),
        ])
        .unwrap();
        assert_eq!(set.to_string(), "80, 443, 8000-8200");
        assert!(set.contains(8150) && set.contains(80) && !set.contains(22));
        let all = PortSet::from_items([Text("1-100"), Text("101-65535")]).unwrap();
        assert_eq!(all, PortSet::Any);
    }

    #[test]
    fn errors() {
        let cases: [(Vec<PortItem<'_>>, PortsError); 6] = [
            (vec![], PortsError::Empty),
            (vec![Number(0)], PortsError::OutOfRange(0)),
            (vec![Number(70000)], PortsError::OutOfRange(70000)),
            (vec![Text("http")], PortsError::BadRange("http".into())),
            (
                vec![Text("9000-8000")],
                PortsError::Backwards("9000-8000".into()),
            ),
            (vec![Text("any")], PortsError::AnyInList),
        ];
        for (items, want) in cases {
            assert_eq!(PortSet::from_items(items), Err(want));
        }
    }
}
