//! WebAssembly backstore runtime (in progress).
