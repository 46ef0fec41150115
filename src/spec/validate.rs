//! Checks on the meaning of single values: slugs, UUIDs, e-mail addresses, environment-variable
//! names, DNS names, image tags. Each check returns the normalized value or the diagnostic
//! message (one line, lower case, no trailing period); the caller attaches the location.
//!
//! **Invariant:** pure functions of one value (and, for catalog names, of the catalog). Nothing
//! here knows where a value was written or which block it came from.

use crate::catalog::Catalog;

use super::schema::closest;

/// The longest Kubernetes namespace name (a DNS-1123 label).
const MAX_LABEL: usize = 63;
/// Every tenant namespace is `matih-{slug}`.
pub const NAMESPACE_PREFIX: &str = "matih-";
/// Its ingress controller, Ingress and TLS Secret live in `matih-{slug}-edge` (the edge namespace).
pub const EDGE_SUFFIX: &str = "-edge";
/// So a slug has at most this many characters.
pub const MAX_SLUG: usize = MAX_LABEL - NAMESPACE_PREFIX.len() - EDGE_SUFFIX.len();

/// The tenant's namespace and its edge namespace.
pub fn namespaces(slug: &str) -> (String, String) {
    (format!("{NAMESPACE_PREFIX}{slug}"), format!("{NAMESPACE_PREFIX}{slug}{EDGE_SUFFIX}"))
}

/// A tenant slug: a DNS-1123 label that starts with a letter, short enough that `matih-{slug}-edge`
/// is itself a valid label, and not ending in `-edge` (tenant `x-edge`'s namespace would be tenant
/// `x`'s edge namespace).
pub fn slug(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("tenant slug must not be empty".into());
    }
    // The length is checked below, with its own message.
    if !(label_shape(s) && s.starts_with(|c: char| c.is_ascii_lowercase())) {
        return Err(format!(
            "invalid tenant slug {s:?}: must be a DNS-1123 label (lowercase letters, digits and '-', \
             starting with a letter and ending with a letter or digit)"
        ));
    }
    if s.len() > MAX_SLUG {
        return Err(format!(
            "tenant slug {s:?} is too long ({} characters): namespace \"{NAMESPACE_PREFIX}{s}{EDGE_SUFFIX}\" must be \
             at most {MAX_LABEL} characters, so a slug has at most {MAX_SLUG}",
            s.len()
        ));
    }
    if let Some(owner) = s.strip_suffix(EDGE_SUFFIX) {
        return Err(format!(
            "tenant slug {s:?} must not end in \"{EDGE_SUFFIX}\": namespace \"{NAMESPACE_PREFIX}{s}\" is the edge \
             namespace of tenant {owner:?}"
        ));
    }
    Ok(())
}

/// A tenant id: a UUID in the canonical hyphenated form (8-4-4-4-12 hex digits, either case),
/// returned in lower case. Braced, URN and unhyphenated forms are refused so that one tenant has
/// exactly one spelling in labels and state; the nil UUID is refused as a certain mistake.
pub fn uuid(s: &str) -> Result<String, String> {
    let hyphens_ok = s.len() == 36 && s.char_indices().all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) == (c == '-'));
    let parsed = uuid::Uuid::try_parse(s).ok().filter(|_| hyphens_ok);
    match parsed {
        None => Err(format!(
            "id must be a UUID in canonical form (8-4-4-4-12 hexadecimal digits, like \
             550e8400-e29b-41d4-a716-446655440000), found {s:?}"
        )),
        Some(u) if u.is_nil() => Err("id must not be the nil UUID".into()),
        Some(u) => Ok(u.hyphenated().to_string()),
    }
}

/// A plausible e-mail address: exactly one `@`, a non-empty local part, a domain with a dot that
/// neither starts nor ends with one, and no whitespace or control characters. Deliverability is
/// not the tool's business; catching `admin@acme` and `ops acme.example` is.
pub fn email(attr: &str, s: &str) -> Result<(), String> {
    // RFC 5322's dot-atom on both sides, nothing else: no quoted local part, no comment, no display
    // name, no second address. These addresses go into SMTP headers and Alertmanager's
    // configuration, where a `,`, `<`, `"` or line break would add recipients or fields.
    const ATEXT: &str = "!#$%&'*+/=?^_`{|}~-";
    let atom = |a: &str| !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || ATEXT.contains(c));
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let ok = match s.split_once('@') {
        Some((local, domain)) => {
            local.len() <= 64
                && s.len() <= 254
                && local.split('.').all(atom)
                && domain.contains('.')
                && domain.split('.').all(label)
                && domain.rsplit('.').next().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_alphabetic()))
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{attr} {s:?} is not an e-mail address (expected name@domain.example)"))
    }
}

