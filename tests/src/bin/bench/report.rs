//! The report: Markdown for bench/RESULTS.md, the same figures as JSON.

use crate::Options;
use serde_json::{Map, Value, json};
use std::fmt::Write as _;
use std::process::Command;

#[derive(Default)]
pub struct Report {
    header: String,
    markdown: String,
    json: Map<String, Value>,
}

/// A Markdown table from a header and rows.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for row in rows {
        let _ = writeln!(t, "| {} |", row.join(" | "));
    }
    t
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_default();
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_gib": (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": command_line("uname", &["-r"]),
        "load_average": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').take(3).collect::<Vec<_>>().join(" "),
        "python": command_line(&crate::functions::baseline_python().to_string_lossy(), &["--version"]),
        "rustc": command_line("rustc", &["--version"]),
    })
}

impl Report {
    pub fn header(&mut self, o: &Options) {
        let m = machine();
        let date = command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
        let _ = write!(
            self.header,
            "# Benchmarks: our Rust functions against the Python baseline\n\n\
             Written by `make bench` (`tests/src/bin/bench/`); do not edit by hand.\n\n\
             - **date**: {date}\n\
             - **machine**: {} ({} cores), {} GiB RAM, Linux {}, load average at start {}\n\
             - **ours**: {}; {}\n\
             - **baseline**: bench/baseline/ under awslambdaric, {}\n\
             - **runs**: {} per measurement{}, ours and the baseline interleaved (A, B, A, B); \
             each cell is min / median / max\n\n",
            m["cpu"].as_str().unwrap_or_default(),
            m["cores"],
            m["memory_gib"],
            m["kernel"].as_str().unwrap_or_default(),
            m["load_average"].as_str().unwrap_or_default(),
            o.binaries,
            m["rustc"].as_str().unwrap_or_default(),
            m["python"].as_str().unwrap_or_default(),
            o.iterations,
            if o.smoke {
                " (smoke pass: the figures mean little)"
            } else {
                ""
            },
        );
        self.json.insert("machine".into(), m);
        self.json.insert("date".into(), json!(date));
        self.json.insert("iterations".into(), json!(o.iterations));
        self.json.insert("binaries".into(), json!(o.binaries));
    }

    /// A section: its title, its text (tables), and its figures under `key` in the JSON.
    pub fn section(&mut self, key: &str, title: &str, text: &str, figures: Value) {
        let _ = write!(self.markdown, "## {title}\n\n{text}\n");
        self.json.insert(key.into(), figures);
        eprintln!("bench: {title} done");
    }

    /// The medians of the figures the goals are about (the sections have min and max; the goals
    /// and what the figures say are in the README, which is written by hand).
    fn summary(&self) -> String {
        let j = &Value::Object(self.json.clone()); // indexing a missing section gives Null
        let median = |v: &Value| v["median"].as_f64().unwrap_or(f64::NAN);
        let mut rows = Vec::new();
        if let Some(ratios) = j["start_up"]["times_faster"].as_object() {
            let text: Vec<String> = ratios
                .iter()
                .map(|(f, r)| format!("{f} {:.0}×", median(r)))
                .collect();
            rows.push(vec![
                "start-up, × faster than the baseline".to_owned(),
                text.join(", "),
            ]);
        }
        if let Some(rss) = j["peak_rss"].as_object() {
            let text: Vec<String> = [("discovery", "discovery"), ("aws-auth mapping", "aws-auth")]
                .iter()
                .filter_map(|(op, short)| {
                    let ours = median(rss.get(&format!("{op}: ours"))?);
                    let theirs = median(rss.get(&format!("{op}: baseline"))?);
                    Some(format!(
                        "{short} {ours:.1} vs {theirs:.1} MiB (1/{:.1})",
                        theirs / ours
                    ))
                })
                .collect();
            rows.push(vec![
                "peak RSS of one invocation".to_owned(),
                text.join("; "),
            ]);
        }
        if let Some(sizes) = j["deployment_size"].as_object() {
            let text: Vec<String> = sizes
                .iter()
                .map(|(name, v)| {
                    let mb = v["zip_bytes"].as_f64().unwrap_or(f64::NAN) / 1e6;
                    format!("{name} {mb:.1} MB")
                })
                .collect();
            rows.push(vec!["deployment zip".to_owned(), text.join(", ")]);
        }
        let lost: usize = ["scale", "concurrent_writers"]
            .iter()
            .filter_map(|k| j[*k]["lost"].as_object())
            .flat_map(|m| m.values())
            .map(|v| v.as_array().map_or(0, Vec::len))
            .sum();
        if j.get("scale").is_some() {
            rows.push(vec![
                "aws-auth entries lost (scale, concurrent writers; ours and the baseline)"
                    .to_owned(),
                lost.to_string(),
            ]);
        }
        format!(
            "## Summary\n\n{}\n",
            table(&["metric", "measured (median)"], &rows)
        )
    }

    pub fn write(&self, o: &Options) {
        for path in [&o.out, &o.json] {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
        }
        let text = format!("{}{}{}", self.header, self.summary(), self.markdown);
        std::fs::write(&o.out, text).expect("write the Markdown report");
        let json = serde_json::to_string_pretty(&self.json).unwrap_or_default();
        std::fs::write(&o.json, json).expect("write the JSON report");
        eprintln!("bench: wrote {} and {}", o.out.display(), o.json.display());
    }
}
