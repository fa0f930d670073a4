use soulbox_engine::kernel::{Cell, KernelSpec, Preload, StopSignal};
use soulbox_engine::{Language, Limits};
use std::time::Instant;
fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let engine = soulbox_benches::engine()?;
    let dir = tempfile::tempdir()?;
    let n: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(2000);
    rt.block_on(async {
        let spec = KernelSpec {
            language: Language::Python,
            preload: Preload::Nothing,
            workspace: dir.path().into(),
            env: Default::default(),
            stop: StopSignal::default(),
        };
        let mut k = engine.start_kernel(spec).await?;
        let mut v = Vec::new();
        for _ in 0..n {
            let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
            let t = Instant::now();
            k.run(Cell { code: "pass".into(), limits: Limits::default() }, tx).await?;
            v.push(t.elapsed());
        }
        v.sort();
        println!("pass: p50 {:?}", v[v.len() / 2]);
        anyhow::Ok(())
    })
}
