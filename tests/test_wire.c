#include <criterion/criterion.h>
Test (wire, placeholder) { cr_assert (1); }
