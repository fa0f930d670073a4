//! Configuration: layers, refusals that name the key, and environment resolution.

use super::*;
use std::collections::BTreeMap;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn load_text(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "soulbox.toml", text);
    load(&ConfigSource { file: Some(file), ..ConfigSource::default() }).map(|(config, _)| config)
}

fn message(result: Result<Config, ConfigError>) -> String {
    result.expect_err("refused").to_string()
}

#[test]
fn defaults_need_no_file() {
    let (config, file) = load(&ConfigSource::default()).unwrap();
    assert_eq!(file, None);
    assert_eq!(config.server.addr.to_string(), "127.0.0.1:8080");
    assert!(!config.auth.dev);
    assert_eq!(config.memory_bytes(), 512 << 20);
    assert_eq!(config.default_deadline(), Duration::from_secs(30));
}

#[test]
fn the_seed_sections_that_apply_are_read() {
    let config = load_text(
        r#"
        [server]
        addr = "127.0.0.1:9000"
        request_timeout_ms = 60000
        [resources]
        cpu_cores = 2.0
        memory_mb = 1024
        timeout_seconds = 50
        total_timeout_hours = 2
        gpu_count = 0
        [resources.policy]
        memory_swap = false
        [environment]
        NODE_ENV = "development"
        PRICE = "$$5"
        [environment.dynamic]
        INSTANCE_ID = "$SOULBOX_INSTANCE_ID"
        [network]
        allow_internet = false
        [security]
        allow_docker = false
        no_new_privileges = true
        [security.seccomp]
        profile = "default"
        [monitoring]
        metrics_enabled = true
        log_format = "json"
        [monitoring.sampling]
        metrics = 1.0
        "#,
    )
    .unwrap();
    assert_eq!(config.server.addr.port(), 9000);
    assert_eq!(config.memory_bytes(), 1024 << 20);
    assert_eq!(config.max_deadline(), Duration::from_secs(50));
    assert_eq!(config.sandbox_lifetime(), Some(Duration::from_secs(7200)));
    assert_eq!(config.monitoring.log_format, LogFormat::Json);
    let env = Environment::resolve(&config.environment, None, |_| None).unwrap();
    assert_eq!(env.vars()["PRICE"], "$5");
    let for_sandbox =
        env.for_sandbox(&DynamicEnv { sandbox_id: "sbx-1", tenant: "acme", template: "python", base_url: "http://h" });
    assert_eq!(for_sandbox["INSTANCE_ID"], "sbx-1");
    assert_eq!(for_sandbox["NODE_ENV"], "development");
}

