//! Redirects under the policy. A target that answers `302 Location:
//! http://169.254.169.254/` must not lead the MID where the job itself could not go,
//! and the redirect's URL may be an IP literal, which no resolver sees — so each hop is
//! checked with [`EgressPolicy::check_url`] before reqwest follows it.

use super::{EgressPolicy, Protocol};
use std::sync::Arc;

/// A chain of redirects longer than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped after {0} redirects")]
pub struct TooManyRedirects(pub usize);

impl EgressPolicy {
    /// A reqwest redirect policy that follows at most `max_redirects` hops, each one
    /// allowed by `protocol`'s rules; a refused hop fails the request with the
    /// [`Denial`](super::Denial) (find it with [`find_denial`](super::find_denial)).
    pub fn redirect_policy(
        self: Arc<Self>,
        protocol: Protocol,
        max_redirects: usize,
    ) -> reqwest::redirect::Policy {
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max_redirects {
                return attempt.error(TooManyRedirects(max_redirects));
            }
            match self.check_url(protocol, attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(denial) => attempt.error(denial),
            }
        })
    }
}
