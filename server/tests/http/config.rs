//! `soulbox serve` with a `soulbox.toml`: layers, resolution of variables and secrets, and
//! refusals that name the key.

use crate::support::{Server, soulbox};
use serde_json::{Value, json};

/// Runs `soulbox serve` expecting it to refuse its configuration; returns stderr.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = soulbox().args(args).envs(env.iter().copied()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_configurations_stop_the_server_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("soulbox.toml");
    let path = file.to_str().unwrap();
    std::fs::write(&file, "[server]\nadr = \"127.0.0.1:0\"\n").unwrap();
    let typo = refused(&["serve", "--config", path], &[]);
    assert!(typo.contains("adr") && typo.contains("line 2"), "{typo}");

    std::fs::write(&file, include_str!("../fixtures/soulbox-seed.toml")).unwrap();
    let seed = refused(&["serve", "--config", path], &[]);
    assert!(seed.contains("`project` is not supported"), "{seed}");

    std::fs::write(&file, "[environment]\nAPI_KEY = \"$SECRET_API_KEY\"\n").unwrap();
    let secret = refused(&["serve", "--dev", "--addr", "127.0.0.1:0", "--config", path], &[]);
    assert!(secret.contains("environment.API_KEY") && secret.contains("SECRET_API_KEY"), "{secret}");

    let env = refused(&["serve", "--dev"], &[("SOULBOX__RESOURCES__MEMORY_MB", "lots")]);
    assert!(env.contains("SOULBOX__RESOURCES__MEMORY_MB") && env.contains("resources.memory_mb"), "{env}");
}

#[tokio::test]
async fn the_file_variables_and_secrets_reach_the_guests() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.toml");
    std::fs::write(&secrets, "TOKEN = \"s3cret\"\n").unwrap();
    std::fs::set_permissions(&secrets, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let file = dir.path().join("soulbox.toml");
    let text = format!(
        "[server]\naddr = \"127.0.0.1:1\"\n[auth]\ndev = true\n[resources]\nmemory_mb = 256\n\
         [environment]\nGREETING = \"$SOULBOX_TEST_GREETING\"\nTOKEN = \"$SECRET_TOKEN\"\n\
         [environment.dynamic]\nME = \"$SOULBOX_SANDBOX_ID\"\n[security]\nsecrets_file = \"{}\"\n\
         [storage]\nworkspace_root = \"{}\"\n",
        secrets.display(),
        dir.path().join("workspaces").display()
    );
    std::fs::write(&file, text).unwrap();
    let server = Server::start_in_env(
        &["serve", "--config", file.to_str().unwrap()],
        &[("SOULBOX__SERVER__ADDR", "127.0.0.1:0"), ("SOULBOX_TEST_GREETING", "hello")],
    );
    let client = reqwest::Client::new();
    let code = "import os; print(os.environ['GREETING'], os.environ['TOKEN'])";
    let once: Value = client
        .post(server.url("/v1/execute"))
        .json(&json!({"language": "python", "code": code}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(once["stdout"], "hello s3cret\n", "{once}");
    let greedy = json!({"language": "python", "code": "1", "limits": {"memory_bytes": 512u64 << 20}});
    let refused = client.post(server.url("/v1/execute")).json(&greedy).send().await.unwrap();
    assert_eq!(refused.status(), 400, "more memory than `resources.memory_mb`");

    let created: Value =
        client.post(server.url("/v1/sandboxes")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let cell: Value = client
        .post(server.url(&format!("/v1/sandboxes/{id}/execute")))
        .json(&json!({"code": "import os; os.environ['ME']"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cell["results"][0]["text"], format!("'{id}'"));
    assert!(
        dir.path().join("workspaces").read_dir().unwrap().next().is_some(),
        "workspaces under storage.workspace_root"
    );
    assert!(!server.log().contains("s3cret"), "secrets never reach the log");
}
