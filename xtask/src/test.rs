//! `cargo xtask test`: the whole suite. Builds the eBPF object, then runs every test of the
//! workspace; the kernel and lab tests need root and fail (never skip) without it. Ends with one
//! line totalling every test binary's results.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use crate::{
    build,
    exec::{is_root, workspace_root},
    toolchain,
};

/// Options of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// Passed and failed counts from a `test result:` line of cargo test.
fn counts(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let number = |word: &str| {
        rest.split(';')
            .find_map(|part| {
                part.trim()
                    .strip_suffix(word)
                    .map(|n| n.trim().rsplit(' ').next().unwrap_or(""))
            })
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some((number(" passed")?, number(" failed")?))
}

/// Builds, then runs the tests.
///
/// # Errors
/// A failed build or a failed test.
pub fn run(opts: &Options) -> Result<()> {
    let dir = build::build_ebpf()?;
    if is_root() {
        toolchain::ensure_test_tools()?;
    } else {
        eprintln!(
            "xtask: not root: the kernel and lab tests will fail; run `sudo -E cargo xtask test`"
        );
    }
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root())
        .args(["test", "--no-fail-fast"])
        .args(&opts.args)
        .env("RST_TRACER_EBPF_OBJECT", dir.join("rst-tracer-ebpf"))
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line?;
        println!("{line}");
        if let Some((p, f)) = counts(&line) {
            passed += p;
            failed += f;
        }
    }
    let status = child.wait()?;
    println!("all tests: {passed} passed, {failed} failed");
    if !status.success() || failed > 0 {
        bail!("{cmd:?} failed: {status}");
    }
    if passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::counts;

    #[test]
    fn reads_cargo_test_result_lines() {
        let line = "test result: ok. 17 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 6.87s";
        assert_eq!(counts(line), Some((17, 2)));
        assert_eq!(
            counts("test result: FAILED. 0 passed; 1 failed; 0 ignored"),
            Some((0, 1))
        );
        assert_eq!(counts("running 3 tests"), None);
    }
}
