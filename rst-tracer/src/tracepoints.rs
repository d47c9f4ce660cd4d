//! The kernel notes: the kernel's own word on resets, from the TCP tracepoints.
//!
//! tcp:tcp_send_reset says why this host sends a reset (`enum sk_rst_reason`, Linux 6.10+) and in
//! which socket state; tcp:tcp_receive_reset fires only when a socket accepts a reset. Their
//! field offsets and the reason names are read from tracefs (`events/tcp/*/format`) at load time,
//! because they change between kernels. Where a tracepoint or a field is missing, the tracer runs
//! without that part and says so once.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    path::Path,
};

use rst_tracer_common::event::{SocketFields, TracepointOffsets, FIELD_ABSENT};

/// Where tracefs is mounted.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// What the kernel offers for the kernel notes.
#[derive(Clone, Debug)]
pub struct Tracepoints {
    /// Field offsets for the kernel program.
    pub offsets: TracepointOffsets,
    /// tcp:tcp_send_reset is usable.
    pub send: bool,
    /// tcp:tcp_receive_reset is usable.
    pub receive: bool,
    /// tcp:tcp_retransmit_skb is usable.
    pub retransmit: bool,
    /// tcp:tcp_retransmit_synack is usable.
    pub synack: bool,
    /// The kernel's names for `enum sk_rst_reason` values.
    pub reasons: BTreeMap<u32, String>,
    /// What is off and why, for the user.
    pub notes: Vec<String>,
}

impl Tracepoints {
    /// Nothing from the stack (capture replay, or no tracefs).
    pub fn off(why: &str) -> Tracepoints {
        Tracepoints {
            offsets: TracepointOffsets::LINUX_6_10,
            send: false,
            receive: false,
            retransmit: false,
            synack: false,
            reasons: BTreeMap::new(),
            notes: vec![why.to_string()],
        }
    }

    /// Reads the tracepoint formats under `tracefs`.
    pub fn discover(tracefs: &Path) -> Tracepoints {
        let read =
            |tp: &str| fs::read_to_string(tracefs.join("events/tcp").join(tp).join("format")).ok();
        let mut view = Tracepoints::off("");
        view.notes.clear();
        let mut o = TracepointOffsets::LINUX_6_10;
        match read("tcp_send_reset") {
            Some(text) => {
                let f = field_offsets(&text);
                let get = |name: &str| f.get(name).copied().unwrap_or(FIELD_ABSENT);
                (o.send_state, o.send_reason, o.send_saddr, o.send_daddr) =
                    (get("state"), get("reason"), get("saddr"), get("daddr"));
                view.send = o.send_saddr != FIELD_ABSENT && o.send_daddr != FIELD_ABSENT;
                if o.send_reason == FIELD_ABSENT {
                    view.notes.push("tcp:tcp_send_reset has no reason field (Linux < 6.10): local resets carry no kernel reason".into());
                }
                view.reasons = reason_names(&text);
            }
            None => view
                .notes
                .push("tcp:tcp_send_reset is missing: local resets carry no kernel reason".into()),
        }
        let mut socket_tracepoint = |tp: &str, what_is_off: &str| {
            let fields = match read(tp).map(|text| socket_fields(&text)) {
                Some(Some(fields)) => return Some(fields),
                Some(None) => "lacks the fields this tracer reads",
                None => "is missing",
            };
            view.notes.push(format!("tcp:{tp} {fields}: {what_is_off}"));
            None
        };
        let receive = socket_tracepoint("tcp_receive_reset", "received resets carry no 'accepted'");
        let retransmit = socket_tracepoint("tcp_retransmit_skb", "no stack retransmission counts");
        let synack = socket_tracepoint("tcp_retransmit_synack", "no SYN-ACK retransmission counts");
        (view.receive, view.retransmit, view.synack) =
            (receive.is_some(), retransmit.is_some(), synack.is_some());
        o.receive = receive.unwrap_or(o.receive);
        o.retransmit = retransmit.unwrap_or(o.retransmit);
        o.synack = synack.unwrap_or(o.synack);
        view.offsets = o;
        view
    }

    /// The kernel's name of a reset reason.
    pub fn reason_name(&self, reason: u32) -> Option<String> {
        self.reasons.get(&reason).cloned()
    }
}

/// The shared socket fields of a tcp tracepoint `format` (`state` may be absent), or `None`
/// when one of the others is.
pub fn socket_fields(format: &str) -> Option<SocketFields> {
    let f = field_offsets(format);
    let get = |name: &str| f.get(name).copied();
    Some(SocketFields {
        state: get("state").unwrap_or(FIELD_ABSENT),
        sport: get("sport")?,
        dport: get("dport")?,
        family: get("family")?,
        saddr: get("saddr")?,
        daddr: get("daddr")?,
        saddr_v6: get("saddr_v6")?,
        daddr_v6: get("daddr_v6")?,
    })
}

