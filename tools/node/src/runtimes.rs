//! Finding and adding CRI runtime handler tables in a parsed containerd config, keeping every
//! other byte of it as it was.

use std::collections::BTreeMap;
use std::path::Path;

use toml_edit::{value, Array, DocumentMut, Item, Table};

use crate::error::{Error, Result};
use crate::handler::Handler;
use crate::version::ConfigVersion;

/// Put before the first table wasmpod-node adds.
const ADDED_COMMENT: &str =
    "\n# wasmpod runtime handlers, added by wasmpod-node (`wasmpod-node uninstall` removes them).\n";

/// The key path of the runtimes table, below the document root.
fn runtimes_path(version: ConfigVersion) -> [&'static str; 4] {
    [
        "plugins",
        version.cri_runtime_plugin(),
        "containerd",
        "runtimes",
    ]
}

/// Every runtime handler of `doc`: name → runtime_type (empty when the table has none).
pub fn registered(doc: &DocumentMut, version: ConfigVersion) -> BTreeMap<String, String> {
    let mut item = doc.as_item();
    for key in runtimes_path(version) {
        match item.get(key) {
            Some(next) => item = next,
            None => return BTreeMap::new(),
        }
    }
    let Some(runtimes) = item.as_table_like() else {
        return BTreeMap::new();
    };
    runtimes
        .iter()
        .map(|(name, runtime)| {
            let runtime_type = runtime
                .get("runtime_type")
                .and_then(Item::as_str)
                .unwrap_or_default();
            (name.to_string(), runtime_type.to_string())
        })
        .collect()
}

/// The handlers of `wanted` that `doc` lacks. A handler already there with wasmpod's runtime
/// type counts as present; with another runtime type it is an error.
pub fn missing<'a>(
    doc: &DocumentMut,
    version: ConfigVersion,
    wanted: &'a [Handler],
    path: &Path,
) -> Result<Vec<&'a Handler>> {
    let present = registered(doc, version);
    let mut missing = Vec::new();
    for handler in wanted {
        match present.get(&handler.name) {
            None => missing.push(handler),
            Some(existing) if *existing == handler.runtime_type() => {}
            Some(existing) => {
                return Err(Error::HandlerTaken {
                    path: path.to_path_buf(),
                    handler: handler.name.clone(),
                    existing: if existing.is_empty() {
                        "<none>".into()
                    } else {
                        existing.clone()
                    },
                    wanted: handler.runtime_type(),
                })
            }
        }
    }
    Ok(missing)
}

/// Adds a runtime table for each of `handlers` (none may exist yet), after everything else in
/// the file. Each names its shim binary in `bin_dir` with `runtime_path` as well (containerd
/// 1.6.20 was seen to find the shim through its `PATH` all the same), and lets the pod's and
/// the container's `wasmpod.io/` annotations through to the shim (CRI drops them otherwise).
pub fn add(
    doc: &mut DocumentMut,
    version: ConfigVersion,
    handlers: &[&Handler],
    bin_dir: &Path,
    path: &Path,
) -> Result<()> {
    for handler in handlers {
        let mut runtime = Table::new();
        runtime.insert("runtime_type", value(handler.runtime_type()));
        runtime.insert(
            "runtime_path",
            value(
                bin_dir
                    .join(handler.shim_binary())
                    .to_string_lossy()
                    .as_ref(),
            ),
        );
        for key in ["pod_annotations", "container_annotations"] {
            runtime.insert(key, value(Array::from_iter(["wasmpod.io/*"])));
        }
        append(doc, version, &handler.name, runtime, None, path)?;
    }
    Ok(())
}

/// The default runtime's name (`default_runtime_name`, else `runc`) when `doc` has no table
/// for it. containerd 1.x drops its built-in runtimes as soon as the config names any runtime,
/// so that table must be written out before a handler is added.
pub fn unlisted_default(doc: &DocumentMut, version: ConfigVersion) -> Option<String> {
    let name = doc
        .get("plugins")
        .and_then(|p| p.get(version.cri_runtime_plugin()))
        .and_then(|p| p.get("containerd"))
        .and_then(|c| c.get("default_runtime_name"))
        .and_then(Item::as_str)
        .unwrap_or("runc")
        .to_string();
    (!registered(doc, version).contains_key(&name)).then_some(name)
}

