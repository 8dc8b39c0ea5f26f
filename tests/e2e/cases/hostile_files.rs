//! Hostile files in a container's rootfs: args[0] is something the shim must not read (a FIFO
//! would hang it, a device would act, a huge file would take its memory) or a symlink that
//! points out of the rootfs. Each is refused by Create within a second, naming the path and
//! the cause, without reading anything of the host; 50 refusals in a row leave the shim daemon
//! as it was. The rootfs is a host directory (`ctr run --rootfs`), which can hold what image
//! layers cannot (sockets, device nodes).

use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result};
use wasmpod_e2e::{cases, Case, Env};

use crate::hostile_support::{
    assert_clean, ensure_footprint_settles, ensure_refused, refuse_on_rootfs, run_rm_on_rootfs,
    Footprint, HostRootfs,
};
use crate::support::{daemon_of, kill_and_delete, run_detached, wait_status, Cleanup, SANDBOX_ID};

pub fn cases() -> Vec<Case> {
    cases![
        hostile_file_fifo,
        hostile_file_socket,
        hostile_file_char_device,
        hostile_file_block_device,
        hostile_file_directory,
        hostile_file_sparse_huge_wasm,
        hostile_file_over_a_configured_limit,
        hostile_file_symlink_loop,
        hostile_file_loop_in_a_directory,
        hostile_file_absolute_symlink_escape,
        hostile_file_relative_symlink_escape,
        hostile_file_proc_self_root_path,
        hostile_file_proc_magic_link,
        hostile_file_fifo_found_through_path,
        hostile_files_50_refusals_leave_the_shim_unchanged,
    ]
}

/// The default of `WASMPOD_MAX_MODULE_BYTES`.
const MAX_MODULE_BYTES: u64 = 256 << 20;
const WASM_HEAD: &[u8] = b"\0asm\x01\0\0\0";

/// A rootfs whose `/app.wasm` is made by `make`; running it must be refused with `needles`.
fn refuse_app(
    env: &Env,
    name: &str,
    make: impl FnOnce(&HostRootfs) -> Result<()>,
    needles: &[&str],
) -> Result<()> {
    let rootfs = HostRootfs::new(env, name)?;
    make(&rootfs)?;
    refuse_on_rootfs(env, &rootfs, name, &["/app.wasm"], needles)
}

fn hostile_file_fifo(env: &Env) -> Result<()> {
    refuse_app(
        env,
        "fifo",
        |r| r.fifo("app.wasm").map(drop),
        &["/app.wasm: is a FIFO, not a regular file"],
    )
}

fn hostile_file_socket(env: &Env) -> Result<()> {
    refuse_app(
        env,
        "socket",
        |r| r.socket("app.wasm").map(drop),
        &["/app.wasm: is a socket, not a regular file"],
    )
}

/// `/dev/zero`'s numbers: reading it would never end.
fn hostile_file_char_device(env: &Env) -> Result<()> {
    refuse_app(
        env,
        "chardev",
        |r| r.device("app.wasm", libc::S_IFCHR, 1, 5).map(drop),
        &["/app.wasm: is a character device, not a regular file"],
    )
}

/// A loop device's numbers (never opened).
fn hostile_file_block_device(env: &Env) -> Result<()> {
    refuse_app(
        env,
        "blockdev",
        |r| r.device("app.wasm", libc::S_IFBLK, 7, 0).map(drop),
        &["/app.wasm: is a block device, not a regular file"],
    )
}

fn hostile_file_directory(env: &Env) -> Result<()> {
    refuse_app(
        env,
        "dir",
        |r| r.dir("app.wasm").map(drop),
        &["/app.wasm: is a directory, not a regular file"],
    )
}

/// 4 GiB of holes behind a wasm header: refused by its size, before a byte is read.
fn hostile_file_sparse_huge_wasm(env: &Env) -> Result<()> {
    let size = 4u64 << 30;
    let message = format!(
        "/app.wasm: {size} bytes, more than the limit of {MAX_MODULE_BYTES} bytes \
         (WASMPOD_MAX_MODULE_BYTES)"
    );
    refuse_app(
        env,
        "sparse",
        |r| r.sparse("app.wasm", WASM_HEAD, size).map(drop),
        &[&message],
    )
}

