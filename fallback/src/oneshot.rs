//! One-shot executions in containers: an [`ExecRequest`] in a fresh (pooled) container, used
//! once and destroyed.
//!
//! The code and input files are written into the container's workspace on the host, the
//! language's recipe runs under the exec wrapper (deadline inside the container, and here as a
//! backstop), output is kept up to the request's caps (past a cap the container is killed),
//! and every file the program created or changed is returned, like the WebAssembly backend
//! does. Limits: deadline, memory (the container's cap, resized for the request), output.
//! Fuel and the open-file cap are WebAssembly limits: fuel is refused, open files are the
//! image's default.

use crate::containers::Containers;
use crate::error::ContainerError;
use crate::exec::{self, Channel, CommandLine, Decoder, EXIT_KILLED};
use crate::languages::{recipe, with_args};
use crate::pool::{Slot, WarmPool};
use futures_util::StreamExt;
use soulbox_engine::result::{MAX_OUTPUT_FILE_BYTES, MAX_OUTPUT_FILES};
use soulbox_engine::{ExecRequest, ExecResult, Outcome, OutputFile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncWriteExt;

/// Time past the deadline before SoulBox kills the container itself (the wrapper's `timeout`
/// normally ends the process at the deadline).
pub const DEADLINE_GRACE: Duration = Duration::from_millis(500);
/// Where the wrapper keeps the run's pid.
const PID_FILE: &str = "/tmp/.soulbox/run.pid";

/// Runs `request` in a container from `pool`.
pub async fn execute(
    pool: &WarmPool,
    containers: &Containers,
    request: ExecRequest,
) -> Result<ExecResult, ContainerError> {
    if request.limits.fuel.is_some() {
        return Err(ContainerError::Rejected(
            "fuel is a WebAssembly limit; containers are bounded by the deadline, memory, CPU and processes".into(),
        ));
    }
    let admitted = Instant::now();
    let slot = pool.take().await?;
    let result = run(containers, &slot, &request, admitted).await;
    pool.discard(slot);
    result
}

async fn run(
    containers: &Containers,
    slot: &Slot,
    request: &ExecRequest,
    admitted: Instant,
) -> Result<ExecResult, ContainerError> {
    let recipe = recipe(request.language);
    let inputs = place_inputs(&slot.dir, recipe.file, request)?;
    if request.limits.memory_bytes != slot.memory_bytes {
        containers.set_memory(&slot.id, request.limits.memory_bytes).await?;
    }
    let line = CommandLine {
        command: with_args(recipe.command, &request.args),
        env: request.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd: None,
        deadline: Some(request.limits.deadline),
        tty: false,
        pid_file: PID_FILE.into(),
    };
    let started = exec::start(&containers.docker, &slot.id, &line).await?;
    let exec_id = started.exec_id.clone();
    let (stdout, stderr, stopped) = collect(containers, slot, request, started).await;
    let code = match stopped {
        Some(_) => None,
        None => exec::exit_code(&containers.docker, &exec_id).await.ok().flatten(),
    };
    let elapsed = admitted.elapsed();
    let (outcome, error) = classify(stopped, code, elapsed, request.limits.deadline);
    let (files, files_truncated) = collect_outputs(&slot.dir, recipe.file, &inputs)?;
    Ok(ExecResult {
        stdout,
        stderr,
        exit_code: code.map_or(EXIT_KILLED as i32, |c| i32::try_from(c).unwrap_or(i32::MAX)),
        outcome,
        error,
        duration: elapsed,
        fuel_used: None,
        peak_memory_bytes: peak_memory(&slot.id).unwrap_or(0),
        files,
        files_truncated,
        backend: "container".into(),
    })
}

/// Why SoulBox stopped a run itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    Deadline,
    Output,
    Lost,
}

