//! Sealed plan files (`matih plan -out FILE`), applied later exactly as reviewed.
//!
//! A plan file is JSON:
//!
//! ```json
//! {
//!   "format": "matih-plan",
//!   "format_version": "1.1",
//!   "sha256": "<64 hex digits>",
//!   "plan": "<the plan, serialized as compact JSON, stored as one JSON string>"
//! }
//! ```
//!
//! The seal is the SHA-256 of the exact bytes of the `plan` string. Keeping the plan as a string
//! (rather than a nested object) means the sealed bytes are the stored bytes: nothing is
//! re-serialized to check the seal, so any edit of the plan, even of whitespace, breaks it.
//!
//! **Keyed seal.** A SHA-256 proves only that the file is intact: anyone who can write the file
//! can also recompute it. With `MATIH_PLAN_KEY` set (a shared secret of at least 32 characters,
//! never stored in the file), `plan -out` adds `"hmac_sha256"`: HMAC-SHA-256 under that key of
//! `matih-plan <format_version>\n<plan>`, which only a holder of the key can make. While the
//! variable is set, a plan file is read only if its HMAC checks out under it: a file sealed with
//! another key, or with none, is refused. A file with an HMAC is refused when the variable is not
//! set (it cannot be checked). Without a key, nothing proves who made a plan file.
//! The plan holds full before and after attribute sets, with secrets as state has them
//! (fingerprints, never clear text).
//!
//! Files are written atomically: a temporary file in the same directory (mode 0600 on Unix),
//! fsync, rename over the target, fsync of the directory.
//!
//! **Invariant:** knows nothing of state stores: it does not check that a plan is still current
//! (that is apply's job, with the plan's `prior_state` lineage and serial); it only guarantees that
//! the plan read is the plan written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Plan, FORMAT_VERSION};

/// The value of a plan file's `format` field.
pub const PLAN_FILE_FORMAT: &str = "matih-plan";

/// Why a plan file could not be written or read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    #[error("cannot {action} plan file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        /// What was being done: `read`, `write`, `rename`, …
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a matih plan file: {reason}", path.display())]
    NotAPlanFile { path: PathBuf, reason: String },
    #[error(
        "plan file {} has format version {found}; this matih reads version {supported}; run `matih plan -out {}` again with this matih",
        path.display(),
        path.display()
    )]
    UnsupportedVersion { path: PathBuf, found: String, supported: &'static str },
    #[error(
        "plan file {} has been modified since it was written (sha256 mismatch); run `matih plan -out {}` again",
        path.display(),
        path.display()
    )]
    SealBroken { path: PathBuf },
    #[error(
        "plan file {} is not sealed with a key, but MATIH_PLAN_KEY is set: only plans made with the key are applied; \
         run `matih plan -out {}` again with MATIH_PLAN_KEY set",
        path.display(),
        path.display()
    )]
    NotKeyed { path: PathBuf },
    #[error(
        "plan file {} was not sealed with this MATIH_PLAN_KEY (HMAC mismatch: another key, or the file was changed); \
         run `matih plan -out {}` again with the key",
        path.display(),
        path.display()
    )]
    WrongKey { path: PathBuf },
    #[error(
        "plan file {} is sealed with a key (MATIH_PLAN_KEY) and cannot be checked without it: set MATIH_PLAN_KEY",
        path.display()
    )]
    KeyNeeded { path: PathBuf },
    #[error("MATIH_PLAN_KEY: {0}")]
    BadKey(String),
}

/// The environment variable holding the key plan files are sealed with.
pub const PLAN_KEY_ENV: &str = "MATIH_PLAN_KEY";

/// The shortest key accepted, in bytes.
const MIN_KEY_LEN: usize = 32;

/// A plan-file key. Its bytes are never shown.
#[derive(Clone)]
pub struct PlanKey(Vec<u8>);

impl std::fmt::Debug for PlanKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlanKey(<redacted>)")
    }
}

impl PlanKey {
    /// A key of at least 32 bytes.
    pub fn new(key: impl Into<Vec<u8>>) -> Result<PlanKey, PlanFileError> {
        let key = key.into();
        if key.len() < MIN_KEY_LEN {
            return Err(PlanFileError::BadKey(format!(
                "the key is {} bytes long; use at least {MIN_KEY_LEN} random characters (e.g. `openssl rand -hex 32`)",
                key.len()
            )));
        }
        Ok(PlanKey(key))
    }