/// On a containerd whose shims get `WASMPOD_MAX_MODULE_BYTES=65536`: a 100 KiB module is
/// refused naming its size and that limit; a 2 MiB native program still runs (it is never
/// read whole by the shim).
fn hostile_file_over_a_configured_limit(shared: &Env) -> Result<()> {
    let mut env = Env::with_shim_env(shared.shim_dir(), &[("WASMPOD_MAX_MODULE_BYTES", "65536")])
        .context("starting a private containerd with a 64 KiB module limit")?;
    env.require_shim()?;
    let rootfs = HostRootfs::with_testprog(&env, "limit")?;
    let size = std::fs::metadata(rootfs.path().join("testprog.wasm"))?.len();
    let message = format!(
        "/testprog.wasm: {size} bytes, more than the limit of 65536 bytes \
         (WASMPOD_MAX_MODULE_BYTES)"
    );
    refuse_on_rootfs(&env, &rootfs, "limit", &["/testprog.wasm"], &[&message])?;

    let native = HostRootfs::new(&env, "limit-native")?;
    let busybox = native.file("bin/busybox", &std::fs::read("/bin/busybox")?)?;
    std::fs::set_permissions(&busybox, std::fs::Permissions::from_mode(0o755))?;
    let id = env.unique_id("limit-native");
    let out = run_rm_on_rootfs(
        &env,
        &native,
        &["--env", "PATH=/bin"],
        &id,
        &["/bin/busybox", "echo", "native ok"],
    )?
    .ok()?;
    anyhow::ensure!(out.stdout.contains("native ok"), "{out}");
    assert_clean(&env, &id)?;
    drop((rootfs, native));
    env.stop_gracefully()
}

fn hostile_file_symlink_loop(env: &Env) -> Result<()> {
    refuse_app(
        env,
        "symloop",
        |r| {
            r.symlink("app.wasm", "/b.wasm")?;
            r.symlink("b.wasm", "app.wasm").map(drop)
        },
        &["/app.wasm: too many levels of symbolic links"],
    )
}

/// The loop is in a directory of the path (resolved by the kernel, not by the shim).
fn hostile_file_loop_in_a_directory(env: &Env) -> Result<()> {
    let rootfs = HostRootfs::new(env, "dirloop")?;
    rootfs.symlink("loop", "/loop")?;
    refuse_on_rootfs(
        env,
        &rootfs,
        "dirloop",
        &["/loop/app.wasm"],
        &["/loop/app.wasm: too many levels of symbolic links"],
    )
}

/// A valid module on the host, outside the rootfs: running it would print "hello from wasm".
/// Returns its absolute host path.
fn host_module(env: &Env, rootfs: &HostRootfs) -> Result<String> {
    let hello = std::fs::read(env.fixtures_dir().join("wasm/hello.wasm"))
        .context("reading the hello.wasm fixture")?;
    let outside = rootfs
        .path()
        .parent()
        .context("rootfs without a parent")?
        .join(format!(
            "host-secret-{}.wasm",
            rootfs
                .path()
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
        ));
    std::fs::write(&outside, hello).context("writing the host module")?;
    outside
        .to_str()
        .map(str::to_string)
        .context("host path is not UTF-8")
}

/// `/app.wasm -> /<host path>`: resolved inside the rootfs, where nothing is there.
fn hostile_file_absolute_symlink_escape(env: &Env) -> Result<()> {
    let rootfs = HostRootfs::new(env, "absescape")?;
    let secret = host_module(env, &rootfs)?;
    rootfs.symlink("app.wasm", &secret)?;
    refuse_on_rootfs(
        env,
        &rootfs,
        "absescape",
        &["/app.wasm"],
        &["\"/app.wasm\" not found in rootfs"],
    )
}

/// `/sub/app.wasm -> ../../../…/<host path>`: `..` stops at the rootfs.
fn hostile_file_relative_symlink_escape(env: &Env) -> Result<()> {
    let rootfs = HostRootfs::new(env, "relescape")?;
    let secret = host_module(env, &rootfs)?;
    let target = format!("{}{}", "../".repeat(30), secret.trim_start_matches('/'));
    rootfs.symlink("sub/app.wasm", &target)?;
    refuse_on_rootfs(
        env,
        &rootfs,
        "relescape",
        &["/sub/app.wasm"],
        &["\"/sub/app.wasm\" not found in rootfs"],
    )
}

/// args[0] through `/proc/self/root`: the rootfs has no procfs when the shim looks.
fn hostile_file_proc_self_root_path(env: &Env) -> Result<()> {
    let rootfs = HostRootfs::new(env, "procroot")?;
    let secret = host_module(env, &rootfs)?;
    let arg0 = format!("/proc/self/root{secret}");
    refuse_on_rootfs(
        env,
        &rootfs,
        "procroot",
        &[&arg0],
        &[&format!("{arg0:?} not found in rootfs")],
    )
}

