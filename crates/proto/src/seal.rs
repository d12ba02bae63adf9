//! Sealing a credential from the instance to one MID.
//!
//! The instance keeps credentials encrypted under its own master key; when a MID claims a
//! job it re-encrypts the secret to that MID's X25519 public key, so only that MID can
//! read it and nothing on the way (the ECC queue, logs, a proxy) ever holds the
//! plaintext. This is HPKE (RFC 9180) in base mode with one fixed suite —
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305 — and single-shot use: a
//! fresh ephemeral key per message, so no sequence numbers need to be tracked.
//!
//! The AAD ([`credential_aad`]) binds a sealed credential to the MID, the credential,
//! the output and the attempt it was made for, so a captured message cannot be replayed
//! to another job or another MID.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, HpkeError, Kem, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

type SuiteKem = X25519HkdfSha256;
type SuiteKdf = HkdfSha256;
type SuiteAead = ChaCha20Poly1305;

/// HPKE `info`: names the purpose and version, so a key pair that ever sealed something
/// else with HPKE could not have those messages taken for credentials.
const INFO: &[u8] = b"openmid-credential-seal-v1";

/// First field of [`credential_aad`]; a new layout gets a new label.
const AAD_LABEL: &[u8] = b"openmid-credential-v1";

/// Size of an encapsulated X25519 key (RFC 9180 §7.1, `Nenc`).
const ENC_LEN: usize = 32;

/// Size of the ChaCha20-Poly1305 tag: the shortest possible ciphertext.
const TAG_LEN: usize = 16;

/// Errors sealing or opening a credential. No variant carries key or plaintext bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// The recipient's public key is a low-order point, which would make the shared
    /// secret all zeros (RFC 9180 requires refusing it).
    #[error("the MID public key cannot be used for sealing (it is a low-order X25519 point)")]
    BadKey,
    /// A field of a [`Sealed`] is not standard base64.
    #[error("sealed credential: `{field}` is not valid standard base64")]
    Base64 {
        /// `enc` or `ciphertext`.
        field: &'static str,
    },
    /// A field of a [`Sealed`] decodes to an impossible length.
    #[error("sealed credential: `{field}` is {actual} bytes, expected {expected}")]
    Length {
        /// `enc` or `ciphertext`.
        field: &'static str,
        /// What the suite requires, e.g. `32` or `at least 16`.
        expected: &'static str,
        /// What was found.
        actual: usize,
    },
    /// Authentication failed: the key, the AAD or the data do not match.
    #[error("cannot open the sealed credential: wrong MID key or tampered data")]
    Open,
    /// The operating system's random source failed, so no ephemeral key could be made.
    #[error("cannot seal a credential: the operating system's random number generator failed")]
    Random,
    /// HPKE refused to seal for another reason (e.g. a plaintext beyond the AEAD limit).
    #[error("cannot seal the credential: {0}")]
    Seal(HpkeError),
}

/// A credential sealed to one MID: the encapsulated ephemeral key and the ciphertext
/// (with its tag), both standard base64 so they travel in JSON as they are.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Sealed {
    /// HPKE encapsulated key (32 bytes before encoding).
    pub enc: String,
    /// ChaCha20-Poly1305 ciphertext followed by its 16-byte tag.
    pub ciphertext: String,
}

impl std::fmt::Debug for Sealed {
    /// Lengths only: the ciphertext is harmless without the key, but keeping it out of
    /// logs keeps logs small and stops anyone from "recovering" it from there later.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("enc_base64_len", &self.enc.len())
            .field("ciphertext_base64_len", &self.ciphertext.len())
            .finish()
    }
}

