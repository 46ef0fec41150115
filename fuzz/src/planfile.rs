//! Plan files (`matih plan -out`, read by `apply FILE` and `show FILE`). The first byte picks how
//! the rest is used:
//! - 0: the whole file as it is (envelope, version, seal, HMAC);
//! - 1: the sealed plan text, put in an envelope with its correct SHA-256, so that the fuzzer
//!   reaches the plan's own decoding behind the seal;
//! - 2: the same with a keyed seal (HMAC-SHA-256 under a MATIH_PLAN_KEY): read with the key it must
//!   decode as in 1; without the key, or with another, it must be refused before anything is decoded.
//!
//! A plan that is read is rendered as `matih show` renders it (text, JSON, markdown).

use std::path::Path;

use hmac::{Hmac, Mac};
use matih::plan::{decode_plan, PlanFileError, PlanKey, TextOptions, FORMAT_VERSION};
use sha2::{Digest, Sha256};

const KEY: &[u8] = b"fuzz-key-fuzz-key-fuzz-key-fuzz-key!";
const OTHER_KEY: &[u8] = b"another-key-another-key-another-key!!";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn envelope(body: &str, hmac: Option<String>) -> Vec<u8> {
    let mut doc = serde_json::json!({
        "format": "matih-plan",
        "format_version": FORMAT_VERSION,
        "sha256": hex(&Sha256::digest(body.as_bytes())),
        "plan": body,
    });
    if let Some(tag) = hmac {
        doc["hmac_sha256"] = tag.into();
    }
    serde_json::to_vec_pretty(&doc).unwrap()
}

fn show(plan: &matih::plan::Plan) {
    for group in [false, true] {
        let text = matih::plan::render_text_with(plan, &TextOptions { color: false, digest: None }, group);
        assert!(!text.is_empty());
        let json = matih::plan::render_json_with(plan, None, group);
        serde_json::from_str::<serde_json::Value>(&json).expect("the JSON rendering is JSON");
    }
    let _ = matih::plan::render_markdown(plan);
}

fn key(bytes: &[u8]) -> PlanKey {
    PlanKey::new(bytes).unwrap()
}

/// One input.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let path = Path::new("fuzz.tfplan");
    match mode % 3 {
        0 => {
            if let Ok(plan) = decode_plan(path, rest, None) {
                show(&plan);
            }
        }
        1 => {
            let Ok(body) = std::str::from_utf8(rest) else { return };
            match decode_plan(path, &envelope(body, None), None) {
                Ok(plan) => show(&plan),
                Err(e @ PlanFileError::SealBroken { .. }) => panic!("a correct seal is refused: {e}"),
                Err(_) => {}
            }
        }
        _ => {
            let Ok(body) = std::str::from_utf8(rest) else { return };
            let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
            mac.update(format!("matih-plan {FORMAT_VERSION}\n").as_bytes());
            mac.update(body.as_bytes());
            let file = envelope(body, Some(hex(&mac.finalize().into_bytes())));
            match decode_plan(path, &file, Some(&key(KEY))) {
                Ok(plan) => show(&plan),
                Err(e @ (PlanFileError::WrongKey { .. } | PlanFileError::SealBroken { .. })) => {
                    panic!("a correct keyed seal is refused: {e}")
                }
                Err(_) => {}
            }
            match decode_plan(path, &file, None) {
                Err(PlanFileError::KeyNeeded { .. }) => {}
                other => panic!("a keyed plan read without the key: {:?}", other.map(|_| ())),
            }
            match decode_plan(path, &file, Some(&key(OTHER_KEY))) {
                Err(PlanFileError::WrongKey { .. }) => {}
                other => panic!("a keyed plan read with another key: {:?}", other.map(|_| ())),
            }
        }
    }
}
