//! Command-line parsing for `wasmpod-node` (small enough to need no parser crate).

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use wasmpod_node::binaries::DEFAULT_BIN_DIR;
use wasmpod_node::state::DEFAULT_STATE_DIR;
use wasmpod_node::{Handler, InstallOptions, UninstallOptions};

pub const USAGE: &str = "\
Usage: wasmpod-node install [OPTIONS]
       wasmpod-node uninstall [--state-dir DIR] [--force] [--restart]
       wasmpod-node status [--config FILE] [--state-dir DIR]

Installs wasmpod's shims on this node and registers them as CRI runtime handlers in
containerd's config; `uninstall` puts the config back byte for byte and removes the shims.
Run as root.

Options:
  --config FILE      containerd's config.toml, or a k3s/RKE2 config.toml.tmpl; default: the
                     first of /var/lib/rancher/rke2/agent/etc/containerd/config.toml,
                     /var/lib/rancher/k3s/agent/etc/containerd/config.toml and
                     /etc/containerd/config.toml whose directory exists
  --shim-dir DIR     where the containerd-shim-<engine>-v1 binaries are (a build directory
                     or an unpacked release tarball); default: wasmpod-node's own directory
  --bin-dir DIR      where to install them (default /usr/local/bin)
  --state-dir DIR    where the originals of changed files are kept (default /var/lib/wasmpod-node)
  --handler H        NAME (engine of the same name) or NAME=ENGINE, runtime type
                     io.containerd.<ENGINE>.v1; repeatable (default: wasmtime, wasmer)
  --containerd BIN   the containerd binary for `config dump` and `--version` (default containerd)
  --check            check the new config with `containerd config dump` (rolled back if it fails)
  --restart          --check, then restart containerd (systemd, or /etc/init.d) if the config changed
  --force            uninstall: restore the originals even over later changes
  -h, --help         print this help
  -V, --version      print the version
";

#[derive(Debug)]
pub enum Command {
    Install(InstallOptions),
    Uninstall(UninstallOptions),
    Status {
        config: Option<PathBuf>,
        state_dir: PathBuf,
    },
    Help,
    Version,
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command> {
    let mut args = args.into_iter();
    let Some(command) = args.next() else {
        bail!("no command given\n\n{USAGE}");
    };
    match command.as_str() {
        "-h" | "--help" | "help" => return Ok(Command::Help),
        "-V" | "--version" => return Ok(Command::Version),
        "install" | "uninstall" | "status" => {}
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
    let mut config = None;
    let mut shim_dir = None;
    let mut bin_dir = PathBuf::from(DEFAULT_BIN_DIR);
    let mut state_dir = PathBuf::from(DEFAULT_STATE_DIR);
    let mut handlers = Vec::new();
    let mut containerd = PathBuf::from("containerd");
    let (mut check, mut restart, mut force) = (false, false, false);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| anyhow!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--config" => config = Some(PathBuf::from(value()?)),
            "--shim-dir" => shim_dir = Some(PathBuf::from(value()?)),
            "--bin-dir" => bin_dir = PathBuf::from(value()?),
            "--state-dir" => state_dir = PathBuf::from(value()?),
            "--containerd" => containerd = PathBuf::from(value()?),
            "--handler" => {
                let text = value()?;
                handlers.push(
                    text.parse::<Handler>()
                        .with_context(|| "--handler".to_string())?,
                );
            }
            "--check" => check = true,
            "--restart" => restart = true,
            "--force" => force = true,
            other => bail!("unknown option `{other}` for {command}\n\n{USAGE}"),
        }
    }
    Ok(match command.as_str() {
        "install" => Command::Install(InstallOptions {
            config,
            shim_dir: shim_dir.unwrap_or_else(wasmpod_node::binaries::own_dir),
            bin_dir,
            state_dir,
            handlers: if handlers.is_empty() {
                Handler::defaults()
            } else {
                handlers
            },
            containerd,
            check,
            restart,
        }),
        "uninstall" => Command::Uninstall(UninstallOptions {
            state_dir,
            force,
            restart,
        }),
        _ => Command::Status { config, state_dir },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &str) -> Result<Command> {
        parse(words.split_whitespace().map(str::to_string))
    }

    #[test]
    fn install_options_parse() {
        let Command::Install(o) = parse_words(
            "install --config /c.toml --shim-dir=/s --handler w=wasmtime --handler wasmer --restart",
        )
        .unwrap() else {
            panic!("not install");
        };
        assert_eq!(o.config, Some(PathBuf::from("/c.toml")));
        assert_eq!(o.shim_dir, PathBuf::from("/s"));
        assert_eq!(o.bin_dir, PathBuf::from(DEFAULT_BIN_DIR));
        assert_eq!(o.handlers.len(), 2);
        assert_eq!(o.handlers[0].engine, "wasmtime");
        assert!(o.restart);
    }

    #[test]
    fn defaults_and_errors() {
        let Command::Install(o) = parse_words("install").unwrap() else {
            panic!("not install");
        };
        assert_eq!(o.handlers, Handler::defaults());
        assert!(parse_words("").is_err());
        assert!(parse_words("install --bogus").is_err());
        assert!(parse_words("install --config").is_err());
        assert!(parse_words("install --handler a=B").is_err());
        assert!(matches!(
            parse_words("status --help").unwrap(),
            Command::Help
        ));
    }
}
