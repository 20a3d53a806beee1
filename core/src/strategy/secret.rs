//! A credential a strategy holds (a token, a private key) that `{:?}` never shows, so that
//! debugging output of a strategy cannot leak it.

/// `T`, shown by `Debug` as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret<T>(pub(crate) T);

impl<T> core::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("<redacted>")
    }
}
