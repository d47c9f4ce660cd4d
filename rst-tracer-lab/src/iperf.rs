//! iperf3 through the lab, for the throughput benchmarks: a server in the server namespace, a
//! client in the client namespace, and processes killed by their PID when dropped.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use crate::lab::{Lab, SERVER_IP};

/// The iperf3 port.
pub const PORT: &str = "5201";

/// A process a benchmark started, killed (by its PID) when dropped.
pub struct Started(pub Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Which way the data flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server: the server receives.
    ToServer,
    /// Server to client (`iperf3 -R`): the server sends.
    FromServer,
}

impl Direction {
    /// Name in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Direction::ToServer => "server_receiving",
            Direction::FromServer => "server_sending",
        }
    }
}

/// One iperf3 run of `seconds` in `direction`: received Gbit/s.
pub fn run(lab: &Lab, seconds: u32, direction: Direction) -> Result<f64> {
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &lab.client,
        "iperf3",
        "-J",
        "-c",
        SERVER_IP,
    ])
    .args(["-p", PORT, "-t", &seconds.to_string()]);
    if direction == Direction::FromServer {
        cmd.arg("-R");
    }
    let out = cmd.output().context("running iperf3")?;
    let report: Value = serde_json::from_slice(&out.stdout).context("iperf3 -J output")?;
    ensure!(
        out.status.success(),
        "iperf3 failed: {}",
        report["error"].as_str().unwrap_or("(no message)")
    );
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|bps| bps / 1e9)
        .context("iperf3 report without end.sum_received")
}

/// Starts the iperf3 server in the lab's server namespace and waits until a client gets through.
pub fn serve(lab: &Lab) -> Result<Started> {
    let server = Started(
        Command::new("ip")
            .args(["netns", "exec", &lab.server, "iperf3", "-s", "-p", PORT])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the iperf3 server")?,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while run(lab, 1, Direction::ToServer).is_err() {
        ensure!(
            Instant::now() < deadline,
            "the iperf3 server did not come up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(server)
}
