//! [`KeptAlive`]: the leanest HTTP/1.1 client a latency row can have, one kept-alive TCP
//! connection driven from the calling thread.
//!
//! Why not `reqwest::blocking`: it runs its own tokio runtime on a thread of its own, so every
//! request hops there and back: two more thread wake-ups per request, which with 10 ms gaps
//! between requests (each thread parked, its CPU idle) cost more than a session cell itself.
//! A latency row should count the server, not the client's plumbing; `wrk` is used for load.
//! Only what SoulBox's JSON API answers is understood: a `Content-Length` body (no chunked
//! encoding), the connection kept alive.

use anyhow::Context;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// One kept-alive connection to an HTTP server.
#[derive(Debug)]
pub struct KeptAlive {
    host: String,
    /// Sent as `Authorization: Bearer` with every request, when set.
    api_key: Option<String>,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl KeptAlive {
    /// Connects to `base` (`http://host:port`).
    pub fn connect(base: &str) -> anyhow::Result<Self> {
        let host = base.strip_prefix("http://").context("an http:// base URL")?.trim_end_matches('/').to_owned();
        let stream = TcpStream::connect(&host).with_context(|| format!("connecting to {host}"))?;
        stream.set_nodelay(true)?;
        Ok(KeptAlive { host, api_key: None, reader: BufReader::new(stream.try_clone()?), writer: stream })
    }

    /// Sends `key` (if any) as `Authorization: Bearer` with every request.
    pub fn with_api_key(self, key: Option<&str>) -> Self {
        KeptAlive { api_key: key.map(str::to_owned), ..self }
    }

    /// `POST path` with a JSON body; the JSON answer of a 2xx, an error otherwise.
    pub fn post(&mut self, path: &str, body: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let body = serde_json::to_vec(body)?;
        let (status, answer) = self.send("POST", path, &body)?;
        anyhow::ensure!((200..300).contains(&status), "POST {path}: {status} {}", String::from_utf8_lossy(&answer));
        Ok(serde_json::from_slice(&answer)?)
    }

    /// `GET path`; the answer's body, an error unless it answers 2xx.
    pub fn get(&mut self, path: &str) -> anyhow::Result<Vec<u8>> {
        let (status, answer) = self.send("GET", path, &[])?;
        anyhow::ensure!((200..300).contains(&status), "GET {path}: {status} {}", String::from_utf8_lossy(&answer));
        Ok(answer)
    }

    /// `DELETE path`; an error unless it answers 2xx.
    pub fn delete(&mut self, path: &str) -> anyhow::Result<()> {
        let (status, answer) = self.send("DELETE", path, &[])?;
        anyhow::ensure!((200..300).contains(&status), "DELETE {path}: {status} {}", String::from_utf8_lossy(&answer));
        Ok(())
    }

    fn send(&mut self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        let authorization = self.api_key.as_ref().map(|key| format!("authorization: Bearer {key}\r\n"));
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n",
            self.host,
            body.len(),
            authorization.unwrap_or_default()
        )
        .into_bytes();
        request.extend_from_slice(body);
        self.writer.write_all(&request)?;
        self.read_answer()
    }

    fn read_answer(&mut self) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("an HTTP status line")?;
        let mut length = 0;
        loop {
            line.clear();
            anyhow::ensure!(self.reader.read_line(&mut line)? > 0, "the server closed the connection");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                anyhow::ensure!(
                    !name.eq_ignore_ascii_case("transfer-encoding"),
                    "a chunked answer: this client reads Content-Length bodies only"
                );
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse()?;
                }
            }
        }
        let mut answer = vec![0; length];
        self.reader.read_exact(&mut answer)?;
        Ok((status, answer))
    }
}
