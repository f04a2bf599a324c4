#include <criterion/criterion.h>
Test (client, placeholder) { cr_assert (1); }
