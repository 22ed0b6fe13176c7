//! podrun-view: the resource view's server (podrun_procfs::server), a binary of its own so
//! that what stays resident per root is small. The view's keeper starts it; it is not a
//! command for people.

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let code = match podrun_procfs::server::parse_args(&argv) {
        Ok(args) => podrun_procfs::server::run(args),
        Err(e) => {
            eprintln!("podrun-view: {e} (it is started by podrun's view keeper, not by hand)");
            125
        }
    };
    std::process::exit(code)
}

/// podrun-view never unwinds (it is built with panic = "abort"), yet std refers to
/// libgcc_s's unwinder (for backtraces, and landing pads that abort never reaches). These
/// stand in for it, so the server does not load libgcc_s: about 90 kB of each view's
/// memory. A panic's backtrace is empty (the server's stderr is /dev/null in any case).
#[cfg(not(test))]
#[allow(non_snake_case)]
mod no_unwinder {
    use std::ffi::{c_int, c_void};

    /// _URC_END_OF_STACK: no frames.
    #[unsafe(no_mangle)]
    extern "C" fn _Unwind_Backtrace(_trace: *const c_void, _arg: *mut c_void) -> c_int {
        5
    }
    #[unsafe(no_mangle)]
    extern "C" fn _Unwind_Resume(_exception: *mut c_void) -> ! {
        std::process::abort()
    }
    #[unsafe(no_mangle)]
    extern "C" fn _Unwind_GetIP(_ctx: *mut c_void) -> usize {
        0
    }
    #[unsafe(no_mangle)]
    extern "C" fn _Unwind_GetIPInfo(_ctx: *mut c_void, _before: *mut c_int) -> usize {
        0
    }
    #[unsafe(no_mangle)]
    extern "C" fn _Unwind_GetDataRelBase(_ctx: *mut c_void) -> usize {
        0
    }
    #[unsafe(no_mangle)]
    extern "C" fn _Unwind_GetTextRelBase(_ctx: *mut c_void) -> usize {
        0
    }
    #[unsafe(no_mangle)]
    extern "C" fn _Unwind_GetRegionStart(_ctx: *mut c_void) -> usize {
        0
    }
    #[unsafe(no_mangle)]
    extern "C" fn _Unwind_GetLanguageSpecificData(_ctx: *mut c_void) -> *const u8 {
        std::ptr::null()
    }
    #[unsafe(no_mangle)]
    extern "C" fn _Unwind_SetGR(_ctx: *mut c_void, _reg: c_int, _value: usize) {}
    #[unsafe(no_mangle)]
    extern "C" fn _Unwind_SetIP(_ctx: *mut c_void, _value: usize) {}
}
