/*  options.c - table-driven option parsing for the drover subcommands.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "options.h"

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int
cli_usage_error (const cli_command_t *command, const char *format, ...)
{
    fprintf (stderr, "drover %s: ", command->command);
    va_list args;
    va_start (args, format);
    vfprintf (stderr, format, args);
    va_end (args);
    fprintf (stderr, "; see 'drover %s --help'\n", command->command);
    return CLI_USAGE;
}

//  Copies of list values from the environment: the items point into them
static char *s_env_copies[16];
static size_t s_env_copy_count;

static void
s_list_append (cli_list_t *list, const char *value)
{
    const char **items = (const char **)realloc (
        (void *)list->items, (list->count + 1) * sizeof (char *));
    assert (items);
    items[list->count++] = value;
    list->items = items;
}

//  Sets one option from text; source says where the text came from.
static int
s_set (const cli_command_t *command, cli_option_t *option, const char *text,
       const char *source)
{
    switch (option->kind) {
        case CLI_STRING: *(const char **)option->target = text; return 0;
        case CLI_LIST:
            s_list_append ((cli_list_t *)option->target, text);
            return 0;
        case CLI_FLAG:
            if (!strcasecmp (text, "1") || !strcasecmp (text, "true")
                || !strcasecmp (text, "yes"))
                *(bool *)option->target = true;
            else if (!strcasecmp (text, "0") || !strcasecmp (text, "false")
                     || !strcasecmp (text, "no") || !*text)
                *(bool *)option->target = false;
            else
                return cli_usage_error (command, "%s must be 1 or 0, not '%s'",
                                        source, text);
            return 0;
        case CLI_INT:
        case CLI_COUNT: {
            bool count = option->kind == CLI_COUNT;
            if (count && !strcmp (text, "auto")) {
                *(long *)option->target = CLI_AUTO;
                return 0;
            }
            char *end;
            errno = 0;
            long value = strtol (text, &end, 10);
            if (errno || end == text || *end || value < option->min
                || value > option->max)
                return cli_usage_error (
                    command,
                    "%s takes %sa whole number from %ld to %ld, not '%s'",
                    source, count ? "'auto' or " : "", option->min, option->max,
                    text);
            *(long *)option->target = value;
            return 0;
        }
    }
    return CLI_USAGE;
}

static void
s_print_help (const cli_command_t *command)
{
    printf ("usage: %s\n\n%s\n\noptions:\n", command->usage, command->summary);
    for (size_t i = 0; i < command->option_count; i++) {
        const cli_option_t *option = &command->options[i];
        char flags[64];
        if (option->short_name)
            snprintf (flags, sizeof flags, "-%c, --%s%s%s", option->short_name,
                      option->name, option->metavar ? " " : "",
                      option->metavar ? option->metavar : "");
        else
            snprintf (flags, sizeof flags, "    --%s%s%s", option->name,
                      option->metavar ? " " : "",
                      option->metavar ? option->metavar : "");
        printf ("  %-28s %s", flags, option->help);
        if (option->default_value && *option->default_value)
            printf (" [default: %s]", option->default_value);
        if (option->env)
            printf (" [env: %s]", option->env);
        printf ("\n");
    }
    printf ("  %-28s %s\n", "-h, --help", "show this help and exit");
}

int
cli_parse_no_args (const cli_command_t *command, int argc, char **argv)
{
    int first_arg;
    int rc = cli_parse (command, argc, argv, &first_arg);
    if (rc)
        return rc == CLI_HELP ? 0 : 2;
    if (first_arg < argc)
        return cli_usage_error (command, "unexpected argument '%s'",
                                argv[first_arg]);
    return CLI_CONTINUE;
}

int
cli_parse (const cli_command_t *command, int argc, char **argv, int *first_arg)
{
    assert (command->option_count < 64);
    struct option longopts[66];
    //  '+': stop at the first argument; ':': tell a missing value apart
    char shortopts[200] = "+:h";
    size_t shortlen = 3;
    size_t n = 0;
    for (size_t i = 0; i < command->option_count; i++) {
        cli_option_t *option = &command->options[i];
        longopts[n++] = (struct option){
            option->name,
            option->kind == CLI_FLAG ? no_argument : required_argument, NULL,
            256 + (int)i};
        if (option->short_name) {
            //  Two options with one letter: the table is wrong
            assert (!strchr (shortopts, option->short_name));
            shortopts[shortlen++] = option->short_name;
            if (option->kind != CLI_FLAG)
                shortopts[shortlen++] = ':';
        }
        //  Defaults, then the environment
        if (option->default_value
            && s_set (command, option, option->default_value, option->name))
            return CLI_USAGE;
        const char *env = option->env ? getenv (option->env) : NULL;
        if (env && option->kind == CLI_LIST) {
            //  The items point into the copy, which lives as long as the
            //  process: keep it reachable
            char *copy = strdup (env);
            assert (copy && s_env_copy_count < 16);
            s_env_copies[s_env_copy_count++] = copy;
            for (char *save = NULL, *item = strtok_r (copy, "\n", &save); item;
                 item = strtok_r (NULL, "\n", &save))
                s_list_append ((cli_list_t *)option->target, item);
        }
        else if (env && s_set (command, option, env, option->env))
            return CLI_USAGE;
    }
    shortopts[shortlen] = 0;
    longopts[n++] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[n] = (struct option){NULL, 0, NULL, 0};

    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long (argc, argv, shortopts, longopts, NULL)) != -1) {
        if (c == 'h') {
            s_print_help (command);
            return CLI_HELP;
        }
        if (c == ':') {
            if (optopt > 0 && optopt < 256)
                return cli_usage_error (command, "-%c needs a value", optopt);
            return cli_usage_error (command, "%s needs a value",
                                    argv[optind - 1]);
        }
        if (c == '?') {
            if (optopt > 0 && optopt < 256)
                return cli_usage_error (command, "-%c is not an option",
                                        optopt);
            return cli_usage_error (command, "'%s' is not an option",
                                    argv[optind - 1]);
        }
        cli_option_t *option = NULL;
        if (c >= 256)
            option = &command->options[c - 256];
        else
            for (size_t i = 0; i < command->option_count; i++)
                if (command->options[i].short_name == c)
                    option = &command->options[i];
        assert (option);
        char source[80];
        snprintf (source, sizeof source, "--%s", option->name);
        if (s_set (command, option, option->kind == CLI_FLAG ? "1" : optarg,
                   source))
            return CLI_USAGE;
    }
    *first_arg = optind;
    return 0;
}
