//! Bounded fuzzing in CI: mutated manifests and query strings must give
//! errors, never panics. Deterministic (seeded), so a failure reproduces.

use clusto_core::Inventory;
use clusto_manifest::{ApplyOptions, Source, apply, parse_sources};

use clusto_core::testing::Rng;

const TOKENS: &[&str] = &[
    "\n",
    " ",
    ":",
    "- ",
    "---\n",
    "{",
    "}",
    "[",
    "]",
    "&a ",
    "*a",
    "!!str ",
    "|",
    ">",
    "'",
    "\"",
    "#",
    "0",
    "-1",
    "99999999999999999999",
    "nic-eth:1",
    "10.0.0.0/8",
    "kind: Server\n",
    "ru: 0",
    "ru: \"9-3\"",
    "\t",
    "\u{0}",
    "é",
    "<<: *a",
    "~",
    "null",
    ".nan",
    "attrs:",
    "spec:",
    "metadata:",
    "name: x",
    "apiVersion: clusto.dev/v1alpha1\n",
];

fn corpus() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests");
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(std::fs::read_to_string(p).unwrap());
            }
        }
    }
    out
}

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut b: Vec<char> = text.chars().collect();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(b.len() + 1);
        match rng.below(4) {
            0 if !b.is_empty() => {
                let end = (at + rng.below(40)).min(b.len());
                b.drain(at.min(end)..end);
            }
            1 => {
                let t: Vec<char> = TOKENS[rng.below(TOKENS.len())].chars().collect();
                b.splice(at..at, t);
            }
            2 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = char::from_u32(rng.below(0x250) as u32).unwrap_or('x');
            }
            _ => {
                let from = rng.below(b.len() + 1);
                let len = rng.below(60).min(b.len().saturating_sub(from));
                let piece: Vec<char> = b[from..from + len].to_vec();
                b.splice(at..at, piece);
            }
        }
    }
    b.into_iter().collect()
}

#[test]
fn mutated_manifests_never_panic() {
    let corpus = corpus();
    let mut rng = Rng(7);
    let iterations = std::env::var("CLUSTO_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let mut parsed = 0;
    for _ in 0..iterations {
        let pick = rng.below(corpus.len());
        let text = mutate(&mut rng, &corpus[pick]);
        let src = Source {
            file: "fuzz.yaml".into(),
            text,
        };
        let (objects, errors) = parse_sources(std::slice::from_ref(&src));
        for e in &errors {
            assert!(e.loc.line >= 1, "{e}");
        }
        // Whatever parses must also apply (or fail) without panicking.
        let mut inv = Inventory::new();
        let _ = apply(&mut inv, &objects, &ApplyOptions::default());
        parsed += objects.len();
    }
    assert!(
        parsed > 0,
        "the mutations should leave some documents valid"
    );
}

#[test]
fn mutated_queries_never_panic() {
    let seeds = [
        "kind:server and in:dc1 and not attr:system.disk=0",
        "(name:s* or driver:basicserver) and connected-to:sw1",
        "attr:owner=\"team a\" or attr:foo,12",
    ];
    let mut rng = Rng(11);
    for _ in 0..5000 {
        let pick = rng.below(seeds.len());
        let q = mutate(&mut rng, seeds[pick]);
        let _ = clusto_core::query::parse(&q);
    }
}

#[test]
fn parse_cache_gives_the_same_objects() {
    let dir = std::env::temp_dir().join(format!("clusto-parse-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let text = clusto_manifest::generate::datacenter(30, 40);
    assert!(text.len() > 256 * 1024);
    let src = Source {
        file: "big.yaml".into(),
        text: text.clone(),
    };
    let (fresh, e1) =
        clusto_manifest::parse::parse_sources_cached(std::slice::from_ref(&src), Some(&dir));
    assert!(e1.is_empty());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "written once");
    let (cached, e2) =
        clusto_manifest::parse::parse_sources_cached(std::slice::from_ref(&src), Some(&dir));
    assert!(e2.is_empty());
    assert_eq!(cached, fresh, "a hit rebuilds exactly what parsing gave");
    // another file name, same text: positions name the new file
    let moved = Source {
        file: "moved.yaml".into(),
        text: text.clone(),
    };
    let (m, _) =
        clusto_manifest::parse::parse_sources_cached(std::slice::from_ref(&moved), Some(&dir));
    assert_eq!(m[5].loc.file, "moved.yaml");
    // a changed file misses, and an erroneous one is reported and not cached
    let broken = Source {
        file: "big.yaml".into(),
        text: text.replacen("rack: gen-r00000", "rakc: gen-r00000", 1),
    };
    let (_, e3) =
        clusto_manifest::parse::parse_sources_cached(std::slice::from_ref(&broken), Some(&dir));
    assert_eq!(e3.len(), 1, "{e3:?}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    let (_, e4) =
        clusto_manifest::parse::parse_sources_cached(std::slice::from_ref(&broken), Some(&dir));
    assert_eq!(e4, e3, "errors come from a real parse every time");
    let _ = std::fs::remove_dir_all(&dir);
}
