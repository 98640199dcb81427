//! Tokens minted with the same crate against the fixtures in tests/keys/ (test-only keys):
//! each documented answer of `Verifier::verify`, and each problem `RawAuth::validate`
//! reports. Times are whole seconds well away from the edges, so no test depends on
//! when in a second it runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::channels::ChannelClaim;
use super::*;

fn keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys")
}

/// Resolves a key file as the fixtures directory would hold it.
fn in_fixtures(written: &Path) -> Result<PathBuf, String> {
    Ok(keys_dir().join(written))
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(keys_dir().join(name)).unwrap()
}

fn now() -> u64 {
    get_current_timestamp()
}

fn key(kid: Option<&str>, algorithm: &str, file: &str) -> RawKey {
    RawKey {
        kid: kid.map(str::to_owned),
        algorithm: algorithm.to_owned(),
        file: file.into(),
    }
}

fn auth(keys: Vec<RawKey>) -> RawAuth {
    RawAuth {
        keys,
        ..RawAuth::default()
    }
}

fn verifier(raw: &RawAuth) -> Verifier {
    raw.validate(&in_fixtures).unwrap().unwrap()
}

/// The private key or secret that signs for `algorithm`, from the fixtures.
fn signing_key(algorithm: Algorithm, file: &str) -> EncodingKey {
    let bytes = fixture(file);
    match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(bytes.strip_suffix(b"\n").unwrap_or(&bytes))
        }
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&bytes).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&bytes).unwrap(),
        _ => EncodingKey::from_rsa_pem(&bytes).unwrap(),
    }
}

fn mint(algorithm: Algorithm, kid: Option<&str>, file: &str, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &signing_key(algorithm, file)).unwrap()
}

fn hs(claims: &Value) -> String {
    mint(Algorithm::HS256, None, "hs.secret", claims)
}

fn hs_verifier() -> Verifier {
    verifier(&auth(vec![key(None, "HS256", "hs.secret")]))
}

/// `token`'s refusal, checking what every refusal promises: a 403 (401 only when
/// missing), a known label, and a message without the token or its parts.
fn refused(v: &Verifier, token: &str) -> AuthError {
    let err = v.verify(token).unwrap_err();
    assert!(AuthError::ALL_LABELS.contains(&err.label()), "{err:?}");
    assert_eq!(
        err.status(),
        if err == AuthError::Missing { 401 } else { 403 }
    );
    let shown = err.to_string();
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(!shown.contains(part), "{shown} quotes the token");
    }
    assert!(!shown.contains('\n'), "one line: {shown}");
    err
}

fn b64(json: &Value) -> String {
    URL_SAFE_NO_PAD.encode(json.to_string())
}

#[test]
fn valid_tokens_of_each_algorithm() {
    let v = verifier(&auth(vec![
        key(None, "HS256", "hs.secret"),
        key(None, "RS256", "rsa.pub"),
        key(None, "PS256", "rsa.pub"),
        key(None, "ES256", "ec.pub"),
        key(None, "EdDSA", "ed25519.pub"),
    ]));
    let exp = now() + 600;
    for (algorithm, file) in [
        (Algorithm::HS256, "hs.secret"),
        (Algorithm::RS256, "rsa.key"),
        (Algorithm::PS256, "rsa.key"),
        (Algorithm::ES256, "ec.key"),
        (Algorithm::EdDSA, "ed25519.key"),
    ] {
        let claims = json!({"sub": "42", "exp": exp, "org": "acme", "n": 7});
        let id = v
            .verify(&mint(algorithm, None, file, &claims))
            .unwrap_or_else(|e| panic!("{algorithm:?}: {e}"));
        assert_eq!(id.sub.as_deref(), Some("42"));
        assert_eq!(id.claim("sub"), Some("42"));
        assert_eq!(id.claim("org"), Some("acme"));
        assert_eq!(id.claim("n"), None, "not a string");
        assert_eq!(
            id.expires,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(exp + 30)),
            "exp plus the default leeway"
        );
        assert!(id.channels.is_none() && id.allows("anything"));
    }
    assert_eq!(v.leeway(), DEFAULT_LEEWAY);
    assert_eq!(v.keys().count(), 5);
}

