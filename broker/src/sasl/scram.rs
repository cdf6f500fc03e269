//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802 and RFC 7677, as Kafka's
//! KIP-84 serves them): the server side of the exchange, and the stored
//! credential (salt, StoredKey, ServerKey, iterations; never the password).
//!
//! ```text
//!  client-first  n,,n=USER,r=CNONCE
//!  server-first  r=CNONCE+SNONCE,s=SALT,i=ITERATIONS
//!  client-final  c=biws,r=CNONCE+SNONCE,p=PROOF
//!  server-final  v=SERVER_SIGNATURE
//! ```
//! The proof shows the client knows SaltedPassword without sending it:
//! `H(proof XOR HMAC(StoredKey, AuthMessage)) == StoredKey`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2, rand};

use crate::cluster::ScramCredential;

/// Kafka's bounds on a credential's iterations.
pub(crate) const MIN_ITERATIONS: i32 = 4096;
/// See [`MIN_ITERATIONS`].
pub(crate) const MAX_ITERATIONS: i32 = 16384;

/// Why an exchange failed; the client is only told that it did.
pub(crate) type ScramError = String;

/// A SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mechanism {
    /// SCRAM-SHA-256 (Kafka's mechanism code 1).
    Sha256,
    /// SCRAM-SHA-512 (code 2).
    Sha512,
}

impl Mechanism {
    /// Both, in Kafka's order.
    pub(crate) const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    /// The SASL name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// By SASL name.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's code (AlterUserScramCredentials, DescribeUserScramCredentials).
    pub(crate) fn code(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    /// By Kafka's code.
    pub(crate) fn from_code(code: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.code() == code)
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let algorithm = match self {
            Mechanism::Sha256 => hmac::HMAC_SHA256,
            Mechanism::Sha512 => hmac::HMAC_SHA512,
        };
        hmac::sign(&hmac::Key::new(algorithm, key), data)
            .as_ref()
            .to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        let algorithm = match self {
            Mechanism::Sha256 => &digest::SHA256,
            Mechanism::Sha512 => &digest::SHA512,
        };
        digest::digest(algorithm, data).as_ref().to_vec()
    }

    /// `Hi(password, salt, iterations)`: PBKDF2 with this mechanism's HMAC.
    pub(crate) fn salted_password(self, password: &[u8], salt: &[u8], iterations: i32) -> Vec<u8> {
        let (algorithm, len) = match self {
            Mechanism::Sha256 => (pbkdf2::PBKDF2_HMAC_SHA256, 32),
            Mechanism::Sha512 => (pbkdf2::PBKDF2_HMAC_SHA512, 64),
        };
        let rounds = std::num::NonZeroU32::new(iterations.max(1) as u32)
            .unwrap_or(std::num::NonZeroU32::MIN);
        let mut out = vec![0u8; len];
        pbkdf2::derive(algorithm, rounds, salt, password, &mut out);
        out
    }

    /// The stored credential for a salted password (what
    /// AlterUserScramCredentials sends).
    pub(crate) fn credential(
        self,
        salt: Vec<u8>,
        salted_password: &[u8],
        iterations: i32,
    ) -> ScramCredential {
        let client_key = self.hmac(salted_password, b"Client Key");
        ScramCredential {
            stored_key: self.hash(&client_key),
            server_key: self.hmac(salted_password, b"Server Key"),
            salt,
            iterations,
        }
    }

    /// A credential for `password` with a fresh random salt.
    pub(crate) fn new_credential(
        self,
        password: &str,
        iterations: i32,
    ) -> Result<ScramCredential, String> {
        let salt = random_bytes(32)?;
        let salted = self.salted_password(password.as_bytes(), &salt, iterations);
        Ok(self.credential(salt, &salted, iterations))
    }

