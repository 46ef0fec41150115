//! PostgreSQL connection URLs as the environment gives them (`MATIH_POSTGRES_ADMIN_URL`, the
//! PostgreSQL state's `url_env`), with libpq's `sslmode`/`sslrootcert`: parsed as the state store
//! and the provider parse them. Nothing may panic, and an error never repeats the password.

/// One input.
pub fn run(data: &[u8]) {
    let Ok(url) = std::str::from_utf8(data) else { return };
    if let Err(message) = matih::pgconn::parse(url) {
        // The password of a URL: between the `:` after the user and the last `@` of the authority.
        // Only a URL of the postgresql:// form has a password where this looks (in a key=value
        // string, or past the start, "scheme://" may be the text of another parameter, e.g. a path).
        let rest = url.strip_prefix("postgresql://").or_else(|| url.strip_prefix("postgres://"));
        if let Some(rest) = rest {
            let authority = rest.split(['/', '?']).next().unwrap_or("");
            if let Some((userinfo, _)) = authority.rsplit_once('@') {
                if let Some((_, password)) = userinfo.split_once(':') {
                    // Only a password that nothing else of the URL repeats (a path such as
                    // sslrootcert's is echoed, and may contain the same text, even %-encoded).
                    let decoded = matih::encoding::percent_decode(url, matih::encoding::Escapes::Form)
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    let once = |text: &str| text.matches(password).count() <= 1;
                    if password.len() >= 6 && once(url) && once(&decoded) && message.contains(password) {
                        // The message may contain the password's text by chance: a password such as
                        // "SQL URL's sslrootcert is not " is in the message's own words. It is repeated
                        // only if it goes away when the password is another text of the same length.
                        let masked = url.replacen(password, &"x".repeat(password.len()), 1);
                        let again = matih::pgconn::parse(&masked).err().unwrap_or_default();
                        assert!(again.contains(password), "the error repeats the password: {message}");
                    }
                }
            }
        }
    }
}
