#!/usr/bin/env bash
# run.sh - set up Drover on Debian 12 and run it.
#
#   ./run.sh demo    install what is missing, build, hash files on a local cluster
#   ./run.sh test    install what is missing, build, run every test suite:
#                    normal build, ASan+UBSan build, valgrind, clang-format,
#                    and the decoder fuzzer for FUZZ_SECONDS (default 60)
#   ./run.sh build   install what is missing and build into ./build
#
# Installing needs root (or sudo); everything else runs as you.
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(gcc clang libclang-rt-14-dev clang-format pkg-config meson ninja-build
          libzmq3-dev libczmq-dev libmsgpack-dev libsodium-dev libcriterion-dev
          zlib1g-dev python3 gnuplot-nox
          valgrind coreutils findutils)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

install_missing() {
    local missing=()
    for package in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# setup DIR [meson options...]: configure DIR once, then build it.
build() {
    local dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        say "configuring $dir $*"
        meson setup "$dir" "$@" >/dev/null
    fi
    say "building $dir"
    ninja -C "$dir" >/dev/null
}

demo() {
    build build
    local drover=./build/cli/drover files=/usr/share/common-licenses
    say "hashing every file under $files on a local cluster (broker, sink, node with 2 children)"
    find "$files" -type f | sort \
        | "$drover" map -j 2 --ordered --handler 'sha256sum=exec:xargs sha256sum' sha256sum \
        | tee build/demo-drover.txt
    find "$files" -type f | sort | xargs sha256sum > build/demo-plain.txt
    if diff -q build/demo-drover.txt build/demo-plain.txt >/dev/null; then
        say "identical to running sha256sum alone"
    else
        say "differs from sha256sum alone:"; diff build/demo-drover.txt build/demo-plain.txt
        return 1
    fi
}

test_all() {
    local failed=0
    build build
    say "test suite (normal build)"
    meson test -C build --no-suite large --print-errorlogs || failed=1

    build build-asan -Db_sanitize=address,undefined -Db_lundef=false
    say "test suite under AddressSanitizer and UBSan"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        LSAN_OPTIONS=suppressions="$PWD/tests/lsan.supp" \
        meson test -C build-asan --no-suite large --print-errorlogs || failed=1

    say "codec, wire, journal, dispatcher, broker and sink suites under valgrind"
    meson test -C build --setup valgrind --print-errorlogs codec wire journal dispatcher broker sink || failed=1

    say "meson install into a staging directory; build the example against libdrover.pc"
    rm -rf build/staging
    meson install -C build --destdir staging >/dev/null || failed=1
    local pcdir
    pcdir=$(dirname "$(find build/staging -name libdrover.pc | head -1)")
    # shellcheck disable=SC2046
    cc -std=c11 -Wall -Wextra -Werror -o build/staging/worker_example examples/worker_example.c \
        $(PKG_CONFIG_PATH="$pcdir" pkg-config --define-variable=prefix="$PWD/build/staging/usr/local" --cflags --libs libdrover) \
        || failed=1

    say "clang-format check"
    git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror || failed=1

    say "benchmark smoke run: drover bench and the multiprocessing.Pool comparison"
    bench/compare.sh --smoke --drover build/cli/drover || failed=1

    say "decoder fuzzer, ${FUZZ_SECONDS:-60} s"
    CC=clang build build-fuzz -Dfuzzing=true -Dtests=false \
        -Db_sanitize=address,undefined -Db_lundef=false
    mkdir -p build-fuzz/corpus
    ./build-fuzz/tests/fuzz/fuzz_decode -max_total_time="${FUZZ_SECONDS:-60}" \
        -print_final_stats=1 -dict=tests/fuzz/drover.dict -artifact_prefix=build-fuzz/ \
        build-fuzz/corpus tests/fuzz/corpus 2>build-fuzz/fuzz.log \
        || { tail -40 build-fuzz/fuzz.log; failed=1; }
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" build-fuzz/fuzz.log || true

    # One plain closing line over every meson test run above
    local passed failures
    passed=$(cat build*/meson-logs/testlog*.json 2>/dev/null | grep -c '"result": "OK"' || true)
    failures=$(cat build*/meson-logs/testlog*.json 2>/dev/null | grep -cE '"result": "(FAIL|TIMEOUT|ERROR)"' || true)
    echo "suites: $passed passed, $failures failed"
    if [ $failed -ne 0 ]; then
        say "FAILED"
        return 1
    fi
    say "all suites passed"
}

case "${1:-}" in
    demo) install_missing; demo ;;
    test) install_missing; test_all ;;
    build) install_missing; build build ;;
    *) echo "usage: ./run.sh demo|test|build" >&2; exit 2 ;;
esac
