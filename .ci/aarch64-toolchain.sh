#!/usr/bin/env bash
# Sets up, without root and without touching the system, what it takes to build the core crate for
# aarch64-unknown-linux-gnu and run its tests under emulation on an x86-64 Debian 12 machine:
#   - a Rust compiler with the aarch64 standard library (Debian's rustc-web and libstd-rust-web-dev:arm64: the one
#     source of a prebuilt aarch64 std that a package registry serves; rustup would download it from elsewhere);
#   - a cross C compiler and linker (gcc-aarch64-linux-gnu with its libc), for linking and for build scripts that
#     compile C (criterion's `alloca`);
#   - qemu-aarch64-static, which runs the test binaries.
# Packages come from the machine's configured Debian archive through `apt-get download` with a private package
# list, and are unpacked into DIR. Prints nothing but errors; afterwards `source DIR/env.sh` sets RUSTC, RUSTDOC and
# cargo's linker, C compiler and runner for the target.
#
# Usage: .ci/aarch64-toolchain.sh DIR
set -euo pipefail
dir=$(mkdir -p "$1" && cd "$1" && pwd)
for tool in apt-get apt-cache dpkg-deb; do
    command -v "$tool" >/dev/null || { echo "aarch64-toolchain: needs $tool (a Debian 12 system with its archive)" >&2; exit 1; }
done
[ -f "$dir/env.sh" ] && exit 0

root="$dir/root"
rm -rf "$dir/lists" "$dir/cache" "$dir/debs" "$root"
mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/debs" "$root"
# A private package list with arm64 beside amd64: the system's own lists and settings stay as they are.
private=(-o APT::Architectures=amd64,arm64 -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache")
apt=(apt-get -q "${private[@]}" -o Debug::NoLocking=1)
"${apt[@]}" update >"$dir/apt.log" 2>&1 || { cat "$dir/apt.log" >&2; exit 1; }

# The standard library and LLVM packages are named after their versions: follow rustc-web's dependencies to them.
depends() { apt-cache "${private[@]}" show "$1" | sed -n 's/^Depends: //p' | head -1 | tr ',' '\n' |
    sed 's/^ *\([^ ]*\).*/\1/'; }
std=$(depends libstd-rust-web-dev | grep '^libstd-rust-web-[0-9]')
llvm=$(depends "$std" | grep '^libllvm[0-9]')
[ -n "$std" ] && [ -n "$llvm" ] || { echo "aarch64-toolchain: cannot resolve rustc-web's libraries" >&2; exit 1; }

packages=(
    rustc-web libstd-rust-web-dev "$std" "$llvm" "libstd-rust-web-dev:arm64" "$std:arm64"
    gcc-12-aarch64-linux-gnu cpp-12-aarch64-linux-gnu binutils-aarch64-linux-gnu libgcc-12-dev-arm64-cross
    libc6-dev-arm64-cross libc6-arm64-cross libgcc-s1-arm64-cross linux-libc-dev-arm64-cross
    libasan8-arm64-cross libatomic1-arm64-cross libgomp1-arm64-cross libhwasan0-arm64-cross libitm1-arm64-cross
    liblsan0-arm64-cross libtsan2-arm64-cross libubsan1-arm64-cross
    qemu-user-static
    # Shared libraries of LLVM, gcc and binutils, so that a machine without them works too.
    libedit2 libz3-4 libxml2 libffi8 libicu72 libbsd0 libmd0 libbinutils libisl23 libmpc3 libmpfr6 libgmp10
    libjansson4 libzstd1
)
(cd "$dir/debs" && "${apt[@]}" download "${packages[@]}" >>"$dir/apt.log" 2>&1) || { cat "$dir/apt.log" >&2; exit 1; }
for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$root"; done
# qemu-user-static brings an emulator for every architecture; one is needed.
find "$root/usr/bin" -name 'qemu-*-static' ! -name qemu-aarch64-static -delete
rm -rf "$dir/debs" "$dir/cache" "$dir/lists"

libs="$root/usr/lib/x86_64-linux-gnu"
# Wrappers give the unpacked programs their libraries (rustc finds its standard libraries relative to itself). The
# cross gcc finds its own parts relative to itself; its libc's linker scripts name absolute paths, which --sysroot
# maps into the unpacked tree.
wrap() {
    printf '#!/bin/sh\nLD_LIBRARY_PATH="%s" exec %s "$@"\n' "$libs" "$2" >"$dir/$1"
    chmod +x "$dir/$1"
}
wrap rustc "$root/usr/bin/rustc"
wrap rustdoc "$root/usr/bin/rustdoc"
wrap cc "$root/usr/bin/aarch64-linux-gnu-gcc-12 --sysroot=$root"
cat >"$dir/env.sh.tmp" <<EOF
export RUSTC="$dir/rustc" RUSTDOC="$dir/rustdoc"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="$dir/cc" CC_aarch64_unknown_linux_gnu="$dir/cc"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$root/usr/bin/qemu-aarch64-static -L $root/usr/aarch64-linux-gnu"
EOF
# Checked before it is declared ready: the compiler runs and knows the target.
(source "$dir/env.sh.tmp" && "$RUSTC" --print target-libdir --target aarch64-unknown-linux-gnu | xargs test -d) \
    || { echo "aarch64-toolchain: the unpacked rustc does not run or lacks the aarch64 std" >&2; exit 1; }
mv "$dir/env.sh.tmp" "$dir/env.sh"
