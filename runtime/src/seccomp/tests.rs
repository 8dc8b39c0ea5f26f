use super::*;
use std::process::Command;

const CHILD_ENV: &str = "WASMPOD_SECCOMP_TEST_CHILD";

/// Runs the test `name` again in a child process with [`CHILD_ENV`] set (a filter cannot be
/// removed) and returns the child's status and output.
fn rerun(name: &str) -> std::process::Output {
    let exe = std::env::current_exe().unwrap();
    Command::new(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap()
}

fn in_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

fn assert_child_passed(out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn profile_compiles_for_every_arch_and_mode() {
    for arch in ARCHES {
        for mode in [Mode::Enforce, Mode::Log] {
            let program = compile(arch, mode).unwrap_or_else(|e| panic!("{arch} {mode:?}: {e}"));
            assert_eq!(
                program[..5],
                clone3_enosys_prefix(audit_arch(arch).unwrap())[..]
            );
            let returns = |k: u32| program.iter().any(|i| i.code == BPF_RET_K && i.k == k);
            assert!(returns(libc::SECCOMP_RET_ALLOW), "{arch} {mode:?}");
            let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
            assert_eq!(returns(eperm), mode == Mode::Enforce, "{arch} {mode:?}");
            assert_eq!(
                returns(libc::SECCOMP_RET_LOG),
                mode == Mode::Log,
                "{arch} {mode:?}"
            );
        }
    }
}

#[test]
fn clone3_number_is_the_native_one() {
    assert_eq!(libc::SYS_clone3, SYS_CLONE3 as libc::c_long);
}

#[test]
fn arch_key_selects_rules_and_unknown_names_fail() {
    let profile = r#"{"wasm_guest": {"mismatch_action": {"errno": 1}, "match_action": "allow",
        "filter": [{"syscall": "read"}, {"syscall": "open", "arch": ["x86_64"]}]}}"#;
    let x86 = profile_for(profile, "x86_64", Mode::Enforce).unwrap();
    let arm = profile_for(profile, "aarch64", Mode::Log).unwrap();
    assert!(
        x86.contains(r#"{"syscall":"open"}"#) && !x86.contains("arch"),
        "{x86}"
    );
    assert!(
        !arm.contains("open") && arm.contains(r#""mismatch_action":"log""#),
        "{arm}"
    );

    let bad_arch = r#"{"wasm_guest": {"mismatch_action": "allow", "match_action": "allow",
        "filter": [{"syscall": "open", "arch": ["x86"]}]}}"#;
    let err = profile_for(bad_arch, "x86_64", Mode::Enforce).unwrap_err();
    assert!(err.to_string().contains("\"open\""), "{err}");

    // Without an `arch` key a name must exist on every architecture.
    let unmarked = r#"{"wasm_guest": {"mismatch_action": "allow", "match_action": "allow",
        "filter": [{"syscall": "open"}]}}"#;
    let json = profile_for(unmarked, "aarch64", Mode::Enforce).unwrap();
    let target = TargetArch::try_from("aarch64").unwrap();
    assert!(seccompiler::compile_from_json(json.as_bytes(), target).is_err());
}

/// Calls `nr` with `args`; returns the errno, or 0 on success.
fn errno_of(nr: libc::c_long, args: [libc::c_long; 5]) -> i32 {
    // SAFETY: every call below is refused by the filter before the kernel reads its pointers;
    // should one get through, its arguments are harmless (null or -1) or the caller handles it.
    let rc = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4]) };
    if rc == -1 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    } else {
        if rc == 0 && nr == libc::SYS_clone {
            // A clone that got through: this is the new process.
            // SAFETY: leaving the accidental child at once.
            unsafe { libc::_exit(0) };
        }
        0
    }
}

