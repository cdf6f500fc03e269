//! runnel-operator. (Being written.)
fn main() {}