    /// The key in `MATIH_PLAN_KEY`, when that is set (and not empty).
    pub fn from_env() -> Result<Option<PlanKey>, PlanFileError> {
        match std::env::var_os(PLAN_KEY_ENV) {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => {
                let v = v.into_string().map_err(|_| PlanFileError::BadKey("the key is not valid UTF-8".into()))?;
                PlanKey::new(v).map(Some)
            }
        }
    }

    fn mac(&self, format_version: &str, plan: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(format!("{PLAN_FILE_FORMAT} {format_version}\n").as_bytes());
        mac.update(plan.as_bytes());
        mac
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    format: String,
    format_version: String,
    sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hmac_sha256: Option<String>,
    plan: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

/// The digest of a plan file as reviewers pin it: `sha256:` and the SHA-256 of the file's bytes,
/// exactly what `sha256sum FILE` prints. (The seal inside the file covers the plan only; this
/// covers everything, the seal and any HMAC included.)
pub fn file_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// `sha256:<64 hex digits>` (or the 64 hex digits alone), as `--expect-digest` takes it, in the
/// spelling [`file_digest`] gives.
pub fn parse_digest(text: &str) -> Result<String, String> {
    let hexpart = text.strip_prefix("sha256:").unwrap_or(text);
    if hexpart.len() != 64 || !hexpart.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{text:?} is not a SHA-256 digest: expected sha256: and 64 hex digits, as `matih plan -out FILE` prints"
        ));
    }
    Ok(format!("sha256:{}", hexpart.to_ascii_lowercase()))
}

/// Writes `plan` to `path`, sealed (with the key in `MATIH_PLAN_KEY` too, when it is set),
/// atomically and readable only by its owner. Returns the file's digest ([`file_digest`]).
pub fn save_plan(plan: &Plan, path: &Path) -> Result<String, PlanFileError> {
    save_plan_keyed(plan, path, PlanKey::from_env()?.as_ref())
}

/// [`save_plan`] with the key given.
pub fn save_plan_keyed(plan: &Plan, path: &Path, key: Option<&PlanKey>) -> Result<String, PlanFileError> {
    let encode =
        |e: serde_json::Error| PlanFileError::Io { path: path.to_path_buf(), action: "encode", source: e.into() };
    let body = serde_json::to_string(plan).map_err(encode)?;
    let envelope = Envelope {
        format: PLAN_FILE_FORMAT.to_string(),
        format_version: FORMAT_VERSION.to_string(),
        sha256: sha256_hex(body.as_bytes()),
        hmac_sha256: key.map(|k| hex(&k.mac(FORMAT_VERSION, &body).finalize().into_bytes())),
        plan: body,
    };
    let mut bytes = serde_json::to_vec_pretty(&envelope).map_err(encode)?;
    bytes.push(b'\n');
    write_atomically(path, &bytes)?;
    Ok(file_digest(&bytes))
}

/// Reads a plan file, refusing it unless its format, version and seal are all as written (and,
/// with `MATIH_PLAN_KEY` set, its HMAC checks out under that key).
pub fn load_plan(path: &Path) -> Result<Plan, PlanFileError> {
    load_plan_keyed(path, PlanKey::from_env()?.as_ref())
}

/// [`load_plan`], with the digest ([`file_digest`]) of the very bytes the plan was read from.
pub fn load_plan_digest(path: &Path) -> Result<(Plan, String), PlanFileError> {
    let bytes = read(path)?;
    let plan = decode(path, &bytes, PlanKey::from_env()?.as_ref())?;
    Ok((plan, file_digest(&bytes)))
}

fn read(path: &Path) -> Result<Vec<u8>, PlanFileError> {
    fs::read(path).map_err(|source| PlanFileError::Io { path: path.to_path_buf(), action: "read", source })
}

/// [`load_plan`] with the key given.
pub fn load_plan_keyed(path: &Path, key: Option<&PlanKey>) -> Result<Plan, PlanFileError> {
    decode(path, &read(path)?, key)
}

/// [`load_plan_keyed`] on bytes already read (`path` only names the file in errors): the format,
/// the version and the seal (and the HMAC, with a key) are checked before the plan itself is
/// decoded. Public for the fuzz targets (`fuzz/`).
pub fn decode_plan(path: &Path, bytes: &[u8], key: Option<&PlanKey>) -> Result<Plan, PlanFileError> {
    decode(path, bytes, key)
}

