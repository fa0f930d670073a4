//! Sandboxes that outlive their server: paused ones come back after `kill -9` and after a
//! graceful stop (which pauses every sandbox); one that ran after its last checkpoint is
//! reported lost (410), never "not found".

use super::support::Server;
use serde_json::{Value, json};
use std::path::Path;

/// A development server whose state (database, workspaces, checkpoints) lives in `dir`.
fn server_in(dir: &Path) -> Server {
    let path = |name: &str| dir.join(name).display().to_string();
    let database = format!("sqlite://{}", path("soulbox.db"));
    Server::start_in_env(
        &["serve", "--dev", "--addr", "127.0.0.1:0"],
        &[
            ("SOULBOX__STORAGE__DATABASE_URL", &database),
            ("SOULBOX__STORAGE__WORKSPACE_ROOT", &path("workspaces")),
            ("SOULBOX__STORAGE__SNAPSHOT_DIR", &path("checkpoints")),
        ],
    )
}

async fn post(client: &reqwest::Client, server: &Server, path: &str, body: Value) -> (u16, Value) {
    let response = client.post(server.url(path)).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

async fn get(client: &reqwest::Client, server: &Server, path: &str) -> (u16, Value) {
    let response = client.get(server.url(path)).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

/// The text of a cell's main result, or its stdout.
async fn cell(client: &reqwest::Client, server: &Server, id: &str, body: Value) -> String {
    let (status, done) = post(client, server, &format!("/v1/sandboxes/{id}/execute"), body).await;
    assert_eq!(status, 200, "{done}");
    assert!(done["error"].is_null(), "the cell failed: {done}");
    match done["results"][0]["text"].as_str() {
        Some(text) => text.to_owned(),
        None => done["stdout"].as_str().unwrap_or_default().trim().to_owned(),
    }
}

#[tokio::test]
async fn paused_sandboxes_survive_kill_9_and_a_restart_and_changed_ones_are_reported_lost() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let first = server_in(dir.path());
    let (_, created) = post(&client, &first, "/v1/sandboxes", json!({"template": "data-science"})).await;
    let kept = created["id"].as_str().unwrap().to_owned();
    let setup = "x = 41\ndf = pd.DataFrame({'a': range(10_000)})\nfig, ax = plt.subplots()\nopen('note.txt', 'w').write('kept')";
    cell(&client, &first, &kept, json!({"code": setup})).await;
    let (_, context) =
        post(&client, &first, &format!("/v1/sandboxes/{kept}/contexts"), json!({"language": "javascript"})).await;
    let js = context["id"].as_str().unwrap().to_owned();
    cell(&client, &first, &kept, json!({"code": "let n = 0; const next = () => ++n; next()", "context": js})).await;
    let (status, paused) = post(&client, &first, &format!("/v1/sandboxes/{kept}/pause"), Value::Null).await;
    assert_eq!((status, paused["contexts"].as_u64()), (200, Some(2)), "{paused}");
    let (_, running) = post(&client, &first, "/v1/sandboxes", json!({})).await;
    let changed = running["id"].as_str().unwrap().to_owned();
    cell(&client, &first, &changed, json!({"code": "y = 1"})).await;
    drop(first); // SIGKILL: nothing gets a chance to save anything

    let second = server_in(dir.path());
    let (status, info) = get(&client, &second, &format!("/v1/sandboxes/{kept}")).await;
    assert_eq!((status, info["state"].as_str()), (200, Some("paused")), "{info}");
    let python = "print(x + 1, int(df.a.sum()), len(fig.axes), open('note.txt').read())";
    assert_eq!(cell(&client, &second, &kept, json!({"code": python})).await, "42 49995000 1 kept");
    assert_eq!(cell(&client, &second, &kept, json!({"code": "next()", "context": js})).await, "2");
    let (status, lost) = get(&client, &second, &format!("/v1/sandboxes/{changed}")).await;
    assert_eq!((status, lost["error"]["code"].as_str()), (410, Some("gone")), "{lost}");
    assert!(lost["error"]["message"].as_str().unwrap().contains("while it was running"), "{lost}");

    // A graceful stop pauses every sandbox on the way out; the next start has them all.
    let status = second.terminate();
    assert!(status.success(), "{status}");
    let third = server_in(dir.path());
    assert_eq!(cell(&client, &third, &kept, json!({"code": "x"})).await, "41");
    assert_eq!(cell(&client, &third, &kept, json!({"code": "next()", "context": js})).await, "3");
    let (status, _) =
        client.delete(third.url(&format!("/v1/sandboxes/{kept}"))).send().await.map(|r| (r.status(), ())).unwrap();
    assert_eq!(status, 204);
    let checkpoints = dir.path().join("checkpoints/sandboxes");
    assert_eq!(std::fs::read_dir(checkpoints).unwrap().count(), 0, "a killed sandbox leaves no manifest");
}

#[tokio::test]
async fn sandboxes_checkpointed_after_every_cell_or_on_demand_survive_kill_9_without_a_pause() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let first = server_in(dir.path());
    let body = json!({"template": "data-science", "checkpoint": "every_cell"});
    let (status, created) = post(&client, &first, "/v1/sandboxes", body).await;
    assert_eq!((status, created["checkpoint"].as_str()), (201, Some("every_cell")), "{created}");
    let every_cell = created["id"].as_str().unwrap().to_owned();
    let setup = "x = 41\ndf = pd.DataFrame({'a': range(10_000)})\nfig, ax = plt.subplots()\nopen('note.txt', 'w').write('kept')";
    cell(&client, &first, &every_cell, json!({"code": setup})).await;
    let (_, context) =
        post(&client, &first, &format!("/v1/sandboxes/{every_cell}/contexts"), json!({"language": "javascript"})).await;
    let js = context["id"].as_str().unwrap().to_owned();
    cell(&client, &first, &every_cell, json!({"code": "let n = 0; const next = () => ++n; next()", "context": js}))
        .await;
    let (_, info) = get(&client, &first, &format!("/v1/sandboxes/{every_cell}")).await;
    assert!(info["checkpointed_at_ms"].as_u64().is_some(), "{info}");

    // On demand: a checkpoint, then SIGKILL before the next cell.
    let (_, created) = post(&client, &first, "/v1/sandboxes", json!({})).await;
    let on_demand = created["id"].as_str().unwrap().to_owned();
    cell(&client, &first, &on_demand, json!({"code": "y = [1, 2, 3]"})).await;
    let (status, report) = post(&client, &first, &format!("/v1/sandboxes/{on_demand}/checkpoint"), Value::Null).await;
    assert_eq!((status, report["contexts"].as_u64()), (200, Some(1)), "{report}");
    assert!(report["new_bytes"].as_u64().unwrap() > 0, "{report}");
    let (status, again) = post(&client, &first, &format!("/v1/sandboxes/{on_demand}/checkpoint"), Value::Null).await;
    assert_eq!(status, 200, "{again}");
    assert!(
        again["new_bytes"].as_u64().unwrap() < report["new_bytes"].as_u64().unwrap() / 4,
        "an unchanged context stores little: {again} after {report}"
    );
    drop(first); // SIGKILL

    let second = server_in(dir.path());
    let python = "print(x + 1, int(df.a.sum()), len(fig.axes), open('note.txt').read())";
    assert_eq!(cell(&client, &second, &every_cell, json!({"code": python})).await, "42 49995000 1 kept");
    assert_eq!(cell(&client, &second, &every_cell, json!({"code": "next()", "context": js})).await, "2");
    assert_eq!(cell(&client, &second, &on_demand, json!({"code": "sum(y)"})).await, "6");
    drop(second); // SIGKILL again: the cells just run were checkpointed too

    let third = server_in(dir.path());
    assert_eq!(cell(&client, &third, &every_cell, json!({"code": "next()", "context": js})).await, "3");
    let (status, lost) = get(&client, &third, &format!("/v1/sandboxes/{on_demand}")).await;
    assert_eq!(status, 410, "it ran a cell after its checkpoint: {lost}");
}

