//! What an install would write, worked out before anything is written.

use std::path::{Path, PathBuf};

use crate::defaults;
use crate::dropin;
use crate::error::{Error, Result};
use crate::fsutil::{self, Snapshot};
use crate::handler::Handler;
use crate::line_ends;
use crate::runtimes;
use crate::target::Target;
use crate::template;
use crate::version::{self, ConfigVersion};

/// How the handlers reach containerd's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Tables added to the config itself.
    Edit,
    /// A file of its own matched by the config's `imports`.
    DropIn,
    /// Tables appended to the k3s/RKE2 template.
    Template,
}

/// One file to write, with what it holds now.
#[derive(Debug, Clone)]
pub struct Change {
    pub path: PathBuf,
    pub before: Option<Snapshot>,
    pub after: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub layout: Layout,
    pub version: ConfigVersion,
    /// The file holding the handlers (config, drop-in or template).
    pub file: PathBuf,
    /// Empty when every handler is registered already.
    pub changes: Vec<Change>,
}

/// Works out the edits for `handlers`. `containerd` is asked for its version only when the
/// config declares none.
pub fn plan(
    target: &Target,
    handlers: &[Handler],
    bin_dir: &Path,
    containerd: &Path,
) -> Result<Plan> {
    if let Some(path) = &target.template {
        let before = fsutil::snapshot(path)?;
        let text = text_of(path, before.as_ref())?;
        let version =
            template::version_of(&template::parse(text.unwrap_or_default(), path)?, path)?;
        let after = template::edited(text, path, handlers, bin_dir)?;
        return Ok(Plan {
            layout: Layout::Template,
            version,
            file: path.clone(),
            changes: change(path, before, after),
        });
    }
    let path = &target.config;
    let before = fsutil::snapshot(path)?;
    let (text, crlf) = line_ends::to_lf(text_of(path, before.as_ref())?.unwrap_or_default());
    let mut doc = version::parse(&text, path)?;
    let declared = version::declared(&doc, path)?;
    let version = match declared {
        Some(v) => v,
        None => {
            let major = version::containerd_major(containerd)?;
            ConfigVersion::for_containerd_major(major).ok_or(Error::UnsupportedVersion {
                path: path.clone(),
                found: format!("none, and containerd {major}.x is unknown"),
                hint: "",
            })?
        }
    };
    if let Some(patterns) = dropin::imports(&doc, path)? {
        let (drop_in, after) = dropin::edited(
            &doc, path, version, &patterns, handlers, bin_dir, containerd,
        )?;
        let drop_in_before = fsutil::snapshot(&drop_in)?;
        return Ok(Plan {
            layout: Layout::DropIn,
            version,
            changes: change(&drop_in, drop_in_before, after),
            file: drop_in,
        });
    }
    let missing = runtimes::missing(&doc, version, handlers, path)?;
    let after = if missing.is_empty() {
        None
    } else {
        if declared.is_none() {
            doc.insert("version", toml_edit::value(version.number()));
        }
        defaults::write_out_default_runtime(&mut doc, version, containerd, path)?;
        runtimes::add(&mut doc, version, &missing, bin_dir, path)?;
        Some(line_ends::restore(doc.to_string(), crlf))
    };
    Ok(Plan {
        layout: Layout::Edit,
        version,
        file: path.clone(),
        changes: change(path, before, after),
    })
}

fn text_of<'a>(path: &Path, snap: Option<&'a Snapshot>) -> Result<Option<&'a str>> {
    snap.map(|s| {
        std::str::from_utf8(&s.bytes).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: format!("not UTF-8: {e}"),
        })
    })
    .transpose()
}

fn change(path: &Path, before: Option<Snapshot>, after: Option<String>) -> Vec<Change> {
    after
        .map(|after| Change {
            path: path.to_path_buf(),
            before,
            after: after.into_bytes(),
        })
        .into_iter()
        .collect()
}
