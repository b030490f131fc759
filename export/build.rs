//! Embeds libtorch's library folder as an rpath, so that `msm-train` and the tests run without
//! `LD_LIBRARY_PATH` (torch-sys reports the folder as `DEP_TCH_LIBTORCH_LIB`).

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
