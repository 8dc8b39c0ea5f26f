//! The counter parser, and a real cgroup v1 memory cgroup whose process is OOM-killed while the
//! shell that started it lives on.

use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

#[test]
fn reads_v1_and_v2_counters() {
    assert_eq!(
        oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
        2
    );
    assert_eq!(
        oom_kill_count("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n"),
        1
    );
    assert_eq!(oom_kill_count("oom_kill_disable 0\nunder_oom 0\n"), 0);
}

#[test]
fn a_missing_cgroup_is_a_clear_error_and_nothing_is_watched() {
    let watcher = OomWatcher::new().unwrap();
    let missing = PathBuf::from("/sys/fs/cgroup/memory/wasmpod-no-such-cgroup");
    let err = watcher
        .watch("gone", MemoryCgroup::V1(missing.clone()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("wasmpod-no-such-cgroup"), "{err}");
    assert!(watcher.is_empty());
}

/// A v1 memory cgroup of the test's own, removed on drop.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new(name: &str, limit: u64) -> Option<Self> {
        let base = PathBuf::from("/sys/fs/cgroup/memory");
        if !base.join("cgroup.event_control").exists() || !nix::unistd::geteuid().is_root() {
            eprintln!("no cgroup v1 memory controller we may use: skipped");
            return None;
        }
        let dir = base.join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let cgroup = TestCgroup(dir);
        std::fs::write(cgroup.0.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
        Some(cgroup)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_child_killed_in_a_v1_cgroup_is_reported_while_its_shell_lives_on() {
    let Some(cgroup) = TestCgroup::new("wasmpod-oom-watch-test", 16 << 20) else {
        return;
    };
    let watcher = Arc::new(OomWatcher::new().unwrap());
    assert_eq!(
        watcher
            .watch("victim", MemoryCgroup::V1(cgroup.0.clone()))
            .unwrap(),
        0
    );
    assert!(matches!(
        watcher.watch("victim", MemoryCgroup::V1(cgroup.0.clone())),
        Err(WatchError::AlreadyWatched(_))
    ));
    let (tx, rx) = mpsc::channel();
    let serving = watcher.clone();
    std::thread::spawn(move || {
        serving.run(|id, kills| {
            let _ = tx.send((id.to_string(), kills, Instant::now()));
        })
    });

    // The shell joins the cgroup; its dd (64 MiB buffer under a 16 MiB limit) is killed; the
    // shell reports it and waits to be told to end.
    let procs = cgroup.0.join("cgroup.procs");
    let script = format!(
        "echo $$ > {}; dd if=/dev/zero of=/dev/null bs=64M count=1; echo dd=$?; read line; true",
        procs.display()
    );
    let mut shell = Command::new("/bin/busybox")
        .args(["sh", "-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(shell.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let dd_ended = Instant::now();
    assert_eq!(line.trim(), "dd=137", "dd should be OOM-killed");

    let (id, kills, at) = rx
        .recv_timeout(Duration::from_secs(2))
        .expect("no OOM kill reported");
    assert_eq!((id.as_str(), kills), ("victim", 1));
    assert!(
        at.saturating_duration_since(dd_ended) < Duration::from_secs(1),
        "reported {:?} after the kill",
        at - dd_ended
    );
    assert!(
        shell.try_wait().unwrap().is_none(),
        "the shell must still run"
    );
    assert!(
        rx.recv_timeout(Duration::from_millis(1200)).is_err(),
        "one kill is reported once"
    );

    drop(shell.stdin.take());
    assert!(shell.wait().unwrap().success());
    watcher.unwatch("victim");
    assert!(watcher.is_empty());
}

/// The v2 path (inotify on `memory.events`) on a plain file standing in for the cgroup's: this
/// host's cgroup v2 has no memory controller. Each growth is reported once; other changes of
/// the file are not.
#[test]
fn a_grown_v2_counter_is_reported_once() {
    let dir = std::env::temp_dir().join(format!("wasmpod-oom-v2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let events = dir.join("memory.events");
    let write = |oom: u64, kills: u64| {
        std::fs::write(
            &events,
            format!("low 0\nhigh 0\nmax 3\noom {oom}\noom_kill {kills}\n"),
        )
        .unwrap()
    };
    write(1, 1);
    let watcher = Arc::new(OomWatcher::new().unwrap());
    assert_eq!(
        watcher.watch("v2", MemoryCgroup::V2(dir.clone())).unwrap(),
        1
    );
    let (tx, rx) = mpsc::channel();
    let serving = watcher.clone();
    std::thread::spawn(move || {
        serving.run(|id, kills| {
            let _ = tx.send((id.to_string(), kills));
        })
    });
    write(2, 1);
    assert!(
        rx.recv_timeout(Duration::from_millis(1200)).is_err(),
        "an OOM event without a kill is not a kill"
    );
    write(3, 3);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(1)).unwrap(),
        ("v2".to_string(), 3)
    );
    watcher.unwatch("v2");
    write(4, 4);
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "unwatched"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
