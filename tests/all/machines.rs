//! Sandboxes with a container: commands, background processes, terminals, the browser, and the
//! workspace shared with WebAssembly contexts, on the real Docker engine.

use soulbox_engine::process::{PageSource, ProcessEvent, ProcessSpec, PtySize, RenderRequest};
use soulbox_engine::{Outcome, RunOptions, SandboxSpec};
use soulbox_fallback::host_fence::{CHAIN, TAG};
use soulbox_tests::containers::Containers;
use soulbox_tests::{png_size, sandboxes_on};
use std::time::{Duration, Instant};

fn command(line: &str) -> ProcessSpec {
    ProcessSpec { command: line.into(), ..ProcessSpec::default() }
}

/// Collects a process's output until `needle` shows up (or its exit).
async fn read_until(stream: &mut soulbox_engine::sandbox::ProcessStream, needle: &str) -> String {
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains(needle) && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(20), stream.next_event()).await {
            Ok(Some(ProcessEvent::Stdout { text } | ProcessEvent::Stderr { text })) => seen.push_str(&text),
            Ok(Some(ProcessEvent::Exit(exit))) => {
                seen.push_str(&format!("[exit {exit:?}]"));
                break;
            }
            Ok(Some(other)) => panic!("an event this test does not know: {other:?}"),
            Ok(None) | Err(_) => break,
        }
    }
    seen
}

#[tokio::test]
async fn files_cross_between_python_cells_and_shell_commands() {
    let containers = Containers::default_pool().await;
    let sandboxes = sandboxes_on(&containers.engine);
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    sandbox
        .run_code("open('from_python.txt', 'w').write('written by a cell\\n')", RunOptions::default())
        .await
        .unwrap();
    let listed = sandbox.run_command(command("ls && cat from_python.txt && pwd")).await.unwrap();
    assert_eq!(listed.exit.outcome, Outcome::Completed, "{listed:?}");
    assert!(listed.stdout.contains("from_python.txt") && listed.stdout.contains("written by a cell"), "{listed:?}");
    assert!(listed.stdout.ends_with("/workspace\n"), "{listed:?}");
    let shell = sandbox
        .run_command(command("echo 'written by bash' > from_bash.txt && echo more >> from_python.txt"))
        .await
        .unwrap();
    assert_eq!(shell.exit.exit_code, Some(0), "the container may change what a cell wrote: {shell:?}");
    let read = sandbox
        .run_code("open('/from_bash.txt').read() + open('/workspace/from_python.txt').read()", RunOptions::default())
        .await
        .unwrap();
    assert_eq!(read.text(), Some("'written by bash\\nwritten by a cell\\nmore\\n'"), "{read:?}");
    let failed = sandbox.run_command(command("echo to stderr >&2; exit 3")).await.unwrap();
    assert_eq!((failed.exit.exit_code, failed.stderr.as_str()), (Some(3), "to stderr\n"));
    let slow = ProcessSpec { deadline: Some(Duration::from_millis(500)), ..command("sleep 30") };
    let stopped = sandbox.run_command(slow).await.unwrap();
    assert_eq!(stopped.exit.outcome, Outcome::DeadlineExceeded, "{stopped:?}");
    sandboxes.kill(sandbox.id()).unwrap().await;
    containers.finish().await;
}