#[test]
fn unknown_keys_and_bad_values_name_the_key() {
    let typo = message(load_text("[server]\nadr = \"127.0.0.1:1\"\n"));
    assert!(typo.contains("adr") && typo.contains("addr"), "{typo}");
    let wrong_type = message(load_text("[server]\nrequest_timeout_ms = \"soon\"\n"));
    assert!(wrong_type.contains("server.request_timeout_ms"), "{wrong_type}");
    let bad_addr = message(load_text("[server]\naddr = \"nowhere\"\n"));
    assert!(bad_addr.contains("server.addr"), "{bad_addr}");
    let section = message(load_text("[servr]\n"));
    assert!(section.contains("servr"), "{section}");
    let range = message(load_text("[resources]\nmemory_mb = 1\n"));
    assert!(range.contains("resources.memory_mb"), "{range}");
    let too_long = message(load_text("[server]\nrequest_timeout_ms = 10000\n[resources]\ntimeout_seconds = 10\n"));
    assert!(too_long.contains("resources.timeout_seconds"), "{too_long}");
    let malformed = message(load_text("[server\n"));
    assert!(malformed.contains("line 1"), "{malformed}");
    let collector = message(load_text("[monitoring]\notlp_endpoint = \"collector:4318\"\n"));
    assert!(collector.contains("monitoring.otlp_endpoint"), "{collector}");
    let config = load_text("[monitoring]\notlp_endpoint = \"http://127.0.0.1:4318\"\n").unwrap();
    assert_eq!(config.monitoring.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
}

#[test]
fn spec_sections_soulbox_lacks_are_refused_with_the_reason() {
    for (text, key) in [
        ("[project]\nname = \"x\"\n", "project"),
        ("[template]\nbase_image = \"ubuntu\"\n", "template"),
        ("[commands]\nstart = [\"x\"]\n", "commands"),
        ("[scaling]\nenabled = false\n", "scaling"),
        ("[features]\nenable_gpu = false\n", "features"),
        ("[network]\nports = [80]\n", "network.ports"),
        ("[network.firewall]\ndeny = []\n", "network.firewall"),
        ("[resources.policy]\ndisk_quota_hard = true\n", "resources.policy.disk_quota_hard"),
        ("[storage.volumes]\ndata = {path = \"/d\"}\n", "storage.volumes"),
    ] {
        let refused = message(load_text(text));
        assert!(refused.contains(&format!("`{key}` is not supported:")), "{text}: {refused}");
    }
    // The workspace disk quota is read, and bounded.
    assert_eq!(load_text("[resources]\ndisk_mb = 10\n").unwrap().resources.disk_mb, Some(10));
    assert!(message(load_text("[resources]\ndisk_mb = 0\n")).contains("resources.disk_mb"));
    // So are a paused sandbox's lifetime and a tenant's checkpoints.
    let storage = load_text("[storage]\npaused_lifetime_hours = 48\nsnapshot_mb_per_tenant = 10\n").unwrap().storage;
    assert_eq!((storage.paused_lifetime().as_secs(), storage.snapshot_bytes_per_tenant()), (48 * 3600, 10 << 20));
    assert!(message(load_text("[storage]\npaused_lifetime_hours = 0\n")).contains("storage.paused_lifetime_hours"));
    assert!(message(load_text("[storage]\npaused_lifetime_hours = 9000\n")).contains("storage.paused_lifetime_hours"));
    let store = load_text("[storage.object_store]\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9000\"\n").unwrap();
    let store = store.storage.object_store.unwrap();
    assert_eq!((store.bucket.as_str(), store.prefix.as_str(), store.allow_http), ("b", "soulbox/checkpoints", false));
    assert!(
        message(load_text("[storage.object_store]\nregion = \"eu-west-1\"\n")).contains("storage.object_store.bucket")
    );
    for (text, key) in [
        ("[security]\nallow_sudo = true\n", "security.allow_sudo"),
        ("[resources]\ngpu_count = 1\n", "resources.gpu_count"),
        ("[monitoring.sampling]\nlogs = 0.1\n", "monitoring.sampling.logs"),
        ("[security.seccomp]\nprofile = \"unconfined\"\n", "security.seccomp.profile"),
    ] {
        let refused = message(load_text(text));
        assert!(refused.contains(key) && refused.contains("not supported"), "{text}: {refused}");
    }
}

#[test]
fn variables_and_flags_override_the_file_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "soulbox.toml", "[server]\naddr = \"127.0.0.1:1000\"\nrequest_timeout_ms = 5000\n");
    let source = ConfigSource {
        file: Some(file.clone()),
        env: vec![
            ("SOULBOX__SERVER__ADDR".into(), "127.0.0.1:2000".into()),
            ("SOULBOX__AUTH__DEV".into(), "true".into()),
            ("SOULBOX__ENVIRONMENT__API_KEY".into(), "123456".into()),
            ("SOULBOX__ENVIRONMENT__DYNAMIC__ME".into(), "$SOULBOX_SANDBOX_ID".into()),
            ("UNRELATED".into(), "x".into()),
        ],
        sets: vec!["server.addr=127.0.0.1:3000".into(), "resources.memory_mb = 64".into()],
    };
    let (config, used) = load(&source).unwrap();
    assert_eq!(used.as_deref(), Some(file.as_path()));
    assert_eq!(config.server.addr.port(), 3000, "--set wins over the environment");
    assert_eq!(config.server.request_timeout_ms, 5000, "the file's other keys stay");
    assert!(config.auth.dev);
    assert_eq!(config.memory_bytes(), 64 << 20);
    assert_eq!(config.environment.vars["API_KEY"], "123456", "a variable keeps its name's case and stays a string");
    assert_eq!(config.environment.dynamic["ME"], "$SOULBOX_SANDBOX_ID");

    let bad_env = ConfigSource { env: vec![("SOULBOX__SERVER__PORT".into(), "1".into())], ..ConfigSource::default() };
    let refused = load(&bad_env).unwrap_err().to_string();
    assert!(refused.contains("SOULBOX__SERVER__PORT") && refused.contains("port"), "{refused}");
    let bad_set = ConfigSource { sets: vec!["auth.burst=lots".into()], ..ConfigSource::default() };
    let refused = load(&bad_set).unwrap_err().to_string();
    assert!(refused.contains("--set auth.burst=lots") && refused.contains("auth.burst"), "{refused}");
    let no_equals = ConfigSource { sets: vec!["auth.burst".into()], ..ConfigSource::default() };
    assert!(load(&no_equals).unwrap_err().to_string().contains("section.key=value"));
    let missing = ConfigSource { file: Some(dir.path().join("absent.toml")), ..ConfigSource::default() };
    assert!(matches!(load(&missing), Err(ConfigError::Read { .. })));
}

