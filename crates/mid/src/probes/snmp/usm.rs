//! The User-based Security Model's cryptography (RFC 3414, RFC 7860, RFC 3826): keys
//! made from passwords and localized to the agent's engine id, message
//! authentication with HMAC-SHA-1 and HMAC-SHA-2 truncated as each RFC says, and
//! AES-128 CFB privacy. All through `aws-lc-rs`. MD5 and DES are refused with a clear
//! error: `aws-lc-rs` has neither HMAC-MD5 nor DES-CBC, and both are broken anyway.

use aws_lc_rs::cipher::{
    AES_128, DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::{digest, hmac};
use zeroize::Zeroizing;

/// An authentication protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthProtocol {
    /// HMAC-SHA-96 (RFC 3414).
    Sha1,
    /// HMAC-SHA-224 truncated to 128 bits (RFC 7860).
    Sha224,
    /// HMAC-SHA-256 truncated to 192 bits.
    Sha256,
    /// HMAC-SHA-384 truncated to 256 bits.
    Sha384,
    /// HMAC-SHA-512 truncated to 384 bits.
    Sha512,
}

impl AuthProtocol {
    /// The protocol a credential names (`sha`, `sha1`, `sha-256`, `SHA512` …).
    pub fn parse(name: &str) -> Result<Self, String> {
        let n = name.to_ascii_lowercase().replace(['-', '_'], "");
        Ok(match n.as_str() {
            "sha" | "sha1" => Self::Sha1,
            "sha224" => Self::Sha224,
            "sha256" => Self::Sha256,
            "sha384" => Self::Sha384,
            "sha512" => Self::Sha512,
            "md5" => {
                return Err("auth_protocol md5 is not supported (use sha or sha-256 …)".into());
            }
            _ => {
                return Err(format!(
                    "auth_protocol `{name}` is not one of sha, sha-224, sha-256, sha-384, sha-512"
                ));
            }
        })
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha224 => &digest::SHA224,
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Self::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha224 => hmac::HMAC_SHA224,
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha384 => hmac::HMAC_SHA384,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }

    /// Bytes of `msgAuthenticationParameters`.
    pub fn mac_len(self) -> usize {
        match self {
            Self::Sha1 => 12,
            Self::Sha224 => 16,
            Self::Sha256 => 24,
            Self::Sha384 => 32,
            Self::Sha512 => 48,
        }
    }
}

/// A privacy protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivProtocol {
    /// AES-128 in CFB mode (RFC 3826).
    Aes128,
}

impl PrivProtocol {
    /// The protocol a credential names (`aes`, `aes128`, `aes-128`).
    pub fn parse(name: &str) -> Result<Self, String> {
        let n = name.to_ascii_lowercase().replace(['-', '_'], "");
        match n.as_str() {
            "aes" | "aes128" | "aescfb128" => Ok(Self::Aes128),
            "des" | "3des" => Err(format!("priv_protocol {name} is not supported (use aes)")),
            _ => Err(format!("priv_protocol `{name}` is not aes")),
        }
    }
}

/// A key made from a password (RFC 3414 A.2.1: the password repeated over 1 MiB,
/// hashed), localized to `engine_id` (A.2.2: H(Ku ‖ engineID ‖ Ku)).
pub fn localized_key(proto: AuthProtocol, password: &[u8], engine_id: &[u8]) -> Zeroizing<Vec<u8>> {
    let alg = proto.digest();
    let mut ctx = digest::Context::new(alg);
    if !password.is_empty() {
        let mut block = Zeroizing::new([0u8; 64]);
        let mut at = 0usize;
        for _ in 0..(1_048_576 / 64) {
            for b in block.iter_mut() {
                *b = password[at % password.len()];
                at += 1;
            }
            ctx.update(&block[..]);
        }
    }
    let ku = Zeroizing::new(ctx.finish().as_ref().to_vec());
    let mut ctx = digest::Context::new(alg);
    ctx.update(&ku);
    ctx.update(engine_id);
    ctx.update(&ku);
    Zeroizing::new(ctx.finish().as_ref().to_vec())
}

/// The truncated HMAC of `msg` (whose authentication parameters are zeros).
pub fn mac(proto: AuthProtocol, key: &[u8], msg: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(proto.hmac(), key);
    let tag = hmac::sign(&key, msg);
    tag.as_ref()
        .get(..proto.mac_len())
        .unwrap_or_default()
        .to_vec()
}

/// Whether `got` is the MAC of `msg` (compared in constant time).
pub fn verify(proto: AuthProtocol, key: &[u8], msg: &[u8], got: &[u8]) -> bool {
    let want = mac(proto, key, msg);
    want.len() == got.len() && want.iter().zip(got).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

/// The AES IV: engine boots, engine time, then the 64-bit salt (RFC 3826 §3.1.2.1).
fn iv(boots: u32, time: u32, salt: &[u8; 8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&boots.to_be_bytes());
    iv[4..8].copy_from_slice(&time.to_be_bytes());
    iv[8..].copy_from_slice(salt);
    iv
}

/// Why privacy failed (no detail: it would help nobody and might help an attacker).
#[derive(Debug, thiserror::Error)]
#[error("AES-CFB with the localized privacy key failed")]
pub struct CryptoError;

/// Encrypts a scoped PDU with the first 16 bytes of the localized privacy key.
pub fn encrypt(
    key: &[u8],
    boots: u32,
    time: u32,
    salt: &[u8; 8],
    plain: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let key = key.get(..16).ok_or(CryptoError)?;
    let key = EncryptingKey::cfb128(UnboundCipherKey::new(&AES_128, key).map_err(|_| CryptoError)?)
        .map_err(|_| CryptoError)?;
    let mut out = plain.to_vec();
    key.less_safe_encrypt(
        &mut out,
        EncryptionContext::Iv128(FixedLength::from(iv(boots, time, salt))),
    )
    .map_err(|_| CryptoError)?;
    Ok(out)
}

/// Decrypts an encrypted scoped PDU.
pub fn decrypt(
    key: &[u8],
    boots: u32,
    time: u32,
    salt: &[u8],
    cipher: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let salt: &[u8; 8] = salt.try_into().map_err(|_| CryptoError)?;
    let key = key.get(..16).ok_or(CryptoError)?;
    let key = DecryptingKey::cfb128(UnboundCipherKey::new(&AES_128, key).map_err(|_| CryptoError)?)
        .map_err(|_| CryptoError)?;
    let mut out = cipher.to_vec();
    let n = key
        .decrypt(
            &mut out,
            DecryptionContext::Iv128(FixedLength::from(iv(boots, time, salt))),
        )
        .map_err(|_| CryptoError)?
        .len();
    out.truncate(n);
    Ok(out)
}