/// The AAD for a credential sealed to `mid_id` for one attempt at one output. Every
/// field is length-prefixed (u32, big-endian), so no two different tuples encode alike
/// (`("ab","c")` vs `("a","bc")`).
pub fn credential_aad(mid_id: &str, credential_id: &str, output_id: &str, attempt: u32) -> Vec<u8> {
    let fields: [&[u8]; 4] = [
        AAD_LABEL,
        mid_id.as_bytes(),
        credential_id.as_bytes(),
        output_id.as_bytes(),
    ];
    let mut aad = Vec::with_capacity(fields.iter().map(|f| 4 + f.len()).sum::<usize>() + 4);
    for field in fields {
        // Ids are short; a length beyond u32 would be a bug, and saturating would only
        // weaken uniqueness for inputs of 4 GiB, which nothing here produces.
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        aad.extend_from_slice(&len.to_be_bytes());
        aad.extend_from_slice(field);
    }
    aad.extend_from_slice(&attempt.to_be_bytes());
    aad
}

/// Seals `plaintext` to the MID whose X25519 public key is `recipient_public_key` (the
/// raw 32 bytes, as `x25519_dalek::PublicKey::as_bytes` gives them). `aad` must be what
/// the MID will pass to [`open`], normally from [`credential_aad`].
pub fn seal(
    recipient_public_key: &[u8; 32],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Sealed, SealError> {
    // Any 32 bytes parse; a low-order point is caught by the DH all-zero check below.
    let public_key = <SuiteKem as Kem>::PublicKey::from_bytes(recipient_public_key)
        .map_err(|_| SealError::BadKey)?;
    let mut rng = OsRandom { failed: false };
    let result = hpke::single_shot_seal::<SuiteAead, SuiteKdf, SuiteKem, _>(
        &OpModeS::Base,
        &public_key,
        INFO,
        plaintext,
        aad,
        &mut rng,
    );
    // Checked before the result: a message sealed with a non-random ephemeral key must
    // never leave this function.
    if rng.failed {
        return Err(SealError::Random);
    }
    let (enc, ciphertext) = result.map_err(|e| match e {
        HpkeError::EncapError => SealError::BadKey,
        other => SealError::Seal(other),
    })?;
    Ok(Sealed {
        enc: STANDARD.encode(enc.to_bytes()),
        ciphertext: STANDARD.encode(ciphertext),
    })
}

/// Opens a credential sealed by [`seal`] with the MID's X25519 private key (the raw 32
/// bytes, as `x25519_dalek::StaticSecret::to_bytes` gives them) and the same `aad`.
/// The plaintext is wiped when the returned buffer is dropped.
pub fn open(
    recipient_private_key: &[u8; 32],
    aad: &[u8],
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    open_with_info(recipient_private_key, INFO, aad, sealed)
}

/// [`open`] with a chosen `info`, so the tests can check the suite against RFC 9180's
/// published vectors.
fn open_with_info(
    recipient_private_key: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let enc = decode("enc", &sealed.enc)?;
    if enc.len() != ENC_LEN {
        return Err(SealError::Length {
            field: "enc",
            expected: "32",
            actual: enc.len(),
        });
    }
    let ciphertext = decode("ciphertext", &sealed.ciphertext)?;
    if ciphertext.len() < TAG_LEN {
        return Err(SealError::Length {
            field: "ciphertext",
            expected: "at least 16",
            actual: ciphertext.len(),
        });
    }
    // Both parses only fail on a wrong length, which was checked above; mapping to Open
    // keeps this total anyway. The scalar is clamped inside, exactly as x25519-dalek's
    // StaticSecret does, so the MID's stored key bytes work unchanged.
    let private_key = <SuiteKem as Kem>::PrivateKey::from_bytes(recipient_private_key)
        .map_err(|_| SealError::Open)?;
    let encapped = <SuiteKem as Kem>::EncappedKey::from_bytes(&enc).map_err(|_| SealError::Open)?;
    // Every failure past this point (a low-order `enc`, a bad tag) is reported the same
    // way: telling them apart would only help someone probing with forged messages.
    hpke::single_shot_open::<SuiteAead, SuiteKdf, SuiteKem>(
        &OpModeR::Base,
        &private_key,
        &encapped,
        info,
        &ciphertext,
        aad,
    )
    .map(Zeroizing::new)
    .map_err(|_| SealError::Open)
}

fn decode(field: &'static str, text: &str) -> Result<Vec<u8>, SealError> {
    STANDARD
        .decode(text)
        .map_err(|_| SealError::Base64 { field })
}

/// The OS random source (through aws-lc, the one crypto provider of the project) in the
/// shape hpke wants. hpke 0.13 takes rand_core **0.9** traits (re-exported as
/// `hpke::rand_core`), which rand_core 0.6's `OsRng` does not implement. `fill_bytes`
/// cannot fail, so a failure is remembered and [`seal`] discards the result.
struct OsRandom {
    failed: bool,
}

impl hpke::rand_core::RngCore for OsRandom {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0u8; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        if aws_lc_rs::rand::fill(dst).is_err() {
            self.failed = true;
        }
    }
}

