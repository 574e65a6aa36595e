//! Figures: one JSON line each (appended to the results file), and a Markdown table.

use std::io::Write;
use std::path::Path;

use serde_json::json;

/// One measured figure.
#[derive(Clone, Debug)]
pub struct Figure {
    /// What was run, e.g. `stacks=1000 replicas=1`.
    pub run: String,
    /// Name, e.g. `converge_seconds`.
    pub name: &'static str,
    /// The value.
    pub value: f64,
    /// Unit: `s`, `MB`, `writes`, `requests`, `ratio`, ...
    pub unit: &'static str,
    /// What the figure means, for the table.
    pub about: String,
}

/// Collects figures; each is written as soon as it is known, so an interrupted run keeps
/// what it measured.
pub struct Report {
    out: std::path::PathBuf,
    machine: String,
    commit: String,
    pub figures: Vec<Figure>,
}

impl Report {
    pub fn new(out: &Path) -> Self {
        if let Some(dir) = out.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        Self { out: out.to_owned(), machine: machine(), commit: commit(), figures: Vec::new() }
    }

    pub fn add(&mut self, run: &str, name: &'static str, value: f64, unit: &'static str, about: impl Into<String>) {
        let figure = Figure { run: run.to_owned(), name, value, unit, about: about.into() };
        let line = json!({
            "time": jiff::Timestamp::now().to_string(),
            "run": figure.run, "figure": figure.name, "value": round(figure.value), "unit": figure.unit,
            "machine": self.machine, "commit": self.commit,
        });
        println!("{line}");
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(&self.out) {
            let _ = writeln!(file, "{line}");
        }
        self.figures.push(figure);
    }

    /// The figures as a Markdown table, with the machine and commit they ran on.
    pub fn table(&self) -> String {
        let mut out = format!(
            "Machine: {}; commit {}.\n\n| run | figure | value | meaning |\n|---|---|---|---|\n",
            self.machine, self.commit
        );
        for f in &self.figures {
            out.push_str(&format!("| {} | {} | {} {} | {} |\n", f.run, f.name, round(f.value), f.unit, f.about));
        }
        out
    }
}

fn round(value: f64) -> f64 {
    if value.abs() >= 100.0 { (value * 10.0).round() / 10.0 } else { (value * 1000.0).round() / 1000.0 }
}

/// CPU model, cores and memory, from /proc.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    format!("{cores} cores ({model}), {:.0} GiB", kib / 1024.0 / 1024.0)
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The `q` quantile (0..=1) of `values` (nearest rank); 0 when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
