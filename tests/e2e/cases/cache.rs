//! The node's compile cache seen from containerd: a second start of a module does not compile
//! it, and a corrupted entry is compiled again without failing the container.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};
use wasmpod_e2e::leaks::wait_until;
use wasmpod_e2e::{cases, Case, Env};

pub fn cases() -> Vec<Case> {
    cases![cache_second_start_hits_and_corruption_recompiles]
}

const MODULE: &str = "/testprog.wasm";
const FIXTURE: &str = "wasm/testprog.wasm";

/// The cache entry of `FIXTURE` for this run's engine (`<sha256>-<compat>.bin`, see
/// `runtime/src/cache`), under the private containerd's `WASMPOD_CACHE_DIR`.
fn entry(env: &Env) -> Result<Option<PathBuf>> {
    let source = std::fs::read(env.fixtures_dir().join(FIXTURE))?;
    let prefix = format!("{}-", hex(&Sha256::digest(&source)));
    let dir = env
        .containerd()
        .base()
        .join("module-cache")
        .join(env.engine().name());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(None);
    };
    Ok(entries.flatten().map(|e| e.path()).find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".bin"))
    }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache verdict the shim logged for container `id` (`cache=...` of "module prepared"; the
/// shim quotes string fields and containerd escapes the quotes).
fn verdict(env: &Env, id: &str) -> Result<String> {
    let mut found = None;
    wait_until(Duration::from_secs(5), || {
        let log = std::fs::read_to_string(env.containerd().log_path()).unwrap_or_default();
        found = log
            .lines()
            .find(|l| l.contains("module prepared id=") && l.contains(id))
            .and_then(|l| l.split_once("cache=").map(|(_, rest)| rest.to_string()))
            .map(|v| v.trim_start_matches(['\\', '"']).to_string());
        found.is_some()
    });
    found.with_context(|| format!("no \"module prepared\" line for {id} in containerd.log"))
}

fn run_ok(env: &Env, name: &str) -> Result<String> {
    let id = env.unique_id(name);
    env.ctr()
        .run_rm(
            &env.runtime(),
            env.wasm_image()?,
            &id,
            &[MODULE, "exit", "0"],
        )?
        .ok()?;
    Ok(id)
}

fn cache_second_start_hits_and_corruption_recompiles(env: &Env) -> Result<()> {
    env.require_shim()?;
    run_ok(env, "cache-first")?;
    let Some(path) = entry(env)? else {
        bail!("no cache entry for {FIXTURE} after a start");
    };

    let second = run_ok(env, "cache-second")?;
    let v = verdict(env, &second)?;
    ensure!(v.starts_with("hit"), "second start: cache={v}");

    // Replace the entry atomically with garbage, as a disk error or a foreign file would leave.
    let tmp = path.with_extension("e2e-corrupt");
    std::fs::write(&tmp, b"garbage, not an artifact of this engine")?;
    std::fs::rename(&tmp, &path)?;
    let third = run_ok(env, "cache-corrupt")?;
    let v = verdict(env, &third)?;
    ensure!(
        v.starts_with("unloadable entry"),
        "after corruption: cache={v}"
    );
    let len = std::fs::metadata(&path)?.len();
    ensure!(len > 1000, "the entry was not rewritten: {len} bytes");
    Ok(())
}
