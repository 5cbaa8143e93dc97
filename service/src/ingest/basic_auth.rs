//! HTTP Basic authentication of Billing callouts (RFC 7617), the scheme a Zuora callout
//! template uses when set to Basic: `Authorization: Basic base64(user:password)`. The
//! decoded credentials are compared with the stored `user:password` in constant time; errors
//! never carry what was sent.

use super::signature::CalloutSecret;
use base64::Engine;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BasicAuthError {
    #[error("missing Authorization header")]
    Missing,
    #[error("Authorization header is malformed: {0}")]
    Malformed(&'static str),
    #[error("Authorization credentials do not match")]
    Mismatch,
}

/// Whether `authorization` uses the Basic scheme (case-insensitive, RFC 7235).
pub fn is_basic(authorization: &str) -> bool {
    authorization
        .get(..6)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("basic "))
}

/// Checks an `Authorization` header value against `expected` (`user:password`).
pub fn verify(expected: &CalloutSecret, authorization: Option<&str>) -> Result<(), BasicAuthError> {
    let header = authorization.ok_or(BasicAuthError::Missing)?;
    if !is_basic(header) {
        return Err(BasicAuthError::Malformed("the scheme must be Basic"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(header[6..].trim())
        .map_err(|_| BasicAuthError::Malformed("the credentials are not base64"))?;
    if !decoded.contains(&b':') {
        return Err(BasicAuthError::Malformed(
            "the credentials must be user:password",
        ));
    }
    let sent = CalloutSecret::new(decoded).ok_or(BasicAuthError::Malformed("empty credentials"))?;
    if sent.same_as(expected) {
        Ok(())
    } else {
        Err(BasicAuthError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(credentials: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    #[test]
    fn only_the_stored_user_and_password_pass() {
        let expected = CalloutSecret::new("zuora:s3cret").unwrap();
        assert_eq!(verify(&expected, Some(&header("zuora:s3cret"))), Ok(()));
        let lower = header("zuora:s3cret").replacen("Basic", "basic", 1);
        assert_eq!(verify(&expected, Some(&lower)), Ok(()));
        assert_eq!(
            verify(&expected, Some(&header("zuora:wrong"))),
            Err(BasicAuthError::Mismatch)
        );
        assert_eq!(verify(&expected, None), Err(BasicAuthError::Missing));
        assert!(matches!(
            verify(&expected, Some("Bearer abc")),
            Err(BasicAuthError::Malformed(_))
        ));
        assert!(matches!(
            verify(&expected, Some(&header("no-colon"))),
            Err(BasicAuthError::Malformed(_))
        ));
        assert!(matches!(
            verify(&expected, Some("Basic %%%")),
            Err(BasicAuthError::Malformed(_))
        ));
    }
}