#[test]
fn time_claims_and_leeway_on_both_sides() {
    let v = hs_verifier(); // leeway 30s
    let t = now();
    assert!(
        v.verify(&hs(&json!({"exp": t - 10}))).is_ok(),
        "within leeway"
    );
    assert_eq!(
        refused(&v, &hs(&json!({"exp": t - 90}))),
        AuthError::Expired
    );
    assert!(
        v.verify(&hs(&json!({"exp": t + 600, "nbf": t + 10})))
            .is_ok(),
        "nbf within leeway"
    );
    let err = refused(&v, &hs(&json!({"exp": t + 600, "nbf": t + 120})));
    assert_eq!(
        (err.clone(), err.label()),
        (AuthError::NotYetValid, "not_yet_valid")
    );
    assert_eq!(refused(&v, &hs(&json!({"exp": t - 90}))).label(), "expired");

    let mut raw = auth(vec![key(None, "HS256", "hs.secret")]);
    raw.leeway = Duration::ZERO.into();
    let strict = verifier(&raw);
    assert_eq!(
        refused(&strict, &hs(&json!({"exp": t - 10}))),
        AuthError::Expired
    );
    assert_eq!(strict.leeway(), Duration::ZERO);

    // exp must be a number: a string exp is not a way around the check.
    for exp in [json!("9999999999"), json!(-5), json!(true)] {
        let err = refused(&v, &hs(&json!({ "exp": exp })));
        assert!(
            matches!(err, AuthError::Malformed(_) | AuthError::MissingClaim(_)),
            "{exp}: {err:?}"
        );
    }
}

#[test]
fn exp_is_required_unless_configured_otherwise() {
    let token = hs(&json!({"sub": "42"}));
    let err = refused(&hs_verifier(), &token);
    assert_eq!(err, AuthError::MissingClaim("exp".into()));
    assert!(err.to_string().contains("no \"exp\" claim"), "{err}");

    let mut raw = auth(vec![key(None, "HS256", "hs.secret")]);
    raw.require_exp = false;
    let id = verifier(&raw).verify(&token).unwrap();
    assert_eq!((id.sub.as_deref(), id.expires), (Some("42"), None));
    // Still checked when present.
    assert_eq!(
        refused(&verifier(&raw), &hs(&json!({"exp": now() - 90}))),
        AuthError::Expired
    );
}

#[test]
fn wrong_key_is_a_bad_signature() {
    let token = mint(
        Algorithm::HS256,
        None,
        "hs-old.secret",
        &json!({"exp": now() + 600}),
    );
    let err = refused(&hs_verifier(), &token);
    assert_eq!(
        (err.clone(), err.label()),
        (AuthError::BadSignature, "invalid")
    );
    // A token altered after signing.
    let good = hs(&json!({"sub": "42", "exp": now() + 600}));
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(&json!({"sub": "1", "exp": now() + 600})),
        parts[2]
    );
    assert_eq!(refused(&hs_verifier(), &forged), AuthError::BadSignature);
}

#[test]
fn alg_none_is_refused() {
    let v = hs_verifier();
    let payload = b64(&json!({"sub": "42", "exp": now() + 600}));
    for alg in ["none", "None", "NONE"] {
        let header = b64(&json!({"alg": alg, "typ": "JWT"}));
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.AAAA"),
        ] {
            let err = refused(&v, &token);
            assert!(
                matches!(&err, AuthError::Algorithm(why) if why.contains("`none`")),
                "{alg}: {err:?}"
            );
            assert_eq!(err.label(), "invalid");
        }
    }
    let unknown = format!("{}.{payload}.AAAA", b64(&json!({"alg": "HS1024"})));
    assert!(matches!(refused(&v, &unknown), AuthError::Algorithm(_)));
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // The classic confusion: the verifier's RSA public key is public, so an attacker
    // signs HS256 with its PEM bytes as the HMAC secret.
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "admin", "exp": now() + 600}),
        &EncodingKey::from_secret(&fixture("rsa.pub")),
    )
    .unwrap();
    let rs = verifier(&auth(vec![key(None, "RS256", "rsa.pub")]));
    assert!(matches!(refused(&rs, &forged), AuthError::Algorithm(_)));
    // Named by kid, the pinned algorithm still wins over the header's.
    let rs_kid = verifier(&auth(vec![key(Some("rsa"), "RS256", "rsa.pub")]));
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa".into());
    let forged_kid = encode(
        &header,
        &json!({"sub": "admin", "exp": now() + 600}),
        &EncodingKey::from_secret(&fixture("rsa.pub")),
    )
    .unwrap();
    let err = refused(&rs_kid, &forged_kid);
    assert!(
        matches!(&err, AuthError::Algorithm(why) if why.contains("RS256 pinned for kid \"rsa\"")),
        "{err}"
    );
    // With an HS key configured too, the forgery meets the HS secret and fails.
    let both = verifier(&auth(vec![
        key(None, "RS256", "rsa.pub"),
        key(None, "HS256", "hs.secret"),
    ]));
    assert_eq!(refused(&both, &forged), AuthError::BadSignature);
}

