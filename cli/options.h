/*  options.h - one table of options per subcommand: flags, then DROVER_*
    environment variables, then defaults; --help prints the table.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_CLI_OPTIONS_H_INCLUDED
#define DROVER_CLI_OPTIONS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    CLI_STRING, //  target: const char **
    CLI_INT,    //  target: long *, within [min, max]
    CLI_FLAG,   //  target: bool *; env value 1/true/yes or 0/false/no
    CLI_LIST,   //  target: cli_list_t *; repeatable; env: newline-separated
    CLI_COUNT,  //  target: long *: "auto" (CLI_AUTO) or within [min, max]
} cli_kind_t;

//  What a CLI_COUNT holds for "auto".
#define CLI_AUTO (-1L)

typedef struct {
    const char **items; //  the values, in order given
    size_t count;       //  how many
} cli_list_t;

typedef struct {
    const char *name;          //  long flag, without "--"
    char short_name;           //  short flag, or 0
    cli_kind_t kind;           //  what it takes
    const char *env;           //  environment variable, or NULL
    const char *default_value; //  as text; NULL for none
    long min, max;             //  bounds of a CLI_INT
    const char *metavar;       //  what the value is, for --help ("EP")
    const char *help;          //  one line
    void *target;              //  where the value goes
} cli_option_t;

typedef struct {
    const char *command; //  "broker"
    const char *usage;   //  "drover broker [OPTIONS]"
    const char *summary; //  one paragraph for --help
    cli_option_t *options;
    size_t option_count;
} cli_command_t;

/*  Parses argv (argv[0] is the subcommand name) against the table: sets
    defaults, then environment values, then flags. Returns 0 with
    *first_arg at the first positional argument; CLI_HELP after printing
    --help to stdout; CLI_USAGE after printing a one-line error that says
    what to do to stderr. Exit with 0 for CLI_HELP and 2 for CLI_USAGE. */
#define CLI_HELP  1
#define CLI_USAGE 2
int cli_parse (const cli_command_t *command, int argc, char **argv,
               int *first_arg);

/*  cli_parse for a command that takes no positional argument. Returns -1
    when the command goes on; else the exit status to return: 0 after
    --help, 2 after a usage error (an unexpected argument included). */
#define CLI_CONTINUE (-1)
int cli_parse_no_args (const cli_command_t *command, int argc, char **argv);

/*  Prints "drover CMD: message; see 'drover CMD --help'" to stderr and
    returns CLI_USAGE (2), for errors in positional arguments. */
int cli_usage_error (const cli_command_t *command, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

#endif
