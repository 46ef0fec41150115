//! Resource addresses and `--target`/`--exclude` patterns (`[TENANT/]KIND.NAME`, `*` and `?`):
//! parsed, printed back, and matched against every address of acme's graph (the matcher must stay
//! linear: a pattern of many stars against a long name is the classic blow-up).

use super::acme_graph;
use matih::addr::ResourceAddr;
use matih::plan::AddrPattern;

/// One input.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The first line is a pattern, the second an address.
    let (pattern, rest) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(addr) = rest.parse::<ResourceAddr>() {
        assert_eq!(addr.to_string().parse::<ResourceAddr>().as_ref(), Ok(&addr), "{rest:?} does not print back");
    }
    let Ok(p) = pattern.parse::<AddrPattern>() else { return };
    let printed = p.to_string();
    assert_eq!(printed.parse::<AddrPattern>().as_ref(), Ok(&p), "{pattern:?} does not print back");
    let graph = acme_graph();
    for r in graph.apply_order() {
        let _ = p.matches(&graph.tenant.slug, &r.addr);
    }
    // A name as long as the input: matching must not be quadratic in pattern × text with many stars.
    if let Some(name) = rest.strip_prefix("kubernetes_config_map.") {
        if let Ok(addr) = format!("kubernetes_config_map.{}", name.replace(|c: char| !c.is_ascii_lowercase(), "a"))
            .parse::<ResourceAddr>()
        {
            let _ = p.matches("acme", &addr);
        }
    }
}