#[tokio::test]
async fn background_processes_take_stdin_and_are_killed_with_their_children() {
    let containers = Containers::default_pool().await;
    let sandboxes = sandboxes_on(&containers.engine);
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let reader = sandbox.spawn(command("while read line; do echo \"got $line\"; done; echo done")).await.unwrap();
    let mut output = sandbox.process_output(reader.pid).unwrap();
    sandbox.send_stdin(reader.pid, b"first\n".to_vec()).await.unwrap();
    assert!(read_until(&mut output, "got first").await.contains("got first"));
    sandbox.send_stdin(reader.pid, b"second\n".to_vec()).await.unwrap();
    sandbox.close_stdin(reader.pid).await.unwrap();
    let exit = sandbox.wait_process(reader.pid).await.unwrap();
    assert_eq!((exit.outcome, exit.exit_code), (Outcome::Completed, Some(0)));
    let replay = read_until(&mut sandbox.process_output(reader.pid).unwrap(), "[exit").await;
    assert!(replay.contains("got first\ngot second\ndone\n"), "a late reader replays everything: {replay}");

    let server = sandbox.spawn(command("sleep 300 & sleep 300 & echo started; wait")).await.unwrap();
    let listed = sandbox.processes();
    assert!(listed.iter().any(|p| p.pid == server.pid && p.exit.is_none()), "{listed:?}");
    assert!(read_until(&mut sandbox.process_output(server.pid).unwrap(), "started").await.contains("started"));
    sandbox.kill_process(server.pid).await.unwrap();
    let exit = sandbox.wait_process(server.pid).await.unwrap();
    assert_eq!(exit.outcome, Outcome::Killed);
    let sleeping = sandbox.run_command(command("ps -eo args | grep -c '^sleep 300$' || true")).await.unwrap();
    assert_eq!(sleeping.stdout.trim(), "0", "the children died with it");
    sandboxes.kill(sandbox.id()).unwrap().await;
    containers.finish().await;
}

#[tokio::test]
async fn a_terminal_echoes_input_and_resizes() {
    let containers = Containers::default_pool().await;
    let sandboxes = sandboxes_on(&containers.engine);
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let pty = ProcessSpec { pty: Some(PtySize { cols: 80, rows: 24 }), ..ProcessSpec::default() };
    let shell = sandbox.spawn(pty).await.unwrap();
    assert!(shell.pty);
    let mut output = sandbox.process_output(shell.pid).unwrap();
    sandbox.send_stdin(shell.pid, b"stty size; echo marker-$((6*7))\n".to_vec()).await.unwrap();
    let seen = read_until(&mut output, "marker-42").await;
    assert!(seen.contains("24 80") && seen.contains("marker-42"), "{seen}");
    sandbox.resize_pty(shell.pid, PtySize { cols: 120, rows: 40 }).await.unwrap();
    sandbox.send_stdin(shell.pid, b"stty size\n".to_vec()).await.unwrap();
    assert!(read_until(&mut output, "40 120").await.contains("40 120"));
    sandbox.kill_process(shell.pid).await.unwrap();
    assert_eq!(sandbox.wait_process(shell.pid).await.unwrap().outcome, Outcome::Killed);
    sandboxes.kill(sandbox.id()).unwrap().await;
    containers.finish().await;
}

#[tokio::test]
async fn the_browser_renders_a_workspace_page_and_inline_html() {
    let containers = Containers::default_pool().await;
    let sandboxes = sandboxes_on(&containers.engine);
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let page = "<html><head><title>Quarterly</title></head><body><h1>Sales up</h1>\
                <p id='js'></p><a href='details.html'>Details</a>\
                <script>document.getElementById('js').textContent = 'rendered ' + (6 * 7);</script></body></html>";
    sandbox.files().unwrap().write("/report.html", page.as_bytes()).await.unwrap();
    let request = RenderRequest { source: PageSource::Path("/report.html".into()), width: 640, height: 480, pdf: true };
    let rendered = sandbox.render(request).await.unwrap();
    assert_eq!(png_size(&rendered.png), (640, 480));
    assert!(rendered.pdf.as_deref().unwrap().starts_with(b"%PDF"));
    assert_eq!(rendered.title, "Quarterly");
    assert!(rendered.text.contains("Sales up") && rendered.text.contains("rendered 42"), "{}", rendered.text);
    assert_eq!(rendered.links[0].href, "file:///workspace/details.html");

    let inline = RenderRequest {
        source: PageSource::Html("<h1>Hello</h1><a href='https://example.com/'>out</a>".into()),
        width: 320,
        height: 200,
        pdf: false,
    };
    let once = containers.engine.render(inline).await.unwrap();
    assert_eq!(png_size(&once.png), (320, 200));
    assert_eq!((once.text.as_str(), once.links[0].href.as_str()), ("Hello\nout", "https://example.com/"));
    sandboxes.kill(sandbox.id()).unwrap().await;
    containers.finish().await;
}

