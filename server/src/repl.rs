//! `soulbox repl`: a sandbox with one context that keeps its state across inputs.
//!
//! Each input is a cell: a line, or several when brackets are open, a line ends with `\` or (in
//! Python) a block was opened with `:` (then a blank line ends it). Output streams as the cell
//! runs; a final expression's value is printed; figures are summarised (and saved with
//! `--figures DIR`). `.restart` restarts the context, `.exit` or end of input quits. Prompts
//! are shown only when stdin is a terminal, so the REPL can also be driven through a pipe.

use crate::cli::Cli;
use anyhow::Context;
use base64::Engine as _;
use clap::Args;
use soulbox_engine::kernel::{ExecutionEvent, RichResult};
use soulbox_engine::{
    Engine, Language, Limits, RunOptions, Sandbox, SandboxSpec, Sandboxes, SandboxesConfig, Template,
};
use soulbox_runtimes_wasm::WasmBackend;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ReplArgs {
    /// The context's language (python/py, javascript/js).
    #[arg(long, short, default_value = "python")]
    pub language: Language,
    /// Start from this template (python, data-science, javascript); default: the language's.
    #[arg(long)]
    pub template: Option<Template>,
    /// Wall-clock deadline per input, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Environment variable for the context, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Save figures as PNG files in this directory.
    #[arg(long, value_name = "DIR")]
    pub figures: Option<PathBuf>,
}

pub async fn repl(cli: &Cli, config: &crate::config::Config, args: &ReplArgs) -> anyhow::Result<ExitCode> {
    let template = match (args.template, args.language) {
        (Some(template), _) => template,
        (None, Language::Python) => Template::Python,
        (None, Language::JavaScript) => Template::JavaScript,
        (None, other) => anyhow::bail!("the REPL keeps state in python or javascript contexts, not {other}"),
    };
    if template.language() != args.language {
        anyhow::bail!("template `{template}` starts a {} context, not {}", template.language(), args.language);
    }
    let mut spec = SandboxSpec { template, ..SandboxSpec::default() };
    spec.idle_timeout = Some(soulbox_engine::sandbox::MAX_LIFETIME);
    spec.lifetime = Some(soulbox_engine::sandbox::MAX_LIFETIME);
    for pair in &args.env {
        let (key, value) = pair.split_once('=').with_context(|| format!("--env `{pair}`: expected KEY=VALUE"))?;
        spec.env.insert(key.to_owned(), value.to_owned());
    }
    let config = cli.wasm_config(config, std::io::stderr().is_terminal());
    let backend = tokio::task::spawn_blocking(move || WasmBackend::open(config)).await??;
    let engine = Engine::builder().backend(backend).build();
    let sandboxes = Sandboxes::new(engine, SandboxesConfig::default())?;
    let sandbox = sandboxes.create(spec).await?;
    let mut limits = Limits::default();
    if let Some(ms) = args.timeout_ms {
        limits.deadline = Duration::from_millis(ms);
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "SoulBox {} REPL ({template} template). `.restart` restarts, `.exit` or Ctrl-D quits.",
            args.language
        );
    }
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut printer = Printer { figures: args.figures.clone(), saved: 0 };
    let mut cell = String::new();
    loop {
        if interactive {
            eprint!("{}", if cell.is_empty() { ">>> " } else { "... " });
            std::io::stderr().flush()?;
        }
        let Some(line) = lines.recv().await else { break };
        if cell.is_empty() {
            match line.trim() {
                ".exit" | ".quit" => break,
                ".restart" => {
                    restart(&sandbox).await?;
                    continue;
                }
                "" => continue,
                _ => {}
            }
        }
        cell.push_str(&line);
        cell.push('\n');
        if !is_complete(&cell, args.language) {
            continue;
        }
        let code = std::mem::take(&mut cell);
        let options = RunOptions { language: Some(args.language), limits: limits.clone(), ..RunOptions::default() };
        run_cell(&sandbox, &code, options, &mut printer).await?;
    }
    sandboxes.kill(sandbox.id())?.await;
    Ok(ExitCode::SUCCESS)
}

