//! `clusto serve` end to end: the real binary serving a real store, driven
//! by curl. Every path, the auth cases, paging, revisions, plan and apply
//! (all or nothing), and watch (replay, live events, bookmarks, 410).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN, Clusto, EDITOR, Server, TempDir, VIEWER, serve};
use serde_json::Value;

const BASE: &str = "/apis/clusto.dev/v1alpha1";

/// (HTTP status, body) of a request made with curl.
fn http(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    http_with(s, method, path, token, body, &[])
}

/// `http` with extra request headers.
fn http_with(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[&str],
) -> (u16, String) {
    let mut c = Command::new("curl");
    for h in headers {
        c.args(["-H", h]);
    }
    c.args([
        "-s",
        "--max-time",
        "30",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ]);
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/yaml", "--data-binary", b]);
    }
    let out = c.arg(format!("{}{path}", s.url)).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

fn get(s: &Server, path: &str, token: Option<&str>) -> (u16, Value) {
    let (code, body) = http(s, "GET", path, token, None);
    (
        code,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")),
    )
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn build(c: &Clusto) {
    c.ok(&["create", "datacenter", "dc1"]);
    c.ok(&["create", "rack", "r1", "--in", "dc1"]);
    for (s, ru) in [("s1", "3"), ("s2", "5"), ("s3", "7")] {
        c.ok(&["create", "server", s, "--in", "r1", "--ru", ru]);
    }
    c.ok(&["attr", "set", "dc1", "owner", "ops"]);
}

fn head(s: &Server) -> i64 {
    get(s, &format!("{BASE}/revisions?limit=1"), Some(VIEWER)).1["items"][0]["revision"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn reads_answer_as_the_cli_does() {
    for b in clusto_store::testing::BACKENDS {
        let c = Clusto::fresh(b).await;
        build(&c);
        let s = serve(&c, &[]);
        for p in ["/healthz", "/readyz", "/metrics"] {
            assert_eq!(http(&s, "GET", p, None, None).0, 200, "{b} {p}");
        }
        // The OpenAPI document names every path this test uses.
        let (code, doc) = get(&s, "/openapi/v3", Some(VIEWER));
        assert_eq!((code, doc["openapi"].as_str()), (200, Some("3.1.0")), "{b}");
        for p in [
            "servers",
            "servers/{name}",
            "servers/{name}/attributes",
            "servers/{name}/history",
            "racks/{name}",
            "revisions",
            "plan",
            "apply",
        ] {
            assert!(
                doc["paths"].get(format!("{BASE}/{p}")).is_some(),
                "{b}: {p} missing"
            );
        }
        // One object: exactly what `clusto get` prints.
        let (code, s1) = get(&s, &format!("{BASE}/servers/s1"), Some(VIEWER));
        assert_eq!(code, 200, "{b}");
        assert_eq!(s1, c.json(&["get", "server", "s1"]), "{b}");
        // The whole list, streamed.
        let (code, all) = get(&s, &format!("{BASE}/servers"), Some(VIEWER));
        assert_eq!(
            (code, names(&all)),
            (200, vec!["s1".into(), "s2".into(), "s3".into()]),
            "{b}"
        );
        assert_eq!(all["kind"], "ServerList");
        let rv = all["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        // Pages: two, then one, with a continue token between.
        let (_, p1) = get(&s, &format!("{BASE}/servers?limit=2"), Some(VIEWER));
        assert_eq!(names(&p1), ["s1", "s2"], "{b}");
        let token = p1["metadata"]["continue"].as_str().unwrap().to_string();
        c.ok(&["create", "server", "s25", "--in", "r1", "--ru", "9"]);
        let (_, p2) = get(
            &s,
            &format!("{BASE}/servers?limit=2&continue={token}"),
            Some(VIEWER),
        );
        // Pages of one list are one revision: s25 (created since) is not in it.
        assert_eq!(names(&p2), ["s3"], "{b}");
        assert!(p2["metadata"].get("continue").is_none(), "{b}: {p2}");
        assert_eq!(p2["metadata"]["resourceVersion"], rv.as_str(), "{b}");
        let (code, bad) = get(&s, &format!("{BASE}/servers?continue=zz"), Some(VIEWER));
        assert_eq!(
            (code, bad["reason"].as_str()),
            (400, Some("BadRequest")),
            "{b}"
        );
        // A query, and a read at an earlier revision.
        let (_, q) = get(&s, &format!("{BASE}/servers?query=name:s2*"), Some(VIEWER));
        assert_eq!(names(&q), ["s2", "s25"], "{b}");
        let (_, then) = get(
            &s,
            &format!("{BASE}/servers?resourceVersion={rv}"),
            Some(VIEWER),
        );
        assert_eq!(names(&then), ["s1", "s2", "s3"], "{b}");
        // Attributes with their source; history; the revision log.
        let (_, attrs) = get(
            &s,
            &format!("{BASE}/servers/s1/attributes?merged=true"),
            Some(VIEWER),
        );
        assert_eq!(attrs["items"][0]["key"], "owner", "{b}: {attrs}");
        assert_eq!(attrs["items"][0]["source"], "dc1", "{b}: {attrs}");
        let (_, own) = get(&s, &format!("{BASE}/servers/s1/attributes"), Some(VIEWER));
        assert_eq!(own["items"].as_array().unwrap().len(), 0, "{b}: {own}");
        let (_, hist) = get(&s, &format!("{BASE}/servers/s1/history"), Some(VIEWER));
        assert_eq!(
            hist["items"][0]["message"], "create Server s1",
            "{b}: {hist}"
        );
        assert_eq!(hist["items"][0]["user"], "tester", "{b}");
        let (_, revs) = get(&s, &format!("{BASE}/revisions?limit=2"), Some(VIEWER));
        assert_eq!(revs["items"].as_array().unwrap().len(), 2, "{b}");
        // Served from the object cache when warm, yet a write is seen at
        // once: the object's own rows, and a container's up the chain.
        for _ in 0..2 {
            assert_eq!(
                get(&s, &format!("{BASE}/servers/s1"), Some(VIEWER)).1,
                c.json(&["get", "server", "s1"])
            );
        }
        let (_, m) = http(&s, "GET", "/metrics", None, None);
        for line in [
            "clusto_api_requests_total{route=\"/apis/clusto.dev/v1alpha1/{plural}/{name}\",code=\"200\"}",
            "clusto_api_object_cache_total{result=\"hit\"}",
            "clusto_api_request_duration_seconds_count",
            "clusto_api_watchers 0",
        ] {
            assert!(m.contains(line), "{b}: {line} missing from {m}");
        }
        c.ok(&["attr", "set", "s1", "role", "db"]);
        let (_, now) = get(&s, &format!("{BASE}/servers/s1"), Some(VIEWER));
        assert_eq!(now["spec"]["attrs"][0]["value"], "db", "{b}: {now}");
        c.ok(&["rename", "dc1", "dc9"]);
        let (_, now) = get(&s, &format!("{BASE}/servers/s1"), Some(VIEWER));
        assert_eq!(now, c.json(&["get", "server", "s1"]), "{b}");
        assert_eq!(now["status"]["datacenter"], "dc9", "{b}: {now}");
        // Errors are Status objects.
        let (code, nf) = get(&s, &format!("{BASE}/servers/nope"), Some(VIEWER));
        assert_eq!(code, 404);
        assert_eq!(
            (nf["kind"].as_str(), nf["reason"].as_str()),
            (Some("Status"), Some("NotFound"))
        );
        assert_eq!(nf["details"]["name"], "nope");
        // A rack is not a server.
        assert_eq!(
            get(&s, &format!("{BASE}/servers/r1"), Some(VIEWER)).0,
            404,
            "{b}"
        );
        assert_eq!(
            get(&s, &format!("{BASE}/racks/r1"), Some(VIEWER)).0,
            200,
            "{b}"
        );
        assert_eq!(
            get(&s, &format!("{BASE}/widgets"), Some(VIEWER)).0,
            404,
            "{b}"
        );
        let (code, e) = get(
            &s,
            &format!("{BASE}/servers?resourceVersion=999"),
            Some(VIEWER),
        );
        assert_eq!(code, 400, "{b}: {e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("revision 999 does not exist"),
            "{e}"
        );
        let (code, e) = get(&s, &format!("{BASE}/servers?query=kind:"), Some(VIEWER));
        assert_eq!(code, 400, "{b}: {e}");
    }
}

#[tokio::test]
async fn tokens_decide_who_reads_and_who_writes() {
    let c = Clusto::fresh("sqlite").await;
    build(&c);
    let s = serve(&c, &[]);
    let list = format!("{BASE}/servers");
    let (code, st) = get(&s, &list, None);
    assert_eq!((code, st["reason"].as_str()), (401, Some("Unauthorized")));
    assert_eq!(get(&s, &list, Some("0123456789abcdef-wrong")).0, 401);
    assert_eq!(get(&s, &list, Some(VIEWER)).0, 200);
    let m = "apiVersion: clusto.dev/v1alpha1\nkind: Server\nmetadata: {name: s9}\nspec: {rack: r1, ru: 20}\n";
    let apply = format!("{BASE}/apply?applySet=t");
    let before = head(&s);
    // Viewers plan and dry-run; they do not apply.
    let (code, body) = http(
        &s,
        "POST",
        &format!("{BASE}/plan?applySet=t"),
        Some(VIEWER),
        Some(m),
    );
    assert_eq!(code, 200, "{body}");
    let plan: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(plan["summary"]["add"], 1, "{plan}");
    assert_eq!(plan["baseRevision"], before);
    let (code, _) = http(
        &s,
        "POST",
        &format!("{apply}&dryRun=All"),
        Some(VIEWER),
        Some(m),
    );
    assert_eq!(code, 200);
    let (code, body) = http(&s, "POST", &apply, Some(VIEWER), Some(m));
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("\"Forbidden\"") && body.contains("may not apply"),
        "{body}"
    );
    assert_eq!(head(&s), before, "nothing written");
    // Editors apply, recorded as their user; pruning takes an admin.
    let (code, body) = http(&s, "POST", &apply, Some(EDITOR), Some(m));
    assert_eq!(code, 200, "{body}");
    let done: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(done["revision"], before + 1, "{done}");
    let (_, revs) = get(&s, &format!("{BASE}/revisions?limit=1"), Some(VIEWER));
    assert_eq!(revs["items"][0]["user"], "ed");
    assert_eq!(revs["items"][0]["manager"], "applyset:t");
    let (code, _) = http(
        &s,
        "POST",
        &format!("{apply}&prune=true"),
        Some(EDITOR),
        Some(m),
    );
    assert_eq!(code, 403);
    let (code, body) = http(
        &s,
        "POST",
        &format!("{apply}&prune=true"),
        Some(ADMIN),
        Some(m),
    );
    assert_eq!(code, 200, "{body}");
    // Anonymous reads only when the server allows them, and never writes.
    drop(s);
    let s = serve(&c, &["--anonymous-read"]);
    assert_eq!(get(&s, &list, None).0, 200);
    let (code, _) = http(&s, "POST", &apply, None, Some(m));
    assert_eq!(code, 403);
}

#[tokio::test]
async fn bad_manifests_change_nothing_and_say_where() {
    let c = Clusto::fresh("sqlite").await;
    build(&c);
    let s = serve(&c, &[]);
    let before = head(&s);
    let bad = "apiVersion: clusto.dev/v1alpha1\nkind: Server\nmetadata: {name: s8}\nspec: {rack: r1, ru: 3}\n---\napiVersion: clusto.dev/v1alpha1\nkind: Server\nmetadata: {name: s7}\nspec: {rack: r1, ru: 30}\n";
    let (code, body) = http(
        &s,
        "POST",
        &format!("{BASE}/apply"),
        Some(EDITOR),
        Some(bad),
    );
    assert_eq!(code, 422, "{body}");
    let st: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["reason"], "Invalid");
    let msg = st["message"].as_str().unwrap();
    assert!(
        msg.contains("request") && msg.contains("s8") && msg.contains("overlaps s1"),
        "{msg}"
    );
    assert_eq!(head(&s), before, "all or nothing");
    let (code, body) = http(
        &s,
        "POST",
        &format!("{BASE}/plan"),
        Some(VIEWER),
        Some("kind: [oops"),
    );
    assert_eq!(code, 422, "{body}");
    let (code, _) = http(
        &s,
        "POST",
        &format!("{BASE}/apply?dryRun=Some"),
        Some(EDITOR),
        Some(bad),
    );
    assert_eq!(code, 400);
    // Malformed parameters and bodies answer with a Status too (found by
    // the API fuzzer: axum's own rejections were plain text).
    let bodies = [
        (format!("{BASE}/plan?prune=tma"), "kind: Server\n"),
        (format!("{BASE}/servers?limit=many"), ""),
        (
            format!("{BASE}/plan"),
            "kind: Server\nmetadata: {name: caf\u{fffd}}\n",
        ),
    ];
    for (path, body) in &bodies {
        let method = if body.is_empty() { "GET" } else { "POST" };
        let (code, text) = http(
            &s,
            method,
            path,
            Some(EDITOR),
            Some(body).filter(|b| !b.is_empty()).copied(),
        );
        let st: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
        assert_eq!(st["kind"], "Status", "{path}: {text}");
        assert_eq!(code, st["code"].as_u64().unwrap() as u16, "{path}: {text}");
        if !path.ends_with("/plan") {
            assert_eq!(code, 400, "{path}: {text}");
        }
    }
    // A method a path does not take (found by the API fuzzer: the answer was an empty 405),
    // the UI's paths included.
    for path in [format!("{BASE}/servers"), "/".into(), "/ui/racks/r1".into()] {
        let (code, text) = http(&s, "POST", &path, Some(ADMIN), Some("kind: Server\n"));
        assert_eq!(code, 405, "{path}: {text}");
        let st: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(st["reason"], "MethodNotAllowed", "{path}: {text}");
    }
    // An empty body is refused, never read as "prune everything".
    let before = head(&s);
    let (code, text) = http(
        &s,
        "POST",
        &format!("{BASE}/apply?prune=true"),
        Some(ADMIN),
        Some(""),
    );
    assert_eq!(code, 400, "{text}");
    assert!(
        text.contains("the request body holds no manifests"),
        "{text}"
    );
    assert_eq!(head(&s), before);
    // A body that is not UTF-8 (curl sends the bytes as they are).
    let latin1 = std::env::temp_dir().join(format!("clusto-api-latin1-{}", std::process::id()));
    std::fs::write(&latin1, b"kind: Server\nmetadata: {name: caf\xe9}\n").unwrap();
    let (code, text) = http(
        &s,
        "POST",
        &format!("{BASE}/plan"),
        Some(EDITOR),
        Some(&format!("@{}", latin1.display())),
    );
    let _ = std::fs::remove_file(&latin1);
    let st: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!((code, st["kind"].as_str()), (400, Some("Status")), "{text}");
}

/// Reads newline-delimited events from a watch until `want` of them (or
/// the time runs out).
fn watch(s: &Server, plural: &str, query: &str, want: usize, within: Duration) -> Vec<Value> {
    let mut child = Command::new("curl")
        .args(["-sN", "-H", &format!("Authorization: Bearer {VIEWER}")])
        .arg(format!("{}{BASE}/{plural}?watch=true&{query}", s.url))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let end = Instant::now() + within;
    let mut events = Vec::new();
    while events.len() < want {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => events.push(serde_json::from_str(&l).unwrap()),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    events
}

/// `entities`: every kind in one collection (search, lookups by name
/// alone, one watch); a rack's elevation; the plan as the CLI prints it.
#[tokio::test]
async fn entities_elevations_and_plan_text_serve_the_ui() {
    let c = Clusto::fresh("sqlite").await;
    build(&c);
    let s = serve(&c, &[]);
    let from = head(&s);
    let (code, all) = get(&s, &format!("{BASE}/entities"), Some(VIEWER));
    assert_eq!(code, 200, "{all}");
    assert_eq!(all["kind"], "List");
    assert_eq!(names(&all), ["dc1", "r1", "s1", "s2", "s3"]);
    assert_eq!(all["items"][1]["kind"], "Rack");
    let (_, page) = get(&s, &format!("{BASE}/entities?limit=2"), Some(VIEWER));
    assert_eq!(names(&page), ["dc1", "r1"]);
    assert!(page["metadata"]["continue"].is_string(), "{page}");
    let (_, q) = get(&s, &format!("{BASE}/entities?query=name:*1"), Some(VIEWER));
    assert_eq!(names(&q), ["dc1", "r1", "s1"]);
    let (code, r1) = get(&s, &format!("{BASE}/entities/r1"), Some(VIEWER));
    assert_eq!((code, r1.clone()), (200, c.json(&["get", "rack", "r1"])));
    // Cached or not, a name of the wrong kind is not found.
    for _ in 0..2 {
        assert_eq!(get(&s, &format!("{BASE}/servers/r1"), Some(VIEWER)).0, 404);
        assert_eq!(get(&s, &format!("{BASE}/racks/r1"), Some(VIEWER)).0, 200);
    }
    let (code, nf) = get(&s, &format!("{BASE}/entities/nope"), Some(VIEWER));
    assert_eq!(
        (code, nf["details"]["kind"].as_str()),
        (404, Some("entities"))
    );
    // The elevation is what `clusto rack show -o json` prints.
    let (code, el) = get(&s, &format!("{BASE}/racks/r1/elevation"), Some(VIEWER));
    assert_eq!(code, 200, "{el}");
    assert_eq!(el, c.json(&["rack", "show", "r1"]));
    assert_eq!(el["mounted"][1]["name"], "s2");
    assert_eq!(el["mounted"][1]["kind"], "Server");
    assert_eq!(el["mounted"][1]["ru"]["start"], 5);
    for bad in [
        "servers/s1/elevation",
        "racks/nope/elevation",
        "entities/r1/elevation",
    ] {
        assert_eq!(
            get(&s, &format!("{BASE}/{bad}"), Some(VIEWER)).0,
            404,
            "{bad}"
        );
    }
    // One watch sees every kind.
    c.ok(&["attr", "set", "r1", "owner", "bob"]);
    c.ok(&["create", "server", "s4", "--in", "r1", "--ru", "11"]);
    let ev = watch(
        &s,
        "entities",
        &format!("resourceVersion={from}"),
        2,
        Duration::from_secs(20),
    );
    let seen: Vec<(&str, &str)> = ev
        .iter()
        .map(|e| {
            (
                e["object"]["kind"].as_str().unwrap(),
                e["object"]["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [("Rack", "r1"), ("Server", "s4")], "{ev:?}");
    // The plan as text, exactly as `clusto plan` prints it.
    let manifest = "apiVersion: clusto.dev/v1alpha1\nkind: Server\nmetadata: {name: s9}\nspec: {rack: r1, ru: 20}\n";
    let (code, text) = http_with(
        &s,
        "POST",
        &format!("{BASE}/plan?applySet=ui"),
        Some(VIEWER),
        Some(manifest),
        &["Accept: text/plain"],
    );
    assert_eq!(code, 200, "{text}");
    let file = std::env::temp_dir().join(format!("clusto-plan-text-{}.yaml", std::process::id()));
    std::fs::write(&file, manifest).unwrap();
    let cli = c.ok(&["plan", "--apply-set", "ui", "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(text, cli);
    assert!(
        text.contains("+ Server s9") && text.contains("Plan: 1 to add"),
        "{text}"
    );
}

#[tokio::test]
async fn watches_replay_then_follow_live() {
    for b in clusto_store::testing::BACKENDS {
        let c = Clusto::fresh(b).await;
        build(&c);
        let s = serve(&c, &["--bookmark-seconds", "1", "--watch-window", "5"]);
        let from = head(&s);
        c.ok(&["attr", "set", "s1", "owner", "bob"]);
        c.ok(&["delete", "s3"]);
        let q = format!("resourceVersion={from}");
        let ev = std::thread::scope(|sc| {
            let h = sc.spawn(|| watch(&s, "servers", &q, 4, Duration::from_secs(20)));
            std::thread::sleep(Duration::from_millis(500));
            c.ok(&["create", "server", "s4", "--in", "r1", "--ru", "11"]);
            h.join().unwrap()
        });
        let seen: Vec<(String, String)> = ev
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_string(),
                    e["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect();
        assert_eq!(
            &seen[..3],
            &[
                ("MODIFIED".into(), "s1".into()),
                ("DELETED".into(), "s3".into()),
                ("ADDED".into(), "s4".into())
            ],
            "{b}: {ev:?}"
        );
        assert_eq!(ev[0]["object"]["spec"]["attrs"][0]["value"], "bob", "{b}");
        assert_eq!(ev[2]["object"]["spec"]["ru"], 11, "{b}");
        // Idle: a bookmark at the head.
        assert_eq!(seen[3].0, "BOOKMARK", "{b}: {ev:?}");
        assert_eq!(
            ev[3]["object"]["metadata"]["resourceVersion"],
            head(&s).to_string()
        );
        // Older than the window: 410 Gone, as the apiserver answers.
        for i in 0..5 {
            c.ok(&["attr", "set", "s2", "n", &i.to_string()]);
        }
        let (code, st) = get(
            &s,
            &format!("{BASE}/servers?watch=true&resourceVersion={from}"),
            Some(VIEWER),
        );
        assert_eq!(
            (code, st["reason"].as_str()),
            (410, Some("Expired")),
            "{b}: {st}"
        );
    }
}

/// `--tls-cert/--tls-key`: the same API over HTTPS, verified by curl
/// against the certificate; plain HTTP is refused; bad files are named.
#[tokio::test]
async fn serves_https_with_the_given_certificate() {
    let c = Clusto::fresh("sqlite").await;
    build(&c);
    let dir = std::env::temp_dir().join(format!("clusto-api-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = TempDir(dir.clone());
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=clusto-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let s = serve(
        &c,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);
    let curl = |path: &str, extra: &[&str]| {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "--cacert",
                cert.to_str().unwrap(),
            ])
            .args(extra)
            .arg(format!("{}{path}", s.url))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    assert_eq!(curl("/healthz", &[]), (true, "ok\n".to_string()));
    let auth = format!("Authorization: Bearer {VIEWER}");
    let (ok, body) = curl(&format!("{BASE}/servers"), &["-H", &auth]);
    assert!(ok, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert!(!names(&list).is_empty(), "{body}");
    // Without the CA, curl refuses the self-signed certificate; plain HTTP gets no answer.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("{}/healthz", s.url))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let plain = s.url.replace("https://", "http://");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", &format!("{plain}/healthz")])
        .output()
        .unwrap();
    assert!(!out.status.success() || !String::from_utf8_lossy(&out.stdout).contains("ok"));
    // A key file without a key, and a certificate without one, are named.
    let r = c.run(&[
        "serve",
        "--anonymous-read",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        cert.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("tls.crt"), "{}", r.stderr);
    let r = c.run(&[
        "serve",
        "--anonymous-read",
        "--tls-cert",
        key.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("no certificate in it"), "{}", r.stderr);
    let r = c.run(&[
        "serve",
        "--anonymous-read",
        "--tls-cert",
        cert.to_str().unwrap(),
    ]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("required arguments were not provided") && r.stderr.contains("--tls-key"),
        "{}",
        r.stderr
    );
}

/// schemathesis (from PyPI; `.ci/deps` installs it) generates requests
/// from `/openapi/v3` and checks every answer against it: status codes,
/// content types, response schemas, auth. 0 failures.
#[tokio::test]
async fn schemathesis_finds_nothing_against_the_openapi_document() {
    let st = std::env::var("SCHEMATHESIS").unwrap_or_else(|_| {
        format!(
            "{}/.cache/schemathesis-venv/bin/st",
            std::env::var("HOME").unwrap()
        )
    });
    assert!(
        std::path::Path::new(&st).exists(),
        "{st} is missing: run `bash .ci/deps test`"
    );
    let c = Clusto::fresh("sqlite").await;
    c.ok(&[
        "apply",
        "-f",
        &format!("{}/../../manifests", env!("CARGO_MANIFEST_DIR")),
    ]);
    let s = serve(&c, &[]);
    // The document as served, minus `watch` (see tests/schemathesis/schemathesis.toml).
    let (code, mut doc) = get(&s, "/openapi/v3", Some(ADMIN));
    assert_eq!(code, 200);
    for op in doc["paths"].as_object_mut().unwrap().values_mut() {
        let get = op.get_mut("get").and_then(|g| g.get_mut("parameters"));
        if let Some(params) = get.and_then(|p| p.as_array_mut()) {
            params.retain(|p| p["name"] != "watch");
        }
    }
    let file = std::env::temp_dir().join(format!("clusto-openapi-{}.json", std::process::id()));
    std::fs::write(&file, doc.to_string()).unwrap();
    let config = format!(
        "{}/../../tests/schemathesis/schemathesis.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    // Run where its cache of findings (.schemathesis/) cannot land in the repository.
    let out = Command::new(&st)
        .current_dir(std::env::temp_dir())
        .args(["--no-color", "--config-file", &config, "run"])
        .arg(&file)
        .args(["--url", &s.url, "--checks", "all", "--max-examples", "15"])
        .args(["--request-timeout", "10", "--seed", "1"])
        .args(["-H", &format!("Authorization: Bearer {ADMIN}")])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("passed"), "{text}");
}

/// `clusto --server URL --token T`: the same reads print the same output as
/// with the database, plan and apply go through the server (errors named
/// against the user's files), and the rest is refused with what works.
#[tokio::test]
async fn the_cli_reads_plans_and_applies_through_the_server() {
    let c = Clusto::fresh("sqlite").await;
    build(&c);
    c.ok(&["create", "pool", "web", "--set", "type=unique"]);
    c.ok(&["insert", "web", "s1"]);
    c.ok(&["attr", "set", "s1", "system.memory", "4096"]);
    let s = serve(&c, &[]);
    let remote = |token: Option<&str>, args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_clusto"));
        cmd.env_remove("CLUSTO_STORE")
            .env_remove("CLUSTO_TOKEN")
            .args(["--server", &s.url]);
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        let out = cmd.args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let rev = head(&s).to_string();
    for args in [
        vec!["get", "all"],
        vec!["get", "all", "-o", "json"],
        vec!["get", "server", "-o", "yaml"],
        vec!["get", "server", "s1"],
        vec!["get", "server", "s1", "-o", "json"],
        vec!["get", "server", "--at", "2"],
        vec!["attr", "get", "s1", "--merged"],
        vec!["attr", "get", "s1", "system.memory", "-o", "json"],
        vec!["query", "in:r1 and attr:owner=ops"],
        vec!["query", "kind:server", "-o", "json", "--at", &rev],
        vec!["history", "s1"],
        vec!["history", "s1", "-o", "json", "--limit", "1"],
        vec!["rack", "show", "r1"],
        vec!["rack", "show", "r1", "--rear", "-o", "json"],
        vec!["describe", "s1", "-o", "json"],
        vec!["describe", "s1"],
        vec!["describe", "r1"],
    ] {
        let (code, out, err) = remote(Some(VIEWER), &args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert_eq!(out, c.ok(&args), "{args:?}");
    }
    // The revision log lists revisions (their changes are per object).
    let (_, log, _) = remote(Some(VIEWER), &["history", "--limit", "2", "--since", "1"]);
    assert_eq!(log.matches("revision ").count(), 2, "{log}");
    let (_, desc, _) = remote(Some(VIEWER), &["describe", "s1"]);
    for line in [
        "Name:     s1",
        "Rack:     r1 RU 3",
        "In:       r1, web",
        "Pools:    web",
        "system.memory = 4096",
    ] {
        assert!(desc.contains(line), "{line} missing from {desc}");
    }
    // Errors in the CLI's words, one line each.
    for (args, want) in [
        (vec!["get", "server", "nope"], "nope not found"),
        (vec!["get", "rack", "s1"], "s1 is a Server, not a rack"),
        (
            vec!["attr", "get", "s1", "color"],
            "s1 has no attribute color",
        ),
        (
            vec!["create", "server", "x"],
            "needs the database (--store); through --server: get,",
        ),
        (vec!["query", "kind:"], "query"),
    ] {
        let (code, _, err) = remote(Some(VIEWER), &args);
        assert_eq!((code, err.lines().count()), (1, 1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let (code, _, err) = remote(None, &["get", "server"]);
    assert_eq!(code, 1);
    assert!(err.contains("bearer token is required"), "{err}");
    let (code, _, err) = remote(Some(VIEWER), &["--store", &c.store, "get", "server"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot be used with"), "{err}");
    // Plan and apply: the same plan text; the rule broken named by file and line.
    let dir = std::env::temp_dir().join(format!("clusto-remote-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = TempDir(dir.clone());
    let a = dir.join("a.yaml");
    std::fs::write(&a, "apiVersion: clusto.dev/v1alpha1\nkind: Server\nmetadata: {name: s8}\nspec: {rack: r1, ru: 30}\n").unwrap();
    let b = dir.join("b.yaml");
    std::fs::write(&b, "apiVersion: clusto.dev/v1alpha1\nkind: Server\nmetadata: {name: s9}\nspec: {rack: r1, ru: 3}\n").unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let (code, plan, _) = remote(Some(VIEWER), &["plan", "-f", a, "--detailed-exitcode"]);
    assert_eq!(code, 2);
    assert_eq!(plan, c.run(&["plan", "-f", a]).stdout);
    let before = head(&s);
    let (code, _, err) = remote(Some(EDITOR), &["apply", "-f", a, "-f", b]);
    assert_eq!(code, 1);
    let local = c.run(&["apply", "-f", a, "-f", b]);
    assert_eq!(
        err, local.stderr,
        "the same errors, at the same file and line"
    );
    assert!(err.contains("b.yaml:4:"), "{err}");
    assert_eq!(head(&s), before, "nothing written");
    let (code, _, err) = remote(Some(VIEWER), &["apply", "-f", a]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Forbidden") || err.contains("may not"),
        "{err}"
    );
    let (code, out, err) = remote(Some(EDITOR), &["apply", "-f", a]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Apply complete! Resources: 1 added"), "{out}");
    let last = &c.json(&["history", "--limit", "1"])["items"][0];
    assert_eq!(last["user"], "ed", "the token's user is recorded: {last}");
    let (_, again, _) = remote(Some(EDITOR), &["apply", "-f", a]);
    assert_eq!(again, "No changes.\n");
}

/// Lists and GETs served from the object cache stay exact: after each kind
/// of change (the object's own rows, a cable peer's or a container's name,
/// an address's manager, a new or deleted object), the API's list is what
/// `clusto get server -o json` prints, item for item.
#[tokio::test]
async fn cached_lists_follow_every_change() {
    let c = Clusto::fresh("sqlite").await;
    build(&c);
    c.ok(&["create", "networkswitch", "sw1", "--in", "r1", "--ru", "40"]);
    c.ok(&["connect", "s1:nic-eth:1", "sw1:nic-eth:3"]);
    c.ok(&["create", "ipmanager", "net1", "--set", "cidr=10.9.0.0/24"]);
    c.ok(&["ip", "allocate", "net1", "s2"]);
    c.ok(&["create", "pool", "web"]);
    c.ok(&["insert", "web", "s3"]);
    let s = serve(&c, &[]);
    let same = |what: &str| {
        // Twice: the second list is served from what the first cached.
        for _ in 0..2 {
            let (code, list) = get(&s, &format!("{BASE}/servers"), Some(VIEWER));
            assert_eq!(code, 200, "{what}");
            assert_eq!(
                list["items"],
                c.json(&["get", "server"])["items"],
                "after {what}"
            );
            let (_, one) = get(&s, &format!("{BASE}/servers/s1"), Some(VIEWER));
            assert_eq!(one, c.json(&["get", "server", "s1"]), "after {what}");
        }
    };
    same("start");
    let steps: &[(&str, &[&str])] = &[
        ("an attribute", &["attr", "set", "s1", "role", "db"]),
        ("a cable peer's rename", &["rename", "sw1", "sw9"]),
        ("a datacenter's rename", &["rename", "dc1", "dc7"]),
        ("a rack's rename", &["rename", "r1", "r5"]),
        ("a pool's rename", &["rename", "web", "www"]),
        ("an address manager's rename", &["rename", "net1", "net5"]),
        ("an address released", &["ip", "release", "s2"]),
        (
            "a new server",
            &["create", "server", "s0", "--in", "r5", "--ru", "30"],
        ),
        ("a deleted server", &["delete", "s3"]),
        ("a cable removed", &["disconnect", "s1:nic-eth:1"]),
    ];
    for (what, args) in steps {
        c.ok(args);
        same(what);
    }
}

/// Every read `--server` serves prints exactly what `--store` prints, on
/// the example manifests (VMs, addresses, cables, pools, a layout, a
/// generic entity); errors name the same object and rule; fsck is an
/// admin's.
#[tokio::test]
async fn every_read_prints_the_same_through_the_server() {
    let c = Clusto::fresh("sqlite").await;
    c.ok(&[
        "apply",
        "-f",
        &format!("{}/../../manifests", env!("CARGO_MANIFEST_DIR")),
    ]);
    c.ok(&["create", "entity", "gadget1"]);
    let s = serve(&c, &[]);
    let remote = |token: &str, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_clusto"))
            .env_remove("CLUSTO_STORE")
            .args(["--server", &s.url, "--token", token])
            .args(args)
            .output()
            .unwrap();
        common::Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    };
    let commands: &[&[&str]] = &[
        &["describe", "xenhost1"],
        &["describe", "sv3-001"],
        &["describe", "subnet-dmz"],
        &["describe", "servernames"],
        &["describe", "vm-web1"],
        &["describe", "sv3-001-sw1"],
        &["locate", "xenhost1"],
        &["locate", "xenhost1", "-o", "json"],
        &["locate", "gadget1"],
        &["contents", "sv3-001"],
        &["contents", "eqix-sv3", "-r", "-o", "yaml"],
        &["parents", "xenhost1"],
        &["parents", "xenhost1", "-r", "-o", "json", "--at", "1"],
        &["pool", "members", "production"],
        &["pool", "members", "production", "unallocated", "-o", "name"],
        &["port", "list", "sv3-001-sw1"],
        &["port", "list", "sv3-001-sw1", "--connected", "-o", "json"],
        &["port", "list", "xenhost1", "--free"],
        &["ip", "list", "subnet-dmz"],
        &["ip", "list", "subnet-dmz", "-o", "yaml"],
        &["vm", "list"],
        &["vm", "list", "--manager", "xen-sv3", "-o", "json"],
        &["vm", "explain", "vm-web1"],
        &["vm", "explain", "vm-db1", "-o", "json"],
        &["export"],
        &["export", "in:sv3-001"],
        &[
            "export",
            "--format",
            "crd",
            "--namespace",
            "infra",
            "kind:server",
        ],
        &["get", "entity"],
        &["fsck", "-o", "json"],
    ];
    for args in commands {
        let local = c.run(args);
        let r = remote(ADMIN, args);
        assert_eq!((r.code, &r.stderr), (0, &String::new()), "{args:?}");
        assert_eq!(r.stdout, local.stdout, "{args:?}");
    }
    assert!(c.ok(&["export"]).contains("name: gadget1"));
    assert_eq!(remote(ADMIN, &["fsck"]).stderr, "fsck: no violations\n");
    for (args, want) in [
        (vec!["locate", "nope"], "nope not found"),
        (
            vec!["pool", "members", "production", "nope"],
            "nope not found",
        ),
        (
            vec!["pool", "members", "xenhost1"],
            "xenhost1 is a Server, not a Pool",
        ),
        (
            vec!["ip", "list", "xenhost1"],
            "xenhost1 is a Server, not an IPManager",
        ),
        (
            vec!["vm", "explain", "xenhost1"],
            "xenhost1 is a Server, not a VirtualMachine",
        ),
        (
            vec!["contents", "sv3-001", "--at", "99"],
            "revision 99 does not exist",
        ),
    ] {
        let (local, r) = (c.run(&args), remote(VIEWER, &args));
        assert_eq!((local.code, r.code), (1, 1), "{args:?}");
        assert!(local.stderr.contains(want), "{args:?}: {}", local.stderr);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
    }
    let r = remote(VIEWER, &["fsck"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("may not run fsck"), "{}", r.stderr);
}

/// The views' paths: the same JSON the CLI prints, each kind's own view
/// only under its collection, the object's collection checked, and fsck
/// for admins only.
#[tokio::test]
async fn views_answer_with_what_the_cli_prints() {
    let c = Clusto::fresh("sqlite").await;
    build(&c);
    c.ok(&["create", "pool", "web"]);
    c.ok(&["create", "pool", "db"]);
    c.ok(&["insert", "web", "s1"]);
    c.ok(&["insert", "web", "s2"]);
    c.ok(&["insert", "db", "s2"]);
    let s = serve(&c, &[]);
    let view = |path: &str| get(&s, &format!("{BASE}/{path}"), Some(VIEWER));
    assert_eq!(view("entities/s1/locate"), (200, c.json(&["locate", "s1"])));
    assert_eq!(view("servers/s1/locate").1, c.json(&["locate", "s1"]));
    assert_eq!(
        view("racks/r1/contents?recursive=true"),
        (200, c.json(&["contents", "r1", "-r"]))
    );
    assert_eq!(
        view("entities/s1/parents?recursive=true").1,
        c.json(&["parents", "s1", "-r"])
    );
    assert_eq!(
        view("pools/web/members?and=db").1,
        c.json(&["pool", "members", "web", "db"])
    );
    assert_eq!(view("pools/web/members").1["items"], Value::Null);
    assert_eq!(view("pools/web/members").1.as_array().unwrap().len(), 2);
    assert_eq!(view("entities/s1/ports").1, c.json(&["port", "list", "s1"]));
    let d = view("entities/s1/description").1;
    assert_eq!(
        (d["name"].as_str(), d["rack"][0].as_str()),
        (Some("s1"), Some("r1"))
    );
    // Under another kind's collection the object is not found; a view of
    // one kind exists only under that kind; a missing name is a 404.
    for (path, code) in [
        ("racks/s1/locate", 404),
        ("servers/s1/members", 404),
        ("pools/s1/members", 400),
        ("pools/web/members?and=nope", 404),
        ("entities/nope/locate", 404),
        ("entities/s1/nothing", 404),
        ("entities/s1/locate?resourceVersion=x", 400),
        ("entities/s1/contents?recursive=maybe", 400),
    ] {
        let (got, status) = view(path);
        assert_eq!(
            (got, status["kind"].as_str()),
            (code, Some("Status")),
            "{path}: {status}"
        );
    }
    assert_eq!(
        view("pools/web/members?and=nope").1["details"]["name"],
        "nope"
    );
    let (code, st) = get(&s, &format!("{BASE}/fsck"), Some(VIEWER));
    assert_eq!((code, st["reason"].as_str()), (403, Some("Forbidden")));
    let (code, found) = get(&s, &format!("{BASE}/fsck"), Some(ADMIN));
    assert_eq!((code, found), (200, serde_json::json!({"violations": []})));
    assert_eq!(get(&s, &format!("{BASE}/fsck"), None).0, 401);
}
