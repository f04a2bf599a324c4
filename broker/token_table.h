/*  token_table.h - the SUBMIT tokens a broker remembers, with the ids each
    was answered with, so that a SUBMIT sent again (same token) after a
    lost reply or a broker restart creates nothing (SPEC.md 7.6). The
    oldest token is forgotten past the table's size, counted in tokens and
    in ids.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_TOKEN_TABLE_H_INCLUDED
#define DROVER_TOKEN_TABLE_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct token_table_t token_table_t;

//  A table of at most max tokens holding at most max_ids ids in all.
token_table_t *token_table_new (size_t max, size_t max_ids);
void token_table_destroy (token_table_t **self_p);

//  The ids token was answered with (count in *count_p), or NULL.
const uint64_t *token_table_lookup (token_table_t *self, const char *token,
                                    size_t *count_p);

//  Remembers token with a copy of ids, replacing what it had; forgets the
//  oldest token past the table's size.
void token_table_insert (token_table_t *self, const char *token,
                         const uint64_t *ids, size_t count);

//  Forgets token (its SUBMIT was refused after all).
void token_table_remove (token_table_t *self, const char *token);

//  Tokens remembered.
size_t token_table_size (token_table_t *self);

#endif
