//! Command-line arguments: what the user typed, and its resolution into options.

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use rst_tracer_common::names::{DEFAULT_FLOW_TABLE_SIZE, DEFAULT_SAMPLE_GAP_NS};

use crate::{
    attach::{IngressMode, LoadOptions},
    report::Format,
    source::{live::LiveOptions, replay::ReplayOptions},
    stack,
};
use ipnet::IpNet;

const EXAMPLES: &str = "\
Examples:
  rst-tracer                               trace the default-route interface, text output
  rst-tracer --iface eth0 --format json    JSON Lines on eth0
  rst-tracer -i veth0 -i veth1 --ingress tc --interval 10 --duration 60
  rst-tracer replay incident.pcapng --local 10.0.0.0/8 --format json";

/// Trace TCP resets in the kernel and show, for each, the evidence of who sent it.
#[derive(Debug, Parser)]
#[command(name = "rst-tracer", version, args_conflicts_with_subcommands = true, after_help = EXAMPLES)]
pub struct Cli {
    /// What to do (default: live).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the default `live` command.
    #[command(flatten)]
    pub live: LiveArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach to interfaces and stream resets as they happen (the default).
    Live(LiveArgs),
    /// Run capture files (pcap, pcapng) through the same kernel program and report as live.
    Replay(ReplayArgs),
}

/// Arguments of `rst-tracer replay`.
#[derive(Debug, Args, Clone)]
pub struct ReplayArgs {
    /// Capture files, replayed in order as one stream.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// A network of the traced host (repeatable): packets from it are egress, to it ingress.
    /// Without it, replayed resets have direction `unknown`.
    #[arg(long, value_name = "CIDR")]
    pub local: Vec<IpNet>,
}

impl ReplayArgs {
    /// The resolved options.
    pub fn resolve(&self) -> ReplayOptions {
        ReplayOptions {
            files: self.files.clone(),
            format: self.format,
            local: self.local.clone(),
        }
    }
}

/// Arguments of `rst-tracer live`.
#[derive(Debug, Args, Clone)]
pub struct LiveArgs {
    /// Interface to trace; repeat for several. Default: the interface of the default route.
    #[arg(short = 'i', long = "iface", value_name = "IF")]
    pub ifaces: Vec<String>,
    /// Ingress hook: tc for virtual devices and xdp for NICs (auto), or force one.
    #[arg(long, value_enum, default_value_t = IngressMode::Auto)]
    pub ingress: IngressMode,
    /// Seconds between summaries.
    #[arg(long, value_name = "S", default_value_t = 5.0)]
    pub interval: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// Kernel flow-table capacity (flows; LRU beyond it).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_FLOW_TABLE_SIZE)]
    pub flows: u32,
    /// Least time between two samples of one flow side (retransmissions and TTL changes seen
    /// in packets, and the stack's retransmissions, which carry the count of those folded in).
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_SAMPLE_GAP_NS / 1_000_000)]
    pub sample_gap: u64,
    /// Where tracefs is, for the stack view (the kernel's reset reasons). The default is mounted
    /// when missing; a directory without the tcp tracepoints turns the stack view off.
    #[arg(long, value_name = "DIR", default_value = stack::TRACEFS)]
    pub tracefs: PathBuf,
    /// Write this file once every hook is attached (for scripts that must wait).
    #[arg(long, value_name = "FILE", hide = true)]
    pub ready_file: Option<PathBuf>,
}

fn seconds(name: &str, v: f64) -> Result<Duration> {
    if !v.is_finite() || v <= 0.0 {
        bail!("--{name} must be a positive number of seconds, got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

impl LiveArgs {
    /// Validates and resolves the arguments.
    ///
    /// # Errors
    /// A non-positive interval or duration, or a flow table of fewer than 1024 flows.
    pub fn resolve(&self) -> Result<LiveOptions> {
        if self.flows < 1024 {
            bail!("--flows must be at least 1024, got {}", self.flows);
        }
        Ok(LiveOptions {
            ifaces: self.ifaces.clone(),
            ingress: self.ingress,
            interval: seconds("interval", self.interval)?,
            duration: self.duration.map(|d| seconds("duration", d)).transpose()?,
            format: self.format,
            load: LoadOptions {
                flow_table_size: self.flows,
                sample_gap_ns: self.sample_gap.saturating_mul(1_000_000),
                ..LoadOptions::default()
            },
            tracefs: self.tracefs.clone(),
            ready_file: self.ready_file.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(args: &[&str]) -> LiveArgs {
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.command {
            Some(Command::Live(a)) => a,
            None => cli.live,
            Some(other) => panic!("not live: {other:?}"),
        }
    }

    #[test]
    fn replay_takes_files_and_local_networks() {
        let cli = Cli::try_parse_from([
            "rst-tracer",
            "replay",
            "a.pcap",
            "b.pcapng",
            "--local",
            "10.0.0.0/8",
            "--local",
            "2001:db8::/32",
        ])
        .unwrap();
        let Some(Command::Replay(r)) = cli.command else {
            panic!("not replay")
        };
        let o = r.resolve();
        assert_eq!(
            o.files,
            [PathBuf::from("a.pcap"), PathBuf::from("b.pcapng")]
        );
        assert_eq!(o.local.len(), 2);
        assert_eq!(o.format, Format::Text);
        assert!(
            Cli::try_parse_from(["rst-tracer", "replay"]).is_err(),
            "a file is required"
        );
        assert!(
            Cli::try_parse_from(["rst-tracer", "replay", "a.pcap", "--local", "10.0.0.300/8"])
                .is_err()
        );
    }

    #[test]
    fn live_is_the_default_subcommand() {
        let a = live(&[
            "rst-tracer",
            "--iface",
            "eth0",
            "-i",
            "eth1",
            "--format",
            "json",
        ]);
        assert_eq!(a.ifaces, ["eth0", "eth1"]);
        assert_eq!(a.format, Format::Json);
        let b = live(&["rst-tracer", "live", "--ingress", "tc", "--duration", "2"]);
        assert_eq!(b.ingress, IngressMode::Tc);
        assert_eq!(b.resolve().unwrap().duration, Some(Duration::from_secs(2)));
    }

    #[test]
    fn defaults() {
        let o = live(&["rst-tracer"]).resolve().unwrap();
        assert!(o.ifaces.is_empty());
        assert_eq!(o.ingress, IngressMode::Auto);
        assert_eq!(o.interval, Duration::from_secs(5));
        assert_eq!(o.format, Format::Text);
        assert_eq!(o.duration, None);
        assert_eq!(o.load.flow_table_size, DEFAULT_FLOW_TABLE_SIZE);
        assert_eq!(o.load.sample_gap_ns, DEFAULT_SAMPLE_GAP_NS);
        let gap = live(&["rst-tracer", "--sample-gap", "250"])
            .resolve()
            .unwrap();
        assert_eq!(gap.load.sample_gap_ns, 250_000_000);
    }

    #[test]
    fn rejects_bad_values() {
        assert!(Cli::try_parse_from(["rst-tracer", "--ingress", "bogus"]).is_err());
        assert!(Cli::try_parse_from(["rst-tracer", "--format", "xml"]).is_err());
        assert!(live(&["rst-tracer", "--interval", "0"]).resolve().is_err());
        assert!(live(&["rst-tracer", "--duration=-1"]).resolve().is_err());
        assert!(live(&["rst-tracer", "--flows", "10"]).resolve().is_err());
    }
}