fn decode(path: &Path, bytes: &[u8], key: Option<&PlanKey>) -> Result<Plan, PlanFileError> {
    let not_plan = |reason: String| PlanFileError::NotAPlanFile { path: path.to_path_buf(), reason };

    // Look at the format first, so that any other JSON file is reported as such and not as a
    // plan with missing fields.
    let outer: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| not_plan(format!("invalid JSON: {e}")))?;
    match outer.get("format").and_then(|f| f.as_str()) {
        Some(PLAN_FILE_FORMAT) => {}
        Some(other) => return Err(not_plan(format!("its format is {other:?}, expected {PLAN_FILE_FORMAT:?}"))),
        None => return Err(not_plan(format!("it has no \"format\": {PLAN_FILE_FORMAT:?} field"))),
    }
    let envelope: Envelope = serde_json::from_value(outer).map_err(|e| not_plan(e.to_string()))?;
    if !version_supported(&envelope.format_version) {
        return Err(PlanFileError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: envelope.format_version,
            supported: FORMAT_VERSION,
        });
    }
    match (key, &envelope.hmac_sha256) {
        (None, None) => {}
        (None, Some(_)) => return Err(PlanFileError::KeyNeeded { path: path.to_path_buf() }),
        (Some(_), None) => return Err(PlanFileError::NotKeyed { path: path.to_path_buf() }),
        (Some(k), Some(tag)) => {
            let tag = unhex(tag).ok_or_else(|| PlanFileError::WrongKey { path: path.to_path_buf() })?;
            // verify_slice compares in constant time.
            k.mac(&envelope.format_version, &envelope.plan)
                .verify_slice(&tag)
                .map_err(|_| PlanFileError::WrongKey { path: path.to_path_buf() })?;
        }
    }
    if sha256_hex(envelope.plan.as_bytes()) != envelope.sha256 {
        return Err(PlanFileError::SealBroken { path: path.to_path_buf() });
    }
    let plan: Plan =
        serde_json::from_str(&envelope.plan).map_err(|e| not_plan(format!("sealed plan is invalid: {e}")))?;
    if plan.format_version != envelope.format_version {
        return Err(not_plan(format!(
            "sealed plan has format version {} but the file says {}",
            plan.format_version, envelope.format_version
        )));
    }
    Ok(plan)
}

/// A file of version `MAJOR.MINOR` is readable when the major version is ours and the minor
/// version is not newer: a newer minor version may carry fields this matih would silently drop,
/// and a saved plan must be applied exactly as reviewed.
fn version_supported(found: &str) -> bool {
    fn parse(v: &str) -> Option<(u32, u32)> {
        let (major, minor) = v.split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    }
    match (parse(found), parse(FORMAT_VERSION)) {
        (Some((major, minor)), Some((our_major, our_minor))) => major == our_major && minor <= our_minor,
        _ => false,
    }
}

/// Writes `bytes` to a new temporary file next to `path`, syncs it and renames it over `path`.
/// On failure the temporary file is removed and `path` is left as it was.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PlanFileError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io_err = |action, source| PlanFileError::Io { path: path.to_path_buf(), action, source };
    let file_name = path
        .file_name()
        .ok_or_else(|| io_err("write", io::Error::new(io::ErrorKind::InvalidInput, "the path names no file")))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };

    let (tmp, mut file) = loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut name = std::ffi::OsString::from(".");
        name.push(file_name);
        name.push(format!(".{}.{n}.tmp", std::process::id()));
        let tmp = dir.join(name);
        match create_private(&tmp) {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("create a temporary file for", e)),
        }
    };

    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_err("write", e))
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| io_err("rename the temporary file onto", e)));
    drop(file);
    if let Err(e) = written {
        // Best effort: the write already failed, and that is the error worth reporting.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(&dir).map_err(|e| io_err("sync the directory of", e))
}

