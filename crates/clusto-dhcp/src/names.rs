//! The original clusto's DHCP option names. Its dhcpd turned every merged
//! `dhcp.<name>` into the option scapy calls `<name>`; inventories coming
//! from it set `dhcp.domain`, `dhcp.name_server`, `dhcp.NTP_server`, …
//! This is the one table that says what each of those names means here:
//! an alias of this project's own setting, or an option code and how its
//! value is written on the wire. README's "Coming from clusto" prints it.

/// How an option's value is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// One or more IPv4 addresses (`a, b` or a JSON list).
    Ips,
    /// Text as bytes.
    Text,
    U8,
    U16,
    U32,
    I32,
}

/// What an original name means here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meaning {
    /// The same as this project's `dhcp.<name>`.
    Alias(&'static str),
    /// Option `code`, encoded as `wire`.
    Option(u8, Wire),
}

use Meaning::{Alias, Option as Opt};
use Wire::*;

/// Scapy's option names, as the original used them.
pub const ORIGINAL_NAMES: &[(&str, Meaning)] = &[
    ("subnet_mask", Opt(1, Ips)),
    ("time_zone", Opt(2, I32)),
    ("router", Opt(3, Ips)),
    ("time_server", Opt(4, Ips)),
    ("IEN_name_server", Opt(5, Ips)),
    ("name_server", Alias("dns-servers")),
    ("log_server", Opt(7, Ips)),
    ("cookie_server", Opt(8, Ips)),
    ("lpr_server", Opt(9, Ips)),
    ("impress-servers", Opt(10, Ips)),
    ("resource-location-servers", Opt(11, Ips)),
    ("hostname", Opt(12, Text)),
    ("boot-size", Opt(13, U16)),
    ("dump_path", Opt(14, Text)),
    ("domain", Alias("domain-name")),
    ("swap-server", Opt(16, Ips)),
    ("root_disk_path", Opt(17, Text)),
    ("extensions-path", Opt(18, Text)),
    ("ip-forwarding", Opt(19, U8)),
    ("non-local-source-routing", Opt(20, U8)),
    ("policy-filter", Opt(21, Ips)),
    ("max_dgram_reass_size", Opt(22, U16)),
    ("default_ttl", Opt(23, U8)),
    ("pmtu_timeout", Opt(24, U32)),
    ("path-mtu-plateau-table", Opt(25, U16)),
    ("interface-mtu", Opt(26, U16)),
    ("all-subnets-local", Opt(27, U8)),
    ("broadcast_address", Opt(28, Ips)),
    ("perform-mask-discovery", Opt(29, U8)),
    ("mask-supplier", Opt(30, U8)),
    ("router-discovery", Opt(31, U8)),
    ("router-solicitation-address", Opt(32, Ips)),
    ("static-routes", Opt(33, Ips)),
    ("trailer-encapsulation", Opt(34, U8)),
    ("arp_cache_timeout", Opt(35, U32)),
    ("ieee802-3-encapsulation", Opt(36, U8)),
    ("tcp_ttl", Opt(37, U8)),
    ("tcp_keepalive_interval", Opt(38, U32)),
    ("tcp_keepalive_garbage", Opt(39, U8)),
    ("NIS_domain", Opt(40, Text)),
    ("NIS_server", Opt(41, Ips)),
    ("NTP_server", Alias("ntp-servers")),
    ("vendor_specific", Opt(43, Text)),
    ("NetBIOS_server", Opt(44, Ips)),
    ("NetBIOS_dist_server", Opt(45, Ips)),
    ("netbios-scope", Opt(47, Text)),
    ("font-servers", Opt(48, Ips)),
    ("x-display-manager", Opt(49, Ips)),
    ("lease_time", Alias("lease-time")),
    ("max_dhcp_size", Opt(57, U16)),
    ("renewal_time", Opt(58, U32)),
    ("rebinding_time", Opt(59, U32)),
    ("nwip-domain-name", Opt(62, Text)),
    ("NISplus_domain", Opt(64, Text)),
    ("NISplus_server", Opt(65, Ips)),
    ("boot-file-name", Alias("tftp_filename")),
    ("mobile-ip-home-agent", Opt(68, Ips)),
    ("SMTP_server", Opt(69, Ips)),
    ("POP3_server", Opt(70, Ips)),
    ("NNTP_server", Opt(71, Ips)),
    ("WWW_server", Opt(72, Ips)),
    ("Finger_server", Opt(73, Ips)),
    ("IRC_server", Opt(74, Ips)),
    ("StreetTalk_server", Opt(75, Ips)),
    ("StreetTalk_Dir_Assistance", Opt(76, Ips)),
    ("nds-server", Opt(85, Ips)),
    ("nds-tree-name", Opt(86, Text)),
    ("nds-context", Opt(87, Text)),
    ("netinfo-server-address", Opt(112, Ips)),
    ("netinfo-server-tag", Opt(113, Text)),
    ("default-url", Opt(114, Text)),
    ("subnet-selection", Opt(118, Ips)),
    ("pxelinux_configuration_file", Alias("pxelinux-configfile")),
    ("pxelinux_path_prefix", Alias("pxelinux-pathprefix")),
    ("pxelinux_reboot_time", Alias("pxelinux-reboottime")),
];