/// The calls the profile must refuse, with the errno they must get.
fn refused() -> Vec<(&'static str, libc::c_long, [libc::c_long; 5], i32)> {
    let eperm = libc::EPERM;
    let null = 0;
    let sigchld = libc::SIGCHLD as libc::c_long;
    #[allow(unused_mut)]
    let mut calls = vec![
        ("execve", libc::SYS_execve, [null; 5], eperm),
        (
            "execveat",
            libc::SYS_execveat,
            [-1, null, null, null, 0],
            eperm,
        ),
        (
            "ptrace",
            libc::SYS_ptrace,
            [libc::PTRACE_TRACEME as _, 0, 0, 0, 0],
            eperm,
        ),
        ("mount", libc::SYS_mount, [null; 5], eperm),
        ("umount2", libc::SYS_umount2, [null; 5], eperm),
        ("pivot_root", libc::SYS_pivot_root, [null; 5], eperm),
        ("chroot", libc::SYS_chroot, [null; 5], eperm),
        (
            "unshare",
            libc::SYS_unshare,
            [libc::CLONE_NEWUSER as _, 0, 0, 0, 0],
            eperm,
        ),
        ("setns", libc::SYS_setns, [-1, 0, 0, 0, 0], eperm),
        (
            "clone CLONE_NEWUSER",
            libc::SYS_clone,
            [libc::CLONE_NEWUSER as libc::c_long | sigchld, 0, 0, 0, 0],
            eperm,
        ),
        (
            "clone CLONE_NEWNS",
            libc::SYS_clone,
            [libc::CLONE_NEWNS as libc::c_long | sigchld, 0, 0, 0, 0],
            eperm,
        ),
        (
            "clone CLONE_NEWNET",
            libc::SYS_clone,
            [libc::CLONE_NEWNET as libc::c_long | sigchld, 0, 0, 0, 0],
            eperm,
        ),
        (
            "clone CLONE_NEWTIME",
            libc::SYS_clone,
            [0x80 | sigchld, 0, 0, 0, 0],
            eperm,
        ),
        ("clone3", libc::SYS_clone3, [null; 5], libc::ENOSYS),
        ("fsopen", libc::SYS_fsopen, [null; 5], eperm),
        ("fsconfig", libc::SYS_fsconfig, [-1, 0, 0, 0, 0], eperm),
        ("fsmount", libc::SYS_fsmount, [-1, 0, 0, 0, 0], eperm),
        ("fspick", libc::SYS_fspick, [-1, 0, 0, 0, 0], eperm),
        ("move_mount", libc::SYS_move_mount, [-1, 0, -1, 0, 0], eperm),
        ("open_tree", libc::SYS_open_tree, [-1, 0, 0, 0, 0], eperm),
        (
            "mount_setattr",
            libc::SYS_mount_setattr,
            [-1, 0, 0, 0, 0],
            eperm,
        ),
        (
            "kexec_file_load",
            libc::SYS_kexec_file_load,
            [-1, -1, 0, 0, 0],
            eperm,
        ),
        ("kexec_load", libc::SYS_kexec_load, [null; 5], eperm),
        ("init_module", libc::SYS_init_module, [null; 5], eperm),
        (
            "finit_module",
            libc::SYS_finit_module,
            [-1, 0, 0, 0, 0],
            eperm,
        ),
        ("bpf", libc::SYS_bpf, [null; 5], eperm),
        (
            "perf_event_open",
            libc::SYS_perf_event_open,
            [null; 5],
            eperm,
        ),
        (
            "io_uring_setup",
            libc::SYS_io_uring_setup,
            [1, 0, 0, 0, 0],
            eperm,
        ),
        (
            "io_uring_enter",
            libc::SYS_io_uring_enter,
            [-1, 0, 0, 0, 0],
            eperm,
        ),
        ("userfaultfd", libc::SYS_userfaultfd, [null; 5], eperm),
        ("keyctl", libc::SYS_keyctl, [null; 5], eperm),
        ("add_key", libc::SYS_add_key, [null; 5], eperm),
        (
            "process_vm_readv",
            libc::SYS_process_vm_readv,
            [1, 0, 0, 0, 0],
            eperm,
        ),
        (
            "process_vm_writev",
            libc::SYS_process_vm_writev,
            [1, 0, 0, 0, 0],
            eperm,
        ),
        (
            "pidfd_getfd",
            libc::SYS_pidfd_getfd,
            [-1, -1, 0, 0, 0],
            eperm,
        ),
        (
            "personality",
            libc::SYS_personality,
            [0xffffffff, 0, 0, 0, 0],
            eperm,
        ),
        ("reboot", libc::SYS_reboot, [null; 5], eperm),
        ("swapon", libc::SYS_swapon, [null; 5], eperm),
        ("settimeofday", libc::SYS_settimeofday, [null; 5], eperm),
        ("sethostname", libc::SYS_sethostname, [null; 5], eperm),
        (
            "open_by_handle_at",
            libc::SYS_open_by_handle_at,
            [-1, 0, 0, 0, 0],
            eperm,
        ),
        (
            "name_to_handle_at",
            libc::SYS_name_to_handle_at,
            [-1, 0, 0, 0, 0],
            eperm,
        ),
        ("fanotify_init", libc::SYS_fanotify_init, [null; 5], eperm),
        ("memfd_secret", libc::SYS_memfd_secret, [null; 5], eperm),
        (
            "landlock_create_ruleset",
            libc::SYS_landlock_create_ruleset,
            [0, 0, 1, 0, 0],
            eperm,
        ),
        ("seccomp", libc::SYS_seccomp, [null; 5], eperm),
        ("acct", libc::SYS_acct, [null; 5], eperm),
        ("quotactl", libc::SYS_quotactl, [null; 5], eperm),
        ("syslog", libc::SYS_syslog, [null; 5], eperm),
        // Past every table seccompiler knows: a syscall added to a later kernel.
        ("nr 470", 470, [null; 5], eperm),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        const X32: libc::c_long = 0x4000_0000;
        calls.push(("x32 getpid", X32 | libc::SYS_getpid, [null; 5], eperm));
        calls.push(("x32 read", X32 | libc::SYS_read, [-1, 0, 0, 0, 0], eperm));
        calls.push(("x32 execve", X32 | 520, [null; 5], eperm));
    }
    calls
}

