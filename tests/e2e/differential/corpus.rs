//! The differential corpus: valid tokens of every algorithm and thousands of mutations of them,
//! each a [`Case`] of one mutation class.
//!
//! Everything is derived from the fixture keys (`tests/support`) and the clock, so a run is
//! reproducible apart from the dates in the claims and the random salt of RSA-PSS signatures.
//! The one case whose outcome can drift with the clock (`exp` 10 s ago, within the 60 s skew,
//! so 50 s of margin) is in the `claims` class, which is made last and sent first.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::{self, b64url, sign_raw, TestKey};

pub const ISSUER: &str = "https://idp.differential.test/realms/corp";
pub const AUDIENCE: &str = "api://differential";
/// A second configured audience, an `https` URL, to see how each filter compares URLs.
pub const HTTPS_AUDIENCE: &str = "https://api.differential.test";

/// The mutation classes, in report order, with what each holds.
pub const CLASSES: [(&str, &str); 14] = [
    ("valid", "valid tokens of every algorithm: with and without `kid`/`typ`, `aud` array, minimal and rich claims"),
    ("claims", "claims edited and re-signed: `exp`/`iat`/`nbf` missing, past, future, mistyped, out of range; `aud`/`iss`/`sub`/`jti` variants"),
    ("json", "header/payload JSON syntax, re-signed: duplicate members, trailing data, comments, quotes, BOM, nesting, size, encodings"),
    ("header", "header edits, re-signed: `alg` relabelled/none/mistyped, `kid`, `typ`, `crit`, `b64`, embedded keys, duplicates"),
    ("signature", "signatures of the right key mangled: lengths, zeros, DER, high-S, S+L, PSS salt lengths, s+n"),
    ("base64", "spellings of each segment: padding, 1-4 characters appended, last dropped, non-zero unused bits, standard alphabet"),
    ("segments", "segments swapped, repeated, dropped, added, empty, taken from other tokens"),
    ("transport", "the `Authorization` header: scheme case, spacing, junk around the token, several tokens"),
    ("bitflip-header", "one bit flipped in the decoded header, re-encoded canonically"),
    ("bitflip-payload", "one bit flipped in the decoded payload, re-encoded canonically"),
    ("bitflip-signature", "one bit flipped in the decoded signature, re-encoded canonically"),
    ("charflip-header", "one bit flipped in one character of the header text (kept printable)"),
    ("charflip-payload", "one bit flipped in one character of the payload text (kept printable)"),
    ("charflip-signature", "one bit flipped in one character of the signature text (kept printable)"),
];

/// Every algorithm both filters verify with the fixture keys.
pub const ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// The keys both filters trust (`kid`s `rsa-2048`, `p256`, `p384`, `ed25519`).
pub const TRUSTED_KEYS: [TestKey; 4] = [
    TestKey::Rsa2048,
    TestKey::P256,
    TestKey::P384,
    TestKey::Ed25519,
];

/// One request of the corpus.
#[derive(Debug, Clone)]
pub struct Case {
    /// The mutation class the report groups by (`valid`, `claims`, `bitflip-payload`, …).
    pub class: &'static str,
    /// The algorithm of the token the mutation started from (`-` for none).
    pub alg: &'static str,
    /// The mutation within the class, without the algorithm (`exp-missing`, `byte-12-bit-3`).
    pub variant: String,
    /// The `Authorization` header values to send (usually one: `Bearer <token>`).
    pub authorization: Vec<String>,
}

impl Case {
    /// `class/alg/variant`: unique within the corpus.
    pub fn name(&self) -> String {
        format!("{}/{}/{}", self.class, self.alg, self.variant)
    }

    /// `class/variant`: what the list of explained disagreements names (any algorithm).
    pub fn key(&self) -> String {
        format!("{}/{}", self.class, self.variant)
    }
}

/// The corpus, with dates from `clock`. The `claims` class, whose dates within the skew are
/// the only ones with margins under an hour, is made last (with a fresh `clock()`) and comes
/// first, so it is sent within seconds of being made.
pub fn corpus(clock: impl Fn() -> i64) -> Vec<Case> {
    let mut rest = Corpus {
        now: clock(),
        cases: Vec::new(),
    };
    rest.valid();
    rest.json_syntax();
    rest.header();
    rest.signature();
    rest.base64();
    rest.segments();
    rest.transport();
    rest.bit_flips();
    let mut timed = Corpus {
        now: clock(),
        cases: Vec::new(),
    };
    timed.claims();
    timed.cases.extend(rest.cases);
    timed.cases
}

struct Corpus {
    now: i64,
    cases: Vec<Case>,
}

fn key_for(alg: &str) -> TestKey {
    TestKey::for_algorithm(alg)
}

/// `{"alg", "kid", "typ": "JWT"}` as the tokens of most cases carry it.
fn standard_header(alg: &str) -> Value {
    json!({"alg": alg, "kid": key_for(alg).kid(), "typ": "JWT"})
}

fn segments(token: &str) -> [String; 3] {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    [
        parts[0].to_owned(),
        parts[1].to_owned(),
        parts[2].to_owned(),
    ]
}

