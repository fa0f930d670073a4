//! A batch evaluator: runs 1,000 snippets (the kind an LLM benchmark grades) with limits, a
//! bounded number at a time, checks each answer, and prints a summary.
//!
//! ```sh
//! cargo run --release -p soulbox-examples --example batch-evaluator -- 1000
//! ```
//!
//! Most snippets print an answer that is checked; some raise, some never end (stopped at their
//! deadline), some allocate past their memory cap. Each runs in a fresh sandbox, so one
//! snippet's state or failure never reaches another. When the engine's pool is full it says so
//! at once ([`EngineError::is_busy`]); the evaluator then waits for one of its own runs to end
//! rather than retrying blindly.

#![forbid(unsafe_code)]

mod common;

use futures_util::StreamExt;
use soulbox_engine::{Engine, ExecRequest, Language, Limits, Outcome};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Snippets in flight at once: enough to keep every worker busy.
const IN_FLIGHT: usize = 8;

/// One snippet and the stdout that counts as right.
struct Snippet {
    language: Language,
    code: String,
    expected: Option<String>,
}

/// The `i`th snippet of the batch.
fn snippet(i: usize) -> Snippet {
    let python = |code: String, expected: Option<String>| Snippet { language: Language::Python, code, expected };
    match i % 100 {
        0 => python("while True: pass".into(), None),
        1 => python("x = bytearray(1 << 30)".into(), None),
        2 => python(format!("raise ValueError('snippet {i}')"), None),
        n if n % 2 == 0 => {
            python(format!("print(sum(range({i})))"), Some(format!("{}\n", i * i.saturating_sub(1) / 2)))
        }
        _ => Snippet {
            language: Language::JavaScript,
            code: format!("console.log([...Array({i}).keys()].reduce((a, b) => a + b, 0))"),
            expected: Some(format!("{}\n", i * i.saturating_sub(1) / 2)),
        },
    }
}

/// What a batch did.
#[derive(Debug, Default)]
struct Summary {
    outcomes: BTreeMap<String, usize>,
    right: usize,
    wrong: usize,
    errors: usize,
    durations: Vec<Duration>,
    wall: Duration,
}

impl Summary {
    fn percentile(&self, fraction: f64) -> Duration {
        let mut sorted = self.durations.clone();
        sorted.sort();
        sorted.get(((sorted.len() as f64 - 1.0) * fraction).round() as usize).copied().unwrap_or_default()
    }

    fn print(&self) {
        println!("{} snippets in {:.2} s", self.durations.len(), self.wall.as_secs_f64());
        for (outcome, count) in &self.outcomes {
            println!("  {outcome:<24} {count}");
        }
        println!("  answers right / wrong     {} / {}", self.right, self.wrong);
        println!("  refused by the engine     {}", self.errors);
        println!("  p50 {:?}, p99 {:?}", self.percentile(0.5), self.percentile(0.99));
    }
}

/// Runs `count` snippets on `engine`.
async fn evaluate(engine: &Engine, count: usize) -> Summary {
    let limits = Limits { deadline: Duration::from_millis(250), memory_bytes: 128 << 20, ..Limits::default() };
    let started = Instant::now();
    let runs = futures_util::stream::iter(0..count).map(|i| {
        let (engine, limits) = (engine.clone(), limits.clone());
        async move {
            let snippet = snippet(i);
            let request = ExecRequest::new(snippet.language, snippet.code).with_limits(limits);
            (engine.execute(request).await, snippet.expected)
        }
    });
    let mut results = runs.buffer_unordered(IN_FLIGHT);
    let mut summary = Summary::default();
    while let Some((result, expected)) = results.next().await {
        let Ok(result) = result else {
            summary.errors += 1;
            continue;
        };
        *summary.outcomes.entry(result.outcome.name().to_owned()).or_default() += 1;
        summary.durations.push(result.duration);
        if let Some(expected) = expected {
            match result.outcome == Outcome::Completed && result.stdout == expected {
                true => summary.right += 1,
                false => summary.wrong += 1,
            }
        }
    }
    summary.wall = started.elapsed();
    summary
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(1000);
    let engine = common::wasm_engine().await?;
    evaluate(&engine, count).await.print();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_thousand_snippets_each_get_the_right_verdict() {
        let engine = common::wasm_engine().await.expect("runtimes installed");
        let summary = evaluate(&engine, 1000).await;
        summary.print();
        assert_eq!(summary.errors, 0, "the evaluator never overfills the engine");
        assert_eq!((summary.right, summary.wrong), (970, 0));
        let count = |outcome: &str| summary.outcomes.get(outcome).copied().unwrap_or(0);
        assert_eq!(count("deadline_exceeded"), 10, "{:?}", summary.outcomes);
        assert_eq!(count("memory_exceeded"), 10, "{:?}", summary.outcomes);
        assert_eq!(count("completed"), 980, "970 answers and 10 exceptions: {:?}", summary.outcomes);
    }
}
