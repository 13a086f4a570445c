//! The dependency rules of `src/lib.rs`, checked: the graph of top-level modules (who
//! names `crate::X` outside comments) has no cycle, and the leaves import nothing of the
//! crate but other leaves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Top-level module → the top-level modules its code names as `crate::X`.
fn module_graph(src: &Path) -> Graph {
    let mut modules = BTreeSet::new();
    for e in std::fs::read_dir(src).expect("src is readable") {
        let e = e.expect("src is readable");
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().expect("src is readable").is_dir() {
            modules.insert(name);
        } else if let Some(m) = name.strip_suffix(".rs") {
            if m != "lib" && m != "main" {
                modules.insert(m.to_owned());
            }
        }
    }
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("src is readable") {
            let p = e.expect("src is readable").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().and_then(|x| x.to_str()) != Some("rs") {
                continue;
            }
            let rel = p.strip_prefix(src).expect("a file under src");
            let first = rel
                .iter()
                .next()
                .expect("a file under src")
                .to_string_lossy();
            let from = first.trim_end_matches(".rs").to_owned();
            if !graph.contains_key(&from) {
                continue;
            }
            let text = std::fs::read_to_string(&p).expect("src is readable");
            for line in text.lines() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                for (i, _) in code.match_indices("crate::") {
                    let rest = &code[i + "crate::".len()..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if name != from && modules.contains(&name) {
                        graph.get_mut(&from).expect("a known module").insert(name);
                    }
                }
            }
        }
    }
    graph
}

/// A cycle in `graph` as the path `a → b → … → a`, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        n: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let at = path
                    .iter()
                    .position(|p| p == n)
                    .expect("an open node is on the path");
                let mut cycle = path[at..].to_vec();
                cycle.push(n.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(n.to_owned(), Mark::Open);
        path.push(n.to_owned());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(n.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_module_graph_has_no_cycle() {
    let graph = module_graph(&src());
    assert!(graph.len() > 10, "too few modules found: {graph:?}");
    assert!(
        graph["api"].contains("store"),
        "the scan misses imports: {graph:?}"
    );
    if let Some(c) = find_cycle(&graph) {
        panic!(
            "module cycle {}; the graph:\n{}",
            c.join(" → "),
            graph
                .iter()
                .map(|(a, b)| format!(
                    "  {a} → {}",
                    b.iter().cloned().collect::<Vec<_>>().join(" ")
                ))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn leaves_import_only_leaves() {
    let graph = module_graph(&src());
    let leaves = [
        "oci",
        "body",
        "config",
        "timestamp",
        "retry",
        "metrics",
        "pem",
    ];
    let allowed = |m: &str| leaves.contains(&m);
    for leaf in leaves {
        let deps = &graph[leaf];
        assert!(
            deps.iter().all(|d| allowed(d)),
            "{leaf} is a leaf (src/lib.rs) but imports {deps:?}"
        );
    }
    assert!(
        graph["upstream"].iter().all(|d| allowed(d)),
        "{:?}",
        graph["upstream"]
    );
    assert!(
        graph["oci_layout"].iter().all(|d| d == "oci"),
        "{:?}",
        graph["oci_layout"]
    );
}

#[test]
fn a_cycle_is_found_and_named() {
    let g = |edges: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    assert_eq!(
        find_cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let dir = tempfile::tempdir().expect("test setup");
    std::fs::create_dir(dir.path().join("tls")).expect("test setup");
    std::fs::write(
        dir.path().join("tls/mod.rs"),
        "use crate::upstream::Client;\n",
    )
    .expect("test setup");
    std::fs::write(
        dir.path().join("upstream.rs"),
        "// crate::tls in a comment does not count\nfn f() { crate::tls::x(); }\n",
    )
    .expect("test setup");
    let found = find_cycle(&module_graph(dir.path())).expect("a cycle through tls and upstream");
    assert!(found.contains(&"tls".to_owned()) && found.contains(&"upstream".to_owned()));
}