impl hpke::rand_core::CryptoRng for OsRandom {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::random_32;
    use proptest::prelude::*;
    use x25519_dalek::{PublicKey, StaticSecret};

    /// A MID key pair made the way the MID makes it.
    fn key_pair() -> ([u8; 32], [u8; 32]) {
        let secret = StaticSecret::from(random_32());
        let public = PublicKey::from(&secret);
        (secret.to_bytes(), *public.as_bytes())
    }

    fn aad() -> Vec<u8> {
        credential_aad("mid-1", "cred-1", "out-1", 1)
    }

    #[test]
    fn roundtrip() {
        let (sk, pk) = key_pair();
        let sealed = seal(&pk, &aad(), b"hunter2").unwrap();
        assert_eq!(open(&sk, &aad(), &sealed).unwrap().as_slice(), b"hunter2");
    }

    #[test]
    fn empty_plaintext_roundtrips() {
        let (sk, pk) = key_pair();
        let sealed = seal(&pk, &aad(), b"").unwrap();
        assert!(open(&sk, &aad(), &sealed).unwrap().is_empty());
    }

    #[test]
    fn sizes_are_as_the_suite_says() {
        let (_, pk) = key_pair();
        let sealed = seal(&pk, &aad(), b"hunter2").unwrap();
        assert_eq!(STANDARD.decode(&sealed.enc).unwrap().len(), ENC_LEN);
        assert_eq!(
            STANDARD.decode(&sealed.ciphertext).unwrap().len(),
            b"hunter2".len() + TAG_LEN
        );
    }

