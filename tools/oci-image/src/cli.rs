//! Command-line parsing for `wasmpod-image` (kept dependency-free on purpose).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

pub const USAGE: &str = "\
Usage: wasmpod-image --name REF --out FILE.tar [OPTIONS]

Writes an OCI image-layout tarball for `ctr images import`: a single-layer rootfs image, or,
with --wasm-module/--wasm-component, a wasm image (import it with --all-platforms).

Options:
  --name REF               full image reference, e.g. docker.io/wasmpod/hello:latest
  --out FILE               output tarball
  --busybox PATH           start from a busybox rootfs built from this static binary
  --file IMAGE_PATH=HOST   add a host file (keeps its mode); repeatable; in a wasm image,
                           a data file in its tar layer
  --wasm-module HOST       add a core module layer (application/wasm); repeatable
  --wasm-component HOST    add a component layer; repeatable
  --artifact               wasm image as a CNCF wasm OCI artifact (no data files)
  --no-host-entry          wasm image without the host-platform entry containerd 1.6 needs
  --entrypoint ARG         append one entrypoint argument; repeatable
  --cmd ARG                append one command argument; repeatable
  --env K=V                add an environment variable; repeatable
  --workdir DIR            working directory
  -h, --help               print this help
";

/// What the user asked for.
#[derive(Debug, Default, PartialEq)]
pub struct Args {
    pub name: String,
    pub out: PathBuf,
    pub busybox: Option<PathBuf>,
    pub files: Vec<(String, PathBuf)>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub wasm_modules: Vec<PathBuf>,
    pub wasm_components: Vec<PathBuf>,
    pub artifact: bool,
    pub no_host_entry: bool,
}

impl Args {
    /// Whether a wasm image was asked for.
    pub fn is_wasm(&self) -> bool {
        !self.wasm_modules.is_empty() || !self.wasm_components.is_empty()
    }
}

/// The outcome of parsing: either run, or print the help.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Run(Box<Args>),
    Help,
}

/// Parses arguments (without the program name). Accepts `--flag VALUE` and `--flag=VALUE`.
pub fn parse<I: IntoIterator<Item = String>>(argv: I) -> Result<Parsed> {
    let mut args = Args::default();
    let (mut name, mut out) = (None, None);
    let mut iter = argv.into_iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--artifact" => {
                args.artifact = true;
                continue;
            }
            "--no-host-entry" => {
                args.no_host_entry = true;
                continue;
            }
            _ => {}
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = || match &inline {
            Some(v) => Ok(v.clone()),
            None => iter.next().with_context(|| format!("{flag} needs a value")),
        };
        match flag.as_str() {
            "--name" => name = Some(value()?),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--busybox" => args.busybox = Some(PathBuf::from(value()?)),
            "--file" => args.files.push(file_spec(&value()?)?),
            "--entrypoint" => args.entrypoint.push(value()?),
            "--cmd" => args.cmd.push(value()?),
            "--env" => args.env.push(env_spec(value()?)?),
            "--workdir" => args.workdir = Some(value()?),
            "--wasm-module" => args.wasm_modules.push(PathBuf::from(value()?)),
            "--wasm-component" => args.wasm_components.push(PathBuf::from(value()?)),
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    args.name = name.context("--name is required (see --help)")?;
    args.out = out.context("--out is required (see --help)")?;
    if !args.is_wasm() && (args.artifact || args.no_host_entry) {
        bail!("--artifact and --no-host-entry need --wasm-module or --wasm-component");
    }
    if args.is_wasm() && args.busybox.is_some() {
        bail!("--busybox builds a rootfs image: it cannot be combined with wasm layers");
    }
    Ok(Parsed::Run(Box::new(args)))
}

fn file_spec(spec: &str) -> Result<(String, PathBuf)> {
    match spec.split_once('=') {
        Some((image, host)) if !image.is_empty() && !host.is_empty() => {
            Ok((image.to_string(), PathBuf::from(host)))
        }
        _ => bail!("--file expects IMAGE_PATH=HOST_PATH, got {spec:?}"),
    }
}

fn env_spec(spec: String) -> Result<String> {
    match spec.split_once('=') {
        Some((key, _)) if !key.is_empty() => Ok(spec),
        _ => bail!("--env expects K=V, got {spec:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_repeatable_flags_in_order() -> Result<()> {
        let argv = strings(&[
            "--name",
            "docker.io/a/b:v1",
            "--out=/tmp/x.tar",
            "--file",
            "/app.wasm=/h/a=b.wasm",
            "--entrypoint",
            "/app.wasm",
            "--cmd",
            "one",
            "--cmd=two",
            "--env",
            "A=1",
        ]);
        let Parsed::Run(args) = parse(argv)? else {
            bail!("expected Run");
        };
        assert_eq!(args.name, "docker.io/a/b:v1");
        assert_eq!(args.out, PathBuf::from("/tmp/x.tar"));
        assert_eq!(
            args.files,
            vec![("/app.wasm".to_string(), PathBuf::from("/h/a=b.wasm"))]
        );
        assert_eq!(args.entrypoint, strings(&["/app.wasm"]));
        assert_eq!(args.cmd, strings(&["one", "two"]));
        assert_eq!(args.env, strings(&["A=1"]));
        Ok(())
    }

    #[test]
    fn rejects_missing_and_malformed_values() {
        assert!(parse(strings(&["--out", "x"])).is_err());
        assert!(parse(strings(&["--name", "n", "--out"])).is_err());
        assert!(parse(strings(&["--name", "n", "--out", "o", "--file", "nohost"])).is_err());
        assert!(parse(strings(&["--name", "n", "--out", "o", "--env", "=x"])).is_err());
        assert!(parse(strings(&["--name", "n", "--out", "o", "--bogus"])).is_err());
    }

    #[test]
    fn parses_wasm_flags() -> Result<()> {
        let argv = strings(&[
            "--name=n",
            "--out=o",
            "--wasm-module",
            "/h/app.wasm",
            "--wasm-component=/h/c.wasm",
            "--artifact",
            "--no-host-entry",
        ]);
        let Parsed::Run(args) = parse(argv)? else {
            bail!("expected Run");
        };
        assert!(args.is_wasm() && args.artifact && args.no_host_entry);
        assert_eq!(args.wasm_modules, vec![PathBuf::from("/h/app.wasm")]);
        assert_eq!(args.wasm_components, vec![PathBuf::from("/h/c.wasm")]);
        assert!(parse(strings(&["--name=n", "--out=o", "--artifact"])).is_err());
        let mixed = ["--name=n", "--out=o", "--busybox=/b", "--wasm-module=/a"];
        assert!(parse(strings(&mixed)).is_err());
        Ok(())
    }

    #[test]
    fn help_wins() -> Result<()> {
        assert_eq!(parse(strings(&["--help"]))?, Parsed::Help);
        Ok(())
    }
}
