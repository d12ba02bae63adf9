//! Files and directories only the instance's own user may read. The database holds
//! the hashes of every token and the encrypted credentials, blobs hold request and
//! response bodies: another local user must not read them, whatever the umask says.

use std::path::Path;

/// Mode of the instance's directories (data dir, blobs, TLS).
pub const DIR_MODE: u32 = 0o700;
/// Mode of the instance's files.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents with mode 0700. An existing directory is
/// left as it is: the operator chose its mode.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(dir)
}

/// Sets `path` to `mode` if it exists (files made before this rule, or by a library
/// that does not take a mode).
pub fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(meta) if meta.permissions().mode() & 0o7777 != mode => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// Open options for a new file with mode 0600 (tokio).
pub fn new_file_options() -> tokio::fs::OpenOptions {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(FILE_MODE);
    options
}
