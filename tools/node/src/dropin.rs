//! A main config with `imports`: the handlers go into a drop-in file of their own, matched by
//! the last import pattern, and the main config is left alone.
//!
//! containerd (1.x at least) merges an imported file by replacing each plugin section it
//! names as a whole, main config first, then the imports in order. A drop-in holding only the
//! runtime tables would wipe the rest of the CRI runtime section, so the drop-in repeats the
//! section of the file that defines it last, with the handlers added, and must itself be
//! merged last.

use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table};

use crate::defaults;
use crate::error::{Error, Result};
use crate::handler::Handler;
use crate::runtimes;
use crate::version::{self, ConfigVersion};

/// Sorts after the usual `NN-name.toml` drop-ins: it has to be merged last.
pub const DROP_IN_NAME: &str = "zz-wasmpod.toml";

const HEADER: &str = "\
# Written by wasmpod-node: wasmpod's runtime handlers. containerd replaces a whole plugin section
# with an imported one, so this file repeats the CRI runtime section as it was at install time.
# `wasmpod-node uninstall` removes it.
";

/// The import patterns of `doc`, as absolute paths; `None` without (or with empty) `imports`.
pub fn imports(doc: &DocumentMut, main: &Path) -> Result<Option<Vec<PathBuf>>> {
    let Some(item) = doc.get("imports") else {
        return Ok(None);
    };
    let layout = || Error::UnexpectedLayout {
        path: main.to_path_buf(),
        what: "imports (not an array of strings)".into(),
    };
    let array = item.as_array().ok_or_else(layout)?;
    let dir = main.parent().unwrap_or(Path::new("/"));
    let patterns = array
        .iter()
        .map(|v| v.as_str().map(|s| dir.join(s)).ok_or_else(layout))
        .collect::<Result<Vec<_>>>()?;
    Ok((!patterns.is_empty()).then_some(patterns))
}

/// Where the drop-in goes: the directory of the last import pattern, which must be a glob
/// over file names matching [`DROP_IN_NAME`].
pub fn path_for(patterns: &[PathBuf], main: &Path) -> Result<PathBuf> {
    let refuse = |reason: String| Error::DropIn {
        path: main.to_path_buf(),
        reason,
    };
    let last = patterns
        .last()
        .ok_or_else(|| refuse("`imports` is empty".into()))?;
    let text = last.to_string_lossy();
    let dir = last.parent().unwrap_or(Path::new("/"));
    let pattern = glob::Pattern::new(&text)
        .map_err(|e| refuse(format!("import `{text}` is not a valid pattern: {e}")))?;
    let drop_in = dir.join(DROP_IN_NAME);
    let glob_in_dir = dir.to_string_lossy().contains(['*', '?', '[']);
    if glob_in_dir || !pattern.matches_path(&drop_in) {
        return Err(refuse(format!(
            "the last import `{text}` is not a pattern over a directory's files that \
             matches {DROP_IN_NAME}; add such an import (e.g. \"/etc/containerd/conf.d/*.toml\") \
             last, or install into a config without imports"
        )));
    }
    Ok(drop_in)
}

/// The files containerd merges, in its order: the main config, then each import's matches.
fn merge_order(main: &Path, patterns: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = vec![main.to_path_buf()];
    for pattern in patterns {
        let text = pattern.to_string_lossy();
        let mut matches: Vec<PathBuf> = glob::glob(&text)
            .map_err(|e| Error::DropIn {
                path: main.to_path_buf(),
                reason: format!("import `{text}`: {e}"),
            })?
            .filter_map(|entry| entry.ok())
            .collect();
        matches.sort();
        files.extend(matches);
    }
    Ok(files)
}

fn read_doc(path: &Path) -> Result<DocumentMut> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    version::parse(&text, path)
}

/// The new drop-in text, or `None` when the drop-in has every handler already. `main_doc` is
/// the parsed main config at `main`.
pub fn edited(
    main_doc: &DocumentMut,
    main: &Path,
    version: ConfigVersion,
    patterns: &[PathBuf],
    handlers: &[Handler],
    bin_dir: &Path,
    containerd: &Path,
) -> Result<(PathBuf, Option<String>)> {
    let drop_in = path_for(patterns, main)?;
    let plugin = version.cri_runtime_plugin();
    let order = merge_order(main, patterns)?;
    if let Some(later) = order
        .iter()
        .rev()
        .find(|f| **f > drop_in && f.parent() == drop_in.parent())
    {
        return Err(Error::DropIn {
            path: main.to_path_buf(),
            reason: format!(
                "{} sorts after {DROP_IN_NAME} and would override it",
                later.display()
            ),
        });
    }
    // The last file that defines the section wins; the drop-in itself when it exists.
    let mut source: Option<DocumentMut> = None;
    for file in &order {
        let doc = if file == main {
            main_doc.clone()
        } else {
            read_doc(file)?
        };
        if doc.get("plugins").and_then(|p| p.get(plugin)).is_some() {
            source = Some(doc);
        }
    }
    let existing = drop_in.exists();
    let mut doc = if existing {
        read_doc(&drop_in)?
    } else {
        fresh(version, source.as_ref(), plugin)
    };
    let missing = runtimes::missing(&doc, version, handlers, &drop_in)?;
    if missing.is_empty() && existing {
        return Ok((drop_in, None));
    }
    defaults::write_out_default_runtime(&mut doc, version, containerd, &drop_in)?;
    runtimes::add(&mut doc, version, &missing, bin_dir, &drop_in)?;
    Ok((drop_in, Some(doc.to_string())))
}

