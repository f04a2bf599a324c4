/*  leak_check.h - make leaks fail Criterion tests, under ASan and valgrind.

    Criterion runs each test in a child process and has already counted the
    test as passed when the child exits; LeakSanitizer's report at exit, and
    valgrind's --error-exitcode in the child, do not fail the run. So each
    test declared with LEAK_CHECKED_TEST asks for a leak check itself when
    its body returns, and fails if the body leaked:

    * under ASan, __lsan_do_recoverable_leak_check();
    * under valgrind (--trace-children=yes), a quick leak check (octets
      definitely and indirectly lost) and the error count, compared with
      their values before the body ran.

    Without either, the checks cost nothing. Memory that a failed assertion
    left behind is not checked: the test has failed already.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef LEAK_CHECK_H_INCLUDED
#define LEAK_CHECK_H_INCLUDED

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#if defined(__SANITIZE_ADDRESS__)
#define LEAK_CHECK_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LEAK_CHECK_LSAN 1
#endif
#endif
#ifdef LEAK_CHECK_LSAN
#include <sanitizer/lsan_interface.h>
#endif

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define LEAK_CHECK_VALGRIND 1
#endif
#endif

typedef struct {
    unsigned long lost;   //  octets valgrind counted lost before the body
    unsigned long errors; //  errors valgrind counted before the body
} leak_check_t;

#ifdef LEAK_CHECK_VALGRIND
static inline unsigned long
leak_check_valgrind_lost_ (void)
{
    unsigned long leaked = 0, dubious = 0, reachable = 0, suppressed = 0;
    VALGRIND_DO_QUICK_LEAK_CHECK;
    VALGRIND_COUNT_LEAKS (leaked, dubious, reachable, suppressed);
    //  "Possibly lost" blocks are not counted: threads that ZeroMQ starts
    //  hold such blocks (pthread internals) until the process exits.
    (void)dubious;
    (void)reachable;
    (void)suppressed;
    return leaked;
}
#endif

static inline leak_check_t
leak_check_begin (void)
{
    leak_check_t state = {0, 0};
#ifdef LEAK_CHECK_VALGRIND
    if (RUNNING_ON_VALGRIND) {
        state.lost = leak_check_valgrind_lost_ ();
        state.errors = (unsigned long)VALGRIND_COUNT_ERRORS;
    }
#endif
    return state;
}

static inline void
leak_check_end (leak_check_t before)
{
#ifdef LEAK_CHECK_LSAN
    cr_assert_eq (__lsan_do_recoverable_leak_check (), 0,
                  "LeakSanitizer: the test leaked (report above)");
#endif
#ifdef LEAK_CHECK_VALGRIND
    if (RUNNING_ON_VALGRIND) {
        unsigned long lost = leak_check_valgrind_lost_ ();
        if (lost > before.lost)
            VALGRIND_DO_ADDED_LEAK_CHECK; //  the details, in valgrind's log
        cr_assert_leq (lost, before.lost,
                       "valgrind: the test leaked %lu octets",
                       lost - before.lost);
        unsigned long errors = (unsigned long)VALGRIND_COUNT_ERRORS;
        cr_assert_eq (errors, before.errors,
                      "valgrind: %lu memory errors (report above)",
                      errors - before.errors);
    }
#endif
    (void)before;
}

//  Test (Suite, Name), with a leak check after the body
#define LEAK_CHECKED_TEST(Suite, Name)                                         \
    static void Suite##_##Name##_body_ (void);                                 \
    Test (Suite, Name)                                                         \
    {                                                                          \
        leak_check_t before_ = leak_check_begin ();                            \
        Suite##_##Name##_body_ ();                                             \
        leak_check_end (before_);                                              \
    }                                                                          \
    static void Suite##_##Name##_body_ (void)

//  ParameterizedTest (Type *param, Suite, Name), with a leak check
#define LEAK_CHECKED_PARAM_TEST(Type, param, Suite, Name)                      \
    static void Suite##_##Name##_body_ (Type *param);                          \
    ParameterizedTest (Type *param, Suite, Name)                               \
    {                                                                          \
        leak_check_t before_ = leak_check_begin ();                            \
        Suite##_##Name##_body_ (param);                                        \
        leak_check_end (before_);                                              \
    }                                                                          \
    static void Suite##_##Name##_body_ (Type *param)

#endif
