//! `wasmpod-node status`: what is installed, which handlers containerd's config has, and
//! whether the running containerd has read them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::dropin;
use crate::error::Result;
use crate::fsutil;
use crate::running::{self, Running};
use crate::runtimes;
use crate::state::{self, State};
use crate::target::Target;
use crate::template;
use crate::version::{self, ConfigVersion};

#[derive(Debug, Clone)]
pub struct Status {
    pub target: Target,
    pub state: Option<State>,
    /// The file read for handlers (config, drop-in or template) and its version.
    pub file: PathBuf,
    pub version: Option<ConfigVersion>,
    /// Every runtime handler there: name → runtime type.
    pub handlers: BTreeMap<String, String>,
    /// Installed binaries and whether each is still there.
    pub binaries: Vec<(PathBuf, bool)>,
    pub running: Option<Running>,
    /// Whether the running containerd started after the handler file last changed.
    pub loaded: bool,
}

pub fn status(config: Option<&Path>, state_dir: &Path) -> Result<Status> {
    let state = state::load(state_dir)?;
    let config = config.or(state.as_ref().map(|s| s.config.as_path()));
    let target = Target::detect(config)?;
    let (file, version, handlers) = handlers_of(&target)?;
    let binaries = state
        .iter()
        .flat_map(|s| &s.binaries)
        .map(|b| (b.clone(), b.is_file()))
        .collect();
    let running = running::find(&target.config);
    let loaded = running
        .as_ref()
        .is_some_and(|r| running::has_loaded(r, std::slice::from_ref(&file)));
    Ok(Status {
        target,
        state,
        file,
        version,
        handlers,
        binaries,
        running,
        loaded,
    })
}

type Handlers = (PathBuf, Option<ConfigVersion>, BTreeMap<String, String>);

fn handlers_of(target: &Target) -> Result<Handlers> {
    if let Some(path) = &target.template {
        let snap = fsutil::snapshot(path)?;
        let text = snap.map(|s| String::from_utf8_lossy(&s.bytes).into_owned());
        let doc = template::parse(text.as_deref().unwrap_or_default(), path)?;
        let version = template::version_of(&doc, path)?;
        return Ok((
            path.clone(),
            Some(version),
            runtimes::registered(&doc, version),
        ));
    }
    let path = &target.config;
    let text = fsutil::snapshot(path)?
        .map(|s| String::from_utf8_lossy(&s.bytes).into_owned())
        .unwrap_or_default();
    let doc = version::parse(&text, path)?;
    let Some(version) = version::declared(&doc, path)? else {
        return Ok((path.clone(), None, BTreeMap::new()));
    };
    if let Some(patterns) = dropin::imports(&doc, path)? {
        let drop_in = dropin::path_for(&patterns, path)?;
        if let Some(snap) = fsutil::snapshot(&drop_in)? {
            let doc = version::parse(&String::from_utf8_lossy(&snap.bytes), &drop_in)?;
            return Ok((drop_in, Some(version), runtimes::registered(&doc, version)));
        }
    }
    Ok((
        path.clone(),
        Some(version),
        runtimes::registered(&doc, version),
    ))
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "containerd config: {} ({})",
            self.target.config.display(),
            self.target.flavor
        )?;
        let version = self
            .version
            .map_or("none".to_string(), |v| v.number().to_string());
        writeln!(
            f,
            "handlers read from: {} (config version {version})",
            self.file.display()
        )?;
        match &self.state {
            Some(state) => writeln!(
                f,
                "installed by wasmpod-node: handlers {}",
                state.handlers.join(", ")
            )?,
            None => writeln!(f, "installed by wasmpod-node: no")?,
        }
        for (binary, present) in &self.binaries {
            let note = if *present { "present" } else { "MISSING" };
            writeln!(f, "binary: {} ({note})", binary.display())?;
        }
        for (name, runtime_type) in &self.handlers {
            let wasmpod =
                if runtime_type.starts_with("io.containerd.") && runtime_type.ends_with(".v1") {
                    " (wasmpod)"
                } else {
                    ""
                };
            writeln!(f, "handler: {name} -> {runtime_type}{wasmpod}")?;
        }
        match &self.running {
            None => writeln!(f, "running containerd: none found for this config"),
            Some(r) if self.loaded => {
                writeln!(f, "running containerd: pid {}, started after the last change: handlers loaded", r.pid)
            }
            Some(r) => writeln!(
                f,
                "running containerd: pid {}, started before the last change: restart it to load the handlers",
                r.pid
            ),
        }
    }
}
