//! Torrent metainfo: parse, validate, create and show (docs/protocol.md section 5).
