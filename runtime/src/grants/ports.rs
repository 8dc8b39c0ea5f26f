//! Port lists of the network annotation: `80`, `8000-8100`, `*`, or several joined with `;`.

use std::fmt;

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

impl PortRange {
    /// Every port.
    pub const ANY: Self = Self {
        first: 0,
        last: u16::MAX,
    };

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.first, self.last) {
            (0, u16::MAX) => f.write_str("*"),
            (a, b) if a == b => write!(f, "{a}"),
            (a, b) => write!(f, "{a}-{b}"),
        }
    }
}

/// Parses `PORTS`: ports, ranges and `*`, joined with `;`.
pub(super) fn parse_list(text: &str) -> Result<Vec<PortRange>, String> {
    text.split(';').map(|p| parse_one(p.trim())).collect()
}

fn parse_one(text: &str) -> Result<PortRange, String> {
    if text == "*" {
        return Ok(PortRange::ANY);
    }
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(text)?;
            (p, p)
        }
    };
    if first > last {
        return Err(format!("port range {text:?} ends before it starts"));
    }
    Ok(PortRange { first, last })
}

fn port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(0) => Err("port 0 is not a port to grant".to_string()),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("{text:?} is not a port (1-65535)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            parse_list("80;8000-8100;*").unwrap(),
            vec![
                PortRange {
                    first: 80,
                    last: 80
                },
                PortRange {
                    first: 8000,
                    last: 8100
                },
                PortRange::ANY
            ]
        );
        assert!(parse_list("").is_err());
        assert!(parse_list("0").is_err());
        assert!(parse_list("70000").is_err());
        assert!(parse_list("90-80").is_err());
        assert!(parse_list("http").is_err());
    }
}