/// What an original name means, if it is one.
pub fn original(name: &str) -> Option<Meaning> {
    ORIGINAL_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| *m)
}

/// The original names that are aliases of this project's `name`.
pub fn aliases_of(name: &str) -> Vec<&'static str> {
    ORIGINAL_NAMES
        .iter()
        .filter(|(_, m)| matches!(m, Alias(a) if *a == name))
        .map(|(n, _)| *n)
        .collect()
}

/// `text` written as `wire`; None when it does not fit (the option is
/// then left out rather than sent garbled).
pub fn encode(wire: Wire, text: &str) -> Option<Vec<u8>> {
    let t = text.trim();
    Some(match wire {
        Ips => {
            let ips: Vec<std::net::Ipv4Addr> = t
                .split([',', ' '])
                .filter(|x| !x.trim().is_empty())
                .map(|x| x.trim().parse())
                .collect::<Result<_, _>>()
                .ok()?;
            if ips.is_empty() {
                return None;
            }
            ips.iter().flat_map(|a| a.octets()).collect()
        }
        Text => t.as_bytes().to_vec(),
        U8 => t.parse::<u8>().ok()?.to_be_bytes().to_vec(),
        U16 => t.parse::<u16>().ok()?.to_be_bytes().to_vec(),
        U32 => t.parse::<u32>().ok()?.to_be_bytes().to_vec(),
        I32 => t.parse::<i32>().ok()?.to_be_bytes().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_aliases_name_real_settings() {
        let mut seen = std::collections::HashSet::new();
        for (n, m) in ORIGINAL_NAMES {
            assert!(seen.insert(*n), "{n} twice");
            if let Alias(a) = m {
                assert!(
                    [
                        "dns-servers",
                        "domain-name",
                        "ntp-servers",
                        "lease-time",
                        "tftp_filename",
                        "pxelinux-configfile",
                        "pxelinux-pathprefix",
                        "pxelinux-reboottime"
                    ]
                    .contains(a),
                    "{n} → {a}"
                );
            }
        }
        assert_eq!(aliases_of("domain-name"), vec!["domain"]);
    }

    #[test]
    fn readme_documents_every_name() {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("## Coming from clusto").expect("section")..];
        for (n, _) in ORIGINAL_NAMES {
            assert!(section.contains(&format!("`{n}`")), "README lacks {n}");
        }
    }

    #[test]
    fn values_are_encoded_by_their_option_type() {
        assert_eq!(
            encode(Ips, "10.0.0.1, 10.0.0.2"),
            Some(vec![10, 0, 0, 1, 10, 0, 0, 2])
        );
        assert_eq!(encode(Ips, "not-an-ip"), None);
        assert_eq!(encode(U32, "600"), Some(vec![0, 0, 2, 88]));
        assert_eq!(encode(U16, "1500"), Some(vec![5, 220]));
        assert_eq!(encode(U8, "300"), None);
        assert_eq!(
            encode(I32, "-3600"),
            Some((-3600i32).to_be_bytes().to_vec())
        );
        assert_eq!(encode(Text, "nis.example"), Some(b"nis.example".to_vec()));
    }
}
