//! The null backstore (in progress).
