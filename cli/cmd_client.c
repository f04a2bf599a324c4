#include "commands.h"
#define STUB(name)                                                             \
    int drover_cmd_##name (int argc, char **argv)                              \
    {                                                                          \
        (void)argc;                                                            \
        (void)argv;                                                            \
        return 2;                                                              \
    }
STUB (map)
STUB (submit) STUB (wait) STUB (result) STUB (status) STUB (cancel) STUB (stats)
