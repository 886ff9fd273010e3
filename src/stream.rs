//! Chunked sealing of large payloads (STREAM): being written.
