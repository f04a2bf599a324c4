#include <criterion/criterion.h>
#include "drover_msg.h"
Test (codec, smoke) { cr_assert (drover_command_name (DROVER_HELLO)); }
