//! Encryption at rest of credential secrets under the instance's master key.
//!
//! The database may be copied into backups, support bundles and test fixtures; the
//! secrets in it must be useless there without the master key, which lives apart from
//! it: in `OPENMID_MASTER_KEY` or in `data_dir/master.key` (made at first start,
//! readable by the instance's user only). AES-256-GCM from aws-lc-rs, the project's one
//! crypto provider, with a random 96-bit nonce per value: with far fewer than 2^32
//! encryptions under one key, random nonces do not collide in practice.
//!
//! A stored value is `1 || nonce (12) || ciphertext || tag (16)`; the leading version
//! byte lets a later format (another cipher, a key id) live beside this one.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Name of the key file inside the data directory.
const KEY_FILE: &str = "master.key";

/// First byte of every value written by [`Vault::encrypt`].
const FORMAT_V1: u8 = 1;

/// AES-GCM tag length.
const TAG_LEN: usize = 16;

/// What a caller should name when the environment key is wrong. The value itself is
/// never quoted: a near-miss of the real key in a log is as good as the key.
const ENV_NAME: &str = "OPENMID_MASTER_KEY";

/// Errors opening the vault or decrypting a stored value. None carries key bytes or
/// plaintext.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Reading or writing the key file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The master key is unusable. (Not a `source` field: thiserror would take that
    /// for a wrapped error.)
    #[error("master key from {origin}: {detail}")]
    BadKey {
        /// Where the key came from: `OPENMID_MASTER_KEY` or the file's path.
        origin: String,
        /// What is wrong with it and how to fix it; never the key itself.
        detail: String,
    },
    /// Authentication failed.
    #[error(
        "cannot decrypt a stored credential: the master key differs from the one it was stored with, or the data is damaged"
    )]
    Decrypt,
    /// The value does not start with a version byte this build knows.
    #[error("a stored credential is in an unknown format: written by a newer openmid, or damaged")]
    UnknownFormat,
}

/// Where [`Vault::open`] found the master key, for the startup log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `OPENMID_MASTER_KEY`.
    Environment,
    /// An existing key file.
    File(PathBuf),
    /// A key file made just now: the operator should back it up.
    Created(PathBuf),
}

/// The master key, ready to encrypt and decrypt stored credentials.
pub struct Vault {
    key: LessSafeKey,
    key_id: String,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Loads the master key: from `env_key` (the value of `OPENMID_MASTER_KEY`, read by
    /// the caller) when given, as 32 bytes of standard base64 or 64 hex characters;
    /// otherwise from `data_dir/master.key`, creating that file with 32 random bytes and
    /// mode 0600 if it does not exist.
    pub fn open(data_dir: &Path, env_key: Option<&str>) -> Result<(Vault, KeySource), VaultError> {
        if let Some(value) = env_key {
            let key = parse_env_key(value)?;
            return Ok((Vault::from_key(*key), KeySource::Environment));
        }
        let path = data_dir.join(KEY_FILE);
        match read_key_file(&path)? {
            Some(key) => Ok((Vault::from_key(*key), KeySource::File(path))),
            None => create_key_file(data_dir, &path),
        }
    }

    /// A vault over the given key (tests, tools).
    pub fn from_key(key: [u8; 32]) -> Vault {
        let key = Zeroizing::new(key);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_ref());
        let mut key_id = hex::encode(digest.as_ref());
        key_id.truncate(16);
        let unbound = match UnboundKey::new(&AES_256_GCM, key.as_ref()) {
            Ok(unbound) => unbound,
            // Only a wrong key length is refused, and the type fixes it at 32.
            Err(_) => unreachable!("AES-256-GCM accepts every 32-byte key"),
        };
        Vault {
            key: LessSafeKey::new(unbound),
            key_id,
        }
    }

    /// First 16 hex characters of the key's SHA-256: tells keys apart in logs and
    /// support questions without revealing them.
    pub fn key_id(&self) -> String {
        self.key_id.clone()
    }