/// Adds runtime `name` as `runtime` (its subtables included) after everything else, after
/// `comment` (by default, a note that wasmpod-node added it, once per file).
pub fn append(
    doc: &mut DocumentMut,
    version: ConfigVersion,
    name: &str,
    mut runtime: Table,
    comment: Option<&str>,
    path: &Path,
) -> Result<()> {
    let prefix = match comment {
        Some(comment) => comment,
        None if has_added_comment(doc) => "\n",
        None => ADDED_COMMENT,
    };
    let mut position = last_position(doc.as_table()) + 1;
    renumber(&mut runtime, &mut position);
    runtime.decor_mut().set_prefix(prefix);
    let mut table = doc.as_table_mut();
    let mut walked = String::new();
    for key in runtimes_path(version) {
        walked = if walked.is_empty() {
            key.to_string()
        } else {
            format!("{walked}.\"{key}\"")
        };
        let entry = table.entry(key).or_insert_with(|| {
            let mut implicit = Table::new();
            implicit.set_implicit(true);
            Item::Table(implicit)
        });
        table = entry
            .as_table_mut()
            .ok_or_else(|| Error::UnexpectedLayout {
                path: path.to_path_buf(),
                what: walked.clone(),
            })?;
    }
    table.insert(name, Item::Table(runtime));
    Ok(())
}

fn has_added_comment(doc: &DocumentMut) -> bool {
    doc.to_string().contains(ADDED_COMMENT.trim())
}

/// Gives `table` and its subtables consecutive positions from `next` on, in plain formatting.
fn renumber(table: &mut Table, next: &mut usize) {
    table.set_position(*next);
    *next += 1;
    table.fmt();
    for (_, item) in table.iter_mut() {
        if let Item::Table(sub) = item {
            sub.decor_mut().set_prefix("\n");
            renumber(sub, next);
        }
    }
}

/// The largest table position in `table` and below (0 for a document without tables).
fn last_position(table: &Table) -> usize {
    let own = table.position().unwrap_or(0);
    table.iter().fold(own, |max, (_, item)| match item {
        Item::Table(t) => max.max(last_position(t)),
        Item::ArrayOfTables(array) => array.iter().map(last_position).fold(max, usize::max),
        _ => max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::parse;

    fn handlers() -> Vec<Handler> {
        Handler::defaults()
    }

    fn added(text: &str, version: ConfigVersion) -> String {
        let path = Path::new("config.toml");
        let mut doc = parse(text, path).unwrap();
        let wanted = handlers();
        let missing = missing(&doc, version, &wanted, path).unwrap();
        add(
            &mut doc,
            version,
            &missing,
            Path::new("/usr/local/bin"),
            path,
        )
        .unwrap();
        doc.to_string()
    }

    #[test]
    fn v2_tables_are_appended_and_the_rest_is_kept() {
        let text = "version = 2\n# keep me\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  \
                    sandbox_image = 'x'   # and me\n\n[debug]\n  level = \"info\"\n";
        let out = added(text, ConfigVersion::V2);
        assert!(out.starts_with(text), "{out}");
        let tail = &out[text.len()..];
        assert!(
            tail.contains(
                "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wasmtime]\n\
                 runtime_type = \"io.containerd.wasmtime.v1\"\n\
                 runtime_path = \"/usr/local/bin/containerd-shim-wasmtime-v1\"\n"
            ),
            "{tail}"
        );
        assert!(tail.contains("runtimes.wasmer]"), "{tail}");
    }

    #[test]
    fn v3_tables_go_under_the_cri_runtime_plugin() {
        let text = "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd]\n  \
                    default_runtime_name = 'runc'\n";
        let out = added(text, ConfigVersion::V3);
        assert!(out.starts_with(text), "{out}");
        assert!(
            out.contains("[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wasmtime]"),
            "{out}"
        );
        let doc = parse(&out, Path::new("x")).unwrap();
        let found = registered(&doc, ConfigVersion::V3);
        assert_eq!(found["wasmer"], "io.containerd.wasmer.v1");
    }

    #[test]
    fn present_handlers_are_not_added_twice() {
        let once = added("version = 2\n", ConfigVersion::V2);
        assert_eq!(added(&once, ConfigVersion::V2), once);
    }

    #[test]
    fn a_name_used_by_another_runtime_is_refused() {
        let text =
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wasmtime]\n\
                    runtime_type = \"io.containerd.runc.v2\"\n";
        let doc = parse(text, Path::new("c.toml")).unwrap();
        let wanted = handlers();
        let err = missing(&doc, ConfigVersion::V2, &wanted, Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("io.containerd.runc.v2"), "{err}");
    }

    #[test]
    fn an_inline_plugin_table_is_refused() {
        let text =
            "version = 2\nplugins = { \"io.containerd.grpc.v1.cri\" = { containerd = 1 } }\n";
        let path = Path::new("c.toml");
        let mut doc = parse(text, path).unwrap();
        let wanted = handlers();
        let refs: Vec<&Handler> = wanted.iter().collect();
        let err = add(&mut doc, ConfigVersion::V2, &refs, Path::new("/b"), path).unwrap_err();
        assert!(matches!(err, Error::UnexpectedLayout { .. }), "{err}");
    }
}
