//! The command line as a user meets it: a bad value on any numeric option is a usage error
//! (exit 2) that names the option and its range, never a panic. Needs no root and no kernel
//! object: every value is checked before anything is loaded.

use std::process::Command;

/// Runs the binary with `args`: its exit code and standard error.
fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rst-tracer"))
        .args(args)
        .output()
        .expect("running rst-tracer");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_numbers_are_usage_errors_that_name_the_option_and_its_range() {
    for (args, option, range) in [
        (&["--interval", "1e300"][..], "--interval", "0.1 to 86400"),
        (&["--interval", "1e-12"], "--interval", "0.1 to 86400"),
        (
            &["live", "--duration", "1e20"],
            "--duration",
            "0.001 to 315360000",
        ),
        (&["--duration", "-1"], "--duration", "0.001 to 315360000"),
        (&["--flows", "0"], "--flows", "1024 to 16777216"),
        (&["--sample-gap", "-3"], "--sample-gap", "0 to 3600000"),
        (
            &["replay", "x.pcap", "--local", "10.0.0.300"],
            "--local",
            "not a network",
        ),
    ] {
        let (code, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        assert!(
            stderr.contains(option) && stderr.contains(range),
            "{args:?} does not name {option} and {range}: {stderr}"
        );
    }
}
