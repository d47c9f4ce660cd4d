//! Command-line arguments: what the user typed, and its resolution into options.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use rst_tracer_common::names::{DEFAULT_FLOW_TABLE_SIZE, DEFAULT_SAMPLE_GAP_NS};

use crate::{
    attach::{IngressMode, LoadOptions},
    exporter::{self, MetricsOptions},
    report::{context::MAX_CONTEXT_PACKETS, Format},
    source::{live::LiveOptions, replay::ReplayOptions},
    tracepoints,
};
use ipnet::IpNet;

const EXAMPLES: &str = "\
Examples:
  rst-tracer                               trace the default-route interface, text output
  rst-tracer --iface eth0 --format json    JSON Lines on eth0
  rst-tracer -i veth0 -i veth1 --ingress tc --interval 10 --duration 60
  rst-tracer replay incident.pcapng --local 10.0.0.0/8 --format json
  rst-tracer --pcap-out resets.pcapng      the resets as packets, verdicts as comments
  rst-tracer --format json --metrics       JSON Lines, and Prometheus metrics on 127.0.0.1:9464
  rst-tracer replay a.pcap --metrics-file a.prom   the metrics of a replay, written at its end";

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
    /// Capture files, replayed in order as one stream; `-` reads standard input (a pipe works,
    /// e.g. `tcpdump -w - | rst-tracer replay -`).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// A network of the traced host (repeatable; a bare address is that one host): packets from
    /// it are egress, to it ingress. Without it, replayed resets have direction `unknown`.
    #[arg(long, value_name = "CIDR", value_parser = local_network)]
    pub local: Vec<IpNet>,
    /// Also write the resets to this pcapng file: each one's frame as the kernel saw it, its
    /// time and interface, and its verdict as the packet's comment.
    #[arg(long, value_name = "FILE")]
    pub pcap_out: Option<PathBuf>,
    /// In the --pcap-out file, put before each reset up to N packets of its flow from the
    /// capture (those since the flow's previous reset), each with a comment saying so. Replay
    /// only: live, the kernel keeps no packets but resets.
    #[arg(long, value_name = "N", requires = "pcap_out", value_parser = context_packets)]
    pub pcap_out_context: Option<usize>,
    /// Prometheus metrics.
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// `--pcap-out-context`: 1 to `MAX_CONTEXT_PACKETS`.
fn context_packets(v: &str) -> Result<usize, String> {
    whole_between(v, 1, MAX_CONTEXT_PACKETS as u64).map(|n| n as usize)
}

/// The metrics options of `live` and `replay`.
#[derive(Debug, Args, Clone, Default)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics while running. Without ADDR on
    /// 127.0.0.1:9464 (loopback only); give one to listen elsewhere (0.0.0.0:9464, [::1]:9464).
    /// In replay, put it after the files or write --metrics=ADDR.
    #[arg(
        long,
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = exporter::DEFAULT_LISTEN,
        value_parser = listen_address
    )]
    pub metrics: Option<SocketAddr>,
    /// At the end of the run, write the metrics to FILE (Prometheus text format; a new file
    /// renamed over FILE, as the node exporter's textfile collector wants); `-` writes them to
    /// standard error.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

impl MetricsArgs {
    /// The resolved options.
    pub fn resolve(&self) -> MetricsOptions {
        MetricsOptions {
            listen: self.metrics,
            file: self.metrics_file.clone(),
        }
    }
}

/// `--metrics`: an address and a port.
fn listen_address(v: &str) -> Result<SocketAddr, String> {
    v.parse().map_err(|_| {
        format!("'{v}' is not an address and port (127.0.0.1:9464, 0.0.0.0:9464, [::1]:9464)")
    })
}

