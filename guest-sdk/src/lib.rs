//! Guest SDK for wasmtap backstores (in progress).
