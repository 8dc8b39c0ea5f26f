//! Normalisation of paths inside the image.

use crate::ImageError;

/// Turns `/usr//bin/./sh` into `usr/bin/sh`.
///
/// Rejects `..` components and NUL bytes. Returns an empty string for the root.
pub(crate) fn normalize(raw: &str) -> Result<String, ImageError> {
    if raw.contains('\0') {
        return Err(ImageError::InvalidPath(raw.to_string()));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(ImageError::InvalidPath(raw.to_string())),
            other => parts.push(other),
        }
    }
    Ok(parts.join("/"))
}

/// All proper ancestors of a normalised path, outermost first: `a/b/c` gives `a`, `a/b`.
pub(crate) fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_slashes_and_dots() {
        assert_eq!(
            normalize("/usr//bin/./sh").ok().as_deref(),
            Some("usr/bin/sh")
        );
        assert_eq!(normalize("/").ok().as_deref(), Some(""));
        assert_eq!(normalize("etc/").ok().as_deref(), Some("etc"));
    }

    #[test]
    fn rejects_parent_components() {
        assert!(normalize("/a/../b").is_err());
        assert!(normalize("a\0b").is_err());
    }

    #[test]
    fn lists_ancestors_outermost_first() {
        let all: Vec<&str> = ancestors("a/b/c").collect();
        assert_eq!(all, vec!["a", "a/b"]);
        assert_eq!(ancestors("a").count(), 0);
    }
}