/// Field name -> offset, from a tracepoint `format` file.
pub fn field_offsets(format: &str) -> HashMap<String, u32> {
    format
        .lines()
        .filter_map(|line| {
            let decl = line.trim().strip_prefix("field:")?;
            let (decl, rest) = decl.split_once(';')?;
            let name = decl.split_whitespace().last()?.trim_start_matches('*');
            let name = name.split('[').next()?;
            let offset = rest
                .split("offset:")
                .nth(1)?
                .split(';')
                .next()?
                .trim()
                .parse()
                .ok()?;
            Some((name.to_string(), offset))
        })
        .collect()
}

/// `enum sk_rst_reason` value -> name, from the `__print_symbolic(REC->reason, ...)` of the
/// tcp_send_reset format.
pub fn reason_names(format: &str) -> BTreeMap<u32, String> {
    let Some(start) = format.find("__print_symbolic(REC->reason") else {
        return BTreeMap::new();
    };
    let list = &format[start..];
    let end = list.find("})").map(|i| i + 1).unwrap_or(list.len());
    list[..end]
        .split('{')
        .skip(1)
        .filter_map(|item| {
            let (num, name) = item.split_once(',')?;
            let name = name.split('"').nth(1)?;
            Some((num.trim().parse().ok()?, name.to_string()))
        })
        .collect()
}

/// What a reset reason usually means on the wire, for the reasons with a well-known reading
/// (`include/net/rstreason.h`).
pub fn reason_meaning(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "NO_SOCKET" => "segments for connections this host does not have: ECMP/VIP mis-routing, a restarted service, or a closed port",
        "TCP_TIMEWAIT_SOCKET" => "segments for connections this host already closed (a peer still sending)",
        "TCP_ABORT_ON_CLOSE" => "the application closed with data it had not read",
        "TCP_ABORT_ON_DATA" => "data arrived after the application closed its side",
        "TCP_ABORT_ON_LINGER" => "the FIN_WAIT2 linger time ran out",
        "TCP_ABORT_ON_MEMORY" => "out of socket memory or too many orphaned sockets",
        "TCP_STATE" => "the application aborted the connection (SO_LINGER 0 close, disconnect)",
        "TCP_KEEPALIVE_TIMEOUT" => "keepalive probes went unanswered",
        "TCP_INVALID_ACK_SEQUENCE" => "a handshake ACK for data this host never sent",
        _ => return None,
    })
}

/// The name of a TCP socket state (`include/net/tcp_states.h`).
pub fn state_name(state: u32) -> Option<&'static str> {
    const NAMES: [&str; 13] = [
        "",
        "TCP_ESTABLISHED",
        "TCP_SYN_SENT",
        "TCP_SYN_RECV",
        "TCP_FIN_WAIT1",
        "TCP_FIN_WAIT2",
        "TCP_TIME_WAIT",
        "TCP_CLOSE",
        "TCP_CLOSE_WAIT",
        "TCP_LAST_ACK",
        "TCP_LISTEN",
        "TCP_CLOSING",
        "TCP_NEW_SYN_RECV",
    ];
    NAMES.get(state as usize).copied().filter(|n| !n.is_empty())
}

/// tracefs as [`ensure_tracefs`] left it: already there, or mounted by this process, which
/// unmounts it when this is dropped (once the tracepoints are attached: their links do not
/// need it), so the host is left as it was found.
#[derive(Debug)]
pub struct Tracefs {
    /// True when this process mounted it.
    mounted: bool,
}

impl Tracefs {
    /// A note for the user when this process had to mount tracefs.
    pub fn note(&self) -> Option<String> {
        self.mounted.then(|| {
            format!("mounted tracefs at {TRACEFS} for the TCP tracepoints (unmounted once they are attached)")
        })
    }
}

