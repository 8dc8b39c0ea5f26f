//! Helpers shared by the hostile cases (and `bad_input`): checking that a `ctr` command was
//! refused fast by Create and named the cause, leak checks beyond [`Env::assert_no_leaks`], a
//! host directory used as a container's rootfs (`ctr run --rootfs DIR`: it can hold FIFOs,
//! sockets, device nodes, any symlink), and the shim daemon's resource counts. A plain module,
//! not a case module: it has no `cases()`.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use wasmpod_e2e::{CmdOutput, Env};

use crate::support::{fifo_dir, run_args, state_dir};

/// The shim must refuse within 1 s; `ctr run` itself costs ~0.1-0.2 s (plus image unpack),
/// so the whole command gets 2 s.
pub(crate) const FAIL_FAST: Duration = Duration::from_secs(2);

/// How ctr reports an error returned by the shim's Create.
pub(crate) const CREATE_FAILED: &str = "ctr: failed to create shim task:";

/// Checks that `out` failed fast with the Create error on stderr containing every `needle`.
pub(crate) fn ensure_refused(out: &CmdOutput, needles: &[&str]) -> Result<()> {
    ensure_failed_fast(out, CREATE_FAILED, needles)
}

/// Checks that `out` failed (not timed out) within [`FAIL_FAST`], its stderr containing
/// `marker` and every `needle`.
pub(crate) fn ensure_failed_fast(out: &CmdOutput, marker: &str, needles: &[&str]) -> Result<()> {
    ensure_failed_within(out, FAIL_FAST, marker, needles)
}

/// [`ensure_failed_fast`] with another time limit (cases that compile a module).
pub(crate) fn ensure_failed_within(
    out: &CmdOutput,
    limit: Duration,
    marker: &str,
    needles: &[&str],
) -> Result<()> {
    ensure!(
        !out.timed_out && out.status.is_some_and(|c| c != 0),
        "ctr should have failed: {out}"
    );
    ensure!(
        out.stderr.contains(marker),
        "stderr lacks `{marker}`: {out}"
    );
    for needle in needles {
        ensure!(
            out.stderr.contains(needle),
            "stderr does not mention `{needle}`: {out}"
        );
    }
    ensure!(
        out.elapsed < limit,
        "refusing took {:.2?} (allowed {limit:?} end to end): {out}",
        out.elapsed
    );
    Ok(())
}

/// [`Env::assert_no_leaks`] plus wasmpod's state directory and containerd's bundle of `id`.
pub(crate) fn assert_clean(env: &Env, id: &str) -> Result<()> {
    env.assert_no_leaks(id)?;
    let bundle = env
        .containerd()
        .base()
        .join("state/io.containerd.runtime.v2.task/default")
        .join(id);
    for dir in [state_dir(id), bundle] {
        ensure!(!dir.exists(), "{id} left behind {}", dir.display());
    }
    Ok(())
}

/// A host directory used as a rootfs with `ctr run --rootfs`, below the private containerd's
/// base directory (removed with it). Mounts made below it are undone on drop.
pub(crate) struct HostRootfs {
    dir: tempfile::TempDir,
    mounts: Vec<PathBuf>,
}

impl HostRootfs {
    pub(crate) fn new(env: &Env, name: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rootfs-{name}-"))
            .tempdir_in(env.containerd().base())
            .context("creating a rootfs directory")?;
        Ok(HostRootfs {
            dir,
            mounts: Vec::new(),
        })
    }

