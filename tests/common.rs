//! Helpers shared by the end-to-end tests: run the real `clusto` binary
//! against a fresh store.

#![allow(dead_code)]

use std::process::{Command, Output};

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
