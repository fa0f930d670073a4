//! A notebook-like session: one sandbox whose Python context keeps its variables from cell to
//! cell, with rich results (a DataFrame as HTML, a value as text) and matplotlib figures saved
//! as PNG files.
//!
//! ```sh
//! cargo run --release -p soulbox-examples --example notebook -- ./figures
//! ```

#![forbid(unsafe_code)]

mod common;

use base64::Engine as _;
use soulbox_engine::{Engine, RunOptions, SandboxSpec, Sandboxes, SandboxesConfig, Template};
use std::path::{Path, PathBuf};

/// The notebook's cells, run in order in one context.
const CELLS: [&str; 4] = [
    "sales = pd.DataFrame({'month': ['Jan', 'Feb', 'Mar', 'Apr'], 'units': [120, 135, 160, 190]})",
    "sales['growth'] = sales['units'].pct_change().fillna(0).round(3)\nsales",
    "fig, ax = plt.subplots(figsize=(5, 3))\nax.plot(sales['month'], sales['units'], marker='o')\nax.set_title('Units sold')\nplt.show()",
    "f'{sales.units.sum()} units, best month {sales.loc[sales.units.idxmax(), \"month\"]}'",
];

/// What the session produced.
#[derive(Debug, Default)]
struct Notebook {
    /// Each cell's plain-text results and output, in order.
    texts: Vec<String>,
    /// Whether some result had HTML (the DataFrame).
    had_html: bool,
    /// The figures saved.
    figures: Vec<PathBuf>,
}

/// Runs [`CELLS`] in a data-science sandbox, saving figures under `figures`.
async fn run(engine: Engine, figures: &Path) -> anyhow::Result<Notebook> {
    let root = tempfile::tempdir()?;
    let config = SandboxesConfig { workspace_root: root.path().join("sandboxes"), ..SandboxesConfig::default() };
    let sandboxes = Sandboxes::new(engine, config)?;
    let sandbox = sandboxes.create(SandboxSpec { template: Template::DataScience, ..SandboxSpec::default() }).await?;
    std::fs::create_dir_all(figures)?;
    let mut notebook = Notebook::default();
    for (n, code) in CELLS.iter().enumerate() {
        let execution = sandbox.run_code(code, RunOptions::default()).await?;
        if let Some(error) = &execution.error {
            anyhow::bail!("cell {n} raised {}: {}", error.name, error.value);
        }
        println!("[{n}] {}", execution.stdout.trim_end());
        for result in &execution.results {
            notebook.had_html |= result.html.is_some();
            if let Some(text) = &result.text {
                println!("[{n}] => {text}");
                notebook.texts.push(text.clone());
            }
            if let Some(png) = &result.png {
                let path = figures.join(format!("cell-{n}-figure-{}.png", notebook.figures.len() + 1));
                std::fs::write(&path, base64::engine::general_purpose::STANDARD.decode(png)?)?;
                println!("[{n}] figure saved to {}", path.display());
                notebook.figures.push(path);
            }
        }
    }
    sandboxes.kill(sandbox.id())?.await;
    Ok(notebook)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let figures = std::env::args().nth(1).unwrap_or_else(|| "figures".into());
    let engine = common::wasm_engine().await?;
    run(engine, Path::new(&figures)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_session_keeps_state_and_saves_its_figure() {
        let engine = common::wasm_engine().await.expect("runtimes installed");
        let out = tempfile::tempdir().unwrap();
        let notebook = run(engine, out.path()).await.unwrap();
        assert!(notebook.had_html, "the DataFrame comes back as HTML");
        assert_eq!(notebook.figures.len(), 1);
        let png = std::fs::read(&notebook.figures[0]).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG file");
        assert_eq!(notebook.texts.last().map(String::as_str), Some("'605 units, best month Apr'"));
    }
}
