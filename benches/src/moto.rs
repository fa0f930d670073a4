//! [`Moto`]: moto's S3-compatible server on a free loopback port (from `target/moto-venv`,
//! which `scripts/bench.sh` makes), with one bucket, killed when dropped.

use anyhow::Context;
use std::io::BufRead;

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    child: std::process::Child,
    /// Its URL (`http://127.0.0.1:PORT`).
    pub endpoint: String,
}

impl Moto {
    /// Starts moto and makes bucket `bucket`. Run from the checkout's root.
    pub fn start(bucket: &str) -> anyhow::Result<Moto> {
        let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/moto-venv/bin/moto_server");
        anyhow::ensure!(bin.exists(), "no {}: scripts/bench.sh installs it", bin.display());
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut child = std::process::Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("starting moto_server")?;
        let stderr = child.stderr.take().expect("piped");
        let mut lines = std::io::BufReader::new(stderr).lines();
        let moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
        anyhow::ensure!(
            lines.by_ref().map_while(Result::ok).any(|line| line.contains("Running on")),
            "moto_server exited before serving"
        );
        std::thread::spawn(move || lines.for_each(drop));
        reqwest::blocking::Client::new().put(format!("{}/{bucket}", moto.endpoint)).send()?.error_for_status()?;
        Ok(moto)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