impl Drop for Tracefs {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        let Ok(target) = std::ffi::CString::new(TRACEFS) else {
            return;
        };
        // SAFETY: a valid NUL-terminated path; unmounts only the tracefs this process mounted.
        if unsafe { libc::umount2(target.as_ptr(), 0) } != 0 {
            log::warn!(
                "could not unmount the tracefs mounted at {TRACEFS}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Makes sure tracefs is mounted at [`TRACEFS`] (it is not, for example, inside `ip netns exec`,
/// which mounts a fresh /sys): what it found or did, or why it could not mount it.
pub fn ensure_tracefs() -> Result<Tracefs, String> {
    let dir = Path::new(TRACEFS);
    if dir.join("events").is_dir() {
        return Ok(Tracefs { mounted: false });
    }
    let c = |s: &str| std::ffi::CString::new(s).unwrap_or_default();
    let (src, target, fstype) = (c("nodev"), c(TRACEFS), c("tracefs"));
    // SAFETY: valid NUL-terminated strings; no mount data.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(Tracefs { mounted: true })
    } else {
        Err(format!(
            "tracefs is not mounted at {TRACEFS} and mounting it failed ({})",
            std::io::Error::last_os_error()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEND: &str = "name: tcp_send_reset
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:const void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int state;\toffset:24;\tsize:4;\tsigned:1;
\tfield:enum sk_rst_reason reason;\toffset:28;\tsize:4;\tsigned:0;
\tfield:__u8 saddr[28];\toffset:32;\tsize:28;\tsigned:0;
\tfield:__u8 daddr[28];\toffset:60;\tsize:28;\tsigned:0;

print fmt: \"state=%s reason=%s\", __print_symbolic(REC->state, { TCP_ESTABLISHED, \"TCP_ESTABLISHED\" }), __print_symbolic(REC->reason, { 0, \"NOT_SPECIFIED\" }, { 1, \"NO_SOCKET\" }, { 12, \"TCP_ABORT_ON_LINGER\" })";

    #[test]
    fn reads_offsets_and_reason_names_from_a_format_file() {
        let f = field_offsets(SEND);
        assert_eq!(
            (
                f["state"],
                f["reason"],
                f["saddr"],
                f["daddr"],
                f["skbaddr"]
            ),
            (24, 28, 32, 60, 8)
        );
        let r = reason_names(SEND);
        assert_eq!(r.get(&1).map(String::as_str), Some("NO_SOCKET"));
        assert_eq!(r.get(&12).map(String::as_str), Some("TCP_ABORT_ON_LINGER"));
        assert_eq!(
            r.len(),
            3,
            "only the reason list, not the state list: {r:?}"
        );
    }

    #[test]
    fn socket_fields_match_the_compiled_in_layout_of_linux_6_10() {
        let line = |name: &str, off: u32| format!("\tfield:__u16 {name};\toffset:{off};\n");
        let format = |state: Option<u32>, sport: u32| {
            let mut s = state
                .map(|o| format!("\tfield:int state;\toffset:{o};\n"))
                .unwrap_or_default();
            s += &line("sport", sport);
            s += &line("dport", sport + 2);
            s += &line("family", sport + 4);
            s += &format!("\tfield:__u8 saddr[4];\toffset:{};\n", sport + 6);
            s += &format!("\tfield:__u8 daddr[4];\toffset:{};\n", sport + 10);
            s += &format!("\tfield:__u8 saddr_v6[16];\toffset:{};\n", sport + 14);
            s += &format!("\tfield:__u8 daddr_v6[16];\toffset:{};\n", sport + 30);
            s
        };
        let known = TracepointOffsets::LINUX_6_10;
        assert_eq!(socket_fields(&format(None, 16)), Some(known.receive));
        assert_eq!(socket_fields(&format(Some(24), 28)), Some(known.retransmit));
        assert_eq!(socket_fields(&format(None, 24)), Some(known.synack));
        assert_eq!(
            socket_fields(&format(None, 16).replace("family", "fam")),
            None
        );
    }

    #[test]
    fn a_kernel_without_the_reason_field_is_noted() {
        let dir = std::env::temp_dir().join(format!("rst-tracer-tracefs-{}", std::process::id()));
        let tp = dir.join("events/tcp/tcp_send_reset");
        fs::create_dir_all(&tp).unwrap();
        fs::write(
            tp.join("format"),
            SEND.replace(
                "\tfield:enum sk_rst_reason reason;\toffset:28;\tsize:4;\tsigned:0;\n",
                "",
            ),
        )
        .unwrap();
        let v = Tracepoints::discover(&dir);
        assert!(v.send);
        assert_eq!(v.offsets.send_reason, FIELD_ABSENT);
        assert!(!v.receive);
        assert!(
            v.notes.iter().any(|n| n.contains("no reason field")),
            "{:?}",
            v.notes
        );
        assert!(
            v.notes.iter().any(|n| n.contains("tcp_receive_reset")),
            "{:?}",
            v.notes
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn state_names() {
        assert_eq!(state_name(1), Some("TCP_ESTABLISHED"));
        assert_eq!(state_name(7), Some("TCP_CLOSE"));
        assert_eq!(state_name(0), None);
        assert_eq!(state_name(99), None);
    }
}
