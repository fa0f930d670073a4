//! A sandbox's files: the workspace API, seen from the host and from the guests.

use soulbox_engine::sandbox::{EntryKind, FileError, FsEventKind};
use soulbox_engine::{RunOptions, SandboxError, SandboxSpec};
use soulbox_tests::sandboxes;
use std::time::Duration;
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn files_written_by_the_host_are_seen_by_python_and_back() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let files = sandbox.files().unwrap();
    files.write("/data/in.csv", b"a,b\n1,2\n3,4\n").await.unwrap();
    let r = sandbox
        .run_code(
            "import pandas as pd, os\ndf = pd.read_csv('/data/in.csv')\nos.makedirs('/out', exist_ok=True)\n\
             df.sum().to_csv('/out/sums.csv')\nsorted(os.listdir('/data'))",
            RunOptions::default(),
        )
        .await
        .unwrap();
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!(r.text(), Some("['in.csv']"));
    let sums = String::from_utf8(files.read("out/sums.csv").await.unwrap()).unwrap();
    assert!(sums.contains("a,4") && sums.contains("b,6"), "{sums}");
    let listed = files.list("/", 2).await.unwrap();
    let paths: Vec<_> = listed.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"/data/in.csv") && paths.contains(&"/out/sums.csv"), "{paths:?}");
    let stat = files.stat("/out").await.unwrap();
    assert_eq!(stat.kind, EntryKind::Dir);
    files.rename("/out/sums.csv", "/final/sums.csv").await.unwrap();
    let r = sandbox.run_code("open('/final/sums.csv').read().splitlines()[0]", RunOptions::default()).await.unwrap();
    assert_eq!(r.text(), Some("',0'"), "{r:?}");
    files.remove_path("/final").await.unwrap();
    assert!(!files.exists("/final/sums.csv").await.unwrap());
}

#[tokio::test]
async fn large_files_stream_both_ways() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let files = sandbox.files().unwrap();
    let size: u64 = 48 << 20;
    let source = tokio::io::repeat(b'z').take(size);
    assert_eq!(files.write_stream("/big.bin", source).await.unwrap(), size);
    let r = sandbox.run_code("import os\nos.path.getsize('/big.bin')", RunOptions::default()).await.unwrap();
    assert_eq!(r.text(), Some(size.to_string().as_str()));
    let mut reader = files.read_stream("/big.bin").await.unwrap();
    let mut chunk = vec![0; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        assert!(chunk[..n].iter().all(|b| *b == b'z'));
        total += n as u64;
    }
    assert_eq!(total, size);
}

#[tokio::test]
async fn paths_outside_the_workspace_are_refused() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let files = sandbox.files().unwrap();
    assert!(matches!(files.read("/../../etc/passwd").await, Err(FileError::InvalidPath { .. })));
    assert!(matches!(files.read("/missing.txt").await, Err(FileError::NotFound(_))));
    // The guest cannot even make a symlink that points outside (WASI refuses it).
    let r = sandbox.run_code("import os\nos.symlink('/etc', '/escape')", RunOptions::default()).await.unwrap();
    assert_eq!(r.error.as_ref().map(|e| e.name.as_str()), Some("PermissionError"), "{r:?}");
    assert!(!files.exists("/escape").await.unwrap());
    // One made on the host side is refused by the file API.
    std::os::unix::fs::symlink("/etc", files.host_path().join("hostlink")).unwrap();
    let err = files.read("/hostlink/passwd").await.unwrap_err();
    assert!(matches!(err, FileError::Escapes(_)), "{err:?}");
    assert!(!err.to_string().contains(files.host_path().to_str().unwrap()), "no host path in: {err}");
}

#[tokio::test]
async fn watching_a_directory_reports_changes() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let files = sandbox.files().unwrap();
    files.make_dir("/watched").await.unwrap();
    let mut watch = files.watch("/watched", true).await.unwrap();
    let r = sandbox.run_code("open('/watched/new.txt', 'w').write('hi')", RunOptions::default()).await.unwrap();
    assert!(r.error.is_none(), "{r:?}");
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.iter().any(|e: &soulbox_engine::sandbox::FsEvent| e.kind == FsEventKind::Write) {
        let next = std::future::poll_fn(|cx| futures_poll(&mut watch, cx));
        match tokio::time::timeout_at(deadline, next).await {
            Ok(Some(event)) => seen.push(event),
            _ => break,
        }
    }
    assert!(seen.iter().any(|e| e.kind == FsEventKind::Create && e.path == "/watched/new.txt"), "{seen:?}");

    // An upload (written to a temporary file, then moved into place) shows as its file created,
    // and a move as the old name renamed and the new one created.
    files.write("/watched/up.txt", b"uploaded").await.unwrap();
    files.rename("/watched/up.txt", "/watched/moved.txt").await.unwrap();
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &soulbox_engine::sandbox::FsEvent| e.path == "/watched/moved.txt") {
        let next = std::future::poll_fn(|cx| futures_poll(&mut watch, cx));
        match tokio::time::timeout_at(deadline + Duration::from_secs(5), next).await {
            Ok(Some(event)) => seen.push(event),
            _ => break,
        }
    }
    assert!(seen.iter().all(|e| !e.path.contains("soulbox-upload")), "an upload's temporary file is hidden: {seen:?}");
    let kinds: Vec<_> = seen.iter().map(|e| (e.kind, e.path.as_str())).collect();
    assert!(kinds.contains(&(FsEventKind::Create, "/watched/up.txt")), "{kinds:?}");
    assert!(kinds.contains(&(FsEventKind::Rename, "/watched/up.txt")), "{kinds:?}");
    assert!(kinds.contains(&(FsEventKind::Create, "/watched/moved.txt")), "{kinds:?}");
    assert!(matches!(files.watch("/nope", false).await, Err(SandboxError::File(FileError::NotFound(_)))));
}

fn futures_poll(
    watch: &mut soulbox_engine::sandbox::WatchStream,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<Option<soulbox_engine::sandbox::FsEvent>> {
    use futures_core::Stream;
    std::pin::Pin::new(watch).poll_next(cx)
}
