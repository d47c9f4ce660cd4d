//! `cargo xtask lab`: the namespace lab. Without arguments, the demo a newcomer runs first: a
//! device on the path forges a reset, and the tracer shows it was not sent by the endpoint it
//! claims. With `--report FILE`, every scenario, scored, written as a Markdown table.
//!
//! The scenarios are the test suite's (`rst-tracer-lab/src/scenarios.rs`); the tracer binary to run is
//! named by `RST_TRACER_BIN` (xtask sets it).

use std::{env, fmt::Write as _, fs, path::PathBuf, process::ExitCode};

use rst_tracer_lab::{
    lab::{Lab, CLIENT_IP, SERVER_IF, SERVER_IP},
    scenarios::{self, Outcome},
};

fn main() -> ExitCode {
    rst_tracer_lab::require_root_and_object();
    let Ok(tracer) = env::var("RST_TRACER_BIN") else {
        eprintln!("lab: RST_TRACER_BIN is not set; run `cargo xtask lab`");
        return ExitCode::FAILURE;
    };
    let args: Vec<String> = env::args().skip(1).collect();
    match args.iter().position(|a| a == "--report") {
        Some(i) => match args.get(i + 1) {
            Some(path) => report(&tracer, PathBuf::from(path)),
            None => {
                eprintln!("lab: --report needs a file name");
                ExitCode::from(2)
            }
        },
        None => demo(&tracer),
    }
}

/// One scenario, explained, with the tracer's own text output.
fn demo(tracer: &str) -> ExitCode {
    let scenario = &scenarios::ALL[0];
    println!(
        "The lab: three network namespaces, client ({CLIENT_IP}) -- router -- server ({SERVER_IP}),\n\
         with real Linux TCP stacks. rst-tracer runs in the server namespace on {SERVER_IF}.\n\n\
         Scenario: {}.\n\
         The client sends a request; the router, pretending to be the client, injects a RST at\n\
         exactly the client's next sequence number. The server's kernel accepts it and closes the\n\
         connection, as it would for the client's own reset. Only the evidence says otherwise:\n\
         the client's packets reach the server with TTL 63 (the router took one), the forged RST\n\
         with 64, so a box one hop closer sent it.\n\n\
         What the tracer printed (each reset after its settle window):\n",
        scenario.what
    );
    let lab = Lab::new(tracer);
    let t = lab.start_tracer_as("text", &[]);
    (scenario.run)(&lab);
    t.wait_quiet();
    for line in t.stop_raw(libc::SIGINT).lines() {
        println!("  {line}");
    }
    println!(
        "\nThe reset line with \"SUSPICIOUS, on-path, 1 hop closer\" is the forgery, its TTL evidence\n\
         first. Other reset lines are the server's own answers (origin local) to the client, which\n\
         never reset anything. `cargo xtask lab --report` runs every scenario."
    );
    ExitCode::SUCCESS
}

/// Every scenario, scored, as a Markdown table in `path`; fails when any scenario failed.
fn report(tracer: &str, path: PathBuf) -> ExitCode {
    let mut outcomes: Vec<Outcome> = Vec::new();
    for s in scenarios::ALL {
        eprintln!("lab: {} ...", s.name);
        outcomes.push(scenarios::run(tracer, s));
    }
    let mut md = String::from(
        "# Lab report\n\n\
         Produced by `cargo xtask lab --report`: namespaces client -- router -- server, real Linux\n\
         stacks, the tracer on the server's interface. A forged reset is *caught* when the tracer\n\
         calls it suspicious with the scenario's expected evidence; a *false positive* is any other\n\
         reset called suspicious. Forged resets sent toward the client are not seen by the\n\
         server-side tracer and are not counted.\n\n\
         | scenario | what it reproduces | resets | forged (seen) | caught | honest resets explained | codes on caught and explained resets | false positives |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let mut ok = true;
    for (s, o) in scenarios::ALL.iter().zip(&outcomes) {
        ok &= o.missed.is_empty()
            && o.false_positives.is_empty()
            && (s.explain_codes.is_empty() || o.explained > 0);
        let codes: Vec<&str> = o.codes.iter().map(String::as_str).collect();
        let codes = if codes.is_empty() {
            "-".to_string()
        } else {
            codes.join(", ")
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {codes} | {} |",
            s.name,
            s.what,
            o.resets,
            o.forged,
            o.caught,
            if s.explain_codes.is_empty() {
                "-".to_string()
            } else {
                o.explained.to_string()
            },
            o.false_positives.len()
        );
    }
    for o in &outcomes {
        for m in &o.missed {
            let _ = writeln!(md, "\nMissed in {}: {m}", o.name);
        }
        for f in &o.false_positives {
            let _ = writeln!(md, "\nFalse positive in {}: {f}", o.name);
        }
    }
    if let Err(e) = fs::write(&path, &md) {
        eprintln!("lab: writing {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    print!("{md}");
    println!("\nwrote {}", path.display());
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
