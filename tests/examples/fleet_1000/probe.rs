//! What the benchmark reads of a process and of the operator: peak memory from `/proc`, and the
//! operator's own request counters from its `/metrics`.

use std::collections::BTreeMap;

use anyhow::Context as _;

/// `VmHWM` (peak resident memory) of process `pid`, in MiB.
pub fn peak_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .context("no VmHWM")?
        .parse()
        .context("parsing VmHWM")?;
    Ok(kib / 1024.0)
}

/// Requests by verb (watches apart), from `kandle_operator_api_requests_total`.
pub type Requests = BTreeMap<String, f64>;

/// The operator's request counters, summed by verb.
pub async fn requests(port: u16) -> anyhow::Result<Requests> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .context("scraping the operator")?
        .text()
        .await
        .context("reading /metrics")?;
    let mut by_verb = Requests::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("kandle_operator_api_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let verb = labels
            .split(',')
            .find_map(|l| l.strip_prefix("verb=\""))
            .map(|v| v.trim_end_matches('"').to_string())
            .unwrap_or_default();
        *by_verb.entry(verb).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    Ok(by_verb)
}

/// `after - before`, verb by verb.
pub fn delta(after: &Requests, before: &Requests) -> Requests {
    after
        .iter()
        .map(|(verb, n)| (verb.clone(), n - before.get(verb).copied().unwrap_or(0.0)))
        .collect()
}

/// Requests other than watches.
pub fn non_watch(requests: &Requests) -> f64 {
    requests
        .iter()
        .filter(|(verb, _)| verb.as_str() != "watch")
        .map(|(_, n)| n)
        .sum()
}

/// `get 3, list 5, patch 1200` (watches left out).
pub fn describe(requests: &Requests) -> String {
    let parts: Vec<String> = requests
        .iter()
        .filter(|(verb, n)| verb.as_str() != "watch" && **n > 0.0)
        .map(|(verb, n)| format!("{verb} {n:.0}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}