impl ReplayArgs {
    /// The resolved options.
    pub fn resolve(&self) -> ReplayOptions {
        ReplayOptions {
            files: self.files.clone(),
            format: self.format,
            local: self.local.clone(),
            pcap_out: self.pcap_out.clone(),
            pcap_out_context: self.pcap_out_context,
            metrics: self.metrics.resolve(),
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
    /// Seconds between summaries (0.1 to 86400).
    #[arg(long, value_name = "S", default_value = "5", value_parser = interval_seconds)]
    pub interval: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Stop after this many seconds (up to ten years; default: run until SIGINT/SIGTERM).
    #[arg(long, value_name = "S", allow_negative_numbers = true, value_parser = duration_seconds)]
    pub duration: Option<Duration>,
    /// Kernel flow-table capacity (flows, 1024 to 16777216; LRU beyond it).
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_FLOW_TABLE_SIZE,
        allow_negative_numbers = true,
        value_parser = flow_count
    )]
    pub flows: u32,
    /// Least time between two samples of one flow side, 0 to 3600000 (retransmissions and TTL
    /// changes seen in packets, and the stack's retransmissions, which carry the count of those
    /// folded in).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = DEFAULT_SAMPLE_GAP_NS / 1_000_000,
        allow_negative_numbers = true,
        value_parser = sample_gap_ms
    )]
    pub sample_gap: u64,
    /// Where tracefs is, for the kernel notes (the kernel's reset reasons). The default is mounted
    /// when missing; a directory without the tcp tracepoints turns the kernel notes off.
    #[arg(long, value_name = "DIR", default_value = tracepoints::TRACEFS)]
    pub tracefs: PathBuf,
    /// When a traced interface disappears (a pod's veth deleted), wait for one of that name to
    /// come back and attach to it, instead of ending the run. Keeps CAP_NET_ADMIN for that.
    #[arg(long)]
    pub reattach: bool,
    /// Also write the resets to this pcapng file: each one's frame as the kernel saw it, its
    /// time and interface, and its verdict as the packet's comment.
    #[arg(long, value_name = "FILE")]
    pub pcap_out: Option<PathBuf>,
    /// Write this file once every hook is attached (for scripts that must wait).
    #[arg(long, value_name = "FILE", hide = true)]
    pub ready_file: Option<PathBuf>,
    /// Prometheus metrics.
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// Smallest and largest kernel flow table (`--flows`): below the least, a busy node evicts
/// flows within seconds; the largest takes about 5.6 GB of kernel memory.
const MIN_FLOWS: u32 = 1024;
const MAX_FLOWS: u32 = 1 << 24;
/// Longest sample gap (`--sample-gap`, ms): an hour.
const MAX_SAMPLE_GAP_MS: u64 = 3_600_000;