/// Each refused call fails with its errno under the enforcing filter; what an engine needs
/// (files, threads, through `clone` after `clone3`'s ENOSYS) still works. In a child process.
#[test]
fn refused_calls_fail_and_engine_needs_work() {
    if !in_child() {
        return assert_child_passed(&rerun(
            "seccomp::tests::refused_calls_fail_and_engine_needs_work",
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    install(&compile(std::env::consts::ARCH, Mode::Enforce).unwrap()).unwrap();
    let mut wrong = Vec::new();
    for (name, nr, args, expected) in refused() {
        let got = errno_of(nr, args);
        if got != expected {
            wrong.push(format!("{name}: errno {got}, expected {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    let err = Command::new("/bin/true").status().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    std::fs::write(dir.path().join("f"), b"ok").unwrap();
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"ok");
    let path = dir.path().join("f");
    let thread = std::thread::spawn(move || std::fs::read(path).unwrap());
    assert_eq!(thread.join().unwrap(), b"ok");
}

/// Runs `getpid` through the i386 ABI (`int 0x80`); returns its result.
#[cfg(target_arch = "x86_64")]
fn i386_getpid() -> i64 {
    let mut rax: i64 = 20; // __NR_getpid on i386
                           // SAFETY: a system call without memory arguments; int 0x80 clobbers only rax (r8-r11 are
                           // preserved by the kernel's compat entry, declared clobbered to be safe).
    unsafe {
        std::arch::asm!("int 0x80", inout("rax") rax, out("r8") _, out("r9") _, out("r10") _,
            out("r11") _);
    }
    rax
}

/// Another ABI than the native one (i386 through `int 0x80`) ends the process with SIGSYS
/// (seccompiler's architecture check). Checked only if the kernel has that ABI at all.
#[cfg(target_arch = "x86_64")]
#[test]
fn i386_abi_kills_the_process() {
    use std::os::unix::process::ExitStatusExt;
    if in_child() {
        if std::env::var_os("WASMPOD_SECCOMP_TEST_FILTER").is_some() {
            install(&compile("x86_64", Mode::Enforce).unwrap()).unwrap();
        }
        println!("i386 getpid = {}", i386_getpid());
        return;
    }
    let name = "seccomp::tests::i386_abi_kills_the_process";
    let run = |filter: bool| {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1");
        if filter {
            cmd.env("WASMPOD_SECCOMP_TEST_FILTER", "1");
        }
        cmd.output().unwrap()
    };
    let control = run(false);
    let pid = String::from_utf8_lossy(&control.stdout)
        .lines()
        .find_map(|l| l.split("i386 getpid = ").nth(1)?.trim().parse::<i64>().ok());
    if !control.status.success() || pid.is_none_or(|pid| pid <= 0) {
        eprintln!(
            "NOTE: this kernel has no i386 ABI ({}), so there is no other ABI to refuse",
            control.status
        );
        return;
    }
    let filtered = run(true);
    assert_eq!(
        filtered.status.signal(),
        Some(libc::SIGSYS),
        "{}\n{}",
        filtered.status,
        String::from_utf8_lossy(&filtered.stdout)
    );
}
