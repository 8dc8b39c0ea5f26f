//! The single filesystem layer: a deterministic tar of the added entries, and its gzip form.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::{Compression, GzBuilder};
use tar::{EntryType, Header};

use crate::path::{ancestors, normalize};
use crate::ImageError;

/// Mode of directories created implicitly as parents of added entries.
pub(crate) const DEFAULT_DIR_MODE: u32 = 0o755;

/// One entry added through the builder, before normalisation.
#[derive(Debug, Clone)]
pub(crate) enum EntryKind {
    File { contents: Vec<u8>, mode: u32 },
    Symlink { target: String },
    Dir { mode: u32 },
}

impl EntryKind {
    fn describe(&self) -> &'static str {
        match self {
            EntryKind::File { .. } => "file",
            EntryKind::Symlink { .. } => "symlink",
            EntryKind::Dir { .. } => "directory",
        }
    }
}

/// An entry of the final tree: either added by the caller or a parent made up for it.
enum Node<'a> {
    Added(&'a EntryKind),
    ImplicitDir,
}

/// The layer in both forms: `tar` gives the diff_id, `gzip` is the blob.
pub(crate) struct Layer {
    pub tar: Vec<u8>,
    pub gzip: Vec<u8>,
}

/// Builds the layer from entries in insertion order (a later entry replaces an earlier one).
pub(crate) fn build(entries: &[(String, EntryKind)]) -> Result<Layer, ImageError> {
    let tree = tree(entries)?;
    let tar = write_tar(&tree).map_err(ImageError::Archive)?;
    let gzip = gzip(&tar).map_err(ImageError::Archive)?;
    Ok(Layer { tar, gzip })
}

/// Normalises paths, resolves duplicates and adds missing parent directories.
fn tree(entries: &[(String, EntryKind)]) -> Result<BTreeMap<String, Node<'_>>, ImageError> {
    let mut tree = BTreeMap::new();
    for (raw, kind) in entries {
        let path = normalize(raw)?;
        if path.is_empty() {
            if matches!(kind, EntryKind::Dir { .. }) {
                continue; // the root always exists
            }
            return Err(ImageError::InvalidPath(raw.clone()));
        }
        tree.insert(path, Node::Added(kind));
    }
    let mut parents = Vec::new();
    for path in tree.keys() {
        for parent in ancestors(path) {
            match tree.get(parent) {
                Some(Node::Added(EntryKind::Dir { .. })) | Some(Node::ImplicitDir) => {}
                Some(Node::Added(other)) => {
                    return Err(ImageError::NotADirectory {
                        path: path.clone(),
                        parent: parent.to_string(),
                        kind: other.describe(),
                    })
                }
                None => parents.push(parent.to_string()),
            }
        }
    }
    for parent in parents {
        tree.insert(parent, Node::ImplicitDir);
    }
    Ok(tree)
}

/// Writes the tree in path order, so every parent precedes its children.
fn write_tar(tree: &BTreeMap<String, Node<'_>>) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, node) in tree {
        match node {
            Node::ImplicitDir => append_dir(&mut builder, path, DEFAULT_DIR_MODE)?,
            Node::Added(EntryKind::Dir { mode }) => append_dir(&mut builder, path, *mode)?,
            Node::Added(EntryKind::File { contents, mode }) => {
                let mut header = header(EntryType::Regular, *mode, contents.len() as u64);
                builder.append_data(&mut header, path, contents.as_slice())?;
            }
            Node::Added(EntryKind::Symlink { target }) => {
                let mut header = header(EntryType::Symlink, 0o777, 0);
                builder.append_link(&mut header, path, target)?;
            }
        }
    }
    builder.into_inner()
}

fn append_dir(builder: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) -> std::io::Result<()> {
    let mut header = header(EntryType::Directory, mode, 0);
    builder.append_data(&mut header, format!("{path}/"), std::io::empty())
}

/// A header with every varying field pinned: mtime 0, root owner.
pub(crate) fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode & 0o7777);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
    encoder.write_all(data)?;
    encoder.finish()
}