async fn restart(sandbox: &Sandbox) -> anyhow::Result<()> {
    for context in sandbox.contexts() {
        sandbox.restart_context(&context.id).await?;
    }
    eprintln!("(context restarted)");
    Ok(())
}

async fn run_cell(sandbox: &Sandbox, code: &str, options: RunOptions, printer: &mut Printer) -> anyhow::Result<()> {
    let mut stream = sandbox.run_code_stream(code, options).await?;
    while let Some(event) = stream.next_event().await {
        match event {
            Ok(event) => printer.print(event)?,
            Err(error) => eprintln!("soulbox: {error}"),
        }
    }
    Ok(())
}

struct Printer {
    figures: Option<PathBuf>,
    saved: usize,
}

impl Printer {
    fn print(&mut self, event: ExecutionEvent) -> anyhow::Result<()> {
        match event {
            ExecutionEvent::Stdout { text } => {
                let mut out = std::io::stdout();
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
            ExecutionEvent::Stderr { text } => eprint!("{text}"),
            ExecutionEvent::Result(result) => self.result(&result)?,
            ExecutionEvent::Error(error) => eprint!("{}", error.traceback.trim_end_matches('\n').to_owned() + "\n"),
            ExecutionEvent::End(end) => {
                if let Some(message) = end.message {
                    eprintln!("soulbox: {message}");
                }
                if end.context_restarted {
                    eprintln!("(the context was restarted; its state is gone)");
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn result(&mut self, result: &RichResult) -> anyhow::Result<()> {
        if let Some(png) = &result.png {
            let bytes = base64::engine::general_purpose::STANDARD.decode(png)?;
            let chart = result.chart.as_ref().and_then(|c| c["type"].as_str()).unwrap_or("figure");
            match &self.figures {
                Some(dir) => {
                    std::fs::create_dir_all(dir)?;
                    self.saved += 1;
                    let path = dir.join(format!("figure-{}.png", self.saved));
                    std::fs::write(&path, &bytes)?;
                    println!("[{chart}: {} KiB PNG saved to {}]", bytes.len().div_ceil(1024), path.display());
                }
                None => println!("[{chart}: {} KiB PNG; save figures with --figures DIR]", bytes.len().div_ceil(1024)),
            }
        } else if let Some(text) = &result.text {
            println!("{text}");
        }
        Ok(())
    }
}

/// Whether `cell` is a whole input: brackets closed, no trailing `\`, and (Python) no block
/// opened with `:` that a blank line has not closed yet.
fn is_complete(cell: &str, language: Language) -> bool {
    let lines: Vec<&str> = cell.lines().collect();
    let last = lines.last().copied().unwrap_or_default();
    if last.trim_end().ends_with('\\') || open_brackets(cell, language) > 0 {
        return false;
    }
    match language {
        Language::Python => {
            let opens_block = lines.iter().any(|l| l.trim_end().ends_with(':'));
            !opens_block || last.trim().is_empty()
        }
        _ => true,
    }
}

/// Brackets opened and not closed, outside string literals and comments (roughly: enough to
/// know whether to keep reading).
fn open_brackets(code: &str, language: Language) -> i64 {
    let mut depth = 0i64;
    let mut quote: Option<char> = None;
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                if c == '\\' {
                    chars.next();
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' | '`' => quote = Some(c),
                '#' if language == Language::Python => {
                    while chars.peek().is_some_and(|c| *c != '\n') {
                        chars.next();
                    }
                }
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ => {}
            },
        }
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_when_an_input_is_whole() {
        assert!(is_complete("x = 1\n", Language::Python));
        assert!(!is_complete("f(1,\n", Language::Python));
        assert!(!is_complete("def f():\n    return 1\n", Language::Python));
        assert!(is_complete("def f():\n    return 1\n\n", Language::Python));
        assert!(is_complete("s = '(('\n", Language::Python));
        assert!(!is_complete("function f() {\n", Language::JavaScript));
        assert!(is_complete("function f() {\n return 1 }\n", Language::JavaScript));
    }
}