#[tokio::test]
async fn a_sandboxs_browser_stays_warm_keeps_renders_apart_and_comes_back_after_a_crash() {
    let containers = Containers::default_pool().await;
    let sandboxes = sandboxes_on(&containers.engine);
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let files = sandbox.files().unwrap();
    let remember = "<title>a</title><p id=o></p><script>localStorage.setItem('seen', 'yes'); \
                    document.getElementById('o').textContent = 'stored';</script>";
    let recall = "<title>b</title><p id=o></p><script>document.getElementById('o').textContent = \
                  'storage ' + (localStorage.getItem('seen') || 'empty');</script>";
    files.write("/remember.html", remember.as_bytes()).await.unwrap();
    files.write("/recall.html", recall.as_bytes()).await.unwrap();
    let page =
        |path: &str| RenderRequest { source: PageSource::Path(path.into()), width: 200, height: 100, pdf: false };
    let browsers = async || sandbox.run_command(command("ls /tmp/.soulbox | grep -c '^browser-.*pid$'")).await.unwrap();

    assert_eq!(sandbox.render(page("/remember.html")).await.unwrap().text, "stored");
    let recalled = sandbox.render(page("/recall.html")).await.unwrap();
    assert_eq!((recalled.title.as_str(), recalled.text.as_str()), ("b", "storage empty"), "renders share no storage");
    assert_eq!(browsers().await.stdout, "1\n", "both renders used the one browser");

    // Killed from inside the sandbox (as its own code could), the browser is started again by
    // the next render, which succeeds.
    let killed = sandbox.run_command(command("pkill -KILL -f 'remote-debugging-[p]ipe' && echo killed")).await.unwrap();
    assert_eq!(killed.stdout, "killed\n", "{killed:?}");
    assert_eq!(sandbox.render(page("/recall.html")).await.unwrap().text, "storage empty");
    assert_eq!(browsers().await.stdout, "2\n", "a second browser replaced the killed one");

    // A page that cannot load says why (this sandbox has no network).
    let unreachable = RenderRequest { source: PageSource::Url("http://192.0.2.1/".into()), ..page("/") };
    let refused = sandbox.render(unreachable).await.unwrap_err().to_string();
    assert!(refused.contains("the page did not load: net::ERR_"), "{refused}");
    assert_eq!(
        sandbox.render(page("/remember.html")).await.unwrap().text,
        "stored",
        "the browser survives a failed load"
    );
    sandboxes.kill(sandbox.id()).unwrap().await;
    containers.finish().await;
}

/// A form served inside the sandbox: typing a name and clicking greets it.
const FORM_PAGE: &str = "<title>Form</title><input id=name><button id=greet \
    onclick=\"document.getElementById('out').textContent = 'Hello, ' + document.getElementById('name').value + '!'\">\
    Greet</button><p id=out></p>";

/// A Playwright script as its documentation writes them: the default `launch()`, no browser path.
const PLAYWRIGHT_SCRIPT: &str = r##"
import functools, http.server, threading
from playwright.sync_api import sync_playwright

handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="/workspace/site")
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
with sync_playwright() as p:
    browser = p.chromium.launch()
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{server.server_address[1]}/form.html")
    page.fill("#name", "Ada")
    page.click("#greet")
    print(page.title(), "|", page.text_content("#out"))
    page.screenshot(path="/workspace/shot.png")
    browser.close()
"##;

