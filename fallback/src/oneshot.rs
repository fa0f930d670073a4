//! One-shot executions in containers: an [`ExecRequest`] in a fresh (pooled) container, used
//! once and destroyed.
//!
//! The code and input files are written into the container's workspace on the host; the
//! language's recipe goes to the container's waiting agent
//! ([`crate::confinement::ONE_SHOT_AGENT`]) over the attachment the pool made in advance,
//! followed by the request's stdin; the agent runs the program and reports its exit status
//! with an end marker. At the deadline, or past an output cap, SoulBox kills the container
//! (used once anyway). Every file the program created or changed is returned, like the
//! WebAssembly backend does. Limits: deadline, memory (the container's cap, resized for the request), output.
//! Fuel and the open-file cap are WebAssembly limits: fuel is refused, open files are the
//! image's default.

use crate::cgroup::{self, KillVerdict};
use crate::containers::{Containers, Session};
use crate::error::ContainerError;
use crate::exec::EXIT_KILLED;
use crate::languages::{recipe, with_args};
use crate::pool::{Slot, WarmPool};
use bollard::container::LogOutput;
use futures_util::StreamExt;
use soulbox_engine::process::MACHINE_WORKSPACE;
use soulbox_engine::result::{MAX_OUTPUT_FILE_BYTES, MAX_OUTPUT_FILES};
use soulbox_engine::{ExecRequest, ExecResult, Outcome, OutputFile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncWriteExt;

/// Time past the deadline before SoulBox stops waiting for the agent (which kills the program
/// at the deadline itself).
pub const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// The least memory a container may be given (the Docker engine refuses less than 6 MiB, and
/// no shell starts in less).
pub const MIN_MEMORY_BYTES: u64 = 16 << 20;

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
    if request.limits.memory_bytes < MIN_MEMORY_BYTES {
        return Err(ContainerError::Rejected(format!(
            "a container needs at least {} MiB of memory (`memory_bytes`)",
            MIN_MEMORY_BYTES >> 20
        )));
    }
    let admitted = Instant::now();
    // Dropping the slot destroys the container, however this ends (a caller that gives up
    // included).
    let slot = pool.take().await?;
    run(containers, &slot, &request, admitted).await
}

async fn run(
    containers: &Containers,
    slot: &Slot,
    request: &ExecRequest,
    admitted: Instant,
) -> Result<ExecResult, ContainerError> {
    let recipe = recipe(request.language)
        .ok_or_else(|| ContainerError::Rejected(format!("containers do not run {}", request.language)))?;
    let inputs = place_inputs(&slot.dir, recipe.file, request)?;
    if request.limits.memory_bytes != slot.memory_bytes {
        containers.set_memory(&slot.id, request.limits.memory_bytes).await?;
    }
    let session = slot.session.lock().unwrap_or_else(|e| e.into_inner()).take();
    let session = session.ok_or_else(|| ContainerError::Internal("the container was used already".into()))?;
    let oom_before = cgroup::oom_kills(&slot.id);
    let (stdout, stderr, code, stopped) = collect(request, recipe.command, session).await;
    let elapsed = admitted.elapsed();
    let verdict = match KillVerdict::from_counts(oom_before, cgroup::oom_kills(&slot.id)) {
        // The cgroup is gone when the OOM killer took the container's first process (the
        // container stopped): the Docker engine's record of it decides then.
        KillVerdict::Unknown if code == Some(EXIT_KILLED) || stopped == Some(Stopped::Lost) => {
            match containers.oom_killed(&slot.id).await {
                Some(true) => KillVerdict::OutOfMemory,
                Some(false) => KillVerdict::NotMemory,
                None => KillVerdict::Unknown,
            }
        }
        verdict => verdict,
    };
    let (outcome, error) = classify(stopped, code, verdict, elapsed, request.limits.deadline);
    // Files are collected only from a run the agent reported, after it killed every other
    // process of the container: a run SoulBox stopped may have processes still writing, so it
    // returns none.
    let (files, files_truncated) = match stopped {
        None => {
            let (dir, code_file) = (slot.dir.clone(), recipe.file);
            tokio::task::spawn_blocking(move || collect_outputs(&dir, code_file, &inputs))
                .await
                .map_err(|e| ContainerError::Internal(format!("collecting output files: {e}")))??
        }
        Some(_) => (Vec::new(), false),
    };
    Ok(ExecResult {
        stdout,
        stderr,
        exit_code: code.map_or(EXIT_KILLED as i32, |c| i32::try_from(c).unwrap_or(i32::MAX)),
        outcome,
        error,
        duration: elapsed,
        fuel_used: None,
        peak_memory_bytes: cgroup::peak_memory(&slot.id).unwrap_or(0),
        files,
        files_truncated,
        backend: "container".into(),
        network: None,
    })
}

