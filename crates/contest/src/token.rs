//! Signed voter tokens: `<voter>.<expires_s>.<signature>`, where the
//! signature is the hex HMAC-SHA256, under the contest's secret, of the
//! contest id, the voter id and the expiry. An intake verifies one without
//! a lookup; a token of another contest, a changed voter or expiry, or a
//! wrong secret does not verify. Verification runs in the host's publisher
//! (native, holds the secret), never in the wasm guest (no secrets there).

use hmac::{KeyInit, Mac};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The shortest secret tokens may be signed with: 32 bytes (256 bits, the
/// HMAC-SHA256 key size). An empty or short secret lets anyone forge tokens.
pub const MIN_SECRET_BYTES: usize = 32;

/// Why a secret is not used to sign or verify tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("no contest secret is set (BANDVOTE_CONTEST_SECRET)")]
    Missing,
    #[error("the contest secret has {0} bytes; at least {MIN_SECRET_BYTES} are needed")]
    TooShort(usize),
}

/// `secret` if tokens may be signed and verified with it.
pub fn usable_secret(secret: Option<&[u8]>) -> Result<&[u8], SecretError> {
    match secret {
        None | Some([]) => Err(SecretError::Missing),
        Some(s) if s.len() < MIN_SECRET_BYTES => Err(SecretError::TooShort(s.len())),
        Some(s) => Ok(s),
    }
}

/// Why a token does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a voter token (<voter>.<expires>.<signature>)")]
    Malformed,
    #[error("expired")]
    Expired,
    #[error("signature does not match this contest")]
    BadSignature,
}

fn mac(secret: &[u8], contest: &str, voter: &str, expires_s: i64) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    m.update(b"bandvote-voter-token-v1\0");
    m.update(contest.as_bytes());
    m.update(b"\0");
    m.update(voter.as_bytes());
    m.update(b"\0");
    m.update(expires_s.to_string().as_bytes());
    m
}

/// A voter id a contest keeps a counter for: 1 to 64 of `[A-Za-z0-9_-]`
/// (a token's voter, the ballot's cookie id, a client's `X-Voter`).
pub fn voter_ok(voter: &str) -> bool {
    !voter.is_empty() && voter.len() <= 64 && voter.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Issue a token for `voter` (`[A-Za-z0-9_-]`, at most 64) valid until
/// `expires_s`; `None` for a bad voter id or an unusable secret ([`usable_secret`]).
pub fn issue(secret: &[u8], contest: &str, voter: &str, expires_s: i64) -> Option<String> {
    if !voter_ok(voter) || usable_secret(Some(secret)).is_err() {
        return None;
    }
    let sig = mac(secret, contest, voter, expires_s).finalize().into_bytes();
    let hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("{voter}.{expires_s}.{hex}"))
}

/// Verify `token` for `contest` at `now_s`; the voter id it carries. The
/// caller checks the secret first ([`usable_secret`]); an unusable one
/// verifies nothing.
pub fn verify<'t>(secret: &[u8], contest: &str, token: &'t str, now_s: i64) -> Result<&'t str, TokenError> {
    if usable_secret(Some(secret)).is_err() {
        return Err(TokenError::BadSignature);
    }
    let mut parts = token.split('.');
    let (Some(voter), Some(exp), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    let expires_s: i64 = exp.parse().map_err(|_| TokenError::Malformed)?;
    if !voter_ok(voter) || sig.len() != 64 {
        return Err(TokenError::Malformed);
    }
    let sig: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(sig.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
        .collect::<Result<_, _>>()
        .map_err(|_| TokenError::Malformed)?;
    mac(secret, contest, voter, expires_s).verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;
    if now_s >= expires_s {
        return Err(TokenError::Expired);
    }
    Ok(voter)
}
