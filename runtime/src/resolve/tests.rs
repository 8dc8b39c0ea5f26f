use super::*;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::Path;

fn rootfs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    for d in ["bin", "usr/bin", "sub/deeper"] {
        std::fs::create_dir_all(p(d)).unwrap();
    }
    std::fs::write(p("bin/busybox"), b"\x7fELF....").unwrap();
    symlink("/bin/busybox", p("bin/echo")).unwrap();
    symlink("busybox", p("bin/sh")).unwrap();
    symlink("../../bin/sh", p("usr/bin/env")).unwrap();
    symlink("/etc/passwd", p("escape")).unwrap();
    symlink("../../../../../../../../etc/passwd", p("sub/deeper/up")).unwrap();
    symlink("/loop-b", p("loop-a")).unwrap();
    symlink("/loop-a", p("loop-b")).unwrap();
    symlink("/proc/self/root/etc/passwd", p("via-proc")).unwrap();
    std::fs::write(p("app.wasm"), b"\0asm\x01\0\0\0rest").unwrap();
    nix::unistd::mkfifo(&p("fifo.wasm"), Mode::from_bits_truncate(0o644)).unwrap();
    dir
}

fn find(root: &tempfile::TempDir, arg0: &str) -> Result<Program, ResolveError> {
    find_program(&View::rootfs(root.path()), arg0, "/usr/bin:/bin")
}

fn refused(root: &tempfile::TempDir, arg0: &str) -> String {
    find(root, arg0).unwrap_err().to_string()
}

#[test]
fn symlinks_resolve_inside_the_rootfs() {
    let root = rootfs();
    for arg0 in ["echo", "sh", "env", "/usr/bin/env", "/bin/../bin/echo"] {
        let p = find(&root, arg0).unwrap_or_else(|e| panic!("{arg0}: {e}"));
        assert_eq!(p.head(4).unwrap(), b"\x7fELF", "{arg0}");
        assert_eq!(p.size, 8);
    }
    assert_eq!(find(&root, "env").unwrap().path, "/usr/bin/env");
}

#[test]
fn escapes_stay_in_the_rootfs() {
    let root = rootfs();
    for arg0 in [
        "/escape",
        "/sub/deeper/up",
        "/../../../../etc/passwd",
        "/via-proc",
    ] {
        let err = find(&root, arg0).unwrap_err();
        assert!(
            matches!(err, ResolveError::NotFound { .. }),
            "{arg0}: {err}"
        );
    }
}

#[test]
fn a_symlink_loop_is_named() {
    let root = rootfs();
    assert_eq!(
        refused(&root, "/loop-a"),
        "/loop-a: too many levels of symbolic links"
    );
}

#[test]
fn special_files_are_refused_without_blocking() {
    let root = rootfs();
    assert_eq!(
        refused(&root, "/fifo.wasm"),
        "/fifo.wasm: is a FIFO, not a regular file"
    );
    assert_eq!(
        refused(&root, "/bin"),
        "/bin: is a directory, not a regular file"
    );
    let _listener = std::os::unix::net::UnixListener::bind(root.path().join("sock")).unwrap();
    assert_eq!(
        refused(&root, "/sock"),
        "/sock: is a socket, not a regular file"
    );
    nix::sys::stat::mknod(
        &root.path().join("null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    assert_eq!(
        refused(&root, "/null"),
        "/null: is a character device, not a regular file"
    );
}

#[test]
fn a_path_search_skips_what_cannot_run_but_names_it_when_nothing_else_matches() {
    let root = rootfs();
    std::fs::create_dir(root.path().join("usr/bin/busybox")).unwrap();
    assert_eq!(find(&root, "busybox").unwrap().path, "/bin/busybox");
    nix::unistd::mkfifo(
        &root.path().join("usr/bin/pipe"),
        Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    assert_eq!(
        refused(&root, "pipe"),
        "/usr/bin/pipe: is a FIFO, not a regular file"
    );
}

#[test]
fn an_oversized_file_names_its_size_and_the_limit() {
    let root = rootfs();
    let p = find(&root, "/app.wasm").unwrap();
    assert_eq!(
        p.check_size_against(4).unwrap_err().to_string(),
        "/app.wasm: 12 bytes, more than the limit of 4 bytes (WASMPOD_MAX_MODULE_BYTES)"
    );
    assert!(p.check_size_against(12).is_ok());
    assert!(p.check_size().is_ok());
}

#[test]
fn reads_are_positioned_and_bounded_by_the_checked_size() {
    let root = rootfs();
    let p = find(&root, "/app.wasm").unwrap();
    assert_eq!(p.head(4).unwrap(), b"\0asm");
    assert_eq!(p.head(4).unwrap(), b"\0asm");
    assert_eq!(p.head(100).unwrap().len(), 12);
    let mut grow = std::fs::OpenOptions::new()
        .append(true)
        .open(root.path().join("app.wasm"))
        .unwrap();
    std::io::Write::write_all(&mut grow, b"grown").unwrap();
    assert_eq!(p.read_all().unwrap(), b"\0asm\x01\0\0\0rest");
    let mut rest = Vec::new();
    (&p.file).read_to_end(&mut rest).unwrap();
    assert_eq!(rest.len(), 17, "the file offset was still 0");
    assert!(!p.is_executable());
}

#[test]
fn missing_program_names_path_searched() {
    let root = rootfs();
    let err = find_program(&View::rootfs(root.path()), "nope", "/bin")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"nope\" not found") && err.contains("PATH=/bin"),
        "{err}"
    );
}