#[test]
fn issuer_and_audience() {
    let mut raw = auth(vec![key(None, "HS256", "hs.secret")]);
    raw.issuer = Some("https://app.example".into());
    raw.audience = Some("heartwire".into());
    let v = verifier(&raw);
    let exp = now() + 600;
    let ok = json!({"iss": "https://app.example", "aud": "heartwire", "exp": exp});
    assert!(v.verify(&hs(&ok)).is_ok());
    let list = json!({"iss": "https://app.example", "aud": ["billing", "heartwire"], "exp": exp});
    assert!(
        v.verify(&hs(&list)).is_ok(),
        "aud as a list containing ours"
    );
    for (claims, want) in [
        (
            json!({"iss": "https://evil.example", "aud": "heartwire", "exp": exp}),
            AuthError::Issuer,
        ),
        (json!({"aud": "heartwire", "exp": exp}), AuthError::Issuer),
        (
            json!({"iss": "https://app.example", "aud": "billing", "exp": exp}),
            AuthError::Audience,
        ),
        (
            json!({"iss": "https://app.example", "exp": exp}),
            AuthError::Audience,
        ),
    ] {
        let err = refused(&v, &hs(&claims));
        assert_eq!(err, want, "{claims}");
        assert_eq!(
            err.label(),
            if want == AuthError::Issuer {
                "issuer"
            } else {
                "audience"
            }
        );
    }
    let odd = [
        (
            json!({"iss": ["https://app.example"], "aud": "heartwire", "exp": exp}),
            AuthError::Issuer,
        ),
        (
            json!({"iss": 5, "aud": "heartwire", "exp": exp}),
            AuthError::Issuer,
        ),
        (
            json!({"iss": "https://app.example", "aud": [], "exp": exp}),
            AuthError::Audience,
        ),
        (
            json!({"iss": "https://app.example", "aud": [5], "exp": exp}),
            AuthError::Audience,
        ),
        (
            json!({"iss": "https://app.example", "aud": {"a": "heartwire"}, "exp": exp}),
            AuthError::Audience,
        ),
        // One answer whatever the order claims are checked in: exp first.
        (json!({"sub": "42"}), AuthError::MissingClaim("exp".into())),
    ];
    for (claims, want) in odd {
        for _ in 0..8 {
            assert_eq!(refused(&v, &hs(&claims)), want, "{claims}");
        }
    }
    // No audience configured: a token meant for some audience is not for heartwire.
    let plain = hs_verifier();
    assert_eq!(
        refused(&plain, &hs(&json!({"aud": "billing", "exp": exp}))),
        AuthError::Audience
    );
    assert!(
        plain
            .verify(&hs(&json!({"iss": "anyone", "exp": exp})))
            .is_ok()
    );
    assert!(
        plain.verify(&hs(&json!({"aud": [], "exp": exp}))).is_ok(),
        "an empty aud names no audience"
    );
}