/// The name of an environment variable: `[A-Z_][A-Z0-9_]*`. The value is not echoed back,
/// because the commonest mistake is pasting the secret itself (a webhook URL) here.
pub fn env_var_name(attr: &str, s: &str) -> Result<(), String> {
    let ok = s.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{attr} must be the name of an environment variable ([A-Z_][A-Z0-9_]*, like ACME_SLACK_WEBHOOK); \
             the secret itself goes in that variable, never in the file"
        ))
    }
}

/// A DNS-1123 label (Kubernetes object names such as namespaces): the one check of the label
/// rule; tenant slugs are labels that also start with a letter and leave room for `matih-`.
pub fn is_dns_label(s: &str) -> bool {
    (1..=MAX_LABEL).contains(&s.len()) && label_shape(s)
}

/// A label's characters, whatever its length: lowercase letters, digits and '-', starting and
/// ending with a letter or digit.
fn label_shape(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A Kubernetes namespace name.
pub fn namespace(attr: &str, s: &str) -> Result<(), String> {
    if is_dns_label(s) {
        Ok(())
    } else {
        Err(format!(
            "{attr} {s:?} is not a valid namespace name (a DNS-1123 label: at most 63 lowercase letters, \
             digits and '-', starting and ending with a letter or digit)"
        ))
    }
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters (Kubernetes object names
/// such as a ClusterIssuer).
pub fn dns_subdomain(attr: &str, s: &str) -> Result<(), String> {
    if s.len() <= 253 && s.split('.').all(is_dns_label) {
        Ok(())
    } else {
        Err(format!(
            "{attr} {s:?} is not a valid Kubernetes name (lowercase letters, digits, '-' and '.', \
             at most 253 characters)"
        ))
    }
}

/// A fully qualified DNS name such as `matih.ai`: at least two labels of letters, digits and
/// `-` (case-insensitive, stored in lower case), no trailing dot, at most 253 characters.
pub fn dns_name(attr: &str, s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=MAX_LABEL).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if lower.len() <= 253 && lower.contains('.') && lower.split('.').all(label_ok) {
        Ok(lower)
    } else {
        Err(format!("{attr} {s:?} is not a valid DNS name (like matih.ai: dot-separated labels, no trailing dot)"))
    }
}

/// A host name or IP address to connect to (no scheme, no port, no path).
pub fn host(attr: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
        && !s.contains("://");
    if ok && (s.parse::<std::net::IpAddr>().is_ok() || !s.contains(':')) {
        Ok(())
    } else {
        Err(format!("{attr} {s:?} is not a host name or IP address (no scheme, port or path)"))
    }
}

/// A container registry: a host with an optional port and path, no scheme (`matih.azurecr.io`,
/// `localhost:5000/mirror`).
pub fn registry(attr: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && !s.contains("://")
        && !s.ends_with('/')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_' | '/'));
    if ok {
        Ok(())
    } else {
        Err(format!("{attr} {s:?} is not a container registry (like matih.azurecr.io, without a scheme)"))
    }
}

/// A CIDR block, IPv4 (`10.0.0.0/8`) or IPv6 (`fd00::/8`), with no host bits set past the prefix.
pub fn cidr(attr: &str, s: &str) -> Result<(), String> {
    let bad = || format!("{attr} element {s:?} is not a CIDR block (like 10.20.0.5/32 or fd00::/8)");
    let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
    let addr: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    // `prefix` spelled plainly: no sign, no leading zeros.
    if prefix.to_string().len() != s.len() - addr_len(s) - 1 {
        return Err(bad());
    }
    let host_bits_set = match addr {
        std::net::IpAddr::V4(a) => prefix > 32 || (prefix < 32 && u32::from(a) & (u32::MAX >> prefix) != 0),
        std::net::IpAddr::V6(a) => prefix > 128 || (prefix < 128 && u128::from(a) & (u128::MAX >> prefix) != 0),
    };
    if prefix > if addr.is_ipv4() { 32 } else { 128 } {
        return Err(bad());
    }
    if host_bits_set {
        return Err(format!("{attr} element {s:?} has address bits set past /{prefix}"));
    }
    Ok(())
}

fn addr_len(s: &str) -> usize {
    s.find('/').unwrap_or(s.len())
}

/// An image pinned by digest, `REPOSITORY@sha256:HEX` (64 lowercase hex digits; the repository a
/// registry host and path, no tag): returns the repository and `sha256:HEX`.
pub fn pinned_image<'s>(attr: &str, s: &'s str) -> Result<(&'s str, &'s str), String> {
    let bad = |why: &str| {
        format!("{attr} element {s:?} is not an image pinned by digest (REPOSITORY@sha256:<64 hex digits>): {why}")
    };
    let (repository, digest) = s.split_once('@').ok_or_else(|| bad("no '@'"))?;
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| bad("the digest must start with sha256:"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(bad("the digest must be 64 lowercase hex digits"));
    }
    let last = repository.rsplit('/').next().unwrap_or(repository);
    if repository.is_empty() || last.contains(':') {
        return Err(bad("the repository has a tag or is empty"));
    }
    let ok = repository.split('/').all(|part| {
        !part.is_empty()
            && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_' | ':'))
    });
    if !ok {
        return Err(bad("the repository must be lowercase path components separated by '/'"));
    }
    Ok((repository, digest))
}

/// A container image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` (the OCI distribution rule).
pub fn image_tag(attr: &str, s: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{attr} {s:?} is not an image tag (letters, digits, '_', '.' and '-', at most 128, \
             not starting with '.' or '-')"
        ))
    }
}