/// Why SoulBox stopped a run itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    Deadline,
    Output,
    Lost,
}

/// What starts a run in a pooled container's agent: the end marker's nonce (random, so output
/// cannot forge it) and the script's length, then the script: go to the workspace, set the
/// request's environment and run `command` with its arguments.
fn agent_input(request: &ExecRequest, command: &str, nonce: &str) -> Vec<u8> {
    let mut script = format!("cd {MACHINE_WORKSPACE} || exit 125\n");
    let mut other_names = Vec::new();
    for (name, value) in &request.env {
        let identifier = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match identifier {
            true => script.push_str(&format!("export {name}={}\n", quote(value))),
            false => other_names.push(quote(&format!("{name}={value}"))),
        }
    }
    let command = with_args(command, &request.args);
    match other_names.is_empty() {
        true => script.push_str(&command),
        false => script.push_str(&format!("exec env {} bash -c {}", other_names.join(" "), quote(&command))),
    }
    let seconds = request.limits.deadline.as_secs_f64().max(0.001);
    let mut input = format!("{nonce} {} {seconds:.3}\n", script.len()).into_bytes();
    input.extend_from_slice(script.as_bytes());
    input
}

/// `text` single-quoted for the shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r#"'\''"#))
}

/// Starts the run and reads its output until the agent's end marker has come on both streams,
/// keeping up to the caps; gives up past a cap, past the deadline's grace, or when the output
/// breaks off (the container is removed with its slot). Returns the output, the exit status (from the marker) and why
/// SoulBox stopped the run, if it did.
async fn collect(
    request: &ExecRequest,
    command: &str,
    session: Session,
) -> (String, String, Option<i64>, Option<Stopped>) {
    let Session { mut output, mut input } = session;
    let nonce = format!("soulbox-end-{:016x}", getrandom::u64().unwrap_or_else(|_| u64::from(std::process::id())));
    let mut feed = agent_input(request, command, &nonce);
    feed.extend_from_slice(&request.stdin);
    let feeder = tokio::spawn(async move {
        let _ = input.write_all(&feed).await;
        let _ = input.shutdown().await;
    });
    let limits = &request.limits;
    let mut streams = [Stream::new(limits.stdout_bytes, &nonce), Stream::new(limits.stderr_bytes, &nonce)];
    // The agent kills the program at its deadline; this is the backstop.
    let deadline = tokio::time::sleep(limits.deadline + DEADLINE_GRACE);
    tokio::pin!(deadline);
    let stopped = loop {
        if streams.iter().all(|s| s.status.is_some()) {
            break None;
        }
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                    if streams[0].push(&message) {
                        break Some(Stopped::Output);
                    }
                }
                Some(Ok(LogOutput::StdErr { message })) => {
                    if streams[1].push(&message) {
                        break Some(Stopped::Output);
                    }
                }
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(error)) => {
                    tracing::debug!(%error, "lost a container's output");
                    break Some(Stopped::Lost);
                }
                None => break Some(Stopped::Lost),
            },
            () = &mut deadline => break Some(Stopped::Deadline),
        }
    };
    feeder.abort();
    // A run SoulBox stopped is not waited for: dropping the slot removes the container (force),
    // in the background.
    let status = streams[0].status;
    let [stdout, stderr] = streams.map(Stream::text);
    (stdout, stderr, status, stopped)
}