#[tokio::test]
async fn a_damaged_checkpoint_is_refused_and_reported_and_an_interrupted_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let first = server_in(dir.path());
    let mut ids = Vec::new();
    for value in [1, 2] {
        let (_, created) = post(&client, &first, "/v1/sandboxes", json!({})).await;
        let id = created["id"].as_str().unwrap().to_owned();
        cell(&client, &first, &id, json!({"code": format!("v = {value}")})).await;
        let (status, paused) = post(&client, &first, &format!("/v1/sandboxes/{id}/pause"), Value::Null).await;
        assert_eq!(status, 200, "{paused}");
        ids.push(id);
    }
    drop(first);

    // What a checkpoint killed halfway leaves: a blob and a manifest half-written to temporary
    // files, a blob no manifest names yet.
    let checkpoints = dir.path().join("checkpoints");
    std::fs::create_dir_all(checkpoints.join("ab")).unwrap();
    std::fs::write(checkpoints.join("ab/.tmpHalf"), b"half a blob").unwrap();
    std::fs::write(checkpoints.join("ab").join("ab".repeat(32)), b"not yet named").unwrap();
    std::fs::write(checkpoints.join("sandboxes/.tmpHalf"), b"{\"format\": 2, \"id\"").unwrap();
    // And one sandbox's own checkpoint damaged: its index names its parts; truncate them all.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(checkpoints.join(format!("sandboxes/{}.json", ids[1]))).unwrap())
            .unwrap();
    let index = manifest["contexts"][0]["checkpoint"].as_str().unwrap();
    let path = checkpoints.join(&index[..2]).join(index);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let second = server_in(dir.path());
    assert_eq!(cell(&client, &second, &ids[0], json!({"code": "v"})).await, "1", "the intact one resumes");
    let (status, info) = get(&client, &second, &format!("/v1/sandboxes/{}", ids[1])).await;
    assert_eq!((status, info["state"].as_str()), (200, Some("paused")), "reported, not crashed: {info}");
    let (status, refused) = post(&client, &second, &format!("/v1/sandboxes/{}/resume", ids[1]), Value::Null).await;
    assert_eq!(refused["error"]["code"].as_str(), Some("checkpoint_unusable"), "{status} {refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("corrupt"), "{refused}");
    let (status, _) = get(&client, &second, "/v1/sandboxes").await;
    assert_eq!(status, 200, "the server lives on");
    assert!(!checkpoints.join("ab/.tmpHalf").exists(), "a killed write's leftovers are swept");
    assert!(!checkpoints.join("ab").join("ab".repeat(32)).exists(), "and a blob nothing names");
}

