//! Replay tests: every capture of the shared corpus (../shared/captures, see its MANIFEST.tsv)
//! through `rst-tracer replay`, and broken capture files. They need root and the built eBPF
//! object (`cargo xtask test`) and fail plainly without.

use rst_tracer_lab::require_privileges;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

/// The shared corpus, beside this checkout.
fn corpus() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/captures");
    assert!(
        dir.join("MANIFEST.tsv").is_file(),
        "the capture corpus is missing: expected {}",
        dir.display()
    );
    dir
}

/// Runs `rst-tracer replay` with `args`; returns (success, JSON records, stderr).
fn replay(args: &[&str]) -> (bool, Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rst-tracer"))
        .arg("replay")
        .args(args)
        .arg("--format=json")
        .output()
        .unwrap();
    (
        out.status.success(),
        json_lines(&out.stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The JSON records of replay's output.
fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn resets(records: &[Value]) -> Vec<&Value> {
    records.iter().filter(|r| r["type"] == "reset").collect()
}

/// What a capture must give. `resets` is the number of RST packets in it (`tshark -r FILE -Y
/// tcp.flags.reset==1`); `check` holds further expectations (one line per capture to extend).
struct Expect {
    file: &'static str,
    resets: usize,
    /// Resets the verdict must call suspicious (MANIFEST.tsv's fourth column).
    suspicious: usize,
    check: fn(&[&Value]),
}

fn no_check(_: &[&Value]) {}

const CORPUS: &[Expect] = &[
    Expect {
        file: "censor/gfw-test1.pcap",
        resets: 5,
        suspicious: 4,
        check: |r| {
            // The injected RST+ACKs: TTL 70 where the client's packets arrive with 38; the RST with
            // IP ID 0 and TTL 36; then the client's own RST (TTL 38), which is the peer's.
            assert_eq!(r[0]["rst"]["ttl"], 70);
            assert_eq!(r[0]["sender"]["ttl"]["min"], 38);
            assert_eq!(r[3]["rst"]["ip_id"], 0);
            for x in &r[..4] {
                assert_eq!(
                    (x["origin"].as_str(), x["findings"][0]["code"].as_str()),
                    (Some("on-path"), Some("ttl_mismatch"))
                );
            }
            assert_eq!(
                (r[4]["origin"].as_str(), r[4]["rst"]["ttl"].as_u64()),
                (Some("peer"), Some(38))
            );
        },
    },
    Expect {
        file: "censor/airtel-https.pcap",
        resets: 8,
        suspicious: 4,
        check: |r| {
            // The forged resets claim the client, stamp IP ID 242 on every flow and window 16; the
            // server's own resets follow. The capture was taken on the server: its packets carry
            // TTL 64 (0 hops) where the client's arrive with fewer, so its resets are local.
            for x in r {
                let forged = x["rst"]["ip_id"] == 242;
                assert_eq!(x["suspicious"], forged, "{}", x["findings"]);
                if forged {
                    let codes: Vec<&str> = x["findings"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|f| f["code"].as_str().unwrap())
                        .collect();
                    assert!(
                        codes.contains(&"ipid_shared") && codes.contains(&"window_unusual"),
                        "{codes:?}"
                    );
                } else {
                    assert_eq!(x["rst"]["ttl"], 64);
                    assert_eq!(x["origin"], "local");
                }
            }
        },
    },
    Expect {
        file: "benign/http-request-no-rst.pcap",
        resets: 0,
        suspicious: 0,
        check: no_check,
    },
    Expect {
        file: "benign/http-traffic.pcap",
        resets: 13,
        suspicious: 0,
        check: no_check,
    },
    Expect {
        file: "zeek/tcp_rst-inject-rae.pcap",
        resets: 3,
        suspicious: 1,
        check: |r| {
            assert!(
                r[0]["rst"]["flags"].as_str().unwrap().contains("RES("),
                "reserved bits shown: {}",
                r[0]["rst"]
            );
            let codes: Vec<&str> = r[0]["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["code"].as_str().unwrap())
                .collect();
            for c in ["ipid_copied", "reserved_bits", "sender_continues"] {
                assert!(codes.contains(&c), "{c} missing from {codes:?}");
            }
        },
    },
    Expect {
        file: "zeek/tcp_single-rst.pcap",
        resets: 1,
        suspicious: 0,
        check: |r| {
            // A lone RST: no baseline, no verdict either way.
            assert_eq!(r[0]["history"]["new_flow"], true);
            assert_eq!(r[0]["origin"], "unknown");
        },
    },
    Expect {
        file: "zeek/tcp_syn-then-rst.pcap",
        resets: 1,
        suspicious: 0,
        check: no_check,
    },
    Expect {
        file: "zeek/tcp_syn-then-ack-then-rst.pcap",
        resets: 1,
        suspicious: 0,
        check: no_check,
    },
    Expect {
        file: "zeek/tcp_syn-then-stuff-then-rst.pcap",
        resets: 1,
        suspicious: 0,
        check: no_check,
    },
    Expect {
        file: "zeek/tcp_missing-syn.pcap",
        resets: 0,
        suspicious: 0,
        check: no_check,
    },
    Expect {
        file: "zeek/tcp_one-sided-2745.pcap",
        resets: 0,
        suspicious: 0,
        check: no_check,
    },
    Expect {
        file: "zeek/tcp_retransmit-fast009.pcap",
        resets: 1,
        suspicious: 0,
        check: |r| {
            assert!(
                r[0]["sender"]["retransmits"].as_u64().unwrap()
                    + r[0]["receiver"]["retransmits"].as_u64().unwrap()
                    > 0
            );
        },
    },
    Expect {
        file: "zeek/tcp_fin_retransmission.pcap",
        resets: 1,
        suspicious: 0,
        check: no_check,
    },
    Expect {
        file: "zeek/ftp_ipv6-violation.pcap",
        resets: 3,
        suspicious: 0,
        check: |r| {
            for x in r {
                assert!(
                    x["flow"]["src"].as_str().unwrap().contains(':'),
                    "IPv6: {}",
                    x["flow"]
                );
                assert_eq!(x["rst"]["ip_id"], Value::Null, "IPv6 has no IP ID");
            }
        },
    },
    // FDDI frames with LLC/SNAP (the manifest calls them 802.2 LLC): translated, not skipped.
    Expect {
        file: "zeek/llc.pcap",
        resets: 1333,
        suspicious: 0,
        check: |r| assert_eq!(r[0]["rst"]["ttl"], 8),
    },
    Expect {
        file: "suricata/security-4710-01-rst-then-data.pcap",
        resets: 2,
        suspicious: 1,
        check: no_check,
    },
    Expect {
        file: "suricata/bug-6244-rst-with-data.pcap",
        resets: 1,
        suspicious: 0,
        check: |r| {
            assert_eq!(r[0]["payload"]["text"], "Access Denied");
            assert!(r[0]["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["code"] == "payload"));
        },
    },
    Expect {
        file: "suricata/tcp-rst-unacked-stream-09.pcap",
        resets: 1,
        suspicious: 0,
        check: no_check,
    },
    Expect {
        file: "suricata/bug-3286-02-linux-evasion.pcap",
        resets: 2,
        suspicious: 2,
        check: no_check,
    },
    Expect {
        file: "tcpdump/tcp_rst_data.pcap",
        resets: 1,
        suspicious: 1,
        check: |r| {
            assert!(
                r[0]["payload"]["text"]
                    .as_str()
                    .unwrap()
                    .starts_with("BIG-IP: "),
                "{}",
                r[0]["payload"]
            );
        },
    },
    Expect {
        file: "tcpdump/tcp_rst_diag_payload.pcap",
        resets: 1,
        suspicious: 0,
        check: |r| {
            assert_eq!(r[0]["payload"]["captured"], 8);
        },
    },
    Expect {
        file: "tcpdump/mptcp-tcprst.pcap",
        resets: 2,
        suspicious: 0,
        check: |r| {
            assert!(r.iter().all(|x| x["rst"]["options"]
                .as_array()
                .unwrap()
                .contains(&"mptcp".into())));
        },
    },
    Expect {
        file: "ndpi/reddit.pcap",
        resets: 72,
        suspicious: 0,
        check: no_check,
    },
    Expect {
        file: "ndpi/rtsp.pcap",
        resets: 24,
        suspicious: 0,
        check: |r| {
            // Every RST captured twice (TTL 64, then 63 after a hop): 12 copies are duplicates.
            assert_eq!(r.iter().filter(|x| x["origin"] == "duplicate").count(), 12);
        },
    },
    Expect {
        file: "pcapplusplus/one_tcp_stream_fin_rst_close_packet.pcap",
        resets: 2,
        suspicious: 0,
        check: no_check,
    },
    // Two VLAN tags and a PPPoE session.
    Expect {
        file: "pcapplusplus/one_http_stream_rst.pcap",
        resets: 1,
        suspicious: 0,
        check: no_check,
    },
];

#[test]
fn every_capture_in_the_manifest_has_expectations() {
    let manifest = std::fs::read_to_string(corpus().join("MANIFEST.tsv")).unwrap();
    let listed: BTreeSet<&str> = manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split('\t').next())
        .collect();
    let covered: BTreeSet<&str> = CORPUS.iter().map(|e| e.file).collect();
    assert_eq!(
        listed, covered,
        "add a line to CORPUS for every capture in MANIFEST.tsv"
    );
}

#[test]
fn the_corpus_replays_with_every_reset() {
    require_privileges!();
    let dir = corpus();
    let mut failures = Vec::new();
    for e in CORPUS {
        let path = dir.join(e.file);
        let (ok, records, stderr) = replay(&[path.to_str().unwrap()]);
        if !ok {
            failures.push(format!("{}: exit failure: {stderr}", e.file));
            continue;
        }
        let r = resets(&records);
        if r.len() != e.resets {
            failures.push(format!(
                "{}: {} resets, expected {}",
                e.file,
                r.len(),
                e.resets
            ));
            continue;
        }
        let stats = last_stats(&records);
        if stats["parse_errors"] != 0
            || stats["ring_drops"] != 0
            || !stats["replay"]["skipped"].as_object().unwrap().is_empty()
        {
            failures.push(format!(
                "{}: errors, drops or skipped records: {stats}",
                e.file
            ));
        }
        if stats["replay"]["records"] != stats["replay"]["frames"] {
            failures.push(format!(
                "{}: not every record ran: {}",
                e.file, stats["replay"]
            ));
        }
        if let Err(panic) = std::panic::catch_unwind(|| (e.check)(&r)) {
            let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            failures.push(format!("{}: {msg}", e.file));
        }
        let suspicious = r.iter().filter(|x| x["suspicious"] == true).count();
        if suspicious != e.suspicious {
            failures.push(format!(
                "{}: {suspicious} suspicious resets, expected {}",
                e.file, e.suspicious
            ));
        }
        if r.iter()
            .any(|x| x["hook"] != "replay" || x["direction"] != "unknown")
        {
            failures.push(format!(
                "{}: replayed resets must say hook replay, direction unknown",
                e.file
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The last `stats` record of a run.
fn last_stats(records: &[Value]) -> &Value {
    records
        .iter()
        .rev()
        .find(|o| o["type"] == "stats")
        .expect("a final stats record")
}

#[test]
fn the_metrics_of_a_replay_count_its_json_records_and_the_captures_resets() {
    require_privileges!();
    let dir = corpus();
    let scratch = tempfile::tempdir().unwrap();
    let prom = scratch.path().join("replay.prom");
    let mut failures = Vec::new();
    let (mut resets_in_all, mut suspicious_in_all) = (0, 0);
    for e in CORPUS {
        let path = dir.join(e.file);
        let (ok, records, stderr) = replay(&[
            path.to_str().unwrap(),
            "--metrics-file",
            prom.to_str().unwrap(),
        ]);
        assert!(ok, "{}: {stderr}", e.file);
        let text = std::fs::read_to_string(&prom).unwrap();
        // The same records as the JSON stream, counted.
        if let Err(panic) = std::panic::catch_unwind(|| {
            rst_tracer_lab::metrics::assert_agrees(&text, &records);
            rst_tracer_lab::metrics::assert_stats_agree(&text, last_stats(&records));
        }) {
            let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            failures.push(format!("{}: {msg}", e.file));
        }
        // And the packets: one reset per RST packet (tshark's count), the manifest's
        // suspicious ones.
        let series = rst_tracer_lab::metrics::parse(&text);
        let resets = rst_tracer_lab::metrics::family(&series, "rst_tracer_resets_total");
        let total: f64 = resets.values().sum();
        let suspicious: f64 = resets
            .iter()
            .filter(|(s, _)| s.contains("suspicious=\"true\""))
            .map(|(_, v)| v)
            .sum();
        if (total, suspicious) != (e.resets as f64, e.suspicious as f64) {
            failures.push(format!(
                "{}: metrics count {total} resets, {suspicious} suspicious; the capture has {} and {}",
                e.file, e.resets, e.suspicious
            ));
        }
        resets_in_all += e.resets;
        suspicious_in_all += e.suspicious;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        resets_in_all > 100 && suspicious_in_all > 5,
        "too small a corpus to mean anything"
    );
}

#[test]
fn promtool_accepts_the_metrics_of_the_whole_corpus() {
    require_privileges!();
    let dir = corpus();
    let scratch = tempfile::tempdir().unwrap();
    let prom = scratch.path().join("corpus.prom");
    let files: Vec<String> = CORPUS
        .iter()
        .map(|e| dir.join(e.file).to_string_lossy().into_owned())
        .collect();
    let mut args: Vec<&str> = files.iter().map(String::as_str).collect();
    args.extend(["--metrics-file", prom.to_str().unwrap()]);
    let (ok, records, stderr) = replay(&args);
    assert!(ok, "{stderr}");
    let text = std::fs::read_to_string(&prom).unwrap();
    rst_tracer_lab::metrics::assert_agrees(&text, &records);
    match rst_tracer_lab::metrics::promtool_check(&text) {
        Ok(None) => {}
        Ok(Some(complaint)) => panic!("promtool check metrics: {complaint}\n{text}"),
        Err(why) => rst_tracer_lab::skip(&why),
    }
}

#[test]
fn replay_serves_metrics_over_http_while_it_runs() {
    use std::io::{BufRead, BufReader, Write};
    require_privileges!();
    // The first capture is replayed, then standard input, which this test holds open: the
    // tracer is running, its first capture's resets counted, while the test fetches /metrics.
    let first = corpus().join("benign/http-traffic.pcap");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rst-tracer"))
        .arg("replay")
        .arg(&first)
        .args(["-", "--format=json", "--metrics=127.0.0.1:0"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr: std::net::SocketAddr = loop {
        line.clear();
        assert_ne!(
            stderr.read_line(&mut line).unwrap(),
            0,
            "no metrics address said"
        );
        if let Some(rest) = line.trim().strip_prefix("rst-tracer: metrics on http://") {
            break rest.trim_end_matches("/metrics").parse().unwrap();
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let served = loop {
        let series = rst_tracer_lab::metrics::parse(&rst_tracer_lab::metrics::fetch(addr));
        let judged: f64 = rst_tracer_lab::metrics::family(&series, "rst_tracer_resets_total")
            .values()
            .sum();
        if judged > 0.0 {
            break series;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reset counted in 20 s: {series:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // A second capture through standard input, then its end: the run ends.
    let second = std::fs::read(corpus().join("benign/http-request-no-rst.pcap")).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&second).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let records = json_lines(&out.stdout);
    let (at_end, _) = rst_tracer_lab::metrics::implied_by(&records);
    // What was served while running is part of what the JSON stream says in the end: no
    // series it lacks, none more than it.
    let served_resets = rst_tracer_lab::metrics::family(&served, "rst_tracer_resets_total");
    for (series, n) in &served_resets {
        assert!(
            at_end.get(series).is_some_and(|m| n <= m),
            "{series} {n}: {at_end:?}"
        );
    }
    assert_eq!(
        at_end.values().sum::<f64>(),
        13.0,
        "the 13 resets of http-traffic.pcap"
    );
}

/// The capture host, read from the packets: the IPv4 address in the most of them.
fn capture_host(path: &Path) -> String {
    use etherparse::{NetSlice, SlicedPacket};
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    let mut reader = rst_tracer::source::capture::CaptureReader::open(path).unwrap();
    while let Some(record) = reader.next_record().unwrap() {
        if let Ok(SlicedPacket {
            net: Some(NetSlice::Ipv4(ip)),
            ..
        }) = SlicedPacket::from_ethernet(&record.data)
        {
            for addr in [ip.header().source_addr(), ip.header().destination_addr()] {
                *seen.entry(addr.to_string()).or_default() += 1;
            }
        }
    }
    seen.into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(addr, _)| addr)
        .unwrap_or_else(|| panic!("no IPv4 packet in {}", path.display()))
}

#[test]
fn local_networks_give_replayed_resets_a_direction() {
    require_privileges!();
    let path = corpus().join("benign/http-traffic.pcap");
    // The capture host, from the capture's packets (it is in most of them).
    let host = capture_host(&path);
    let (ok, records, err) = replay(&[path.to_str().unwrap(), "--local", &format!("{host}/32")]);
    assert!(ok, "{err}");
    let r = resets(&records);
    assert_eq!(r.len(), 13);
    for x in r {
        let expected = if x["flow"]["src"] == host.as_str() {
            "egress"
        } else {
            "ingress"
        };
        assert_eq!(x["direction"], expected, "{}", x["flow"]);
    }
}

#[test]
fn standard_input_replays_like_the_file() {
    require_privileges!();
    // Two captures, each through a pipe in 100-byte pieces (pcapng through a FIFO: the
    // capture reader's unit tests).
    for (file, resets_in_it) in [
        ("censor/gfw-test1.pcap", 5),
        ("zeek/ftp_ipv6-violation.pcap", 3),
    ] {
        let bytes = std::fs::read(corpus().join(file)).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_rst-tracer"))
            .args(["replay", "-", "--format=json"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || {
            use std::io::Write;
            for piece in bytes.chunks(100) {
                stdin.write_all(piece).unwrap();
            }
        });
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{file} from a pipe: {err}");
        let records = json_lines(&out.stdout);
        assert_eq!(resets(&records).len(), resets_in_it, "{file} from a pipe");
        let (_, from_file, _) = replay(&[corpus().join(file).to_str().unwrap()]);
        assert_eq!(
            resets(&records)
                .iter()
                .map(|r| &r["ts_ns"])
                .collect::<Vec<_>>(),
            resets(&from_file)
                .iter()
                .map(|r| &r["ts_ns"])
                .collect::<Vec<_>>(),
            "{file}: the same resets at the same times"
        );
    }
}

#[test]
fn replay_parses_the_capture_without_the_privileges_it_loaded_with() {
    require_privileges!();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("capture.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let child = Command::new(env!("CARGO_BIN_EXE_rst-tracer"))
        .args(["replay", "--format=json"])
        .arg(&fifo)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Opening the writing end waits for replay to open the FIFO; it then loads its program and
    // waits for the capture's first bytes.
    let mut writer = std::fs::File::options().write(true).open(&fifo).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut held = rst_tracer_lab::caps_still_held(child.id());
    while !held.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        held = rst_tracer_lab::caps_still_held(child.id());
    }
    assert!(
        held.is_empty(),
        "capabilities held while waiting for the capture: {held:?}"
    );
    std::io::Write::write_all(
        &mut writer,
        &std::fs::read(corpus().join("censor/gfw-test1.pcap")).unwrap(),
    )
    .unwrap();
    drop(writer);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = json_lines(&out.stdout);
    assert_eq!(resets(&records).len(), 5, "every reset, read unprivileged");
}

#[test]
fn several_files_replay_as_one_stream() {
    require_privileges!();
    let dir = corpus();
    let a = dir.join("censor/gfw-test1.pcap");
    let b = dir.join("zeek/ftp_ipv6-violation.pcap");
    let (ok, records, _) = replay(&[a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(ok);
    assert_eq!(resets(&records).len(), 5 + 3);
    let stats = records.iter().rev().find(|o| o["type"] == "stats").unwrap();
    assert_eq!(stats["replay"]["records"], 10 + 19);
    // How long it took and how fast: 29 records take well under 29 s.
    assert!(stats["replay"]["wall_ms"].is_u64(), "{stats}");
    assert!(
        stats["replay"]["records_per_s"].as_u64() > Some(0),
        "{stats}"
    );
}

/// Writes `bytes` to `name` in `dir` (the test's own directory, removed when it ends).
fn scratch(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn broken_files_fail_with_the_offset_and_keep_what_came_before() {
    require_privileges!();
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(corpus().join("censor/gfw-test1.pcap")).unwrap();

    let p = scratch(&dir, "empty.pcap", &[]);
    let (ok, _, err) = replay(&[p.to_str().unwrap()]);
    assert!(!ok && err.contains("empty file"), "{err}");

    let p = scratch(
        &dir,
        "wrong-magic.pcap",
        b"this is a text file, not a capture at all",
    );
    let (ok, _, err) = replay(&[p.to_str().unwrap()]);
    assert!(
        !ok && err.contains("not a pcap or pcapng capture") && err.contains("wrong-magic.pcap"),
        "{err}"
    );

    // Header only: an empty capture, not an error.
    let p = scratch(&dir, "header-only.pcap", &good[..24]);
    let (ok, records, err) = replay(&[p.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(resets(&records).is_empty());

    // Cut in the middle of the last record (a RST): the four resets before it are reported.
    let cut = good.len() - 20;
    let p = scratch(&dir, "truncated.pcap", &good[..cut]);
    let (ok, records, err) = replay(&[p.to_str().unwrap()]);
    assert!(!ok, "a truncated file is an error");
    assert!(err.contains("truncated at byte"), "{err}");
    assert_eq!(
        resets(&records).len(),
        4,
        "everything before the damage is kept"
    );
    assert!(
        records.iter().any(|r| r["type"] == "summary"),
        "the summary is printed before the error"
    );

    // A record header claiming 2 GB.
    let mut huge = good[..24].to_vec();
    for v in [1u32, 0, 0x7fff_0000, 0x7fff_0000] {
        huge.extend_from_slice(&v.to_le_bytes());
    }
    huge.extend_from_slice(&[0; 100]);
    let p = scratch(&dir, "huge.pcap", &huge);
    let (ok, _, err) = replay(&[p.to_str().unwrap()]);
    assert!(!ok && err.contains("byte 24"), "{err}");
}

/// A minimal pcapng section header block (little-endian, version 1.0, no options), so that
/// generated tails reach the pcapng reader's later blocks.
const PCAPNG_SHB: [u8; 28] = [
    0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0,
];

/// Whatever bytes the whole binary is given, `rst-tracer replay` ends in a report (exit 0) or in
/// one clear error line (exit 1), never a panic (exit 101) or a signal. Inputs: random bytes
/// behind nothing, a real pcap header or a pcapng section header, and real captures with random
/// bytes overwritten.
#[test]
fn any_bytes_end_in_a_report_or_a_clear_error() {
    use proptest::{prelude::*, test_runner::TestRunner};
    require_privileges!();
    let good = std::fs::read(corpus().join("censor/gfw-test1.pcap")).unwrap();
    let prefixes: Vec<Vec<u8>> = vec![Vec::new(), good[..24].to_vec(), PCAPNG_SHB.to_vec()];
    let generated = (
        0..prefixes.len(),
        prop::collection::vec(any::<u8>(), 0..700),
    )
        .prop_map(move |(p, tail)| [prefixes[p].clone(), tail].concat());
    let len = good.len();
    let mutated = prop::collection::vec((0..len, any::<u8>()), 1..12).prop_map(move |edits| {
        let mut bytes = good.clone();
        for (at, b) in edits {
            bytes[at] = b;
        }
        bytes
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input");
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&prop_oneof![generated, mutated], |bytes| {
        std::fs::write(&file, &bytes).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_rst-tracer"))
            .args(["replay", "--format=json"])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        prop_assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{} bytes: {} with {stderr}",
            bytes.len(),
            out.status
        );
        prop_assert!(!stderr.contains("panicked"), "{stderr}");
        if out.status.code() == Some(1) {
            let last = stderr.lines().last().unwrap_or("");
            prop_assert!(last.starts_with("rst-tracer: "), "{stderr}");
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn the_pcap_out_file_holds_every_reset_with_the_capture_bytes_and_its_verdict() {
    require_privileges!();
    let dir = corpus();
    let out_dir = tempfile::tempdir().unwrap();
    // Another user's directory (nobody, 0755): replay creates the file before it gives up
    // CAP_DAC_OVERRIDE.
    let theirs = out_dir.path().join("nobody");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65_534), Some(65_534)).unwrap();
    let mut failures = Vec::new();
    let mut checked = (0, 0);
    for e in CORPUS {
        let input = dir.join(e.file);
        let pcap = theirs.join("resets.pcapng");
        let pcap_arg = format!("--pcap-out={}", pcap.display());
        let (ok, records, stderr) = replay(&[input.to_str().unwrap(), &pcap_arg]);
        if !ok {
            failures.push(format!("{}: exit failure: {stderr}", e.file));
            continue;
        }
        let r = resets(&records);
        if let Err(wrong) = rst_tracer_lab::pcapng::check(&pcap, &r, "replay") {
            failures.push(format!("{}: {wrong}", e.file));
            continue;
        }
        // The bytes: the capture's own reset packets (as tshark finds them), at their capture
        // times, cut at the kernel's copy length; for Ethernet captures only (the kernel sees
        // other link layers as replay turned them into Ethernet).
        let captured = rst_tracer_lab::pcapng::records(&input);
        if captured.iter().all(|c| c.linktype == 1) {
            let written = rst_tracer_lab::pcapng::packets(&rst_tracer_lab::pcapng::records(&pcap));
            if written != rst_tracer_lab::pcapng::resets_in(&input) {
                failures.push(format!(
                    "{}: the written bytes are not the capture's resets",
                    e.file
                ));
            }
            checked.0 += 1;
        }
        checked.1 += r.len();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "pcap-out: {} resets checked, bytes compared in {} Ethernet captures",
        checked.1, checked.0
    );
    assert!(checked.0 >= 10 && checked.1 >= 40, "{checked:?}");
}

#[test]
fn the_json_records_of_the_corpus_match_the_schemas_and_a_changed_field_does_not() {
    require_privileges!();
    let schemas = rst_tracer_lab::schema::Schemas::load();
    let dir = corpus();
    let paths: Vec<String> = CORPUS
        .iter()
        .map(|e| dir.join(e.file).display().to_string())
        .collect();
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();
    let (ok, records, stderr) = replay(&args);
    assert!(ok, "{stderr}");
    let seen = schemas.check_all(&records, &["reset", "retransmit", "summary", "stats"]);
    eprintln!("schema: checked {seen:?}");

    // The schemas are strict: a renamed field, a missing one, one of another type, an unknown
    // value of a closed set each fail, at the top of a record and inside it.
    let first = |kind: &str| {
        records
            .iter()
            .find(|r| r["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} record"))
            .clone()
    };
    type Mutation = fn(&mut Value);
    let mutations: [(&str, &str, Mutation); 9] = [
        ("reset", "ts_ns renamed", |r| rename(r, "ts_ns", "ts_nanos")),
        ("reset", "suspicious missing", |r| {
            r.as_object_mut().unwrap().remove("suspicious");
        }),
        ("reset", "rst.seq renamed", |r| {
            rename(&mut r["rst"], "seq", "sequence")
        }),
        ("reset", "sender.ttl a string", |r| {
            r["sender"]["ttl"] = "64".into()
        }),
        ("reset", "origin unknown", |r| {
            r["origin"] = "elsewhere".into()
        }),
        ("reset", "a field added", |r| r["verdict"] = true.into()),
        ("retransmit", "flow.sport missing", |r| {
            r["flow"].as_object_mut().unwrap().remove("sport");
        }),
        ("summary", "resets renamed", |r| {
            rename(r, "resets", "reset_count")
        }),
        ("stats", "a counter missing", |r| {
            r["counters"].as_object_mut().unwrap().remove("rst_written");
        }),
    ];
    for (kind, what, mutate) in mutations {
        let mut r = first(kind);
        assert!(schemas.check(&r).is_ok(), "{kind} before the change");
        mutate(&mut r);
        assert!(
            schemas.check(&r).is_err(),
            "{kind} with {what} still passes the schema"
        );
    }
}

/// Renames field `from` of object `v` to `to`.
fn rename(v: &mut Value, from: &str, to: &str) {
    let o = v.as_object_mut().unwrap();
    let x = o.remove(from).unwrap_or_else(|| panic!("no field {from}"));
    o.insert(to.to_string(), x);
}

#[test]
fn the_stats_schema_requires_every_kernel_counter() {
    let schema = rst_tracer_lab::schema::read("stats.json");
    let required: BTreeSet<&str> = schema["properties"]["counters"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let counters: BTreeSet<&str> = rst_tracer_common::counter::Counter::ALL
        .iter()
        .map(|c| c.name())
        .collect();
    assert_eq!(required, counters, "schema/stats.json and Counter::ALL");
}

#[test]
fn pcap_out_context_puts_each_resets_flow_before_it() {
    require_privileges!();
    const N: usize = 3;
    let dir = corpus();
    let out_dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let (mut files, mut reset_packets, mut with_context) = (0, 0, 0);
    for e in CORPUS {
        let input = dir.join(e.file);
        // The bytes are comparable where replay runs the capture's own frames: Ethernet.
        if rst_tracer_lab::pcapng::records(&input)
            .iter()
            .any(|c| c.linktype != 1)
        {
            continue;
        }
        let pcap = out_dir.path().join("context.pcapng");
        let pcap_arg = format!("--pcap-out={}", pcap.display());
        let (ok, records, stderr) = replay(&[
            input.to_str().unwrap(),
            &pcap_arg,
            &format!("--pcap-out-context={N}"),
        ]);
        if !ok {
            failures.push(format!("{}: exit failure: {stderr}", e.file));
            continue;
        }
        let written = rst_tracer_lab::pcapng::context_written(&pcap);
        let expected = rst_tracer_lab::pcapng::context_in(&input, N);
        if written.len() != resets(&records).len() {
            failures.push(format!(
                "{}: {} reset packets for {} JSON resets",
                e.file,
                written.len(),
                resets(&records).len()
            ));
        } else if written != expected {
            let first = written
                .iter()
                .zip(&expected)
                .position(|(w, x)| w != x)
                .unwrap_or(0);
            failures.push(format!(
                "{}: reset {first} of {}: {} context packets written, {} in the capture",
                e.file,
                written.len(),
                written.get(first).map_or(0, |w| w.1.len()),
                expected.get(first).map_or(0, |x| x.1.len()),
            ));
        }
        let stats = records.iter().rfind(|r| r["type"] == "stats").unwrap();
        assert_eq!(stats["replay"]["context_evicted"], 0, "{}", e.file);
        files += 1;
        reset_packets += written.len();
        with_context += written.iter().filter(|w| !w.1.is_empty()).count();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "pcap-out-context: {files} captures, {reset_packets} resets, {with_context} with context"
    );
    assert!(files >= 10 && with_context >= 40, "{files} {with_context}");
}

#[test]
fn pcap_out_context_needs_pcap_out_and_a_count_in_range() {
    for (args, says) in [
        (&["--pcap-out-context=3"][..], "--pcap-out"),
        (
            &["--pcap-out=x.pcapng", "--pcap-out-context=0"][..],
            "out of range",
        ),
        (
            &["--pcap-out=x.pcapng", "--pcap-out-context=17"][..],
            "out of range",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_rst-tracer"))
            .arg("replay")
            .args(args)
            .arg("any.pcap")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let live = Command::new(env!("CARGO_BIN_EXE_rst-tracer"))
        .args(["live", "--pcap-out=x.pcapng", "--pcap-out-context=3"])
        .output()
        .unwrap();
    assert_eq!(
        live.status.code(),
        Some(2),
        "live has no --pcap-out-context"
    );
}
