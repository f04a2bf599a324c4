/*  handlers.h - the built-in handlers: echo, sleep, fail, crash, sha256.
    They exist for tests, benchmarks and demonstrations; each is an
    ordinary C handler (drover_handler_fn).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_HANDLERS_H_INCLUDED
#define DROVER_HANDLERS_H_INCLUDED

#include "drover_worker.h"

//  Internal to libdrover: not exported from the shared library
#pragma GCC visibility push(hidden)

//  Returns the built-in called name, or NULL if there is none.
drover_handler_fn *handlers_builtin (const char *name);

//  Returns the name of built-in number index, or NULL past the last one.
const char *handlers_builtin_name (size_t index);

#pragma GCC visibility pop

#endif