#[tokio::test]
async fn playwright_for_python_drives_the_images_chromium_in_a_sandbox() {
    let containers = Containers::default_pool().await;
    let sandboxes = sandboxes_on(&containers.engine);
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let files = sandbox.files().unwrap();
    files.write("/site/form.html", FORM_PAGE.as_bytes()).await.unwrap();
    files.write("/drive.py", PLAYWRIGHT_SCRIPT.as_bytes()).await.unwrap();
    let drive = ProcessSpec { deadline: Some(Duration::from_secs(120)), ..command("python3 drive.py") };
    let driven = sandbox.run_command(drive).await.unwrap();
    assert_eq!(driven.exit.exit_code, Some(0), "{driven:?}");
    assert_eq!(driven.stdout, "Form | Hello, Ada!\n", "{driven:?}");
    let shot = files.read("/shot.png").await.unwrap();
    assert_eq!(png_size(&shot), (1280, 720), "Playwright's default viewport");
    sandboxes.kill(sandbox.id()).unwrap().await;
    containers.finish().await;
}

#[tokio::test]
async fn network_is_opt_in_and_sandboxes_cannot_reach_each_other() {
    let config = soulbox_fallback::ContainerConfig { pool_size: 0, allow_network: true, ..Default::default() };
    let containers = Containers::start(config).await;
    let sandboxes = sandboxes_on(&containers.engine);
    let closed = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let interfaces = closed.run_command(command("ls /sys/class/net")).await.unwrap();
    assert_eq!(interfaces.stdout, "lo\n", "no network unless asked for");
    let open = SandboxSpec { network: true, ..SandboxSpec::default() };
    let (server, client) = (sandboxes.create(open.clone()).await.unwrap(), sandboxes.create(open).await.unwrap());
    assert!(server.run_command(command("ls /sys/class/net")).await.unwrap().stdout.contains("eth0"));
    server.spawn(command("python3 -m http.server 8000 --bind 0.0.0.0")).await.unwrap();
    let address = server.run_command(command("hostname -I")).await.unwrap().stdout.trim().to_owned();
    let own = server
        .run_command(command("for i in $(seq 100); do python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000', timeout=3); print('served')\" 2>/dev/null && break; sleep 0.1; done"))
        .await
        .unwrap();
    assert_eq!(own.stdout, "served\n", "{own:?}");
    let probe = format!(
        "python3 -c \"import socket; socket.create_connection(('{address}', 8000), 3); print('reached')\" 2>/dev/null || echo blocked"
    );
    let reached = client.run_command(command(&probe)).await.unwrap();
    assert_eq!(reached.stdout, "blocked\n", "another sandbox's container is out of reach: {reached:?}");
    for sandbox in [closed, server, client] {
        sandboxes.kill(sandbox.id()).unwrap().await;
    }
    containers.finish().await;
}

/// What a networked container's Python sees through the egress proxy: one line per probe.
const EGRESS_PROBES: &str = r#"
import os, socket, sys, urllib.request, urllib.error
port, host_port = sys.argv[1], int(sys.argv[2])
def probe(name, url):
    try:
        print(name, urllib.request.urlopen(url, timeout=10).read()[:40].decode())
    except urllib.error.HTTPError as e:
        print(name, e.code, e.read().decode().strip().split(": ", 2)[-1][:60])
    except Exception as e:
        print(name, type(e).__name__, str(e)[:60])
probe("allowed", f"http://localhost:{port}/hello")
probe("redirect", f"http://localhost:{port}/redirect/denied")
probe("metadata", "http://169.254.169.254/latest/meta-data/")
probe("private", "http://10.1.2.3/")
probe("tunnel", "https://denied.test/")
try:
    urllib.request.urlopen(f"http://localhost:{port}/big", timeout=10).read()
    print("big", "read whole")
except Exception as e:
    print("big", type(e).__name__)
gateway = os.environ["HTTPS_PROXY"].split("//")[1].rsplit(":", 1)[0]
for name, target in [("direct", ("1.1.1.1", 80)), ("dns", ("example.com", 80)), ("host", (gateway, host_port))]:
    try:
        socket.create_connection(target, 3)
        print(name, "reached")
    except OSError as e:
        print(name, "blocked")
"#;