    /// Whether `password` is the one `credential` was made from (SASL/PLAIN
    /// against the SCRAM credentials).
    pub(crate) fn verify_password(self, credential: &ScramCredential, password: &str) -> bool {
        let salted =
            self.salted_password(password.as_bytes(), &credential.salt, credential.iterations);
        let derived = self.credential(credential.salt.clone(), &salted, credential.iterations);
        equal(&derived.stored_key, &credential.stored_key)
    }
}

/// Random bytes from the system's generator; a salt or nonce is never made
/// without it.
fn random_bytes(n: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; n];
    rand::SecureRandom::fill(&rand::SystemRandom::new(), &mut out)
        .map_err(|_| "the system random generator failed".to_string())?;
    Ok(out)
}

/// A fresh server nonce (printable, no commas).
pub(crate) fn server_nonce() -> Result<String, String> {
    Ok(B64
        .encode(random_bytes(24)?)
        .replace('+', "-")
        .replace('/', "_"))
}

/// Constant-time equality of two byte strings.
fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A SCRAM username as sent (`=2C` is a comma, `=3D` an equals sign).
fn unescape(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(format!("invalid escape in the username {name:?}")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Where the server is in one exchange.
#[derive(Debug)]
enum State {
    Start,
    SentFirst {
        user: String,
        credential: ScramCredential,
        nonce: String,
        client_first_bare: String,
        server_first: String,
    },
    Done,
}

/// The server side of one SCRAM exchange.
#[derive(Debug)]
pub(crate) struct ScramServer {
    mechanism: Mechanism,
    server_nonce: String,
    state: State,
}

impl ScramServer {
    /// An exchange that will add `server_nonce` to the client's nonce.
    pub(crate) fn new(mechanism: Mechanism, server_nonce: String) -> Self {
        ScramServer {
            mechanism,
            server_nonce,
            state: State::Start,
        }
    }

    /// The mechanism.
    pub(crate) fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The next server message for a client message; `Ok(Some(user))` with
    /// the final one once the client has proved itself.
    pub(crate) fn step(
        &mut self,
        message: &[u8],
        lookup: impl Fn(&str) -> Option<ScramCredential>,
    ) -> Result<(Vec<u8>, Option<String>), ScramError> {
        let message =
            std::str::from_utf8(message).map_err(|_| "a SCRAM message is not UTF-8".to_string())?;
        match std::mem::replace(&mut self.state, State::Done) {
            State::Start => self.client_first(message, lookup).map(|m| (m, None)),
            State::SentFirst {
                user,
                credential,
                nonce,
                client_first_bare,
                server_first,
            } => {
                let last = self.client_final(
                    message,
                    &credential,
                    &nonce,
                    &client_first_bare,
                    &server_first,
                )?;
                Ok((last, Some(user)))
            }
            State::Done => Err("the SCRAM exchange is over".into()),
        }
    }

    fn client_first(
        &mut self,
        message: &str,
        lookup: impl Fn(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, ScramError> {
        // gs2-header: no channel binding, an optional authorization id.
        let (binding, rest) = message
            .split_once(',')
            .ok_or("a malformed SCRAM client-first message")?;
        if binding != "n" && binding != "y" {
            return Err("channel binding is not supported".into());
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or("a malformed SCRAM client-first message")?;
        let mut user = None;
        let mut client_nonce = None;
        for attribute in bare.split(',') {
            match attribute.split_once('=') {
                Some(("n", name)) => user = Some(unescape(name)?),
                Some(("r", nonce)) if !nonce.is_empty() => client_nonce = Some(nonce),
                Some(("tokenauth", _)) => return Err("delegation tokens are not supported".into()),
                Some(("m", _)) => return Err("SCRAM mandatory extensions are not supported".into()),
                _ => {}
            }
        }
        let user = user.ok_or("no username in the SCRAM client-first message")?;
        let client_nonce = client_nonce.ok_or("no nonce in the SCRAM client-first message")?;
        if let Some(authzid) = authzid.strip_prefix("a=") {
            if unescape(authzid)? != user {
                return Err("the authorization id is not the username".into());
            }
        } else if !authzid.is_empty() {
            return Err("a malformed SCRAM gs2 header".into());
        }
        let credential = lookup(&user).ok_or_else(|| format!("unknown user {user:?}"))?;
        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let reply = server_first.clone().into_bytes();
        self.state = State::SentFirst {
            user,
            credential,
            nonce,
            client_first_bare: bare.to_string(),
            server_first,
        };
        Ok(reply)
    }

    fn client_final(
        &self,
        message: &str,
        credential: &ScramCredential,
        nonce: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> Result<Vec<u8>, ScramError> {
        let (without_proof, proof) = message
            .rsplit_once(",p=")
            .ok_or("no proof in the SCRAM client-final message")?;
        let mut sent_nonce = None;
        for attribute in without_proof.split(',') {
            if let Some(value) = attribute.strip_prefix("r=") {
                sent_nonce = Some(value);
            }
        }
        // Kafka accepts a nonce that ends with the server's (librdkafka
        // before 2.1 sends its own nonce again in front); so does Runnel.
        if !sent_nonce.is_some_and(|sent| sent.ends_with(nonce)) {
            return Err("the SCRAM nonce does not match".into());
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| "the SCRAM proof is not base64".to_string())?;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let m = self.mechanism;
        let signature = m.hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err("invalid credentials".into());
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !equal(&m.hash(&client_key), &credential.stored_key) {
            return Err("invalid credentials".into());
        }
        let server_signature = m.hmac(&credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// One `--add-scram` entry, in the syntax of Kafka's
/// `kafka-storage format --add-scram` (KIP-900):
/// `SCRAM-SHA-256=[name=alice,password=alice-secret]`, with an optional
/// `iterations=N` (4096 by default).
pub(crate) fn parse_add_scram(text: &str) -> Result<(Mechanism, String, String, i32), String> {
    // The text holds a password: errors name the mechanism only.
    let shown = text.split_once('=').map_or("", |(m, _)| m);
    let bad = |why: &str| format!("--add-scram {shown}=[...]: {why}");
    let (mechanism, rest) = text
        .split_once('=')
        .ok_or_else(|| bad("expected MECHANISM=[name=...,password=...]"))?;
    let mechanism = Mechanism::from_name(mechanism.trim())
        .ok_or_else(|| bad("the mechanism is SCRAM-SHA-256 or SCRAM-SHA-512"))?;
    let inner = rest
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| bad("the attributes go in [...]"))?;
    let (mut name, mut password, mut iterations) = (None, None, MIN_ITERATIONS);
    for attribute in inner.split(',') {
        match attribute.split_once('=') {
            Some(("name", v)) => name = Some(v.trim_matches('"').to_string()),
            Some(("password", v)) => password = Some(v.trim_matches('"').to_string()),
            Some(("iterations", v)) => {
                iterations = v
                    .parse()
                    .ok()
                    .filter(|i| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(i))
                    .ok_or_else(|| {
                        bad(&format!(
                            "iterations must be {MIN_ITERATIONS}..={MAX_ITERATIONS}"
                        ))
                    })?;
            }
            _ => return Err(bad(&format!("unknown attribute {attribute:?}"))),
        }
    }
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("name is missing"))?;
    let password = password
        .filter(|p| !p.is_empty())
        .ok_or_else(|| bad("password is missing"))?;
    Ok((mechanism, name, password, iterations))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example exchange (user "user", password "pencil").
    #[test]
    fn the_rfc_7677_exchange_authenticates() {
        let m = Mechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let salted = m.salted_password(b"pencil", &salt, 4096);
        let credential = m.credential(salt, &salted, 4096);
        let lookup = |user: &str| (user == "user").then(|| credential.clone());
        let mut server = ScramServer::new(m, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into());
        let (first, user) = server
            .step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", lookup)
            .expect("client-first");
        assert_eq!(user, None);
        assert_eq!(
            String::from_utf8(first).expect("utf-8"),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (last, user) = server
            .step(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                lookup,
            )
            .expect("client-final");
        assert_eq!(user.as_deref(), Some("user"));
        assert_eq!(
            String::from_utf8(last).expect("utf-8"),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn a_final_nonce_with_the_client_nonce_in_front_again_is_accepted() {
        // librdkafka before 2.1 sends its nonce again in front of the
        // server's; Kafka accepts a nonce that ends with the server's.
        let m = Mechanism::Sha256;
        let credential = m.new_credential("pw", 4096).expect("random");
        let lookup = |user: &str| (user == "u").then(|| credential.clone());
        let mut server = ScramServer::new(m, "S".into());
        let (first, _) = server.step(b"n,,n=u,r=C", lookup).expect("first");
        assert!(String::from_utf8(first)
            .expect("utf-8")
            .starts_with("r=CS,"));
        let without_proof = "c=biws,r=CCS";
        let auth = format!(
            "n=u,r=C,r=CS,s={},i=4096,{without_proof}",
            B64.encode(&credential.salt)
        );
        let salted = m.salted_password(b"pw", &credential.salt, 4096);
        let client_key = m.hmac(&salted, b"Client Key");
        let signature = m.hmac(&credential.stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let last = format!("{without_proof},p={}", B64.encode(proof));
        let (_, user) = server.step(last.as_bytes(), lookup).expect("accepted");
        assert_eq!(user.as_deref(), Some("u"));
    }

    #[test]
    fn a_wrong_proof_or_unknown_user_fails() {
        let m = Mechanism::Sha512;
        let credential = m.new_credential("right", 4096).expect("random");
        assert!(m.verify_password(&credential, "right"));
        assert!(!m.verify_password(&credential, "wrong"));
        let lookup = |user: &str| (user == "alice").then(|| credential.clone());
        let mut server = ScramServer::new(m, "snonce".into());
        assert!(
            server.step(b"n,,n=bob,r=c", lookup).is_err(),
            "unknown user"
        );
        let mut server = ScramServer::new(m, "snonce".into());
        server.step(b"n,,n=alice,r=c", lookup).expect("first");
        let forged = format!("c=biws,r=csnonce,p={}", B64.encode([7u8; 64]));
        assert!(server.step(forged.as_bytes(), lookup).is_err());
        let mut server = ScramServer::new(m, "snonce".into());
        server.step(b"n,,n=alice,r=c", lookup).expect("first");
        let other_nonce = format!("c=biws,r=cOTHER,p={}", B64.encode([7u8; 64]));
        assert!(server.step(other_nonce.as_bytes(), lookup).is_err());
        let mut server = ScramServer::new(m, "snonce".into());
        assert!(
            server.step(b"p=tls-unique,,n=alice,r=c", lookup).is_err(),
            "channel binding"
        );
    }

    #[test]
    fn usernames_are_unescaped_and_add_scram_is_parsed() {
        assert_eq!(unescape("a=2Cb=3Dc").expect("valid"), "a,b=c");
        assert!(unescape("a=41").is_err());
        assert_eq!(
            parse_add_scram("SCRAM-SHA-512=[name=alice,password=s3cret,iterations=8192]"),
            Ok((Mechanism::Sha512, "alice".into(), "s3cret".into(), 8192))
        );
        assert_eq!(
            parse_add_scram("SCRAM-SHA-256=[name=\"bob\",password=\"pw\"]"),
            Ok((Mechanism::Sha256, "bob".into(), "pw".into(), 4096))
        );
        for bad in [
            "SCRAM-SHA-1=[name=a,password=b]",
            "SCRAM-SHA-256=[name=a]",
            "SCRAM-SHA-256=[name=a,password=b,iterations=10]",
            "SCRAM-SHA-256=name=a,password=b",
        ] {
            let error = parse_add_scram(bad).expect_err(bad);
            assert!(error.contains("--add-scram"), "{error}");
            assert!(!error.contains("password=b"), "no password in {error}");
        }
    }
}
