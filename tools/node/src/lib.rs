//! wasmpod-node: installs wasmpod's shims on a node and registers them as CRI runtime
//! handlers in containerd's config (containerd 1.6/1.7 config version 2, containerd 2.x
//! version 3, configs with `imports`, k3s/RKE2 templates), and removes them again, leaving
//! the config byte for byte as it was.

pub mod binaries;
pub mod defaults;
pub mod dropin;
pub mod dump;
pub mod error;
pub mod fsutil;
pub mod handler;
pub mod install;
pub mod line_ends;
pub mod plan;
pub mod restart;
pub mod running;
pub mod runtimes;
pub mod state;
pub mod status;
pub mod target;
pub mod template;
pub mod uninstall;
pub mod version;

pub use error::{Error, Result};
pub use handler::Handler;
pub use install::{install, InstallOptions, InstallReport};
pub use status::{status, Status};
pub use uninstall::{uninstall, UninstallOptions, UninstallReport};