    /// A rootfs holding `/testprog.wasm` (the fixture) and nothing else.
    pub(crate) fn with_testprog(env: &Env, name: &str) -> Result<Self> {
        let rootfs = Self::new(env, name)?;
        let fixture = env.fixtures_dir().join("wasm/testprog.wasm");
        let bytes = std::fs::read(&fixture)
            .with_context(|| format!("reading {} (tests/fixtures/build.sh)", fixture.display()))?;
        rootfs.file("testprog.wasm", &bytes)?;
        Ok(rootfs)
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn path_str(&self) -> Result<&str> {
        self.path().to_str().context("rootfs path is not UTF-8")
    }

    /// The host path of `rel` (relative to the rootfs), its parent directories created.
    pub(crate) fn host(&self, rel: &str) -> Result<PathBuf> {
        let path = self.dir.path().join(rel.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        Ok(path)
    }

    pub(crate) fn file(&self, rel: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.host(rel)?;
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    pub(crate) fn dir(&self, rel: &str) -> Result<PathBuf> {
        let path = self.host(rel)?;
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(path)
    }

    pub(crate) fn symlink(&self, rel: &str, target: &str) -> Result<PathBuf> {
        let path = self.host(rel)?;
        symlink(target, &path).with_context(|| format!("symlink {}", path.display()))?;
        Ok(path)
    }

    pub(crate) fn fifo(&self, rel: &str) -> Result<PathBuf> {
        let path = self.host(rel)?;
        self.mknod(&path, libc::S_IFIFO | 0o755, 0)?;
        Ok(path)
    }

    /// A device node (`kind` is `libc::S_IFCHR` or `libc::S_IFBLK`); never opened.
    pub(crate) fn device(
        &self,
        rel: &str,
        kind: libc::mode_t,
        major: u32,
        minor: u32,
    ) -> Result<PathBuf> {
        let path = self.host(rel)?;
        self.mknod(&path, kind | 0o666, libc::makedev(major, minor))?;
        Ok(path)
    }

    /// A unix socket file (bound, then the listener closed: the socket inode stays).
    pub(crate) fn socket(&self, rel: &str) -> Result<PathBuf> {
        let path = self.host(rel)?;
        std::os::unix::net::UnixListener::bind(&path)
            .with_context(|| format!("binding {}", path.display()))?;
        Ok(path)
    }

    /// A sparse file of `len` bytes starting with `head`.
    pub(crate) fn sparse(&self, rel: &str, head: &[u8], len: u64) -> Result<PathBuf> {
        let path = self.file(rel, head)?;
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        file.set_len(len)
            .with_context(|| format!("extending {} to {len} bytes", path.display()))?;
        Ok(path)
    }

    /// Mounts a fresh procfs on `rel` (unmounted on drop).
    pub(crate) fn mount_proc(&mut self, rel: &str) -> Result<PathBuf> {
        let path = self.dir(rel)?;
        mount(Some("proc"), &path, Some("proc"), 0)?;
        self.mounts.push(path.clone());
        Ok(path)
    }

    fn mknod(&self, path: &Path, mode: libc::mode_t, dev: libc::dev_t) -> Result<()> {
        let c = cstring(path)?;
        // SAFETY: mknod(2) with a NUL-terminated path we own.
        let rc = unsafe { libc::mknod(c.as_ptr(), mode, dev) };
        ensure!(
            rc == 0,
            "mknod {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        Ok(())
    }
}

impl Drop for HostRootfs {
    fn drop(&mut self) {
        for path in self.mounts.iter().rev() {
            let _ = umount_detach(path);
        }
    }
}

fn cstring(path: &Path) -> Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).context("path with a NUL byte")
}

/// mount(2): `source` on `target`, of `fstype` (None for a bind), with `flags`.
pub(crate) fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
) -> Result<()> {
    let source_c = source.map(std::ffi::CString::new).transpose()?;
    let fstype_c = fstype.map(std::ffi::CString::new).transpose()?;
    let target_c = cstring(target)?;
    // SAFETY: mount(2) with NUL-terminated strings (or NULL) that outlive the call.
    let rc = unsafe {
        libc::mount(
            source_c.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target_c.as_ptr(),
            fstype_c.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            std::ptr::null(),
        )
    };
    ensure!(
        rc == 0,
        "mount {source:?} on {}: {}",
        target.display(),
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// `umount2(target, MNT_DETACH)`.
pub(crate) fn umount_detach(target: &Path) -> Result<()> {
    let c = cstring(target)?;
    // SAFETY: umount2(2) with a NUL-terminated path we own.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    ensure!(
        rc == 0,
        "umount {}: {}",
        target.display(),
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// `ctr run --rm --rootfs [FLAGS...] DIR ID ARGS...` with wasmpod's runtime.
pub(crate) fn run_rm_on_rootfs(
    env: &Env,
    rootfs: &HostRootfs,
    flags: &[&str],
    id: &str,
    args: &[&str],
) -> Result<CmdOutput> {
    let fifo = fifo_dir(env)?;
    let mut all_flags = vec!["--rootfs"];
    all_flags.extend_from_slice(flags);
    let all = run_args(
        &fifo,
        "--rm",
        &all_flags,
        &env.runtime(),
        rootfs.path_str()?,
        id,
        args,
    );
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    env.ctr().run(&all)
}

/// `ctr run --rm --rootfs DIR ID ARGS...` must be refused by Create with all of `needles`,
/// fast, leaving nothing behind.
pub(crate) fn refuse_on_rootfs(
    env: &Env,
    rootfs: &HostRootfs,
    name: &str,
    args: &[&str],
    needles: &[&str],
) -> Result<()> {
    env.require_shim()?;
    let id = env.unique_id(name);
    let out = run_rm_on_rootfs(env, rootfs, &[], &id, args)?;
    ensure_refused(&out, needles)?;
    assert_clean(env, &id)
}

/// What a shim daemon holds: threads, open descriptors, resident memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footprint {
    pub(crate) threads: usize,
    pub(crate) fds: usize,
    pub(crate) rss_kib: u64,
}

impl Footprint {
    pub(crate) fn of(pid: u32) -> Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .with_context(|| format!("no {name} in /proc/{pid}/status"))
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .with_context(|| format!("listing /proc/{pid}/fd"))?
            .count();
        Ok(Footprint {
            threads: field("Threads:")? as usize,
            fds,
            rss_kib: field("VmRSS:")?,
        })
    }

    /// Fails unless `after` has the same threads and descriptors as `self` and, when
    /// `rss_margin_kib` is given, at most that much more resident memory.
    pub(crate) fn ensure_unchanged(
        &self,
        after: &Footprint,
        rss_margin_kib: Option<u64>,
        what: &str,
    ) -> Result<()> {
        let rss_ok = rss_margin_kib.is_none_or(|m| after.rss_kib <= self.rss_kib + m);
        ensure!(
            after.threads == self.threads && after.fds == self.fds && rss_ok,
            "the shim daemon changed after {what}: before {self:?}, after {after:?} \
             (allowed: same threads and descriptors, VmRSS + {rss_margin_kib:?} KiB)"
        );
        Ok(())
    }
}

/// Polls until the daemon's footprint satisfies `ensure_unchanged` against `before` (threads
/// of finished requests may take a moment to go); fails with the last difference seen.
pub(crate) fn ensure_footprint_settles(
    pid: u32,
    before: &Footprint,
    rss_margin_kib: Option<u64>,
    what: &str,
) -> Result<()> {
    let mut last = Ok(());
    let settled = wasmpod_e2e::leaks::wait_until(Duration::from_secs(5), || {
        last =
            Footprint::of(pid).and_then(|now| before.ensure_unchanged(&now, rss_margin_kib, what));
        last.is_ok()
    });
    if !settled {
        return last.context("after waiting 5 s for the daemon to settle");
    }
    Ok(())
}

/// `ctr run --rm --config FILE ID` with `spec` written to FILE (no image: containerd makes an
/// empty `rootfs` in the bundle). The file's path never contains "config.json".
pub(crate) fn run_with_config(env: &Env, id: &str, spec: &serde_json::Value) -> Result<CmdOutput> {
    let dir = tempfile::Builder::new()
        .prefix("spec-")
        .tempdir_in(env.containerd().base())
        .context("creating a directory for the spec")?;
    let file = dir.path().join("spec.json");
    std::fs::write(&file, serde_json::to_vec_pretty(spec)?).context("writing the spec")?;
    let fifo = fifo_dir(env)?;
    env.ctr().run(&[
        "run",
        "--rm",
        "--fifo-dir",
        &fifo,
        "--runtime",
        &env.runtime(),
        "--config",
        &file.to_string_lossy(),
        id,
    ])
}
