//! containerd's built-in default runtime, written out into a config that does not list it.
//! containerd 1.x replaces its built-in runtime list with the config's as soon as the config
//! names one runtime: adding a handler alone would leave `default_runtime_name = "runc"`
//! pointing at nothing and break every other pod.

use std::path::Path;
use std::process::Command;

use toml_edit::{value, DocumentMut, Item, Table};

use crate::error::Result;
use crate::runtimes;
use crate::version::{self, ConfigVersion};

const COMMENT: &str = "\n# containerd's default runtime, written out by wasmpod-node: containerd 1.x forgets its\n\
                       # built-in runtimes once the config names any (`wasmpod-node uninstall` removes it).\n";

/// Adds the default runtime's table to `doc` when it lacks one: as `containerd config
/// default` of `containerd` has it when that containerd writes `version` configs, else (runc
/// only) with just its runtime type.
pub fn write_out_default_runtime(
    doc: &mut DocumentMut,
    version: ConfigVersion,
    containerd: &Path,
    path: &Path,
) -> Result<()> {
    let Some(name) = runtimes::unlisted_default(doc, version) else {
        return Ok(());
    };
    let table = from_containerd(containerd, version, &name).or_else(|| {
        (name == "runc").then(|| {
            let mut runc = Table::new();
            runc.insert("runtime_type", value("io.containerd.runc.v2"));
            runc
        })
    });
    match table {
        Some(table) => runtimes::append(doc, version, &name, table, Some(COMMENT), path),
        None => Ok(()),
    }
}

/// Runtime `name` of `containerd config default`, if that containerd writes `version`.
fn from_containerd(containerd: &Path, version: ConfigVersion, name: &str) -> Option<Table> {
    let out = Command::new(containerd)
        .args(["config", "default"])
        .output()
        .ok()
        .filter(|out| out.status.success())?;
    let text = String::from_utf8(out.stdout).ok()?;
    let doc = version::parse(&text, Path::new("containerd config default")).ok()?;
    if version::declared(&doc, Path::new("")).ok()?? != version {
        return None;
    }
    doc.get("plugins")?
        .get(version.cri_runtime_plugin())?
        .get("containerd")?
        .get("runtimes")?
        .get(name)
        .and_then(Item::as_table)
        .cloned()
}