/// A non-empty, single-line free text (display names).
pub fn text(attr: &str, s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        Err(format!("{attr} must not be empty"))
    } else if s.chars().any(char::is_control) {
        Err(format!("{attr} must be a single line of text without control characters"))
    } else {
        Ok(())
    }
}

/// The catalog's tier names, in the order the catalog gives them. (`Catalog::tiers` is a
/// `BTreeMap` today, so that order is alphabetical; this is the one place to change if the
/// catalog grows a declared order.)
/// The catalog's tier names in the order the catalog writes them (by position in its file; tiers
/// without a position, as in test catalogs, by name).
pub fn tier_names(catalog: &Catalog) -> Vec<&str> {
    let mut tiers: Vec<_> = catalog.tiers.values().collect();
    tiers.sort_by_key(|t| (t.location.is_none(), t.location.clone(), t.name.clone()));
    tiers.into_iter().map(|t| t.name.as_str()).collect()
}

pub fn tier(catalog: &Catalog, s: &str) -> Result<(), String> {
    if catalog.tier(s).is_some() {
        return Ok(());
    }
    Err(format!("unknown tier {s:?} (expected {})", tier_names(catalog).join(", ")))
}

pub fn region(catalog: &Catalog, s: &str) -> Result<(), String> {
    if catalog.regions.iter().any(|r| r == s) {
        return Ok(());
    }
    Err(format!("unknown region {s:?} (expected {})", catalog.regions.join(", ")))
}

/// The catalog's service names, in catalog order.
pub fn service_names(catalog: &Catalog) -> Vec<&str> {
    catalog.services.iter().map(|s| s.name.as_str()).collect()
}

