//! The result table (stdout) and its JSON twin.

/// One figure, per contender.
pub struct Row {
    name: String,
    unit: &'static str,
    values: Vec<(String, f64)>,
}

impl Row {
    pub fn new(name: &str, unit: &'static str) -> Self {
        Self {
            name: name.to_owned(),
            unit,
            values: Vec::new(),
        }
    }

    pub fn egressd(mut self, value: f64) -> Self {
        self.set("egressd", value);
        self
    }

    pub fn set(&mut self, who: &str, value: f64) {
        self.values.retain(|(w, _)| w != who);
        self.values.push((who.to_owned(), value));
    }

    pub fn get(&self, who: &str) -> Option<f64> {
        self.values.iter().find(|(w, _)| w == who).map(|(_, v)| *v)
    }
}

/// All figures of one run.
pub struct Report {
    quick: bool,
    rows: Vec<Row>,
    notes: Vec<String>,
}

const CONTENDERS: [&str; 6] = [
    "direct",
    "egressd",
    "egressd-base",
    "squid",
    "tinyproxy",
    "unbound",
];

impl Report {
    pub fn new(quick: bool) -> Self {
        Self {
            quick,
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn extend(&mut self, rows: impl IntoIterator<Item = Row>) {
        self.rows.extend(rows);
    }

    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// Start-up time and idle memory of a peer, into the first two rows.
    pub fn startup(&mut self, who: &str, ms: f64, rss_mib: f64) {
        for row in &mut self.rows {
            match row.name.as_str() {
                "start to ready" => row.set(who, ms),
                "idle RSS (proxy + DNS stub)" => row.set(who, rss_mib),
                _ => {}
            }
        }
    }

    /// Names of rows where egressd has no positive figure: the proxy (or stub) broke.
    pub fn missing_egressd_figures(&self) -> Vec<String> {
        if self.rows.is_empty() {
            return vec!["(no figure at all)".to_owned()];
        }
        self.rows
            .iter()
            .filter(|r| !r.get("egressd").is_some_and(|v| v > 0.0))
            .map(|r| r.name.clone())
            .collect()
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "\negressd end-to-end benchmark ({} mode; {} cores; medians of rounds)\n\n",
            if self.quick { "quick" } else { "full" },
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let header = [
            "figure",
            "unit",
            "direct",
            "egressd",
            "egressd-base",
            "squid",
            "tinyproxy",
            "unbound",
            "egressd/direct",
            "egressd/peer",
            "egressd/base",
        ];
        let mut lines = vec![header.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
        for row in &self.rows {
            let mut cells = vec![row.name.clone(), row.unit.to_owned()];
            for who in CONTENDERS {
                cells.push(row.get(who).map_or("-".to_owned(), fmt));
            }
            let ratio = |peer: &str| match (row.get("egressd"), row.get(peer)) {
                (Some(e), Some(p)) if p > 0.0 => Some(e / p),
                _ => None,
            };
            cells.push(ratio("direct").map_or("-".to_owned(), |r| format!("{r:.2}x")));
            let peer = ["squid", "unbound", "tinyproxy"]
                .into_iter()
                .find_map(|p| ratio(p).map(|r| format!("{r:.2}x vs {p}")));
            cells.push(peer.unwrap_or_else(|| "-".to_owned()));
            cells.push(ratio("egressd-base").map_or("-".to_owned(), |r| format!("{r:.2}x")));
            lines.push(cells);
        }
        // Without a baseline build, its two columns are left out.
        let has_base = self.rows.iter().any(|r| r.get("egressd-base").is_some());
        if !has_base {
            for line in &mut lines {
                line.remove(10);
                line.remove(4);
            }
        }
        let widths: Vec<usize> = (0..lines[0].len())
            .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
            .collect();
        for line in &lines {
            let cells: Vec<String> = line
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == 0 {
                        format!("{c:<w$}", w = widths[i])
                    } else {
                        format!("{c:>w$}", w = widths[i])
                    }
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        for note in &self.notes {
            out.push_str(&format!("\nnote: {note}"));
        }
        out.push('\n');
        out
    }

    pub fn json(&self) -> String {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                let values: serde_json::Map<String, serde_json::Value> = r
                    .values
                    .iter()
                    .map(|(w, v)| (w.clone(), serde_json::json!(v)))
                    .collect();
                serde_json::json!({ "figure": r.name, "unit": r.unit, "values": values })
            })
            .collect();
        let doc = serde_json::json!({
            "mode": if self.quick { "quick" } else { "full" },
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "rows": rows,
            "notes": self.notes,
        });
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
