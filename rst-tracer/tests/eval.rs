//! The quick subset of `cargo xtask eval`: every class of the labelled lab corpus at a small
//! scale, with the tracer on the server and on the router. No honest reset may be called
//! suspicious or be given to the traced host when it did not send it, every forged reset the
//! tracer saw must be caught, and no handshake may be quicker than the router's delay line.
//! Needs root and the built object.

use rst_tracer_lab::require_privileges;

use rst_tracer_lab::eval::{self, Kind, Viewpoint, CLASSES, DELAY};

const TRACER: &str = env!("CARGO_BIN_EXE_rst-tracer");
/// Connections of the largest honest class (the others a share of it, forged classes once).
const SCALE: usize = 60;

fn check(viewpoint: Viewpoint) {
    require_privileges!();
    let mut failures = Vec::new();
    let mut timed = 0;
    for class in CLASSES {
        let t = eval::run(TRACER, class, viewpoint, SCALE);
        timed += usize::from(t.min_rtt_us.is_some());
        if t.false_positives > 0 || t.misattributed_local > 0 || t.unclaimed_local > 0 {
            failures.push(format!("{t:#?}"));
        }
        if class.kind == Kind::Forged && (t.forged == 0 || t.caught < t.forged) {
            failures.push(format!("{t:#?}"));
        }
        // Every path crosses the delay line: no handshake can be quicker.
        if t.min_rtt_us.is_some_and(|us| us < DELAY.as_micros() as u64) {
            failures.push(format!(
                "{}: a handshake quicker than the delay line: {t:#?}",
                class.name
            ));
        }
        if class.kind == Kind::Honest && t.honest == 0 {
            failures.push(format!("{}: no honest reset reported", class.name));
        }
    }
    assert!(
        timed > 0,
        "no reset's flow had a handshake: the delay line went untested"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn on_the_server_honest_resets_are_honest_and_forged_ones_caught() {
    check(Viewpoint::Server);
}

#[test]
fn on_the_router_forwarded_resets_are_judged_and_none_is_local() {
    check(Viewpoint::Router);
}
