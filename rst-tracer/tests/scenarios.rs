//! The lab scenarios (`rst-tracer-lab/src/scenarios.rs`) as tests: every forged reset caught with the
//! expected evidence, no honest reset called suspicious. They need root and the built eBPF
//! object (`cargo xtask test`) and fail plainly without. `cargo xtask lab --report` runs the same
//! scenarios and writes the table to docs/lab-report.md.

use rst_tracer_lab::scenarios;

/// The tracer binary this test runs.
const TRACER: &str = env!("CARGO_BIN_EXE_rst-tracer");

/// Runs and checks scenario `name`: its outcome, or None where it cannot run (said loudly).
fn check(name: &str) -> Option<scenarios::Outcome> {
    if !rst_tracer_lab::privileged() {
        return None;
    }
    let scenario = scenarios::ALL.iter().find(|s| s.name == name).unwrap();
    let o = scenarios::run(TRACER, scenario);
    assert!(
        o.missed.is_empty(),
        "{name}: forged resets not caught: {:#?}",
        o.missed
    );
    assert!(
        o.unseen.is_empty(),
        "{name}: forged resets toward the traced host never reported: {:#?}",
        o.unseen
    );
    assert!(
        o.false_positives.is_empty(),
        "{name}: honest resets called suspicious: {:#?}",
        o.false_positives
    );
    assert!(
        o.stack_gaps.is_empty(),
        "{name}: resets without the stack's word: {:#?}",
        o.stack_gaps
    );
    assert!(
        o.resets > 0 || o.explained > 0,
        "{name}: nothing reported at all"
    );
    if !scenario.expect_codes.is_empty() {
        assert!(
            o.forged > 0,
            "{name}: none of the forged resets reached the tracer"
        );
    }
    if !scenario.explain_codes.is_empty() {
        assert!(
            o.explained > 0,
            "{name}: no reset carries {:?}",
            scenario.explain_codes
        );
    }
    Some(o)
}

#[test]
fn proxy_ttl() {
    check("proxy-ttl");
}

#[test]
fn censor() {
    check("censor");
}

#[test]
fn blind() {
    check("blind");
}

#[test]
fn client_continues() {
    check("client-continues");
}

#[test]
fn ecmp_vip() {
    check("ecmp-vip");
}

#[test]
fn black_hole() {
    check("black-hole");
}

#[test]
fn firewall() {
    check("firewall");
}

#[test]
fn honest() {
    check("honest");
}

#[test]
fn benign_load() {
    let Some(o) = check("benign-load") else {
        return;
    };
    // Every aborted connection's reset, each once (the load says which connections abort).
    assert_eq!(o.resets, scenarios::benign_resets(), "benign load: {o:#?}");
}

#[test]
fn every_scenario_has_a_test() {
    let tested = [
        "proxy-ttl",
        "censor",
        "blind",
        "client-continues",
        "ecmp-vip",
        "black-hole",
        "firewall",
        "honest",
        "benign-load",
    ];
    let all: Vec<&str> = scenarios::ALL.iter().map(|s| s.name).collect();
    assert_eq!(all, tested);
}