/// Reads the run's output to its end, keeping up to the caps; stops the container past a cap
/// or past the deadline's grace.
async fn collect(
    containers: &Containers,
    slot: &Slot,
    request: &ExecRequest,
    started: exec::Started,
) -> (String, String, Option<Stopped>) {
    let exec::Started { mut output, mut input, .. } = started;
    let stdin = request.stdin.clone();
    let feeder = tokio::spawn(async move {
        let _ = input.write_all(&stdin).await;
        let _ = input.shutdown().await;
    });
    let limits = &request.limits;
    let caps = [limits.stdout_bytes as usize, limits.stderr_bytes as usize];
    let (mut kept, mut decoder) = ([String::new(), String::new()], Decoder::default());
    let deadline = tokio::time::sleep(limits.deadline + DEADLINE_GRACE);
    tokio::pin!(deadline);
    let stopped = loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(chunk)) => {
                    let Some((channel, text, _)) = decoder.decode(chunk) else { continue };
                    let index = if channel == Channel::Stdout { 0 } else { 1 };
                    if keep(&mut kept[index], &text, caps[index]) {
                        break Some(Stopped::Output);
                    }
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "lost a container's output");
                    break Some(Stopped::Lost);
                }
                None => break None,
            },
            () = &mut deadline => break Some(Stopped::Deadline),
        }
    };
    feeder.abort();
    if stopped.is_some() {
        let _ = containers.kill(&slot.id).await;
    } else {
        for (channel, text) in decoder.finish() {
            let index = if channel == Channel::Stdout { 0 } else { 1 };
            keep(&mut kept[index], &text, caps[index]);
        }
    }
    let [stdout, stderr] = kept;
    (stdout, stderr, stopped)
}

/// Appends `text` up to `cap` bytes; true when it did not all fit.
fn keep(kept: &mut String, text: &str, cap: usize) -> bool {
    let room = cap.saturating_sub(kept.len());
    if text.len() <= room {
        kept.push_str(text);
        return false;
    }
    let mut cut = room;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    kept.push_str(&text[..cut]);
    true
}

/// The outcome of a run, from how it stopped and its exit status.
fn classify(
    stopped: Option<Stopped>,
    code: Option<i64>,
    elapsed: Duration,
    deadline: Duration,
) -> (Outcome, Option<String>) {
    match (stopped, code) {
        (Some(Stopped::Deadline), _) => {
            (Outcome::DeadlineExceeded, Some(format!("stopped at its deadline ({} ms)", deadline.as_millis())))
        }
        (Some(Stopped::Output), _) => (Outcome::OutputLimitExceeded, Some("wrote more output than its cap".into())),
        (Some(Stopped::Lost), _) => (Outcome::Crashed, Some("the container stopped answering".into())),
        (None, Some(EXIT_KILLED)) if elapsed + Duration::from_millis(50) >= deadline => {
            (Outcome::DeadlineExceeded, Some(format!("stopped at its deadline ({} ms)", deadline.as_millis())))
        }
        (None, Some(EXIT_KILLED)) => {
            (Outcome::MemoryExceeded, Some("killed (SIGKILL): the container's memory cap was reached".into()))
        }
        (None, Some(_)) => (Outcome::Completed, None),
        (None, None) => (Outcome::Crashed, Some("the exit status is unknown".into())),
    }
}

/// Writes the code and input files; returns the inputs' sizes and times (to tell which files
/// the program changed).
fn place_inputs(dir: &Path, code_file: &str, request: &ExecRequest) -> Result<HashMap<PathBuf, Stamp>, ContainerError> {
    let write = |path: &Path, bytes: &[u8]| -> Result<(), ContainerError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ContainerError::io("writing an input file", e))?;
        }
        std::fs::write(path, bytes).map_err(|e| ContainerError::io("writing an input file", e))
    };
    let mut inputs = HashMap::new();
    for file in &request.files {
        if file.path == code_file {
            return Err(ContainerError::Rejected(format!(
                "input file `{code_file}` would be overwritten by the program's code; rename it"
            )));
        }
        let path = dir.join(&file.path);
        write(&path, &file.contents)?;
        inputs.insert(PathBuf::from(&file.path), stamp(&path)?);
    }
    write(&dir.join(code_file), request.code.as_bytes())?;
    crate::confinement::share_with_containers(dir).map_err(|e| ContainerError::io("sharing the workspace", e))?;
    Ok(inputs)
}

/// A file's size and modification time.
type Stamp = (u64, Option<SystemTime>);

