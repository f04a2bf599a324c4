#include <criterion/criterion.h>
Test (worker, placeholder) { cr_assert (1); }
