//! Windows line ends: toml_edit writes `\n`, so a config written with `\r\n` is edited as `\n`
//! text and turned back, keeping every original line byte for byte.

/// `text` with `\r\n` as `\n`, and whether it used `\r\n`.
pub fn to_lf(text: &str) -> (String, bool) {
    if text.contains("\r\n") {
        (text.replace("\r\n", "\n"), true)
    } else {
        (text.to_string(), false)
    }
}

/// `text` back with the line ends of the original.
pub fn restore(text: String, crlf: bool) -> String {
    if crlf {
        text.replace('\n', "\r\n")
    } else {
        text
    }
}
