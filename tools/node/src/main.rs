//! `wasmpod-node`: install, upgrade and remove wasmpod on a containerd node.

mod cli;

use anyhow::{Context, Result};
use wasmpod_node::plan::Layout;

use crate::cli::Command;

fn main() -> Result<()> {
    match cli::parse(std::env::args().skip(1))? {
        Command::Help => print!("{}", cli::USAGE),
        Command::Version => println!("wasmpod-node {}", env!("CARGO_PKG_VERSION")),
        Command::Install(options) => {
            let report = wasmpod_node::install(&options).context("wasmpod-node install")?;
            let how = match report.layout {
                Layout::Edit => "edited",
                Layout::DropIn => "drop-in",
                Layout::Template => "template",
            };
            for binary in &report.binaries {
                println!("installed {}", binary.display());
            }
            if report.changed.is_empty() {
                println!(
                    "{}: every handler is registered already (config version {})",
                    report.file.display(),
                    report.version.number()
                );
            } else {
                println!(
                    "{}: handlers registered ({how}, config version {})",
                    report.file.display(),
                    report.version.number()
                );
            }
            if report.checked {
                println!("containerd config dump: handlers present, nothing else changed");
            }
            match &report.restarted {
                Some(command) => println!("restarted containerd: {command}"),
                None if !report.changed.is_empty() => {
                    println!("restart containerd (or run with --restart) to load the handlers")
                }
                None => {}
            }
        }
        Command::Uninstall(options) => {
            let report = wasmpod_node::uninstall(&options).context("wasmpod-node uninstall")?;
            for path in &report.restored {
                println!("restored {}", path.display());
            }
            for path in &report.removed {
                println!("removed {}", path.display());
            }
            if let Some(command) = &report.restarted {
                println!("restarted containerd: {command}");
            }
        }
        Command::Status { config, state_dir } => {
            let status = wasmpod_node::status(config.as_deref(), &state_dir)
                .context("wasmpod-node status")?;
            print!("{status}");
        }
    }
    Ok(())
}