/// A new drop-in: the version and a copy of `source`'s CRI runtime section.
fn fresh(version: ConfigVersion, source: Option<&DocumentMut>, plugin: &str) -> DocumentMut {
    let mut doc = DocumentMut::new();
    doc.insert("version", toml_edit::value(version.number()));
    doc.decor_mut().set_prefix(HEADER);
    let section = source.and_then(|s| s.get("plugins")?.as_table_like()?.get_key_value(plugin));
    if let Some((key, item)) = section {
        let mut plugins = Table::new();
        plugins.set_implicit(true);
        plugins.insert_formatted(key, item.clone());
        doc.insert("plugins", Item::Table(plugins));
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_drop_in_repeats_the_winning_section() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        let main_text = "version = 2\nimports = [\"conf.d/*.toml\"]\n\
                         [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"main\"\n";
        let main = write(dir.path(), "config.toml", main_text);
        write(
            &dir.path().join("conf.d"),
            "10-cri.toml",
            "version = 2\n# from conf.d\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"conf.d\"\n",
        );
        let doc = version::parse(main_text, &main).unwrap();
        let patterns = imports(&doc, &main).unwrap().unwrap();
        let (path, text) = edited(
            &doc,
            &main,
            ConfigVersion::V2,
            &patterns,
            &Handler::defaults(),
            Path::new("/b"),
            Path::new("containerd"),
        )
        .unwrap();
        assert_eq!(path, dir.path().join("conf.d").join(DROP_IN_NAME));
        let text = text.unwrap();
        assert!(text.contains("sandbox_image = \"conf.d\""), "{text}");
        assert!(text.contains("runtimes.wasmtime]"), "{text}");
        assert!(text.starts_with(HEADER), "{text}");
        assert!(text.contains("version = 2"), "{text}");

        std::fs::write(&path, &text).unwrap();
        let (_, again) = edited(
            &doc,
            &main,
            ConfigVersion::V2,
            &patterns,
            &Handler::defaults(),
            Path::new("/b"),
            Path::new("containerd"),
        )
        .unwrap();
        assert_eq!(again, None, "a second install changes nothing");
    }

    #[test]
    fn an_import_list_without_a_glob_is_refused() {
        let main = Path::new("/etc/containerd/config.toml");
        let patterns = vec![PathBuf::from("/etc/containerd/extra.toml")];
        assert!(matches!(
            path_for(&patterns, main),
            Err(Error::DropIn { .. })
        ));
        let globbed = vec![PathBuf::from("/etc/containerd/conf.d/*.toml")];
        assert_eq!(
            path_for(&globbed, main).unwrap(),
            Path::new("/etc/containerd/conf.d").join(DROP_IN_NAME)
        );
    }

    #[test]
    fn a_file_sorting_after_the_drop_in_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let main_text = "version = 3\nimports = [\"*.conf\"]\n";
        let main = write(dir.path(), "config.toml", main_text);
        write(dir.path(), "zzz-last.conf", "version = 3\n");
        let doc = version::parse(main_text, &main).unwrap();
        let patterns = imports(&doc, &main).unwrap().unwrap();
        // `*.conf` does not match zz-wasmpod.toml either: refused before anything else.
        let err = edited(
            &doc,
            &main,
            ConfigVersion::V3,
            &patterns,
            &Handler::defaults(),
            Path::new("/b"),
            Path::new("containerd"),
        );
        assert!(matches!(err, Err(Error::DropIn { .. })));

        let main_text = "version = 3\nimports = [\"*.toml\"]\n";
        std::fs::write(&main, main_text).unwrap();
        write(dir.path(), "zzz-last.toml", "version = 3\n");
        let doc = version::parse(main_text, &main).unwrap();
        let patterns = imports(&doc, &main).unwrap().unwrap();
        let err = edited(
            &doc,
            &main,
            ConfigVersion::V3,
            &patterns,
            &Handler::defaults(),
            Path::new("/b"),
            Path::new("containerd"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("zzz-last.toml"), "{err}");
    }
}
