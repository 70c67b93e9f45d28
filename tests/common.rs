//! Helpers shared by the end-to-end tests: run the real `clusto` binary
//! against a fresh store.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

pub struct Clusto {
    pub store: String,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Clusto {
    pub async fn fresh(backend: &str) -> Clusto {
        Clusto {
            store: clusto_store::testing::fresh_url(backend)
                .await
                .expect("fresh store"),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_clusto"));
        c.arg("--store")
            .arg(&self.store)
            .env("CLUSTO_USER", "tester")
            .env_remove("CLUSTO_STORE");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out: Output = self.cmd().args(args).output().expect("run clusto");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(
            r.code, 0,
            "clusto {args:?} failed: {}{}",
            r.stdout, r.stderr
        );
        r.stdout
    }

    /// Runs and expects exit status 1 with a one-line error; returns it.
    pub fn fail(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(
            r.code, 1,
            "clusto {args:?} should fail: {}{}",
            r.stdout, r.stderr
        );
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one-line error expected: {:?}", r.stderr);
        assert!(lines[0].starts_with("error: "), "{:?}", lines[0]);
        lines[0].trim_start_matches("error: ").to_string()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }
}

/// Runs a VM controller until nothing is left to do (at most `limit`).
pub async fn converge(
    c: &mut clusto_vm::Controller,
    limit: std::time::Duration,
) -> Vec<clusto_vm::TickReport> {
    c.converge(std::time::Duration::from_secs(1), limit)
        .await
        .expect("the controller converges")
}

/// A VM status's Ready condition: status, reason, message.
pub fn ready(st: &serde_json::Value) -> (String, String, String) {
    let r = st["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    let f = |k: &str| r[k].as_str().unwrap_or_default().to_string();
    (f("status"), f("reason"), f("message"))
}

pub const ADMIN: &str = "0123456789abcdef-admin";
pub const EDITOR: &str = "0123456789abcdef-editor";
pub const VIEWER: &str = "0123456789abcdef-viewer";

/// A running `clusto serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
    _dir: TempDir,
}

/// A directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `clusto serve` on a free loopback port with the three test tokens
/// (admin, editor, viewer) and `extra` arguments.
pub fn serve(c: &Clusto, extra: &[&str]) -> Server {
    let dir = std::env::temp_dir().join(format!(
        "clusto-api-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ rand_ish()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens");
    std::fs::write(
        &tokens,
        format!("# test tokens\n{ADMIN},root,admin\n{EDITOR},ed,editor\n{VIEWER},vi,viewer\n"),
    )
    .unwrap();
    let mut child = c
        .cmd()
        .args(["serve", "--listen", "127.0.0.1:0", "--token-file"])
        .arg(&tokens)
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let l = lines.next().expect("serve exited").unwrap();
        if let Some(u) = l.strip_prefix("clusto serve: listening on ") {
            break u.to_string();
        }
    };
    // Keep draining stderr so the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        url,
        _dir: TempDir(dir),
    }
}

fn rand_ish() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