#[tokio::test]
async fn a_template_with_data_loaded_starts_sandboxes_with_no_set_up_and_outlives_its_server() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let first = server_in(dir.path());
    let (_, created) = post(&client, &first, "/v1/sandboxes", json!({"template": "data-science"})).await;
    let source = created["id"].as_str().unwrap().to_owned();
    let setup = "df = pd.DataFrame({'a': range(10_000)})\nrng_state = np.random.rand()\nopen('data.csv', 'w').write(df.to_csv())\nversion = 1";
    cell(&client, &first, &source, json!({"code": setup})).await;
    let body = json!({"sandbox_id": source, "name": "loaded"});
    let (status, v1) = post(&client, &first, "/v1/templates", body.clone()).await;
    assert_eq!((status, v1["version"].as_u64()), (201, Some(1)), "{v1}");
    cell(&client, &first, &source, json!({"code": "version = 2"})).await;
    let (_, v2) = post(&client, &first, "/v1/templates", body).await;
    assert_eq!(v2["version"].as_u64(), Some(2), "{v2}");
    let (status, bad) = post(&client, &first, "/v1/templates", json!({"sandbox_id": source, "name": "a b"})).await;
    assert_eq!(status, 400, "{bad}");
    drop(first); // SIGKILL: templates are on disk already

    let second = server_in(dir.path());
    let (status, list) = get(&client, &second, "/v1/templates").await;
    assert_eq!((status, list.as_array().map(Vec::len)), (200, Some(2)), "{list}");
    let from = |version: Value| json!({"from_template": {"name": "loaded", "version": version}});
    let (status, latest) = post(&client, &second, "/v1/sandboxes", from(Value::Null)).await;
    assert_eq!(status, 201, "{latest}");
    let latest = latest["id"].as_str().unwrap().to_owned();
    let first_cell = "print(version, int(df.a.sum()), len(open('data.csv').read().splitlines()))";
    assert_eq!(cell(&client, &second, &latest, json!({"code": first_cell})).await, "2 49995000 10001");
    let (_, older) = post(&client, &second, "/v1/sandboxes", from(json!(1))).await;
    let older = older["id"].as_str().unwrap().to_owned();
    assert_eq!(cell(&client, &second, &older, json!({"code": "version"})).await, "1");
    let draw = json!({"code": "np.random.rand()"});
    let (a, b) = (cell(&client, &second, &latest, draw.clone()).await, cell(&client, &second, &older, draw).await);
    assert_ne!(a, b, "each sandbox from a template has its own random state");

    let (status, described) = get(&client, &second, "/v1/templates/loaded?version=1").await;
    assert_eq!((status, described["version"].as_u64()), (200, Some(1)), "{described}");
    let delete = |path: String| client.delete(second.url(&path)).send();
    assert_eq!(delete("/v1/templates/loaded?version=1".into()).await.unwrap().status(), 204);
    let (status, gone) = get(&client, &second, "/v1/templates/loaded?version=1").await;
    assert_eq!((status, gone["error"]["code"].as_str()), (404, Some("not_found")), "{gone}");
    assert_eq!(delete("/v1/templates/loaded".into()).await.unwrap().status(), 204);
    let (status, _) = post(&client, &second, "/v1/sandboxes", from(Value::Null)).await;
    assert_eq!(status, 404);
    assert_eq!(cell(&client, &second, &older, json!({"code": "version"})).await, "1", "made from it, still running");
}