/// One output stream of a run: its bytes up to the cap, then the agent's end marker.
struct Stream {
    bytes: Vec<u8>,
    cap: usize,
    marker: String,
    status: Option<i64>,
}

impl Stream {
    fn new(cap: u64, nonce: &str) -> Self {
        Stream {
            bytes: Vec::new(),
            cap: usize::try_from(cap).unwrap_or(usize::MAX),
            marker: format!("\n{nonce} "),
            status: None,
        }
    }

    /// Takes a chunk; true when the program wrote past the cap.
    fn push(&mut self, chunk: &[u8]) -> bool {
        self.bytes.extend_from_slice(chunk);
        // The marker is the stream's last line: look for it in the tail only.
        let tail_start = self.bytes.len().saturating_sub(self.marker.len() + 24);
        if self.bytes.ends_with(b"\n")
            && let Some(at) = find_last(&self.bytes[tail_start..], self.marker.as_bytes()).map(|at| at + tail_start)
        {
            let tail = &self.bytes[at + self.marker.len()..self.bytes.len() - 1];
            if let Some(status) = std::str::from_utf8(tail).ok().and_then(|t| t.parse().ok()) {
                self.status = Some(status);
                self.bytes.truncate(at);
                return self.bytes.len() > self.cap;
            }
        }
        // Room for the marker past the cap: only what is certainly output counts.
        self.bytes.len() > self.cap.saturating_add(self.marker.len() + 24)
    }

    /// The output, cut to the cap on a character boundary.
    fn text(self) -> String {
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if text.len() > self.cap {
            let mut cut = self.cap;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        text
    }
}

/// Where `needle` last starts in `haystack`.
fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|window| window == needle)
}

