//! Many containers of one pod in one shim daemon: concurrent starts, and a pod whose first
//! container (the one that spawned the daemon) is deleted while others keep it alive.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{ensure, Result};
use wasmpod_e2e::leaks::wait_until;
use wasmpod_e2e::{cases, Case, CmdOutput, Env};

use crate::support::{
    daemon_of, daemons, group_socket, kill_and_delete, run_detached, shim_processes, Cleanup, Proc,
    ShimProc, SANDBOX_ID,
};

pub fn cases() -> Vec<Case> {
    cases![
        twenty_concurrent_containers_one_shim,
        pod_shim_serves_after_first_container_deleted,
    ]
}

/// 20 `ctr run --rm` started at once in one pod (so one shim), half wasm, half native: every
/// one prints its own word and exits 0, one daemon served them all, and nothing is left.
fn twenty_concurrent_containers_one_shim(env: &Env) -> Result<()> {
    env.require_shim()?;
    let wasm_image = env.wasm_image()?;
    let native_image = env.busybox_image()?;
    let pod = env.unique_id("pod");
    let annotation = format!("{SANDBOX_ID}={pod}");
    let jobs: Vec<(String, String, bool)> = (0..20)
        .map(|n| {
            let wasm = n % 2 == 0;
            let kind = if wasm { "wasm" } else { "native" };
            let id = env.unique_id(&format!("pod-{kind}-{n}"));
            let word = format!("word-{n}-{}", std::process::id());
            (id, word, wasm)
        })
        .collect();
    let ids: Vec<&str> = jobs.iter().map(|(id, ..)| id.as_str()).collect();
    let _cleanup = Cleanup::new(env, &ids);
    let (group_path, group_url) = group_socket(env, &pod);
    // 20 containers on 2 cores: each ctr may wait for the others.
    let ctr = env.ctr().clone().with_timeout(Duration::from_secs(120));

    let done = AtomicBool::new(false);
    let (outputs, seen) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut seen: BTreeMap<Proc, ShimProc> = BTreeMap::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let procs: Vec<ShimProc> = shim_processes(env)
                    .into_iter()
                    .filter(|p| ids.contains(&p.id.as_str()) || p.socket == group_url)
                    .collect();
                for d in daemons(&procs) {
                    seen.entry(d.proc).or_insert(d);
                }
                if finished {
                    return seen;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let workers: Vec<_> = jobs
            .iter()
            .map(|(id, word, wasm)| {
                let (ctr, annotation) = (&ctr, &annotation);
                scope.spawn(move || {
                    let flags = ["--annotation", annotation.as_str()];
                    if *wasm {
                        ctr.run_rm_flags(
                            &env.runtime(),
                            &flags,
                            wasm_image,
                            id,
                            &["/hello.wasm", word],
                        )
                    } else {
                        ctr.run_rm_flags(&env.runtime(), &flags, native_image, id, &["echo", word])
                    }
                })
            })
            .collect();
        let outputs: Vec<Result<CmdOutput>> = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("worker panicked")))
            })
            .collect();
        done.store(true, Ordering::SeqCst);
        let seen = sampler.join().unwrap_or_default();
        (outputs, seen)
    });

    let mut failures = Vec::new();
    for ((id, word, wasm), out) in jobs.iter().zip(outputs) {
        match out {
            Err(e) => failures.push(format!("{id}: {e:#}")),
            Ok(out) => {
                let printed = if *wasm {
                    out.stdout.lines().any(|l| l == format!("arg[1]={word}"))
                } else {
                    out.stdout == format!("{word}\n")
                };
                let foreign = jobs.iter().any(|(_, other, _)| {
                    other != word && out.stdout.contains(&format!("{other}\n"))
                });
                if !out.success() || !printed || foreign {
                    failures.push(format!("{id} should print {word:?} and exit 0: {out}"));
                }
            }
        }
    }
    let daemons: Vec<&ShimProc> = seen.values().collect();
    let one_daemon = daemons.len() == 1 && daemons[0].socket == group_url;
    ensure!(
        failures.is_empty() && one_daemon,
        "{} of 20 containers failed:\n{}\n\nshim daemons seen during the run (want exactly one, \
         on the group socket {group_url}): {daemons:#?}",
        failures.len(),
        failures.join("\n"),
    );
    let daemon = daemons[0].proc;
    for id in &ids {
        env.assert_no_leaks(id)?;
    }
    ensure!(
        wait_until(Duration::from_secs(10), || !daemon.alive()),
        "the pod's shim daemon is still alive after all its containers were removed: {}",
        daemon.describe()
    );
    ensure!(
        !group_path.exists(),
        "the pod's shim socket {} still exists",
        group_path.display()
    );
    Ok(())
}

/// The daemon of a pod is spawned by the `start` of the pod's first container (with that
/// container's bundle as its working directory). Deleting that container while another one
/// keeps the shim alive must not break later creates in the same pod.
fn pod_shim_serves_after_first_container_deleted(env: &Env) -> Result<()> {
    env.require_shim()?;
    let wasm_image = env.wasm_image()?;
    let native_image = env.busybox_image()?;
    let pod = env.unique_id("pod-first");
    let annotation = format!("{SANDBOX_ID}={pod}");
    let flags = ["--annotation", annotation.as_str()];
    let first = env.unique_id("pod-first-native");
    let second = env.unique_id("pod-first-wasm");
    let later_native = env.unique_id("pod-later-native");
    let later_wasm = env.unique_id("pod-later-wasm");
    let ids = [&first, &second, &later_native, &later_wasm].map(String::as_str);
    let _cleanup = Cleanup::new(env, &ids);
    let (_, group_url) = group_socket(env, &pod);

    run_detached(
        env,
        &env.runtime(),
        &flags,
        native_image,
        &first,
        &["sleep", "300"],
    )?;
    let (daemon, _) = daemon_of(env, &first)?;
    ensure!(
        daemon.socket == group_url,
        "the pod's shim listens on {}, want {group_url}",
        daemon.socket
    );
    run_detached(
        env,
        &env.runtime(),
        &flags,
        wasm_image,
        &second,
        &["/testprog.wasm", "sleep", "300"],
    )?;
    kill_and_delete(env, &first)?;
    ensure!(
        daemon.proc.alive(),
        "the pod's shim exited although {second} still runs in it"
    );

    let ctr = env.ctr();
    let native = ctr.run_rm_flags(
        &env.runtime(),
        &flags,
        native_image,
        &later_native,
        &["echo", "after"],
    )?;
    let wasm = ctr.run_rm_flags(
        &env.runtime(),
        &flags,
        wasm_image,
        &later_wasm,
        &["/hello.wasm", "after"],
    )?;
    ensure!(
        native.success()
            && native.stdout == "after\n"
            && wasm.success()
            && wasm.stdout.lines().any(|l| l == "arg[1]=after"),
        "after the pod's first container {first} was deleted, new containers in the pod \
         fail (the shim's working directory was {first}'s bundle: {:?}):\n{native}\n{wasm}",
        std::fs::read_link(format!("/proc/{}/cwd", daemon.proc.pid)).ok()
    );
    kill_and_delete(env, &second)?;
    for id in ids {
        env.assert_no_leaks(id)?;
    }
    ensure!(
        wait_until(Duration::from_secs(10), || !daemon.proc.alive()),
        "the pod's shim is still alive after all its containers were removed: {}",
        daemon.proc.describe()
    );
    Ok(())
}
