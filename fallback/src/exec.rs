//! Running a process in a container (`docker exec`), streaming its output as it comes.
//!
//! Every process starts under a small shell wrapper ([`wrapped`]): it records its pid in
//! `/tmp/.soulbox/<name>.pid` and then becomes the command, under `timeout -s KILL` when there
//! is a deadline. An exec'd process leads its own session and process group, so killing the
//! group (`kill -KILL -- -<pid>`, [`kill_group`]) takes everything it started, and the deadline
//! is enforced inside the container even if SoulBox is slow. When the container cannot run
//! the kill (a fork bomb holds every pid), callers kill the container.

use crate::docker::{DockerEngine, Retry};
use crate::error::ContainerError;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::{Stream, StreamExt};
use soulbox_engine::text::Utf8Stream;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::AsyncWrite;

/// The wrapper: `$0` the pid file, `$1` the deadline in seconds (`0`: none), `$2` the command.
/// Without a deadline it execs the shell directly (no `timeout` in between), and it makes the
/// pid directory only the first time: a process costs two `exec`s, not five.
const WRAPPER: &str = r#"{ [ -d /tmp/.soulbox ] || mkdir -p /tmp/.soulbox; } && echo $$ > "$0" || exit 125
if [ "$1" = 0 ]; then
  if command -v bash >/dev/null; then exec bash -c "$2"; fi
  exec sh -c "$2"
fi
if command -v bash >/dev/null; then exec timeout -s KILL "$1" bash -c "$2"; fi
exec timeout -s KILL "$1" sh -c "$2""#;
/// The PTY wrapper: `$0` the pid file, `$1` the command (default: an interactive shell).
const PTY_WRAPPER: &str = r#"mkdir -p /tmp/.soulbox && echo $$ > "$0" || exit 125
if [ -z "$1" ]; then if command -v bash >/dev/null; then exec bash -i; fi; exec sh -i; fi
if command -v bash >/dev/null; then exec bash -c "$1"; fi
exec sh -c "$1""#;

/// Exit status of a process killed by SIGKILL (the deadline, a kill, the OOM killer).
pub const EXIT_KILLED: i64 = 137;
/// Exit status of a process that could not be started (its working directory is missing, say),
/// as a shell reports a command it cannot run.
pub const EXIT_NOT_STARTED: i64 = 126;

/// What to run.
#[derive(Debug, Clone)]
pub struct CommandLine {
    /// The shell command (empty with a PTY: an interactive shell).
    pub command: String,
    /// Extra environment (`KEY=value`).
    pub env: Vec<String>,
    /// Working directory (default: the container's, the workspace).
    pub cwd: Option<String>,
    /// Killed after this long.
    pub deadline: Option<Duration>,
    /// On a terminal.
    pub tty: bool,
    /// Where the wrapper records the pid (inside the container).
    pub pid_file: String,
}

/// The argv that runs `line` under the wrapper.
pub fn wrapped(line: &CommandLine) -> Vec<String> {
    let sh = |script: &str| vec!["sh".to_owned(), "-c".to_owned(), script.to_owned(), line.pid_file.clone()];
    if line.tty {
        let mut argv = sh(PTY_WRAPPER);
        argv.push(line.command.clone());
        return argv;
    }
    let seconds = line.deadline.map_or_else(|| "0".to_owned(), |d| format!("{:.3}", d.as_secs_f64().max(0.001)));
    let mut argv = sh(WRAPPER);
    argv.push(seconds);
    argv.push(line.command.clone());
    argv
}

/// Output of a started process: byte chunks from stdout, stderr or its terminal.
pub type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;
/// A started process's standard input.
pub type Input = Pin<Box<dyn AsyncWrite + Send>>;

/// A started process.
pub struct Started {
    /// The exec's id (for its exit status and terminal size).
    pub exec_id: String,
    /// Its output, until it exits.
    pub output: Output,
    /// Its standard input.
    pub input: Input,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started").field("exec_id", &self.exec_id).finish_non_exhaustive()
    }
}

/// Starts `line` in `container` under the wrapper, attached.
pub async fn start(docker: &DockerEngine, container: &str, line: &CommandLine) -> Result<Started, ContainerError> {
    start_argv(docker, container, wrapped(line), line.env.clone(), line.cwd.clone(), line.tty).await
}

