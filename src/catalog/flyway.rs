//! Flyway-compatible SQL migrations: file names (`V1__init.sql`, `R__views.sql`) and checksums.
//!
//! **Invariant:** knows Flyway's naming and checksum rules only; never connects to a database.

use crate::value::Value;

/// Versioned migrations run once, in version order; repeatable ones run after them whenever their
/// checksum changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MigrationKind {
    Versioned,
    Repeatable,
}

/// One SQL migration, as Flyway records it in its history table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    pub kind: MigrationKind,
    /// `1`, `2.1` for versioned migrations; `None` for repeatable ones.
    pub version: Option<String>,
    /// From the file name, underscores as spaces (`reference tables`).
    pub description: String,
    /// The file name (Flyway's `script` column).
    pub script: String,
    pub sql: String,
    /// Flyway's CRC32 checksum of the file (see [`flyway_checksum`]).
    pub checksum: i32,
}

impl Migration {
    /// Parses a Flyway file name and computes the checksum of its text. The error says what is
    /// wrong with the name.
    pub fn from_file(script: &str, sql: String) -> Result<Migration, String> {
        let stem = script.strip_suffix(".sql").ok_or_else(|| {
            format!("migration {script:?} is not a .sql file (expected V<version>__<description>.sql)")
        })?;
        let (prefix, description) = stem.split_once("__").ok_or_else(|| {
            format!("migration {script:?} has no \"__\" between version and description (expected V1__init.sql)")
        })?;
        if description.is_empty() {
            return Err(format!("migration {script:?} has an empty description"));
        }
        let (kind, version) = if prefix == "R" {
            (MigrationKind::Repeatable, None)
        } else if let Some(v) = prefix.strip_prefix('V') {
            let version = v.replace('_', ".");
            let valid = !version.is_empty()
                && version.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if !valid {
                return Err(format!(
                    "migration {script:?} has an invalid version {v:?} (expected digits like 1 or 2_1)"
                ));
            }
            (MigrationKind::Versioned, Some(version))
        } else {
            return Err(format!("migration {script:?} must start with V<version>__ or R__"));
        };
        let checksum = flyway_checksum(&sql);
        Ok(Migration {
            kind,
            version,
            description: description.replace('_', " "),
            script: script.to_string(),
            sql,
            checksum,
        })
    }

    /// The version as numbers, for ordering (`2.10` after `2.9`).
    pub fn version_key(&self) -> Vec<u64> {
        self.version.as_deref().map_or_else(Vec::new, |v| v.split('.').map(|p| p.parse().unwrap_or(u64::MAX)).collect())
    }

    /// The migration as a resource attribute: what a provider needs to run it and to compare it
    /// with Flyway's history table.
    pub fn to_value(&self) -> Value {
        Value::map([
            ("checksum", Value::Int(i64::from(self.checksum))),
            ("description", Value::str(&self.description)),
            ("script", Value::str(&self.script)),
            ("sql", Value::str(&self.sql)),
            ("type", Value::str("SQL")),
            ("version", self.version.as_deref().map_or(Value::Null, Value::str)),
        ])
    }
}

/// Flyway's checksum of a SQL file: the CRC-32 (IEEE) of the UTF-8 bytes of its lines, read one by
/// one as Java's `BufferedReader.readLine` does (which drops `\n`, `\r\n` and lone `\r`), with a
/// leading byte-order mark removed, taken as a signed 32-bit integer. Line endings therefore never
/// change the checksum, and since no line contains `\r` or `\n`, the lines' concatenation is the
/// text with every `\r` and `\n` removed.
pub fn flyway_checksum(text: &str) -> i32 {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut hasher = crc32fast::Hasher::new();
    for piece in text.split(['\r', '\n']) {
        hasher.update(piece.as_bytes());
    }
    hasher.finalize() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_crc32_of_the_lines_as_signed_int() {
        // CRC-32 of "123456789" is the standard check value 0xCBF43926.
        assert_eq!(flyway_checksum("123456789"), 0xCBF4_3926_u32 as i32);
        assert_eq!(flyway_checksum("123456789"), -873_187_034);
        assert_eq!(flyway_checksum("1234\n56789\n"), -873_187_034, "line feeds are not hashed");
        assert_eq!(flyway_checksum("1234\r\n56789\r\n"), -873_187_034, "CRLF is a line ending");
        assert_eq!(flyway_checksum("1234\r56789"), -873_187_034, "a lone CR is a line ending");
        assert_eq!(flyway_checksum("\u{feff}123456789"), -873_187_034, "a BOM is stripped");
        assert_ne!(flyway_checksum("12345678 9"), -873_187_034);
        assert_eq!(flyway_checksum(""), 0);
    }

    #[test]
    fn parses_flyway_names() {
        let m = Migration::from_file("V2_1__reference_tables.sql", "SELECT 1;".into()).unwrap();
        assert_eq!(m.kind, MigrationKind::Versioned);
        assert_eq!(m.version.as_deref(), Some("2.1"));
        assert_eq!(m.description, "reference tables");
        assert_eq!(m.version_key(), vec![2, 1]);
        let r = Migration::from_file("R__views.sql", String::new()).unwrap();
        assert_eq!((r.kind, r.version), (MigrationKind::Repeatable, None));
        for bad in ["V1_init.sql", "X1__a.sql", "V__a.sql", "Va__b.sql", "V1__.sql", "V1__a.txt", "V1..2__a.sql"] {
            assert!(Migration::from_file(bad, String::new()).is_err(), "{bad} should be rejected");
        }
    }
}
