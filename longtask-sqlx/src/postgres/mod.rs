//! The Postgres backend (filled by the Postgres work).
