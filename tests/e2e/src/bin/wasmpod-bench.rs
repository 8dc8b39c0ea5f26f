//! `make bench`: median wall time of `ctr run --rm` through wasmpod and through runc on the
//! same private containerd, interleaved so machine noise hits both alike. Ratios, not seconds,
//! are what carry over between machines.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use wasmpod_e2e::{Env, RUNC_RUNTIME, WASM_RUNTIME};

struct Subject {
    name: &'static str,
    runtime: &'static str,
    wasm: bool,
    args: &'static [&'static str],
    samples: Vec<Duration>,
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Result<()> {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let mut env = Env::start().context("starting a private containerd")?;
    env.require_shim()?;
    let wasm_image = env.wasm_image()?.to_string();
    let busybox = env.busybox_image()?.to_string();
    let mut subjects = [
        Subject {
            name: "wasmpod wasm hello",
            runtime: WASM_RUNTIME,
            wasm: true,
            args: &["/hello.wasm"],
            samples: vec![],
        },
        Subject {
            name: "wasmpod native echo",
            runtime: WASM_RUNTIME,
            wasm: false,
            args: &["echo", "hello"],
            samples: vec![],
        },
        Subject {
            name: "runc native echo",
            runtime: RUNC_RUNTIME,
            wasm: false,
            args: &["echo", "hello"],
            samples: vec![],
        },
    ];
    let result = (|| -> Result<()> {
        // One warm-up each: fills the module cache and the page cache.
        for round in 0..=runs {
            for s in subjects.iter_mut() {
                let image = if s.wasm { &wasm_image } else { &busybox };
                let id = env.unique_id("bench");
                let out = env.ctr().run_rm(s.runtime, image, &id, s.args)?;
                ensure!(out.success(), "{}: {out}", s.name);
                if round > 0 {
                    s.samples.push(out.elapsed);
                }
            }
        }
        Ok(())
    })();
    env.stop_gracefully()?;
    result?;

    println!("ctr run --rm, median of {runs} runs each (interleaved, one private containerd):");
    let runc = median(&mut subjects[2].samples.clone());
    for s in subjects.iter_mut() {
        let m = median(&mut s.samples);
        let min = s.samples.first().copied().unwrap_or_default();
        println!(
            "  {:<22} median {:>7.1} ms  min {:>7.1} ms  ratio to runc {:.2}",
            s.name,
            ms(m),
            ms(min),
            ms(m) / ms(runc)
        );
    }
    Ok(())
}