#[tokio::test]
async fn a_networked_container_goes_out_only_through_the_egress_proxy_under_its_policy() {
    let port = crate::network::server_port().await;
    // A host service on every address: the container sees the host at its bridge's gateway,
    // and only the egress proxy's port there is open to it (the host fence).
    let host_service = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let host_port = host_service.local_addr().unwrap().port();
    let accepting = tokio::spawn(async move {
        while let Ok((connection, _)) = host_service.accept().await {
            drop(connection);
        }
    });
    let containers = Containers::start(networked()).await;
    let sandboxes = sandboxes_on(&containers.engine);
    let egress = soulbox_engine::NetworkPolicy {
        allow_cidrs: vec!["127.0.0.0/8".into()],
        deny_domains: vec!["denied.test".into()],
        max_response_bytes: Some(64 << 10),
        ..Default::default()
    };
    let sandbox =
        sandboxes.create(SandboxSpec { network: true, egress: Some(egress), ..SandboxSpec::default() }).await.unwrap();
    sandbox.files().unwrap().write("/probes.py", EGRESS_PROBES.as_bytes()).await.unwrap();
    // The proxy serves `localhost` here only because the test's server is on the host's
    // loopback and the policy allows it; a container's own `localhost` is no proxy's business.
    let probes = sandbox
        .run_command(command(&format!("env -u NO_PROXY -u no_proxy python3 probes.py {port} {host_port}")))
        .await
        .unwrap();
    assert_eq!(
        probes.stdout,
        "allowed hello from the test server\n\
         redirect 403 `denied.test` is in the network policy's denied domains\n\
         metadata 403 169.254.169.254 is a link-local (cloud metadata) address, wh\n\
         private 403 10.1.2.3 is a private address, which guests may not reach un\n\
         tunnel URLError <urlopen error Tunnel connection failed: 403 Forbidden>\n\
         big ConnectionResetError\n\
         direct blocked\n\
         dns blocked\n\
         host blocked\n",
        "{probes:?}"
    );
    let env = sandbox.run_command(command("echo $HTTPS_PROXY")).await.unwrap();
    assert!(
        env.stdout.starts_with("http://") && env.stdout.trim_end().ends_with(|c: char| c.is_ascii_digit()),
        "{env:?}"
    );
    // A dead proxy's opening in the fence (its process killed: nothing listens on its port) is
    // removed when the next proxy raises the fence; live proxies' openings stay.
    let proxy = env.stdout.trim().trim_start_matches("http://");
    let (gateway, live_port) = proxy.rsplit_once(':').unwrap();
    let dead_port = std::net::TcpListener::bind((gateway, 0)).unwrap().local_addr().unwrap().port().to_string();
    let dead_opening = [
        "-I",
        CHAIN,
        "1",
        "-p",
        "tcp",
        "-d",
        gateway,
        "--dport",
        &dead_port,
        "-m",
        "comment",
        "--comment",
        TAG,
        "-j",
        "ACCEPT",
    ];
    assert!(iptables(&dead_opening).0, "a stale opening put in place");
    let next = Containers::start(networked()).await;
    let next_sandboxes = sandboxes_on(&next.engine);
    let other = next_sandboxes.create(SandboxSpec { network: true, ..SandboxSpec::default() }).await.unwrap();
    assert_eq!(other.run_command(command("true")).await.unwrap().exit.exit_code, Some(0));
    let rules = iptables(&["-S", CHAIN]).1;
    assert!(!rules.contains(&format!("--dport {dead_port} ")), "the dead opening is gone: {rules}");
    assert!(rules.contains(&format!("--dport {live_port} ")), "the live proxy's opening stays: {rules}");
    next_sandboxes.kill(other.id()).unwrap().await;
    next.finish().await;
    sandboxes.kill(sandbox.id()).unwrap().await;
    containers.finish().await;
    accepting.abort();
}

/// A container backend that lets sandboxes have network, with no pool.
fn networked() -> soulbox_fallback::ContainerConfig {
    soulbox_fallback::ContainerConfig { pool_size: 0, allow_network: true, ..Default::default() }
}

