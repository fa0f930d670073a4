//! An agent loop: a model behind any OpenAI-compatible chat-completions endpoint gets
//! SoulBox's tools, and every tool call it makes runs on a SoulBox server, until it answers.
//!
//! ```sh
//! soulbox serve --dev &                      # SoulBox on 127.0.0.1:7419
//! cargo run --release -p soulbox-examples --example agent-loop -- \
//!     http://127.0.0.1:7419 http://127.0.0.1:11434/v1 llama3.1 "What is the 20th Fibonacci number?"
//! ```
//!
//! The tools are SoulBox's own definitions (`GET /v1/tools?format=openai`) and each call goes
//! to `POST /v1/tools/call` as the model made it, so the loop knows nothing about any tool:
//! whatever SoulBox offers, the model can use. `SOULBOX_API_KEY` and `OPENAI_API_KEY`, when
//! set, are sent as bearer tokens.

#![forbid(unsafe_code)]

use serde_json::{Value, json};

/// Turns a model may take before the loop gives up.
const MAX_TURNS: usize = 8;

/// Where the loop's parties are.
#[derive(Debug, Clone)]
struct Endpoints {
    /// A SoulBox server's base URL.
    soulbox: String,
    /// An OpenAI-compatible API's base URL (`.../v1`).
    model_api: String,
    /// The model's name.
    model: String,
}

/// How a conversation went.
#[derive(Debug)]
struct Transcript {
    answer: String,
    messages: Vec<Value>,
}

fn with_key(request: reqwest::RequestBuilder, variable: &str) -> reqwest::RequestBuilder {
    match std::env::var(variable) {
        Ok(key) if !key.is_empty() => request.bearer_auth(key),
        _ => request,
    }
}

/// Asks `question`, running the model's tool calls on SoulBox until it answers.
async fn converse(endpoints: &Endpoints, question: &str) -> anyhow::Result<Transcript> {
    let http = reqwest::Client::new();
    let tools: Value = with_key(http.get(format!("{}/v1/tools?format=openai", endpoints.soulbox)), "SOULBOX_API_KEY")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut messages = vec![
        json!({"role": "system", "content": "You can run code with the tools. Use them to compute answers."}),
        json!({"role": "user", "content": question}),
    ];
    for _ in 0..MAX_TURNS {
        let body = json!({"model": endpoints.model, "messages": messages, "tools": tools});
        let completion: Value =
            with_key(http.post(format!("{}/chat/completions", endpoints.model_api)), "OPENAI_API_KEY")
                .json(&body)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
        let message = completion["choices"][0]["message"].clone();
        messages.push(message.clone());
        let calls = message["tool_calls"].as_array().cloned().unwrap_or_default();
        if calls.is_empty() {
            let answer = message["content"].as_str().unwrap_or_default().to_owned();
            return Ok(Transcript { answer, messages });
        }
        for call in calls {
            let function = &call["function"];
            println!("tool call: {}({})", function["name"], function["arguments"]);
            let reply: Value = with_key(http.post(format!("{}/v1/tools/call", endpoints.soulbox)), "SOULBOX_API_KEY")
                .json(&json!({"name": function["name"], "arguments": function["arguments"]}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            println!("tool result: {}", reply["content"]);
            messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": reply["content"].to_string()}));
        }
    }
    anyhow::bail!("no answer after {MAX_TURNS} turns")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [soulbox, model_api, model, question] = args.as_slice() else {
        anyhow::bail!("usage: agent-loop SOULBOX_URL OPENAI_COMPATIBLE_URL MODEL QUESTION");
    };
    let endpoints = Endpoints { soulbox: soulbox.clone(), model_api: model_api.clone(), model: model.clone() };
    let transcript = converse(&endpoints, question).await?;
    let calls = transcript.messages.iter().filter(|m| m["role"] == "tool").count();
    println!("{} ({calls} tool calls)", transcript.answer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Json;
    use axum::extract::State;
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::sync::{Arc, Mutex};

    /// `soulbox serve --dev` on a free loopback port, killed when dropped.
    struct Soulbox {
        child: Child,
        url: String,
    }

    impl Drop for Soulbox {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn start_soulbox() -> Soulbox {
        // The workspace's release build (scripts/test.sh builds it before the tests).
        let binary = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/soulbox");
        let mut child = Command::new(&binary)
            .args(["serve", "--dev", "--addr", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} runs (cargo build --release first): {e}", binary.display()));
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let url = loop {
            let mut line = String::new();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "soulbox serve exited before listening");
            if line.contains("listening on") {
                break line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();
            }
        };
        std::thread::spawn(move || for _ in stderr.lines() {});
        Soulbox { child, url }
    }

    /// A scripted model: first it asks for `run_code`, then it answers with what the tool
    /// printed. Every request it gets is kept.
    async fn scripted_model(State(seen): State<Arc<Mutex<Vec<Value>>>>, Json(request): Json<Value>) -> Json<Value> {
        seen.lock().unwrap().push(request.clone());
        let messages = request["messages"].as_array().unwrap();
        let message = match messages.iter().rev().find(|m| m["role"] == "tool") {
            None => json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": "call-1", "type": "function",
                "function": {"name": "run_code", "arguments": "{\"language\": \"python\", \"code\": \"a, b = 0, 1\\nfor _ in range(20): a, b = b, a + b\\nprint(a)\"}"}
            }]}),
            Some(tool) => {
                let printed: Value = serde_json::from_str(tool["content"].as_str().unwrap()).unwrap();
                json!({"role": "assistant", "content": format!("The 20th Fibonacci number is {}.", printed["stdout"].as_str().unwrap().trim())})
            }
        };
        Json(
            json!({"id": "chat-1", "object": "chat.completion", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}),
        )
    }

    #[tokio::test]
    async fn the_model_gets_soulbox_tools_and_its_call_runs() {
        let soulbox = start_soulbox();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let model = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(scripted_model))
            .with_state(Arc::clone(&seen));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let model_api = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, model).await });
        let endpoints = Endpoints { soulbox: soulbox.url.clone(), model_api, model: "scripted".into() };
        let transcript = converse(&endpoints, "What is the 20th Fibonacci number?").await.unwrap();
        assert_eq!(transcript.answer, "The 20th Fibonacci number is 6765.");
        let requests = seen.lock().unwrap().clone();
        assert_eq!(requests.len(), 2, "one tool call, then the answer");
        let offered: Vec<&str> =
            requests[0]["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
        assert!(offered.contains(&"run_code") && offered.contains(&"run_cell"), "{offered:?}");
        let tool_message = transcript.messages.iter().find(|m| m["role"] == "tool").unwrap();
        assert!(tool_message["content"].as_str().unwrap().contains("6765"), "{tool_message}");
    }
}