#[cfg(unix)]
fn create_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Makes the rename durable. Directories cannot be opened for syncing on every platform; where
/// they cannot, the rename is as durable as the platform makes it.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::phase::Phase;
    use crate::plan::{Action, AttrChange, PriorState, ResourceChange, TenantPlan};
    use crate::value::{fingerprint, Secret, Value};

    fn sample() -> Plan {
        let secret = Value::Secret(Secret { source: "generated".into(), fingerprint: Some(fingerprint("hunter2")) });
        let before = BTreeMap::from([
            ("password".to_string(), secret),
            ("name".to_string(), Value::str("acme")),
            ("sql".to_string(), Value::str("SELECT 1;\nSELECT \"ü\";\n")),
        ]);
        let mut after = before.clone();
        after.insert("name".into(), Value::str("acme2"));
        Plan::new(vec![TenantPlan {
            slug: "acme".into(),
            tenant_id: "550e8400-e29b-41d4-a716-446655440000".into(),
            tier: "enterprise".into(),
            source: Some("tenants/acme.hcl".into()),
            prior_state: Some(PriorState { lineage: "5b0e…".into(), serial: 3 }),
            resource_changes: vec![ResourceChange {
                address: "postgresql_role.tenant".parse().unwrap(),
                phase: Phase::SetupDatabase,
                action: Action::Update,
                before: Some(before),
                after: Some(after),
                changes: vec![AttrChange {
                    path: "name".into(),
                    before: Some(Value::str("acme")),
                    after: Some(Value::str("acme2")),
                    forces_replacement: false,
                }],
                depends_on: BTreeSet::from(["kubernetes_namespace.tenant".parse().unwrap()]),
                notes: Vec::new(),
                manifest_changes: Vec::new(),
            }],
            partial: None,
            ignored: Vec::new(),
            moved: Vec::new(),
        }])
    }

    #[test]
    fn round_trip_keeps_the_plan_and_no_clear_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme.plan");
        let plan = sample();
        save_plan(&plan, &path).unwrap();
        assert_eq!(load_plan(&path).unwrap(), plan);
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("hunter2"));
        assert!(text.contains(&fingerprint("hunter2")), "state's fingerprint is kept for apply");
        // Saving twice gives the same bytes.
        save_plan(&plan, &path).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private_and_no_temporary_file_is_left_behind() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme.plan");
        fs::write(&path, "old contents").unwrap();
        save_plan(&sample(), &path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let names: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["acme.plan"]);
    }

    #[test]
    fn failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory: the rename fails after the temporary file was written.
        let path = dir.path().join("taken");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("x"), "x").unwrap();
        let err = save_plan(&sample(), &path).unwrap_err();
        assert!(matches!(err, PlanFileError::Io { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
        let names: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["taken"]);
    }

    #[test]
    fn keyed_plans_are_refused_under_another_key_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.plan");
        let key = PlanKey::new("k".repeat(32)).unwrap();
        let other = PlanKey::new("o".repeat(32)).unwrap();
        save_plan_keyed(&sample(), &path, Some(&key)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"hmac_sha256\": \""), "{text}");
        assert!(!text.contains(&"k".repeat(32)), "the key is never in the file");
        assert_eq!(load_plan_keyed(&path, Some(&key)).unwrap(), sample());
        assert!(matches!(load_plan_keyed(&path, Some(&other)), Err(PlanFileError::WrongKey { .. })));
        let e = load_plan_keyed(&path, None).unwrap_err();
        assert!(matches!(e, PlanFileError::KeyNeeded { .. }), "{e}");
        assert!(e.to_string().contains("set MATIH_PLAN_KEY"), "{e}");

        // A plan edited and its SHA-256 recomputed (what anyone can do) fails the HMAC.
        let mut envelope: serde_json::Value = serde_json::from_str(&text).unwrap();
        let edited = envelope["plan"].as_str().unwrap().replace("acme2", "acme3");
        envelope["sha256"] = sha256_hex(edited.as_bytes()).into();
        envelope["plan"] = edited.into();
        fs::write(&path, serde_json::to_vec(&envelope).unwrap()).unwrap();
        assert!(matches!(load_plan_keyed(&path, Some(&key)), Err(PlanFileError::WrongKey { .. })));
        // Without the HMAC: a plan nobody keyed is refused while a key is set.
        envelope.as_object_mut().unwrap().remove("hmac_sha256");
        fs::write(&path, serde_json::to_vec(&envelope).unwrap()).unwrap();
        let e = load_plan_keyed(&path, Some(&key)).unwrap_err();
        assert!(matches!(e, PlanFileError::NotKeyed { .. }), "{e}");
        assert!(load_plan_keyed(&path, None).is_ok(), "without a key, a SHA-256 is all there is to check");

        let e = PlanKey::new("short").unwrap_err();
        assert!(e.to_string().contains("at least 32"), "{e}");
        assert_eq!(format!("{key:?}"), "PlanKey(<redacted>)");
    }

    #[test]
    fn the_digest_is_the_sha256_of_the_file_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.plan");
        let digest = save_plan(&sample(), &path).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(digest, format!("sha256:{}", hex(&Sha256::digest(&bytes))));
        let (plan, read) = load_plan_digest(&path).unwrap();
        assert_eq!((plan, read.clone()), (sample(), digest.clone()));
        assert_eq!(parse_digest(&digest).unwrap(), digest);
        assert_eq!(parse_digest(&digest[7..].to_ascii_uppercase()).unwrap(), digest);
        assert!(parse_digest("sha256:abc").unwrap_err().contains("64 hex digits"));
        assert!(parse_digest(&format!("md5:{}", &digest[7..])).is_err());
    }

    #[test]
    fn any_flipped_byte_in_the_plan_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.plan");
        save_plan(&sample(), &path).unwrap();
        let good = fs::read(&path).unwrap();
        let text = String::from_utf8(good.clone()).unwrap();
        let start = text.find("\"plan\": \"").unwrap() + "\"plan\": \"".len();
        let end = text.rfind('"').unwrap();
        let mut seal_errors = 0;
        for i in start..end {
            let mut bad = good.clone();
            // Flipping the lowest bit keeps ASCII ASCII, so most flips leave valid JSON with a
            // different plan: exactly the tampering the seal is for.
            bad[i] ^= 0x01;
            fs::write(&path, &bad).unwrap();
            let err = load_plan(&path).expect_err(&format!("flipped byte {i} accepted"));
            if matches!(err, PlanFileError::SealBroken { .. }) {
                seal_errors += 1;
            }
        }
        assert!(seal_errors > (end - start) / 2, "most flips should be caught by the seal, got {seal_errors}");
    }

    #[test]
    fn seal_error_names_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.plan");
        save_plan(&sample(), &path).unwrap();
        let text = fs::read_to_string(&path).unwrap().replace("acme2", "acme3");
        fs::write(&path, text).unwrap();
        let err = load_plan(&path).unwrap_err();
        let p = path.display();
        assert_eq!(
            err.to_string(),
            format!("plan file {p} has been modified since it was written (sha256 mismatch); run `matih plan -out {p}` again")
        );
    }

    #[test]
    fn wrong_format_or_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.plan");
        save_plan(&sample(), &path).unwrap();
        let good = fs::read_to_string(&path).unwrap();

        fs::write(&path, good.replace("\"matih-plan\"", "\"terraform-plan\"")).unwrap();
        let err = load_plan(&path).unwrap_err();
        assert!(
            matches!(&err, PlanFileError::NotAPlanFile { reason, .. } if reason.contains("terraform-plan")),
            "{err}"
        );

        let ours = format!("\"format_version\": \"{FORMAT_VERSION}\"");
        fs::write(&path, good.replacen(&ours, "\"format_version\": \"2.0\"", 1)).unwrap();
        let err = load_plan(&path).unwrap_err();
        assert!(matches!(&err, PlanFileError::UnsupportedVersion { found, .. } if found == "2.0"), "{err}");

        fs::write(&path, good.replacen(&ours, "\"format_version\": \"1.9\"", 1)).unwrap();
        assert!(matches!(load_plan(&path).unwrap_err(), PlanFileError::UnsupportedVersion { .. }));

        fs::write(&path, "{\"version\": 4}").unwrap();
        assert!(matches!(load_plan(&path).unwrap_err(), PlanFileError::NotAPlanFile { .. }));
        fs::write(&path, "not json").unwrap();
        assert!(matches!(load_plan(&path).unwrap_err(), PlanFileError::NotAPlanFile { .. }));

        let missing = dir.path().join("missing.plan");
        let err = load_plan(&missing).unwrap_err();
        assert!(matches!(err, PlanFileError::Io { action: "read", .. }));
        assert!(err.to_string().contains("missing.plan"));
    }

    #[test]
    fn versions_of_the_same_major_and_no_newer_minor_are_read() {
        assert!(version_supported(FORMAT_VERSION));
        assert!(version_supported("1.0"), "plan files of 1.0 are still read");
        assert!(!version_supported("0.9"));
        assert!(!version_supported("1"));
        assert!(!version_supported("x.y"));
    }
}
