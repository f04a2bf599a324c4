#include "commands.h"
int
drover_cmd_broker (int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return 2;
}
int
drover_cmd_sink (int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return 2;
}
