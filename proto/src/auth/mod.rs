//! Auth in cephx's shape (being written).