    /// Encrypts `plaintext`, binding it to `aad` (e.g. the credential's id, so a value
    /// copied onto another row does not decrypt).
    ///
    /// # Panics
    /// If the OS random source fails (no safe nonce can be made without it) or the
    /// plaintext exceeds AES-GCM's 64 GiB limit.
    pub fn encrypt(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        if aws_lc_rs::rand::fill(&mut nonce).is_err() {
            panic!("the operating system's random number generator failed");
        }
        let mut in_out = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
        in_out.extend_from_slice(plaintext);
        if self
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut *in_out,
            )
            .is_err()
        {
            panic!("AES-256-GCM refused to encrypt {} bytes", plaintext.len());
        }
        let mut blob = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        blob.push(FORMAT_V1);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&in_out);
        blob
    }

    /// Decrypts a value made by [`Vault::encrypt`] with the same `aad`. The plaintext
    /// is wiped when the returned buffer is dropped.
    pub fn decrypt(&self, aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let Some((&version, rest)) = blob.split_first() else {
            return Err(VaultError::UnknownFormat);
        };
        if version != FORMAT_V1 {
            return Err(VaultError::UnknownFormat);
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(VaultError::Decrypt);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::Decrypt)?;
        let mut in_out = Zeroizing::new(sealed.to_vec());
        let len = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut in_out)
            .map_err(|_| VaultError::Decrypt)?
            .len();
        in_out.truncate(len);
        Ok(in_out)
    }
}

/// 32 bytes from `OPENMID_MASTER_KEY`. Hex is tried first: 64 hex characters are also
/// valid base64 (of 48 bytes), so the other order would never see hex.
fn parse_env_key(value: &str) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    // A trailing newline from `$(cat file)` or a secrets manager is not part of the key.
    let value = value.trim();
    let bad = |detail: String| VaultError::BadKey {
        origin: ENV_NAME.to_string(),
        detail,
    };
    let bytes = if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Zeroizing::new(hex::decode(value).map_err(|_| bad("not valid hex".into()))?)
    } else {
        Zeroizing::new(STANDARD.decode(value).map_err(|_| {
            bad(format!(
                "expected 32 bytes as standard base64 (44 characters) or 64 hex characters, \
                 got {} characters that are neither",
                value.chars().count()
            ))
        })?)
    };
    to_key(&bytes).ok_or_else(|| {
        bad(format!(
            "expected 32 bytes as standard base64 (44 characters) or 64 hex characters, \
             got {} bytes",
            bytes.len()
        ))
    })
}

/// The key in `path`, or `None` when the file does not exist.
fn read_key_file(path: &Path) -> Result<Option<Zeroizing<[u8; 32]>>, VaultError> {
    let io = |source| VaultError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bad = |detail: String| VaultError::BadKey {
        origin: path.display().to_string(),
        detail,
    };
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        // Checked before reading, so a key others can read is refused rather than used:
        // whoever else can read it can read every credential.
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "the file is accessible by group or others (mode {mode:03o}); \
                 run `chmod 600 {}`",
                path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = metadata;
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
    let bytes = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| {
        bad("the file does not hold standard base64; it must hold 32 bytes of base64".into())
    })?);
    to_key(&bytes).map(Some).ok_or_else(|| {
        bad(format!(
            "the file holds {} bytes, expected 32 (base64); restore it from a backup",
            bytes.len()
        ))
    })
}