#[test]
fn channels_claim() {
    let v = hs_verifier();
    let exp = now() + 600;
    let id = v
        .verify(&hs(&json!({"exp": exp, "channels": ["news", "user.42.*"]})))
        .unwrap();
    for ch in ["news", "user.42.orders", "user.42.orders.7"] {
        assert!(id.allows(ch), "{ch}");
        assert_eq!(id.authorize(ch), Ok(()));
    }
    for ch in [
        "news2",
        "user.42",
        "user.42.",
        "user.4",
        "user.421.x",
        "",
        "other",
    ] {
        assert!(!id.allows(ch), "{ch}");
    }
    let err = id.authorize("user.7").unwrap_err();
    assert_eq!((err.status(), err.label()), (403, "channel"));
    assert!(
        err.to_string()
            .starts_with("channel \"user.7\" is not allowed"),
        "{err}"
    );

    let any = v
        .verify(&hs(&json!({"exp": exp, "channels": ["*"]})))
        .unwrap();
    assert!(any.allows("x") && any.allows("a.b.c"));
    let none = v.verify(&hs(&json!({"exp": exp, "channels": []}))).unwrap();
    assert!(!none.allows("news"));

    for bad in [
        json!("news"),
        json!([1]),
        json!(["news", null]),
        json!([""]),
        json!(["a.*.b"]),
        json!(["*.x"]),
        json!(["room*"]),
        json!(["a..*"]),
        json!([".*"]),
        json!(["a.**"]),
        json!(["a b"]),
        json!(["a\nb"]),
        json!(["x".repeat(257)]),
    ] {
        let err = refused(&v, &hs(&json!({"exp": exp, "channels": bad})));
        assert!(matches!(err, AuthError::Malformed(_)), "{bad}: {err:?}");
    }
    let long = ChannelClaim::parse(&json!(["x".repeat(256)])).unwrap();
    assert!(long.allows(&"x".repeat(256)));
}

#[test]
fn string_claims_are_bounded() {
    let mut claims = serde_json::Map::new();
    claims.insert("exp".into(), json!(now() + 600));
    claims.insert("sub".into(), json!("42"));
    for i in 0..100 {
        claims.insert(format!("c{i:03}"), json!(format!("v{i}")));
    }
    claims.insert("a_long".into(), json!("x".repeat(MAX_CLAIM_LEN + 1)));
    claims.insert("a_list".into(), json!(["x"]));
    let id = hs_verifier().verify(&hs(&Value::Object(claims))).unwrap();
    assert_eq!(id.claims.len(), MAX_CLAIMS);
    assert_eq!(id.claim("c000"), Some("v0"));
    assert_eq!(id.claim("c063"), Some("v63"));
    assert_eq!(id.claim("c064"), None, "past the first 64 by name");
    assert_eq!(id.claim("a_long"), None);
    assert_eq!(id.claim("a_list"), None);
    assert_eq!(id.claim("sub"), Some("42"));

    let err = refused(&hs_verifier(), &hs(&json!({"exp": now() + 600, "sub": 42})));
    assert!(matches!(err, AuthError::Malformed(_)), "{err:?}");
}

#[test]
fn malformed_tokens() {
    let v = hs_verifier();
    let header = b64(&json!({"alg": "HS256"}));
    let payload = b64(&json!({"exp": now() + 600}));
    for token in [
        "abc".to_owned(),
        "a.b".to_owned(),
        "a.b.c.d".to_owned(),
        "!!!.x.y".to_owned(),
        "eyJ.eyJ.sig".to_owned(),
        format!("{header}.%%%.AAAA"),
        format!("{header}.{payload}.%%%"),
        format!("{}.{payload}.AAAA", b64(&json!(["HS256"]))),
        format!("{}.{payload}.AAAA", b64(&json!({"typ": "JWT"}))),
        format!("{}.{payload}.AAAA", b64(&json!({"alg": "HS256", "kid": 5}))),
        format!("{header}.{}.AAAA", URL_SAFE_NO_PAD.encode("not json")),
        format!(" {header}.{payload}.AAAA"),
    ] {
        let err = refused(&v, &token);
        assert!(
            matches!(err, AuthError::Malformed(_) | AuthError::BadSignature),
            "{token}: {err:?}"
        );
    }
    let base64 = refused(&v, "!!!.x.y");
    assert!(matches!(base64, AuthError::Malformed(_)));
    assert!(
        base64
            .to_string()
            .starts_with("malformed token (the header is not base64url)")
    );
    let crit = format!(
        "{}.{payload}.AAAA",
        b64(&json!({"alg": "HS256", "crit": ["b64"]}))
    );
    assert!(matches!(refused(&v, &crit), AuthError::Malformed(_)));
    assert_eq!(refused(&v, ""), AuthError::Missing);
}

#[test]
fn oversized_tokens_are_refused_before_decoding() {
    let v = hs_verifier();
    let garbage = "\u{1}".repeat(64 * 1024);
    assert_eq!(
        refused(&v, &garbage),
        AuthError::TooLarge { len: 64 * 1024 }
    );
    // A well-formed token padded past the limit with a huge claim: still TooLarge.
    let big = hs(&json!({"exp": now() + 600, "pad": "x".repeat(MAX_TOKEN_LEN)}));
    let err = refused(&v, &big);
    assert_eq!(err, AuthError::TooLarge { len: big.len() });
    assert_eq!(err.label(), "too_large");
    assert!(
        err.to_string().contains("more than the 8192 allowed"),
        "{err}"
    );
    let at_limit = "a".repeat(MAX_TOKEN_LEN);
    assert!(matches!(refused(&v, &at_limit), AuthError::Malformed(_)));
    let over = "a".repeat(MAX_TOKEN_LEN + 1);
    assert!(matches!(refused(&v, &over), AuthError::TooLarge { .. }));
}

