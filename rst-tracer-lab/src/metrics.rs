//! The metrics a tracer exposes (`--metrics`, `--metrics-file`), read back: the exposition
//! parsed into series, fetched over HTTP, and checked against the JSON records of the same run.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use serde_json::Value;

/// Series (name and labels, as written) and their values, from an exposition's text.
pub fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample line: {l}"));
            let value = value
                .parse()
                .unwrap_or_else(|e| panic!("not a number ({e}): {l}"));
            (series.to_string(), value)
        })
        .collect()
}

/// The series of `name` (labels included) in `series`.
pub fn family(series: &BTreeMap<String, f64>, name: &str) -> BTreeMap<String, f64> {
    series
        .iter()
        .filter(|(s, _)| {
            s.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{'))
        })
        .map(|(s, v)| (s.clone(), *v))
        .collect()
}

/// `GET /metrics` from `addr` (in the calling thread's network namespace): the body, after
/// checking the status and the content type of the Prometheus text format.
pub fn fetch(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connecting to the metrics at {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {answer}"));
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_string()
}

/// The reset and finding series the reset records of `records` imply: one count per origin,
/// suspicion and direction, one per finding code.
pub fn implied_by(records: &[Value]) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let mut resets = BTreeMap::new();
    let mut findings = BTreeMap::new();
    for r in records.iter().filter(|r| r["type"] == "reset") {
        let series = format!(
            "rst_tracer_resets_total{{origin={},suspicious=\"{}\",direction={}}}",
            r["origin"], r["suspicious"], r["direction"]
        );
        *resets.entry(series).or_default() += 1.0;
        for f in r["findings"].as_array().expect("findings") {
            let series = format!("rst_tracer_findings_total{{code={}}}", f["code"]);
            *findings.entry(series).or_default() += 1.0;
        }
    }
    (resets, findings)
}

/// Checks that the exposition `text` counts exactly the resets and findings of `records`, the
/// JSON stream of the same run.
pub fn assert_agrees(text: &str, records: &[Value]) {
    let series = parse(text);
    let (resets, findings) = implied_by(records);
    assert_eq!(family(&series, "rst_tracer_resets_total"), resets, "{text}");
    assert_eq!(
        family(&series, "rst_tracer_findings_total"),
        findings,
        "{text}"
    );
}

/// Checks that the exposition's kernel counters and flow tables are those of `stats`, the last
/// `stats` record of the same run.
pub fn assert_stats_agree(text: &str, stats: &Value) {
    let series = parse(text);
    let counters = stats["counters"].as_object().expect("counters");
    assert_eq!(
        family(&series, "rst_tracer_kernel_events_total").len(),
        counters.len()
    );
    for (name, n) in counters {
        let series_name = format!("rst_tracer_kernel_events_total{{counter=\"{name}\"}}");
        assert_eq!(
            series.get(&series_name).copied(),
            n.as_f64(),
            "{series_name}"
        );
    }
    for (name, field) in [
        ("rst_tracer_ring_drops_total", &stats["ring_drops"]),
        ("rst_tracer_parse_errors_total", &stats["parse_errors"]),
        ("rst_tracer_decode_errors_total", &stats["decode_errors"]),
        ("rst_tracer_resets_waiting", &stats["resets_waiting"]),
        (
            "rst_tracer_flow_table_entries{table=\"kernel\"}",
            &stats["flow_table"]["entries"],
        ),
        (
            "rst_tracer_flow_table_evictions_total{table=\"kernel\"}",
            &stats["flow_table"]["evictions"],
        ),
    ] {
        assert_eq!(series.get(name).copied(), field.as_f64(), "{name}: {text}");
    }
}

/// Runs `promtool check metrics` on `text`: None when it passes, its complaint otherwise; or
/// `Err` when promtool is not installed.
pub fn promtool_check(text: &str) -> Result<Option<String>, String> {
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("it needs promtool (Debian package prometheus): {e}"))?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Ok((!out.status.success()).then(|| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }))
}
