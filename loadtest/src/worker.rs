//! Worker processes. One process may hold at most ~20,000 open files, so a large TCP
//! run re-executes this binary as hidden `worker`s, each running one [`Job`].
//!
//! Parent to worker (stdin): the job as one JSON line, later `go` when every
//! worker has connected (idle only). Worker to parent (stdout): JSON [`Line`]s:
//! progress every second, `connected`, then the result or an error.

use crate::job::{Job, Outcome};
use crate::scenario::{stdin_lines, Barrier};
use crate::stats::{Live, Snapshot};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What a worker prints, one JSON object per line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    /// Live counters.
    Progress(Snapshot),
    /// Every connection is up; waiting for `go`.
    Connected,
    /// The job's figures.
    Result(Box<Outcome>),
    /// The job failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Prints one line for the parent.
pub fn emit(line: &Line) {
    if let Ok(text) = serde_json::to_string(line) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

/// The `worker` subcommand: read a job, run it, print the result.
pub async fn main() -> Result<()> {
    let mut lines = stdin_lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("no job on stdin within 30 s")?
        .context("reading the job from stdin")?
        .context("stdin closed before a job arrived")?;
    let job: Job = serde_json::from_str(&first).context("decoding the job")?;
    let live = Live::new();
    let reporter = {
        let live = live.clone();
        let limit = job.hard_limit();
        tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while start.elapsed() < limit {
                tick.tick().await;
                emit(&Line::Progress(live.snapshot()));
            }
        })
    };
    let mut barrier = Barrier::worker_stdin(lines);
    let result = tokio::time::timeout(job.hard_limit(), crate::run::run_job(&job, live, &mut barrier)).await;
    reporter.abort();
    match result {
        Ok(Ok(outcome)) => emit(&Line::Result(Box::new(outcome))),
        Ok(Err(e)) => emit(&Line::Error { message: format!("{e:#}") }),
        Err(_) => emit(&Line::Error { message: format!("job exceeded its hard limit of {:?}", job.hard_limit()) }),
    }
    Ok(())
}

/// What the parent learns from its workers.
pub struct Workers {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    events: mpsc::UnboundedReceiver<(usize, Line)>,
    /// Latest progress of each worker.
    pub progress: Arc<Mutex<Vec<Snapshot>>>,
}

impl Workers {
    /// Starts one worker process per job (this executable, `worker` subcommand).
    pub async fn start(jobs: &[Job]) -> Result<Workers> {
        let exe = std::env::current_exe().context("locating the loadtest executable")?;
        let (tx, events) = mpsc::unbounded_channel();
        let progress = Arc::new(Mutex::new(vec![Snapshot::default(); jobs.len()]));
        let mut children = Vec::new();
        let mut stdins = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            let mut child = Command::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting worker {i} ({})", exe.display()))?;
            let mut stdin = child.stdin.take().context("worker stdin")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            let mut text = serde_json::to_string(job).context("encoding a job")?;
            text.push('\n');
            stdin.write_all(text.as_bytes()).await.with_context(|| format!("sending worker {i} its job"))?;
            let (tx, progress) = (tx.clone(), progress.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<Line>(&line) {
                        Ok(Line::Progress(s)) => {
                            if let Some(slot) = progress.lock().unwrap_or_else(|p| p.into_inner()).get_mut(i) {
                                *slot = s;
                            }
                        }
                        Ok(other) => {
                            let _ = tx.send((i, other));
                        }
                        Err(_) => eprintln!("worker {i}: {line}"),
                    }
                }
            });
            children.push(child);
            stdins.push(stdin);
        }
        Ok(Workers { children, stdins, events, progress })
    }

    /// The sum of the workers' latest progress.
    pub fn total(progress: &Mutex<Vec<Snapshot>>) -> Snapshot {
        progress.lock().unwrap_or_else(|p| p.into_inner()).iter().fold(Snapshot::default(), |a, b| a + *b)
    }

    /// Collects every worker's outcome within `limit`. `on_connected` runs once all
    /// workers reported `connected` (then they are told `go`).
    pub async fn collect(mut self, limit: Duration, mut on_connected: impl FnMut()) -> Result<Vec<Outcome>> {
        let n = self.children.len();
        let until = Instant::now() + limit;
        let mut outcomes: Vec<Option<Outcome>> = (0..n).map(|_| None).collect();
        let mut connected = vec![false; n];
        let mut released = false;
        let mut finished = 0;
        while finished < n {
            let (i, line) = match tokio::time::timeout_at(until, self.events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(_) => bail!("workers did not finish within {limit:?}"),
            };
            match line {
                Line::Connected => connected[i] = true,
                Line::Result(outcome) => {
                    outcomes[i] = Some(*outcome);
                    connected[i] = true;
                    finished += 1;
                }
                Line::Error { message } => bail!("worker {i} failed: {message}"),
                Line::Progress(_) => {}
            }
            if !released && connected.iter().all(|&c| c) {
                released = true;
                on_connected();
                for stdin in &mut self.stdins {
                    let _ = stdin.write_all(b"go\n").await;
                }
            }
        }
        for (i, child) in self.children.iter_mut().enumerate() {
            match tokio::time::timeout_at(until, child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => bail!("worker {i} exited with {status}"),
                Ok(Err(e)) => bail!("waiting for worker {i}: {e}"),
                Err(_) => bail!("worker {i} did not exit in time"),
            }
        }
        outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| o.ok_or_else(|| anyhow!("worker {i} ended without a result")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_as_tagged_json() {
        let text = serde_json::to_string(&Line::Connected).unwrap();
        assert_eq!(text, r#"{"type":"connected"}"#);
        let progress = Line::Progress(Snapshot { sent: 3, ..Snapshot::default() });
        let back: Line = serde_json::from_str(&serde_json::to_string(&progress).unwrap()).unwrap();
        assert!(matches!(back, Line::Progress(s) if s.sent == 3));
        let result = Line::Result(Box::new(Outcome { accepted: 9, ..Outcome::default() }));
        let back: Line = serde_json::from_str(&serde_json::to_string(&result).unwrap()).unwrap();
        assert!(matches!(back, Line::Result(o) if o.accepted == 9));
    }
}