#[test]
fn kid_rotation() {
    let v = verifier(&auth(vec![
        key(Some("old"), "HS256", "hs-old.secret"),
        key(Some("new"), "HS256", "hs.secret"),
    ]));
    let claims = json!({"sub": "42", "exp": now() + 600});
    for (kid, file) in [("old", "hs-old.secret"), ("new", "hs.secret")] {
        let token = mint(Algorithm::HS256, Some(kid), file, &claims);
        assert_eq!(
            v.verify(&token).unwrap().sub.as_deref(),
            Some("42"),
            "{kid}"
        );
    }
    // Without a kid, every HS256 key is tried.
    for file in ["hs-old.secret", "hs.secret"] {
        assert!(
            v.verify(&mint(Algorithm::HS256, None, file, &claims))
                .is_ok()
        );
    }
    // A kid names one key: the other key's signature does not count.
    let crossed = mint(Algorithm::HS256, Some("new"), "hs-old.secret", &claims);
    assert_eq!(refused(&v, &crossed), AuthError::BadSignature);
    let gone = mint(Algorithm::HS256, Some("2019"), "hs-old.secret", &claims);
    let err = refused(&v, &gone);
    assert_eq!(err, AuthError::UnknownKey("2019".into()));
    assert!(
        err.to_string().starts_with("no key has kid \"2019\""),
        "{err}"
    );
    // The kid comes from the token: shown bounded and escaped.
    let hostile = format!("{}\n{}", "k".repeat(100), "x".repeat(5000));
    let err = refused(
        &v,
        &mint(Algorithm::HS256, Some(&hostile), "hs.secret", &claims),
    );
    let shown = err.to_string();
    assert!(
        shown.len() < 400 && shown.contains(&format!("\"{}\"...", "k".repeat(64))),
        "{shown}"
    );
}

#[test]
fn error_labels_and_statuses() {
    let all = [
        AuthError::Missing,
        AuthError::TooLarge { len: 9000 },
        AuthError::Malformed("x"),
        AuthError::UnknownKey("k".into()),
        AuthError::Algorithm("alg x: sign with y".into()),
        AuthError::BadSignature,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::Issuer,
        AuthError::Audience,
        AuthError::MissingClaim("sub".into()),
        AuthError::ChannelNotAllowed("c".into()),
    ];
    let labels: std::collections::BTreeSet<_> = all.iter().map(AuthError::label).collect();
    let mut want = AuthError::ALL_LABELS.to_vec();
    want.sort_unstable();
    assert_eq!(
        labels.into_iter().collect::<Vec<_>>(),
        want,
        "every label used"
    );
    for err in &all {
        assert_eq!(
            err.status(),
            if *err == AuthError::Missing { 401 } else { 403 }
        );
        assert!(err.to_string().contains(':'), "says how to fix: {err}");
    }
}

#[test]
fn verifier_equality_and_debug() {
    let raw = auth(vec![
        key(Some("a"), "HS256", "hs.secret"),
        key(None, "ES256", "ec.pub"),
    ]);
    let v = verifier(&raw);
    assert_eq!(v, verifier(&raw), "same config, same verifier");
    assert_eq!(v, v.clone());
    let mut other = raw.clone();
    other.leeway = Duration::from_secs(10).into();
    assert_ne!(v, verifier(&other));
    let mut other = raw.clone();
    other.keys[0].file = "hs-old.secret".into();
    assert_ne!(v, verifier(&other), "same kid, another secret");
    let mut other = raw.clone();
    other.keys[0].kid = Some("b".into());
    assert_ne!(v, verifier(&other));
    let mut other = raw.clone();
    other.audience = Some("heartwire".into());
    assert_ne!(v, verifier(&other));

    let debug = format!("{v:?}");
    let secret = String::from_utf8(fixture("hs.secret")).unwrap();
    assert!(
        !debug.contains(secret.trim()) && !debug.contains("BEGIN"),
        "{debug}"
    );
    assert!(
        debug.contains("HS256") && debug.contains("\"a\""),
        "{debug}"
    );
}

