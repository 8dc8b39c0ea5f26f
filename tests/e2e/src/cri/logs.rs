//! containerd's CRI log format: one line per chunk, `<RFC3339Nano time> <stream> <P|F> <text>`,
//! P marking a partial line continued by the next entry of the same stream.

use anyhow::{bail, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub time: String,
    pub stream: String,
    pub partial: bool,
    pub text: String,
}

/// Parses a CRI log file, failing on the first line that is not in the format.
pub fn parse(contents: &str) -> Result<Vec<LogEntry>> {
    let mut entries = Vec::new();
    for (n, line) in contents.lines().enumerate() {
        let mut fields = line.splitn(4, ' ');
        let (Some(time), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next())
        else {
            bail!("log line {}: fewer than 3 fields: {line:?}", n + 1);
        };
        if !is_rfc3339(time) {
            bail!("log line {}: bad timestamp {time:?}", n + 1);
        }
        if stream != "stdout" && stream != "stderr" {
            bail!("log line {}: bad stream {stream:?}", n + 1);
        }
        let partial = match tag {
            "P" => true,
            "F" => false,
            _ => bail!("log line {}: bad tag {tag:?}", n + 1),
        };
        entries.push(LogEntry {
            time: time.to_string(),
            stream: stream.to_string(),
            partial,
            text: fields.next().unwrap_or("").to_string(),
        });
    }
    Ok(entries)
}

/// The text of `stream`, full lines joined with `\n` (partial entries joined without).
pub fn stream_text(entries: &[LogEntry], stream: &str) -> String {
    let mut out = String::new();
    for e in entries.iter().filter(|e| e.stream == stream) {
        out.push_str(&e.text);
        if !e.partial {
            out.push('\n');
        }
    }
    out
}

/// `2016-10-06T00:17:09.669794202Z` or with an offset: date, `T`, time, zone.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && (s.ends_with('Z') || s[19..].contains(['+', '-']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_partial_lines() {
        let log = "2024-01-02T03:04:05.123456789Z stdout F hello\n\
                   2024-01-02T03:04:05.2Z stderr P par\n\
                   2024-01-02T03:04:05.3Z stderr F tial\n";
        let entries = parse(log).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(stream_text(&entries, "stdout"), "hello\n");
        assert_eq!(stream_text(&entries, "stderr"), "partial\n");
    }

    #[test]
    fn rejects_other_formats() {
        assert!(parse("hello world\n").is_err());
        assert!(parse("2024-01-02T03:04:05Z stdin F x\n").is_err());
        assert!(parse("2024-01-02T03:04:05Z stdout X x\n").is_err());
    }

    #[test]
    fn empty_text_is_allowed() {
        let entries = parse("2024-01-02T03:04:05Z stdout F \n").unwrap();
        assert_eq!(stream_text(&entries, "stdout"), "\n");
    }
}