    #[test]
    fn each_seal_uses_a_fresh_ephemeral_key() {
        let (_, pk) = key_pair();
        let a = seal(&pk, &aad(), b"same").unwrap();
        let b = seal(&pk, &aad(), b"same").unwrap();
        assert_ne!(a.enc, b.enc);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    /// The MID stores `StaticSecret::to_bytes()` and sends `PublicKey::as_bytes()`; both
    /// must be exactly the raw forms HPKE's X25519 KEM takes.
    #[test]
    fn x25519_dalek_keys_work_as_they_are() {
        let secret = StaticSecret::from(random_32());
        let public = PublicKey::from(&secret);
        let hpke_sk = <SuiteKem as Kem>::PrivateKey::from_bytes(&secret.to_bytes()).unwrap();
        assert_eq!(
            &<SuiteKem as Kem>::sk_to_pk(&hpke_sk).to_bytes()[..],
            public.as_bytes()
        );
        let sealed = seal(public.as_bytes(), &aad(), b"s3cret").unwrap();
        assert_eq!(
            open(&secret.to_bytes(), &aad(), &sealed)
                .unwrap()
                .as_slice(),
            b"s3cret"
        );
    }

    /// RFC 9180 appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
    /// ChaCha20-Poly1305, base mode, first encryption. Pins the suite and the key format
    /// to the standard rather than to this crate's own round trip.
    #[test]
    fn rfc9180_vector() {
        let sk: [u8; 32] =
            hex::decode("8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb")
                .unwrap()
                .try_into()
                .unwrap();
        let pk = hex::decode("4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a")
            .unwrap();
        assert_eq!(
            PublicKey::from(&StaticSecret::from(sk))
                .as_bytes()
                .as_slice(),
            pk.as_slice()
        );
        let enc = hex::decode("1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a")
            .unwrap();
        let ct = hex::decode(
            "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28",
        )
        .unwrap();
        let info = hex::decode("4f6465206f6e2061204772656369616e2055726e").unwrap();
        let aad = hex::decode("436f756e742d30").unwrap();
        let sealed = Sealed {
            enc: STANDARD.encode(enc),
            ciphertext: STANDARD.encode(ct),
        };
        let pt = open_with_info(&sk, &info, &aad, &sealed).unwrap();
        assert_eq!(pt.as_slice(), b"Beauty is truth, truth beauty");
        // Our own info label must not open a message made for another purpose.
        assert_eq!(open(&sk, &aad, &sealed), Err(SealError::Open));
    }

    #[test]
    fn wrong_private_key_fails() {
        let (_, pk) = key_pair();
        let (other_sk, _) = key_pair();
        let sealed = seal(&pk, &aad(), b"hunter2").unwrap();
        let err = open(&other_sk, &aad(), &sealed).unwrap_err();
        assert_eq!(err, SealError::Open);
        assert_eq!(
            err.to_string(),
            "cannot open the sealed credential: wrong MID key or tampered data"
        );
    }

    #[test]
    fn any_changed_aad_field_fails() {
        let (sk, pk) = key_pair();
        let sealed = seal(&pk, &aad(), b"hunter2").unwrap();
        for other in [
            credential_aad("mid-2", "cred-1", "out-1", 1),
            credential_aad("mid-1", "cred-2", "out-1", 1),
            credential_aad("mid-1", "cred-1", "out-2", 1),
            credential_aad("mid-1", "cred-1", "out-1", 2),
            Vec::new(),
        ] {
            assert_eq!(open(&sk, &other, &sealed), Err(SealError::Open));
        }
    }

    #[test]
    fn aad_fields_cannot_shift_into_each_other() {
        assert_ne!(
            credential_aad("ab", "c", "d", 1),
            credential_aad("a", "bc", "d", 1)
        );
        assert_ne!(
            credential_aad("a", "b", "", 1),
            credential_aad("a", "", "b", 1)
        );
        assert!(credential_aad("m", "c", "o", 7).starts_with(&[0, 0, 0, 21]));
        assert!(credential_aad("m", "c", "o", 7).ends_with(&[0, 0, 0, 7]));
    }

    #[test]
    fn flipped_bytes_fail() {
        let (sk, pk) = key_pair();
        let sealed = seal(&pk, &aad(), b"hunter2").unwrap();
        let ct = STANDARD.decode(&sealed.ciphertext).unwrap();
        let enc = STANDARD.decode(&sealed.enc).unwrap();
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 0x01;
            let tampered = Sealed {
                ciphertext: STANDARD.encode(&bad),
                ..sealed.clone()
            };
            assert_eq!(
                open(&sk, &aad(), &tampered),
                Err(SealError::Open),
                "ct byte {i}"
            );
        }
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 0x01;
            let tampered = Sealed {
                enc: STANDARD.encode(&bad),
                ..sealed.clone()
            };
            assert_eq!(
                open(&sk, &aad(), &tampered),
                Err(SealError::Open),
                "enc byte {i}"
            );
        }
    }

    #[test]
    fn swapped_or_truncated_parts_fail_cleanly() {
        let (sk, pk) = key_pair();
        let a = seal(&pk, &aad(), b"first").unwrap();
        let b = seal(&pk, &aad(), b"other").unwrap();
        let mixed = Sealed {
            enc: a.enc.clone(),
            ciphertext: b.ciphertext.clone(),
        };
        assert_eq!(open(&sk, &aad(), &mixed), Err(SealError::Open));
        let short = Sealed {
            enc: a.enc.clone(),
            ciphertext: STANDARD.encode([0u8; 15]),
        };
        assert!(matches!(
            open(&sk, &aad(), &short),
            Err(SealError::Length {
                field: "ciphertext",
                actual: 15,
                ..
            })
        ));
        let short_enc = Sealed {
            enc: STANDARD.encode([0u8; 31]),
            ciphertext: a.ciphertext,
        };
        assert!(matches!(
            open(&sk, &aad(), &short_enc),
            Err(SealError::Length {
                field: "enc",
                actual: 31,
                ..
            })
        ));
    }

    #[test]
    fn garbage_base64_fails_cleanly() {
        let (sk, pk) = key_pair();
        let good = seal(&pk, &aad(), b"hunter2").unwrap();
        let bad_enc = Sealed {
            enc: "not base64!".into(),
            ..good.clone()
        };
        assert_eq!(
            open(&sk, &aad(), &bad_enc),
            Err(SealError::Base64 { field: "enc" })
        );
        // URL-safe alphabet is not accepted: one encoding on the wire, not two.
        let url_safe = Sealed {
            ciphertext: good.ciphertext.replace('+', "-").replace('/', "_") + "-_",
            ..good
        };
        assert_eq!(
            open(&sk, &aad(), &url_safe),
            Err(SealError::Base64 {
                field: "ciphertext"
            })
        );
    }

    #[test]
    fn low_order_public_key_is_refused() {
        assert_eq!(seal(&[0u8; 32], &aad(), b"x"), Err(SealError::BadKey));
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(seal(&one, &aad(), b"x"), Err(SealError::BadKey));
    }

    #[test]
    fn low_order_enc_fails_as_open() {
        let (sk, _) = key_pair();
        let sealed = Sealed {
            enc: STANDARD.encode([0u8; 32]),
            ciphertext: STANDARD.encode([0u8; 32]),
        };
        assert_eq!(open(&sk, &aad(), &sealed), Err(SealError::Open));
    }

    #[test]
    fn debug_and_errors_show_no_data() {
        let (sk, pk) = key_pair();
        let sealed = seal(&pk, &aad(), b"hunter2").unwrap();
        let debug = format!("{sealed:?}");
        assert!(!debug.contains(&sealed.ciphertext) && !debug.contains(&sealed.enc));
        assert!(debug.contains("ciphertext_base64_len"));
        let err = open(&sk, &credential_aad("x", "y", "z", 0), &sealed).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }

    #[test]
    fn serializes_as_two_base64_fields() {
        let (sk, pk) = key_pair();
        let sealed = seal(&pk, &aad(), b"hunter2").unwrap();
        let json = serde_json::to_value(&sealed).unwrap();
        assert_eq!(json["enc"], sealed.enc.as_str());
        assert_eq!(json["ciphertext"], sealed.ciphertext.as_str());
        let back: Sealed = serde_json::from_value(json).unwrap();
        assert_eq!(open(&sk, &aad(), &back).unwrap().as_slice(), b"hunter2");
    }

    proptest! {
        #[test]
        fn open_never_panics_on_any_strings(
            enc in prop_oneof![".{0,64}", "[A-Za-z0-9+/]{0,60}={0,2}"],
            ciphertext in prop_oneof![".{0,120}", "[A-Za-z0-9+/]{0,120}={0,2}"],
            key in any::<[u8; 32]>(),
        ) {
            let _ = open(&key, &aad(), &Sealed { enc, ciphertext });
        }

        #[test]
        fn open_never_panics_on_any_well_formed_bytes(
            enc in any::<[u8; 32]>(),
            ct in proptest::collection::vec(any::<u8>(), 0..200),
            key in any::<[u8; 32]>(),
        ) {
            let sealed = Sealed { enc: STANDARD.encode(enc), ciphertext: STANDARD.encode(ct) };
            // Forging a valid tag by chance is out of the question.
            prop_assert!(open(&key, &aad(), &sealed).is_err());
        }

        #[test]
        fn any_plaintext_roundtrips(
            plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
            mid in ".{0,20}",
            attempt in any::<u32>(),
        ) {
            let (sk, pk) = key_pair();
            let aad = credential_aad(&mid, "cred", "out", attempt);
            let sealed = seal(&pk, &aad, &plaintext).unwrap();
            let opened = open(&sk, &aad, &sealed).unwrap();
            prop_assert_eq!(opened.as_slice(), plaintext.as_slice());
        }
    }
}