/// The outcome of a run, from how it stopped, its exit status and, for a SIGKILL, the cgroup's
/// verdict on memory.
fn classify(
    stopped: Option<Stopped>,
    code: Option<i64>,
    verdict: KillVerdict,
    elapsed: Duration,
    deadline: Duration,
) -> (Outcome, Option<String>) {
    match (stopped, code) {
        (Some(Stopped::Deadline), _) => {
            (Outcome::DeadlineExceeded, Some(format!("stopped at its deadline ({} ms)", deadline.as_millis())))
        }
        (Some(Stopped::Output), _) => (Outcome::OutputLimitExceeded, Some("wrote more output than its cap".into())),
        // The OOM killer took the container's agent too: the memory cap, not a crash.
        (Some(Stopped::Lost), _) if verdict == KillVerdict::OutOfMemory => {
            (Outcome::MemoryExceeded, Some("killed by the OOM killer: the memory cap was reached".into()))
        }
        (Some(Stopped::Lost), _) => (Outcome::Crashed, Some("the container stopped answering".into())),
        (None, Some(EXIT_KILLED)) if elapsed + Duration::from_millis(50) >= deadline => {
            (Outcome::DeadlineExceeded, Some(format!("stopped at its deadline ({} ms)", deadline.as_millis())))
        }
        (None, Some(EXIT_KILLED)) => match verdict {
            KillVerdict::OutOfMemory => {
                (Outcome::MemoryExceeded, Some("killed (SIGKILL) by the OOM killer: the memory cap was reached".into()))
            }
            // Not the memory cap: the program's own doing (`kill -9 $$`, `exit 137`).
            KillVerdict::NotMemory => (Outcome::Completed, None),
            KillVerdict::Unknown => (
                Outcome::Crashed,
                Some(
                    "killed (SIGKILL); whether by the memory cap is unknown (the container's cgroup is not readable)"
                        .into(),
                ),
            ),
        },
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

/// Entries the output walk looks at, at most.
pub const MAX_WALK_ENTRIES: usize = 100_000;

/// The files the program created or changed (not its code), in path order, within the caps.
/// Read through cap-std and [`soulbox_engine::guest_tree`]: a link the program left cannot lead
/// outside the workspace, a FIFO is refused without blocking, and no file yields more than the
/// size checked before reading (the caps hold even if something still wrote). Blocking.
fn collect_outputs(
    dir: &Path,
    code_file: &str,
    inputs: &HashMap<PathBuf, Stamp>,
) -> Result<(Vec<OutputFile>, bool), ContainerError> {
    let io = |e| ContainerError::io("reading the workspace", e);
    let root = cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority()).map_err(io)?;
    let (mut found, mut pending, mut seen) = (Vec::new(), vec![PathBuf::new()], 0usize);
    while let Some(relative) = pending.pop() {
        let entries = match relative.as_os_str().is_empty() {
            true => root.entries(),
            false => root.read_dir(&relative),
        };
        let Ok(entries) = entries else { continue };
        for entry in entries {
            seen += 1;
            if seen > MAX_WALK_ENTRIES {
                break;
            }
            let entry = entry.map_err(io)?;
            let path = relative.join(entry.file_name());
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && path != Path::new(code_file) {
                let Ok(metadata) = root.symlink_metadata(&path) else { continue };
                let now = (metadata.len(), metadata.modified().ok().map(cap_std::time::SystemTime::into_std));
                if inputs.get(&path) != Some(&now) {
                    found.push((path, now.0));
                }
            }
        }
    }
    found.sort();
    let (mut files, mut total, mut truncated) = (Vec::new(), 0u64, seen > MAX_WALK_ENTRIES);
    for (path, size) in found {
        if files.len() >= MAX_OUTPUT_FILES || total + size > MAX_OUTPUT_FILE_BYTES {
            truncated = true;
            continue;
        }
        // Never more than the size checked, and never a FIFO or socket swapped in since.
        let Ok(contents) = soulbox_engine::guest_tree::read_regular(&root, &path, size) else { continue };
        total += contents.len() as u64;
        let path = path.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
        files.push(OutputFile { path, contents });
    }
    Ok((files, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_how_the_run_stopped() {
        let second = Duration::from_secs(1);
        let (none, oom, other) = (KillVerdict::NotMemory, KillVerdict::OutOfMemory, KillVerdict::NotMemory);
        assert_eq!(classify(None, Some(0), none, second / 2, second).0, Outcome::Completed);
        assert_eq!(classify(None, Some(1), none, second / 2, second).0, Outcome::Completed);
        assert_eq!(classify(Some(Stopped::Deadline), None, none, second, second).0, Outcome::DeadlineExceeded);
        assert_eq!(classify(None, Some(EXIT_KILLED), none, second, second).0, Outcome::DeadlineExceeded);
        assert_eq!(classify(None, Some(EXIT_KILLED), oom, second / 4, second).0, Outcome::MemoryExceeded);
        assert_eq!(classify(None, Some(EXIT_KILLED), other, second / 4, second).0, Outcome::Completed);
        assert_eq!(classify(None, Some(EXIT_KILLED), KillVerdict::Unknown, second / 4, second).0, Outcome::Crashed);
        assert_eq!(classify(Some(Stopped::Output), None, none, second / 4, second).0, Outcome::OutputLimitExceeded);
        assert_eq!(
            classify(Some(Stopped::Lost), Some(EXIT_KILLED), oom, second / 4, second).0,
            Outcome::MemoryExceeded
        );
        assert_eq!(classify(Some(Stopped::Lost), None, none, second / 4, second).0, Outcome::Crashed);
    }

    #[test]
    fn the_end_marker_gives_the_status_and_is_not_output() {
        let mut stream = Stream::new(4, "n0nce");
        assert!(!stream.push(b"ab"));
        assert!(!stream.push(b"c\nn0n"));
        assert!(!stream.push(b"ce 3\n"));
        assert_eq!(stream.status, Some(3));
        assert_eq!(stream.text(), "abc");
        let mut forged = Stream::new(100, "n0nce");
        forged.push(b"\nother 0\n");
        assert_eq!(forged.status, None, "only the run's own nonce ends it");
        let mut chatty = Stream::new(4, "n0nce");
        assert!(chatty.push(&[b'x'; 64]), "far past the cap");
        let mut over = Stream::new(2, "n0nce");
        assert!(over.push(b"abc\nn0nce 0\n"), "past the cap, even with the marker");
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
