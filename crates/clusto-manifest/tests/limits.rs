//! Hostile manifests hit the parser's limits; the error must say which limit
//! in words, with the file and line, and what the user can do about it.

use clusto_manifest::{Source, parse_sources};

fn errors_of(text: String) -> Vec<String> {
    let (_, errors) = parse_sources(&[Source {
        file: "bomb.yaml".into(),
        text,
    }]);
    errors.iter().map(|e| e.to_string()).collect()
}

#[test]
fn an_alias_bomb_names_the_node_limit_in_words() {
    let mut lines = vec!["a: &a [x, x, x, x, x, x, x, x, x, x]".to_string()];
    for i in 1..7 {
        let prev = if i == 1 {
            "a".to_string()
        } else {
            format!("l{}", i - 1)
        };
        let refs = vec![format!("*{prev}"); 10].join(", ");
        lines.push(format!("l{i}: &l{i} [{refs}]"));
    }
    let errors = errors_of(lines.join("\n"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert!(e.starts_with("bomb.yaml:"), "{e}");
    assert!(e.contains("more than 250000 YAML nodes"), "{e}");
    assert!(e.contains("cannot be raised"), "{e}");
    assert!(!e.contains("Nodes {"), "debug text leaked: {e}");
}

#[test]
fn deep_nesting_names_the_depth_limit() {
    let text = format!(
        "kind: Server\nspec: {}x{}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let errors = errors_of(text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("nests deeper than"), "{}", errors[0]);
}