#[test]
fn toml_round_trip_and_defaults() {
    #[derive(Debug, serde::Deserialize, serde::Serialize)]
    struct Config {
        auth: RawAuth,
    }
    let text = r#"
        [auth]
        issuer = "https://app.example"
        leeway = "10s"

        [[auth.key]]
        kid = "old"
        algorithm = "HS256"
        file = "hs-old.secret"

        [[auth.key]]
        algorithm = "EdDSA"
        file = "ed25519.pub"
    "#;
    let parsed: Config = toml::from_str(text).unwrap();
    let raw = &parsed.auth;
    assert_eq!(raw.issuer.as_deref(), Some("https://app.example"));
    assert_eq!((raw.audience.as_ref(), raw.require_exp), (None, true));
    assert_eq!(raw.leeway.text(), "10s");
    assert_eq!(raw.keys[1], key(None, "EdDSA", "ed25519.pub"));
    let again: Config = toml::from_str(&toml::to_string(&parsed).unwrap()).unwrap();
    assert_eq!(&again.auth, raw);
    assert!(
        verifier(raw)
            .keys()
            .map(Key::algorithm)
            .eq([Algorithm::HS256, Algorithm::EdDSA])
    );

    let empty: Config = toml::from_str("[auth]\n").unwrap();
    assert_eq!(empty.auth, RawAuth::default());
    assert_eq!(empty.auth.leeway.text(), "30s");
    assert_eq!(
        empty.auth.validate(&in_fixtures),
        Ok(None),
        "no keys, no verifier"
    );

    for bad in [
        "[auth]\nleway = \"1s\"\n",
        "[auth]\n[[auth.key]]\nalgorithm = \"HS256\"\nfile = \"x\"\nsecret = \"inline\"\n",
        "[auth]\n[[auth.key]]\nfile = \"x\"\n",
    ] {
        assert!(toml::from_str::<Config>(bad).is_err(), "{bad}");
    }
}

/// The problems `raw` has, as (key, reason).
fn problems(raw: &RawAuth) -> Vec<(String, String)> {
    raw.validate(&in_fixtures).unwrap_err()
}

fn one_problem(raw: &RawAuth, at: &str, says: &str) {
    let found = problems(raw);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, at, "{found:?}");
    assert!(found[0].1.contains(says), "{at}: {}", found[0].1);
}

#[test]
fn validate_reports_every_problem() {
    let raw = auth(vec![
        key(None, "HS256", "hs.secret"),
        key(None, "HS256", "missing.secret"),
        key(None, "none", "hs.secret"),
    ]);
    let found = problems(&raw);
    let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["auth.key[1].file", "auth.key[2].algorithm"],
        "{found:?}"
    );
    assert!(
        found[0].1.starts_with("`missing.secret` ("),
        "{}",
        found[0].1
    );
    assert!(found[0].1.contains("cannot be read"), "{}", found[0].1);
    assert!(
        found[1]
            .1
            .contains("unsigned tokens, which anyone can forge"),
        "{}",
        found[1].1
    );

    // Each independent problem of one key, and of the section.
    let mut raw = auth(vec![key(Some(""), "hs256", "nowhere")]);
    raw.leeway = Duration::from_secs(600).into();
    raw.issuer = Some(" ".into());
    let found: Vec<String> = problems(&raw).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        found,
        [
            "auth.leeway",
            "auth.issuer",
            "auth.key[0].kid",
            "auth.key[0].algorithm",
            "auth.key[0].file"
        ]
    );
}

#[test]
fn validate_algorithms() {
    one_problem(
        &auth(vec![key(None, "hs256", "hs.secret")]),
        "auth.key[0].algorithm",
        "case-sensitive, as in a JWT header: write \"HS256\"",
    );
    one_problem(
        &auth(vec![key(None, "None", "hs.secret")]),
        "auth.key[0].algorithm",
        "`None` means unsigned tokens",
    );
    one_problem(
        &auth(vec![key(None, "HS1024", "hs.secret")]),
        "auth.key[0].algorithm",
        "write one of HS256, HS384, HS512, RS256",
    );
    for name in ALGORITHMS {
        assert!(super::key::parse_algorithm(name).is_ok(), "{name}");
    }
}