/// Runs iptables (waiting for its lock): whether it succeeded, and what it printed.
fn iptables(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new("iptables").args(["-w", "10"]).args(args).output().expect("iptables runs");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test]
async fn a_pause_stops_the_container_and_keeps_the_workspace_and_the_next_command_starts_one() {
    let containers = Containers::start(soulbox_fallback::ContainerConfig { pool_size: 0, ..Default::default() }).await;
    let sandboxes = sandboxes_on(&containers.engine);
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let written = sandbox.run_command(command("echo kept > from_bash.txt && hostname")).await.unwrap();
    let first_host = written.stdout.trim().to_owned();
    let sleeper = sandbox.spawn(command("sleep 300")).await.unwrap();
    let instance = containers.backend.instance().to_owned();
    assert_eq!(soulbox_tests::containers::leftovers(&instance).len(), 1, "one container while it runs");

    let report = sandbox.pause().await.unwrap();
    assert_eq!((report.processes_restored, report.processes_stopped), (false, 1), "{report:?}");
    assert_eq!(
        soulbox_tests::containers::leftovers(&instance),
        Vec::<String>::new(),
        "a paused sandbox has no container"
    );
    let ended = sandbox.wait_process(sleeper.pid).await.unwrap();
    assert_eq!(ended.outcome, Outcome::Killed, "the process stopped with its container: {ended:?}");
    assert!(ended.message.as_deref().is_some_and(|m| m.contains("paused")), "{ended:?}");

    sandbox.resume().await.unwrap();
    let after = sandbox.run_command(command("cat from_bash.txt && hostname")).await.unwrap();
    assert_eq!(after.exit.exit_code, Some(0), "{after:?}");
    let mut lines = after.stdout.lines();
    assert_eq!(lines.next(), Some("kept"), "the workspace outlives the container: {after:?}");
    assert_ne!(lines.next(), Some(first_host.as_str()), "a new container");
    sandboxes.kill(sandbox.id()).unwrap().await;
    containers.finish().await;
}

#[tokio::test]
async fn commands_go_through_the_containers_agent_and_fall_back_to_exec_without_python() {
    // The runtime image has python3: processes start through its agent.
    let containers = Containers::default_pool().await;
    let sandboxes = sandboxes_on(&containers.engine);
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let missing =
        sandbox.run_command(ProcessSpec { cwd: Some("/no/such/dir".into()), ..command("echo never") }).await.unwrap();
    assert_eq!((missing.exit.exit_code, missing.stdout.as_str()), (Some(126), ""), "{missing:?}");
    let (info, mut cat) = sandbox.run_command_stream(command("cat; echo \"[$?]\"")).await.unwrap();
    let chunk = "x".repeat(100_000);
    for _ in 0..5 {
        sandbox.send_stdin(info.pid, chunk.clone().into_bytes()).await.unwrap();
    }
    sandbox.close_stdin(info.pid).await.unwrap();
    let echoed = read_until(&mut cat, "[0]").await;
    let tail = &echoed[echoed.len().saturating_sub(120)..];
    assert!(echoed.len() > 500_000 && echoed[..500_000].bytes().all(|b| b == b'x'), "stdin came through whole: {tail}");
    assert!(echoed[500_000..].starts_with("[0]"), "then end of file: {tail}");
    sandboxes.kill(sandbox.id()).unwrap().await;
    containers.finish().await;

    // The base image has no python3: every process is a `docker exec`, and works the same.
    let config = soulbox_fallback::ContainerConfig {
        image: "soulbox/base:bookworm".into(),
        pool_size: 0,
        ..soulbox_fallback::ContainerConfig::default()
    };
    let containers = Containers::start(config).await;
    let sandboxes = sandboxes_on(&containers.engine);
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    for _ in 0..2 {
        let said = sandbox.run_command(command("echo hi from exec; pwd")).await.unwrap();
        assert_eq!((said.exit.exit_code, said.stdout.as_str()), (Some(0), "hi from exec\n/workspace\n"), "{said:?}");
    }
    sandboxes.kill(sandbox.id()).unwrap().await;
    containers.finish().await;
}
