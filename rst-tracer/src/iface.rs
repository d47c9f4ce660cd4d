//! Network interfaces: the default-route interface, name/index look-ups, and whether a device is
//! virtual (veth, bridge, ...) or a physical NIC, which decides the ingress hook in `auto` mode.

use std::{ffi::CString, fs, path::Path};

use anyhow::{bail, Context, Result};

/// The interface of the IPv4 default route, else of the IPv6 one.
///
/// # Errors
/// When neither routing table has a default route.
pub fn default_route() -> Result<String> {
    let v4 = fs::read_to_string("/proc/net/route").unwrap_or_default();
    if let Some(iface) = default_from_ipv4_routes(&v4) {
        return Ok(iface);
    }
    let v6 = fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    if let Some(iface) = default_from_ipv6_routes(&v6) {
        return Ok(iface);
    }
    bail!("no default route in /proc/net/route or /proc/net/ipv6_route: name the interface with --iface IF")
}

/// The interface of the first default route (destination and mask 0) in `/proc/net/route` text.
pub fn default_from_ipv4_routes(text: &str) -> Option<String> {
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_string())
    })
}

/// The interface of the first default route (::/0 with a gateway or device) in
/// `/proc/net/ipv6_route` text; the loopback catch-all is skipped.
pub fn default_from_ipv6_routes(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() >= 10
            && f[0] == "00000000000000000000000000000000"
            && f[1] == "00"
            && f[9] != "lo")
            .then(|| f[9].to_string())
    })
}

/// Every address of this host (this network namespace), from getifaddrs.
pub fn local_addresses() -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return out;
    }
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: cur walks the list getifaddrs returned; each sockaddr matches its family.
        unsafe {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() {
                match (*addr).sa_family as i32 {
                    libc::AF_INET => {
                        let a = &*(addr as *const libc::sockaddr_in);
                        out.push(std::net::IpAddr::from(a.sin_addr.s_addr.to_ne_bytes()));
                    }
                    libc::AF_INET6 => {
                        let a = &*(addr as *const libc::sockaddr_in6);
                        out.push(std::net::IpAddr::from(a.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
    }
    // SAFETY: the list getifaddrs allocated.
    unsafe { libc::freeifaddrs(list) };
    out
}

/// Interface index of `name`, if it exists.
pub fn index_of(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: c is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// Name of interface `index`, if it exists.
pub fn name_of(index: u32) -> Option<String> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// True for software devices (veth, bridge, bond, vxlan, loopback, ...): they have no `device`
/// link in sysfs.
pub fn is_virtual(name: &str) -> bool {
    !Path::new("/sys/class/net")
        .join(name)
        .join("device")
        .exists()
}

/// Checks that every interface exists.
///
/// # Errors
/// Names the first unknown interface and lists the ones that exist.
pub fn check_exist(names: &[String]) -> Result<()> {
    for name in names {
        if index_of(name).is_none() {
            let known: Vec<String> = fs::read_dir("/sys/class/net")
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            bail!(
                "unknown interface {name:?} (this namespace has: {})",
                known.join(", ")
            );
        }
    }
    Ok(())
}

/// The default-route interface, with context for the error.
pub fn default_or_named(names: &[String]) -> Result<Vec<String>> {
    if names.is_empty() {
        Ok(vec![
            default_route().context("choosing the interface to trace")?
        ])
    } else {
        check_exist(names)?;
        Ok(names.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_ipv4_default_route() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth1\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    eth0\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_from_ipv4_routes(text).as_deref(), Some("eth0"));
        assert_eq!(default_from_ipv4_routes("Iface\n"), None);
    }

    #[test]
    fn finds_the_ipv6_default_route_but_not_loopback() {
        let z = "00000000000000000000000000000000";
        let text = format!(
            "{z} 00 {z} 00 {z} ffffffff 00000001 00000000 00200200       lo\n\
             {z} 00 {z} 00 fe800000000000000000000000000001 00000400 00000001 00000000 00450003     eth2\n"
        );
        assert_eq!(default_from_ipv6_routes(&text).as_deref(), Some("eth2"));
    }

    #[test]
    fn local_addresses_include_loopback() {
        assert!(local_addresses().contains(&"127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn loopback_is_virtual_and_exists() {
        assert!(is_virtual("lo"));
        assert_eq!(index_of("lo"), Some(1));
        assert_eq!(name_of(1).as_deref(), Some("lo"));
        assert!(check_exist(&["no-such-if0".into()])
            .unwrap_err()
            .to_string()
            .contains("unknown interface"));
    }
}
