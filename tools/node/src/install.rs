//! `wasmpod-node install`: shims to the bin directory, handlers into containerd's config,
//! originals to the state directory; every step undone when a later one fails.

use std::path::{Path, PathBuf};

use crate::binaries;
use crate::dump;
use crate::error::{Error, Result};
use crate::fsutil::{self, Snapshot};
use crate::handler::Handler;
use crate::plan::{self, Layout, Plan};
use crate::restart;
use crate::state::{self, State};
use crate::target::Target;
use crate::version::ConfigVersion;

#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The containerd config (or k3s/RKE2 template); detected when `None`.
    pub config: Option<PathBuf>,
    /// Where the shim binaries are (a build directory or an unpacked release tarball).
    pub shim_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub state_dir: PathBuf,
    pub handlers: Vec<Handler>,
    /// The containerd binary used for `config dump` and `--version`.
    pub containerd: PathBuf,
    /// Check the new config with `containerd config dump` (implied by `restart`).
    pub check: bool,
    /// Restart containerd when the config changed.
    pub restart: bool,
}

#[derive(Debug, Clone)]
pub struct InstallReport {
    pub target: Target,
    pub layout: Layout,
    pub version: ConfigVersion,
    /// The file holding the handlers.
    pub file: PathBuf,
    /// The config files written (empty when every handler was there already).
    pub changed: Vec<PathBuf>,
    pub binaries: Vec<PathBuf>,
    /// Whether `containerd config dump` was run and agreed.
    pub checked: bool,
    /// The restart command run, if any.
    pub restarted: Option<String>,
}

/// Installs; on error the node is as it was.
pub fn install(options: &InstallOptions) -> Result<InstallReport> {
    let options = &InstallOptions {
        shim_dir: fsutil::absolute(&options.shim_dir),
        bin_dir: fsutil::absolute(&options.bin_dir),
        state_dir: fsutil::absolute(&options.state_dir),
        ..options.clone()
    };
    let target = Target::detect(options.config.as_deref())?;
    let previous = state::load(&options.state_dir)?;
    if let Some(previous) = &previous {
        if previous.config != target.config {
            return Err(Error::State {
                path: state::state_file(&options.state_dir),
                message: format!(
                    "wasmpod-node is installed into {} already; uninstall it first",
                    previous.config.display()
                ),
            });
        }
    }
    let plan = plan::plan(
        &target,
        &options.handlers,
        &options.bin_dir,
        &options.containerd,
    )?;
    let copies = binaries::plan(&options.handlers, &options.shim_dir, &options.bin_dir)?;
    for dir in plan
        .changes
        .iter()
        .filter_map(|c| c.path.parent())
        .chain([options.bin_dir.as_path(), options.state_dir.as_path()])
    {
        fsutil::check_writable(dir)?;
    }
    let check = (options.check || options.restart) && plan.layout != Layout::Template;
    let before_dump = if check {
        dump::dump(&options.containerd, &target.config).ok()
    } else {
        None
    };

    let mut undo = Undo::default();
    let result = apply(options, &target, &plan, &copies, previous, &mut undo).and_then(|()| {
        if check {
            let after = dump::dump(&options.containerd, &target.config)
                .map_err(|e| Error::Rejected(e.to_string()))?;
            dump::verify(
                before_dump.as_deref(),
                &after,
                plan.version,
                &options.handlers,
            )
            .map_err(Error::Rejected)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        let failures = undo.run();
        if failures.is_empty() {
            return Err(e);
        }
        return Err(Error::RollbackIncomplete {
            cause: Box::new(e),
            failures: failures.join("; "),
        });
    }
    let restarted = if options.restart && !plan.changes.is_empty() {
        let restarted = restart::restart(target.flavor).map_err(|e| match e {
            Error::Command { command, detail } => Error::Command {
                command,
                detail: format!(
                    "{detail} (the handlers are installed: restart containerd yourself)"
                ),
            },
            other => other,
        })?;
        Some(restarted)
    } else {
        None
    };
    Ok(InstallReport {
        layout: plan.layout,
        version: plan.version,
        file: plan.file.clone(),
        changed: plan.changes.iter().map(|c| c.path.clone()).collect(),
        binaries: copies.into_iter().map(|c| c.dest).collect(),
        checked: check,
        restarted,
        target,
    })
}

/// Copies the binaries, records the originals, writes the config; `undo` learns each step.
fn apply(
    options: &InstallOptions,
    target: &Target,
    plan: &Plan,
    copies: &[binaries::Copy],
    previous: Option<State>,
    undo: &mut Undo,
) -> Result<()> {
    for copy in copies {
        let bytes = binaries::read_source(copy)?;
        undo.write(&copy.dest, &bytes, 0o755)?;
    }
    let mut state = previous.unwrap_or_else(|| State {
        config: target.config.clone(),
        flavor: target.flavor.to_string(),
        ..State::default()
    });
    for change in &plan.changes {
        match state.files.iter_mut().find(|r| r.path == change.path) {
            // An upgrade: the original of the first install stays.
            Some(record) => record.installed_sha256 = fsutil::sha256(&change.after),
            None => {
                let record = state::keep_original(
                    &options.state_dir,
                    &change.path,
                    change.before.as_ref(),
                    &change.after,
                )?;
                if let Some(name) = &record.original {
                    undo.created(state::original_path(&options.state_dir, name));
                }
                state.files.push(record);
            }
        }
    }
    for copy in copies {
        if !state.binaries.contains(&copy.dest) {
            state.binaries.push(copy.dest.clone());
        }
    }
    for handler in &options.handlers {
        let name = handler.to_string();
        if !state.handlers.contains(&name) {
            state.handlers.push(name);
        }
    }
    let state_bytes = serde_json::to_vec_pretty(&state).map_err(|e| Error::State {
        path: state::state_file(&options.state_dir),
        message: e.to_string(),
    })?;
    undo.write(&state::state_file(&options.state_dir), &state_bytes, 0o600)?;
    for change in &plan.changes {
        let mode = change.before.as_ref().map_or(0o644, |b| b.mode);
        undo.write(&change.path, &change.after, mode)?;
    }
    Ok(())
}

/// Files to put back, newest first, when an install fails half-way.
#[derive(Default)]
struct Undo(Vec<(PathBuf, Option<Snapshot>)>);

impl Undo {
    fn write(&mut self, path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
        let before = fsutil::snapshot(path)?;
        self.0.push((path.to_path_buf(), before));
        fsutil::write_atomic(path, bytes, mode)
    }

    fn created(&mut self, path: PathBuf) {
        self.0.push((path, None));
    }

    /// Puts every file back; returns the steps that failed.
    fn run(self) -> Vec<String> {
        self.0
            .into_iter()
            .rev()
            .filter_map(|(path, before)| fsutil::restore(&path, before.as_ref()).err())
            .map(|e| e.to_string())
            .collect()
    }
}
