//! Command-line handling of the e2e runner; unknown `-` options (from `cargo test`) are ignored.

/// What to run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Run cases whose name contains any of these (all when empty).
    pub filters: Vec<String>,
    /// Skip cases whose name contains any of these (`--skip X`).
    pub skips: Vec<String>,
    /// Filters must match the whole name (`--exact`).
    pub exact: bool,
    /// Only print the case names (`--list`).
    pub list: bool,
    /// `--test-threads N`.
    pub threads: Option<usize>,
}

/// libtest options that take a value as the next argument.
const WITH_VALUE: &[&str] = &[
    "--test-threads",
    "--skip",
    "--color",
    "--format",
    "--logfile",
    "--shuffle-seed",
    "-Z",
];

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Options {
    let mut options = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if !arg.starts_with('-') {
            options.filters.push(arg);
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (arg.clone(), None),
        };
        let value = match inline {
            Some(v) => Some(v),
            None if WITH_VALUE.contains(&flag.as_str()) => args.next(),
            None => None,
        };
        match (flag.as_str(), value) {
            ("--skip", Some(v)) => options.skips.push(v),
            ("--test-threads", Some(v)) => options.threads = v.parse().ok(),
            ("--exact", _) => options.exact = true,
            ("--list", _) => options.list = true,
            _ => {}
        }
    }
    options
}

impl Options {
    /// Whether case `name` is selected.
    pub fn selects(&self, name: &str) -> bool {
        let hit = |pattern: &String| {
            if self.exact {
                name == pattern
            } else {
                name.contains(pattern.as_str())
            }
        };
        (self.filters.is_empty() || self.filters.iter().any(hit)) && !self.skips.iter().any(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Options {
        parse(line.split_whitespace().map(str::to_string))
    }

    #[test]
    fn cargo_flags_are_ignored() {
        let o = parse_str("--nocapture --test-threads 3 echo --color=always --quiet");
        assert_eq!(o.filters, vec!["echo"]);
        assert_eq!(o.threads, Some(3));
        assert!(o.selects("runc_busybox_echo"));
        assert!(!o.selects("runc_exit_code"));
    }

    #[test]
    fn skip_and_exact() {
        let o = parse_str("--skip leak --exact runc_exit_code");
        assert!(o.selects("runc_exit_code"));
        assert!(!o.selects("runc_exit_code_2"));
        let o = parse_str("--skip=leak");
        assert!(o.selects("runc_busybox_echo"));
        assert!(!o.selects("leak_checks_after_runc_delete"));
    }
}