/// A number of seconds from `min` to `max`, for an option's value parser: a clear message for
/// anything else (not a number, not finite, out of range), never a panic.
fn seconds_between(v: &str, min: f64, max: f64) -> Result<Duration, String> {
    let secs: f64 = v
        .trim()
        .parse()
        .map_err(|_| format!("'{v}' is not a number of seconds"))?;
    if !(min..=max).contains(&secs) {
        return Err(format!("{secs} s is out of range: {min} to {max} s"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A whole number from `min` to `max`, for an option's value parser.
fn whole_between(v: &str, min: u64, max: u64) -> Result<u64, String> {
    match v.trim().parse::<i128>() {
        Ok(n) if (i128::from(min)..=i128::from(max)).contains(&n) => Ok(n as u64),
        Ok(n) => Err(format!("{n} is out of range: {min} to {max}")),
        Err(_) => Err(format!("'{v}' is not a whole number ({min} to {max})")),
    }
}

/// `--flows`: `MIN_FLOWS` to `MAX_FLOWS`.
fn flow_count(v: &str) -> Result<u32, String> {
    // In range means it fits: MAX_FLOWS is a u32.
    whole_between(v, MIN_FLOWS.into(), MAX_FLOWS.into()).map(|n| n as u32)
}

/// `--sample-gap`: 0 to `MAX_SAMPLE_GAP_MS`.
fn sample_gap_ms(v: &str) -> Result<u64, String> {
    whole_between(v, 0, MAX_SAMPLE_GAP_MS)
}

/// `--interval`: 0.1 s (shorter floods the output with summaries) to a day.
fn interval_seconds(v: &str) -> Result<Duration, String> {
    seconds_between(v, 0.1, 86_400.0)
}

/// `--duration`: a millisecond to ten years.
fn duration_seconds(v: &str) -> Result<Duration, String> {
    seconds_between(v, 0.001, 10.0 * 365.0 * 86_400.0)
}

/// `--local`: a network in CIDR notation, or a bare address meaning that one host.
fn local_network(v: &str) -> Result<IpNet, String> {
    if let Ok(net) = v.parse::<IpNet>() {
        return Ok(net);
    }
    match v.parse::<std::net::IpAddr>() {
        Ok(addr) => Ok(IpNet::from(addr)),
        Err(_) => Err(format!(
            "'{v}' is not a network (10.0.0.0/8, 2001:db8::/32) or an address (10.0.0.1)"
        )),
    }
}

impl LiveArgs {
    /// The resolved options (every value was checked when it was parsed).
    pub fn resolve(&self) -> LiveOptions {
        LiveOptions {
            ifaces: self.ifaces.clone(),
            ingress: self.ingress,
            interval: self.interval,
            duration: self.duration,
            format: self.format,
            load: LoadOptions {
                flow_table_size: self.flows,
                sample_gap_ns: self.sample_gap * 1_000_000,
                ..LoadOptions::default()
            },
            tracefs: self.tracefs.clone(),
            ready_file: self.ready_file.clone(),
            reattach: self.reattach,
            pcap_out: self.pcap_out.clone(),
            metrics: self.metrics.resolve(),
        }
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
        assert_eq!(b.resolve().duration, Some(Duration::from_secs(2)));
    }

    #[test]
    fn pcap_out_is_an_option_of_live_and_replay() {
        let a = live(&["rst-tracer", "--pcap-out", "resets.pcapng"]);
        assert_eq!(a.resolve().pcap_out, Some(PathBuf::from("resets.pcapng")));
        let cli = Cli::try_parse_from(["rst-tracer", "replay", "a.pcap", "--pcap-out", "r.pcapng"])
            .unwrap();
        let Some(Command::Replay(r)) = cli.command else {
            panic!("not replay")
        };
        assert_eq!(r.resolve().pcap_out, Some(PathBuf::from("r.pcapng")));
        assert_eq!(live(&["rst-tracer"]).resolve().pcap_out, None);
    }

    #[test]
    fn defaults() {
        let o = live(&["rst-tracer"]).resolve();
        assert!(o.ifaces.is_empty());
        assert_eq!(o.ingress, IngressMode::Auto);
        assert_eq!(o.interval, Duration::from_secs(5));
        assert_eq!(o.format, Format::Text);
        assert_eq!(o.duration, None);
        assert_eq!(o.load.flow_table_size, DEFAULT_FLOW_TABLE_SIZE);
        assert_eq!(o.load.sample_gap_ns, DEFAULT_SAMPLE_GAP_NS);
        let gap = live(&["rst-tracer", "--sample-gap", "250"]).resolve();
        assert_eq!(gap.load.sample_gap_ns, 250_000_000);
    }

    /// The message clap gives for `args`, which must not parse.
    fn refused(args: &[&str]) -> String {
        match Cli::try_parse_from(args) {
            Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn rejects_bad_values_with_the_range() {
        assert!(refused(&["rst-tracer", "--ingress", "bogus"]).contains("bogus"));
        assert!(refused(&["rst-tracer", "--format", "xml"]).contains("xml"));
        for (args, says) in [
            (&["rst-tracer", "--interval", "0"][..], "0.1 to 86400"),
            (&["rst-tracer", "--interval", "1e-12"], "0.1 to 86400"),
            (&["rst-tracer", "--interval", "1e300"], "0.1 to 86400"),
            (&["rst-tracer", "--interval", "NaN"], "0.1 to 86400"),
            (&["rst-tracer", "--interval", "inf"], "0.1 to 86400"),
            (&["rst-tracer", "--interval", "soon"], "not a number"),
            (&["rst-tracer", "--duration", "-1"], "0.001 to 315360000"),
            (&["rst-tracer", "--duration=-1"], "0.001 to 315360000"),
            (&["rst-tracer", "--duration", "1e20"], "0.001 to 315360000"),
            (
                &["rst-tracer", "live", "--duration", "0"],
                "0.001 to 315360000",
            ),
            (&["rst-tracer", "--flows", "10"], "1024 to 16777216"),
            (&["rst-tracer", "--flows", "-5"], "1024 to 16777216"),
            (
                &["rst-tracer", "--flows", "99999999999"],
                "1024 to 16777216",
            ),
            (&["rst-tracer", "--flows", "many"], "not a whole number"),
            (&["rst-tracer", "--sample-gap", "-1"], "0 to 3600000"),
            (
                &["rst-tracer", "--sample-gap", "18446744073709551615"],
                "0 to 3600000",
            ),
            (&["rst-tracer", "--sample-gap", "1.5"], "not a whole number"),
            (
                &["rst-tracer", "replay", "a.pcap", "--local", "10.0.0.300/8"],
                "is not a network",
            ),
            (
                &["rst-tracer", "replay", "a.pcap", "--local", "eth0"],
                "is not a network",
            ),
        ] {
            let message = refused(args);
            assert!(message.contains(says), "{args:?}: {message}");
        }
    }

    #[test]
    fn metrics_listen_on_loopback_unless_given_an_address() {
        let bare = live(&["rst-tracer", "--metrics"]).resolve();
        assert_eq!(
            bare.metrics.listen,
            Some("127.0.0.1:9464".parse().unwrap()),
            "never all interfaces by default"
        );
        assert_eq!(
            live(&["rst-tracer"]).resolve().metrics,
            MetricsOptions::default()
        );
        let given = live(&["rst-tracer", "live", "--metrics", "0.0.0.0:9100"]).resolve();
        assert_eq!(given.metrics.listen, Some("0.0.0.0:9100".parse().unwrap()));
        let v6 = live(&["rst-tracer", "--metrics=[::1]:9464"]).resolve();
        assert_eq!(v6.metrics.listen, Some("[::1]:9464".parse().unwrap()));
        let cli = Cli::try_parse_from([
            "rst-tracer",
            "replay",
            "a.pcap",
            "--metrics",
            "--metrics-file",
            "out.prom",
        ])
        .unwrap();
        let Some(Command::Replay(r)) = cli.command else {
            panic!("not replay")
        };
        let o = r.resolve();
        assert_eq!(o.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(o.metrics.file, Some(PathBuf::from("out.prom")));
        for bad in ["9464", "localhost:9464", "127.0.0.1"] {
            let message = refused(&["rst-tracer", "--metrics", bad]);
            assert!(
                message.contains("is not an address and port"),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn accepts_the_ends_of_each_range_and_a_bare_local_address() {
        let a = live(&["rst-tracer", "--interval", "0.1", "--duration", "315360000"]);
        assert_eq!(a.interval, Duration::from_millis(100));
        assert_eq!(a.duration, Some(Duration::from_secs(315_360_000)));
        let b = live(&[
            "rst-tracer",
            "--flows",
            "16777216",
            "--sample-gap",
            "3600000",
        ]);
        assert_eq!(b.resolve().load.flow_table_size, 16_777_216);
        assert_eq!(b.resolve().load.sample_gap_ns, 3_600_000_000_000);
        let cli =
            Cli::try_parse_from(["rst-tracer", "replay", "a.pcap", "--local", "10.0.0.1"]).unwrap();
        let Some(Command::Replay(r)) = cli.command else {
            panic!("not replay")
        };
        assert_eq!(r.local, ["10.0.0.1/32".parse::<IpNet>().unwrap()]);
    }
}
