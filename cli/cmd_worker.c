#include "commands.h"
int
drover_cmd_worker (int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return 2;
}
