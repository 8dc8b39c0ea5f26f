//! `ctr events` read as it streams: cases that must see an event while a container still runs
//! (e.g. `/tasks/oom` of a child killed while the shell lives on) poll it line by line.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::Ctr;

/// One line of `ctr events` and when the harness read it.
#[derive(Debug, Clone)]
pub struct Event {
    /// The line as printed: `<time> <namespace> <topic> <json>`.
    pub line: String,
    /// When the harness read it.
    pub seen: Instant,
}

impl Event {
    /// The topic (`/tasks/oom`, ...): the field starting with `/`.
    pub fn topic(&self) -> Option<&str> {
        self.line.split_whitespace().find(|f| f.starts_with('/'))
    }

    /// Whether the event is about container `id` (its `container_id`).
    pub fn is_of(&self, id: &str) -> bool {
        is_of(&self.line, id)
    }
}

/// Whether a line of `ctr events` is about container `id` (its `container_id`).
fn is_of(line: &str, id: &str) -> bool {
    line.contains(&format!("\"container_id\":\"{id}\""))
}

/// The lines of `ctr events` output `text` that are about container `id`, in order.
pub fn lines_of<'a>(text: &'a str, id: &str) -> Vec<&'a str> {
    text.lines().filter(|l| is_of(l, id)).collect()
}

/// A running `ctr events`; killed and reaped on drop.
pub struct EventStream {
    child: Child,
    lines: Arc<Mutex<Vec<Event>>>,
}

impl EventStream {
    /// Starts `ctr events` and waits `settle` for it to subscribe (it does so asynchronously).
    pub fn start(ctr: &Ctr, settle: Duration) -> Result<Self> {
        let mut child = ctr
            .command(&["events"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting `ctr events`")?;
        let stdout = child.stdout.take().context("`ctr events` has no stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = Event {
                    line,
                    seen: Instant::now(),
                };
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(event);
            }
        });
        std::thread::sleep(settle);
        Ok(EventStream { child, lines })
    }

    /// The events of container `id` read so far, in order.
    pub fn of(&self, id: &str) -> Vec<Event> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().filter(|e| e.is_of(id)).cloned().collect()
    }

    /// The topics of container `id`'s events read so far, in order.
    pub fn topics_of(&self, id: &str) -> Vec<String> {
        self.of(id)
            .iter()
            .filter_map(|e| e.topic().map(str::to_string))
            .collect()
    }

    /// Waits up to `timeout` for an event of `id` with `topic`; returns the first one.
    pub fn wait_for(&self, id: &str, topic: &str, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.of(id).into_iter().find(|e| e.topic() == Some(topic));
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
