//! `wasmpod-node` on a private containerd: install registers a handler in its config, which
//! `containerd config dump` shows and a CRI pod runs through (the installed shim binary, not the
//! build's); uninstall puts the config back byte for byte and removes the binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use k8s_cri::v1::ContainerState;
use wasmpod_e2e::cri::pod::{annotate_pod, container_config};
use wasmpod_e2e::cri::Pod;
use wasmpod_e2e::{cases, paths, Case, Env, WASM_IMAGE};

use crate::cri_support::*;

pub fn cases() -> Vec<Case> {
    cases![
        node_install_runs_a_pod_and_uninstall_restores_the_config,
        node_install_drop_in_keeps_the_cri_settings_of_the_main_config,
    ]
}

/// How the handler reaches containerd's config.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// Tables appended to the config.
    Edit,
    /// The config gets an `imports` glob first; wasmpod-node writes a drop-in it matches.
    DropIn,
}

/// Where wasmpod-node puts its drop-in (tools/node/src/dropin.rs).
const DROP_IN_NAME: &str = "zz-wasmpod.toml";

/// `wasmpod-node` of this build: beside the test binary's `deps` directory, else in the shim
/// directory (`make build` puts both in `$CARGO_TARGET_DIR/debug`).
fn wasmpod_node(env: &Env) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test binary")?;
    let beside = exe
        .parent()
        .and_then(Path::parent)
        .map(|debug| debug.join("wasmpod-node"));
    let candidates: Vec<PathBuf> = beside
        .into_iter()
        .chain([env.shim_dir().join("wasmpod-node")])
        .collect();
    match candidates.iter().find(|p| paths::is_executable(p)) {
        Some(found) => Ok(found.clone()),
        None => bail!(
            "wasmpod-node not found (looked at {candidates:?}): run `make build` or \
             `cargo build -p wasmpod-node` with the same CARGO_TARGET_DIR"
        ),
    }
}

