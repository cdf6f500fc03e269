//! Runnel's custom resource types. (Being written.)
