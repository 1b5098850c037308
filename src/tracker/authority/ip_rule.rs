//! [`IpRule`]: the `<ip>` of a user in authority.xml, an address, a CIDR network or `*`, and
//! whether a request's source address matches it (docs/protocol.md 3.1).

use std::fmt;
use std::net::IpAddr;

/// Where a user's requests may come from (`<ip>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpRule {
    /// `*`: anywhere.
    Any,
    /// One address, or a network in CIDR notation (`10.1.0.0/16`, `fd00::/8`).
    Net { addr: IpAddr, prefix: u8 },
}

impl IpRule {
    /// Reads `*`, an address, or `address/prefix`.
    pub fn parse(text: &str) -> Result<IpRule, &'static str> {
        if text == "*" {
            return Ok(IpRule::Any);
        }
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| "expected an IP address, address/prefix, or *")?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err("prefix length out of range"),
            },
        };
        Ok(IpRule::Net { addr, prefix })
    }

    /// Whether a request from `source` may use this user. IPv4 addresses seen as IPv4-mapped
    /// IPv6 (on a dual-stack socket) match IPv4 rules.
    pub fn matches(&self, source: IpAddr) -> bool {
        let IpRule::Net { addr, prefix } = *self else {
            return true;
        };
        let source = source.to_canonical();
        match (addr, source) {
            (IpAddr::V4(rule), IpAddr::V4(src)) => prefix_eq(&rule.octets(), &src.octets(), prefix),
            (IpAddr::V6(rule), IpAddr::V6(src)) => prefix_eq(&rule.octets(), &src.octets(), prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

impl fmt::Display for IpRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpRule::Any => f.write_str("*"),
            IpRule::Net { addr, prefix } => {
                let max = if addr.is_ipv4() { 32 } else { 128 };
                if *prefix == max {
                    write!(f, "{addr}")
                } else {
                    write!(f, "{addr}/{prefix}")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_rules() {
        let rule = |s| IpRule::parse(s).unwrap();
        assert!(rule("*").matches("1.2.3.4".parse().unwrap()));
        assert!(rule("1.2.3.4").matches("1.2.3.4".parse().unwrap()));
        assert!(!rule("1.2.3.4").matches("1.2.3.5".parse().unwrap()));
        assert!(rule("1.2.3.4").matches("::ffff:1.2.3.4".parse().unwrap()));
        assert!(rule("10.1.0.0/17").matches("10.1.127.255".parse().unwrap()));
        assert!(!rule("10.1.0.0/17").matches("10.1.128.0".parse().unwrap()));
        assert!(rule("0.0.0.0/0").matches("8.8.8.8".parse().unwrap()));
        assert!(!rule("fd00::/8").matches("10.0.0.1".parse().unwrap()));
        assert!(rule("fd00::/8").matches("fdff::1".parse().unwrap()));
        assert_eq!(rule("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(rule("::1").to_string(), "::1");
    }
}
