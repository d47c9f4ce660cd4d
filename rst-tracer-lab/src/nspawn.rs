//! A real systemd for the service unit's test: a minimal Debian tree (debootstrap, kept under the
//! build's temporary directory) booted with systemd-nspawn in one of the lab's network
//! namespaces. The machine's own PID 1 need not be systemd; nspawn needs neither a host systemd
//! nor D-Bus with `--register=no --keep-unit`.
//!
//! nspawn itself confines the container: it withholds CAP_BPF, CAP_PERFMON and (with a network
//! namespace of the caller's) CAP_NET_ADMIN from the container's bounding set, and its seccomp
//! filter refuses bpf() and perf_event_open(). The container gets those back, so that what the
//! test sees of the unit is the unit's own hardening, as on a host booted with systemd.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// Programs the container needs on the machine (Debian packages debootstrap, systemd-container,
/// util-linux and procps; `cargo xtask test` installs the first two).
const TOOLS: [&str; 4] = ["debootstrap", "systemd-nspawn", "nsenter", "pgrep"];

/// The Debian release of the tree: its systemd (252) is the one the README reports on.
const RELEASE: &str = "bookworm";

/// The first of the programs the container needs that is missing here, if any.
pub fn missing_tool() -> Option<&'static str> {
    TOOLS.into_iter().find(|tool| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
    })
}

/// A Debian tree with systemd at `root`, made with debootstrap ([`RELEASE`], from Debian's
/// mirror) unless it is there already. Made beside it and renamed, so an interrupted run never
/// leaves half a tree where a whole one is expected.
pub fn debian_tree(root: &Path) -> PathBuf {
    if root.join("lib/systemd/systemd").exists() {
        return root.to_path_buf();
    }
    let release = RELEASE;
    let partial = root.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    let status = Command::new("debootstrap")
        .args(["--variant=minbase", "--include=systemd,systemd-sysv,dbus"])
        .arg(release)
        .arg(&partial)
        .arg("http://deb.debian.org/debian")
        .stdout(Stdio::null())
        .status()
        .expect("running debootstrap");
    assert!(status.success(), "debootstrap {release} failed: {status}");
    std::fs::rename(&partial, root).expect("moving the Debian tree in place");
    root.to_path_buf()
}

/// A booted container; powered off (or killed) when dropped.
pub struct Container {
    nspawn: Option<Child>,
    init: u32,
    log: PathBuf,
    /// Machine (and host) name: this process's, so that runs side by side never share one.
    machine: String,
}

impl Container {
    /// Boots `root` in network namespace `netns` (a name under /var/run/netns) with its console
    /// written to `log`, and waits until its systemd says it is up (at most 60 s).
    pub fn boot(root: &Path, netns: &str, log: &Path) -> Container {
        let console = File::create(log).expect("creating the console log");
        let machine = format!("rst-tracer-unit-test-{}", std::process::id());
        let nspawn = Command::new("systemd-nspawn")
            .arg("--directory")
            .arg(root)
            .args([
                "--boot",
                &format!("--machine={machine}"),
                "--register=no",
                "--keep-unit",
                &format!("--network-namespace-path=/var/run/netns/{netns}"),
                "--capability=CAP_NET_ADMIN,CAP_BPF,CAP_PERFMON",
                "--system-call-filter=bpf perf_event_open",
                "--console=pipe",
            ])
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("console log"))
            .stderr(console)
            .spawn()
            .expect("starting systemd-nspawn");
        let mut c = Container {
            nspawn: Some(nspawn),
            init: 0,
            log: log.to_path_buf(),
            machine,
        };
        let pid = c.nspawn.as_ref().map_or(0, Child::id);
        let deadline = Instant::now() + Duration::from_secs(60);
        while c.init == 0 {
            let found = Command::new("pgrep")
                .args(["-P", &pid.to_string(), "-x", "systemd"])
                .output()
                .expect("running pgrep");
            c.init = String::from_utf8_lossy(&found.stdout)
                .trim()
                .parse()
                .unwrap_or(0);
            c.assert_before(deadline, "no systemd in the container");
        }
        loop {
            let state = c.run(&["systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&state.stdout);
            if matches!(state.trim(), "running" | "degraded") {
                return c;
            }
            c.assert_before(deadline, &format!("the container is {}", state.trim()));
        }
    }

    /// Runs `args` inside the container (every namespace of its PID 1).
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.init.to_string(), "-a"])
            .args(args)
            .output()
            .expect("running nsenter")
    }

    /// What `args` printed inside the container, trimmed.
    pub fn says(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.run(args).stdout)
            .trim()
            .to_string()
    }

    /// Waits until `check` returns something (at most `within`), asking every 200 ms; fails
    /// with `what` and the container's console otherwise.
    pub fn wait_for<T>(
        &self,
        within: Duration,
        what: &str,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(t) = check() {
                return t;
            }
            self.assert_before(deadline, what);
        }
    }

    fn assert_before(&self, deadline: Instant, what: &str) {
        if Instant::now() >= deadline {
            let console = std::fs::read_to_string(&self.log).unwrap_or_default();
            let journal = if self.init == 0 {
                String::new()
            } else {
                self.says(&["journalctl", "-b", "0", "-n", "40", "--no-pager"])
            };
            panic!("{what}; the container's console:\n{console}\nits journal's end:\n{journal}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let Some(mut nspawn) = self.nspawn.take() else {
            return;
        };
        if self.init != 0 {
            let _ = self.run(&["systemctl", "poweroff"]);
        } else {
            // No init found: nspawn passes SIGTERM on to the container as a poweroff.
            // SAFETY: signalling the nspawn this test started.
            unsafe { libc::kill(nspawn.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while nspawn.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if nspawn.try_wait().ok().flatten().is_none() {
            // The container's PID 1 takes every process of its PID namespace with it.
            if self.init != 0 {
                // SAFETY: signalling the container init this test booted.
                unsafe { libc::kill(self.init as i32, libc::SIGKILL) };
            }
            let _ = nspawn.kill();
        }
        let _ = nspawn.wait();
        // What nspawn leaves behind without a systemd on the host: its empty cgroups under the
        // caller's (it keeps the caller's unit) and the machine's propagation directory.
        for group in own_cgroups() {
            for child in ["payload", "supervisor"] {
                let _ = remove_empty_tree(&group.join(child));
            }
        }
        let propagate = Path::new("/run/systemd/nspawn/propagate");
        let _ = std::fs::remove_dir_all(propagate.join(&self.machine));
        let _ = std::fs::remove_dir(propagate);
        let _ = std::fs::remove_dir("/run/systemd/nspawn/locks");
        let _ = std::fs::remove_dir("/run/systemd/nspawn");
    }
}

/// The directories of this process's cgroups in the hierarchies nspawn uses: systemd's named
/// one (cgroup v1) and the unified one (v2, at /sys/fs/cgroup itself when it is the only one).
fn own_cgroups() -> Vec<PathBuf> {
    let unified_only = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let base = match controllers {
                "name=systemd" => "/sys/fs/cgroup/systemd",
                "" if unified_only => "/sys/fs/cgroup",
                "" => "/sys/fs/cgroup/unified",
                _ => return None,
            };
            Some(Path::new(base).join(path.trim_start_matches('/')))
        })
        .collect()
}

/// Removes a tree of empty directories (a cgroup and its children), deepest first.
fn remove_empty_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_empty_tree(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)
}