/// The rootfs does hold a procfs (a host directory can): `/proc/self/root` is a magic link
/// to the shim's own root, which is never followed. The container's view has the spec's own
/// (still empty) /proc over it, so the link leads nowhere; where a procfs is seen, its links
/// are refused (`resolve` unit tests).
fn hostile_file_proc_magic_link(env: &Env) -> Result<()> {
    let mut rootfs = HostRootfs::new(env, "procmagic")?;
    let secret = host_module(env, &rootfs)?;
    rootfs.mount_proc("proc")?;
    rootfs.symlink("app.wasm", &format!("/proc/self/root{secret}"))?;
    refuse_on_rootfs(
        env,
        &rootfs,
        "procmagic",
        &["/app.wasm"],
        &["\"/app.wasm\" not found in rootfs"],
    )
}

/// A PATH search that only finds a FIFO names it.
fn hostile_file_fifo_found_through_path(env: &Env) -> Result<()> {
    let rootfs = HostRootfs::new(env, "pathfifo")?;
    rootfs.fifo("bin/app")?;
    rootfs.dir("usr/bin")?;
    refuse_on_rootfs(
        env,
        &rootfs,
        "pathfifo",
        &["app"],
        &["/bin/app: is a FIFO, not a regular file"],
    )
}

/// VmRSS growth allowed over 50 refusals (allocator noise; a leak of even the smallest
/// per-request buffer or thread stack would show in threads or descriptors first).
const RSS_MARGIN_KIB: u64 = 4096;

/// 50 refused Creates in one long-lived shim (grouped with a running container through the
/// CRI sandbox annotation) leave its threads, descriptors and memory where they were.
fn hostile_files_50_refusals_leave_the_shim_unchanged(env: &Env) -> Result<()> {
    env.require_shim()?;
    let pod = env.unique_id("hostile-pod");
    let annotation = format!("{SANDBOX_ID}={pod}");
    let flags = ["--annotation", annotation.as_str()];
    let keeper = env.unique_id("hostile-keeper");
    let _cleanup = Cleanup::new(env, &[&keeper]);
    run_detached(
        env,
        &env.runtime(),
        &flags,
        env.wasm_image()?,
        &keeper,
        &["/testprog.wasm", "sleep", "300"],
    )?;
    wait_status(env, &keeper, "RUNNING", std::time::Duration::from_secs(30))?;
    let (daemon, _) = daemon_of(env, &keeper)?;
    let pid = daemon.proc.pid;

    let rootfs = HostRootfs::new(env, "fifty")?;
    rootfs.fifo("fifo.wasm")?;
    rootfs.socket("socket.wasm")?;
    rootfs.device("zero.wasm", libc::S_IFCHR, 1, 5)?;
    rootfs.dir("dir.wasm")?;
    rootfs.sparse("huge.wasm", WASM_HEAD, 4 << 30)?;
    let attempts: [(&str, &str); 5] = [
        ("/fifo.wasm", "is a FIFO"),
        ("/socket.wasm", "is a socket"),
        ("/zero.wasm", "is a character device"),
        ("/dir.wasm", "is a directory"),
        ("/huge.wasm", "more than the limit"),
    ];
    let mut ids = Vec::new();
    let mut refuse = |n: usize| -> Result<()> {
        let (arg0, cause) = attempts[n % attempts.len()];
        let id = env.unique_id("hostile-refused");
        let out = run_rm_on_rootfs(env, &rootfs, &flags, &id, &[arg0])?;
        ensure_refused(&out, &[arg0, cause]).with_context(|| format!("attempt {n}"))?;
        ids.push(id);
        Ok(())
    };
    // Warm-up: the first requests size the shim's buffers and thread pool.
    for n in 0..5 {
        refuse(n)?;
    }
    let before = Footprint::of(pid)?;
    for n in 0..50 {
        refuse(n)?;
    }
    ensure_footprint_settles(pid, &before, Some(RSS_MARGIN_KIB), "50 refused Creates")?;
    ensure_daemon_alive(&daemon.proc)?;

    kill_and_delete(env, &keeper)?;
    for id in ids.iter().chain([&keeper]) {
        assert_clean(env, id)?;
    }
    Ok(())
}

fn ensure_daemon_alive(daemon: &crate::support::Proc) -> Result<()> {
    anyhow::ensure!(
        daemon.alive(),
        "the shim daemon died: {}",
        daemon.describe()
    );
    Ok(())
}