#[test]
fn validate_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let short = write("short.secret", b"0123456789abcdef\n");
    one_problem(
        &auth(vec![key(None, "HS256", &short)]),
        "auth.key[0].file",
        "holds 16 bytes (less one trailing newline), fewer than the 32 HS256 needs",
    );
    let secret40 = write("40.secret", &[b'k'; 40]);
    assert!(
        auth(vec![key(None, "HS256", &secret40)])
            .validate(&in_fixtures)
            .is_ok()
    );
    one_problem(
        &auth(vec![key(None, "HS384", &secret40)]),
        "auth.key[0].file",
        "fewer than the 48 HS384 needs",
    );
    let big = write("big.pub", &vec![b'A'; MAX_KEY_FILE + 1]);
    one_problem(
        &auth(vec![key(None, "ES256", &big)]),
        "auth.key[0].file",
        "is larger than 64 KiB",
    );
    let exact = write("exact.secret", &vec![b'k'; MAX_KEY_FILE]);
    assert!(
        auth(vec![key(None, "HS256", &exact)])
            .validate(&in_fixtures)
            .is_ok()
    );
    one_problem(
        &auth(vec![key(None, "HS256", dir.path().to_str().unwrap())]),
        "auth.key[0].file",
        "is not a regular file",
    );
    let garbage = write("garbage.pub", b"not a key at all\n");
    one_problem(
        &auth(vec![key(None, "ES256", &garbage)]),
        "auth.key[0].file",
        "is not PEM (no -----BEGIN PUBLIC KEY----- line)",
    );
    let mut two = fixture("ec.pub");
    two.extend(fixture("rsa.pub"));
    let two = write("two.pub", &two);
    one_problem(
        &auth(vec![key(None, "ES256", &two)]),
        "auth.key[0].file",
        "holds 2 PEM blocks",
    );
}

#[test]
fn validate_pem_mistakes() {
    for (algorithm, file, says) in [
        (
            "RS256",
            "rsa.key",
            "`rsa.key` is a private key (BEGIN PRIVATE KEY): give heartwire only the public key",
        ),
        ("ES256", "ec.key", "is a private key"),
        ("EdDSA", "ed25519.key", "is a private key"),
        (
            "ES256",
            "ec.crt",
            "`ec.crt` is a certificate: give its public key",
        ),
        (
            "RS256",
            "ec.pub",
            "is an EC public key (ES256, ES384), not an RSA public key",
        ),
        (
            "ES256",
            "rsa.pub",
            "is an RSA public key (RS*, PS*), not a P-256 EC public key",
        ),
        (
            "EdDSA",
            "ec.pub",
            "is an EC public key (ES256, ES384), not an Ed25519 public key",
        ),
        (
            "ES384",
            "ec.pub",
            "is not a P-384 EC public key that heartwire can read",
        ),
        (
            "HS256",
            "rsa.pub",
            "is a PEM file, but HS256 takes a shared secret",
        ),
        (
            "RS256",
            "rsa1024.pub",
            "is a 1024-bit RSA key: keys under 2048 bits can be factored",
        ),
    ] {
        one_problem(
            &auth(vec![key(None, algorithm, file)]),
            "auth.key[0].file",
            says,
        );
    }
}

#[test]
fn a_key_is_its_material_not_its_wrapping() {
    // The same RSA public key as PKCS#1 (BEGIN RSA PUBLIC KEY) and SPKI (BEGIN PUBLIC KEY).
    let pkcs1 = verifier(&auth(vec![key(None, "RS256", "rsa-pkcs1.pub")]));
    let spki = verifier(&auth(vec![key(None, "RS256", "rsa.pub")]));
    let token = mint(
        Algorithm::RS256,
        None,
        "rsa.key",
        &json!({"exp": now() + 600}),
    );
    assert!(pkcs1.verify(&token).is_ok());
    assert_eq!(
        pkcs1, spki,
        "a reload that re-wraps the PEM changes nothing"
    );
    let crlf = tempfile::NamedTempFile::new().unwrap();
    let mut secret = fixture("hs.secret");
    secret.pop();
    secret.extend(b"\r\n");
    std::fs::write(crlf.path(), &secret).unwrap();
    let path = crlf.path().to_str().unwrap();
    assert_eq!(
        verifier(&auth(vec![key(None, "HS256", path)])),
        hs_verifier(),
        "one trailing newline, LF or CRLF, is not part of the secret"
    );
}