#[test]
fn the_limit_comes_from_the_environment_or_defaults() {
    use std::ffi::OsStr;
    assert_eq!(parse_limit(None), DEFAULT_MAX_MODULE_BYTES);
    assert_eq!(parse_limit(Some(OsStr::new("1048576"))), 1 << 20);
    for bad in ["", "0", "-1", "1MiB", "lots"] {
        assert_eq!(
            parse_limit(Some(OsStr::new(bad))),
            DEFAULT_MAX_MODULE_BYTES,
            "{bad}"
        );
    }
}

/// A spec whose mounts are `(destination, type, source)`.
fn spec_with_mounts(mounts: &[(&str, &str, &Path)]) -> oci_spec::runtime::Spec {
    let mounts = mounts
        .iter()
        .map(|(dest, typ, source)| {
            oci_spec::runtime::MountBuilder::default()
                .destination(*dest)
                .typ(*typ)
                .source(*source)
                .options(vec!["rbind".to_string(), "ro".to_string()])
                .build()
                .unwrap()
        })
        .collect::<Vec<_>>();
    let mut spec = oci_spec::runtime::Spec::default();
    spec.set_mounts(Some(mounts));
    spec
}

fn volume() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.wasm"), b"\0asm\x01\0\0\0volume").unwrap();
    std::fs::create_dir(dir.path().join("nested")).unwrap();
    symlink("/vol/app.wasm", dir.path().join("nested/abs")).unwrap();
    symlink("../../../../app.wasm", dir.path().join("nested/up")).unwrap();
    dir
}

#[test]
fn programs_on_volumes_are_found_where_the_container_sees_them() {
    let root = rootfs();
    let vol = volume();
    symlink("/vol/app.wasm", root.path().join("bin/linked.wasm")).unwrap();
    let view = View::of_spec(
        &spec_with_mounts(&[("/vol", "bind", vol.path())]),
        root.path(),
    );
    let read = |arg0: &str| {
        let p = find_program(&view, arg0, "/bin").unwrap_or_else(|e| panic!("{arg0}: {e}"));
        p.head(14).unwrap()
    };
    assert_eq!(read("/vol/app.wasm"), b"\0asm\x01\0\0\0volume");
    // An absolute link in the volume starts again at the container's root; `..` stops at it.
    assert_eq!(read("/vol/nested/abs"), b"\0asm\x01\0\0\0volume");
    assert_eq!(read("/vol/nested/up"), b"\0asm\x01\0\0\0rest");
    // A link in the image that leads onto the volume, and PATH through the volume.
    assert_eq!(read("/bin/linked.wasm"), b"\0asm\x01\0\0\0volume");
    let p = find_program(&view, "app.wasm", "/nope:/vol").unwrap();
    assert_eq!(p.path, "/vol/app.wasm");
    // The image's files outside the volume are still there.
    assert_eq!(read("/bin/busybox").get(..4), Some(&b"\x7fELF"[..]));
}

#[test]
fn a_volume_shadows_the_image_and_later_mounts_cover_earlier_ones() {
    let root = rootfs();
    let vol = volume();
    let other = tempfile::tempdir().unwrap();
    // The image has /app.wasm ("rest"); a volume mounted on / would be odd, so shadow a
    // directory: the image's /bin holds no app.wasm, the volume's does.
    let view = View::of_spec(
        &spec_with_mounts(&[("/bin", "bind", vol.path())]),
        root.path(),
    );
    assert!(matches!(
        find_program(&view, "/bin/busybox", "").unwrap_err(),
        ResolveError::NotFound { .. }
    ));
    assert!(find_program(&view, "/bin/app.wasm", "").is_ok());
    // A later mount at a parent hides an earlier one below it; a later one below is on top.
    let hidden = View::of_spec(
        &spec_with_mounts(&[("/a/b", "bind", vol.path()), ("/a", "bind", other.path())]),
        root.path(),
    );
    assert!(find_program(&hidden, "/a/b/app.wasm", "").is_err());
    let on_top = View::of_spec(
        &spec_with_mounts(&[("/a", "bind", other.path()), ("/a/b", "bind", vol.path())]),
        root.path(),
    );
    assert!(find_program(&on_top, "/a/b/app.wasm", "").is_ok());
}

#[test]
fn other_file_systems_are_empty_when_the_container_is_created() {
    let root = rootfs();
    let view = View::of_spec(
        &spec_with_mounts(&[
            ("/bin", "tmpfs", Path::new("tmpfs")),
            ("/proc", "proc", Path::new("proc")),
        ]),
        root.path(),
    );
    for arg0 in ["/bin/busybox", "echo", "/proc/self/exe"] {
        let err = find_program(&view, arg0, "/bin").unwrap_err();
        assert!(
            matches!(err, ResolveError::NotFound { .. }),
            "{arg0}: {err}"
        );
    }
    let err = find_program(&view, "/bin", "").unwrap_err().to_string();
    assert!(err.contains("is a directory"), "{err}");
}

#[test]
fn a_running_process_view_refuses_proc_files() {
    // This test process's own view is the host's; /proc files are refused, not read.
    let pid = std::process::id();
    let view = View::of_process(pid as i32).unwrap();
    let err = find_program(&view, &format!("/proc/{pid}/status"), "")
        .unwrap_err()
        .to_string();
    assert!(err.contains("/proc or /sys"), "{err}");
}

#[test]
fn links_of_a_procfs_in_view_are_never_followed() {
    let root = rootfs();
    symlink("/proc/self/root/bin/busybox", root.path().join("magic")).unwrap();
    let view = View::of_spec(
        &spec_with_mounts(&[("/proc", "bind", Path::new("/proc"))]),
        root.path(),
    );
    for arg0 in ["/magic", "/proc/self/exe", "/proc/1/root/bin/busybox"] {
        let err = find_program(&view, arg0, "").unwrap_err();
        assert!(matches!(err, ResolveError::Eloop { .. }), "{arg0}: {err}");
    }
}