/// Runs `program` with `args`; its stdout, or an error with its output.
fn succeed(program: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    ensure!(
        out.status.success(),
        "`{} {}` failed ({}):\n{}{}",
        program.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The handler's table in `containerd --config CONFIG config dump`, as its text.
fn dumped_handler(config: &Path, handler: &str) -> Result<Option<String>> {
    let containerd = paths::require_binary("containerd", "apt-get install containerd")?;
    let config = config.to_string_lossy();
    let dump = succeed(&containerd, &["--config", &config, "config", "dump"])?;
    let header = format!(".containerd.runtimes.{handler}]");
    let Some(start) = dump.find(&header) else {
        return Ok(None);
    };
    let table: String = dump[start..]
        .lines()
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Some(table))
}

/// The handler tables appended to the harness's config (version 2).
fn node_install_runs_a_pod_and_uninstall_restores_the_config(shared: &Env) -> Result<()> {
    round_trip(shared, Layout::Edit)
}

/// The harness's config with `imports`: the main config stays as it is and the drop-in must
/// repeat its CRI section, or containerd 1.6 would lose the sandbox image (the pod could not
/// start: the default pause image is not there) and the CNI settings.
fn node_install_drop_in_keeps_the_cri_settings_of_the_main_config(shared: &Env) -> Result<()> {
    round_trip(shared, Layout::DropIn)
}

/// On its own containerd, whose shim directory (first on its PATH) is the bin directory
/// wasmpod-node installs into: install a handler under a name the harness's config does not
/// have, check the dump, restart containerd onto the new config, run a pod through the handler
/// and check that its shim is the installed binary; then uninstall and compare the config's
/// bytes.
fn round_trip(shared: &Env, layout: Layout) -> Result<()> {
    let build_dir = shared.shim_dir().to_path_buf();
    paths::require_shim_in(&build_dir, &shared.shim_binary())?;
    let node_dir = tempfile::Builder::new()
        .prefix("wasmpod-e2e-node-")
        .tempdir_in("/tmp")
        .context("creating the node directory")?;
    let bin_dir = node_dir.path().join("bin");
    let state_dir = node_dir.path().join("state");
    std::fs::create_dir(&bin_dir)?;
    let mut env = Env::with_shim_dir(&bin_dir).context("starting a private containerd")?;
    let node = wasmpod_node(shared)?;
    let config = env.containerd().base().join("config.toml");
    let drop_in_dir = env.containerd().base().join("conf.d");
    if layout == Layout::DropIn {
        let text = std::fs::read_to_string(&config).context("reading the harness's config")?;
        let imports = format!("imports = [\"{}/*.toml\"]\n", drop_in_dir.display());
        let Some(rest) = text.strip_prefix("version = 2\n") else {
            bail!("the harness's config does not start with `version = 2`");
        };
        std::fs::write(&config, format!("version = 2\n{imports}{rest}"))?;
        std::fs::create_dir(&drop_in_dir)?;
    }
    let original = std::fs::read(&config).context("reading the harness's config")?;
    let edited = match layout {
        Layout::Edit => config.clone(),
        Layout::DropIn => drop_in_dir.join(DROP_IN_NAME),
    };
    let engine = env.engine().name().to_string();
    let handler = format!("node-{engine}");
    let installed_shim = bin_dir.join(env.shim_binary());
    let install_args = [
        "install",
        "--config",
        &config.to_string_lossy(),
        "--shim-dir",
        &build_dir.to_string_lossy(),
        "--bin-dir",
        &bin_dir.to_string_lossy(),
        "--state-dir",
        &state_dir.to_string_lossy(),
        "--handler",
        &format!("{handler}={engine}"),
        "--check",
    ]
    .map(|s| s.to_string());
    let install_args: Vec<&str> = install_args.iter().map(String::as_str).collect();

    let first = succeed(&node, &install_args)?;
    ensure!(
        first.contains("handlers registered") && first.contains("nothing else changed"),
        "install output: {first}"
    );
    env.require_shim()
        .context("wasmpod-node did not install the shim")?;
    let installed =
        std::fs::read(&edited).with_context(|| format!("install wrote no {}", edited.display()))?;
    match layout {
        Layout::Edit => ensure!(
            installed.len() > original.len() && installed.starts_with(&original),
            "install did not append to the config, or changed its existing part"
        ),
        Layout::DropIn => ensure!(
            std::fs::read(&config)? == original,
            "install edited the main config despite its imports"
        ),
    }
    let table = dumped_handler(&config, &handler)?
        .with_context(|| format!("`containerd config dump` has no handler {handler}"))?;
    let runtime_type = format!("runtime_type = \"{}\"", env.runtime());
    let runtime_path = format!("runtime_path = \"{}\"", installed_shim.display());
    ensure!(
        table.contains(&runtime_type) && table.contains(&runtime_path),
        "handler {handler} in the dump:\n{table}"
    );

    let again = succeed(&node, &install_args)?;
    ensure!(
        again.contains("registered already"),
        "second install: {again}"
    );
    ensure!(
        std::fs::read(&edited)? == installed,
        "a second install changed {}",
        edited.display()
    );

    let status_args = [
        "status",
        "--config",
        &config.to_string_lossy(),
        "--state-dir",
        &state_dir.to_string_lossy(),
    ]
    .map(|s| s.to_string());
    let status_args: Vec<&str> = status_args.iter().map(String::as_str).collect();
    let status = succeed(&node, &status_args)?;
    let listed = format!("handler: {handler} -> {}", env.runtime());
    ensure!(
        status.contains(&listed) && status.contains("restart it to load"),
        "status before the restart:\n{status}"
    );

    env.containerd_mut().restart_after_crash()?;
    let status = succeed(&node, &status_args)?;
    ensure!(
        status.contains("handlers loaded"),
        "status after the restart:\n{status}"
    );

    {
        let cri = env.cri()?;
        let mut pod = Pod::run(cri, "node-install", &handler, &env.pod_logs_root())?;
        let sleeper = pod.start(&container_config(
            "sleeper",
            WASM_IMAGE,
            &["/testprog.wasm", "sleep", "600"],
        ))?;
        wait_state(cri, &sleeper, ContainerState::ContainerRunning)?;
        let shim = ppid(init_pid(&env, &sleeper)?)?;
        let exe = std::fs::read_link(format!("/proc/{shim}/exe"))
            .with_context(|| format!("reading /proc/{shim}/exe"))?;
        ensure!(
            exe == installed_shim,
            "the pod's shim runs {}, not the installed {}",
            exe.display(),
            installed_shim.display()
        );
        remove_and_assert_gone(&env, &mut pod, &[&sleeper])?;

        // The installed table lets the pods' wasmpod.io/ annotations through to the shim: a
        // misspelt one fails the pod there.
        let refused = Pod::run_with(
            cri,
            "node-install-annotated",
            &handler,
            &env.pod_logs_root(),
            |c| annotate_pod(c, "wasmpod.io/netwrok", "none"),
        );
        match refused {
            Ok(_) => bail!(
                "a pod annotated wasmpod.io/netwrok ran: the annotation never reached the shim"
            ),
            Err(e) => ensure!(
                format!("{e:#}").contains("unknown annotation wasmpod.io/netwrok"),
                "the misspelt annotation failed the pod for another reason: {e:#}"
            ),
        }
    }

    let removed = succeed(
        &node,
        &["uninstall", "--state-dir", &state_dir.to_string_lossy()],
    )?;
    ensure!(removed.contains("restored"), "uninstall output: {removed}");
    let restored = std::fs::read(&config).context("reading the restored config")?;
    ensure!(
        restored == original,
        "uninstall did not restore the config byte for byte:\n{}",
        String::from_utf8_lossy(&restored)
    );
    ensure!(
        !installed_shim.exists() && !state_dir.exists(),
        "uninstall left {} or {}",
        installed_shim.display(),
        state_dir.display()
    );
    ensure!(
        layout == Layout::Edit || !edited.exists(),
        "uninstall left the drop-in {}",
        edited.display()
    );
    ensure!(
        dumped_handler(&config, &handler)?.is_none(),
        "`containerd config dump` still has handler {handler} after uninstall"
    );
    env.stop_gracefully()
}