#[test]
fn variables_and_secrets_are_resolved_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = write(&dir, "secrets.toml", "DATABASE_URL = \"postgres://secret\"\n");
    std::fs::set_permissions(&secrets, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let section = EnvironmentSection {
        vars: BTreeMap::from([
            ("DB".into(), "$SECRET_DATABASE_URL".into()),
            ("TOKEN".into(), "$SECRET_TOKEN".into()),
            ("HOME_DIR".into(), "$HOME".into()),
        ]),
        dynamic: BTreeMap::new(),
    };
    let lookup = |name: &str| match name {
        "HOME" => Some("/home/me".to_owned()),
        "SECRET_TOKEN" => Some("from-env".to_owned()),
        _ => None,
    };
    let env = Environment::resolve(&section, Some(&secrets), lookup).unwrap();
    assert_eq!(env.vars()["DB"], "postgres://secret");
    assert_eq!(env.vars()["TOKEN"], "from-env", "a secret missing from the file comes from SECRET_<NAME>");
    assert_eq!(env.vars()["HOME_DIR"], "/home/me");
    assert!(!format!("{env:?}").contains("secret"), "Debug never shows values");

    let missing = EnvironmentSection {
        vars: BTreeMap::from([("API_KEY".into(), "$SECRET_API_KEY".into())]),
        ..EnvironmentSection::default()
    };
    let refused = Environment::resolve(&missing, Some(&secrets), |_| None).unwrap_err().to_string();
    assert!(refused.contains("environment.API_KEY") && refused.contains("SECRET_API_KEY"), "{refused}");
    let unset =
        EnvironmentSection { vars: BTreeMap::from([("X".into(), "$NOT_SET".into())]), ..EnvironmentSection::default() };
    let refused = Environment::resolve(&unset, None, |_| None).unwrap_err().to_string();
    assert!(refused.contains("environment.X") && refused.contains("NOT_SET"), "{refused}");
    let bad_dynamic = EnvironmentSection {
        dynamic: BTreeMap::from([("URL".into(), "$SOMETHING".into())]),
        ..EnvironmentSection::default()
    };
    assert!(Environment::resolve(&bad_dynamic, None, |_| None).is_err());

    std::fs::set_permissions(&secrets, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let exposed = Environment::resolve(&section, Some(&secrets), lookup).unwrap_err();
    assert!(matches!(exposed, SecretsError::Exposed(_)), "{exposed}");
    let garbled = write(&dir, "garbled.toml", "DATABASE_URL = postgres://oops-secret\n");
    std::fs::set_permissions(&garbled, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let refused = Environment::resolve(&section, Some(&garbled), lookup).unwrap_err().to_string();
    assert!(!refused.contains("oops-secret"), "a parse error never quotes the file: {refused}");
}

#[test]
fn the_example_configuration_is_valid() {
    let config = load_text(include_str!("../../soulbox.example.toml")).unwrap();
    assert_eq!(config.server.max_in_flight_requests, 512);
    assert_eq!(config.sandbox_lifetime(), Some(Duration::from_secs(3600)));
}