#[test]
fn validate_kids_and_section() {
    one_problem(
        &auth(vec![
            key(Some("a"), "HS256", "hs.secret"),
            key(Some("a"), "HS256", "hs-old.secret"),
        ]),
        "auth.key[1].kid",
        "`a` is already the kid of auth.key[0]",
    );
    one_problem(
        &auth(vec![key(Some(" a"), "HS256", "hs.secret")]),
        "auth.key[0].kid",
        "not a usable kid",
    );
    let too_many = auth(vec![key(None, "HS256", "hs.secret"); MAX_KEYS + 1]);
    one_problem(&too_many, "auth.key", "17 keys, more than the 16 allowed");

    let mut raw = auth(vec![key(None, "HS256", "hs.secret")]);
    raw.leeway = "1500ms"
        .parse::<humantime::Duration>()
        .map(|d| (*d).into())
        .unwrap();
    one_problem(&raw, "auth.leeway", "not a whole number of seconds");
    raw.leeway = Duration::from_secs(301).into();
    one_problem(&raw, "auth.leeway", "longer than the 5m allowed");
    raw.leeway = MAX_LEEWAY.into();
    assert!(raw.validate(&in_fixtures).is_ok());

    let mut keyless = RawAuth {
        audience: Some("heartwire".into()),
        ..RawAuth::default()
    };
    one_problem(&keyless, "auth.key", "no [[auth.key]]");
    keyless.audience = Some(String::new());
    assert_eq!(problems(&keyless).len(), 2);

    // The caller's resolver explains a path it cannot resolve; the reason names it.
    let raw = auth(vec![key(None, "HS256", "%credentials%/jwt")]);
    let found = raw
        .validate(
            &|_: &Path| Err("uses %credentials% but $CREDENTIALS_DIRECTORY is not set".into()),
        )
        .unwrap_err();
    assert_eq!(
        found,
        [(
            "auth.key[0].file".to_owned(),
            "`%credentials%/jwt` uses %credentials% but $CREDENTIALS_DIRECTORY is not set"
                .to_owned()
        )]
    );
}

/// Valid headers with arbitrary payloads, correctly signed: the claims parser meets
/// whatever JSON (or not JSON) a backend could sign.
fn signed_payload(payload: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        b64(&json!({"alg": "HS256", "typ": "JWT"})),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &signing_key(Algorithm::HS256, "hs.secret"),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

proptest! {
    #[test]
    fn verify_never_panics_on_arbitrary_strings(token in any::<String>()) {
        let _ = hs_verifier().verify(&token);
    }

    #[test]
    fn verify_never_panics_on_token_shaped_strings(token in "[A-Za-z0-9_=+/.-]{0,400}") {
        let _ = hs_verifier().verify(&token);
    }

    #[test]
    fn verify_never_panics_on_signed_payloads(
        claims in proptest::collection::btree_map(
            "exp|nbf|sub|aud|iss|channels|[a-z]{1,3}",
            prop_oneof![
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                any::<String>().prop_map(Value::from),
                Just(json!(["a.*", "b"])),
                Just(json!([null, 1, "*"])),
                Just(Value::Null),
            ],
            0..8,
        ),
        raw in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let object = Value::Object(claims.into_iter().collect());
        let v = hs_verifier();
        if let Err(err) = v.verify(&signed_payload(object.to_string().as_bytes())) {
            prop_assert!(AuthError::ALL_LABELS.contains(&err.label()));
        }
        let _ = v.verify(&signed_payload(&raw));
    }
}

#[test]
fn a_refused_token_closes_with_4001_when_expired_and_4003_otherwise() {
    let (code, reason) = AuthError::Expired.close("the token expired");
    assert_eq!(code, crate::close::TOKEN_EXPIRED);
    assert_eq!(reason, "token refused (expired): the token expired");
    for e in [
        AuthError::Missing,
        AuthError::TooLarge { len: 9000 },
        AuthError::BadSignature,
        AuthError::NotYetValid,
        AuthError::Issuer,
        AuthError::Audience,
        AuthError::SubjectChanged,
        AuthError::ChannelNotAllowed("user.x".into()),
    ] {
        let (code, reason) = e.close(&e.to_string());
        assert_eq!(code, crate::close::REFUSED, "{e:?}");
        assert_eq!(reason, format!("token refused ({}): {e}", e.label()));
    }
}