/// A catalog service name, with a suggestion for a near miss.
pub fn service(catalog: &Catalog, s: &str) -> Result<(), String> {
    if catalog.service(s).is_some() {
        return Ok(());
    }
    let known = service_names(catalog);
    Err(match closest(s, &known) {
        Some(guess) => format!("unknown service {s:?} (did you mean {guess:?}?)"),
        None => format!("unknown service {s:?} (expected one of {})", known.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_dns_labels_that_fit_in_a_namespace() {
        assert_eq!(slug("acme"), Ok(()));
        assert_eq!(slug("a1-b2"), Ok(()));
        assert_eq!(slug(&"a".repeat(52)), Ok(()));
        assert!(slug(&"a".repeat(53)).unwrap_err().contains("at most 52"));
        assert_eq!(slug("edge"), Ok(()));
        assert_eq!(slug("edge-acme"), Ok(()));
        assert!(slug("acme-edge").unwrap_err().contains("the edge namespace of tenant \"acme\""));
        for bad in ["", "Acme", "1acme", "acme-", "ac_me", "ac.me", "-acme", "ácme"] {
            assert!(slug(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn uuids_must_be_canonical_and_are_lowercased() {
        assert_eq!(uuid("550E8400-E29B-41D4-A716-446655440000").as_deref(), Ok("550e8400-e29b-41d4-a716-446655440000"));
        for bad in [
            "550e8400e29b41d4a716446655440000",
            "{550e8400-e29b-41d4-a716-446655440000}",
            "urn:uuid:550e8400-e29b-41d4-a716-446655440000",
            "550e8400-e29b-41d4-a716-44665544000g",
            "550e8400-e29b41d4-a716-4466554400000",
        ] {
            assert!(uuid(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(uuid("00000000-0000-0000-0000-000000000000"), Err("id must not be the nil UUID".into()));
    }

    #[test]
    fn emails_need_one_at_and_a_dotted_domain() {
        assert_eq!(email("e", "admin@acme.example"), Ok(()));
        assert_eq!(email("e", "first.last+tag@mail.acme.example"), Ok(()));
        for bad in ["admin", "@acme.example", "admin@acme", "a@b@c.d", "a b@c.d", "a@.c", "a@c.", "a@b..c"] {
            assert!(email("e", bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn env_var_names_are_upper_snake_case() {
        assert_eq!(env_var_name("v", "ACME_SLACK_WEBHOOK"), Ok(()));
        assert_eq!(env_var_name("v", "_X1"), Ok(()));
        for bad in ["", "1X", "acme", "A-B", "https://hooks.slack.com/services/T0/B0/x"] {
            let err = env_var_name("v", bad).unwrap_err();
            assert!(bad.is_empty() || !err.contains(bad), "the value must not be echoed: {err}");
        }
    }

    #[test]
    fn dns_names_need_two_labels() {
        assert_eq!(dns_name("z", "Matih.AI").as_deref(), Ok("matih.ai"));
        for bad in ["matih", "matih.ai.", "-a.b", "a..b", "a_b.c", "https://matih.ai"] {
            assert!(dns_name("z", bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn hosts_registries_and_tags() {
        assert_eq!(host("h", "pg.internal"), Ok(()));
        assert_eq!(host("h", "10.0.0.5"), Ok(()));
        assert_eq!(host("h", "::1"), Ok(()));
        assert!(host("h", "pg.internal:5432").is_err());
        assert!(host("h", "postgres://pg").is_err());
        assert_eq!(registry("r", "localhost:5000/mirror"), Ok(()));
        assert!(registry("r", "https://matih.azurecr.io").is_err());
        assert_eq!(image_tag("t", "1.4.2"), Ok(()));
        assert!(image_tag("t", ".hidden").is_err());
        assert!(image_tag("t", &"a".repeat(129)).is_err());
        assert_eq!(dns_subdomain("i", "letsencrypt-prod-dns01"), Ok(()));
        assert!(dns_subdomain("i", "LetsEncrypt").is_err());
        assert_eq!(namespace("n", "matih-system"), Ok(()));
        assert!(namespace("n", "matih.system").is_err());
    }

    #[test]
    fn only_plain_addresses_are_e_mail_addresses() {
        for ok in ["ops@acme.example", "first.last+alerts@mail.acme.example", "o'brien@x.io", "a_b-c@x-y.example"] {
            assert!(email("to", ok).is_ok(), "{ok}");
        }
        for bad in [
            "ops@acme",
            "ops acme.example",
            "\"ops\"@acme.example",
            "ops@acme.example,evil@x.example",
            "Ops <ops@acme.example>",
            "ops@acme.example\r\nBcc: evil@x.example",
            ".ops@acme.example",
            "o..ps@acme.example",
            "ops@-acme.example",
            "ops@acme..example",
            "ops@acme.example.",
            "ops@[127.0.0.1]",
            "ops(comment)@acme.example",
            "ops@acme.123",
            "\u{e9}@acme.example",
        ] {
            assert!(email("to", bad).is_err(), "{bad:?}");
        }
        let long_local = format!("{}@acme.example", "a".repeat(65));
        assert!(email("to", &long_local).is_err());
    }
}