fn stamp(path: &Path) -> Result<Stamp, ContainerError> {
    let metadata = std::fs::metadata(path).map_err(|e| ContainerError::io("reading an input file", e))?;
    Ok((metadata.len(), metadata.modified().ok()))
}

/// The files the program created or changed (not its code), in path order, within the caps.
fn collect_outputs(
    dir: &Path,
    code_file: &str,
    inputs: &HashMap<PathBuf, Stamp>,
) -> Result<(Vec<OutputFile>, bool), ContainerError> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let entries =
            std::fs::read_dir(dir.join(&relative)).map_err(|e| ContainerError::io("reading the workspace", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ContainerError::io("reading the workspace", e))?;
            let path = relative.join(entry.file_name());
            let kind = entry.file_type().map_err(|e| ContainerError::io("reading the workspace", e))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && path != Path::new(code_file) {
                let now = stamp(&dir.join(&path))?;
                if inputs.get(&path) != Some(&now) {
                    found.push((path, now.0));
                }
            }
        }
    }
    found.sort();
    let (mut files, mut total, mut truncated) = (Vec::new(), 0u64, false);
    for (path, size) in found {
        if files.len() >= MAX_OUTPUT_FILES || total + size > MAX_OUTPUT_FILE_BYTES {
            truncated = true;
            continue;
        }
        let contents = std::fs::read(dir.join(&path)).map_err(|e| ContainerError::io("reading an output file", e))?;
        total += contents.len() as u64;
        let path = path.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
        files.push(OutputFile { path, contents });
    }
    Ok((files, truncated))
}

/// The most memory a container's processes used, from its cgroup (cgroup v1 or v2, when the
/// engine is local); `None` when it cannot be read.
pub fn peak_memory(id: &str) -> Option<u64> {
    let candidates = [
        format!("/sys/fs/cgroup/memory/docker/{id}/memory.max_usage_in_bytes"),
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.peak"),
        format!("/sys/fs/cgroup/docker/{id}/memory.peak"),
    ];
    candidates.iter().find_map(|path| std::fs::read_to_string(path).ok()?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_how_the_run_stopped() {
        let second = Duration::from_secs(1);
        assert_eq!(classify(None, Some(0), second / 2, second).0, Outcome::Completed);
        assert_eq!(classify(None, Some(1), second / 2, second).0, Outcome::Completed);
        assert_eq!(classify(Some(Stopped::Deadline), None, second, second).0, Outcome::DeadlineExceeded);
        assert_eq!(classify(None, Some(EXIT_KILLED), second, second).0, Outcome::DeadlineExceeded);
        assert_eq!(classify(None, Some(EXIT_KILLED), second / 4, second).0, Outcome::MemoryExceeded);
        assert_eq!(classify(Some(Stopped::Output), None, second / 4, second).0, Outcome::OutputLimitExceeded);
    }

    #[test]
    fn keeps_output_up_to_its_cap_on_a_character_boundary() {
        let mut kept = String::new();
        assert!(!keep(&mut kept, "ab", 4));
        assert!(keep(&mut kept, "c€", 4));
        assert_eq!(kept, "abc");
    }

    #[test]
    fn returns_created_and_changed_files_but_not_the_code_or_unchanged_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let request = ExecRequest::new(soulbox_engine::Language::Python, "print(1)")
            .with_file("data/in.csv", "a\n")
            .with_file("keep.txt", "same");
        let inputs = place_inputs(dir.path(), "main.py", &request).unwrap();
        std::fs::write(dir.path().join("out.txt"), "new").unwrap();
        std::thread::sleep(Duration::from_millis(10));
        std::fs::write(dir.path().join("data/in.csv"), "a\nb\n").unwrap();
        let (files, truncated) = collect_outputs(dir.path(), "main.py", &inputs).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["data/in.csv", "out.txt"]);
        assert!(!truncated);
        let clash = ExecRequest::new(soulbox_engine::Language::Python, "1").with_file("main.py", "x");
        assert!(matches!(place_inputs(dir.path(), "main.py", &clash), Err(ContainerError::Rejected(_))));
    }
}
