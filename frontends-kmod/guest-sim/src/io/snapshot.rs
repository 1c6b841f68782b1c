//! A copy of a xenstore subtree, for configuration readers that work on a
//! snapshot (the protocol crate's sndif card reader).

use std::collections::BTreeMap;

use pvgate_platform::Store;

/// Read every node at most `depth` levels below `root` (values of
/// directories included, usually empty).
pub async fn snapshot(store: &dyn Store, root: &str, depth: usize) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(root.to_string(), 0usize)];
    while let Some((path, level)) = todo.pop() {
        if let Ok(Some(v)) = store.read_opt(&path).await {
            out.insert(path.clone(), v);
        }
        if level >= depth {
            continue;
        }
        if let Ok(children) = store.directory(&path).await {
            for c in children {
                todo.push((format!("{path}/{c}"), level + 1));
            }
        }
    }
    out
}