/// Makes `data_dir/master.key` without ever exposing a partial or world-readable file:
/// the key is written to a private temporary file, synced, then moved into place.
fn create_key_file(data_dir: &Path, path: &Path) -> Result<(Vault, KeySource), VaultError> {
    let io = |at: &Path| {
        let at = at.to_path_buf();
        move |source| VaultError::Io { path: at, source }
    };
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let key = Zeroizing::new(openmid_proto::secret::random_32());
    let text = Zeroizing::new(format!("{}\n", STANDARD.encode(key.as_ref())));
    let tmp = data_dir.join(format!(
        ".{KEY_FILE}.{}.{}.tmp",
        std::process::id(),
        hex::encode(&openmid_proto::secret::random_32()[..8])
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    // A hard link never replaces an existing file, unlike rename: if another process
    // made a key meanwhile, keep that one, since values may already be encrypted with it.
    let placed = match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        // Some file systems have no hard links; rename is still atomic there.
        Err(_) => std::fs::rename(&tmp, path).map(|()| true),
    };
    let _ = std::fs::remove_file(&tmp);
    match placed {
        Ok(true) => {}
        Ok(false) => {
            return match read_key_file(path)? {
                Some(key) => Ok((Vault::from_key(*key), KeySource::File(path.to_path_buf()))),
                None => Err(io(path)(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the key file vanished while it was being created",
                ))),
            };
        }
        Err(e) => return Err(io(path)(e)),
    }
    // The new name must reach the disk too, or a crash could lose the key after
    // credentials were already encrypted with it.
    #[cfg(unix)]
    std::fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io(data_dir))?;
    Ok((
        Vault::from_key(*key),
        KeySource::Created(path.to_path_buf()),
    ))
}