fn decode(segment: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(segment).expect("canonical segment")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

const SEGMENT_NAMES: [&str; 3] = ["header", "payload", "signature"];

impl Corpus {
    fn push(&mut self, class: &'static str, alg: &'static str, variant: &str, token: &str) {
        self.push_raw(class, alg, variant, vec![bearer(token)]);
    }

    fn push_raw(
        &mut self,
        class: &'static str,
        alg: &'static str,
        variant: &str,
        authorization: Vec<String>,
    ) {
        self.cases.push(Case {
            class,
            alg,
            variant: variant.to_owned(),
            authorization,
        });
    }

    /// Valid claims: issued now, expiring in an hour, for [`AUDIENCE`].
    fn claims_now(&self) -> Value {
        json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": self.now, "exp": self.now + 3600})
    }

    /// The standard valid token of `alg`.
    fn valid_token(&self, alg: &str) -> String {
        self.signed(
            alg,
            &standard_header(alg).to_string(),
            &self.claims_now().to_string(),
        )
    }

    /// `header` and `payload` (JSON texts) signed under `alg` by its usual key.
    fn signed(&self, alg: &str, header: &str, payload: &str) -> String {
        sign_raw(alg, key_for(alg), header, payload)
    }

    /// Valid tokens both filters must accept: the corpus's baseline (asserted to agree).
    fn valid(&mut self) {
        for alg in ALGORITHMS {
            let claims = self.claims_now();
            let header = standard_header(alg);
            let mut variants: Vec<(&str, Value, Value)> = vec![
                ("standard", header.clone(), claims.clone()),
                ("no-kid", json!({"alg": alg, "typ": "JWT"}), claims.clone()),
                (
                    "no-typ",
                    json!({"alg": alg, "kid": key_for(alg).kid()}),
                    claims.clone(),
                ),
                ("only-alg", json!({"alg": alg}), claims.clone()),
                (
                    "typ-at+jwt",
                    json!({"alg": alg, "kid": key_for(alg).kid(), "typ": "at+jwt"}),
                    claims.clone(),
                ),
            ];
            let mut with = |variant: &'static str, edit: &dyn Fn(&mut Value)| {
                let mut claims = claims.clone();
                edit(&mut claims);
                variants.push((variant, header.clone(), claims));
            };
            with("aud-array", &|claims| {
                claims["aud"] = json!(["api://other", AUDIENCE]);
            });
            with("minimal-claims", &|claims| {
                let exp = claims["exp"].clone();
                *claims = json!({"iss": ISSUER, "aud": AUDIENCE, "exp": exp});
            });
            let now = self.now;
            with("nbf-past", &|claims| claims["nbf"] = json!(now - 10));
            with("rich-claims", &|claims| {
                claims["realm_access"] = json!({"roles": ["admin", "viewer"]});
                claims["scope"] = json!("orders:read orders:write");
                claims["name"] = json!("Zoë Ünïcödé 名前 🦀");
                claims["score"] = json!(3.25);
                claims["active"] = json!(true);
                claims["nothing"] = Value::Null;
                claims["jti"] = json!("3f1c9a");
            });
            for (variant, header, claims) in variants {
                let token = self.signed(alg, &header.to_string(), &claims.to_string());
                self.push("valid", alg, variant, &token);
            }
        }
    }

    /// Claims edited and re-signed: dates, audiences, issuers, subject and id of the wrong
    /// type or value.
    fn claims(&mut self) {
        let now = self.now;
        let edits: Vec<(&str, Edit)> = vec![
            ("exp-missing", remove("exp")),
            ("exp-past", set("exp", json!(now - 3600))),
            ("exp-past-within-skew", set("exp", json!(now - 10))),
            ("exp-string", set("exp", json!((now + 3600).to_string()))),
            ("exp-negative", set("exp", json!(-1))),
            ("exp-zero", set("exp", json!(0))),
            ("exp-one", set("exp", json!(1))),
            ("exp-null", set("exp", Value::Null)),
            ("exp-bool", set("exp", json!(true))),
            ("exp-array", set("exp", json!([now + 3600]))),
            ("exp-fractional", set("exp", json!(now as f64 + 3600.5))),
            (
                "exp-after-year-9999",
                set("exp", json!(253_402_300_800_i64)),
            ),
            ("exp-huge", set("exp", json!(1e19))),
            ("exp-u64-max", set("exp", json!(u64::MAX))),
            ("iat-missing", remove("iat")),
            ("iat-future", set("iat", json!(now + 3600))),
            ("iat-future-within-skew", set("iat", json!(now + 30))),
            ("iat-string", set("iat", json!(now.to_string()))),
            ("iat-negative", set("iat", json!(-1))),
            ("iat-fractional", set("iat", json!(now as f64 - 0.5))),
            ("iat-after-exp", set("iat", json!(now + 50))),
            ("nbf-future", set("nbf", json!(now + 3600))),
            ("nbf-future-within-skew", set("nbf", json!(now + 30))),
            ("nbf-string", set("nbf", json!(now.to_string()))),
            ("nbf-negative", set("nbf", json!(-1))),
            ("nbf-null", set("nbf", Value::Null)),
            ("nbf-negative-zero", set("nbf", json!(-0.0))),
            ("aud-missing", remove("aud")),
            ("aud-other", set("aud", json!("api://other"))),
            (
                "aud-array-with-ours",
                set("aud", json!(["api://a", AUDIENCE, "api://b"])),
            ),
            (
                "aud-array-without-ours",
                set("aud", json!(["api://a", "api://b"])),
            ),
            ("aud-empty-array", set("aud", json!([]))),
            ("aud-empty-string", set("aud", json!(""))),
            ("aud-number", set("aud", json!(42))),
            ("aud-null", set("aud", Value::Null)),
            ("aud-object", set("aud", json!({"aud": AUDIENCE}))),
            ("aud-array-with-number", set("aud", json!([AUDIENCE, 42]))),
            ("aud-nested-array", set("aud", json!([[AUDIENCE]]))),
            ("aud-uppercase", set("aud", json!(AUDIENCE.to_uppercase()))),
            (
                "aud-trailing-slash",
                set("aud", json!(format!("{AUDIENCE}/"))),
            ),
            ("aud-prefix", set("aud", json!("api://diff"))),
            ("aud-https", set("aud", json!(HTTPS_AUDIENCE))),
            (
                "aud-https-trailing-slash",
                set("aud", json!(format!("{HTTPS_AUDIENCE}/"))),
            ),
            (
                "aud-https-as-http",
                set("aud", json!(HTTPS_AUDIENCE.replace("https:", "http:"))),
            ),
            (
                "aud-https-without-scheme",
                set("aud", json!(HTTPS_AUDIENCE.trim_start_matches("https://"))),
            ),
            (
                "aud-https-uppercase-host",
                set(
                    "aud",
                    json!(HTTPS_AUDIENCE.to_uppercase().replace("HTTPS", "https")),
                ),
            ),
            ("iss-missing", remove("iss")),
            ("iss-other", set("iss", json!("https://evil.example"))),
            ("iss-uppercase", set("iss", json!(ISSUER.to_uppercase()))),
            (
                "iss-trailing-slash",
                set("iss", json!(format!("{ISSUER}/"))),
            ),
            ("iss-number", set("iss", json!(42))),
            ("iss-null", set("iss", Value::Null)),
            ("iss-array", set("iss", json!([ISSUER]))),
            ("iss-empty", set("iss", json!(""))),
            ("sub-missing", remove("sub")),
            ("sub-number", set("sub", json!(42))),
            ("sub-empty", set("sub", json!(""))),
            ("sub-object", set("sub", json!({"id": "alice"}))),
            ("jti-string", set("jti", json!("id-1"))),
            ("jti-number", set("jti", json!(42))),
            ("jti-object", set("jti", json!({"id": 1}))),
            (
                "all-registered-missing",
                Box::new(|claims| *claims = json!({})),
            ),
        ];
        for alg in ALGORITHMS {
            for (variant, edit) in &edits {
                let mut claims = self.claims_now();
                edit(&mut claims);
                let token =
                    self.signed(alg, &standard_header(alg).to_string(), &claims.to_string());
                self.push("claims", alg, variant, &token);
            }
        }
    }

    /// Header and payload texts that are not plain JSON objects, or are ambiguous ones:
    /// duplicate members, trailing data, comments, encodings. Signed, so only parsing decides.
    fn json_syntax(&mut self) {
        let now = self.now;
        let exp = now + 3600;
        let valid = self.claims_now().to_string();
        let inner = valid
            .trim_start_matches('{')
            .trim_end_matches('}')
            .to_owned();
        let payloads: Vec<(&str, String)> = vec![
            (
                "payload-duplicate-exp-past-last",
                format!(r#"{{{inner},"exp":{}}}"#, now - 7200),
            ),
            (
                "payload-duplicate-exp-past-first",
                format!(r#"{{"exp":{},{inner}}}"#, now - 7200),
            ),
            (
                "payload-duplicate-iss",
                format!(r#"{{{inner},"iss":"https://evil.example"}}"#),
            ),
            (
                "payload-duplicate-iss-evil-first",
                format!(r#"{{"iss":"https://evil.example",{inner}}}"#),
            ),
            (
                "payload-duplicate-aud",
                format!(r#"{{{inner},"aud":"api://other"}}"#),
            ),
            (
                "payload-duplicate-same-value",
                format!(r#"{{{inner},"sub":"alice"}}"#),
            ),
            (
                "payload-duplicate-nested",
                format!(r#"{{{inner},"ctx":{{"a":1,"a":2}}}}"#),
            ),
            ("payload-trailing-garbage", format!("{valid}x")),
            ("payload-trailing-object", format!("{valid}{{}}")),
            ("payload-trailing-whitespace", format!("{valid} \n")),
            ("payload-leading-whitespace", format!(" \t\n{valid}")),
            ("payload-bom", format!("\u{feff}{valid}")),
            ("payload-trailing-comma", format!("{{{inner},}}")),
            ("payload-comment", format!("{{/*c*/{inner}}}")),
            ("payload-single-quotes", valid.replace('"', "'")),
            ("payload-nan", format!(r#"{{{inner},"x":NaN}}"#)),
            (
                "payload-number-overflow",
                format!(r#"{{{inner},"x":1e400}}"#),
            ),
            (
                "payload-big-integer",
                format!(r#"{{{inner},"x":123456789012345678901234567890}}"#),
            ),
            (
                "payload-exp-exponent",
                format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{}e0}}"#, exp),
            ),
            (
                "payload-exp-leading-zero",
                format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":0{exp}}}"#),
            ),
            (
                "payload-exp-plus-sign",
                format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":+{exp}}}"#),
            ),
            (
                "payload-iss-escaped-slashes",
                format!(
                    r#"{{"iss":"{}","aud":"{AUDIENCE}","exp":{exp}}}"#,
                    ISSUER.replace('/', "\\/")
                ),
            ),
            (
                "payload-iss-unicode-escape",
                format!(
                    r#"{{"iss":"\u0068{}","aud":"{AUDIENCE}","exp":{exp}}}"#,
                    &ISSUER[1..]
                ),
            ),
            (
                "payload-lone-surrogate",
                format!(r#"{{{inner},"name":"\ud800"}}"#),
            ),
            (
                "payload-surrogate-pair-escape",
                format!(r#"{{{inner},"name":"\ud83e\udd80"}}"#),
            ),
            (
                "payload-escaped-nul",
                format!(r#"{{{inner},"name":"a\u0000b"}}"#),
            ),
            (
                "payload-raw-control-char",
                format!("{{{inner},\"name\":\"a\u{1}b\"}}"),
            ),
            ("payload-array", format!("[{valid}]")),
            ("payload-null", "null".to_owned()),
            ("payload-string", format!("{:?}", valid)),
            ("payload-empty", String::new()),
            ("payload-empty-object", "{}".to_owned()),
            (
                "payload-deep-nesting-64",
                format!(r#"{{{inner},"d":{}1{}}}"#, "[".repeat(64), "]".repeat(64)),
            ),
            (
                "payload-deep-nesting-99",
                format!(r#"{{{inner},"d":{}1{}}}"#, "[".repeat(99), "]".repeat(99)),
            ),
            (
                "payload-deep-nesting-100",
                format!(r#"{{{inner},"d":{}1{}}}"#, "[".repeat(100), "]".repeat(100)),
            ),
            (
                "payload-deep-nesting-126",
                format!(r#"{{{inner},"d":{}1{}}}"#, "[".repeat(126), "]".repeat(126)),
            ),
            (
                "payload-deep-nesting-127",
                format!(r#"{{{inner},"d":{}1{}}}"#, "[".repeat(127), "]".repeat(127)),
            ),
            (
                "payload-deep-nesting-200",
                format!(r#"{{{inner},"d":{}1{}}}"#, "[".repeat(200), "]".repeat(200)),
            ),
            (
                "payload-large-claim-20k",
                format!(r#"{{{inner},"blob":"{}"}}"#, "x".repeat(20_000)),
            ),
            (
                "payload-large-claim-8k",
                format!(r#"{{{inner},"blob":"{}"}}"#, "x".repeat(8_000)),
            ),
        ];
        for alg in ALGORITHMS {
            let header = standard_header(alg).to_string();
            for (variant, payload) in &payloads {
                let token = self.signed(alg, &header, payload);
                self.push("json", alg, variant, &token);
            }
            // Invalid UTF-8 inside a string of the payload.
            let mut bytes = format!(r#"{{{inner},"name":"a"#).into_bytes();
            bytes.extend_from_slice(&[0xff, 0xfe]);
            bytes.extend_from_slice(br#""}"#);
            let input = format!("{}.{}", b64url(header.as_bytes()), b64url(&bytes));
            let token = format!(
                "{input}.{}",
                b64url(&key_for(alg).sign(alg, input.as_bytes()))
            );
            self.push("json", alg, "payload-invalid-utf8", &token);
        }
    }

    /// Header edits, re-signed with the algorithm's real key: `alg`, `kid`, `typ`, `crit`,
    /// `b64`, embedded keys, duplicate members.
    fn header(&mut self) {
        for alg in ALGORITHMS {
            let kid = key_for(alg).kid();
            let attacker_jwk = TestKey::P256Other.jwk();
            let headers: Vec<(&str, String)> = vec![
                ("alg-none", json!({"alg": "none", "kid": kid, "typ": "JWT"}).to_string()),
                ("alg-None", json!({"alg": "None", "kid": kid, "typ": "JWT"}).to_string()),
                ("alg-lowercase", json!({"alg": alg.to_lowercase(), "kid": kid, "typ": "JWT"}).to_string()),
                ("alg-missing", json!({"kid": kid, "typ": "JWT"}).to_string()),
                ("alg-number", json!({"alg": 256, "kid": kid, "typ": "JWT"}).to_string()),
                ("alg-null", json!({"alg": null, "kid": kid, "typ": "JWT"}).to_string()),
                ("alg-array", json!({"alg": [alg], "kid": kid, "typ": "JWT"}).to_string()),
                ("alg-empty", json!({"alg": "", "kid": kid, "typ": "JWT"}).to_string()),
                ("alg-Ed25519", json!({"alg": "Ed25519", "kid": kid, "typ": "JWT"}).to_string()),
                ("alg-trailing-space", json!({"alg": format!("{alg} "), "kid": kid, "typ": "JWT"}).to_string()),
                ("kid-missing", json!({"alg": alg, "typ": "JWT"}).to_string()),
                ("kid-unknown", json!({"alg": alg, "kid": "no-such-key", "typ": "JWT"}).to_string()),
                ("kid-untrusted-key", json!({"alg": alg, "kid": "p256-other", "typ": "JWT"}).to_string()),
                ("kid-other-trusted-key", json!({"alg": alg, "kid": if alg == "ES256" { "p384" } else { "p256" }, "typ": "JWT"}).to_string()),
                ("kid-empty", json!({"alg": alg, "kid": "", "typ": "JWT"}).to_string()),
                ("kid-number", json!({"alg": alg, "kid": 7, "typ": "JWT"}).to_string()),
                ("kid-null", json!({"alg": alg, "kid": null, "typ": "JWT"}).to_string()),
                ("kid-uppercase", json!({"alg": alg, "kid": kid.to_uppercase(), "typ": "JWT"}).to_string()),
                ("typ-missing", json!({"alg": alg, "kid": kid}).to_string()),
                ("typ-lowercase-jwt", json!({"alg": alg, "kid": kid, "typ": "jwt"}).to_string()),
                ("typ-at+jwt", json!({"alg": alg, "kid": kid, "typ": "at+jwt"}).to_string()),
                ("typ-application-at+jwt", json!({"alg": alg, "kid": kid, "typ": "application/at+jwt"}).to_string()),
                ("typ-JOSE", json!({"alg": alg, "kid": kid, "typ": "JOSE"}).to_string()),
                ("typ-dpop+jwt", json!({"alg": alg, "kid": kid, "typ": "dpop+jwt"}).to_string()),
                ("typ-logout+jwt", json!({"alg": alg, "kid": kid, "typ": "logout+jwt"}).to_string()),
                ("typ-empty", json!({"alg": alg, "kid": kid, "typ": ""}).to_string()),
                ("typ-number", json!({"alg": alg, "kid": kid, "typ": 1}).to_string()),
                ("cty-JWT", json!({"alg": alg, "kid": kid, "typ": "JWT", "cty": "JWT"}).to_string()),
                ("zip-DEF", json!({"alg": alg, "kid": kid, "typ": "JWT", "zip": "DEF"}).to_string()),
                ("crit-empty", json!({"alg": alg, "kid": kid, "typ": "JWT", "crit": []}).to_string()),
                ("crit-unknown-extension", json!({"alg": alg, "kid": kid, "typ": "JWT", "crit": ["x-ext"], "x-ext": true}).to_string()),
                ("crit-exp", json!({"alg": alg, "kid": kid, "typ": "JWT", "crit": ["exp"], "exp": 1}).to_string()),
                ("crit-b64-false", json!({"alg": alg, "kid": kid, "typ": "JWT", "crit": ["b64"], "b64": false}).to_string()),
                ("b64-false", json!({"alg": alg, "kid": kid, "typ": "JWT", "b64": false}).to_string()),
                ("b64-true", json!({"alg": alg, "kid": kid, "typ": "JWT", "b64": true}).to_string()),
                ("jku", json!({"alg": alg, "kid": kid, "typ": "JWT", "jku": "https://evil.example/jwks"}).to_string()),
                ("x5u", json!({"alg": alg, "kid": kid, "typ": "JWT", "x5u": "https://evil.example/cert"}).to_string()),
                ("unknown-member", json!({"alg": alg, "kid": kid, "typ": "JWT", "x-anything": {"a": [1, 2]}}).to_string()),
                ("duplicate-alg-same", format!(r#"{{"alg":"{alg}","kid":"{kid}","alg":"{alg}"}}"#)),
                ("duplicate-alg-none-last", format!(r#"{{"alg":"{alg}","kid":"{kid}","alg":"none"}}"#)),
                ("duplicate-alg-none-first", format!(r#"{{"alg":"none","kid":"{kid}","alg":"{alg}"}}"#)),
                ("duplicate-kid", format!(r#"{{"alg":"{alg}","kid":"no-such-key","kid":"{kid}"}}"#)),
                ("header-array", format!(r#"[{{"alg":"{alg}","kid":"{kid}"}}]"#)),
                ("header-trailing-garbage", format!(r#"{{"alg":"{alg}","kid":"{kid}"}}x"#)),
                ("header-empty-object", "{}".to_owned()),
                ("header-whitespace", format!(" {{ \"alg\" : \"{alg}\" , \"kid\" : \"{kid}\" }} ")),
                ("header-alg-unicode-escape", format!(r#"{{"alg":"\u{:04x}{}","kid":"{kid}"}}"#, u32::from(alg.as_bytes()[0]), &alg[1..])),
            ];
            let payload = self.claims_now().to_string();
            // The signature stays the real one; only the header's name for it changes.
            let mut headers = headers;
            for label in ALGORITHMS.iter().chain(&["HS256", "HS512", "ES512"]) {
                if label != &alg {
                    headers.push((
                        leak(format!("alg-relabelled-{label}")),
                        json!({"alg": label, "kid": kid, "typ": "JWT"}).to_string(),
                    ));
                }
            }
            for (variant, header) in &headers {
                let token = self.signed(alg, header, &payload);
                self.push("header", alg, variant, &token);
            }
            // Keys the token brings along must never be used: signed by an untrusted key that
            // the header embeds (or points to), without a `kid` so every trusted key is tried.
            if alg == "ES256" {
                for (variant, header) in [
                    (
                        "embedded-jwk",
                        json!({"alg": "ES256", "typ": "JWT", "jwk": attacker_jwk}),
                    ),
                    (
                        "embedded-jwk-with-its-kid",
                        json!({"alg": "ES256", "typ": "JWT", "kid": "p256-other", "jwk": attacker_jwk}),
                    ),
                ] {
                    let token =
                        sign_raw("ES256", TestKey::P256Other, &header.to_string(), &payload);
                    self.push("header", alg, variant, &token);
                }
            }
            // The HS256 key-confusion attack: an HMAC keyed with the public key's JWK text.
            let header = json!({"alg": "HS256", "typ": "JWT"}).to_string();
            let input = format!(
                "{}.{}",
                b64url(header.as_bytes()),
                b64url(payload.as_bytes())
            );
            let secret = key_for(alg).jwk().to_string();
            let mac = hmac_sha256(secret.as_bytes(), input.as_bytes());
            self.push(
                "header",
                alg,
                "hs256-public-key-as-secret",
                &format!("{input}.{}", b64url(&mac)),
            );
        }
    }

    /// Signatures of the right key that are not the right signature: wrong encodings, lengths,
    /// malleated values, other paddings.
    fn signature(&mut self) {
        for alg in ALGORITHMS {
            let token = self.valid_token(alg);
            let [header, payload, signature] = segments(&token);
            let input = format!("{header}.{payload}");
            let sig = decode(&signature);
            let with = |bytes: &[u8]| format!("{input}.{}", b64url(bytes));
            let mut variants: Vec<(String, String)> = vec![
                ("empty".to_owned(), format!("{input}.")),
                ("zeros".to_owned(), with(&vec![0; sig.len()])),
                ("truncated-one-byte".to_owned(), with(&sig[..sig.len() - 1])),
                (
                    "extended-zero-byte".to_owned(),
                    with(&[sig.as_slice(), &[0]].concat()),
                ),
                (
                    "leading-zero-byte".to_owned(),
                    with(&[&[0], sig.as_slice()].concat()),
                ),
                (
                    "doubled".to_owned(),
                    with(&[sig.as_slice(), sig.as_slice()].concat()),
                ),
                ("half".to_owned(), with(&sig[..sig.len() / 2])),
                (
                    "reversed".to_owned(),
                    with(&sig.iter().rev().copied().collect::<Vec<_>>()),
                ),
            ];
            // A signature over other claims, and one by the same key under another algorithm.
            let mut other_claims = self.claims_now();
            other_claims["sub"] = json!("mallory");
            let other = self.signed(
                alg,
                &standard_header(alg).to_string(),
                &other_claims.to_string(),
            );
            variants.push((
                "from-other-claims".to_owned(),
                format!("{input}.{}", segments(&other)[2]),
            ));
            let sibling = match alg {
                "RS256" => Some("PS256"),
                "PS256" => Some("RS256"),
                "RS384" | "RS512" => Some("RS256"),
                "PS384" | "PS512" => Some("PS256"),
                _ => None,
            };
            if let Some(sibling) = sibling {
                let bytes = key_for(alg).sign(sibling, input.as_bytes());
                variants.push((format!("signed-as-{sibling}"), with(&bytes)));
            }
            match alg {
                "ES256" | "ES384" => {
                    variants.push(("ecdsa-high-s".to_owned(), with(&ecdsa_negate_s(alg, &sig))));
                    let half = sig.len() / 2;
                    let mut r_zero = sig.clone();
                    r_zero[..half].fill(0);
                    variants.push(("ecdsa-r-zero".to_owned(), with(&r_zero)));
                    let mut s_zero = sig.clone();
                    s_zero[half..].fill(0);
                    variants.push(("ecdsa-s-zero".to_owned(), with(&s_zero)));
                    variants.push(("ecdsa-der".to_owned(), with(&ecdsa_der(&sig))));
                    let mut swapped = sig[half..].to_vec();
                    swapped.extend_from_slice(&sig[..half]);
                    variants.push(("ecdsa-r-s-swapped".to_owned(), with(&swapped)));
                }
                "EdDSA" => {
                    variants.push(("ed25519-s-plus-l".to_owned(), with(&ed25519_s_plus_l(&sig))));
                    let mut r_zero = sig.clone();
                    r_zero[..32].fill(0);
                    variants.push(("ed25519-r-zero".to_owned(), with(&r_zero)));
                }
                "PS256" | "PS384" | "PS512" => {
                    let hash_len = match alg {
                        "PS256" => 32,
                        "PS384" => 48,
                        _ => 64,
                    };
                    // RFC 7518 §3.5: the salt is as long as the hash. Both filters insist.
                    for (variant, salt) in [
                        ("pss-salt-0", 0),
                        ("pss-salt-20", 20),
                        ("pss-salt-max", 256 - hash_len - 2),
                    ] {
                        variants.push((
                            variant.to_owned(),
                            with(&pss_sign(alg, salt, input.as_bytes())),
                        ));
                    }
                }
                _ => {
                    variants.push(("rsa-plus-modulus".to_owned(), with(&rsa_plus_modulus(&sig))));
                }
            }
            for (variant, token) in variants {
                self.push("signature", alg, &variant, &token);
            }
        }
    }

    /// Base64url spellings: padding, characters appended or removed, non-zero unused bits,
    /// the standard alphabet — in each segment.
    fn base64(&mut self) {
        for alg in ALGORITHMS {
            let token = self.valid_token(alg);
            let parts = segments(&token);
            for (index, name) in SEGMENT_NAMES.iter().enumerate() {
                let segment = &parts[index];
                let mut spellings: Vec<(String, String)> = vec![
                    (format!("{name}-pad-one"), format!("{segment}=")),
                    (format!("{name}-pad-two"), format!("{segment}==")),
                    (format!("{name}-append-A"), format!("{segment}A")),
                    (format!("{name}-append-w"), format!("{segment}w")),
                    (format!("{name}-append-AA"), format!("{segment}AA")),
                    (format!("{name}-append-AAA"), format!("{segment}AAA")),
                    (format!("{name}-append-AAAA"), format!("{segment}AAAA")),
                    (
                        format!("{name}-drop-last-char"),
                        segment[..segment.len() - 1].to_owned(),
                    ),
                    (
                        format!("{name}-space-inside"),
                        format!("{} {}", &segment[..4], &segment[4..]),
                    ),
                    (
                        format!("{name}-percent-encoded-char"),
                        format!("%{:02X}{}", segment.as_bytes()[0], &segment[1..]),
                    ),
                ];
                let padding = (4 - segment.len() % 4) % 4;
                if padding > 0 {
                    let padded = format!("{segment}{}", "=".repeat(padding));
                    spellings.push((format!("{name}-padded-canonically"), padded));
                    // The last character carries 2 (or 4) unused bits; set the lowest of them.
                    let mut bytes = segment.clone().into_bytes();
                    let last = bytes.len() - 1;
                    let alphabet =
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                    let value = alphabet.iter().position(|&c| c == bytes[last]).unwrap();
                    bytes[last] = alphabet[value | 1];
                    spellings.push((
                        format!("{name}-nonzero-unused-bits"),
                        String::from_utf8(bytes).unwrap(),
                    ));
                }
                let standard = STANDARD_NO_PAD.encode(decode(segment));
                if standard != *segment {
                    spellings.push((format!("{name}-standard-alphabet"), standard));
                }
                for (variant, spelling) in spellings {
                    let mut parts = parts.clone();
                    parts[index] = spelling;
                    self.push("base64", alg, &variant, &parts.join("."));
                }
            }
        }
    }

    /// The segments rearranged: swapped, repeated, dropped, added, taken from other tokens.
    fn segments(&mut self) {
        let valid: Vec<[String; 3]> = ALGORITHMS
            .iter()
            .map(|alg| segments(&self.valid_token(alg)))
            .collect();
        for (i, alg) in ALGORITHMS.iter().enumerate() {
            let [h, p, s] = valid[i].clone();
            let next = &valid[(i + 1) % valid.len()];
            let mut other_claims = self.claims_now();
            other_claims["sub"] = json!("mallory");
            other_claims["admin"] = json!(true);
            let forged_payload = b64url(other_claims.to_string().as_bytes());
            let variants: Vec<(&str, String)> = vec![
                ("header-payload-swapped", format!("{p}.{h}.{s}")),
                ("header-twice", format!("{h}.{h}.{s}")),
                ("payload-twice", format!("{p}.{p}.{s}")),
                ("signature-first", format!("{s}.{h}.{p}")),
                ("two-segments", format!("{h}.{p}")),
                ("one-segment", h.clone()),
                ("four-segments", format!("{h}.{p}.{s}.{s}")),
                ("five-segments-jwe-shape", format!("{h}.{p}.{s}.{p}.{s}")),
                ("trailing-dot", format!("{h}.{p}.{s}.")),
                ("leading-dot", format!(".{h}.{p}.{s}")),
                ("empty-header", format!(".{p}.{s}")),
                ("empty-payload", format!("{h}..{s}")),
                ("double-dot", format!("{h}.{p}..{s}")),
                ("dots-only", "..".to_owned()),
                (
                    "signature-of-next-algorithm",
                    format!("{h}.{p}.{}", next[2]),
                ),
                ("header-of-next-algorithm", format!("{}.{p}.{s}", next[0])),
                ("payload-of-next-token", format!("{h}.{}.{s}", next[1])),
                ("forged-payload", format!("{h}.{forged_payload}.{s}")),
                (
                    "unsigned-alg-none",
                    format!("{}.{p}.", b64url(br#"{"alg":"none"}"#)),
                ),
            ];
            for (variant, token) in variants {
                self.push("segments", alg, variant, &token);
            }
        }
    }

    /// How the token travels: the `Authorization` header's scheme, spacing, several tokens.
    fn transport(&mut self) {
        for alg in ["RS256", "ES256", "EdDSA"] {
            let token = self.valid_token(alg);
            let variants: Vec<(&str, Vec<String>)> = vec![
                ("bearer-lowercase", vec![format!("bearer {token}")]),
                ("bearer-uppercase", vec![format!("BEARER {token}")]),
                ("bearer-mixed-case", vec![format!("bEaReR {token}")]),
                ("two-spaces", vec![format!("Bearer  {token}")]),
                ("tab-separator", vec![format!("Bearer\t{token}")]),
                ("no-separator", vec![format!("Bearer{token}")]),
                ("trailing-space", vec![format!("Bearer {token} ")]),
                ("empty-credential", vec!["Bearer ".to_owned()]),
                ("scheme-only", vec!["Bearer".to_owned()]),
                ("basic-scheme", vec![format!("Basic {token}")]),
                ("token-without-scheme", vec![token.clone()]),
                (
                    "basic-then-bearer",
                    vec![format!("Basic dXNlcjpwYXNz, Bearer {token}")],
                ),
                (
                    "bearer-inside-other-scheme",
                    vec![format!("xBearer {token}")],
                ),
                ("bearer-after-text", vec![format!("Token Bearer {token}")]),
                ("token-quoted", vec![format!("Bearer \"{token}\"")]),
                ("token-then-padding", vec![format!("Bearer {token}=")]),
                ("token-then-junk", vec![format!("Bearer {token};x=1")]),
                (
                    "token-then-space-junk",
                    vec![format!("Bearer {token} junk")],
                ),
                ("junk-then-token", vec![format!("Bearer ~{token}")]),
                (
                    "same-token-twice-joined",
                    vec![format!("Bearer {token},Bearer {token}")],
                ),
                (
                    "same-token-two-headers",
                    vec![bearer(&token), bearer(&token)],
                ),
                (
                    "invalid-then-valid-header",
                    vec!["Bearer invalid.token.here".to_owned(), bearer(&token)],
                ),
                (
                    "valid-then-invalid-header",
                    vec![bearer(&token), "Bearer invalid.token.here".to_owned()],
                ),
                ("no-header", vec![]),
            ];
            for (variant, values) in variants {
                self.push_raw("transport", alg, variant, values);
            }
        }
    }

    /// One bit flipped: in the decoded bytes of a segment (re-encoded canonically), and in one
    /// character of the token text (kept a printable, non-space character).
    fn bit_flips(&mut self) {
        for (alg_index, alg) in ALGORITHMS.iter().enumerate() {
            let token = self.valid_token(alg);
            let parts = segments(&token);
            for (index, class) in ["bitflip-header", "bitflip-payload", "bitflip-signature"]
                .into_iter()
                .enumerate()
            {
                let bytes = decode(&parts[index]);
                for position in sample(bytes.len(), 96) {
                    for step in [0, 5] {
                        let bit = (position * 3 + alg_index + step) % 8;
                        let mut flipped = bytes.clone();
                        flipped[position] ^= 1 << bit;
                        let mut parts = parts.clone();
                        parts[index] = b64url(&flipped);
                        self.push(
                            class,
                            alg,
                            &format!("byte-{position}-bit-{bit}"),
                            &parts.join("."),
                        );
                    }
                }
            }
            for (index, class) in ["charflip-header", "charflip-payload", "charflip-signature"]
                .into_iter()
                .enumerate()
            {
                let text = parts[index].as_bytes();
                for position in sample(text.len(), 96) {
                    // One bit per character; every bit in the last three, which carry a
                    // segment's unused bits.
                    let bits = if position + 3 >= text.len() { 7 } else { 1 };
                    let flips: Vec<(usize, u8)> = (0..7)
                        .map(|step| (position + alg_index + step) % 7)
                        .map(|bit| (bit, text[position] ^ (1 << bit)))
                        .filter(|(_, flipped)| (0x21..0x7f).contains(flipped))
                        .take(bits)
                        .collect();
                    for (bit, flipped) in flips {
                        let mut segment = text.to_vec();
                        segment[position] = flipped;
                        let mut parts = parts.clone();
                        parts[index] = String::from_utf8(segment).unwrap();
                        self.push(
                            class,
                            alg,
                            &format!("char-{position}-bit-{bit}"),
                            &parts.join("."),
                        );
                    }
                }
            }
        }
    }
}

/// Up to `count` positions spread evenly over `0..len`, always including the last three (where
/// a base64 segment's unused bits are).
fn sample(len: usize, count: usize) -> Vec<usize> {
    let mut positions: Vec<usize> = if len <= count {
        (0..len).collect()
    } else {
        (0..count).map(|i| i * len / count).collect()
    };
    positions.extend(len.saturating_sub(3)..len);
    positions.sort_unstable();
    positions.dedup();
    positions
}

/// A variant name made at run time, for the `&'static str` lists.
fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

/// A change to a claims set.
type Edit = Box<dyn Fn(&mut Value)>;

fn remove(claim: &'static str) -> Edit {
    Box::new(move |claims| {
        claims.as_object_mut().unwrap().remove(claim);
    })
}

fn set(claim: &'static str, value: Value) -> Edit {
    Box::new(move |claims| claims[claim] = value.clone())
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use sha2::{Digest as _, Sha256};
    let mut block = [0_u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// The other valid ECDSA signature of the same message: `(r, n - s)`.
fn ecdsa_negate_s(alg: &str, signature: &[u8]) -> Vec<u8> {
    if alg == "ES256" {
        let signature = p256::ecdsa::Signature::from_slice(signature).unwrap();
        let (r, s) = signature.split_scalars();
        p256::ecdsa::Signature::from_scalars(r, -s)
            .unwrap()
            .to_bytes()
            .to_vec()
    } else {
        let signature = p384::ecdsa::Signature::from_slice(signature).unwrap();
        let (r, s) = signature.split_scalars();
        p384::ecdsa::Signature::from_scalars(r, -s)
            .unwrap()
            .to_bytes()
            .to_vec()
    }
}

/// The ASN.1 DER `ECDSA-Sig-Value` of a raw `r || s` signature (what JWS forbids).
fn ecdsa_der(signature: &[u8]) -> Vec<u8> {
    let integer = |bytes: &[u8]| {
        let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|&b| b == 0).collect();
        let mut value = if trimmed.first().is_some_and(|&b| b & 0x80 != 0) {
            vec![0]
        } else {
            Vec::new()
        };
        value.extend(trimmed);
        let mut encoded = vec![0x02, u8::try_from(value.len()).unwrap()];
        encoded.extend(value);
        encoded
    };
    let (r, s) = signature.split_at(signature.len() / 2);
    let body = [integer(r), integer(s)].concat();
    let mut der = vec![0x30];
    if body.len() >= 0x80 {
        der.push(0x81);
    }
    der.push(u8::try_from(body.len()).unwrap());
    der.extend(body);
    der
}

/// An Ed25519 signature with `S + L` for `S`: the same value mod L, a non-canonical encoding
/// that RFC 8032 §5.1.7 requires verifiers to reject.
fn ed25519_s_plus_l(signature: &[u8]) -> Vec<u8> {
    // L = 2^252 + 27742317777372353535851937790883648493, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = signature.to_vec();
    let mut carry = 0_u16;
    for (index, l) in L.iter().enumerate() {
        let sum = u16::from(out[32 + index]) + u16::from(*l) + carry;
        out[32 + index] = u8::try_from(sum & 0xff).unwrap();
        carry = sum >> 8;
    }
    out
}

/// An RSA signature `s + n`: the same value modulo `n`, one byte longer.
fn rsa_plus_modulus(signature: &[u8]) -> Vec<u8> {
    use rsa::traits::PublicKeyParts as _;
    let modulus = rsa_key().to_public_key().n().clone();
    (rsa::BigUint::from_bytes_be(signature) + modulus).to_bytes_be()
}

fn rsa_key() -> rsa::RsaPrivateKey {
    use rsa::pkcs8::DecodePrivateKey as _;
    rsa::RsaPrivateKey::from_pkcs8_pem(include_str!("../../fixtures/keys/rsa2048.pem")).unwrap()
}

/// An RSA-PSS signature of `message` under `alg`'s hash with a salt of `salt` bytes.
fn pss_sign(alg: &str, salt: usize, message: &[u8]) -> Vec<u8> {
    use rsa::pss::BlindedSigningKey;
    use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
    let mut rng = rsa::rand_core::OsRng;
    match alg {
        "PS256" => BlindedSigningKey::<sha2::Sha256>::new_with_salt_len(rsa_key(), salt)
            .sign_with_rng(&mut rng, message)
            .to_vec(),
        "PS384" => BlindedSigningKey::<sha2::Sha384>::new_with_salt_len(rsa_key(), salt)
            .sign_with_rng(&mut rng, message)
            .to_vec(),
        _ => BlindedSigningKey::<sha2::Sha512>::new_with_salt_len(rsa_key(), salt)
            .sign_with_rng(&mut rng, message)
            .to_vec(),
    }
}

/// The JWKS both filters trust, inline.
pub fn trusted_jwks() -> Value {
    support::jwks(&TRUSTED_KEYS)
}
