//! The SQLite backend (filled by the SQLite work).