/// Starts `argv` in `container` as is, attached.
pub async fn start_argv(
    docker: &DockerEngine,
    container: &str,
    argv: Vec<String>,
    env: Vec<String>,
    cwd: Option<String>,
    tty: bool,
) -> Result<Started, ContainerError> {
    let options = CreateExecOptions {
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(tty),
        env: Some(env),
        cmd: Some(argv),
        working_dir: cwd,
        ..CreateExecOptions::default()
    };
    let created = docker
        .call("create an exec", Retry::No, |d| {
            let options = options.clone();
            async move { d.create_exec(container, options).await }
        })
        .await?;
    let exec_id = created.id;
    let start = StartExecOptions { detach: false, tty, output_capacity: None };
    let started = docker
        .call("start an exec", Retry::No, |d| {
            let id = exec_id.clone();
            async move { d.start_exec(&id, Some(start)).await }
        })
        .await?;
    match started {
        StartExecResults::Attached { output, input } => Ok(Started { exec_id, output, input }),
        StartExecResults::Detached => Err(ContainerError::Internal("the exec started detached".into())),
    }
}

/// The exit status of a finished exec (`None` while it runs or when unknown).
pub async fn exit_code(docker: &DockerEngine, exec_id: &str) -> Result<Option<i64>, ContainerError> {
    let inspected =
        docker.call("inspect an exec", Retry::Yes, |d| async move { d.inspect_exec(exec_id).await }).await?;
    Ok(if inspected.running == Some(true) { None } else { inspected.exit_code })
}

/// Kills the process group whose leader's pid is in `pid_file` (inside `container`).
pub async fn kill_group(docker: &DockerEngine, container: &str, pid_file: &str) -> Result<(), ContainerError> {
    let argv = ["sh", "-c", r#"kill -KILL -- -"$(cat "$0")""#, pid_file].map(str::to_owned).to_vec();
    let Started { exec_id, mut output, .. } = start_argv(docker, container, argv, vec![], None, false).await?;
    while output.next().await.is_some() {}
    match exit_code(docker, &exec_id).await? {
        Some(0) | None => Ok(()),
        Some(code) => Err(ContainerError::Rejected(format!("the kill exited with status {code}"))),
    }
}

/// Turns output chunks into text per stream, never splitting a character.
#[derive(Debug, Default)]
pub struct Decoder {
    stdout: Utf8Stream,
    stderr: Utf8Stream,
}

/// Which stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Standard output (or the terminal).
    Stdout,
    /// Standard error.
    Stderr,
}

impl Decoder {
    /// The text a chunk completes, and its stream; `None` for chunks that carry no output.
    pub fn decode(&mut self, chunk: LogOutput) -> Option<(Channel, String)> {
        let (channel, bytes) = match chunk {
            LogOutput::StdOut { message } | LogOutput::Console { message } => (Channel::Stdout, message),
            LogOutput::StdErr { message } => (Channel::Stderr, message),
            LogOutput::StdIn { .. } => return None,
        };
        let text = match channel {
            Channel::Stdout => self.stdout.push(&bytes),
            Channel::Stderr => self.stderr.push(&bytes),
        };
        Some((channel, text))
    }

    /// What is held back at the end.
    pub fn finish(&mut self) -> [(Channel, String); 2] {
        [(Channel::Stdout, self.stdout.finish()), (Channel::Stderr, self.stderr.finish())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapper_gets_the_pid_file_deadline_and_command_as_arguments() {
        let line = CommandLine {
            command: "echo 'hi there'".into(),
            env: vec![],
            cwd: None,
            deadline: Some(Duration::from_millis(1500)),
            tty: false,
            pid_file: "/tmp/.soulbox/7.pid".into(),
        };
        let argv = wrapped(&line);
        assert_eq!(&argv[..2], ["sh", "-c"]);
        assert_eq!(&argv[3..], ["/tmp/.soulbox/7.pid", "1.500", "echo 'hi there'"]);
        let no_deadline = wrapped(&CommandLine { deadline: None, ..line.clone() });
        assert_eq!(no_deadline[4], "0");
        let pty = wrapped(&CommandLine { tty: true, command: String::new(), ..line });
        assert_eq!(pty.len(), 5);
    }
}