fn to_key(bytes: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    <[u8; 32]>::try_from(bytes).ok().map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [7u8; 32];

    #[test]
    fn roundtrip() {
        let vault = Vault::from_key(KEY);
        let blob = vault.encrypt(b"cred-1", b"hunter2");
        assert_eq!(
            vault.decrypt(b"cred-1", &blob).unwrap().as_slice(),
            b"hunter2"
        );
        let empty = vault.encrypt(b"cred-1", b"");
        assert!(vault.decrypt(b"cred-1", &empty).unwrap().is_empty());
    }

    #[test]
    fn format_is_version_nonce_ciphertext_tag() {
        let vault = Vault::from_key(KEY);
        let a = vault.encrypt(b"", b"hunter2");
        let b = vault.encrypt(b"", b"hunter2");
        assert_eq!(a[0], 1);
        assert_eq!(a.len(), 1 + 12 + 7 + 16);
        assert_ne!(a[1..13], b[1..13], "a fresh nonce each time");
        assert!(!a.windows(7).any(|w| w == b"hunter2"));
    }

    #[test]
    fn wrong_key_fails() {
        let blob = Vault::from_key(KEY).encrypt(b"cred-1", b"hunter2");
        let err = Vault::from_key([8u8; 32])
            .decrypt(b"cred-1", &blob)
            .unwrap_err();
        assert!(matches!(err, VaultError::Decrypt));
        assert!(err.to_string().contains("master key differs"));
    }

    #[test]
    fn wrong_aad_fails() {
        let vault = Vault::from_key(KEY);
        let blob = vault.encrypt(b"cred-1", b"hunter2");
        assert!(matches!(
            vault.decrypt(b"cred-2", &blob),
            Err(VaultError::Decrypt)
        ));
        assert!(matches!(
            vault.decrypt(b"", &blob),
            Err(VaultError::Decrypt)
        ));
    }

    #[test]
    fn truncated_or_altered_blobs_fail_cleanly() {
        let vault = Vault::from_key(KEY);
        let blob = vault.encrypt(b"a", b"hunter2");
        assert!(matches!(
            vault.decrypt(b"a", &[]),
            Err(VaultError::UnknownFormat)
        ));
        for len in 1..blob.len() {
            assert!(matches!(
                vault.decrypt(b"a", &blob[..len]),
                Err(VaultError::Decrypt)
            ));
        }
        for i in 1..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x80;
            assert!(matches!(
                vault.decrypt(b"a", &bad),
                Err(VaultError::Decrypt)
            ));
        }
        let mut newer = blob;
        newer[0] = 2;
        assert!(matches!(
            vault.decrypt(b"a", &newer),
            Err(VaultError::UnknownFormat)
        ));
    }

    #[test]
    fn key_id_is_a_short_digest() {
        let vault = Vault::from_key(KEY);
        let id = vault.key_id();
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        let full = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &KEY);
        assert!(hex::encode(full.as_ref()).starts_with(&id));
        assert_ne!(id, Vault::from_key([8u8; 32]).key_id());
        assert_eq!(
            format!("{vault:?}"),
            format!("Vault {{ key_id: {id:?}, .. }}")
        );
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, source) = Vault::open(dir.path(), None).unwrap();
        let path = dir.path().join("master.key");
        assert_eq!(source, KeySource::Created(path.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(STANDARD.decode(text.trim()).unwrap().len(), 32);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("master.key")],
            "no temp file left"
        );

        let blob = first.encrypt(b"c", b"hunter2");
        let (second, source) = Vault::open(dir.path(), None).unwrap();
        assert_eq!(source, KeySource::File(path));
        assert_eq!(second.key_id(), first.key_id());
        assert_eq!(second.decrypt(b"c", &blob).unwrap().as_slice(), b"hunter2");
    }

    #[test]
    fn missing_data_dir_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        let (_, source) = Vault::open(&nested, None).unwrap();
        assert_eq!(source, KeySource::Created(nested.join("master.key")));
    }

    #[test]
    fn env_key_in_base64_and_hex() {
        let dir = tempfile::tempdir().unwrap();
        let expected = Vault::from_key(KEY).key_id();
        for value in [
            STANDARD.encode(KEY),
            hex::encode(KEY),
            hex::encode_upper(KEY),
        ] {
            let (vault, source) = Vault::open(dir.path(), Some(&format!("{value}\n"))).unwrap();
            assert_eq!(source, KeySource::Environment);
            assert_eq!(vault.key_id(), expected);
        }
        assert!(
            !dir.path().join("master.key").exists(),
            "no file when the env has the key"
        );
    }

    #[test]
    fn bad_env_key_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let short_hex = hex::encode([0xabu8; 31]);
        let long_b64 = STANDARD.encode([0x5au8; 33]);
        for value in [
            "correct horse battery staple".to_string(),
            short_hex,
            long_b64,
            String::new(),
        ] {
            let err = Vault::open(dir.path(), Some(&value)).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(matches!(err, VaultError::BadKey { .. }), "{text}");
            assert!(text.contains("OPENMID_MASTER_KEY"), "{text}");
            if !value.is_empty() {
                assert!(!text.contains(&value), "{text}");
                assert!(!text.contains(&value[..10]), "{text}");
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn group_readable_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (vault, _) = Vault::open(dir.path(), None).unwrap();
        let path = dir.path().join("master.key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = Vault::open(dir.path(), None).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("chmod 600"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            Vault::open(dir.path(), None).unwrap().0.key_id(),
            vault.key_id()
        );
    }

    #[test]
    fn key_file_of_wrong_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        for content in [STANDARD.encode([1u8; 16]), "not base64 at all!".to_string()] {
            write_private(&path, &content);
            let err = Vault::open(dir.path(), None).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, VaultError::BadKey { .. }), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(!text.contains(&content), "{text}");
        }
        // The broken file is left for the operator, never replaced by a new key.
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "not base64 at all!"
        );
    }

    fn write_private(path: &Path, content: &str) {
        std::fs::write(path, content).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }

    proptest! {
        #[test]
        fn decrypt_of_any_bytes_never_panics(
            blob in proptest::collection::vec(any::<u8>(), 0..200),
            aad in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let vault = Vault::from_key(KEY);
            prop_assert!(vault.decrypt(&aad, &blob).is_err());
            let mut v1 = vec![FORMAT_V1];
            v1.extend_from_slice(&blob);
            prop_assert!(vault.decrypt(&aad, &v1).is_err());
        }

        #[test]
        fn any_plaintext_roundtrips(
            plaintext in proptest::collection::vec(any::<u8>(), 0..1024),
            aad in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let vault = Vault::from_key(KEY);
            let blob = vault.encrypt(&aad, &plaintext);
            let opened = vault.decrypt(&aad, &blob).unwrap();
            prop_assert_eq!(opened.as_slice(), plaintext.as_slice());
        }
    }
}
