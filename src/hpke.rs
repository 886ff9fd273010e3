//! HPKE (RFC 9180): being written.
