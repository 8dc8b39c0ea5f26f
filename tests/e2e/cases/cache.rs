//! The node's compile cache seen from containerd: a second start of a module does not compile
//! it, a corrupted entry is compiled again without failing the container, and a full cache
//! evicts its least recently used entries.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};
use wasmpod_e2e::{cases, Case, Env};

use crate::support::shim_log_field;

pub fn cases() -> Vec<Case> {
    cases![
        cache_second_start_hits_and_corruption_recompiles,
        cache_full_evicts_least_recently_used,
        cache_entry_of_another_module_is_refused,
        cache_unsafe_directory_is_not_used,
    ]
}

const MODULE: &str = "/testprog.wasm";
const FIXTURE: &str = "wasm/testprog.wasm";
const OTHER_MODULE: &str = "/hello.wasm";
const OTHER_FIXTURE: &str = "wasm/hello.wasm";

/// The cache entry of `fixture` for this run's engine (`<sha256>-<compat>.bin`, see
/// `runtime/src/cache`), under the private containerd's `WASMPOD_CACHE_DIR`.
fn entry(env: &Env, fixture: &str) -> Result<Option<PathBuf>> {
    let source = std::fs::read(env.fixtures_dir().join(fixture))?;
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

/// The cache verdict the shim logged for container `id` (`cache=...` of "module prepared").
fn verdict(env: &Env, id: &str) -> Result<String> {
    shim_log_field(env, "module prepared", id, "cache")
}

fn run_ok(env: &Env, name: &str) -> Result<String> {
    run_module_ok(env, name, MODULE)
}

fn run_module_ok(env: &Env, name: &str, module: &str) -> Result<String> {
    let id = env.unique_id(name);
    let args: &[&str] = if module == MODULE {
        &[MODULE, "exit", "0"]
    } else {
        &[module]
    };
    env.ctr()
        .run_rm(&env.runtime(), env.wasm_image()?, &id, args)?
        .ok()?;
    Ok(id)
}

fn cache_second_start_hits_and_corruption_recompiles(env: &Env) -> Result<()> {
    env.require_shim()?;
    run_ok(env, "cache-first")?;
    let Some(path) = entry(env, FIXTURE)? else {
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
        v.starts_with("refused entry"),
        "after corruption: cache={v}"
    );
    let len = std::fs::metadata(&path)?.len();
    ensure!(len > 1000, "the entry was not rewritten: {len} bytes");
    Ok(())
}

/// On a containerd whose shims allow the cache 1 byte, so any second entry overflows it: a
/// module not used for a while is evicted when another is compiled, the entry just written and
/// entries used within the in-use grace stay, and the evicted module compiles again on its next
/// start and still runs.
fn cache_full_evicts_least_recently_used(shared: &Env) -> Result<()> {
    let mut env = Env::with_shim_env(shared.shim_dir(), &[("WASMPOD_CACHE_MAX_BYTES", "1")])
        .context("starting a private containerd with a 1-byte module cache")?;
    env.require_shim()?;
    run_module_ok(&env, "evict-old", OTHER_MODULE)?;
    let old = entry(&env, OTHER_FIXTURE)?.context("no cache entry after the first start")?;
    // As if last used two minutes ago: past the grace that protects entries being handed out.
    let long_ago = SystemTime::now() - Duration::from_secs(120);
    std::fs::File::options()
        .write(true)
        .open(&old)?
        .set_modified(long_ago)?;

    let new_id = run_ok(&env, "evict-new")?;
    ensure!(
        verdict(&env, &new_id)?.starts_with("miss"),
        "the second module should have been compiled"
    );
    let new = entry(&env, FIXTURE)?.context("the new entry was not kept")?;
    ensure!(new.exists());
    ensure!(!old.exists(), "{} was not evicted", old.display());
    let name = old.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let log = std::fs::read_to_string(env.containerd().log_path())?;
    ensure!(
        log.lines()
            .any(|l| l.contains("evicted least recently used module") && l.contains(name)),
        "no eviction of {name} in containerd.log"
    );

    // The evicted module compiles again; the entry written a moment ago is within the grace.
    let again = run_module_ok(&env, "evict-again", OTHER_MODULE)?;
    let v = verdict(&env, &again)?;
    ensure!(v.starts_with("miss"), "after eviction: cache={v}");
    ensure!(new.exists(), "an entry within the in-use grace was evicted");
    env.stop_gracefully()
}

/// An entry copied over another module's file (what a poisoning attempt or a botched restore
/// leaves) is detected, logged and compiled again: the module that runs is the right one.
fn cache_entry_of_another_module_is_refused(env: &Env) -> Result<()> {
    env.require_shim()?;
    run_ok(env, "poison-a")?;
    run_module_ok(env, "poison-b", OTHER_MODULE)?;
    let a = entry(env, FIXTURE)?.context("no cache entry for testprog")?;
    let b = entry(env, OTHER_FIXTURE)?.context("no cache entry for hello")?;
    std::fs::copy(&a, &b).context("copying one entry over the other")?;

    let id = env.unique_id("poison-run");
    let out = env
        .ctr()
        .run_rm(&env.runtime(), env.wasm_image()?, &id, &[OTHER_MODULE, "x"])?
        .ok()?;
    ensure!(
        out.stdout.contains("arg[1]=x"),
        "hello.wasm did not run as itself: {out}"
    );
    let v = verdict(env, &id)?;
    ensure!(v.starts_with("refused entry"), "after the copy: cache={v}");
    let reason = shim_log_field(env, "cache entry refused, compiling again", &id, "reason")?;
    ensure!(
        reason.contains("another module"),
        "the refusal does not say the entry holds another module: {reason}"
    );
    ensure!(
        std::fs::read(&b)? != std::fs::read(&a)?,
        "hello's entry still holds testprog's artifact"
    );
    env.assert_no_leaks(&id)
}

/// A cache directory that is not root's alone is not used: one error line, and containers still
/// run, each compiled for itself (nothing is written to that directory, nothing is left).
fn cache_unsafe_directory_is_not_used(shared: &Env) -> Result<()> {
    let base = tempfile::Builder::new()
        .prefix("unsafe-cache-")
        .tempdir_in(shared.containerd().base())?;
    let dir = base.path().join("cache");
    std::fs::create_dir(&dir)?;
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534))?;
    let dir_text = dir.to_string_lossy().into_owned();
    let env = Env::with_shim_env(shared.shim_dir(), &[("WASMPOD_CACHE_DIR", &dir_text)])
        .context("starting a private containerd with an unsafe cache directory")?;
    env.require_shim()?;
    let id = env.unique_id("unsafe-cache");
    let out = env
        .ctr()
        .run_rm(&env.runtime(), env.wasm_image()?, &id, &[OTHER_MODULE, "y"])?
        .ok()?;
    ensure!(out.stdout.contains("arg[1]=y"), "{out}");
    let v = verdict(&env, &id)?;
    ensure!(v.starts_with("not used (unsafe directory)"), "cache={v}");
    let log = std::fs::read_to_string(env.containerd().log_path())?;
    ensure!(
        log.lines()
            .any(|l| l.contains("module cache directory is not safe")
                && l.contains("owned by uid 65534")),
        "no error line naming the unsafe cache directory in containerd.log"
    );
    let written: Vec<_> = walk_files(&dir);
    ensure!(
        written.is_empty(),
        "files written to the unsafe cache: {written:?}"
    );
    // Single-use artifacts are removed once the container's module is loaded.
    let left = walk_files(std::path::Path::new(PRIVATE_ARTIFACTS));
    ensure!(left.is_empty(), "private artifacts left behind: {left:?}");
    env.assert_no_leaks(&id)?;
    let mut env = env;
    env.stop_gracefully()
}

/// Where a shim without a usable cache compiles for single containers (the runtime's
/// `cache::PRIVATE_DIR`).
const PRIVATE_ARTIFACTS: &str = "/run/wasmpod/private-artifacts";

fn walk_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for item in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = item.path();
        if path.is_dir() {
            found.extend(walk_files(&path));
        } else {
            found.push(path);
        }
    }
    found
}