/// `soulbox sandboxes list --json` on the database in `dir`: each sandbox's id, state and why.
fn registry_in(dir: &Path) -> Vec<(String, String, Option<String>)> {
    let database = format!("sqlite://{}", dir.join("soulbox.db").display());
    let out =
        super::support::soulbox().args(["--database-url", &database, "sandboxes", "list", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut rows: Vec<(String, String, Option<String>)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .map(|row| {
            let text = |key: &str| row[key].as_str().map(str::to_owned);
            (text("id").unwrap(), text("state").unwrap(), text("why"))
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn the_database_records_each_sandboxs_state_and_what_a_kill_9_lost() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let first = server_in(dir.path());
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, created) = post(&client, &first, "/v1/sandboxes", json!({})).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let (paused, killed, changed) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    post(&client, &first, &format!("/v1/sandboxes/{paused}/pause"), Value::Null).await;
    let status = client.delete(first.url(&format!("/v1/sandboxes/{killed}"))).send().await.unwrap().status();
    assert_eq!(status, 204);
    assert!(first.terminate().success(), "a graceful stop pauses the rest and writes every change");
    let state = |rows: &[(String, String, Option<String>)], id: &str| {
        rows.iter().find(|row| row.0 == id).map(|row| row.1.clone()).unwrap_or_default()
    };
    let rows = registry_in(dir.path());
    assert_eq!(
        [state(&rows, &paused), state(&rows, &killed), state(&rows, &changed)],
        ["paused", "killed", "paused"],
        "{rows:?}"
    );

    let second = server_in(dir.path());
    cell(&client, &second, &changed, json!({"code": "y = 1"})).await;
    drop(second); // SIGKILL: `changed` ran after its checkpoint
    let third = server_in(dir.path());
    assert!(third.terminate().success());
    let rows = registry_in(dir.path());
    assert_eq!(
        [state(&rows, &paused), state(&rows, &killed), state(&rows, &changed)],
        ["paused", "killed", "lost"],
        "{rows:?}"
    );
    let why = rows.iter().find(|row| row.0 == changed).and_then(|row| row.2.clone()).unwrap_or_default();
    assert!(why.contains("running"), "the registry says why: {why}");
}

#[tokio::test]
async fn a_tenant_past_its_checkpoint_bound_is_refused_with_429() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let database = format!("sqlite://{}", path("soulbox.db"));
    let server = Server::start_in_env(
        &["serve", "--dev", "--addr", "127.0.0.1:0"],
        &[
            ("SOULBOX__STORAGE__DATABASE_URL", &database),
            ("SOULBOX__STORAGE__WORKSPACE_ROOT", &path("workspaces")),
            ("SOULBOX__STORAGE__SNAPSHOT_DIR", &path("checkpoints")),
            ("SOULBOX__STORAGE__SNAPSHOT_MB_PER_TENANT", "0"),
        ],
    );
    let client = reqwest::Client::new();
    let (_, created) = post(&client, &server, "/v1/sandboxes", json!({})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    cell(&client, &server, &id, json!({"code": "x = 1"})).await;
    let (status, refused) = post(&client, &server, &format!("/v1/sandboxes/{id}/pause"), Value::Null).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (429, Some("quota_exceeded")), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("checkpoints"), "{refused}");
    assert_eq!(cell(&client, &server, &id, json!({"code": "x + 1"})).await, "2", "the sandbox runs on");
}

#[tokio::test]
async fn checkpoints_kept_in_an_s3_compatible_store_come_back_when_the_local_copies_are_lost() {
    let moto = super::support::Moto::start();
    moto.bucket("soulbox-checkpoints").await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let database = format!("sqlite://{}", path("soulbox.db"));
    let env = [
        ("SOULBOX__STORAGE__DATABASE_URL", database.as_str()),
        ("SOULBOX__STORAGE__WORKSPACE_ROOT", &path("workspaces")),
        ("SOULBOX__STORAGE__SNAPSHOT_DIR", &path("checkpoints")),
        ("SOULBOX__STORAGE__OBJECT_STORE__BUCKET", "soulbox-checkpoints"),
        ("SOULBOX__STORAGE__OBJECT_STORE__ENDPOINT", &moto.endpoint),
        ("SOULBOX__STORAGE__OBJECT_STORE__ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "moto"),
        ("AWS_SECRET_ACCESS_KEY", "moto"),
    ];
    let args = ["serve", "--dev", "--addr", "127.0.0.1:0"];
    let client = reqwest::Client::new();
    let first = Server::start_in_env(&args, &env);
    let (_, created) = post(&client, &first, "/v1/sandboxes", json!({"template": "data-science"})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    cell(&client, &first, &id, json!({"code": "x = 41\ndf = pd.DataFrame({'a': range(10_000)})"})).await;
    let (status, paused) = post(&client, &first, &format!("/v1/sandboxes/{id}/pause"), Value::Null).await;
    assert_eq!(status, 200, "{paused}");
    drop(first); // SIGKILL
    let keys = moto.keys("soulbox-checkpoints").await;
    assert!(!keys.is_empty() && keys.iter().all(|key| key.starts_with("soulbox/checkpoints/")), "{keys:?}");

    // The local copies are lost (a replaced disk, say): every checkpoint blob goes.
    let mut lost = 0;
    for shard in std::fs::read_dir(dir.path().join("checkpoints")).unwrap().flatten() {
        let name = shard.file_name().to_string_lossy().into_owned();
        if name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            lost += std::fs::read_dir(shard.path()).unwrap().count();
            std::fs::remove_dir_all(shard.path()).unwrap();
        }
    }
    assert_eq!(lost, keys.len(), "every blob was in the object store");
    let second = Server::start_in_env(&args, &env);
    assert_eq!(cell(&client, &second, &id, json!({"code": "print(x + 1, int(df.a.sum()))"})).await, "42 49995000");
}

/// `soulbox sandboxes|templates ... --server URL` with `SOULBOX_API_KEY`: the command's
/// stdout, or its stderr as the error.
fn cli(server: &Server, key: &str, args: &[&str]) -> Result<String, String> {
    let out = super::support::soulbox()
        .args(args)
        .args(["--server", &server.url("")])
        .env("SOULBOX_API_KEY", key)
        .output()
        .unwrap();
    match out.status.success() {
        true => Ok(String::from_utf8(out.stdout).unwrap()),
        false => Err(String::from_utf8(out.stderr).unwrap()),
    }
}

#[tokio::test]
async fn the_cli_pauses_resumes_checkpoints_forks_and_kills_a_running_servers_sandboxes_as_its_caller() {
    let dir = tempfile::tempdir().unwrap();
    let (server, keys) = super::support::start_with_keys(dir.path(), &["owner", "stranger"], &[]);
    let (owner, stranger) = (keys[0].as_str(), keys[1].as_str());
    let client = reqwest::Client::new();
    let id = super::support::create_sandbox(&client, &server, Some(owner)).await;
    let run = |code: &str, sandbox: &str| {
        let request = client.post(server.url(&format!("/v1/sandboxes/{sandbox}/execute"))).bearer_auth(owner);
        let request = request.json(&json!({"code": code}));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap()["results"][0]["text"].clone() }
    };
    run("x = 41", &id).await;

    let refused = cli(&server, stranger, &["sandboxes", "pause", &id]).unwrap_err();
    assert!(refused.contains("not_found"), "another tenant's sandbox is not its to pause: {refused}");
    let paused: Value = serde_json::from_str(&cli(&server, owner, &["sandboxes", "pause", &id]).unwrap()).unwrap();
    assert_eq!((paused["contexts"].as_u64(), paused["processes_restored"].as_bool()), (Some(1), Some(false)));
    let resumed: Value = serde_json::from_str(&cli(&server, owner, &["sandboxes", "resume", &id]).unwrap()).unwrap();
    assert_eq!(resumed["state"], "running", "{resumed}");
    let checkpoint =
        serde_json::from_str::<Value>(&cli(&server, owner, &["sandboxes", "checkpoint", &id]).unwrap()).unwrap();
    assert_eq!(checkpoint["contexts"], 1, "{checkpoint}");

    let forks = cli(&server, owner, &["sandboxes", "fork", &id, "--count", "2"]).unwrap();
    let forks: Vec<&str> = forks.lines().collect();
    assert_eq!(forks.len(), 2, "{forks:?}");
    run("x += 1", forks[0]).await;
    assert_eq!((run("x", forks[0]).await, run("x", forks[1]).await), (json!("42"), json!("41")));

    let saved = cli(&server, owner, &["templates", "save", &id, "--name", "answer"]).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&saved).unwrap()["version"], 1, "{saved}");
    let listed = cli(&server, owner, &["templates", "list"]).unwrap();
    assert!(listed.lines().any(|line| line.starts_with("answer ")), "{listed}");
    assert!(cli(&server, stranger, &["templates", "show", "answer"]).unwrap_err().contains("not_found"));
    cli(&server, owner, &["templates", "delete", "answer"]).unwrap();

    cli(&server, owner, &["sandboxes", "kill", &id]).unwrap();
    let gone = cli(&server, owner, &["sandboxes", "resume", &id]).unwrap_err();
    assert!(gone.contains("not_found"), "{gone}");
    let unreachable =
        super::support::soulbox().args(["sandboxes", "pause", &id, "--server", "http://127.0.0.1:9"]).output().unwrap();
    let said = String::from_utf8_lossy(&unreachable.stderr);
    assert!(!unreachable.status.success() && said.contains("reaching the server"), "{said}");
}
