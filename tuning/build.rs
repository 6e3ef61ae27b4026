//! Link fix-up for the system hwloc.
//!
//! `hwlocality-sys` asks pkg-config for hwloc in *static* mode, which adds
//! hwloc's private dependencies (`-ludev`) to the link line. Debian's
//! `libhwloc-dev` does not pull in `libudev-dev`, so only `libudev.so.1`
//! exists and the link fails although the shared libhwloc needs nothing
//! from us. When no `libudev.so` is installed, point the linker at a
//! `libudev.so` symlink to the runtime library in OUT_DIR (`--as-needed`
//! then drops it). With `libudev-dev` installed this does nothing.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let dirs = [
        "/usr/lib/x86_64-linux-gnu",
        "/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/lib64",
        "/lib",
    ];
    if dirs
        .iter()
        .any(|d| Path::new(d).join("libudev.so").exists())
    {
        return;
    }
    let Some(runtime) = dirs
        .iter()
        .map(|d| Path::new(d).join("libudev.so.1"))
        .find(|p| p.exists())
    else {
        // No udev at all: hwloc was built without it and will not ask.
        return;
    };
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let link = out.join("libudev.so");
    let _ = std::fs::remove_file(&link);
    if std::os::unix::fs::symlink(&runtime, &link).is_ok() {
        println!("cargo:rustc-link-search=native={}", out.display());
    }
}
