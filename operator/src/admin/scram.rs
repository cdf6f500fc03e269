//! The client side of SCRAM-SHA-512 (RFC 5802), with which the operator
//! authenticates to brokers whose Kafka listener is SASL_PLAINTEXT.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2, rand};

/// A SCRAM user and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The mechanism's SASL name.
pub(crate) const MECHANISM: &str = "SCRAM-SHA-512";

/// The iterations of the credentials the operator makes (Kafka's minimum
/// for SCRAM, as `kafka-configs.sh` uses by default).
const ITERATIONS: u32 = 4096;

/// A SCRAM mechanism's code in AlterUserScramCredentials.
pub(crate) fn mechanism_code(name: &str) -> i8 {
    match name {
        "SCRAM-SHA-256" => 1,
        "SCRAM-SHA-512" => 2,
        _ => 0,
    }
}

/// A SCRAM mechanism's name from its code.
pub(crate) fn mechanism_name(code: i8) -> &'static str {
    match code {
        1 => "SCRAM-SHA-256",
        2 => "SCRAM-SHA-512",
        _ => "UNKNOWN",
    }
}

/// A new credential for `password`: the mechanism's code, a random salt,
/// the iterations and the salted password (PBKDF2), as
/// AlterUserScramCredentials takes them.
pub(crate) fn salt_password(
    mechanism: &str,
    password: &str,
) -> Result<(i8, Vec<u8>, i32, Vec<u8>), String> {
    let (algorithm, len) = match mechanism {
        "SCRAM-SHA-256" => (pbkdf2::PBKDF2_HMAC_SHA256, 32),
        "SCRAM-SHA-512" => (pbkdf2::PBKDF2_HMAC_SHA512, 64),
        other => return Err(format!("unknown SCRAM mechanism {other}")),
    };
    let mut salt = vec![0u8; 32];
    rand::SecureRandom::fill(&rand::SystemRandom::new(), &mut salt)
        .map_err(|_| "the system random generator failed".to_string())?;
    let mut salted = vec![0u8; len];
    let iterations = std::num::NonZeroU32::new(ITERATIONS).ok_or("no iterations")?;
    pbkdf2::derive(
        algorithm,
        iterations,
        &salt,
        password.as_bytes(),
        &mut salted,
    );
    Ok((mechanism_code(mechanism), salt, ITERATIONS as i32, salted))
}

/// A new random password: 32 letters and digits.
pub fn generate_password() -> Result<String, String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 32];
    rand::SecureRandom::fill(&rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| "the system random generator failed".to_string())?;
    // 62 letters: the modulo bias (256 % 62 = 8) costs well under a bit of
    // the 190 the password has.
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

/// One exchange in progress.
pub(crate) struct ScramClient {
    nonce: String,
    first_bare: String,
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA512, key), data)
        .as_ref()
        .to_vec()
}

impl ScramClient {
    /// Starts an exchange: the client-first message to send.
    pub(crate) fn start(username: &str) -> Result<(Self, String), String> {
        let mut random = [0u8; 24];
        rand::SecureRandom::fill(&rand::SystemRandom::new(), &mut random)
            .map_err(|_| "the system random generator failed".to_string())?;
        let nonce = B64.encode(random).replace(['+', '/', '='], "x");
        let user = username.replace('=', "=3D").replace(',', "=2C");
        let first_bare = format!("n={user},r={nonce}");
        let message = format!("n,,{first_bare}");
        Ok((ScramClient { nonce, first_bare }, message))
    }

    /// The client-final message for the server-first one, and the server
    /// signature the server-final message must carry.
    pub(crate) fn finish(
        &self,
        password: &str,
        server_first: &str,
    ) -> Result<(String, Vec<u8>), String> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attribute in server_first.split(',') {
            match attribute.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = B64.decode(v).ok(),
                Some(("i", v)) => iterations = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let nonce = nonce
            .filter(|n| n.starts_with(&self.nonce) && n.len() > self.nonce.len())
            .ok_or("the broker's SCRAM nonce does not extend ours")?;
        let salt = salt.ok_or("no salt in the broker's SCRAM message")?;
        // Kafka's maximum: a larger count would only stall the operator.
        let iterations = iterations
            .filter(|i| *i <= 16384)
            .and_then(std::num::NonZeroU32::new)
            .ok_or("no iteration count up to 16384 in the broker's SCRAM message")?;
        let mut salted = [0u8; 64];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA512,
            iterations,
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = digest::digest(&digest::SHA512, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let signature = hmac(stored_key.as_ref(), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac(&salted, b"Server Key");
        let server_signature = hmac(&server_key, auth_message.as_bytes());
        Ok((
            format!("{without_proof},p={}", B64.encode(proof)),
            server_signature,
        ))
    }

    /// Checks the server-final message (`v=SIGNATURE`).
    pub(crate) fn verify(server_final: &str, expected: &[u8]) -> Result<(), String> {
        let signature = server_final
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v).ok())
            .ok_or("a malformed SCRAM server-final message")?;
        if signature == expected {
            Ok(())
        } else {
            Err("the broker's SCRAM signature is wrong: it does not know our password".into())
        }
    }
}
