//! `cargo xtask eval`: the labelled corpus. Every class of `rst-tracer-lab/src/eval.rs` (honest resets
//! behind a lossy router, forged resets of the kinds devices inject) runs in a fresh namespace
//! lab with the tracer on the server and on the router; the verdicts are counted per class and
//! the table, with precision and recall, is printed and written to the file given with
//! `--report` (xtask passes `docs/eval.md`). `--scale N` sets the number of connections of the
//! largest honest class (default 1200); the other classes run a fixed share of it.
//!
//! The tracer binary to run is named by `RST_TRACER_BIN` (xtask sets it).

use std::{env, fmt::Write as _, fs, process::ExitCode};

use rst_tracer_lab::eval::{self, Kind, Tally, Viewpoint, CLASSES, DELAY, LOSS_PERCENT};

fn main() -> ExitCode {
    rst_tracer_lab::require_root_and_object();
    let Ok(tracer) = env::var("RST_TRACER_BIN") else {
        eprintln!("eval: RST_TRACER_BIN is not set; run `cargo xtask eval`");
        return ExitCode::FAILURE;
    };
    let args: Vec<String> = env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args.get(i + 1).cloned())
    };
    let scale = match value("--scale") {
        None => 1200,
        Some(Some(v)) => match v.parse::<usize>() {
            Ok(n) if (10..=100_000).contains(&n) => n,
            _ => {
                eprintln!("eval: --scale takes a whole number from 10 to 100000, not {v:?}");
                return ExitCode::from(2);
            }
        },
        Some(None) => {
            eprintln!("eval: --scale needs a number");
            return ExitCode::from(2);
        }
    };
    let report = match value("--report") {
        None => None,
        Some(Some(path)) => Some(path),
        Some(None) => {
            eprintln!("eval: --report needs a file name");
            return ExitCode::from(2);
        }
    };
    let mut tallies = Vec::new();
    for viewpoint in [Viewpoint::Server, Viewpoint::Router] {
        for class in CLASSES {
            eprintln!("eval: {} on the {} ...", class.name, viewpoint.name());
            tallies.push((class.kind, eval::run(&tracer, class, viewpoint, scale)));
        }
    }
    let md = table(scale, &tallies);
    print!("{md}");
    if let Some(path) = report {
        if let Err(e) = fs::write(&path, &md) {
            eprintln!("eval: writing {path}: {e}");
            return ExitCode::FAILURE;
        }
        println!("\nwrote {path}");
    }
    ExitCode::SUCCESS
}

/// The report: one row per class and viewpoint, then the totals.
fn table(scale: usize, tallies: &[(Kind, Tally)]) -> String {
    let mut md = format!(
        "# Evaluation: verdicts on a labelled lab corpus\n\n\
         Produced by `cargo xtask eval` (scale {scale}). Namespaces client -- router -- server\n\
         with real Linux stacks; the router holds every packet toward the client {} ms (a TUN\n\
         delay line: this kernel has no netem), and while the honest classes run it drops\n\
         {LOSS_PERCENT}% of forwarded TCP packets at random (nftables `numgen`). Each class runs in a fresh lab with\n\
         the tracer on the server's interface, then on the router's server-side interface. A\n\
         forged reset is one the forger sent (matched by addresses, ports, sequence number and IP\n\
         ID); every other reset is a stack's own. *Called local* counts honest resets given origin\n\
         `local` that the traced host did not send (on the router, every reset is forwarded);\n\
         *own not local* the server's resets, traced on the server, given another origin.\n\n\
         | class | viewpoint | honest resets | suspicious | called local | own not local | explained | forged resets seen | caught |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        DELAY.as_millis()
    );
    let (mut honest, mut fp, mut local, mut unclaimed, mut forged, mut caught) = (0, 0, 0, 0, 0, 0);
    for (kind, t) in tallies {
        let (h, f) = match kind {
            Kind::Honest => (t.honest.to_string(), "-".to_string()),
            Kind::Forged => (t.honest.to_string(), t.forged.to_string()),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {h} | {} | {} | {} | {} | {f} | {} |",
            t.class,
            t.viewpoint,
            t.false_positives,
            t.misattributed_local,
            t.unclaimed_local,
            t.explained,
            if *kind == Kind::Forged {
                t.caught.to_string()
            } else {
                "-".to_string()
            }
        );
        honest += t.honest;
        fp += t.false_positives;
        local += t.misattributed_local;
        unclaimed += t.unclaimed_local;
        forged += t.forged;
        caught += t.caught;
    }
    let pct = |a: usize, b: usize| {
        if b == 0 {
            "-".to_string()
        } else {
            format!("{:.2}%", 100.0 * a as f64 / b as f64)
        }
    };
    let _ = write!(
        md,
        "\nHonest resets: {honest}, called suspicious: {fp} ({}), called local wrongly: {local}, the \
         traced host's own not called local: {unclaimed}.\n\
         Forged resets seen: {forged}, caught: {caught} (recall {}). Precision of `suspicious`: {}.\n",
        pct(fp, honest),
        pct(caught, forged),
        pct(caught, caught + fp),
    );
    let wrong: Vec<String> = tallies
        .iter()
        .flat_map(|(_, t)| {
            t.examples
                .iter()
                .map(move |e| format!("- {} on the {}: {e}", t.class, t.viewpoint))
        })
        .collect();
    if !wrong.is_empty() {
        let _ = write!(
            md,
            "\nWrong verdicts (up to three per row):\n\n{}\n",
            wrong.join("\n")
        );
    }
    md
}
